//! TLS for the link: quinn configurations where each side presents a certificate from the
//! fleet's CA and trusts that CA only. The hub requires a client certificate; the agent
//! checks the hub's name against the certificate.

use std::{path::Path, sync::Arc, time::Duration};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
};

use crate::{
    ALPN,
    identity::{IdentityError, PeerIdentity},
};

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key")]
    NoKey { path: String },
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("QUIC does not accept this TLS configuration: {0}")]
    Quic(String),
}

/// Paths of one side's TLS material, all PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// The CA that the peer's certificate must chain to.
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.display().to_string(),
        })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport settings shared by both sides.
fn transport(idle_timeout: Duration, keep_alive: Duration) -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok());
    transport.keep_alive_interval(Some(keep_alive));
    Arc::new(transport)
}

/// The hub's QUIC server configuration: requires a client certificate from `files.ca`.
pub fn server_config(
    files: &TlsFiles<'_>,
    idle_timeout: Duration,
) -> Result<quinn::ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(files.ca)?), provider())
            .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(files.cert)?, load_key(files.key)?)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(idle_timeout, idle_timeout / 3));
    Ok(config)
}

/// An agent's QUIC client configuration: trusts `files.ca` only and presents its certificate.
pub fn client_config(
    files: &TlsFiles<'_>,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, TlsError> {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(files.ca)?)
        .with_client_auth_cert(load_certs(files.cert)?, load_key(files.key)?)?;
    client_config_from(tls, idle_timeout)
}

/// A client configuration that presents no certificate (refused by the hub; used to prove it).
pub fn anonymous_client_config(
    ca: &Path,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, TlsError> {
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    client_config_from(tls, idle_timeout)
}

fn client_config_from(
    mut tls: rustls::ClientConfig,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, TlsError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(idle_timeout, idle_timeout / 3));
    Ok(config)
}

/// The identity in the certificate the peer of `connection` presented.
pub fn peer_identity(connection: &quinn::Connection) -> Result<PeerIdentity, IdentityError> {
    let certs = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(IdentityError::NoCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    PeerIdentity::from_cert_der(leaf)
}
