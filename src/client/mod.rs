//! The client library: request-reply with the worker over RabbitMQ, for Rust backends,
//! and the one implementation `tucano-auth call` and `tucano-auth batch` are built on.
//!
//! A [`Client`] owns one AMQP connection and one channel. On that channel it consumes
//! RabbitMQ's direct reply-to pseudo-queue (`amq.rabbitmq.reply-to`, no acks) *before*
//! it publishes anything, and it publishes every request with publisher confirms,
//! persistent, `mandatory`, with a `correlation_id` of its own. A background task reads
//! the replies and hands each to the call waiting for its `correlation_id`; so any
//! number of [`Client::authenticate`] calls may run at once over the one connection.
//!
//! ```no_run
//! use std::time::Duration;
//! use tucano_auth::client::Client;
//! use tucano_auth::error::Code;
//!
//! # async fn example() -> Result<(), tucano_auth::client::ClientError> {
//! let client = Client::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "tucano").await?;
//! let request = serde_json::json!({
//!     "token": "35108255345D4F98ABFD7810A08E432F",
//!     "subscription_identifier": {"number": "S0000000329"}
//! });
//! let reply = client
//!     .authenticate(request.to_string(), Duration::from_secs(10))
//!     .await?;
//! if reply.code == Code::Ok {
//!     println!("JWT for subscription {:?}", reply.subscription_id);
//! } else {
//!     println!("refused: {} ({})", reply.code, reply.message);
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! What can go wrong is a [`ClientError`]: no reply in time ([`ClientError::Timeout`]),
//! the connection lost or unreachable ([`ClientError::Connection`]; every call waiting
//! at that moment gets it at once, none hangs), no such queue
//! ([`ClientError::NoQueue`]: no worker ever ran with this prefix), or a reply that is
//! not the worker's envelope ([`ClientError::BadReply`]). A status other than `OK` is
//! not an error: it is a [`Reply`] whose [`Reply::code`] says why.
//!
//! The client does not reconnect: after a [`ClientError::Connection`], connect again.
//! A request whose call timed out may still be answered later (the request stays in
//! its durable queue until a worker takes it); that late reply is dropped.

mod nodes;
mod reply;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use tokio::sync::oneshot;
use tokio_util::task::AbortOnDropHandle;

use crate::broker::{Names, TlsFiles};

pub use nodes::split_nodes;
pub use reply::Reply;

/// RabbitMQ's direct reply-to pseudo-queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Which request queue a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// `PREFIX.authenticate`: interactive requests, served first.
    Interactive,
    /// `PREFIX.authenticate.batch`: bulk jobs, served with the capacity interactive
    /// requests leave free.
    Batch,
}

/// Why a call got no [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No reply within the call's timeout. The request may still be answered later.
    #[error("no reply within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The broker could not be reached, or the connection was lost while the call
    /// waited (the text says which node or what happened; never a password).
    #[error("broker connection: {0}")]
    Connection(String),
    /// The request queue does not exist: no worker has declared it under this prefix.
    #[error("queue {0} does not exist: is a worker running with this QUEUE_PREFIX?")]
    NoQueue(String),
    /// The broker refused to take the request (a negative publisher confirm).
    #[error("the broker refused the request to {0}")]
    Refused(String),
    /// A message arrived for this call that is not a reply envelope of the worker.
    #[error("the reply is not a tucano-auth reply: {0}")]
    BadReply(String),
}

type Waiter = oneshot::Sender<Result<Reply, ClientError>>;

/// The calls waiting for replies, by `correlation_id`; closed once the connection is lost.
#[derive(Default)]
struct Pending {
    state: Mutex<PendingState>,
}

#[derive(Default)]
struct PendingState {
    waiting: HashMap<String, Waiter>,
    /// Why no reply can come any more, once the reply consumer has stopped.
    closed: Option<String>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, PendingState> {
        // A panic while holding this lock leaves the map consistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(&self, id: &str, waiter: Waiter) -> Result<(), ClientError> {
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(ClientError::Connection(reason.clone()));
        }
        state.waiting.insert(id.to_owned(), waiter);
        Ok(())
    }

    fn take(&self, id: &str) -> Option<Waiter> {
        self.lock().waiting.remove(id)
    }

    /// Fails every waiting call with `reason`, and every later one.
    fn close(&self, reason: String) {
        let waiting = {
            let mut state = self.lock();
            state.closed = Some(reason.clone());
            std::mem::take(&mut state.waiting)
        };
        for (_, waiter) in waiting {
            let _ = waiter.send(Err(ClientError::Connection(reason.clone())));
        }
    }
}

/// Removes a call's entry when the call ends, however it ends (reply, timeout, error,
/// or the caller dropping the future), so abandoned calls leave nothing behind.
struct Entry<'a> {
    pending: &'a Pending,
    id: String,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        self.pending.take(&self.id);
    }
}

/// A connection to the broker for calling the worker; see the [module docs](self).
///
/// Cheap to share: wrap it in an `Arc` and call it from as many tasks as you like.
pub struct Client {
    connection: Connection,
    channel: Channel,
    names: Names,
    pending: Arc<Pending>,
    /// This client's part of every `correlation_id`, so two clients never collide.
    id_prefix: String,
    next_id: AtomicU64,
    _replies: AbortOnDropHandle<()>,
}

impl Client {
    /// Connects to the broker and starts listening for replies.
    ///
    /// `amqp_url` is one URL or a comma-separated list of the nodes of one RabbitMQ
    /// cluster: the nodes are tried in turn, starting at a random one (so many clients
    /// spread over the cluster), until one answers. `queue_prefix` is the worker's
    /// `QUEUE_PREFIX` (`tucano` by default).
    pub async fn connect(amqp_url: &str, queue_prefix: &str) -> Result<Client, ClientError> {
        Client::connect_with_tls(amqp_url, queue_prefix, &TlsFiles::default()).await
    }

    /// [`Client::connect`], with `tls`'s CA and client certificate for `amqps://` nodes
    /// (without them, the system's roots and no client certificate).
    pub async fn connect_with_tls(
        amqp_url: &str,
        queue_prefix: &str,
        tls: &TlsFiles,
    ) -> Result<Client, ClientError> {
        let connection = nodes::connect_any(amqp_url, tls, "client").await?;
        let lost = |err: lapin::Error| ClientError::Connection(err.to_string());
        let channel = connection.create_channel().await.map_err(lost)?;
        // Direct reply-to requires the consumer to exist before the first publish that
        // names it, on the same channel.
        let consumer = crate::broker::consume_no_ack(&channel, DIRECT_REPLY_TO)
            .await
            .map_err(lost)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(lost)?;
        let pending = Arc::new(Pending::default());
        let replies =
            AbortOnDropHandle::new(tokio::spawn(route_replies(consumer, pending.clone())));
        Ok(Client {
            connection,
            channel,
            names: Names::new(queue_prefix),
            pending,
            id_prefix: uuid::Uuid::new_v4().simple().to_string(),
            next_id: AtomicU64::new(0),
            _replies: replies,
        })
    }

    /// Sends `request` (a JSON request body, see `schemas/request.schema.json`) to the
    /// interactive queue and waits at most `timeout` for its reply.
    ///
    /// The timeout covers the whole call: the broker's confirm and the worker's answer.
    pub async fn authenticate(
        &self,
        request: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        self.send(Queue::Interactive, request.as_ref(), timeout)
            .await
    }

    /// Sends `request` to `queue` and waits at most `timeout` for its reply; what
    /// [`Client::authenticate`] does with [`Queue::Interactive`].
    pub async fn send(
        &self,
        queue: Queue,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Reply, ClientError> {
        let queue = match queue {
            Queue::Interactive => self.names.interactive.as_str(),
            Queue::Batch => self.names.batch.as_str(),
        };
        let id = format!(
            "{}-{}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (waiter, reply) = oneshot::channel();
        self.pending.register(&id, waiter)?;
        let _entry = Entry {
            pending: &self.pending,
            id: id.clone(),
        };
        let call = async {
            let lost = |err: lapin::Error| ClientError::Connection(err.to_string());
            let confirmation = self
                .channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    request,
                    BasicProperties::default()
                        .with_content_type("application/json".into())
                        .with_correlation_id(id.as_str().into())
                        .with_reply_to(DIRECT_REPLY_TO.into())
                        .with_delivery_mode(2),
                )
                .await
                .map_err(lost)?
                .await
                .map_err(lost)?;
            if confirmation.is_nack() {
                return Err(ClientError::Refused(queue.to_owned()));
            }
            if confirmation.take_message().is_some() {
                return Err(ClientError::NoQueue(queue.to_owned()));
            }
            match reply.await {
                Ok(outcome) => outcome,
                Err(_) => Err(ClientError::Connection(
                    "the reply listener stopped".to_owned(),
                )),
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ClientError::Timeout(timeout)),
        }
    }

    /// How many calls are waiting for their reply now.
    pub fn in_flight(&self) -> usize {
        self.pending.lock().waiting.len()
    }

    /// The queue names this client sends to.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Closes the connection; calls still waiting fail with [`ClientError::Connection`].
    pub async fn close(self) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.connection.close(200, "bye".into()).await;
        self.pending.close("the client was closed".to_owned());
    }
}

/// Hands each reply to the call waiting for its `correlation_id` until the consumer
/// stops, then fails every waiting call (and every later one) with the reason.
async fn route_replies(mut consumer: Consumer, pending: Arc<Pending>) {
    let reason = loop {
        match consumer.next().await {
            Some(Ok(delivery)) => {
                let Some(id) = delivery.properties.correlation_id().as_ref() else {
                    continue;
                };
                // No waiter: the call timed out or was dropped; its reply is late.
                if let Some(waiter) = pending.take(id.as_str()) {
                    let _ =
                        waiter.send(Reply::parse(&delivery.data).map_err(ClientError::BadReply));
                }
            }
            Some(Err(err)) => break format!("connection lost: {err}"),
            None => break "the broker cancelled the reply consumer".to_owned(),
        }
    };
    pending.close(reason);
}
