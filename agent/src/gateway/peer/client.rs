//! The forwarding side of the peer link: a TLS connection to another agent's peer listener,
//! made with this agent's certificate, that goes on only when the other side proved to be
//! the agent placement named (its certificate's `synapse://agent/NAME`). Until then nothing
//! of the invocation has been sent, so any failure here leaves it to be served locally.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use hyper::Method;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::tls::{PeerTls, agent_of};
use crate::gateway::forward::{self, Fields, ForwardError};

/// Connects to other agents' peer listeners.
#[derive(Clone)]
pub struct PeerClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerClient")
    }
}

fn refused(why: String) -> ForwardError {
    ForwardError::Connect(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        why,
    ))
}

impl PeerClient {
    pub fn new(tls: &PeerTls) -> Self {
        Self {
            connector: TlsConnector::from(Arc::clone(&tls.client)),
        }
    }

    /// A connection to the peer listener of agent `agent` at `addr`, within `limit`; a
    /// [`ForwardError::Connect`] when it cannot be made or the other side is not that agent.
    pub async fn connect(
        &self,
        agent: &str,
        addr: SocketAddr,
        limit: Duration,
    ) -> Result<TlsStream<TcpStream>, ForwardError> {
        let connect = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(ForwardError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .connector
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await
                .map_err(ForwardError::Connect)?;
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or_else(|| refused("the peer presented no certificate".into()))?;
            let identity = agent_of(cert).map_err(refused)?;
            if identity.name != agent {
                return Err(refused(format!(
                    "{addr} presents {identity}, not the agent placement named ({agent})"
                )));
            }
            Ok(tls)
        };
        tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| {
                Err(ForwardError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no TLS connection to {agent} at {addr} within {limit:?}"),
                )))
            })
    }

    /// One request to agent `agent`'s peer listener at `gateway`, within `limit` in all.
    #[allow(clippy::too_many_arguments)] // the request's parts, borrowed as they lie
    pub async fn request(
        &self,
        agent: &str,
        addr: SocketAddr,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &Fields<'_>,
        body: &[u8],
        limit: Duration,
    ) -> Result<forward::Answer, ForwardError> {
        let exchange = async {
            let stream = self
                .connect(agent, addr, limit.min(CONNECT_TIMEOUT))
                .await?;
            let host = addr.to_string();
            forward::exchange_on(stream, &host, method, path, query, headers, body).await
        };
        tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or(Err(ForwardError::Timeout(limit)))
    }

    /// The body of a `GET path` from agent `agent`'s peer listener at `gateway` when it
    /// answers 200 within `limit`.
    pub async fn get(
        &self,
        agent: &str,
        gateway: &str,
        path: &str,
        limit: Duration,
    ) -> Option<Bytes> {
        let addr = resolve(gateway).await?;
        let answer = self
            .request(agent, addr, &Method::GET, path, None, &[], b"", limit)
            .await;
        match answer {
            Ok(a) if a.status == 200 => Some(a.body),
            Ok(a) => {
                tracing::debug!(agent, gateway, status = a.status, "peer GET {path}");
                None
            }
            Err(e) => {
                tracing::debug!(agent, gateway, "peer GET {path}: {e}");
                None
            }
        }
    }
}

/// Time to reach a target's peer listener and finish the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The address of a gateway as the plan gives it (`IP:PORT`, or a name to look up).
pub async fn resolve(gateway: &str) -> Option<SocketAddr> {
    if let Ok(addr) = gateway.parse() {
        return Some(addr);
    }
    match tokio::net::lookup_host(gateway).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            tracing::warn!(gateway, "cannot resolve a forward target: {e}");
            None
        }
    }
}
