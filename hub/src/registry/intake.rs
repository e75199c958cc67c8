//! What the hub takes of an agent's telemetry. Every interval is checked before it is
//! counted — a function name the agents' configuration would accept, numbers that are finite
//! and not negative, histograms whose bounds rise and whose counts match them, a bounded
//! number of buckets — so that nothing one agent sends can be stored in a form that fails to
//! read back (serde_json writes NaN as `null`), nor key a record under another name. A
//! refused interval is skipped, logged and counted in the agent's totals; the rest of its
//! batch is counted as usual. An agent keeps at most [`MAX_FUNCTIONS_PER_AGENT`] functions:
//! intervals of further new functions are refused the same way, so a stream of invented
//! names cannot grow the hub without bound.

use synapse_link::names::is_function_name;
use synapse_proto::link::v1::FunctionInterval;

/// The most buckets one histogram of an interval may have.
pub const MAX_HISTOGRAM_BUCKETS: usize = 64;

/// The most distinct functions the hub keeps for one agent.
pub const MAX_FUNCTIONS_PER_AGENT: u64 = 4096;

/// Why `interval` is not counted, or `None` when it may be.
pub fn interval_refusal(interval: &FunctionInterval) -> Option<String> {
    let name = &interval.function;
    if !is_function_name(name) {
        return Some(format!(
            "function name {name:?} is not a valid name (letters, digits, `-`, `_`, `.`; at most {})",
            synapse_link::names::MAX_FUNCTION_NAME
        ));
    }
    let non_negative = |what: &str, v: f64| {
        (!v.is_finite() || v < 0.0)
            .then(|| format!("{what} {v} is not a finite non-negative number"))
    };
    non_negative("cold_start_sum_s", interval.cold_start_sum_s)
        .or_else(|| non_negative("idle_instance_s", interval.idle_instance_s))
        .or_else(|| {
            histogram_refusal(
                "cold-start histogram",
                &interval.cold_start_bounds_s,
                &interval.cold_start_counts,
            )
        })
        .or_else(|| {
            histogram_refusal(
                "invocation histogram",
                &interval.invocation_bounds_s,
                &interval.invocation_counts,
            )
        })
        // The name is valid by now, so it is safe to print as it is.
        .map(|reason| format!("{name}: {reason}"))
}

/// A histogram is empty, or has as many counts as bounds, at most [`MAX_HISTOGRAM_BUCKETS`],
/// with finite, non-negative, strictly rising bounds.
fn histogram_refusal(what: &str, bounds: &[f64], counts: &[u64]) -> Option<String> {
    if bounds.len() != counts.len() {
        return Some(format!(
            "{what} has {} bounds and {} counts",
            bounds.len(),
            counts.len()
        ));
    }
    if bounds.len() > MAX_HISTOGRAM_BUCKETS {
        return Some(format!(
            "{what} has {} buckets, more than {MAX_HISTOGRAM_BUCKETS}",
            bounds.len()
        ));
    }
    if let Some(b) = bounds.iter().find(|b| !b.is_finite() || **b < 0.0) {
        return Some(format!(
            "{what} has a bound {b} that is not a finite non-negative number"
        ));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Some(format!("{what} has bounds that do not rise"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval() -> FunctionInterval {
        FunctionInterval {
            function: "resize".into(),
            invocations: 3,
            cold_start_bounds_s: vec![0.1, 1.0, f64::MAX],
            cold_start_counts: vec![1, 0, 0],
            cold_start_sum_s: 0.05,
            idle_instance_s: 12.0,
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_interval_is_taken() {
        assert_eq!(interval_refusal(&interval()), None);
        assert_eq!(
            interval_refusal(&FunctionInterval {
                function: "f".into(),
                ..Default::default()
            }),
            None
        );
    }

    /// Spoils a good interval in one way.
    type Spoil = Box<dyn Fn(&mut FunctionInterval)>;

    #[test]
    fn every_kind_of_bad_interval_is_refused_with_its_reason() {
        let cases: Vec<(&str, Spoil)> = vec![
            (
                "not a valid name",
                Box::new(|i| i.function = "edge-1\u{0}resize".into()),
            ),
            ("not a valid name", Box::new(|i| i.function = String::new())),
            (
                "not a valid name",
                Box::new(|i| i.function = "x".repeat(65)),
            ),
            (
                "cold_start_sum_s NaN",
                Box::new(|i| i.cold_start_sum_s = f64::NAN),
            ),
            (
                "idle_instance_s inf",
                Box::new(|i| i.idle_instance_s = f64::INFINITY),
            ),
            ("idle_instance_s -1", Box::new(|i| i.idle_instance_s = -1.0)),
            (
                "bound NaN",
                Box::new(|i| i.cold_start_bounds_s[1] = f64::NAN),
            ),
            ("bound -0.5", Box::new(|i| i.cold_start_bounds_s[0] = -0.5)),
            ("do not rise", Box::new(|i| i.cold_start_bounds_s[1] = 0.1)),
            (
                "3 bounds and 2 counts",
                Box::new(|i| {
                    i.cold_start_counts.pop();
                }),
            ),
            (
                "more than 64",
                Box::new(|i| {
                    i.invocation_bounds_s = (1..=65).map(f64::from).collect();
                    i.invocation_counts = vec![0; 65];
                }),
            ),
            (
                "invocation histogram has a bound inf",
                Box::new(|i| {
                    i.invocation_bounds_s = vec![f64::INFINITY];
                    i.invocation_counts = vec![1];
                }),
            ),
        ];
        for (expected, spoil) in cases {
            let mut bad = interval();
            spoil(&mut bad);
            let reason = interval_refusal(&bad).unwrap_or_else(|| panic!("{expected}: taken"));
            assert!(
                reason.contains(expected),
                "{reason:?} does not say {expected:?}"
            );
        }
    }
}
