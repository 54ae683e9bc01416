//! SIGUSR1 on the real binary: it logs, as plain text, how long the requests since the
//! previous report spent inside it, and starts over. The same run, ended by SIGTERM,
//! logs no ERROR or WARN line.

use std::process::Stdio;

use crate::helpers::{cleanup, terminate, wait_for, BinaryRun};

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
    let run = BinaryRun::new("u").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let stderr = std::fs::File::create(&log).expect("create the log");
    let mut child = run.start(Stdio::from(stderr)).await;
    run.send(REQUESTS).await;
    wait_for("every reply", async || {
        run.replies_ready().await >= REQUESTS
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
