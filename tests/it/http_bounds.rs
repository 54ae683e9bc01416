//! The metrics server is bounded against whoever reaches its port (contract section
//! 8): idle and half-sent connections are closed within the header read timeout, a
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
