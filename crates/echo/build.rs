//! Generates the gRPC echo's messages, server and client from `proto/`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    strait_protobuild::compile(&["proto/grpcecho.proto", "proto/stream.proto"])
}
