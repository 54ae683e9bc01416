//! The real binary times every request in `tucano_auth_request_duration_seconds`: its
//! count and sum in `/metrics` grow with the requests answered (the benchmark reads
//! the time inside the process from them). The same run, ended by SIGTERM, logs no
//! ERROR or WARN line.

use std::net::SocketAddr;

use crate::helpers::{cleanup, terminate, wait_for, BinaryRun};
use crate::observe::{binary_with_metrics, http_get};

/// The histogram's count and sum (seconds) over both queues, as a Prometheus text
/// parser reads them.
async fn count_and_sum(addr: SocketAddr) -> (f64, f64) {
    let (status, text) = http_get(addr, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("a Prometheus text parser reads the exposition");
    let sum = |name: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => {
                    Some(v)
                }
                _ => None,
            })
            .sum()
    };
    (
        sum("tucano_auth_request_duration_seconds_count"),
        sum("tucano_auth_request_duration_seconds_sum"),
    )
}

#[tokio::test]
async fn request_duration_count_and_sum_grow_with_the_requests() {
    const FIRST: usize = 60;
    const MORE: usize = 20;
    let run = BinaryRun::new("u").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let (mut child, addr) = binary_with_metrics(&run, &[], &log).await;
    assert_eq!(count_and_sum(addr).await, (0.0, 0.0), "nothing timed yet");

    run.send(FIRST).await;
    wait_for("every reply", async || run.replies_ready().await >= FIRST).await;
    // The duration is recorded as the reply is handed off, before the broker confirms
    // it; a reply in the queue has been timed.
    let (count, sum) = count_and_sum(addr).await;
    assert_eq!(count, FIRST as f64, "one duration per request");
    // A database read and a signature take well under a second each on any machine.
    assert!(
        sum > 0.0 && sum < FIRST as f64,
        "plausible total time: {sum} s"
    );

    run.send(MORE).await;
    wait_for("every reply", async || {
        run.replies_ready().await >= FIRST + MORE
    })
    .await;
    let (count_after, sum_after) = count_and_sum(addr).await;
    assert_eq!(count_after, (FIRST + MORE) as f64, "counts only ever grow");
    assert!(sum_after > sum, "the sum grows: {sum} then {sum_after}");

    // Still serving after the scrapes, and stopped by SIGTERM as usual.
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    assert!(terminate(&mut child).success());
    let text = std::fs::read_to_string(&log).expect("read the log");
    assert!(
        !text.contains('\u{1b}'),
        "a log written to a file has no colour codes"
    );
    // A clean run and a clean shutdown leave nothing for an operator to chase.
    let alarming: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(" ERROR ") || line.contains(" WARN "))
        .collect();
    assert!(alarming.is_empty(), "no ERROR or WARN line: {alarming:#?}");
    let _ = std::fs::remove_file(&log);
    let _ = run.conn.close(200, "bye".into()).await;
    cleanup(&run.prefix, &run.prefix).await;
}
