//! The worker's Prometheus metrics: their names (dashboards and alerts are written
//! against them, so they never change), the process-wide recorder, and the handles the
//! hot path records through.
//!
//! Recording goes through the `metrics` facade into `metrics-exporter-prometheus`,
//! which renders the text exposition format 0.0.4. The per-request handles
//! ([`QueueMetrics`]) are registered once per consumer, so a request costs a few atomic
//! operations, never a registry look-up.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    describe_counter, describe_gauge, describe_histogram, Counter, Gauge, Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::Code;

/// Requests answered, by `queue` and `code`.
pub const REQUESTS: &str = "tucano_auth_requests_total";
/// From a delivery reaching the worker to its reply handed to the broker, by `queue`.
pub const REQUEST_DURATION: &str = "tucano_auth_request_duration_seconds";
/// Requests being handled, by `queue`.
pub const IN_FLIGHT: &str = "tucano_auth_requests_in_flight";
/// Deliveries flagged `redelivered`, by `queue`.
pub const REDELIVERIES: &str = "tucano_auth_redeliveries_total";
/// Replies the broker returned as unroutable.
pub const RETURNED: &str = "tucano_auth_replies_returned_total";
/// Requests nacked because their reply could not be published.
pub const REQUEUED: &str = "tucano_auth_requests_requeued_total";
/// Broker connections lost and made again.
pub const RECONNECTS: &str = "tucano_auth_broker_reconnects_total";
/// 1 while both request queues are consumed.
pub const BROKER_CONNECTED: &str = "tucano_auth_broker_connected";
/// 1 while the database answers.
pub const DATABASE_UP: &str = "tucano_auth_database_up";
/// Time of the batched lookup statement.
pub const STATEMENT_DURATION: &str = "tucano_auth_db_statement_duration_seconds";
/// Requests carried per lookup statement.
pub const STATEMENT_REQUESTS: &str = "tucano_auth_db_statement_requests";
/// Pass-code verifications, by `result` (`match`, `mismatch`).
pub const PASS_CODES: &str = "tucano_auth_pass_code_verifications_total";
/// Pass-code lockouts begun (docs/protocol.md §14).
pub const PASS_CODE_LOCKOUTS: &str = "tucano_auth_pass_code_lockouts_total";
/// Counter: pass-code requests answered `TEMPORARILY_UNAVAILABLE` because
/// `TUCANO_PASS_CODE_BACKLOG` of them were already waiting.
pub const PASS_CODES_SHED: &str = "tucano_auth_pass_code_shed_total";
/// Counter of trace spans dropped: the export queue was full or the collector failed.
pub const SPANS_DROPPED: &str = "tucano_auth_spans_dropped_total";
/// 1, with the `version` label.
pub const BUILD_INFO: &str = "tucano_auth_build_info";

/// The values of the `queue` label: the two request queues.
pub const QUEUES: [&str; 2] = ["interactive", "batch"];
/// The values of the `result` label of [`PASS_CODES`].
pub const PASS_CODE_RESULTS: [&str; 2] = ["match", "mismatch"];

/// Bucket bounds of the duration histograms, in seconds: 0.5 ms to 30 s.
const SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

/// Bucket bounds of the requests carried by one statement.
const REQUESTS_PER_STATEMENT: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle) and
/// describes every metric. `None` if another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), &SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(STATEMENT_DURATION.to_owned()), &SECONDS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(STATEMENT_REQUESTS.to_owned()),
                        &REQUESTS_PER_STATEMENT,
                    )
                })
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            metrics::gauge!(DATABASE_UP).set(0.0);
            metrics::gauge!(BROKER_CONNECTED).set(0.0);
            metrics::counter!(RETURNED).absolute(0);
            metrics::counter!(REQUEUED).absolute(0);
            metrics::counter!(RECONNECTS).absolute(0);
            metrics::counter!(PASS_CODE_LOCKOUTS).absolute(0);
            metrics::counter!(PASS_CODES_SHED).absolute(0);
            // Every series of a finite label set exists from the start, so that a rate
            // over it is defined before its first event (a dashboard's `rate()` of a
            // series that appears later misses the first increment). Registering a
            // series is enough for the exporter to render it at 0; this runs once,
            // before anything counts.
            for result in PASS_CODE_RESULTS {
                metrics::counter!(PASS_CODES, "result" => result).absolute(0);
            }
            for queue in QUEUES {
                for code in Code::ALL {
                    metrics::counter!(REQUESTS, "queue" => queue, "code" => code.as_str())
                        .absolute(0);
                }
                metrics::counter!(REDELIVERIES, "queue" => queue).absolute(0);
                metrics::gauge!(IN_FLIGHT, "queue" => queue).set(0.0);
            }
            metrics::counter!(SPANS_DROPPED).absolute(0);
            Some(handle)
        })
        .clone()
}

fn describe() {
    describe_counter!(REQUESTS, "Requests answered, by queue and status code.");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "From a delivery reaching the worker to its reply handed to the broker."
    );
    describe_gauge!(IN_FLIGHT, "Requests being handled.");
    describe_counter!(REDELIVERIES, "Deliveries flagged redelivered.");
    describe_counter!(RETURNED, "Replies the broker returned as unroutable.");
    describe_counter!(
        REQUEUED,
        "Requests nacked because their reply could not be published."
    );
    describe_counter!(RECONNECTS, "Broker connections lost and made again.");
    describe_gauge!(
        BROKER_CONNECTED,
        "1 while both request queues are consumed."
    );
    describe_gauge!(DATABASE_UP, "1 while the database answers.");
    describe_histogram!(
        STATEMENT_DURATION,
        Unit::Seconds,
        "Time of the batched lookup statement."
    );
    describe_histogram!(STATEMENT_REQUESTS, "Requests carried per lookup statement.");
    describe_counter!(PASS_CODES, "Pass-code verifications, by result.");
    describe_counter!(
        PASS_CODE_LOCKOUTS,
        "Identifiers locked after repeated wrong pass codes."
    );
    describe_counter!(
        PASS_CODES_SHED,
        "Pass-code requests answered TEMPORARILY_UNAVAILABLE: the pass-code backlog was full."
    );
    describe_counter!(
        SPANS_DROPPED,
        "Trace spans dropped: export queue full or export failed."
    );
    describe_gauge!(BUILD_INFO, "1, labelled with the version.");
}

/// Keeps the recorder's histogram buffers drained when nobody scrapes (they grow until
/// a render otherwise). Runs until the task is dropped.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// The handles one request queue's consumer records through.
#[derive(Clone)]
pub struct QueueMetrics {
    /// `interactive` or `batch`.
    pub queue: &'static str,
    by_code: Vec<Counter>,
    duration: Histogram,
    in_flight: Gauge,
    redeliveries: Counter,
}

impl QueueMetrics {
    /// Registers the handles of `queue` (`interactive` or `batch`).
    pub fn new(queue: &'static str) -> QueueMetrics {
        QueueMetrics {
            queue,
            by_code: Code::ALL
                .iter()
                .map(|code| metrics::counter!(REQUESTS, "queue" => queue, "code" => code.as_str()))
                .collect(),
            duration: metrics::histogram!(REQUEST_DURATION, "queue" => queue),
            in_flight: metrics::gauge!(IN_FLIGHT, "queue" => queue),
            redeliveries: metrics::counter!(REDELIVERIES, "queue" => queue),
        }
    }

    /// A delivery arrived; the returned guard counts it in flight until dropped.
    pub fn arrived(&self, redelivered: bool) -> InFlight {
        if redelivered {
            self.redeliveries.increment(1);
        }
        self.in_flight.increment(1.0);
        InFlight(self.in_flight.clone())
    }

    /// A request's reply was handed to the broker `time` after its delivery arrived.
    pub fn handed_off(&self, time: Duration) {
        self.duration.record(time.as_secs_f64());
    }

    /// A request was answered (its reply confirmed) with `code`.
    pub fn answered(&self, code: Code) {
        // One counter per code of `Code::ALL`, so every index is in range.
        self.by_code[code.index()].increment(1);
    }
}

/// Counts one request in flight while it lives.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
