//! Accepting a telemetry batch exactly once: in one sled transaction, the agent's watermark
//! is checked and raised and every function share is updated, so a batch is either wholly
//! counted or not at all, and a batch at or below the watermark is recognised as held.
//! An interval's forecast adds its absolute error to the share, under the model version that
//! took part in it; a forecast that is not a finite non-negative number is refused, counted in
//! the share and logged, and the rest of the interval is counted. An interval that fails the
//! intake's checks ([`super::intake`]) is not counted at all: it is skipped, logged and counted
//! in the agent's `intervals_refused`.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use synapse_proto::link::v1::TelemetryBatch;

use super::{
    Change, Registry, RegistryError, decode, encode,
    intake::{MAX_FUNCTIONS_PER_AGENT, interval_refusal},
    records::{AgentTotals, FunctionShare, forecast_refusal, share_key},
};

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Counted now.
    Accepted,
    /// Already held; counted before.
    Duplicate,
}

impl Registry {
    /// Counts `batch` from `agent` unless it is already held. The write is applied but not
    /// yet flushed: take a [`super::Durability`] ticket before acknowledging.
    pub fn apply(
        &self,
        agent: &str,
        tier: i32,
        batch: &TelemetryBatch,
    ) -> Result<Applied, RegistryError> {
        let outcome = (&self.totals, &self.shares).transaction(|(totals, shares)| {
            let abort = |e: RegistryError| ConflictableTransactionError::Abort(e);
            let mut agent_totals: AgentTotals = match totals.get(agent)? {
                Some(v) => decode(agent.as_bytes(), &v).map_err(abort)?,
                None => AgentTotals::default(),
            };
            if batch.sequence <= agent_totals.last_sequence {
                return Ok((Applied::Duplicate, Vec::new(), Vec::new()));
            }
            let mut refused = Vec::new();
            let mut counted = Vec::new();
            for interval in &batch.intervals {
                if let Some(reason) = interval_refusal(interval) {
                    refused.push(reason);
                    continue;
                }
                let key = share_key(&interval.function, agent);
                let mut share: FunctionShare = match shares.get(&key)? {
                    // A share that cannot be read (written before the intake checked what it
                    // counts) starts again rather than refusing every later batch.
                    Some(v) => decode(&key, &v).unwrap_or_else(|e| {
                        tracing::warn!("function share replaced: {e}");
                        FunctionShare::default()
                    }),
                    None if agent_totals.functions >= MAX_FUNCTIONS_PER_AGENT => {
                        refused.push(format!(
                            "{}: the agent already has {MAX_FUNCTIONS_PER_AGENT} functions, the most kept per agent",
                            interval.function
                        ));
                        continue;
                    }
                    None => {
                        agent_totals.functions += 1;
                        FunctionShare::default()
                    }
                };
                share.tier = tier;
                share.add(interval);
                shares.insert(key, encode(&share))?;
                counted.push(interval);
                agent_totals.invocations = agent_totals
                    .invocations
                    .saturating_add(interval.invocations);
            }
            agent_totals.intervals_refused += refused.len() as u64;
            agent_totals.batches += 1;
            agent_totals.last_sequence = batch.sequence;
            totals.insert(agent.as_bytes(), encode(&agent_totals))?;
            Ok((Applied::Accepted, refused, counted))
        });
        let (applied, refused, counted) = match outcome {
            Ok(outcome) => outcome,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        for reason in &refused {
            tracing::warn!(
                agent,
                sequence = batch.sequence,
                "telemetry interval refused: {reason}"
            );
        }
        for interval in counted {
            if let Some(reason) = forecast_refusal(interval) {
                // Counted in the share (`forecasts_refused`); the rest of the interval is.
                tracing::warn!(agent, "forecast refused: {reason}");
            }
            self.publish(Change::Function(interval.function.clone()));
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use synapse_proto::link::v1::{FunctionInterval, TelemetryBatch, Tier};

    use super::*;

    const EDGE: i32 = Tier::Edge as i32;

    fn interval(function: &str, invocations: u64) -> FunctionInterval {
        FunctionInterval {
            function: function.into(),
            invocations,
            cold_starts: 1,
            cold_start_sum_s: 0.5,
            cold_start_bounds_s: vec![0.1, 1.0],
            cold_start_counts: vec![0, 1],
            ..Default::default()
        }
    }

    fn open(dir: &tempfile::TempDir) -> (sled::Db, Registry) {
        let db = synapse_db::open(dir.path()).unwrap();
        let registry = Registry::open(&db, Duration::from_secs(5)).unwrap();
        (db, registry)
    }

    #[test]
    fn bad_intervals_are_skipped_and_counted_and_every_view_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let (db, registry) = open(&dir);
        let mut nan_bound = interval("resize", 5);
        nan_bound.cold_start_bounds_s[0] = f64::NAN;
        let batch = TelemetryBatch {
            sequence: 1,
            intervals: vec![
                interval("resize", 3),
                nan_bound,
                // A name that would key its share under another agent's.
                interval("thumb\0cloud-1", 7),
                interval("thumb", 2),
            ],
        };
        assert_eq!(
            registry.apply("edge-1", EDGE, &batch).unwrap(),
            Applied::Accepted
        );
        // The next batch of the same function is taken as usual.
        let next = TelemetryBatch {
            sequence: 2,
            intervals: vec![interval("resize", 4)],
        };
        assert_eq!(
            registry.apply("edge-1", EDGE, &next).unwrap(),
            Applied::Accepted
        );
        db.flush().unwrap();
        drop((registry, db));

        let (_db, registry) = open(&dir);
        let functions = registry.functions().unwrap();
        let names: Vec<(&str, u64)> = functions
            .iter()
            .map(|f| (f.function.as_str(), f.invocations))
            .collect();
        assert_eq!(names, [("resize", 7), ("thumb", 2)]);
        let stats = registry.function_stats("resize").unwrap().unwrap();
        assert_eq!(stats.cold_start_bounds_s, [0.1, 1.0]);
        let totals = registry.totals_of("edge-1").unwrap();
        assert_eq!(
            (
                totals.batches,
                totals.invocations,
                totals.intervals_refused,
                totals.functions
            ),
            (2, 9, 2, 2)
        );
    }

    #[test]
    fn a_share_written_unreadable_is_left_out_of_views_and_replaced_by_the_next_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, registry) = open(&dir);
        let batch = |sequence, function: &str| TelemetryBatch {
            sequence,
            intervals: vec![interval(function, 1)],
        };
        registry.apply("edge-1", EDGE, &batch(1, "resize")).unwrap();
        registry.apply("edge-1", EDGE, &batch(2, "thumb")).unwrap();
        // What a NaN became in JSON before the intake refused it.
        let key = share_key("resize", "edge-1");
        let stored = registry.shares.get(&key).unwrap().unwrap();
        let spoiled = String::from_utf8(stored.to_vec())
            .unwrap()
            .replace("\"cold_start_sum_s\":0.5", "\"cold_start_sum_s\":null");
        registry.shares.insert(&key, spoiled.as_bytes()).unwrap();

        let names: Vec<String> = registry
            .functions()
            .unwrap()
            .into_iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(names, ["thumb"]);
        assert_eq!(
            registry.apply("edge-1", EDGE, &batch(3, "resize")).unwrap(),
            Applied::Accepted
        );
        let resize = registry.function("resize").unwrap().unwrap();
        assert_eq!(
            resize.invocations, 1,
            "counted again from the replaced share"
        );
    }

    #[test]
    fn an_agent_keeps_a_bounded_number_of_functions() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, registry) = open(&dir);
        let many = TelemetryBatch {
            sequence: 1,
            intervals: (0..=MAX_FUNCTIONS_PER_AGENT)
                .map(|i| interval(&format!("fn-{i}"), 1))
                .collect(),
        };
        assert_eq!(
            registry.apply("edge-1", EDGE, &many).unwrap(),
            Applied::Accepted
        );
        let kept = registry.functions().unwrap().len() as u64;
        assert_eq!(kept, MAX_FUNCTIONS_PER_AGENT);
        // Functions already kept go on being counted; another agent has its own allowance.
        let again = TelemetryBatch {
            sequence: 2,
            intervals: vec![interval("fn-0", 5), interval("fn-new", 1)],
        };
        registry.apply("edge-1", EDGE, &again).unwrap();
        registry
            .apply(
                "edge-2",
                EDGE,
                &TelemetryBatch {
                    sequence: 1,
                    intervals: vec![interval("fn-new", 1)],
                },
            )
            .unwrap();
        assert_eq!(registry.function("fn-0").unwrap().unwrap().invocations, 6);
        assert_eq!(registry.function("fn-new").unwrap().unwrap().agents, 1);
        let totals = registry.totals_of("edge-1").unwrap();
        assert_eq!(
            (totals.functions, totals.intervals_refused),
            (MAX_FUNCTIONS_PER_AGENT, 2)
        );
    }

    #[test]
    fn an_agent_whose_store_was_lost_is_counted_again_not_taken_for_resends() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, registry) = open(&dir);
        let hello = |incarnation| synapse_proto::link::v1::Hello {
            agent_id: "edge-1".into(),
            tier: EDGE,
            outbox_incarnation: incarnation,
            ..Default::default()
        };
        let batch = |sequence| TelemetryBatch {
            sequence,
            intervals: vec![interval("resize", 1)],
        };
        let connect = |incarnation| {
            registry
                .connect(&hello(incarnation), 1, 1, Duration::from_millis(1))
                .unwrap()
        };
        connect(0xA);
        for sequence in 1..=3 {
            assert_eq!(
                registry.apply("edge-1", EDGE, &batch(sequence)).unwrap(),
                Applied::Accepted
            );
        }
        // A reconnect of the same store resends: duplicates, as before.
        connect(0xA);
        assert_eq!(
            registry.apply("edge-1", EDGE, &batch(3)).unwrap(),
            Applied::Duplicate
        );
        // The store was lost: a new outbox starts again at 1.
        connect(0xB);
        for sequence in 1..=2 {
            assert_eq!(
                registry.apply("edge-1", EDGE, &batch(sequence)).unwrap(),
                Applied::Accepted
            );
        }
        connect(0xB);
        assert_eq!(
            registry.apply("edge-1", EDGE, &batch(2)).unwrap(),
            Applied::Duplicate
        );
        assert_eq!(registry.function("resize").unwrap().unwrap().invocations, 5);
        let totals = registry.totals_of("edge-1").unwrap();
        assert_eq!(
            (totals.outbox_resets, totals.last_sequence, totals.batches),
            (1, 2, 5)
        );
        let agent = registry.agent("edge-1").unwrap().unwrap();
        assert_eq!(agent.outbox_resets, 1);
    }
}
