//! How many connections each gateway thread serves (`server.rs`), the rule that spreads new
//! ones over the threads, and the cap on connections held by all of them together.
//!
//! A thread that serves more than one connection above another leaves the next ones to it and
//! waits ("holds back") until the balance lets it take connections again. Two things change
//! that balance: one of its own connections ending (it wakes itself), and another thread
//! taking a connection — then the thread that took it wakes the threads holding back that may
//! now accept. Without that second wake a thread that held back looked again only at its own
//! connections' ends or its next flush tick, and with every thread holding idle connections
//! the gateway accepted a few connections per tick: 1,500 idle kept-alive connections left new
//! clients waiting seconds. The wake crosses threads only when a thread was holding back, on a
//! connection's start, never on a request's path.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::SeqCst},
};

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::sync::Notify;

/// The connections of every gateway thread.
#[derive(Debug)]
pub(super) struct Loads {
    /// Connections each thread serves.
    held: Box<[AtomicUsize]>,
    /// Wakes each thread's accept loop to look at the loads again.
    wake: Box<[Notify]>,
    /// Connections of all threads together (the metric read by scrapes), and their cap.
    open: Gauge,
    max: usize,
    /// Connections closed at once for the cap.
    refused: Counter,
}

impl Loads {
    pub fn new(threads: usize, max: usize, open: Gauge, refused: Counter) -> Self {
        Self {
            held: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            wake: (0..threads).map(|_| Notify::new()).collect(),
            open,
            max,
            refused,
        }
    }

    /// Whether thread `me` takes new connections: while it serves at most one more than the
    /// least loaded other thread. The least loaded thread always may, so a new connection is
    /// never left to no one.
    pub fn may_accept(&self, me: usize) -> bool {
        let mine = self.held[me].load(SeqCst);
        self.held
            .iter()
            .enumerate()
            .all(|(other, load)| other == me || mine <= load.load(SeqCst) + 1)
    }

    /// Notified when thread `me` should look at [`Loads::may_accept`] again.
    pub fn woken(&self, me: usize) -> &Notify {
        &self.wake[me]
    }

    /// Thread `me` has accepted a connection: counted until the returned guard is dropped, or
    /// `None` (and counted as refused) when the gateway holds `max` connections already.
    pub fn admit(self: &Arc<Self>, me: usize) -> Option<Held> {
        // `inc` returns the count before: one atomic step decides, whatever the other threads do.
        if usize::try_from(self.open.inc()).unwrap_or(0) >= self.max {
            self.open.dec();
            self.refused.inc();
            return None;
        }
        self.held[me].fetch_add(1, SeqCst);
        // A thread holding back may accept now. Each thread looks after its own increment
        // (sequentially consistent), so of two threads accepting at once the later one sees
        // both counts; a thread not waiting keeps the wake as a permit and looks once more.
        self.wake_those_that_may(me);
        Some(Held {
            loads: self.clone(),
            me,
        })
    }

    /// Wakes the threads other than `me` that may accept: in one pass over the loads, the two
    /// least, so that each thread's rule is checked against the least of the others in one
    /// step.
    fn wake_those_that_may(&self, me: usize) {
        let (mut least, mut at, mut second) = (usize::MAX, usize::MAX, usize::MAX);
        for (t, load) in self.held.iter().enumerate() {
            let load = load.load(SeqCst);
            if load < least {
                (second, least, at) = (least, load, t);
            } else if load < second {
                second = load;
            }
        }
        for (t, load) in self.held.iter().enumerate().filter(|&(t, _)| t != me) {
            let others = if t == at { second } else { least };
            if load.load(SeqCst) <= others.saturating_add(1) {
                self.wake[t].notify_one();
            }
        }
    }

    /// Connections held by all threads.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        usize::try_from(self.open.get()).unwrap_or(0)
    }
}

/// A connection counted in its thread's load.
pub(super) struct Held {
    loads: Arc<Loads>,
    me: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.loads.held[self.me].fetch_sub(1, SeqCst);
        self.loads.open.dec();
        // Its own thread may accept again (the end of a connection never lets another).
        self.loads.wake[self.me].notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn loads(threads: usize, max: usize) -> Arc<Loads> {
        Arc::new(Loads::new(
            threads,
            max,
            Gauge::default(),
            Counter::default(),
        ))
    }

    #[test]
    fn new_connections_go_to_the_threads_serving_the_fewest() {
        let loads = loads(3, 100);
        assert!((0..3).all(|t| loads.may_accept(t)), "all idle: any thread");
        let a = loads.admit(0).unwrap();
        let b = loads.admit(0).unwrap();
        // Thread 0 serves two, the others none: it leaves the next ones to them.
        assert!(!loads.may_accept(0));
        assert!(loads.may_accept(1) && loads.may_accept(2));
        let c = loads.admit(1).unwrap();
        assert!(!loads.may_accept(0), "thread 2 still serves none");
        let d = loads.admit(2).unwrap();
        assert!(loads.may_accept(0), "one above the others is allowed");
        assert_eq!(loads.open(), 4);
        drop((c, d));
        drop(a);
        assert!(loads.may_accept(0), "its first one ended");
        drop(b);
        assert!((0..3).all(|t| loads.may_accept(t)));
        assert_eq!(loads.open(), 0);
    }

    #[test]
    fn a_single_thread_always_accepts() {
        let loads = loads(1, 100);
        let held: Vec<_> = (0..10).map(|_| loads.admit(0).unwrap()).collect();
        assert!(loads.may_accept(0));
        drop(held);
    }

    #[test]
    fn past_the_cap_connections_are_refused_and_counted() {
        let loads = loads(2, 3);
        let held: Vec<_> = [0, 1, 0].iter().map(|&t| loads.admit(t).unwrap()).collect();
        assert!(loads.admit(1).is_none() && loads.admit(0).is_none());
        assert_eq!((loads.open(), loads.refused.get()), (3, 2));
        drop(held);
        assert!(loads.admit(1).is_some(), "room again");
        assert_eq!(loads.open(), 0, "the guard was dropped at once");
    }

    async fn wakes(notify: &Notify) -> bool {
        tokio::time::timeout(Duration::from_secs(5), notify.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_ended_connection_wakes_its_thread_to_look_again() {
        let loads = loads(2, 100);
        let held = loads.admit(0).unwrap();
        drop(held);
        assert!(wakes(loads.woken(0)).await);
    }

    /// Whether thread `t` has a wake waiting, taking it.
    async fn has_wake(loads: &Loads, t: usize) -> bool {
        tokio::time::timeout(Duration::ZERO, loads.woken(t).notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_connection_wakes_exactly_the_other_threads_that_may_accept() {
        let loads = loads(4, 100);
        let mut held = Vec::new();
        // Connections taken in an uneven order: after each, the wakes match the rule.
        for me in [0, 0, 1, 2, 0, 3, 3, 1, 2, 2, 0, 1] {
            for t in 0..4 {
                has_wake(&loads, t).await;
            }
            held.push(loads.admit(me).unwrap());
            for t in (0..4).filter(|&t| t != me) {
                assert_eq!(has_wake(&loads, t).await, loads.may_accept(t), "thread {t}");
            }
            assert!(!has_wake(&loads, me).await, "a thread does not wake itself");
        }
    }

    #[tokio::test]
    async fn a_thread_holding_back_is_woken_when_another_takes_a_connection() {
        let loads = loads(2, 100);
        let _a = loads.admit(0).unwrap();
        let _b = loads.admit(0).unwrap();
        assert!(!loads.may_accept(0), "thread 0 holds back");
        // Permits left by the admissions above are used up first: thread 0 looked already.
        while tokio::time::timeout(Duration::ZERO, loads.woken(0).notified())
            .await
            .is_ok()
        {}
        let _c = loads.admit(1).unwrap();
        assert!(loads.may_accept(0));
        assert!(
            wakes(loads.woken(0)).await,
            "thread 1's connection lets thread 0 accept again, and wakes it"
        );
    }
}
