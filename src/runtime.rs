//! The runtime `serve` runs on: its threads (`TUCANO_WORKER_THREADS`), how the kernel
//! schedules them (`TUCANO_SCHEDULING`) and the CPU they are pinned to (`TUCANO_CPU`,
//! see [`crate::affinity`]). The benchmark's echo uses it too, so the two are compared
//! on the same event loop.

use anyhow::{bail, Context};

use crate::config::Serve;

/// Where the event loop runs, from `TUCANO_CPU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpu {
    /// Wherever the kernel puts each thread (the default).
    Off,
    /// The CPU the worker starts on.
    Auto,
    /// This CPU.
    Number(usize),
}

impl Cpu {
    /// Reads `TUCANO_CPU`'s value; the error names the variable and what it takes.
    pub fn parse(value: &str) -> anyhow::Result<Cpu> {
        match value.trim() {
            "auto" => Ok(Cpu::Auto),
            "off" => Ok(Cpu::Off),
            number => number.parse().map(Cpu::Number).map_err(|_| {
                anyhow::anyhow!("TUCANO_CPU {value:?} is not `auto`, `off` or a CPU number")
            }),
        }
    }
}

/// How the kernel schedules the worker's threads, from `TUCANO_SCHEDULING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    /// `SCHED_BATCH`: a thread woken by another does not preempt it.
    Batch,
    /// `SCHED_OTHER`, the kernel's default.
    Normal,
}

impl Scheduling {
    /// Reads `TUCANO_SCHEDULING`'s value; the error names the variable and what it takes.
    pub fn parse(value: &str) -> anyhow::Result<Scheduling> {
        match value.trim() {
            "batch" => Ok(Scheduling::Batch),
            "normal" => Ok(Scheduling::Normal),
            _ => bail!("TUCANO_SCHEDULING {value:?} is not `batch` or `normal`"),
        }
    }
}

/// Gives the calling thread `scheduling`'s policy, keeping its nice value; threads it
/// starts later inherit both.
///
/// Why batch: a request wakes a thread at each hop (lapin's I/O thread of the request
/// connection, the task thread, the reply connection's I/O thread, PostgreSQL's
/// backend). Under `SCHED_OTHER` the woken thread often preempts its waker on the
/// waker's CPU, so the waker is switched out before it has queued the rest of its
/// work: 0.6 involuntary context switches a request on the task thread at window 64.
/// Under `SCHED_BATCH` the woken thread waits for the waker's slice or its next sleep
/// and then finds everything queued (docs/performance.md). No privilege is needed to
/// switch between the two.
///
/// Why not by default: nor does a worker thread then preempt the pass-code helpers
/// (Argon2 at nice 19 in a scheduling group of their own), so during a pass-code flood
/// that keeps every CPU busy each of its wake-ups waits for the next scheduler tick:
/// the p99 of the requests without a pass code beside such a flood rose from a median
/// of 12.3 to 16.3 times their p99 alone in alternating runs (contract section 14's
/// isolation).
#[cfg(target_os = "linux")]
fn set_scheduling(scheduling: Scheduling) -> anyhow::Result<()> {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    };
    let policy = ThreadSchedulePolicy::Normal(match scheduling {
        Scheduling::Batch => NormalThreadSchedulePolicy::Batch,
        Scheduling::Normal => NormalThreadSchedulePolicy::Other,
    });
    if thread_schedule_policy().ok() == Some(policy) {
        return Ok(());
    }
    let nice = rustix::process::getpriority_process(None).context("reading the nice value")?;
    // thread-priority sets a nice value with the policy (0 here). Setting it can fail
    // without a privilege after the policy is set: what counts is the policy read back
    // below, and the nice value put back as it was.
    let _ = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Os(Default::default()),
        policy,
    );
    if rustix::process::getpriority_process(None).ok() != Some(nice) {
        rustix::process::setpriority_process(None, nice)
            .with_context(|| format!("putting the nice value back to {nice}"))?;
    }
    match thread_schedule_policy() {
        Ok(now) if now == policy => Ok(()),
        Ok(now) => bail!("the kernel kept the policy {now:?}"),
        Err(err) => bail!("cannot read the policy back: {err}"),
    }
}

/// Scheduling policies are Linux's; elsewhere the setting does nothing.
#[cfg(not(target_os = "linux"))]
fn set_scheduling(_scheduling: Scheduling) -> anyhow::Result<()> {
    Ok(())
}

/// Builds the runtime for `serve`: by default one task thread, the calling one (a
/// current-thread runtime: a request's tasks never wake another runtime thread). With
/// `TUCANO_CPU` set, the calling thread is pinned first, before any other thread
/// exists, so every thread started later (the broker connections' I/O threads) shares
/// its CPU; `TUCANO_SCHEDULING`'s policy is set the same way. Errors name the variable
/// to fix.
pub fn for_serve(serve: &Serve) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = serve.worker_threads;
    if threads == 0 {
        bail!("TUCANO_WORKER_THREADS must be at least 1");
    }
    let cpu = Cpu::parse(&serve.cpu)?;
    if let Some(value) = &serve.scheduling {
        let scheduling = Scheduling::parse(value)?;
        // Before any other thread exists, so that all of them inherit it. The worker
        // runs either way: a refusal is a warning, not a reason to stop.
        if let Err(err) = set_scheduling(scheduling) {
            tracing::warn!(
                error = %format!("{err:#}"),
                "TUCANO_SCHEDULING={} could not be applied; the threads keep the policy they started with",
                value.trim()
            );
        }
    }
    let wanted = match cpu {
        Cpu::Off => None,
        Cpu::Auto => Some(None),
        Cpu::Number(n) => Some(Some(n)),
    };
    if let Some(wanted) = wanted {
        if threads > 1 {
            bail!(
                "TUCANO_CPU={} pins the event loop to one CPU and TUCANO_WORKER_THREADS is \
                 {threads}: set TUCANO_WORKER_THREADS=1, or TUCANO_CPU=off",
                serve.cpu.trim()
            );
        }
        let cpu = crate::affinity::pin_current_thread(wanted)
            .with_context(|| format!("TUCANO_CPU={} cannot be used", serve.cpu.trim()))?;
        tracing::info!(cpu, "event loop pinned to a CPU (TUCANO_CPU)");
    }
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(usize::from(threads));
        builder
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tucano_cpu_takes_auto_off_or_a_number() {
        assert_eq!(Cpu::parse("auto").ok(), Some(Cpu::Auto));
        assert_eq!(Cpu::parse(" off ").ok(), Some(Cpu::Off));
        assert_eq!(Cpu::parse("3").ok(), Some(Cpu::Number(3)));
        let err = Cpu::parse("first").expect_err("not a CPU");
        assert!(err.to_string().contains("TUCANO_CPU"), "{err}");
    }

    #[test]
    fn tucano_scheduling_takes_batch_or_normal() {
        assert_eq!(Scheduling::parse("batch").ok(), Some(Scheduling::Batch));
        assert_eq!(Scheduling::parse(" normal ").ok(), Some(Scheduling::Normal));
        let err = Scheduling::parse("idle").expect_err("not a policy");
        assert!(err.to_string().contains("TUCANO_SCHEDULING"), "{err}");
    }
}
