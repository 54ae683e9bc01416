//! `session open` and `session release`: login tokens in either of the CRM's forms
//! (32 hex digits, stored as the SHA-256 of the upper-cased token; or an R12-style
//! JWT signed with `CRM_TOKEN_SECRET` whose `jti` is the session id).

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::Refused;
use crate::secret::Secret;

/// The form of a login token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenForm {
    /// 32 upper-case hex digits (before R12).
    Hex,
    /// A JWT signed with `CRM_TOKEN_SECRET` (R12 and later).
    Jwt,
}

/// A session just opened.
#[derive(Debug)]
pub struct OpenedSession {
    /// The session's id (the `jti` of a JWT token).
    pub id: Uuid,
    /// The login token: print it once, store it nowhere.
    pub token: Secret,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// The claims of a CRM login token in JWT form.
#[derive(Serialize, Deserialize)]
struct Claims {
    jti: String,
    usr: String,
    org: String,
    exp: i64,
    iat: i64,
}

/// Opens a session of the `ACTIVE` API user `username`, valid for `ttl` from now,
/// and gives its login token in `form`. A JWT needs `crm_token_secret`.
pub async fn open_session(
    pool: &PgPool,
    username: &str,
    ttl: Duration,
    form: TokenForm,
    crm_token_secret: Option<&Secret>,
) -> anyhow::Result<OpenedSession> {
    let secret = match form {
        TokenForm::Jwt => Some(crm_token_secret.context(
            "CRM_TOKEN_SECRET is not set: a login token in JWT form is signed with it (set it as the worker has it)",
        )?),
        TokenForm::Hex => None,
    };
    let user: Option<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, organisation, life_cycle_state FROM api_users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
    .context("could not read the API user")?;
    let Some((user_id, organisation, state)) = user else {
        return Err(Refused(format!("no API user {username:?}")).into());
    };
    if state != "ACTIVE" {
        return Err(Refused(format!(
            "API user {username:?} is {state}: its tokens would be refused"
        ))
        .into());
    }
    let id = Uuid::new_v4();
    let issued_at = Utc::now();
    let expires_at =
        issued_at + chrono::Duration::from_std(ttl).context("the session lifetime is too long")?;
    let (token, digest) = match secret {
        // 122 random bits from the operating system's generator.
        None => {
            let token = Uuid::new_v4().simple().to_string().to_uppercase();
            let digest = Sha256::digest(token.as_bytes()).to_vec();
            (token, Some(digest))
        }
        Some(secret) => {
            let claims = Claims {
                jti: id.simple().to_string().to_uppercase(),
                usr: username.to_owned(),
                org: organisation,
                exp: expires_at.timestamp(),
                iat: issued_at.timestamp(),
            };
            let token = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(secret.expose().as_bytes()),
            )
            .context("could not sign the login token")?;
            (token, None)
        }
    };
    sqlx::query(
        "INSERT INTO sessions (id, api_user_id, token_sha256, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user_id)
    .bind(digest)
    .bind(issued_at)
    .bind(expires_at)
    .execute(pool)
    .await
    .context("could not open the session")?;
    Ok(OpenedSession {
        id,
        token: Secret::new(token),
        expires_at,
    })
}

/// Releases (logs out) the session of `token`, in either form; a JWT is checked
/// against `crm_token_secret` (its expiry does not matter). Returns the session id.
/// An unknown or already released token is [`Refused`].
pub async fn release_session(
    pool: &PgPool,
    token: &Secret,
    crm_token_secret: Option<&Secret>,
) -> anyhow::Result<Uuid> {
    let token = token.expose().trim();
    let found: Option<(Uuid, Option<DateTime<Utc>>)> = if token.len() == 32
        && token.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let digest = Sha256::digest(token.to_ascii_uppercase().as_bytes()).to_vec();
        release_where("token_sha256 = $1", digest, pool).await?
    } else if token.split('.').count() == 3 {
        let secret = crm_token_secret
            .context("CRM_TOKEN_SECRET is not set: a login token in JWT form is checked with it")?;
        release_where("id = $1", jwt_session(token, secret)?, pool).await?
    } else {
        return Err(Refused("the token is neither 32 hex digits nor a JWT".to_owned()).into());
    };
    match found {
        Some((id, None)) => Ok(id),
        Some((_, Some(at))) => {
            Err(Refused(format!("the session was already released at {at}")).into())
        }
        None => Err(Refused("no session has this token".to_owned()).into()),
    }
}

/// Releases the session matching `condition` on `$1`; gives its id and when it had
/// been released before, if it had.
async fn release_where<T>(
    condition: &str,
    value: T,
    pool: &PgPool,
) -> anyhow::Result<Option<(Uuid, Option<DateTime<Utc>>)>>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    let sql = format!(
        "WITH old AS (SELECT id, released_at FROM sessions WHERE {condition} FOR UPDATE) \
         UPDATE sessions s SET released_at = coalesce(old.released_at, now()) FROM old \
         WHERE s.id = old.id RETURNING old.id, old.released_at"
    );
    sqlx::query_as(&sql)
        .bind(value)
        .fetch_optional(pool)
        .await
        .context("could not release the session")
}

/// The session id of a login token in JWT form signed with `secret`.
fn jwt_session(token: &str, secret: &Secret) -> anyhow::Result<Uuid> {
    #[derive(Deserialize)]
    struct Jti {
        jti: String,
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Jti>(
        token,
        &DecodingKey::from_secret(secret.expose().as_bytes()),
        &validation,
    )
    .map_err(|_| {
        Refused("the token is not a JWT signed with CRM_TOKEN_SECRET carrying a jti".to_owned())
    })?
    .claims;
    crate::data::import::parse_id(&claims.jti)
        .ok_or_else(|| Refused("the token's jti is not a session id".to_owned()).into())
}
