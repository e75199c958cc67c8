//! Latency histogram with fixed bucket bounds, the same bounds for the stored intervals,
//! the link's telemetry batches and the Prometheus histograms, so they can be merged.

use serde::{Deserialize, Serialize};

/// Upper bounds, in seconds, of the latency buckets (a last bucket takes everything above).
pub const LATENCY_BOUNDS_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
    30.0, 60.0,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// Count per bucket; `counts[LATENCY_BOUNDS_S.len()]` holds values above the last bound.
    pub counts: Vec<u64>,
    pub sum_s: f64,
    pub count: u64,
    /// Smallest and largest value seen; 0 while the histogram is empty (JSON has no infinity).
    pub min_s: f64,
    pub max_s: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; LATENCY_BOUNDS_S.len() + 1],
            sum_s: 0.0,
            count: 0,
            min_s: 0.0,
            max_s: 0.0,
        }
    }
}

impl LatencyHistogram {
    pub fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BOUNDS_S.partition_point(|&b| b < seconds);
        self.counts[i] += 1;
        self.min_s = if self.count == 0 {
            seconds
        } else {
            self.min_s.min(seconds)
        };
        self.max_s = if self.count == 0 {
            seconds
        } else {
            self.max_s.max(seconds)
        };
        self.sum_s += seconds;
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min_s = other.min_s;
            self.max_s = other.max_s;
        } else {
            self.min_s = self.min_s.min(other.min_s);
            self.max_s = self.max_s.max(other.max_s);
        }
        self.sum_s += other.sum_s;
        self.count += other.count;
    }

    pub fn mean_s(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_s / self.count as f64)
    }

    /// Quantile estimate by linear interpolation inside the bucket, clamped to the observed
    /// minimum and maximum.
    pub fn quantile_s(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut seen = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let next = seen + c as f64;
            if next >= rank {
                let lo = if i == 0 { 0.0 } else { LATENCY_BOUNDS_S[i - 1] };
                let hi = LATENCY_BOUNDS_S.get(i).copied().unwrap_or(self.max_s);
                let v = lo + (hi - lo) * ((rank - seen) / c as f64);
                return Some(v.clamp(self.min_s, self.max_s));
            }
            seen = next;
        }
        Some(self.max_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_their_bucket_and_quantiles_stay_in_range() {
        let mut h = LatencyHistogram::default();
        for v in [0.151, 0.152, 0.155, 0.41] {
            h.observe(v);
        }
        assert_eq!(h.count, 4);
        assert_eq!(h.counts[6], 3); // (0.15, 0.2]
        assert_eq!(h.counts[9], 1); // (0.4, 0.5]
        let p50 = h.quantile_s(0.5).unwrap();
        assert!((0.151..=0.2).contains(&p50), "{p50}");
        assert_eq!(h.quantile_s(1.0).unwrap(), 0.41);
    }

    #[test]
    fn an_empty_histogram_round_trips_through_json() {
        let h = LatencyHistogram::default();
        let back: LatencyHistogram =
            serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = LatencyHistogram::default();
        let mut b = LatencyHistogram::default();
        a.observe(0.1);
        b.observe(2.0);
        a.merge(&b);
        a.merge(&LatencyHistogram::default());
        assert_eq!(a.count, 2);
        assert_eq!(a.max_s, 2.0);
        assert_eq!(a.min_s, 0.1);
    }
}
