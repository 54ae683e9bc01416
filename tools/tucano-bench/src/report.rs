//! Figures: latency percentiles (HdrHistogram), throughput and CPU per request over a
//! measurement window, and the markdown tables the bench prints.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::load::Sample;
use crate::procs::AroundDelta;
use crate::requests::Path;
use crate::scrape::ServiceReport;

/// Latency percentiles of a set of replies, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Replies counted.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `samples` (all of them, `OK` or not).
    pub fn of<'a>(samples: impl Iterator<Item = &'a Sample>) -> Latency {
        // 1 µs to 10 min with 3 significant digits; larger values saturate.
        let Ok(mut histogram) = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3) else {
            return Latency::default();
        };
        for sample in samples {
            histogram.saturating_record(u64::from(sample.latency_us).max(1));
        }
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }

    /// The requests of `samples` published in `[from, to)`.
    pub fn sent_between(samples: &[Sample], from: Instant, to: Instant) -> Latency {
        Latency::of(samples.iter().filter(|s| s.sent >= from && s.sent < to))
    }
}

/// Replies received in `[from, to)`.
pub fn received_between(samples: &[Sample], from: Instant, to: Instant) -> u64 {
    samples
        .iter()
        .filter(|s| {
            let at = s.received();
            at >= from && at < to
        })
        .count() as u64
}

/// One measurement window of one loop.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Its start.
    pub from: Instant,
    /// Its end.
    pub to: Instant,
    /// Replies received in it.
    pub replies: u64,
    /// The measured process's CPU time used in it, its children's included.
    pub cpu: Duration,
    /// Of that, its children's: the worker's pass-code helpers (Argon2).
    pub helpers: Duration,
    /// CPU time used in it around the process.
    pub around: AroundDelta,
    /// The process's own time inside it over the window (from its `/metrics`), if it
    /// serves them.
    pub service: Option<ServiceReport>,
    /// Lookup statements the process ran in it and the requests they carried (from
    /// its `/metrics`); `None` for the echo, which runs none.
    pub statements: Option<(f64, f64)>,
}

impl Window {
    /// Replies per second.
    pub fn throughput(&self) -> f64 {
        self.replies as f64
            / self
                .to
                .saturating_duration_since(self.from)
                .as_secs_f64()
                .max(1e-9)
    }
}

/// One process's figures over one or more windows (rounds) of the same loop.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Replies per second: the median over the rounds.
    pub throughput: f64,
    /// Each round's throughput.
    pub rounds: Vec<f64>,
    /// Each round's CPU per reply of the process and the PostgreSQL backends together.
    pub rounds_cpu: Vec<Duration>,
    /// Latency of the requests published in the windows.
    pub latency: Latency,
    /// The measured process's CPU time per reply (all windows).
    pub cpu_per_request: Duration,
    /// Of that, its pass-code helpers' (Argon2).
    pub helpers_per_request: Duration,
    /// Requests a lookup statement carried, over all windows; `None` if it ran none.
    pub requests_per_statement: Option<f64>,
    /// CPU per reply of the load generator, RabbitMQ and the PostgreSQL backends.
    pub around_per_request: AroundDelta,
}

impl Figures {
    /// Figures of `windows`; `samples` are the requests published in them.
    pub fn of(windows: &[Window], samples: &[Sample]) -> Figures {
        let rounds: Vec<f64> = windows.iter().map(Window::throughput).collect();
        let replies: u64 = windows.iter().map(|w| w.replies).sum();
        let divisor = u32::try_from(replies.max(1)).unwrap_or(u32::MAX);
        let per = |d: Duration| d / divisor;
        let sum = |f: fn(&Window) -> Duration| windows.iter().map(f).sum::<Duration>();
        let rounds_cpu = windows
            .iter()
            .map(|w| {
                let replies = u32::try_from(w.replies.max(1)).unwrap_or(u32::MAX);
                (w.cpu + w.around.database) / replies
            })
            .collect();
        let (statements, carried) = windows
            .iter()
            .filter_map(|w| w.statements)
            .fold((0.0, 0.0), |(n, r), (statements, requests)| {
                (n + statements, r + requests)
            });
        Figures {
            throughput: median(&rounds),
            rounds,
            rounds_cpu,
            latency: Latency::of(samples.iter()),
            cpu_per_request: per(sum(|w| w.cpu)),
            helpers_per_request: per(sum(|w| w.helpers)),
            requests_per_statement: (statements > 0.0).then(|| carried / statements),
            around_per_request: AroundDelta {
                bench: per(sum(|w| w.around.bench)),
                broker: per(sum(|w| w.around.broker)),
                database: per(sum(|w| w.around.database)),
            },
        }
    }
}

/// The median of `values` (0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// A whole number with thousands separators.
pub fn thousands(value: f64) -> String {
    let whole = value.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// A row of the main table.
pub fn row(label: &str, figures: &Figures, peak_rss: Option<u64>) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | {:.0} | {} |",
        thousands(figures.throughput),
        ms(figures.latency.p50),
        ms(figures.latency.p99),
        ms(figures.latency.p999),
        figures.cpu_per_request.as_secs_f64() * 1e6,
        peak_rss.map(mib).unwrap_or_else(|| "-".to_owned()),
    )
}

/// The header of the main table.
pub fn header() -> String {
    "| process | throughput (req/s) | p50 (ms) | p99 (ms) | p99.9 (ms) | CPU/request (µs) | peak RSS (MiB) |\n\
     |---|---:|---:|---:|---:|---:|---:|"
        .to_owned()
}

/// Latency per identifier path of `samples`.
pub fn per_path(samples: &[Sample]) -> String {
    let mut out = String::from(
        "| identifier path | share | p50 (ms) | p99 (ms) | p99.9 (ms) |\n|---|---:|---:|---:|---:|\n",
    );
    let total = samples.len().max(1);
    for path in Path::ALL {
        let latency = Latency::of(samples.iter().filter(|s| s.path as usize == path.index()));
        let _ = writeln!(
            out,
            "| {} | {:.1} % | {} | {} | {} |",
            path.name(),
            100.0 * latency.count as f64 / total as f64,
            ms(latency.p50),
            ms(latency.p99),
            ms(latency.p999)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(1500), "1.50");
        assert_eq!(mib(3 * 1024 * 1024), "3.0");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let start = Instant::now();
        let samples: Vec<Sample> = (1..=1000)
            .map(|i| Sample {
                sent: start,
                latency_us: i * 10,
                path: 0,
                ok: true,
                shed: false,
            })
            .collect();
        let latency = Latency::of(samples.iter());
        assert_eq!(latency.count, 1000);
        assert!((4990..=5010).contains(&latency.p50), "{latency:?}");
        assert!((9890..=9910).contains(&latency.p99), "{latency:?}");
    }
}
