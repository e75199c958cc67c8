//! The round state machine on the hub, and the link handler of the learning frames.
//!
//! ```text
//! (no round) ──interval elapsed, ≥ min_clients connected──▶ open ──all invited answered, or
//! deadline with ≥ min_clients──▶ closed (new version, shipped)    └─deadline, fewer──▶ abandoned
//! ```
//!
//! Every transition is written to sled before it has effects outside (frames, logs), and a
//! received gradient is durable before its frame counts as handled. On start the coordinator
//! resumes the open round; if the crash came after the round's version was registered, the
//! round is marked closed with that version instead of producing a second one.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use synapse_proto::link::v1::{GradientReport, RoundOpen, frame::Body};
use tokio_util::sync::CancellationToken;

use super::{
    aggregate::Contribution,
    config::{FederationConfig, FederationConfigError},
    intake::{self, Refusal},
    optimizer::Optimizer,
    rollout::Recipients,
    rounds::{RoundRecord, RoundState, RoundStore, RoundsError},
    update::apply_round,
};
use crate::link::{AgentOutlet, ConnectedAgent, ControlHandler, ControlRefusal, Handled};
use crate::models::{ModelRecord, ModelRegistry, ModelsError, NewModel, onnx};

mod offers;

/// Why the federation could not start or step.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error(transparent)]
    Config(#[from] FederationConfigError),
    #[error(transparent)]
    Models(#[from] ModelsError),
    #[error(transparent)]
    Rounds(#[from] RoundsError),
    #[error("model weights: {0}")]
    Weights(#[from] onnx::WeightsError),
    #[error("cannot read the initial model {path}: {source}")]
    InitialModel {
        path: String,
        source: std::io::Error,
    },
    #[error("stored optimizer state is corrupt: {0}")]
    OptimizerState(#[from] serde_json::Error),
}

/// The hub's federated-learning coordinator; one per hub, shared by the link and the console.
pub struct Federation {
    config: FederationConfig,
    models: ModelRegistry,
    rounds: RoundStore,
    outlet: AgentOutlet,
    recipients: Box<dyn Recipients>,
    /// Largest model chunk, below the link's frame limit.
    chunk_bytes: usize,
    inner: Mutex<Inner>,
    /// The version last offered to each agent on its current connection, so that agents a
    /// rollout adds in a later wave get the version at the next tick, once.
    offered: Mutex<std::collections::HashMap<String, u64>>,
}

struct Inner {
    open: Option<RoundRecord>,
    latest: Option<ModelRecord>,
    parameters: usize,
    optimizer: Optimizer,
    next_round: u64,
    last_opened_unix_ms: i64,
}

const OPTIMIZER_KEY: &str = "optimizer";

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Federation {
    /// Opens the registry and rounds in `db`, registers the initial model if the registry is
    /// empty, and resumes an open round.
    pub fn open(
        db: &sled::Db,
        config: FederationConfig,
        outlet: AgentOutlet,
        recipients: Box<dyn Recipients>,
        max_frame_bytes: usize,
    ) -> Result<Arc<Self>, FederationError> {
        config.validate()?;
        let models = ModelRegistry::open(db)?;
        let rounds = RoundStore::open(db)?;
        if models.latest()?.is_none()
            && let Some(path) = &config.initial_model
        {
            let bytes = std::fs::read(path).map_err(|source| FederationError::InitialModel {
                path: path.display().to_string(),
                source,
            })?;
            onnx::read_weights(&bytes)?;
            let record = models.register(NewModel {
                onnx: &bytes,
                parent: 0,
                round: 0,
                training_loss: None,
                metrics: Default::default(),
                created_unix_ms: now_unix_ms(),
            })?;
            tracing::info!(version = record.version, sha256 = %record.sha256, "initial model registered");
        }
        let latest = models.latest()?;
        let parameters = match &latest {
            Some(record) => onnx::read_weights(&models.onnx(record.version)?)?.len(),
            None => 0,
        };
        let fresh = || {
            Optimizer::new(
                config.optimizer,
                config.learning_rate,
                config.momentum,
                parameters,
            )
        };
        let optimizer = match rounds.state(OPTIMIZER_KEY)? {
            Some(bytes) => serde_json::from_slice::<Optimizer>(&bytes)?.reconfigured(
                config.optimizer,
                config.learning_rate,
                config.momentum,
                parameters,
            ),
            None => fresh(),
        };
        let last = rounds.latest()?;
        let federation = Arc::new(Self {
            chunk_bytes: config
                .chunk_bytes
                .min(max_frame_bytes.saturating_sub(1024))
                .max(256),
            config,
            models,
            rounds,
            outlet,
            recipients,
            inner: Mutex::new(Inner {
                next_round: last.as_ref().map_or(1, |r| r.round + 1),
                last_opened_unix_ms: last.as_ref().map_or(0, |r| r.opened_unix_ms),
                open: last.filter(|r| r.state == RoundState::Open),
                latest,
                parameters,
                optimizer,
            }),
            offered: Mutex::new(Default::default()),
        });
        if let Some(open) = &federation.lock().open {
            tracing::info!(round = open.round, "resuming the open round");
        }
        Ok(federation)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn models(&self) -> &ModelRegistry {
        &self.models
    }

    pub fn rounds(&self) -> &RoundStore {
        &self.rounds
    }

    /// Ticks the state machine until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let period = (self.config.round_timeout.min(self.config.round_interval) / 10)
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(e) = self.tick(now_unix_ms()) {
                        tracing::error!("federation: {e}");
                    }
                }
            }
        }
    }

    /// Closes an open round whose deadline passed, or opens the next one when it is due;
    /// offers the newest version to the agents its rollout added since.
    pub fn tick(&self, now: i64) -> Result<(), FederationError> {
        if !self.config.enabled {
            return Ok(());
        }
        let mut inner = self.lock();
        if let Some(latest) = inner.latest.clone() {
            let connected = self.outlet.agents();
            let recipients = self.recipients.recipients(&latest, &connected);
            for agent in &recipients {
                self.offer(agent, &latest);
            }
            let others: Vec<String> = connected
                .into_iter()
                .filter(|a| !recipients.contains(a))
                .collect();
            self.offer_wanted(&others, &latest);
        }
        if let Some(open) = &inner.open {
            if now > open.deadline_unix_ms {
                self.finish(&mut inner, now)?;
            }
            return Ok(());
        }
        let Some(latest) = inner.latest.clone() else {
            return Ok(());
        };
        if now < inner.last_opened_unix_ms + self.config.round_interval.as_millis() as i64 {
            return Ok(());
        }
        let connected = self.outlet.agents();
        if connected.len() < self.config.min_clients {
            return Ok(());
        }
        let base = self.training_base(&latest)?;
        if base.version != latest.version {
            tracing::info!(
                version = base.version,
                newest = latest.version,
                "round trains from the newest version whose rollout was not turned down"
            );
        }
        let record = RoundRecord::open(
            inner.next_round,
            base.version,
            now,
            now + self.config.round_timeout.as_millis() as i64,
            connected,
        );
        self.rounds.save(&record)?;
        self.rounds.flush()?;
        inner.next_round += 1;
        inner.last_opened_unix_ms = now;
        tracing::info!(
            round = record.round,
            version = base.version,
            agents = record.invited.len(),
            "round opened"
        );
        for agent in &record.invited {
            self.send_round(agent, &record, &base, inner.parameters);
        }
        inner.open = Some(record);
        Ok(())
    }

    /// The version a round trains from: the newest, unless its rollout was turned down
    /// (rolled back or aborted) — then the newest of its ancestors that was not, so that
    /// learning goes on from the model the fleet kept rather than from the one it refused.
    fn training_base(&self, latest: &ModelRecord) -> Result<ModelRecord, FederationError> {
        let mut base = latest.clone();
        while base.parent != 0 && self.recipients.refused(base.version) {
            base = self.registered(base.parent)?;
        }
        Ok(base)
    }

    /// Registered model `version`; a missing one is an error.
    fn registered(&self, version: u64) -> Result<ModelRecord, FederationError> {
        Ok(self
            .models
            .get(version)?
            .ok_or(ModelsError::MissingFile(version))?)
    }

    fn send_round(&self, agent: &str, round: &RoundRecord, model: &ModelRecord, parameters: usize) {
        let frame = Body::RoundOpen(RoundOpen {
            round: round.round,
            model_version: model.version,
            model_sha256: model.sha256.clone(),
            parameters: parameters as u32,
            deadline_unix_ms: round.deadline_unix_ms,
        });
        if let Err(e) = self.outlet.send(agent, frame) {
            tracing::debug!(agent, round = round.round, "round not sent: {e}");
        }
    }

    /// Ends the open round: a new version if enough gradients came, else abandoned.
    fn finish(&self, inner: &mut Inner, now: i64) -> Result<(), FederationError> {
        let Some(mut round) = inner.open.take() else {
            return Ok(());
        };
        let gradients = self.rounds.gradients(round.round)?;
        round.accepted = gradients.len() as u32;
        round.samples = gradients.iter().map(|(_, g)| g.samples).sum();
        round.loss = gradients
            .iter()
            .map(|(_, g)| g.loss * g.samples as f64)
            .sum::<f64>()
            / round.samples.max(1) as f64;
        round.ended_unix_ms = now;
        let mut shipped = None;
        if gradients.len() < self.config.min_clients {
            round.state = RoundState::Abandoned;
            round.note = format!(
                "{} of the {} gradients needed came by the deadline",
                gradients.len(),
                self.config.min_clients
            );
            tracing::warn!(round = round.round, "round abandoned: {}", round.note);
        } else {
            let latest = inner.latest.clone().ok_or(ModelsError::MissingFile(0))?;
            if latest.round == round.round {
                // The hub stopped after registering this round's version: keep that one.
                round.produced_version = latest.version;
            } else {
                // The version the round trained from is the new version's parent.
                let base = self.registered(round.model_version)?;
                let record = self.produce(inner, &round, &base, gradients)?;
                round.produced_version = record.version;
                shipped = Some(record);
            }
            round.state = RoundState::Closed;
        }
        self.rounds.save(&round)?;
        self.rounds.drop_gradients(round.round)?;
        self.rounds.flush()?;
        if let Some(record) = shipped {
            tracing::info!(
                round = round.round,
                version = record.version,
                loss = round.loss,
                clients = round.accepted,
                "round closed"
            );
            self.distribute(&record);
        }
        Ok(())
    }

    fn produce(
        &self,
        inner: &mut Inner,
        round: &RoundRecord,
        base: &ModelRecord,
        gradients: Vec<(String, GradientReport)>,
    ) -> Result<ModelRecord, FederationError> {
        let parent = self.models.onnx(base.version)?;
        let weights = onnx::read_weights(&parent)?;
        let contributions = gradients
            .into_iter()
            .map(|(_, g)| Contribution {
                gradient: g.gradient,
                samples: g.samples,
            })
            .collect();
        let update = apply_round(
            &self.config,
            &mut inner.optimizer,
            &weights,
            contributions,
            rand::random(),
        )
        .ok_or(ModelsError::MissingFile(base.version))?;
        let file = onnx::write_weights(&parent, &update.weights)?;
        let record = self.models.register(NewModel {
            onnx: &file,
            parent: base.version,
            round: round.round,
            training_loss: Some(round.loss),
            metrics: update.metrics,
            created_unix_ms: round.ended_unix_ms,
        })?;
        // The round's loss was measured on the parent, on data it was not trained on.
        self.models
            .annotate(base.version, &[("evaluated_loss", round.loss)])?;
        self.rounds
            .set_state(OPTIMIZER_KEY, &serde_json::to_vec(&inner.optimizer)?)?;
        inner.latest = Some(record.clone());
        Ok(record)
    }

    fn take_gradient(&self, agent: &str, report: GradientReport) -> Result<(), FederationError> {
        let now = now_unix_ms();
        let mut inner = self.lock();
        let expect = intake::Expectation {
            open: inner.open.as_ref(),
            now_unix_ms: now,
            parameters: inner.parameters,
            staleness_bound: self.config.staleness_bound,
            latest_version: inner.latest.as_ref().map_or(0, |m| m.version),
        };
        let refusal = match intake::check(&report, &expect) {
            Err(refusal) => Some(refusal),
            Ok(()) if !self.rounds.put_gradient(report.round, agent, &report)? => {
                Some(Refusal::Duplicate)
            }
            Ok(()) => None,
        };
        if let Some(refusal) = refusal {
            tracing::info!(
                agent,
                round = report.round,
                reason = refusal.name(),
                "gradient refused"
            );
            return self.count_refusal(&mut inner, report.round, refusal);
        }
        self.rounds.flush()?;
        let Some(open) = inner.open.as_ref() else {
            return Ok(());
        };
        let answered = self.rounds.gradients(open.round)?;
        let everyone = open
            .invited
            .iter()
            .all(|invited| answered.iter().any(|(a, _)| a == invited));
        if everyone && answered.len() >= self.config.min_clients {
            self.finish(&mut inner, now)?;
        }
        Ok(())
    }

    fn count_refusal(
        &self,
        inner: &mut Inner,
        round: u64,
        refusal: Refusal,
    ) -> Result<(), FederationError> {
        let bump = |record: &mut RoundRecord| {
            *record.refused.entry(refusal.name().to_owned()).or_default() += 1;
        };
        match inner.open.as_mut() {
            Some(open) if open.round == round => {
                bump(open);
                self.rounds.save(open)?;
            }
            _ => match self.rounds.get(round)? {
                Some(mut record) => {
                    bump(&mut record);
                    self.rounds.save(&record)?;
                }
                None => tracing::warn!(round, "gradient for a round that never existed"),
            },
        }
        self.rounds.flush()?;
        Ok(())
    }
}

impl ControlHandler for Federation {
    fn frame(&self, agent: &str, body: Body) -> Result<Handled, ControlRefusal> {
        let outcome = match body {
            Body::GradientReport(report) => self.take_gradient(agent, report),
            Body::ModelReport(report) => self.take_report(agent, &report),
            other => return Ok(Handled::Declined(other)),
        };
        if let Err(e) = outcome {
            // A store failure is the hub's problem, not the agent's: it stays connected.
            tracing::error!(agent, "federation could not take a frame: {e}");
        }
        Ok(Handled::Consumed)
    }

    fn disconnected(&self, agent: &str) {
        self.forget_offer(agent);
    }

    fn connected(&self, agent: &ConnectedAgent) {
        self.forget_offer(&agent.agent);
        let mut inner = self.lock();
        let Some(latest) = inner.latest.clone() else {
            return;
        };
        let one = std::slice::from_ref(&agent.agent);
        if self
            .recipients
            .recipients(&latest, one)
            .contains(&agent.agent)
        {
            self.offer(&agent.agent, &latest);
        } else {
            self.offer_wanted(one, &latest);
        }
        let parameters = inner.parameters;
        let Some(open) = inner.open.as_mut() else {
            return;
        };
        if self
            .rounds
            .has_gradient(open.round, &agent.agent)
            .unwrap_or(true)
        {
            return;
        }
        if !open.invited.contains(&agent.agent) {
            open.invited.push(agent.agent.clone());
            if let Err(e) = self.rounds.save(open) {
                tracing::error!("federation: {e}");
            }
        }
        let open = open.clone();
        let base = match self.registered(open.model_version) {
            Ok(base) => base,
            Err(e) => {
                tracing::error!(
                    version = open.model_version,
                    "federation: the open round's model: {e}"
                );
                return;
            }
        };
        self.send_round(&agent.agent, &open, &base, parameters);
    }
}
