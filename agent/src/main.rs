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
    /// Print the SHA-256 digest of a bearer token read from stdin (one line), as
    /// `[gateway.tokens]` lists it; `--generate` makes a new random token and prints it, then
    /// its digest, on two lines.
    HashToken {
        #[arg(long)]
        generate: bool,
    },
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
        Command::HashToken { generate } => hash_token(generate),
        Command::Replay(args) => synapse_agent::replay::run(args),
        Command::Drive(args) => synapse_agent::drive::run(args),
    }
}

/// Shortest token `hash-token` takes: a guessable token defeats its digest.
const MIN_TOKEN: usize = 16;

fn hash_token(generate: bool) -> Result<()> {
    use synapse_agent::gateway::auth;
    let token = if generate {
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        println!("{token}");
        token
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    anyhow::ensure!(
        auth::is_b64token(&token),
        "a bearer token is letters, digits and -._~+/ (then any =), as RFC 6750 has it"
    );
    anyhow::ensure!(
        token.len() >= MIN_TOKEN,
        "the token has {} characters; use at least {MIN_TOKEN} (--generate makes one)",
        token.len()
    );
    println!("{}", auth::hash_token(&token));
    Ok(())
}
