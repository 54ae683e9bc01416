//! PostgreSQL: the pool, migrations, login-token checks and subscription resolution.
//!
//! [`prepare`] (`prepare.rs`) turns a database URL into a migrated pool at startup.
//! [`Store`] answers a request's two checks in one read, [`Store::authenticate`]: the
//! login token (step 5 of the order of checks of docs/protocol.md §3, `login.rs`) and which
//! subscription the identifier leads to (step 6, `resolve.rs`), both from one row of
//! the batched lookup statement (`lookup/`); a pass code is verified on the
//! [`pass_code`] threads, within the [`lockout`]. The demo data of docs/protocol.md §6
//! lives in [`seed`]. All SQL is checked at run time, since no database exists at
//! build time. The lookup statement runs on tokio-postgres connections of its own,
//! everything else (migrations, the lockout, the operator's data commands) on the sqlx
//! pool; the statement's errors go through
//! [`Error::from_postgres`](crate::error::Error::from_postgres), so connection trouble
//! is retried, never reported as a subscriber's fault.

pub mod lockout;
mod login;
mod lookup;
pub mod pass_code;
mod prepare;
mod resolve;
pub mod seed;
mod sslmode;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Error;
use crate::keys::Current;
use crate::request::Identifier;
use crate::secret::Secret;
use chrono::{DateTime, Utc};

pub use lookup::LookupCounts;
pub use lookup::INACTIVE_STATES;
pub use prepare::{prepare, prepare_read, unreachable, wait_for, ACQUIRE_TIMEOUT};
pub use seed::{seed_demo, DemoData};

/// The most lookup statements in flight at once. Normally there is one: the requests
/// that arrive while it runs gather into the next (on the 2-core benchmark machine, one
/// at a time gave 58.8-63.3 % of the echo ceiling and PostgreSQL 36-42 µs per request;
/// two at a time 48.4-56.3 % and 57-74 µs). A second, third and fourth are sent only
/// beside statements that have stalled (see `lookup.rs`), each on a lookup connection
/// of its own; the sqlx pool serves the migrations and the health probe.
pub const LOOKUP_CONCURRENCY: usize = 4;

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
        let config = prepare::lookup_config(database_url, "DATABASE_URL or DATABASE_READ_URL")?;
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

    /// Steps 5 and 6 of the order of checks (docs/protocol.md §3) in one read: checks the login
    /// `token` at time `now` (`login.rs`), then resolves `identifier` (`resolve.rs`).
    /// The login token's verdict comes first; a token refused without the database
    /// (malformed, badly signed, expired JWT) reads nothing.
    pub async fn authenticate(
        &self,
        token: &Secret,
        identifier: &Identifier,
        now: DateTime<Utc>,
    ) -> Result<Subscription, Error> {
        let session = login::session_key(&self.crm_token_keys.get(), token, now)?;
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
    fn ids_are_shown_as_upper_case_hex() {
        let id = Uuid::from_u128(0x75E3E501_39F2_4DC3_A6C9_AA0C026D0292);
        assert_eq!(show_id(&id), "75E3E50139F24DC3A6C9AA0C026D0292");
    }
}
