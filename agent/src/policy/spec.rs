//! Policy names as written on the command line — `fixed-keepalive(10m)`, `hybrid-histogram`,
//! `forecast`, `forecast(cost_threshold=300)`, `forecast(forecaster=arima)` — and the policies
//! they build.

use crate::forecast::{ForecasterKind, ModelSource};

use super::{FixedKeepAlive, ForecastPool, HybridHistogram, PolicyConfig, PoolPolicy};

/// A policy and its overrides of the configured settings.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicySpec {
    /// `fixed-keepalive(TTL)`, TTL like `10m`, `2h`, `90s`.
    FixedKeepAlive { ttl_s: f64 },
    /// `hybrid-histogram`.
    HybridHistogram,
    /// `forecast(key=value,…)`; keys `cost_threshold`, `forecaster`, `prewarm_buffer`.
    Forecast {
        cost_threshold: Option<f64>,
        forecaster: Option<ForecasterKind>,
        prewarm_buffer: Option<f64>,
    },
}

/// A policy name that could not be understood.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("unknown policy `{0}` (known: fixed-keepalive(TTL), hybrid-histogram, forecast(…))")]
    Unknown(String),
    #[error("`{spec}`: {reason}")]
    Argument { spec: String, reason: String },
}

impl PolicySpec {
    /// Parses a policy name.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let text = text.trim();
        let (name, args) = match text.split_once('(') {
            Some((n, rest)) => match rest.strip_suffix(')') {
                Some(a) => (n.trim(), Some(a.trim())),
                None => return Err(arg_error(text, "missing `)`")),
            },
            None => (text, None),
        };
        match (name, args) {
            ("fixed-keepalive", Some(ttl)) => {
                let d = humantime::parse_duration(ttl)
                    .map_err(|e| arg_error(text, &format!("TTL {ttl:?}: {e}")))?;
                Ok(Self::FixedKeepAlive {
                    ttl_s: d.as_secs_f64(),
                })
            }
            ("hybrid-histogram", None) => Ok(Self::HybridHistogram),
            ("forecast", args) => parse_forecast(text, args.unwrap_or("")),
            _ => Err(SpecError::Unknown(text.to_string())),
        }
    }

    /// The name shown in reports (round-trips through [`PolicySpec::parse`]).
    pub fn label(&self) -> String {
        match self {
            Self::FixedKeepAlive { ttl_s } => {
                let d = std::time::Duration::from_secs_f64(*ttl_s);
                format!("fixed-keepalive({})", humantime::format_duration(d))
            }
            Self::HybridHistogram => "hybrid-histogram".into(),
            Self::Forecast {
                cost_threshold,
                forecaster,
                prewarm_buffer,
            } => {
                let mut args = Vec::new();
                if let Some(c) = cost_threshold {
                    args.push(format!("cost_threshold={c}"));
                }
                if let Some(f) = forecaster {
                    args.push(format!("forecaster={}", f.as_str()));
                }
                if let Some(b) = prewarm_buffer {
                    args.push(format!("prewarm_buffer={b}"));
                }
                if args.is_empty() {
                    "forecast".into()
                } else {
                    format!("forecast({})", args.join(","))
                }
            }
        }
    }

    /// A fresh policy for one function.
    pub fn build(&self, config: &PolicyConfig, model: &ModelSource) -> Box<dyn PoolPolicy> {
        match self {
            Self::FixedKeepAlive { ttl_s } => Box::new(FixedKeepAlive::new(*ttl_s)),
            Self::HybridHistogram => {
                Box::new(HybridHistogram::new(config.hybrid_histogram.clone()))
            }
            Self::Forecast {
                cost_threshold,
                forecaster,
                prewarm_buffer,
            } => {
                let mut c = config.forecast_pool.clone();
                if let Some(v) = cost_threshold {
                    c.keep_alive.cost_threshold = *v;
                }
                if let Some(v) = forecaster {
                    c.forecaster = *v;
                }
                if let Some(v) = prewarm_buffer {
                    c.prewarm_buffer = *v;
                }
                Box::new(ForecastPool::new(c, &config.forecast, model, None))
            }
        }
    }
}

fn arg_error(spec: &str, reason: &str) -> SpecError {
    SpecError::Argument {
        spec: spec.to_string(),
        reason: reason.to_string(),
    }
}

fn parse_forecast(text: &str, args: &str) -> Result<PolicySpec, SpecError> {
    let (mut cost_threshold, mut forecaster, mut prewarm_buffer) = (None, None, None);
    for pair in args.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| arg_error(text, &format!("`{pair}` is not key=value")))?;
        let number = || {
            value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| arg_error(text, &format!("{key} = {value:?} is not a number ≥ 0")))
        };
        match key.trim() {
            "cost_threshold" => cost_threshold = Some(number()?),
            "prewarm_buffer" => prewarm_buffer = Some(number()?),
            "forecaster" => {
                forecaster = Some(ForecasterKind::parse(value.trim()).ok_or_else(|| {
                    arg_error(
                        text,
                        &format!(
                            "forecaster {value:?} is not one of histogram, holt-winters, arima, mlp, hybrid"
                        ),
                    )
                })?)
            }
            other => return Err(arg_error(text, &format!("unknown key `{other}`"))),
        }
    }
    Ok(PolicySpec::Forecast {
        cost_threshold,
        forecaster,
        prewarm_buffer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "fixed-keepalive(10m)",
            "fixed-keepalive(2h)",
            "hybrid-histogram",
            "forecast",
            "forecast(cost_threshold=300)",
            "forecast(cost_threshold=60,forecaster=arima)",
        ] {
            let spec = PolicySpec::parse(name).expect(name);
            assert_eq!(spec.label(), name);
        }
    }

    #[test]
    fn fixed_keepalive_reads_its_ttl() {
        assert_eq!(
            PolicySpec::parse("fixed-keepalive(90s)"),
            Ok(PolicySpec::FixedKeepAlive { ttl_s: 90.0 })
        );
    }

    #[test]
    fn bad_names_say_why() {
        assert!(matches!(
            PolicySpec::parse("lru"),
            Err(SpecError::Unknown(_))
        ));
        let err = PolicySpec::parse("forecast(forecaster=lstm)").unwrap_err();
        assert!(err.to_string().contains("not one of"), "{err}");
        let err = PolicySpec::parse("forecast(cost_threshold=-1)").unwrap_err();
        assert!(err.to_string().contains("not a number"), "{err}");
        assert!(PolicySpec::parse("fixed-keepalive(10m").is_err());
    }
}
