//! What an operator sees of a running worker (docs/protocol.md §8): Prometheus metrics
//! ([`metrics`]), liveness and readiness ([`Readiness`], with the database's health in
//! [`health`]), the small HTTP server that serves them on `METRICS_ADDR` ([`server`]),
//! the logs ([`logs`]) and traces ([`traces`]), the worker's counters and their
//! once-a-minute summary line ([`Stats`]), and the GET of the `probe` subcommand
//! ([`probe`]).

pub mod health;
pub mod logs;
pub mod metrics;
pub mod probe;
mod readiness;
pub mod server;
mod stats;
pub mod traces;

pub use readiness::Readiness;
pub use stats::{log_summaries, Stats};

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::task::AbortOnDropHandle;

/// The running observers: the HTTP server, the recorder's upkeep and the summary
/// line. They stop when this is dropped.
pub struct Observers {
    _tasks: Vec<AbortOnDropHandle<()>>,
}

/// Installs the metrics recorder and, unless `addr` is `None` (`METRICS_ADDR=off`),
/// starts the HTTP server there; logs the bound address and records it in `stats`.
/// Also starts the once-a-minute summary line.
pub async fn start(
    addr: Option<SocketAddr>,
    stats: &Arc<Stats>,
    jwks: Option<server::Jwks>,
) -> anyhow::Result<Observers> {
    let handle = metrics::install();
    let mut tasks = Vec::new();
    if let Some(handle) = &handle {
        tasks.push(AbortOnDropHandle::new(tokio::spawn(metrics::upkeep(
            handle.clone(),
        ))));
    }
    if let Some(addr) = addr {
        let endpoints = server::Endpoints {
            metrics: handle,
            stats: stats.clone(),
            jwks,
        };
        let (bound, serve) = server::bind(addr, endpoints).await?;
        let _ = stats.metrics_addr.set(bound);
        tracing::info!(address = %bound, "metrics and health server listening (/metrics, /healthz, /readyz)");
        tasks.push(AbortOnDropHandle::new(tokio::spawn(serve)));
    }
    tasks.push(AbortOnDropHandle::new(tokio::spawn(log_summaries(
        stats.clone(),
        SUMMARY_EVERY,
    ))));
    Ok(Observers { _tasks: tasks })
}

/// How often the summary line of requests by code is logged (when there were any).
pub const SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
