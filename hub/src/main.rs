//! `synapse-hub`: the fleet's hub daemon.

use clap::Parser;

#[derive(Parser)]
#[command(name = "synapse-hub", version, about = "SynapseStream hub")]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
