//! The agent's eBPF programs: tracepoints that see function instances start, become ready,
//! accept requests and exit.
//!
//! Every program first looks the current task's cgroup up in the filter map written by the
//! agent; a task of any other cgroup costs that one lookup and nothing more. Rare lifecycle
//! events go to user space through a ring buffer (a failed reservation is counted, never
//! silent); accepted connections, the hot path, only bump a per-CPU counter of the function.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
        macros::{map, tracepoint},
        maps::{HashMap, PerCpuArray, RingBuf},
        programs::TracePointContext,
    };
    use synapse_agent_ebpf::{
        CgroupEntry, DEFAULT_RING_BYTES, EventKind, FLAG_ACCEPTED, FLAG_EXEC, FLAG_READY,
        LifecycleEvent, MAX_CGROUPS, MAX_FUNCTIONS, STAT_LEN, STAT_RINGBUF_LOST,
    };

    #[map(name = "SYNAPSE_FILTER")]
    static FILTER: HashMap<u64, CgroupEntry> = HashMap::with_max_entries(MAX_CGROUPS, 0);

    #[map(name = "SYNAPSE_ACCEPTS")]
    static ACCEPTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_FUNCTIONS, 0);

    #[map(name = "SYNAPSE_STATS")]
    static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_LEN, 0);

    #[map(name = "SYNAPSE_EVENTS")]
    static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

    /// Offset of `long ret` in every `syscalls/sys_exit_*` record.
    const SYS_EXIT_RET: usize = 16;

    /// The filter entry of the current task's cgroup: the one lookup every event pays.
    #[inline(always)]
    fn watched() -> Option<(u64, &'static mut CgroupEntry)> {
        let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        let entry = FILTER.get_ptr_mut(&cgroup_id)?;
        Some((cgroup_id, unsafe { &mut *entry }))
    }

    #[inline(always)]
    fn emit(kind: EventKind, cgroup_id: u64, entry: &CgroupEntry, ts_ns: u64) {
        let pid_tgid = bpf_get_current_pid_tgid();
        match EVENTS.reserve::<LifecycleEvent>(0) {
            Some(mut slot) => {
                slot.write(LifecycleEvent {
                    kind: kind as u32,
                    function_id: entry.function_id,
                    tgid: (pid_tgid >> 32) as u32,
                    pid: pid_tgid as u32,
                    cgroup_id,
                    ts_ns,
                    exec_ns: entry.exec_ns,
                });
                slot.submit(0);
            }
            None => {
                if let Some(lost) = STATS.get_ptr_mut(STAT_RINGBUF_LOST) {
                    unsafe { *lost += 1 };
                }
            }
        }
    }

    #[inline(always)]
    fn syscall_ret(ctx: &TracePointContext) -> i64 {
        unsafe { ctx.read_at::<i64>(SYS_EXIT_RET) }.unwrap_or(-1)
    }

    #[tracepoint]
    pub fn synapse_exec(_ctx: TracePointContext) -> u32 {
        if let Some((cgroup_id, entry)) = watched() {
            let now = unsafe { bpf_ktime_get_ns() };
            if entry.flags & FLAG_EXEC == 0 {
                entry.flags |= FLAG_EXEC;
                entry.exec_ns = now;
            }
            emit(EventKind::Exec, cgroup_id, entry, now);
        }
        0
    }

    #[tracepoint]
    pub fn synapse_exit(_ctx: TracePointContext) -> u32 {
        if let Some((cgroup_id, entry)) = watched() {
            let pid_tgid = bpf_get_current_pid_tgid();
            // Only a process's exit matters, not each of its threads'.
            if (pid_tgid >> 32) as u32 == pid_tgid as u32 {
                let now = unsafe { bpf_ktime_get_ns() };
                emit(EventKind::Exit, cgroup_id, entry, now);
            }
        }
        0
    }

    #[tracepoint]
    pub fn synapse_listen(ctx: TracePointContext) -> u32 {
        if let Some((cgroup_id, entry)) = watched() {
            if entry.flags & FLAG_READY == 0 && syscall_ret(&ctx) == 0 {
                entry.flags |= FLAG_READY;
                let now = unsafe { bpf_ktime_get_ns() };
                emit(EventKind::Ready, cgroup_id, entry, now);
            }
        }
        0
    }

    #[inline(always)]
    fn on_accept(ctx: &TracePointContext) {
        if let Some((cgroup_id, entry)) = watched() {
            if syscall_ret(ctx) < 0 {
                return;
            }
            if let Some(count) = ACCEPTS.get_ptr_mut(entry.function_id) {
                unsafe { *count += 1 };
            }
            let now = unsafe { bpf_ktime_get_ns() };
            entry.last_accept_ns = now;
            if entry.flags & FLAG_ACCEPTED == 0 {
                entry.flags |= FLAG_ACCEPTED;
                emit(EventKind::FirstAccept, cgroup_id, entry, now);
            }
        }
    }

    #[tracepoint]
    pub fn synapse_accept(ctx: TracePointContext) -> u32 {
        on_accept(&ctx);
        0
    }

    #[tracepoint]
    pub fn synapse_accept4(ctx: TracePointContext) -> u32 {
        on_accept(&ctx);
        0
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

/// On the host this crate is only a library (the shared layout); the programs exist only
/// when built for the BPF target.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
