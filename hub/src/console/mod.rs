//! The operators' console: `synapse.console.v1.Console` over gRPC with TLS, where every
//! client must present a certificate from the fleet's CA. Operator certificates may call
//! everything, viewer certificates the read-only RPCs ([`policy`]); the gate ([`guard`]) in
//! front of every service refuses revoked certificates and audits state changes and refusals
//! ([`audit`]). `grpc.health.v1` and server reflection are served alongside, so `grpcurl`
//! works with an operator or viewer certificate.

pub mod audit;
mod auth;
pub mod guard;
pub mod policy;
mod service;
mod watch;

use std::{net::SocketAddr, path::Path};

use synapse_proto::console::v1::console_server::ConsoleServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::registry::Registry;
pub use auth::require_console_role;
pub use guard::ConsoleAccess;
pub use service::ConsoleService;
use tonic::service::Routes;
pub use tonic::service::RoutesBuilder;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("console transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// TLS material of the console, all PEM.
pub struct ConsoleTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

fn read(path: &Path) -> Result<Vec<u8>, ConsoleError> {
    std::fs::read(path).map_err(|source| ConsoleError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Serves the console on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: ConsoleTls<'_>,
    registry: Registry,
    access: ConsoleAccess,
    shutdown: CancellationToken,
) -> Result<(), ConsoleError> {
    serve_with(
        listener,
        tls,
        registry,
        RoutesBuilder::default(),
        access,
        shutdown,
    )
    .await
}

/// Serves the console and the subsystems' services in `more` (each wrapped in
/// [`require_console_role`] by its subsystem), all behind the gate, on `listener` until
/// `shutdown`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: ConsoleTls<'_>,
    registry: Registry,
    mut more: RoutesBuilder,
    access: ConsoleAccess,
    shutdown: CancellationToken,
) -> Result<(), ConsoleError> {
    let tls_config = ServerTlsConfig::new()
        .identity(Identity::from_pem(read(tls.cert)?, read(tls.key)?))
        .client_ca_root(Certificate::from_pem(read(tls.ca)?));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ConsoleServer<ConsoleService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(synapse_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let console = ConsoleServer::with_interceptor(
        ConsoleService::new(registry, access.audit.clone(), access.revocations.clone()),
        auth::require_console_role,
    );
    more.add_service(health_service)
        .add_service(reflection)
        .add_service(console);
    let gated = more
        .routes()
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(access, guard::gate));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    Server::builder()
        .tls_config(tls_config)?
        .add_routes(Routes::from(gated))
        .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// Address a console listener is bound to, for logs.
pub fn describe(addr: SocketAddr) -> String {
    format!("https://{addr}")
}
