//! Faults a production worker meets, through the real broker: a panicking handler, a
//! request nacked past the delivery limit, and secrets in a debug-level log.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use serde_json::json;
use tucano_auth::broker::{self, Names};
use tucano_auth::handle::{Authenticated, Incoming, Outcome, Route, Service};
use tucano_auth::observe::Stats;
use tucano_auth::store::seed;

use crate::helpers::{
    by_number, cleanup, settings, start_binary, unique, TestWorker, AMQP_URL, CRM_SECRET,
    JWT_SECRET, PG_SERVER,
};

/// Answers OK to everything, except that it panics on the body `boom`.
struct Fragile;

impl Service for Fragile {
    async fn handle(&self, incoming: Incoming<'_>) -> Outcome {
        if incoming.body == b"boom" {
            panic!("a poison request");
        }
        let route = incoming.reply_to.map(|r| Route::ReplyTo(r.to_owned()));
        Outcome::from_result(
            route,
            Ok(Authenticated {
                subscription_id: "00000000000000000000000000000000".into(),
                jwt: "x.y.z".into(),
            }),
        )
    }

    fn allows(&self, _reply_to: &str) -> bool {
        true
    }

    async fn ready(&self) {}

    fn is_ready(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_panicking_handler_is_answered_internal_error_and_the_worker_goes_on() {
    let prefix = unique("p");
    let settings = settings(&prefix, "postgres://unused");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        broker::serve(
            &settings.broker,
            Arc::new(Fragile),
            Arc::new(Stats::default()),
            async {
                let _ = rx.await;
            },
        )
        .await
    });
    // Reuse the client half of the harness on this prefix.
    let conn = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("conn");
    let names = Names::new(&prefix);
    let client = crate::helpers::Client { conn, names };
    client.wait_consuming().await;
    let reply = client
        .call_with(
            &client.names.interactive,
            b"boom",
            BasicProperties::default().with_correlation_id("p-1".into()),
        )
        .await
        .expect("a reply to the poison request");
    assert_eq!(reply.code(), "INTERNAL_ERROR");
    assert_eq!(reply.correlation_id.as_deref(), Some("p-1"));
    for i in 0..5 {
        let reply = client
            .call_with(
                &client.names.interactive,
                b"{}",
                BasicProperties::default().with_correlation_id(format!("ok-{i}").into()),
            )
            .await
            .expect("the worker still answers");
        assert_eq!(reply.code(), "OK");
    }
    let _ = tx.send(());
    server.await.expect("join").expect("the loop ends cleanly");
    cleanup(&prefix, &prefix).await;
}

#[tokio::test]
async fn a_request_nacked_past_the_delivery_limit_ends_in_the_dead_letter_queue() {
    let prefix = unique("d");
    let names = Names::new(&prefix);
    let conn = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("conn");
    broker::declare(&conn, &names, tucano_auth::broker::QueueType::Quorum)
        .await
        .expect("topology");
    let client = crate::helpers::Client {
        conn,
        names: names.clone(),
    };
    client
        .publish(
            &names.interactive,
            b"{\"poison\":true}",
            BasicProperties::default().with_correlation_id("dl-1".into()),
        )
        .await;
    // A faulty consumer: nacks with requeue whatever it gets.
    let channel = client.conn.create_channel().await.expect("channel");
    let mut consumer = channel
        .basic_consume(
            names.interactive.as_str().into(),
            "faulty".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let deliveries = AtomicUsize::new(0);
    let nacking = async {
        while let Some(Ok(delivery)) = consumer.next().await {
            deliveries.fetch_add(1, Ordering::SeqCst);
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .expect("nack");
        }
    };
    let dead = tokio::select! {
        _ = nacking => None,
        dead = client.get(&names.dead_letter, Duration::from_secs(20)) => dead,
    };
    let dead = dead.expect("the request reaches the dead-letter queue");
    assert_eq!(dead.raw, "{\"poison\":true}");
    assert_eq!(dead.correlation_id.as_deref(), Some("dl-1"));
    let n = deliveries.load(Ordering::SeqCst);
    assert!(
        (5..=7).contains(&n),
        "delivered up to the limit, then dead-lettered: {n} deliveries"
    );
    let _ = client.conn.close(200, "bye".into()).await;
    cleanup(&prefix, &prefix).await;
}

#[tokio::test]
async fn no_token_pass_code_or_secret_reaches_a_debug_log_or_a_reply() {
    // Only its database and data; the binary below is the worker.
    let mut harness = TestWorker::spawn().await;
    harness.stop().await.expect("stop the in-process worker");
    let prefix = harness.prefix.clone();
    let db_url = format!("{PG_SERVER}/{prefix}");
    let jwt_token = crate::fixtures::jwt_token(&harness.pool).await;
    let log_path = std::env::temp_dir().join(format!("{prefix}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = start_binary(&prefix, &db_url, &[("RUST_LOG", "trace")], Stdio::from(log));
    harness.wait_consuming().await;

    let long_token = format!("LONGTOKEN{}", "Q".repeat(5000));
    let requests = [
        by_number(seed::SESSION_TOKEN, "S0000000329"),
        by_number(&jwt_token, "S0000000329"),
        by_number("5EC2E7C0FFEE5EC2E7C0FFEE5EC2E7C0", "S0000000329"),
        by_number(&long_token, "S0000000329"),
        json!({"token": seed::SESSION_TOKEN, "access_token_identifier": {"identifier": "demo-user-1", "pass_code": "1234"}}).to_string(),
        json!({"token": seed::SESSION_TOKEN, "access_token_identifier": {"identifier": "demo-user-1", "pass_code": "PASSWRONG77"}}).to_string(),
        json!({"token": seed::SESSION_TOKEN, "customer_identification_medium_identifier": {"identifier": "demo-card-1", "pass_code": "5678"}}).to_string(),
        json!({"token": seed::SESSION_TOKEN, "access_token_identifier": {"pass_code": "PASSALONE88"}}).to_string(),
        json!({"token": seed::SESSION_TOKEN, "access_token_identifier": {"identifier": "x", "pass_code": ""}, "extra": "PASSX"}).to_string(),
    ];
    let mut jwts = Vec::new();
    let mut replies = String::new();
    for body in &requests {
        let reply = harness.call(body).await;
        if let Some(jwt) = reply.body.pointer("/data/jwt").and_then(|j| j.as_str()) {
            jwts.push(jwt.to_owned());
        }
        replies.push_str(&reply.raw);
    }
    assert!(jwts.len() >= 3, "the valid requests were answered OK");
    let _ = tucano_testkit::process::stop(&mut child, Duration::from_secs(30))
        .await
        .expect("kill");
    let log = std::fs::read_to_string(&log_path).expect("read log");
    let _ = std::fs::remove_file(&log_path);
    assert!(log.contains("consuming"), "the log was captured");
    assert!(
        log.lines().count() > 20,
        "debug and trace lines were written"
    );
    let secrets: Vec<&str> = vec![
        seed::SESSION_TOKEN,
        &jwt_token,
        "5EC2E7C0FFEE5EC2E7C0FFEE5EC2E7C0",
        &long_token[..40],
        "PASSWRONG77",
        "PASSALONE88",
        "\"1234\"",
        "\"5678\"",
        JWT_SECRET,
        CRM_SECRET,
    ];
    for secret in secrets
        .iter()
        .chain(jwts.iter().map(String::as_str).collect::<Vec<_>>().iter())
    {
        assert!(
            !log.contains(secret),
            "the log contains a secret: {}",
            &secret[..secret.len().min(12)]
        );
    }
    for secret in &secrets {
        assert!(
            !replies.contains(secret),
            "a reply contains a secret: {}",
            &secret[..secret.len().min(12)]
        );
    }
    drop(harness);
}
