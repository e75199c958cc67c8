//! A rollout's record and its state machine: pending → progressing (step n) → succeeded,
//! with paused beside progressing, and aborted (by an operator) or rolled back (by a failed
//! gate) as the other ends. Every transition is a method that checks the state it leaves
//! and writes an event to the history; the record is what the store persists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    gates::{GateResult, Window},
    spec::{Selector, Step, Target},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Pending,
    Progressing,
    Paused,
    Succeeded,
    Aborted,
    RolledBack,
}

impl State {
    /// Still able to change hosts.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Progressing | Self::Paused)
    }
}

/// Why an operation is refused in the rollout's state.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("rollout {id} is {state:?}: cannot {op}")]
pub struct TransitionError {
    pub id: String,
    pub state: State,
    pub op: &'static str,
}

/// What a host is told to run for a target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// Empty: the host's own configuration.
    pub version: String,
    pub payload: String,
    pub sha256: String,
}

/// One line of a rollout's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub unix_ms: i64,
    pub event: String,
    pub step: u32,
    pub who: String,
    pub detail: String,
    pub gates: Vec<GateResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub target: Target,
    pub new: Desired,
    pub selector: Selector,
    pub steps: Vec<Step>,
    pub bake_ms: u64,
    pub started_by: String,
    pub reason: String,
    pub started_unix_ms: i64,
    pub state: State,
    /// Current step, 0-based.
    pub step: u32,
    pub step_started_unix_ms: i64,
    /// Selected hosts in wave order, with their tier; fixed at the start so a restart or a
    /// new agent never reshuffles the waves.
    pub order: Vec<(String, i32)>,
    /// What each selected host ran before, restored on rollback or abort.
    pub previous: BTreeMap<String, Desired>,
    /// Each selected host's cumulative totals when the current step began.
    pub snapshot: BTreeMap<String, Window>,
    pub history: Vec<Event>,
}

impl Rollout {
    fn refuse(&self, op: &'static str) -> TransitionError {
        TransitionError {
            id: self.id.clone(),
            state: self.state,
            op,
        }
    }

    pub fn log(
        &mut self,
        now: i64,
        event: &str,
        who: &str,
        detail: String,
        gates: Vec<GateResult>,
    ) {
        self.history.push(Event {
            unix_ms: now,
            event: event.into(),
            step: self.step,
            who: who.into(),
            detail,
            gates,
        });
    }

    /// Pending → progressing at step 0.
    pub fn begin(&mut self, now: i64) -> Result<(), TransitionError> {
        if self.state != State::Pending {
            return Err(self.refuse("begin"));
        }
        self.state = State::Progressing;
        self.step = 0;
        self.step_started_unix_ms = now;
        Ok(())
    }

    /// The current step passed its gates: the next step, or succeeded after the last.
    pub fn pass_step(&mut self, now: i64, gates: Vec<GateResult>) -> Result<(), TransitionError> {
        if self.state != State::Progressing {
            return Err(self.refuse("pass a step"));
        }
        let step = self.steps.get(self.step as usize).map(ToString::to_string);
        self.log(
            now,
            "step_passed",
            "hub",
            format!("step {}", step.unwrap_or_default()),
            gates,
        );
        if self.step as usize + 1 >= self.steps.len() {
            self.state = State::Succeeded;
            self.log(now, "succeeded", "hub", String::new(), Vec::new());
        } else {
            self.step += 1;
            self.step_started_unix_ms = now;
        }
        Ok(())
    }

    /// A gate failed: the updated hosts go back to their previous versions.
    pub fn fail_step(&mut self, now: i64, gates: Vec<GateResult>) -> Result<(), TransitionError> {
        if self.state != State::Progressing {
            return Err(self.refuse("fail a step"));
        }
        let failed: Vec<String> = gates
            .iter()
            .filter(|g| !g.passed)
            .map(|g| {
                format!(
                    "{}: updated {:.4} vs baseline {:.4} (limit {:.4})",
                    g.gate, g.updated, g.baseline, g.threshold
                )
            })
            .collect();
        self.log(now, "step_failed", "hub", failed.join("; "), gates);
        self.state = State::RolledBack;
        self.log(now, "rolled_back", "hub", String::new(), Vec::new());
        Ok(())
    }

    /// Stops the clock of the current step; resuming starts the step's bake again.
    pub fn pause(&mut self, now: i64, who: &str, why: &str) -> Result<(), TransitionError> {
        if !matches!(self.state, State::Progressing | State::Pending) {
            return Err(self.refuse("pause"));
        }
        self.state = State::Paused;
        self.log(now, "paused", who, why.into(), Vec::new());
        Ok(())
    }

    pub fn resume(&mut self, now: i64, who: &str, why: &str) -> Result<(), TransitionError> {
        if self.state != State::Paused {
            return Err(self.refuse("resume"));
        }
        self.state = State::Progressing;
        self.step_started_unix_ms = now;
        self.log(now, "resumed", who, why.into(), Vec::new());
        Ok(())
    }

    /// An operator stops the rollout; the updated hosts go back to their previous versions.
    pub fn abort(&mut self, now: i64, who: &str, why: &str) -> Result<(), TransitionError> {
        if !self.state.is_active() {
            return Err(self.refuse("abort"));
        }
        self.state = State::Aborted;
        self.log(now, "aborted", who, why.into(), Vec::new());
        Ok(())
    }

    /// An operator takes the version to every selected host now, without further gates.
    pub fn promote(&mut self, now: i64, who: &str, why: &str) -> Result<(), TransitionError> {
        if !self.state.is_active() {
            return Err(self.refuse("promote"));
        }
        self.step = self.steps.len().saturating_sub(1) as u32;
        self.state = State::Succeeded;
        self.log(now, "promoted", who, why.into(), Vec::new());
        Ok(())
    }

    /// Hosts updated by the current step (all of them once succeeded, none once ended
    /// otherwise).
    pub fn updated_hosts(&self) -> &[(String, i32)] {
        let count = match self.state {
            State::Pending | State::Aborted | State::RolledBack => 0,
            State::Succeeded => self.order.len(),
            State::Progressing | State::Paused => {
                super::spec::updated_count(&self.order, &self.steps, self.step as usize)
            }
        };
        &self.order[..count]
    }

    /// What `host` should run for the target now.
    pub fn desired_for(&self, host: &str) -> Option<Desired> {
        if self.updated_hosts().iter().any(|(id, _)| id == host) {
            Some(self.new.clone())
        } else {
            self.previous.get(host).cloned()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn rollout(hosts: &[(&str, i32)], steps: &[Step]) -> Rollout {
        Rollout {
            id: "fn-a-1".into(),
            target: Target::Function("fn-a".into()),
            new: Desired {
                version: "2".into(),
                payload: "name = \"fn-a\"".into(),
                sha256: String::new(),
            },
            selector: Selector::default(),
            steps: steps.to_vec(),
            bake_ms: 100,
            started_by: "alice".into(),
            reason: "test".into(),
            started_unix_ms: 0,
            state: State::Pending,
            step: 0,
            step_started_unix_ms: 0,
            order: hosts.iter().map(|(h, t)| (h.to_string(), *t)).collect(),
            previous: hosts
                .iter()
                .map(|(h, _)| (h.to_string(), Desired::default()))
                .collect(),
            snapshot: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    fn steps() -> Vec<Step> {
        vec![Step::PerTier(1), Step::Percent(100.0)]
    }

    #[test]
    fn a_rollout_walks_every_step_to_success() {
        let mut r = rollout(&[("e1", 1), ("r1", 2), ("e2", 1)], &steps());
        assert!(r.updated_hosts().is_empty());
        r.begin(1).unwrap();
        assert_eq!(r.updated_hosts().len(), 2, "one per tier");
        assert_eq!(r.desired_for("e1").unwrap().version, "2");
        assert_eq!(r.desired_for("e2").unwrap().version, "");
        r.pass_step(2, vec![]).unwrap();
        assert_eq!((r.state, r.step), (State::Progressing, 1));
        assert_eq!(r.updated_hosts().len(), 3);
        r.pass_step(3, vec![]).unwrap();
        assert_eq!(r.state, State::Succeeded);
        assert_eq!(r.desired_for("e2").unwrap().version, "2");
    }

    #[test]
    fn a_failed_gate_rolls_everyone_back_and_names_the_gate() {
        let mut r = rollout(&[("e1", 1), ("r1", 2)], &steps());
        r.begin(1).unwrap();
        let gate = GateResult {
            gate: "error_rate".into(),
            passed: false,
            updated: 1.0,
            baseline: 0.0,
            threshold: 0.02,
            detail: String::new(),
        };
        r.fail_step(2, vec![gate]).unwrap();
        assert_eq!(r.state, State::RolledBack);
        assert!(r.updated_hosts().is_empty());
        assert_eq!(r.desired_for("e1").unwrap().version, "");
        let failed = &r.history[0];
        assert_eq!(failed.event, "step_failed");
        assert!(
            failed.detail.contains("error_rate: updated 1.0000"),
            "{}",
            failed.detail
        );
    }

    #[test]
    fn pause_resume_abort_and_promote_only_from_the_states_they_leave() {
        let mut r = rollout(&[("e1", 1), ("e2", 1)], &steps());
        assert!(r.resume(0, "bob", "").is_err(), "not paused");
        r.begin(1).unwrap();
        r.pause(2, "bob", "look").unwrap();
        assert!(
            r.pass_step(3, vec![]).is_err(),
            "a paused step does not pass"
        );
        assert_eq!(r.updated_hosts().len(), 1, "paused keeps the current wave");
        r.resume(5, "bob", "ok").unwrap();
        assert_eq!(r.step_started_unix_ms, 5, "the bake starts again");
        r.promote(6, "bob", "urgent").unwrap();
        assert_eq!(r.state, State::Succeeded);
        assert_eq!(r.updated_hosts().len(), 2);
        assert!(r.abort(7, "bob", "").is_err(), "already ended");

        let mut r = rollout(&[("e1", 1)], &steps());
        r.begin(1).unwrap();
        r.abort(2, "carol", "wrong build").unwrap();
        assert_eq!(r.state, State::Aborted);
        assert!(r.updated_hosts().is_empty());
        assert_eq!(r.history.last().unwrap().who, "carol");
    }
}
