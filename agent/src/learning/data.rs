//! Where a round's training pairs come from: [`StoreMinutes`] reads the live agent's recent
//! per-minute telemetry from its store; [`ReplayedMinutes`] replays a slice of a recorded trace
//! with a virtual clock that moves forward by a fixed number of minutes per round, so a
//! simulated fleet trains on the same code path as the live one.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::samples::{HISTORY, Pair, pairs_of, thin};
use crate::{store::Store, trace::FunctionTrace};

/// A source of training pairs, asked once per round.
pub trait TrainingData: Send {
    /// The pairs of the agent's recent window, as of now.
    fn pairs(&mut self) -> Vec<Pair>;
}

/// The live agent's invocation counts of the last `window`, from its store, one telemetry
/// `interval` per model minute — the clock the live pool policies run on, so that an agent
/// with a short interval trains on what its forecasters see. Only intervals the agent
/// observed are targets; before its first one the history counts as none.
pub struct StoreMinutes {
    pub store: Arc<Store>,
    pub window: Duration,
    pub interval: Duration,
    pub max_pairs: usize,
}

impl TrainingData for StoreMinutes {
    fn pairs(&mut self) -> Vec<Pair> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let minute_ms = (self.interval.as_millis() as i64).max(1);
        let window = (self.window.as_millis() as i64 / minute_ms).clamp(1, MAX_WINDOW) as usize;
        let minutes = window + HISTORY;
        // Whole intervals only: the current one is still being counted.
        let end = now.div_euclid(minute_ms) * minute_ms;
        let since = end - minutes as i64 * minute_ms;
        let first_minute_of_day = (since.div_euclid(minute_ms).rem_euclid(1440)) as u32;
        let functions = match self.store.functions() {
            Ok(functions) => functions,
            Err(e) => {
                tracing::warn!("learning: cannot list the stored functions: {e:#}");
                return Vec::new();
            }
        };
        let mut pairs = Vec::new();
        for function in functions {
            let intervals = match self.store.intervals(&function, since, false) {
                Ok(intervals) => intervals,
                Err(e) => {
                    tracing::warn!(function, "learning: cannot read intervals: {e:#}");
                    continue;
                }
            };
            let mut counts = vec![0.0; minutes];
            let mut observed = vec![false; minutes];
            for iv in intervals.iter().filter(|iv| iv.start_unix_ms < end) {
                let minute = ((iv.start_unix_ms - since) / minute_ms) as usize;
                if let Some(c) = counts.get_mut(minute) {
                    *c += iv.invocations as f64;
                    observed[minute] = true;
                }
            }
            if counts.iter().any(|&c| c > 0.0)
                && let Some(first) = observed.iter().position(|&o| o)
            {
                // Targets from the second observed interval on (the first has no history).
                pairs.extend(
                    pairs_of(&counts, first_minute_of_day, first + 1..minutes)
                        .into_iter()
                        .zip(&observed[first + 1..])
                        .filter(|(_, seen)| **seen)
                        .map(|(pair, _)| pair),
                );
            }
        }
        thin(pairs, self.max_pairs)
    }
}

/// Most telemetry intervals a round's window spans (a day of one-second intervals).
const MAX_WINDOW: i64 = 86_400;

/// A slice of a recorded trace replayed with a virtual clock.
pub struct ReplayedMinutes {
    functions: Vec<Vec<f64>>,
    first_minute_of_day: u32,
    /// Minutes of the trace seen so far (the virtual now).
    now: usize,
    minutes_per_round: usize,
    window: usize,
    max_pairs: usize,
}

impl ReplayedMinutes {
    /// Replays `functions` (minute 0 at `first_minute_of_day`), starting at minute `start`
    /// and moving `minutes_per_round` further at each round; a round trains on the last
    /// `window` minutes.
    pub fn new(
        functions: &[FunctionTrace],
        first_minute_of_day: u32,
        start: usize,
        minutes_per_round: usize,
        window: usize,
        max_pairs: usize,
    ) -> Self {
        Self {
            functions: functions
                .iter()
                .map(|f| f.counts.iter().map(|&c| f64::from(c)).collect())
                .collect(),
            first_minute_of_day,
            now: start,
            minutes_per_round,
            window,
            max_pairs,
        }
    }

    /// The virtual now, in minutes from the start of the trace.
    pub fn now(&self) -> usize {
        self.now
    }
}

impl TrainingData for ReplayedMinutes {
    fn pairs(&mut self) -> Vec<Pair> {
        let len = self.functions.first().map_or(0, Vec::len);
        self.now = (self.now + self.minutes_per_round).min(len);
        let targets = self.now.saturating_sub(self.window)..self.now;
        let pairs = self
            .functions
            .iter()
            .filter(|counts| counts[..self.now].iter().any(|&c| c > 0.0))
            .flat_map(|counts| pairs_of(counts, self.first_minute_of_day, targets.clone()))
            .collect();
        thin(pairs, self.max_pairs)
    }
}
