//! The `batch` subcommand of the real binary: one result line per request line in
//! input order (NDJSON and CSV), its exit codes, its progress lines, and resuming after
//! SIGKILLs without sending written lines again.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use serde_json::{json, Value};
use tokio_util::task::AbortOnDropHandle;
use tucano_auth::store::seed;

use crate::helpers::{cleanup, declare_durable, depth, unique, TestWorker, AMQP_URL};

const TOKEN: &str = seed::SESSION_TOKEN;

/// A scratch directory of this test, removed on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new() -> Scratch {
        let dir = std::env::temp_dir().join(unique("batch"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub(crate) fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write input");
        path
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn batch_command(prefix: &str, input: &Path, output: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tucano-auth"));
    command
        .arg("batch")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .env("AMQP_URL", AMQP_URL)
        .env("QUEUE_PREFIX", prefix)
        .stdin(Stdio::null());
    command
}

/// Runs `batch` to its end (at most 120 s).
pub(crate) async fn run_batch(prefix: &str, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut command = batch_command(prefix, input, output, extra);
    let run = tokio::task::spawn_blocking(move || command.output().expect("run batch"));
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("batch ends within 120 s")
        .expect("join")
}

/// The output's lines as (line, code, message).
pub(crate) fn results(output: &Path) -> Vec<(u64, String, Value)> {
    std::fs::read_to_string(output)
        .expect("read output")
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("a JSON line");
            (
                value["line"].as_u64().expect("line"),
                value["code"].as_str().expect("code").to_owned(),
                value,
            )
        })
        .collect()
}

pub(crate) fn request(number: &str) -> String {
    json!({"token": TOKEN, "subscription_identifier": {"number": number}}).to_string()
}

#[tokio::test]
async fn every_request_line_gets_one_result_line_in_input_order() {
    let worker = TestWorker::spawn().await;
    let scratch = Scratch::new();
    // NDJSON: valid, blank (skipped but counted), not JSON, unknown subscription, no
    // identifier, token filled by --token, a lone surrogate (valid JSON naming nothing).
    let ndjson = [
        request("S0000000329"),
        String::new(),
        "{not json".to_owned(),
        request("NOPE-1"),
        json!({"token": TOKEN}).to_string(),
        json!({"subscription_identifier": {"number": "S0000000329"}}).to_string(),
        r#"{"token":"T","subscription_identifier":{"number":"\ud800"}}"#.replace('T', TOKEN),
        "   ".to_owned(),
        "[1, 2]".to_owned(),
    ]
    .join("\n");
    let input = scratch.file("in.ndjson", &ndjson);
    let output = scratch.path("out.ndjson");
    let run = run_batch(&worker.prefix, &input, &output, &["--token", TOKEN]).await;
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got: Vec<(u64, String)> = results(&output)
        .into_iter()
        .map(|(line, code, _)| (line, code))
        .collect();
    let expected = [
        (1, "OK"),
        (3, "INVALID_REQUEST"),
        (4, "NOT_FOUND"),
        (5, "MISSING_IDENTIFIER"),
        (6, "OK"),
        (7, "NOT_FOUND"),
        (9, "INVALID_REQUEST"),
    ];
    let expected: Vec<(u64, String)> = expected
        .iter()
        .map(|(line, code)| (*line, (*code).to_owned()))
        .collect();
    assert_eq!(got, expected);
    let lines = results(&output);
    assert_eq!(
        lines[0].2["subscription_id"],
        "75E3E50139F24DC3A6C9AA0C026D0292"
    );
    assert!(lines[0].2["jwt"].is_string());
    assert!(lines[1].2["jwt"].is_null() && lines[1].2["subscription_id"].is_null());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("INVALID_REQUEST 2") && stderr.contains("OK 2"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(TOKEN),
        "the token is never printed: {stderr}"
    );

    // CSV: the header is line 1; an empty cell is an absent field; a bad row is answered
    // here; a row without token gets --token's.
    let csv = "token,subscription_identifier.number,installed_item_identifier.serial_number,access_token_identifier.identifier,access_token_identifier.pass_code\n\
               TOKEN,S0000000329,,,\n\
               TOKEN,,,,\n\
               TOKEN,S0000000329,SN-1,,\n\
               TOKEN,S0000000329\n\
               ,S0000000329,,,\n\
               TOKEN,,,AT-NOPE,1234\n"
        .replace("TOKEN", TOKEN);
    let input = scratch.file("in.csv", &csv);
    let output = scratch.path("out-csv.ndjson");
    let run = run_batch(&worker.prefix, &input, &output, &["--token", TOKEN]).await;
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got: Vec<(u64, String)> = results(&output)
        .into_iter()
        .map(|(line, code, _)| (line, code))
        .collect();
    let expected: Vec<(u64, String)> = [
        (2, "OK"),
        (3, "MISSING_IDENTIFIER"),
        (4, "MULTIPLE_IDENTIFIERS"),
        (5, "INVALID_REQUEST"),
        (6, "OK"),
        (7, "AUTHENTICATION_FAILED"),
    ]
    .iter()
    .map(|(line, code)| (*line, (*code).to_owned()))
    .collect();
    assert_eq!(got, expected);

    // All OK: exit 0, here through the interactive queue.
    let input = scratch.file(
        "ok.ndjson",
        &[request("S0000000329"), request("S0000000329")].join("\n"),
    );
    let output = scratch.path("ok-out.ndjson");
    let run = run_batch(&worker.prefix, &input, &output, &["--interactive"]).await;
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(results(&output).len(), 2);
}

#[tokio::test]
async fn a_job_that_cannot_run_or_finish_exits_two() {
    let scratch = Scratch::new();
    let input = scratch.file("in.ndjson", &request("S0000000329"));
    let prefix = unique("b");
    // Unreadable input.
    let run = run_batch(&prefix, &scratch.path("missing"), &scratch.path("o1"), &[]).await;
    assert_eq!(run.status.code(), Some(2));
    // A CSV column that names no field.
    let csv = scratch.file("bad.csv", "token,subscription_identifier.nmber\nT,S\n");
    let run = run_batch(&prefix, &csv, &scratch.path("o2"), &[]).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("nmber"));
    // Broker unreachable.
    let mut command = batch_command(&prefix, &input, &scratch.path("o3"), &[]);
    command.env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f");
    let run = tokio::task::spawn_blocking(move || command.output().expect("run"))
        .await
        .expect("join");
    assert_eq!(run.status.code(), Some(2));
    // No worker ever declared the queue (a wrong QUEUE_PREFIX): said so, without
    // suggesting --resume, and no empty output left behind.
    let run = run_batch(&prefix, &input, &scratch.path("o4"), &[]).await;
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&format!(
            "the request queue {prefix}.authenticate.batch does not exist"
        )) && err.contains("check QUEUE_PREFIX"),
        "{err}"
    );
    assert!(!err.contains("--resume") && !err.contains("lapin"), "{err}");
    assert!(!scratch.path("o4").exists());
    // A queue nobody consumes: the reply never comes within --timeout.
    let conn = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("conn");
    let channel = conn.create_channel().await.expect("channel");
    declare_durable(&channel, &format!("{prefix}.authenticate.batch")).await;
    let output = scratch.path("o5");
    let run = run_batch(&prefix, &input, &output, &["--timeout", "1"]).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--resume"));
    // An existing output without --resume is never mixed with a new run's lines.
    std::fs::write(&output, "{}\n").expect("write");
    let run = run_batch(&prefix, &input, &output, &[]).await;
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&output).expect("read"), "{}\n");
    cleanup(&prefix, &prefix).await;
}

/// A stand-in worker on a batch queue: answers every request `OK` after `delay`, and
/// records the token of each request it received, by phase.
struct Echo {
    received: Arc<Mutex<Vec<(usize, String)>>>,
    phase: Arc<Mutex<usize>>,
    _task: AbortOnDropHandle<()>,
}

impl Echo {
    async fn start(conn: &Connection, queue: &str, delay: Duration) -> Echo {
        let channel = conn.create_channel().await.expect("channel");
        declare_durable(&channel, queue).await;
        channel
            .basic_qos(64, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut deliveries = channel
            .basic_consume(
                queue.into(),
                "echo".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let received = Arc::new(Mutex::new(Vec::new()));
        let phase = Arc::new(Mutex::new(0));
        let task = {
            let (received, phase) = (received.clone(), phase.clone());
            tokio::spawn(async move {
                let reply = json!({"data": {"subscription_id": "75E3E50139F24DC3A6C9AA0C026D0292", "jwt": "a.b.c"},
                                   "status": {"code": "OK", "description": "", "message": ""}})
                .to_string();
                while let Some(Ok(delivery)) = deliveries.next().await {
                    let body: Value = serde_json::from_slice(&delivery.data).unwrap_or_default();
                    let token = body["token"].as_str().unwrap_or_default().to_owned();
                    let current = *phase.lock().expect("phase");
                    // Persistent, so a broker restart keeps the job's requests.
                    let token = match delivery.properties.delivery_mode() {
                        Some(2) => token,
                        _ => format!("NOT-PERSISTENT-{token}"),
                    };
                    received.lock().expect("received").push((current, token));
                    tokio::time::sleep(delay).await;
                    let props = &delivery.properties;
                    if let (Some(reply_to), Some(id)) = (props.reply_to(), props.correlation_id()) {
                        let _ = channel
                            .basic_publish(
                                "".into(),
                                reply_to.as_str().into(),
                                BasicPublishOptions::default(),
                                reply.as_bytes(),
                                BasicProperties::default().with_correlation_id(id.clone()),
                            )
                            .await;
                    }
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
            })
        };
        Echo {
            received,
            phase,
            _task: AbortOnDropHandle::new(task),
        }
    }

    fn next_phase(&self) {
        *self.phase.lock().expect("phase") += 1;
    }

    fn tokens_in(&self, phase: usize) -> Vec<String> {
        self.received
            .lock()
            .expect("received")
            .iter()
            .filter(|(p, _)| *p == phase)
            .map(|(_, token)| token.clone())
            .collect()
    }
}

/// Input lines whose token names the line: `L1`, `L2`...
fn numbered_input(scratch: &Scratch, lines: usize) -> PathBuf {
    let mut text = String::new();
    for i in 1..=lines {
        text.push_str(
            &json!({"token": format!("L{i}"), "subscription_identifier": {"number": "S"}})
                .to_string(),
        );
        text.push('\n');
    }
    scratch.file("numbered.ndjson", &text)
}

/// The tokens the echo received in `phase` whose line was already written.
fn resent(echo: &Echo, phase: usize, written: &BTreeSet<u64>) -> Vec<String> {
    echo.tokens_in(phase)
        .into_iter()
        .filter(|token| written.contains(&token[1..].parse::<u64>().unwrap_or(0)))
        .collect()
}

/// The line numbers of the complete lines of the output.
fn complete_lines(output: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(output).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("a complete line is JSON")["line"]
                .as_u64()
                .expect("line")
        })
        .collect()
}

#[tokio::test]
async fn batch_killed_at_random_moments_and_resumed_writes_each_line_once_and_resends_none() {
    const LINES: usize = 6000;
    let prefix = unique("bk");
    let conn = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("conn");
    let queue = format!("{prefix}.authenticate.batch");
    let echo = Echo::start(&conn, &queue, Duration::ZERO).await;
    let scratch = Scratch::new();
    let input = numbered_input(&scratch, LINES);
    let output = scratch.path("out.ndjson");
    let mut written_before: BTreeSet<u64> = BTreeSet::new();
    let mut cut_mid_file = 0;
    for kill in 0..6 {
        let mut child = batch_command(&prefix, &input, &output, &["--resume", "--window", "64"])
            .stderr(Stdio::null())
            .spawn()
            .expect("start batch");
        // Kill at a random moment once this run has written something, so that every
        // kill lands in the middle of the file whatever the machine's speed.
        let size_before = std::fs::metadata(&output).map_or(0, |m| m.len());
        crate::helpers::wait_for("the run to write lines", async || {
            std::fs::metadata(&output).map_or(0, |m| m.len()) > size_before
        })
        .await;
        let wait = (uuid::Uuid::new_v4().as_u128() % 300) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // Let the requests the killed run left in the queue be taken, so that what the
        // echo receives from now on was sent by the next run.
        crate::helpers::wait_for("the batch queue to drain", async || {
            depth(&conn, &queue)
                .await
                .is_some_and(|(ready, _)| ready == 0)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // What this run received must hold no line written before the previous kill.
        let sent_again = resent(&echo, kill, &written_before);
        assert!(
            sent_again.is_empty(),
            "run {kill} sent written lines again: {sent_again:?}"
        );
        let written = complete_lines(&output);
        assert!(
            written.is_superset(&written_before),
            "kill {kill}: written lines stay"
        );
        if !written.is_empty() && written.len() < LINES {
            cut_mid_file += 1;
        }
        if kill == 2 {
            // A kill in the middle of a write leaves a torn line: resume cuts it off.
            let mut torn = std::fs::read(&output).unwrap_or_default();
            torn.extend_from_slice(br#"{"line":6001,"code":"O"#);
            std::fs::write(&output, torn).expect("tear");
        }
        written_before = written;
        echo.next_phase();
    }
    let run = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking({
            let mut command = batch_command(&prefix, &input, &output, &["--resume"]);
            move || command.output().expect("run")
        }),
    )
    .await
    .expect("the last run ends")
    .expect("join");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let sent_again = resent(&echo, 6, &written_before);
    assert!(
        sent_again.is_empty(),
        "the last run sent written lines again: {sent_again:?}"
    );
    let lines: Vec<u64> = results(&output).iter().map(|(line, _, _)| *line).collect();
    assert_eq!(lines, (1..=LINES as u64).collect::<Vec<_>>());
    assert!(
        cut_mid_file >= 2,
        "only {cut_mid_file} kills landed mid-file"
    );
    let mut per_token: HashMap<String, usize> = HashMap::new();
    for (_, token) in echo.received.lock().expect("received").iter() {
        *per_token.entry(token.clone()).or_default() += 1;
    }
    assert_eq!(per_token.len(), LINES, "every line was sent");
    assert!(
        per_token.keys().all(|token| token.starts_with('L')),
        "every request is persistent"
    );
    cleanup(&prefix, &prefix).await;
}

#[tokio::test]
async fn progress_on_a_non_terminal_is_a_line_every_interval_then_a_summary() {
    let prefix = unique("bp");
    let conn = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("conn");
    let queue = format!("{prefix}.authenticate.batch");
    let _echo = Echo::start(&conn, &queue, Duration::from_millis(10)).await;
    let scratch = Scratch::new();
    let input = numbered_input(&scratch, 300);
    let output = scratch.path("out.ndjson");
    let started = Instant::now();
    let run = run_batch(
        &prefix,
        &input,
        &output,
        &["--window", "1", "--progress-every", "1"],
    )
    .await;
    assert_eq!(run.status.code(), Some(0));
    let seconds = started.elapsed().as_secs();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("batch: "))
        .collect();
    assert!(
        progress.len() as u64 >= seconds.saturating_sub(2).max(1),
        "{seconds} s, progress lines: {stderr}"
    );
    assert!(
        progress[0].contains("/300 lines")
            && progress[0].contains("lines/s")
            && progress[0].contains("ETA"),
        "{stderr}"
    );
    assert!(
        stderr.contains("batch done: 300 of 300 lines written (OK 300)"),
        "{stderr}"
    );
    cleanup(&prefix, &prefix).await;
}
