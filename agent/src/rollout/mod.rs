//! The agent's side of fleet rollouts: it applies the versions the hub's rollout engine
//! wants (`DesiredVersions`) and reports what it runs (`RunningVersions`) after every change,
//! after every frame from the engine and on every (re)connection.
//!
//! A function version is applied atomically: the new spec is checked as the configuration
//! file's would be, its pool is started beside the current one and warmed (up to
//! `min(min_warm, 1)` ready instances), then the function map is swapped, so every new
//! invocation goes to the new pool while the old one finishes what it holds and retires. A
//! version that cannot be applied (bad spec, instances that never become ready) is reported
//! with the reason and the agent keeps the version it runs. Applied versions are kept in the
//! agent's sled store and restored at start, so a restarted agent runs what it was told.
//!
//! Target `settings` changes the live subset of the agent's settings: the functions' pool
//! bounds (see [`settings`]). Target `model` goes to the [`ModelApplier`] the agent's
//! forecasting registers with [`Rollouts::with_models`] (refused with the reason when none
//! is). With federated learning ([`Rollouts::with_learning_models`]) the hub's versions come
//! as the learner's offers, and only the rollout's word to go back to the agent's own model
//! (version "") goes to the applier.

mod apply;
pub mod settings;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synapse_proto::link::v1::{DesiredVersion, RunningVersion, RunningVersions, frame::Body};
use tokio::{sync::mpsc, sync::watch, task::JoinSet};
use tracing::{info, warn};

use crate::{
    config::FunctionSpec,
    control::{ControlBus, ToHub},
    runtime::Runtime,
};

/// The control frames this module takes.
pub const KINDS: &[&str] = &["desired_versions"];
const TREE: &str = "rollout_applied";

/// A version applied by rollout, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub version: String,
    pub payload: String,
}

/// Why applied versions could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum RolloutStoreError {
    #[error("rollout store: {0}")]
    Sled(#[from] sled::Error),
    #[error("applied version of {target} is corrupt: {source}")]
    Corrupt {
        target: String,
        source: serde_json::Error,
    },
}

/// Switches the agent's forecaster to a model version (implemented where models live).
pub trait ModelApplier: Send {
    /// Runs model `version`, whose file must hash to `sha256`; the error says why not.
    fn apply(&mut self, version: &str, sha256: &str) -> Result<(), String>;
}

/// Applies desired versions to the runtime and reports to the hub.
pub struct Rollouts {
    runtime: Runtime,
    applied: sled::Tree,
    /// The functions as the configuration file has them (version "" restores these).
    configured: BTreeMap<String, FunctionSpec>,
    /// Each function's spec before settings: configured, or the version a rollout applied.
    bases: BTreeMap<String, FunctionSpec>,
    /// The live settings in force.
    settings: settings::Settings,
    /// What this agent runs per target, as reported.
    running: BTreeMap<String, RunningVersion>,
    to_hub: Option<ToHub>,
    /// Managers of pools started by rollouts; they end with their pool or at shutdown.
    managers: JoinSet<()>,
    models: Option<Box<dyn ModelApplier>>,
    /// The learner installs the model versions the hub offers it and reports them with its
    /// own frames, which the hub's rollout engine reads; this module only passes version ""
    /// (the agent's own model) on to `models`.
    models_by_learning: bool,
}

impl Rollouts {
    /// Opens the applied versions and puts them in the runtime before any pool starts, so
    /// the agent's managers start the versions it was told to run.
    pub fn restore(
        runtime: Runtime,
        db: &sled::Db,
        configured: &[FunctionSpec],
    ) -> Result<Self, RolloutStoreError> {
        let applied = db.open_tree(TREE)?;
        let configured: BTreeMap<String, FunctionSpec> = configured
            .iter()
            .map(|f| (f.name.clone(), f.clone()))
            .collect();
        let mut this = Self {
            runtime,
            applied,
            bases: configured.clone(),
            configured,
            settings: settings::Settings::default(),
            running: BTreeMap::new(),
            to_hub: None,
            managers: JoinSet::new(),
            models: None,
            models_by_learning: false,
        };
        let mut kept = BTreeMap::new();
        for entry in this.applied.iter() {
            let (key, value) = entry?;
            let target = String::from_utf8_lossy(&key).into_owned();
            let version: Applied =
                serde_json::from_slice(&value).map_err(|source| RolloutStoreError::Corrupt {
                    target: target.clone(),
                    source,
                })?;
            kept.insert(target, version);
        }
        for (target, version) in &kept {
            if target == "settings" {
                continue;
            }
            match apply::checked_spec(target, &version.version, &version.payload, &this.configured)
            {
                Ok(spec) => {
                    this.bases.insert(target.clone(), spec);
                    this.set_running(target, &version.version, None);
                }
                Err(e) => {
                    warn!(function = %target, version = %version.version, "applied version no longer applies: {e}")
                }
            }
        }
        if let Some(version) = kept.get("settings") {
            match settings::Settings::parse(&version.payload, &this.bases) {
                Ok(s) => {
                    this.settings = s;
                    this.set_running("settings", &version.version, None);
                }
                Err(e) => {
                    warn!(version = %version.version, "applied settings no longer apply: {e}")
                }
            }
        }
        // Nothing runs yet: putting the specs in the runtime is the whole change.
        for (name, base) in &this.bases {
            let spec = settings::effective(base, this.settings.pools.get(name));
            let changed = this.configured.get(name).is_none_or(|c| {
                settings::bounds_differ(c, &spec)
                    || c.version != spec.version
                    || kept.contains_key(name)
            });
            if changed && let Some(next) = this.runtime.prepare(spec) {
                this.runtime.swap(next);
                info!(function = %name, "restored the version rollouts applied");
            }
        }
        Ok(this)
    }

    /// Model versions go to `applier`.
    pub fn with_models(mut self, applier: Box<dyn ModelApplier>) -> Self {
        self.models = Some(applier);
        self
    }

    /// Model versions are the learner's (see `crate::learning`): they arrive as offers and
    /// are reported as installed or refused by it. A rollout that sends this agent back to its
    /// own model (version "") goes to `own`, which reports what it did with the learner's
    /// frames.
    pub fn with_learning_models(mut self, own: Box<dyn ModelApplier>) -> Self {
        self.models = Some(own);
        self.models_by_learning = true;
        self
    }

    /// Subscribes to the engine's frames; call before the link starts.
    pub fn subscribe(&mut self, control: &mut ControlBus) -> mpsc::Receiver<Body> {
        self.to_hub = Some(control.to_hub());
        control.subscribe(KINDS)
    }

    fn set_running(&mut self, target: &str, version: &str, refused: Option<(&str, String)>) {
        let (refused_version, error) = refused.map(|(v, e)| (v.to_owned(), e)).unwrap_or_default();
        self.running.insert(
            target.to_owned(),
            RunningVersion {
                target: target.to_owned(),
                version: version.to_owned(),
                refused_version,
                error,
            },
        );
    }

    fn report(&self) {
        let Some(to_hub) = &self.to_hub else { return };
        let targets = self.running.values().cloned().collect();
        if let Err(e) = to_hub.send(Body::RunningVersions(RunningVersions { targets })) {
            warn!("running versions not reported: {e}");
        }
    }

    /// Takes the engine's frames until `stop`, reporting on every new link connection.
    pub async fn run(
        mut self,
        mut frames: mpsc::Receiver<Body>,
        mut link: watch::Receiver<crate::link::LinkStatus>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut connections = 0;
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(Body::DesiredVersions(desired)) => {
                        for target in desired.targets {
                            self.apply(target, &mut stop).await;
                        }
                        self.report();
                    }
                    Some(other) => warn!(kind = other.kind(), "rollouts got a frame not its own"),
                    None => break,
                },
                changed = link.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let now = link.borrow_and_update().connections;
                    if now != connections {
                        connections = now;
                        self.report();
                    }
                }
                _ = crate::shutdown::stopped(&mut stop) => break,
            }
        }
        crate::shutdown::stopped(&mut stop).await;
        while self.managers.join_next().await.is_some() {}
        Ok(())
    }

    async fn apply(&mut self, desired: DesiredVersion, stop: &mut watch::Receiver<bool>) {
        let target = desired.target.clone();
        if target == "model" && self.models_by_learning {
            if desired.version.is_empty()
                && let Some(own) = &mut self.models
                && let Err(e) = own.apply("", "")
            {
                warn!("cannot go back to the agent's own model: {e}");
            }
            return;
        }
        let known = self.running.get(&target);
        let current = known.map(|r| r.version.clone()).unwrap_or_default();
        if current == desired.version {
            // Already running it (an error about another version is over).
            if known.is_some() {
                self.set_running(&target, &current, None);
            }
            return;
        }
        if known.is_some_and(|r| r.refused_version == desired.version) {
            // Refused already; the hub has the reason.
            return;
        }
        let outcome = match target.as_str() {
            "model" => match &mut self.models {
                Some(models) => models.apply(&desired.version, &desired.sha256),
                None => Err("this agent has no model store to apply model versions".into()),
            },
            "settings" => apply::settings_version(self, &desired, stop).await,
            _ => apply::function_version(self, &desired, stop).await,
        };
        match outcome {
            Ok(()) => {
                info!(target = %target, version = %desired.version, rollout = %desired.rollout, "applied");
                self.set_running(&target, &desired.version, None);
            }
            Err(e) => {
                warn!(target = %target, version = %desired.version, "cannot apply: {e}");
                self.set_running(&target, &current, Some((&desired.version, e)));
            }
        }
    }
}
