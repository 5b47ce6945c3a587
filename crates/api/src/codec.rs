//! The configuration stream's codec: prost's, with smaller buffers.
//!
//! tonic keeps one encode and one decode buffer per stream for the
//! stream's life. With its defaults (8 KiB to start, up to 32 KiB encoded
//! before a yield) a control plane held about 33 KiB of encode buffer per
//! connected proxy once the first snapshot had gone out (valgrind massif,
//! 500 proxies): 160 MiB at 5,000 proxies for buffers that sit idle
//! between changes. Yielding after each part of a snapshot (about 8 KiB,
//! the control plane's part size) keeps each buffer near one part.

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// First capacity of a stream's buffers; they grow to the largest message.
const BUFFER_BYTES: usize = 4 * 1024;
/// Encoded bytes after which a stream hands what it has to HTTP/2.
const YIELD_BYTES: usize = 8 * 1024;

/// prost's codec with [`BUFFER_BYTES`] and [`YIELD_BYTES`].
#[derive(Debug, Clone, Default)]
pub struct LeanCodec<T, U>(ProstCodec<T, U>);

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_BYTES)
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
