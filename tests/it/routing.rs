//! Where replies go and what they carry: correlation, headers, persistence, the results
//! exchange, the allow-list, and the batch queue.

use std::time::Duration;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use tucano_auth::store::seed;

use crate::helpers::{by_number, TestWorker};

const WAIT: Duration = Duration::from_secs(10);

fn valid() -> String {
    by_number(seed::SESSION_TOKEN, "S0000000329")
}

#[tokio::test]
async fn correlation_id_is_echoed_and_message_id_is_the_fallback() {
    let worker = TestWorker::spawn().await;
    let queue = worker.names.interactive.clone();
    let body = valid();
    let reply = worker
        .call_with(
            &queue,
            body.as_bytes(),
            BasicProperties::default()
                .with_correlation_id("corr-1".into())
                .with_message_id("msg-1".into()),
        )
        .await
        .expect("reply");
    assert_eq!(reply.correlation_id.as_deref(), Some("corr-1"));
    let reply = worker
        .call_with(
            &queue,
            body.as_bytes(),
            BasicProperties::default().with_message_id("msg-2".into()),
        )
        .await
        .expect("reply");
    assert_eq!(reply.correlation_id.as_deref(), Some("msg-2"));
    assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    assert_eq!(reply.header_code.as_deref(), Some("OK"));
    // Direct reply-to replies are not persistent.
    assert_ne!(reply.delivery_mode, Some(2));
}

#[tokio::test]
async fn without_reply_to_replies_go_to_the_results_exchange_by_outcome() {
    let worker = TestWorker::spawn().await;
    let ok_queue = worker
        .declare_queue("results-ok", Some("authenticate.ok"))
        .await;
    let error_queue = worker
        .declare_queue("results-error", Some("authenticate.error"))
        .await;
    let queue = worker.names.interactive.clone();
    worker
        .publish(
            &queue,
            valid().as_bytes(),
            BasicProperties::default().with_correlation_id("ok-1".into()),
        )
        .await;
    worker
        .publish(
            &queue,
            b"{}",
            BasicProperties::default().with_correlation_id("err-1".into()),
        )
        .await;
    let ok = worker
        .get(&ok_queue, WAIT)
        .await
        .expect("an OK reply on the results exchange");
    assert_eq!(ok.code(), "OK");
    assert_eq!(ok.routing_key, "authenticate.ok");
    assert_eq!(ok.correlation_id.as_deref(), Some("ok-1"));
    assert_eq!(ok.delivery_mode, Some(2), "persistent");
    let err = worker
        .get(&error_queue, WAIT)
        .await
        .expect("an error reply on the results exchange");
    assert_eq!(err.code(), "MISSING_IDENTIFIER");
    assert_eq!(err.routing_key, "authenticate.error");
    assert_eq!(err.correlation_id.as_deref(), Some("err-1"));
    assert!(
        worker
            .get(&ok_queue, Duration::from_millis(300))
            .await
            .is_none(),
        "one reply each"
    );
}

#[tokio::test]
async fn a_foreign_reply_to_gets_nothing_and_the_error_goes_to_results() {
    let worker = TestWorker::spawn().await;
    let error_queue = worker
        .declare_queue("results-error", Some("authenticate.error"))
        .await;
    let foreign = format!("foreign-{}", worker.prefix);
    let channel = worker.conn.create_channel().await.expect("channel");
    channel
        .queue_declare(
            foreign.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare foreign");
    worker
        .publish(
            &worker.names.interactive,
            valid().as_bytes(),
            BasicProperties::default()
                .with_reply_to(foreign.as_str().into())
                .with_correlation_id("f-1".into()),
        )
        .await;
    let err = worker
        .get(&error_queue, WAIT)
        .await
        .expect("the error on results");
    assert_eq!(err.code(), "REPLY_TO_NOT_ALLOWED");
    assert_eq!(err.correlation_id.as_deref(), Some("f-1"));
    assert!(err.body["data"].is_null());
    assert!(
        worker
            .get(&foreign, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing reaches the foreign queue"
    );
    let _ = channel
        .queue_delete(foreign.as_str().into(), QueueDeleteOptions::default())
        .await;
}

#[tokio::test]
async fn a_durable_reply_queue_gets_a_persistent_reply() {
    let worker = TestWorker::spawn().await;
    let replies = worker.declare_queue("replies", None).await;
    worker
        .publish(
            &worker.names.interactive,
            valid().as_bytes(),
            BasicProperties::default()
                .with_reply_to(replies.as_str().into())
                .with_correlation_id("d-1".into()),
        )
        .await;
    let reply = worker
        .get(&replies, WAIT)
        .await
        .expect("a reply on the durable queue");
    assert_eq!(reply.code(), "OK");
    assert_eq!(reply.delivery_mode, Some(2), "persistent");
    assert_eq!(reply.correlation_id.as_deref(), Some("d-1"));
}

#[tokio::test]
async fn the_batch_queue_is_served_and_requests_are_acked() {
    let mut worker = TestWorker::spawn().await;
    for i in 0..20 {
        let reply = worker
            .call_with(
                &worker.names.batch,
                valid().as_bytes(),
                BasicProperties::default().with_correlation_id(format!("b-{i}").into()),
            )
            .await
            .expect("a reply from the batch queue");
        assert_eq!(reply.code(), "OK");
        assert_eq!(reply.correlation_id, Some(format!("b-{i}")));
    }
    for queue in [&worker.names.batch, &worker.names.interactive] {
        let (ready, _) = crate::helpers::depth(&worker.conn, queue)
            .await
            .expect("the request queue exists");
        assert_eq!(ready, 0, "{queue}: every request was acked");
    }
    assert!(
        worker
            .stats
            .answered
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 20,
        "the worker counts what it answered"
    );
    worker.stop().await.expect("the worker stops cleanly");
}

#[tokio::test]
async fn a_queue_declared_with_other_arguments_stops_startup_naming_it() {
    let name = crate::helpers::unique("m");
    let conn = lapin::Connection::connect(crate::helpers::AMQP_URL, Default::default())
        .await
        .expect("conn");
    let channel = conn.create_channel().await.expect("channel");
    let interactive = format!("{name}.authenticate");
    // Classic, without the worker's arguments.
    crate::helpers::declare_durable(&channel, &interactive).await;
    let db_url = format!("{}/{name}", crate::helpers::PG_SERVER);
    let settings = crate::helpers::settings(&name, &db_url);
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        tucano_auth::serve::run(settings, Default::default(), std::future::pending()),
    )
    .await
    .expect("startup fails rather than looping");
    let err = format!("{:#}", result.expect_err("a mismatch is a startup error"));
    assert!(err.contains(&interactive), "names the queue: {err}");
    assert!(
        err.contains("x-queue-type") || err.contains("inequivalent"),
        "says the mismatch: {err}"
    );
    crate::helpers::cleanup(&name, &name).await;
    let _ = conn.close(200, "bye".into()).await;
}
