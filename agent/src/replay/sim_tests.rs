//! Tests of the virtual-clock warm pool against the rules of `EVALUATION.md`.

use super::*;

fn keep(keep_alive_s: f64) -> PoolDecision {
    PoolDecision {
        pool_target: 0,
        keep_alive_s,
        prewarm_s: None,
    }
}

/// A function of 100 MB running 2 s per call, load time 1 s, over 1000 s.
fn sim(decision: PoolDecision) -> FunctionSim {
    let mut s = FunctionSim::new(1.0, 2.0, 100.0, 1000.0);
    s.begin_interval(0.0, 1000.0, decision);
    s
}

#[test]
fn the_first_call_is_cold_and_a_call_within_the_keep_alive_is_warm() {
    let mut s = sim(keep(60.0));
    s.arrive(10.0); // cold: loads 10..11, runs 11..13
    s.arrive(50.0); // warm: idle 13..50
    s.finish(); // idle 52..112
    assert_eq!(s.whole.invocations, 2);
    assert_eq!(s.whole.cold_starts, 1);
    assert!((s.whole.wasted_mb_s - (37.0 + 60.0) * 100.0).abs() < 1e-9);
}

#[test]
fn a_call_after_the_keep_alive_is_cold_and_the_idle_time_is_the_window() {
    let mut s = sim(keep(30.0));
    s.arrive(0.0); // runs 1..3, idle 3..33
    s.arrive(100.0);
    s.finish();
    assert_eq!(s.whole.cold_starts, 2);
    assert!((s.whole.wasted_mb_s - 2.0 * 30.0 * 100.0).abs() < 1e-9);
}

#[test]
fn concurrent_calls_need_their_own_instances() {
    let mut s = sim(keep(600.0));
    s.arrive(0.0);
    s.arrive(0.5); // the first is still loading for its own call
    assert_eq!(s.whole.cold_starts, 2);
    assert_eq!(s.instances(), 2);
}

#[test]
fn the_most_recently_idle_instance_is_taken_so_surplus_ages_out() {
    let mut s = sim(keep(20.0));
    s.arrive(0.0); // A: runs 1..3
    s.arrive(0.1); // B: runs 1.1..3.1
    s.arrive(10.0); // takes B (idle since 3.1), not A (idle since 3)
    s.arrive(22.0); // takes B again (idle since 12); A stays unused
    assert_eq!(s.whole.cold_starts, 2);
    s.arrive(40.0); // B idle since 24: warm; A's keep-alive ran out at 23
    assert_eq!(s.whole.cold_starts, 2);
    assert_eq!(s.instances(), 1);
}

#[test]
fn a_prewarm_releases_the_instance_and_loads_one_before_the_next_call() {
    let mut s = sim(PoolDecision {
        pool_target: 0,
        keep_alive_s: 120.0,
        prewarm_s: Some(90.0),
    });
    s.arrive(0.0); // runs 1..3; released; loads at 93, ready at 94
    s.arrive(100.0); // warm: idle 94..100
    assert_eq!(s.whole.cold_starts, 1);
    assert!((s.whole.wasted_mb_s - 6.0 * 100.0).abs() < 1e-9);
}

#[test]
fn an_arrival_on_a_loading_prewarm_is_cold() {
    let mut s = sim(PoolDecision {
        pool_target: 0,
        keep_alive_s: 120.0,
        prewarm_s: Some(90.0),
    });
    s.arrive(0.0);
    s.arrive(93.5); // the pre-warm started at 93 and is ready at 94
    assert_eq!(s.whole.cold_starts, 2);
    assert_eq!(s.instances(), 1);
}

#[test]
fn an_invocation_before_the_prewarm_cancels_it() {
    let mut s = sim(PoolDecision {
        pool_target: 0,
        keep_alive_s: 120.0,
        prewarm_s: Some(90.0),
    });
    s.arrive(0.0);
    s.arrive(50.0); // cold (released), and the pending pre-warm is dropped
    s.arrive(95.0); // no instance was pre-warmed at 93
    assert_eq!(s.whole.cold_starts, 3);
}

#[test]
fn idle_time_is_clipped_at_the_end_and_split_by_window() {
    let mut s = sim(keep(10_000.0));
    s.arrive(400.0); // runs 401..403, idle to the end (1000)
    s.arrive(700.0); // warm, idle 403..700; runs 700..702, idle 702..1000
    s.finish();
    assert!((s.whole.wasted_mb_s - (297.0 + 298.0) * 100.0).abs() < 1e-6);
    // Second half starts at 500: 200 s before the call at 700, 298 s after it.
    assert!((s.second_half.wasted_mb_s - (200.0 + 298.0) * 100.0).abs() < 1e-6);
    assert_eq!(s.second_half.invocations, 1);
    assert_eq!(s.second_half.cold_starts, 0);
}

#[test]
fn the_pool_target_is_loaded_ahead_and_kept_past_its_keep_alive() {
    let mut s = FunctionSim::new(1.0, 2.0, 100.0, 1000.0);
    let target = PoolDecision {
        pool_target: 1,
        keep_alive_s: 5.0,
        prewarm_s: None,
    };
    s.begin_interval(0.0, 60.0, target);
    s.arrive(30.0); // ready since 1: warm
    s.begin_interval(60.0, 120.0, target);
    s.arrive(100.0); // idle since 32, kept by the target
    assert_eq!(s.whole.cold_starts, 0);
    s.begin_interval(120.0, 180.0, keep(5.0));
    s.arrive(170.0); // target 0: retired at 120 + … (102 + 5 → kept to 120, then retired)
    assert_eq!(s.whole.cold_starts, 1);
}

#[test]
fn a_new_keep_alive_applies_to_instances_already_idle() {
    let mut s = FunctionSim::new(1.0, 2.0, 100.0, 10_000.0);
    s.begin_interval(0.0, 60.0, keep(120.0));
    s.arrive(0.0); // runs 1..3, would expire at 123
    s.begin_interval(60.0, 120.0, keep(3600.0));
    s.arrive(1000.0); // the longer window, counted from 3, keeps it
    assert_eq!(s.whole.cold_starts, 1);
    s.begin_interval(1060.0, 1120.0, keep(10.0));
    s.arrive(1100.0); // idle since 1002; past its new window, retired at 1060
    assert_eq!(s.whole.cold_starts, 2);
    s.finish();
}

#[test]
fn an_instance_started_for_the_target_and_never_used_goes_under_a_prewarm_window() {
    let mut s = FunctionSim::new(1.0, 2.0, 100.0, 10_000.0);
    let target = PoolDecision {
        pool_target: 1,
        keep_alive_s: 3600.0,
        prewarm_s: None,
    };
    s.begin_interval(0.0, 60.0, target);
    // The window is now warm only from 1800 s after an execution end: the instance, ready at
    // 1 and never used, is no execution's end and goes when the target lets it.
    let window = PoolDecision {
        pool_target: 0,
        keep_alive_s: 3600.0,
        prewarm_s: Some(1800.0),
    };
    s.begin_interval(60.0, 120.0, window);
    s.begin_interval(120.0, 180.0, window);
    assert_eq!(s.instances(), 0);
    s.finish();
    assert!((s.whole.wasted_mb_s - 59.0 * 100.0).abs() < 1e-9);
    // Without a pre-warm the same instance stays for the keep-alive, counted from readiness.
    let mut s = FunctionSim::new(1.0, 2.0, 100.0, 10_000.0);
    s.begin_interval(0.0, 60.0, target);
    s.begin_interval(60.0, 120.0, keep(3600.0));
    s.begin_interval(120.0, 180.0, keep(3600.0));
    assert_eq!(s.instances(), 1);
}
