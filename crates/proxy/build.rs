//! Generates Envoy's external authorization messages (the subset in
//! `proto/`) and its server, which tests serve.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The entry file imports the others.
    println!("cargo:rerun-if-changed=proto");
    strait_protobuild::compile(&["proto/envoy/service/auth/v3/external_auth.proto"])
}
