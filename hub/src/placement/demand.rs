//! What placement takes of an agent's demand report before it plans with it: every figure
//! finite, not negative and within a bound no real host reaches (so that no report can
//! overflow the objective), names that are function names, and no more functions than the
//! hub keeps for one agent. A refused report is dropped and counted; the connection stays.

use synapse_proto::link::v1::DemandReport;

/// Why a demand report was refused (the report is dropped, the connection stays).
/// Every figure is finite, not negative and within a bound no real host reaches, so that no
/// report can overflow the placement objective; names are function names; the count is
/// bounded as for telemetry.
pub fn check_report(report: &DemandReport) -> Result<(), String> {
    use crate::registry::intake::MAX_FUNCTIONS_PER_AGENT;
    use synapse_link::names::is_function_name;
    if report.functions.len() as u64 > MAX_FUNCTIONS_PER_AGENT {
        return Err(format!(
            "{} functions (at most {MAX_FUNCTIONS_PER_AGENT})",
            report.functions.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in &report.functions {
        if !is_function_name(&f.function) {
            return Err(format!(
                "function name {:?} is not a valid name",
                f.function
            ));
        }
        if !seen.insert(f.function.as_str()) {
            return Err(format!("function {} reported twice", f.function));
        }
        for (what, v, max) in [
            ("forecast_per_s", f.forecast_per_s, MAX_RATE_PER_S),
            ("execution_s", f.execution_s, MAX_SECONDS),
            ("cold_start_s", f.cold_start_s, MAX_SECONDS),
        ] {
            if !v.is_finite() || !(0.0..=max).contains(&v) {
                return Err(format!(
                    "function {}: {what} is {v} (between 0 and {max})",
                    f.function
                ));
            }
        }
        if f.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "function {}: memory_bytes is {} (at most {MAX_MEMORY_BYTES})",
                f.function, f.memory_bytes
            ));
        }
        if f.warm_instances > MAX_WARM_INSTANCES {
            return Err(format!(
                "function {}: warm_instances is {} (at most {MAX_WARM_INSTANCES})",
                f.function, f.warm_instances
            ));
        }
    }
    if report.pool_memory_bytes > MAX_MEMORY_BYTES {
        return Err(format!(
            "pool_memory_bytes is {} (at most {MAX_MEMORY_BYTES})",
            report.pool_memory_bytes
        ));
    }
    if !(0.0..=1.0).contains(&report.cpu_load) {
        return Err(format!("cpu_load is {}", report.cpu_load));
    }
    Ok(())
}

/// The highest call rate one function's demand may claim (calls per second).
const MAX_RATE_PER_S: f64 = 1e7;
/// The longest execution or cold start a demand report may claim: a day.
const MAX_SECONDS: f64 = 86_400.0;
/// The most memory a host or one function may claim: 1 PiB.
const MAX_MEMORY_BYTES: u64 = crate::link::frames::MAX_MEMORY_BYTES;
/// The most warm instances one function may claim on one host.
const MAX_WARM_INSTANCES: u32 = 1 << 20;
