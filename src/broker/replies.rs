//! Publishing replies, on a connection of their own.
//!
//! A reply can make RabbitMQ close the channel, even the connection, it was published
//! on: a direct reply-to name the broker cannot decode crashes the publishing channel
//! (RabbitMQ 3.10: `541 INTERNAL_ERROR`, connection closed). If replies shared the
//! consuming connection, that would drop every request the worker holds unacked, and
//! a few such names would push other callers' requests past the delivery limit into
//! the dead-letter queue. So replies go out on their own connection, and a reply whose
//! publish fails is published again *alone* ([`Replies::publish`]): if it fails alone,
//! it is the culprit and is refused; the replies that were merely caught beside it go
//! through on the second try. Nothing another request does costs a request its answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::RwLock;

use super::{step, CLOSE_TIMEOUT};

/// What became of a reply.
#[derive(Debug)]
pub(super) enum Published {
    /// The broker confirmed it; `returned` if it came back unroutable (mandatory).
    Confirmed {
        /// The routing key it was returned with, if it was.
        returned: Option<(u16, String)>,
    },
    /// The broker nacked it.
    Nacked,
    /// Published alone, it still made the broker close the channel: this reply (its
    /// address) is what the broker cannot take.
    Refused(lapin::Error),
    /// The broker could not be reached to publish it.
    Unavailable(lapin::Error),
}

/// A reply ready to go out.
pub(super) struct Message<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub mandatory: bool,
    pub body: &'a [u8],
    pub properties: BasicProperties,
}

struct Current {
    generation: u64,
    connection: Connection,
    channel: Channel,
}

/// The reply connection and its confirm channel, opened on first use and again after
/// it is lost.
pub(super) struct Replies {
    nodes: super::Nodes,
    role: String,
    current: Mutex<Option<Arc<Current>>>,
    reconnect: tokio::sync::Mutex<()>,
    /// Held shared by every first try, exclusively by a retry so it goes out alone.
    solo: RwLock<()>,
    generations: AtomicU64,
}

impl Replies {
    /// A publisher to one of `nodes`; nothing is opened until the first reply.
    pub(super) fn new(nodes: super::Nodes, role: &str) -> Replies {
        Replies {
            nodes,
            role: format!("{role} replies"),
            current: Mutex::new(None),
            reconnect: tokio::sync::Mutex::new(()),
            solo: RwLock::new(()),
            generations: AtomicU64::new(0),
        }
    }

    /// Opens the connection now, so that a broker that refuses it shows at start.
    pub(super) async fn open(&self) -> Result<(), lapin::Error> {
        self.current().await.map(|_| ())
    }

    /// Publishes `message` and waits for the broker's confirm. A failure other than a
    /// nack is tried once more, alone on a fresh channel (see the module doc).
    pub(super) async fn publish(&self, message: &Message<'_>) -> Published {
        {
            let _shared = self.solo.read().await;
            let current = match self.current().await {
                Ok(current) => current,
                Err(err) => return Published::Unavailable(err),
            };
            match publish_on(&current.channel, message).await {
                Ok(published) => return published,
                Err(_) => self.discard(current.generation),
            }
        }
        let _alone = self.solo.write().await;
        let current = match self.current().await {
            Ok(current) => current,
            Err(err) => return Published::Unavailable(err),
        };
        match publish_on(&current.channel, message).await {
            Ok(published) => published,
            Err(err) => {
                self.discard(current.generation);
                if err.is_amqp_error() {
                    Published::Refused(err)
                } else {
                    Published::Unavailable(err)
                }
            }
        }
    }

    /// Closes the reply channel and connection (at shutdown).
    pub(super) async fn close(&self) {
        let current = self.lock().take();
        if let Some(current) = current {
            close(&current).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Current>>> {
        // Only ever replaced or cloned while held: a panic cannot leave it half-written.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn usable(&self) -> Option<Arc<Current>> {
        self.lock()
            .as_ref()
            .filter(|current| current.channel.status().connected())
            .cloned()
    }

    async fn current(&self) -> Result<Arc<Current>, lapin::Error> {
        if let Some(current) = self.usable() {
            return Ok(current);
        }
        let _one_at_a_time = self.reconnect.lock().await;
        if let Some(current) = self.usable() {
            return Ok(current);
        }
        let connection = self.nodes.open_any(&self.role).await?;
        let opened = async {
            let channel = step("opening the reply channel", connection.create_channel()).await?;
            step(
                "confirm.select on the reply channel",
                channel.confirm_select(ConfirmSelectOptions::default()),
            )
            .await?;
            Ok::<_, lapin::Error>(channel)
        }
        .await;
        let channel = match opened {
            Ok(channel) => channel,
            Err(err) => {
                let _ =
                    tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "bye".into())).await;
                return Err(err);
            }
        };
        let current = Arc::new(Current {
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            connection,
            channel,
        });
        let old = self.lock().replace(current.clone());
        if let Some(old) = old {
            tokio::spawn(async move { close(&old).await });
        }
        Ok(current)
    }

    /// Forgets the channel of `generation` (if it is still the current one), so the
    /// next reply opens a new connection.
    fn discard(&self, generation: u64) {
        let mut current = self.lock();
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            if let Some(old) = current.take() {
                tokio::spawn(async move { close(&old).await });
            }
        }
    }
}

async fn publish_on(channel: &Channel, message: &Message<'_>) -> Result<Published, lapin::Error> {
    let confirm = channel
        .basic_publish(
            message.exchange.into(),
            message.routing_key.into(),
            BasicPublishOptions {
                mandatory: message.mandatory,
                ..BasicPublishOptions::default()
            },
            message.body,
            message.properties.clone(),
        )
        .await?;
    Ok(match confirm.await? {
        Confirmation::Nack(_) => Published::Nacked,
        confirmation => Published::Confirmed {
            returned: confirmation.take_message().map(|returned| {
                (
                    returned.reply_code,
                    returned.delivery.routing_key.as_str().to_owned(),
                )
            }),
        },
    })
}

async fn close(current: &Current) {
    if current.channel.status().connected() {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, current.channel.close(200, "bye".into())).await;
    }
    if current.connection.status().connected() {
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, current.connection.close(200, "bye".into())).await;
    }
}
