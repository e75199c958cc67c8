//! What the hub takes of an agent's own link frames before it keeps or shows anything of
//! them: a hello's labels, version and capacity, and a heartbeat's outbox figures. Telemetry
//! has its own checks (`registry::intake`), as do the subsystems' frames (placement's demand
//! reports, rollouts' running versions, federation's gradients and model reports).
//!
//! A hello that fails is refused with its reason (the agent's configuration checks the same
//! rules, so a configured agent never meets this); a heartbeat that fails is answered as
//! usual — liveness does not depend on it — but its figures are neither kept nor exported.

use synapse_link::names::{is_version, labels_refusal};
use synapse_proto::link::v1::{Heartbeat, Hello};

/// The most CPUs an agent may declare.
pub const MAX_CPUS: u32 = 1 << 16;

/// The most memory an agent may declare: 1 PiB.
pub const MAX_MEMORY_BYTES: u64 = 1 << 50;

/// The largest outbox figure a heartbeat may carry (the metrics that export them are signed).
pub const MAX_OUTBOX_FIGURE: u64 = i64::MAX as u64;

/// Why `hello` cannot be taken (its identity, tier and link versions are checked apart).
pub fn hello_refusal(hello: &Hello) -> Option<String> {
    if let Some(reason) = labels_refusal(hello.labels.iter()) {
        return Some(format!("hello: {reason}"));
    }
    if !is_version(&hello.version) {
        return Some(format!(
            "hello: version {:?} is not at most {} visible characters",
            synapse_link::names::printable(&hello.version, 40),
            synapse_link::names::MAX_VERSION
        ));
    }
    if hello.link_versions.len() > 64 {
        return Some(format!(
            "hello: {} link versions (at most 64)",
            hello.link_versions.len()
        ));
    }
    let capacity = hello.capacity.unwrap_or_default();
    if capacity.cpus > MAX_CPUS {
        return Some(format!(
            "hello: {} CPUs (at most {MAX_CPUS})",
            capacity.cpus
        ));
    }
    if capacity.memory_bytes > MAX_MEMORY_BYTES {
        return Some(format!(
            "hello: {} bytes of memory (at most {MAX_MEMORY_BYTES})",
            capacity.memory_bytes
        ));
    }
    None
}

/// Why `beat`'s figures cannot be kept.
pub fn heartbeat_refusal(beat: &Heartbeat) -> Option<String> {
    [
        ("outbox_pending", beat.outbox_pending),
        ("outbox_dropped", beat.outbox_dropped),
        ("outbox_lag_ms", beat.outbox_lag_ms),
    ]
    .into_iter()
    .find(|(_, v)| *v > MAX_OUTBOX_FIGURE)
    .map(|(what, v)| format!("heartbeat: {what} {v} is over {MAX_OUTBOX_FIGURE}"))
}

#[cfg(test)]
mod tests {
    use synapse_proto::link::v1::Capacity;

    use super::*;

    fn hello() -> Hello {
        Hello {
            agent_id: "edge-1".into(),
            version: "0.1.0".into(),
            link_versions: vec![1],
            capacity: Some(Capacity {
                cpus: 2,
                memory_bytes: 1 << 34,
            }),
            labels: [("region".to_string(), "eu".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_hello_is_taken() {
        assert_eq!(hello_refusal(&hello()), None);
    }

    #[test]
    fn hellos_with_forged_or_oversized_fields_are_refused() {
        type Forge = Box<dyn Fn(&mut Hello)>;
        let cases: Vec<Forge> = vec![
            Box::new(|h| {
                h.labels.insert("zone\n".into(), "a".into());
            }),
            Box::new(|h| {
                h.labels.insert("zone".into(), "a\u{1b}[2Jb".into());
            }),
            Box::new(|h| {
                for i in 0..100 {
                    h.labels.insert(format!("k{i}"), String::new());
                }
            }),
            Box::new(|h| h.version = "0.1.0\nagent edge-2 connected".into()),
            Box::new(|h| h.version = "9".repeat(1000)),
            Box::new(|h| h.link_versions = vec![1; 1000]),
            Box::new(|h| h.capacity.as_mut().unwrap().cpus = u32::MAX),
            Box::new(|h| h.capacity.as_mut().unwrap().memory_bytes = u64::MAX),
        ];
        for (i, forge) in cases.iter().enumerate() {
            let mut h = hello();
            forge(&mut h);
            assert!(hello_refusal(&h).is_some(), "case {i} was taken");
        }
    }

    #[test]
    fn heartbeat_figures_that_would_wrap_are_refused() {
        assert_eq!(heartbeat_refusal(&Heartbeat::default()), None);
        for field in 0..3 {
            let mut beat = Heartbeat::default();
            let v = [
                &mut beat.outbox_pending,
                &mut beat.outbox_dropped,
                &mut beat.outbox_lag_ms,
            ];
            *v.into_iter().nth(field).unwrap() = u64::MAX;
            assert!(heartbeat_refusal(&beat).is_some(), "field {field}");
        }
    }
}
