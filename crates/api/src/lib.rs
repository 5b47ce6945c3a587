//! The protocol between `strait control` and its proxies, so that neither
//! side imports the other: the messages and services generated from
//! `proto/control.proto` (`pb`), a proxy's configuration as received and
//! cached (`snapshot`), the proxy's side of the stream (`client`), and
//! noticing a folder's changes (`watch`).

pub mod client;
pub mod codec;
pub mod snapshot;
pub mod watch;

/// Generated from `proto/control.proto`.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/strait.control.v1.rs"));
}
