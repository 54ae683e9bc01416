//! What the worker counts and times: answered, returned and requeued replies,
//! reconnects, and each request's time in the process, reported on SIGUSR1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;

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
    /// How long each request spent in this process.
    pub service: ServiceTimes,
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
        if let Some(counter) = Code::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.codes.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
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

/// Service times: from a delivery reaching the consume loop to its reply handed to the
/// broker connection (decoding, checks, database read, pass-code check, signing), in
/// microseconds. What a request spends on the broker's side is the rest of what its
/// client measures. SIGUSR1 logs their percentiles since the previous report (see
/// [`serve`]).
#[derive(Debug)]
pub struct ServiceTimes {
    histogram: Mutex<Histogram<u64>>,
}

/// What [`ServiceTimes::take`] reports, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceReport {
    /// Requests timed.
    pub requests: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Longest.
    pub max: u64,
}

impl Default for ServiceTimes {
    fn default() -> Self {
        // 1 µs to 10 min at 2 significant digits: constants the crate accepts.
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 2)
            .expect("constant histogram bounds are valid");
        ServiceTimes {
            histogram: Mutex::new(histogram),
        }
    }
}

impl ServiceTimes {
    /// Records one request's time in the process.
    pub fn record(&self, time: Duration) {
        let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        self.histogram().saturating_record(micros.max(1));
    }

    /// The percentiles since the last call (or start), and starts over.
    pub fn take(&self) -> ServiceReport {
        let mut histogram = self.histogram();
        let report = ServiceReport {
            requests: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        };
        histogram.reset();
        report
    }

    /// The histogram; a panic while it was held cannot leave it inconsistent (a record
    /// or a read), so a poisoned lock is used as is.
    fn histogram(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.histogram
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The message of the log line that reports [`ServiceTimes`] on SIGUSR1, followed by
/// its fields `requests`, `p50_us`, `p99_us`, `p999_us` and `max_us`.
pub const SERVICE_REPORT: &str = "service times since the last report";

/// Logs the service times on each SIGUSR1, until the task is aborted.
pub(super) async fn report_on_sigusr1(stats: Arc<Stats>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(usr1) => usr1,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGUSR1; service times are not reported");
            return;
        }
    };
    while usr1.recv().await.is_some() {
        let report = stats.service.take();
        tracing::info!(
            requests = report.requests,
            p50_us = report.p50,
            p99_us = report.p99,
            p999_us = report.p999,
            max_us = report.max,
            "{SERVICE_REPORT} (delivery to reply handed to the broker connection)"
        );
    }
}
