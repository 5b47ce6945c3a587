//! Any bytes as a backend's answer on a pooled HTTP/1.1 connection, read
//! as the proxy reads it: the head, then a chunked or sized body. What
//! is read may not depend on where the bytes were split into reads (the
//! whole at once, then a byte at a time, then in pieces the input picks):
//! the same head, the same data, the same end, the same refusal, and the
//! same bytes left over for the next answer.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strait_h1::{Decoded, Decoder, ResponseFraming, ResponseParser};

/// What one reading of the answer came to.
#[derive(Debug, PartialEq)]
enum Read {
    /// The head's status and framing, the body's bytes, whether it ended,
    /// and what was left past its end.
    Answer(u16, ResponseFraming, Vec<u8>, bool, Vec<u8>),
    HeadRefused,
    BodyRefused(u16, Vec<u8>),
    Incomplete,
}

fn read(wire: &[u8], step: &dyn Fn(usize) -> usize, head_request: bool) -> Read {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut feed = |buf: &mut BytesMut| -> bool {
        if fed == wire.len() {
            return false;
        }
        let end = (fed + step(fed).max(1)).min(wire.len());
        buf.extend_from_slice(&wire[fed..end]);
        fed = end;
        true
    };
    let mut parser = ResponseParser::default();
    let head = loop {
        match parser.parse(&mut buf, head_request) {
            Ok(Some(head)) => break head,
            Ok(None) if feed(&mut buf) => {}
            Ok(None) => return Read::Incomplete,
            Err(_) => return Read::HeadRefused,
        }
    };
    let status = head.status.as_u16();
    let mut data = Vec::new();
    let ended = match head.framing {
        ResponseFraming::None => true,
        ResponseFraming::Length(n) => {
            while (data.len() as u64) < n {
                if buf.is_empty() && !feed(&mut buf) {
                    break;
                }
                let take = (n - data.len() as u64).min(buf.len() as u64) as usize;
                data.extend_from_slice(&buf.split_to(take));
            }
            data.len() as u64 == n
        }
        ResponseFraming::UntilClose => {
            while feed(&mut buf) {}
            data.extend_from_slice(&buf.split());
            true
        }
        ResponseFraming::Chunked => {
            let mut decoder = Decoder::default();
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(d)) => data.extend_from_slice(&d),
                    Ok(Decoded::Trailers(_)) => {}
                    Ok(Decoded::End) => break true,
                    Ok(Decoded::More) if feed(&mut buf) => {}
                    Ok(Decoded::More) => break false,
                    Err(_) => return Read::BodyRefused(status, data),
                }
            }
        }
    };
    assert!(data.len() <= wire.len());
    while feed(&mut buf) {}
    Read::Answer(status, head.framing, data, ended, buf.to_vec())
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, wire)) = input.split_first() else {
        return;
    };
    let head_request = first & 1 == 1;
    let whole = read(wire, &|_| usize::MAX, head_request);
    let bytes = read(wire, &|_| 1, head_request);
    let picked = read(wire, &|at| 1 + (at * 7 + first as usize) % 97, head_request);
    // A refused body may have handed on more or less before the refusal
    // depending on the split; the refusal itself may not move.
    let shape = |r: Read| match r {
        Read::BodyRefused(status, _) => Read::BodyRefused(status, Vec::new()),
        other => other,
    };
    let whole = shape(whole);
    assert_eq!(whole, shape(bytes), "whole vs a byte at a time");
    assert_eq!(whole, shape(picked), "whole vs picked pieces");
});
