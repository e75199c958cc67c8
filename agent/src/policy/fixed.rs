//! `fixed-keepalive(ttl)`: every instance stays warm for a fixed time after its execution —
//! the classic policy of the large clouds (10 minutes on AWS Lambda, 20 on Azure Functions).

use super::{IntervalObservation, PoolDecision, PoolPolicy};

/// Fixed keep-alive of one function.
#[derive(Debug, Clone)]
pub struct FixedKeepAlive {
    ttl_s: f64,
}

impl FixedKeepAlive {
    /// Keeps every instance warm `ttl_s` seconds after its execution.
    pub fn new(ttl_s: f64) -> Self {
        Self { ttl_s }
    }
}

impl PoolPolicy for FixedKeepAlive {
    fn observe(&mut self, _: &IntervalObservation) {}

    fn decide(&mut self, _now_s: f64) -> PoolDecision {
        PoolDecision {
            pool_target: 0,
            keep_alive_s: self.ttl_s,
            prewarm_s: None,
        }
    }
}
