//! Guessing a pass code as an attacker would (docs/protocol.md §14, "Guessing"): a burst
//! of wrong pass codes for one identifier, published at once to three real workers
//! that share the database and the queues, verifies at most
//! `TUCANO_PASS_CODE_MAX_FAILURES` of them, whatever the order the workers take them
//! in; the right pass code is refused until the window has passed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use tucano_auth::store::seed::{ACCESS_TOKEN_IDENTIFIER, SESSION_TOKEN};

use crate::helpers::{cleanup, terminate, BinaryRun};
use crate::observe::{binary_with_metrics, http_get};

/// The lockout's settings in this test: short, so the test sees the window end, but
/// long enough to outlast the burst, or a new count would rightly start during it.
const MAX_FAILURES: u64 = 5;
const WINDOW: Duration = Duration::from_secs(30);
const WORKERS: usize = 3;
const WRONG: usize = 300;

fn attempt(pass_code: &str) -> String {
    json!({"token": SESSION_TOKEN, "access_token_identifier": {"identifier": ACCESS_TOKEN_IDENTIFIER, "pass_code": pass_code}}).to_string()
}

/// The value of `series` (a metric's name and labels) on the worker at `addr`, 0
/// while it is not exported.
async fn counter(addr: SocketAddr, series: &str) -> u64 {
    let (status, body) = http_get(addr, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200);
    let series = format!("{series} ");
    body.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().expect("a counter value"))
}

/// `tucano_auth_pass_code_verifications_total{result}` of the worker at `addr`.
async fn verifications(addr: SocketAddr, result: &str) -> u64 {
    counter(
        addr,
        &format!("tucano_auth_pass_code_verifications_total{{result=\"{result}\"}}"),
    )
    .await
}

/// Waits for `n` replies in the reply queue (at most a window) and tallies them by
/// status code.
pub(crate) async fn replies(run: &BinaryRun, n: usize) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + WINDOW;
    let mut codes = BTreeMap::new();
    let mut taken = 0;
    while taken < n {
        assert!(
            Instant::now() < deadline,
            "{taken} of {n} replies within two minutes: {codes:?}"
        );
        match run.take_reply().await {
            Some(delivery) => {
                let body: serde_json::Value =
                    serde_json::from_slice(&delivery.data).expect("a JSON reply");
                let code = body["status"]["code"].as_str().unwrap_or("?").to_owned();
                *codes.entry(code).or_default() += 1;
                taken += 1;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    codes
}

/// The workers of a test, killed if the test panics before it stops them.
struct Workers(Vec<(std::process::Child, SocketAddr, std::path::PathBuf)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, _, log) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(log);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_three_workers_verifies_at_most_max_failures_wrong_pass_codes() {
    let run = BinaryRun::new("guess").await;
    let max = MAX_FAILURES.to_string();
    let window = WINDOW.as_secs().to_string();
    let env = [
        ("TUCANO_PASS_CODE_MAX_FAILURES", max.as_str()),
        ("TUCANO_PASS_CODE_LOCKOUT_SECONDS", window.as_str()),
    ];
    let mut workers = Workers(Vec::new());
    for n in 0..WORKERS {
        let log = std::env::temp_dir().join(format!("{}-{n}.log", run.prefix));
        let (child, addr) = binary_with_metrics(&run, &env, &log).await;
        workers.0.push((child, addr, log));
    }
    run.wait_consumers(WORKERS as u32).await;

    // All at once: published back to back and confirmed before any reply is read.
    let wrong: Vec<String> = (0..WRONG).map(|n| attempt(&format!("{n:04}"))).collect();
    let started = Instant::now();
    run.send_bodies(&wrong).await;
    let burst = replies(&run, WRONG).await;
    let burst_time = started.elapsed();
    run.send_bodies(&[attempt("1234")]).await;
    let right_while_locked = replies(&run, 1).await;
    let pool = sqlx::PgPool::connect(&run.db_url).await.expect("database");
    let counted: Option<i32> = sqlx::query_scalar(
        "SELECT failures FROM pass_code_failures WHERE holder = 'access_token' AND identifier = $1",
    )
    .bind(ACCESS_TOKEN_IDENTIFIER)
    .fetch_optional(&pool)
    .await
    .expect("read the count");
    pool.close().await;

    let mut mismatches = Vec::new();
    let (mut matches, mut lockouts) = (0, 0);
    for (_, addr, _) in &workers.0 {
        mismatches.push(verifications(*addr, "mismatch").await);
        matches += verifications(*addr, "match").await;
        lockouts += counter(*addr, "tucano_auth_pass_code_lockouts_total").await;
    }
    let verified: u64 = mismatches.iter().sum::<u64>() + matches;
    eprintln!(
        "{WRONG} wrong pass codes over {WORKERS} workers in {burst_time:?}: {burst:?}; \
         verified {verified} (by worker {mismatches:?} mismatches, {matches} matches), \
         counted {counted:?}, lockouts {lockouts}; the right one then: {right_while_locked:?}"
    );

    // Once the window has passed since the last failure (counted at the burst's start),
    // the right pass code is accepted again.
    tokio::time::sleep(WINDOW.saturating_sub(started.elapsed()) + Duration::from_secs(1)).await;
    run.send_bodies(&[attempt("1234")]).await;
    let after_window = replies(&run, 1).await;

    let mut alive = Vec::new();
    for (child, _, _) in &mut workers.0 {
        alive.push(child.try_wait().expect("wait").is_none());
        terminate(child);
    }
    drop(workers);
    cleanup(&run.prefix, &run.prefix).await;

    assert!(
        alive.iter().all(|&up| up),
        "every worker stays up: {alive:?}"
    );
    assert_eq!(
        burst.get("AUTHENTICATION_FAILED").copied().unwrap_or(0)
            + burst.get("TEMPORARILY_UNAVAILABLE").copied().unwrap_or(0),
        WRONG,
        "every wrong pass code is refused (or shed): {burst:?}"
    );
    assert!(
        burst_time < WINDOW,
        "the burst ({burst_time:?}) must end within the window for the bound to apply"
    );
    assert!(
        verified <= MAX_FAILURES,
        "at most {MAX_FAILURES} verified, got {verified} ({mismatches:?})"
    );
    assert_eq!(
        matches, 0,
        "the right pass code was never verified while locked"
    );
    assert_eq!(
        counted,
        Some(MAX_FAILURES as i32),
        "the failures table's count"
    );
    assert_eq!(
        right_while_locked.keys().collect::<Vec<_>>(),
        ["AUTHENTICATION_FAILED"],
        "the right pass code while locked"
    );
    assert_eq!(
        after_window.keys().collect::<Vec<_>>(),
        ["OK"],
        "the right pass code once the window has passed"
    );
}
