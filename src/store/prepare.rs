//! Getting a database ready: [`prepare`] creates and migrates it and checks that the
//! lookup connections can reach it, [`prepare_read`] checks a standby, and
//! [`wait_for`] retries while it is unreachable ([`unreachable`] tells which errors
//! are worth waiting for).

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::MigrateDatabase as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use super::lookup;

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
pub(super) fn lookup_config(
    database_url: &str,
    variable: &str,
) -> anyhow::Result<lookup::LookupConfig> {
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
/// started before its database waits for it as it waits for the broker (docs/protocol.md
/// §8), `/readyz` answering `503` with `"database": false` meanwhile. Waits
/// with the broker's backoff (100 ms doubling to 2 s) and logs each failed attempt
/// with what it waits for. A refused login, a URL or `sslmode` that does not parse, a
/// certificate refused, a missing schema are returned at once: see [`unreachable()`].
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

#[cfg(test)]
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
}
