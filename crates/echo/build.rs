//! Generates the gRPC echo's messages, servers and clients from `proto/`
//! with protox (a pure Rust proto compiler: no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/grpcecho.proto", "proto/stream.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Clients are generic over any gRPC service (no tonic transport).
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
