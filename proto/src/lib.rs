//! Generated wire types of SynapseStream.
//!
//! - [`link::v1`]: frames between an agent and the hub on a QUIC stream (ALPN `synapse/1`).
//! - [`console::v1`]: the operators' gRPC console of the hub.
//!
//! [`FILE_DESCRIPTOR_SET`] holds both packages' descriptors for gRPC server reflection.

pub mod link {
    pub mod v1 {
        tonic::include_proto!("synapse.link.v1");
    }
}

pub mod console {
    pub mod v1 {
        tonic::include_proto!("synapse.console.v1");
    }
}

/// Encoded `FileDescriptorSet` of every package in this crate.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/synapse_descriptor.bin"));
