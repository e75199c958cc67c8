//! The link between a SynapseStream agent and its hub: QUIC with mutual TLS, ALPN
//! [`ALPN`], carrying length-delimited `synapse.link.v1.Frame` messages.
//!
//! - [`codec`]: the frame format (pure) and its reading/writing on QUIC streams.
//! - [`identity`]: who a certificate speaks for (`synapse://ROLE/NAME` in its SAN).
//! - [`names`]: what a function's name may be, on both ends of the link.
//! - [`tls`]: quinn client and server configurations that trust one CA only.
//! - [`outbox`]: the agent's durable, bounded queue of telemetry batches (sled).
//! - [`backoff`]: jittered exponential reconnect delays.
//! - [`client`]: the agent side of the link, driven by [`client::run`].

pub mod backoff;
pub mod client;
pub mod codec;
pub mod identity;
pub mod names;
pub mod outbox;
pub mod tls;

/// The QUIC application protocol of the link.
pub const ALPN: &[u8] = b"synapse/1";

/// Link protocol versions this build speaks, newest last.
pub const LINK_VERSIONS: &[u32] = &[1];

/// QUIC application close codes used on the link.
pub mod close_code {
    /// Orderly shutdown of either side.
    pub const SHUTDOWN: u32 = 0;
    /// The peer broke the protocol (malformed or oversized frame, out-of-order frame).
    pub const PROTOCOL: u32 = 1;
    /// No common link version.
    pub const VERSION: u32 = 2;
    /// The certificate does not allow what the peer claims.
    pub const IDENTITY: u32 = 3;
    /// A newer connection of the same agent replaced this one.
    pub const REPLACED: u32 = 4;
}
