//! `batch` across a lost broker connection: the link cut for a few seconds mid-job is
//! ridden out (one output line per input line, in order, nothing left to resume), and
//! a broker gone for longer than `--retry-for` stops the job for `--resume` to finish.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use tucano_auth::store::seed;

use crate::batch::{batch_command, request, results, Scratch};
use crate::helpers::{Proxy, TestWorker};

/// `lines` requests for the demo subscription, one a line.
fn job(scratch: &Scratch, lines: usize) -> std::path::PathBuf {
    let line = request("S0000000329");
    let mut text = String::with_capacity((line.len() + 1) * lines);
    for _ in 0..lines {
        text.push_str(&line);
        text.push('\n');
    }
    scratch.file("job.ndjson", &text)
}

/// Complete lines in the output so far.
fn lines_written(output: &Path) -> usize {
    std::fs::read(output)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

/// Waits (at most `limit`) until the output holds `lines` lines.
async fn wait_for_lines(output: &Path, lines: usize, limit: Duration) {
    let start = Instant::now();
    while lines_written(output) < lines {
        assert!(
            start.elapsed() < limit,
            "{} of {lines} lines written after {limit:?}",
            lines_written(output)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `batch` through `proxy`, started and left running.
fn start_batch(prefix: &str, proxy: &Proxy, input: &Path, output: &Path, extra: &[&str]) -> Child {
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    batch_command(prefix, input, output, extra)
        .env("AMQP_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start batch")
}

/// Waits for `child` to end (at most `limit`).
async fn finish(child: Child, limit: Duration) -> Output {
    let run = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait"));
    tokio::time::timeout(limit, run)
        .await
        .expect("batch ends in time")
        .expect("join")
}

/// Every line of the input is in the output once, in order, `OK`.
fn assert_complete(output: &Path, lines: usize) {
    let results = results(output);
    assert_eq!(results.len(), lines, "one output line per input line");
    for (i, (line, code, _)) in results.iter().enumerate() {
        assert_eq!(*line, i as u64 + 1, "in input order");
        assert_eq!(code, "OK", "line {line}");
    }
}

#[tokio::test]
async fn a_link_cut_for_three_seconds_mid_job_is_ridden_out_without_resume() {
    const LINES: usize = 50_000;
    let worker = TestWorker::spawn().await;
    let proxy = Proxy::start_to("127.0.0.1:5672").await;
    let scratch = Scratch::new();
    let input = job(&scratch, LINES);
    let output = scratch.path("out.ndjson");
    let child = start_batch(
        &worker.prefix,
        &proxy,
        &input,
        &output,
        &["--token", seed::SESSION_TOKEN],
    );
    // Generous bounds: a debug build beside the rest of the suite on two cores.
    wait_for_lines(&output, LINES / 3, Duration::from_secs(400)).await;
    let at_cut = lines_written(&output);
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    let run = finish(child, Duration::from_secs(800)).await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(at_cut < LINES, "the cut came mid-job");
    assert_complete(&output, LINES);
    assert!(stderr.contains("broker connection lost"), "{stderr}");
    assert!(stderr.contains("sent again"), "{stderr}");
    assert!(!stderr.contains("guest:guest"), "{stderr}");
    // The figures of the closing note: lines sent again, time without the broker, and
    // the worker's answers to requests sent twice that went to the lost connection.
    let returned = worker
        .stats
        .returned
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "cut after {at_cut} lines; the worker's replies returned unroutable: {returned}; \
         batch said:\n{stderr}"
    );
}

#[tokio::test]
async fn a_broker_gone_longer_than_retry_for_stops_the_job_and_resume_completes_it() {
    const LINES: usize = 3_000;
    let worker = TestWorker::spawn().await;
    let proxy = Proxy::start_to("127.0.0.1:5672").await;
    let scratch = Scratch::new();
    let input = job(&scratch, LINES);
    let output = scratch.path("out.ndjson");
    let args = [
        "--token",
        seed::SESSION_TOKEN,
        "--retry-for",
        "5",
        "--window",
        "16",
    ];
    let child = start_batch(&worker.prefix, &proxy, &input, &output, &args);
    wait_for_lines(&output, 100, Duration::from_secs(60)).await;
    proxy.cut();
    let cut_at = Instant::now();
    let run = finish(child, Duration::from_secs(60)).await;
    let stopped_after = cut_at.elapsed();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stopped_after >= Duration::from_secs(5) && stopped_after < Duration::from_secs(12),
        "stopped {stopped_after:?} after the cut: {stderr}"
    );
    assert!(stderr.contains("--retry-for 5"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let written = lines_written(&output);
    assert!(written < LINES, "the job stopped before its end");

    proxy.restore();
    let mut resume_args = args.to_vec();
    resume_args.push("--resume");
    let child = start_batch(&worker.prefix, &proxy, &input, &output, &resume_args);
    let run = finish(child, Duration::from_secs(120)).await;
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_complete(&output, LINES);
}

#[tokio::test]
async fn with_retry_for_zero_a_lost_connection_stops_the_job_at_once() {
    let worker = TestWorker::spawn().await;
    let proxy = Proxy::start_to("127.0.0.1:5672").await;
    let scratch = Scratch::new();
    let input = job(&scratch, 20_000);
    let output = scratch.path("out.ndjson");
    let args = ["--token", seed::SESSION_TOKEN, "--retry-for", "0"];
    let child = start_batch(&worker.prefix, &proxy, &input, &output, &args);
    wait_for_lines(&output, 100, Duration::from_secs(60)).await;
    proxy.cut();
    let cut_at = Instant::now();
    let run = finish(child, Duration::from_secs(60)).await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(cut_at.elapsed() < Duration::from_secs(5), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
}
