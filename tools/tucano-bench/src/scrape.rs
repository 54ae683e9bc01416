//! The time inside a process, read from its own `/metrics`: the worker and the echo
//! both serve the `tucano_auth_request_duration_seconds` histogram (from a delivery
//! reaching the consume loop to its reply handed to the broker connection), and log
//! the address of their metrics server at start. The bench scrapes before and after a
//! measured window and takes the percentiles of the difference.
//!
//! A histogram gives percentiles only as fine as its buckets (0.5, 1, 2.5, 5, 7.5,
//! 10, 25 ms, ...): within a bucket the value is interpolated linearly, as
//! Prometheus' `histogram_quantile` does, so a p99 of "3.1 ms" means "between 2.5 and
//! 5 ms, about there".

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tucano_auth::observe::metrics::{REQUEST_DURATION, STATEMENT_REQUESTS};

/// The message of the line in which a process logs its metrics server's address.
const LISTENING: &str = "metrics and health server listening";

/// The address a process logged for its metrics server (field `address=IP:PORT`, or
/// `"address":"IP:PORT"` in JSON lines), if it has logged it.
pub fn metrics_addr(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .find(|line| line.contains(LISTENING))?
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .find_map(|word| word.trim_start_matches("address=").parse().ok())
}

/// `GET /metrics` on `addr`: the exposition text.
pub async fn get_metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} took over 2 s"))?
            .with_context(|| format!("cannot connect to {addr}"))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .with_context(|| format!("{addr}/metrics took over 5 s"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP response from {addr}"))?;
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        bail!("{addr}/metrics answered {status}");
    }
    Ok(body.to_owned())
}

/// One scrape's request-duration histogram, added up over the queues, and its lookup
/// statement counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durations {
    /// `(upper bound in seconds, requests at or under it)`, ascending, ending with
    /// `+Inf` (cumulative, as exposed).
    buckets: Vec<(f64, f64)>,
    /// Seconds spent by all requests.
    sum: f64,
    /// Lookup statements run, and the requests they carried (the worker's
    /// `tucano_auth_db_statement_requests`; zero for the echo).
    statements: f64,
    statement_requests: f64,
}

/// The time inside the process over a window, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceReport {
    /// Requests timed.
    pub requests: u64,
    /// Median (interpolated within its bucket).
    pub p50: u64,
    /// 99th percentile (interpolated within its bucket).
    pub p99: u64,
    /// 99.9th percentile (interpolated within its bucket).
    pub p999: u64,
    /// Mean: exact, from the histogram's sum.
    pub mean: u64,
}

impl Durations {
    /// The histogram in an exposition; empty if the process has timed nothing yet.
    pub fn parse(exposition: &str) -> anyhow::Result<Durations> {
        let scrape = prometheus_parse::Scrape::parse(exposition.lines().map(|l| Ok(l.to_owned())))
            .context("reading the metrics exposition")?;
        let sum_name = format!("{REQUEST_DURATION}_sum");
        let statements_name = format!("{STATEMENT_REQUESTS}_count");
        let statement_requests_name = format!("{STATEMENT_REQUESTS}_sum");
        let mut durations = Durations::default();
        for sample in &scrape.samples {
            match &sample.value {
                prometheus_parse::Value::Histogram(buckets)
                    if sample.metric == REQUEST_DURATION =>
                {
                    for bucket in buckets {
                        match durations
                            .buckets
                            .iter_mut()
                            .find(|(le, _)| *le == bucket.less_than)
                        {
                            Some((_, count)) => *count += bucket.count,
                            None => durations.buckets.push((bucket.less_than, bucket.count)),
                        }
                    }
                }
                prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) => {
                    let total = if sample.metric == sum_name {
                        &mut durations.sum
                    } else if sample.metric == statements_name {
                        &mut durations.statements
                    } else if sample.metric == statement_requests_name {
                        &mut durations.statement_requests
                    } else {
                        continue;
                    };
                    *total += v;
                }
                _ => {}
            }
        }
        durations.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(durations)
    }

    /// Requests timed (the `+Inf` bucket).
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, count)| *count)
    }

    /// What was timed from `earlier` to `self` (bucket by bucket).
    pub fn since(&self, earlier: &Durations) -> Durations {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, count)| *count)
        };
        Durations {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, count)| (le, (count - before(le)).max(0.0)))
                .collect(),
            sum: (self.sum - earlier.sum).max(0.0),
            statements: (self.statements - earlier.statements).max(0.0),
            statement_requests: (self.statement_requests - earlier.statement_requests).max(0.0),
        }
    }

    /// Lookup statements run and the requests they carried: `None` if none ran (the
    /// echo runs none).
    pub fn statements(&self) -> Option<(f64, f64)> {
        (self.statements > 0.0).then_some((self.statements, self.statement_requests))
    }

    /// The `q` quantile in seconds, as Prometheus' `histogram_quantile` computes it:
    /// linear within the bucket holding the rank, from 0 for the first bucket; a rank
    /// in the `+Inf` bucket gives the largest finite bound. `None` with no request.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let within = count - lower.1;
                if within <= 0.0 {
                    return Some(le);
                }
                return Some(lower.0 + (le - lower.0) * (rank - lower.1) / within);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }

    /// The report of a difference of two scrapes; `None` if nothing was timed.
    pub fn report(&self) -> Option<ServiceReport> {
        let micros = |seconds: f64| (seconds * 1e6).round() as u64;
        let count = self.count();
        Some(ServiceReport {
            requests: count.round() as u64,
            p50: micros(self.quantile(0.5)?),
            p99: micros(self.quantile(0.99)?),
            p999: micros(self.quantile(0.999)?),
            mean: micros(self.sum / count),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exposition as `metrics-exporter-prometheus` renders it (bounds shortened).
    fn exposition(interactive: [u64; 4], batch: [u64; 4], sum: f64) -> String {
        let mut text = String::from(
            "# TYPE tucano_auth_request_duration_seconds histogram\n\
             # UNIT tucano_auth_request_duration_seconds seconds\n",
        );
        for (queue, counts) in [("interactive", interactive), ("batch", batch)] {
            for (le, count) in ["0.0005", "0.001", "0.0025", "+Inf"].iter().zip(counts) {
                text.push_str(&format!(
                    "tucano_auth_request_duration_seconds_bucket{{queue=\"{queue}\",le=\"{le}\"}} {count}\n"
                ));
            }
            text.push_str(&format!(
                "tucano_auth_request_duration_seconds_sum{{queue=\"{queue}\"}} {}\n\
                 tucano_auth_request_duration_seconds_count{{queue=\"{queue}\"}} {}\n",
                sum / 2.0,
                counts[3]
            ));
        }
        text.push_str("# TYPE tucano_auth_requests_total counter\ntucano_auth_requests_total{queue=\"interactive\",code=\"OK\"} 7\n");
        text
    }

    #[test]
    fn adds_up_the_queues() {
        let d = Durations::parse(&exposition([1, 2, 3, 4], [10, 20, 30, 40], 0.05)).expect("parse");
        assert_eq!(
            d.buckets,
            vec![
                (0.0005, 11.0),
                (0.001, 22.0),
                (0.0025, 33.0),
                (f64::INFINITY, 44.0)
            ]
        );
        assert_eq!(d.count(), 44.0);
        assert!((d.sum - 0.05).abs() < 1e-12);
        assert_eq!(
            Durations::parse("").expect("parse").report(),
            None,
            "nothing timed"
        );
    }

    #[test]
    fn interpolates_within_the_bucket_like_histogram_quantile() {
        // 100 requests: 50 under 0.5 ms, 40 in (0.5, 1] ms, 10 in (1, 2.5] ms.
        let d = Durations::parse(&exposition([50, 90, 100, 100], [0; 4], 0.08)).expect("parse");
        // Rank 50 is the top of the first bucket; rank 25 half-way into it from 0.
        assert_eq!(d.quantile(0.5), Some(0.0005));
        assert!((d.quantile(0.25).expect("q") - 0.00025).abs() < 1e-12);
        // Rank 99: 9 of the 10 requests of (1, 2.5] ms.
        assert!((d.quantile(0.99).expect("q") - (0.001 + 0.0015 * 0.9)).abs() < 1e-12);
        let report = d.report().expect("report");
        assert_eq!((report.requests, report.p50, report.p99), (100, 500, 2350));
        assert_eq!(report.mean, 800, "the mean comes from the sum");
    }

    #[test]
    fn a_rank_past_the_last_bound_gives_the_last_bound() {
        let d = Durations::parse(&exposition([0, 0, 90, 100], [0; 4], 1.0)).expect("parse");
        assert_eq!(d.quantile(0.99), Some(0.0025));
    }

    #[test]
    fn a_window_is_the_difference_of_two_scrapes() {
        let before = Durations::parse(&exposition([40, 40, 40, 40], [5; 4], 0.01)).expect("a");
        let after = Durations::parse(&exposition([40, 140, 140, 140], [5; 4], 0.09)).expect("b");
        let window = after.since(&before);
        assert_eq!(window.count(), 100.0);
        let report = window.report().expect("report");
        // Every request of the window fell in (0.5, 1] ms; the earlier ones are gone.
        assert_eq!((report.p50, report.p99), (750, 995));
        assert_eq!(report.mean, 800);
    }

    #[test]
    fn counts_the_lookup_statements_of_a_window() {
        let statements = |count: u64, requests: u64| {
            format!(
                "{}# TYPE tucano_auth_db_statement_requests histogram\n\
                 tucano_auth_db_statement_requests_bucket{{le=\"+Inf\"}} {count}\n\
                 tucano_auth_db_statement_requests_sum {requests}\n\
                 tucano_auth_db_statement_requests_count {count}\n",
                exposition([40; 4], [5; 4], 0.01)
            )
        };
        let before = Durations::parse(&statements(10, 25)).expect("a");
        let after = Durations::parse(&statements(40, 415)).expect("b");
        assert_eq!(after.since(&before).statements(), Some((30.0, 390.0)));
        // The echo runs no statement: nothing to report, rather than 0 a statement.
        let echo = Durations::parse(&exposition([40; 4], [5; 4], 0.01)).expect("echo");
        assert_eq!(echo.since(&echo).statements(), None);
    }

    #[test]
    fn reads_the_address_a_process_logged() {
        let dir = std::env::temp_dir().join(format!("tucano-bench-scrape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("text.log");
        std::fs::write(&log, "2026-11-29T05:00:00Z  INFO tucano_auth::observe: metrics and health server listening (/metrics, /healthz, /readyz) address=127.0.0.1:40123\n").expect("write");
        assert_eq!(metrics_addr(&log), "127.0.0.1:40123".parse().ok());
        std::fs::write(&log, r#"{"level":"INFO","fields":{"message":"metrics and health server listening (/metrics, /healthz, /readyz)","address":"127.0.0.1:40124"}}"#).expect("write");
        assert_eq!(metrics_addr(&log), "127.0.0.1:40124".parse().ok());
        std::fs::write(&log, "starting\n").expect("write");
        assert_eq!(metrics_addr(&log), None, "not logged yet");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
