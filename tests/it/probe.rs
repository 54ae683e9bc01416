//! `tucano-auth probe URL`, the container health check, against a tiny HTTP responder:
//! its exit code and output for a ready server, an unready one, a silent one, and a
//! port nobody listens on.

use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const BINARY: &str = env!("CARGO_BIN_EXE_tucano-auth");

/// Longest any probe run or responder may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

/// Accepts one connection, reads the request head, writes `answer` (if any) and closes;
/// the task returns the request head it read.
async fn respond_once(answer: Option<&'static str>) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buffer = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).await.expect("read request");
            if read == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..read]);
        }
        match answer {
            Some(answer) => stream
                .write_all(answer.as_bytes())
                .await
                .expect("write answer"),
            // Silent: hold the connection until the probe gives up and closes it.
            None => while stream.read(&mut buffer).await.is_ok_and(|read| read > 0) {},
        }
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, task)
}

async fn probe(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(BINARY)
        .arg("probe")
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(LIMIT, run)
        .await
        .expect("probe ended in time")
        .expect("run probe")
}

async fn request_seen(task: JoinHandle<String>) -> String {
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("responder ended in time")
        .expect("responder did not panic")
}

#[tokio::test]
async fn a_ready_server_exits_0_and_prints_its_status_line() {
    let (addr, task) = respond_once(Some("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
    let output = probe(&[&format!("http://{addr}/readyz")]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.trim(), "HTTP/1.1 200 OK");
    let request = request_seen(task).await;
    assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");
    assert!(request.contains(&format!("Host: {addr}\r\n")), "{request}");
}

#[tokio::test]
async fn an_unready_server_exits_1_and_prints_what_is_not_ready() {
    let body = r#"{"broker": false, "database": true}"#;
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let (addr, task) = respond_once(Some(answer)).await;
    let output = probe(&[&format!("http://{addr}/readyz")]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("HTTP/1.1 503 Service Unavailable"));
    assert_eq!(lines.next(), Some(body));
    request_seen(task).await;
}

#[tokio::test]
async fn nothing_listening_exits_2_naming_the_address() {
    // A port that was free a moment ago; nothing listens on it once the listener drops.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("local address");
    let output = probe(&[&format!("http://{addr}/readyz")]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cannot reach {addr}")), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn a_silent_server_exits_2_after_the_timeout() {
    let (addr, task) = respond_once(None).await;
    let started = Instant::now();
    let output = probe(&[&format!("http://{addr}/healthz"), "--timeout", "300ms"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no answer from"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    request_seen(task).await;
}

#[tokio::test]
async fn a_url_that_is_not_plain_http_is_refused() {
    let output = probe(&["https://127.0.0.1:9477/readyz"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a plain HTTP URL"), "{stderr}");
}
