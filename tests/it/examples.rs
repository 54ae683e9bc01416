//! The other-language examples (`examples/node/client.mjs`, `examples/python/client.py`)
//! against a real worker: each gets an `OK` reply that passed its schema check. Their
//! libraries are installed by `.ci/run`; a missing one fails the test. The Node example
//! uses the package `clients/node` (installed as a copy, without OpenTelemetry) and
//! prints `{"code", "subscription_id", "message"}`; the Python one the reply body.

use std::process::Command;

use crate::helpers::{TestWorker, AMQP_URL};

/// Runs `program script` against the worker and returns (exit code, stdout, stderr).
fn run_example(prefix: &str, program: &str, script: &str) -> (Option<i32>, String, String) {
    let path = format!("{}/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(program)
        .arg(&path)
        .env("AMQP_URL", AMQP_URL)
        .env("QUEUE_PREFIX", prefix)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program} {path}: {err}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn node_and_python_examples_get_a_valid_ok_reply() {
    let worker = TestWorker::spawn().await;
    // (program, script, JSON pointers to the code and the subscription id in its output)
    for (program, script, code_at, id_at) in [
        (
            "node",
            "examples/node/client.mjs",
            "/code",
            "/subscription_id",
        ),
        (
            "python3",
            "examples/python/client.py",
            "/status/code",
            "/data/subscription_id",
        ),
    ] {
        let prefix = worker.prefix.clone();
        let (code, stdout, stderr) =
            tokio::task::spawn_blocking(move || run_example(&prefix, program, script))
                .await
                .expect("join");
        assert_eq!(code, Some(0), "{script}: {stdout} {stderr}");
        let reply: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON reply");
        assert_eq!(reply.pointer(code_at), Some(&"OK".into()), "{script}");
        assert_eq!(
            reply.pointer(id_at),
            Some(&"75E3E50139F24DC3A6C9AA0C026D0292".into()),
            "{script}"
        );
    }
}
