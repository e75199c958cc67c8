//! Who may call what on the console. Every RPC the console serves is classified here, by its
//! gRPC path: `Read` RPCs are open to operators and viewers, `Mutate` RPCs (anything that
//! changes the fleet or the hub's state) to operators only, and are audited with a short
//! summary of their arguments. A path not listed is refused to everyone; a test checks that
//! every method of every served service (from the proto descriptors) is listed, so a new RPC
//! cannot be served unclassified.
//!
//! Viewers may read the audit log: it shows no more than the rollouts' history already shows
//! them (who did what), plus peer addresses and refused attempts.

use prost::Message;
use synapse_link::identity::Role;
use synapse_proto::console::v1::{RolloutRef, StartRolloutRequest};

/// What an RPC does to the hub.
#[derive(Clone, Copy)]
pub enum Access {
    /// Reads only: operators and viewers.
    Read,
    /// Changes state: operators only, audited; the function summarises the request message.
    Mutate(fn(&[u8]) -> String),
}

impl Access {
    pub fn is_mutation(&self) -> bool {
        matches!(self, Access::Mutate(_))
    }
}

use Access::{Mutate, Read};

/// Every RPC served on the console port, by gRPC path.
pub const RULES: &[(&str, Access)] = &[
    ("/synapse.console.v1.Console/ListAgents", Read),
    ("/synapse.console.v1.Console/GetAgent", Read),
    ("/synapse.console.v1.Console/ListFunctions", Read),
    ("/synapse.console.v1.Console/FunctionStats", Read),
    ("/synapse.console.v1.Console/Watch", Read),
    ("/synapse.console.v1.Console/ListAudit", Read),
    ("/synapse.console.v1.Rollouts/Start", Mutate(start_rollout)),
    ("/synapse.console.v1.Rollouts/Status", Read),
    ("/synapse.console.v1.Rollouts/Pause", Mutate(rollout_ref)),
    ("/synapse.console.v1.Rollouts/Resume", Mutate(rollout_ref)),
    ("/synapse.console.v1.Rollouts/Abort", Mutate(rollout_ref)),
    ("/synapse.console.v1.Rollouts/Promote", Mutate(rollout_ref)),
    ("/synapse.console.v1.Rollouts/History", Read),
    ("/synapse.console.v1.Learning/ListModels", Read),
    ("/synapse.console.v1.Learning/GetModel", Read),
    ("/synapse.console.v1.Learning/ListRounds", Read),
    ("/synapse.console.v1.Placement/Show", Read),
    ("/synapse.console.v1.Placement/Explain", Read),
    ("/synapse.console.v1.Placement/History", Read),
    ("/grpc.health.v1.Health/Check", Read),
    ("/grpc.health.v1.Health/Watch", Read),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Read,
    ),
];

/// The class of the RPC at `path`, if it is classified.
pub fn classify(path: &str) -> Option<Access> {
    RULES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, access)| *access)
}

/// Whether `role` may make a call of class `access`; the refusal finishes a sentence that
/// starts with the caller's identity.
pub fn permit(role: Role, access: Access) -> Result<(), &'static str> {
    match (role, access) {
        (Role::Operator, _) | (Role::Viewer, Read) => Ok(()),
        (Role::Viewer, Mutate(_)) => Err(
            "is a viewer certificate, which may only read: this call changes state and needs an \
             operator certificate",
        ),
        (Role::Hub | Role::Agent, _) => Err("is not an operator or viewer certificate"),
    }
}

/// One method of a served gRPC service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// `/package.Service/Method`.
    pub path: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// Descriptors of every service the console port serves: the console's packages, health and
/// reflection.
pub fn served_descriptor_sets() -> [&'static [u8]; 3] {
    [
        synapse_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ]
}

/// The few fields of `google.protobuf.FileDescriptorSet` that name services and methods.
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileSet {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<File>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct File {
        #[prost(string, tag = "2")]
        pub package: String,
        #[prost(message, repeated, tag = "6")]
        pub service: Vec<Service>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Service {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, repeated, tag = "2")]
        pub method: Vec<Method>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Method {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(bool, tag = "5")]
        pub client_streaming: bool,
        #[prost(bool, tag = "6")]
        pub server_streaming: bool,
    }
}

/// Every method of every service in an encoded `FileDescriptorSet`.
pub fn methods(encoded: &[u8]) -> Result<Vec<Method>, prost::DecodeError> {
    let set = descriptor::FileSet::decode(encoded)?;
    let mut out = Vec::new();
    for file in set.file {
        for service in file.service {
            for method in service.method {
                out.push(Method {
                    path: format!("/{}.{}/{}", file.package, service.name, method.name),
                    client_streaming: method.client_streaming,
                    server_streaming: method.server_streaming,
                });
            }
        }
    }
    Ok(out)
}

/// Every method the console port serves.
pub fn served_methods() -> Vec<Method> {
    served_descriptor_sets()
        .into_iter()
        .flat_map(|set| methods(set).expect("the built-in descriptors decode"))
        .collect()
}

const MAX_FIELD: usize = 64;

/// An untrusted string for a summary: quoted, control characters escaped, cut to 64 chars.
fn field(text: &str) -> String {
    let cut: String = text.chars().take(MAX_FIELD).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn start_rollout(bytes: &[u8]) -> String {
    match StartRolloutRequest::decode(bytes) {
        Ok(r) => {
            let mut parts = vec![
                format!("target={}", field(&r.target)),
                format!("version={}", field(&r.version)),
            ];
            if !r.sha256.is_empty() {
                parts.push(format!("sha256={}", field(&r.sha256)));
            }
            if !r.payload.is_empty() {
                parts.push(format!("payload={}B", r.payload.len()));
            }
            if !r.tiers.is_empty() || !r.labels.is_empty() || !r.hosts.is_empty() {
                parts.push(format!(
                    "selector=tiers:{} labels:{} hosts:{}",
                    r.tiers.len(),
                    r.labels.len(),
                    r.hosts.len()
                ));
            }
            if !r.steps.is_empty() {
                let steps: Vec<String> = r.steps.iter().take(8).map(|s| field(s)).collect();
                parts.push(format!("steps=[{}]", steps.join(",")));
            }
            if r.bake_ms != 0 {
                parts.push(format!("bake_ms={}", r.bake_ms));
            }
            if !r.reason.is_empty() {
                parts.push(format!("reason={}", field(&r.reason)));
            }
            parts.join(" ")
        }
        Err(e) => format!("undecodable request ({e})"),
    }
}

fn rollout_ref(bytes: &[u8]) -> String {
    match RolloutRef::decode(bytes) {
        Ok(r) => {
            let mut parts = Vec::new();
            if !r.id.is_empty() {
                parts.push(format!("id={}", field(&r.id)));
            }
            if !r.target.is_empty() {
                parts.push(format!("target={}", field(&r.target)));
            }
            if !r.reason.is_empty() {
                parts.push(format!("reason={}", field(&r.reason)));
            }
            parts.join(" ")
        }
        Err(e) => format!("undecodable request ({e})"),
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
