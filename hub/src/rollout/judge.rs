//! Judging a step: each selected host's cumulative totals (gateway invocations, failures,
//! cold starts and latency from the registry's function shares; forecast errors recorded by
//! federated learning), snapshotted when the step begins and subtracted when its bake is
//! over, summed for the updated hosts and for the others, and handed to the gates with the
//! updated hosts' health.

use std::collections::BTreeMap;

use super::{
    RolloutEngine, RolloutError,
    engine::lock,
    gates::{self, GateSet, Health, Window},
    spec::Target,
    state::Rollout,
};

impl RolloutEngine {
    /// Cumulative totals of every selected host for the gates of `target`.
    pub(super) fn totals(&self, target: &Target) -> Result<BTreeMap<String, Window>, RolloutError> {
        let function = match target {
            Target::Function(name) => Some(name.as_str()),
            Target::Model | Target::Settings => None,
        };
        let mut totals: BTreeMap<String, Window> = BTreeMap::new();
        for (_, agent, share) in self.inner.registry.shares(function)? {
            totals.entry(agent).or_default().add(&Window {
                invocations: share.gateway_invocations,
                failed: share.failed_invocations,
                cold: share.cold_invocations,
                latency_bounds_s: share.invocation_bounds_s,
                latency_counts: share.invocation_counts,
                ..Default::default()
            });
        }
        for (agent, (sum, count)) in lock(&self.inner.forecasts).iter() {
            let w = totals.entry(agent.clone()).or_default();
            w.forecast_error_sum += sum;
            w.forecasts += count;
        }
        Ok(totals)
    }

    pub(super) fn health(&self, rollout: &Rollout) -> Health {
        let updated = rollout.updated_hosts();
        let mut health = Health {
            updated: updated.len(),
            ..Default::default()
        };
        for (host, _) in updated {
            let running = self.running(host, &rollout.target);
            let version = &rollout.new.version;
            match running {
                Some(r) if r.version == *version => {}
                Some(r) if !r.error.is_empty() && r.refused_version == *version => {
                    health.apply_failures += 1;
                    health
                        .first_failure
                        .get_or_insert(format!("{host}: {}", r.error));
                }
                _ if self.inner.outlet.is_connected(host) => health.not_running += 1,
                _ => health.offline += 1,
            }
        }
        health
    }

    /// Judges the current step over its window.
    pub fn judge(&self, rollout: &Rollout) -> Result<Vec<gates::GateResult>, RolloutError> {
        let totals = self.totals(&rollout.target)?;
        let updated_ids = rollout.updated_hosts();
        let (mut updated, mut baseline) = (Window::default(), Window::default());
        for (host, _) in &rollout.order {
            let now = totals.get(host).cloned().unwrap_or_default();
            let then = rollout.snapshot.get(host).cloned().unwrap_or_default();
            let window = now.since(&then);
            if updated_ids.iter().any(|(h, _)| h == host) {
                updated.add(&window);
            } else {
                baseline.add(&window);
            }
        }
        let set = GateSet {
            invocations: true,
            forecast: rollout.target == Target::Model,
        };
        Ok(gates::evaluate(
            set,
            &updated,
            &baseline,
            &self.health(rollout),
            &self.inner.config.gates,
        ))
    }

    pub(super) fn snapshot(&self, rollout: &mut Rollout) -> Result<(), RolloutError> {
        let totals = self.totals(&rollout.target)?;
        rollout.snapshot = rollout
            .order
            .iter()
            .map(|(host, _)| (host.clone(), totals.get(host).cloned().unwrap_or_default()))
            .collect();
        Ok(())
    }
}
