//! PostgreSQL: the pool, migrations, login-token checks and subscription resolution.
//!
//! [`prepare`] turns a database URL into a migrated pool at startup. [`Store`] owns
//! the two reads of a request: [`Store::check_login`] (step 5 of the contract's order
//! of checks, in `login.rs`) and [`Store::resolve`] (step 6, in `resolve.rs`). The
//! demo data of contract section 6 lives in [`seed`]. All SQL is checked at run time,
//! since no database exists at build time. The one statement of the hot path (in
//! `lookup.rs`) runs on tokio-postgres connections of its own, everything else on the
//! sqlx pool; the statement's errors go through
//! [`Error::from_postgres`](crate::error::Error::from_postgres), so connection trouble
//! is retried, never reported as a subscriber's fault.

pub mod lockout;
mod login;
mod lookup;
pub mod pass_code;
mod resolve;
pub mod seed;
mod sslmode;

use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jsonwebtoken::DecodingKey;
use sqlx::migrate::MigrateDatabase as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

use crate::error::Error;
use crate::keys::Current;
use crate::request::Identifier;
use crate::secret::Secret;
use chrono::{DateTime, Utc};

pub use lookup::LookupCounts;
pub use lookup::INACTIVE_STATES;
pub use seed::{seed_demo, DemoData};

/// The most lookup statements in flight at once. Normally there is one: the requests
/// that arrive while it runs gather into the next (on the 2-core benchmark machine, one
/// at a time gave 58.8-63.3 % of the echo ceiling and PostgreSQL 36-42 µs per request;
/// two at a time 48.4-56.3 % and 57-74 µs). A second, third and fourth are sent only
/// beside statements that have stalled (see `lookup.rs`), each on a lookup connection
/// of its own; the sqlx pool serves the migrations and the health probe.
pub const LOOKUP_CONCURRENCY: usize = 4;

/// How long a request waits for a pooled connection before the attempt counts as
/// "database unreachable" (and is retried by the caller).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the database named in `database_url` if it is missing, connects a pool of
/// at most `pool_size` connections and applies the migrations in `migrations/`.
///
/// Errors name the step that failed and the URL (its password masked), so the
/// operator knows what to fix.
pub async fn prepare(database_url: &str, pool_size: u32) -> anyhow::Result<PgPool> {
    let shown = crate::redact::url(database_url);
    anyhow::ensure!(pool_size > 0, "the database pool size must be at least 1");
    // Before anything is created: the lookup connections read the URL too.
    let lookups = lookup_config(database_url, "DATABASE_URL")?;

    let exists = Postgres::database_exists(database_url)
        .await
        .map_err(|err| {
            let why = match tls_failure(&err) {
                hint if hint.is_empty() => ": is PostgreSQL running there, and are DATABASE_URL's \
                     host, port, user and password right?"
                    .to_owned(),
                hint => hint,
            };
            anyhow::Error::new(err).context(format!(
                "could not check whether the database of {shown} exists{why}"
            ))
        })?;
    if !exists {
        match Postgres::create_database(database_url).await {
            Ok(()) => tracing::info!(database = %shown, "created the database"),
            // Another worker created it between our check and our CREATE DATABASE.
            Err(err) if is_duplicate_database(&err) => {}
            Err(err) => {
                return Err(err).with_context(|| {
                    format!(
                        "the database of {shown} does not exist and could not be created: \
                         create it by hand or give the user the CREATEDB privilege"
                    )
                })
            }
        }
    }

    let options = PgConnectOptions::from_str(database_url)
        .with_context(|| format!("DATABASE_URL {shown} is not a valid PostgreSQL URL"))?
        // The lookup statement is planned once per connection: its custom plans (one
        // per execution, for arrays of whatever values) cost more to make than to run,
        // and the generic plan is the same index lookups.
        .options([
            ("plan_cache_mode", "force_generic_plan"),
            // sqlx logs the server's notices at `info`: every restart logged `relation
            // "_sqlx_migrations" already exists, skipping`, a notice of the migrator's
            // own `CREATE TABLE IF NOT EXISTS`, which is no news to an operator.
            // Warnings and errors still come through.
            ("client_min_messages", "warning"),
        ]);
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // sqlx pings an idle connection before lending it: one more round trip (and
        // wake-up of the backend) per lookup statement. A connection that died is found
        // by the statement instead, whose I/O error is transient and retried.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|err| {
            let hint = tls_failure(&err);
            anyhow::Error::new(err)
                .context(format!("could not connect to the database {shown}{hint}"))
        })?;
    // One lookup connection now, so that its TLS (or anything else it does not share
    // with the pool) fails at start rather than at the first request.
    check_lookup_connection(&lookups, database_url, "DATABASE_URL").await?;

    let migrator = sqlx::migrate!();
    // Applying them needs CREATE on the schema (sqlx's `_sqlx_migrations` table is
    // created if missing, even when nothing is pending): a role that may only read and
    // write rows starts on a database migrated beforehand by `tucano-auth migrate`.
    if pending_migrations(&pool, &migrator).await? {
        migrator.run(&pool).await.with_context(|| {
            format!(
                "could not apply the migrations to {shown}: the database may hold a schema \
                 this version does not know, or DATABASE_URL's user may not create tables \
                 (then run `tucano-auth migrate` as a user who may)"
            )
        })?;
    }
    Ok(pool)
}

/// Whether some migration of `migrator` is not applied to the database of `pool` (or
/// was applied from a different file: running them then reports it).
async fn pending_migrations(
    pool: &PgPool,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<bool> {
    let applied: Option<Vec<(i64, Vec<u8>)>> = {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await
            .context("could not read which migrations the database holds")?;
        if exists {
            Some(
                sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                    .fetch_all(pool)
                    .await
                    .context("could not read which migrations the database holds")?,
            )
        } else {
            None
        }
    };
    let Some(applied) = applied else {
        return Ok(true);
    };
    Ok(migrator
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .any(|migration| {
            !applied.iter().any(|(version, checksum)| {
                *version == migration.version && checksum[..] == migration.checksum[..]
            })
        }))
}

/// Opens one lookup connection to `url` (named `what` in errors) and closes it: what
/// the lookups will need, checked at start.
async fn check_lookup_connection(
    lookups: &lookup::LookupConfig,
    url: &str,
    what: &str,
) -> anyhow::Result<()> {
    let client = lookups.connect().await.map_err(|err| {
        let hint = tls_failure(&err);
        anyhow::Error::new(err).context(format!(
            "could not open a lookup connection to the database {} ({what}){hint}",
            crate::redact::url(url)
        ))
    })?;
    drop(client);
    Ok(())
}

/// Checks `DATABASE_READ_URL` at start (one lookup connection, which must be able to
/// read the migrated schema) and returns a one-connection pool to probe it with for
/// readiness.
pub async fn prepare_read(read_url: &str) -> anyhow::Result<PgPool> {
    let shown = crate::redact::url(read_url);
    let lookups = lookup_config(read_url, "DATABASE_READ_URL")?;
    check_lookup_connection(&lookups, read_url, "DATABASE_READ_URL").await?;
    let options = PgConnectOptions::from_str(read_url)
        .with_context(|| format!("DATABASE_READ_URL {shown} is not a valid PostgreSQL URL"))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy_with(options);
    sqlx::query("SELECT 1 FROM subscriptions LIMIT 1")
        .execute(&pool)
        .await
        .with_context(|| {
            format!(
                "the database of DATABASE_READ_URL {shown} cannot be read: is it a standby \
                 of DATABASE_URL's, with the migrations applied?"
            )
        })?;
    Ok(pool)
}

/// The lookup connections' settings from `database_url`, the value of `variable`;
/// tokio-postgres refuses some parameters sqlx takes (`statement-cache-capacity`, for
/// one). The error names the variable and what is wrong, not the URL (which may hold
/// a password, and which did not parse).
fn lookup_config(database_url: &str, variable: &str) -> anyhow::Result<lookup::LookupConfig> {
    lookup::connection_config(database_url)
        .with_context(|| format!("{variable} is not a valid PostgreSQL URL"))
}

/// What to fix when connecting failed on TLS: the server's certificate refused (the
/// connection named by the caller), or TLS asked for and refused by the server.
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> String {
    if let Some(why) = crate::tls::handshake_failure(err) {
        return format!(
            " over TLS: {why}; check DATABASE_URL's sslrootcert (the CA that signed the \
             server's certificate), its host name and sslmode"
        );
    }
    let text = format!("{err:#}");
    if text.contains("server does not support TLS") || text.contains("server does not support SSL")
    {
        return ": DATABASE_URL's sslmode asks for TLS, which the server does not offer".to_owned();
    }
    String::new()
}

/// Runs `attempt` (a [`prepare`] or [`prepare_read`] of `url`, named by `variable`)
/// until it succeeds or fails for a reason waiting will not mend, so that a worker
/// started before its database waits for it as it waits for the broker (contract
/// section 8), `/readyz` answering `503` with `"database": false` meanwhile. Waits
/// with the broker's backoff (100 ms doubling to 2 s) and logs each failed attempt
/// with what it waits for. A refused login, a URL or `sslmode` that does not parse, a
/// certificate refused, a missing schema are returned at once: see [`unreachable`].
pub async fn wait_for<T, F>(
    variable: &str,
    url: &str,
    mut attempt: impl FnMut() -> F,
) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = crate::backoff::Backoff::new();
    let mut waited = false;
    loop {
        match attempt().await {
            Ok(done) => {
                if waited {
                    tracing::info!(variable, database = %crate::redact::url(url), "the database answers; starting");
                }
                return Ok(done);
            }
            Err(err) if unreachable(&err) => {
                waited = true;
                let delay = backoff.step();
                tracing::warn!(
                    variable,
                    database = %crate::redact::url(url),
                    error = %format!("{err:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot reach the database; waiting for it (/readyz answers 503 meanwhile)"
                );
                tokio::time::sleep(delay).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Whether a startup error means only that the database cannot be reached now (a
/// connection refused, reset or timed out, a name that does not resolve yet, a server
/// starting up or shutting down, too many connections, a connection closed before
/// the server's first answer): worth waiting for. Everything
/// else is a setting to fix: a login refused (SQLSTATE class 28), a certificate
/// refused or TLS the server does not offer, a URL that does not parse, a file that
/// cannot be read.
pub fn unreachable(err: &anyhow::Error) -> bool {
    let mut verdict = None;
    for cause in err.chain() {
        if crate::tls::handshake_failure(cause).is_some() {
            return false;
        }
        if verdict.is_some() {
            continue;
        }
        if let Some(err) = cause.downcast_ref::<sqlx::Error>() {
            verdict = Some(match err {
                sqlx::Error::Io(io) => connection_trouble(io),
                sqlx::Error::PoolTimedOut => true,
                // The connection ended before PostgreSQL's first answer (sqlx reads it as
                // an answer of 0x00 to its SSLRequest): a proxy or a load balancer with no
                // server behind it yet, as in a Kubernetes service whose pods are
                // starting. Something that is not PostgreSQL at all is waited for too,
                // with its answer in each retry's log line.
                sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(db) => {
                    db.code().is_some_and(|code| transient_sqlstate(&code))
                }
                _ => false,
            });
        } else if let Some(err) = cause.downcast_ref::<tokio_postgres::Error>() {
            verdict = Some(match err.code() {
                Some(code) => transient_sqlstate(code.code()),
                None => {
                    err.is_closed() || {
                        let mut source = std::error::Error::source(err);
                        let mut io = false;
                        while let Some(cause) = source {
                            if let Some(err) = cause.downcast_ref::<std::io::Error>() {
                                io = connection_trouble(err);
                                break;
                            }
                            source = cause.source();
                        }
                        io
                    }
                }
            });
        }
    }
    verdict.unwrap_or(false)
}

/// An I/O error of a connection, not of a file (a certificate that is missing or
/// unreadable is a setting).
fn connection_trouble(err: &std::io::Error) -> bool {
    !matches!(
        err.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
    )
}

/// SQLSTATE classes 08 (connection exception), 57P (operator intervention: the server
/// starting up or shutting down) and 53 (insufficient resources: too many
/// connections).
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
}

/// Whether `CREATE DATABASE` lost a race against another creator.
fn is_duplicate_database(err: &sqlx::Error) -> bool {
    // 42P04 duplicate_database; 23505 when both inserted into pg_database at once.
    matches!(err, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P04" | "23505")))
}

/// The subscription a request resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Its id (shown on the wire as 32 upper-case hex digits).
    pub id: Uuid,
    /// Its number, the `userid` claim of the issued JWT.
    pub number: String,
}

/// The worker's reads: login tokens and subscriptions.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    lookups: lookup::Lookups,
    /// The keys of CRM login tokens in JWT form, any of which verifies one; none
    /// rejects them all. Replaced whole by a reload (SIGHUP).
    crm_token_keys: Current<Vec<DecodingKey>>,
    /// Wrong pass codes counted on the pool's (primary) database.
    lockout: lockout::Lockout,
    /// The pass-code requests waiting in this worker, at most `TUCANO_PASS_CODE_BACKLOG`.
    backlog: Arc<pass_code::Backlog>,
}

impl Store {
    /// A store reading the database of `database_url` (`DATABASE_URL`), whose migrated
    /// `pool` [`prepare`] made; `crm_token_secrets` are `CRM_TOKEN_SECRET` or those of `CRM_TOKEN_SECRET_FILE`, the HS256 keys
    /// of login tokens in JWT form (without it such tokens are `INVALID_TOKEN`).
    ///
    /// Starts the task that batches the reads of concurrent requests into one
    /// statement (see `lookup.rs`), one at a time unless one stalls, at most
    /// [`LOOKUP_CONCURRENCY`], on connections of its own that it opens when it needs
    /// them; call it inside a Tokio runtime.
    pub fn new(
        pool: PgPool,
        database_url: &str,
        crm_token_secrets: impl IntoIterator<Item = Secret>,
    ) -> anyhow::Result<Store> {
        let config = lookup_config(database_url, "DATABASE_URL or DATABASE_READ_URL")?;
        let crm_token_keys = Current::new(decoding_keys(crm_token_secrets));
        let lookups = lookup::Lookups::start(config, LOOKUP_CONCURRENCY);
        let lockout = lockout::Lockout::new(
            pool.clone(),
            lockout::DEFAULT_MAX_FAILURES,
            lockout::DEFAULT_WINDOW,
        );
        Ok(Store {
            pool,
            lookups,
            crm_token_keys,
            lockout,
            backlog: Arc::new(pass_code::Backlog::new(pass_code::DEFAULT_BACKLOG)),
        })
    }

    /// The same store, with at most `limit` pass-code requests waiting
    /// (`TUCANO_PASS_CODE_BACKLOG`) instead of 256; one more is
    /// `TEMPORARILY_UNAVAILABLE` at once.
    pub fn with_pass_code_backlog(mut self, limit: usize) -> Store {
        self.backlog = Arc::new(pass_code::Backlog::new(limit));
        self
    }

    /// The same store, locking an identifier's pass code after `max_failures` wrong ones
    /// (`TUCANO_PASS_CODE_MAX_FAILURES`) within `window` of each other
    /// (`TUCANO_PASS_CODE_LOCKOUT_SECONDS`), instead of the defaults (5 and 900 s).
    pub fn with_pass_code_lockout(mut self, max_failures: u32, window: Duration) -> Store {
        self.lockout = lockout::Lockout::new(self.pool.clone(), max_failures, window);
        self
    }

    /// Steps 5 and 6 of the contract's order of checks in one read: checks the login
    /// `token` at time `now` (see [`Store::check_login`]), then resolves `identifier`
    /// (see [`Store::resolve`]). The login token's verdict comes first; a token refused
    /// without the database (malformed, badly signed, expired JWT) reads nothing.
    pub async fn authenticate(
        &self,
        token: &Secret,
        identifier: &Identifier,
        now: DateTime<Utc>,
    ) -> Result<Subscription, Error> {
        let session = self.session_key(token, now)?;
        let lookup = self.lookups.find(lookup::Lookup {
            session: Some(session),
            entity: Some(resolve::entity_key(identifier)),
        });
        let found =
            tracing::Instrument::instrument(lookup, crate::observe::traces::child("lookup"))
                .await?;
        login::check_session(found.session, now)?;
        resolve::check_entity(identifier, found.entity, &self.lockout, &self.backlog).await
    }

    /// How many lookup statements have run and how many requests they carried (their
    /// ratio is the mean batch size).
    pub fn lookup_counts(&self) -> LookupCounts {
        self.lookups.counts()
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Verifies CRM login tokens in JWT form with `crm_token_secrets` from the next
    /// request on, in this store and its clones (a reload of `CRM_TOKEN_SECRET_FILE`).
    pub fn replace_crm_token_secrets(&self, crm_token_secrets: impl IntoIterator<Item = Secret>) {
        self.crm_token_keys.set(decoding_keys(crm_token_secrets));
    }
}

fn decoding_keys(secrets: impl IntoIterator<Item = Secret>) -> Vec<DecodingKey> {
    secrets
        .into_iter()
        .map(|secret| DecodingKey::from_secret(secret.expose().as_bytes()))
        .collect()
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool)
            .field(
                "crm_token_keys",
                &format_args!("[{} redacted]", self.crm_token_keys.get().len()),
            )
            .finish()
    }
}

/// An id as the wire and the messages show it: 32 upper-case hex digits.
fn show_id(id: &Uuid) -> String {
    id.simple().to_string().to_uppercase()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_trouble_is_waited_for_and_settings_are_not() {
        use std::io::{Error as Io, ErrorKind};
        let waited = [
            sqlx::Error::Io(Io::from(ErrorKind::ConnectionRefused)),
            sqlx::Error::Io(Io::from(ErrorKind::TimedOut)),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".to_owned()),
        ];
        for err in waited {
            let shown = err.to_string();
            let err = anyhow::Error::new(err).context("could not connect to the database");
            assert!(unreachable(&err), "{shown}");
        }
        let refused = [
            anyhow::Error::new(sqlx::Error::Io(Io::from(ErrorKind::NotFound)))
                .context("sslrootcert"),
            anyhow::Error::new(sqlx::Error::Configuration("bad URL".into())),
            anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"),
            anyhow::Error::new(Io::from(ErrorKind::ConnectionRefused))
                .context("an I/O error that is not a database connection's"),
        ];
        for err in refused {
            assert!(!unreachable(&err), "{err:#}");
        }
    }

    #[test]
    fn ids_are_shown_as_upper_case_hex() {
        let id = Uuid::from_u128(0x75E3E501_39F2_4DC3_A6C9_AA0C026D0292);
        assert_eq!(show_id(&id), "75E3E50139F24DC3A6C9AA0C026D0292");
    }
}
