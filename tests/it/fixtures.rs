//! Rows the demo data lacks, written with plain SQL as the CRM loader would.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{EncodingKey, Header};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::CRM_SECRET;

/// Inserts an API user in `user_state` with a session; returns the session id.
pub async fn session(
    pool: &PgPool,
    hex_token: Option<&str>,
    expires_at: DateTime<Utc>,
    released: bool,
    user_state: &str,
) -> Uuid {
    let user = Uuid::new_v4();
    sqlx::query("INSERT INTO api_users (id, username, organisation, life_cycle_state) VALUES ($1, $2, 'Test', $3)")
        .bind(user)
        .bind(format!("user-{user}"))
        .bind(user_state)
        .execute(pool)
        .await
        .expect("api user");
    let id = Uuid::new_v4();
    let sha = hex_token.map(|t| Sha256::digest(t.to_uppercase().as_bytes()).to_vec());
    sqlx::query("INSERT INTO sessions (id, api_user_id, token_sha256, issued_at, expires_at, released_at) VALUES ($1, $2, $3, now() - interval '1 hour', $4, $5)")
        .bind(id)
        .bind(user)
        .bind(sha)
        .bind(expires_at)
        .bind(if released { Some(Utc::now()) } else { None })
        .execute(pool)
        .await
        .expect("session");
    id
}

/// A fresh 32-hex login token with a valid session.
pub async fn hex_token(pool: &PgPool) -> String {
    let token = Uuid::new_v4().simple().to_string().to_uppercase();
    session(
        pool,
        Some(&token),
        Utc::now() + Duration::hours(1),
        false,
        "ACTIVE",
    )
    .await;
    token
}

/// An R12 login token for session `jti`, signed with `secret`; `exp`/`iat` given as JSON.
pub fn crm_jwt(jti: Uuid, exp: serde_json::Value, iat: serde_json::Value, secret: &str) -> String {
    let claims = serde_json::json!({
        "jti": jti.to_string(), "usr": "crm-user", "org": "crm-org", "exp": exp, "iat": iat,
    });
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A valid R12 login token with numeric claims.
pub async fn jwt_token(pool: &PgPool) -> String {
    let jti = session(pool, None, Utc::now() + Duration::hours(1), false, "ACTIVE").await;
    let now = Utc::now().timestamp();
    crm_jwt(jti, (now + 600).into(), now.into(), CRM_SECRET)
}

/// An account whose only Tucano subscription is cancelled, reached by an access token
/// with `authentication_code`.
pub async fn account_with_only_cancelled(pool: &PgPool, authentication_code: &str) {
    let account = Uuid::new_v4();
    sqlx::query("INSERT INTO accounts_receivable (id, number, name, life_cycle_state) VALUES ($1, $2, 'Cancelled only', 'ACTIVE')")
        .bind(account)
        .bind(format!("AR-{account}"))
        .execute(pool)
        .await
        .expect("account");
    sqlx::query("INSERT INTO subscriptions (number, accounts_receivable_id, subscription_type_id, life_cycle_state, provisioning_provider) SELECT $1, $2, id, 'CANCELLED', 'TUCANO' FROM subscription_types LIMIT 1")
        .bind(format!("S-{account}"))
        .bind(account)
        .execute(pool)
        .await
        .expect("subscription");
    sqlx::query("INSERT INTO access_tokens (number, authentication_code, life_cycle_state, accounts_receivable_id) VALUES ($1, $2, 'EFFECTIVE', $3)")
        .bind(format!("AT-{account}"))
        .bind(authentication_code)
        .bind(account)
        .execute(pool)
        .await
        .expect("access token");
}
