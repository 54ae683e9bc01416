//! The `call` subcommand of the real binary: prints the reply body and says the outcome
//! in its exit code (0 on OK, 1 on another status, 2 when nothing could answer).

use std::process::Command;

use tucano_auth::store::seed;

use crate::helpers::{by_number, unique, TestWorker, AMQP_URL};

fn call(prefix: &str, json: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tucano-auth"))
        .args(["call", json, "--timeout", "20"])
        .env("AMQP_URL", AMQP_URL)
        .env("QUEUE_PREFIX", prefix)
        .output()
        .expect("run call");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn call_prints_the_reply_and_exits_by_its_status() {
    let worker = TestWorker::spawn().await;
    let prefix = worker.prefix.clone();
    let (code, stdout) = tokio::task::spawn_blocking(move || {
        call(&prefix, &by_number(seed::SESSION_TOKEN, "S0000000329"))
    })
    .await
    .expect("join");
    assert_eq!(code, Some(0), "{stdout}");
    let reply: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the body is JSON");
    assert_eq!(reply["status"]["code"], "OK");
    assert_eq!(
        reply["data"]["subscription_id"],
        "75E3E50139F24DC3A6C9AA0C026D0292"
    );

    let prefix = worker.prefix.clone();
    let (code, stdout) = tokio::task::spawn_blocking(move || call(&prefix, "{}"))
        .await
        .expect("join");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("MISSING_IDENTIFIER"));
}

#[tokio::test]
async fn call_without_a_worker_exits_two() {
    let prefix = unique("c");
    let (code, _) = tokio::task::spawn_blocking(move || call(&prefix, "{}"))
        .await
        .expect("join");
    assert_eq!(code, Some(2));
}
