//! The configuration stream between `strait control` and its proxies
//! (issue 6): the index of every object and who receives it (`index`), the
//! folder as a source of documents and the proxy's cache (`folder`), the
//! control plane's side of the stream (`server`), and the proxy's side
//! (`client`): connect, apply, ACK or NACK, cache, reconnect.

pub mod client;
pub mod folder;
pub mod index;
pub mod server;
pub mod snapshot;

/// Generated from `proto/control.proto`.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/strait.control.v1.rs"));
}
