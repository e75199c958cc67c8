//! Tests of the mount table parsing and the layout found in it.

use super::*;

const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
40 35 0:35 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
41 35 0:36 / /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu
";

#[test]
fn the_own_v2_cgroup_is_the_unified_line_of_proc_self_cgroup() {
    let hybrid = "9:name=systemd:/system.slice/synapse-agent.service\n\
                  1:memory:/system.slice/synapse-agent.service\n\
                  0::/system.slice/synapse-agent.service\n";
    assert_eq!(
        own_v2_cgroup(hybrid),
        Some(PathBuf::from("system.slice/synapse-agent.service"))
    );
    assert_eq!(own_v2_cgroup("0::/\n"), Some(PathBuf::new()));
    assert_eq!(own_v2_cgroup("4:pids:/\n"), None, "v1 only");
}

#[test]
fn hybrid_layout_finds_unified_v2_and_v1_memory() {
    let mounts = parse_mountinfo(HYBRID);
    let l = CgroupLayout::from_mounts(&mounts, None, "synapse").unwrap();
    assert_eq!(l.v2, PathBuf::from("/sys/fs/cgroup/unified"));
    assert_eq!(l.v1_memory, Some(PathBuf::from("/sys/fs/cgroup/memory")));
    assert_eq!(mounts[4].mount_point, PathBuf::from("/sys/fs/cgroup/cpu x"));
}

#[test]
fn pure_v2_layout_is_found_at_sys_fs_cgroup() {
    let text = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
    let l = CgroupLayout::from_mounts(&parse_mountinfo(text), None, "synapse").unwrap();
    assert_eq!(l.v2, PathBuf::from("/sys/fs/cgroup"));
    assert_eq!(l.v1_memory, None);
}

#[test]
fn no_cgroup2_is_a_clear_error() {
    let text = "35 25 0:30 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n";
    let err = CgroupLayout::from_mounts(&parse_mountinfo(text), None, "s").unwrap_err();
    assert!(err.to_string().contains("no cgroup v2 hierarchy"));
}

#[test]
fn hybrid_layout_finds_the_v1_pids_and_cpu_controllers_even_when_comounted() {
    let text = format!(
        "{HYBRID}42 35 0:37 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
         43 35 0:38 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    );
    let l = CgroupLayout::from_mounts(&parse_mountinfo(&text), None, "synapse").unwrap();
    assert_eq!(l.v1_pids, Some(PathBuf::from("/sys/fs/cgroup/pids")));
    // The first mount that holds the controller; `cpuacct` alone is not `cpu`.
    assert_eq!(l.v1_cpu, Some(PathBuf::from("/sys/fs/cgroup/cpu x")));
    let only_comounted = text.replace("rw,cpu\n", "rw,cpuacct\n");
    let l = CgroupLayout::from_mounts(&parse_mountinfo(&only_comounted), None, "s").unwrap();
    assert_eq!(l.v1_cpu, Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")));
    let roots: Vec<PathBuf> = l.v1_roots().collect();
    assert_eq!(
        roots,
        [
            "/sys/fs/cgroup/memory/s",
            "/sys/fs/cgroup/pids/s",
            "/sys/fs/cgroup/cpu,cpuacct/s"
        ]
        .map(PathBuf::from)
    );
}
