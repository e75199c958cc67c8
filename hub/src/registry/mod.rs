//! The fleet registry: who the agents are, how they are doing, and what they reported.
//! Durable state lives in sled (see [`records`]) and survives a hub restart; connection
//! state (connected, last frame, RTT) lives in memory and is written through to the agent's
//! record at hello, heartbeat and disconnect. Changes are published for console watchers.
//! What agents report is checked before it is counted ([`intake`]); a record that cannot be
//! read back is skipped by the views (and logged) rather than failing them.

pub mod durability;
pub mod intake;
pub mod records;
mod telemetry;
mod views;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use synapse_proto::link::v1::{Heartbeat, Hello};
use tokio::sync::broadcast;

pub use durability::Durability;
use records::{AgentRecord, AgentTotals};
pub use telemetry::Applied;

/// Why the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry store: {0}")]
    Store(#[from] sled::Error),
    #[error("registry record {key:?} is corrupt: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("registry transaction: {0}")]
    Transaction(String),
}

/// Something a console watcher may want to re-read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Agent(String),
    Function(String),
}

/// The connection state of an agent currently connected.
#[derive(Debug, Clone)]
struct Live {
    connection: u64,
    last_seen_unix_ms: i64,
    rtt_ms: f64,
}

/// The fleet registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    agents: sled::Tree,
    totals: sled::Tree,
    shares: sled::Tree,
    live: Arc<Mutex<HashMap<String, Live>>>,
    changes: broadcast::Sender<Change>,
    heartbeat_interval: Duration,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(value).map_err(|source| RegistryError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("registry records always serialise")
}

impl Registry {
    /// Opens the registry's trees in `db`.
    pub fn open(db: &sled::Db, heartbeat_interval: Duration) -> Result<Self, RegistryError> {
        let (changes, _) = broadcast::channel(4096);
        Ok(Self {
            agents: db.open_tree("agents")?,
            totals: db.open_tree("agent_totals")?,
            shares: db.open_tree("function_shares")?,
            live: Arc::new(Mutex::new(HashMap::new())),
            changes,
            heartbeat_interval,
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, change: Change) {
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(change);
        }
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Agents currently connected.
    pub fn connected(&self) -> usize {
        self.live().len()
    }

    fn record(&self, id: &str) -> Result<Option<AgentRecord>, RegistryError> {
        self.agents
            .get(id)?
            .map(|v| decode(id.as_bytes(), &v))
            .transpose()
    }

    fn put_record(&self, record: &AgentRecord) -> Result<(), RegistryError> {
        self.agents.insert(record.id.as_bytes(), encode(record))?;
        Ok(())
    }

    /// Registers a welcomed connection `connection` of the agent in `hello`.
    pub fn connect(
        &self,
        hello: &Hello,
        link_version: u32,
        connection: u64,
        rtt: Duration,
    ) -> Result<(), RegistryError> {
        let now = now_ms();
        let mut record = self.record(&hello.agent_id)?.unwrap_or_default();
        let capacity = hello.capacity.unwrap_or_default();
        record.id = hello.agent_id.clone();
        record.tier = hello.tier;
        record.labels = hello
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        record.version = hello.version.clone();
        record.cpus = capacity.cpus;
        record.memory_bytes = capacity.memory_bytes;
        record.link_version = link_version;
        record.last_seen_unix_ms = now;
        record.rtt_ms = rtt.as_secs_f64() * 1e3;
        self.put_record(&record)?;
        self.adopt_incarnation(&hello.agent_id, hello.outbox_incarnation)?;
        self.live().insert(
            hello.agent_id.clone(),
            Live {
                connection,
                last_seen_unix_ms: now,
                rtt_ms: record.rtt_ms,
            },
        );
        self.publish(Change::Agent(hello.agent_id.clone()));
        Ok(())
    }

    /// Takes the outbox incarnation an agent told in its hello. The first one told is adopted
    /// as it is; another one means the agent's store was lost and its sequences start again
    /// at 1, so the watermark starts again too (logged and counted in `outbox_resets`) —
    /// otherwise every new batch up to the old watermark would be acknowledged and dropped as
    /// a duplicate.
    fn adopt_incarnation(&self, agent: &str, incarnation: u64) -> Result<(), RegistryError> {
        if incarnation == 0 {
            return Ok(());
        }
        let outcome = self.totals.transaction(|totals| {
            let abort = |e: RegistryError| ConflictableTransactionError::Abort(e);
            let mut kept: AgentTotals = match totals.get(agent)? {
                Some(v) => decode(agent.as_bytes(), &v).map_err(abort)?,
                None => AgentTotals::default(),
            };
            if kept.incarnation == incarnation {
                return Ok(None);
            }
            let reset = (kept.incarnation != 0).then_some((kept.incarnation, kept.last_sequence));
            if reset.is_some() {
                kept.last_sequence = 0;
                kept.outbox_resets += 1;
            }
            kept.incarnation = incarnation;
            totals.insert(agent.as_bytes(), encode(&kept))?;
            Ok(reset)
        });
        let reset = match outcome {
            Ok(reset) => reset,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        if let Some((old, watermark)) = reset {
            tracing::warn!(
                agent,
                "the agent's outbox is new (incarnation {old:#x} -> {incarnation:#x}): its \
                 store was lost, its sequences start again; the watermark {watermark} is set back \
                 so that its new batches are counted"
            );
        }
        Ok(())
    }

    /// Notes that a frame arrived from `agent` on `connection`.
    pub fn seen(&self, agent: &str, connection: u64, rtt: Duration) {
        if let Some(live) = self
            .live()
            .get_mut(agent)
            .filter(|l| l.connection == connection)
        {
            live.last_seen_unix_ms = now_ms();
            live.rtt_ms = rtt.as_secs_f64() * 1e3;
        }
    }

    /// Records a heartbeat and the outbox state it carries.
    pub fn heartbeat(
        &self,
        agent: &str,
        beat: &Heartbeat,
        rtt: Duration,
    ) -> Result<(), RegistryError> {
        let Some(mut record) = self.record(agent)? else {
            return Ok(());
        };
        record.last_seen_unix_ms = now_ms();
        record.rtt_ms = rtt.as_secs_f64() * 1e3;
        record.outbox_pending = beat.outbox_pending;
        record.outbox_dropped = beat.outbox_dropped;
        record.outbox_lag_ms = beat.outbox_lag_ms;
        self.put_record(&record)?;
        self.publish(Change::Agent(agent.to_owned()));
        Ok(())
    }

    /// Forgets `connection` of `agent` (a newer connection of the same agent is kept).
    pub fn disconnect(&self, agent: &str, connection: u64) -> Result<(), RegistryError> {
        let removed = {
            let mut live = self.live();
            match live.get(agent) {
                Some(l) if l.connection == connection => live.remove(agent),
                _ => None,
            }
        };
        if let Some(live) = removed {
            if let Some(mut record) = self.record(agent)? {
                record.last_seen_unix_ms = live.last_seen_unix_ms;
                record.rtt_ms = live.rtt_ms;
                self.put_record(&record)?;
            }
            self.publish(Change::Agent(agent.to_owned()));
        }
        Ok(())
    }

    /// The connection currently registered for `agent`.
    pub fn connection_of(&self, agent: &str) -> Option<u64> {
        self.live().get(agent).map(|l| l.connection)
    }
}
