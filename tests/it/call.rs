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

/// Runs `call` with `args` (and `stdin` on standard input); returns (exit code, stdout).
fn call_flags(prefix: &str, args: &[&str], stdin: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tucano-auth"))
        .arg("call")
        .args(args)
        .args(["--timeout", "20"])
        .env("AMQP_URL", AMQP_URL)
        .env("QUEUE_PREFIX", prefix)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run call");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let output = child.wait_with_output().expect("call ends");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn call_builds_the_request_from_identifier_flags() {
    let worker = TestWorker::spawn().await;
    let prefix = worker.prefix.clone();
    let cases: Vec<(Vec<&str>, &str, Option<i32>, &str)> = vec![
        (
            vec!["--subscription-number", seed::SUBSCRIPTION_NUMBER],
            "",
            Some(0),
            "OK",
        ),
        (
            vec!["--serial-number", seed::INSTALLED_ITEM_SERIAL_NUMBER],
            "",
            Some(0),
            "OK",
        ),
        (
            vec![
                "--access-token-code",
                seed::ACCESS_TOKEN_AUTHENTICATION_CODE,
                "--subscription-type",
                "No Such Type",
            ],
            "",
            Some(1),
            "NOT_FOUND",
        ),
        (
            vec![
                "--access-token-identifier",
                seed::ACCESS_TOKEN_IDENTIFIER,
                "--pass-code-stdin",
            ],
            "1234\n",
            Some(0),
            "OK",
        ),
        (
            vec![
                "--medium-identifier",
                seed::MEDIUM_IDENTIFIER,
                "--pass-code",
                "0000",
            ],
            "",
            Some(1),
            "AUTHENTICATION_FAILED",
        ),
    ];
    let outcomes = tokio::task::spawn_blocking(move || {
        cases
            .into_iter()
            .map(|(flags, stdin, code, status)| {
                let mut args = vec!["--token", seed::SESSION_TOKEN];
                args.extend(flags);
                (call_flags(&prefix, &args, stdin), code, status)
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("join");
    for ((code, stdout), expected_code, status) in outcomes {
        assert_eq!(code, expected_code, "{stdout}");
        let reply: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
        assert_eq!(reply["status"]["code"], status, "{stdout}");
    }
    // Two identifiers, or JSON with flags, are refused before anything is sent.
    let prefix = worker.prefix.clone();
    let refused = tokio::task::spawn_blocking(move || {
        [
            call_flags(
                &prefix,
                &[
                    "--token",
                    "T",
                    "--subscription-number",
                    "S",
                    "--item-id",
                    "X",
                ],
                "",
            ),
            call_flags(
                &prefix,
                &["{}", "--token", "T", "--subscription-number", "S"],
                "",
            ),
            call_flags(&prefix, &["--token", "T", "--medium-identifier", "M"], ""),
        ]
    })
    .await
    .expect("join");
    for (code, stdout) in refused {
        assert_eq!(code, Some(2));
        assert!(stdout.is_empty());
    }
}
