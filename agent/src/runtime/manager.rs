//! The pool manager of one function: every second (and at once when its planner has a new
//! plan) it turns the plan into instances — the target held (scaled by this host's placement
//! share, within `min_warm..=max_instances`), due pre-warms started, instances beyond the
//! target released for a later pre-warm or retired past their keep-alive — and accounts idle
//! memory × time.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tracing::warn;

use super::{FunctionRuntime, placement::PlacementShare, planner::PoolPlan};
use crate::config::FunctionSpec;

const TICK: Duration = Duration::from_secs(1);

impl FunctionRuntime {
    /// The pool manager: runs until the agent stops, then waits for every instance to end.
    pub async fn manage(self: Arc<Self>) {
        let mut shutdown = self.env.shutdown.clone();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.replanned.notified() => {}
                _ = crate::shutdown::stopped(&mut shutdown) => break,
            }
            let now = Instant::now();
            self.tick(now, now.duration_since(last));
            last = now;
            if self.is_retired() && self.pool().alive() == 0 {
                break;
            }
        }
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            if let Err(e) = t.await {
                warn!(function = %self.spec.name, "instance task failed: {e}");
            }
        }
    }

    fn tick(self: &Arc<Self>, now: Instant, dt: Duration) {
        let now_s = now.duration_since(self.started).as_secs_f64();
        let plan = self
            .planner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .plan(now_s);
        let retired = self.is_retired();
        let held = if retired {
            // Replaced by a newer version: nothing held, idle instances go at once.
            PoolPlan {
                target: 0,
                keep_alive: Duration::ZERO,
                prewarm: None,
            }
        } else {
            held_plan(&plan, &self.spec, &self.placement)
        };
        let mut pool = self.pool();
        if retired || !self.placement.keeps_warm() {
            pool.cancel_prewarms();
        }
        for due in pool.due_prewarms(now) {
            if !self.start_instance_anchored(&mut pool, Some(due.anchor)) {
                break;
            }
        }
        while pool.alive() < held.target && self.start_instance(&mut pool) {}
        if let Some(delay) = held.prewarm {
            pool.release_for_prewarm(delay, held.target, now);
        }
        for seq in pool.expired(held.keep_alive, held.target, now) {
            pool.retire(seq);
        }
        let l = self.label();
        let m = &self.env.metrics;
        m.idle_memory_mb_seconds
            .get_or_create(&l)
            .inc_by(pool.idle_ready() as f64 * self.accounted_mb() * dt.as_secs_f64());
        if retired {
            // The series are the function's; the version in service reports them.
            return;
        }
        m.warm_instances.get_or_create(&l).set(pool.ready() as i64);
        m.pool_target.get_or_create(&l).set(held.target as i64);
        self.queue_depth().set(pool.queue_depth() as i64);
    }
}

/// The plan the pool follows: the planner's, with the target scaled by the placement share
/// and bounded by the function's spec, the keep-alive within `keep_alive_min..=keep_alive_max`,
/// and a pre-warm only while the host keeps the function warm and before the keep-alive ends.
fn held_plan(plan: &PoolPlan, spec: &FunctionSpec, share: &PlacementShare) -> PoolPlan {
    let keep_alive = plan
        .keep_alive
        .clamp(spec.keep_alive_min, spec.keep_alive_max);
    PoolPlan {
        target: held_target(plan.target, spec, share),
        keep_alive,
        prewarm: plan
            .prewarm
            .filter(|p| share.keeps_warm() && *p < keep_alive),
    }
}

/// Instances the pool holds for a planner's `target`: scaled by this host's placement share,
/// at least `min_warm` and what placement assures, at most `max_instances` — except at share
/// 0, where the host keeps nothing warm and neither is enforced.
fn held_target(target: u32, spec: &FunctionSpec, share: &PlacementShare) -> u32 {
    if !share.keeps_warm() {
        return 0;
    }
    share
        .scale(target)
        .max(spec.min_warm)
        .max(share.assured())
        .min(spec.max_instances)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min_warm: u32, max_instances: u32) -> FunctionSpec {
        let text = format!(
            "[[functions]]\nname = \"f\"\ncommand = \"/bin/true\"\nmin_warm = {min_warm}\nmax_instances = {max_instances}\n"
        );
        crate::config::AgentConfig::parse(&text, "t.toml")
            .expect("valid")
            .functions
            .remove(0)
    }

    #[test]
    fn the_placement_share_scales_the_planners_target_within_the_bounds() {
        let share = PlacementShare::default();
        assert_eq!(held_target(6, &spec(0, 8), &share), 6);
        assert_eq!(held_target(12, &spec(0, 8), &share), 8);
        share.set(0.5).unwrap();
        assert_eq!(held_target(5, &spec(0, 8), &share), 3);
        assert_eq!(held_target(1, &spec(0, 8), &share), 1);
        assert_eq!(
            held_target(0, &spec(2, 8), &share),
            2,
            "min_warm still holds"
        );
    }

    #[test]
    fn placement_assured_instances_are_held_within_max_instances_and_not_at_share_zero() {
        let share = PlacementShare::default();
        share.assure(4);
        assert_eq!(held_target(1, &spec(1, 8), &share), 4);
        assert_eq!(
            held_target(6, &spec(1, 8), &share),
            6,
            "the planner may want more"
        );
        assert_eq!(held_target(1, &spec(1, 3), &share), 3);
        share.set(0.0).unwrap();
        assert_eq!(held_target(1, &spec(1, 8), &share), 0);
    }

    #[test]
    fn share_zero_keeps_nothing_warm_not_even_min_warm() {
        let share = PlacementShare::default();
        share.set(0.0).unwrap();
        assert_eq!(held_target(6, &spec(2, 8), &share), 0);
        let plan = PoolPlan {
            target: 6,
            keep_alive: Duration::from_secs(60),
            prewarm: Some(Duration::from_secs(30)),
        };
        assert_eq!(held_plan(&plan, &spec(2, 8), &share).prewarm, None);
    }

    #[test]
    fn keep_alive_is_bounded_and_a_prewarm_must_come_before_it_runs_out() {
        let share = PlacementShare::default();
        let mut f = spec(0, 8);
        f.keep_alive_max = Duration::from_secs(100);
        let plan = |keep_alive, prewarm| PoolPlan {
            target: 0,
            keep_alive: Duration::from_secs(keep_alive),
            prewarm: Some(Duration::from_secs(prewarm)),
        };
        let held = held_plan(&plan(300, 50), &f, &share);
        assert_eq!(held.keep_alive, Duration::from_secs(100));
        assert_eq!(held.prewarm, Some(Duration::from_secs(50)));
        assert_eq!(held_plan(&plan(300, 200), &f, &share).prewarm, None);
    }
}
