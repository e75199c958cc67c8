//! Cross-tier forwarding: when placement has this host keep no warm pool of a function, the
//! gateway sends its invocations to the peer listener of an agent that does (weighted by the
//! plan's shares) over the peer link — mutual TLS with the fleet's agent certificates, the
//! target proving to be the agent placement named (`peer/`) — marks the answer
//! `x-synapse-forwarded-to: AGENT`, and serves the invocation itself — cold if need be — when
//! the target cannot take it (unreachable, not that agent, no such function, no room: nothing
//! was delivered), so that placement never fails a request. Only invocations from this
//! gateway's own clients come here: one forwarded in arrives on the peer listener and is never
//! forwarded again.
//!
//! It also counts, per function, the invocations that arrive from users (not forwarded in):
//! the demand that placement reports to the hub.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hyper::{
    Method, Response, StatusCode,
    header::{HeaderName, HeaderValue},
};

use super::{
    forward::{self, Fields, ForwardError},
    peer::{PeerClient, client::resolve},
};

/// Header naming the agent an invocation was forwarded by, set by the gateway that serves it
/// from the forwarding agent's verified certificate.
pub const FORWARDED_BY: &str = "x-synapse-forwarded-by";
/// Header naming the agent that answered a forwarded invocation.
pub const FORWARDED_TO: &str = "x-synapse-forwarded-to";
/// Time to reach a target gateway before serving locally instead.
const CONNECT_TIMEOUT: Duration = super::peer::client::CONNECT_TIMEOUT;

/// Where invocations of one function go.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Served here (the default).
    Local,
    /// A `local` fraction served here, the rest forwarded to these agents' gateways, by
    /// weight (summing to 1).
    Forward { local: f64, targets: Vec<Target> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub agent: String,
    pub gateway: String,
    pub weight: f64,
}

/// Routes and user-demand counters, shared by the gateway and the placement subsystem.
pub struct Remote {
    /// The peer link's client; without it (no agent certificate) nothing is forwarded.
    peer: Option<PeerClient>,
    routes: RwLock<HashMap<String, Route>>,
    arrivals: HashMap<String, AtomicU64>,
    forwarded: HashMap<String, AtomicU64>,
    picks: AtomicU64,
}

impl Remote {
    /// Forwarding of `functions` over the peer link's client `peer`; every route starts
    /// local.
    pub fn new<'a>(
        peer: Option<PeerClient>,
        functions: impl Iterator<Item = &'a str>,
    ) -> Arc<Self> {
        let names: Vec<String> = functions.map(str::to_owned).collect();
        Arc::new(Self {
            peer,
            routes: RwLock::new(HashMap::new()),
            arrivals: names
                .iter()
                .map(|n| (n.clone(), AtomicU64::new(0)))
                .collect(),
            forwarded: names.into_iter().map(|n| (n, AtomicU64::new(0))).collect(),
            picks: AtomicU64::new(0),
        })
    }

    pub fn set_route(&self, function: &str, route: Route) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        routes.insert(function.to_owned(), route);
    }

    pub fn route(&self, function: &str) -> Route {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes.get(function).cloned().unwrap_or(Route::Local)
    }

    /// Invocations of `function` that arrived from users so far.
    pub fn arrivals(&self, function: &str) -> u64 {
        self.arrivals
            .get(function)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Invocations of `function` answered by another agent so far.
    pub fn forwarded(&self, function: &str) -> u64 {
        self.forwarded
            .get(function)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Here (`None`) or a target, by weight: a low-discrepancy sequence, so that the fractions
    /// hold over few invocations.
    fn pick<'a>(&self, local: f64, targets: &'a [Target]) -> Option<&'a Target> {
        let n = self.picks.fetch_add(1, Ordering::Relaxed);
        let at = (n as f64 * 0.618_033_988_749_895).fract();
        if at < local || targets.is_empty() {
            return None;
        }
        let mut at = (at - local) / (1.0 - local);
        for t in targets {
            if at < t.weight {
                return Some(t);
            }
            at -= t.weight;
        }
        targets.last()
    }

    /// The peer link's client, when this agent has one.
    pub fn peer(&self) -> Option<&PeerClient> {
        self.peer.as_ref()
    }

    /// The answer of another agent's gateway for an invocation from this gateway's client, or
    /// `None` to serve it here; the request's headers as parsed, so the gateway's common path
    /// builds no `http` types unless the invocation is forwarded.
    pub async fn invoke_fields(
        &self,
        function: &str,
        method: &Method,
        query: Option<&str>,
        headers: &Fields<'_>,
        body: &[u8],
        timeout: Duration,
    ) -> Option<Response<Bytes>> {
        if let Some(c) = self.arrivals.get(function) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let Route::Forward { local, targets } = self.route(function) else {
            return None;
        };
        let peer = self.peer.as_ref()?;
        let target = self.pick(local, &targets)?;
        let addr = resolve(&target.gateway).await?;
        let path = format!("/v1/functions/{function}/invoke");
        let answer = peer
            .request(
                &target.agent,
                addr,
                method,
                &path,
                query,
                headers,
                body,
                timeout + CONNECT_TIMEOUT,
            )
            .await
            .and_then(forward::Answer::into_response);
        let response = match answer {
            Ok(response) => response,
            Err(ForwardError::Connect(e)) => {
                tracing::info!(function, target = %target.agent, "forward target unreachable ({e}); serving here");
                return None;
            }
            Err(e) => {
                tracing::info!(function, target = %target.agent, "forward failed ({e}); serving here");
                return None;
            }
        };
        // Not delivered there (no such function, no room): serve here instead.
        if matches!(
            response.status(),
            StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE
        ) {
            tracing::info!(function, target = %target.agent, status = %response.status(), "forward target declined; serving here");
            return None;
        }
        if let Some(c) = self.forwarded.get(function) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let (mut parts, bytes) = response.into_parts();
        if let Ok(v) = HeaderValue::from_str(&target.agent) {
            parts
                .headers
                .insert(HeaderName::from_static(FORWARDED_TO), v);
        }
        Some(Response::from_parts(parts, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::HeaderMap;

    /// A POST of an empty body to `f` with `headers`, as the gateway's hyper path makes it.
    async fn invoke(remote: &Remote, headers: &HeaderMap) -> Option<Response<Bytes>> {
        let fields = forward::fields_of(headers);
        remote
            .invoke_fields(
                "f",
                &Method::POST,
                None,
                &fields,
                b"",
                Duration::from_secs(1),
            )
            .await
    }

    fn target(agent: &str, weight: f64) -> Target {
        Target {
            agent: agent.into(),
            gateway: "127.0.0.1:1".into(),
            weight,
        }
    }

    #[test]
    fn targets_are_picked_by_weight() {
        let remote = Remote::new(None, ["f"].into_iter());
        let targets = [target("a", 0.75), target("b", 0.25)];
        let picks: Vec<Option<String>> = (0..1000)
            .map(|_| remote.pick(0.2, &targets).map(|t| t.agent.clone()))
            .collect();
        let count = |who: Option<&str>| picks.iter().filter(|p| p.as_deref() == who).count();
        assert!(
            (190..=210).contains(&count(None)),
            "{} of 1000 here",
            count(None)
        );
        assert!(
            (590..=610).contains(&count(Some("a"))),
            "{} of 1000 to a",
            count(Some("a"))
        );
        assert!(
            (190..=210).contains(&count(Some("b"))),
            "{} of 1000 to b",
            count(Some("b"))
        );
    }

    #[tokio::test]
    async fn a_clients_invocations_count_as_demand_whatever_headers_they_carry() {
        // No agent certificate: nothing is forwarded, and every route serves here.
        let remote = Remote::new(None, ["f"].into_iter());
        remote.set_route(
            "f",
            Route::Forward {
                local: 0.0,
                targets: vec![target("cloud-1", 1.0)],
            },
        );
        assert!(invoke(&remote, &HeaderMap::new()).await.is_none());
        assert_eq!(remote.arrivals("f"), 1);
        // A header claiming the invocation was forwarded does not hide it from the demand.
        let mut headers = HeaderMap::new();
        headers.insert(FORWARDED_BY, HeaderValue::from_static("regional-1"));
        assert!(invoke(&remote, &headers).await.is_none());
        assert_eq!(remote.arrivals("f"), 2);
        assert_eq!(remote.forwarded("f"), 0);
    }
}
