//! The load generator: request-reply over direct reply-to, closed loop (a window of
//! requests in flight) or open loop (a fixed rate), plus the batch flood and the
//! broker housekeeping the bench needs.
//!
//! Each of `channels` tasks owns one channel: it publishes requests (persistent, to
//! the default exchange, `reply_to = amq.rabbitmq.reply-to`, correlation id = a
//! sequence number) and consumes its replies, no-ack, on the same channel. A request
//! is timed from its publish to its reply's receipt. Requests are published without
//! publisher confirms: the reply is the end-to-end acknowledgement, and confirms would
//! only cost the load generator CPU that the measured processes share. A reply is `OK`
//! when its `x-status-code` header says so (the worker sets it from the body's code).
//!
//! Each channel is the harness's raw [`Requester`], not the product's `Client`: the
//! load generator measures the worker and the broker, and the client's confirms and
//! per-call bookkeeping would take CPU from the processes measured (see the
//! requester's docs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tucano_auth::broker::Names;
use tucano_auth::broker::QueueType;
use tucano_auth::client::DIRECT_REPLY_TO;
use tucano_testkit::request::{status_header, Requester};

use crate::procs::Proc;
use crate::requests::{Generator, Path, Rng};

/// How long a stopped loop waits for the replies still due.
const DRAIN: Duration = Duration::from_secs(15);
/// A closed loop with requests in flight and no reply for this long has stalled.
const STALL: Duration = Duration::from_secs(30);
/// An open-loop channel with this many requests in flight skips sends (and the run is
/// invalid): the worker is far behind the offered rate.
const MAX_IN_FLIGHT_PER_CHANNEL: usize = 20_000;
/// Error replies kept to show.
const EXAMPLES: usize = 3;

/// How requests are offered.
#[derive(Debug, Clone, Copy)]
pub enum Pacing {
    /// Keep `window` requests in flight (spread over the channels).
    Closed {
        /// Requests in flight.
        window: usize,
    },
    /// Publish at `rate` requests per second whatever the replies do.
    Open {
        /// Requests per second (over all channels).
        rate: f64,
    },
}

/// One answered request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was published.
    pub sent: Instant,
    /// Publish to reply receipt, in microseconds.
    pub latency_us: u32,
    /// Its identifier path ([`Path::index`]).
    pub path: u8,
    /// Whether the reply was `OK`.
    pub ok: bool,
    /// Whether it was a pass-code request shed by a full backlog
    /// (`TEMPORARILY_UNAVAILABLE`, docs/protocol.md §14).
    pub shed: bool,
}

impl Sample {
    /// When its reply arrived.
    pub fn received(&self) -> Instant {
        self.sent + Duration::from_micros(u64::from(self.latency_us))
    }
}

/// What a loop did.
#[derive(Debug, Default)]
pub struct Run {
    /// Every reply received.
    pub samples: Vec<Sample>,
    /// Requests published.
    pub sent: u64,
    /// Requests without a reply when the loop ended.
    pub lost: u64,
    /// Open loop: sends skipped because too many requests were in flight.
    pub skipped: u64,
    /// Replies that matched no request in flight (duplicates).
    pub unexpected: u64,
    /// Open loop: sends more than 2 ms behind their schedule.
    pub late: u64,
    /// Open loop: the largest delay of a send behind its schedule.
    pub max_lag: Duration,
    /// Bodies of the first non-`OK` replies.
    pub examples: Vec<String>,
}

impl Run {
    fn merge(&mut self, other: Run) {
        self.samples.extend(other.samples);
        self.sent += other.sent;
        self.lost += other.lost;
        self.skipped += other.skipped;
        self.unexpected += other.unexpected;
        self.late += other.late;
        self.max_lag = self.max_lag.max(other.max_lag);
        for example in other.examples {
            if self.examples.len() < EXAMPLES {
                self.examples.push(example);
            }
        }
    }

    /// Replies that were not `OK`.
    pub fn not_ok(&self) -> u64 {
        self.samples.iter().filter(|s| !s.ok).count() as u64
    }

    /// Replies that shed a pass-code request.
    pub fn shed(&self) -> u64 {
        self.samples.iter().filter(|s| s.shed).count() as u64
    }

    /// What makes the run invalid, if anything.
    pub fn faults(&self) -> Vec<String> {
        let mut faults = Vec::new();
        let not_ok = self.not_ok();
        if not_ok > 0 {
            faults.push(format!("{not_ok} replies were not OK"));
        }
        if self.lost > 0 {
            faults.push(format!("{} requests got no reply", self.lost));
        }
        if self.skipped > 0 {
            faults.push(format!(
                "{} sends skipped: over {MAX_IN_FLIGHT_PER_CHANNEL} requests in flight per channel",
                self.skipped
            ));
        }
        if self.unexpected > 0 {
            faults.push(format!("{} duplicate or unknown replies", self.unexpected));
        }
        faults
    }
}

/// Runs a loop against `queue` until `stop` is cancelled, then waits for the replies
/// still due (at most 15 s). `replies` counts the replies as they arrive.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    connection: &Connection,
    queue: &str,
    pacing: Pacing,
    channels: usize,
    generator: Arc<Generator>,
    seed: u64,
    stop: CancellationToken,
    replies: Arc<AtomicU64>,
) -> anyhow::Result<Run> {
    let channels = channels.max(1);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(channels);
    for index in 0..channels {
        let channel = connection
            .create_channel()
            .await
            .context("cannot open a load channel")?;
        let share = match pacing {
            Pacing::Closed { window } => {
                let base = window / channels;
                let extra = usize::from(index < window % channels);
                Share::Closed(base + extra)
            }
            Pacing::Open { rate } => {
                let interval = Duration::from_secs_f64(channels as f64 / rate.max(0.001));
                let offset = Duration::from_secs_f64(index as f64 / rate.max(0.001));
                Share::Open {
                    first: start + offset,
                    interval,
                }
            }
        };
        let consumer = tucano_auth::broker::consume_no_ack(&channel, DIRECT_REPLY_TO)
            .await
            .context("cannot consume direct reply-to")?;
        let task = Task {
            requester: Requester::new(channel, consumer),
            queue: queue.to_owned(),
            generator: generator.clone(),
            rng: Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(index as u64)),
            stop: stop.clone(),
            replies: replies.clone(),
        };
        tasks.push(tokio::spawn(task.run(share)));
    }
    let mut run = Run::default();
    for task in tasks {
        run.merge(task.await.context("a load task panicked")??);
    }
    run.samples.sort_by_key(|s| s.sent);
    Ok(run)
}

/// One channel's part of the load.
enum Share {
    Closed(usize),
    Open { first: Instant, interval: Duration },
}

struct Task {
    requester: Requester,
    queue: String,
    generator: Arc<Generator>,
    rng: Rng,
    stop: CancellationToken,
    replies: Arc<AtomicU64>,
}

impl Task {
    async fn run(mut self, share: Share) -> anyhow::Result<Run> {
        let mut run = Run::default();
        let mut pending: HashMap<u64, (Instant, Path)> = HashMap::new();
        let mut seq = 0u64;
        let closed = matches!(share, Share::Closed(_));
        let (mut next_send, interval) = match share {
            Share::Closed(window) => {
                for _ in 0..window {
                    self.send(&mut seq, &mut pending, &mut run).await?;
                }
                (Instant::now(), Duration::ZERO)
            }
            Share::Open { first, interval } => (first, interval),
        };
        let mut stopping = false;
        let mut give_up = Instant::now() + STALL;
        loop {
            tokio::select! {
                biased;
                _ = self.stop.cancelled(), if !stopping => {
                    stopping = true;
                    give_up = Instant::now() + DRAIN;
                }
                reply = self.requester.replies().next() => {
                    let Some(reply) = reply else { bail!("the broker closed the reply consumer") };
                    let delivery = reply.context("reply consumer failed")?;
                    let now = Instant::now();
                    let id = delivery
                        .properties
                        .correlation_id()
                        .as_ref()
                        .and_then(|id| id.as_str().parse::<u64>().ok());
                    self.replies.fetch_add(1, Ordering::Relaxed);
                    match id.and_then(|id| pending.remove(&id)) {
                        None => run.unexpected += 1,
                        Some((sent, path)) => {
                            let ok = is_ok(&delivery.properties);
                            let shed = !ok && is_shed(&delivery.properties, &delivery.data);
                            if !ok && !shed && run.examples.len() < EXAMPLES {
                                run.examples.push(String::from_utf8_lossy(&delivery.data).into_owned());
                            }
                            let micros = now.saturating_duration_since(sent).as_micros();
                            run.samples.push(Sample {
                                sent,
                                latency_us: u32::try_from(micros).unwrap_or(u32::MAX),
                                path: path.index() as u8,
                                ok,
                                shed,
                            });
                        }
                    }
                    if !stopping {
                        give_up = now + STALL;
                        if closed {
                            self.send(&mut seq, &mut pending, &mut run).await?;
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_send), if !closed && !stopping => {
                    let now = Instant::now();
                    while next_send <= now {
                        let lag = now - next_send;
                        run.max_lag = run.max_lag.max(lag);
                        if lag > Duration::from_millis(2) {
                            run.late += 1;
                        }
                        if pending.len() >= MAX_IN_FLIGHT_PER_CHANNEL {
                            run.skipped += 1;
                        } else {
                            self.send(&mut seq, &mut pending, &mut run).await?;
                        }
                        next_send += interval;
                    }
                }
                _ = tokio::time::sleep_until(give_up), if stopping || (closed && !pending.is_empty()) => {
                    break;
                }
            }
            if stopping && pending.is_empty() {
                break;
            }
        }
        run.lost = pending.len() as u64;
        self.requester.close().await;
        Ok(run)
    }

    async fn send(
        &mut self,
        seq: &mut u64,
        pending: &mut HashMap<u64, (Instant, Path)>,
        run: &mut Run,
    ) -> anyhow::Result<()> {
        *seq += 1;
        let path = self.generator.path(&mut self.rng);
        let body = self.generator.body(path, &mut self.rng);
        let properties = request_properties(*seq, DIRECT_REPLY_TO);
        let sent = Instant::now();
        self.requester
            .send(&self.queue, body.as_bytes(), properties)
            .await
            .context("cannot publish a request")?;
        pending.insert(*seq, (sent, path));
        run.sent += 1;
        Ok(())
    }
}

fn request_properties(seq: u64, reply_to: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_correlation_id(seq.to_string().into())
        .with_reply_to(reply_to.into())
}

/// Whether a reply's `x-status-code` header is `OK`.
fn is_ok(properties: &BasicProperties) -> bool {
    code_is(properties, "OK")
}

/// Whether a reply sheds a pass-code request: `TEMPORARILY_UNAVAILABLE` with the
/// backlog's message (the same code also answers a database outage).
fn is_shed(properties: &BasicProperties, body: &[u8]) -> bool {
    code_is(properties, "TEMPORARILY_UNAVAILABLE")
        && serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|reply| {
            reply
                .pointer("/status/message")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.starts_with("too many pass-code checks"))
        })
}

/// Whether a reply's `x-status-code` header is `code`.
fn code_is(properties: &BasicProperties, code: &str) -> bool {
    status_header(properties).is_some_and(|header| header == code)
}

/// Publishes `count` requests to `queue` with publisher confirms (at most 1,000
/// unconfirmed), each with `reply_to`; returns how long it took.
pub async fn flood(
    connection: &Connection,
    queue: &str,
    reply_to: &str,
    count: u64,
    generator: &Generator,
    seed: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("cannot enable publisher confirms for the flood")?;
    let mut rng = Rng::new(seed ^ 0xF100D);
    let mut published = 0u64;
    while published < count {
        let chunk = (count - published).min(1000);
        let mut confirms = Vec::with_capacity(chunk as usize);
        for _ in 0..chunk {
            published += 1;
            let path = generator.path(&mut rng);
            let body = generator.body(path, &mut rng);
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    request_properties(published, reply_to),
                )
                .await
                .context("cannot publish a batch request")?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            if let Confirmation::Nack(_) = confirm.await? {
                bail!("the broker refused a batch request");
            }
        }
    }
    let _ = channel.close(200, "bye".into()).await;
    Ok(started.elapsed())
}

/// Replies counted on a reply queue.
#[derive(Debug, Default)]
pub struct Collected {
    /// `OK` replies.
    pub ok: u64,
    /// Other replies.
    pub not_ok: u64,
    /// When the last one arrived.
    pub last: Option<Instant>,
    /// Bodies of the first non-`OK` replies.
    pub examples: Vec<String>,
}

/// Consumes `queue` (no-ack) until `expected` replies arrived or `timeout` passed.
pub async fn collect(
    connection: &Connection,
    queue: &str,
    expected: u64,
    timeout: Duration,
) -> anyhow::Result<Collected> {
    let channel = connection.create_channel().await?;
    let mut replies = tucano_auth::broker::consume_no_ack(&channel, queue)
        .await
        .with_context(|| format!("cannot consume {queue}"))?;
    let mut collected = Collected::default();
    let deadline = Instant::now() + timeout;
    while collected.ok + collected.not_ok < expected {
        let next = tokio::time::timeout_at(deadline, replies.next()).await;
        let Ok(Some(delivery)) = next else { break };
        let delivery = delivery.context("batch reply consumer failed")?;
        if is_ok(&delivery.properties) {
            collected.ok += 1;
        } else {
            collected.not_ok += 1;
            if collected.examples.len() < EXAMPLES {
                collected
                    .examples
                    .push(String::from_utf8_lossy(&delivery.data).into_owned());
            }
        }
        collected.last = Some(Instant::now());
    }
    let _ = channel.close(200, "bye".into()).await;
    Ok(collected)
}

/// The queue batch replies go to: `PREFIX.bench-batch-replies`, durable, of the
/// request queues' type (the default allow-list admits `PREFIX.` names).
pub fn batch_reply_queue(prefix: &str) -> String {
    format!("{prefix}.bench-batch-replies")
}

/// Declares the batch reply queue.
pub async fn declare_reply_queue(
    connection: &Connection,
    name: &str,
    queue_type: QueueType,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    tucano_testkit::queue::declare_durable(&channel, name, Some(queue_type.as_str()))
        .await
        .with_context(|| format!("cannot declare {name}"))?;
    let _ = channel.close(200, "bye".into()).await;
    Ok(())
}

/// Waits until `queue` has a consumer (the worker is serving), at most `timeout`;
/// fails at once if `proc` exits.
pub async fn wait_consuming(
    connection: &Connection,
    queue: &str,
    proc: &mut Proc,
    timeout: Duration,
) -> anyhow::Result<()> {
    tucano_testkit::queue::wait_consumers(connection, queue, 1, timeout, || proc.check_alive())
        .await
        .with_context(|| format!("{} is not consuming {queue}", proc.name()))
}

/// Deletes every queue and exchange of `prefix` (the worker's topology and the batch
/// reply queue). Missing ones are fine.
pub async fn delete_topology(connection: &Connection, prefix: &str) {
    let reply_queue = batch_reply_queue(prefix);
    tucano_auth::broker::delete(connection, &Names::new(prefix), &[reply_queue.as_str()]).await;
}
