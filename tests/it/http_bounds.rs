//! The metrics server is bounded against whoever reaches its port (docs/protocol.md
//! §8): idle and half-sent connections are closed within the header read timeout, a
//! connection over the limit is closed at once, and the probes keep answering while a
//! flood of such connections tries to hold the server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tucano_auth::observe::server::HEADER_READ_TIMEOUT;

use crate::helpers::*;
use crate::observe::{binary_with_metrics, http_get};

/// Beyond the header read timeout, what a closure may take: the server's timer
/// wheel, and a test machine shared with other tests.
const SLACK: Duration = Duration::from_secs(5);

/// Raises this process's soft file-descriptor limit to its hard limit, so that it can
/// hold the flood's sockets; panics, naming what to do, when the hard limit is too low.
fn descriptors_for(sockets: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let wanted = sockets + 256;
    if limit.current.is_some_and(|soft| soft < wanted) {
        assert!(
            limit.maximum.is_none_or(|hard| hard >= wanted),
            "this test holds {sockets} sockets: raise the hard limit (ulimit -Hn) to {wanted}"
        );
        limit.current = Some(wanted);
        setrlimit(Resource::Nofile, limit).expect("raise the soft descriptor limit");
    }
}

/// Opens a connection to `addr` and sends half a request head (no blank line ending
/// it), as a slow or hostile client would.
async fn half_sent(addr: SocketAddr) -> (TcpStream, Instant) {
    let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .expect("connect within 10 s")
        .expect("connect");
    let opened = Instant::now();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: flood\r\nX-Half: ")
        .await
        .expect("write half a head");
    (stream, opened)
}

/// Waits for the server to close `stream` (end of stream or reset), at most `within`
/// from `opened`; returns how long after `opened` it was closed.
async fn closed_by_server(mut stream: TcpStream, opened: Instant, within: Duration) -> Duration {
    let mut sink = Vec::new();
    let deadline = tokio::time::Instant::from_std(opened + within);
    match tokio::time::timeout_at(deadline, stream.read_to_end(&mut sink)).await {
        Ok(_) => opened.elapsed(),
        Err(_) => panic!("a half-sent connection still open {within:?} after it was opened"),
    }
}

/// Probes `path`s in turn every 200 ms until `stop`; returns each answer's status
/// (`None` for no answer within the helper's own 2 + 5 s).
async fn probe_every_200ms(
    addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(&'static str, Option<u16>)> {
    let mut answers = Vec::new();
    let paths = ["/readyz", "/healthz", "/metrics"];
    let mut every = tokio::time::interval(Duration::from_millis(200));
    while !*stop.borrow() {
        every.tick().await;
        let path = paths[answers.len() % paths.len()];
        answers.push((path, http_get(addr, path).await.map(|(status, _)| status)));
    }
    answers
}

#[tokio::test]
async fn a_thousand_half_sent_requests_are_each_closed_within_the_header_timeout_and_probes_answer_throughout(
) {
    const FLOOD: usize = 1000;
    descriptors_for(FLOOD as u64);
    let run = BinaryRun::new("hf").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let (mut child, addr) = binary_with_metrics(&run, &[], &log).await;
    // Consuming, and the database probe's first answer in.
    wait_for("/readyz 200", async || {
        http_get(addr, "/readyz").await.map(|r| r.0) == Some(200)
    })
    .await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let prober = tokio::spawn(probe_every_200ms(addr, stopped));
    let start = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(half_sent(addr).await);
    }
    let opening = start.elapsed();
    let within = HEADER_READ_TIMEOUT + SLACK;
    let closures: Vec<_> = flood
        .into_iter()
        .map(|(stream, opened)| tokio::spawn(closed_by_server(stream, opened, within)))
        .collect();
    let mut times = Vec::with_capacity(FLOOD);
    for closure in closures {
        times.push(
            closure
                .await
                .expect("every half-sent connection is closed in time"),
        );
    }
    // A little more probing after the flood ended.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(true);
    let answers = prober.await.expect("prober");

    let status = terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;
    assert!(status.success(), "{status}: {text}");

    times.sort();
    let failed: Vec<_> = answers
        .iter()
        .filter(|(_, got)| *got != Some(200))
        .collect();
    eprintln!(
        "{FLOOD} half-sent connections opened in {opening:?}; closed by the server after \
         {:?} (first) / {:?} (median) / {:?} (last); {} probes every 200 ms, {} not 200: {failed:?}",
        times[0],
        times[FLOOD / 2],
        times[FLOOD - 1],
        answers.len(),
        failed.len()
    );
    assert!(
        times[0] >= HEADER_READ_TIMEOUT - Duration::from_millis(500),
        "not closed before the timeout: a probe client gets its few seconds ({:?})",
        times[0]
    );
    assert!(answers.len() >= 20, "probed throughout: {}", answers.len());
    assert!(failed.is_empty(), "every probe answered 200: {failed:?}");
}

/// Sends `bytes` on a new connection and reads what comes back until the server
/// closes (at most 10 s).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("closed within 10 s")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Starts the binary of `run` under the shell's `ulimit -n descriptors` (so its
/// connection limit is half that), logging to `log`; returns it with its metrics
/// address once it consumes.
async fn start_under_ulimit(
    run: &BinaryRun,
    descriptors: u32,
    log: &std::path::Path,
) -> (std::process::Child, SocketAddr) {
    let command = binary_command(
        &run.prefix,
        &run.db_url,
        &[],
        std::process::Stdio::from(std::fs::File::create(log).expect("log")),
    );
    let binary = command.get_program().to_owned();
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(format!("ulimit -n {descriptors} && exec \"$0\" serve"))
        .arg(binary)
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(
            std::fs::OpenOptions::new()
                .append(true)
                .open(log)
                .expect("log"),
        ));
    let child = shell.spawn().expect("start under ulimit");
    let mut addr = None;
    wait_for("the metrics address in the log", async || {
        addr = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .find(|line| line.contains("metrics and health server listening"))
            .and_then(|line| line.split("address=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        addr.is_some()
    })
    .await;
    run.wait_consumers(1).await;
    (child, addr.expect("address"))
}

// Two threads: the watchers run while the flood is still being opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_limit_new_connections_are_closed_at_once_and_the_worker_keeps_its_descriptors(
) {
    // 256 descriptors: a limit of 128 HTTP connections.
    const DESCRIPTORS: u32 = 256;
    const FLOOD: usize = 300;
    descriptors_for(FLOOD as u64);
    let run = BinaryRun::new("hl").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let (mut child, addr) = start_under_ulimit(&run, DESCRIPTORS, &log).await;

    // Oversized heads first: answered 431 and closed.
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    let many: String = (0..70).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    for head in [&big, &many] {
        let answer = exchange(addr, head.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    }

    // Each connection is watched from the moment it is open: watched only after the
    // whole flood was opened, one closed at once would count the flood's own opening
    // time (seconds on a busy machine) as time the server kept it.
    let within = HEADER_READ_TIMEOUT + SLACK;
    let mut closures = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let (stream, opened) = half_sent(addr).await;
        closures.push(tokio::spawn(closed_by_server(stream, opened, within)));
    }
    let mut times = Vec::with_capacity(FLOOD);
    for closure in closures {
        times.push(closure.await.expect("every connection is closed in time"));
    }
    let at_once = times
        .iter()
        .filter(|t| **t < Duration::from_secs(1))
        .count();
    let held = times
        .iter()
        .filter(|t| **t >= HEADER_READ_TIMEOUT - Duration::from_millis(500))
        .count();
    // The slots are free again: the probes answer, and so does the worker.
    let readyz = http_get(addr, "/readyz").await.map(|r| r.0);
    run.send(1).await;
    wait_for("the reply", async || run.replies_ready().await >= 1).await;
    let reply = run.take_reply().await.expect("a reply");
    let body: serde_json::Value = serde_json::from_slice(&reply.data).expect("JSON");

    let status = terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;
    eprintln!(
        "under ulimit -n {DESCRIPTORS}: of {FLOOD} half-sent connections, {held} held until \
         the header timeout, {at_once} closed at once"
    );
    assert!(status.success(), "{status}: {text}");
    assert_eq!(
        held,
        DESCRIPTORS as usize / 2,
        "the limit is half the descriptors"
    );
    assert_eq!(at_once, FLOOD - held, "the others closed at once");
    assert!(text.contains("connection limit reached"), "{text}");
    assert_eq!(readyz, Some(200));
    assert_eq!(body["status"]["code"], "OK", "{body}");
}
