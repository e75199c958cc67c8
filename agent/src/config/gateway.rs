//! The `[gateway]` section's limits on clients: what the gateway is given of them, and their
//! range checks (the fields themselves are in `GatewayConfig`, `mod.rs`).

use std::time::Duration;

use super::GatewayConfig;

impl GatewayConfig {
    /// The limits on clients, for the gateway.
    pub fn limits(&self) -> crate::gateway::Limits {
        crate::gateway::Limits {
            max_connections: self.max_connections,
            body_idle_timeout: self.body_idle_timeout,
            body_min_rate: self.body_min_rate,
            body_rate_grace: self.body_rate_grace,
        }
    }

    /// Range checks of the limits on clients: the key and why, for the first one out of range.
    pub(super) fn check_limits(&self) -> Result<(), (String, String)> {
        let span = |key: &str, d: Duration| {
            if d < Duration::from_millis(1) || d > Duration::from_secs(3600) {
                let got = humantime::format_duration(d);
                return Err((
                    format!("gateway.{key}"),
                    format!("must be between 1ms and 1h, got {got}"),
                ));
            }
            Ok(())
        };
        span("body_idle_timeout", self.body_idle_timeout)?;
        span("body_rate_grace", self.body_rate_grace)?;
        if !(1..=1_000_000).contains(&self.max_connections) {
            let got = self.max_connections;
            return Err((
                "gateway.max_connections".into(),
                format!("must be between 1 and 1000000, got {got}"),
            ));
        }
        if self.body_min_rate > 1 << 30 {
            let got = self.body_min_rate;
            return Err((
                "gateway.body_min_rate".into(),
                format!("must be at most 1073741824 bytes/s (0: no minimum), got {got}"),
            ));
        }
        Ok(())
    }
}
