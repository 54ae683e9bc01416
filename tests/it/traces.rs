//! Traces (docs/operations.md, "Traces"; docs/protocol.md, "Trace context"): the real
//! binary exports its spans over OTLP/HTTP to a receiver in the test that decodes them
//! with the OpenTelemetry protobuf definitions. A request's `traceparent` is continued,
//! a malformed one starts a new trace and changes nothing in the reply, no secret or
//! identifier value reaches the export, and an unreachable collector costs no request
//! its answer while the dropped spans are counted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message as _;
use serde_json::json;
use tokio_util::task::AbortOnDropHandle;
use tucano_auth::store::seed;

use crate::helpers::*;
use crate::observe::{binary_with_metrics, http_get};

/// A caller's span, as a W3C `traceparent` names it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// How a collector takes exports, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

/// An OTLP receiver: keeps every export, as protobuf or as JSON.
struct Collector {
    addr: SocketAddr,
    wire: Wire,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    _server: AbortOnDropHandle<()>,
}

/// The gRPC `TraceService`: keeps each export, encoded as protobuf.
struct GrpcSink(Arc<Mutex<Vec<Vec<u8>>>>);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .lock()
            .expect("lock")
            .push(request.into_inner().encode_to_vec());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// An OTLP/HTTP (protobuf) receiver: `POST /v1/traces`.
    async fn start() -> Collector {
        Collector::start_for(Wire::HttpProtobuf).await
    }

    async fn start_for(wire: Wire) -> Collector {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = if wire == Wire::Grpc {
            let service = TraceServiceServer::new(GrpcSink(Arc::clone(&bodies)));
            tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await;
            })
        } else {
            let kept = Arc::clone(&bodies);
            let content_type = match wire {
                Wire::HttpJson => "application/json",
                _ => "application/x-protobuf",
            };
            let router = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |body: Bytes| {
                    let kept = Arc::clone(&kept);
                    async move {
                        kept.lock().expect("lock").push(body.to_vec());
                        // An empty ExportTraceServiceResponse: everything accepted.
                        let answer = if content_type == "application/json" {
                            b"{}".to_vec()
                        } else {
                            Vec::new()
                        };
                        ([("content-type", content_type)], answer)
                    }
                }),
            );
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            })
        };
        Collector {
            addr,
            wire,
            bodies,
            _server: AbortOnDropHandle::new(server),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every export received so far, as sent.
    fn raw(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().expect("lock").clone()
    }

    /// Every span received so far, with its resource's attributes.
    fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let mut spans = Vec::new();
        for body in self.raw() {
            let request = if self.wire == Wire::HttpJson {
                serde_json::from_slice::<ExportTraceServiceRequest>(&body)
                    .expect("an export decodes as OTLP/JSON ExportTraceServiceRequest")
            } else {
                ExportTraceServiceRequest::decode(body.as_slice())
                    .expect("an export decodes as ExportTraceServiceRequest")
            };
            for resource in request.resource_spans {
                let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        spans.push((attributes.clone(), span));
                    }
                }
            }
        }
        spans
    }

    /// Waits (at most 30 s) until a span satisfying `found` has been received.
    async fn wait_span(&self, what: &str, found: impl Fn(&Span) -> bool) -> Span {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, span)) = self.spans().into_iter().find(|(_, span)| found(span)) {
                return span;
            }
            assert!(Instant::now() < deadline, "no exported span: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The real binary on a run of its own, exporting its spans to `endpoint`, with `env`
/// besides; its log goes to a file of its own.
struct Traced {
    run: BinaryRun,
    log: std::path::PathBuf,
    child: std::process::Child,
    /// Its metrics server.
    metrics: SocketAddr,
}

impl Traced {
    async fn start(label: &str, endpoint: &str, env: &[(&str, &str)]) -> Traced {
        let run = BinaryRun::new(label).await;
        let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
        let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)];
        all.extend_from_slice(env);
        let (child, metrics) = binary_with_metrics(&run, &all, &log).await;
        Traced {
            run,
            log,
            child,
            metrics,
        }
    }

    /// Stops the worker with SIGTERM (it must exit 0) and returns what it logged.
    fn terminate(&mut self) -> String {
        assert!(terminate(&mut self.child).success());
        let said = std::fs::read_to_string(&self.log).expect("the worker's log");
        let _ = std::fs::remove_file(&self.log);
        said
    }

    /// Removes the run's queues and database (stop the worker first).
    async fn cleanup(self) {
        cleanup(&self.run.prefix, &self.run.prefix).await;
    }
}

/// A string or integer attribute, as text.
fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Every string an export holds in decoded form: names, keys, string values, trace
/// states.
fn strings(collector: &Collector) -> Vec<String> {
    let mut out = Vec::new();
    for (resource, span) in collector.spans() {
        let mut lists = vec![resource, span.attributes.clone()];
        lists.extend(span.events.iter().map(|event| event.attributes.clone()));
        lists.extend(span.links.iter().map(|link| link.attributes.clone()));
        for attributes in &lists {
            for kv in attributes {
                out.push(kv.key.clone());
                // Strings only: numbers (`busy_ns`, sizes) are not where a value of a
                // request could hide, and would match a short pass code by chance.
                if let Some(any_value::Value::StringValue(value)) =
                    kv.value.as_ref().and_then(|v| v.value.as_ref())
                {
                    out.push(value.clone());
                }
            }
        }
        out.push(span.name.clone());
        out.push(span.trace_state.clone());
        out.extend(span.status.map(|status| status.message));
        out.extend(span.events.iter().map(|event| event.name.clone()));
        out.extend(span.links.iter().map(|link| link.trace_state.clone()));
    }
    out
}

fn traceparent_of(delivery: &Delivery) -> Option<String> {
    match delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get("traceparent")?
    {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into()),
        other => panic!("traceparent is not a long string: {other:?}"),
    }
}

/// Publishes `body` to the interactive queue with `headers`, answered to the run's
/// reply queue under `correlation_id`.
async fn publish(run: &BinaryRun, body: &str, correlation_id: &str, headers: FieldTable) {
    run.publish(
        body,
        correlation_id,
        BasicProperties::default().with_headers(headers),
    )
    .await
    .await
    .expect("confirmed");
}

/// Takes replies until the one for `correlation_id` (at most 30 s).
async fn reply_for(run: &BinaryRun, correlation_id: &str) -> Delivery {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = run.take_reply().await;
        match got {
            Some(delivery)
                if delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .is_some_and(|id| id.as_str() == correlation_id) =>
            {
                return delivery;
            }
            Some(other) => panic!(
                "a reply for another request: {:?}",
                other.properties.correlation_id()
            ),
            None => {
                assert!(Instant::now() < deadline, "no reply for {correlation_id}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Publishes `n` plain requests, correlation ids `LABEL-0`..., and checks each is
/// answered `OK`.
async fn answered_ok(run: &BinaryRun, label: &str, n: usize) {
    let ok = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    for i in 0..n {
        publish(run, &ok, &format!("{label}-{i}"), FieldTable::default()).await;
    }
    let codes = run.codes(n, Duration::from_secs(30)).await;
    for i in 0..n {
        assert_eq!(
            codes.get(&format!("{label}-{i}")).map(String::as_str),
            Some("OK")
        );
    }
}

/// The worker's `tucano_auth_spans_dropped_total`, read from its `/metrics`.
async fn spans_dropped(addr: SocketAddr) -> Option<f64> {
    let (_, body) = http_get(addr, "/metrics").await.expect("/metrics");
    body.lines()
        .find_map(|line| line.strip_prefix("tucano_auth_spans_dropped_total "))
        .map(|value| value.trim().parse::<f64>().expect("a number"))
}

fn status_code(delivery: &Delivery) -> String {
    let body: serde_json::Value = serde_json::from_slice(&delivery.data).expect("JSON reply");
    body["status"]["code"].as_str().expect("code").to_owned()
}

fn header(name: &str, value: AMQPValue) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert(name.into(), value);
    table
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_request_continues_the_callers_trace_and_leaks_nothing() {
    let collector = Collector::start().await;
    let mut worker = Traced::start(
        "otel",
        &collector.endpoint(),
        &[
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let run = &worker.run;

    // 1. A known caller's span, as the OpenTelemetry AMQP propagators write it.
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let mut headers = header("traceparent", AMQPValue::LongString(traceparent.into()));
    headers.insert(
        "tracestate".into(),
        AMQPValue::LongString("tucano=test".into()),
    );
    let ok = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    publish(run, &ok, "traced-1", headers).await;
    let reply = reply_for(run, "traced-1").await;
    assert_eq!(status_code(&reply), "OK");
    let reply_parent = traceparent_of(&reply).expect("the reply carries a traceparent");
    let parts: Vec<&str> = reply_parent.split('-').collect();
    assert_eq!(parts.len(), 4, "{reply_parent}");
    assert_eq!(parts[1], TRACE_ID, "the reply continues the caller's trace");
    assert_ne!(parts[2], CALLER_SPAN, "the reply names the worker's span");

    let queue = run.names.interactive.clone();
    let consumer = collector
        .wait_span("the consumer span of traced-1", |span| {
            hex(&span.trace_id) == TRACE_ID && span.kind == SpanKind::Consumer as i32
        })
        .await;
    assert_eq!(hex(&consumer.parent_span_id), CALLER_SPAN);
    assert_eq!(
        hex(&consumer.span_id),
        parts[2],
        "the reply names this span"
    );
    assert_eq!(consumer.name, format!("process {queue}"));
    assert_eq!(consumer.trace_state, "tucano=test");
    let a = &consumer.attributes;
    assert_eq!(attr(a, "messaging.system").as_deref(), Some("rabbitmq"));
    assert_eq!(
        attr(a, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        attr(a, "messaging.operation.name").as_deref(),
        Some("process")
    );
    assert_eq!(attr(a, "messaging.destination.name").as_deref(), Some(""));
    assert_eq!(
        attr(a, "messaging.rabbitmq.destination.routing_key").as_deref(),
        Some(queue.as_str())
    );
    assert_eq!(
        attr(a, "messaging.message.conversation_id").as_deref(),
        Some("traced-1")
    );
    assert_eq!(
        attr(a, "messaging.message.body.size"),
        Some(ok.len().to_string())
    );
    assert_eq!(attr(a, "tucano.status_code").as_deref(), Some("OK"));
    assert_ne!(
        consumer.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );

    // Its children: the lookup (and the statement it waited for), signing, the reply.
    for name in ["lookup", "sign JWT", "send reply"] {
        collector
            .wait_span(name, |span| {
                span.name == name && span.parent_span_id == consumer.span_id
            })
            .await;
    }
    let lookup = collector
        .wait_span("lookup", |span| {
            span.name == "lookup" && span.parent_span_id == consumer.span_id
        })
        .await;
    let statement = collector
        .wait_span("the statement linked to the lookup", |span| {
            span.name == "SELECT lookup" && span.links.iter().any(|l| l.span_id == lookup.span_id)
        })
        .await;
    assert_eq!(
        attr(&statement.attributes, "db.system.name").as_deref(),
        Some("postgresql")
    );

    // 2. A pass-code request gets a child for the check.
    let pass = json!({"token": seed::SESSION_TOKEN, "access_token_identifier": {"identifier": seed::ACCESS_TOKEN_IDENTIFIER, "pass_code": seed::ACCESS_TOKEN_PASS_CODE}}).to_string();
    let pass_parent = format!("00-{TRACE_ID}-1111111111111111-01");
    publish(
        run,
        &pass,
        "traced-2",
        // (Not a ShortString: RabbitMQ reads field type `s` as a short integer and
        // closes the connection; the worker reads one all the same, see the unit test.)
        header("traceparent", AMQPValue::LongString(pass_parent.into())),
    )
    .await;
    assert_eq!(status_code(&reply_for(run, "traced-2").await), "OK");
    let pass_consumer = collector
        .wait_span("the consumer span of traced-2", |span| {
            hex(&span.parent_span_id) == "1111111111111111"
        })
        .await;
    collector
        .wait_span("verify pass code", |span| {
            span.name == "verify pass code"
                && span.trace_id == pass_consumer.trace_id
                && span.parent_span_id == pass_consumer.span_id
        })
        .await;

    // 3. Malformed, oversized and mistyped headers: answered as without them, in a new
    // trace.
    let plain = {
        publish(run, &ok, "plain", FieldTable::default()).await;
        reply_for(run, "plain").await
    };
    assert!(traceparent_of(&plain).is_some(), "a new trace is named too");
    let malformed = [
        AMQPValue::LongString("00-not-a-trace-01".into()),
        AMQPValue::LongString(format!("00-{TRACE_ID}-{}-01", "f".repeat(10_000)).into()),
        AMQPValue::LongString("x".repeat(10_000).into()),
        AMQPValue::LongString(format!("00-{}-{CALLER_SPAN}-01", "0".repeat(32)).into()),
        AMQPValue::LongLongInt(42),
        AMQPValue::LongString(b"00-\xff\xfe".to_vec().into()),
    ];
    for (i, value) in malformed.into_iter().enumerate() {
        let correlation_id = format!("malformed-{i}");
        publish(run, &ok, &correlation_id, header("traceparent", value)).await;
        let reply = reply_for(run, &correlation_id).await;
        let (got, want): (serde_json::Value, serde_json::Value) = (
            serde_json::from_slice(&reply.data).expect("JSON"),
            serde_json::from_slice(&plain.data).expect("JSON"),
        );
        assert_eq!(got["status"], want["status"], "{correlation_id}");
        assert_eq!(
            got["data"]["subscription_id"], want["data"]["subscription_id"],
            "{correlation_id}"
        );
        let new = traceparent_of(&reply).expect("a traceparent");
        assert!(!new.contains(TRACE_ID), "{correlation_id}: {new}");
        let span = collector
            .wait_span(&correlation_id, |span| {
                attr(&span.attributes, "messaging.message.conversation_id").as_deref()
                    == Some(correlation_id.as_str())
            })
            .await;
        assert!(
            span.parent_span_id.is_empty(),
            "{correlation_id}: a root span"
        );
        assert!(new.contains(&hex(&span.trace_id)), "{correlation_id}");
    }

    // 4. Every identifier path, and the error paths, then no value of them anywhere.
    let jwt = {
        let body: serde_json::Value = serde_json::from_slice(&reply.data).expect("JSON");
        body["data"]["jwt"].as_str().expect("jwt").to_owned()
    };
    let paths = [
        json!({"subscription_identifier": {"number": seed::SUBSCRIPTION_NUMBER}}),
        json!({"subscription_identifier": {"id": seed::SUBSCRIPTION_ID.simple().to_string()}}),
        json!({"installed_item_identifier": {"serial_number": seed::INSTALLED_ITEM_SERIAL_NUMBER}}),
        json!({"installed_item_identifier": {"alternative_code": seed::INSTALLED_ITEM_ALTERNATIVE_CODE}}),
        json!({"access_token_identifier": {"authentication_code": seed::ACCESS_TOKEN_AUTHENTICATION_CODE}}),
        json!({"access_token_identifier": {"identifier": seed::ACCESS_TOKEN_IDENTIFIER, "pass_code": seed::ACCESS_TOKEN_PASS_CODE}}),
        json!({"access_token_identifier": {"identifier": seed::ACCESS_TOKEN_IDENTIFIER, "pass_code": "9876-wrong"}}),
        json!({"customer_identification_medium_identifier": {"authentication_code": seed::MEDIUM_AUTHENTICATION_CODE}}),
        json!({"customer_identification_medium_identifier": {"identifier": seed::MEDIUM_IDENTIFIER, "pass_code": seed::MEDIUM_PASS_CODE}}),
        json!({"access_token_identifier": {"identifier": seed::AMBIGUOUS_IDENTIFIER, "pass_code": seed::AMBIGUOUS_PASS_CODE}, "subscription_type_identifier": {"name": seed::PREMIUM_TYPE_NAME}}),
        json!({"subscription_identifier": {"number": "S-NOT-THERE-77"}}),
    ];
    let mut jwts = vec![jwt];
    for (i, path) in paths.iter().enumerate() {
        let mut body = path.clone();
        body["token"] = json!(seed::SESSION_TOKEN);
        let correlation_id = format!("path-{i}");
        publish(
            run,
            &body.to_string(),
            &correlation_id,
            FieldTable::default(),
        )
        .await;
        let reply = reply_for(run, &correlation_id).await;
        let value: serde_json::Value = serde_json::from_slice(&reply.data).expect("JSON");
        if let Some(jwt) = value["data"]["jwt"].as_str() {
            jwts.push(jwt.to_owned());
        }
        collector
            .wait_span(&correlation_id, |span| {
                attr(&span.attributes, "messaging.message.conversation_id").as_deref()
                    == Some(correlation_id.as_str())
            })
            .await;
    }
    // A bad login token, too.
    publish(
        run,
        &by_number(
            "DEADBEEFDEADBEEFDEADBEEFDEADBEEF",
            seed::SUBSCRIPTION_NUMBER,
        ),
        "bad-token",
        FieldTable::default(),
    )
    .await;
    assert_eq!(
        status_code(&reply_for(run, "bad-token").await),
        "INVALID_TOKEN"
    );

    // Stopping flushes what is queued.
    let text = worker.terminate();

    let raw: Vec<u8> = collector.raw().concat();
    let strings = strings(&collector);
    let long_secrets = [
        seed::SESSION_TOKEN.to_owned(),
        "DEADBEEFDEADBEEFDEADBEEFDEADBEEF".to_owned(),
        seed::SUBSCRIPTION_NUMBER.to_owned(),
        seed::SUBSCRIPTION_ID.simple().to_string(),
        seed::INSTALLED_ITEM_SERIAL_NUMBER.to_owned(),
        seed::INSTALLED_ITEM_ALTERNATIVE_CODE.to_owned(),
        seed::ACCESS_TOKEN_AUTHENTICATION_CODE.to_owned(),
        seed::ACCESS_TOKEN_IDENTIFIER.to_owned(),
        seed::MEDIUM_AUTHENTICATION_CODE.to_owned(),
        seed::MEDIUM_IDENTIFIER.to_owned(),
        seed::AMBIGUOUS_IDENTIFIER.to_owned(),
        "9876-wrong".to_owned(),
        "S-NOT-THERE-77".to_owned(),
        JWT_SECRET.to_owned(),
    ];
    assert!(jwts.len() >= 5, "the OK replies' JWTs: {}", jwts.len());
    for secret in long_secrets.iter().chain(&jwts) {
        for variant in [secret.clone(), secret.to_lowercase(), secret.to_uppercase()] {
            assert!(
                !raw.windows(variant.len()).any(|w| w == variant.as_bytes()),
                "{variant} is in the export"
            );
        }
    }
    // Four-digit pass codes could be any four bytes of a binary id: looked for in
    // every decoded string instead.
    for short in [
        seed::ACCESS_TOKEN_PASS_CODE,
        seed::MEDIUM_PASS_CODE,
        seed::AMBIGUOUS_PASS_CODE,
    ] {
        for s in &strings {
            assert!(!s.contains(short), "pass code {short} in {s:?}");
        }
    }
    let service = collector
        .spans()
        .into_iter()
        .map(|(resource, _)| attr(&resource, "service.name"))
        .next()
        .flatten();
    assert_eq!(service.as_deref(), Some("tucano-auth"));

    // The request's JSON log lines carry its trace.
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["correlation_id"] == "traced-1")
        .collect();
    assert!(!lines.is_empty(), "no log line of traced-1:\n{text}");
    for line in &lines {
        assert_eq!(line["trace_id"], TRACE_ID, "{line}");
        assert_eq!(line["span_id"].as_str().map(str::len), Some(16), "{line}");
        assert!(line.get("messaging.system").is_none(), "{line}");
    }
    worker.cleanup().await;
}

#[tokio::test]
async fn spans_reach_a_collector_over_otlp_json_and_grpc_too() {
    for (wire, protocol) in [(Wire::HttpJson, "http/json"), (Wire::Grpc, "grpc")] {
        let collector = Collector::start_for(wire).await;
        let mut traced = Traced::start(
            "otelwire",
            &collector.endpoint(),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)],
        )
        .await;
        let run = &traced.run;
        let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
        let headers = header("traceparent", AMQPValue::LongString(traceparent.into()));
        let ok = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
        publish(run, &ok, "wire-1", headers).await;
        let reply = reply_for(run, "wire-1").await;
        assert_eq!(status_code(&reply), "OK", "{protocol}");
        let reply_parent = traceparent_of(&reply).expect("a traceparent");
        let consumer = collector
            .wait_span(&format!("the consumer span over {protocol}"), |span| {
                hex(&span.trace_id) == TRACE_ID && span.kind == SpanKind::Consumer as i32
            })
            .await;
        assert_eq!(hex(&consumer.parent_span_id), CALLER_SPAN, "{protocol}");
        assert_eq!(
            consumer.name,
            format!("process {}", run.names.interactive),
            "{protocol}"
        );
        assert!(
            reply_parent.contains(&hex(&consumer.span_id)),
            "{protocol}: {reply_parent}"
        );
        assert_eq!(
            attr(&consumer.attributes, "messaging.message.conversation_id").as_deref(),
            Some("wire-1"),
            "{protocol}"
        );
        traced.terminate();
        traced.cleanup().await;
    }

    // A protocol no collector speaks: said at start, and the worker serves untraced.
    let collector = Collector::start().await;
    let mut traced = Traced::start(
        "otelwire",
        &collector.endpoint(),
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/thrift")],
    )
    .await;
    answered_ok(&traced.run, "thrift", 3).await;
    let said = traced.terminate();
    assert!(
        said.contains(
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/thrift is not one of grpc, http/protobuf, http/json"
        ),
        "{said}"
    );
    assert!(collector.raw().is_empty(), "nothing is exported");
    traced.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_collector_costs_no_answer_and_drops_are_counted() {
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let mut traced = Traced::start("oteldown", &format!("http://{closed}"), &[]).await;
    let (run, addr) = (&traced.run, traced.metrics);
    let dropped = async || spans_dropped(addr).await;
    assert!(
        dropped().await.is_some(),
        "tucano_auth_spans_dropped_total is exported from the start"
    );
    let n = 20;
    answered_ok(run, "down", n).await;
    // Each request made at least its consumer span; all of them are dropped.
    wait_for("the dropped spans to be counted", async || {
        dropped().await.is_some_and(|count| count >= n as f64)
    })
    .await;
    traced.terminate();
    traced.cleanup().await;
}

/// The spans a test's own tracer ended, as an SDK span processor sees them.
#[derive(Debug, Default, Clone)]
struct Recorded(Arc<Mutex<Vec<opentelemetry_sdk::trace::SpanData>>>);

impl opentelemetry_sdk::trace::SpanProcessor for Recorded {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        self.0.lock().expect("lock").push(span);
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

#[tokio::test]
async fn a_rust_callers_trace_continues_through_the_client_into_the_worker() {
    use opentelemetry::trace::{
        SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider as _,
    };
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    let collector = Collector::start().await;
    let mut traced = Traced::start("otelcl", &collector.endpoint(), &[]).await;
    let run = &traced.run;

    // The caller traces with tracing-opentelemetry, its span under a known remote one.
    let recorded = Recorded::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(recorded.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("caller")));
    let _default = tracing::subscriber::set_default(subscriber);
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let remote = SpanContext::new(
        opentelemetry::trace::TraceId::from_hex(trace_id).expect("hex"),
        opentelemetry::trace::SpanId::from_hex("b7ad6b7169203331").expect("hex"),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let caller = tracing::info_span!("caller");
    caller
        .set_parent(opentelemetry::Context::new().with_remote_span_context(remote))
        .expect("parent");

    let client = tucano_auth::client::Client::connect(AMQP_URL, &run.prefix)
        .await
        .expect("connect");
    let body = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    let reply = client
        .authenticate(body, TIMEOUT)
        .instrument(caller.clone())
        .await
        .expect("a reply");
    assert_eq!(reply.code.as_str(), "OK");
    client.close().await;
    let caller_id = caller.context().span().span_context().span_id();
    drop(caller);

    let spans = recorded.0.lock().expect("lock").clone();
    let send = spans
        .iter()
        .find(|span| span.name == format!("send {}", run.names.interactive))
        .unwrap_or_else(|| panic!("no client span in {spans:?}"));
    assert_eq!(send.span_context.trace_id().to_string(), trace_id);
    assert_eq!(
        send.parent_span_id, caller_id,
        "the call is in the caller's span"
    );
    assert_eq!(send.span_kind, opentelemetry::trace::SpanKind::Producer);

    let consumer = collector
        .wait_span("the worker's span of the client's call", |span| {
            hex(&span.trace_id) == trace_id && span.kind == SpanKind::Consumer as i32
        })
        .await;
    assert_eq!(
        hex(&consumer.parent_span_id),
        send.span_context.span_id().to_string(),
        "the client's span is the worker's parent"
    );
    traced.terminate();
    traced.cleanup().await;
}

/// A Python caller with the OpenTelemetry SDK and pika, injecting with the standard
/// (W3C) propagator: prints its span's trace id and span id.
const PYTHON_CALLER: &str = r#"
import os, pika
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("python-caller")
with tracer.start_as_current_span("python caller") as span:
    headers = {}
    inject(headers)
    connection = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
    channel = connection.channel()
    channel.basic_publish(
        exchange="",
        routing_key=os.environ["QUEUE"],
        body=os.environ["BODY"].encode(),
        properties=pika.BasicProperties(
            reply_to=os.environ["REPLY_TO"], correlation_id="python-1", headers=headers
        ),
    )
    connection.close()
    context = span.get_span_context()
    print(format(context.trace_id, "032x"), format(context.span_id, "016x"))
"#;

#[tokio::test]
async fn a_python_callers_trace_continues_into_the_worker() {
    let collector = Collector::start().await;
    let mut traced = Traced::start("otelpy", &collector.endpoint(), &[]).await;
    let run = &traced.run;
    let body = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(PYTHON_CALLER)
            .env("AMQP_URL", AMQP_URL)
            .env("QUEUE", &run.names.interactive)
            .env("REPLY_TO", &run.replies)
            .env("BODY", &body)
            .output(),
    )
    .await
    .expect("the Python caller finishes")
    .expect("python3 runs (pika and opentelemetry-sdk: clients/python/requirements-dev.txt)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let (trace_id, span_id) = stdout.trim().split_once(' ').expect("two ids");

    let reply = reply_for(run, "python-1").await;
    assert_eq!(status_code(&reply), "OK");
    let reply_parent = traceparent_of(&reply).expect("a traceparent");
    assert!(reply_parent.contains(trace_id), "{reply_parent}");
    let consumer = collector
        .wait_span("the worker's span of the Python call", |span| {
            hex(&span.trace_id) == trace_id && span.kind == SpanKind::Consumer as i32
        })
        .await;
    assert_eq!(
        hex(&consumer.parent_span_id),
        span_id,
        "the Python caller's span is the worker's parent"
    );
    assert!(reply_parent.contains(&hex(&consumer.span_id)));
    traced.terminate();
    traced.cleanup().await;
}

#[tokio::test]
async fn a_collector_that_never_answers_holds_up_no_request() {
    // Accepts connections and reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent = listener.local_addr().expect("addr");
    let _held = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    }));
    // Over HTTP and over gRPC alike.
    for protocol in ["http/protobuf", "grpc"] {
        let mut traced = Traced::start(
            "otelmute",
            &format!("http://{silent}"),
            &[
                // Each export gives up after 2 s: the drops show within the test's wait.
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ],
        )
        .await;
        let (run, addr) = (&traced.run, traced.metrics);
        let n = 50;
        answered_ok(run, "mute", n).await;
        wait_for(
            "the spans of the timed-out export to be counted",
            async || spans_dropped(addr).await.is_some_and(|count| count >= 1.0),
        )
        .await;
        // Its exit waits a bounded time for the queue, not for the collector.
        let stopping = Instant::now();
        traced.terminate();
        let took = stopping.elapsed();
        assert!(
            took < Duration::from_secs(20),
            "SIGTERM took {took:?} with a silent collector over {protocol}"
        );
        traced.cleanup().await;
    }
}
