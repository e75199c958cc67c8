//! The share of a function's warm pool that this host keeps, as decided by cross-tier
//! placement (`crate::placement`): a cheap, cloneable handle that placement writes and the
//! pool manager reads after its planner every tick.
//!
//! Share 0: this host does not keep the function warm — target 0, `min_warm` not enforced,
//! idle instances retire at their keep-alive; invocations that still arrive are served as
//! usual (cold when no instance is left). Share `s > 0`: the pool holds `ceil(target × s)`
//! instances, at least one whenever the planner wants any. Share 1 (the default) leaves the
//! planner's target as it is.
//!
//! Placement may also assure a number of warm instances ([`PlacementShare::assure`]): a host
//! that gains a function holds what the hub's plan counts on there (within `max_instances`)
//! while its own planner has not seen the traffic the plan sends it yet. 0 (the default)
//! assures nothing.

use std::sync::{
    Arc,
    atomic::{AtomicU32, AtomicU64, Ordering},
};

/// Why a share was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ShareError {
    #[error("placement share {0} is not a number between 0 and 1")]
    OutOfRange(f64),
}

/// One function's placement share on this host, and the warm instances placement assures;
/// clones see the same values.
#[derive(Debug, Clone)]
pub struct PlacementShare(Arc<AtomicU64>, Arc<AtomicU32>);

impl Default for PlacementShare {
    /// Share 1: the whole pool the planner wants; nothing assured.
    fn default() -> Self {
        Self(
            Arc::new(AtomicU64::new(1.0f64.to_bits())),
            Arc::new(AtomicU32::new(0)),
        )
    }
}

/// Products this close above an integer are that integer (`10 × 0.3` is 3.0000000000000004 in
/// binary floating point, and must not become 4 instances).
const ROUNDING_SLACK: f64 = 1e-9;

impl PlacementShare {
    /// Sets the share, in `0.0..=1.0`; anything else (NaN included) is refused and the share
    /// in force stays.
    pub fn set(&self, share: f64) -> Result<(), ShareError> {
        if !(0.0..=1.0).contains(&share) {
            return Err(ShareError::OutOfRange(share));
        }
        self.0.store(share.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// The share in force.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Holds at least `instances` warm while the host keeps the function warm (0: none
    /// assured); the pool manager bounds it by `max_instances`.
    pub fn assure(&self, instances: u32) {
        self.1.store(instances, Ordering::Relaxed);
    }

    /// Takes `other`'s share and assured instances (a function's new version on this host).
    pub fn take_from(&self, other: &PlacementShare) {
        self.0
            .store(other.0.load(Ordering::Relaxed), Ordering::Relaxed);
        self.assure(other.assured());
    }

    /// The warm instances assured.
    pub fn assured(&self) -> u32 {
        self.1.load(Ordering::Relaxed)
    }

    /// Whether this host keeps the function warm at all.
    pub fn keeps_warm(&self) -> bool {
        self.get() > 0.0
    }

    /// The planner's `target` scaled by the share: 0 at share 0, else `ceil(target × share)`,
    /// at least 1 when `target ≥ 1`.
    pub fn scale(&self, target: u32) -> u32 {
        scale(target, self.get())
    }
}

fn scale(target: u32, share: f64) -> u32 {
    if share <= 0.0 || target == 0 {
        return 0;
    }
    let scaled = (f64::from(target) * share - ROUNDING_SLACK).ceil();
    (scaled as u32).clamp(1, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_share_keeps_the_planners_target() {
        let share = PlacementShare::default();
        assert_eq!(share.get(), 1.0);
        for t in [0, 1, 7, 256] {
            assert_eq!(share.scale(t), t);
        }
    }

    #[test]
    fn share_zero_holds_nothing_warm() {
        let share = PlacementShare::default();
        share.set(0.0).unwrap();
        assert!(!share.keeps_warm());
        assert_eq!(share.scale(12), 0);
    }

    #[test]
    fn a_partial_share_rounds_up_and_keeps_at_least_one() {
        let share = PlacementShare::default();
        share.set(0.5).unwrap();
        assert_eq!(share.scale(5), 3);
        assert_eq!(share.scale(4), 2);
        assert_eq!(share.scale(0), 0);
        share.set(0.01).unwrap();
        assert_eq!(share.scale(1), 1);
        assert_eq!(share.scale(10), 1);
    }

    #[test]
    fn binary_rounding_does_not_add_an_instance() {
        let share = PlacementShare::default();
        share.set(0.3).unwrap();
        assert_eq!(share.scale(10), 3);
        share.set(0.7).unwrap();
        assert_eq!(share.scale(10), 7);
        share.set(0.1).unwrap();
        assert_eq!(share.scale(30), 3);
    }

    #[test]
    fn clones_share_one_value() {
        let share = PlacementShare::default();
        let placement_side = share.clone();
        placement_side.set(0.25).unwrap();
        placement_side.assure(3);
        assert_eq!(share.get(), 0.25);
        assert_eq!(share.scale(8), 2);
        assert_eq!(share.assured(), 3);
    }

    #[test]
    fn shares_outside_zero_to_one_are_refused_and_the_old_one_stays() {
        let share = PlacementShare::default();
        share.set(0.5).unwrap();
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let err = share.set(bad).unwrap_err();
            assert!(err.to_string().contains("between 0 and 1"), "{err}");
        }
        assert_eq!(share.get(), 0.5);
    }
}
