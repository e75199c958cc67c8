//! The agent's on-disk store (sled): per-interval telemetry of every function, hourly
//! roll-ups of it, host samples and running totals, with retention.
//!
//! Keys are `function \0 start time` (order-preserving bytes), so one function's records are one ordered
//! range and retention is a range scan. Values are JSON: small, and readable with any tool.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::telemetry::record::{FunctionInterval, HostSample};

const HOUR_MS: i64 = 3_600_000;

/// Running totals of a function since its first record, so counters survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub invocations: u64,
    pub cold_starts: u64,
    pub instance_starts: u64,
    pub instance_exits: u64,
    pub idle_instance_s: f64,
    #[serde(default)]
    pub warm_invocations: u64,
    #[serde(default)]
    pub cold_invocations: u64,
}

pub struct Store {
    db: sled::Db,
    intervals: sled::Tree,
    hourly: sled::Tree,
    host: sled::Tree,
    totals: sled::Tree,
    raw_retention: Duration,
    hourly_retention: Duration,
}

/// Big-endian with the sign bit flipped: byte order equals numeric order, negatives included.
fn ts_key(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn key(function: &str, start_ms: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(function.len() + 9);
    k.extend_from_slice(function.as_bytes());
    k.push(0);
    k.extend_from_slice(&ts_key(start_ms));
    k
}

fn prefix(function: &str) -> Vec<u8> {
    let mut k = function.as_bytes().to_vec();
    k.push(0);
    k
}

fn decode<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).context("decoding a stored record")
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, raw_retention: Duration, hourly_retention: Duration) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // No background flusher: the store flushes at the end of every interval (the link's
        // outbox, written just before, with it), so durability points are explicit. A
        // restarting agent may meet its predecessor's lock for a moment: the open waits.
        let db = synapse_db::open(&dir.join("telemetry.sled"))?;
        Ok(Self {
            intervals: db.open_tree("intervals")?,
            hourly: db.open_tree("hourly")?,
            host: db.open_tree("host")?,
            totals: db.open_tree("totals")?,
            db,
            raw_retention,
            hourly_retention,
        })
    }

    /// The sled database, for other parts of the agent that keep state (the link's outbox).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Records one function's interval: the raw record, its hour's roll-up and the totals.
    pub fn record(&self, iv: &FunctionInterval) -> Result<Totals> {
        self.intervals
            .insert(key(&iv.function, iv.start_unix_ms), serde_json::to_vec(iv)?)?;
        let hour = iv.start_unix_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let hk = key(&iv.function, hour);
        let mut rolled = match self.hourly.get(&hk)? {
            Some(bytes) => {
                let mut r: FunctionInterval = decode(&bytes)?;
                r.absorb(iv);
                r
            }
            None => FunctionInterval {
                start_unix_ms: hour,
                ..iv.clone()
            },
        };
        rolled.start_unix_ms = hour;
        self.hourly.insert(hk, serde_json::to_vec(&rolled)?)?;
        let mut t = self.totals(&iv.function)?;
        t.invocations += iv.invocations;
        t.cold_starts += iv.cold_starts;
        t.instance_starts += iv.instance_starts;
        t.instance_exits += iv.instance_exits;
        t.idle_instance_s += iv.idle_instance_s;
        t.warm_invocations += iv.warm_invocations;
        t.cold_invocations += iv.cold_invocations;
        self.totals
            .insert(iv.function.as_bytes(), serde_json::to_vec(&t)?)?;
        Ok(t)
    }

    pub fn record_host(&self, sample: &HostSample) -> Result<()> {
        self.host
            .insert(ts_key(sample.unix_ms), serde_json::to_vec(sample)?)?;
        Ok(())
    }

    pub fn totals(&self, function: &str) -> Result<Totals> {
        match self.totals.get(function.as_bytes())? {
            Some(bytes) => decode(&bytes),
            None => Ok(Totals::default()),
        }
    }

    /// Raw intervals (or hourly roll-ups) of a function from `since_ms`, oldest first.
    pub fn intervals(
        &self,
        function: &str,
        since_ms: i64,
        hourly: bool,
    ) -> Result<Vec<FunctionInterval>> {
        let tree = if hourly {
            &self.hourly
        } else {
            &self.intervals
        };
        tree.range(key(function, since_ms)..key(function, i64::MAX))
            .map(|kv| decode(&kv?.1))
            .collect()
    }

    /// Names of every function with stored records.
    pub fn functions(&self) -> Result<Vec<String>> {
        self.totals
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// Drops raw records older than the raw retention and roll-ups older than theirs.
    /// Returns how many records were dropped.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let mut dropped = 0;
        let raw_cut = now_ms - self.raw_retention.as_millis() as i64;
        let hourly_cut = now_ms - self.hourly_retention.as_millis() as i64;
        for function in self.functions()? {
            for (tree, cut) in [(&self.intervals, raw_cut), (&self.hourly, hourly_cut)] {
                let old: Vec<sled::IVec> = tree
                    .range(prefix(&function)..key(&function, cut))
                    .keys()
                    .collect::<Result<_, _>>()?;
                dropped += old.len();
                for k in old {
                    tree.remove(k)?;
                }
            }
        }
        let host_old: Vec<sled::IVec> = self
            .host
            .range(..ts_key(raw_cut))
            .keys()
            .collect::<Result<_, _>>()?;
        dropped += host_old.len();
        for k in host_old {
            self.host.remove(k)?;
        }
        Ok(dropped)
    }

    pub fn flush(&self) -> Result<()> {
        self.db.flush().context("flushing the store")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(function: &str, start: i64, invocations: u64) -> FunctionInterval {
        FunctionInterval {
            function: function.into(),
            start_unix_ms: start,
            interval_ms: 60_000,
            invocations,
            cold_starts: 1,
            ..Default::default()
        }
    }

    #[test]
    fn records_survive_reopening_and_roll_up_by_hour() {
        let dir = tempfile::tempdir().unwrap();
        let day = Duration::from_secs(86_400);
        {
            let s = Store::open(dir.path(), day, day).unwrap();
            s.record(&iv("a", 0, 3)).unwrap();
            s.record(&iv("a", 60_000, 4)).unwrap();
            s.record(&iv("a", HOUR_MS, 5)).unwrap();
            s.record(&iv("b", 0, 1)).unwrap();
            s.flush().unwrap();
        }
        let s = Store::open(dir.path(), day, day).unwrap();
        assert_eq!(s.intervals("a", 0, false).unwrap().len(), 3);
        let hourly = s.intervals("a", 0, true).unwrap();
        assert_eq!(
            hourly.iter().map(|h| h.invocations).collect::<Vec<_>>(),
            vec![7, 5]
        );
        assert_eq!(hourly[0].interval_ms, 120_000);
        assert_eq!(s.totals("a").unwrap().invocations, 12);
        assert_eq!(s.functions().unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn retention_drops_only_what_is_older_than_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            dir.path(),
            Duration::from_secs(3600),
            Duration::from_secs(86_400),
        )
        .unwrap();
        s.record(&iv("a", 0, 1)).unwrap();
        s.record(&iv("a", 2 * HOUR_MS, 1)).unwrap();
        let dropped = s.apply_retention(2 * HOUR_MS + 1).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(s.intervals("a", 0, false).unwrap().len(), 1);
        assert_eq!(s.intervals("a", 0, true).unwrap().len(), 2);
    }
}
