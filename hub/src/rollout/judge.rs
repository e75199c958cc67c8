//! Judging a step: each selected host's cumulative totals (gateway invocations, failures,
//! cold starts, latency and forecast errors, all from the registry's function shares),
//! snapshotted when the step begins and subtracted when its bake is over, summed for the
//! updated hosts and for the others, and handed to the gates with the updated hosts' health.
//!
//! Forecast errors are kept by the model version that took part in each forecast. For a model
//! rollout an updated host counts only the forecasts of the version rolled out (not those it
//! made before the version was in service), and a host not yet updated those of any other
//! model version (not forecasts without a model, which say nothing about one).

use std::collections::BTreeMap;

use super::{
    RolloutEngine, RolloutError,
    gates::{self, GateSet, Health, Window},
    spec::Target,
    state::Rollout,
};

impl RolloutEngine {
    /// Cumulative totals of every selected host for the gates of `rollout`'s current step.
    pub(super) fn totals(
        &self,
        rollout: &Rollout,
    ) -> Result<BTreeMap<String, Window>, RolloutError> {
        let function = match &rollout.target {
            Target::Function(name) => Some(name.as_str()),
            Target::Model | Target::Settings => None,
        };
        let updated = rollout.updated_hosts();
        let mut totals: BTreeMap<String, Window> = BTreeMap::new();
        for (_, agent, share) in self.inner.registry.shares(function)? {
            let mut window = Window {
                invocations: share.gateway_invocations,
                failed: share.failed_invocations,
                cold: share.cold_invocations,
                latency_bounds_s: share.invocation_bounds_s,
                latency_counts: share.invocation_counts,
                ..Default::default()
            };
            let is_updated = updated.iter().any(|(h, _)| *h == agent);
            for (version, errors) in &share.forecast_errors {
                let counts = match rollout.target {
                    Target::Model if is_updated => *version == rollout.new.version,
                    Target::Model => !version.is_empty() && *version != rollout.new.version,
                    _ => true,
                };
                if counts {
                    window.forecast_error_sum += errors.abs_error_sum;
                    window.forecasts += errors.forecasts;
                }
            }
            totals.entry(agent).or_default().add(&window);
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
        let totals = self.totals(rollout)?;
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
        // A model changes forecasts on hosts that each serve their own functions: its gate is
        // the forecast error it makes (with agent health). Cold-start, error and p99 rates of
        // hosts with different workloads say nothing about it, least of all while pools warm.
        let model = rollout.target == Target::Model;
        let set = GateSet {
            invocations: !model,
            forecast: model,
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
        let totals = self.totals(rollout)?;
        rollout.snapshot = rollout
            .order
            .iter()
            .map(|(host, _)| (host.clone(), totals.get(host).cloned().unwrap_or_default()))
            .collect();
        Ok(())
    }
}
