//! The console's audit log, in the hub's sled store (tree `console_audit`): one
//! `AuditEntry` (protobuf) per audited call under its big-endian sequence number, flushed
//! before the call's answer leaves the hub. The newest `[console] audit_keep` entries are
//! kept; older ones are pruned as new ones come.
//!
//! Refused calls are audited too, but at most [`REFUSALS_PER_MINUTE`] per caller each
//! minute, so that a client hammering the console with a revoked or foreign-role certificate
//! cannot push the operators' actions out of the log; the next recorded refusal of that
//! caller says how many were left out (and the hub's log warns once a minute).

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prost::Message;
use synapse_proto::console::v1::AuditEntry;

/// Refused calls recorded per caller and minute.
pub const REFUSALS_PER_MINUTE: u32 = 30;
/// Entries kept when the configuration says nothing.
pub const DEFAULT_KEEP: u64 = 100_000;
/// Entries `ListAudit` returns without a limit, and at most.
pub const DEFAULT_LIST: usize = 100;
pub const MAX_LIST: usize = 10_000;
/// Callers tracked by the refusal limiter before it starts afresh.
const MAX_TRACKED: usize = 10_000;
/// Entries written between two prunes.
const PRUNE_EVERY: u64 = 64;

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Store(#[from] sled::Error),
}

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    recorded: u32,
    left_out: u64,
}

/// The audit log.
pub struct AuditLog {
    tree: sled::Tree,
    next: AtomicU64,
    keep: u64,
    refusals: Mutex<HashMap<String, Window>>,
}

impl AuditLog {
    /// Opens the log in `db`, keeping the newest `keep` entries (at least 1).
    pub fn open(db: &sled::Db, keep: u64) -> Result<Self, AuditError> {
        let tree = db.open_tree("console_audit")?;
        let next = match tree.last()? {
            Some((key, _)) => key
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0)
                .saturating_add(1),
            None => 1,
        };
        let log = Self {
            tree,
            next: AtomicU64::new(next),
            keep: keep.max(1),
            refusals: Mutex::new(HashMap::new()),
        };
        log.prune()?;
        Ok(log)
    }

    fn prune(&self) -> Result<(), sled::Error> {
        let next = self.next.load(Ordering::SeqCst);
        let first_kept = next.saturating_sub(self.keep);
        for key in self.tree.range(..first_kept.to_be_bytes()).keys() {
            self.tree.remove(key?)?;
        }
        Ok(())
    }

    /// Stores `entry` (its sequence and time are set here) and flushes it.
    pub async fn record(&self, mut entry: AuditEntry) {
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        entry.seq = seq;
        entry.unix_ms = crate::registry::now_ms();
        let stored = self
            .tree
            .insert(seq.to_be_bytes(), entry.encode_to_vec())
            .map(|_| ());
        let pruned = if seq.is_multiple_of(PRUNE_EVERY) {
            self.prune()
        } else {
            Ok(())
        };
        let flushed = self.tree.flush_async().await.map(|_| ());
        if let Err(e) = stored.and(pruned).and(flushed) {
            tracing::error!(
                error = %e,
                rpc = entry.rpc,
                caller = format!("{}/{}", entry.role, entry.name),
                outcome = entry.outcome,
                "audit store failed; the entry may be lost"
            );
        }
    }

    /// Records a refused call, within the caller's allowance (see the module comment).
    pub async fn record_refusal(&self, mut entry: AuditEntry) {
        let caller = format!("{}/{}@{}", entry.role, entry.name, entry.peer);
        let key = format!("{}/{}", entry.role, entry.name);
        let left_out = {
            let mut windows = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if windows.len() >= MAX_TRACKED && !windows.contains_key(&key) {
                windows.clear();
            }
            let window = windows.entry(key).or_default();
            let now = Instant::now();
            if window
                .started
                .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(60))
            {
                if window.left_out > 0 {
                    tracing::warn!(
                        caller,
                        left_out = window.left_out,
                        "refused console calls not audited (over {REFUSALS_PER_MINUTE} a minute)"
                    );
                }
                window.started = Some(now);
                window.recorded = 0;
            }
            if window.recorded >= REFUSALS_PER_MINUTE {
                window.left_out += 1;
                return;
            }
            window.recorded += 1;
            std::mem::take(&mut window.left_out)
        };
        if left_out > 0 {
            entry.message = format!(
                "{} ({left_out} earlier refusals of this caller not recorded)",
                entry.message
            );
        }
        self.record(entry).await;
    }

    /// Up to `limit` entries (0: [`DEFAULT_LIST`]; at most [`MAX_LIST`]), newest first. An
    /// entry that does not decode is logged and left out.
    pub fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let limit = match limit {
            0 => DEFAULT_LIST,
            n => n.min(MAX_LIST),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self.tree.iter().rev() {
            let (key, value) = item?;
            match AuditEntry::decode(value.as_ref()) {
                Ok(entry) => out.push(entry),
                Err(e) => {
                    tracing::error!(key = ?key.as_ref(), error = %e, "audit entry unreadable")
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> AuditEntry {
        AuditEntry {
            role: "viewer".into(),
            name: name.into(),
            rpc: "/synapse.console.v1.Rollouts/Start".into(),
            outcome: "PERMISSION_DENIED".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn entries_survive_a_reopen_and_only_the_newest_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = synapse_db::open(dir.path()).unwrap();
            let log = AuditLog::open(&db, 100).unwrap();
            for i in 0..250 {
                log.record(entry(&format!("op-{i}"))).await;
            }
        }
        let db = synapse_db::open(dir.path()).unwrap();
        let log = AuditLog::open(&db, 100).unwrap();
        let all = log.recent(MAX_LIST).unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(all[0].name, "op-249");
        assert_eq!(all[0].seq, 250);
        assert_eq!(all[99].name, "op-150");
        log.record(entry("after")).await;
        assert_eq!(log.recent(1).unwrap()[0].seq, 251);
    }

    #[tokio::test]
    async fn a_caller_hammering_refusals_is_recorded_within_its_allowance() {
        let dir = tempfile::tempdir().unwrap();
        let db = synapse_db::open(dir.path()).unwrap();
        let log = AuditLog::open(&db, 1000).unwrap();
        for _ in 0..100 {
            log.record_refusal(entry("noisy")).await;
        }
        log.record_refusal(entry("other")).await;
        let all = log.recent(MAX_LIST).unwrap();
        let noisy = all.iter().filter(|e| e.name == "noisy").count();
        assert_eq!(noisy, REFUSALS_PER_MINUTE as usize);
        assert!(all.iter().any(|e| e.name == "other"));
    }
}
