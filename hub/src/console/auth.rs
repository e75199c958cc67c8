//! The console is for operators and viewers: the TLS layer already refused clients without a
//! certificate from the fleet's CA; this interceptor, around each console service, refuses
//! certificates of other roles (an agent's certificate cannot read the fleet). What each role
//! may call, revocation and auditing are the gate's ([`super::guard`]), in front of every
//! service.

use synapse_link::identity::{PeerIdentity, Role};
use tonic::{Request, Status};

pub fn require_console_role(request: Request<()>) -> Result<Request<()>, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let identity = PeerIdentity::from_cert_der(leaf.as_ref())
        .map_err(|e| Status::permission_denied(format!("certificate identity: {e}")))?;
    if !matches!(identity.role, Role::Operator | Role::Viewer) {
        return Err(Status::permission_denied(format!(
            "{identity} is not an operator or viewer certificate"
        )));
    }
    Ok(request)
}
