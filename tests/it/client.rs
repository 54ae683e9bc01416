//! The client library against the real broker: concurrent calls over one connection
//! matched to their own replies, timeouts that leave nothing behind, a lost connection
//! failing every waiting call, and `AMQP_URL` as a list of nodes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tucano_auth::client::{Client, ClientError};
use tucano_auth::error::Code;
use tucano_auth::store::seed;

use crate::helpers::{by_number, cleanup, declare_durable, unique, Proxy, TestWorker, AMQP_URL};

#[tokio::test]
async fn a_thousand_concurrent_calls_over_one_connection_each_get_their_own_reply() {
    let worker = TestWorker::spawn().await;
    let client = Arc::new(
        Client::connect(AMQP_URL, &worker.prefix)
            .await
            .expect("connect"),
    );
    let calls = (0..1000).map(|i| {
        let client = client.clone();
        tokio::spawn(async move {
            let number = if i % 2 == 0 {
                "S0000000329".to_owned()
            } else {
                format!("NOPE-{i}")
            };
            let reply = client
                .authenticate(
                    by_number(seed::SESSION_TOKEN, &number),
                    Duration::from_secs(60),
                )
                .await;
            (number, reply)
        })
    });
    let replies = futures_util::future::join_all(calls).await;
    for outcome in replies {
        let (number, reply) = outcome.expect("join");
        let reply = reply.unwrap_or_else(|err| panic!("{number}: {err}"));
        if number == "S0000000329" {
            assert_eq!(reply.code, Code::Ok);
            assert_eq!(
                reply.subscription_id.as_deref(),
                Some("75E3E50139F24DC3A6C9AA0C026D0292")
            );
            assert!(reply.jwt.is_some());
        } else {
            assert_eq!(reply.code, Code::NotFound, "{number}");
            // The message names this call's own subscription number.
            assert_eq!(
                reply.message,
                format!("subscription with number {number} not found")
            );
        }
    }
    assert_eq!(client.in_flight(), 0);
    match Arc::try_unwrap(client) {
        Ok(client) => client.close().await,
        Err(_) => panic!("every call has ended"),
    }
}

/// A prefix whose interactive queue exists but has no consumer.
async fn silent_queue(conn: &lapin::Connection) -> String {
    let prefix = unique("cl");
    let channel = conn.create_channel().await.expect("channel");
    declare_durable(&channel, &format!("{prefix}.authenticate")).await;
    let _ = channel.close(200, "ok".into()).await;
    prefix
}

#[tokio::test]
async fn a_call_nobody_answers_times_out_and_leaves_nothing_behind() {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("conn");
    let prefix = silent_queue(&conn).await;
    let client = Client::connect(AMQP_URL, &prefix).await.expect("connect");
    let started = Instant::now();
    let outcome = client
        .authenticate(
            by_number(seed::SESSION_TOKEN, "S0000000329"),
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(
        outcome.expect_err("no reply"),
        ClientError::Timeout(Duration::from_millis(300))
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(client.in_flight(), 0, "the timed-out call's entry is gone");
    client.close().await;
    cleanup(&prefix, &prefix).await;
}

#[tokio::test]
async fn a_queue_nobody_declared_is_reported_at_once() {
    let prefix = unique("cl");
    let client = Client::connect(AMQP_URL, &prefix).await.expect("connect");
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        client.authenticate("{}", Duration::from_secs(30)),
    )
    .await
    .expect("no wait for the timeout");
    assert_eq!(
        outcome.expect_err("no queue"),
        ClientError::NoQueue(format!("{prefix}.authenticate"))
    );
    client.close().await;
}

#[tokio::test]
async fn a_lost_connection_fails_every_waiting_call_at_once() {
    let conn = lapin::Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("conn");
    let prefix = silent_queue(&conn).await;
    let proxy = Proxy::start_to("127.0.0.1:5672").await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let client = Arc::new(Client::connect(&url, &prefix).await.expect("connect"));
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.authenticate("{}", Duration::from_secs(120)).await })
        })
        .collect();
    crate::helpers::wait_for("the calls to be sent", async || client.in_flight() == 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    for call in calls {
        let outcome = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the call ends when the connection is lost")
            .expect("join");
        assert!(
            matches!(outcome, Err(ClientError::Connection(_))),
            "{outcome:?}"
        );
    }
    // A call after the loss, while the broker is still out of reach, fails at once too.
    let later = client.authenticate("{}", Duration::from_secs(120)).await;
    assert!(
        matches!(later, Err(ClientError::Connection(_))),
        "{later:?}"
    );
    cleanup(&prefix, &prefix).await;
}

#[tokio::test]
async fn a_node_list_is_tried_until_one_answers_and_failures_hide_passwords() {
    let prefix = unique("cl");
    let list = format!("amqp://guest:Zq9s3cret@127.0.0.1:1/%2f, {AMQP_URL}");
    for _ in 0..4 {
        let client = Client::connect(&list, &prefix)
            .await
            .expect("the live node answers, wherever the list starts");
        client.close().await;
    }
    let dead = "amqp://guest:Zq9s3cret@127.0.0.1:1/%2f,amqp://guest:Zq9s3cret@127.0.0.1:2/%2f";
    let Err(ClientError::Connection(message)) = Client::connect(dead, &prefix).await else {
        panic!("no node answers");
    };
    assert!(
        message.contains("127.0.0.1:1") && message.contains("127.0.0.1:2"),
        "{message}"
    );
    assert!(!message.contains("Zq9s3cret"), "{message}");
}

#[tokio::test]
async fn a_call_after_a_lost_connection_connects_again() {
    let worker = TestWorker::spawn().await;
    let proxy = Proxy::start_to("127.0.0.1:5672").await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let client = Client::connect(&url, &worker.prefix)
        .await
        .expect("connect");
    let request = by_number(seed::SESSION_TOKEN, "S0000000329");
    let first = client
        .authenticate(&request, Duration::from_secs(20))
        .await
        .expect("answered");
    assert_eq!(first.code, Code::Ok);
    proxy.cut();
    crate::helpers::wait_for("the client to see the loss", async || client.is_lost()).await;
    // While the broker cannot be reached, a call fails at once, naming the cause.
    let started = Instant::now();
    let during = client.authenticate(&request, Duration::from_secs(20)).await;
    assert!(
        matches!(during, Err(ClientError::Connection(_))),
        "{during:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Once it can, the next call on the same client connects again and is answered.
    proxy.restore();
    let after = client
        .authenticate(&request, Duration::from_secs(20))
        .await
        .expect("the same client connects again");
    assert_eq!(after.code, Code::Ok);
    assert!(!client.is_lost());
    assert_eq!(client.in_flight(), 0);
    client.close().await;
}
