//! Accepting a telemetry batch exactly once: in one sled transaction, the agent's watermark
//! is checked and raised and every function share is updated, so a batch is either wholly
//! counted or not at all, and a batch at or below the watermark is recognised as held.
//! An interval's forecast adds its absolute error to the share, under the model version that
//! took part in it; a forecast that is not a finite non-negative number is refused, counted in
//! the share and logged, and the rest of the interval is counted.

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use synapse_proto::link::v1::TelemetryBatch;

use super::{
    Change, Registry, RegistryError, decode, encode,
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
                return Ok(Applied::Duplicate);
            }
            for interval in &batch.intervals {
                let key = share_key(&interval.function, agent);
                let mut share: FunctionShare = match shares.get(&key)? {
                    Some(v) => decode(&key, &v).map_err(abort)?,
                    None => FunctionShare::default(),
                };
                share.tier = tier;
                share.add(interval);
                shares.insert(key, encode(&share))?;
                agent_totals.invocations = agent_totals
                    .invocations
                    .saturating_add(interval.invocations);
            }
            agent_totals.batches += 1;
            agent_totals.last_sequence = batch.sequence;
            totals.insert(agent.as_bytes(), encode(&agent_totals))?;
            Ok(Applied::Accepted)
        });
        let applied = match outcome {
            Ok(applied) => applied,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        if applied == Applied::Accepted {
            for interval in &batch.intervals {
                if let Some(reason) = forecast_refusal(interval) {
                    // Counted in the share (`forecasts_refused`); the rest of the interval is.
                    tracing::warn!(agent, "forecast refused: {reason}");
                }
                self.publish(Change::Function(interval.function.clone()));
            }
        }
        Ok(applied)
    }
}
