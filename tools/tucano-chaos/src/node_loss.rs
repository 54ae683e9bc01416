//! The `node-loss` scenario (docs/protocol.md §11): the three nodes of
//! `deploy/local/rabbitmq-cluster`, two workers given the node list, a steady load with
//! confirms; the node holding the interactive queue's leader, and one worker's
//! connection, has its Erlang VM SIGKILLed, then is started again. The publisher and
//! the collector use a node that is not killed, so the figures are the workers' and
//! the queues', not the load's own reconnection.

use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use lapin::Connection;
use tokio::time::Instant;
use tucano_auth::broker::Names;

use crate::harness::{
    bodies, cleanup, consumers, declare_replies, reap, script, show_log, signal, start_worker,
    wait_consumers, with_servers, Signal,
};
use crate::load::{self, Traffic};
use crate::scenario::Row;
use crate::Args;

/// How many times the second worker is restarted, at most, to land one on the victim.
const STARTS: u32 = 12;

/// Runs the scenario, starting the cluster if it is not running and stopping it after
/// only in that case.
pub async fn run(args: &Args) -> anyhow::Result<Row> {
    let cluster = &args.cluster_script;
    let status = script(cluster, &["status"]).await?;
    let running = status
        .lines()
        .filter(|line| line.split_whitespace().nth(2) == Some("running"))
        .count();
    with_servers(cluster, running >= 3, "the cluster", under_node_loss(args)).await
}

async fn under_node_loss(args: &Args) -> anyhow::Result<Row> {
    let cluster = &args.cluster_script;
    let list = script(cluster, &["urls"]).await?.trim().to_owned();
    let nodes: Vec<&str> = list.split(',').collect();
    ensure!(
        nodes.len() == 3,
        "the cluster script lists {} nodes, not 3",
        nodes.len()
    );
    let ports = nodes
        .iter()
        .map(|url| port_of(url))
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let prefix = format!("chaos-node-loss-{}", std::process::id());
    let names = Names::new(&prefix);
    let replies = format!("{prefix}.replies");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));

    let connection = Connection::connect(nodes[0], Default::default()).await?;
    tucano_auth::broker::declare(&connection, &names, tucano_auth::broker::QueueType::Quorum)
        .await?;
    let _ = connection.close(200, "declared".into()).await;
    let victim = leader(args, &names.interactive).await?;
    // The next node: the publisher, the collector and the checks go through it.
    let safe = nodes[victim % 3];
    let victim_port = ports[victim - 1];
    declare_replies(safe, &replies).await?;

    let extra = [("AMQP_URL", list.clone())];
    let mut workers: Vec<Child> = vec![
        start_worker(args, &prefix, &log, &extra)?,
        start_worker(args, &prefix, &log, &extra)?,
    ];
    wait_consumers(safe, &names.interactive, 2).await?;
    // A worker starts at a random node of its list: restart the second until one of
    // the two is connected to the victim.
    let mut starts = 2;
    let on_victim = loop {
        if let Some(i) =
            (0..2).find(|i| broker_ports(workers[*i].id(), &ports).contains(&victim_port))
        {
            break i;
        }
        if starts >= STARTS {
            bail!("no worker connected to node {victim} after {starts} starts");
        }
        signal(&workers[1], Signal::TERM);
        let _ = reap(&mut workers[1], Duration::from_secs(40)).await;
        workers[1] = start_worker(args, &prefix, &log, &extra)?;
        starts += 1;
        wait_consumers(safe, &names.interactive, 2).await?;
    };
    eprintln!(
        "   node {victim} leads {}; worker {} is connected to it ({starts} worker starts; \
         the workers' node ports {:?} and {:?})",
        names.interactive,
        on_victim + 1,
        broker_ports(workers[0].id(), &ports),
        broker_ports(workers[1].id(), &ports)
    );

    let traffic = Arc::new(Traffic::interactive(&names.interactive, bodies()));
    let load = load::start(safe, traffic, &replies, args.requests, args.rate);
    let run = Duration::from_secs_f64(args.requests as f64 / args.rate.max(1) as f64);
    tokio::time::sleep(run / 3).await;
    script(cluster, &["kill", &victim.to_string()]).await?;
    let killed = Instant::now();

    let mut first_reply = None;
    let mut first_new = None;
    let mut consuming = None;
    let deadline = killed + Duration::from_secs(90);
    while (first_new.is_none() || consuming.is_none()) && Instant::now() < deadline {
        first_reply = first_reply.or_else(|| load.ledger.first_ok_after(killed));
        first_new = first_new.or_else(|| load.ledger.first_answer_to_sent_after(killed));
        if consuming.is_none() {
            let now = broker_ports(workers[on_victim].id(), &ports);
            let moved = !now.is_empty() && !now.contains(&victim_port);
            let count =
                tokio::time::timeout(Duration::from_secs(2), consumers(safe, &names.interactive))
                    .await
                    .ok()
                    .flatten();
            if moved && count.is_some_and(|n| n >= 2) {
                consuming = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    script(cluster, &["restart", &victim.to_string()]).await?;
    let rejoined = killed.elapsed();

    let ledger = load.finish(Duration::from_secs(args.drain_seconds)).await;
    for worker in &workers {
        signal(worker, Signal::TERM);
    }
    let mut exits_ok = true;
    for worker in &mut workers {
        exits_ok &= reap(worker, Duration::from_secs(40))
            .await
            .is_some_and(|s| s.success());
    }
    cleanup(safe, &prefix).await;

    let tally = ledger.tally();
    let since = |t: Option<Instant>| {
        t.map_or("never".to_owned(), |t| {
            format!("{:.2} s", (t - killed).as_secs_f64())
        })
    };
    let mut other = format!(
        "node {victim} (leader of the interactive queue, worker {} on it) SIGKILLed at {:.1} s; \
         kill to first reply {}, to first reply to a request sent after it {}, to both \
         workers consuming again {}; node back in the cluster {:.0} s after the kill",
        on_victim + 1,
        (run / 3).as_secs_f64(),
        since(first_reply),
        since(first_new),
        since(consuming),
        rejoined.as_secs_f64()
    );
    let mut passed = tally.missing == 0 && tally.confirmed > 0 && first_new.is_some();
    if !exits_ok {
        other.push_str("; a worker did not exit 0 on SIGTERM");
        passed = false;
    }
    if passed {
        let _ = std::fs::remove_file(&log);
    } else {
        show_log(&log);
    }
    Ok(Row {
        scenario: "RabbitMQ node of the queue leader SIGKILLed",
        tally,
        other,
        passed,
    })
}

/// The number (1 to 3) of the node leading `queue`, from `rabbitmqctl list_queues`.
async fn leader(args: &Args, queue: &str) -> anyhow::Result<usize> {
    let listing = script(
        &args.cluster_script,
        &[
            "ctl",
            "1",
            "-q",
            "list_queues",
            "name",
            "leader",
            "--no-table-headers",
        ],
    )
    .await?;
    let node = listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next()? == queue).then(|| fields.next())?
        })
        .next()
        .with_context(|| format!("rabbitmqctl names no leader of {queue}"))?;
    // `PREFIX<N>@localhost`.
    let name = node.split('@').next().unwrap_or_default();
    let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
    let number: usize = digits
        .parse()
        .with_context(|| format!("no node number in the leader {node}"))?;
    ensure!(
        (1..=3).contains(&number),
        "the leader {node} is not node 1, 2 or 3"
    );
    Ok(number)
}

/// The port of an `amqp://user:password@host:port/vhost` URL.
fn port_of(url: &str) -> anyhow::Result<u16> {
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        .unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    host.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .context("a node URL of the cluster script has no port")
}

/// Which of `ports` (the nodes' AMQP ports) process `pid` has an established TCP
/// connection to, from `ss -tnp`.
fn broker_ports(pid: u32, ports: &[u16]) -> Vec<u16> {
    let Ok(output) = Command::new("ss")
        .args(["-H", "-t", "-n", "-p", "state", "established"])
        .output()
    else {
        return Vec::new();
    };
    let owner = format!("pid={pid},");
    let mut found: Vec<u16> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(&owner))
        .flat_map(|line| {
            line.split_whitespace()
                .filter_map(|field| field.rsplit_once(':')?.1.parse::<u16>().ok())
                .filter(|port| ports.contains(port))
                .collect::<Vec<u16>>()
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}
