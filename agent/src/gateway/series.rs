//! The metric series the gateway updates on every invocation of a function, resolved once per
//! function and kept: looking a series up in its family hashes and allocates its labels and
//! takes the family's lock, which is a noticeable share of a proxied request's cost. Each series
//! is created on first use, so `/metrics` shows the same series as before.

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

use crate::metrics::{CodeLabel, Metrics, StartLabel};

/// Status codes 100..=599, one slot each.
const CODES: usize = 500;

/// Clones share the series (each handle is shared), so each gateway thread keeps its own copy.
#[derive(Clone)]
pub struct FunctionSeries {
    function: String,
    metrics: Arc<Metrics>,
    warm: OnceLock<Counter>,
    cold: OnceLock<Counter>,
    latency: OnceLock<Histogram>,
    queue: OnceLock<Histogram>,
    responses: Box<[OnceLock<Counter>]>,
}

impl FunctionSeries {
    pub fn new(function: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            function: function.to_string(),
            metrics,
            warm: OnceLock::new(),
            cold: OnceLock::new(),
            latency: OnceLock::new(),
            queue: OnceLock::new(),
            responses: (0..CODES).map(|_| OnceLock::new()).collect(),
        }
    }

    /// `synapse_invocations_total{start}`.
    pub fn invocation(&self, cold: bool) -> &Counter {
        let (cell, start) = if cold {
            (&self.cold, "cold")
        } else {
            (&self.warm, "warm")
        };
        cell.get_or_init(|| {
            let l = StartLabel {
                function: self.function.clone(),
                start: start.into(),
            };
            self.metrics.invocations.get_or_create(&l).clone()
        })
    }

    /// `synapse_invocation_seconds`.
    pub fn latency(&self) -> &Histogram {
        self.latency.get_or_init(|| {
            let l = Metrics::label(&self.function);
            self.metrics.invocation_seconds.get_or_create(&l).clone()
        })
    }

    /// `synapse_queue_seconds`.
    pub fn queue(&self) -> &Histogram {
        self.queue.get_or_init(|| {
            let l = Metrics::label(&self.function);
            self.metrics.queue_seconds.get_or_create(&l).clone()
        })
    }

    /// `synapse_gateway_responses_total{code}`.
    pub fn response(&self, code: u16) {
        let new = |code: u16| {
            let l = CodeLabel {
                function: self.function.clone(),
                code: code.to_string(),
            };
            self.metrics.gateway_responses.get_or_create(&l).clone()
        };
        match self.responses.get(usize::from(code).wrapping_sub(100)) {
            Some(cell) => cell.get_or_init(|| new(code)).inc(),
            None => new(code).inc(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_series_are_the_exported_ones() {
        let metrics = Arc::new(Metrics::new());
        let s = FunctionSeries::new("f", metrics.clone());
        s.invocation(true).inc();
        s.invocation(true).inc();
        s.latency().observe(0.01);
        s.response(200);
        s.response(200);
        s.response(503);
        let text = metrics.render();
        for line in [
            "synapse_invocations_total{function=\"f\",start=\"cold\"} 2",
            "synapse_invocation_seconds_count{function=\"f\"} 1",
            "synapse_gateway_responses_total{function=\"f\",code=\"200\"} 2",
            "synapse_gateway_responses_total{function=\"f\",code=\"503\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(
            !text.contains("start=\"warm\""),
            "created on first use only"
        );
    }
}
