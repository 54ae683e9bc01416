//! The published request schema read by other languages' validators: Ajv 8 (Node.js,
//! draft 2020-12, strict mode) and Python's `jsonschema` (`Draft202012Validator`) must
//! accept a body exactly when the worker's decoding does.
//!
//! The corpus is drawn (deterministically) from the property tests' generators, plus
//! the bodies where engines are known to part ways: a final newline after a pattern's
//! `$`, lone surrogate escapes, characters outside the Basic Multilingual Plane, which
//! Ajv, Python and Rust must all count as one character. The validators run as the
//! scripts in `examples/node` and `examples/python`; their libraries are installed by
//! `.ci/run` (`npm ci`, `pip install -r`), and a missing one fails this test.

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};
use tucano_auth::request::decode;

use super::{arbitrary_body, case, Verdict, SCHEMAS};

/// Generated bodies in the corpus, from each generator.
const DRAWN: usize = 1500;

/// Bodies whose reading differs between regular-expression or string engines.
fn edge_bodies() -> Vec<String> {
    let id = "75E3E50139F24DC3A6C9AA0C026D0292";
    let uuid = "75e3e501-39f2-4dc3-a6c9-aa0c026d0292";
    let with_id =
        |id: &str| json!({"token": "T", "subscription_identifier": {"id": id}}).to_string();
    let mut bodies = vec![
        with_id(id),
        with_id(uuid),
        with_id(&format!("{id}\n")),
        with_id(&format!("{uuid}\n")),
        with_id(&format!("\n{id}")),
        with_id(&format!("{id} ")),
        with_id(&id.to_lowercase()),
        json!({"token": "T", "subscription_identifier": {"number": "😀".repeat(256)}}).to_string(),
        json!({"token": "T", "subscription_identifier": {"number": "😀".repeat(257)}}).to_string(),
        json!({"token": "😀".repeat(4096), "subscription_identifier": {"number": "S"}}).to_string(),
        json!({"token": "T", "subscription_identifier": {"number": "S\n"}}).to_string(),
    ];
    // Lone surrogates, as Node's JSON.stringify and Python's json.dumps write them.
    let long = "x".repeat(255);
    for raw in [
        r#"{"token":"T","subscription_identifier":{"number":"\ud800"}}"#.to_owned(),
        r#"{"token":"T","subscription_identifier":{"number":"S\udfff"}}"#.to_owned(),
        r#"{"token":"\ud800","subscription_identifier":{"number":"S"}}"#.to_owned(),
        r#"{"token":"T","access_token_identifier":{"identifier":"\udc00\ud800","pass_code":"\ud800"}}"#.to_owned(),
        r#"{"token":"T","subscription_identifier":{"number":"\ud83d\ude00"}}"#.to_owned(),
        r#"{"token":"T","subscription_identifier":{"id":"\ud800"}}"#.to_owned(),
        r#"{"token":"T","subscription_identifier":{"number":"S"},"\ud800":1}"#.to_owned(),
        format!(r#"{{"token":"T","subscription_identifier":{{"number":"{long}\ud800"}}}}"#),
        format!(r#"{{"token":"T","subscription_identifier":{{"number":"{long}x\ud800"}}}}"#),
    ] {
        bodies.push(raw);
    }
    bodies
}

fn draw<S: Strategy>(strategy: S, runner: &mut TestRunner, n: usize) -> Vec<S::Value> {
    (0..n)
        .map(|_| {
            strategy
                .new_tree(runner)
                .expect("the generator draws a value")
                .current()
        })
        .collect()
}

fn corpus() -> Vec<String> {
    let mut runner = TestRunner::deterministic();
    let mut bodies = edge_bodies();
    bodies.extend(
        draw(case(), &mut runner, DRAWN)
            .iter()
            .map(|case| case.body().to_string()),
    );
    bodies.extend(
        draw(arbitrary_body(), &mut runner, DRAWN)
            .iter()
            .filter(|body| body.is_object())
            .map(Value::to_string),
    );
    bodies
}

/// Runs `program args... CORPUS` and reads its verdicts (a JSON array of booleans).
fn verdicts(program: &str, script: &Path, corpus: &Path, install: &str) -> Vec<bool> {
    let output = Command::new(program)
        .arg(script)
        .arg(corpus)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program} ({err}); install it ({install})"));
    assert!(
        output.status.success(),
        "{} {} failed ({}): {}\nits libraries are installed by `{install}`",
        program,
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints a JSON array of booleans")
}

#[test]
fn ajv_python_jsonschema_and_the_worker_accept_the_same_requests() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bodies = corpus();
    let worker: Vec<bool> = bodies
        .iter()
        .map(|body| Verdict::of(&decode(None, body.as_bytes(), &SCHEMAS)) == Verdict::Valid)
        .collect();
    assert!(
        worker.iter().filter(|valid| **valid).count() > bodies.len() / 10,
        "the corpus holds valid requests too"
    );
    let path = std::env::temp_dir().join(format!("tucano-corpus-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&bodies).expect("encode")).expect("write corpus");
    let engines = [
        (
            "Ajv 8",
            verdicts(
                "node",
                &root.join("examples/node/check-schemas.mjs"),
                &path,
                "cd examples/node && npm ci",
            ),
        ),
        (
            "Python jsonschema",
            verdicts(
                "python3",
                &root.join("examples/python/check_schemas.py"),
                &path,
                "pip install -r examples/python/requirements.txt",
            ),
        ),
    ];
    let _ = std::fs::remove_file(&path);
    for (engine, verdicts) in engines {
        assert_eq!(verdicts.len(), bodies.len(), "{engine} answered every body");
        let disagreements: Vec<String> = bodies
            .iter()
            .zip(worker.iter().zip(&verdicts))
            .filter(|(_, (worker, other))| worker != other)
            .take(5)
            .map(|(body, (worker, _))| format!("worker valid={worker}: {body}"))
            .collect();
        assert!(
            disagreements.is_empty(),
            "{engine} disagrees with the worker on:\n{}",
            disagreements.join("\n")
        );
    }
}
