//! What an operator sees (docs/protocol.md §8): `/metrics` counts exactly what was
//! answered, `/readyz` follows the database and the broker, `LOG_FORMAT=json` lines
//! parse and carry the request's correlation id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tucano_auth::store::seed;

use crate::helpers::*;

/// `GET path` on `addr`: the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Waits until `/readyz` answers `status`, at most `within`; returns how long it took.
async fn readyz_becomes(addr: SocketAddr, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Some((got, _)) = http_get(addr, "/readyz").await {
            if got == status {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < within,
            "/readyz did not become {status} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The worker's metrics address, once its server listens.
async fn metrics_addr(worker: &TestWorker) -> SocketAddr {
    let mut addr = None;
    wait_for("the metrics server", async || {
        addr = worker.stats.metrics_addr.get().copied();
        addr.is_some()
    })
    .await;
    addr.expect("bound")
}

#[tokio::test]
async fn readyz_follows_a_database_outage() {
    let proxy = Proxy::start().await;
    let worker = TestWorker::spawn_via(&proxy, |s| {
        s.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let addr = metrics_addr(&worker).await;
    readyz_becomes(addr, 200, Duration::from_secs(10)).await;
    assert_eq!(http_get(addr, "/healthz").await.map(|r| r.0), Some(200));

    proxy.cut();
    let down = readyz_becomes(addr, 503, Duration::from_secs(5)).await;
    let (_, body) = http_get(addr, "/readyz").await.expect("answer");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(body, serde_json::json!({"broker": true, "database": false}));
    assert_eq!(http_get(addr, "/healthz").await.map(|r| r.0), Some(200));

    proxy.restore();
    let up = readyz_becomes(addr, 200, Duration::from_secs(5)).await;
    eprintln!("readyz: 503 after {down:?}, 200 again after {up:?}");
}

#[tokio::test]
async fn readyz_follows_a_broker_outage() {
    let proxy = Proxy::start_to("127.0.0.1:5672").await;
    let worker = TestWorker::spawn_with(|s| {
        s.broker.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
        s.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let addr = metrics_addr(&worker).await;
    readyz_becomes(addr, 200, Duration::from_secs(10)).await;

    proxy.cut();
    let down = readyz_becomes(addr, 503, Duration::from_secs(5)).await;
    let (_, body) = http_get(addr, "/readyz").await.expect("answer");
    assert!(body.contains(r#""broker":false"#), "{body}");
    tokio::time::sleep(Duration::from_secs(3)).await;

    proxy.restore();
    let up = readyz_becomes(addr, 200, Duration::from_secs(5)).await;
    let reply = worker
        .call(&by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER))
        .await;
    assert_eq!(reply.code(), "OK");
    eprintln!("readyz: 503 after {down:?}, 200 again after {up:?}");
}

/// Starts the real binary with `env` and returns it with the address its metrics
/// server bound (read from its log, which goes to `log`).
pub async fn binary_with_metrics(
    run: &BinaryRun,
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> (std::process::Child, SocketAddr) {
    let (child, addr) = start_with_metrics(run, env, log).await;
    run.wait_consumers(1).await;
    (child, addr)
}

/// Starts the real binary with `env` and returns it once its metrics server listens,
/// with that address (read from its log, which goes to `log`).
pub async fn start_with_metrics(
    run: &BinaryRun,
    env: &[(&str, &str)],
    log: &std::path::Path,
) -> (std::process::Child, SocketAddr) {
    let file = std::fs::File::create(log).expect("log file");
    let child = start_binary(
        &run.prefix,
        &run.db_url,
        env,
        std::process::Stdio::from(file),
    );
    let mut addr = None;
    wait_for("the metrics server's address in the log", async || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        addr = text
            .lines()
            .find(|line| line.contains("metrics and health server listening"))
            .and_then(|line| {
                line.split(|c: char| c.is_whitespace() || c == '"' || c == ',')
                    .find_map(|word| word.trim_start_matches("address=").parse().ok())
            });
        addr.is_some()
    })
    .await;
    (child, addr.expect("address"))
}

#[tokio::test]
async fn an_unreachable_broker_is_retried_by_host_and_port_and_readyz_says_so() {
    let run = BinaryRun::new("ub").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    // Port 1 on loopback refuses at once.
    let url = "amqp://guest:SECRET-PW-4242@127.0.0.1:1/%2f";
    let (mut child, addr) = start_with_metrics(&run, &[("AMQP_URL", url)], &log).await;
    wait_for("a retry line naming the broker", async || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("cannot reach RabbitMQ"))
            .count()
            >= 2
    })
    .await;
    let (status, body) = http_get(addr, "/readyz").await.expect("/readyz answers");
    assert_eq!(status, 503);
    assert!(body.contains(r#""broker":false"#), "{body}");
    assert!(child.try_wait().expect("wait").is_none(), "still retrying");
    let status = terminate(&mut child);
    let text = std::fs::read_to_string(&log).expect("log");
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;
    assert!(status.success(), "{status}");
    let retry = text
        .lines()
        .find(|line| line.contains("cannot reach RabbitMQ"))
        .expect("a retry line");
    assert!(retry.contains("127.0.0.1:1"), "{retry}");
    assert!(
        !text.contains("SECRET-PW-4242"),
        "the password is never logged: {text}"
    );
}

async fn publish(run: &BinaryRun, queue: &str, body: &str, correlation_id: &str) {
    run.channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default()
                .with_reply_to(run.replies.as_str().into())
                .with_correlation_id(correlation_id.into()),
        )
        .await
        .expect("publish")
        .await
        .expect("confirmed");
}

#[tokio::test]
async fn metrics_count_exactly_the_requests_answered_by_queue_and_code() {
    let run = BinaryRun::new("mx").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let (mut child, addr) = binary_with_metrics(&run, &[], &log).await;
    let ok = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    let missing = format!(r#"{{"token":"{}"}}"#, seed::SESSION_TOKEN);
    let unknown = by_number(seed::SESSION_TOKEN, "S404");
    let bad_token = by_number(
        "00000000000000000000000000000000",
        seed::SUBSCRIPTION_NUMBER,
    );
    let mix: [(&str, &str, &str, usize); 5] = [
        ("interactive", "OK", &ok, 5),
        ("interactive", "MISSING_IDENTIFIER", &missing, 3),
        ("interactive", "INVALID_TOKEN", &bad_token, 1),
        ("batch", "OK", &ok, 2),
        ("batch", "NOT_FOUND", &unknown, 4),
    ];
    let mut sent = 0;
    for (queue, _, body, n) in mix {
        let name = if queue == "batch" {
            &run.names.batch
        } else {
            &run.names.interactive
        };
        for i in 0..n {
            publish(&run, name, body, &format!("{queue}-{i}")).await;
            sent += 1;
        }
    }
    wait_for("every reply", async || run.replies_ready().await >= sent).await;
    // The counters move once the reply is confirmed, just before the ack.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, text) = http_get(addr, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("a Prometheus text parser reads the exposition");
    let mut counts: HashMap<(String, String), f64> = HashMap::new();
    let mut histogram_count = 0.0;
    for sample in &scrape.samples {
        match (sample.metric.as_str(), &sample.value) {
            ("tucano_auth_requests_total", prometheus_parse::Value::Counter(v))
            | ("tucano_auth_requests_total", prometheus_parse::Value::Untyped(v)) => {
                let key = (
                    sample.labels.get("queue").unwrap_or_default().to_owned(),
                    sample.labels.get("code").unwrap_or_default().to_owned(),
                );
                counts.insert(key, *v);
            }
            (
                "tucano_auth_request_duration_seconds",
                prometheus_parse::Value::Histogram(buckets),
            ) => {
                histogram_count += buckets.last().map_or(0.0, |b| b.count);
            }
            _ => {}
        }
    }
    for (queue, code, _, n) in mix {
        assert_eq!(
            counts.get(&(queue.to_owned(), code.to_owned())).copied(),
            Some(n as f64),
            "{queue} {code}"
        );
    }
    let total: f64 = counts.values().sum();
    assert_eq!(total, sent as f64, "no other request counted: {counts:?}");
    assert_eq!(histogram_count, sent as f64, "one duration per request");
    for name in [
        "tucano_auth_requests_in_flight",
        "tucano_auth_redeliveries_total",
        "tucano_auth_replies_returned_total",
        "tucano_auth_requests_requeued_total",
        "tucano_auth_broker_reconnects_total",
        "tucano_auth_broker_connected",
        "tucano_auth_database_up",
        "tucano_auth_db_statement_duration_seconds",
        "tucano_auth_db_statement_requests",
        "tucano_auth_build_info",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "{name} is exposed"
        );
    }
    promtool_finds_no_error(&text);
    let status = terminate(&mut child);
    assert!(status.success());
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;
}

/// `promtool check metrics` on the exposition, where promtool is installed (CI
/// installs it; elsewhere the check is skipped with a note).
pub fn promtool_finds_no_error(exposition: &str) {
    use std::io::Write as _;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("promtool not installed: `promtool check metrics` skipped");
            return;
        }
        Err(err) => panic!("CI must have promtool: {err}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ends");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn json_log_lines_parse_and_carry_the_correlation_id() {
    let run = BinaryRun::new("js").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let (mut child, _) =
        binary_with_metrics(&run, &[("LOG_FORMAT", "json"), ("RUST_LOG", "debug")], &log).await;
    let ok = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    publish(&run, &run.names.interactive, &ok, "json-corr-1").await;
    publish(&run, &run.names.batch, r#"{"token":"x"}"#, "json-corr-2").await;
    wait_for("both replies", async || run.replies_ready().await >= 2).await;
    let status = terminate(&mut child);
    assert!(status.success());
    let text = std::fs::read_to_string(&log).expect("log");
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;
    let mut answered = HashMap::new();
    for line in text.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(value.get(key).is_some(), "{key} missing: {line}");
        }
        if value["message"] == "answered" {
            answered.insert(
                value["correlation_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                value["queue"].as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    assert_eq!(
        answered.get("json-corr-1").map(String::as_str),
        Some("interactive"),
        "{text}"
    );
    assert_eq!(
        answered.get("json-corr-2").map(String::as_str),
        Some("batch"),
        "{text}"
    );
}

#[tokio::test]
async fn every_counter_of_a_finite_label_set_is_exported_at_zero_from_the_start() {
    use tucano_auth::error::Code;
    use tucano_auth::observe::metrics::{PASS_CODE_RESULTS, QUEUES};
    let run = BinaryRun::new("mz").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    // A fresh process: nothing answered, no pass code verified.
    let (mut child, addr) = binary_with_metrics(&run, &[], &log).await;
    let (status, text) = http_get(addr, "/metrics").await.expect("/metrics answers");
    let stopped = terminate(&mut child);
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;
    assert!(stopped.success(), "{stopped}");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("a Prometheus text parser reads the exposition");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let mut expected: Vec<(String, Vec<(&str, &str)>)> = Vec::new();
    for result in PASS_CODE_RESULTS {
        expected.push((
            "tucano_auth_pass_code_verifications_total".into(),
            vec![("result", result)],
        ));
    }
    for queue in QUEUES {
        for code in Code::ALL {
            expected.push((
                "tucano_auth_requests_total".into(),
                vec![("queue", queue), ("code", code.as_str())],
            ));
        }
        expected.push((
            "tucano_auth_redeliveries_total".into(),
            vec![("queue", queue)],
        ));
        expected.push((
            "tucano_auth_requests_in_flight".into(),
            vec![("queue", queue)],
        ));
    }
    for name in [
        "tucano_auth_replies_returned_total",
        "tucano_auth_requests_requeued_total",
        "tucano_auth_broker_reconnects_total",
        "tucano_auth_pass_code_shed_total",
        "tucano_auth_pass_code_lockouts_total",
    ] {
        expected.push((name.into(), vec![]));
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(name, labels)| value(name, labels) != Some(0.0))
        .collect();
    eprintln!(
        "{} series of finite label sets checked at 0 on a fresh worker",
        expected.len()
    );
    assert!(missing.is_empty(), "not exported at 0: {missing:?}\n{text}");
    // The documentation's literal example, by name.
    assert!(
        text.contains(r#"tucano_auth_pass_code_verifications_total{result="match"} 0"#),
        "{text}"
    );
    promtool_finds_no_error(&text);
}
