//! Telemetry: the kernel's view of function instances, turned into per-function series.
//!
//! A pipeline of named stages: `ebpf` (programs in the kernel, filtered by cgroup) →
//! `collector` (reads the ring buffer and counters) → `tracker` (instances, cold starts,
//! idle time) → `record`s closed each interval → the store, the metrics and the console.

pub mod collector;
pub mod ebpf;
pub mod histogram;
pub mod host;
pub mod record;
pub mod tracker;

/// Kernel monotonic time in nanoseconds: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock Unix time in milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
