//! `synapse-agent`: the node agent daemon and its operator commands.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use synapse_agent::config::AgentConfig;

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
    /// Replay a recorded trace through real gateways, time-compressed, and count what they
    /// answered (warm, cold, forwarded, failed).
    Drive(synapse_agent::drive::DriveArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synapse-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run { config } => {
            let config = match config {
                Some(path) => AgentConfig::load(&path)?,
                None => AgentConfig::default(),
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(synapse_agent::agent::run(config))
        }
        Command::CheckConfig { file } => {
            let config = AgentConfig::load(&file)?;
            println!(
                "{}: ok ({} functions, {} watched cgroups, interval {})",
                file.display(),
                config.functions.len(),
                config.watch.len(),
                humantime::format_duration(config.telemetry.interval)
            );
            Ok(())
        }
        Command::Replay(args) => synapse_agent::replay::run(args),
        Command::Drive(args) => synapse_agent::drive::run(args),
    }
}
