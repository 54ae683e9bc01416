//! Processes: starting the worker (or the echo) as a child, reading CPU time and peak
//! RSS of it and of the services from `/proc`, its request durations from its
//! `/metrics` ([`crate::scrape`]), and stopping it with SIGTERM.
//!
//! CPU time is `utime + stime` of `/proc/PID/stat` (all threads, in clock ticks, 10 ms
//! here); peak RSS is `VmHWM` of `/proc/PID/status`. Both add up the process and its
//! living children: the worker's pass-code helpers are part of its cost.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use crate::scrape::{self, Durations};

/// A child process of the bench: the worker or the echo.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    done: bool,
}

/// CPU time of a process and its children, from `/proc`.
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
}

impl Proc {
    /// Starts `program args` with `env` added to this process's environment (after
    /// removing `env_remove`), its standard error going to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        env_remove: &[&str],
        log: PathBuf,
    ) -> anyhow::Result<Proc> {
        let stderr = File::create(&log)
            .with_context(|| format!("cannot create the log file {}", log.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for name in env_remove {
            command.env_remove(name);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
            done: false,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An error if it has exited, with the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.done = true;
            bail!(
                "{} exited ({status}); the end of its log {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// Its CPU time so far: all of it, and of that its living children's (the
    /// worker's pass-code helpers, which run the Argon2 verifications). A child that
    /// exits between two readings takes its time with it: the helpers live as long as
    /// the worker.
    pub fn cpu(&self) -> anyhow::Result<Cpu> {
        let own = cpu_time(self.pid())
            .with_context(|| format!("cannot read the CPU time of {}", self.name))?;
        let children: u64 = children(self.pid())
            .iter()
            .filter_map(|pid| ticks(&pid.to_string()))
            .sum();
        let children = ticks_to_duration(children);
        Ok(Cpu {
            total: own + children,
            children,
        })
    }

    /// Its peak resident set size so far, in bytes, plus that of each living child:
    /// the peaks may not have been at the same moment, so this is an upper bound.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        let own = peak_rss(self.pid()).with_context(|| format!("no VmHWM for {}", self.name))?;
        let children: u64 = children(self.pid()).into_iter().filter_map(peak_rss).sum();
        Ok(own + children)
    }

    /// Its request-duration histogram now, from its `/metrics` (its log names the
    /// address); `None` if it serves none (a worker built before the metrics, or with
    /// `METRICS_ADDR=off`) or the scrape failed.
    pub async fn durations(&self) -> Option<Durations> {
        let addr = scrape::metrics_addr(&self.log)?;
        let text = scrape::get_metrics(addr)
            .await
            .inspect_err(|err| eprintln!("{}: cannot scrape /metrics: {err:#}", self.name))
            .ok()?;
        Durations::parse(&text)
            .inspect_err(|err| eprintln!("{}: {err:#}", self.name))
            .ok()
    }

    /// Sends SIGTERM and waits up to `grace` for it to exit (then SIGKILL).
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            self.done = true;
            return Ok(status);
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("cannot run kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.done = true;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait()?;
                self.done = true;
                bail!(
                    "{} did not exit within {} s of SIGTERM ({status})",
                    self.name,
                    grace.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
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

/// `utime + stime` of a process, in ticks.
fn ticks(pid: &str) -> Option<u64> {
    let stat = stat_after_name(pid)?;
    let mut fields = stat.split(' ');
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `/proc/PID/stat` from field 3 (the state) on. The command name (field 2) may hold
/// spaces and parentheses; the fields after it are plain.
fn stat_after_name(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 2..].to_owned())
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_micros(ticks * 1_000_000 / clock_ticks())
}

/// `VmHWM` of a process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
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
fn children(pid: u32) -> Vec<u32> {
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

/// The CPU time of process `pid`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    ticks(&pid.to_string())
        .map(ticks_to_duration)
        .with_context(|| format!("cannot read /proc/{pid}/stat"))
}

/// CPU time of the processes around the one measured: the bench itself, RabbitMQ
/// (`beam.smp`, shared with anyone else using the broker) and the PostgreSQL backends
/// connected to the bench database.
#[derive(Debug, Clone, Default)]
pub struct Around {
    bench: u64,
    broker: HashMap<String, u64>,
    database: HashMap<String, u64>,
}

/// CPU time used between two [`Around`] snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct AroundDelta {
    /// The load generator (this process).
    pub bench: Duration,
    /// RabbitMQ.
    pub broker: Duration,
    /// PostgreSQL backends of the bench database.
    pub database: Duration,
}

impl Around {
    /// A snapshot now; `database` is the bench database's name.
    pub fn take(database: &str) -> Around {
        let mut around = Around {
            bench: ticks("self").unwrap_or(0),
            ..Around::default()
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return around;
        };
        let needle = format!(" {database} ");
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                continue;
            };
            let comm = comm.trim();
            if comm == "beam.smp" {
                if let Some(t) = ticks(&pid) {
                    around.broker.insert(pid, t);
                }
            } else if comm == "postgres" {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                if cmdline.contains(&needle) {
                    if let Some(t) = ticks(&pid) {
                        around.database.insert(pid, t);
                    }
                }
            }
        }
        around
    }

    /// What was used from `earlier` to `self`.
    pub fn since(&self, earlier: &Around) -> AroundDelta {
        fn sum(now: &HashMap<String, u64>, then: &HashMap<String, u64>) -> u64 {
            now.iter()
                .map(|(pid, t)| t.saturating_sub(then.get(pid).copied().unwrap_or(0)))
                .sum()
        }
        AroundDelta {
            bench: ticks_to_duration(self.bench.saturating_sub(earlier.bench)),
            broker: ticks_to_duration(sum(&self.broker, &earlier.broker)),
            database: ticks_to_duration(sum(&self.database, &earlier.database)),
        }
    }
}
