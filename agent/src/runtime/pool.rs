//! The warm pool of one function, as plain state: which instances exist, which are ready and
//! how busy, who waits for one. Every change happens under the function's lock and is quick;
//! starting and stopping processes is the instance tasks' business (`instance.rs`).
//!
//! Rules: a request takes a ready instance with a free slot, the most recently idle one first
//! (so surplus instances age out); otherwise it waits in a bounded queue, and a new instance is
//! started when the instances already starting cannot absorb the queue. A request served by
//! an instance that became ready after the request arrived is a cold start.
//!
//! Keep-alive is counted from an instance's anchor: the end of its last invocation, else when
//! it became ready — or, for a pre-warmed instance, the end of the invocation of the instance
//! it replaces. Pre-warm (when the plan has one): an idle instance beyond the target whose
//! invocation ended less than the pre-warm delay ago is released, and a new one is started
//! that delay after the end, unless an invocation arrives first; an idle instance started for
//! the target and never used is released (no execution end anchors a window for it) — as in
//! the replay's pool.

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
    /// Keep-alive is counted from here (see the module comment).
    pub anchor: Instant,
    /// The anchor is the end of an invocation of this instance.
    anchored_by_invocation: bool,
    /// A pre-warmed instance: its anchor came with it.
    prewarmed: bool,
    /// Fires to ask the instance task to stop the instance.
    pub retire: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Waiter {
    arrived: Instant,
    reply: oneshot::Sender<Lease>,
}

/// A pre-warm waiting for its time: a new instance starts at `start_at`, and its keep-alive
/// is counted from `anchor` (the end of the invocation of the instance it replaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingPrewarm {
    pub start_at: Instant,
    pub anchor: Instant,
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
    prewarms: Vec<PendingPrewarm>,
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
            prewarms: Vec::new(),
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
                anchor: now,
                anchored_by_invocation: false,
                prewarmed: false,
                retire: Some(retire),
            },
        );
    }

    /// Records a pre-warmed instance being started; its keep-alive runs from `anchor`.
    pub fn add_prewarming(
        &mut self,
        seq: u64,
        name: String,
        retire: oneshot::Sender<()>,
        now: Instant,
        anchor: Instant,
    ) {
        self.add_starting(seq, name, retire, now);
        if let Some(slot) = self.slots.get_mut(&seq) {
            slot.anchor = anchor;
            slot.prewarmed = true;
        }
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
            if !slot.prewarmed {
                slot.anchor = now;
            }
        }
        self.dispatch();
    }

    /// An invocation on `seq` ended.
    pub fn release(&mut self, seq: u64, now: Instant) {
        if let Some(slot) = self.slots.get_mut(&seq) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            if slot.in_flight == 0 {
                slot.idle_since = now;
                slot.anchor = now;
                slot.anchored_by_invocation = true;
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

    /// An invocation arrived: pre-warms not started yet are not needed any more.
    pub fn cancel_prewarms(&mut self) {
        self.prewarms.clear();
    }

    /// Releases idle instances beyond the `keep` the pool holds whose invocation ended less
    /// than `prewarm` ago, each replaced by a pre-warm `prewarm` after that end; and those
    /// started for the target that no invocation has used, which no execution end anchors
    /// (the window is warm only from the pre-warm on after an execution end), with no
    /// pre-warm in their place.
    pub fn release_for_prewarm(&mut self, prewarm: Duration, keep: u32, now: Instant) {
        let mut idle: Vec<(u64, Instant, bool)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.state == SlotState::Ready && s.in_flight == 0)
            .filter_map(|(&seq, s)| {
                if s.anchored_by_invocation {
                    (now.duration_since(s.anchor) < prewarm).then_some((seq, s.anchor, true))
                } else {
                    (!s.prewarmed).then_some((seq, s.anchor, false))
                }
            })
            .collect();
        // The least recently used go first, as at expiry.
        idle.sort_by_key(|&(_, anchor, _)| anchor);
        let surplus = self.alive().saturating_sub(keep) as usize;
        for (seq, anchor, ended) in idle.into_iter().take(surplus) {
            self.retire(seq);
            if !ended {
                continue;
            }
            if let Some(start_at) = anchor.checked_add(prewarm) {
                self.prewarms.push(PendingPrewarm { start_at, anchor });
            }
        }
    }

    /// Pre-warms whose time has come, taken out of the pending list.
    pub fn due_prewarms(&mut self, now: Instant) -> Vec<PendingPrewarm> {
        let (due, later) = self.prewarms.iter().partition(|p| p.start_at <= now);
        self.prewarms = later;
        due
    }

    /// Pre-warms waiting for their time.
    pub fn pending_prewarms(&self) -> usize {
        self.prewarms.len()
    }

    /// Idle ready instances past `keep_alive` (counted from their anchor), beyond the `keep`
    /// instances the pool holds.
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
            .filter(|(_, s)| now.saturating_duration_since(s.anchor) >= keep_alive)
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
#[path = "pool_tests.rs"]
mod tests;
