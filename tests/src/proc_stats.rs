//! What Linux says of a process in `/proc/<pid>`: its memory and the CPU time it used, for
//! benchmarks of the running bot.

use std::time::Duration;

/// A `kB` field of `/proc/<pid>/status`, e.g. `"VmRSS:"`.
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the bot's status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field}"));
    line[field.len()..]
        .split_whitespace()
        .next()
        .and_then(|kb| kb.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// Resident memory, kB.
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// User plus system CPU time the process used so far (`/proc/<pid>/stat`, in clock ticks of
/// 10 ms — the kernel's `USER_HZ` is 100 on every Linux the bot runs on).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the bot's stat");
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Megabytes, one decimal, from kB.
pub fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}
