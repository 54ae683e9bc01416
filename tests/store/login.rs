//! The login-token check of `Store::authenticate`: both token forms, every refusal and the order between them.

use chrono::{Duration, Utc};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

use tucano_auth::error::{Code, Error};
use tucano_auth::secret::Secret;
use tucano_auth::store::Store;

use super::{
    insert_session, insert_user, with_store, with_store_configured, Checks as _, CRM_SECRET,
};

const TOKEN: &str = "0123456789ABCDEF0123456789ABCDEF";

async fn check(store: &Store, token: &str) -> Result<(), Error> {
    store.check_login(&Secret::new(token), Utc::now()).await
}

/// The code of a refusal, after checking that its message does not echo the token.
fn refused(result: Result<(), Error>, token: &str) -> Code {
    let err = result.unwrap_err();
    if !token.is_empty() {
        assert!(!err.message().contains(token), "{}", err.message());
    }
    err.code()
}

fn jwt(claims: Value, secret: &str) -> String {
    jwt_with(Algorithm::HS256, claims, secret)
}

fn jwt_with(algorithm: Algorithm, claims: Value, secret: &str) -> String {
    encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn claims(session: Uuid, exp: Value, iat: Value) -> Value {
    json!({"jti": session.simple().to_string(), "usr": "crm-user", "org": "CRM", "exp": exp, "iat": iat})
}

fn in_an_hour() -> i64 {
    (Utc::now() + Duration::hours(1)).timestamp()
}

#[tokio::test]
async fn hex_token_of_a_live_session_is_accepted_in_either_case() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        insert_session(store.pool(), user, Some(TOKEN), tomorrow, None).await;
        check(&store, TOKEN).await.unwrap();
        check(&store, &TOKEN.to_lowercase()).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn unknown_hex_token_is_invalid_token() {
    with_store(|store| async move {
        assert_eq!(
            refused(check(&store, TOKEN).await, TOKEN),
            Code::InvalidToken
        );
    })
    .await;
}

#[tokio::test]
async fn hex_token_of_a_released_session_is_invalid_token() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        insert_session(store.pool(), user, Some(TOKEN), tomorrow, Some(Utc::now())).await;
        assert_eq!(
            refused(check(&store, TOKEN).await, TOKEN),
            Code::InvalidToken
        );
    })
    .await;
}

#[tokio::test]
async fn hex_token_of_an_expired_session_is_token_expired() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let yesterday = Utc::now() - Duration::days(1);
        insert_session(store.pool(), user, Some(TOKEN), yesterday, None).await;
        assert_eq!(
            refused(check(&store, TOKEN).await, TOKEN),
            Code::TokenExpired
        );
    })
    .await;
}

#[tokio::test]
async fn hex_token_of_an_inactive_api_user_is_invalid_token() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "INACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        insert_session(store.pool(), user, Some(TOKEN), tomorrow, None).await;
        assert_eq!(
            refused(check(&store, TOKEN).await, TOKEN),
            Code::InvalidToken
        );
    })
    .await;
}

#[tokio::test]
async fn released_beats_expired_and_expired_beats_an_inactive_user() {
    with_store(|store| async move {
        let other = "FEDCBA9876543210FEDCBA9876543210";
        let user = insert_user(store.pool(), "INACTIVE").await;
        let yesterday = Utc::now() - Duration::days(1);
        insert_session(store.pool(), user, Some(TOKEN), yesterday, Some(yesterday)).await;
        insert_session(store.pool(), user, Some(other), yesterday, None).await;
        assert_eq!(
            refused(check(&store, TOKEN).await, TOKEN),
            Code::InvalidToken
        );
        let err = check(&store, TOKEN).await.unwrap_err();
        assert!(err.message().contains("released"), "{}", err.message());
        assert_eq!(
            refused(check(&store, other).await, other),
            Code::TokenExpired
        );
    })
    .await;
}

#[tokio::test]
async fn session_expiry_is_judged_against_the_given_time() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let expires_at = Utc::now() + Duration::hours(1);
        insert_session(store.pool(), user, Some(TOKEN), expires_at, None).await;
        let token = Secret::new(TOKEN);
        store
            .check_login(&token, expires_at - Duration::seconds(1))
            .await
            .unwrap();
        let err = store.check_login(&token, expires_at).await.unwrap_err();
        assert_eq!(err.code(), Code::TokenExpired);
    })
    .await;
}

#[tokio::test]
async fn token_of_another_shape_is_invalid_token() {
    with_store(|store| async move {
        for token in [
            "",
            "hello",
            &TOKEN[1..],
            "0123456789ABCDEF0123456789ABCDEG",
            "a.b",
            "a.b.c.d",
            "a.b.",
        ] {
            assert_eq!(
                refused(check(&store, token).await, token),
                Code::InvalidToken,
                "{token:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn jwt_of_a_live_session_is_accepted_with_either_jti_form() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        let session = insert_session(store.pool(), user, None, tomorrow, None).await;
        let now = Utc::now().timestamp();
        check(
            &store,
            &jwt(claims(session, json!(in_an_hour()), json!(now)), CRM_SECRET),
        )
        .await
        .unwrap();
        let mut hyphenated = claims(session, json!(in_an_hour()), json!(now));
        hyphenated["jti"] = json!(session.hyphenated().to_string().to_uppercase());
        check(&store, &jwt(hyphenated, CRM_SECRET)).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn jwt_with_numeric_string_exp_and_iat_is_accepted() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        let session = insert_session(store.pool(), user, None, tomorrow, None).await;
        let exp = json!(in_an_hour().to_string());
        let iat = json!(Utc::now().timestamp().to_string());
        check(&store, &jwt(claims(session, exp, iat), CRM_SECRET))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn jwt_past_its_exp_is_token_expired_before_the_session_is_looked_up() {
    with_store(|store| async move {
        let past = (Utc::now() - Duration::minutes(1)).timestamp();
        // No such session exists: exp is judged first.
        let token = jwt(
            claims(Uuid::new_v4(), json!(past.to_string()), json!(past - 60)),
            CRM_SECRET,
        );
        assert_eq!(
            refused(check(&store, &token).await, &token),
            Code::TokenExpired
        );
    })
    .await;
}

#[tokio::test]
async fn jwt_signed_with_another_secret_is_invalid_token_even_when_expired() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        let session = insert_session(store.pool(), user, None, tomorrow, None).await;
        let past = (Utc::now() - Duration::minutes(1)).timestamp();
        let secret = "another-secret-of-at-least-32-bytes-long";
        for exp in [in_an_hour(), past] {
            let token = jwt(claims(session, json!(exp), json!(past - 60)), secret);
            assert_eq!(
                refused(check(&store, &token).await, &token),
                Code::InvalidToken
            );
        }
    })
    .await;
}

#[tokio::test]
async fn malformed_jwts_are_invalid_token() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        let session = insert_session(store.pool(), user, None, tomorrow, None).await;
        let now = Utc::now().timestamp();
        let good = claims(session, json!(in_an_hour()), json!(now));
        let mut tokens = vec![jwt_with(Algorithm::HS512, good.clone(), CRM_SECRET)];
        for claim in ["jti", "usr", "org", "exp", "iat"] {
            let mut missing = good.clone();
            missing.as_object_mut().unwrap().remove(claim);
            tokens.push(jwt(missing, CRM_SECRET));
        }
        for (claim, value) in [
            ("jti", json!("not-a-session")),
            ("jti", json!(42)),
            ("exp", json!("soon")),
            ("iat", json!(true)),
        ] {
            let mut bad = good.clone();
            bad[claim] = value;
            tokens.push(jwt(bad, CRM_SECRET));
        }
        tokens.push("eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2ln".to_owned());
        for token in tokens {
            assert_eq!(
                refused(check(&store, &token).await, &token),
                Code::InvalidToken,
                "{token}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn jwt_of_an_unknown_released_or_inactive_users_session_is_invalid_token() {
    with_store(|store| async move {
        let active = insert_user(store.pool(), "ACTIVE").await;
        let inactive = insert_user(store.pool(), "INACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        let released = insert_session(store.pool(), active, None, tomorrow, Some(Utc::now())).await;
        let of_inactive = insert_session(store.pool(), inactive, None, tomorrow, None).await;
        let now = Utc::now().timestamp();
        for session in [Uuid::new_v4(), released, of_inactive] {
            let token = jwt(claims(session, json!(in_an_hour()), json!(now)), CRM_SECRET);
            assert_eq!(
                refused(check(&store, &token).await, &token),
                Code::InvalidToken
            );
        }
    })
    .await;
}

#[tokio::test]
async fn jwt_of_an_expired_session_is_token_expired() {
    with_store(|store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let yesterday = Utc::now() - Duration::days(1);
        let session = insert_session(store.pool(), user, None, yesterday, None).await;
        let token = jwt(
            claims(session, json!(in_an_hour()), json!(Utc::now().timestamp())),
            CRM_SECRET,
        );
        assert_eq!(
            refused(check(&store, &token).await, &token),
            Code::TokenExpired
        );
    })
    .await;
}

#[tokio::test]
async fn jwt_is_invalid_token_when_no_crm_token_secret_is_configured() {
    with_store_configured(None, |store| async move {
        let user = insert_user(store.pool(), "ACTIVE").await;
        let tomorrow = Utc::now() + Duration::days(1);
        let session = insert_session(store.pool(), user, None, tomorrow, None).await;
        let token = jwt(
            claims(session, json!(in_an_hour()), json!(Utc::now().timestamp())),
            CRM_SECRET,
        );
        assert_eq!(
            refused(check(&store, &token).await, &token),
            Code::InvalidToken
        );
    })
    .await;
}
