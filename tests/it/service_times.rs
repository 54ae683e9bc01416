//! SIGUSR1 on the real binary: it logs, as plain text, how long the requests since the
//! previous report spent inside it, and starts over.

use std::process::Stdio;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use tucano_auth::broker::Names;
use tucano_auth::store::seed;

use crate::helpers::{
    by_number, cleanup, consumers, depth, terminate, unique, wait_for, AMQP_URL, PG_SERVER,
};

const REPORT: &str = "service times since the last report";

/// The fields of every service-time report in `log`, in order.
fn reports(log: &std::path::Path) -> Vec<Vec<(String, u64)>> {
    std::fs::read_to_string(log)
        .expect("read the log")
        .lines()
        .filter(|line| line.contains(REPORT))
        .map(|line| {
            line.split_whitespace()
                .filter_map(|token| {
                    let (key, value) = token.split_once('=')?;
                    Some((key.to_owned(), value.parse().ok()?))
                })
                .collect()
        })
        .collect()
}

fn field(report: &[(String, u64)], name: &str) -> u64 {
    report
        .iter()
        .find(|(key, _)| key == name)
        .unwrap_or_else(|| panic!("no {name} in {report:?}"))
        .1
}

fn sigusr1(pid: u32) {
    let status = std::process::Command::new("kill")
        .arg("-USR1")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn sigusr1_logs_the_service_times_since_the_last_report() {
    const REQUESTS: usize = 60;
    let prefix = unique("u");
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
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    let stderr = std::fs::File::create(&log).expect("create the log");
    let mut child = crate::helpers::start_binary(&prefix, &db_url, &[], Stdio::from(stderr));
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
    for _ in 0..REQUESTS {
        channel
            .basic_publish(
                "".into(),
                names.interactive.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_reply_to(replies.as_str().into())
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish");
    }
    channel.wait_for_confirms().await.expect("confirmed");
    wait_for("every reply", async || {
        depth(&conn, &replies).await.0 as usize >= REQUESTS
    })
    .await;

    sigusr1(child.id());
    wait_for("the first report", async || reports(&log).len() == 1).await;
    let first = &reports(&log)[0];
    assert_eq!(field(first, "requests"), REQUESTS as u64);
    let (p50, p99, p999, max) = (
        field(first, "p50_us"),
        field(first, "p99_us"),
        field(first, "p999_us"),
        field(first, "max_us"),
    );
    assert!(
        0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
        "ordered percentiles: {first:?}"
    );
    // A database read and a signature take well under a second on any machine.
    assert!(max < 1_000_000, "under a second in the worker: {first:?}");

    // The next report counts only what came after the first.
    sigusr1(child.id());
    wait_for("the second report", async || reports(&log).len() == 2).await;
    assert_eq!(field(&reports(&log)[1], "requests"), 0);

    // Still serving after both signals, and stopped by SIGTERM as usual.
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    assert!(terminate(&mut child).success());
    let text = std::fs::read_to_string(&log).expect("read the log");
    assert!(
        !text.contains('\u{1b}'),
        "a log written to a file has no colour codes"
    );
    let _ = std::fs::remove_file(&log);
    let _ = conn.close(200, "bye".into()).await;
    cleanup(&prefix, &prefix).await;
}
