//! CPU time and resident memory of a process, from `/proc`.
//!
//! The server's cost per request is reported in CPU-seconds rather than only
//! as a rate, because on a shared two-core machine the rate depends on how
//! much CPU the load generator takes; CPU per request does not.

use std::path::Path;

/// Kernel clock ticks per second (`getconf CLK_TCK`); 100 on every Linux
/// this bench is meant for. Read once at startup, see [`clock_ticks`].
const DEFAULT_CLOCK_TICKS: u64 = 100;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time of all threads, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes (`VmRSS`).
    pub rss_bytes: u64,
}

impl ProcSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`. `None` when the
    /// process is gone or the files do not parse (not Linux): the bench then
    /// reports the figures as unknown instead of failing the run.
    pub fn read(pid: u32, ticks_per_second: u64) -> Option<Self> {
        Self::read_from(&Path::new("/proc").join(pid.to_string()), ticks_per_second)
    }

    /// The bench's own process.
    pub fn read_self(ticks_per_second: u64) -> Option<Self> {
        Self::read_from(Path::new("/proc/self"), ticks_per_second)
    }

    fn read_from(dir: &Path, ticks_per_second: u64) -> Option<Self> {
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let ticks = cpu_ticks(&stat)?;
        Some(Self {
            cpu_seconds: ticks as f64 / ticks_per_second.max(1) as f64,
            rss_bytes: rss_bytes(&status)?,
        })
    }
}

/// Machine-wide CPU time from `/proc/stat`, to see how much of the shared
/// cores went to neither the server nor the generator (other processes,
/// interrupts) and how much was idle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemSample {
    /// Busy CPU time summed over all cores, in seconds.
    pub busy_seconds: f64,
    /// Busy + idle CPU time summed over all cores, in seconds.
    pub total_seconds: f64,
}

impl SystemSample {
    pub fn read(ticks_per_second: u64) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (busy, total) = system_ticks(&stat)?;
        let tps = ticks_per_second.max(1) as f64;
        Some(Self {
            busy_seconds: busy as f64 / tps,
            total_seconds: total as f64 / tps,
        })
    }
}

/// `(busy, total)` ticks from the aggregate `cpu` line of `/proc/stat`:
/// user nice system idle iowait irq softirq steal (guest time is already
/// counted in user). Idle and iowait are not busy.
pub fn system_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 5 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// `utime + stime` from the text of `/proc/<pid>/stat`. The command name
/// (field 2) is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = stat.get(stat.rfind(')')? + 1..)?;
    // After the comm: field 3 (state) is index 0, so utime (field 14) is
    // index 11 and stime (field 15) index 12.
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// `VmRSS` in bytes from the text of `/proc/<pid>/status`.
pub fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// `getconf CLK_TCK`, or 100 when `getconf` is unavailable or says
/// something unexpected.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_CLOCK_TICKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        // comm "(a) b)" contains a space and a parenthesis.
        let stat =
            "1234 ((a) b)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 10 1000 50";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("1234 (x) S 1 2"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn parses_the_aggregate_cpu_line() {
        let stat = "cpu  100 5 50 1000 20 3 7 0 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\nintr 1 2\n";
        assert_eq!(system_ticks(stat), Some((165, 1185)));
        assert_eq!(system_ticks("cpu0 1 2 3\n"), None);
        assert_eq!(system_ticks("cpu  1 x 3 4 5\n"), None);
        assert!(
            SystemSample::read(clock_ticks()).is_some_and(|s| s.total_seconds >= s.busy_seconds)
        );
    }

    #[test]
    fn parses_vmrss() {
        let status = "Name:\tidmint\nVmPeak:\t 9000 kB\nVmRSS:\t   20480 kB\nThreads:\t4\n";
        assert_eq!(rss_bytes(status), Some(20480 * 1024));
        assert_eq!(rss_bytes("Name:\tx\n"), None);
        assert_eq!(rss_bytes("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn reads_its_own_process() {
        let ticks = clock_ticks();
        assert!(ticks > 0);
        let sample = ProcSample::read_self(ticks).expect("/proc/self is readable on Linux");
        assert!(sample.rss_bytes > 1024 * 1024, "{sample:?}");
        assert!(sample.cpu_seconds >= 0.0);
        assert_eq!(ProcSample::read(u32::MAX, ticks), None);
    }
}
