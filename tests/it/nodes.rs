//! `AMQP_URL` as a list of cluster nodes (docs/protocol.md §11): the worker starts at a
//! random node and moves on to the next one that answers, at start and when the node
//! it is on goes away. The nodes here are one RabbitMQ behind several addresses:
//! a port nothing listens on, and proxies that can be cut.

use tucano_auth::store::seed;

use crate::helpers::{by_number, Proxy, TestWorker};

/// A port nothing listens on: one bound, then released.
async fn dead_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr").port()
}

fn node(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

#[tokio::test]
async fn a_list_whose_other_nodes_are_dead_is_served_through_the_live_one() {
    let (dead_a, dead_b) = (dead_port().await, dead_port().await);
    // The start is random: over runs, every position of the live node is tried, and
    // with two dead ones before it the worker moves past both.
    let worker = TestWorker::spawn_with(|s| {
        s.broker.amqp_url = format!("{},{}, {}", node(dead_a), node(dead_b), node(5672));
    })
    .await;
    let reply = worker
        .call(&by_number(seed::SESSION_TOKEN, "S0000000329"))
        .await;
    assert_eq!(reply.code(), "OK", "{}", reply.raw);
}

#[tokio::test]
async fn losing_the_node_it_is_on_moves_the_worker_to_the_next() {
    let (first, second) = (
        Proxy::start_to("127.0.0.1:5672").await,
        Proxy::start_to("127.0.0.1:5672").await,
    );
    let worker = TestWorker::spawn_with(|s| {
        s.broker.amqp_url = format!("{},{}", node(first.port), node(second.port));
    })
    .await;
    let request = by_number(seed::SESSION_TOKEN, "S0000000329");
    assert_eq!(worker.call(&request).await.code(), "OK");

    // Whichever node it is on, one of the two cuts takes it away, and it must go on
    // through the other: each call waits for the worker to consume again.
    for (cut, kept) in [(&first, &second), (&second, &first)] {
        kept.restore();
        cut.cut();
        let reply = worker.call(&request).await;
        assert_eq!(reply.code(), "OK", "{}", reply.raw);
    }
}
