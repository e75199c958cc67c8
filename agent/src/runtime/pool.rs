//! The warm pool of one function, as plain state: which instances exist, which are ready and
//! how busy, who waits for one. Every change happens under the function's lock and is quick;
//! starting and stopping processes is the instance tasks' business (`instance.rs`).
//!
//! Rules: a request takes a ready instance with a free slot, the most recently idle one first
//! (so surplus instances age out); otherwise it waits in a bounded queue, and a new instance is
//! started when the instances already starting cannot absorb the queue. A request served by
//! an instance that became ready after the request arrived is a cold start.

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

/// The right to send one invocation to one instance; give it back with [`Pool::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub seq: u64,
    pub instance: String,
    pub addr: SocketAddr,
    /// The instance became ready after the request arrived.
    pub cold: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Starting,
    Ready,
    /// Being stopped: takes no new invocations.
    Retiring,
}

#[derive(Debug)]
pub struct Slot {
    pub name: String,
    pub addr: Option<SocketAddr>,
    pub state: SlotState,
    pub in_flight: u32,
    pub ready_at: Option<Instant>,
    /// Since when the instance has had no invocation in flight.
    pub idle_since: Instant,
    /// Fires to ask the instance task to stop the instance.
    pub retire: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Waiter {
    arrived: Instant,
    reply: oneshot::Sender<Lease>,
}

/// Why a request was not queued.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

#[derive(Debug)]
pub struct Pool {
    concurrency: u32,
    max_instances: u32,
    queue_limit: usize,
    slots: BTreeMap<u64, Slot>,
    waiters: VecDeque<Waiter>,
    /// Why the latest instance failed, for error messages.
    pub last_failure: Option<String>,
}

impl Pool {
    pub fn new(concurrency: u32, max_instances: u32, queue_limit: usize) -> Self {
        Self {
            concurrency,
            max_instances,
            queue_limit,
            slots: BTreeMap::new(),
            waiters: VecDeque::new(),
            last_failure: None,
        }
    }

    pub fn slots(&self) -> impl Iterator<Item = (&u64, &Slot)> {
        self.slots.iter()
    }

    fn count(&self, state: SlotState) -> u32 {
        self.slots.values().filter(|s| s.state == state).count() as u32
    }

    pub fn ready(&self) -> u32 {
        self.count(SlotState::Ready)
    }

    pub fn starting(&self) -> u32 {
        self.count(SlotState::Starting)
    }

    /// Instances that count against `max_instances` and towards the pool target.
    pub fn alive(&self) -> u32 {
        self.ready() + self.starting()
    }

    pub fn queue_depth(&self) -> usize {
        self.waiters.len()
    }

    /// Records a new instance slot being started.
    pub fn add_starting(
        &mut self,
        seq: u64,
        name: String,
        retire: oneshot::Sender<()>,
        now: Instant,
    ) {
        self.slots.insert(
            seq,
            Slot {
                name,
                addr: None,
                state: SlotState::Starting,
                in_flight: 0,
                ready_at: None,
                idle_since: now,
                retire: Some(retire),
            },
        );
    }

    /// Whether another instance may be started.
    pub fn can_grow(&self) -> bool {
        self.alive() < self.max_instances
    }

    /// Whether the queue needs one more instance than is already starting.
    pub fn needs_instance(&self) -> bool {
        let absorbing = self.starting() as usize * self.concurrency as usize;
        self.waiters.len() > absorbing && self.can_grow()
    }

    fn lease_from(&mut self, arrived: Instant) -> Option<Lease> {
        let concurrency = self.concurrency;
        let (&seq, slot) = self
            .slots
            .iter_mut()
            .filter(|(_, s)| s.state == SlotState::Ready && s.in_flight < concurrency)
            // Busy instances with room first, then the most recently idle.
            .max_by_key(|(_, s)| (s.in_flight > 0, s.idle_since))?;
        slot.in_flight += 1;
        Some(Lease {
            seq,
            instance: slot.name.clone(),
            addr: slot.addr?,
            cold: slot.ready_at.is_some_and(|r| r > arrived),
        })
    }

    /// A lease on a ready instance now, if one has room.
    pub fn try_lease(&mut self, arrived: Instant) -> Option<Lease> {
        if !self.waiters.is_empty() {
            return None; // first come, first served
        }
        self.lease_from(arrived)
    }

    /// Queues a request; the lease comes through the returned receiver.
    pub fn enqueue(&mut self, arrived: Instant) -> Result<oneshot::Receiver<Lease>, QueueFull> {
        if self.waiters.len() >= self.queue_limit {
            return Err(QueueFull);
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push_back(Waiter { arrived, reply: tx });
        self.dispatch();
        Ok(rx)
    }

    /// Hands free slots to waiting requests, oldest first.
    pub fn dispatch(&mut self) {
        while let Some(waiter) = self.waiters.front() {
            if waiter.reply.is_closed() {
                self.waiters.pop_front();
                continue;
            }
            let Some(lease) = self.lease_from(waiter.arrived) else {
                break;
            };
            let waiter = self.waiters.pop_front().expect("front exists");
            if let Err(lease) = waiter.reply.send(lease) {
                // The request gave up in the meantime: the slot is free again.
                self.release(lease.seq, Instant::now());
            }
        }
    }

    /// The instance listens: it takes invocations from now on.
    pub fn mark_ready(&mut self, seq: u64, addr: SocketAddr, now: Instant) {
        if let Some(slot) = self.slots.get_mut(&seq) {
            if slot.state == SlotState::Starting {
                slot.state = SlotState::Ready;
            }
            slot.addr = Some(addr);
            slot.ready_at = Some(now);
            slot.idle_since = now;
        }
        self.dispatch();
    }

    /// An invocation on `seq` ended.
    pub fn release(&mut self, seq: u64, now: Instant) {
        if let Some(slot) = self.slots.get_mut(&seq) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            if slot.in_flight == 0 {
                slot.idle_since = now;
            }
        }
        self.dispatch();
    }

    /// Stops giving invocations to `seq` and asks its task to stop it.
    pub fn retire(&mut self, seq: u64) {
        if let Some(slot) = self.slots.get_mut(&seq) {
            slot.state = SlotState::Retiring;
            if let Some(tx) = slot.retire.take() {
                let _ = tx.send(());
            }
        }
    }

    /// Answers every waiting request with "no instance" (their receivers see the sender gone).
    pub fn fail_waiters(&mut self) {
        self.waiters.clear();
    }

    /// The instance is gone.
    pub fn remove(&mut self, seq: u64) -> Option<Slot> {
        let slot = self.slots.remove(&seq);
        self.dispatch();
        slot
    }

    /// Idle ready instances past `keep_alive`, beyond the `keep` instances the pool holds.
    pub fn expired(&self, keep_alive: Duration, keep: u32, now: Instant) -> Vec<u64> {
        let mut idle: Vec<(&u64, &Slot)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.state == SlotState::Ready && s.in_flight == 0)
            .collect();
        // The least recently used go first.
        idle.sort_by_key(|(_, s)| s.idle_since);
        let surplus = self.alive().saturating_sub(keep) as usize;
        idle.into_iter()
            .filter(|(_, s)| now.duration_since(s.idle_since) >= keep_alive)
            .take(surplus)
            .map(|(&seq, _)| seq)
            .collect()
    }

    /// Ready instances with nothing in flight: what idles and costs memory.
    pub fn idle_ready(&self) -> u32 {
        self.slots
            .values()
            .filter(|s| s.state == SlotState::Ready && s.in_flight == 0)
            .count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn pool_with_ready(n: u64, concurrency: u32, now: Instant) -> Pool {
        let mut p = Pool::new(concurrency, 4, 2);
        for seq in 0..n {
            let (tx, _rx) = oneshot::channel();
            p.add_starting(seq, format!("i{seq}"), tx, now);
            p.mark_ready(seq, addr(9000 + seq as u16), now);
        }
        p
    }

    #[test]
    fn a_queued_request_is_cold_when_its_instance_became_ready_later() {
        let t0 = Instant::now();
        let mut p = Pool::new(1, 4, 8);
        let mut rx = p.enqueue(t0).unwrap();
        assert!(p.needs_instance());
        let (tx, _retire) = oneshot::channel();
        p.add_starting(1, "i1".into(), tx, t0);
        assert!(!p.needs_instance());
        p.mark_ready(1, addr(9001), t0 + Duration::from_millis(300));
        let lease = rx.try_recv().unwrap();
        assert!(lease.cold);
        p.release(lease.seq, t0 + Duration::from_millis(400));
        let warm = p.try_lease(t0 + Duration::from_millis(500)).unwrap();
        assert!(!warm.cold);
    }

    #[test]
    fn the_most_recently_idle_instance_is_taken_first() {
        let t0 = Instant::now();
        let mut p = pool_with_ready(2, 1, t0);
        let a = p.try_lease(t0).unwrap();
        let b = p.try_lease(t0).unwrap();
        p.release(b.seq, t0 + Duration::from_secs(1));
        p.release(a.seq, t0 + Duration::from_secs(2));
        assert_eq!(p.try_lease(t0 + Duration::from_secs(3)).unwrap().seq, a.seq);
    }

    #[test]
    fn concurrency_bounds_the_invocations_per_instance_and_the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut p = pool_with_ready(1, 2, t0);
        assert!(p.try_lease(t0).is_some());
        assert!(p.try_lease(t0).is_some());
        assert!(p.try_lease(t0).is_none());
        let _w1 = p.enqueue(t0).unwrap();
        let _w2 = p.enqueue(t0).unwrap();
        assert_eq!(p.enqueue(t0).unwrap_err(), QueueFull);
    }

    #[test]
    fn idle_instances_expire_only_beyond_the_pool_target() {
        let t0 = Instant::now();
        let p = pool_with_ready(3, 1, t0);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(p.expired(Duration::from_secs(60), 1, later).len(), 2);
        assert!(p.expired(Duration::from_secs(120), 0, later).is_empty());
    }

    #[test]
    fn a_waiter_that_gave_up_does_not_hold_a_slot() {
        let t0 = Instant::now();
        let mut p = Pool::new(1, 4, 8);
        drop(p.enqueue(t0).unwrap());
        let (tx, _r) = oneshot::channel();
        p.add_starting(0, "i0".into(), tx, t0);
        p.mark_ready(0, addr(9000), t0);
        assert_eq!(p.queue_depth(), 0);
        assert!(p.try_lease(t0).is_some());
    }
}
