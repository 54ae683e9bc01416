//! Which CPUs the worker's threads run on (`TUCANO_CPU`).
//!
//! A request crosses three threads of the worker: the consume connection's I/O thread
//! (lapin runs one per connection), the thread that runs the worker's tasks, and the
//! reply connection's I/O thread, then back for the confirm and the ack. Left to the
//! kernel, those threads wake each other across CPUs, each wake-up an inter-processor
//! interrupt and a context switch. On one CPU, a thread woken by another runs once the
//! waker blocks, with what the waker queued in the meantime: one write for many
//! frames. On the benchmark's 2 cores that cut the worker's CPU per request by 12 to
//! 19 %; but there the pinned worker shares its CPU with RabbitMQ and PostgreSQL, and
//! its latency at half load rose, so pinning is for hosts where the worker has CPUs of
//! its own, and off by default (docs/performance.md).
//!
//! The thread that starts the worker is pinned before the runtime and the broker
//! connections exist: every thread it starts afterwards inherits the pin. The
//! pass-code verifiers are the exception: Argon2 must have every CPU the process was
//! given (contract section 14), so they call [`unpin_current_thread`] first, and the
//! helper processes they start inherit that.

use std::sync::OnceLock;

/// The CPUs the process was given before any pinning.
#[cfg(target_os = "linux")]
static ORIGINAL: OnceLock<rustix::thread::CpuSet> = OnceLock::new();

/// How many CPUs the process was given (by the kernel, a container's cpuset or
/// `taskset`), whatever [`pin_current_thread`] did since.
pub fn available_cpus() -> usize {
    #[cfg(target_os = "linux")]
    if let Some(set) = ORIGINAL.get() {
        return usize::try_from(set.count()).unwrap_or(1).max(1);
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins the calling thread, and so every thread it starts later, to `cpu`, or with
/// `None` to the CPU it is running on now. Returns the CPU. Fails (and pins nothing)
/// when `cpu` is not one of the CPUs the process may run on.
#[cfg(target_os = "linux")]
pub fn pin_current_thread(cpu: Option<usize>) -> std::io::Result<usize> {
    use rustix::thread::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
    let original = sched_getaffinity(None)?;
    let cpu = cpu.unwrap_or_else(sched_getcpu);
    if cpu >= CpuSet::MAX_CPU || !original.is_set(cpu) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "CPU {cpu} is not one this process may run on ({})",
                list(&original)
            ),
        ));
    }
    let _ = ORIGINAL.set(original);
    let mut one = CpuSet::new();
    one.set(cpu);
    sched_setaffinity(None, &one)?;
    Ok(cpu)
}

/// Pinning is Linux's; elsewhere the worker runs unpinned.
#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread(_cpu: Option<usize>) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "pinning to a CPU is only supported on Linux",
    ))
}

/// Gives the calling thread back every CPU the process was given, if an earlier
/// [`pin_current_thread`] (on this thread or the one that started it) took them away.
pub fn unpin_current_thread() {
    #[cfg(target_os = "linux")]
    if let Some(original) = ORIGINAL.get() {
        if let Err(err) = rustix::thread::sched_setaffinity(None, original) {
            tracing::warn!(error = %err, "cannot give a pass-code verifier thread every CPU");
        }
    }
}

/// The CPUs of `set`, as `taskset -c` writes them (`0,2-3`).
#[cfg(target_os = "linux")]
fn list(set: &rustix::thread::CpuSet) -> String {
    let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&cpu| set.is_set(cpu))
        .collect();
    let mut ranges: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        while i + 1 < cpus.len() && cpus[i + 1] == cpus[i] + 1 {
            i += 1;
        }
        ranges.push(if cpus[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", cpus[i])
        });
        i += 1;
    }
    ranges.join(",")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use rustix::thread::sched_getaffinity;

    #[test]
    fn a_pinned_thread_and_its_children_run_on_one_cpu_until_unpinned() {
        let everything = sched_getaffinity(None).expect("own affinity");
        std::thread::spawn(move || {
            let cpu = pin_current_thread(None).expect("pinned");
            let pinned = sched_getaffinity(None).expect("affinity");
            assert_eq!(pinned.count(), 1);
            assert!(pinned.is_set(cpu));
            let child = std::thread::spawn(move || {
                let inherited = sched_getaffinity(None).expect("affinity");
                unpin_current_thread();
                (inherited, sched_getaffinity(None).expect("affinity"))
            });
            let (inherited, unpinned) = child.join().expect("child thread");
            assert_eq!(
                list(&inherited),
                list(&pinned),
                "a thread started by a pinned one is pinned"
            );
            assert_eq!(
                list(&unpinned),
                list(&everything),
                "unpinning gives back every CPU"
            );
            assert_eq!(
                available_cpus(),
                usize::try_from(everything.count()).unwrap_or(0)
            );
        })
        .join()
        .expect("pinned thread");
    }

    #[test]
    fn a_cpu_the_process_may_not_use_is_refused_by_number() {
        let err = pin_current_thread(Some(rustix::thread::CpuSet::MAX_CPU - 1))
            .expect_err("no machine has that CPU");
        assert!(
            err.to_string()
                .contains("is not one this process may run on"),
            "{err}"
        );
    }

    #[test]
    fn cpu_lists_are_written_as_taskset_writes_them() {
        let mut set = rustix::thread::CpuSet::new();
        for cpu in [0, 2, 3, 4, 7] {
            set.set(cpu);
        }
        assert_eq!(list(&set), "0,2-4,7");
    }
}
