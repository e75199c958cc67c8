//! Tests of the warm pool's rules: leases, queueing, expiry and pre-warms.

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
fn an_instance_beyond_the_target_is_released_and_prewarmed_after_the_delay() {
    let t0 = Instant::now();
    let mut p = pool_with_ready(2, 1, t0);
    let a = p.try_lease(t0).unwrap();
    let b = p.try_lease(t0).unwrap();
    let end = t0 + Duration::from_secs(1);
    p.release(a.seq, end);
    p.release(b.seq, end);
    let delay = Duration::from_secs(30);
    p.release_for_prewarm(delay, 1, end + Duration::from_millis(500));
    assert_eq!(
        p.ready(),
        1,
        "one instance kept for the target, one released"
    );
    assert_eq!(p.pending_prewarms(), 1);
    assert!(p.due_prewarms(end + Duration::from_secs(29)).is_empty());
    let due = p.due_prewarms(end + delay);
    assert_eq!(
        due,
        vec![PendingPrewarm {
            start_at: end + delay,
            anchor: end
        }]
    );
    assert_eq!(p.pending_prewarms(), 0);
}

#[test]
fn an_arrival_cancels_pending_prewarms() {
    let t0 = Instant::now();
    let mut p = pool_with_ready(1, 1, t0);
    let a = p.try_lease(t0).unwrap();
    p.release(a.seq, t0);
    p.release_for_prewarm(Duration::from_secs(10), 0, t0);
    assert_eq!(p.pending_prewarms(), 1);
    p.cancel_prewarms();
    assert!(p.due_prewarms(t0 + Duration::from_secs(60)).is_empty());
}

#[test]
fn instances_started_for_the_target_and_never_used_go_without_a_prewarm() {
    let t0 = Instant::now();
    let mut p = pool_with_ready(3, 1, t0);
    // Still held by the target: kept.
    p.release_for_prewarm(Duration::from_secs(10), 3, t0);
    assert_eq!((p.ready(), p.pending_prewarms()), (3, 0));
    // Beyond it: no execution end anchors a window for them, so nothing is pre-warmed.
    p.release_for_prewarm(Duration::from_secs(10), 1, t0 + Duration::from_secs(600));
    assert_eq!((p.ready(), p.pending_prewarms()), (1, 0));
}

#[test]
fn a_prewarmed_instance_keeps_the_anchor_of_the_one_it_replaces() {
    let t0 = Instant::now();
    let mut p = Pool::new(1, 4, 8);
    let (tx, _r) = oneshot::channel();
    let start = t0 + Duration::from_secs(50);
    p.add_prewarming(0, "i0".into(), tx, start, t0);
    p.mark_ready(0, addr(9000), start);
    let ka = Duration::from_secs(60);
    assert!(p.expired(ka, 0, t0 + Duration::from_secs(59)).is_empty());
    assert_eq!(p.expired(ka, 0, t0 + ka), vec![0]);
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
