//! Processes: starting the worker (or the echo) as a child, reading CPU time and peak
//! RSS of it and of the services from `/proc`, its request durations from its
//! `/metrics` ([`crate::scrape`]), and stopping it with SIGTERM.
//!
//! Starting, stopping and `/proc` are the harness's of `tucano-testkit` (shared with
//! the tests and the chaos tool, and described there: CPU time and peak RSS add up
//! the process and its living children, the worker's pass-code helpers); what is
//! here is the bench's own: the named child with its log, and the services around it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tucano_testkit::process::{self, Ended};
use tucano_testkit::procfs::{self, ticks, ticks_to_duration};

use crate::scrape::{self, Durations};

pub use tucano_testkit::procfs::Cpu;

/// A child process of the bench: the worker or the echo.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    done: bool,
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
        let child = process::command(
            program,
            args,
            env.iter().cloned(),
            env_remove,
            stderr.into(),
        )
        .stdin(Stdio::null())
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
        Cpu::of(self.pid()).with_context(|| {
            format!(
                "cannot read the CPU time of {} (/proc/{}/stat)",
                self.name,
                self.pid()
            )
        })
    }

    /// Its peak resident set size so far, in bytes, plus that of each living child:
    /// the peaks may not have been at the same moment, so this is an upper bound.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        procfs::peak_rss_with_children(self.pid())
            .with_context(|| format!("no VmHWM for {}", self.name))
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
        let ended = process::stop(&mut self.child, grace)
            .await
            .with_context(|| format!("cannot stop {}", self.name))?;
        self.done = true;
        match ended {
            Ended::Exited(status) => Ok(status),
            Ended::Killed(status) => bail!(
                "{} did not exit within {} s of SIGTERM ({status})",
                self.name,
                grace.as_secs()
            ),
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
