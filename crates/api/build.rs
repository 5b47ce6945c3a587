//! Generates the configuration stream's messages, server and client from `proto/`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    strait_protobuild::compile_with_codec(&["proto/control.proto"], "crate::codec::LeanCodec")
}
