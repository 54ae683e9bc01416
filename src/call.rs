//! `call`: one request-reply round trip over direct reply-to, for people and scripts.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;

use crate::broker::{connect, Names};

/// Direct reply-to pseudo-queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// What a call ended with.
#[derive(Debug)]
pub enum CallOutcome {
    /// The reply arrived; its body and `status.code`.
    Replied {
        /// The reply body.
        body: String,
        /// Its `status.code`, if the body had one.
        code: Option<String>,
    },
    /// No reply within the timeout.
    TimedOut,
}

/// Sends `json` to the interactive (or batch) queue under `prefix` and waits for the reply.
pub async fn call(
    amqp_url: &str,
    prefix: &str,
    json: &str,
    batch: bool,
    timeout: Duration,
) -> anyhow::Result<CallOutcome> {
    let names = Names::new(prefix);
    let queue = if batch {
        names.batch
    } else {
        names.interactive
    };
    let connection = connect(amqp_url, "call")
        .await
        .context("cannot connect to RabbitMQ (AMQP_URL)")?;
    let channel = connection.create_channel().await?;
    let mut replies = crate::broker::consume_no_ack(&channel, DIRECT_REPLY_TO)
        .await
        .context("cannot consume from direct reply-to")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("cannot enable publisher confirms")?;
    let correlation_id = uuid::Uuid::new_v4().simple().to_string();
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            json.as_bytes(),
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_correlation_id(correlation_id.as_str().into())
                .with_reply_to(DIRECT_REPLY_TO.into()),
        )
        .await
        .with_context(|| format!("cannot publish to {queue}"))?
        .await
        .with_context(|| format!("the broker did not confirm the request to {queue}"))?;
    if confirmation.take_message().is_some() {
        bail!("queue {queue} does not exist: is the worker running, with this QUEUE_PREFIX?");
    }
    let wait = async {
        while let Some(delivery) = replies.next().await {
            let delivery = delivery?;
            let matches = delivery
                .properties
                .correlation_id()
                .as_ref()
                .is_some_and(|id| id.as_str() == correlation_id);
            if matches {
                return Ok(delivery.data);
            }
        }
        Err(anyhow!("the broker closed the reply consumer"))
    };
    let outcome = match tokio::time::timeout(timeout, wait).await {
        Err(_) => CallOutcome::TimedOut,
        Ok(data) => {
            let body = String::from_utf8_lossy(&data?).into_owned();
            let code = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.pointer("/status/code")?.as_str().map(str::to_owned));
            CallOutcome::Replied { body, code }
        }
    };
    let _ = connection.close(200, "bye".into()).await;
    Ok(outcome)
}
