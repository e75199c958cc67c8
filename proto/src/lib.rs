//! Generated wire types of SynapseStream.
//!
//! - [`link::v1`]: frames between an agent and the hub on a QUIC stream (ALPN `synapse/1`).
//! - [`console::v1`]: the operators' gRPC console of the hub.
//!
//! [`FILE_DESCRIPTOR_SET`] holds both packages' descriptors for gRPC server reflection.

pub mod link {
    pub mod v1 {
        tonic::include_proto!("synapse.link.v1");

        impl frame::Body {
            /// The frame's kind, as named in logs, metrics and refusals.
            pub fn kind(&self) -> &'static str {
                match self {
                    Self::Hello(_) => "hello",
                    Self::Welcome(_) => "welcome",
                    Self::Heartbeat(_) => "heartbeat",
                    Self::Telemetry(_) => "telemetry",
                    Self::Ack(_) => "ack",
                    Self::Error(_) => "error",
                    Self::DesiredVersions(_) => "desired_versions",
                    Self::RunningVersions(_) => "running_versions",
                    Self::RoundOpen(_) => "round_open",
                    Self::GradientReport(_) => "gradient_report",
                    Self::ModelOffer(_) => "model_offer",
                    Self::ModelChunk(_) => "model_chunk",
                    Self::ModelReport(_) => "model_report",
                    Self::DemandReport(_) => "demand_report",
                    Self::PlacementAssignment(_) => "placement_assignment",
                }
            }

            /// Frames of the link itself (handshake, telemetry, acks, heartbeats, refusals);
            /// every other frame is a control frame of a subsystem.
            pub fn is_link(&self) -> bool {
                matches!(
                    self,
                    Self::Hello(_)
                        | Self::Welcome(_)
                        | Self::Heartbeat(_)
                        | Self::Telemetry(_)
                        | Self::Ack(_)
                        | Self::Error(_)
                )
            }
        }
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
