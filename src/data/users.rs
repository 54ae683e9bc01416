//! `user add` and `user disable`: the CRM API users whose sessions carry login tokens.

use anyhow::Context as _;
use sqlx::PgPool;

use super::Refused;
use crate::secret::Secret;
use crate::store::pass_code;

/// Adds the `ACTIVE` API user `username` of `organisation`, with `password` (hashed
/// with Argon2) if given. An existing username is [`Refused`].
pub async fn add_user(
    pool: &PgPool,
    username: &str,
    organisation: &str,
    password: Option<Secret>,
) -> anyhow::Result<()> {
    if username.is_empty() || organisation.is_empty() {
        return Err(
            Refused("the username and the organisation must not be empty".to_owned()).into(),
        );
    }
    let hash = match password {
        Some(password) => Some(
            tokio::task::spawn_blocking(move || pass_code::hash(password.expose()))
                .await
                .context("the hashing thread failed")??,
        ),
        None => None,
    };
    let added = sqlx::query(
        "INSERT INTO api_users (username, organisation, password_hash, life_cycle_state) \
         VALUES ($1, $2, $3, 'ACTIVE') ON CONFLICT (username) DO NOTHING",
    )
    .bind(username)
    .bind(organisation)
    .bind(hash)
    .execute(pool)
    .await
    .context("could not add the API user")?
    .rows_affected();
    if added == 0 {
        return Err(Refused(format!("API user {username:?} already exists")).into());
    }
    Ok(())
}

/// Makes the API user `username` `INACTIVE`: its login tokens are refused from then
/// on (`INVALID_TOKEN`). Returns whether it was `ACTIVE`; an unknown user is
/// [`Refused`].
pub async fn disable_user(pool: &PgPool, username: &str) -> anyhow::Result<bool> {
    let before: Option<String> = sqlx::query_scalar(
        "WITH old AS (SELECT id, life_cycle_state FROM api_users WHERE username = $1 FOR UPDATE) \
         UPDATE api_users u SET life_cycle_state = 'INACTIVE' FROM old \
         WHERE u.id = old.id RETURNING old.life_cycle_state",
    )
    .bind(username)
    .fetch_optional(pool)
    .await
    .context("could not disable the API user")?;
    match before {
        Some(state) => Ok(state == "ACTIVE"),
        None => Err(Refused(format!("no API user {username:?}")).into()),
    }
}
