//! What the gateway notes about each invocation beyond its counters — its latency and queue
//! time for the histograms, and the record for the telemetry loop — is kept by the gateway
//! thread that served it and handed on in a batch every [`FLUSH_EVERY`]. On the request path
//! that costs a push onto a vector of the thread's own: no lock shared with the other gateway
//! threads (a thread preempted while holding one would stall the others), and no wake-up of
//! the telemetry loop, on another thread, for every invocation.

use std::{cell::RefCell, time::Duration};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::Served;
use crate::runtime::InvocationRecord;

/// How often a gateway thread hands its notes on; far within a telemetry interval.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Notes a thread holds at most between flushes; more are counted as dropped records.
const MAX_PENDING: usize = 65_536;

thread_local! {
    /// The notes of this gateway thread: the invocation's function (index) and its record.
    static PENDING: RefCell<Vec<(usize, InvocationRecord)>> = const { RefCell::new(Vec::new()) };
}

/// Where the notes go.
#[derive(Clone)]
pub struct RecordSink {
    pub telemetry: mpsc::Sender<InvocationRecord>,
    pub dropped: Counter,
}

impl RecordSink {
    /// Notes an invocation of the function at `index` on this thread.
    pub fn push(&self, index: usize, record: InvocationRecord) {
        let kept = PENDING.with_borrow_mut(|p| {
            let room = p.len() < MAX_PENDING;
            if room {
                p.push((index, record));
            }
            room
        });
        if !kept {
            self.dropped.inc();
        }
    }

    /// Hands this thread's notes on: histograms of the function, then the telemetry loop
    /// (records it has no room for are counted in `synapse_invocation_records_dropped_total`).
    pub fn flush(&self, served: &[Served]) {
        let batch = PENDING.with_borrow_mut(std::mem::take);
        for (index, record) in batch {
            if let Some(f) = served.get(index) {
                f.series.latency().observe(record.latency_s);
                f.series.queue().observe(record.queue_s);
            }
            if self.telemetry.try_send(record).is_err() {
                self.dropped.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32) -> InvocationRecord {
        InvocationRecord {
            function_id: id,
            cold: false,
            queue_s: 0.0,
            latency_s: 0.001,
            ok: true,
        }
    }

    #[test]
    fn notes_arrive_in_order_at_the_flush_and_overflow_is_counted() {
        let (tx, mut rx) = mpsc::channel(2);
        let sink = RecordSink {
            telemetry: tx,
            dropped: Counter::default(),
        };
        for id in 0..3 {
            sink.push(0, record(id));
        }
        assert!(rx.try_recv().is_err(), "nothing before the flush");
        sink.flush(&[]);
        assert_eq!(rx.try_recv().unwrap().function_id, 0);
        assert_eq!(rx.try_recv().unwrap().function_id, 1);
        assert!(rx.try_recv().is_err());
        assert_eq!(sink.dropped.get(), 1, "the channel had room for two");
    }

    #[test]
    fn each_thread_keeps_its_own_notes() {
        let (tx, mut rx) = mpsc::channel(8);
        let sink = std::sync::Arc::new(RecordSink {
            telemetry: tx,
            dropped: Counter::default(),
        });
        sink.push(0, record(1));
        let other = sink.clone();
        std::thread::spawn(move || other.flush(&[])).join().unwrap();
        assert!(
            rx.try_recv().is_err(),
            "another thread flushes only its own"
        );
        sink.flush(&[]);
        assert_eq!(rx.try_recv().unwrap().function_id, 1);
    }
}
