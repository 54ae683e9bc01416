//! The runtime `serve` runs on: its threads (`TUCANO_WORKER_THREADS`) and the CPU they
//! are pinned to (`TUCANO_CPU`, see [`crate::affinity`]). The benchmark's echo uses it
//! too, so the two are compared on the same event loop.

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

/// Builds the runtime for `serve`: by default one task thread, the calling one (a
/// current-thread runtime: a request's tasks never wake another runtime thread). With
/// `TUCANO_CPU` set, the calling thread is pinned first, before any other thread
/// exists, so every thread started later (the broker connections' I/O threads) shares
/// its CPU. Errors name the variable to fix.
pub fn for_serve(serve: &Serve) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = serve.worker_threads;
    if threads == 0 {
        bail!("TUCANO_WORKER_THREADS must be at least 1");
    }
    let cpu = Cpu::parse(&serve.cpu)?;
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
}
