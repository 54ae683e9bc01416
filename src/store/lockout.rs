//! The brute-force lockout of pass codes (contract section 14, "Guessing").
//!
//! Pass codes are often 4-digit PINs: at the machine's Argon2 rate every PIN would
//! fall in about a minute and a half. So wrong pass codes are counted per identifier
//! in the table `pass_code_failures`, on the primary database (`DATABASE_URL`, never a
//! read-only standby), which every worker shares: spreading tries over many workers
//! does not help an attacker.
//!
//! - After `max_failures` wrong pass codes for one identifier, each less than `window`
//!   after the one before, that identifier is locked: its attempts are answered
//!   `AUTHENTICATION_FAILED` (the code of a wrong pass code, so a lockout reveals
//!   nothing) without running Argon2, the right pass code included.
//! - The lock ends once `window` has passed since the last failure; the next failure
//!   then starts a new count. Attempts refused while locked are not failures: they do
//!   not extend the lock.
//! - A right pass code deletes the count.
//!
//! Identifiers that exist nowhere are counted like the others, so a lockout tells
//! nothing about which identifiers exist. Times are the database's (`now()`), so
//! workers with skewed clocks agree.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::error::Error;
use crate::observe::metrics::PASS_CODE_LOCKOUTS;

/// `TUCANO_PASS_CODE_MAX_FAILURES`'s default.
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// `TUCANO_PASS_CODE_LOCKOUT_SECONDS`'s default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(900);

/// Which table the identifier names a row of: the same string may be an access token's
/// identifier and a medium's, two different credentials with counts of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// `access_tokens`.
    AccessToken,
    /// `customer_identification_mediums`.
    Medium,
}

impl Holder {
    /// The value of the `holder` column.
    fn column(self) -> &'static str {
        match self {
            Holder::AccessToken => "access_token",
            Holder::Medium => "medium",
        }
    }
}

/// The failure counts on the primary database, and when they lock.
#[derive(Clone, Debug)]
pub struct Lockout {
    pool: PgPool,
    max_failures: i32,
    window_seconds: f64,
}

impl Lockout {
    /// Counts on `pool`'s database; locks after `max_failures` (at least 1) failures
    /// within `window` of each other.
    pub fn new(pool: PgPool, max_failures: u32, window: Duration) -> Lockout {
        Lockout {
            pool,
            max_failures: i32::try_from(max_failures.max(1)).unwrap_or(i32::MAX),
            window_seconds: window.as_secs_f64(),
        }
    }

    /// Whether `identifier` is locked now: `None` when it has no count at all (nothing
    /// to reset after a success), `Some(locked)` otherwise.
    pub async fn is_locked(&self, holder: Holder, identifier: &str) -> Result<Option<bool>, Error> {
        let locked: Option<bool> = sqlx::query_scalar(
            "SELECT failures >= $3 AND last_failure > now() - make_interval(secs => $4) \
             FROM pass_code_failures WHERE holder = $1 AND identifier = $2",
        )
        .bind(holder.column())
        .bind(identifier)
        .bind(self.max_failures)
        .bind(self.window_seconds)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(locked)
    }

    /// Counts a wrong pass code for `identifier`: one more if the last failure is less
    /// than the window ago, else a new count of one. The failure that reaches
    /// `max_failures` starts a lockout, which is counted and logged.
    pub async fn record_failure(&self, holder: Holder, identifier: &str) -> Result<(), Error> {
        let failures: i32 = sqlx::query_scalar(
            "INSERT INTO pass_code_failures AS f (holder, identifier, failures, last_failure) \
             VALUES ($1, $2, 1, now()) \
             ON CONFLICT (holder, identifier) DO UPDATE SET \
                 failures = CASE WHEN f.last_failure > now() - make_interval(secs => $3) \
                                 THEN f.failures + 1 ELSE 1 END, \
                 last_failure = now() \
             RETURNING failures",
        )
        .bind(holder.column())
        .bind(identifier)
        .bind(self.window_seconds)
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlx)?;
        if failures == self.max_failures {
            metrics::counter!(PASS_CODE_LOCKOUTS).increment(1);
            // Not the identifier: like every credential field it stays out of the log
            // (the table says which one it is).
            tracing::warn!(
                holder = holder.column(),
                failures,
                lockout_seconds = self.window_seconds,
                "pass code locked after repeated wrong pass codes"
            );
        }
        Ok(())
    }

    /// Forgets the failures of `identifier`, after its right pass code.
    pub async fn reset(&self, holder: Holder, identifier: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM pass_code_failures WHERE holder = $1 AND identifier = $2")
            .bind(holder.column())
            .bind(identifier)
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
        Ok(())
    }
}

/// Connection trouble is [`Error::Unavailable`], retried like the lookup's; anything
/// else is [`Error::Internal`].
fn from_sqlx(err: sqlx::Error) -> Error {
    let transient = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }),
        _ => false,
    };
    if transient {
        Error::Unavailable(Arc::new(err))
    } else {
        Error::Internal(anyhow::Error::new(err).context("the pass-code failure count"))
    }
}
