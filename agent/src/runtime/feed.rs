//! Feeds the planners with what the agent measured: every closed telemetry interval goes to its
//! function's planner, every few intervals the planners share their idle times (the fleet
//! prior, built as in the replay), and each planner's forecast of the next interval and its
//! error so far are exported. The manager is then woken, so a new plan is held at once.
//!
//! Before an interval is fed, [`Runtime::stamp_forecasts`] writes into it the forecast its
//! planner made for it, which travels to the hub with the interval (the forecast gate of model
//! rollouts compares it with what came).

use tokio::sync::mpsc;

use super::Runtime;
use crate::{
    metrics::Metrics,
    policy::{FleetPriorBuilder, PRIOR_REFRESH_INTERVALS},
    telemetry::record::FunctionInterval,
};

impl Runtime {
    /// Feeds every set of closed intervals to the planners until the telemetry loop stops.
    pub async fn feed(self, mut closed: mpsc::Receiver<Vec<FunctionInterval>>) {
        let mut count = 0usize;
        while let Some(intervals) = closed.recv().await {
            count += 1;
            self.observe(&intervals, count.is_multiple_of(PRIOR_REFRESH_INTERVALS));
        }
    }

    /// Feeds one set of closed intervals (watched cgroups have no planner and are skipped);
    /// `share_prior`: refresh the fleet prior before the planners decide.
    pub fn observe(&self, intervals: &[FunctionInterval], share_prior: bool) {
        for iv in intervals {
            let Some(f) = self.function(&iv.function) else {
                continue;
            };
            let mut planner = f.planner.lock().unwrap_or_else(|p| p.into_inner());
            planner.observe(iv, f.accounted_mb());
            if let Some(view) = planner.forecast() {
                let m = &f.env.metrics;
                m.forecast_invocations
                    .get_or_create(&Metrics::label(&iv.function))
                    .set(view.invocations);
                m.forecast_error
                    .set(&iv.function, view.forecaster, &view.accuracy);
                if let Some(version) = view.model_version {
                    m.forecast_model_version
                        .get_or_create(&Metrics::label(&iv.function))
                        .set(i64::try_from(version).unwrap_or(i64::MAX));
                }
            }
        }
        if share_prior {
            self.share_fleet_prior();
        }
        for f in self.functions() {
            f.replanned.notify_one();
        }
    }

    /// Writes into each closing interval the forecast its function's planner holds for it (made
    /// when the previous interval was fed) and the model version in that forecast. Call before
    /// the intervals are fed.
    pub fn stamp_forecasts(&self, intervals: &mut [FunctionInterval]) {
        for iv in intervals {
            let Some(f) = self.function(&iv.function) else {
                continue;
            };
            let planner = f.planner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(view) = planner.forecast() {
                iv.forecast_invocations = Some(view.invocations);
                iv.forecast_model_version = view.model_version;
            }
        }
    }

    fn share_fleet_prior(&self) {
        let mut builder = FleetPriorBuilder::default();
        for f in self.functions() {
            let planner = f.planner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(gaps) = planner.idle_gaps() {
                builder.add(gaps);
            }
        }
        let Some(prior) = builder.build() else {
            return;
        };
        for f in self.functions() {
            f.planner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_fleet_prior(prior.clone());
        }
    }
}
