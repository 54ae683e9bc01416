//! One chaos scenario end to end: a fresh queue prefix, the real worker binary, the load,
//! the fault, the wait for the last replies, the figures and the verdict.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use tokio::time::Instant;
use tucano_auth::broker::Names;
use tucano_auth::store::seed;

use crate::harness::{
    self, bodies, cleanup, declare_replies, free_port, metrics_on, pass_code_bodies, queue_depth,
    reap, signal, start_worker, wait_consuming, Signal,
};
use crate::load::{self, Ledger, Tally, Traffic};
use crate::{node_loss, standby, Args, Fault};

/// Runs every scenario of `args`, prints the table, and says whether all passed.
pub async fn run_all(args: &Args) -> anyhow::Result<bool> {
    let pool = tucano_auth::store::prepare(&args.database_url, 2)
        .await
        .context("preparing the chaos database")?;
    seed::seed_demo(&pool)
        .await
        .context("loading the demo data")?;
    // The credential of the catalogue's `hostile-hash-row`: a stored hash that would
    // abort a worker computing it.
    sqlx::query(tucano_hostile::HOSTILE_HASH_ROW)
        .bind(tucano_hostile::HOSTILE_HASH)
        .bind(tucano_hostile::HOSTILE_HASH_IDENTIFIER)
        .execute(&pool)
        .await
        .context("storing the hostile hash row")?;
    pool.close().await;
    let mut rows = Vec::new();
    for fault in &args.scenarios {
        eprintln!(
            "== scenario {fault:?}: {} requests at {}/s",
            args.requests, args.rate
        );
        let row = match fault {
            Fault::DeadLetter => dead_letter(args).await?,
            Fault::NodeLoss => node_loss::run(args).await?,
            Fault::Standby => standby::run(args).await?,
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
pub struct Row {
    /// What was done.
    pub scenario: &'static str,
    /// The counts of the load.
    pub tally: Tally,
    /// The scenario's own figures.
    pub other: String,
    /// Whether it met its criterion.
    pub passed: bool,
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
    tucano_auth::broker::declare(&connection, &names, tucano_auth::broker::QueueType::Quorum)
        .await?;
    let _ = connection.close(200, "declared".into()).await;
    // Each worker slot's metrics port, to see how the replies were shared.
    let mut ports = vec![free_port()?];
    let mut worker = start_worker(args, &prefix, &log, &[metrics_on(ports[0])])?;
    wait_consuming(&args.amqp_url, &names.interactive).await?;
    declare_replies(&args.amqp_url, &replies).await?;

    // `kill` mixes in batch and pass-code requests: a worker SIGKILLed with those in
    // hand must lose none of them either.
    let traffic = Arc::new(match fault {
        Fault::Kill => Traffic::mixed(
            &names.interactive,
            &names.batch,
            bodies(),
            pass_code_bodies(),
        ),
        _ => Traffic::interactive(&names.interactive, bodies()),
    });
    let load = load::start(
        &args.amqp_url,
        traffic.clone(),
        &replies,
        args.requests,
        args.rate,
    );
    let ledger = load.ledger.clone();

    let run = Duration::from_secs_f64(args.requests as f64 / args.rate.max(1) as f64);
    let mut recovery: Option<Duration> = None;
    let mut passed_hostile = true;
    // The `workers` scenario's two other workers, on the same prefix.
    let mut others: Vec<Child> = Vec::new();
    // Requests answered per worker slot of `workers`, summed over its restarts.
    let mut shares = [0u64; 3];
    let mut unscraped = 0;
    let mut other = match fault {
        Fault::Workers => {
            for _ in 0..2 {
                ports.push(free_port()?);
                let port = ports[ports.len() - 1];
                others.push(start_worker(args, &prefix, &log, &[metrics_on(port)])?);
            }
            for turn in 0..3 {
                tokio::time::sleep(run / 4).await;
                let victim = match turn {
                    0 => &mut worker,
                    n => &mut others[n - 1],
                };
                // What it answered, read just before it dies (a few requests answered
                // in between are not seen: the shares are a close estimate).
                shares[turn] += harness::answered(ports[turn]).await.unwrap_or_else(|| {
                    unscraped += 1;
                    0
                });
                signal(victim, Signal::KILL);
                let _ = reap(victim, Duration::from_secs(5)).await;
                ports[turn] = free_port()?;
                *victim = start_worker(args, &prefix, &log, &[metrics_on(ports[turn])])?;
            }
            "3 workers, each SIGKILLed and restarted in turn".to_owned()
        }
        Fault::Kill => {
            for _ in 0..5 {
                tokio::time::sleep(run / 6).await;
                signal(&worker, Signal::KILL);
                let _ = reap(&mut worker, Duration::from_secs(5)).await;
                worker = start_worker(args, &prefix, &log, &[])?;
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
        Fault::NodeLoss | Fault::Standby => bail!("{fault:?} is a scenario of its own"),
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
    let ledger = load.finish(Duration::from_secs(args.drain_seconds)).await;
    // Every hostile message answered too: none waits in a queue or was dead-lettered.
    let mut hostile_left = 0;
    if fault == Fault::Hostile {
        let connection = Connection::connect(&args.amqp_url, Default::default()).await?;
        for queue in [&names.interactive, &names.batch, &names.dead_letter] {
            hostile_left += queue_depth(&connection, queue).await.unwrap_or(u32::MAX);
        }
        let _ = connection.close(200, "checked".into()).await;
    }
    if fault == Fault::Workers {
        for (slot, port) in ports.iter().enumerate() {
            shares[slot] += harness::answered(*port).await.unwrap_or_else(|| {
                unscraped += 1;
                0
            });
        }
    }
    for other in &others {
        signal(other, Signal::TERM);
    }
    signal(&worker, Signal::TERM);
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
    if fault == Fault::Kill {
        other.push_str(&format!(
            "; confirmed/answered by class: {}",
            class_figures(&ledger, &traffic)
        ));
        passed &= tally.codes.keys().all(|code| code == "OK");
    }
    if fault == Fault::Workers {
        other.push_str(&format!("; {}", share_figures(&shares, &tally)));
        if unscraped > 0 {
            other.push_str(&format!(
                " ({unscraped} of 6 metrics reads failed: shares undercount)"
            ));
        }
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
        harness::show_log(&log);
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
            Fault::NodeLoss => "RabbitMQ node of the queue leader SIGKILLed",
            Fault::Standby => "PostgreSQL standby restarted",
        },
        tally,
        other,
        passed,
    })
}

/// `interactive 17900/17900, batch 2000/2000, pass code 100/100`: confirmed and answered
/// requests of each class, and how many of its replies were not `OK`.
pub fn class_figures(ledger: &Ledger, traffic: &Traffic) -> String {
    let figures: Vec<String> = ledger
        .by_class(traffic)
        .iter()
        .map(|(class, n)| match n.not_ok {
            0 => format!("{} {}/{}", class.name(), n.confirmed, n.answered),
            not_ok => format!(
                "{} {}/{} ({not_ok} replies not OK)",
                class.name(),
                n.confirmed,
                n.answered
            ),
        })
        .collect();
    figures.join(", ")
}

/// How the replies were shared among the worker slots, as counts and percentages.
fn share_figures(shares: &[u64], tally: &Tally) -> String {
    let total: u64 = shares.iter().sum();
    let figures: Vec<String> = shares
        .iter()
        .enumerate()
        .map(|(slot, n)| {
            format!(
                "worker {} {n} ({:.1}%)",
                slot + 1,
                100.0 * *n as f64 / total.max(1) as f64
            )
        })
        .collect();
    let replies: u64 = tally.codes.values().sum();
    format!(
        "answered per worker (their metrics): {}; {total} in all, {replies} replies received",
        figures.join(", ")
    )
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

/// A faulty consumer nacks one request until the delivery limit dead-letters it.
async fn dead_letter(args: &Args) -> anyhow::Result<Row> {
    let prefix = format!("chaos-dead-letter-{}", std::process::id());
    let names = Names::new(&prefix);
    let connection = Connection::connect(&args.amqp_url, Default::default()).await?;
    tucano_auth::broker::declare(&connection, &names, tucano_auth::broker::QueueType::Quorum)
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
