//! Tests of the store against a real PostgreSQL (postgres://postgres@127.0.0.1:5432,
//! trust authentication): migrations, login tokens, resolution and the demo data.
//!
//! Each test runs on its own database `tucano_auth_test_<uuid>`, created by
//! `prepare` and dropped (`WITH (FORCE)`) afterwards even when the test fails; every
//! wait is bounded by [`TIMEOUT`]. Rows are inserted with plain SQL by the helpers
//! below.

#![allow(clippy::unwrap_used)]

#[path = "store/batch.rs"]
mod batch;
#[path = "store/login.rs"]
mod login;
#[path = "store/resolve.rs"]
mod resolve;
#[path = "store/seed.rs"]
mod seed;

use std::future::Future;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tokio::time::timeout;
use uuid::Uuid;

use tucano_auth::error::{Code, Error};
use tucano_auth::request::{Identifier, SubscriptionKey};
use tucano_auth::secret::Secret;
use tucano_auth::store::{prepare, Store, Subscription};

/// The two checks of a request, one at a time, as these tests look at them. Both go
/// through [`Store::authenticate`], the one read the worker makes.
pub(crate) trait Checks {
    /// The login token's verdict at `now`: authenticates an identifier that names
    /// nothing, so a token that passes gets `NOT_FOUND`, which is `Ok` here.
    async fn check_login(&self, token: &Secret, now: DateTime<Utc>) -> Result<(), Error>;
    /// The identifier's verdict, with a login token of its own that is valid.
    async fn resolve(&self, identifier: &Identifier) -> Result<Subscription, Error>;
}

impl Checks for Store {
    async fn check_login(&self, token: &Secret, now: DateTime<Utc>) -> Result<(), Error> {
        let nothing = Identifier::Subscription(SubscriptionKey::Number(
            "no subscription has this number".to_owned(),
        ));
        match self.authenticate(token, &nothing, now).await {
            Err(err) if err.code() == Code::NotFound => Ok(()),
            Err(err) => Err(err),
            Ok(found) => panic!("{found:?} was found by a number no subscription has"),
        }
    }

    async fn resolve(&self, identifier: &Identifier) -> Result<Subscription, Error> {
        let token = Uuid::new_v4().simple().to_string();
        let user = insert_user(self.pool(), "ACTIVE").await;
        let expires_at = Utc::now() + chrono::Duration::days(1);
        insert_session(self.pool(), user, Some(&token), expires_at, None).await;
        self.authenticate(&Secret::new(token), identifier, Utc::now())
            .await
    }
}

/// The bound on every wait of a test (Argon2 is slow in debug builds).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The `CRM_TOKEN_SECRET` of stores made by [`with_store`].
pub(crate) const CRM_SECRET: &str = "crm-login-token-secret-of-at-least-32-bytes";

/// Runs `body` against a store on a fresh, migrated database, then drops the database,
/// also when `body` panics or times out.
pub(crate) async fn with_store<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_store_configured(Some(CRM_SECRET), body).await;
}

/// [`with_store`] with a chosen `CRM_TOKEN_SECRET`.
pub(crate) async fn with_store_configured<F, Fut>(crm_secret: Option<&str>, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = format!("tucano_auth_test_{}", Uuid::new_v4().simple());
    let url = format!("{SERVER}/{name}");
    let pool = match timeout(TIMEOUT, prepare(&url, 4)).await {
        Ok(Ok(pool)) => pool,
        Ok(Err(err)) => {
            drop_database(&name).await;
            panic!("prepare failed: {err:#}");
        }
        Err(_) => {
            drop_database(&name).await;
            panic!("prepare timed out");
        }
    };
    let store = Store::new(pool.clone(), &url, crm_secret.map(Secret::new)).expect("store");
    let outcome = tokio::spawn(timeout(TIMEOUT, body(store))).await;
    let _ = timeout(TIMEOUT, pool.close()).await;
    drop_database(&name).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("the test timed out after {TIMEOUT:?}"),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("the test task failed: {err}"),
    }
}

async fn drop_database(name: &str) {
    let drop = async {
        let admin = PgPool::connect(&format!("{SERVER}/postgres")).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&admin)
            .await?;
        admin.close().await;
        Ok::<_, sqlx::Error>(())
    };
    match timeout(TIMEOUT, drop).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("could not drop the test database {name}: {err}"),
        Err(_) => eprintln!("dropping the test database {name} timed out"),
    }
}

/// An Argon2id hash with the least cost the worker computes (8 MiB, one iteration), so
/// tests stay fast; verification reads the parameters from the hash.
pub(crate) fn cheap_hash(pass_code: &str) -> String {
    let params = Params::new(8 * 1024, 1, 1, None).unwrap();
    let salt = SaltString::encode_b64(Uuid::new_v4().as_bytes()).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(pass_code.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// SHA-256 of a 32-hex login token as the sessions table stores it.
pub(crate) fn token_sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.to_ascii_uppercase().as_bytes()).to_vec()
}

pub(crate) async fn insert_user(pool: &PgPool, state: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO api_users (username, organisation, life_cycle_state) \
         VALUES ($1, 'Test', $2) RETURNING id",
    )
    .bind(format!("user-{}", Uuid::new_v4().simple()))
    .bind(state)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub(crate) async fn insert_session(
    pool: &PgPool,
    user: Uuid,
    token: Option<&str>,
    expires_at: DateTime<Utc>,
    released_at: Option<DateTime<Utc>>,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO sessions (api_user_id, token_sha256, expires_at, released_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(user)
    .bind(token.map(token_sha256))
    .bind(expires_at)
    .bind(released_at)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub(crate) async fn insert_account(pool: &PgPool, number: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO accounts_receivable (number, name, life_cycle_state) \
         VALUES ($1, 'Test account', 'ACTIVE') RETURNING id",
    )
    .bind(number)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub(crate) async fn insert_type(pool: &PgPool, name: &str, alternative_code: Option<&str>) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO subscription_types (name, alternative_code) VALUES ($1, $2) RETURNING id",
    )
    .bind(name)
    .bind(alternative_code)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub(crate) async fn insert_subscription(
    pool: &PgPool,
    number: &str,
    account: Uuid,
    kind: Uuid,
    state: &str,
    provider: Option<&str>,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO subscriptions (number, accounts_receivable_id, subscription_type_id, \
         life_cycle_state, provisioning_provider) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(number)
    .bind(account)
    .bind(kind)
    .bind(state)
    .bind(provider)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub(crate) async fn insert_item(
    pool: &PgPool,
    serial_number: &str,
    alternative_code: Option<&str>,
    state: &str,
    subscription: Option<Uuid>,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO installed_items (serial_number, alternative_code, state, subscription_id) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(serial_number)
    .bind(alternative_code)
    .bind(state)
    .bind(subscription)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// An access token (`table` = `access_tokens`) or medium
/// (`customer_identification_mediums`) named `<code>` by authentication code and
/// `<code>-id` by identifier, with `pass_code` (none: null hash).
pub(crate) async fn insert_credential(
    pool: &PgPool,
    table: &str,
    code: &str,
    pass_code: Option<&str>,
    state: &str,
    account: Uuid,
) -> Uuid {
    sqlx::query_scalar(&format!(
        "INSERT INTO {table} (number, authentication_code, identifier, pass_code_hash, \
         life_cycle_state, accounts_receivable_id) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
    ))
    .bind(format!("N-{code}"))
    .bind(code)
    .bind(format!("{code}-id"))
    .bind(pass_code.map(cheap_hash))
    .bind(state)
    .bind(account)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn prepare_runs_again_on_a_migrated_database() {
    let name = format!("tucano_auth_test_{}", Uuid::new_v4().simple());
    let url = format!("{SERVER}/{name}");
    let outcome = async {
        let first = timeout(TIMEOUT, prepare(&url, 2)).await.unwrap().unwrap();
        first.close().await;
        let second = timeout(TIMEOUT, prepare(&url, 2)).await.unwrap().unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('api_users', 'sessions', 'accounts_receivable', \
             'subscription_types', 'subscriptions', 'installed_items', 'access_tokens', \
             'customer_identification_mediums')",
        )
        .fetch_one(&second)
        .await
        .unwrap();
        second.close().await;
        tables
    };
    let tables = timeout(TIMEOUT, outcome).await;
    drop_database(&name).await;
    assert_eq!(tables.unwrap(), 8);
}

#[tokio::test]
async fn prepare_failure_names_the_url_without_its_password() {
    // Port 1 on loopback refuses at once.
    let err = timeout(
        TIMEOUT,
        prepare("postgres://app:hunter2@127.0.0.1:1/tucano", 1),
    )
    .await
    .unwrap()
    .unwrap_err();
    let shown = format!("{err:#}");
    assert!(
        shown.contains("postgres://app@127.0.0.1:1/tucano (password hidden)"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn a_url_the_lookup_client_refuses_stops_prepare_before_it_creates_anything() {
    // sqlx takes this parameter; the lookup statement's client does not.
    let name = format!("tucano_auth_test_{}", Uuid::new_v4().simple());
    let url = format!("{SERVER}/{name}?statement-cache-capacity=10");
    let err = timeout(TIMEOUT, prepare(&url, 1))
        .await
        .unwrap()
        .unwrap_err();
    let shown = format!("{err:#}");
    assert!(shown.contains("DATABASE_URL"), "{shown}");
    assert!(shown.contains("statement-cache-capacity"), "{shown}");
    let admin = PgPool::connect(&format!("{SERVER}/postgres"))
        .await
        .unwrap();
    let created: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&admin)
            .await
            .unwrap();
    admin.close().await;
    if created {
        drop_database(&name).await;
    }
    assert!(!created, "no database created for a refused URL");
}
