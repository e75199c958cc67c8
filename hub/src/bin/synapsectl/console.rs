//! `synapsectl agents|agent|functions|stats`: the console client. Connects over TLS with an
//! operator or viewer certificate; `--watch` follows the console's Watch stream and reprints
//! on change.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use synapse_proto::console::v1::{
    FunctionStatsRequest, GetAgentRequest, ListAgentsRequest, ListFunctionsRequest, WatchRequest,
    console_client::ConsoleClient, watch_event::Event,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::{Command, Output, render};

/// Where the hub's console is and which certificate to show it.
#[derive(Args)]
pub struct Connection {
    /// Console address of the hub.
    #[arg(
        long,
        env = "SYNAPSE_HUB",
        default_value = "https://127.0.0.1:7444",
        global = true
    )]
    hub: String,
    /// Name the hub's certificate must carry.
    #[arg(
        long,
        env = "SYNAPSE_HUB_NAME",
        default_value = "synapse-hub",
        global = true
    )]
    server_name: String,
    /// CA certificate of the fleet (PEM). Default /etc/synapse/tls/ca.pem.
    #[arg(long, env = "SYNAPSE_CA", global = true)]
    ca: Option<PathBuf>,
    /// Operator or viewer certificate (PEM). Default /etc/synapse/tls/operator.pem.
    #[arg(long, env = "SYNAPSE_CERT", global = true)]
    cert: Option<PathBuf>,
    /// Its private key (PEM). Default /etc/synapse/tls/operator.key.
    #[arg(long, env = "SYNAPSE_KEY", global = true)]
    key: Option<PathBuf>,
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

impl Connection {
    async fn connect(&self) -> anyhow::Result<ConsoleClient<Channel>> {
        Ok(ConsoleClient::new(self.channel().await?))
    }

    /// A TLS channel to the console, for any of its services.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let dir = crate::tls_dir();
        let ca = self.ca.clone().unwrap_or_else(|| dir.join("ca.pem"));
        let cert = self
            .cert
            .clone()
            .unwrap_or_else(|| dir.join("operator.pem"));
        let key = self.key.clone().unwrap_or_else(|| dir.join("operator.key"));
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&ca)?))
            .identity(Identity::from_pem(read(&cert)?, read(&key)?))
            .domain_name(self.server_name.clone());
        let channel = Channel::from_shared(self.hub.clone())
            .with_context(|| format!("{:?} is not a console address", self.hub))?
            .tls_config(tls)
            .context("console TLS")?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .with_context(|| format!("cannot reach the hub console at {}", self.hub))?;
        Ok(channel)
    }
}

pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Turns a gRPC status into an error that names the request.
pub fn status(what: &'static str) -> impl Fn(tonic::Status) -> anyhow::Error {
    move |e| anyhow::anyhow!("{what}: {}: {}", e.code(), e.message())
}

fn clear_screen() {
    print!("\x1b[2J\x1b[H");
}

pub async fn run(connection: &Connection, output: Output, command: Command) -> anyhow::Result<()> {
    if let Command::Rollouts { command } = command {
        return crate::rollouts::run(connection.channel().await?, output, command).await;
    }
    let mut client = connection.connect().await?;
    match command {
        Command::Agents { watch: false } => {
            let agents = client
                .list_agents(ListAgentsRequest {})
                .await
                .map_err(status("list agents"))?
                .into_inner()
                .agents;
            match output {
                Output::Table => print!("{}", render::agents_table(&agents)),
                Output::Json => print_json(&agents.iter().map(render::agent_json).collect())?,
            }
        }
        Command::Agent { agent_id } => {
            let agent = client
                .get_agent(GetAgentRequest { agent_id })
                .await
                .map_err(status("get agent"))?
                .into_inner();
            match output {
                Output::Table => print!("{}", render::agents_table(std::slice::from_ref(&agent))),
                Output::Json => print_json(&render::agent_json(&agent))?,
            }
        }
        Command::Functions { watch: false } => {
            let functions = client
                .list_functions(ListFunctionsRequest {})
                .await
                .map_err(status("list functions"))?
                .into_inner()
                .functions;
            match output {
                Output::Table => print!("{}", render::functions_table(&functions)),
                Output::Json => print_json(&functions.iter().map(render::function_json).collect())?,
            }
        }
        Command::Stats { function, watch } => loop {
            let stats = client
                .function_stats(FunctionStatsRequest {
                    function: function.clone(),
                })
                .await
                .map_err(status("function stats"))?
                .into_inner();
            match output {
                Output::Table => {
                    if watch {
                        clear_screen();
                    }
                    print!("{}", render::stats_text(&stats));
                }
                Output::Json => println!("{}", serde_json::to_string(&render::stats_json(&stats))?),
            }
            if !watch {
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        },
        Command::Agents { watch: true } => watch(&mut client, output, true).await?,
        Command::Functions { watch: true } => watch(&mut client, output, false).await?,
        Command::Rollouts { .. } => bail!("rollouts are handled above"),
        Command::Certs { .. }
        | Command::Audit { .. }
        | Command::Models { .. }
        | Command::Rounds { .. }
        | Command::Placement { .. } => {
            bail!("this command does not use the Console service")
        }
    }
    Ok(())
}

/// Follows the Watch stream: JSON prints one line per change; tables reprint the whole list,
/// at most twice a second.
async fn watch(
    client: &mut ConsoleClient<Channel>,
    output: Output,
    agents: bool,
) -> anyhow::Result<()> {
    let request = WatchRequest {
        agents,
        functions: !agents,
    };
    let mut stream = client
        .watch(request)
        .await
        .map_err(|e| anyhow::anyhow!("watch: {}: {}", e.code(), e.message()))?
        .into_inner();
    let mut agent_rows = BTreeMap::new();
    let mut function_rows = BTreeMap::new();
    let mut last_print = tokio::time::Instant::now() - Duration::from_secs(1);
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
        let event = match next {
            Ok(message) => match message.context("watch stream")? {
                Some(event) => event.event,
                None => return Ok(()),
            },
            Err(_) => None,
        };
        match (&event, output) {
            (Some(Event::Agent(a)), Output::Json) => {
                println!("{}", serde_json::to_string(&render::agent_json(a))?)
            }
            (Some(Event::Function(f)), Output::Json) => {
                println!("{}", serde_json::to_string(&render::function_json(f))?)
            }
            (Some(Event::Agent(a)), Output::Table) => {
                agent_rows.insert(a.agent_id.clone(), a.clone());
            }
            (Some(Event::Function(f)), Output::Table) => {
                function_rows.insert(f.function.clone(), f.clone());
            }
            (None, _) => {}
        }
        if output == Output::Table && last_print.elapsed() >= Duration::from_millis(500) {
            clear_screen();
            if agents {
                print!(
                    "{}",
                    render::agents_table(&agent_rows.values().cloned().collect::<Vec<_>>())
                );
            } else {
                print!(
                    "{}",
                    render::functions_table(&function_rows.values().cloned().collect::<Vec<_>>())
                );
            }
            last_print = tokio::time::Instant::now();
        }
    }
}
