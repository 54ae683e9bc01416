//! `DATABASE_READ_URL` (docs/protocol.md §11): the lookups, the hot path, read the
//! standby it names; the pool (migrations, demo data, the pass-code lockout) stays on
//! `DATABASE_URL`. The "standby" here is the test's database behind a proxy that can be
//! cut, so what goes through it is what the worker reads there.

use std::sync::Arc;
use std::time::Duration;

use tucano_auth::observe::Stats;
use tucano_auth::store::seed;

use crate::helpers::{by_number, cleanup, settings, unique, Proxy, TestWorker, PG_SERVER};

#[tokio::test]
async fn lookups_read_the_standby_and_readiness_watches_it() {
    let standby = Proxy::start().await;
    let port = standby.port;
    let worker = TestWorker::spawn_with(|s| {
        s.database.read_url = Some(format!(
            "postgres://postgres@127.0.0.1:{port}/{}",
            s.broker.queue_prefix
        ));
        s.database.retry_budget = Duration::from_secs(1);
    })
    .await;
    let request = by_number(seed::SESSION_TOKEN, "S0000000329");
    let reply = worker.call(&request).await;
    assert_eq!(reply.code(), "OK", "{}", reply.raw);

    // The standby gone, the primary still there: lookups cannot be served, and the
    // worker says it is not ready.
    standby.cut();
    let reply = worker.call(&request).await;
    assert_eq!(reply.code(), "TEMPORARILY_UNAVAILABLE", "{}", reply.raw);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while worker.stats.readiness.database() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !worker.stats.readiness.database(),
        "readiness still says the database is up"
    );

    standby.restore();
    let reply = worker.call(&request).await;
    assert_eq!(reply.code(), "OK", "{}", reply.raw);
}

/// A standby that does not answer at start is waited for, like the primary and the
/// broker (the binary's log and `/readyz` while it waits: `tests/it/db_wait.rs`);
/// SIGTERM ends the wait.
#[tokio::test]
async fn an_unreachable_standby_at_start_is_waited_for_and_never_reported_ready() {
    let prefix = unique("standby");
    let mut settings = settings(&prefix, &format!("{PG_SERVER}/{prefix}"));
    settings.metrics_addr = None;
    settings.database.read_url = Some("postgres://postgres:standby-pass@127.0.0.1:1/x".to_owned());
    let stats = Arc::new(Stats::default());
    let run = tucano_auth::serve::run(
        settings,
        stats.clone(),
        tokio::time::sleep(Duration::from_secs(3)),
    );
    let outcome = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the worker stopped within 30 s of its shutdown");
    cleanup(&prefix, &prefix).await;
    outcome.expect("waiting is no error; the shutdown ends it");
    assert!(
        !stats.readiness.database(),
        "never ready without its standby"
    );
    assert!(
        !stats.readiness.broker(),
        "nothing consumed before the standby answered"
    );
}
