//! `tucano-chaos`: proves the delivery guarantees (`docs/protocol.md` section 7) by driving the
//! real worker binary at a steady rate while faults are injected, and counting every
//! request by `correlation_id`: sent, answered, missing, duplicated.
//!
//! Scenarios (each its own queue prefix; run one at a time, since two of them stop a
//! shared service):
//! - `kill`: the worker is SIGKILLed 5 times during the run and restarted;
//! - `broker`: RabbitMQ is stopped and started once (`rabbitmqctl stop_app/start_app`);
//! - `database`: PostgreSQL is stopped for 10 s;
//! - `dead-letter`: a faulty consumer nacks a request until the delivery limit;
//! - `hostile`: every hostile message an attacker can publish (the tucano-hostile
//!   catalogue), three rounds beside the load; the worker must never restart;
//! - `workers`: three workers on one queue, each SIGKILLed and restarted in turn; the
//!   figures say how the replies were shared among them (each worker's metrics);
//! - `node-loss`: the 3-node cluster of `deploy/local/rabbitmq-cluster` (started if it
//!   is not running), two workers on its node list; the node holding the interactive
//!   queue's leader and a worker's connection is SIGKILLed, then restarted;
//! - `standby`: the primary and standby of `deploy/local/pg-standby`, the worker's
//!   lookups on the standby, which is stopped for 5 s and started again.
//!
//! `kill` mixes batch (1 in 10) and pass-code (1 in 200) requests into the interactive
//! ones and counts each class. `node-loss` and `standby` start servers of their own and
//! take minutes: they are run by hand, from the repository's root (where the scripts
//! are), never by CI.
//!
//! Exits 1 if any scenario misses its criterion, so it can gate CI.

mod harness;
mod load;
mod node_loss;
mod scenario;
mod standby;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Which fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// SIGKILL the worker 5 times and restart it.
    Kill,
    /// Stop and start RabbitMQ once.
    Broker,
    /// Stop PostgreSQL for 10 s.
    Database,
    /// Nack a request until the delivery limit dead-letters it.
    DeadLetter,
    /// Send every hostile message of the catalogue (tucano-hostile), three rounds.
    Hostile,
    /// Three workers on the same queues, each SIGKILLed and restarted in turn.
    Workers,
    /// SIGKILL the cluster node of the queue leader and a worker's connection; restart it.
    NodeLoss,
    /// Stop the PostgreSQL standby the lookups read for 5 s, then start it.
    Standby,
}

/// Command line of `tucano-chaos`.
#[derive(Debug, Parser)]
#[command(
    name = "tucano-chaos",
    about = "Fault injection against the real worker"
)]
pub struct Args {
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,broker,database,dead-letter"
    )]
    pub scenarios: Vec<Fault>,
    /// Requests per scenario.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Requests per second.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Broker.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Database of the chaos runs (recreated with the demo data).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/tucano_chaos"
    )]
    pub database_url: String,
    /// The worker binary [default: `tucano-auth` beside this binary].
    #[arg(long)]
    pub worker: Option<PathBuf>,
    /// The cluster script of `node-loss`.
    #[arg(long, default_value = "deploy/local/rabbitmq-cluster")]
    pub cluster_script: PathBuf,
    /// The primary-and-standby script of `standby`.
    #[arg(long, default_value = "deploy/local/pg-standby")]
    pub standby_script: PathBuf,
    /// How long to wait for the last replies after publishing ends, in seconds.
    #[arg(long, default_value_t = 120)]
    pub drain_seconds: u64,
}

fn main() -> ExitCode {
    let _traces =
        tucano_auth::observe::logs::init("warn", tucano_auth::observe::logs::LogFormat::Text);
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(scenario::run_all(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
