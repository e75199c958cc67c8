//! The fleet prior: the idle times of every function a driver runs, blended into each one's
//! own by the policies that learn idle times. `synapse-agent replay` (over a trace's
//! functions) and the live agent (over its configured functions) build it the same way here.

use std::sync::Arc;

use super::{FleetPrior, IdleGaps};

/// Intervals between refreshes of the fleet prior, in the replay and in the live agent.
pub const PRIOR_REFRESH_INTERVALS: usize = 5;

/// Collects the functions' idle times: the mean of each function's own distribution (every
/// function counts once, however busy it is) and its mean active minutes.
#[derive(Debug, Default)]
pub struct FleetPriorBuilder {
    gaps: IdleGaps,
    active: f64,
    seen: usize,
}

impl FleetPriorBuilder {
    /// Adds one function's idle times.
    pub fn add(&mut self, gaps: &IdleGaps) {
        if let Some(share) = gaps.with_open_idle_time() {
            self.gaps.add_scaled(&share, 1.0);
        }
        if gaps.active_minutes > 0.0 {
            self.active += gaps.active_minutes + gaps.same_minute;
            self.seen += 1;
        }
    }

    /// The prior, once some function has been active.
    pub fn build(self) -> Option<Arc<FleetPrior>> {
        (self.seen > 0).then(|| {
            Arc::new(FleetPrior {
                gaps: self.gaps,
                mean_active_minutes: self.active / self.seen as f64,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_prior_before_any_function_was_active() {
        let mut b = FleetPriorBuilder::default();
        b.add(&IdleGaps {
            by_minutes: vec![0.0; 4],
            ..IdleGaps::default()
        });
        assert!(b.build().is_none());
    }

    #[test]
    fn every_active_function_counts_once_in_the_mean_active_minutes() {
        let mut b = FleetPriorBuilder::default();
        for (active, same) in [(10.0, 5.0), (2.0, 1.0)] {
            b.add(&IdleGaps {
                by_minutes: vec![1.0, 0.0, 0.0, 0.0],
                active_minutes: active,
                same_minute: same,
                ..IdleGaps::default()
            });
        }
        let prior = b.build().expect("two active functions");
        assert_eq!(prior.mean_active_minutes, 9.0);
        assert!(prior.gaps.total() > 0.0);
    }
}
