//! The runtime `serve` runs on: its task threads (`TUCANO_WORKER_THREADS`). The
//! benchmark's echo uses it too, so the two are compared on the same event loop.
//!
//! Which CPUs the worker runs on and how the kernel schedules it are the operator's
//! (`taskset`, `chrt`, a container's cpuset): see docs/operations.md.

use anyhow::{bail, Context};

/// Builds the runtime for `serve` with `threads` task threads: with one (the default),
/// the calling thread (a current-thread runtime: a request's tasks never wake another
/// runtime thread). The error names the variable to fix.
pub fn for_serve(threads: u16) -> anyhow::Result<tokio::runtime::Runtime> {
    if threads == 0 {
        bail!("TUCANO_WORKER_THREADS must be at least 1");
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
