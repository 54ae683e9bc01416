//! A broker connection closed under the worker is recovered by itself: new connection,
//! topology and prefetch re-established, consuming resumed, no request lost.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tucano_auth::store::seed;

use crate::helpers::{by_number, TestWorker};

fn rabbitmqctl_json(args: &[&str]) -> Vec<Value> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .args(["--formatter", "json", "-q"])
        .output()
        .expect("rabbitmqctl runs");
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

/// The pid of the connection named `name`, if any.
fn connection_pid(name: &str) -> Option<String> {
    rabbitmqctl_json(&["list_connections", "pid", "client_properties"])
        .into_iter()
        .find(|c| {
            c["client_properties"].as_array().is_some_and(|props| {
                props
                    .iter()
                    .any(|p| p[0] == "connection_name" && p[2] == name)
            })
        })
        .and_then(|c| c["pid"].as_str().map(str::to_owned))
}

/// The node-qualified form `close_connection` takes (`<rabbit@host.N.X.Y>`) of a pid the
/// JSON formatter printed as `#PID<N.X.Y>`.
fn node_pid(json_pid: &str) -> String {
    let serial = json_pid.trim_start_matches("#PID<").trim_end_matches('>');
    let local = serial.split_once('.').map_or(serial, |(_, rest)| rest);
    let output = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .find(|line| line.ends_with(&format!(".{local}>")))
        .expect("the connection is listed in plain form too")
        .to_owned()
}

/// (prefetch, consumers) of the consuming channels of connection `pid`, sorted.
fn consuming_channels(pid: &str) -> Vec<(u64, u64)> {
    let mut channels: Vec<(u64, u64)> = rabbitmqctl_json(&[
        "list_channels",
        "connection",
        "prefetch_count",
        "consumer_count",
    ])
    .into_iter()
    .filter(|c| c["connection"] == pid && c["consumer_count"].as_u64() > Some(0))
    .map(|c| {
        (
            c["prefetch_count"].as_u64().unwrap_or(0),
            c["consumer_count"].as_u64().unwrap_or(0),
        )
    })
    .collect();
    channels.sort_unstable();
    channels
}

#[tokio::test]
async fn a_closed_broker_connection_is_recovered_with_its_prefetch() {
    let worker = TestWorker::spawn().await;
    let name = format!("tucano-auth worker {}", worker.prefix);
    let before = connection_pid(&name).expect("the worker's connection is listed by name");
    assert_eq!(
        consuming_channels(&before),
        // Both: TUCANO_PREFETCH (32 here) plus the pass-code backlog (256); of the batch
        // one, the batch gate runs TUCANO_BATCH_PREFETCH while interactive requests
        // come in, all of it when none do.
        vec![(32 + 256, 1), (32 + 256, 1)],
        "batch and interactive prefetch"
    );

    let closed = Command::new("rabbitmqctl")
        .args([
            "-q",
            "close_connection",
            &node_pid(&before),
            "recovery test",
        ])
        .status()
        .expect("rabbitmqctl");
    assert!(closed.success(), "close_connection {before}");
    // A request published while the worker reconnects waits in the queue.
    let reply = worker
        .call(&by_number(seed::SESSION_TOKEN, "S0000000329"))
        .await;
    assert_eq!(reply.code(), "OK", "{}", reply.raw);

    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        if let Some(pid) = connection_pid(&name).filter(|pid| *pid != before) {
            if consuming_channels(&pid).len() == 2 {
                break pid;
            }
        }
        assert!(Instant::now() < deadline, "the worker reconnected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        consuming_channels(&after),
        // Both: TUCANO_PREFETCH (32 here) plus the pass-code backlog (256); of the batch
        // one, the batch gate runs TUCANO_BATCH_PREFETCH while interactive requests
        // come in, all of it when none do.
        vec![(32 + 256, 1), (32 + 256, 1)],
        "prefetch re-applied after recovery"
    );
    assert!(worker.stats.reconnects.load(Ordering::Relaxed) >= 1);
}
