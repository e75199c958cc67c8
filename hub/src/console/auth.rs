//! Only operators drive the console: the TLS layer already refused clients without a
//! certificate from the fleet's CA; this interceptor refuses certificates of other roles
//! (an agent's certificate cannot read the fleet).

use synapse_link::identity::{PeerIdentity, Role};
use tonic::{Request, Status};

pub fn require_operator(request: Request<()>) -> Result<Request<()>, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let identity = PeerIdentity::from_cert_der(leaf.as_ref())
        .map_err(|e| Status::permission_denied(format!("certificate identity: {e}")))?;
    if identity.role != Role::Operator {
        return Err(Status::permission_denied(format!(
            "{identity} is not an operator certificate"
        )));
    }
    Ok(request)
}
