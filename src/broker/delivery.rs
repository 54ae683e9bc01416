//! One delivery, from the consume loop to its ack: hand it to the [`Service`], publish
//! the reply, and ack the request once the broker confirmed the reply (through its
//! channel's [`Acks`], in batches, or alone); hand it back to the queue when the reply
//! cannot be published.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::acks::Acks;
use super::replies::{Message, Published, Replies};
use super::sanitize::REPAIRED_HEADER;
use super::trace_context;
use crate::error::{Code, Error};
use crate::handle::{Incoming, Outcome, Route, Service};
use crate::observe::metrics::{QueueMetrics, REQUEUED, RETURNED};
use crate::observe::traces;
use crate::observe::Stats;
use crate::reply_to::is_direct;

/// What every delivery task shares.
pub(super) struct Context<S> {
    pub handler: Arc<S>,
    pub replies: Arc<Replies>,
    pub results: String,
    pub stats: Arc<Stats>,
    pub classic: bool,
    pub metrics: QueueMetrics,
    /// The channel's batched acks; `None`: each delivery acks itself.
    pub acks: Option<Arc<Acks>>,
}

impl<S: Service> Context<S> {
    /// Registers a delivery with the channel's acks, in the consume loop (before its
    /// task can finish it), so no `multiple` ack covers it while it is worked on.
    pub fn arrived(&self, delivery: &Delivery) {
        if let Some(acks) = &self.acks {
            acks.arrived(delivery.delivery_tag);
        }
    }

    /// Answers one delivery, then acks it once the reply is confirmed; everything it
    /// logs carries the request's `correlation_id` and `queue`.
    pub async fn process(&self, delivery: Delivery) {
        let correlation_id = delivery
            .properties
            .correlation_id()
            .clone()
            .or_else(|| delivery.properties.message_id().clone());
        // Empty when the request has neither correlation_id nor message_id.
        let span = request_span(
            correlation_id.as_ref().map_or("", |c| c.as_str()),
            self.metrics.queue,
            &delivery,
        );
        self.answer(delivery, correlation_id).instrument(span).await;
    }

    async fn answer(&self, delivery: Delivery, correlation_id: Option<ShortString>) {
        let started = Instant::now();
        let _in_flight = self.metrics.arrived(delivery.redelivered);
        let properties = &delivery.properties;
        let reply_to = properties.reply_to().as_ref().map(|s| s.as_str());
        let repaired = repaired(properties.headers().as_ref());
        let incoming = Incoming {
            reply_to,
            content_type: properties.content_type().as_ref().map(|s| s.as_str()),
            body: &delivery.data,
            repaired,
        };
        let outcome = match AssertUnwindSafe(self.handler.handle(incoming))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!("a request's handling panicked; answering INTERNAL_ERROR");
                let route = reply_to
                    .filter(|name| repaired.is_none() && self.handler.allows(name))
                    .map(|name| Route::ReplyTo(name.to_owned()));
                Outcome::from_result(
                    route,
                    Err(Error::Internal(anyhow::anyhow!("the handler panicked"))),
                )
            }
        };
        tracing::debug!(code = %outcome.code, "answered");
        let mut code = outcome.code;
        // The reply names the request's span; with no traces exported there is none,
        // and the caller's context goes back as it came (W3C: passed on unchanged).
        let reply_context = if traces::on() {
            traces::current()
        } else {
            trace_context::extract(properties.headers().as_ref())
        };
        let mut published = self
            .publish(
                &outcome,
                correlation_id.clone(),
                Some(started),
                &reply_context,
            )
            .instrument(publish_span())
            .await;
        if let (Published::Refused(err), Route::ReplyTo(name)) = (&published, &outcome.route) {
            if is_direct(name) {
                // Published alone, this direct reply-to address still broke the
                // channel: RabbitMQ did not issue it. Refused the way a malformed one is.
                tracing::warn!(reply_to = ?name, error = %err, "RabbitMQ cannot deliver to this direct reply-to address; answering REPLY_TO_NOT_ALLOWED");
                let refusal =
                    Outcome::from_result(None, Err(Error::ReplyToNotAllowed(name.clone())));
                code = refusal.code;
                published = self
                    .publish(&refusal, correlation_id, None, &reply_context)
                    .instrument(publish_span())
                    .await;
            }
        }
        if traces::on() {
            record_code(code);
        }
        match published {
            Published::Confirmed { returned } => {
                self.metrics.answered(code);
                self.stats.count(code);
                if let Some((reply_code, routing_key)) = returned {
                    self.stats.returned.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(RETURNED).increment(1);
                    tracing::warn!(
                        reply_to = ?routing_key,
                        reply_code,
                        "reply returned unroutable; not retried"
                    );
                }
                // Counted answered once its ack is written (by the ack task, batched).
                match &self.acks {
                    Some(acks) => acks.finished(delivery.delivery_tag),
                    None => match delivery.acker.ack(BasicAckOptions::default()).await {
                        Ok(_) => {
                            self.stats.answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot ack an answered request; the broker will redeliver it");
                        }
                    },
                }
            }
            Published::Nacked => {
                unanswered();
                tracing::warn!("the broker refused a reply; the request goes back to the queue");
                self.give_back(&delivery).await;
            }
            Published::Refused(err) | Published::Unavailable(err) => {
                unanswered();
                tracing::warn!(error = %err, "cannot publish a reply; the request goes back to the queue");
                self.give_back(&delivery).await;
            }
        }
    }

    /// Publishes a reply and waits for the broker's confirm; records the time of a
    /// request that began at `started` (on its first reply) once the reply is handed to
    /// the broker.
    async fn publish(
        &self,
        outcome: &Outcome,
        correlation_id: Option<ShortString>,
        started: Option<Instant>,
        trace: &opentelemetry::Context,
    ) -> Published {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-status-code".into(),
            AMQPValue::LongString(outcome.code.as_str().into()),
        );
        trace_context::inject(trace, &mut headers);
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers);
        if let Some(id) = correlation_id {
            properties = properties.with_correlation_id(id);
        }
        // A direct reply-to address is neither persistent nor published mandatory: the
        // broker (3.x) returns such a reply as NO_ROUTE even when it delivered it.
        let (exchange, routing_key, mandatory) = match &outcome.route {
            Route::ReplyTo(queue) if is_direct(queue) => ("", queue.as_str(), false),
            Route::ReplyTo(queue) => ("", queue.as_str(), true),
            Route::Results(key) => (self.results.as_str(), *key, false),
        };
        if !is_direct(routing_key) {
            properties = properties.with_delivery_mode(2);
        }
        let message = Message {
            exchange,
            routing_key,
            mandatory,
            body: &outcome.body,
            properties,
        };
        if let Some(started) = started {
            self.metrics.handed_off(started.elapsed());
        }
        self.replies.publish(&message).await
    }

    /// Hands a request back to the broker after its reply could not be published.
    /// Quorum queues count deliveries and dead-letter past the limit; a classic queue
    /// does not, so an already redelivered request is dead-lettered there at once.
    async fn give_back(&self, delivery: &Delivery) {
        self.stats.requeued.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(REQUEUED).increment(1);
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
        // Only now, the nack written: a `multiple` ack after it no longer covers it.
        if let Some(acks) = &self.acks {
            acks.gone(delivery.delivery_tag);
        }
    }
}

/// The span every line logged while a request is handled is in. With traces exported
/// it is also the request's consumer span, a child of the context the request's
/// headers carry, named and attributed as the OpenTelemetry messaging semantic
/// conventions (v1.30.0) say for RabbitMQ. Nothing of the body is in it, only its
/// size; the correlation id is the caller's handle, already in every log line.
fn request_span(correlation_id: &str, queue: &'static str, delivery: &Delivery) -> tracing::Span {
    if !traces::on() {
        return tracing::info_span!("request", correlation_id, queue);
    }
    let routing_key = delivery.routing_key.as_str();
    let span = tracing::info_span!(
        "request",
        correlation_id,
        queue,
        otel.name = %format_args!("process {routing_key}"),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    trace_context::set_messaging_attributes(
        &span,
        "process",
        "process",
        delivery.exchange.as_str(),
        routing_key,
    );
    if !correlation_id.is_empty() {
        span.set_attribute(
            "messaging.message.conversation_id",
            correlation_id.to_owned(),
        );
    }
    span.set_attribute("messaging.message.body.size", delivery.data.len() as i64);
    // An empty context (no header, or a malformed one) makes it the root of a new trace.
    let parent = trace_context::extract(delivery.properties.headers().as_ref());
    let _ = span.set_parent(parent);
    span
}

/// The reply publish's span (none unless the request's span is exported).
fn publish_span() -> tracing::Span {
    if !traces::sampled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "reply",
        otel.name = "send reply",
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
    )
}

/// Records the reply's code on the request span; only a fault of the service
/// (section 15) is an error of the span, not a refused request.
fn record_code(code: Code) {
    let span = tracing::Span::current();
    span.set_attribute("tucano.status_code", code.as_str());
    if matches!(code, Code::TemporarilyUnavailable | Code::InternalError) {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_description", code.as_str());
    }
}

/// Marks the request span as failed: its reply could not be published.
fn unanswered() {
    if traces::on() {
        let span = tracing::Span::current();
        span.record("otel.status_code", "ERROR");
        span.record(
            "otel.status_description",
            "the reply could not be published",
        );
    }
}

/// The properties the connection's sanitizer repaired, from its marker header.
fn repaired(headers: Option<&FieldTable>) -> Option<&str> {
    match headers?.inner().get(REPAIRED_HEADER)? {
        AMQPValue::LongString(list) => {
            Some(std::str::from_utf8(list.as_bytes()).unwrap_or("properties"))
        }
        _ => Some("properties"),
    }
}
