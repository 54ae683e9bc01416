//! The worker as a child process: its environment, starting it, signalling it and
//! stopping it. Every caller gets the same stop: SIGTERM, up to a grace period for the
//! worker to drain and exit, then SIGKILL, and it is told which of the two ended it.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use rustix::process::Pid;
use tokio::time::Instant;

/// The signals a caller sends ([`Signal::TERM`], [`Signal::KILL`]...).
pub use rustix::process::Signal;

/// How often a wait for a process to exit looks again.
const POLL: Duration = Duration::from_millis(20);

/// What every worker a harness starts is told, whatever else its caller adds.
#[derive(Debug, Clone, Copy)]
pub struct WorkerEnv<'a> {
    /// `AMQP_URL`.
    pub amqp_url: &'a str,
    /// `DATABASE_URL`.
    pub database_url: &'a str,
    /// `QUEUE_PREFIX`: each run (each test) its own.
    pub prefix: &'a str,
    /// `TUCANO_JWT_SECRET`.
    pub jwt_secret: &'a str,
}

impl WorkerEnv<'_> {
    /// The variables, with `METRICS_ADDR` on a free port (so workers side by side
    /// never collide on the default one) and `RUST_LOG=info` (what the callers read
    /// in its log: the metrics address, the consumers).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AMQP_URL", self.amqp_url.to_owned()),
            ("DATABASE_URL", self.database_url.to_owned()),
            ("QUEUE_PREFIX", self.prefix.to_owned()),
            ("TUCANO_JWT_SECRET", self.jwt_secret.to_owned()),
            ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
    }
}

/// `program args` with `env` added to this process's environment (later pairs win)
/// after removing `env_remove`; stdout discarded (the worker logs on stderr), stderr
/// to `stderr`. Returned unstarted, for a caller that changes more.
pub fn command<K: AsRef<OsStr>, V: AsRef<OsStr>>(
    program: &Path,
    args: &[&str],
    env: impl IntoIterator<Item = (K, V)>,
    env_remove: &[&str],
    stderr: Stdio,
) -> Command {
    let mut command = Command::new(program);
    command.args(args).stdout(Stdio::null()).stderr(stderr);
    for name in env_remove {
        command.env_remove(name);
    }
    command.envs(env);
    command
}

/// `name` in the directory of this executable: where cargo puts the workspace's
/// binaries side by side (`target/release/tucano-auth` beside `tucano-chaos`).
pub fn beside_me(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot locate this executable")?;
    Ok(me.with_file_name(name))
}

/// Sends `signal` to `child`. An error if it is gone (already reaped).
pub fn signal(child: &Child, signal: Signal) -> std::io::Result<()> {
    signal_pid(child.id(), signal)
}

/// Sends `signal` to process `pid` (one this process did not start itself, such as
/// the worker's helpers). An error if there is no such process.
pub fn signal_pid(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("not a process id"))?;
    rustix::process::kill_process(pid, signal).map_err(std::io::Error::from)
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// By itself (after a signal it handled, or none), in time.
    Exited(ExitStatus),
    /// By SIGKILL, after it outlived its deadline.
    Killed(ExitStatus),
}

impl Ended {
    /// Its exit status, however it ended.
    pub fn status(self) -> ExitStatus {
        match self {
            Ended::Exited(status) | Ended::Killed(status) => status,
        }
    }
}

/// Waits up to `within` for `child` to exit, then kills it.
pub async fn reap(child: &mut Child, within: Duration) -> std::io::Result<Ended> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ended::Exited(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Ok(Ended::Killed(child.wait()?));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stops `child` as an orchestrator would: SIGTERM, up to `grace` to exit, then
/// SIGKILL. One that had already exited is only reaped.
pub async fn stop(child: &mut Child, grace: Duration) -> std::io::Result<Ended> {
    if let Some(status) = child.try_wait()? {
        return Ok(Ended::Exited(status));
    }
    signal(child, Signal::TERM)?;
    reap(child, grace).await
}

/// [`stop`] for a caller that cannot await (a synchronous test).
pub fn stop_blocking(child: &mut Child, grace: Duration) -> std::io::Result<Ended> {
    on_own_thread(stop(child, grace))?
}

/// [`reap`] for a caller that cannot await (a synchronous test).
pub fn reap_blocking(child: &mut Child, within: Duration) -> std::io::Result<Ended> {
    on_own_thread(reap(child, within))?
}

/// Runs `work` to its end on a thread with a runtime of its own, and gives its output:
/// for a caller that cannot await (a `Drop` that must clean up over the network, a
/// synchronous test) and must not need, nor be able to stall, a runtime it may itself
/// be running on. An error only if that runtime cannot be built or `work` panicked.
pub fn on_own_thread<T: Send>(work: impl Future<Output = T> + Send) -> std::io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                Ok(runtime.block_on(work))
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the work panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(script: &str) -> Child {
        Command::new("sh").args(["-c", script]).spawn().expect("sh")
    }

    #[test]
    fn a_process_that_ends_on_sigterm_is_not_killed() {
        let mut child = spawn("trap 'exit 3' TERM; sleep 10 & wait");
        // Let the shell set its trap before it is signalled.
        std::thread::sleep(Duration::from_millis(200));
        let ended = stop_blocking(&mut child, Duration::from_secs(10)).expect("stop");
        assert!(
            matches!(ended, Ended::Exited(status) if status.code() == Some(3)),
            "{ended:?}"
        );
    }

    #[test]
    fn a_process_that_ignores_sigterm_is_killed_after_its_grace() {
        let mut child = spawn("trap '' TERM; sleep 10 & wait; sleep 10");
        std::thread::sleep(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let ended = stop_blocking(&mut child, Duration::from_millis(300)).expect("stop");
        assert!(matches!(ended, Ended::Killed(_)), "{ended:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_process_that_already_exited_is_only_reaped() {
        let mut child = spawn("exit 0");
        std::thread::sleep(Duration::from_millis(200));
        let ended = stop_blocking(&mut child, Duration::from_secs(1)).expect("stop");
        assert!(
            matches!(ended, Ended::Exited(status) if status.success()),
            "{ended:?}"
        );
    }
}
