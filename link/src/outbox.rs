//! The agent's outbox: telemetry batches persisted in sled before they are sent, kept until
//! the hub acknowledges them, and re-sent after a reconnect. It is bounded: when full, the
//! oldest batches are dropped first and counted, so a long hub outage costs old data, never
//! memory or serving.
//!
//! Layout of the `link_outbox` tree: `b` + sequence (big-endian) → enqueue time (8 bytes,
//! Unix ms, big-endian) + encoded `TelemetryBatch`; `m:*` keys hold counters. A push and the
//! drops it causes are one atomic sled batch, flushed before `push` returns.
//!
//! `m:incarnation` names this outbox: a random number drawn when the outbox is first created.
//! The agent tells it to the hub in its hello, so that an agent whose store was lost
//! (reinstall, disk loss) and whose sequences therefore start again at 1 is recognised as a
//! new series, not taken for a resend of batches the hub already holds.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use prost::Message;
use synapse_proto::link::v1::{FunctionInterval, TelemetryBatch};

const TREE: &str = "link_outbox";
const BATCH_PREFIX: u8 = b'b';
const NEXT: &[u8] = b"m:next";
const PUSHED: &[u8] = b"m:pushed";
const DROPPED: &[u8] = b"m:dropped";
const ACKED: &[u8] = b"m:acked";
const INCARNATION: &[u8] = b"m:incarnation";

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox store: {0}")]
    Store(#[from] sled::Error),
    #[error("outbox record {sequence} is corrupt: {reason}")]
    Corrupt { sequence: u64, reason: String },
    #[error("outbox capacity must be at least 1 batch")]
    ZeroCapacity,
}

/// Counters and state of the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxStats {
    /// Batches waiting for an acknowledgement.
    pub pending: u64,
    /// Batches ever persisted.
    pub pushed: u64,
    /// Batches dropped because the outbox was full.
    pub dropped: u64,
    /// Batches acknowledged by the hub.
    pub acked: u64,
    /// Age of the oldest pending batch in milliseconds (0 when empty).
    pub lag_ms: u64,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub sequence: u64,
    /// Oldest batches dropped to make room.
    pub dropped: u64,
}

/// The durable, bounded queue of batches owed to the hub.
pub struct Outbox {
    tree: sled::Tree,
    max_batches: u64,
    /// Serialises pushes and acks so that the pending count and counters stay exact.
    pending: Mutex<u64>,
    /// Highest sequence known to be on disk: nothing above it is handed out for sending, so
    /// a batch is never sent before it is durable.
    durable: AtomicU64,
    /// This outbox's name among the agent's past and future ones (never 0).
    incarnation: u64,
}

fn batch_key(sequence: u64) -> [u8; 9] {
    let mut key = [BATCH_PREFIX; 9];
    key[1..].copy_from_slice(&sequence.to_be_bytes());
    key
}

fn sequence_of(key: &[u8]) -> u64 {
    key.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<u64, sled::Error> {
    Ok(tree
        .get(key)?
        .and_then(|v| v.as_ref().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Outbox {
    /// Opens (or creates) the outbox in `db`, holding at most `max_batches` batches.
    pub fn open(db: &sled::Db, max_batches: u64) -> Result<Self, OutboxError> {
        if max_batches == 0 {
            return Err(OutboxError::ZeroCapacity);
        }
        let tree = db.open_tree(TREE)?;
        let pending = tree.scan_prefix([BATCH_PREFIX]).count() as u64;
        let durable = read_u64(&tree, NEXT)?.saturating_sub(1);
        let drawn = rand::random::<u64>().max(1);
        // Kept when already there; written (and flushed) once, when the outbox is new.
        let incarnation = match tree.compare_and_swap(
            INCARNATION,
            None::<&[u8]>,
            Some(&drawn.to_be_bytes()[..]),
        )? {
            Ok(()) => {
                tree.flush()?;
                drawn
            }
            Err(_) => read_u64(&tree, INCARNATION)?.max(1),
        };
        Ok(Self {
            tree,
            max_batches,
            pending: Mutex::new(pending),
            durable: AtomicU64::new(durable),
            incarnation,
        })
    }

    /// This outbox's incarnation: drawn at random when it was created, the same after every
    /// reopening, different for an outbox created anew.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Persists a batch of intervals under the next sequence number, dropping the oldest
    /// batches if the outbox is full. Returns once the batch is on disk.
    pub async fn push(&self, intervals: Vec<FunctionInterval>) -> Result<Pushed, OutboxError> {
        let pushed = self.push_unflushed(intervals)?;
        self.tree.flush_async().await?;
        self.durable_up_to(pushed.sequence);
        Ok(pushed)
    }

    /// Writes a batch as [`Outbox::push`] does, without waiting for the disk: for a caller
    /// whose own flush of the same database is the point where its data and this batch become
    /// durable together. It is not handed out for sending until [`Outbox::durable_up_to`] says
    /// the flush is done.
    pub fn push_unflushed(&self, intervals: Vec<FunctionInterval>) -> Result<Pushed, OutboxError> {
        let mut pending = self.lock();
        let sequence = read_u64(&self.tree, NEXT)?.max(1);
        let batch = TelemetryBatch {
            sequence,
            intervals,
        };
        let mut value = now_ms().to_be_bytes().to_vec();
        batch.encode(&mut value).map_err(|e| OutboxError::Corrupt {
            sequence,
            reason: e.to_string(),
        })?;
        let mut write = sled::Batch::default();
        let overflow = (*pending + 1).saturating_sub(self.max_batches);
        let mut dropped = 0;
        for entry in self
            .tree
            .scan_prefix([BATCH_PREFIX])
            .keys()
            .take(overflow as usize)
        {
            write.remove(entry?);
            dropped += 1;
        }
        write.insert(&batch_key(sequence), value);
        write.insert(NEXT, &(sequence + 1).to_be_bytes());
        write.insert(PUSHED, &(read_u64(&self.tree, PUSHED)? + 1).to_be_bytes());
        if dropped > 0 {
            let total = read_u64(&self.tree, DROPPED)? + dropped;
            write.insert(DROPPED, &total.to_be_bytes());
        }
        self.tree.apply_batch(write)?;
        *pending = *pending + 1 - dropped;
        Ok(Pushed { sequence, dropped })
    }

    /// The batches up to `sequence` are on disk: they may be sent.
    pub fn durable_up_to(&self, sequence: u64) {
        self.durable.fetch_max(sequence, Ordering::AcqRel);
    }

    /// Forgets an acknowledged batch; `false` if it was not pending (already acked or dropped).
    pub fn ack(&self, sequence: u64) -> Result<bool, OutboxError> {
        let mut pending = self.lock();
        if self.tree.remove(batch_key(sequence))?.is_none() {
            return Ok(false);
        }
        let acked = read_u64(&self.tree, ACKED)? + 1;
        self.tree.insert(ACKED, &acked.to_be_bytes())?;
        *pending = pending.saturating_sub(1);
        Ok(true)
    }

    /// Up to `limit` pending batches with a sequence greater than `after`, oldest first; only
    /// batches already on disk.
    pub fn pending_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TelemetryBatch>, OutboxError> {
        let durable = self.durable.load(Ordering::Acquire);
        if after >= durable {
            return Ok(Vec::new());
        }
        let start = batch_key(after.saturating_add(1));
        let end = batch_key(durable);
        self.tree
            .range(start..=end)
            .take(limit)
            .map(|entry| {
                let (key, value) = entry?;
                let sequence = sequence_of(&key);
                let corrupt = |reason: String| OutboxError::Corrupt { sequence, reason };
                let body = value
                    .get(8..)
                    .ok_or_else(|| corrupt("shorter than its timestamp".into()))?;
                TelemetryBatch::decode(body).map_err(|e| corrupt(e.to_string()))
            })
            .collect()
    }

    /// Current counters.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let pending = *self.lock();
        let lag_ms = match self.tree.scan_prefix([BATCH_PREFIX]).next() {
            Some(entry) => {
                let (_, value) = entry?;
                let enqueued = value
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                now_ms().saturating_sub(enqueued)
            }
            None => 0,
        };
        Ok(OutboxStats {
            pending,
            pushed: read_u64(&self.tree, PUSHED)?,
            dropped: read_u64(&self.tree, DROPPED)?,
            acked: read_u64(&self.tree, ACKED)?,
            lag_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(function: &str) -> Vec<FunctionInterval> {
        vec![FunctionInterval {
            function: function.into(),
            invocations: 1,
            ..Default::default()
        }]
    }

    fn db(dir: &tempfile::TempDir) -> sled::Db {
        synapse_db::open(dir.path()).unwrap()
    }

    #[test]
    fn the_incarnation_survives_reopening_and_a_new_outbox_has_another() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let db = db(&dir);
            Outbox::open(&db, 10).unwrap().incarnation()
        };
        assert_ne!(first, 0);
        let db = db(&dir);
        assert_eq!(Outbox::open(&db, 10).unwrap().incarnation(), first);
        let other = tempfile::tempdir().unwrap();
        let db = synapse_db::open(other.path()).unwrap();
        assert_ne!(Outbox::open(&db, 10).unwrap().incarnation(), first);
    }

    #[tokio::test]
    async fn batches_survive_reopening_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(&db(&dir), 10).unwrap();
            for f in ["a", "b", "c"] {
                outbox.push(interval(f)).await.unwrap();
            }
            assert!(outbox.ack(1).unwrap());
            assert!(
                !outbox.ack(1).unwrap(),
                "a second ack of the same batch counts nothing"
            );
        }
        let outbox = Outbox::open(&db(&dir), 10).unwrap();
        let pending = outbox.pending_after(0, 10).unwrap();
        let sequences: Vec<_> = pending.iter().map(|b| b.sequence).collect();
        assert_eq!(sequences, [2, 3]);
        assert_eq!(pending[0].intervals[0].function, "b");
        let stats = outbox.stats().unwrap();
        assert_eq!(
            (stats.pending, stats.pushed, stats.acked, stats.dropped),
            (2, 3, 1, 0)
        );
        assert_eq!(outbox.push(interval("d")).await.unwrap().sequence, 4);
    }

    #[tokio::test]
    async fn a_full_outbox_drops_oldest_first_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&db(&dir), 3).unwrap();
        for i in 0..5 {
            outbox.push(interval(&format!("f{i}"))).await.unwrap();
        }
        let kept: Vec<_> = outbox
            .pending_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|b| b.intervals[0].function.clone())
            .collect();
        assert_eq!(kept, ["f2", "f3", "f4"]);
        let stats = outbox.stats().unwrap();
        assert_eq!((stats.pending, stats.dropped, stats.pushed), (3, 2, 5));
    }

    #[tokio::test]
    async fn pending_after_resumes_behind_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&db(&dir), 100).unwrap();
        for i in 0..6 {
            outbox.push(interval(&format!("f{i}"))).await.unwrap();
        }
        let after: Vec<_> = outbox
            .pending_after(4, 10)
            .unwrap()
            .iter()
            .map(|b| b.sequence)
            .collect();
        assert_eq!(after, [5, 6]);
        assert_eq!(outbox.pending_after(0, 2).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_batch_written_without_a_flush_is_sent_only_once_said_durable() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let outbox = Outbox::open(&db, 10).unwrap();
        outbox.push(interval("a")).await.unwrap();
        let pushed = outbox.push_unflushed(interval("b")).unwrap();
        assert_eq!(pushed.sequence, 2);
        let sendable = |o: &Outbox| -> Vec<u64> {
            o.pending_after(0, 10)
                .unwrap()
                .iter()
                .map(|b| b.sequence)
                .collect()
        };
        assert_eq!(sendable(&outbox), [1], "not on disk yet: not handed out");
        assert_eq!(outbox.stats().unwrap().pending, 2, "but counted as owed");
        db.flush().unwrap();
        outbox.durable_up_to(pushed.sequence);
        assert_eq!(sendable(&outbox), [1, 2]);
        // Reopened after the caller's flush, it is owed as any other batch.
        drop(outbox);
        assert_eq!(sendable(&Outbox::open(&db, 10).unwrap()), [1, 2]);
    }
}
