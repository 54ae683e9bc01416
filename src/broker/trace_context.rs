//! W3C Trace Context in AMQP headers: the `traceparent` and `tracestate` headers a
//! request may carry (string values, long or short, as the OpenTelemetry AMQP
//! propagators write them) and the `traceparent` a reply carries (docs/protocol.md,
//! "Trace context").
//!
//! A header that is missing, of another type, not UTF-8 or malformed yields an empty
//! context: the request starts a new trace, and its reply is the same as without it.

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The header names W3C Trace Context uses.
pub const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

/// The longest header value read; a valid `traceparent` is 55 characters and a
/// `tracestate` at most 32 members of 256, so anything longer is not parsed at all.
const MAX_VALUE: usize = 8192;

/// The context the headers carry, or an empty one.
pub fn extract(headers: Option<&FieldTable>) -> Context {
    let Some(headers) = headers else {
        return Context::new();
    };
    if !headers.inner().contains_key(TRACEPARENT) {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Writes `context`'s `traceparent` (and `tracestate`) into `headers`; nothing when it
/// holds no valid span.
pub fn inject(context: &Context, headers: &mut FieldTable) {
    TraceContextPropagator::new().inject_context(context, &mut Writer(headers));
}

struct Headers<'a>(&'a FieldTable);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let bytes = match self.0.inner().get(key)? {
            AMQPValue::LongString(value) => value.as_bytes(),
            AMQPValue::ShortString(value) => value.as_str().as_bytes(),
            _ => return None,
        };
        if bytes.len() > MAX_VALUE {
            return None;
        }
        std::str::from_utf8(bytes).ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|key| key.as_str()).collect()
    }
}

struct Writer<'a>(&'a mut FieldTable);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    }
}

/// Sets the OpenTelemetry messaging attributes every RabbitMQ span of ours carries: the
/// system, the operation (`process`/`process` for the worker's consumer span,
/// `send`/`publish` for a client's call), the exchange (empty for the default one) and
/// the routing key. Attributes, not `tracing` fields: a text log line shows a span's
/// fields.
pub fn set_messaging_attributes(
    span: &tracing::Span,
    operation_type: &'static str,
    operation_name: &'static str,
    exchange: &str,
    routing_key: &str,
) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.set_attribute("messaging.system", "rabbitmq");
    span.set_attribute("messaging.operation.type", operation_type);
    span.set_attribute("messaging.operation.name", operation_name);
    span.set_attribute("messaging.destination.name", exchange.to_owned());
    span.set_attribute(
        "messaging.rabbitmq.destination.routing_key",
        routing_key.to_owned(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    fn headers(value: AMQPValue) -> FieldTable {
        let mut table = FieldTable::default();
        table.insert(TRACEPARENT.into(), value);
        table
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn long_and_short_strings_are_read() {
        for value in [
            AMQPValue::LongString(PARENT.into()),
            AMQPValue::ShortString(PARENT.into()),
        ] {
            let context = extract(Some(&headers(value)));
            let span = context.span();
            let ids = span.span_context();
            assert!(ids.is_remote());
            assert_eq!(
                ids.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_eq!(ids.span_id().to_string(), "00f067aa0ba902b7");
        }
    }

    #[test]
    fn malformed_or_mistyped_values_give_an_empty_context() {
        for value in [
            AMQPValue::LongString("00-zz-00f067aa0ba902b7-01".into()),
            AMQPValue::LongString("x".repeat(10_000).into()),
            AMQPValue::LongString(b"\xff\xfe".to_vec().into()),
            AMQPValue::LongLongInt(7),
            AMQPValue::LongString("00-00000000000000000000000000000000-00f067aa0ba902b7-01".into()),
        ] {
            let context = extract(Some(&headers(value)));
            assert!(!context.span().span_context().is_valid());
        }
        assert!(!extract(None).span().span_context().is_valid());
    }

    #[test]
    fn an_injected_context_reads_back() {
        let context = extract(Some(&headers(AMQPValue::LongString(PARENT.into()))));
        let mut table = FieldTable::default();
        inject(&context, &mut table);
        match table.inner().get(TRACEPARENT) {
            Some(AMQPValue::LongString(value)) => assert_eq!(value.as_bytes(), PARENT.as_bytes()),
            other => panic!("no traceparent: {other:?}"),
        }
        let mut empty = FieldTable::default();
        inject(&Context::new(), &mut empty);
        assert!(empty.inner().is_empty());
    }
}
