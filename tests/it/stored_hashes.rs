//! Stored pass-code hashes are data, never a crash (docs/protocol.md §13): `import`
//! refuses a PHC string outside the documented bounds, naming the column and the line
//! but never the value; the same strings written straight into the table cost the real
//! worker (and its helper processes) nothing beyond an `AUTHENTICATION_FAILED`, with
//! one error logged per credential naming its `number`, never the hash.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tucano_auth::store::seed::{ACCESS_TOKEN_IDENTIFIER, SESSION_TOKEN, SUBSCRIPTION_NUMBER};

use crate::guessing::replies;
use crate::helpers::{by_number, cleanup, start_binary, terminate, BinaryRun};
use crate::import::{tucano, TempCsv};

/// A salt and hash of the right form, so only the parameters are hostile. Their text
/// must never appear in a message or a log line.
const SALT_AND_HASH: &str = "c2VjcmV0LXNhbHQtdGV4dA$SGFzaE11c3ROZXZlckJlTG9nZ2VkSGFzaE11c3ROZXZl";

/// Parameters that would abort a worker (`m`), hold it for hours (`t`), or that
/// Argon2 or the parser refuses; each is also a legal value of the table's column.
const HOSTILE_HEADS: &[&str] = &[
    "$argon2id$v=19$m=4294967295,t=1,p=1",
    "$argon2id$v=19$m=4194304,t=1,p=1",
    "$argon2id$v=19$m=19456,t=4294967295,p=1",
    "$argon2id$v=19$m=19456,t=2,p=0",
    "$argon2d$v=19$m=4294967295,t=1,p=16777215",
    "$argon2i$v=19$m=lots,t=2,p=1",
    "$argon2id$v=19$m=19456,t=2,p=1,keyid=AAAA",
    "$argon2id$v=16$m=19456,t=2,p=1",
    "$argon2id$v=99$m=19456,t=2,p=1",
    "$argon2id$m=19456,t=2,p=1",
];

fn hostile() -> Vec<String> {
    let mut values: Vec<String> = HOSTILE_HEADS
        .iter()
        .map(|head| format!("{head}${SALT_AND_HASH}"))
        .collect();
    // Not even a PHC string, and one far longer than any real hash.
    values.push("$argon2id$garbage".to_owned());
    values.push(format!(
        "$argon2id$v=19$m=19456,t=2,p=1${}",
        "A".repeat(100_000)
    ));
    values
}

#[tokio::test]
async fn import_refuses_hashes_outside_the_bounds_by_column_and_line() {
    let run = BinaryRun::new("hashes").await;
    let mut values = hostile();
    // An algorithm Argon2 does not name: the table's own check would refuse it too.
    values.push(format!("$argon2x$v=19$m=19456,t=2,p=1${SALT_AND_HASH}"));
    let good = tucano_auth::store::pass_code::hash("4321").expect("hash");
    let mut csv =
        "number,identifier,pass_code,life_cycle_state,accounts_receivable_number\n".to_owned();
    for (n, value) in values.iter().enumerate() {
        csv.push_str(&format!(
            "H{n},hostile-{n},\"{value}\",EFFECTIVE,AR0000000001\n"
        ));
    }
    csv.push_str(&format!("HGOOD,good-1,\"{good}\",EFFECTIVE,AR0000000001\n"));
    let file = TempCsv::new(&csv);
    let import = tucano(
        &run.prefix,
        &["import", file.path(), "--table", "access_tokens"],
        None,
    )
    .await;

    let pool = sqlx::PgPool::connect(&run.db_url).await.expect("database");
    let loaded: Vec<String> = sqlx::query_scalar(
        "SELECT number FROM access_tokens WHERE number LIKE 'H%' ORDER BY number",
    )
    .fetch_all(&pool)
    .await
    .expect("read");
    pool.close().await;
    cleanup(&run.prefix, &run.prefix).await;

    assert_eq!(import.code, 1, "{}{}", import.stdout, import.stderr);
    for line in 2..2 + values.len() {
        let expected = format!("line {line}: pass_code is not an Argon2 hash the worker accepts");
        assert!(
            import.stderr.contains(&expected),
            "{expected:?} in {}",
            import.stderr
        );
    }
    for secret in [SALT_AND_HASH, "garbage", "AAAAAAAA", &good] {
        assert!(
            !import.stderr.contains(secret) && !import.stdout.contains(secret),
            "no value of the pass_code column in the output: {}{}",
            import.stdout,
            import.stderr
        );
    }
    assert_eq!(
        loaded,
        ["HGOOD"],
        "only the row within the bounds loads: {}{}",
        import.stdout,
        import.stderr
    );
}

#[tokio::test]
async fn hostile_hashes_in_the_table_cost_the_worker_one_failed_authentication() {
    let run = BinaryRun::new("hostile_hash").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    // A lockout that never engages here: each try must reach the stored hash.
    let mut child = start_binary(
        &run.prefix,
        &run.db_url,
        &[("TUCANO_PASS_CODE_MAX_FAILURES", "1000")],
        Stdio::from(std::fs::File::create(&log).expect("log file")),
    );
    run.wait_consumers(1).await;
    let pool = sqlx::PgPool::connect(&run.db_url).await.expect("database");
    let attempt = json!({"token": SESSION_TOKEN, "access_token_identifier": {"identifier": ACCESS_TOKEN_IDENTIFIER, "pass_code": "1234"}}).to_string();
    let plain = by_number(SESSION_TOKEN, SUBSCRIPTION_NUMBER);

    let values = hostile();
    let mut outcomes = Vec::new();
    for value in &values {
        sqlx::query("UPDATE access_tokens SET pass_code_hash = $1 WHERE identifier = $2")
            .bind(value)
            .bind(ACCESS_TOKEN_IDENTIFIER)
            .execute(&pool)
            .await
            .expect("write the hash straight into the table");
        // Twice: the second try finds the same row, and logs nothing more.
        let started = Instant::now();
        run.send_bodies(&[attempt.clone(), attempt.clone(), plain.clone()])
            .await;
        let answered = replies(&run, 3).await;
        outcomes.push((
            answered,
            started.elapsed(),
            child.try_wait().expect("wait").is_none(),
        ));
    }
    // The demo hash again: the right pass code authenticates, nothing was locked.
    let demo = tucano_auth::store::pass_code::hash("1234").expect("hash");
    sqlx::query("UPDATE access_tokens SET pass_code_hash = $1 WHERE identifier = $2")
        .bind(&demo)
        .bind(ACCESS_TOKEN_IDENTIFIER)
        .execute(&pool)
        .await
        .expect("restore the hash");
    run.send_bodies(std::slice::from_ref(&attempt)).await;
    let restored = replies(&run, 1).await;
    pool.close().await;
    let alive = child.try_wait().expect("wait").is_none();
    terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;

    for ((answered, took, up), value) in outcomes.iter().zip(&values) {
        let head = &value[..value.len().min(60)];
        assert!(up, "the worker is up after {head}");
        assert_eq!(
            answered.get("AUTHENTICATION_FAILED"),
            Some(&2),
            "{head}: {answered:?}"
        );
        assert_eq!(
            answered.get("OK"),
            Some(&1),
            "{head}: a plain request after it"
        );
        // Generous: the time of a few verifications on a busy machine, where computing
        // any of these would take hours or abort.
        assert!(*took < Duration::from_secs(20), "{head}: {took:?}");
    }
    assert!(alive, "the worker stays up");
    assert_eq!(
        restored.keys().collect::<Vec<_>>(),
        ["OK"],
        "the right pass code once the hash is sound"
    );
    let errors: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("outside the Argon2 parameters"))
        .collect();
    assert_eq!(
        errors.len(),
        values.len(),
        "one error per stored value: {text}"
    );
    assert!(
        errors.iter().all(|line| line.contains("AT0000000001")),
        "each names the credential's number: {errors:?}"
    );
    for secret in [
        SALT_AND_HASH,
        "garbage",
        "AAAAAAAA",
        ACCESS_TOKEN_IDENTIFIER,
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} stays out of the log: {text}"
        );
    }
    assert!(!text.contains("panicked"), "{text}");
}
