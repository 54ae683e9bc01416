//! The brute-force lockout of pass codes (docs/protocol.md §14, "Guessing").
//!
//! Pass codes are often 4-digit PINs: at the machine's Argon2 rate every PIN would
//! fall in about a minute and a half. So tries are counted per identifier in the
//! table `pass_code_failures`, on the primary database (`DATABASE_URL`, never a
//! read-only standby), which every worker shares: spreading tries over many workers
//! does not help an attacker.
//!
//! - A try is counted before its pass code is verified, in one statement
//!   ([`Lockout::take`]) that takes one of the identifier's `max_failures` tries of
//!   the window, if one is neither spent on a wrong pass code (`failures`) nor held by
//!   a try being verified (`pending`). Counting after the verdict let every try of a
//!   burst see "not locked" while the others were still in Argon2: 99 wrong pass codes
//!   published at once were all verified. Now, however tries arrive (at once, over
//!   many workers), at most `max_failures` are verified per identifier and window.
//! - With `max_failures` wrong pass codes counted, the identifier is locked: a try is
//!   answered `AUTHENTICATION_FAILED` (the code of a wrong pass code, so a lockout
//!   reveals nothing) after as long as a verification, the right pass code included.
//!   While the tries left are all being verified, a try waits for one to settle: they
//!   may be right (a client sending the same right pass code many times at once).
//! - The lock ends once `window` has passed since the last try taken; the next try
//!   then starts a new count. Refused tries are not counted: they do not extend the
//!   lock.
//! - A right pass code forgets the failures; a row with neither failures nor tries in
//!   flight is deleted.
//!
//! Identifiers that exist nowhere are counted like the others, so a lockout tells
//! nothing about which identifiers exist. Times are the database's (`now()`), so
//! workers with skewed clocks agree.
//! - A worker killed between taking a try and its verdict never settles it. Tries in
//!   flight therefore count only while a live worker vouches for them: a worker marks
//!   the rows of the tries it holds (`pending_seen`) every [`HEARTBEAT`], however long
//!   they wait for a verifier, and once no worker has for [`PENDING_EXPIRY`] the tries
//!   still marked pending are taken to be a dead worker's and no longer hold the
//!   identifier (its wrong pass codes still count). Holding them for the whole window
//!   made five SIGKILLs in the chaos run leave a customer's right pass code answered
//!   `TEMPORARILY_UNAVAILABLE` for 15 minutes. Expiring them a fixed time after they
//!   were taken instead let a burst walk through a full pass-code backlog: its tries,
//!   still waiting for a verifier, expired, and as many again were taken and verified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::PgPool;

use crate::error::Error;
use crate::observe::metrics::PASS_CODE_LOCKOUTS;

/// How long tries in flight hold an identifier once no live worker vouches for them;
/// see the module docs. Below the wait of a try that finds the others in flight (15 s),
/// so a dead worker's tries free the identifier before a waiting try gives up.
pub const PENDING_EXPIRY: Duration = Duration::from_secs(5);

/// How often a worker marks the rows of the tries it holds as still in flight: a
/// fraction of [`PENDING_EXPIRY`], so a late mark or two never lets them expire.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// `TUCANO_PASS_CODE_MAX_FAILURES`'s default.
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// `TUCANO_PASS_CODE_LOCKOUT_SECONDS`'s default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(900);

/// Which table the identifier names a row of: the same string may be an access token's
/// identifier and a medium's, two different credentials with counts of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    held: Arc<Held>,
}

/// The tries this worker holds (taken, not yet settled), by identifier: what its
/// heartbeat marks as in flight.
#[derive(Default)]
struct Held {
    tries: Mutex<HashMap<(Holder, String), usize>>,
    /// Whether the heartbeat task runs (started by the first try taken).
    beating: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Held {
    // Never the identifiers: like every credential field they stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").finish_non_exhaustive()
    }
}

impl Held {
    fn tries(&self) -> std::sync::MutexGuard<'_, HashMap<(Holder, String), usize>> {
        self.tries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Lockout {
    /// Counts on `pool`'s database; locks after `max_failures` (at least 1) failures
    /// within `window` of each other.
    pub fn new(pool: PgPool, max_failures: u32, window: Duration) -> Lockout {
        Lockout {
            pool,
            max_failures: i32::try_from(max_failures.max(1)).unwrap_or(i32::MAX),
            window_seconds: window.as_secs_f64(),
            held: Arc::new(Held::default()),
        }
    }

    /// Takes a try for `identifier`, before its pass code is verified: one of the
    /// `max_failures` of its window not yet spent on wrong pass codes or held by a try
    /// being verified. A new window (both counts from zero) starts when `window` has
    /// passed since the last try taken.
    ///
    /// One statement: `INSERT … ON CONFLICT DO UPDATE … WHERE` locks the identifier's
    /// row and evaluates the condition on its latest version, so concurrent tries, on
    /// this worker or another, each see the counts the one before left.
    pub async fn take(&self, holder: Holder, identifier: &str) -> Result<Take, Error> {
        if !self
            .held
            .beating
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tokio::spawn(heartbeat(Arc::downgrade(&self.held), self.pool.clone()));
        }
        let taken: Option<i32> = sqlx::query_scalar(
            "INSERT INTO pass_code_failures AS f \
                 (holder, identifier, failures, pending, last_failure, pending_seen) \
             VALUES ($1, $2, 0, 1, now(), now()) \
             ON CONFLICT (holder, identifier) DO UPDATE SET \
                 failures = CASE WHEN f.last_failure > now() - make_interval(secs => $3) \
                                 THEN f.failures ELSE 0 END, \
                 pending = CASE WHEN f.last_failure > now() - make_interval(secs => $3) \
                                 AND f.pending_seen > now() - make_interval(secs => $5) \
                                THEN f.pending + 1 ELSE 1 END, \
                 last_failure = now(), \
                 pending_seen = now() \
             WHERE f.failures \
                   + CASE WHEN f.pending_seen > now() - make_interval(secs => $5) \
                          THEN f.pending ELSE 0 END < $4 \
                OR f.last_failure <= now() - make_interval(secs => $3) \
             RETURNING failures",
        )
        .bind(holder.column())
        .bind(identifier)
        .bind(self.window_seconds)
        .bind(self.max_failures)
        .bind(PENDING_EXPIRY.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        if taken.is_some() {
            // The statement marked the row itself; the heartbeat takes over from here.
            // Only a taken try is held: a waiting one must not vouch for the tries
            // in flight, which may be a dead worker's.
            return Ok(Take::Slot(Slot::hold(&self.held, holder, identifier)));
        }
        // No try left: spent on wrong pass codes (locked), or held by tries still
        // being verified (busy), which may yet turn out right.
        let failures: Option<i32> = sqlx::query_scalar(
            "SELECT failures FROM pass_code_failures WHERE holder = $1 AND identifier = $2",
        )
        .bind(holder.column())
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlx)?;
        Ok(match failures {
            Some(failures) if failures >= self.max_failures => Take::Locked,
            _ => Take::Busy,
        })
    }

    /// Settles a try [`Lockout::take`] gave, once its pass code is verified: a right
    /// one forgets the failures; a wrong one is counted, and the one that reaches
    /// `max_failures` begins a lockout, which is counted and logged.
    pub async fn settle(
        &self,
        holder: Holder,
        identifier: &str,
        _slot: Slot,
        matched: bool,
    ) -> Result<(), Error> {
        if matched {
            sqlx::query(
                "UPDATE pass_code_failures SET failures = 0, pending = greatest(pending - 1, 0) \
                 WHERE holder = $1 AND identifier = $2",
            )
            .bind(holder.column())
            .bind(identifier)
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
            // Nothing counted and nothing in flight: the same as no row.
            sqlx::query(
                "DELETE FROM pass_code_failures \
                 WHERE holder = $1 AND identifier = $2 AND failures = 0 AND pending = 0",
            )
            .bind(holder.column())
            .bind(identifier)
            .execute(&self.pool)
            .await
            .map_err(from_sqlx)?;
            return Ok(());
        }
        let failures: i32 = sqlx::query_scalar(
            "INSERT INTO pass_code_failures AS f \
                 (holder, identifier, failures, pending, last_failure) \
             VALUES ($1, $2, 1, 0, now()) \
             ON CONFLICT (holder, identifier) DO UPDATE SET \
                 failures = f.failures + 1, pending = greatest(f.pending - 1, 0) \
             RETURNING failures",
        )
        .bind(holder.column())
        .bind(identifier)
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

    /// The `number` of the credential whose identifier is `identifier`, for a log line
    /// about it; `None` when there is none or it cannot be read.
    pub async fn number(&self, holder: Holder, identifier: &str) -> Option<String> {
        let statement = match holder {
            Holder::AccessToken => "SELECT number FROM access_tokens WHERE identifier = $1",
            Holder::Medium => {
                "SELECT number FROM customer_identification_mediums WHERE identifier = $1"
            }
        };
        sqlx::query_scalar(statement)
            .bind(identifier)
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten()
    }
}

/// What [`Lockout::take`] found.
#[derive(Debug)]
pub enum Take {
    /// A try to verify; settle it with [`Lockout::settle`].
    Slot(Slot),
    /// Locked: refuse the try unverified.
    Locked,
    /// Every try left is being verified now: ask again once one is settled.
    Busy,
}

/// A try [`Lockout::take`] gave, held while its pass code is verified: while any is
/// held for an identifier, this worker's heartbeat marks its row as in flight.
pub struct Slot {
    held: Arc<Held>,
    key: (Holder, String),
}

impl Slot {
    fn hold(held: &Arc<Held>, holder: Holder, identifier: &str) -> Slot {
        let key = (holder, identifier.to_owned());
        *held.tries().entry(key.clone()).or_insert(0) += 1;
        Slot {
            held: Arc::clone(held),
            key,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut tries = self.held.tries();
        if let Some(count) = tries.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                tries.remove(&self.key);
            }
        }
    }
}

impl std::fmt::Debug for Slot {
    // Never the identifier.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("holder", &self.key.0)
            .finish_non_exhaustive()
    }
}

/// Marks, every [`HEARTBEAT`], the rows of the tries this worker holds as in flight
/// (`pending_seen`), so that they keep holding their identifiers however long they
/// wait for a verifier; ends with the last [`Lockout`] and [`Slot`] of `held`. A
/// failed mark is logged and tried again at the next beat: at worst the tries expire
/// as a dead worker's would.
async fn heartbeat(held: Weak<Held>, pool: PgPool) {
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        let (holders, identifiers): (Vec<&'static str>, Vec<String>) = {
            let Some(held) = held.upgrade() else {
                return;
            };
            let tries = held.tries();
            tries
                .keys()
                .map(|(holder, identifier)| (holder.column(), identifier.clone()))
                .unzip()
        };
        if identifiers.is_empty() {
            continue;
        }
        let marked = sqlx::query(
            "UPDATE pass_code_failures SET pending_seen = now() \
             WHERE (holder, identifier) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
               AND pending > 0",
        )
        .bind(&holders)
        .bind(&identifiers)
        .execute(&pool)
        .await;
        if let Err(err) = marked {
            tracing::warn!(error = %err, "cannot mark the pass-code tries in flight as alive");
        }
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
