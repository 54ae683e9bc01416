//! The benchmark's data set: a realistic CRM database of `N` subscriptions, generated
//! with set-based SQL (`INSERT ... SELECT ... FROM generate_series`) into a database of
//! its own, recreated on each run and migrated with [`tucano_auth::store::prepare`].
//!
//! Every row is a function of its ordinal, so the load generator knows, without
//! reading the database, which entities exist and which of them authenticate:
//!
//! | entity | rows | rule |
//! |---|---|---|
//! | accounts receivable | `A = N - N/5` | account `j` |
//! | subscriptions | `N` | `i <= A`: account `i`'s first, type `i % 4`, mostly `EFFECTIVE` Tucano (about 2 % cancelled, draft or not Tucano); `i > A`: the second of account `i - A`, one each of `EFFECTIVE` Tucano, `CANCELLED`, `EFFECTIVE` not Tucano, `DRAFT` |
//! | installed items | `N + N/20` | one per subscription (1 in 89 `NOT_EFFECTIVE`) plus spare items with no subscription |
//! | access tokens, mediums | `A` each | one per account, mostly `EFFECTIVE`; every tenth also has an identifier and the shared pass code |
//! | API users, sessions | 200, 10,001 | the bench's user and session (login token [`SESSION_TOKEN`]) plus other users' old sessions |
//!
//! Ids are not random but scattered: the first 32 bits of entity `i`'s id are a
//! multiplicative hash of `i`, so the primary keys are spread over the index like
//! random UUIDs, yet the load generator can compute them ([`entity_id`]).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::Argon2;
use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, Executor as _, PgConnection};
use uuid::Uuid;

/// The bench session's login token (32 hex digits).
pub const SESSION_TOKEN: &str = "BE4C0000000000000000000000000001";

/// The pass code of every access token and medium that has an identifier.
pub const PASS_CODE: &str = "2468";

/// The subscription types: name and alternative code.
pub const TYPES: [(&str, &str); 4] = [
    ("Tucano Basic", "TUCANO-BASIC"),
    ("Tucano Premium", "TUCANO-PREMIUM"),
    ("Tucano Sports", "TUCANO-SPORTS"),
    ("Tucano Kids", "TUCANO-KIDS"),
];

/// Id tags: the second group of an entity id says which table it belongs to.
const API_USER: u16 = 1;
const SESSION: u16 = 2;
const ACCOUNT: u16 = 3;
const TYPE: u16 = 4;
const ITEM: u16 = 5;
/// Id tag of subscriptions.
pub const SUBSCRIPTION: u16 = 6;
const ACCESS_TOKEN: u16 = 7;
const MEDIUM: u16 = 8;

/// The shape of a data set of `subscriptions` subscriptions, and which of its entities
/// authenticate.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    /// Subscriptions, `N`.
    pub subscriptions: u64,
    /// Accounts receivable, `N - N/5`: the first `N/5` accounts have two subscriptions.
    pub accounts: u64,
}

impl Dataset {
    /// The data set of `subscriptions` subscriptions.
    pub fn new(subscriptions: u64) -> Dataset {
        Dataset {
            subscriptions,
            accounts: subscriptions - subscriptions / 5,
        }
    }

    /// Rows per table, for the log.
    pub fn rows(&self) -> u64 {
        let n = self.subscriptions;
        let a = self.accounts;
        n + (n + n / 20) + 3 * a + 200 + 10_001 + 4
    }

    /// Whether subscription `i` (1-based) is provisioned by Tucano and active.
    pub fn subscription_ok(&self, i: u64) -> bool {
        if i <= self.accounts {
            !(i.is_multiple_of(101) || i.is_multiple_of(103) || i.is_multiple_of(107))
        } else {
            (i - self.accounts).is_multiple_of(4)
        }
    }

    /// Whether installed item `i` is `EFFECTIVE` and leads to a good subscription.
    pub fn item_ok(&self, i: u64) -> bool {
        !i.is_multiple_of(89) && self.subscription_ok(i)
    }

    /// How many active Tucano subscriptions account `j` has (0, 1 or 2).
    fn active_subscriptions(&self, j: u64) -> u32 {
        let second = j <= self.subscriptions - self.accounts;
        u32::from(self.subscription_ok(j))
            + u32::from(second && self.subscription_ok(j + self.accounts))
    }

    /// Whether access token `j` authenticates (with the type filter of
    /// [`Dataset::token_type`] when the account has two subscriptions).
    pub fn token_ok(&self, j: u64) -> bool {
        !j.is_multiple_of(83) && !j.is_multiple_of(211) && self.active_subscriptions(j) >= 1
    }

    /// The subscription type name an access token of account `j` must name: its first
    /// subscription's, when the account has two active Tucano subscriptions.
    pub fn token_type(&self, j: u64) -> Option<&'static str> {
        (self.active_subscriptions(j) == 2).then(|| TYPES[(j % 4) as usize].0)
    }

    /// Whether medium `j` authenticates (mediums take no type filter).
    pub fn medium_ok(&self, j: u64) -> bool {
        !j.is_multiple_of(79) && !j.is_multiple_of(223) && self.active_subscriptions(j) == 1
    }
}

/// The id of entity `i` of the table tagged `tag`; [`id_sql`] computes the same in SQL.
pub fn entity_id(tag: u16, i: u64) -> Uuid {
    let scattered = (i.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF) as u32;
    let tail = (i & 0xFFFF_FFFF_FFFF).to_be_bytes();
    let d4 = [
        0x80, 0x00, tail[2], tail[3], tail[4], tail[5], tail[6], tail[7],
    ];
    Uuid::from_fields(scattered, tag, 0x4000, &d4)
}

/// SQL for [`entity_id`] of the bigint expression `ordinal`.
fn id_sql(tag: u16, ordinal: &str) -> String {
    format!(
        "(lpad(to_hex((({ordinal})::bigint * 2654435761) % 4294967296), 8, '0') || '-{tag:04x}-4000-8000-' \
         || lpad(to_hex(({ordinal})::bigint), 12, '0'))::uuid"
    )
}

/// A database name fit to be written into `CREATE`/`DROP DATABASE`.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !ok {
        bail!("database name '{name}' must be lower-case letters, digits and '_' (at most 63)");
    }
    Ok(())
}

/// Drops database `name` on the server at `server_url` (no database in the URL), if it
/// exists, ending its sessions.
pub async fn drop_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let mut admin = PgConnection::connect(&format!("{server_url}/postgres"))
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {}",
                tucano_auth::redact::url(server_url)
            )
        })?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .with_context(|| format!("cannot drop the database {name}"))?;
    let _ = admin.close().await;
    Ok(())
}

/// What loading took.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// Hashing the one pass code.
    pub hashing: Duration,
    /// Reading the tables and indexes into the page cache (part of `total`).
    pub warming: Duration,
    /// The whole load, migrations, `VACUUM ANALYZE` and `CHECKPOINT` included.
    pub total: Duration,
}

/// Recreates database `name`, migrates it and loads `dataset` into it.
pub async fn load(server_url: &str, name: &str, dataset: Dataset) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    drop_database(server_url, name).await?;
    let url = format!("{server_url}/{name}");
    let pool = tucano_auth::store::prepare(&url, 1)
        .await
        .context("creating and migrating the bench database")?;
    pool.close().await;

    // One pass code, hashed once with the worker's parameters; every row shares it.
    let hashing_started = Instant::now();
    let salt = SaltString::encode_b64(Uuid::new_v4().as_bytes())
        .map_err(|err| anyhow::anyhow!("cannot encode a salt: {err}"))?;
    let pass_code_hash = Argon2::default()
        .hash_password(PASS_CODE.as_bytes(), &salt)
        .map_err(|err| anyhow::anyhow!("cannot hash the pass code: {err}"))?
        .to_string();
    let hashing = hashing_started.elapsed();

    let mut conn = PgConnection::connect(&url)
        .await
        .context("cannot connect to the bench database")?;
    conn.execute("SET synchronous_commit = off").await?;
    // The rows are consistent by construction: without the foreign keys' per-row
    // triggers, 10M subscriptions (44.5M rows, VACUUM and CHECKPOINT included) loaded in
    // 814 s instead of 1,842 s. Only a superuser may; anyone else loads with the checks.
    if let Err(err) = conn.execute("SET session_replication_role = replica").await {
        eprintln!("note: loading with the foreign-key checks ({err})");
    }
    conn.execute("SET maintenance_work_mem = '256MB'").await?;
    let mut tx = conn.begin().await?;
    let n = dataset.subscriptions as i64;
    let a = dataset.accounts as i64;

    sqlx::query(&format!(
        "INSERT INTO api_users (id, username, organisation, life_cycle_state) \
         SELECT {id}, CASE WHEN g = 1 THEN 'bench' ELSE 'api-user-' || g END, 'Org ' || (g % 10), \
         CASE WHEN g % 10 = 0 THEN 'INACTIVE' ELSE 'ACTIVE' END FROM generate_series(1, 200) g",
        id = id_sql(API_USER, "g")
    ))
    .execute(&mut *tx)
    .await
    .context("loading api_users")?;

    sqlx::query(&format!(
        "INSERT INTO sessions (id, api_user_id, token_sha256, issued_at, expires_at) \
         VALUES ({id}, {user}, $1, now(), now() + interval '7 days')",
        id = id_sql(SESSION, "1"),
        user = id_sql(API_USER, "1")
    ))
    .bind(&Sha256::digest(SESSION_TOKEN.to_ascii_uppercase().as_bytes())[..])
    .execute(&mut *tx)
    .await
    .context("loading the bench session")?;
    sqlx::query(&format!(
        "INSERT INTO sessions (id, api_user_id, token_sha256, issued_at, expires_at, released_at) \
         SELECT {id}, {user}, sha256(convert_to(upper(md5('session ' || g)), 'UTF8')), \
         now() - interval '2 days', now() + (g % 3 - 1) * interval '1 day', \
         CASE WHEN g % 4 = 0 THEN now() - interval '1 hour' END \
         FROM generate_series(2, 10001) g",
        id = id_sql(SESSION, "g"),
        user = id_sql(API_USER, "2 + g % 199")
    ))
    .execute(&mut *tx)
    .await
    .context("loading sessions")?;

    sqlx::query(&format!(
        "INSERT INTO accounts_receivable (id, number, name, life_cycle_state) \
         SELECT {id}, 'AR' || lpad(g::text, 10, '0'), 'Subscriber ' || g, \
         CASE WHEN g % 50 = 0 THEN 'SUSPENDED' ELSE 'ACTIVE' END FROM generate_series(1, $1) g",
        id = id_sql(ACCOUNT, "g")
    ))
    .bind(a)
    .execute(&mut *tx)
    .await
    .context("loading accounts_receivable")?;

    for (k, (name, code)) in TYPES.iter().enumerate() {
        sqlx::query(&format!(
            "INSERT INTO subscription_types (id, name, alternative_code) VALUES ({id}, $1, $2)",
            id = id_sql(TYPE, &(k + 1).to_string())
        ))
        .bind(name)
        .bind(code)
        .execute(&mut *tx)
        .await
        .context("loading subscription_types")?;
    }

    // Subscription i <= A is account i's first; i > A is account (i - A)'s second.
    let account = "CASE WHEN i <= $2 THEN i ELSE i - $2 END";
    let kind = "(CASE WHEN i <= $2 THEN i % 4 ELSE ((i - $2) % 4 + 1) % 4 END) + 1";
    sqlx::query(&format!(
        "INSERT INTO subscriptions (id, number, accounts_receivable_id, subscription_type_id, \
         life_cycle_state, provisioning_provider) \
         SELECT {id}, 'S' || lpad(i::text, 10, '0'), {account_id}, {type_id}, \
         CASE WHEN i <= $2 THEN CASE WHEN i % 101 = 0 THEN 'CANCELLED' WHEN i % 103 = 0 THEN 'DRAFT' \
              WHEN i % 37 = 0 THEN 'IN_RESTING' WHEN i % 41 = 0 THEN 'SHORT_TERM_EFFECTIVE' ELSE 'EFFECTIVE' END \
         ELSE (ARRAY['EFFECTIVE', 'CANCELLED', 'EFFECTIVE', 'DRAFT'])[((i - $2) % 4 + 1)::int] END, \
         CASE WHEN (i <= $2 AND i % 107 = 0) OR (i > $2 AND (i - $2) % 4 = 2) THEN NULL ELSE 'TUCANO' END \
         FROM generate_series(1, $1::bigint) i",
        id = id_sql(SUBSCRIPTION, "i"),
        account_id = id_sql(ACCOUNT, account),
        type_id = id_sql(TYPE, kind),
    ))
    .bind(n)
    .bind(a)
    .execute(&mut *tx)
    .await
    .context("loading subscriptions")?;

    sqlx::query(&format!(
        "INSERT INTO installed_items (id, serial_number, alternative_code, state, subscription_id) \
         SELECT {id}, 'SN' || lpad(i::text, 10, '0'), 'STB' || lpad(i::text, 10, '0'), \
         CASE WHEN i % 89 = 0 THEN 'NOT_EFFECTIVE' ELSE 'EFFECTIVE' END, \
         CASE WHEN i <= $1 THEN {subscription} END \
         FROM generate_series(1, $1::bigint + $1::bigint / 20) i",
        id = id_sql(ITEM, "i"),
        subscription = id_sql(SUBSCRIPTION, "i"),
    ))
    .bind(n)
    .execute(&mut *tx)
    .await
    .context("loading installed_items")?;

    for (table, tag, number, code, identifier, not_effective, pending) in [
        ("access_tokens", ACCESS_TOKEN, "AT", "AC", "user-", 83, 211),
        (
            "customer_identification_mediums",
            MEDIUM,
            "MN",
            "CIM",
            "card-",
            79,
            223,
        ),
    ] {
        sqlx::query(&format!(
            "INSERT INTO {table} (id, number, authentication_code, identifier, pass_code_hash, \
             life_cycle_state, accounts_receivable_id) \
             SELECT {id}, '{number}' || lpad(j::text, 10, '0'), '{code}' || lpad(j::text, 10, '0'), \
             CASE WHEN j % 10 = 0 THEN '{identifier}' || lpad(j::text, 10, '0') END, \
             CASE WHEN j % 10 = 0 THEN $2 END, \
             CASE WHEN j % {not_effective} = 0 THEN 'NOT_EFFECTIVE' \
                  WHEN j % {pending} = 0 THEN 'PENDING_VERIFICATION' ELSE 'EFFECTIVE' END, \
             {account} FROM generate_series(1, $1::bigint) j",
            id = id_sql(tag, "j"),
            account = id_sql(ACCOUNT, "j"),
        ))
        .bind(a)
        .bind(&pass_code_hash)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("loading {table}"))?;
    }
    tx.commit().await.context("committing the data set")?;
    // Hint bits, visibility map and statistics, as in a database in steady state.
    conn.execute("VACUUM (ANALYZE)")
        .await
        .context("VACUUM ANALYZE of the bench database")?;
    // Written out now, not while the rounds run: after a large load, the checkpoint
    // spread over the next minutes wrote gigabytes under the measurement.
    conn.execute("CHECKPOINT")
        .await
        .context("CHECKPOINT after loading the bench database")?;
    // Every table and index read once into the OS page cache, as a database in service
    // has them: freshly loaded, 10M subscriptions answered their first round at 56 % of
    // 100,000's and the later rounds at 92 to 102 %, the cache warming under the load.
    let warming_started = Instant::now();
    let warmed = async {
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            .await?;
        conn.execute(
            "SELECT pg_prewarm(c.oid, 'read') FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')",
        )
        .await
    }
    .await;
    if let Err(err) = warmed {
        eprintln!("note: the data set is not read into the page cache: pg_prewarm: {err}");
    }
    let warming = warming_started.elapsed();
    let _ = conn.close().await;
    Ok(Loaded {
        hashing,
        warming,
        total: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_scattered_and_keep_their_ordinal() {
        let id = entity_id(SUBSCRIPTION, 329);
        let text = id.hyphenated().to_string();
        assert!(text.ends_with("-0006-4000-8000-000000000149"), "{text}");
        assert_ne!(entity_id(SUBSCRIPTION, 1).as_fields().0, 1);
    }

    #[test]
    fn most_entities_authenticate() {
        let data = Dataset::new(100_000);
        let good = (1..=data.subscriptions)
            .filter(|&i| data.subscription_ok(i))
            .count();
        assert!(good > 80_000, "{good}");
        let tokens = (1..=data.accounts).filter(|&j| data.token_ok(j)).count();
        assert!(tokens > 70_000, "{tokens}");
        let mediums = (1..=data.accounts).filter(|&j| data.medium_ok(j)).count();
        assert!(mediums > 60_000, "{mediums}");
    }
}
