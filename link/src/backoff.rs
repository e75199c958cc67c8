//! Reconnect delays: exponential from an initial delay up to a ceiling, with full jitter
//! (a uniform draw in `[delay/2, delay]`) so that a fleet that lost its hub does not return
//! in one wave.

use std::time::Duration;

use rand::Rng;

/// Delays between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// Ceiling of the next delay before jitter: `initial * 2^attempt`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay, drawn in `[ceiling/2, ceiling]`.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let low = ceiling / 2;
        let span = (ceiling - low).as_micros() as u64;
        low + Duration::from_micros(rng.random_range(0..=span))
    }

    /// Back to the initial delay after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn delays_grow_exponentially_within_jitter_and_stop_at_the_ceiling() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay(&mut rng);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} outside {ceiling:?}"
            );
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[test]
    fn reset_returns_to_the_initial_delay() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        for _ in 0..5 {
            backoff.next_delay(&mut rng);
        }
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(50));
    }

    #[test]
    fn jitter_spreads_a_fleet() {
        let mut rng = StdRng::seed_from_u64(3);
        let delays: std::collections::BTreeSet<_> = (0..50)
            .map(|_| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay(&mut rng)
            })
            .collect();
        assert!(delays.len() > 40, "only {} distinct delays", delays.len());
    }
}
