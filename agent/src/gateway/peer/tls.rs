//! TLS between agents' gateways: both sides present their agent certificate — the one their
//! link to the hub uses — and accept only an agent certificate of the fleet: one that chains
//! to the fleet CA (`[link] ca`) and carries a `synapse://agent/NAME` identity. A hub's or an
//! operator's certificate, one of another CA, or none at all ends the handshake.
//!
//! The fleet CA issues agent certificates for client authentication (their only extended key
//! usage; they name no host), so a certificate the peer listener presents is checked the way
//! the hub checks an agent's: its chain and its `clientAuth` usage, then its identity. The
//! forwarding side also requires the identity's name to be the agent placement named
//! ([`super::client`]), so an agent cannot answer for another.

use std::{path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use synapse_link::{
    identity::{PeerIdentity, Role},
    tls::{TlsError, load_certs, load_key},
};

/// ALPN of the peer link: HTTP/1.1 inside TLS.
const ALPN: &[u8] = b"http/1.1";

/// The TLS configurations of the peer link, from the agent's link material.
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl PeerTls {
    /// Both configurations: `ca` the fleet CA, `cert` and `key` this agent's certificate.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in load_certs(ca)? {
            roots.add(c)?;
        }
        let fleet =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
        let agents = Arc::new(AgentsOnly { fleet });
        let certs = load_certs(cert)?;
        let key = load_key(key)?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(agents.clone())
            .with_single_cert(certs.clone(), key.clone_key())?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(agents)
            .with_client_auth_cert(certs, key)?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Self {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// The identity of an agent certificate, or why it is not one.
pub fn agent_of(cert: &CertificateDer<'_>) -> Result<PeerIdentity, String> {
    let identity = PeerIdentity::from_cert_der(cert).map_err(|e| e.to_string())?;
    if identity.role != Role::Agent {
        return Err(format!("{identity} is not an agent's certificate"));
    }
    Ok(identity)
}

/// Accepts the fleet's agent certificates only, on either side of the handshake.
#[derive(Debug)]
struct AgentsOnly {
    /// Chains to the fleet CA, for client authentication.
    fleet: Arc<dyn ClientCertVerifier>,
}

impl AgentsOnly {
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        self.fleet
            .verify_client_cert(end_entity, intermediates, now)?;
        agent_of(end_entity).map_err(|why| {
            tracing::info!("peer certificate refused: {why}");
            Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
        })?;
        Ok(())
    }
}

impl ClientCertVerifier for AgentsOnly {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.fleet.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.verify(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.fleet.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.fleet.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.fleet.supported_verify_schemes()
    }
}

impl ServerCertVerifier for AgentsOnly {
    /// The chain and the role; the name is the caller's to compare with the agent it meant to
    /// reach (agent certificates name no host, so `server_name` is not looked at).
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.verify(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.fleet.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.fleet.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.fleet.supported_verify_schemes()
    }
}
