//! The control plane's side of the configuration stream: the index of
//! every object and who receives it (`index`), the folder as a source of
//! documents (`folder`), and the stream itself with each proxy's ACK or
//! NACK (`server`). The protocol is `strait-api`'s.

pub mod folder;
pub mod index;
pub mod server;

pub use strait_api::pb;
