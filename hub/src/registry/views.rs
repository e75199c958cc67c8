//! The registry as the console shows it: agents with their health, and functions summed
//! over the agents that reported them, per tier and per agent.

use std::collections::BTreeMap;

use synapse_proto::{
    console::v1::{
        Agent, AgentFunctionStats, FunctionStatsResponse, FunctionSummary, Health,
        TierFunctionStats,
    },
    link::v1::Capacity,
};

use super::{
    Registry, RegistryError, decode, now_ms,
    records::{AgentRecord, AgentTotals, FunctionShare, split_share_key},
};

fn mean(sum: f64, count: u64) -> f64 {
    if count == 0 { 0.0 } else { sum / count as f64 }
}

impl Registry {
    pub(super) fn totals_of(&self, agent: &str) -> Result<AgentTotals, RegistryError> {
        Ok(match self.totals.get(agent)? {
            Some(v) => decode(agent.as_bytes(), &v)?,
            None => AgentTotals::default(),
        })
    }

    fn view(&self, record: AgentRecord) -> Result<Agent, RegistryError> {
        let totals = self.totals_of(&record.id)?;
        let live = self.live().get(&record.id).cloned();
        let stale_after = 3 * self.heartbeat_interval.as_millis() as i64;
        let (connected, last_seen, rtt_ms) = match &live {
            Some(l) => (true, l.last_seen_unix_ms, l.rtt_ms),
            None => (false, record.last_seen_unix_ms, record.rtt_ms),
        };
        let health = match live {
            Some(_) if now_ms() - last_seen <= stale_after => Health::Healthy,
            Some(_) => Health::Stale,
            None => Health::Offline,
        };
        Ok(Agent {
            agent_id: record.id,
            tier: record.tier,
            labels: record.labels.into_iter().collect(),
            version: record.version,
            capacity: Some(Capacity {
                cpus: record.cpus,
                memory_bytes: record.memory_bytes,
            }),
            last_seen_unix_ms: last_seen,
            rtt_ms,
            connected,
            health: health as i32,
            batches_accepted: totals.batches,
            invocations: totals.invocations,
            outbox_pending: record.outbox_pending,
            outbox_dropped: record.outbox_dropped,
            outbox_lag_ms: record.outbox_lag_ms,
            link_version: record.link_version,
            last_sequence: totals.last_sequence,
            intervals_refused: totals.intervals_refused,
            outbox_resets: totals.outbox_resets,
        })
    }

    /// Every agent ever registered, by id. A record that cannot be read is left out (and
    /// logged): one bad record must not hide the fleet.
    pub fn agents(&self) -> Result<Vec<Agent>, RegistryError> {
        let mut out = Vec::new();
        for entry in self.agents.iter() {
            let (key, value) = entry?;
            match decode(&key, &value) {
                Ok(record) => out.push(self.view(record)?),
                Err(e) => tracing::warn!("agent left out of the view: {e}"),
            }
        }
        Ok(out)
    }

    pub fn agent(&self, id: &str) -> Result<Option<Agent>, RegistryError> {
        self.record(id)?.map(|r| self.view(r)).transpose()
    }

    /// Every share of `function` (or of all functions when `None`), as (function, agent, share).
    /// A share that cannot be read is left out (and logged), so that one bad record cannot
    /// fail every view of the functions.
    pub fn shares(
        &self,
        function: Option<&str>,
    ) -> Result<Vec<(String, String, FunctionShare)>, RegistryError> {
        let iter = match function {
            Some(f) => {
                let mut prefix = f.as_bytes().to_vec();
                prefix.push(0);
                self.shares.scan_prefix(prefix)
            }
            None => self.shares.iter(),
        };
        let mut out = Vec::new();
        for entry in iter {
            let (key, value) = entry?;
            let Some((function, agent)) = split_share_key(&key) else {
                continue;
            };
            match decode(&key, &value) {
                Ok(share) => out.push((function, agent, share)),
                Err(e) => tracing::warn!("function share left out of the view: {e}"),
            }
        }
        Ok(out)
    }

    fn summarise<'a>(
        function: &str,
        shares: impl Iterator<Item = &'a FunctionShare>,
    ) -> FunctionSummary {
        let mut summary = FunctionSummary {
            function: function.to_owned(),
            ..Default::default()
        };
        let mut cold_start_sum = 0.0;
        for share in shares {
            summary.invocations += share.invocations;
            summary.cold_starts += share.cold_starts;
            summary.instance_exits += share.instance_exits;
            summary.idle_instance_s += share.idle_instance_s;
            summary.agents += 1;
            summary.last_interval_unix_ms = summary
                .last_interval_unix_ms
                .max(share.last_interval_unix_ms);
            cold_start_sum += share.cold_start_sum_s;
        }
        summary.cold_start_mean_s = mean(cold_start_sum, summary.cold_starts);
        summary
    }

    /// Fleet-wide totals of every function, by name.
    pub fn functions(&self) -> Result<Vec<FunctionSummary>, RegistryError> {
        let mut by_function: BTreeMap<String, Vec<FunctionShare>> = BTreeMap::new();
        for (function, _, share) in self.shares(None)? {
            by_function.entry(function).or_default().push(share);
        }
        Ok(by_function
            .iter()
            .map(|(function, shares)| Self::summarise(function, shares.iter()))
            .collect())
    }

    pub fn function(&self, function: &str) -> Result<Option<FunctionSummary>, RegistryError> {
        let shares = self.shares(Some(function))?;
        Ok((!shares.is_empty())
            .then(|| Self::summarise(function, shares.iter().map(|(_, _, s)| s))))
    }

    /// One function in detail: histogram, per tier, per agent.
    pub fn function_stats(
        &self,
        function: &str,
    ) -> Result<Option<FunctionStatsResponse>, RegistryError> {
        let shares = self.shares(Some(function))?;
        if shares.is_empty() {
            return Ok(None);
        }
        let mut response = FunctionStatsResponse {
            summary: Some(Self::summarise(function, shares.iter().map(|(_, _, s)| s))),
            ..Default::default()
        };
        let mut tiers: BTreeMap<i32, (u64, u64, f64)> = BTreeMap::new();
        for (_, agent, share) in &shares {
            if response.cold_start_bounds_s.is_empty() && !share.cold_start_bounds_s.is_empty() {
                response.cold_start_bounds_s = share.cold_start_bounds_s.clone();
                response.cold_start_counts = vec![0; share.cold_start_bounds_s.len()];
            }
            if share.cold_start_bounds_s == response.cold_start_bounds_s {
                for (kept, added) in response
                    .cold_start_counts
                    .iter_mut()
                    .zip(&share.cold_start_counts)
                {
                    *kept += added;
                }
            }
            let tier = tiers.entry(share.tier).or_default();
            tier.0 += share.invocations;
            tier.1 += share.cold_starts;
            tier.2 += share.cold_start_sum_s;
            response.by_agent.push(AgentFunctionStats {
                agent_id: agent.clone(),
                tier: share.tier,
                invocations: share.invocations,
                cold_starts: share.cold_starts,
                cold_start_sum_s: share.cold_start_sum_s,
            });
        }
        response.by_tier = tiers
            .into_iter()
            .map(
                |(tier, (invocations, cold_starts, sum))| TierFunctionStats {
                    tier,
                    invocations,
                    cold_starts,
                    cold_start_mean_s: mean(sum, cold_starts),
                },
            )
            .collect();
        Ok(Some(response))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use synapse_proto::link::v1::{FunctionInterval, Hello, TelemetryBatch, Tier};

    use super::*;
    use crate::registry::Applied;

    fn batch(sequence: u64, function: &str, invocations: u64) -> TelemetryBatch {
        TelemetryBatch {
            sequence,
            intervals: vec![FunctionInterval {
                function: function.into(),
                invocations,
                cold_starts: 1,
                cold_start_sum_s: 0.5,
                cold_start_bounds_s: vec![0.1, 1.0],
                cold_start_counts: vec![0, 1],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_batch_is_counted_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = synapse_db::open(dir.path()).unwrap();
            let registry = Registry::open(&db, Duration::from_secs(5)).unwrap();
            let hello = Hello {
                agent_id: "edge-1".into(),
                tier: Tier::Edge as i32,
                ..Default::default()
            };
            registry
                .connect(&hello, 1, 1, Duration::from_millis(2))
                .unwrap();
            let edge = Tier::Edge as i32;
            assert_eq!(
                registry
                    .apply("edge-1", edge, &batch(1, "resize", 3))
                    .unwrap(),
                Applied::Accepted
            );
            assert_eq!(
                registry
                    .apply("edge-1", edge, &batch(2, "resize", 4))
                    .unwrap(),
                Applied::Accepted
            );
            assert_eq!(
                registry
                    .apply("edge-1", edge, &batch(1, "resize", 3))
                    .unwrap(),
                Applied::Duplicate
            );
            assert_eq!(
                registry
                    .apply("edge-1", edge, &batch(2, "resize", 4))
                    .unwrap(),
                Applied::Duplicate
            );
            assert_eq!(
                registry
                    .apply("cloud-1", Tier::Cloud as i32, &batch(1, "resize", 10))
                    .unwrap(),
                Applied::Accepted
            );
            db.flush().unwrap();
        }
        let db = synapse_db::open(dir.path()).unwrap();
        let registry = Registry::open(&db, Duration::from_secs(5)).unwrap();
        let agent = registry.agent("edge-1").unwrap().unwrap();
        assert_eq!(
            (
                agent.batches_accepted,
                agent.invocations,
                agent.last_sequence
            ),
            (2, 7, 2)
        );
        assert_eq!(agent.health, Health::Offline as i32);
        let stats = registry.function_stats("resize").unwrap().unwrap();
        let summary = stats.summary.unwrap();
        assert_eq!(
            (summary.invocations, summary.cold_starts, summary.agents),
            (17, 3, 2)
        );
        assert_eq!(stats.cold_start_counts, [0, 3]);
        assert_eq!(stats.by_tier.len(), 2);
        assert_eq!(
            registry
                .apply("edge-1", Tier::Edge as i32, &batch(2, "resize", 4))
                .unwrap(),
            Applied::Duplicate
        );
    }
}
