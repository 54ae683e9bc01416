//! What the worker counts for its logs and tests: answered, returned and requeued
//! replies, reconnects, requests by code for the summary line. How long requests take
//! is the `tucano_auth_request_duration_seconds` histogram ([`crate::observe::metrics`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::Code;
use crate::observe::Readiness;

/// Counters of what the worker did, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered and acked.
    pub answered: AtomicU64,
    /// Replies the broker returned as unroutable (mandatory publish).
    pub returned: AtomicU64,
    /// Requests handed back to the broker because their reply could not be published.
    pub requeued: AtomicU64,
    /// Broker connections lost and re-established.
    pub reconnects: AtomicU64,
    /// Requests answered by code, since the last summary line (see [`Stats::summary`]).
    pub codes: [AtomicU64; Code::ALL.len()],
    /// Whether the worker can serve (`/readyz`).
    pub readiness: Readiness,
    /// Where the metrics server listens, once it does.
    pub metrics_addr: OnceLock<SocketAddr>,
}

impl Stats {
    /// Counts a request answered with `code`, for the summary line.
    pub fn count(&self, code: Code) {
        // `codes` has one counter per code of `Code::ALL`.
        self.codes[code.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The requests answered by code since the last call, as `OK 120, NOT_FOUND 3`,
    /// and their total; starts counting again.
    pub fn summary(&self) -> (u64, String) {
        let mut total = 0;
        let mut parts = Vec::new();
        for (code, counter) in Code::ALL.iter().zip(&self.codes) {
            let n = counter.swap(0, Ordering::Relaxed);
            if n > 0 {
                total += n;
                parts.push(format!("{code} {n}"));
            }
        }
        (total, parts.join(", "))
    }
}

/// Logs, every `every`, the requests answered by code since the previous line; says
/// nothing when nothing happened. Runs until dropped.
pub async fn log_summaries(stats: Arc<Stats>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        let (total, by_code) = stats.summary();
        if total > 0 {
            tracing::info!(
                requests = total,
                "requests in the last {} s: {by_code}",
                every.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_by_code_then_starts_over() {
        let stats = Stats::default();
        assert_eq!(stats.summary(), (0, String::new()));
        for code in [Code::Ok, Code::NotFound, Code::Ok] {
            stats.count(code);
        }
        assert_eq!(stats.summary(), (3, "OK 2, NOT_FOUND 1".to_owned()));
        assert_eq!(stats.summary().0, 0, "counted again from zero");
    }
}
