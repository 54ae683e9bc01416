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
//! request, in the contract's order, in `login.rs` and `resolve.rs`.
//!
//! The statement goes through tokio-postgres on connections of its own, prepared once
//! on each, rather than through the sqlx pool: on the benchmark's data set a
//! one-request statement took 142 to 151 µs a round trip instead of 197 to 200, and
//! 40 µs of the client's CPU instead of 70 to 76 (5,000 statements per client in
//! alternating rounds; `docs/performance.md`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_postgres::Row;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::error::Error;
use crate::observe::metrics::{STATEMENT_DURATION, STATEMENT_REQUESTS};
use crate::observe::traces;

mod connections;

use connections::Connections;
pub(super) use connections::{connection_config, LookupConfig};

/// The subscription states that never authenticate (contract section 3).
pub const INACTIVE_STATES: [&str; 5] = [
    "DRAFT",
    "CANCELLED",
    "REGRETTED",
    "REPLACED",
    "PENDING_VERIFICATION",
];

/// [`INACTIVE_STATES`] as an SQL list. Written exactly like the predicate of the
/// partial index `subscriptions_active_tucano_idx`, so the planner can use it.
const INACTIVE_STATES_SQL: &str =
    "('DRAFT', 'CANCELLED', 'REGRETTED', 'REPLACED', 'PENDING_VERIFICATION')";

/// The most requests one statement carries.
const MAX_BATCH: usize = 128;

/// How long a statement runs before the next batch is sent beside it on another
/// connection. Statements take 0.2 to 2 ms; in the benchmark the worker's open-loop
/// p99 was sometimes 320 to 480 ms, with every request waiting behind one stalled
/// statement.
const STALLED: std::time::Duration = std::time::Duration::from_millis(20);

/// How a login token names its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SessionKey {
    /// By the SHA-256 of a 32-hex token.
    TokenSha256(Vec<u8>),
    /// By the `jti` of a JWT.
    Id(Uuid),
}

/// The SQL branch that finds an identifier's entity; the discriminants are the
/// `path` values the statement tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub(super) enum Path {
    SubscriptionId = 1,
    SubscriptionNumber,
    ItemId,
    ItemSerialNumber,
    ItemAlternativeCode,
    TokenAuthenticationCode,
    TokenIdentifier,
    MediumAuthenticationCode,
    MediumIdentifier,
}

/// How a subscription type filter names its type; the discriminants are the
/// `type_kind` values the statement tests (0 is "no filter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i16)]
pub(super) enum TypeColumn {
    Id = 1,
    Name,
    AlternativeCode,
}

/// The entity an identifier names, as statement parameters.
#[derive(Debug, Clone)]
pub(super) struct EntityKey {
    pub path: Path,
    /// The key, when the path's column is a uuid.
    pub id: Option<Uuid>,
    /// The key, when the path's column is text.
    pub text: Option<String>,
    /// The type filter of an access token: its column and value.
    pub type_filter: Option<(TypeColumn, Option<Uuid>, Option<String>)>,
}

/// What one request needs read.
#[derive(Debug, Clone, Default)]
pub(super) struct Lookup {
    pub session: Option<SessionKey>,
    pub entity: Option<EntityKey>,
}

/// A login session, with its API user's state.
#[derive(Debug, Clone)]
pub(super) struct SessionRow {
    pub released_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub user_state: String,
}

/// The entity an identifier named and what the later checks read. Which fields are
/// set depends on the path: `state` is an installed item's state or an access
/// token's (medium's) life cycle state; `life_cycle_state` and
/// `provisioning_provider` are the subscription's on the subscription and installed
/// item paths; `total` is the number of the account's active Tucano subscriptions
/// (of the filtered type) on the credential paths, `id` and `number` then being the
/// first of them by number.
#[derive(Debug, Clone, Default)]
pub(super) struct EntityRow {
    pub state: Option<String>,
    pub pass_code_hash: Option<String>,
    pub type_found: bool,
    pub total: Option<i64>,
    pub id: Option<Uuid>,
    pub number: Option<String>,
    pub life_cycle_state: Option<String>,
    pub provisioning_provider: Option<String>,
}

/// What a [`Lookup`] found; `None` where nothing matched (or nothing was asked).
#[derive(Debug, Clone, Default)]
pub(super) struct Found {
    pub session: Option<SessionRow>,
    pub entity: Option<EntityRow>,
}

/// One output row of the statement.
struct Flat {
    ord: i64,
    released_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    user_state: Option<String>,
    entity_found: Option<bool>,
    state: Option<String>,
    pass_code_hash: Option<String>,
    type_found: bool,
    total: Option<i64>,
    id: Option<Uuid>,
    number: Option<String>,
    life_cycle_state: Option<String>,
    provisioning_provider: Option<String>,
}

impl TryFrom<Row> for Flat {
    type Error = tokio_postgres::Error;

    /// By column name, as sqlx's `FromRow` read it: a reordered select list cannot
    /// swap two fields of the same type.
    fn try_from(row: Row) -> Result<Flat, tokio_postgres::Error> {
        Ok(Flat {
            ord: row.try_get("ord")?,
            released_at: row.try_get("released_at")?,
            expires_at: row.try_get("expires_at")?,
            user_state: row.try_get("user_state")?,
            entity_found: row.try_get("entity_found")?,
            state: row.try_get("state")?,
            pass_code_hash: row.try_get("pass_code_hash")?,
            type_found: row.try_get("type_found")?,
            total: row.try_get("total")?,
            id: row.try_get("id")?,
            number: row.try_get("number")?,
            life_cycle_state: row.try_get("life_cycle_state")?,
            provisioning_provider: row.try_get("provisioning_provider")?,
        })
    }
}

/// The statement. Every branch of a lateral subquery is gated by the request's `path`
/// or `type_kind` (PostgreSQL evaluates such a condition once per row, before the
/// index scan behind it), so each request costs only the index lookups of its own
/// path. Only fixed table and column names are formatted in; every value is a bound
/// array element.
static STATEMENT: LazyLock<String> = LazyLock::new(|| {
    let subscription = |path: Path, condition: &str| {
        format!(
            "SELECT true AS found, NULL::text AS state, NULL::text AS pass_code_hash, \
             NULL::bigint AS total, s.id, s.number, s.life_cycle_state, s.provisioning_provider \
             FROM subscriptions s WHERE r.path = {} AND {condition}",
            path as i16
        )
    };
    let item = |path: Path, condition: &str| {
        format!(
            "SELECT true, i.state, NULL, NULL, s.id, s.number, s.life_cycle_state, \
             s.provisioning_provider \
             FROM installed_items i LEFT JOIN subscriptions s ON s.id = i.subscription_id \
             WHERE r.path = {} AND {condition}",
            path as i16
        )
    };
    let credential = |path: Path, table: &str, column: &str| {
        format!(
            "SELECT true, t.life_cycle_state, t.pass_code_hash, m.total, m.id, m.number, NULL, NULL \
             FROM {table} t LEFT JOIN LATERAL (\
             SELECT count(*) OVER () AS total, s.id, s.number FROM subscriptions s \
             WHERE s.accounts_receivable_id = t.accounts_receivable_id \
             AND s.provisioning_provider = 'TUCANO' \
             AND s.life_cycle_state NOT IN {inactive} \
             AND (r.type_kind = 0 OR s.subscription_type_id = ty.id) \
             ORDER BY s.number LIMIT 1) m ON true \
             WHERE r.path = {path} AND t.{column} = r.key_text",
            inactive = INACTIVE_STATES_SQL,
            path = path as i16,
        )
    };
    let subscription_type = |column: TypeColumn, condition: &str| {
        format!(
            "SELECT st.id FROM subscription_types st WHERE r.type_kind = {} AND {condition}",
            column as i16
        )
    };
    let entity = [
        subscription(Path::SubscriptionId, "s.id = r.key_id"),
        subscription(Path::SubscriptionNumber, "s.number = r.key_text"),
        item(Path::ItemId, "i.id = r.key_id"),
        item(Path::ItemSerialNumber, "i.serial_number = r.key_text"),
        item(Path::ItemAlternativeCode, "i.alternative_code = r.key_text"),
        credential(
            Path::TokenAuthenticationCode,
            "access_tokens",
            "authentication_code",
        ),
        credential(Path::TokenIdentifier, "access_tokens", "identifier"),
        credential(
            Path::MediumAuthenticationCode,
            "customer_identification_mediums",
            "authentication_code",
        ),
        credential(
            Path::MediumIdentifier,
            "customer_identification_mediums",
            "identifier",
        ),
    ]
    .join(" UNION ALL ");
    let types = [
        subscription_type(TypeColumn::Id, "st.id = r.type_id"),
        subscription_type(TypeColumn::Name, "st.name = r.type_text"),
        subscription_type(
            TypeColumn::AlternativeCode,
            "st.alternative_code = r.type_text",
        ),
    ]
    .join(" UNION ALL ");
    let session = "SELECT s.released_at, s.expires_at, u.life_cycle_state AS user_state \
                   FROM sessions s JOIN api_users u ON u.id = s.api_user_id";
    // Requests in flight mostly share a few login tokens: each distinct session is
    // read once (`ses`), and requests refer to it by its position (`r.login`).
    format!(
        "WITH ses AS MATERIALIZED (SELECT k.i, x.released_at, x.expires_at, x.user_state \
         FROM unnest($1::bytea[], $2::uuid[]) WITH ORDINALITY AS k(sha, id, i) \
         JOIN LATERAL ({session} WHERE s.token_sha256 = k.sha \
         UNION ALL {session} WHERE s.id = k.id) x ON true) \
         SELECT r.ord, ses.released_at, ses.expires_at, ses.user_state, \
         e.found AS entity_found, e.state, e.pass_code_hash, \
         (r.type_kind = 0 OR ty.id IS NOT NULL) AS type_found, \
         e.total, e.id, e.number, e.life_cycle_state, e.provisioning_provider \
         FROM unnest($3::int8[], $4::int2[], $5::uuid[], $6::text[], \
         $7::int2[], $8::uuid[], $9::text[]) WITH ORDINALITY \
         AS r(login, path, key_id, key_text, type_kind, type_id, type_text, ord) \
         LEFT JOIN ses ON ses.i = r.login \
         LEFT JOIN LATERAL ({types}) ty ON true \
         LEFT JOIN LATERAL ({entity}) e ON true"
    )
});

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
    let n = batch.len();
    // The distinct sessions of the batch, and each request's (1-based; 0 for none).
    let mut sessions: Vec<&SessionKey> = Vec::new();
    let mut login = Vec::with_capacity(n);
    let mut path = Vec::with_capacity(n);
    let mut key_id = Vec::with_capacity(n);
    let mut key_text = Vec::with_capacity(n);
    let mut type_kind = Vec::with_capacity(n);
    let mut type_id = Vec::with_capacity(n);
    let mut type_text = Vec::with_capacity(n);
    for (lookup, _, _) in &batch {
        let position = lookup.session.as_ref().map_or(0, |key| {
            let index = match sessions.iter().position(|known| *known == key) {
                Some(index) => index,
                None => {
                    sessions.push(key);
                    sessions.len() - 1
                }
            };
            index as i64 + 1
        });
        login.push(position);
        let entity = lookup.entity.as_ref();
        path.push(entity.map_or(0, |entity| entity.path as i16));
        key_id.push(entity.and_then(|entity| entity.id));
        key_text.push(entity.and_then(|entity| entity.text.as_deref()));
        let filter = entity.and_then(|entity| entity.type_filter.as_ref());
        type_kind.push(filter.map_or(0, |(column, _, _)| *column as i16));
        type_id.push(filter.and_then(|(_, id, _)| *id));
        type_text.push(filter.and_then(|(_, _, text)| text.as_deref()));
    }
    let (session_sha, session_id): (Vec<_>, Vec<_>) = sessions
        .iter()
        .map(|key| match key {
            SessionKey::TokenSha256(sha) => (Some(sha.as_slice()), None),
            SessionKey::Id(id) => (None, Some(*id)),
        })
        .unzip();
    let rows = async {
        let connection = connections.take().await?;
        let rows = connection
            .client
            .query(
                &connection.statement,
                &[
                    &session_sha,
                    &session_id,
                    &login,
                    &path,
                    &key_id,
                    &key_text,
                    &type_kind,
                    &type_id,
                    &type_text,
                ],
            )
            .await?;
        // Only after a success: after an error the connection may be closing (a
        // terminated backend is not seen as closed at once), and a new one is cheap.
        connections.put_back(connection);
        rows.into_iter()
            .map(Flat::try_from)
            .collect::<Result<Vec<Flat>, _>>()
    }
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(err) => {
            let failure = Failure::Database(Arc::new(err));
            for (_, reply, _) in batch {
                let _ = reply.send(Err(failure.clone()));
            }
            return;
        }
    };
    let mut found: Vec<Option<Found>> = vec![None; n];
    for row in rows {
        let slot = usize::try_from(row.ord)
            .ok()
            .and_then(|ord| ord.checked_sub(1))
            .and_then(|index| found.get_mut(index));
        if let Some(slot) = slot {
            *slot = Some(row.into_found());
        }
    }
    for ((_, reply, _), found) in batch.into_iter().zip(found) {
        // Every input row yields exactly one output row; a gap is a bug in the
        // statement (INTERNAL_ERROR), not "nothing found".
        let _ = reply.send(found.ok_or(Failure::NoRow));
    }
}

impl Flat {
    fn into_found(self) -> Found {
        let session = match (self.expires_at, self.user_state) {
            (Some(expires_at), Some(user_state)) => Some(SessionRow {
                released_at: self.released_at,
                expires_at,
                user_state,
            }),
            _ => None,
        };
        let entity = self.entity_found.unwrap_or(false).then_some(EntityRow {
            state: self.state,
            pass_code_hash: self.pass_code_hash,
            type_found: self.type_found,
            total: self.total,
            id: self.id,
            number: self.number,
            life_cycle_state: self.life_cycle_state,
            provisioning_provider: self.provisioning_provider,
        });
        Found { session, entity }
    }
}
