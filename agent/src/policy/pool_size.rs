//! The pool target of our policy: how many instances to keep for a forecast demand.
//!
//! With invocations arriving at rate `λ` (per second) and each running `d` seconds, the
//! offered load is `a = λ·d` busy instances on average (the expected concurrency). With `k`
//! instances an arrival finds all of them busy — a cold start — with the Erlang-B probability
//! `B(a, k)`, whatever the distribution of durations. The `k`-th instance therefore avoids
//! `λ·(B(a, k−1) − B(a, k))` cold starts per second and is idle a share `1 − a·(B(a, k−1) −
//! B(a, k))` of the time. It is kept while the cold starts it avoids, valued at
//! `cost_threshold` idle instance-seconds each (the same knob as the keep-alive), are worth
//! at least its idle time.

/// Smallest pool whose next instance is not worth its idle time; at most `max_pool`.
pub fn pool_for_load(rate_per_s: f64, duration_s: f64, cost_threshold: f64, max_pool: u32) -> u32 {
    let load = rate_per_s * duration_s;
    if load <= 0.0 || !load.is_finite() {
        return 0;
    }
    let mut blocking = 1.0; // B(a, 0)
    for k in 1..=max_pool {
        let next = load * blocking / (f64::from(k) + load * blocking);
        let avoided = blocking - next;
        let worth = rate_per_s * avoided * cost_threshold;
        let idle_share = (1.0 - load * avoided).max(0.0);
        if worth < idle_share {
            return k - 1;
        }
        blocking = next;
    }
    max_pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_demand_needs_no_pool() {
        assert_eq!(pool_for_load(0.0, 1.0, 600.0, 100), 0);
    }

    #[test]
    fn a_busy_function_gets_more_than_its_mean_concurrency() {
        // 10 calls/s × 2 s = 20 busy on average; Poisson peaks need headroom.
        let k = pool_for_load(10.0, 2.0, 600.0, 1000);
        assert!(k > 20 && k < 40, "{k}");
    }

    #[test]
    fn a_dearer_cold_start_never_shrinks_the_pool() {
        let mut previous = 0;
        for c in [1.0, 10.0, 100.0, 1000.0, 10_000.0] {
            let k = pool_for_load(2.0, 0.5, c, 1000);
            assert!(k >= previous, "{c}: {k} < {previous}");
            previous = k;
        }
    }

    #[test]
    fn a_rare_function_is_not_pooled() {
        // One call an hour of 100 ms: an instance would idle for ~3599 s per cold start saved.
        assert_eq!(pool_for_load(1.0 / 3600.0, 0.1, 600.0, 100), 0);
    }

    #[test]
    fn the_pool_is_clamped() {
        assert_eq!(pool_for_load(100.0, 10.0, 600.0, 8), 8);
    }
}
