//! SIGTERM on the real binary: it stops consuming, answers and acks what it holds, and
//! exits 0; nothing is lost and nothing is answered twice.

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use tucano_auth::broker::Names;
use tucano_auth::store::seed;

use crate::helpers::{
    by_number, cleanup, consumers, depth, terminate, unique, wait_for, AMQP_URL, PG_SERVER,
};

fn start(prefix: &str, db_url: &str) -> Child {
    crate::helpers::start_binary(prefix, db_url, &[], Stdio::null())
}

#[tokio::test]
async fn sigterm_with_requests_in_flight_answers_them_all_and_exits_zero() {
    const REQUESTS: usize = 400;
    let prefix = unique("s");
    let db_url = format!("{PG_SERVER}/{prefix}");
    let pool = tucano_auth::store::prepare(&db_url, 2)
        .await
        .expect("prepare");
    seed::seed_demo(&pool).await.expect("seed");
    pool.close().await;
    let names = Names::new(&prefix);
    let replies = format!("{prefix}.replies");
    let conn = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("conn");

    let mut child = start(&prefix, &db_url);
    wait_for("the worker to consume", async || {
        consumers(&conn, &names.interactive).await > 0
    })
    .await;
    let channel = conn.create_channel().await.expect("channel");
    channel
        .queue_declare(
            replies.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare replies");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let body = by_number(seed::SESSION_TOKEN, "S0000000329");
    for i in 0..REQUESTS {
        channel
            .basic_publish(
                "".into(),
                names.interactive.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_reply_to(replies.as_str().into())
                    .with_correlation_id(format!("r-{i}").into())
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish");
    }
    channel.wait_for_confirms().await.expect("confirmed");
    wait_for("the first replies", async || {
        depth(&conn, &replies).await.0 >= 20
    })
    .await;
    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status:?}");

    // Whatever the first worker did not take is still queued; a second worker answers it.
    let mut second = start(&prefix, &db_url);
    wait_for("every request to be answered", async || {
        depth(&conn, &replies).await.0 as usize >= REQUESTS
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(terminate(&mut second).success());

    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Some(msg) = channel
        .basic_get(
            replies.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("get")
    {
        let id = msg
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), REQUESTS, "every request answered");
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "nothing answered twice: {duplicated:?}"
    );
    assert_eq!(depth(&conn, &names.interactive).await.0, 0);
    let _ = conn.close(200, "bye".into()).await;
    cleanup(&prefix, &prefix).await;
}
