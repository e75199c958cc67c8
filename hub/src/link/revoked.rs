//! Revoked agents on the link: the certificate an agent's connection presented, and a task
//! per connection that closes it (close code `IDENTITY`, reason `revoked`) once the hub's
//! revocation list comes to name that certificate.

use std::sync::Arc;

use synapse_link::close_code;

use super::LinkContext;

/// The DER leaf certificate the peer of `connection` presented.
pub(super) fn leaf_certificate(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let certs = connection
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|c| c.to_vec())
}

/// Closes `connection` when the revocation list comes to name its certificate.
pub(super) async fn cut_off_when_revoked(
    context: Arc<LinkContext>,
    connection: quinn::Connection,
    mut changes: tokio::sync::watch::Receiver<u64>,
) {
    let Some(leaf) = leaf_certificate(&connection) else {
        return;
    };
    loop {
        tokio::select! {
            _ = connection.closed() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        if let Some(how) = context.revocations.revoked(&leaf) {
            tracing::warn!(
                peer = %connection.remote_address(),
                revoked = how,
                "link closed: certificate revoked"
            );
            connection.close(close_code::IDENTITY.into(), b"revoked");
            return;
        }
    }
}
