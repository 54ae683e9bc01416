//! `tucano-bench`: the worker's benchmark on the local RabbitMQ and PostgreSQL.
//!
//! It loads a realistic data set into a database of its own, starts the real worker
//! (`target/release/tucano-auth serve`, found next to this executable) and an echo
//! ceiling (this executable's hidden `echo-worker`: the same consume loop answering
//! with no work, twice: acking each delivery alone, and in batches) as separate
//! processes, drives each with a closed loop (a window of requests in flight) and an
//! open loop (all at half the per-delivery-ack echo's maximum rate), optionally
//! runs a batch flood under an interactive stream and a second data-set size, and
//! prints markdown tables: throughput, latency percentiles, CPU per request and peak
//! RSS of both processes, the worker/ceiling ratio and the targets.
//!
//! `cargo build --release --workspace && ./target/release/tucano-bench --help`
//!
//! # Layout
//!
//! - `bench.rs`: the phases and the report; `bench/passcodes.rs`: the pass-code phase.
//! - `dataset.rs`: the data set, generated with set-based SQL.
//! - `requests.rs`: the identifier-path mix and the request bodies.
//! - `load.rs`: closed and open loops over direct reply-to, the batch flood.
//! - `echo.rs`: the echo service and its process.
//! - `procs.rs`: child processes and `/proc` (CPU time, peak RSS).
//! - `scrape.rs`: the time inside a process, from its `/metrics` histogram.
//! - `report.rs`: percentiles, windows and table rows.

mod bench;
mod dataset;
mod echo;
mod load;
mod procs;
mod report;
mod requests;
mod scrape;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tucano_auth::broker::QueueType;

/// Benchmarks tucano-auth against an echo ceiling on the local RabbitMQ and PostgreSQL.
#[derive(Parser, Debug)]
#[command(name = "tucano-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    options: Options,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Serves the echo ceiling, configured like `tucano-auth serve` (used by the bench).
    #[command(hide = true)]
    EchoWorker {
        /// How the echo acknowledges: one `basic.ack` per delivery (the naive
        /// conversation), or in batches as the worker does.
        #[arg(long, value_enum, default_value_t = EchoAcks::PerDelivery)]
        acks: EchoAcks,
    },
    /// Runs Argon2 verifications at `--rate` per second at nice 19 until killed (used by
    /// the bench's `--background-argon2`).
    #[command(hide = true)]
    Argon2Load {
        /// Verifications per second.
        #[arg(long)]
        rate: f64,
    },
}

/// The bench's options.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// RabbitMQ URL (the bench, the worker and the echo use it).
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// PostgreSQL server URL, without a database name.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres_url: String,
    /// The bench database, dropped and recreated on each run.
    #[arg(long, default_value = "tucano_bench")]
    pub database: String,
    /// Subscriptions in the data set.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1000..=100_000_000))]
    pub subscriptions: u64,
    /// Also measure a second worker on a data set of --large-subscriptions (in database
    /// DATABASE_large), in the same rounds, and print the throughput ratio.
    #[arg(long)]
    pub compare_sizes: bool,
    /// The second size of --compare-sizes.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1000..=100_000_000))]
    pub large_subscriptions: u64,
    /// Keep the bench databases at the end (they are dropped otherwise).
    #[arg(long)]
    pub keep_db: bool,
    /// Closed loop: requests in flight. A comma-separated list measures each window in
    /// every round (64 is a few request-reply clients, 256 a deep queue).
    #[arg(long, value_delimiter = ',', default_value = "64,256", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub window: Vec<u64>,
    /// Load channels (each with its own direct reply-to consumer).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub channels: u64,
    /// Seconds of load before each measurement window (not counted).
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Seconds of each closed-loop measurement window.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Closed-loop rounds: each round measures the echo, then the worker (then the
    /// worker on the large data set), so slow drifts of the machine's other load hit
    /// both alike; throughput is the median over the rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,
    /// Ends a closed-loop window early after this many replies.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Seconds of each open-loop measurement window.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub open_duration: u64,
    /// Open-loop rate in requests per second, the same for every process [default:
    /// half the per-delivery-ack echo's closed-loop maximum; with --skip-echo, half each
    /// process's own]. The open loop runs in --rounds alternating rounds.
    #[arg(long)]
    pub open_rate: Option<f64>,
    /// Run the mixed run: a batch flood while an interactive open loop runs; and the
    /// batch drain alone: in every round, the worker's closed loop on its batch queue
    /// at each --window, right after its interactive one, and their ratio.
    #[arg(long)]
    pub mixed: bool,
    /// How the batch flood reaches the batch queue.
    #[arg(long, value_enum, default_value_t = FloodMode::Preload)]
    pub flood: FloodMode,
    /// Requests in the batch flood.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub batch_requests: u64,
    /// Interactive rate of the mixed run in requests per second [default: 10 % of the
    /// worker's closed-loop maximum, at least 50].
    #[arg(long)]
    pub interactive_rate: Option<f64>,
    /// Seconds of interactive load with no batch running in the mixed run.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub quiet_duration: u64,
    /// Share of requests (%) naming an access token or medium by identifier + pass
    /// code: each costs an Argon2 verification (tens of ms of CPU), so even 1 %
    /// dominates the worker's CPU; 0.1 % stands for occasional logins among
    /// re-authentications by code or number.
    #[arg(long, default_value_t = 0.1)]
    pub pass_code_percent: f64,
    /// Argon2 verifications per second (the worker's parameters) in a separate process
    /// at nice 19 during the whole run, to measure what pass-code work anywhere on the
    /// machine does to the echo's and the worker's figures (use with
    /// `--pass-code-percent 0`).
    #[arg(long, default_value_t = 0.0)]
    pub background_argon2: f64,
    /// Run the pass-code phase (docs/protocol.md §14): time one Argon2 verification,
    /// measure a fresh worker's closed-loop rate on pass-code requests against the
    /// machine's limit (cores ÷ that time), then the p99 of requests without a pass
    /// code alone and while pass-code requests arrive at --pass-code-overload × the
    /// limit, and count the shed ones.
    #[arg(long)]
    pub pass_codes: bool,
    /// Requests a second without a pass code in the pass-code phase's open loops.
    #[arg(long, default_value_t = 1000.0)]
    pub pass_code_plain_rate: f64,
    /// The pass-code flood's rate, as a multiple of the machine's Argon2 limit.
    #[arg(long, default_value_t = 2.0)]
    pub pass_code_overload: f64,
    /// Type of the request queues (QUEUE_TYPE of the worker and the echo).
    #[arg(long, value_enum, default_value_t = QueueType::Quorum)]
    pub queue_type: QueueType,
    /// TUCANO_PREFETCH for the worker and the echo [default: the worker's].
    #[arg(long)]
    pub prefetch: Option<u16>,
    /// TUCANO_PREFETCH for the echo alone [default: --prefetch's]: e.g. 256, where the
    /// echo reaches the broker's best throughput, to compare the worker's defaults with
    /// the best the broker allows.
    #[arg(long)]
    pub echo_prefetch: Option<u16>,
    /// TUCANO_BATCH_PREFETCH for the worker and the echo [default: the worker's].
    #[arg(long)]
    pub batch_prefetch: Option<u16>,
    /// TUCANO_DB_POOL_SIZE for the worker [default: the worker's].
    #[arg(long)]
    pub db_pool_size: Option<u32>,
    /// An environment variable for the worker processes, `NAME=VALUE` (repeatable),
    /// e.g. `MALLOC_ARENA_MAX=2` to try allocator settings without a rebuild.
    #[arg(long = "worker-env", value_name = "NAME=VALUE")]
    pub worker_env: Vec<String>,
    /// An environment variable for the echo process alone, `NAME=VALUE` (repeatable),
    /// e.g. `TUCANO_WORKER_THREADS=2` to find the echo's best event loop.
    #[arg(long = "echo-env", value_name = "NAME=VALUE")]
    pub echo_env: Vec<String>,
    /// The worker binary [default: tucano-auth next to this executable].
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// Another worker binary (a build of an earlier commit, say), measured in the same
    /// rounds right after the worker, with the same settings: before and after in
    /// alternating pairs, on the same machine at the same moment.
    #[arg(long, value_name = "PATH")]
    pub baseline_bin: Option<PathBuf>,
    /// Skip the echo ceiling.
    #[arg(long)]
    pub skip_echo: bool,
    /// Skip the worker's closed and open loops (e.g. to run only --mixed).
    #[arg(long)]
    pub skip_worker: bool,
    /// Write each open loop's requests (sent time, latency, identifier path) as CSV to
    /// this directory (created if missing), to see when the slow ones happened.
    #[arg(long, value_name = "DIR")]
    pub timeline: Option<PathBuf>,
    /// Seed of the request generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// How the echo acknowledges its deliveries (`echo-worker --acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EchoAcks {
    /// One `basic.ack` per delivery once its reply is confirmed.
    PerDelivery,
    /// `multiple` acks over the settled deliveries, as the worker does.
    Batched,
}

/// How the batch flood reaches the batch queue in the mixed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FloodMode {
    /// Publish the whole flood while no worker runs, then start a worker and the
    /// interactive stream: the worker's prioritisation alone is measured.
    Preload,
    /// Publish the flood (with confirms, as fast as the broker takes it) while the
    /// worker and the interactive stream run: broker ingestion competes too.
    Live,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let helper = match cli.command {
        Some(Sub::EchoWorker { acks }) => Some(echo::run(acks)),
        Some(Sub::Argon2Load { rate }) => Some(argon2_load(rate)),
        None => None,
    };
    if let Some(result) = helper {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(2)
            }
        };
    }
    // One thread for the load generator: it shares the machine with what it measures
    // (lapin's I/O runs on a thread of its own).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(bench::run(cli.options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Hashes a pass code with the worker's Argon2 parameters `rate` times per second, at
/// nice 19, until killed.
fn argon2_load(rate: f64) -> anyhow::Result<()> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    use std::time::{Duration, Instant};

    anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
    thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
        .map_err(|err| anyhow::anyhow!("cannot lower this thread's priority: {err:?}"))?;
    let salt = SaltString::encode_b64(b"tucano-bench-load")
        .map_err(|err| anyhow::anyhow!("cannot encode the salt: {err}"))?;
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    let (mut runs, mut since) = (0u32, Instant::now());
    loop {
        argon2::Argon2::default()
            .hash_password(dataset::PASS_CODE.as_bytes(), &salt)
            .map_err(|err| anyhow::anyhow!("cannot hash: {err}"))?;
        runs += 1;
        if since.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "argon2-load: {runs} runs in {:.2} s",
                since.elapsed().as_secs_f64()
            );
            (runs, since) = (0, Instant::now());
        }
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}
