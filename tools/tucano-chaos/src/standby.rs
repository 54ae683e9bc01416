//! The `standby` scenario (docs/protocol.md §11, `DATABASE_READ_URL`): the primary and
//! streaming standby of `deploy/local/pg-standby`, the demo data loaded into the
//! primary, one worker whose lookups read the standby, a steady load; mid-run the
//! standby is stopped for 5 s and started again. The lookups wait (the worker holds
//! its requests and retries within `TUCANO_DB_RETRY_BUDGET_SECONDS`, 30 s), so every
//! reply must still be `OK`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use lapin::Connection;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;
use tucano_auth::broker::Names;
use tucano_auth::store::seed;

use crate::harness::{
    bodies, cleanup, declare_replies, reap, script, show_log, signal, start_worker, wait_consuming,
    with_servers, Signal,
};
use crate::load::{self, Traffic};
use crate::scenario::Row;
use crate::Args;

/// How long the standby stays stopped.
const DOWN: Duration = Duration::from_secs(5);

/// A request whose reply took longer than this waited for the standby (a reply takes
/// a few milliseconds otherwise).
const WAITED: Duration = Duration::from_millis(500);

/// Runs the scenario, starting the primary and standby if they are not both running
/// and stopping them after only in that case.
pub async fn run(args: &Args) -> anyhow::Result<Row> {
    let servers = &args.standby_script;
    let status = script(servers, &["status"]).await?;
    let running = status
        .lines()
        .filter(|line| {
            (line.starts_with("primary") || line.starts_with("standby"))
                && line.trim_end().ends_with("running")
        })
        .count();
    with_servers(
        servers,
        running >= 2,
        "the primary and standby",
        with_standby(args),
    )
    .await
}

async fn with_standby(args: &Args) -> anyhow::Result<Row> {
    let servers = &args.standby_script;
    let urls = script(servers, &["urls"]).await?;
    let url = |name: &str| {
        urls.lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix('=')
                    .map(str::to_owned)
            })
            .with_context(|| format!("{} urls printed no {name}", servers.display()))
    };
    let (primary, standby) = (url("DATABASE_URL")?, url("DATABASE_READ_URL")?);
    let pool = tucano_auth::store::prepare(&primary, 2)
        .await
        .context("preparing the primary")?;
    seed::seed_demo(&pool)
        .await
        .context("loading the demo data into the primary")?;
    pool.close().await;
    wait_replayed(&primary, &standby).await?;

    let prefix = format!("chaos-standby-{}", std::process::id());
    let names = Names::new(&prefix);
    let replies = format!("{prefix}.replies");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    let connection = Connection::connect(&args.amqp_url, Default::default()).await?;
    tucano_auth::broker::declare(&connection, &names, tucano_auth::broker::QueueType::Quorum)
        .await?;
    let _ = connection.close(200, "declared".into()).await;
    let extra = [
        ("DATABASE_URL", primary.clone()),
        ("DATABASE_READ_URL", standby.clone()),
    ];
    let mut worker = start_worker(args, &prefix, &log, &extra)?;
    wait_consuming(&args.amqp_url, &names.interactive).await?;
    declare_replies(&args.amqp_url, &replies).await?;

    let traffic = Arc::new(Traffic::interactive(&names.interactive, bodies()));
    let load = load::start(&args.amqp_url, traffic, &replies, args.requests, args.rate);
    let run = Duration::from_secs_f64(args.requests as f64 / args.rate.max(1) as f64);
    tokio::time::sleep(run / 3).await;
    script(servers, &["stop-standby"]).await?;
    let stopped = Instant::now();
    tokio::time::sleep(DOWN).await;
    script(servers, &["start-standby"]).await?;
    let back = Instant::now();
    let down = back - stopped;
    let mut serving = None;
    let deadline = back + Duration::from_secs(60);
    while serving.is_none() && Instant::now() < deadline {
        serving = load.ledger.first_answer_to_sent_after(back);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ledger = load.finish(Duration::from_secs(args.drain_seconds)).await;
    signal(&worker, Signal::TERM);
    let exit = reap(&mut worker, Duration::from_secs(40)).await;
    cleanup(&args.amqp_url, &prefix).await;

    let tally = ledger.tally();
    let (waited, longest) = ledger.waited(WAITED);
    let mut other = format!(
        "standby down {:.1} s (from stopped to accepting connections again); {waited} \
         requests waited over {} ms for their reply, the longest {:.2} s; first reply to a \
         request sent after its return {}",
        down.as_secs_f64(),
        WAITED.as_millis(),
        longest.as_secs_f64(),
        serving.map_or("never".to_owned(), |t| format!(
            "{:.2} s later",
            (t - back).as_secs_f64()
        ))
    );
    let only_ok = tally.codes.keys().all(|code| code == "OK");
    let mut passed = tally.missing == 0 && tally.confirmed > 0 && only_ok;
    if !exit.is_some_and(|s| s.success()) {
        other.push_str("; the worker did not exit 0 on SIGTERM");
        passed = false;
    }
    if passed {
        let _ = std::fs::remove_file(&log);
    } else {
        show_log(&log);
    }
    Ok(Row {
        scenario: "PostgreSQL standby (DATABASE_READ_URL) restarted",
        tally,
        other,
        passed,
    })
}

/// Waits up to 30 s until the standby has replayed everything the primary wrote so far
/// (the demo data), so the first lookups find it.
async fn wait_replayed(primary: &str, standby: &str) -> anyhow::Result<()> {
    let connect = |url: &str| PgPoolOptions::new().max_connections(1).connect_lazy(url);
    let primary = connect(primary).context("the primary's URL")?;
    let lsn: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
        .fetch_one(&primary)
        .await
        .context("reading the primary's WAL position")?;
    primary.close().await;
    let standby = connect(standby).context("the standby's URL")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replayed: Option<bool> =
            sqlx::query_scalar("select pg_last_wal_replay_lsn() >= $1::pg_lsn")
                .bind(&lsn)
                .fetch_one(&standby)
                .await
                .ok()
                .flatten();
        if replayed == Some(true) {
            standby.close().await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the standby has not replayed {lsn} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
