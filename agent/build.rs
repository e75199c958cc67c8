//! Builds the eBPF programs of `agent-ebpf/` for `bpfel-unknown-none` with the nightly
//! toolchain and bpf-linker (see `scripts/setup.sh`), and leaves the object in `OUT_DIR`,
//! where `src/telemetry/ebpf.rs` embeds it.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("agent/ has no parent folder"))?
        .join("agent-ebpf");
    let root = root.to_str().context("agent-ebpf path is not UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "synapse-agent-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context(
        "building the eBPF programs (run scripts/setup.sh for nightly rust-src and bpf-linker)",
    )
}
