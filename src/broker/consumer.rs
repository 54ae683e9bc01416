//! The consume loop: connects (and reconnects with backoff), declares the topology,
//! consumes both request queues with manual acks, hands each delivery to the
//! [`Service`] (the authenticate handler), publishes the reply with publisher confirms and acks the request only
//! once the broker has confirmed its reply (contract section 7).
//!
//! Interactive requests come first: the loop polls the interactive consumer before the
//! batch one, and the batch channel's smaller prefetch bounds how much of the worker
//! batch jobs can hold.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use super::{connect, declare, Backoff, Names};
use crate::config::{QueueType, Settings};
use crate::error::Error;
use crate::handle::{Incoming, Outcome, Route, Service};

/// How long a draining worker waits after its last acks before it closes its channels
/// (see `session`).
const ACK_SETTLE: Duration = Duration::from_millis(250);

/// How long the worker waits for RabbitMQ to confirm closing a connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of what the worker did, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered and acked.
    pub answered: AtomicU64,
    /// Replies the broker returned as unroutable (mandatory publish).
    pub returned: AtomicU64,
    /// Requests handed back to the broker because their reply could not be published.
    pub requeued: AtomicU64,
    /// Broker connections lost and re-established.
    pub reconnects: AtomicU64,
    /// How long each request spent in this process.
    pub service: ServiceTimes,
}

/// Service times: from a delivery reaching the consume loop to its reply handed to the
/// broker connection (decoding, checks, database read, pass-code check, signing), in
/// microseconds. What a request spends on the broker's side is the rest of what its
/// client measures. SIGUSR1 logs their percentiles since the previous report (see
/// [`serve`]).
#[derive(Debug)]
pub struct ServiceTimes {
    histogram: Mutex<Histogram<u64>>,
}

/// What [`ServiceTimes::take`] reports, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceReport {
    /// Requests timed.
    pub requests: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Longest.
    pub max: u64,
}

impl Default for ServiceTimes {
    fn default() -> Self {
        // 1 µs to 10 min at 2 significant digits: constants the crate accepts.
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 2)
            .expect("constant histogram bounds are valid");
        ServiceTimes {
            histogram: Mutex::new(histogram),
        }
    }
}

impl ServiceTimes {
    /// Records one request's time in the process.
    pub fn record(&self, time: Duration) {
        let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        self.histogram().saturating_record(micros.max(1));
    }

    /// The percentiles since the last call (or start), and starts over.
    pub fn take(&self) -> ServiceReport {
        let mut histogram = self.histogram();
        let report = ServiceReport {
            requests: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        };
        histogram.reset();
        report
    }

    /// The histogram; a panic while it was held cannot leave it inconsistent (a record
    /// or a read), so a poisoned lock is used as is.
    fn histogram(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.histogram
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The message of the log line that reports [`ServiceTimes`] on SIGUSR1, followed by
/// its fields `requests`, `p50_us`, `p99_us`, `p999_us` and `max_us`.
pub const SERVICE_REPORT: &str = "service times since the last report";

/// Logs the service times on each SIGUSR1, until the task is aborted.
async fn report_on_sigusr1(stats: Arc<Stats>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(usr1) => usr1,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGUSR1; service times are not reported");
            return;
        }
    };
    while usr1.recv().await.is_some() {
        let report = stats.service.take();
        tracing::info!(
            requests = report.requests,
            p50_us = report.p50,
            p99_us = report.p99,
            p999_us = report.p999,
            max_us = report.max,
            "{SERVICE_REPORT} (delivery to reply handed to the broker connection)"
        );
    }
}

/// How one broker session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

/// Serves requests until `shutdown` resolves, then drains (section 7). Reconnects to a
/// lost broker with backoff; a topology mismatch is fatal. Meanwhile each SIGUSR1 logs
/// the [`ServiceTimes`] since the previous one.
pub async fn serve<S: Service>(
    settings: &Settings,
    handler: Arc<S>,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let names = Names::new(&settings.queue_prefix);
    let stop = CancellationToken::new();
    let trigger = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    };
    // The connection name carries the prefix, so an operator can tell workers apart.
    let role = format!("worker {}", settings.queue_prefix);
    let _reporter = AbortOnDropHandle::new(tokio::spawn(report_on_sigusr1(stats.clone())));
    let work = async {
        let mut backoff = Backoff::new();
        let mut first = true;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let connection = match connect(&settings.amqp_url, &role).await {
                Ok(connection) => connection,
                Err(err) => {
                    let delay = backoff.step();
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "cannot reach RabbitMQ (AMQP_URL)");
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            declare(&connection, &names, settings.queue_type).await?;
            if !first {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            backoff = Backoff::new();
            let ended = session(&connection, settings, &names, &handler, &stats, &stop).await;
            // Bounded: once a broker failed to answer `close-ok`, and the process hung
            // after draining until the bench SIGKILLed it.
            if tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "bye".into()))
                .await
                .is_err()
            {
                tracing::warn!(
                    timeout_s = CLOSE_TIMEOUT.as_secs(),
                    "RabbitMQ did not confirm closing the connection; leaving it"
                );
            }
            match ended {
                Ok(Ended::Shutdown) => return Ok(()),
                Ok(Ended::Lost(why)) => {
                    tracing::warn!(reason = %why, "lost the broker connection, reconnecting");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "broker session failed, reconnecting");
                }
            }
            let delay = backoff.step();
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    };
    tokio::pin!(trigger);
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = &mut trigger, if !stop.is_cancelled() => {}
        }
    }
}

/// One connection's worth of consuming.
async fn session<S: Service>(
    connection: &Connection,
    settings: &Settings,
    names: &Names,
    handler: &Arc<S>,
    stats: &Arc<Stats>,
    stop: &CancellationToken,
) -> Result<Ended, lapin::Error> {
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let (interactive_channel, mut interactive) =
        consume(connection, &names.interactive, settings.prefetch).await?;
    let (batch_channel, mut batch) =
        consume(connection, &names.batch, settings.batch_prefetch).await?;
    tracing::info!(
        interactive = %names.interactive,
        batch = %names.batch,
        prefetch = settings.prefetch,
        batch_prefetch = settings.batch_prefetch,
        "consuming"
    );
    let tracker = TaskTracker::new();
    let context = Arc::new(Context {
        handler: handler.clone(),
        publisher,
        results: names.results.clone(),
        stats: stats.clone(),
        classic: settings.queue_type == QueueType::Classic,
    });
    let ended = loop {
        if !handler.is_ready() {
            tokio::select! {
                _ = stop.cancelled() => break Ended::Shutdown,
                _ = handler.ready() => {}
            }
        }
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ended::Shutdown,
            next = interactive.next() => next,
            next = batch.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let context = context.clone();
                tracker.spawn(async move { context.process(delivery).await });
            }
            Some(Err(err)) => break Ended::Lost(err.to_string()),
            None => break Ended::Lost("the broker cancelled a consumer".to_owned()),
        }
    };
    if matches!(ended, Ended::Shutdown) {
        // Stop deliveries first; what the channels already hold unacked returns to the
        // queue when they close.
        for (channel, consumer) in [
            (&interactive_channel, &interactive),
            (&batch_channel, &batch),
        ] {
            if let Err(err) = channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await
            {
                tracing::warn!(error = %err, "cannot cancel a consumer");
            }
        }
        tracker.close();
        let in_flight = tracker.len();
        tracing::info!(
            in_flight,
            grace_s = settings.shutdown_grace.as_secs(),
            "draining"
        );
        if tokio::time::timeout(settings.shutdown_grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tracker.len(),
                "grace period over; unfinished requests go back to the queue"
            );
        }
        // A quorum queue may ignore acks that reach it just before their channel closes
        // and hand those requests out again (rabbitmq/rabbitmq-server#10327, open): the
        // SIGTERM test saw 11 answered requests answered a second time by the next
        // worker. An ack has no reply to wait for, so give the last ones time to be
        // applied, then close every channel, the publisher's too, before the
        // connection: lapin logs an "invalid channel state" ERROR at every shutdown
        // for a channel still open when the connection closes.
        tokio::time::sleep(ACK_SETTLE).await;
        for channel in [&interactive_channel, &batch_channel, &context.publisher] {
            match tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "bye".into())).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot close a channel"),
                Err(_) => tracing::warn!(
                    timeout_s = CLOSE_TIMEOUT.as_secs(),
                    "RabbitMQ did not confirm closing a channel"
                ),
            }
        }
    } else {
        tracker.close();
        // Their acks can no longer succeed; the broker redelivers what they held.
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    }
    tracing::info!(
        answered = stats.answered.load(Ordering::Relaxed),
        returned = stats.returned.load(Ordering::Relaxed),
        "session over"
    );
    Ok(ended)
}

async fn consume(
    connection: &Connection,
    queue: &str,
    prefetch: u16,
) -> Result<(Channel, Consumer), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

/// What every delivery task shares.
struct Context<S> {
    handler: Arc<S>,
    publisher: Channel,
    results: String,
    stats: Arc<Stats>,
    classic: bool,
}

impl<S: Service> Context<S> {
    /// Answers one delivery, then acks it once the reply is confirmed.
    async fn process(&self, delivery: Delivery) {
        let started = Instant::now();
        let properties = &delivery.properties;
        let reply_to = properties.reply_to().as_ref().map(|s| s.as_str());
        let incoming = Incoming {
            reply_to,
            content_type: properties.content_type().as_ref().map(|s| s.as_str()),
            body: &delivery.data,
        };
        let outcome = match AssertUnwindSafe(self.handler.handle(incoming))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!("a request's handling panicked; answering INTERNAL_ERROR");
                let route = reply_to
                    .filter(|name| self.handler.allows(name))
                    .map(|name| Route::ReplyTo(name.to_owned()));
                Outcome::from_result(
                    route,
                    Err(Error::Internal(anyhow::anyhow!("the handler panicked"))),
                )
            }
        };
        let correlation_id = properties
            .correlation_id()
            .clone()
            .or_else(|| properties.message_id().clone());
        tracing::debug!(
            code = %outcome.code,
            correlation_id = correlation_id.as_ref().map(|c| c.as_str()),
            "answered"
        );
        match self.publish(&outcome, correlation_id, started).await {
            Ok(Confirmation::Nack(_)) => {
                tracing::warn!("the broker refused a reply; the request goes back to the queue");
                self.give_back(&delivery).await;
            }
            Ok(confirmation) => {
                if let Some(returned) = confirmation.take_message() {
                    self.stats.returned.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        reply_to = %returned.delivery.routing_key,
                        reply_code = returned.reply_code,
                        "reply returned unroutable; not retried"
                    );
                }
                match delivery.acker.ack(BasicAckOptions::default()).await {
                    Ok(_) => {
                        self.stats.answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot ack an answered request; the broker will redeliver it");
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot publish a reply; the request stays unacked");
                self.give_back(&delivery).await;
            }
        }
    }

    /// Publishes a reply and waits for the broker's confirm; records the service time
    /// of a request that began at `started` once the reply is handed to the connection.
    async fn publish(
        &self,
        outcome: &Outcome,
        correlation_id: Option<lapin::types::ShortString>,
        started: Instant,
    ) -> Result<Confirmation, lapin::Error> {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-status-code".into(),
            AMQPValue::LongString(outcome.code.as_str().into()),
        );
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers);
        if let Some(id) = correlation_id {
            properties = properties.with_correlation_id(id);
        }
        // A direct reply-to address is neither persistent nor published mandatory: the
        // broker (3.x) returns such a reply as NO_ROUTE even when it delivered it.
        let (exchange, routing_key, mandatory) = match &outcome.route {
            Route::ReplyTo(queue) if is_direct_reply_to(queue) => ("", queue.as_str(), false),
            Route::ReplyTo(queue) => ("", queue.as_str(), true),
            Route::Results(key) => (self.results.as_str(), *key, false),
        };
        if !is_direct_reply_to(routing_key) {
            properties = properties.with_delivery_mode(2);
        }
        let confirm = self
            .publisher
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                &outcome.body,
                properties,
            )
            .await?;
        self.stats.service.record(started.elapsed());
        confirm.await
    }

    /// Hands a request back to the broker after its reply could not be published.
    /// Quorum queues count deliveries and dead-letter past the limit; a classic queue
    /// does not, so an already redelivered request is dead-lettered there at once.
    async fn give_back(&self, delivery: &Delivery) {
        self.stats.requeued.fetch_add(1, Ordering::Relaxed);
        let requeue = !(self.classic && delivery.redelivered);
        if let Err(err) = delivery
            .acker
            .nack(BasicNackOptions {
                requeue,
                ..BasicNackOptions::default()
            })
            .await
        {
            tracing::warn!(error = %err, "cannot nack; the broker will redeliver the request");
        }
    }
}

/// Whether `name` is a direct reply-to address.
fn is_direct_reply_to(name: &str) -> bool {
    name.starts_with("amq.rabbitmq.reply-to")
}
