//! What the harness asks the broker about a queue, by a passive declare (so it needs
//! no management plugin), and the polling every "wait until" uses.

use std::time::Duration;

use anyhow::bail;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use tokio::time::Instant;

/// Messages ready in `queue` and its consumers; `None` while it does not exist (or
/// the connection cannot open a channel).
pub async fn depth(connection: &Connection, queue: &str) -> Option<(u32, u32)> {
    // A passive declare of a missing queue closes its channel: one channel per ask.
    let channel = connection.create_channel().await.ok()?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .ok();
    // Closed before its connection, or lapin logs an ERROR.
    let _ = channel.close(200, "ok".into()).await;
    declared.map(|q| (q.message_count(), q.consumer_count()))
}

/// Asks `check` every `every` until it says yes; an error naming `what` if `timeout`
/// passes first, or at once the error `check` returns (a process that died).
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !check().await? {
        if Instant::now() >= deadline {
            bail!("timed out after {} s waiting for {what}", timeout.as_secs());
        }
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// Waits up to `timeout` until `queue` has at least `count` consumers (a worker
/// serves it), asking every 100 ms; `alive` is asked first each time, so a worker
/// that exits fails the wait at once rather than at the timeout.
pub async fn wait_consumers(
    connection: &Connection,
    queue: &str,
    count: u32,
    timeout: Duration,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let what = format!("{count} consumer(s) on {queue}");
    wait_until(&what, timeout, Duration::from_millis(100), async || {
        alive()?;
        Ok(depth(connection, queue)
            .await
            .is_some_and(|(_, consumers)| consumers >= count))
    })
    .await
}

/// Declares `name` durable on `channel`, of `queue_type` (`quorum`, `classic`) if
/// given: the queue a run's replies go to when they must outlive a connection.
pub async fn declare_durable(
    channel: &Channel,
    name: &str,
    queue_type: Option<&str>,
) -> Result<(), lapin::Error> {
    let mut arguments = FieldTable::default();
    if let Some(kind) = queue_type {
        arguments.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    }
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), arguments)
        .await
        .map(|_| ())
}
