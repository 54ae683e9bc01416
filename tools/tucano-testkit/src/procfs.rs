//! A process's cost from `/proc`: CPU time is `utime + stime` of `/proc/PID/stat` (all
//! threads, in clock ticks, 10 ms here); peak RSS is `VmHWM` of `/proc/PID/status`.
//! [`Usage`] adds up the process and its living children: the worker's pass-code
//! helpers are part of its cost.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// CPU time of a process and its children.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The process's and its children's together.
    pub total: Duration,
    /// Its children's alone.
    pub children: Duration,
}

impl Cpu {
    /// The CPU time used since `before`.
    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            total: self.total.saturating_sub(before.total),
            children: self.children.saturating_sub(before.children),
        }
    }

    /// Of process `pid` and its living children, so far; `None` if `pid` is gone. A
    /// child that exits between two readings takes its time with it: the worker's
    /// helpers live as long as the worker.
    pub fn of(pid: u32) -> Option<Cpu> {
        let own = ticks(&pid.to_string())?;
        let children: u64 = children(pid)
            .iter()
            .filter_map(|child| ticks(&child.to_string()))
            .sum();
        let children = ticks_to_duration(children);
        Some(Cpu {
            total: ticks_to_duration(own) + children,
            children,
        })
    }
}

/// Peak resident set size of process `pid` so far, in bytes, plus that of each living
/// child: the peaks may not have been at the same moment, so this is an upper bound.
/// `None` if `pid` is gone.
pub fn peak_rss_with_children(pid: u32) -> Option<u64> {
    let own = peak_rss(pid)?;
    let children: u64 = children(pid).into_iter().filter_map(peak_rss).sum();
    Some(own + children)
}

/// Clock ticks per second (`getconf CLK_TCK`, usually 100).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// `utime + stime` of a process (`pid` a number or `self`), in ticks.
pub fn ticks(pid: &str) -> Option<u64> {
    let stat = stat_after_name(pid)?;
    let mut fields = stat.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A number of clock ticks as a duration.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_micros(ticks * 1_000_000 / clock_ticks())
}

/// The CPU time of process `pid` alone; `None` if it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    ticks(&pid.to_string()).map(ticks_to_duration)
}

/// `/proc/PID/stat` from field 3 (the state) on, as text. The command name (field 2)
/// may hold spaces and parentheses; the fields after it are plain.
fn stat_after_name(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 2..].trim_end().to_owned())
}

/// The fields of `/proc/PID/stat` from field 3 (the state) on: `[0]` is the state,
/// `[1]` the parent, `[3]` the session, `[11]` and `[12]` `utime` and `stime`.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    Some(
        stat_after_name(&pid.to_string())?
            .split(' ')
            .map(str::to_owned)
            .collect(),
    )
}

/// `VmHWM` of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
}

/// The processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent(child) == Some(pid))
        .collect()
}

/// The parent of a process (field 4 of `/proc/PID/stat`).
fn parent(pid: u32) -> Option<u32> {
    stat_after_name(&pid.to_string())?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_a_peak() {
        // Burn a little CPU so at least one tick is counted.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let me = std::process::id();
        assert!(Cpu::of(me).expect("own stat").total > Duration::ZERO);
        assert!(peak_rss(me).expect("own status") > 1024 * 1024);
    }

    #[test]
    fn a_child_is_found_under_its_parent() {
        let mut child = Command::new("sleep").arg("5").spawn().expect("sleep");
        let found = children(std::process::id()).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found);
    }
}
