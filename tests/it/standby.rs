//! `DATABASE_READ_URL` (contract section 11): the lookups, the hot path, read the
//! standby it names; the pool (migrations, demo data, the pass-code lockout) stays on
//! `DATABASE_URL`. The "standby" here is the test's database behind a proxy that can be
//! cut, so what goes through it is what the worker reads there.

use std::sync::Arc;
use std::time::Duration;

use tucano_auth::broker::Stats;
use tucano_auth::store::seed;

use crate::helpers::{by_number, cleanup, settings, unique, Proxy, TestWorker, PG_SERVER};

#[tokio::test]
async fn lookups_read_the_standby_and_readiness_watches_it() {
    let standby = Proxy::start().await;
    let port = standby.port;
    let worker = TestWorker::spawn_with(|s| {
        s.database_read_url = Some(format!(
            "postgres://postgres@127.0.0.1:{port}/{}",
            s.queue_prefix
        ));
        s.db_retry_budget = Duration::from_secs(1);
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

#[tokio::test]
async fn an_unreachable_standby_is_a_startup_error_naming_database_read_url() {
    let prefix = unique("standby");
    let mut settings = settings(&prefix, &format!("{PG_SERVER}/{prefix}"));
    settings.metrics_addr = None;
    settings.database_read_url = Some("postgres://postgres:standby-pass@127.0.0.1:1/x".to_owned());
    let run =
        tucano_auth::worker::run(settings, Arc::new(Stats::default()), std::future::pending());
    let outcome = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the worker gave up within 30 s");
    cleanup(&prefix, &prefix).await;
    let err = format!("{:#}", outcome.expect_err("a startup error"));
    assert!(err.contains("DATABASE_READ_URL"), "{err}");
    assert!(!err.contains("standby-pass"), "{err}");
}
