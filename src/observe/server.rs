//! The HTTP server on `METRICS_ADDR`: `/metrics`, `/healthz`, `/readyz` and
//! `/.well-known/jwks.json` (docs/protocol.md §8), with axum's router on hyper's
//! HTTP/1 connections.
//!
//! The server is bounded against whoever reaches its port (the image binds
//! `0.0.0.0:9477`), with the libraries' own settings:
//! - hyper's `header_read_timeout` ([`HEADER_READ_TIMEOUT`]): a request's head must
//!   arrive within it, from the connection's start or the previous response, or the
//!   connection is closed. Idle and half-sent connections therefore free their slot
//!   within seconds. axum's `serve` sets no timer, so hyper never enforced it, and 300
//!   half-sent requests stayed open for good.
//! - hyper's `max_buf_size` and `max_headers`: what one connection may make the server
//!   hold ([`MAX_HEAD_BYTES`]).
//! - tower's `TimeoutLayer` ([`REQUEST_TIMEOUT`]): a request's answer has a time limit.
//! - a semaphore of [`connection_limit`] permits, one per open connection: a
//!   connection over the limit is accepted and closed at once. Accepting it rather
//!   than leaving it in the kernel's queue is what keeps the probes answering: a probe
//!   queued behind hundreds of idle connections would wait for each batch of them to
//!   time out, whereas a closed one retries at once. Nothing per request (tower's
//!   `ConcurrencyLimit`) bounds connections, which hold the file descriptors.
//! - [`CONNECTION_LIFETIME`]: a connection's whole life, a bound no hyper setting
//!   gives (a client that never reads the response, or keeps a connection busy with
//!   request after request).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::observe::Stats;

/// How long a client has to send a request's head (its line and headers), from the
/// connection's start or from the previous response on a kept-alive connection.
/// Probes and Prometheus send theirs at once; 5 s is plenty on any network that
/// reaches the port.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the server may take to answer a request once its head arrived (a render
/// of `/metrics` takes milliseconds); past it the answer is `503`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest one connection is kept, whatever it does: the head and the answer of
/// a few requests, with room to spare.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The most connections held at once, when the file-descriptor limit allows
/// (see [`connection_limit`]).
pub const MAX_CONNECTIONS: usize = 1024;

/// The most bytes of a request's head a connection buffers (hyper's smallest
/// `max_buf_size`); with at most 64 headers. A probe's head is about 100 bytes.
pub const MAX_HEAD_BYTES: usize = 8192;
const MAX_HEADERS: usize = 64;

/// How often refused connections or failed accepts are logged, at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The connections held at once: [`MAX_CONNECTIONS`], or half the process's soft
/// file-descriptor limit if that is less, so the broker and database connections
/// (and the pass-code helpers' pipes) always find descriptors (at the common soft
/// limit of 1024, 512 connections).
pub fn connection_limit() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match soft {
        Some(soft) => MAX_CONNECTIONS.min(usize::try_from(soft / 2).unwrap_or(MAX_CONNECTIONS)),
        None => MAX_CONNECTIONS,
    }
    .max(1)
}

/// The public signing keys as `/.well-known/jwks.json` serves them, read at each
/// request (keys may be reloaded); `None` when only HS256 keys are configured.
pub type Jwks = Arc<dyn Fn() -> Option<serde_json::Value> + Send + Sync>;

/// What the endpoints read.
#[derive(Clone)]
pub struct Endpoints {
    /// The recorder's handle, rendered by `/metrics`.
    pub metrics: Option<PrometheusHandle>,
    /// The worker's state; `/readyz` answers from its readiness.
    pub stats: Arc<Stats>,
    /// The public keys (404 without).
    pub jwks: Option<Jwks>,
}

/// Binds `addr` (a startup error names METRICS_ADDR when that fails) and returns the
/// bound address with the server's future, which serves until dropped (its
/// connections with it).
pub async fn bind(
    addr: SocketAddr,
    endpoints: Endpoints,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on METRICS_ADDR {addr}: set another address, or `off`")
    })?;
    let bound = listener
        .local_addr()
        .context("the metrics server's address")?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(endpoints)
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the answer took too long\n",
                    )
                }))
                .layer(tower::timeout::TimeoutLayer::new(REQUEST_TIMEOUT)),
        );
    let limit = connection_limit();
    tracing::debug!(connections = limit, "metrics server: connection limit");
    Ok((bound, serve(listener, app, limit)))
}

/// Accepts connections until dropped, holding at most `limit` at once.
async fn serve(listener: TcpListener, app: Router, limit: usize) {
    let permits = Arc::new(Semaphore::new(limit));
    let mut connections = JoinSet::new();
    let mut refused: u64 = 0;
    let mut logged: Option<Instant> = None;
    let mut should_log = move || {
        let now = Instant::now();
        let due = logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        if due {
            logged = Some(now);
        }
        due
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reaps finished connections, so the set holds only open ones.
            Some(_) = connections.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors, mostly: the connection stays in the kernel's
                // queue; wait a little rather than spin on it.
                if should_log() {
                    tracing::warn!(error = %err, "metrics server: cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed at once: the client sees its connection end and may retry; the
            // slots free as the held connections' heads time out.
            drop(stream);
            refused += 1;
            if should_log() {
                tracing::warn!(
                    limit,
                    refused,
                    "metrics server: connection limit reached; closing new connections until some end"
                );
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                // A client that went away or sent something else than HTTP/1: its
                // business, not the operator's.
                Ok(Err(err)) => tracing::debug!(error = %err, "metrics server: connection ended"),
                Err(_) => tracing::debug!("metrics server: connection closed after its lifetime"),
            }
        });
    }
}

async fn metrics(State(endpoints): State<Endpoints>) -> Response {
    match &endpoints.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no metrics recorder\n").into_response(),
    }
}

async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    let broker = endpoints.stats.readiness.broker();
    let database = endpoints.stats.readiness.database();
    let status = if broker && database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({"broker": broker, "database": database})),
    )
        .into_response()
}

async fn jwks(State(endpoints): State<Endpoints>) -> Response {
    match endpoints.jwks.as_ref().and_then(|keys| keys()) {
        Some(set) => axum::Json(set).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no public signing keys: only HS256 is configured\n",
        )
            .into_response(),
    }
}
