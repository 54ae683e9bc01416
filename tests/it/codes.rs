//! Every status code of docs/protocol.md §3, reached through the broker.

use std::time::Duration;

use chrono::Utc;
use lapin::BasicProperties;
use serde_json::json;
use tucano_auth::store::seed;

use crate::fixtures;
use crate::helpers::{by_number, TestWorker};

const TOKEN: &str = seed::SESSION_TOKEN;

fn props() -> BasicProperties {
    BasicProperties::default().with_correlation_id("c-1".into())
}

#[tokio::test]
async fn every_request_side_code_is_reached_in_the_contracts_order() {
    let worker = TestWorker::spawn().await;
    let ambiguous_code = "AC-ONLY-CANCELLED";
    fixtures::account_with_only_cancelled(&worker.pool, ambiguous_code).await;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "seed example",
            json!({"token": TOKEN, "subscription_identifier": {"number": "S0000000329"}}),
            "OK",
        ),
        (
            "no identifier",
            json!({"token": TOKEN}),
            "MISSING_IDENTIFIER",
        ),
        (
            "only null identifiers",
            json!({"token": TOKEN, "subscription_identifier": null}),
            "MISSING_IDENTIFIER",
        ),
        (
            "two identifiers",
            json!({"token": TOKEN, "subscription_identifier": {"number": "S0000000329"}, "installed_item_identifier": {"serial_number": "SN-0001"}}),
            "MULTIPLE_IDENTIFIERS",
        ),
        (
            "step 3 ignores what is inside",
            json!({"token": 5, "subscription_identifier": 1, "installed_item_identifier": "x"}),
            "MULTIPLE_IDENTIFIERS",
        ),
        (
            "type without access token",
            json!({"token": TOKEN, "subscription_identifier": {"number": "S0000000329"}, "subscription_type_identifier": {"name": "Tucano Basic"}}),
            "SUBSCRIPTION_TYPE_NOT_APPLICABLE",
        ),
        (
            "unknown field",
            json!({"token": TOKEN, "subscription_identifier": {"number": "S0000000329"}, "extra": 1}),
            "INVALID_REQUEST",
        ),
        (
            "missing token",
            json!({"subscription_identifier": {"number": "S0000000329"}}),
            "INVALID_REQUEST",
        ),
        (
            "bad id",
            json!({"token": TOKEN, "subscription_identifier": {"id": "not-an-id"}}),
            "INVALID_REQUEST",
        ),
        (
            "identifier without pass code",
            json!({"token": TOKEN, "access_token_identifier": {"identifier": "demo-user-1"}}),
            "INVALID_REQUEST",
        ),
        (
            "unknown token",
            json!({"token": "00000000000000000000000000000000", "subscription_identifier": {"number": "S0000000329"}}),
            "INVALID_TOKEN",
        ),
        (
            "malformed token",
            json!({"token": "not a token", "subscription_identifier": {"number": "S0000000329"}}),
            "INVALID_TOKEN",
        ),
        (
            "wrong pass code",
            json!({"token": TOKEN, "access_token_identifier": {"identifier": "demo-user-1", "pass_code": "9999"}}),
            "AUTHENTICATION_FAILED",
        ),
        (
            "unknown identifier",
            json!({"token": TOKEN, "access_token_identifier": {"identifier": "nobody", "pass_code": "1234"}}),
            "AUTHENTICATION_FAILED",
        ),
        (
            "unknown subscription",
            json!({"token": TOKEN, "subscription_identifier": {"number": "S9"}}),
            "NOT_FOUND",
        ),
        (
            "unknown item",
            json!({"token": TOKEN, "installed_item_identifier": {"serial_number": "SN-404"}}),
            "NOT_FOUND",
        ),
        (
            "unknown authentication code",
            json!({"token": TOKEN, "customer_identification_medium_identifier": {"authentication_code": "nope"}}),
            "NOT_FOUND",
        ),
        (
            "unknown subscription type",
            json!({"token": TOKEN, "access_token_identifier": {"authentication_code": "AC-0001"}, "subscription_type_identifier": {"name": "Gold"}}),
            "NOT_FOUND",
        ),
        (
            "only Tucano subscription cancelled",
            json!({"token": TOKEN, "access_token_identifier": {"authentication_code": ambiguous_code}}),
            "NOT_FOUND",
        ),
        (
            "item not effective",
            json!({"token": TOKEN, "installed_item_identifier": {"serial_number": "SN-0002"}}),
            "NOT_EFFECTIVE",
        ),
        (
            "not Tucano",
            json!({"token": TOKEN, "subscription_identifier": {"number": seed::NOT_TUCANO_SUBSCRIPTION_NUMBER}}),
            "NOT_PROVISIONED_BY_TUCANO",
        ),
        (
            "cancelled",
            json!({"token": TOKEN, "subscription_identifier": {"number": seed::CANCELLED_SUBSCRIPTION_NUMBER}}),
            "SUBSCRIPTION_INACTIVE",
        ),
        (
            "ambiguous account",
            json!({"token": TOKEN, "access_token_identifier": {"authentication_code": seed::AMBIGUOUS_AUTHENTICATION_CODE}}),
            "AMBIGUOUS_SUBSCRIPTION",
        ),
    ];
    for (what, body, code) in cases {
        let reply = worker.call(&body.to_string()).await;
        assert_eq!(reply.code(), code, "{what}: {}", reply.raw);
        assert_eq!(reply.header_code.as_deref(), Some(code), "{what}: header");
        if code == "OK" {
            assert_eq!(
                reply.body["status"],
                json!({"code": "OK", "description": "", "message": ""})
            );
        } else {
            assert!(reply.body["data"].is_null(), "{what}");
            assert!(
                !reply.body["status"]["description"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty(),
                "{what}"
            );
            assert!(
                !reply.message().is_empty(),
                "{what}: a message says what was wrong"
            );
        }
        assert!(
            !reply.raw.contains("9999") && !reply.raw.contains("\"1234\""),
            "{what}: no pass code in a reply"
        );
    }
}

#[tokio::test]
async fn envelope_errors_are_invalid_request_with_a_reason() {
    let worker = TestWorker::spawn().await;
    let queue = worker.names.interactive.clone();
    let valid = by_number(TOKEN, "S0000000329");
    let oversized = format!(
        "{{\"token\":\"{TOKEN}\",\"subscription_identifier\":{{\"number\":\"S0000000329\"}},\"pad\":\"{}\"}}",
        "x".repeat(64 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "wrong content type",
            valid.clone().into_bytes(),
            Some("text/plain"),
        ),
        (
            "too large",
            oversized.into_bytes(),
            Some("application/json"),
        ),
        ("not utf-8", vec![0xff, 0xfe, b'{', b'}'], None),
        ("not json", b"{token".to_vec(), None),
        ("not an object", b"[1,2]".to_vec(), None),
    ];
    for (what, body, content_type) in cases {
        let mut p = props();
        if let Some(ct) = content_type {
            p = p.with_content_type(ct.into());
        }
        let reply = worker.call_with(&queue, &body, p).await.expect("a reply");
        assert_eq!(reply.code(), "INVALID_REQUEST", "{what}: {}", reply.raw);
        assert!(!reply.message().is_empty(), "{what}");
    }
    // A schema error says where: a JSON pointer.
    let reply = worker
        .call(&json!({"token": TOKEN, "subscription_identifier": {"id": "xyz"}}).to_string())
        .await;
    assert_eq!(reply.code(), "INVALID_REQUEST");
    assert!(
        reply.message().contains("/subscription_identifier/id"),
        "{}",
        reply.raw
    );
    // A schema error under the token never echoes it.
    let long = "Z".repeat(5000);
    let reply = worker.call(&by_number(&long, "S0000000329")).await;
    assert_eq!(reply.code(), "INVALID_REQUEST");
    assert!(!reply.raw.contains(&long[..100]), "the token is not echoed");
}

#[tokio::test]
async fn login_tokens_in_both_forms_are_checked() {
    let worker = TestWorker::spawn().await;
    let pool = &worker.pool;
    let hour = chrono::Duration::hours(1);
    let now = Utc::now();
    let expired_hex = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1";
    fixtures::session(pool, Some(expired_hex), now - hour, false, "ACTIVE").await;
    let released_hex = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA2";
    fixtures::session(pool, Some(released_hex), now + hour, true, "ACTIVE").await;
    let inactive_hex = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA3";
    fixtures::session(pool, Some(inactive_hex), now + hour, false, "INACTIVE").await;
    let lower_hex = fixtures::hex_token(pool).await.to_lowercase();

    let live = fixtures::session(pool, None, now + hour, false, "ACTIVE").await;
    let ts = now.timestamp();
    let secret = crate::helpers::CRM_SECRET;
    let jwt_ok = fixtures::crm_jwt(live, (ts + 600).into(), ts.into(), secret);
    let jwt_strings = fixtures::crm_jwt(
        live,
        (ts + 600).to_string().into(),
        ts.to_string().into(),
        secret,
    );
    let jwt_expired = fixtures::crm_jwt(live, (ts - 10).into(), (ts - 600).into(), secret);
    let jwt_bad_signature = fixtures::crm_jwt(
        live,
        (ts + 600).into(),
        ts.into(),
        "another-secret-another-secret-xx",
    );
    let released = fixtures::session(pool, None, now + hour, true, "ACTIVE").await;
    let jwt_released = fixtures::crm_jwt(released, (ts + 600).into(), ts.into(), secret);
    let lapsed = fixtures::session(pool, None, now - hour, false, "ACTIVE").await;
    let jwt_session_expired = fixtures::crm_jwt(lapsed, (ts + 600).into(), ts.into(), secret);
    let jwt_unknown_session =
        fixtures::crm_jwt(uuid::Uuid::new_v4(), (ts + 600).into(), ts.into(), secret);

    let cases = [
        ("hex, lower case", lower_hex.as_str(), "OK"),
        ("hex, expired", expired_hex, "TOKEN_EXPIRED"),
        ("hex, released", released_hex, "INVALID_TOKEN"),
        ("hex, user inactive", inactive_hex, "INVALID_TOKEN"),
        ("jwt", jwt_ok.as_str(), "OK"),
        ("jwt, string exp and iat", jwt_strings.as_str(), "OK"),
        ("jwt, expired", jwt_expired.as_str(), "TOKEN_EXPIRED"),
        (
            "jwt, badly signed",
            jwt_bad_signature.as_str(),
            "INVALID_TOKEN",
        ),
        (
            "jwt, released session",
            jwt_released.as_str(),
            "INVALID_TOKEN",
        ),
        (
            "jwt, expired session",
            jwt_session_expired.as_str(),
            "TOKEN_EXPIRED",
        ),
        (
            "jwt, unknown session",
            jwt_unknown_session.as_str(),
            "INVALID_TOKEN",
        ),
    ];
    for (what, token, code) in cases {
        let reply = worker.call(&by_number(token, "S0000000329")).await;
        assert_eq!(reply.code(), code, "{what}: {}", reply.raw);
        assert!(
            !reply.raw.contains(token),
            "{what}: the token is never echoed"
        );
    }
}

#[tokio::test]
async fn jwt_login_tokens_are_invalid_without_a_crm_secret() {
    let worker = TestWorker::spawn_with(|s| s.crm_tokens.secret = None).await;
    let token = fixtures::jwt_token(&worker.pool).await;
    let reply = worker.call(&by_number(&token, "S0000000329")).await;
    assert_eq!(reply.code(), "INVALID_TOKEN", "{}", reply.raw);
}

#[tokio::test]
async fn a_broken_database_schema_is_an_internal_error_without_details() {
    let worker = TestWorker::spawn().await;
    sqlx::query("ALTER TABLE subscriptions RENAME TO subscriptions_gone")
        .execute(&worker.pool)
        .await
        .expect("rename");
    let reply = worker.call(&by_number(TOKEN, "S0000000329")).await;
    assert_eq!(reply.code(), "INTERNAL_ERROR", "{}", reply.raw);
    assert!(
        !reply.raw.to_lowercase().contains("subscriptions"),
        "no SQL in a reply: {}",
        reply.raw
    );
    assert!(
        !reply.raw.contains("relation"),
        "no SQL error in a reply: {}",
        reply.raw
    );
}

#[tokio::test]
async fn an_unreachable_database_is_temporarily_unavailable_after_the_budget() {
    let proxy = crate::helpers::Proxy::start().await;
    let worker =
        TestWorker::spawn_via(&proxy, |s| s.database.retry_budget = Duration::from_secs(2)).await;
    // Warm up through the proxy, then cut the database off.
    assert_eq!(
        worker.call(&by_number(TOKEN, "S0000000329")).await.code(),
        "OK"
    );
    proxy.cut();
    let started = std::time::Instant::now();
    let reply = worker.call(&by_number(TOKEN, "S0000000329")).await;
    assert_eq!(reply.code(), "TEMPORARILY_UNAVAILABLE", "{}", reply.raw);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retried for the budget first"
    );
    proxy.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let reply = worker.call(&by_number(TOKEN, "S0000000329")).await;
        if reply.code() == "OK" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serves again once the database is back: {}",
            reply.raw
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `CRM_TOKEN_SECRET_FILE` with two secrets: the CRM rotates its secret by signing with
/// the new one while workers still accept the old; a third secret is refused.
#[tokio::test]
async fn login_tokens_signed_with_any_secret_of_the_crm_token_secret_file_are_accepted() {
    let (old, new) = (
        "crm-old-secret-0123456789abcdef0123",
        "crm-new-secret-0123456789abcdef0123",
    );
    let worker = TestWorker::spawn_with(|s| {
        s.crm_tokens.secret = None;
        s.crm_tokens.secret_file = vec![
            tucano_auth::secret::Secret::new(old),
            tucano_auth::secret::Secret::new(new),
        ];
    })
    .await;
    let now = Utc::now();
    let live = fixtures::session(
        &worker.pool,
        None,
        now + chrono::Duration::hours(1),
        false,
        "ACTIVE",
    )
    .await;
    let ts = now.timestamp();
    for (secret, expected) in [
        (old, "OK"),
        (new, "OK"),
        ("crm-other-secret-0123456789abcdef01", "INVALID_TOKEN"),
    ] {
        let token = fixtures::crm_jwt(live, (ts + 600).into(), ts.into(), secret);
        let reply = worker.call(&by_number(&token, "S0000000329")).await;
        assert_eq!(
            reply.code(),
            expected,
            "signed with {secret}: {}",
            reply.raw
        );
    }
}
