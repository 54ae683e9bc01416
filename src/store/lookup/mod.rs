//! One SQL statement reads everything a batch of requests needs: each request's login
//! session and the entity its identifier names, with that entity's subscription (or
//! its account's active Tucano subscriptions).
//!
//! Requests do not query the database themselves: they hand a [`Lookup`] to the
//! [`Lookups`] task and wait for its [`Found`]. The task sends what has gathered
//! while earlier statements ran as one statement over arrays (`unnest ... WITH
//! ORDINALITY`): one statement at a time, unless one stalls, and never more than
//! `concurrency` in flight. A lone request is one statement of one row, as fast as
//! before; under load a statement carries many requests (about ten in the benchmark's
//! closed loop), and the per-statement cost (a round trip, a wake-up of the backend,
//! executor start-up) is paid once for them all. The checks on what was found stay per
//! request, in the documented order (docs/protocol.md §3), in `login.rs` and `resolve.rs`.
//!
//! Here: the task that gathers lookups into statements; the requests' and answers'
//! types are in `types.rs`, the statement, its parameters and the decoding of its rows
//! in `sql.rs`, its connections in `connections.rs`.
//!
//! The statement goes through tokio-postgres on connections of its own, prepared once
//! on each, rather than through the sqlx pool: on the benchmark's data set a
//! one-request statement took 142 to 151 µs a round trip instead of 197 to 200, and
//! 40 µs of the client's CPU instead of 70 to 76 (5,000 statements per client in
//! alternating rounds; `docs/performance.md`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry::trace::{SpanContext, TraceContextExt};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::Error;
use crate::observe::metrics::{STATEMENT_DURATION, STATEMENT_REQUESTS};
use crate::observe::traces;

mod connections;
mod sql;
mod types;

use connections::Connections;
pub(super) use connections::{connection_config, LookupConfig};
pub use sql::INACTIVE_STATES;
pub(super) use types::{
    EntityKey, EntityRow, Found, Lookup, Path, SessionKey, SessionRow, TypeColumn,
};

/// The most requests one statement carries.
const MAX_BATCH: usize = 128;

/// How long a statement runs before the next batch is sent beside it on another
/// connection. Statements take 0.2 to 2 ms; in the benchmark the worker's open-loop
/// p99 was sometimes 320 to 480 ms, with every request waiting behind one stalled
/// statement.
const STALLED: std::time::Duration = std::time::Duration::from_millis(20);

/// Why a statement answered nothing, shared by every request it carried.
#[derive(Debug, Clone)]
enum Failure {
    /// Connecting, preparing, running or decoding failed.
    Database(Arc<tokio_postgres::Error>),
    /// The statement returned no row for a request: a bug in the statement, and
    /// answering "nothing found" would misreport it.
    NoRow,
}

type Reply = oneshot::Sender<Result<Found, Failure>>;

/// A lookup waiting for its statement: what to read, where to answer, and the span of
/// the request's wait (invalid unless traces are exported), which the statement's span
/// links to.
type Job = (Lookup, Reply, SpanContext);

/// The task that batches lookups; cheap to clone. The task ends when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub(super) struct Lookups {
    jobs: mpsc::UnboundedSender<Job>,
    counts: Arc<Counts>,
}

/// How many statements have run, and how many requests they carried.
#[derive(Debug, Default)]
struct Counts {
    statements: AtomicU64,
    requests: AtomicU64,
}

/// How much batching happened: lookup statements run, and the requests they carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LookupCounts {
    /// Statements sent to PostgreSQL (failed ones included).
    pub statements: u64,
    /// Requests those statements carried.
    pub requests: u64,
}

impl Lookups {
    /// Starts the task on the current runtime: statements on connections made with
    /// `config`, one at a time unless one stalls, and at most `concurrency` at once.
    pub(super) fn start(config: LookupConfig, concurrency: usize) -> Lookups {
        let (jobs, queue) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let connections = Arc::new(Connections::new(config));
        tokio::spawn(gather(
            connections,
            queue,
            concurrency.max(1),
            Arc::clone(&counts),
        ));
        Lookups { jobs, counts }
    }

    /// The statements run so far and the requests they carried.
    pub fn counts(&self) -> LookupCounts {
        LookupCounts {
            statements: self.counts.statements.load(Ordering::Relaxed),
            requests: self.counts.requests.load(Ordering::Relaxed),
        }
    }

    /// Reads what `lookup` needs, in a statement shared with whatever other lookups
    /// are waiting. Database errors are classified by [`Error::from_postgres`].
    pub async fn find(&self, lookup: Lookup) -> Result<Found, Error> {
        let (reply, answer) = oneshot::channel();
        let waiting = if traces::on() {
            traces::current().span().span_context().clone()
        } else {
            SpanContext::empty_context()
        };
        self.jobs.send((lookup, reply, waiting)).map_err(|_| {
            Error::Internal(anyhow::anyhow!("the database lookup task has stopped"))
        })?;
        match answer.await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(Failure::Database(err))) => Err(Error::from_postgres(err)),
            Ok(Err(Failure::NoRow)) => Err(Error::Internal(anyhow::anyhow!(
                "the lookup statement returned no row for a request"
            ))),
            Err(_) => Err(Error::Internal(anyhow::anyhow!(
                "the database lookup was dropped before it answered"
            ))),
        }
    }
}

/// Takes what is waiting (up to [`MAX_BATCH`]) once the previous statement has
/// finished or stalled and a slot is free, and runs it as one statement.
async fn gather(
    connections: Arc<Connections>,
    mut queue: mpsc::UnboundedReceiver<Job>,
    concurrency: usize,
    counts: Arc<Counts>,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    loop {
        // The semaphore is never closed, so this cannot fail.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(16);
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        counts.statements.fetch_add(1, Ordering::Relaxed);
        counts
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let connections = Arc::clone(&connections);
        metrics::histogram!(STATEMENT_REQUESTS).record(batch.len() as f64);
        let span = statement_span(&batch);
        let statement = tokio::spawn(
            async move {
                let started = std::time::Instant::now();
                run(&connections, batch).await;
                metrics::histogram!(STATEMENT_DURATION).record(started.elapsed().as_secs_f64());
                drop(slot);
            }
            .instrument(span),
        );
        // One statement at a time, so the next batch gathers while this one runs; but
        // one slower than STALLED (a backend stuck writing a dirty page back, a lost
        // packet) no longer holds back every request behind it.
        // (Dropping the handle on timeout leaves the statement running.)
        let _ = tokio::time::timeout(STALLED, statement).await;
    }
}

/// The span of one statement (none unless it carries a sampled request). A statement carries
/// many requests: its span is a child of the first request's wait ("lookup") and
/// links to the wait of every request it carries, as the messaging conventions model
/// a batch. Its attributes say how many requests it carried; nothing of what they
/// looked up.
fn statement_span(batch: &[Job]) -> tracing::Span {
    if !traces::on() || !batch.iter().any(|(_, _, wait)| wait.is_sampled()) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "statement",
        otel.name = "SELECT lookup",
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = "SELECT",
        db.operation.batch.size = batch.len() as u64,
    );
    let mut waits = batch
        .iter()
        .map(|(_, _, wait)| wait)
        .filter(|wait| wait.is_sampled());
    if let Some(first) = waits.next() {
        let _ =
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(first.clone()));
        span.add_link(first.clone());
    }
    for wait in waits {
        span.add_link(wait.clone());
    }
    span
}

/// Runs one statement for `batch` and answers each of its requests.
async fn run(connections: &Connections, batch: Vec<Job>) {
    let lookups: Vec<&Lookup> = batch.iter().map(|(lookup, _, _)| lookup).collect();
    let found = async {
        let connection = connections.take().await?;
        let rows = sql::query(&connection.client, &connection.statement, &lookups).await?;
        // Only after a success: after an error the connection may be closing (a
        // terminated backend is not seen as closed at once), and a new one is cheap.
        connections.put_back(connection);
        sql::decode(rows, lookups.len())
    }
    .await;
    let found = match found {
        Ok(found) => found,
        Err(err) => {
            let failure = Failure::Database(Arc::new(err));
            for (_, reply, _) in batch {
                let _ = reply.send(Err(failure.clone()));
            }
            return;
        }
    };
    for ((_, reply, _), found) in batch.into_iter().zip(found) {
        // Every input row yields exactly one output row; a gap is a bug in the
        // statement (INTERNAL_ERROR), not "nothing found".
        let _ = reply.send(found.ok_or(Failure::NoRow));
    }
}
