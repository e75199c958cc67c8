//! Rollouts in the hub's sled store, so a restarted hub resumes each at the step it was on:
//! - `rollouts`: id → [`Rollout`] (JSON), the whole record with its history;
//! - `rollout_active`: target → id of its one active rollout;
//! - `rollout_settled`: `AGENT \0 TARGET` → [`Desired`], what a host runs outside any
//!   active rollout (the result of the last one that reached it).
//!
//! A rollout and the active index change in one transaction, so "one active rollout per
//! target" holds across crashes.

use std::collections::BTreeMap;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{
    spec::Target,
    state::{Desired, Rollout},
};

/// Why the rollout store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rollout store: {0}")]
    Sled(#[from] sled::Error),
    #[error("rollout record {key:?} is corrupt: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("target {target} already has an active rollout: {id}")]
    Busy { target: String, id: String },
}

#[derive(Clone)]
pub struct RolloutStore {
    db: sled::Db,
    rollouts: sled::Tree,
    active: sled::Tree,
    settled: sled::Tree,
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("rollout records always serialise")
}

fn settled_key(agent: &str, target: &Target) -> Vec<u8> {
    let mut key = agent.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(target.to_string().as_bytes());
    key
}

impl RolloutStore {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Self {
            db: db.clone(),
            rollouts: db.open_tree("rollouts")?,
            active: db.open_tree("rollout_active")?,
            settled: db.open_tree("rollout_settled")?,
        })
    }

    /// A fresh rollout id for `target`: its number among all rollouts ever started (they are
    /// never deleted; the engine creates one at a time).
    pub fn new_id(&self, target: &Target) -> Result<String, StoreError> {
        Ok(format!("{target}-{}", self.rollouts.len() + 1))
    }

    /// Stores a new rollout as its target's active one, unless the target has one.
    pub fn create(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let target = rollout.target.to_string();
        let outcome = (&self.rollouts, &self.active).transaction(|(rollouts, active)| {
            if let Some(id) = active.get(target.as_bytes())? {
                return Err(ConflictableTransactionError::Abort(
                    String::from_utf8_lossy(&id).into_owned(),
                ));
            }
            active.insert(target.as_bytes(), rollout.id.as_bytes())?;
            rollouts.insert(rollout.id.as_bytes(), encode(rollout))?;
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(id)) => Err(StoreError::Busy { target, id }),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Saves a rollout; one that ended leaves the active index, and the hosts it updated
    /// settle on its version.
    pub fn save(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let target = rollout.target.to_string();
        let ended = !rollout.state.is_active();
        let settle: Vec<(Vec<u8>, Vec<u8>)> = if ended {
            rollout
                .order
                .iter()
                .filter_map(|(host, _)| {
                    let desired = rollout.desired_for(host)?;
                    Some((settled_key(host, &rollout.target), encode(&desired)))
                })
                .collect()
        } else {
            Vec::new()
        };
        let outcome = (&self.rollouts, &self.active, &self.settled).transaction(
            |(rollouts, active, settled)| {
                rollouts.insert(rollout.id.as_bytes(), encode(rollout))?;
                if ended && active.get(target.as_bytes())?.as_deref() == Some(rollout.id.as_bytes())
                {
                    active.remove(target.as_bytes())?;
                }
                for (key, value) in &settle {
                    settled.insert(key.clone(), value.clone())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            },
        );
        match outcome {
            Ok(()) => {}
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        }
        // A rollout's step decides what hosts run: it must be on disk before agents hear it.
        self.db.flush()?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Rollout>, StoreError> {
        self.rollouts
            .get(id.as_bytes())?
            .map(|v| decode(id.as_bytes(), &v))
            .transpose()
    }

    /// The active rollout of `target`.
    pub fn active(&self, target: &Target) -> Result<Option<Rollout>, StoreError> {
        match self.active.get(target.to_string().as_bytes())? {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Every active rollout.
    pub fn all_active(&self) -> Result<Vec<Rollout>, StoreError> {
        let mut out = Vec::new();
        for entry in self.active.iter() {
            let (_, id) = entry?;
            if let Some(rollout) = self.get(&String::from_utf8_lossy(&id))? {
                out.push(rollout);
            }
        }
        Ok(out)
    }

    /// Rollouts of `target` (all targets when `None`), newest first, at most `limit`.
    pub fn history(
        &self,
        target: Option<&Target>,
        limit: usize,
    ) -> Result<Vec<Rollout>, StoreError> {
        let mut out = Vec::new();
        for entry in self.rollouts.iter() {
            let (key, value) = entry?;
            let rollout: Rollout = decode(&key, &value)?;
            if target.is_none_or(|t| *t == rollout.target) {
                out.push(rollout);
            }
        }
        out.sort_by(|a, b| {
            b.started_unix_ms
                .cmp(&a.started_unix_ms)
                .then(b.id.cmp(&a.id))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// What `agent` runs outside active rollouts, by target.
    pub fn settled(&self, agent: &str) -> Result<BTreeMap<Target, Desired>, StoreError> {
        let mut prefix = agent.as_bytes().to_vec();
        prefix.push(0);
        let mut out = BTreeMap::new();
        for entry in self.settled.scan_prefix(&prefix) {
            let (key, value) = entry?;
            let target = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Ok(target) = target.parse::<Target>() {
                out.insert(target, decode(&key, &value)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{spec::Step, state::tests::rollout};

    #[test]
    fn one_active_rollout_per_target_and_an_ended_one_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = synapse_db::open(dir.path()).unwrap();
        let store = RolloutStore::open(&db).unwrap();
        let mut first = rollout(&[("e1", 1)], &[Step::Percent(100.0)]);
        store.create(&first).unwrap();
        let mut second = first.clone();
        second.id = "fn-a-2".into();
        assert!(matches!(
            store.create(&second),
            Err(StoreError::Busy { .. })
        ));
        first.begin(1).unwrap();
        first.pass_step(2, vec![]).unwrap();
        store.save(&first).unwrap();
        assert!(store.active(&first.target).unwrap().is_none());
        store.create(&second).unwrap();
        let settled = store.settled("e1").unwrap();
        assert_eq!(
            settled[&first.target].version, "2",
            "e1 settled on the new version"
        );
    }

    #[test]
    fn a_reopened_store_holds_the_rollout_at_its_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = rollout(
            &[("e1", 1), ("e2", 1)],
            &[Step::PerTier(1), Step::Percent(100.0)],
        );
        {
            let db = synapse_db::open(dir.path()).unwrap();
            let store = RolloutStore::open(&db).unwrap();
            store.create(&r).unwrap();
            r.begin(1).unwrap();
            r.pass_step(2, vec![]).unwrap();
            store.save(&r).unwrap();
        }
        let db = synapse_db::open(dir.path()).unwrap();
        let store = RolloutStore::open(&db).unwrap();
        let back = store.active(&r.target).unwrap().unwrap();
        assert_eq!(back, r);
        assert_eq!(back.step, 1);
    }
}
