//! `synapsectl`: the operators' command line. `certs` manages the fleet's CA and
//! certificates offline; `agents`, `agent`, `functions` and `stats` read the hub's console
//! over gRPC with an operator or viewer certificate, as tables or `-o json`, once or `--watch`;
//! `rollouts` starts and steers fleet rollouts.
//! `audit` lists audited console calls (state changes and refusals);
//! `models` and `rounds` read the federated-learning registry and rounds;
//! `placement show|explain|history` reads the hub's placement plans.

mod audit;
mod certs;
mod console;
mod learning;
mod placement;
mod render;
mod rollouts;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "synapsectl", version, about = "Drive a SynapseStream hub")]
struct Cli {
    #[command(flatten)]
    connection: console::Connection,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the fleet CA or issue certificates.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// List the agents of the fleet.
    Agents {
        /// Keep printing as agents change.
        #[arg(long)]
        watch: bool,
    },
    /// Show one agent.
    Agent { agent_id: String },
    /// List the functions the fleet reported, with fleet-wide totals.
    Functions {
        /// Keep printing as functions change.
        #[arg(long)]
        watch: bool,
    },
    /// Where the hub keeps each function warm: the plan in force, why, and earlier plans.
    Placement {
        #[command(subcommand)]
        command: placement::PlacementCommand,
    },
    /// Show one function per tier and per agent, with its cold-start histogram.
    Stats {
        function: String,
        /// Keep printing as the function changes.
        #[arg(long)]
        watch: bool,
    },
    /// Start, follow and steer fleet rollouts.
    Rollouts {
        #[command(subcommand)]
        command: rollouts::RolloutsCommand,
    },
    /// The neural forecaster's versions in the model registry.
    Models {
        #[command(subcommand)]
        command: learning::ModelsCommand,
    },
    /// Federated training rounds, with the loss of each.
    Rounds {
        #[command(subcommand)]
        command: learning::RoundsCommand,
    },
    /// The console's audit log, newest first: state-changing calls and refused calls.
    Audit {
        /// Entries to list (at most 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs { command } => certs::run(command),
        Command::Models { .. } | Command::Rounds { .. } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                runtime.block_on(learning::run(&cli.connection, cli.output, cli.command))
            }),
        Command::Audit { limit } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(audit::run(&cli.connection, cli.output, limit))),
        Command::Placement { command } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                runtime.block_on(placement::run(&cli.connection, cli.output, command))
            }),
        command => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                runtime.block_on(console::run(&cli.connection, cli.output, command))
            }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synapsectl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Default place of the operator's TLS material.
fn tls_dir() -> PathBuf {
    PathBuf::from("/etc/synapse/tls")
}
