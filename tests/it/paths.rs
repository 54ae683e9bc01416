//! Every identifier path of docs/protocol.md §5, and the subscription type filter.

use serde_json::json;
use tucano_auth::store::seed;

use crate::helpers::TestWorker;

const TOKEN: &str = seed::SESSION_TOKEN;
const DEMO_ID: &str = "75E3E50139F24DC3A6C9AA0C026D0292";

async fn subscription_number(worker: &TestWorker, id: &str) -> String {
    sqlx::query_scalar::<_, String>("SELECT number FROM subscriptions WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&worker.pool)
        .await
        .expect("subscription by id")
}

async fn id_of(worker: &TestWorker, sql: &str) -> String {
    let id: uuid::Uuid = sqlx::query_scalar(sql)
        .fetch_one(&worker.pool)
        .await
        .expect("id");
    id.simple().to_string()
}

#[tokio::test]
async fn every_identifier_path_leads_to_its_subscription() {
    let worker = TestWorker::spawn().await;
    let item_id = id_of(
        &worker,
        "SELECT id FROM installed_items WHERE serial_number = 'SN-0001'",
    )
    .await;
    let basic_type = id_of(
        &worker,
        "SELECT id FROM subscription_types WHERE name = 'Tucano Basic'",
    )
    .await;
    let hyphenated = uuid::Uuid::parse_str(DEMO_ID)
        .expect("uuid")
        .hyphenated()
        .to_string();
    let premium = seed::SECOND_PREMIUM_SUBSCRIPTION_NUMBER;
    let basic = seed::SECOND_BASIC_SUBSCRIPTION_NUMBER;
    let cases = vec![
        (
            "subscription by number",
            json!({"subscription_identifier": {"number": "S0000000329"}}),
            "S0000000329",
        ),
        (
            "subscription by id",
            json!({"subscription_identifier": {"id": DEMO_ID}}),
            "S0000000329",
        ),
        (
            "subscription by lower-case hyphenated id",
            json!({"subscription_identifier": {"id": hyphenated}}),
            "S0000000329",
        ),
        (
            "item by serial number",
            json!({"installed_item_identifier": {"serial_number": "SN-0001"}}),
            "S0000000329",
        ),
        (
            "item by alternative code",
            json!({"installed_item_identifier": {"alternative_code": seed::INSTALLED_ITEM_ALTERNATIVE_CODE}}),
            "S0000000329",
        ),
        (
            "item by id",
            json!({"installed_item_identifier": {"id": item_id}}),
            "S0000000329",
        ),
        (
            "access token by authentication code",
            json!({"access_token_identifier": {"authentication_code": "AC-0001"}}),
            "S0000000329",
        ),
        (
            "access token by identifier and pass code",
            json!({"access_token_identifier": {"identifier": "demo-user-1", "pass_code": "1234"}}),
            "S0000000329",
        ),
        (
            "medium by authentication code",
            json!({"customer_identification_medium_identifier": {"authentication_code": seed::MEDIUM_AUTHENTICATION_CODE}}),
            "S0000000329",
        ),
        (
            "medium by identifier and pass code",
            json!({"customer_identification_medium_identifier": {"identifier": seed::MEDIUM_IDENTIFIER, "pass_code": seed::MEDIUM_PASS_CODE}}),
            "S0000000329",
        ),
        (
            "ambiguous account narrowed by type name",
            json!({"access_token_identifier": {"authentication_code": seed::AMBIGUOUS_AUTHENTICATION_CODE}, "subscription_type_identifier": {"name": seed::PREMIUM_TYPE_NAME}}),
            premium,
        ),
        (
            "ambiguous account narrowed by type alternative code",
            json!({"access_token_identifier": {"identifier": seed::AMBIGUOUS_IDENTIFIER, "pass_code": seed::AMBIGUOUS_PASS_CODE}, "subscription_type_identifier": {"alternative_code": seed::BASIC_TYPE_ALTERNATIVE_CODE}}),
            basic,
        ),
        (
            "ambiguous account narrowed by type id",
            json!({"access_token_identifier": {"authentication_code": seed::AMBIGUOUS_AUTHENTICATION_CODE}, "subscription_type_identifier": {"id": basic_type}}),
            basic,
        ),
        (
            "null fields count as absent",
            json!({"subscription_identifier": {"number": "S0000000329"}, "installed_item_identifier": null, "subscription_type_identifier": null}),
            "S0000000329",
        ),
    ];
    for (what, mut body, number) in cases {
        body["token"] = json!(TOKEN);
        let reply = worker.call(&body.to_string()).await;
        assert_eq!(reply.code(), "OK", "{what}: {}", reply.raw);
        let id = reply.body["data"]["subscription_id"].as_str().expect("id");
        assert_eq!(id.len(), 32);
        assert_eq!(id, id.to_uppercase(), "{what}: upper-case hex id");
        assert_eq!(subscription_number(&worker, id).await, number, "{what}");
        let jwt = reply.body["data"]["jwt"].as_str().expect("jwt");
        let (_, payload) = crate::jwt::verify(jwt, crate::helpers::JWT_SECRET);
        assert_eq!(
            payload["userid"], number,
            "{what}: the JWT names the subscription"
        );
    }
}

#[tokio::test]
async fn the_type_filter_that_matches_nothing_is_not_found() {
    let worker = TestWorker::spawn().await;
    // The first account's only active Tucano subscription is of the Basic type.
    let body = json!({"token": TOKEN, "access_token_identifier": {"authentication_code": "AC-0001"}, "subscription_type_identifier": {"name": seed::PREMIUM_TYPE_NAME}});
    let reply = worker.call(&body.to_string()).await;
    assert_eq!(reply.code(), "NOT_FOUND", "{}", reply.raw);
}

#[tokio::test]
async fn a_not_effective_access_token_is_reported_only_after_its_pass_code() {
    let worker = TestWorker::spawn().await;
    sqlx::query("UPDATE access_tokens SET life_cycle_state = 'NOT_EFFECTIVE' WHERE identifier = 'demo-user-1'")
        .execute(&worker.pool)
        .await
        .expect("update");
    let wrong = json!({"token": TOKEN, "access_token_identifier": {"identifier": "demo-user-1", "pass_code": "0000"}});
    assert_eq!(
        worker.call(&wrong.to_string()).await.code(),
        "AUTHENTICATION_FAILED"
    );
    let right = json!({"token": TOKEN, "access_token_identifier": {"identifier": "demo-user-1", "pass_code": "1234"}});
    assert_eq!(
        worker.call(&right.to_string()).await.code(),
        "NOT_EFFECTIVE"
    );
}
