//! The consume loop: connects (and reconnects with backoff), declares the topology,
//! consumes both request queues with manual acks, and hands each delivery to a task
//! that answers it ([`super::delivery`]). Replies go out on a connection of their own
//! ([`super::replies`]); a request is acked only once the broker confirmed its reply
//! (docs/protocol.md §7), in batches over each channel ([`super::acks`]).
//!
//! Interactive requests come first: the loop polls the interactive consumer before the
//! batch one, and the batch gate ([`super::classes`]) lets only
//! `TUCANO_BATCH_PREFETCH` batch requests run beside interactive traffic; with none,
//! batch gets the interactive window.
//!
//! No wait here is unbounded: connecting, every set-up step and every close have a
//! timeout, and all of them give way to the shutdown signal, so SIGTERM ends the
//! process within the grace period plus [`SHUTDOWN_SLACK`] whatever the broker does.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acks::{AckMode, Acks};
use super::classes::BatchGate;
use super::delivery::Context;
use super::replies::Replies;
use super::{declare, step, tls_problem, Names, Nodes, CLOSE_TIMEOUT};
use super::{QueueType, Settings};
use crate::backoff::Backoff;
use crate::handle::Service;
use crate::observe::metrics::{QueueMetrics, RECONNECTS};
use crate::observe::Stats;
use crate::request::MAX_BODY;

/// How long a draining worker waits after its last acks before it closes its channels
/// (see `session`).
const ACK_SETTLE: Duration = Duration::from_millis(250);

/// How long shutdown may take beyond the grace period (closing channels and
/// connections) before the worker stops waiting for the broker and exits.
pub const SHUTDOWN_SLACK: Duration = Duration::from_secs(4);

/// How long declaring the whole topology may take.
const DECLARE_TIMEOUT: Duration = Duration::from_secs(30);

/// How one broker session ended.
enum Ended {
    Shutdown,
    Lost(String),
}

/// Serves requests until `shutdown` resolves, then drains (section 7). Reconnects to a
/// lost broker with backoff; a topology the broker refuses is fatal.
pub async fn serve<S: Service>(
    settings: &Settings,
    handler: Arc<S>,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_acking(settings, handler, stats, shutdown, AckMode::Batched).await
}

/// [`serve`], acknowledging as `acks` says: the bench's echo measures both ways.
pub async fn serve_acking<S: Service>(
    settings: &Settings,
    handler: Arc<S>,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
    acks: AckMode,
) -> anyhow::Result<()> {
    let names = Names::new(&settings.queue_prefix);
    // Once: a URL that does not parse, a CA or client certificate file that cannot be
    // read, is fatal at start.
    let nodes = Nodes::new(&settings.amqp_url, &settings.amqp_tls)
        .map_err(|err| anyhow::anyhow!("AMQP_URL cannot be used: {err}"))?;
    if let Some(warning) = settings.amqp_tls.plain_nodes_warning(&settings.amqp_url) {
        tracing::warn!(broker = %nodes.shown(), "{warning}");
    }
    let stop = CancellationToken::new();
    // The connection name carries the prefix, so an operator can tell workers apart.
    let role = format!("worker {}", settings.queue_prefix);
    let replies = Arc::new(Replies::new(nodes.clone(), &role));
    let work = async {
        let mut backoff = Backoff::new();
        let mut first = true;
        loop {
            let broker = nodes.current().shown.clone();
            let connected = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                connected = nodes.open_current(&role, Some(MAX_BODY as u64)) => connected,
            };
            let connection = match connected {
                Ok(connection) => connection,
                // A certificate refused is a setting to fix: waiting will not mend it.
                // Later on (a broker's certificate replaced), it is retried like an outage.
                Err(err) if first && tls_problem(&err).is_some() => {
                    let why = tls_problem(&err).unwrap_or_default();
                    anyhow::bail!(
                        "the TLS connection to RabbitMQ at {broker} (AMQP_URL) failed: {why}; \
                         check AMQP_CA_FILE (the CA that signed the broker's certificate), the \
                         host name in AMQP_URL, and AMQP_CLIENT_CERT_FILE/AMQP_CLIENT_KEY_FILE"
                    )
                }
                Err(err) => {
                    // The next node of AMQP_URL next time (the same one if it is alone).
                    nodes.advance();
                    let delay = backoff.step();
                    tracing::warn!(broker = %broker, error = %err, retry_in_ms = delay.as_millis() as u64, "cannot reach RabbitMQ (AMQP_URL); retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            let declared = tokio::select! {
                _ = stop.cancelled() => Err(None),
                declared = tokio::time::timeout(DECLARE_TIMEOUT, declare(&connection, &names, settings.queue_type)) => match declared {
                    Ok(Ok(())) => Ok(()),
                    // The broker refused a declaration: the topology must be fixed by hand.
                    Ok(Err(err)) if err.source.is_amqp_error() => return Err(err.into()),
                    Ok(Err(err)) => Err(Some(err.to_string())),
                    Err(_) => Err(Some(format!("declaring the topology took over {} s", DECLARE_TIMEOUT.as_secs()))),
                },
            };
            let ended = match declared {
                Ok(()) => {
                    if !first {
                        stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(RECONNECTS).increment(1);
                    }
                    first = false;
                    backoff = Backoff::new();
                    session(
                        &connection,
                        settings,
                        &names,
                        &handler,
                        &replies,
                        &stats,
                        &stop,
                        acks,
                    )
                    .await
                }
                Err(None) => Ended::Shutdown,
                Err(Some(why)) => Ended::Lost(why),
            };
            // Bounded: once a broker failed to answer `close-ok`, and the process hung
            // after draining until the bench SIGKILLed it.
            if connection.status().connected()
                && tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "bye".into()))
                    .await
                    .is_err()
            {
                tracing::warn!(
                    timeout_s = CLOSE_TIMEOUT.as_secs(),
                    "RabbitMQ did not confirm closing the connection; leaving it"
                );
            }
            match ended {
                Ended::Shutdown => return Ok(()),
                Ended::Lost(why) => {
                    nodes.advance();
                    tracing::warn!(broker = %broker, reason = %why, next = %nodes.current().shown, "lost the broker connection, reconnecting");
                }
            }
            let delay = backoff.step();
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    };
    tokio::pin!(work);
    let result = tokio::select! {
        result = &mut work => result,
        _ = shutdown => {
            stop.cancel();
            let deadline = settings.shutdown_grace + SHUTDOWN_SLACK;
            match tokio::time::timeout(deadline, &mut work).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(deadline_s = deadline.as_secs(), "shutdown is taking too long; exiting without waiting for RabbitMQ");
                    Ok(())
                }
            }
        }
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, replies.close())
        .await
        .is_err()
    {
        tracing::warn!("RabbitMQ did not confirm closing the reply connection; leaving it");
    }
    result
}

/// One connection's worth of consuming.
#[allow(clippy::too_many_arguments)]
async fn session<S: Service>(
    connection: &Connection,
    settings: &Settings,
    names: &Names,
    handler: &Arc<S>,
    replies: &Arc<Replies>,
    stats: &Arc<Stats>,
    stop: &CancellationToken,
    mode: AckMode,
) -> Ended {
    let opened = async {
        replies.open().await?;
        // Room for the pass-code backlog beside the window: pass-code requests waiting
        // for their check never take the slots of the requests that need none (docs/protocol.md
        // §14).
        let window = settings.prefetch.saturating_add(settings.pass_code_backlog);
        let interactive = consume(connection, &names.interactive, window).await?;
        // The batch channel holds the same window; the gate lets TUCANO_BATCH_PREFETCH
        // of them run while interactive requests come in, all of them when none do.
        let batch = consume(connection, &names.batch, batch_window(settings)).await?;
        Ok::<_, lapin::Error>((interactive, batch))
    };
    let opened = tokio::select! {
        _ = stop.cancelled() => return Ended::Shutdown,
        opened = opened => opened,
    };
    let ((interactive_channel, mut interactive), (batch_channel, mut batch)) = match opened {
        Ok(opened) => opened,
        Err(err) => return Ended::Lost(format!("setting up the consumers: {err}")),
    };
    tracing::info!(
        interactive = %names.interactive,
        batch = %names.batch,
        prefetch = settings.prefetch,
        pass_code_backlog = settings.pass_code_backlog,
        batch_prefetch = settings.batch_prefetch,
        "consuming"
    );
    stats.readiness.set_broker(true);
    let tracker = TaskTracker::new();
    // One ack task per channel: delivery tags are the channel's own.
    let acks = |channel: &Channel, prefetch| {
        (mode == AckMode::Batched).then(|| Acks::start(channel.clone(), prefetch, stats.clone()))
    };
    let interactive_acks = acks(
        &interactive_channel,
        settings.prefetch.saturating_add(settings.pass_code_backlog),
    );
    let batch_acks = acks(&batch_channel, batch_window(settings));
    let context = |queue, acks: &Option<Arc<Acks>>| {
        Arc::new(Context {
            handler: handler.clone(),
            replies: replies.clone(),
            results: names.results.clone(),
            stats: stats.clone(),
            classic: settings.queue_type == QueueType::Classic,
            metrics: QueueMetrics::new(queue),
            acks: acks.clone(),
        })
    };
    let (interactive_context, batch_context) = (
        context("interactive", &interactive_acks),
        context("batch", &batch_acks),
    );
    let gate = Arc::new(BatchGate::new(
        settings.batch_prefetch,
        batch_window(settings),
    ));
    let ended = loop {
        if !handler.is_ready() {
            tokio::select! {
                _ = stop.cancelled() => break Ended::Shutdown,
                _ = handler.ready() => {}
            }
        }
        let (next, is_batch) = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ended::Shutdown,
            next = interactive.next() => (next, false),
            next = batch.next() => (next, true),
        };
        match next {
            Some(Ok(delivery)) if is_batch => {
                batch_context.arrived(&delivery);
                let (context, gate) = (batch_context.clone(), gate.clone());
                tracker.spawn(async move {
                    let _share = gate.admit().await;
                    context.process(delivery).await
                });
            }
            Some(Ok(delivery)) => {
                interactive_context.arrived(&delivery);
                let (context, gate) = (interactive_context.clone(), gate.clone());
                tracker.spawn(async move {
                    let _in_flight = gate.interactive();
                    context.process(delivery).await
                });
            }
            Some(Err(err)) => break Ended::Lost(err.to_string()),
            None => break Ended::Lost("the broker cancelled a consumer".to_owned()),
        }
    };
    stats.readiness.set_broker(false);
    if matches!(ended, Ended::Shutdown) {
        // Stop deliveries first; what the channels already hold unacked returns to the
        // queue when they close.
        for (channel, consumer) in [
            (&interactive_channel, &interactive),
            (&batch_channel, &batch),
        ] {
            let cancel = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default());
            if let Err(err) = step("basic.cancel", cancel).await {
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
        // The acks of what finished go out now; a request still running past the grace
        // period is not acked, and its delivery goes back to the queue with the channel.
        for acks in [&interactive_acks, &batch_acks].into_iter().flatten() {
            acks.flush(CLOSE_TIMEOUT).await;
        }
        // A quorum queue may ignore acks that reach it just before their channel closes
        // and hand those requests out again (rabbitmq/rabbitmq-server#10327, open): the
        // SIGTERM test saw 11 answered requests answered a second time by the next
        // worker. An ack has no reply to wait for, so give the last ones time to be
        // applied, then close the channels before the connection: lapin logs an
        // "invalid channel state" ERROR for a channel still open when the connection
        // closes.
        tokio::time::sleep(ACK_SETTLE).await;
        for channel in [&interactive_channel, &batch_channel] {
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
    for acks in [&interactive_acks, &batch_acks].into_iter().flatten() {
        acks.stop();
    }
    tracing::info!(
        answered = stats.answered.load(Ordering::Relaxed),
        returned = stats.returned.load(Ordering::Relaxed),
        "session over"
    );
    ended
}

/// The batch channel's prefetch, and how many batch requests may run while interactive
/// traffic is quiet: the interactive window, `TUCANO_PREFETCH` +
/// `TUCANO_PASS_CODE_BACKLOG` (or `TUCANO_BATCH_PREFETCH`, if larger).
///
/// Batch gets the interactive window, not `TUCANO_PREFETCH` alone: the worker gathers
/// the requests in flight into one lookup statement, so its rate grows with them, and
/// a batch job with 256 requests in flight drained at 0.67 of the interactive rate at
/// the same window while its channel held 64 (issue 31). What waits at the gate while
/// interactive requests come in costs a place in the channel, not work.
fn batch_window(settings: &Settings) -> u16 {
    settings
        .prefetch
        .saturating_add(settings.pass_code_backlog)
        .max(settings.batch_prefetch)
}

/// A channel consuming `queue` with manual acks and `prefetch`, each step bounded.
async fn consume(
    connection: &Connection,
    queue: &str,
    prefetch: u16,
) -> Result<(Channel, Consumer), lapin::Error> {
    let channel = step("opening a channel", connection.create_channel()).await?;
    step(
        "basic.qos",
        channel.basic_qos(prefetch, BasicQosOptions::default()),
    )
    .await?;
    let consumer = step(
        "basic.consume",
        channel.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await?;
    Ok((channel, consumer))
}
