//! Build-time helper shared by the crates that serve or call gRPC: their
//! `proto/` files compiled with protox (a pure-Rust proto compiler, so the
//! build needs no `protoc`) into messages, servers and clients that are
//! generic over any gRPC service (no tonic transport).

pub fn compile(protos: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    compile_with_codec(protos, "tonic_prost::ProstCodec")
}

/// As [`compile`], with the generated code encoding and decoding through
/// `codec` (a path to a type like `tonic_prost::ProstCodec<T, U>`).
pub fn compile_with_codec(protos: &[&str], codec: &str) -> Result<(), Box<dyn std::error::Error>> {
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .codec_path(codec)
        .compile_fds(fds)?;
    Ok(())
}
