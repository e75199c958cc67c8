//! The console's gate, in front of every service on the console port (an axum middleware over
//! the gRPC routes): it reads the caller's certificate from the TLS connection, refuses a
//! revoked one (`UNAUTHENTICATED`), refuses an RPC the caller's role may not make
//! (`PERMISSION_DENIED`, see [`super::policy`]), and audits every call that changes state
//! (with its outcome) and every refusal.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use synapse_link::identity::PeerIdentity;
use synapse_proto::console::v1::AuditEntry;
use tonic::{
    Code, Status,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use super::{
    audit::AuditLog,
    policy::{self, Access},
};
use crate::certs::revocation::Revocations;

/// Largest request of a state-changing call read for its summary (4 MiB is tonic's own limit
/// on a decoded message).
const MAX_MUTATION_BYTES: usize = (4 << 20) + 5;

/// What the gate needs: the revocation list in force and the audit log.
#[derive(Clone)]
pub struct ConsoleAccess {
    pub revocations: Revocations,
    pub audit: Arc<AuditLog>,
}

/// `OK`, `PERMISSION_DENIED`, ... as gRPC names codes.
pub fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    if code == Code::Ok { "OK".into() } else { out }
}

/// The message of a gRPC frame (`flag`, `length`, message), summarised by `summarise`.
fn summarise(bytes: &[u8], summarise: fn(&[u8]) -> String) -> String {
    match bytes {
        [] => "empty request".into(),
        [0, a, b, c, d, rest @ ..] => {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            match rest.get(..len) {
                Some(message) => summarise(message),
                None => "truncated gRPC frame".into(),
            }
        }
        [1, ..] => "compressed request (not summarised)".into(),
        _ => "malformed gRPC frame".into(),
    }
}

/// Checks the caller against the revocation list and the policy.
fn decide(
    access: &ConsoleAccess,
    leaf: Option<&[u8]>,
    identity: Option<&PeerIdentity>,
    class: Option<Access>,
    path: &str,
) -> Result<(), Status> {
    let leaf = leaf.ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    if let Some(how) = access.revocations.revoked(leaf) {
        let who = identity.map_or_else(|| "the certificate".to_owned(), |i| i.to_string());
        return Err(Status::unauthenticated(format!(
            "{who} is revoked ({how} is on the hub's revocation list)"
        )));
    }
    let identity = match identity {
        Some(identity) => identity,
        None => {
            let e = PeerIdentity::from_cert_der(leaf).err();
            return Err(Status::permission_denied(format!(
                "certificate identity: {}",
                e.map_or_else(|| "unreadable".to_owned(), |e| e.to_string())
            )));
        }
    };
    let class = class.ok_or_else(|| {
        Status::permission_denied(format!(
            "{path} is not classified in the console's access policy; refused to every role"
        ))
    })?;
    policy::permit(identity.role, class)
        .map_err(|reason| Status::permission_denied(format!("{identity} {reason}")))
}

/// The middleware: see the module comment.
pub async fn gate(State(access): State<ConsoleAccess>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let info = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .cloned();
    let peer = info
        .as_ref()
        .and_then(|i| i.get_ref().remote_addr())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let leaf = info
        .as_ref()
        .and_then(|i| i.peer_certs())
        .and_then(|certs| certs.first().cloned());
    let identity = leaf
        .as_ref()
        .and_then(|der| PeerIdentity::from_cert_der(der.as_ref()).ok());
    let class = policy::classify(&path);

    // A state-changing call's single request message is read to summarise it.
    let (request, summary) = match class {
        Some(Access::Mutate(summariser)) => {
            let (parts, body) = request.into_parts();
            match axum::body::to_bytes(body, MAX_MUTATION_BYTES).await {
                Ok(bytes) => {
                    let summary = summarise(&bytes, summariser);
                    (Request::from_parts(parts, Body::from(bytes)), summary)
                }
                Err(e) => {
                    let status = Status::resource_exhausted(format!("request unreadable: {e}"));
                    return refuse(&access, entry(&identity, &peer, &path, ""), status).await;
                }
            }
        }
        _ => (request, String::new()),
    };
    let audit_entry = entry(&identity, &peer, &path, &summary);
    if let Err(status) = decide(
        &access,
        leaf.as_ref().map(|d| d.as_ref()),
        identity.as_ref(),
        class,
        &path,
    ) {
        return refuse(&access, audit_entry, status).await;
    }
    if !class.is_some_and(|c| c.is_mutation()) {
        return next.run(request).await;
    }
    // The call and its audit run on their own task: a client that goes away mid-call cannot
    // leave a change made but unaudited.
    let task = tokio::spawn(async move {
        let response = next.run(request).await;
        let (code, message) = outcome(&response);
        let mut audit_entry = audit_entry;
        audit_entry.outcome = code_name(code);
        audit_entry.message = message;
        tracing::info!(
            caller = format!("{}/{}", audit_entry.role, audit_entry.name),
            peer,
            rpc = path,
            summary = audit_entry.summary,
            outcome = audit_entry.outcome,
            "console call"
        );
        access.audit.record(audit_entry).await;
        response
    });
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "console call task failed");
        Status::internal("console call failed").into_http::<Body>()
    })
}

/// The status of a unary call: one that failed answers with its status in the headers
/// (trailers-only); one that succeeded sends its status in the trailers, after the message.
fn outcome(response: &Response) -> (Code, String) {
    let Some(value) = response.headers().get("grpc-status") else {
        return (Code::Ok, String::new());
    };
    let code = value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    let message = response
        .headers()
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    (code, message)
}

fn entry(identity: &Option<PeerIdentity>, peer: &str, path: &str, summary: &str) -> AuditEntry {
    AuditEntry {
        role: identity
            .as_ref()
            .map(|i| i.role.to_string())
            .unwrap_or_default(),
        name: identity
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_default(),
        peer: peer.to_owned(),
        rpc: path.to_owned(),
        summary: summary.to_owned(),
        ..Default::default()
    }
}

async fn refuse(access: &ConsoleAccess, mut entry: AuditEntry, status: Status) -> Response {
    tracing::warn!(
        caller = format!("{}/{}", entry.role, entry.name),
        peer = entry.peer,
        rpc = entry.rpc,
        code = ?status.code(),
        message = status.message(),
        "console call refused"
    );
    entry.outcome = code_name(status.code());
    entry.message = status.message().to_owned();
    entry.refused = true;
    access.audit.record_refusal(entry).await;
    status.into_http::<Body>()
}

/// gRPC percent-encodes `grpc-message`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }

    #[test]
    fn frames_are_unwrapped_before_summarising() {
        fn len(message: &[u8]) -> String {
            message.len().to_string()
        }
        assert_eq!(summarise(&[0, 0, 0, 0, 2, 7, 7], len), "2");
        assert_eq!(summarise(&[0, 0, 0, 0, 9, 7], len), "truncated gRPC frame");
        assert_eq!(summarise(&[], len), "empty request");
        assert_eq!(percent_decode("no%20such%2"), "no such%2");
    }
}
