//! The one raw request-reply client: a channel that consumes RabbitMQ's direct
//! reply-to and publishes requests on itself (the broker routes a direct reply only
//! to the channel that published the request).
//!
//! Callers use the product's `tucano_auth::client::Client` for ordinary request-reply.
//! This one is for what that client must not do: send hostile or malformed requests
//! with properties of the caller's choosing (the integration tests), and drive the
//! broker at full speed with no client machinery between the load generator and what
//! it measures (the bench: the client's publisher confirms, per-call bookkeeping and
//! reply parsing would be CPU taken from the processes under test, and a cost of the
//! client counted as the worker's).

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Consumer};

/// RabbitMQ's direct reply-to pseudo-queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// A channel consuming direct reply-to, that publishes requests answered there.
pub struct Requester {
    channel: Channel,
    replies: Consumer,
}

impl Requester {
    /// A requester on `channel`, whose `replies` is its no-ack consumer of
    /// [`DIRECT_REPLY_TO`] (made by the caller, with `tucano_auth::broker::consume_no_ack`,
    /// so the consume is written once). It must consume before it publishes.
    pub fn new(channel: Channel, replies: Consumer) -> Requester {
        Requester { channel, replies }
    }

    /// Publishes `body` to `queue` (default exchange) with `properties` and
    /// `reply_to` = direct reply-to; no publisher confirm (the reply is the
    /// acknowledgement).
    pub async fn send(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), lapin::Error> {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties.with_reply_to(DIRECT_REPLY_TO.into()),
            )
            .await
            .map(|_| ())
    }

    /// The replies as they arrive, for a caller that waits on them beside other things.
    pub fn replies(&mut self) -> &mut Consumer {
        &mut self.replies
    }

    /// The next reply, waiting up to `wait`; `None` if none came (or the consumer
    /// ended).
    pub async fn next_reply(&mut self, wait: Duration) -> Option<Result<Delivery, lapin::Error>> {
        tokio::time::timeout(wait, self.replies.next())
            .await
            .ok()
            .flatten()
    }

    /// Closes the channel.
    pub async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
    }
}

/// A reply's `x-status-code` header (the worker sets it from the body's code), as
/// text; `None` if it has none.
pub fn status_header(properties: &BasicProperties) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get("x-status-code")? {
        AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}
