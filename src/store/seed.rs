//! The demo data of docs/protocol.md §6: the seed page's example plus enough rows to
//! try every identifier path and most status codes by hand.
//!
//! Loading is idempotent: every row has a fixed id and is upserted, so re-running
//! restores the demo values, re-hashes the pass codes and moves the session's expiry to
//! a year from the new load.
//!
//! | what | values |
//! |---|---|
//! | API user | `demo` (organisation `Demo`), `ACTIVE` |
//! | session | login token `35108255345D4F98ABFD7810A08E432F`, valid for a year from loading |
//! | subscription types | `Tucano Basic` (alternative code `TUCANO-BASIC`), `Tucano Premium` (`TUCANO-PREMIUM`) |
//! | account `AR0000000001` | `S0000000329` id `75E3E50139F24DC3A6C9AA0C026D0292`, Tucano Basic, `EFFECTIVE`, Tucano: **the** demo subscription |
//! | | `S0000000332`, `EFFECTIVE`, no provisioning provider (`NOT_PROVISIONED_BY_TUCANO`) |
//! | | `S0000000333`, Tucano, `CANCELLED` (`SUBSCRIPTION_INACTIVE`) |
//! | | installed item serial `SN-0001` (alternative code `STB-0001`), `EFFECTIVE`, on `S0000000329` |
//! | | installed item serial `SN-0002`, `NOT_EFFECTIVE`, on `S0000000329` (`NOT_EFFECTIVE`) |
//! | | access token `AT0000000001`: authentication code `AC-0001`, identifier `demo-user-1`, pass code `1234` → `S0000000329` |
//! | | medium `CIM0000000001`: authentication code `CIM-AC-0001`, identifier `demo-card-1`, pass code `5678` → `S0000000329` |
//! | account `AR0000000002` | `S0000000330` Tucano Basic and `S0000000331` Tucano Premium, both `EFFECTIVE`, Tucano |
//! | | access token `AT0000000002`: authentication code `AC-0002`, identifier `demo-user-2`, pass code `2468`: `AMBIGUOUS_SUBSCRIPTION` alone, `S0000000331` with `subscription_type_identifier {"name": "Tucano Premium"}` |

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::pass_code;

/// The demo login token (the seed page's example).
pub const SESSION_TOKEN: &str = "35108255345D4F98ABFD7810A08E432F";
/// The demo API user's username.
pub const API_USERNAME: &str = "demo";
/// The demo subscription's number (the seed page's example).
pub const SUBSCRIPTION_NUMBER: &str = "S0000000329";
/// The demo subscription's id (the seed page's example).
pub const SUBSCRIPTION_ID: Uuid = Uuid::from_u128(0x75E3E501_39F2_4DC3_A6C9_AA0C026D0292);
/// A subscription of the first account that is not provisioned by Tucano.
pub const NOT_TUCANO_SUBSCRIPTION_NUMBER: &str = "S0000000332";
/// A cancelled Tucano subscription of the first account.
pub const CANCELLED_SUBSCRIPTION_NUMBER: &str = "S0000000333";
/// The first subscription type, of `S0000000329` and `S0000000330`.
pub const BASIC_TYPE_NAME: &str = "Tucano Basic";
/// The first subscription type's alternative code.
pub const BASIC_TYPE_ALTERNATIVE_CODE: &str = "TUCANO-BASIC";
/// The second subscription type, of `S0000000331`.
pub const PREMIUM_TYPE_NAME: &str = "Tucano Premium";
/// The second subscription type's alternative code.
pub const PREMIUM_TYPE_ALTERNATIVE_CODE: &str = "TUCANO-PREMIUM";
/// The `EFFECTIVE` installed item on `S0000000329`.
pub const INSTALLED_ITEM_SERIAL_NUMBER: &str = "SN-0001";
/// Its alternative code.
pub const INSTALLED_ITEM_ALTERNATIVE_CODE: &str = "STB-0001";
/// A `NOT_EFFECTIVE` installed item on `S0000000329`.
pub const NOT_EFFECTIVE_ITEM_SERIAL_NUMBER: &str = "SN-0002";
/// The first account's access token: authentication code.
pub const ACCESS_TOKEN_AUTHENTICATION_CODE: &str = "AC-0001";
/// The first account's access token: identifier.
pub const ACCESS_TOKEN_IDENTIFIER: &str = "demo-user-1";
/// The first account's access token: pass code.
pub const ACCESS_TOKEN_PASS_CODE: &str = "1234";
/// The first account's medium: authentication code.
pub const MEDIUM_AUTHENTICATION_CODE: &str = "CIM-AC-0001";
/// The first account's medium: identifier.
pub const MEDIUM_IDENTIFIER: &str = "demo-card-1";
/// The first account's medium: pass code.
pub const MEDIUM_PASS_CODE: &str = "5678";
/// The second account's access token (two Tucano subscriptions): authentication code.
pub const AMBIGUOUS_AUTHENTICATION_CODE: &str = "AC-0002";
/// The second account's access token: identifier.
pub const AMBIGUOUS_IDENTIFIER: &str = "demo-user-2";
/// The second account's access token: pass code.
pub const AMBIGUOUS_PASS_CODE: &str = "2468";
/// The second account's Tucano Basic subscription.
pub const SECOND_BASIC_SUBSCRIPTION_NUMBER: &str = "S0000000330";
/// The second account's Tucano Premium subscription.
pub const SECOND_PREMIUM_SUBSCRIPTION_NUMBER: &str = "S0000000331";

/// Fixed ids of the other demo rows (`DE00…` so they stand out).
const API_USER_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0001);
const SESSION_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0002);
const ACCOUNT_1_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0011);
const ACCOUNT_2_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0012);
const BASIC_TYPE_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0021);
const PREMIUM_TYPE_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0022);
const NOT_TUCANO_SUBSCRIPTION_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0032);
const CANCELLED_SUBSCRIPTION_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0033);
const SECOND_BASIC_SUBSCRIPTION_ID: Uuid =
    Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0030);
const SECOND_PREMIUM_SUBSCRIPTION_ID: Uuid =
    Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0031);
const INSTALLED_ITEM_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0041);
const NOT_EFFECTIVE_ITEM_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0042);
const ACCESS_TOKEN_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0051);
const AMBIGUOUS_ACCESS_TOKEN_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0052);
const MEDIUM_ID: Uuid = Uuid::from_u128(0xDE00_0000_0000_4000_8000_0000_0000_0061);

/// What [`seed_demo`] loaded, for the README, the `--demo` log and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoData {
    /// The login token of the demo session.
    pub session_token: &'static str,
    /// When the demo session expires (a year after loading).
    pub session_expires_at: DateTime<Utc>,
    /// The demo API user.
    pub api_username: &'static str,
    /// The demo subscription's id.
    pub subscription_id: Uuid,
    /// The demo subscription's number.
    pub subscription_number: &'static str,
    /// The `EFFECTIVE` installed item's serial number (leads to the demo subscription).
    pub installed_item_serial_number: &'static str,
    /// The access token's authentication code (leads to the demo subscription).
    pub access_token_authentication_code: &'static str,
    /// The access token's identifier.
    pub access_token_identifier: &'static str,
    /// The access token's pass code.
    pub access_token_pass_code: &'static str,
    /// The medium's authentication code (leads to the demo subscription).
    pub medium_authentication_code: &'static str,
    /// The medium's identifier.
    pub medium_identifier: &'static str,
    /// The medium's pass code.
    pub medium_pass_code: &'static str,
    /// The first subscription type's name (of the demo subscription).
    pub basic_type_name: &'static str,
    /// The second subscription type's name.
    pub premium_type_name: &'static str,
    /// The authentication code of the access token that is ambiguous without a type.
    pub ambiguous_authentication_code: &'static str,
    /// The subscription it leads to with `premium_type_name` as the type filter.
    pub premium_subscription_number: &'static str,
}

/// Loads the demo data (see the module docs for every value); safe to run again.
pub async fn seed_demo(pool: &PgPool) -> anyhow::Result<DemoData> {
    let now = Utc::now();
    let session_expires_at = now + Duration::days(365);
    let codes = [
        ACCESS_TOKEN_PASS_CODE,
        MEDIUM_PASS_CODE,
        AMBIGUOUS_PASS_CODE,
    ];
    let [access_token_hash, medium_hash, ambiguous_hash] =
        tokio::task::spawn_blocking(move || -> anyhow::Result<[String; 3]> {
            Ok([
                pass_code::hash(codes[0])?,
                pass_code::hash(codes[1])?,
                pass_code::hash(codes[2])?,
            ])
        })
        .await
        .context("hashing the demo pass codes panicked")??;

    let mut tx = pool
        .begin()
        .await
        .context("could not start the demo data transaction")?;
    sqlx::query(
        "INSERT INTO api_users (id, username, organisation, life_cycle_state) \
         VALUES ($1, $2, 'Demo', 'ACTIVE') \
         ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username, \
         organisation = EXCLUDED.organisation, life_cycle_state = EXCLUDED.life_cycle_state",
    )
    .bind(API_USER_ID)
    .bind(API_USERNAME)
    .execute(&mut *tx)
    .await
    .context("could not load the demo API user")?;

    sqlx::query(
        "INSERT INTO sessions (id, api_user_id, token_sha256, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET api_user_id = EXCLUDED.api_user_id, \
         token_sha256 = EXCLUDED.token_sha256, issued_at = EXCLUDED.issued_at, \
         expires_at = EXCLUDED.expires_at, released_at = NULL",
    )
    .bind(SESSION_ID)
    .bind(API_USER_ID)
    .bind(&Sha256::digest(SESSION_TOKEN.as_bytes())[..])
    .bind(now)
    .bind(session_expires_at)
    .execute(&mut *tx)
    .await
    .context("could not load the demo session")?;

    for (id, number, name) in [
        (ACCOUNT_1_ID, "AR0000000001", "Demo Subscriber One"),
        (ACCOUNT_2_ID, "AR0000000002", "Demo Subscriber Two"),
    ] {
        sqlx::query(
            "INSERT INTO accounts_receivable (id, number, name, life_cycle_state) \
             VALUES ($1, $2, $3, 'ACTIVE') \
             ON CONFLICT (id) DO UPDATE SET number = EXCLUDED.number, name = EXCLUDED.name, \
             life_cycle_state = EXCLUDED.life_cycle_state",
        )
        .bind(id)
        .bind(number)
        .bind(name)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("could not load the demo account {number}"))?;
    }

    for (id, name, code) in [
        (BASIC_TYPE_ID, BASIC_TYPE_NAME, BASIC_TYPE_ALTERNATIVE_CODE),
        (
            PREMIUM_TYPE_ID,
            PREMIUM_TYPE_NAME,
            PREMIUM_TYPE_ALTERNATIVE_CODE,
        ),
    ] {
        sqlx::query(
            "INSERT INTO subscription_types (id, name, alternative_code) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, \
             alternative_code = EXCLUDED.alternative_code",
        )
        .bind(id)
        .bind(name)
        .bind(code)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("could not load the demo subscription type {name}"))?;
    }

    let tucano = Some("TUCANO");
    for (id, number, account, kind, state, provider) in [
        (
            SUBSCRIPTION_ID,
            SUBSCRIPTION_NUMBER,
            ACCOUNT_1_ID,
            BASIC_TYPE_ID,
            "EFFECTIVE",
            tucano,
        ),
        (
            NOT_TUCANO_SUBSCRIPTION_ID,
            NOT_TUCANO_SUBSCRIPTION_NUMBER,
            ACCOUNT_1_ID,
            BASIC_TYPE_ID,
            "EFFECTIVE",
            None,
        ),
        (
            CANCELLED_SUBSCRIPTION_ID,
            CANCELLED_SUBSCRIPTION_NUMBER,
            ACCOUNT_1_ID,
            BASIC_TYPE_ID,
            "CANCELLED",
            tucano,
        ),
        (
            SECOND_BASIC_SUBSCRIPTION_ID,
            SECOND_BASIC_SUBSCRIPTION_NUMBER,
            ACCOUNT_2_ID,
            BASIC_TYPE_ID,
            "EFFECTIVE",
            tucano,
        ),
        (
            SECOND_PREMIUM_SUBSCRIPTION_ID,
            SECOND_PREMIUM_SUBSCRIPTION_NUMBER,
            ACCOUNT_2_ID,
            PREMIUM_TYPE_ID,
            "EFFECTIVE",
            tucano,
        ),
    ] {
        sqlx::query(
            "INSERT INTO subscriptions \
             (id, number, accounts_receivable_id, subscription_type_id, life_cycle_state, provisioning_provider) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET number = EXCLUDED.number, \
             accounts_receivable_id = EXCLUDED.accounts_receivable_id, \
             subscription_type_id = EXCLUDED.subscription_type_id, \
             life_cycle_state = EXCLUDED.life_cycle_state, \
             provisioning_provider = EXCLUDED.provisioning_provider",
        )
        .bind(id)
        .bind(number)
        .bind(account)
        .bind(kind)
        .bind(state)
        .bind(provider)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("could not load the demo subscription {number}"))?;
    }

    for (id, serial, code, state) in [
        (
            INSTALLED_ITEM_ID,
            INSTALLED_ITEM_SERIAL_NUMBER,
            Some(INSTALLED_ITEM_ALTERNATIVE_CODE),
            "EFFECTIVE",
        ),
        (
            NOT_EFFECTIVE_ITEM_ID,
            NOT_EFFECTIVE_ITEM_SERIAL_NUMBER,
            None,
            "NOT_EFFECTIVE",
        ),
    ] {
        sqlx::query(
            "INSERT INTO installed_items (id, serial_number, alternative_code, state, subscription_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET serial_number = EXCLUDED.serial_number, \
             alternative_code = EXCLUDED.alternative_code, state = EXCLUDED.state, \
             subscription_id = EXCLUDED.subscription_id",
        )
        .bind(id)
        .bind(serial)
        .bind(code)
        .bind(state)
        .bind(SUBSCRIPTION_ID)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("could not load the demo installed item {serial}"))?;
    }

    for (table, id, number, code, identifier, hash, account) in [
        (
            "access_tokens",
            ACCESS_TOKEN_ID,
            "AT0000000001",
            ACCESS_TOKEN_AUTHENTICATION_CODE,
            ACCESS_TOKEN_IDENTIFIER,
            access_token_hash,
            ACCOUNT_1_ID,
        ),
        (
            "access_tokens",
            AMBIGUOUS_ACCESS_TOKEN_ID,
            "AT0000000002",
            AMBIGUOUS_AUTHENTICATION_CODE,
            AMBIGUOUS_IDENTIFIER,
            ambiguous_hash,
            ACCOUNT_2_ID,
        ),
        (
            "customer_identification_mediums",
            MEDIUM_ID,
            "CIM0000000001",
            MEDIUM_AUTHENTICATION_CODE,
            MEDIUM_IDENTIFIER,
            medium_hash,
            ACCOUNT_1_ID,
        ),
    ] {
        // `table` is one of the two fixed names above, never input.
        let sql = format!(
            "INSERT INTO {table} (id, number, authentication_code, identifier, pass_code_hash, \
             life_cycle_state, accounts_receivable_id) \
             VALUES ($1, $2, $3, $4, $5, 'EFFECTIVE', $6) \
             ON CONFLICT (id) DO UPDATE SET number = EXCLUDED.number, \
             authentication_code = EXCLUDED.authentication_code, identifier = EXCLUDED.identifier, \
             pass_code_hash = EXCLUDED.pass_code_hash, life_cycle_state = EXCLUDED.life_cycle_state, \
             accounts_receivable_id = EXCLUDED.accounts_receivable_id"
        );
        sqlx::query(&sql)
            .bind(id)
            .bind(number)
            .bind(code)
            .bind(identifier)
            .bind(hash)
            .bind(account)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("could not load the demo {table} row {number}"))?;
    }

    tx.commit()
        .await
        .context("could not commit the demo data")?;
    tracing::info!(%session_expires_at, "loaded the demo data");
    Ok(DemoData {
        session_token: SESSION_TOKEN,
        session_expires_at,
        api_username: API_USERNAME,
        subscription_id: SUBSCRIPTION_ID,
        subscription_number: SUBSCRIPTION_NUMBER,
        installed_item_serial_number: INSTALLED_ITEM_SERIAL_NUMBER,
        access_token_authentication_code: ACCESS_TOKEN_AUTHENTICATION_CODE,
        access_token_identifier: ACCESS_TOKEN_IDENTIFIER,
        access_token_pass_code: ACCESS_TOKEN_PASS_CODE,
        medium_authentication_code: MEDIUM_AUTHENTICATION_CODE,
        medium_identifier: MEDIUM_IDENTIFIER,
        medium_pass_code: MEDIUM_PASS_CODE,
        basic_type_name: BASIC_TYPE_NAME,
        premium_type_name: PREMIUM_TYPE_NAME,
        ambiguous_authentication_code: AMBIGUOUS_AUTHENTICATION_CODE,
        premium_subscription_number: SECOND_PREMIUM_SUBSCRIPTION_NUMBER,
    })
}
