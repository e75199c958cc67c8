//! Compiles the `.proto` files with protox (a protobuf compiler written in Rust), so that a
//! build needs no `protoc` on the machine, and generates prost messages and tonic services.
//! The encoded descriptor set is kept for gRPC server reflection.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "synapse/link/v1/link.proto",
    "synapse/console/v1/console.proto",
    "synapse/console/v1/rollouts.proto",
    "synapse/console/v1/learning.proto",
    "synapse/console/v1/placement.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("synapse_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
