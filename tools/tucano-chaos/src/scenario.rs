//! One chaos scenario end to end: a fresh queue prefix, the real worker binary, the load,
//! the fault, the wait for the last replies, the figures and the verdict.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tucano_auth::broker::Names;
use tucano_auth::store::seed;

use crate::load::{self, Ledger, Tally};
use crate::{Args, Fault};

/// The JWT key the chaos worker signs with.
const JWT_SECRET: &str = "chaos-jwt-secret-0123456789abcdef0123456789";

/// Runs every scenario of `args`, prints the table, and says whether all passed.
pub async fn run_all(args: &Args) -> anyhow::Result<bool> {
    let pool = tucano_auth::store::prepare(&args.database_url, 2)
        .await
        .context("preparing the chaos database")?;
    seed::seed_demo(&pool)
        .await
        .context("loading the demo data")?;
    pool.close().await;
    let mut rows = Vec::new();
    for fault in &args.scenarios {
        eprintln!(
            "== scenario {fault:?}: {} requests at {}/s",
            args.requests, args.rate
        );
        let row = match fault {
            Fault::DeadLetter => dead_letter(args).await?,
            fault => load_under_fault(args, *fault).await?,
        };
        eprintln!("   {}", row.line());
        rows.push(row);
    }
    println!();
    println!("| scenario | sent (confirmed) | unconfirmed | answered | missing | duplicated | replies by code | other | verdict |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!("{}", row.line());
    }
    Ok(rows.iter().all(|row| row.passed))
}

/// One line of the result table.
struct Row {
    scenario: &'static str,
    tally: Tally,
    other: String,
    passed: bool,
}

impl Row {
    fn line(&self) -> String {
        let codes: Vec<String> = self
            .tally
            .codes
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.tally.confirmed,
            self.tally.unconfirmed,
            self.tally.answered,
            self.tally.missing,
            self.tally.duplicated,
            codes.join(", "),
            self.other,
            if self.passed { "PASS" } else { "FAIL" }
        )
    }
}

fn worker_binary(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.worker {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().context("locating tucano-chaos")?;
    let path = me.with_file_name("tucano-auth");
    if !path.exists() {
        bail!(
            "{} is missing: build it (cargo build --release --workspace) or pass --worker",
            path.display()
        );
    }
    Ok(path)
}

fn start_worker(args: &Args, prefix: &str, log: &PathBuf) -> anyhow::Result<Child> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    Command::new(worker_binary(args)?)
        .arg("serve")
        .env("AMQP_URL", &args.amqp_url)
        .env("DATABASE_URL", &args.database_url)
        .env("QUEUE_PREFIX", prefix)
        .env("TUCANO_JWT_SECRET", JWT_SECRET)
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting the worker")
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

async fn reap(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    child.wait().ok()
}

async fn wait_consuming(url: &str, queue: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(connection) = Connection::connect(url, Default::default()).await {
            let ready = passive_declare(&connection, queue)
                .await
                .is_some_and(|q| q.consumer_count() > 0);
            let _ = connection.close(200, "ok".into()).await;
            if ready {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the worker did not start consuming {queue} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn declare_replies(url: &str, queue: &str) -> anyhow::Result<()> {
    let connection = Connection::connect(url, Default::default()).await?;
    let channel = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .with_context(|| format!("declaring {queue}"))?;
    let _ = connection.close(200, "ok".into()).await;
    Ok(())
}

async fn cleanup(url: &str, prefix: &str) {
    let Ok(connection) = Connection::connect(url, Default::default()).await else {
        return;
    };
    let replies = format!("{prefix}.replies");
    tucano_auth::broker::delete(&connection, &Names::new(prefix), &[replies.as_str()]).await;
    let _ = connection.close(200, "bye".into()).await;
}

/// Valid requests over several identifier paths (no pass codes: Argon2 would dominate).
fn bodies() -> Vec<Vec<u8>> {
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

fn postgres(action: &str) -> anyhow::Result<()> {
    let version = std::fs::read_dir("/etc/postgresql")
        .context("finding the PostgreSQL cluster in /etc/postgresql")?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("no PostgreSQL cluster in /etc/postgresql")?;
    let mut command = Command::new("pg_ctlcluster");
    command.args(["--skip-systemctl-redirect", &version, "main", action]);
    if action == "stop" {
        command.args(["-m", "fast"]);
    }
    let status = command.status().context("running pg_ctlcluster")?;
    if !status.success() {
        bail!("pg_ctlcluster {action} failed: {status}");
    }
    Ok(())
}

fn rabbitmq(action: &str) -> anyhow::Result<()> {
    let status = Command::new("rabbitmqctl")
        .arg("-q")
        .arg(action)
        .status()
        .context("running rabbitmqctl")?;
    if !status.success() {
        bail!("rabbitmqctl {action} failed: {status}");
    }
    Ok(())
}

/// Load at a steady rate through `fault`, then count.
async fn load_under_fault(args: &Args, fault: Fault) -> anyhow::Result<Row> {
    let prefix = format!(
        "chaos-{}-{}",
        format!("{fault:?}").to_lowercase(),
        std::process::id()
    );
    let names = Names::new(&prefix);
    let replies = format!("{prefix}.replies");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    // The worker declares the same topology at startup. Declared first, the queue the
    // wait below polls exists: a passive declare of a missing queue closes its
    // channel, which lapin logs as an ERROR on every poll.
    let connection = Connection::connect(&args.amqp_url, Default::default()).await?;
    tucano_auth::broker::declare(&connection, &names, tucano_auth::config::QueueType::Quorum)
        .await?;
    let _ = connection.close(200, "declared".into()).await;
    let mut worker = start_worker(args, &prefix, &log)?;
    wait_consuming(&args.amqp_url, &names.interactive).await?;
    declare_replies(&args.amqp_url, &replies).await?;

    let ledger = Arc::new(Ledger::new(args.requests));
    let stop = CancellationToken::new();
    let collector = tokio::spawn({
        let (url, replies, ledger, stop) = (
            args.amqp_url.clone(),
            replies.clone(),
            ledger.clone(),
            stop.clone(),
        );
        async move { load::collect(&url, &replies, ledger, stop).await }
    });
    let publisher = tokio::spawn({
        let (url, queue, replies, ledger) = (
            args.amqp_url.clone(),
            names.interactive.clone(),
            replies.clone(),
            ledger.clone(),
        );
        let (requests, rate) = (args.requests, args.rate);
        async move { load::publish(&url, &queue, &replies, requests, rate, &bodies(), ledger).await }
    });

    let run = Duration::from_secs_f64(args.requests as f64 / args.rate.max(1) as f64);
    let mut recovery: Option<Duration> = None;
    let mut passed_hostile = true;
    // The `workers` scenario's two other workers, on the same prefix.
    let mut others: Vec<Child> = Vec::new();
    let mut other = match fault {
        Fault::Workers => {
            for _ in 0..2 {
                others.push(start_worker(args, &prefix, &log)?);
            }
            for turn in 0..3 {
                tokio::time::sleep(run / 4).await;
                let victim = match turn {
                    0 => &mut worker,
                    n => &mut others[n - 1],
                };
                signal(victim, "KILL");
                let _ = reap(victim, Duration::from_secs(5)).await;
                *victim = start_worker(args, &prefix, &log)?;
            }
            "3 workers, each SIGKILLed and restarted in turn".to_owned()
        }
        Fault::Kill => {
            for _ in 0..5 {
                tokio::time::sleep(run / 6).await;
                signal(&worker, "KILL");
                let _ = reap(&mut worker, Duration::from_secs(5)).await;
                worker = start_worker(args, &prefix, &log)?;
            }
            "5 SIGKILLs".to_owned()
        }
        Fault::Broker => {
            tokio::time::sleep(run / 3).await;
            rabbitmq("stop_app")?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            rabbitmq("start_app")?;
            "broker down 5 s".to_owned()
        }
        Fault::Database => {
            tokio::time::sleep(run / 3).await;
            postgres("stop")?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            postgres("start")?;
            let back = Instant::now();
            // Serving again: the first OK reply after the database returned.
            let deadline = back + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Some(first) = ledger.first_ok_after(back) {
                    recovery = Some(first - back);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            match recovery {
                Some(r) => format!(
                    "database down 10 s; serving {:.2} s after it returned",
                    r.as_secs_f64()
                ),
                None => "database down 10 s; never served again".to_owned(),
            }
        }
        Fault::DeadLetter => bail!("the dead-letter scenario has no load"),
        Fault::Hostile => {
            let (sent, died) = hostile(args, &prefix, &mut worker, run).await?;
            if died {
                passed_hostile = false;
                format!("{sent} hostile messages; the worker DIED")
            } else {
                format!("{sent} hostile messages, worker never restarted")
            }
        }
    };
    publisher.await.context("the publisher task")?;
    let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    while !ledger.settled() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Late duplicates (redeliveries) still count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let _ = collector.await;
    // Every hostile message answered too: none waits in a queue or was dead-lettered.
    let mut hostile_left = 0;
    if fault == Fault::Hostile {
        let connection = Connection::connect(&args.amqp_url, Default::default()).await?;
        for queue in [&names.interactive, &names.batch, &names.dead_letter] {
            hostile_left += queue_depth(&connection, queue).await.unwrap_or(u32::MAX);
        }
        let _ = connection.close(200, "checked".into()).await;
    }
    for other in &others {
        signal(other, "TERM");
    }
    signal(&worker, "TERM");
    let exit = reap(&mut worker, Duration::from_secs(40)).await;
    let mut others_exit_ok = true;
    for other in &mut others {
        others_exit_ok &= reap(other, Duration::from_secs(40))
            .await
            .is_some_and(|s| s.success());
    }
    cleanup(&args.amqp_url, &prefix).await;

    let tally = ledger.tally();
    let mut passed = tally.missing == 0 && tally.confirmed > 0;
    if fault == Fault::Hostile {
        if hostile_left > 0 {
            other.push_str(&format!(
                "; {hostile_left} messages left in the request or dead-letter queues"
            ));
        }
        passed &= passed_hostile && hostile_left == 0;
    }
    if fault == Fault::Database {
        let only_expected = tally
            .codes
            .keys()
            .all(|code| code == "OK" || code == "TEMPORARILY_UNAVAILABLE");
        passed &= only_expected && recovery.is_some_and(|r| r <= Duration::from_secs(5));
    }
    if !exit.is_some_and(|s| s.success()) || !others_exit_ok {
        other.push_str("; the worker did not exit 0 on SIGTERM");
        passed = false;
    }
    if !passed {
        eprintln!("   worker log {}, last lines:", log.display());
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(30)..] {
            eprintln!("   | {line}");
        }
    } else {
        let _ = std::fs::remove_file(&log);
    }
    Ok(Row {
        scenario: match fault {
            Fault::Kill => "worker SIGKILLed 5 times",
            Fault::Broker => "RabbitMQ stop_app / start_app",
            Fault::Database => "PostgreSQL stopped 10 s",
            Fault::DeadLetter => "dead letter",
            Fault::Hostile => "hostile messages beside the load",
            Fault::Workers => "three workers on one queue, each SIGKILLed in turn",
        },
        tally,
        other,
        passed,
    })
}

/// Sends the hostile catalogue three times, spread over the run, watching that the
/// worker process never ends. Returns how many were sent and whether it died.
async fn hostile(
    args: &Args,
    prefix: &str,
    worker: &mut Child,
    run: Duration,
) -> anyhow::Result<(usize, bool)> {
    const ROUNDS: u32 = 3;
    let catalogue = tucano_hostile::attacks(prefix, 131_072);
    let pause = run / (ROUNDS * catalogue.len() as u32 + 1);
    let mut publisher = tucano_hostile::Publisher::connect(&args.amqp_url)
        .await
        .context("the raw publisher")?;
    let names = Names::new(prefix);
    let mut sent = 0;
    for _ in 0..ROUNDS {
        for attack in &catalogue {
            tokio::time::sleep(pause).await;
            let queue = if attack.batch {
                &names.batch
            } else {
                &names.interactive
            };
            publisher
                .publish(queue.as_bytes(), &attack.properties, &attack.body)
                .await
                .with_context(|| format!("publishing {}", attack.name))?;
            sent += 1;
            if worker.try_wait()?.is_some() {
                return Ok((sent, true));
            }
        }
    }
    publisher.close().await;
    Ok((sent, worker.try_wait()?.is_some()))
}

/// Messages waiting in `queue`, by a passive declare.
async fn queue_depth(connection: &Connection, queue: &str) -> Option<u32> {
    passive_declare(connection, queue)
        .await
        .map(|q| q.message_count())
}

/// What a passive declare of `queue` says; `None` if it does not exist.
async fn passive_declare(connection: &Connection, queue: &str) -> Option<lapin::Queue> {
    let channel = connection.create_channel().await.ok()?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .ok();
    // Closed before its connection, or lapin logs an ERROR.
    let _ = channel.close(200, "ok".into()).await;
    declared
}

/// A faulty consumer nacks one request until the delivery limit dead-letters it.
async fn dead_letter(args: &Args) -> anyhow::Result<Row> {
    let prefix = format!("chaos-dead-letter-{}", std::process::id());
    let names = Names::new(&prefix);
    let connection = Connection::connect(&args.amqp_url, Default::default()).await?;
    tucano_auth::broker::declare(&connection, &names, tucano_auth::config::QueueType::Quorum)
        .await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_publish(
            "".into(),
            names.interactive.as_str().into(),
            BasicPublishOptions::default(),
            b"{\"poison\":true}",
            BasicProperties::default().with_correlation_id("poison-1".into()),
        )
        .await?
        .await?;
    let mut consumer = channel
        .basic_consume(
            names.interactive.as_str().into(),
            "faulty".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut deliveries = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let probe = connection.create_channel().await?;
    let mut found = None;
    while Instant::now() < deadline && found.is_none() {
        if let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_millis(200), consumer.next()).await
        {
            deliveries += 1;
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?;
        }
        found = probe
            .basic_get(
                names.dead_letter.as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await?;
    }
    let _ = connection.close(200, "bye".into()).await;
    cleanup(&args.amqp_url, &prefix).await;
    let passed = found.as_ref().is_some_and(|m| {
        m.delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str())
            == Some("poison-1")
    });
    Ok(Row {
        scenario: "nacked until the delivery limit",
        tally: Tally::default(),
        other: format!(
            "{deliveries} deliveries, then {}",
            if passed {
                "found in the dead-letter queue"
            } else {
                "NOT found in the dead-letter queue"
            }
        ),
        passed,
    })
}
