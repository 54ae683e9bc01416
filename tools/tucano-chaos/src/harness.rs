//! The pieces every load scenario uses: the worker process (started with the chaos
//! settings, signalled, reaped), its metrics, the requests it is sent, and the broker
//! checks and declarations around it. Starting, stopping and asking the broker are the
//! harness's of `tucano-testkit`, shared with the tests and the bench; what is here is
//! the chaos tool's own settings and figures.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use lapin::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tucano_auth::broker::Names;
use tucano_auth::store::seed;
use tucano_testkit::process::{self, Ended, WorkerEnv};
use tucano_testkit::queue;

pub use tucano_testkit::process::Signal;

use crate::Args;

/// The JWT key the chaos worker signs with.
const JWT_SECRET: &str = "chaos-jwt-secret-0123456789abcdef0123456789";

/// The worker binary: `--worker`, else `tucano-auth` beside this executable.
fn worker_binary(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.worker {
        return Ok(path.clone());
    }
    let path = process::beside_me("tucano-auth")?;
    if !path.exists() {
        bail!(
            "{} is missing: build it (cargo build --release --workspace) or pass --worker",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `tucano-auth serve` on `prefix` with the chaos settings, its log appended to
/// `log`; `extra` adds variables or overrides those (`AMQP_URL`, `DATABASE_URL`,
/// `METRICS_ADDR`, ...).
pub fn start_worker(
    args: &Args,
    prefix: &str,
    log: &Path,
    extra: &[(&str, String)],
) -> anyhow::Result<Child> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let worker = WorkerEnv {
        amqp_url: &args.amqp_url,
        database_url: &args.database_url,
        prefix,
        jwt_secret: JWT_SECRET,
    };
    let mut vars = worker.vars();
    vars.extend(extra.iter().map(|(name, value)| (*name, value.clone())));
    process::command(
        &worker_binary(args)?,
        &["serve"],
        vars,
        &[],
        Stdio::from(log),
    )
    .spawn()
    .context("starting the worker")
}

/// Sends `signal` to `child`; one already gone is no error here (a scenario signals
/// what it may have killed).
pub fn signal(child: &Child, signal: Signal) {
    let _ = process::signal(child, signal);
}

/// Waits up to `within` for `child` to end, then kills it; its exit status if known.
pub async fn reap(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    process::reap(child, within).await.ok().map(Ended::status)
}

/// Waits up to 60 s until `queue` has a consumer.
pub async fn wait_consuming(url: &str, queue: &str) -> anyhow::Result<()> {
    wait_consumers(url, queue, 1).await
}

/// Waits up to 60 s until `queue` has at least `count` consumers, asking through a
/// new connection each time (the node behind `url` may have been away).
pub async fn wait_consumers(url: &str, queue: &str, count: u32) -> anyhow::Result<()> {
    let what = format!("{count} consumers on {queue}");
    queue::wait_until(
        &what,
        Duration::from_secs(60),
        Duration::from_millis(100),
        async || Ok(consumers(url, queue).await.is_some_and(|n| n >= count)),
    )
    .await
}

/// How many consumers `queue` has, asked through `url`; `None` if the broker did not say.
pub async fn consumers(url: &str, queue: &str) -> Option<u32> {
    let connection = Connection::connect(url, Default::default()).await.ok()?;
    let count = queue::depth(&connection, queue)
        .await
        .map(|(_, consumers)| consumers);
    let _ = connection.close(200, "ok".into()).await;
    count
}

/// Declares the durable quorum queue the replies of a run go to.
pub async fn declare_replies(url: &str, name: &str) -> anyhow::Result<()> {
    let connection = Connection::connect(url, Default::default()).await?;
    let channel = connection.create_channel().await?;
    queue::declare_durable(&channel, name, Some("quorum"))
        .await
        .with_context(|| format!("declaring {name}"))?;
    let _ = connection.close(200, "ok".into()).await;
    Ok(())
}

/// Deletes the queues and exchanges of `prefix` and its replies queue.
pub async fn cleanup(url: &str, prefix: &str) {
    let Ok(connection) = Connection::connect(url, Default::default()).await else {
        return;
    };
    let replies = format!("{prefix}.replies");
    tucano_auth::broker::delete(&connection, &Names::new(prefix), &[replies.as_str()]).await;
    let _ = connection.close(200, "bye".into()).await;
}

/// Valid requests over several identifier paths (no pass codes: Argon2 would dominate).
pub fn bodies() -> Vec<Vec<u8>> {
    let token = seed::SESSION_TOKEN;
    [
        format!(r#"{{"token":"{token}","subscription_identifier":{{"number":"S0000000329"}}}}"#),
        format!(r#"{{"token":"{token}","subscription_identifier":{{"id":"75E3E50139F24DC3A6C9AA0C026D0292"}}}}"#),
        format!(r#"{{"token":"{token}","installed_item_identifier":{{"serial_number":"SN-0001"}}}}"#),
        format!(r#"{{"token":"{token}","access_token_identifier":{{"authentication_code":"AC-0001"}}}}"#),
        format!(r#"{{"token":"{token}","customer_identification_medium_identifier":{{"authentication_code":"CIM-AC-0001"}}}}"#),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// Messages waiting in `queue`, by a passive declare.
pub async fn queue_depth(connection: &Connection, queue: &str) -> Option<u32> {
    queue::depth(connection, queue)
        .await
        .map(|(messages, _)| messages)
}

/// Requests that need a pass code (an Argon2 check): the demo access token and medium,
/// each by `identifier` and its right pass code, so no lockout begins.
pub fn pass_code_bodies() -> Vec<Vec<u8>> {
    let token = seed::SESSION_TOKEN;
    [
        format!(
            r#"{{"token":"{token}","access_token_identifier":{{"identifier":"{}","pass_code":"{}"}}}}"#,
            seed::ACCESS_TOKEN_IDENTIFIER,
            seed::ACCESS_TOKEN_PASS_CODE
        ),
        format!(
            r#"{{"token":"{token}","customer_identification_medium_identifier":{{"identifier":"{}","pass_code":"{}"}}}}"#,
            seed::MEDIUM_IDENTIFIER,
            seed::MEDIUM_PASS_CODE
        ),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// A TCP port free on 127.0.0.1 right now, for a worker's `METRICS_ADDR`. Another
/// process could take it before the worker binds it; on this machine none does.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `METRICS_ADDR` on `port`, as an `extra` of [`start_worker`].
pub fn metrics_on(port: u16) -> (&'static str, String) {
    ("METRICS_ADDR", format!("127.0.0.1:{port}"))
}

/// The requests the worker whose metrics listen on `port` has answered since it
/// started: the sum of `tucano_auth_requests_total` over its queues and codes. `None`
/// if it does not answer within 2 s.
pub async fn answered(port: u16) -> Option<u64> {
    let scrape = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await.ok()?;
        Some(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(2), scrape)
        .await
        .ok()??;
    let metric = tucano_auth::observe::metrics::REQUESTS;
    let total: f64 = text
        .lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Some(total as u64)
}

/// Runs `script` (one of `deploy/local/`) with `arguments`, its messages indented on
/// our stderr; what it printed on stdout, or an error if it failed.
pub async fn script(script: &Path, arguments: &[&str]) -> anyhow::Result<String> {
    // `output` pipes stderr whatever was asked, so the messages are passed on here.
    let output = tokio::process::Command::new(script)
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        eprintln!("   {line}");
    }
    if !output.status.success() {
        bail!(
            "{} {} failed: {}",
            script.display(),
            arguments.join(" "),
            output.status
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last lines of a worker's `log`, on stderr, when a scenario failed.
pub fn show_log(log: &Path) {
    eprintln!("   worker log {}, last lines:", log.display());
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(30)..] {
        eprintln!("   | {line}");
    }
}

/// Runs `scenario` with the servers of `servers` (a `deploy/local` script): runs
/// `servers start` first unless `already_running`, and then `servers stop` (naming
/// `what` if that fails), so a scenario stops only what it started.
pub async fn with_servers<T>(
    servers: &Path,
    already_running: bool,
    what: &str,
    scenario: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    if !already_running {
        script(servers, &["start"]).await?;
    }
    let result = scenario.await;
    if !already_running {
        if let Err(err) = script(servers, &["stop"]).await {
            eprintln!("   cannot stop {what}: {err:#}");
        }
    }
    result
}
