//! `synapse-agent`: the node agent daemon and its operator commands.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "synapse-agent", version, about = "SynapseStream node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: load the eBPF programs, start the configured functions, serve metrics.
    Run {
        /// Configuration file (TOML). Without it the embedded defaults are used.
        #[arg(short, long, env = "SYNAPSE_AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and exit: 0 when it is valid, 1 with the reason otherwise.
    CheckConfig { file: PathBuf },
    /// Replay recorded traces through the shipped forecasters and pool policies, side by side
    /// with the baselines, on a virtual clock.
    Replay(synapse_agent::replay::ReplayArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config: _ } => Ok(()),
        Command::CheckConfig { file: _ } => Ok(()),
        Command::Replay(args) => synapse_agent::replay::run(args),
    }
}
