//! The model registry: every version of the neural forecaster the hub has made, persisted in
//! sled — its ONNX bytes, SHA-256, parent version, the round that produced it, the training
//! loss, evaluation metrics and creation time. Versions count up from 1; the first is the
//! configured initial model.

pub mod onnx;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("model store: {0}")]
    Store(#[from] sled::Error),
    #[error("model record {version} is corrupt: {source}")]
    Corrupt {
        version: u64,
        source: serde_json::Error,
    },
    #[error("model version {0} has no ONNX file in the store")]
    MissingFile(u64),
    #[error("cannot encode a model record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What the registry knows of one version (its ONNX bytes are kept beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub version: u64,
    /// Hex SHA-256 of the ONNX file.
    pub sha256: String,
    /// 0 for the first version.
    pub parent: u64,
    /// The round that produced it; 0 for the first version.
    pub round: u64,
    /// Sample-weighted mean loss the agents reported on the parent in that round; none for
    /// the first version.
    pub training_loss: Option<f64>,
    /// Evaluation metrics by name (documented in docs/learning.md).
    pub metrics: BTreeMap<String, f64>,
    pub created_unix_ms: i64,
    pub size_bytes: u64,
}

/// The registry over two sled trees: records and ONNX files, keyed by version.
#[derive(Clone)]
pub struct ModelRegistry {
    records: sled::Tree,
    files: sled::Tree,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A version to register.
pub struct NewModel<'a> {
    pub onnx: &'a [u8],
    pub parent: u64,
    pub round: u64,
    pub training_loss: Option<f64>,
    pub metrics: BTreeMap<String, f64>,
    pub created_unix_ms: i64,
}

impl ModelRegistry {
    pub fn open(db: &sled::Db) -> Result<Self, ModelsError> {
        Ok(Self {
            records: db.open_tree("models.records")?,
            files: db.open_tree("models.onnx")?,
        })
    }

    /// Registers the next version; the file goes in before the record, so a record never
    /// points at a missing file.
    pub fn register(&self, model: NewModel<'_>) -> Result<ModelRecord, ModelsError> {
        let version = self.latest()?.map_or(1, |r| r.version + 1);
        let record = ModelRecord {
            version,
            sha256: sha256_hex(model.onnx),
            parent: model.parent,
            round: model.round,
            training_loss: model.training_loss,
            metrics: model.metrics,
            created_unix_ms: model.created_unix_ms,
            size_bytes: model.onnx.len() as u64,
        };
        self.files.insert(version.to_be_bytes(), model.onnx)?;
        self.records
            .insert(version.to_be_bytes(), serde_json::to_vec(&record)?)?;
        Ok(record)
    }

    /// Adds `metrics` to `version`'s record (e.g. its loss measured in a later round).
    pub fn annotate(&self, version: u64, metrics: &[(&str, f64)]) -> Result<(), ModelsError> {
        if let Some(mut record) = self.get(version)? {
            for (name, value) in metrics {
                record.metrics.insert((*name).to_owned(), *value);
            }
            self.records
                .insert(version.to_be_bytes(), serde_json::to_vec(&record)?)?;
        }
        Ok(())
    }

    pub fn get(&self, version: u64) -> Result<Option<ModelRecord>, ModelsError> {
        self.records
            .get(version.to_be_bytes())?
            .map(|bytes| decode(version, &bytes))
            .transpose()
    }

    /// The ONNX bytes of `version`.
    pub fn onnx(&self, version: u64) -> Result<Vec<u8>, ModelsError> {
        Ok(self
            .files
            .get(version.to_be_bytes())?
            .ok_or(ModelsError::MissingFile(version))?
            .to_vec())
    }

    pub fn latest(&self) -> Result<Option<ModelRecord>, ModelsError> {
        match self.records.last()? {
            Some((key, bytes)) => {
                let version = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
                Ok(Some(decode(version, &bytes)?))
            }
            None => Ok(None),
        }
    }

    /// Every version, oldest first.
    pub fn list(&self) -> Result<Vec<ModelRecord>, ModelsError> {
        self.records
            .iter()
            .map(|kv| {
                let (key, bytes) = kv?;
                let version = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
                decode(version, &bytes)
            })
            .collect()
    }
}

fn decode(version: u64, bytes: &[u8]) -> Result<ModelRecord, ModelsError> {
    serde_json::from_slice(bytes).map_err(|source| ModelsError::Corrupt { version, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(onnx: &[u8], parent: u64) -> NewModel<'_> {
        NewModel {
            onnx,
            parent,
            round: parent,
            training_loss: Some(0.5),
            metrics: BTreeMap::new(),
            created_unix_ms: 1,
        }
    }

    #[test]
    fn versions_count_up_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = synapse_db::open(dir.path()).unwrap();
            let registry = ModelRegistry::open(&db).unwrap();
            assert_eq!(registry.register(new(b"one", 0)).unwrap().version, 1);
            let two = registry.register(new(b"two", 1)).unwrap();
            assert_eq!((two.version, two.parent), (2, 1));
            assert_eq!(two.sha256, sha256_hex(b"two"));
            registry.annotate(1, &[("evaluated_loss", 0.25)]).unwrap();
            db.flush().unwrap();
        }
        let db = synapse_db::open(dir.path()).unwrap();
        let registry = ModelRegistry::open(&db).unwrap();
        assert_eq!(registry.latest().unwrap().unwrap().version, 2);
        assert_eq!(registry.onnx(2).unwrap(), b"two");
        assert_eq!(
            registry.get(1).unwrap().unwrap().metrics["evaluated_loss"],
            0.25
        );
        assert_eq!(registry.list().unwrap().len(), 2);
    }

    #[test]
    fn sha256_is_the_standard_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
