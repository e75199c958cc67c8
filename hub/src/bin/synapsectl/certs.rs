//! `synapsectl certs init|issue|revoke`.

use std::{net::IpAddr, path::PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use synapse_hub::certs::{self, IssueRequest};
use synapse_link::identity::Role;

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Hub,
    Agent,
    /// May use every console RPC.
    Operator,
    /// May use the console's read-only RPCs only.
    Viewer,
}

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create a CA (ca.pem, ca.key with mode 0600) in DIR.
    Init { dir: PathBuf },
    /// Issue a certificate signed by the CA, as NAME.pem and NAME.key (mode 0600).
    Issue {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Identity: the agent id, the hub's DNS name, or the operator's name.
        #[arg(long)]
        name: String,
        /// Directory holding ca.pem and ca.key.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        /// Where to write the certificate and key (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Extra DNS name of a hub certificate (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// Extra IP address of a hub certificate (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
    },
    /// Append a certificate to the hub's revocation list (`[console] revoked`), by serial
    /// number, or by SHA-256 fingerprint with --fingerprint. The hub re-reads the list within
    /// a second.
    Revoke {
        /// The certificate (PEM) to revoke.
        cert: PathBuf,
        /// The revocation list (created if missing).
        #[arg(long, default_value = "/etc/synapse/revoked.txt")]
        list: PathBuf,
        #[arg(long)]
        fingerprint: bool,
    },
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init { dir } => {
            let ca = certs::init(&dir)
                .with_context(|| format!("cannot create a CA in {}", dir.display()))?;
            println!(
                "CA certificate: {}\nCA key:         {}",
                ca.cert.display(),
                ca.key.display()
            );
        }
        CertsCommand::Issue {
            role,
            name,
            ca_dir,
            out,
            dns,
            ip,
        } => {
            let role = match role {
                RoleArg::Hub => Role::Hub,
                RoleArg::Agent => Role::Agent,
                RoleArg::Operator => Role::Operator,
                RoleArg::Viewer => Role::Viewer,
            };
            let out = out.unwrap_or_else(|| ca_dir.clone());
            let request = IssueRequest {
                role,
                name: name.clone(),
                dns,
                ips: ip,
            };
            let issued = certs::issue(&ca_dir, &out, &request).with_context(|| {
                format!("cannot issue a {} certificate for {name}", role.as_str())
            })?;
            println!(
                "certificate: {}\nkey:         {}",
                issued.cert.display(),
                issued.key.display()
            );
        }
        CertsCommand::Revoke {
            cert,
            list,
            fingerprint,
        } => {
            let line = certs::revoke(&list, &cert, fingerprint)?;
            println!("{}: {line}", list.display());
        }
    }
    Ok(())
}
