//! SIGTERM on the real binary: it stops consuming, answers and acks what it holds, and
//! exits 0; nothing is lost and nothing is answered twice.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{cleanup, correlation_id, depth, terminate, wait_for, BinaryRun};

#[tokio::test]
async fn sigterm_with_requests_in_flight_answers_them_all_and_exits_zero() {
    const REQUESTS: usize = 400;
    let run = BinaryRun::new("s").await;
    let mut child = run.start(Stdio::null()).await;
    run.send(REQUESTS).await;
    wait_for("the first replies", async || {
        run.replies_ready().await >= 20
    })
    .await;
    let status = terminate(&mut child);
    assert!(status.success(), "exit status {status:?}");

    // Whatever the first worker did not take is still queued; a second worker answers it.
    let mut second = run.start(Stdio::null()).await;
    wait_for("every request to be answered", async || {
        run.replies_ready().await >= REQUESTS
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(terminate(&mut second).success());

    let mut seen: HashMap<String, usize> = HashMap::new();
    while let Some(delivery) = run.take_reply().await {
        let id = correlation_id(&delivery);
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), REQUESTS, "every request answered");
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "nothing answered twice: {duplicated:?}"
    );
    assert_eq!(
        depth(&run.conn, &run.names.interactive)
            .await
            .expect("the request queue exists")
            .0,
        0
    );
    let _ = run.conn.close(200, "bye".into()).await;
    cleanup(&run.prefix, &run.prefix).await;
}
