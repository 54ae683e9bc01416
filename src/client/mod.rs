//! The client library: request-reply with the worker over RabbitMQ, for Rust backends,
//! and the one implementation `tucano-auth call` and `tucano-auth batch` are built on
//! (the batch job itself is [`batch`]).
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
//! A lost connection fails every call waiting at that moment with
//! [`ClientError::Connection`], at once: the client never re-sends a request by itself,
//! since only the caller knows whether a second answer is welcome (the worker answers
//! at least once, so a re-sent request may be answered twice). The *next* call on the
//! same client connects again (to the next node of the list that answers) before it
//! sends; [`Client::reconnect`] does that on demand, for a caller that wants to wait
//! for the broker before it retries (as `batch` does). A request whose call timed out,
//! or whose connection was lost, may still be answered later (the request stays in its
//! durable queue until a worker takes it); that late reply is dropped (counted by
//! [`Client::late_replies`] when it reaches this connection; a reply sent to a lost
//! connection's reply-to is dropped by the broker).

pub mod batch;
mod nodes;
mod reply;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use opentelemetry::trace::TraceContextExt;
use tokio::sync::oneshot;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::broker::trace_context;
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

    /// Whether no reply can come any more on this connection.
    fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
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
    amqp_url: String,
    tls: TlsFiles,
    names: Names,
    /// The connection in use; replaced by a new one after it is lost.
    session: Mutex<Arc<Session>>,
    /// Held while a new connection is made, so concurrent calls make one, not many.
    reconnecting: tokio::sync::Mutex<()>,
    /// This client's part of every `correlation_id`, so two clients never collide.
    id_prefix: String,
    next_id: AtomicU64,
    late: Arc<AtomicU64>,
    closed: AtomicBool,
}

/// One AMQP connection of a [`Client`], its channel and the calls waiting on it.
struct Session {
    connection: Connection,
    channel: Channel,
    pending: Arc<Pending>,
    _replies: AbortOnDropHandle<()>,
}

impl Session {
    async fn open(
        amqp_url: &str,
        tls: &TlsFiles,
        late: Arc<AtomicU64>,
    ) -> Result<Session, ClientError> {
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
            AbortOnDropHandle::new(tokio::spawn(route_replies(consumer, pending.clone(), late)));
        Ok(Session {
            connection,
            channel,
            pending,
            _replies: replies,
        })
    }

    async fn close(&self, reason: &str) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.connection.close(200, "bye".into()).await;
        self.pending.close(reason.to_owned());
    }
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
        let late = Arc::new(AtomicU64::new(0));
        let session = Session::open(amqp_url, tls, late.clone()).await?;
        Ok(Client {
            amqp_url: amqp_url.to_owned(),
            tls: tls.clone(),
            names: Names::new(queue_prefix),
            session: Mutex::new(Arc::new(session)),
            reconnecting: tokio::sync::Mutex::new(()),
            id_prefix: uuid::Uuid::new_v4().simple().to_string(),
            next_id: AtomicU64::new(0),
            late,
            closed: AtomicBool::new(false),
        })
    }

    fn session(&self) -> Arc<Session> {
        // A panic while holding this lock cannot leave the `Arc` half-replaced.
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether the connection in use is lost (the next call will connect again).
    pub fn is_lost(&self) -> bool {
        self.session().pending.is_closed()
    }

    /// Connects again if the connection in use is lost: to the nodes of `AMQP_URL` in
    /// turn, once each. `Ok(false)`: the connection was fine, nothing done.
    ///
    /// Calls do this by themselves before they send; a caller that wants to wait for
    /// the broker to come back (retrying with a pause) calls it directly.
    pub async fn reconnect(&self) -> Result<bool, ClientError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ClientError::Connection("the client was closed".to_owned()));
        }
        let _one_at_a_time = self.reconnecting.lock().await;
        let old = self.session();
        if !old.pending.is_closed() {
            return Ok(false);
        }
        let session = Session::open(&self.amqp_url, &self.tls, self.late.clone()).await?;
        *self
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(session);
        // The old connection is dead already; closing it frees what lapin still holds,
        // off this call's path.
        tokio::spawn(async move { old.close("connection lost").await });
        Ok(true)
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
    ///
    /// When the connection in use was lost before this call, the call connects again
    /// first (within its timeout).
    ///
    /// Each call is a span (`send <queue>`, a producer span of the OpenTelemetry
    /// messaging conventions) in the caller's current `tracing` span; its W3C trace
    /// context goes with the request (`traceparent`, `tracestate` headers), so a
    /// caller's trace continues into the worker. A caller that traces with the
    /// OpenTelemetry API instead of `tracing` has its current context sent.
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
        let span = call_span(queue);
        let mut context = span.context();
        if !context.span().span_context().is_valid() {
            context = opentelemetry::Context::current();
        }
        let mut headers = FieldTable::default();
        trace_context::inject(&context, &mut headers);
        let call = tokio::time::timeout(timeout, self.call(queue, request, headers));
        let outcome = match call.instrument(span.clone()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ClientError::Timeout(timeout)),
        };
        match &outcome {
            Ok(reply) => span.set_attribute("tucano.status_code", reply.code.as_str()),
            Err(err) => {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", err.to_string());
            }
        }
        outcome
    }

    async fn call(
        &self,
        queue: &str,
        request: &[u8],
        headers: FieldTable,
    ) -> Result<Reply, ClientError> {
        if self.is_lost() {
            self.reconnect().await?;
        }
        let session = self.session();
        let id = format!(
            "{}-{}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let (waiter, reply) = oneshot::channel();
        session.pending.register(&id, waiter)?;
        let _entry = Entry {
            pending: &session.pending,
            id: id.clone(),
        };
        let lost = |err: lapin::Error| ClientError::Connection(err.to_string());
        let confirmation = session
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
                    .with_delivery_mode(2)
                    .with_headers(headers),
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
    }

    /// Whether `queue` exists, asked of the broker without sending anything (a passive
    /// declare on a channel of its own, since the broker closes the channel of a
    /// failed one): [`ClientError::NoQueue`] when no worker has declared it under this
    /// client's prefix.
    pub async fn check_queue(&self, queue: Queue) -> Result<(), ClientError> {
        let name = match queue {
            Queue::Interactive => self.names.interactive.as_str(),
            Queue::Batch => self.names.batch.as_str(),
        };
        let lost = |err: lapin::Error| ClientError::Connection(err.to_string());
        let channel = self
            .session()
            .connection
            .create_channel()
            .await
            .map_err(lost)?;
        let declared = channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(_) => {
                let _ = channel.close(200, "checked".into()).await;
                Ok(())
            }
            Err(err) => match err.kind() {
                // 404 NOT_FOUND: the broker has closed the channel already.
                lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => {
                    Err(ClientError::NoQueue(name.to_owned()))
                }
                _ => Err(lost(err)),
            },
        }
    }

    /// How many calls are waiting for their reply now.
    pub fn in_flight(&self) -> usize {
        self.session().pending.lock().waiting.len()
    }

    /// Replies that reached this client after their call had ended (timed out, or
    /// dropped by its caller): a late answer, or a second answer to a re-sent request.
    pub fn late_replies(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// The queue names this client sends to.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Closes the connection; calls still waiting fail with [`ClientError::Connection`].
    pub async fn close(self) {
        self.closed.store(true, Ordering::Relaxed);
        self.session().close("the client was closed").await;
    }
}

/// Hands each reply to the call waiting for its `correlation_id` until the consumer
/// stops, then fails every waiting call (and every later one) with the reason.
/// The span of one call; the correlation id is the client's own counter, the request
/// body is not in it.
fn call_span(queue: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "call",
        otel.name = %format_args!("send {queue}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    // Requests go through the default exchange, routed by the queue's name.
    trace_context::set_messaging_attributes(&span, "send", "publish", "", queue);
    span
}

async fn route_replies(mut consumer: Consumer, pending: Arc<Pending>, late: Arc<AtomicU64>) {
    let reason = loop {
        match consumer.next().await {
            Some(Ok(delivery)) => {
                let Some(id) = delivery.properties.correlation_id().as_ref() else {
                    continue;
                };
                // No waiter: the call timed out or was dropped; its reply is late.
                match pending.take(id.as_str()) {
                    Some(waiter) => {
                        let _ = waiter
                            .send(Reply::parse(&delivery.data).map_err(ClientError::BadReply));
                    }
                    None => {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some(Err(err)) => break format!("connection lost: {err}"),
            None => break "the broker cancelled the reply consumer".to_owned(),
        }
    };
    pending.close(reason);
}
