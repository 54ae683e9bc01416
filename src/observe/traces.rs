//! Traces: the OpenTelemetry pipeline behind the `tracing` spans, configured only by the
//! standard `OTEL_*` variables (docs/operations.md, "Traces").
//!
//! With no `OTEL_EXPORTER_OTLP_ENDPOINT` (nor `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! nothing is installed: no OpenTelemetry layer, and the code that would open the
//! per-request child spans asks [`on`] first, so a request costs what it cost before.
//! With one, spans go to an OTLP exporter (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`
//! by default, `http/json` or `grpc`) through [`Queue`], a bounded
//! batch processor of our own: the SDK's batch processor drops spans on a full queue
//! without saying how many, and docs/protocol.md §15 counts them
//! (`tucano_auth_spans_dropped_total`). An unreachable collector costs a request
//! nothing: a span is handed over with a `try_send` and the export runs on a thread of
//! its own.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::observe::metrics::SPANS_DROPPED;

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES`
/// names one.
const SERVICE_NAME: &str = "tucano-auth";

/// Spans waiting for export at most; one more is dropped and counted.
const QUEUE: usize = 2048;

/// Spans sent in one export at most.
const BATCH: usize = 512;

/// How long a span waits for its batch to fill before it is exported anyway.
const DELAY: Duration = Duration::from_secs(1);

static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an endpoint is configured): the request path opens its
/// child spans only then.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The installed pipeline; dropping it exports what is queued (for a few seconds at
/// most) and stops the export thread.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Drop for Traces {
    fn drop(&mut self) {
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(2));
    }
}

/// Why no pipeline was built, for a warning at start.
pub type Refused = String;

/// The OpenTelemetry layer and its pipeline when an OTLP endpoint is configured,
/// `Ok(None)` when none is, `Err` naming the setting that cannot be used.
///
/// Only this crate's spans reach OpenTelemetry, and no event: what a log line says
/// stays in the log (which carries the `trace_id`), so nothing logged inside a request
/// can put a value into the trace, and the spans of the exporter's own HTTP client
/// cannot feed back into the export.
pub fn layer<S>() -> Result<Option<(impl Layer<S>, Traces)>, Refused>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    // The specification's switch for the whole SDK, for an operator who keeps the
    // endpoint in a shared configuration.
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let Some(endpoint) =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
    else {
        return Ok(None);
    };
    let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_owned());
    let protocol = match protocol.trim() {
        "http/protobuf" => Protocol::HttpBinary,
        "http/json" => Protocol::HttpJson,
        "grpc" => Protocol::Grpc,
        other => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not one of grpc, http/protobuf, http/json; traces are not exported"
            ))
        }
    };
    if !endpoint
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("http://")
    {
        return Err(
            "the OTLP endpoint must be an http:// URL (this build has no TLS for OTLP; run a collector beside the worker); traces are not exported"
                .to_owned(),
        );
    }
    let cannot = |err: opentelemetry_otlp::ExporterBuildError| {
        format!("the OTLP exporter cannot be built: {err}; traces are not exported")
    };
    let (exporter, runtime) = match protocol {
        Protocol::Grpc => {
            // tonic's channel lives on a Tokio runtime: a small one of the export
            // thread's own, which it drives while it exports, so that an export
            // never runs on (or waits for) the worker's request runtime.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| {
                    format!("cannot start the OTLP/gRPC runtime: {err}; traces are not exported")
                })?;
            let exporter = {
                let _entered = runtime.enter();
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .build()
                    .map_err(cannot)?
            };
            (exporter, Some(runtime))
        }
        http => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(http)
                .build()
                .map_err(cannot)?,
            None,
        ),
    };
    let mut resource = Resource::builder();
    let named = set("OTEL_SERVICE_NAME").is_some()
        || set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|pair| pair.trim_start().starts_with("service.name="))
        });
    if !named {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    // The sampler comes from OTEL_TRACES_SAMPLER / _ARG (the SDK reads them; its
    // default is parentbased_always_on).
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_span_processor(Queue::start(exporter, runtime))
        .build();
    let tracer = provider.tracer(env!("CARGO_PKG_NAME"));
    ON.store(true, Ordering::Relaxed);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Status is set where the code decides it (section 15: only
        // TEMPORARILY_UNAVAILABLE and internal faults are errors).
        .with_error_events_to_status(false)
        .with_error_events_to_exceptions(false)
        .with_error_fields_to_exceptions(false)
        .with_error_records_to_exceptions(false)
        .with_threads(false)
        .with_filter(FilterFn::new(|meta: &tracing::Metadata<'_>| {
            meta.is_span() && meta.target().starts_with("tucano_auth")
        }));
    Ok(Some((layer, Traces { provider })))
}

/// A child span of the current one named `name` (a step of a request: the lookup,
/// the pass-code check, signing), or no span when traces are not exported or the
/// current span is not sampled (at `OTEL_TRACES_SAMPLER_ARG=0.01`, 99 requests in 100
/// pay for one span instead of six).
pub fn child(name: &'static str) -> tracing::Span {
    if !sampled() {
        return tracing::Span::none();
    }
    tracing::info_span!("step", otel.name = name)
}

/// Whether traces are exported and the current span is sampled.
pub fn sampled() -> bool {
    use opentelemetry::trace::TraceContextExt;
    on() && current().span().span_context().is_sampled()
}

/// The context of the current `tracing` span (empty when no layer is installed).
pub fn current() -> Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    tracing::Span::current().context()
}

/// The batch span processor: a bounded queue, and a thread that exports what it holds
/// in batches. A span that finds the queue full, or whose export failed, is dropped and
/// counted in `tucano_auth_spans_dropped_total`.
#[derive(Debug)]
pub struct Queue<E: SpanExporter + 'static> {
    spans: SyncSender<SpanData>,
    shared: Arc<Shared<E>>,
}

#[derive(Debug)]
struct Shared<E> {
    exporter: Mutex<E>,
    /// Spans queued or being exported.
    pending: AtomicUsize,
    flush: AtomicBool,
    stop: AtomicBool,
}

impl<E: SpanExporter + 'static> Queue<E> {
    /// Starts the export thread; it runs each export on `runtime` when given (an
    /// exporter whose client needs Tokio's), else on a plain executor.
    pub fn start(exporter: E, runtime: Option<tokio::runtime::Runtime>) -> Queue<E> {
        let (spans, queue) = sync_channel(QUEUE);
        let shared = Arc::new(Shared {
            exporter: Mutex::new(exporter),
            pending: AtomicUsize::new(0),
            flush: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let thread = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_loop(&thread, &queue, runtime.as_ref()));
        if let Err(err) = started {
            // Every span will find the queue's receiver gone and be counted as dropped.
            eprintln!("warning: cannot start the trace export thread: {err}");
        }
        Queue { spans, shared }
    }

    /// Waits (at most `timeout`) until what was queued has been exported or dropped.
    fn drain(&self, timeout: Duration) -> OTelSdkResult {
        self.shared.flush.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        while self.shared.pending.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return Err(OTelSdkError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

fn export_loop<E: SpanExporter>(
    shared: &Shared<E>,
    queue: &Receiver<SpanData>,
    runtime: Option<&tokio::runtime::Runtime>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut since = Instant::now();
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let wait = if shared.flush.load(Ordering::Relaxed) || stopping {
            Duration::ZERO
        } else {
            DELAY
                .saturating_sub(since.elapsed())
                .max(Duration::from_millis(10))
        };
        let mut gone = false;
        match queue.recv_timeout(wait) {
            Ok(span) => {
                batch.push(span);
                while batch.len() < BATCH {
                    match queue.try_recv() {
                        Ok(span) => batch.push(span),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => gone = true,
        }
        let due = batch.len() >= BATCH
            || since.elapsed() >= DELAY
            || shared.flush.load(Ordering::Relaxed)
            || stopping
            || gone;
        if due && !batch.is_empty() {
            let n = batch.len();
            let sent = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            let result = {
                let exporter = shared
                    .exporter
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match runtime {
                    Some(runtime) => runtime.block_on(exporter.export(sent)),
                    None => futures_executor::block_on(exporter.export(sent)),
                }
            };
            if result.is_err() {
                metrics::counter!(SPANS_DROPPED).increment(n as u64);
            }
            shared.pending.fetch_sub(n, Ordering::Release);
        }
        if due {
            since = Instant::now();
        }
        if batch.is_empty() && shared.pending.load(Ordering::Acquire) == 0 {
            shared.flush.store(false, Ordering::Relaxed);
            if stopping || gone {
                return;
            }
        }
    }
}

impl<E: SpanExporter + 'static> SpanProcessor for Queue<E> {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        match self.spans.try_send(span) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                metrics::counter!(SPANS_DROPPED).increment(1);
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.drain(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let drained = self.drain(timeout);
        self.shared.stop.store(true, Ordering::Relaxed);
        // Not while an export is under way (it has a time limit of its own): shutting
        // down must not wait for a collector that does not answer.
        if let Ok(exporter) = self.shared.exporter.try_lock() {
            let _ = exporter.shutdown_with_timeout(timeout);
        }
        drained
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.shared
            .exporter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_resource(resource);
    }
}
