//! The HTTP server on `METRICS_ADDR`: `/metrics`, `/healthz`, `/readyz` and
//! `/.well-known/jwks.json` (contract section 8), with axum.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::broker::Stats;

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
/// bound address with the server's future, which serves until dropped.
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
        .with_state(endpoints);
    let serve = async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "the metrics server stopped");
        }
    };
    Ok((bound, serve))
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
