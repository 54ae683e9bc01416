//! The pass-code phase (`--pass-codes`, docs/protocol.md §14, "Pass codes"): the
//! machine's Argon2 limit (cores ÷ one verification's time, timed here), a fresh
//! worker's closed-loop rate on requests that all need a pass code against that limit,
//! and the p99 of requests that need none, alone and while pass-code requests arrive
//! at `--pass-code-overload` times the limit, with how many of those were shed.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tucano_auth::broker::Names;

use super::{Bench, Kind, START_TIMEOUT, STOP_GRACE};
use crate::dataset::{Dataset, PASS_CODE};
use crate::load::{self, Pacing, Run};
use crate::report::{mib, ms, thousands, Latency};
use crate::requests::Generator;

/// Timed verifications; their median is one verification's time.
const TIMED_RUNS: usize = 15;
/// Pass-code requests in flight in the closed loop: enough to keep every verifier
/// thread busy, far below the backlog (256), so none is shed.
const CLOSED_WINDOW: usize = 32;

/// What the phase measured.
#[derive(Debug, Clone, Copy)]
pub(super) struct PassCodes {
    /// Cores of the machine.
    cores: usize,
    /// One Argon2 verification with the worker's parameters (median).
    verification: Duration,
    /// Cores ÷ `verification`: verifications a second the machine can do.
    pub limit: f64,
    /// The worker's closed-loop rate on pass-code requests alone.
    pub closed: f64,
    /// The rate of the requests without a pass code, in both open loops.
    plain_rate: f64,
    /// Their latency alone.
    pub plain_alone: Latency,
    /// Their latency while pass-code requests arrive at `offered`.
    pub plain_during: Latency,
    /// The rate pass-code requests were offered at meanwhile.
    offered: f64,
    /// Of those (published in the window): sent, verified (`OK`), shed.
    sent: u64,
    verified: u64,
    pub shed: u64,
    /// The worker's peak RSS over the phase.
    peak_rss: u64,
}

/// Runs the phase on `database` with a worker of its own, stopped at the end.
pub(super) async fn run(bench: &mut Bench, database: &str) -> anyhow::Result<PassCodes> {
    let options = bench.options.clone();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("pass codes: timing one Argon2 verification ({TIMED_RUNS} runs)...");
    let verification = tokio::task::spawn_blocking(one_verification)
        .await
        .context("the Argon2 timing thread panicked")??;
    let limit = cores as f64 / verification.as_secs_f64().max(1e-9);
    eprintln!(
        "pass codes: one verification {:.1} ms, limit {} per second on {cores} cores",
        verification.as_secs_f64() * 1e3,
        thousands(limit)
    );

    let prefix = format!("{}-passcodes", bench.run_id);
    let mut proc = bench.spawn(Kind::Worker, &prefix, database)?;
    let queue = Names::new(&prefix).interactive;
    load::wait_consuming(&bench.amqp, &queue, &mut proc, START_TIMEOUT).await?;
    let dataset = Dataset::new(options.subscriptions);
    let pass_codes = Arc::new(Generator::pass_codes_only(dataset));
    let plain = Arc::new(Generator::new(dataset, 0.0));
    let warmup = Duration::from_secs(options.warmup.min(2));

    eprintln!("pass codes: closed loop, window {CLOSED_WINDOW}, pass codes only...");
    let closed = Stream {
        pacing: Pacing::Closed {
            window: CLOSED_WINDOW,
        },
        generator: pass_codes.clone(),
        seed: options.seed ^ 0x9A55,
    };
    let (runs, from, to) = streams(
        bench,
        &queue,
        &[closed],
        warmup,
        Duration::from_secs(options.duration),
    )
    .await?;
    let closed_rate = load_rate(&runs[0], from, to);
    bench.check("pass-code closed loop", &runs[0], &mut proc);
    eprintln!("pass codes: {} per second", thousands(closed_rate));

    let plain_rate = options.pass_code_plain_rate;
    let plain_stream = |seed| Stream {
        pacing: Pacing::Open { rate: plain_rate },
        generator: plain.clone(),
        seed,
    };
    let open = Duration::from_secs(options.open_duration);
    eprintln!(
        "pass codes: {} req/s without a pass code, alone...",
        thousands(plain_rate)
    );
    let (runs, from, to) = streams(
        bench,
        &queue,
        &[plain_stream(options.seed ^ 0x0A1)],
        warmup,
        open,
    )
    .await?;
    bench.check("requests without a pass code, alone", &runs[0], &mut proc);
    let plain_alone = Latency::sent_between(&runs[0].samples, from, to);

    let offered = limit * options.pass_code_overload;
    eprintln!(
        "pass codes: {} req/s without a pass code, beside pass codes at {} per second...",
        thousands(plain_rate),
        thousands(offered)
    );
    let flood = Stream {
        pacing: Pacing::Open { rate: offered },
        generator: pass_codes,
        seed: options.seed ^ 0xF1,
    };
    let (runs, from, to) = streams(
        bench,
        &queue,
        &[plain_stream(options.seed ^ 0x0A2), flood],
        warmup,
        open,
    )
    .await?;
    bench.check(
        "requests without a pass code, beside a pass-code flood",
        &runs[0],
        &mut proc,
    );
    let plain_during = Latency::sent_between(&runs[0].samples, from, to);
    let flood_run = &runs[1];
    // Shedding is the expected answer to the excess; anything else is a fault.
    for fault in flood_faults(flood_run) {
        bench.faults.push(format!("pass-code flood: {fault}"));
    }
    let in_window = || {
        flood_run
            .samples
            .iter()
            .filter(move |s| s.sent >= from && s.sent < to)
    };
    let figures = PassCodes {
        cores,
        verification,
        limit,
        closed: closed_rate,
        plain_rate,
        plain_alone,
        plain_during,
        offered,
        sent: in_window().count() as u64,
        verified: in_window().filter(|s| s.ok).count() as u64,
        shed: in_window().filter(|s| s.shed).count() as u64,
        peak_rss: proc.peak_rss()?,
    };
    let status = proc.stop(STOP_GRACE).await?;
    if !status.success() {
        bench.faults.push(format!(
            "pass-code worker exited with {status} after SIGTERM"
        ));
    }
    load::delete_topology(&bench.amqp, &prefix).await;
    Ok(figures)
}

/// One load stream of a phase.
struct Stream {
    pacing: Pacing,
    generator: Arc<Generator>,
    seed: u64,
}

/// Drives `streams` side by side on `queue`: `warmup`, then a window of `duration`,
/// then stops them and waits for their replies. Returns each stream's run and the
/// window.
async fn streams(
    bench: &Bench,
    queue: &str,
    streams: &[Stream],
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Vec<Run>, Instant, Instant)> {
    let stop = CancellationToken::new();
    let channels = bench.options.channels as usize;
    let driving = futures_util::future::join_all(streams.iter().map(|stream| {
        load::drive(
            &bench.amqp,
            queue,
            stream.pacing,
            channels,
            stream.generator.clone(),
            stream.seed,
            stop.clone(),
            Arc::new(AtomicU64::new(0)),
        )
    }));
    let timing = async {
        tokio::time::sleep(warmup).await;
        let from = Instant::now();
        tokio::time::sleep(duration).await;
        stop.cancel();
        (from, from + duration)
    };
    let (runs, (from, to)) = tokio::join!(driving, timing);
    let runs = runs.into_iter().collect::<anyhow::Result<Vec<Run>>>()?;
    Ok((runs, from, to))
}

/// Replies a second received in `[from, to)`.
fn load_rate(run: &Run, from: Instant, to: Instant) -> f64 {
    crate::report::received_between(&run.samples, from, to) as f64
        / to.saturating_duration_since(from).as_secs_f64().max(1e-9)
}

/// The faults of the pass-code flood: those of any loop, except that shed requests
/// are the answer docs/protocol.md §14 asks for.
fn flood_faults(run: &Run) -> Vec<String> {
    let mut faults = Vec::new();
    let wrong = run.not_ok() - run.shed();
    if wrong > 0 {
        faults.push(format!("{wrong} replies were neither OK nor shed"));
    }
    for example in &run.examples {
        eprintln!("pass-code flood: a reply neither OK nor shed: {example}");
    }
    if run.lost > 0 {
        faults.push(format!("{} requests got no reply", run.lost));
    }
    if run.unexpected > 0 {
        faults.push(format!("{} duplicate or unknown replies", run.unexpected));
    }
    if run.skipped > 0 {
        faults.push(format!("{} sends skipped", run.skipped));
    }
    faults
}

/// One Argon2 verification's time with the worker's parameters (the crate's defaults,
/// which the data set's hash has): the median of [`TIMED_RUNS`] runs of the hash a
/// verification recomputes, into memory allocated once, as the worker's verifiers and
/// helpers reuse theirs (allocating and faulting in 19 MiB per run made it 10 to 25 %
/// slower, and the worker beat the "limit").
fn one_verification() -> anyhow::Result<Duration> {
    use argon2::{Algorithm, Argon2, Block, Params, Version};

    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut blocks = vec![Block::default(); params.block_count()];
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let mut times = Vec::with_capacity(TIMED_RUNS);
    for _ in 0..TIMED_RUNS {
        let started = std::time::Instant::now();
        argon2
            .hash_password_into_with_memory(
                PASS_CODE.as_bytes(),
                b"tucano-bench-limit",
                &mut out,
                &mut blocks,
            )
            .map_err(|err| anyhow::anyhow!("cannot run Argon2: {err}"))?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

impl PassCodes {
    /// The closed-loop rate over the limit (docs/protocol.md §14's "close to").
    pub fn rate_ratio(&self) -> f64 {
        self.closed / self.limit.max(1e-9)
    }

    /// The p99 of requests without a pass code during the flood over alone.
    pub fn p99_ratio(&self) -> f64 {
        self.plain_during.p99 as f64 / self.plain_alone.p99.max(1) as f64
    }

    /// The phase's table.
    pub fn table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n### Pass codes\n\n\
             One Argon2 verification (the worker's parameters and memory reuse, timed by the bench, median of {TIMED_RUNS}) takes \
             {:.1} ms: the machine's limit is {} cores ÷ that = **{} verifications/s**. A fresh worker's \
             closed loop (window {CLOSED_WINDOW}, pass codes only) verified **{} per second ({:.2} of the limit)**.\n\n\
             | requests without a pass code at {} req/s | requests | p50 (ms) | p99 (ms) | p99.9 (ms) | max (ms) |\n\
             |---|---:|---:|---:|---:|---:|\n\
             | alone | {} | {} | {} | {} | {} |\n\
             | beside pass codes at {} per second | {} | {} | {} | {} | {} |\n\n\
             Their p99 beside the pass codes is **{:.2}×** that alone. Of the {} pass-code requests sent in that \
             window, {} were verified and **{} shed** (`TEMPORARILY_UNAVAILABLE`, backlog full); peak RSS of that \
             worker {} MiB.",
            self.verification.as_secs_f64() * 1e3,
            self.cores,
            thousands(self.limit),
            thousands(self.closed),
            self.rate_ratio(),
            thousands(self.plain_rate),
            thousands(self.plain_alone.count as f64),
            ms(self.plain_alone.p50),
            ms(self.plain_alone.p99),
            ms(self.plain_alone.p999),
            ms(self.plain_alone.max),
            thousands(self.offered),
            thousands(self.plain_during.count as f64),
            ms(self.plain_during.p50),
            ms(self.plain_during.p99),
            ms(self.plain_during.p999),
            ms(self.plain_during.max),
            self.p99_ratio(),
            thousands(self.sent as f64),
            thousands(self.verified as f64),
            thousands(self.shed as f64),
            mib(self.peak_rss),
        );
    }
}
