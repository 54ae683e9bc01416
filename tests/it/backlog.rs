//! The pass-code backlog (docs/protocol.md §14, "Pass codes"): at most
//! `TUCANO_PASS_CODE_BACKLOG` pass-code requests wait in a worker; the excess of a flood
//! is answered `TEMPORARILY_UNAVAILABLE` at once, and requests without a pass code keep
//! being answered meanwhile.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use tucano_auth::store::seed;

use crate::helpers::{by_number, TestWorker};

#[tokio::test]
async fn a_pass_code_flood_beyond_the_backlog_is_shed_while_plain_requests_are_answered() {
    let worker = TestWorker::spawn_with(|s| {
        s.broker.prefetch = 4;
        s.broker.pass_code_backlog = 2;
    })
    .await;
    let replies = worker.declare_queue("replies", None).await;
    let pass_code = format!(
        r#"{{"token":"{}","access_token_identifier":{{"identifier":"demo-user-1","pass_code":"1234"}}}}"#,
        seed::SESSION_TOKEN
    );
    let plain = by_number(seed::SESSION_TOKEN, "S0000000329");

    // 120 pass-code requests, every sixth request one without: far faster than two
    // cores verify pass codes (about 100 a second), published on one channel.
    let channel = worker.conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut confirms = Vec::new();
    let mut sent = HashMap::new();
    for i in 0..144 {
        let (id, body) = if i % 6 == 5 {
            (format!("plain-{i}"), plain.as_str())
        } else {
            (format!("pass-{i}"), pass_code.as_str())
        };
        let props = BasicProperties::default()
            .with_reply_to(replies.as_str().into())
            .with_correlation_id(id.as_str().into())
            .with_content_type("application/json".into());
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    worker.names.interactive.as_str().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    props,
                )
                .await
                .expect("publish"),
        );
        sent.insert(id, ());
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }

    let mut answers: HashMap<String, (String, String)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answers.len() < sent.len() && Instant::now() < deadline {
        let Some(reply) = worker.get(&replies, Duration::from_secs(5)).await else {
            continue;
        };
        let id = reply.correlation_id.clone().expect("correlation_id");
        let answer = (reply.code().to_owned(), reply.message().to_owned());
        assert!(
            answers.insert(id.clone(), answer).is_none(),
            "{id} answered twice"
        );
    }
    assert_eq!(answers.len(), sent.len(), "every request answered");

    let (mut ok, mut shed) = (0, 0);
    for (id, (code, message)) in &answers {
        if id.starts_with("plain-") {
            assert_eq!(code, "OK", "{id}: {message}");
            continue;
        }
        match code.as_str() {
            "OK" => ok += 1,
            "TEMPORARILY_UNAVAILABLE" => {
                assert_eq!(
                    message,
                    "too many pass-code checks in progress, retry later"
                );
                shed += 1;
            }
            other => panic!("{id}: {other} {message}"),
        }
    }
    eprintln!("pass codes: {ok} verified, {shed} shed");
    assert!(shed > 0, "nothing was shed ({ok} verified)");
    assert!(ok >= 2, "the backlog's own requests were verified ({ok})");
    assert_eq!(ok + shed, 120);
}
