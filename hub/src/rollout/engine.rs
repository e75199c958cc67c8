//! The rollout engine: starts rollouts, moves each through its steps on a tick, judges every
//! step with the gates when its bake time is over, and tells each agent what to run
//! (`DesiredVersions`) whenever that changes and whenever the agent (re)connects. What agents
//! report back (`RunningVersions`) is kept in memory: every agent reports again after each
//! welcome, so nothing is lost with a hub restart.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use synapse_link::names::{MAX_VERSION, is_version, printable};
use synapse_proto::link::v1::{DesiredVersion, DesiredVersions, RunningVersion, frame::Body};
use tokio_util::sync::CancellationToken;

use super::{
    RolloutError,
    spec::{self, Host, Selector, Target},
    state::{Desired, Rollout, State},
    store::RolloutStore,
};
use crate::{
    config::RolloutsConfig,
    link::AgentOutlet,
    registry::{Registry, now_ms},
};

/// The longest error text kept of an agent's running-version report.
const MAX_REPORTED_ERROR: usize = 1024;

/// What an operator (or the federated-learning module) asks for.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub target: Target,
    pub new: Desired,
    pub selector: Selector,
    /// `None`: the configured default steps.
    pub steps: Option<Vec<String>>,
    /// `None`: the configured default bake time.
    pub bake: Option<Duration>,
    pub who: String,
    pub reason: String,
}

/// An operation on an active rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Pause,
    Resume,
    Abort,
    Promote,
}

pub(super) struct Inner {
    pub(super) store: RolloutStore,
    pub(super) registry: Registry,
    pub(super) outlet: AgentOutlet,
    pub(super) config: RolloutsConfig,
    /// What each agent last reported, by target.
    running: Mutex<HashMap<String, BTreeMap<Target, RunningVersion>>>,
    /// Serialises read-modify-write of rollout records (tick and console operations).
    writes: Mutex<()>,
}

/// The hub's rollout engine; cheap to clone.
#[derive(Clone)]
pub struct RolloutEngine {
    pub(super) inner: Arc<Inner>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RolloutEngine {
    pub fn new(
        db: &sled::Db,
        registry: Registry,
        outlet: AgentOutlet,
        config: RolloutsConfig,
    ) -> Result<Self, RolloutError> {
        Ok(Self {
            inner: Arc::new(Inner {
                store: RolloutStore::open(db)?,
                registry,
                outlet,
                config,
                running: Mutex::new(HashMap::new()),
                writes: Mutex::new(()),
            }),
        })
    }

    fn hosts(&self) -> Result<Vec<Host>, RolloutError> {
        Ok(self
            .inner
            .registry
            .agents()?
            .into_iter()
            .map(|a| Host {
                id: a.agent_id,
                tier: a.tier,
                labels: a.labels.into_iter().collect(),
            })
            .collect())
    }

    /// Starts a rollout (pending until the next tick). Refused when the target already has
    /// an active one, the steps or payload are wrong, or no known agent matches.
    pub fn start(&self, request: StartRequest) -> Result<Rollout, RolloutError> {
        let config = &self.inner.config;
        let steps = spec::parse_steps(request.steps.as_deref().unwrap_or(&config.steps))?;
        super::payload::check(&request.target, &request.new)?;
        let bake = request.bake.unwrap_or(config.bake);
        let hosts = self.hosts()?;
        let order = spec::wave_order(&request.selector, &hosts);
        if order.is_empty() {
            return Err(spec::SpecError::NoHosts.into());
        }
        let _writes = lock(&self.inner.writes);
        // What each host runs until its wave: what the engine wants it to run now, which for
        // a host that joined after the last rollout started is what that rollout gave every
        // host (its settled versions alone would send it back to its configured one).
        let rollouts = self.rollouts()?;
        let previous = order
            .iter()
            .map(|(id, _)| {
                let host = hosts.iter().find(|h| &h.id == id);
                let desired = self.desired_of(id, host, &rollouts)?;
                Ok((
                    id.clone(),
                    desired.get(&request.target).cloned().unwrap_or_default(),
                ))
            })
            .collect::<Result<BTreeMap<_, _>, RolloutError>>()?;
        let now = now_ms();
        let mut rollout = Rollout {
            id: self.inner.store.new_id(&request.target)?,
            target: request.target,
            new: request.new,
            selector: request.selector,
            steps,
            bake_ms: u64::try_from(bake.as_millis()).unwrap_or(u64::MAX),
            started_by: request.who.clone(),
            reason: request.reason.clone(),
            started_unix_ms: now,
            state: State::Pending,
            step: 0,
            step_started_unix_ms: now,
            order,
            previous,
            snapshot: BTreeMap::new(),
            history: Vec::new(),
        };
        rollout.log(now, "started", &request.who, request.reason, Vec::new());
        self.inner.store.create(&rollout)?;
        tracing::info!(rollout = %rollout.id, target = %rollout.target, version = %rollout.new.version, who = %request.who, "rollout started");
        Ok(rollout)
    }

    /// Starts the rollout of forecaster `version` (its file's hex SHA-256) with the
    /// configured model policy (a canary per tier, then everyone), for every agent. Called
    /// by federated learning when a round merges a new model.
    pub fn start_model(
        &self,
        version: &str,
        sha256: &str,
        reason: &str,
    ) -> Result<Rollout, RolloutError> {
        let policy = &self.inner.config.models;
        self.start(StartRequest {
            target: Target::Model,
            new: Desired {
                version: version.into(),
                payload: String::new(),
                sha256: sha256.into(),
            },
            selector: Selector::default(),
            steps: Some(policy.steps.clone()),
            bake: Some(policy.bake),
            who: "federated-learning".into(),
            reason: reason.into(),
        })
    }

    /// Agents that should run model `version` now (its rollout's updated hosts, or hosts
    /// settled on it).
    pub fn agents_for_model(&self, version: &str) -> Result<Vec<String>, RolloutError> {
        let rollouts = self.rollouts()?;
        let mut agents = Vec::new();
        for host in self.hosts()? {
            if self
                .desired_of(&host.id, Some(&host), &rollouts)?
                .get(&Target::Model)
                .is_some_and(|d| d.version == version)
            {
                agents.push(host.id);
            }
        }
        Ok(agents)
    }

    /// What `agent` should run, by target: its settled versions, overridden by active
    /// rollouts that select it.
    pub fn desired(&self, agent: &str) -> Result<BTreeMap<Target, Desired>, RolloutError> {
        let host = self.hosts()?.into_iter().find(|h| h.id == agent);
        self.desired_of(agent, host.as_ref(), &self.rollouts()?)
    }

    /// Every rollout, newest first (ended ones, for hosts that joined after them), and the
    /// active ones.
    fn rollouts(&self) -> Result<(Vec<Rollout>, Vec<Rollout>), RolloutError> {
        Ok((
            self.inner.store.history(None, usize::MAX)?,
            self.inner.store.all_active()?,
        ))
    }

    /// [`RolloutEngine::desired`] with the host's registry entry and the rollouts read once
    /// by the caller.
    fn desired_of(
        &self,
        agent: &str,
        host: Option<&Host>,
        (history, active): &(Vec<Rollout>, Vec<Rollout>),
    ) -> Result<BTreeMap<Target, Desired>, RolloutError> {
        let mut desired = self.inner.store.settled(agent)?;
        // A host no rollout listed (it joined after they started) takes what the newest
        // succeeded rollout whose selector matches it gave every host it listed — unless a
        // newer ended rollout listed it.
        if let Some(host) = host {
            let mut decided = std::collections::BTreeSet::new();
            for rollout in history {
                if rollout.state.is_active() || decided.contains(&rollout.target) {
                    continue;
                }
                if rollout.order.iter().any(|(h, _)| h == agent) {
                    decided.insert(rollout.target.clone());
                } else if rollout.state == State::Succeeded && rollout.selector.matches(host) {
                    desired.insert(rollout.target.clone(), rollout.new.clone());
                    decided.insert(rollout.target.clone());
                }
            }
        }
        for rollout in active {
            if let Some(d) = rollout.desired_for(agent) {
                desired.insert(rollout.target.clone(), d);
            }
        }
        Ok(desired)
    }

    /// Sends `agent` its whole desired set, if it is connected.
    pub fn send_desired(&self, agent: &str) -> Result<(), RolloutError> {
        let targets: Vec<DesiredVersion> = self
            .desired(agent)?
            .into_iter()
            .map(|(target, d)| DesiredVersion {
                target: target.to_string(),
                version: d.version,
                payload: d.payload,
                sha256: d.sha256,
                rollout: String::new(),
            })
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        if let Err(e) = self
            .inner
            .outlet
            .send(agent, Body::DesiredVersions(DesiredVersions { targets }))
        {
            // An absent agent catches up when it connects again.
            tracing::debug!(agent, "desired versions not sent now: {e}");
        }
        Ok(())
    }

    fn push(&self, rollout: &Rollout) -> Result<(), RolloutError> {
        for (host, _) in &rollout.order {
            self.send_desired(host)?;
        }
        Ok(())
    }

    /// Notes what `agent` runs.
    pub fn running_reported(&self, agent: &str, running: Vec<RunningVersion>) {
        let mut all = lock(&self.inner.running);
        let entry = all.entry(agent.to_owned()).or_default();
        for mut r in running {
            if !is_version(&r.version) || !is_version(&r.refused_version) {
                tracing::warn!(
                    agent,
                    target = %printable(&r.target, 64),
                    "running version report refused: a version is not at most {MAX_VERSION} visible characters"
                );
                continue;
            }
            // The error is the agent's own text: kept and shown, so made printable and bounded.
            r.error = printable(&r.error, MAX_REPORTED_ERROR);
            match r.target.parse::<Target>() {
                Ok(target) => {
                    if !r.error.is_empty() {
                        tracing::warn!(agent, target = %target, version = %r.refused_version, error = %r.error, "agent cannot apply a version");
                    }
                    entry.insert(target, r);
                }
                Err(_) => tracing::warn!(
                    agent,
                    "running version of an unknown target {:?}",
                    printable(&r.target, 64)
                ),
            }
        }
    }

    /// What `agent` last reported for `target`.
    pub fn running(&self, agent: &str, target: &Target) -> Option<RunningVersion> {
        lock(&self.inner.running)
            .get(agent)
            .and_then(|m| m.get(target).cloned())
    }

    /// One pass over every active rollout at `now` (Unix ms): begins pending ones, and
    /// judges the steps whose bake time is over.
    pub fn tick(&self, now: i64) -> Result<(), RolloutError> {
        let _writes = lock(&self.inner.writes);
        for mut rollout in self.inner.store.all_active()? {
            match rollout.state {
                State::Pending => {
                    rollout.begin(now)?;
                    self.snapshot(&mut rollout)?;
                }
                State::Progressing
                    if now.saturating_sub(rollout.step_started_unix_ms)
                        >= rollout.bake_ms as i64 =>
                {
                    let results = self.judge(&rollout)?;
                    if results.iter().all(|g| g.passed) {
                        rollout.pass_step(now, results)?;
                        self.snapshot(&mut rollout)?;
                        tracing::info!(rollout = %rollout.id, step = rollout.step, state = ?rollout.state, "rollout step passed");
                    } else {
                        rollout.fail_step(now, results)?;
                        tracing::warn!(rollout = %rollout.id, why = %rollout.history[rollout.history.len() - 2].detail, "rollout rolled back");
                    }
                }
                _ => {
                    self.catch_up(&rollout)?;
                    continue;
                }
            }
            self.inner.store.save(&rollout)?;
            self.push(&rollout)?;
        }
        Ok(())
    }

    /// Sends its desired versions again to every connected host of `rollout` that neither
    /// runs nor refused what it should (a frame lost to a full queue is not lost for good).
    fn catch_up(&self, rollout: &Rollout) -> Result<(), RolloutError> {
        for (host, _) in &rollout.order {
            let Some(desired) = rollout.desired_for(host) else {
                continue;
            };
            let settled = match self.running(host, &rollout.target) {
                Some(r) => r.version == desired.version || r.refused_version == desired.version,
                // A host that never ran a rollout's version runs its own configuration.
                None => desired.version.is_empty(),
            };
            if !settled && self.inner.outlet.is_connected(host) {
                self.send_desired(host)?;
            }
        }
        Ok(())
    }

    /// The active rollout with id `id_or_target`, or the active rollout of that target.
    fn find_active(&self, id_or_target: &str) -> Result<Rollout, RolloutError> {
        if let Some(r) = self.inner.store.get(id_or_target)? {
            return Ok(r);
        }
        if let Ok(target) = id_or_target.parse::<Target>()
            && let Some(r) = self.inner.store.active(&target)?
        {
            return Ok(r);
        }
        Err(RolloutError::NotFound(id_or_target.to_owned()))
    }

    /// Pause, resume, abort or promote; `who` and `why` go to the history.
    pub fn operate(
        &self,
        id_or_target: &str,
        op: Operation,
        who: &str,
        why: &str,
    ) -> Result<Rollout, RolloutError> {
        let _writes = lock(&self.inner.writes);
        let mut rollout = self.find_active(id_or_target)?;
        let now = now_ms();
        match op {
            Operation::Pause => rollout.pause(now, who, why)?,
            Operation::Resume => {
                rollout.resume(now, who, why)?;
                // The bake starts again, and so does its window.
                self.snapshot(&mut rollout)?;
            }
            Operation::Abort => rollout.abort(now, who, why)?,
            Operation::Promote => rollout.promote(now, who, why)?,
        }
        self.inner.store.save(&rollout)?;
        self.push(&rollout)?;
        tracing::info!(rollout = %rollout.id, ?op, who, "rollout {:?}", rollout.state);
        Ok(rollout)
    }

    pub fn get(&self, id_or_target: &str) -> Result<Rollout, RolloutError> {
        self.find_active(id_or_target)
    }

    pub fn active(&self) -> Result<Vec<Rollout>, RolloutError> {
        Ok(self.inner.store.all_active()?)
    }

    pub fn history(
        &self,
        target: Option<&Target>,
        limit: usize,
    ) -> Result<Vec<Rollout>, RolloutError> {
        Ok(self.inner.store.history(target, limit)?)
    }

    pub fn is_connected(&self, agent: &str) -> bool {
        self.inner.outlet.is_connected(agent)
    }

    /// Ticks every configured interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.tick(now_ms()) {
                tracing::error!("rollout tick: {e}");
            }
        }
    }
}
