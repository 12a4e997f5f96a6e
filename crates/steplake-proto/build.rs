//! Compiles `proto/steplake/v1/*.proto` with protox (pure Rust), so a fresh
//! machine needs no `protoc` binary.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let ingest = proto_root.join("steplake/v1/ingest.proto");
    println!("cargo:rerun-if-changed={}", ingest.display());

    let descriptors = protox::compile([&ingest], [&proto_root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
