//! Round records and received gradients, persisted in sled.
//!
//! A gradient is stored under `(round, agent)` with a compare-and-swap before it is counted,
//! and the store is flushed before the agent's frame is considered handled: a hub that
//! restarts in the middle of a round finds every gradient it received, and an agent that
//! sends the same round twice is counted once.

use std::collections::BTreeMap;

use prost::Message;
use serde::{Deserialize, Serialize};
use synapse_proto::link::v1::GradientReport;

/// Why the round store failed.
#[derive(Debug, thiserror::Error)]
pub enum RoundsError {
    #[error("round store: {0}")]
    Store(#[from] sled::Error),
    #[error("round record {round} is corrupt: {source}")]
    Corrupt {
        round: u64,
        source: serde_json::Error,
    },
    #[error("stored gradient of round {round} from {agent} is corrupt: {source}")]
    CorruptGradient {
        round: u64,
        agent: String,
        source: prost::DecodeError,
    },
    #[error("cannot encode a round record: {0}")]
    Encode(#[from] serde_json::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundState {
    Open,
    Closed,
    Abandoned,
}

impl RoundState {
    pub fn name(self) -> &'static str {
        match self {
            RoundState::Open => "open",
            RoundState::Closed => "closed",
            RoundState::Abandoned => "abandoned",
        }
    }
}

/// One round, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub round: u64,
    pub model_version: u64,
    pub state: RoundState,
    pub opened_unix_ms: i64,
    pub deadline_unix_ms: i64,
    pub ended_unix_ms: i64,
    /// Agents the round was sent to.
    pub invited: Vec<String>,
    /// Gradients accepted (the stored gradients are the truth; this is their count at close).
    pub accepted: u32,
    /// Refusals by reason.
    pub refused: BTreeMap<String, u64>,
    /// Sample-weighted mean loss of the accepted gradients (set at close).
    pub loss: f64,
    pub samples: u64,
    /// The version the round produced; 0 when none.
    pub produced_version: u64,
    /// Why a round was abandoned.
    pub note: String,
}

impl RoundRecord {
    /// Round `round` opened at `opened_unix_ms` on `model_version`, sent to `invited`, taking
    /// answers until `deadline_unix_ms`; nothing received yet.
    pub fn open(
        round: u64,
        model_version: u64,
        opened_unix_ms: i64,
        deadline_unix_ms: i64,
        invited: Vec<String>,
    ) -> Self {
        Self {
            round,
            model_version,
            state: RoundState::Open,
            opened_unix_ms,
            deadline_unix_ms,
            ended_unix_ms: 0,
            invited,
            accepted: 0,
            refused: BTreeMap::new(),
            loss: 0.0,
            samples: 0,
            produced_version: 0,
            note: String::new(),
        }
    }
}

/// Round records and gradients in two sled trees.
#[derive(Clone)]
pub struct RoundStore {
    records: sled::Tree,
    gradients: sled::Tree,
    state: sled::Tree,
    db: sled::Db,
}

fn gradient_key(round: u64, agent: &str) -> Vec<u8> {
    let mut key = round.to_be_bytes().to_vec();
    key.extend_from_slice(agent.as_bytes());
    key
}

impl RoundStore {
    pub fn open(db: &sled::Db) -> Result<Self, RoundsError> {
        Ok(Self {
            records: db.open_tree("federation.rounds")?,
            gradients: db.open_tree("federation.gradients")?,
            state: db.open_tree("federation.state")?,
            db: db.clone(),
        })
    }

    pub fn save(&self, record: &RoundRecord) -> Result<(), RoundsError> {
        self.records
            .insert(record.round.to_be_bytes(), serde_json::to_vec(record)?)?;
        Ok(())
    }

    pub fn get(&self, round: u64) -> Result<Option<RoundRecord>, RoundsError> {
        self.records
            .get(round.to_be_bytes())?
            .map(|bytes| decode(round, &bytes))
            .transpose()
    }

    /// The most recent round.
    pub fn latest(&self) -> Result<Option<RoundRecord>, RoundsError> {
        match self.records.last()? {
            Some((key, bytes)) => decode(round_of(&key), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` rounds, most recent first.
    pub fn recent(&self, limit: usize) -> Result<Vec<RoundRecord>, RoundsError> {
        self.records
            .iter()
            .rev()
            .take(limit)
            .map(|kv| {
                let (key, bytes) = kv?;
                decode(round_of(&key), &bytes)
            })
            .collect()
    }

    /// Stores `agent`'s gradient for `round` unless it already sent one; true when stored.
    pub fn put_gradient(
        &self,
        round: u64,
        agent: &str,
        report: &GradientReport,
    ) -> Result<bool, RoundsError> {
        let stored = self
            .gradients
            .compare_and_swap(
                gradient_key(round, agent),
                None as Option<&[u8]>,
                Some(report.encode_to_vec()),
            )?
            .is_ok();
        Ok(stored)
    }

    pub fn has_gradient(&self, round: u64, agent: &str) -> Result<bool, RoundsError> {
        Ok(self.gradients.contains_key(gradient_key(round, agent))?)
    }

    /// Every gradient of `round`, by agent.
    pub fn gradients(&self, round: u64) -> Result<Vec<(String, GradientReport)>, RoundsError> {
        self.gradients
            .scan_prefix(round.to_be_bytes())
            .map(|kv| {
                let (key, bytes) = kv?;
                let agent = String::from_utf8_lossy(&key[8..]).into_owned();
                let report = GradientReport::decode(bytes.as_ref()).map_err(|source| {
                    RoundsError::CorruptGradient {
                        round,
                        agent: agent.clone(),
                        source,
                    }
                })?;
                Ok((agent, report))
            })
            .collect()
    }

    /// Drops the gradients of a finished round (its record keeps the figures).
    pub fn drop_gradients(&self, round: u64) -> Result<(), RoundsError> {
        for key in self.gradients.scan_prefix(round.to_be_bytes()).keys() {
            self.gradients.remove(key?)?;
        }
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<(), RoundsError> {
        self.db.flush()?;
        Ok(())
    }

    /// A value of the federation's own state (e.g. the optimizer), by name.
    pub fn state(&self, name: &str) -> Result<Option<Vec<u8>>, RoundsError> {
        Ok(self.state.get(name)?.map(|v| v.to_vec()))
    }

    pub fn set_state(&self, name: &str, value: &[u8]) -> Result<(), RoundsError> {
        self.state.insert(name, value)?;
        Ok(())
    }
}

fn round_of(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().unwrap_or([0; 8]))
}

fn decode(round: u64, bytes: &[u8]) -> Result<RoundRecord, RoundsError> {
    serde_json::from_slice(bytes).map_err(|source| RoundsError::Corrupt { round, source })
}
