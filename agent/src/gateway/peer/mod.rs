//! The peer link between agents' gateways, over which cross-tier placement forwards
//! invocations (`../remote.rs`): mutual TLS with the fleet's agent certificates ([`tls`]).
//!
//! An agent with `[gateway] peer_listen` serves forwarded invocations there ([`server`]) and
//! declares that address to the hub as the one other agents forward to; the public listener
//! (`gateway.listen`) takes no forwarded invocations any more. On the peer listener the
//! forwarding agent is who its certificate says: the invocation is marked
//! `x-synapse-forwarded-by: NAME` from the verified certificate (whatever header of that
//! name came with it is dropped), is never forwarded again and does not count as this host's
//! users' demand. The forwarding side ([`client`]) connects with its own agent certificate and
//! goes on only when the other side's is the agent placement named. Without a `[link]` there
//! is no agent certificate, and no forwarding either way.

pub mod client;
pub mod server;
pub mod tls;

pub use client::PeerClient;
pub use server::PeerListener;
pub use tls::PeerTls;
