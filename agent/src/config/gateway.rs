//! The `[gateway]` section: where the gateway listens, its limits on clients (what the
//! gateway is given of them), the peer listener and the bearer tokens, and the checks of all
//! of them that `check-config` shares with the agent's start.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address of the invocation gateway (`POST /v1/functions/{name}/invoke`).
    /// Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Threads serving the gateway; 0 means one per CPU. Default 0.
    pub threads: usize,
    /// How long a client may take to send a request's head, counted from when the gateway
    /// waits for it (a new connection, or the end of the previous answer on a kept-alive
    /// one); past it the connection is closed. Between 1 ms and 1 h. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    // Limits on clients. Past `max_connections` held (1 to 1,000,000; default 10,000) new
    // connections get 503 and are closed. A request body whose next byte takes longer than
    // `body_idle_timeout` (1 ms to 1 h; default 30 s), or whose average rate falls under
    // `body_min_rate` bytes/s (0, none, to 1 GiB/s; default 1024) once `body_rate_grace`
    // (1 ms to 1 h; default 10 s) has passed since its head, gets 408 and its connection closed.
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    pub body_min_rate: u64,
    #[serde(with = "humantime_serde")]
    pub body_rate_grace: Duration,
    /// Where other agents forward invocations (cross-tier placement): mutual TLS with the
    /// agent certificate of `[link]`, fleet agents only; declared to the hub as this agent's
    /// forwarding address as bound (an unspecified IP meaning the address the link comes
    /// from; port 0 a free port). Needs a `[link]`. Default none: nothing is forwarded here.
    pub peer_listen: Option<SocketAddr>,
    /// Bearer tokens per function: `NAME = ["SHA-256 of a token, 64 hex digits", ...]`
    /// (`synapse-agent hash-token`). Default none: every function is open.
    pub tokens: BTreeMap<String, Vec<String>>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let limits = crate::gateway::Limits::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            threads: 0,
            header_read_timeout: Duration::from_secs(30),
            max_connections: limits.max_connections,
            body_idle_timeout: limits.body_idle_timeout,
            body_min_rate: limits.body_min_rate,
            body_rate_grace: limits.body_rate_grace,
            peer_listen: None,
            tokens: BTreeMap::new(),
        }
    }
}

impl GatewayConfig {
    /// The limits on clients, for the gateway.
    pub fn limits(&self) -> crate::gateway::Limits {
        crate::gateway::Limits {
            max_connections: self.max_connections,
            body_idle_timeout: self.body_idle_timeout,
            body_min_rate: self.body_min_rate,
            body_rate_grace: self.body_rate_grace,
        }
    }

    /// Range checks of the limits on clients: the key and why, for the first one out of range.
    pub(super) fn check_limits(&self) -> Result<(), (String, String)> {
        let span = |key: &str, d: Duration| {
            if d < Duration::from_millis(1) || d > Duration::from_secs(3600) {
                let got = humantime::format_duration(d);
                return Err((
                    format!("gateway.{key}"),
                    format!("must be between 1ms and 1h, got {got}"),
                ));
            }
            Ok(())
        };
        span("body_idle_timeout", self.body_idle_timeout)?;
        span("body_rate_grace", self.body_rate_grace)?;
        if !(1..=1_000_000).contains(&self.max_connections) {
            let got = self.max_connections;
            return Err((
                "gateway.max_connections".into(),
                format!("must be between 1 and 1000000, got {got}"),
            ));
        }
        if self.body_min_rate > 1 << 30 {
            let got = self.body_min_rate;
            return Err((
                "gateway.body_min_rate".into(),
                format!("must be at most 1073741824 bytes/s (0: no minimum), got {got}"),
            ));
        }
        Ok(())
    }
}

impl GatewayConfig {
    /// Every check of the section: the key and why, for the first value out of range.
    /// `has_link`: the agent has a `[link]` (whose certificate the peer listener presents).
    pub(super) fn check<'a>(
        &self,
        has_link: bool,
        metrics_listen: SocketAddr,
        functions: impl Iterator<Item = &'a str> + Clone,
    ) -> Result<(), (String, String)> {
        let header = self.header_read_timeout;
        if header < Duration::from_millis(1) || header > Duration::from_secs(3600) {
            return Err((
                "gateway.header_read_timeout".into(),
                format!(
                    "must be between 1ms and 1h, got {}",
                    humantime::format_duration(header)
                ),
            ));
        }
        self.check_limits()?;
        if let Some(peer) = self.peer_listen {
            let clash = |other: SocketAddr| {
                peer.port() != 0
                    && other.port() == peer.port()
                    && (other.ip() == peer.ip()
                        || other.ip().is_unspecified()
                        || peer.ip().is_unspecified())
            };
            let why = if !has_link {
                "needs a [link]: the peer listener presents the link's agent certificate"
            } else if clash(self.listen) || clash(metrics_listen) {
                "must differ from gateway.listen and metrics.listen"
            } else {
                ""
            };
            if !why.is_empty() {
                return Err(("gateway.peer_listen".into(), why.into()));
            }
        }
        crate::gateway::auth::check_tokens(&self.tokens, functions)?;
        Ok(())
    }
}
