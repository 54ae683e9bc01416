//! The echo ceiling: a [`Service`] that does no work, served through the worker's own
//! consume loop ([`tucano_auth::broker::serve`]: same queue declarations, prefetch,
//! publisher confirms on replies and ack-after-confirm). It answers every request with
//! one fixed `OK` reply of the real reply's shape and size, rendered once at start.
//!
//! Two conversations with the broker are measured: `--acks per-delivery` (the default
//! of `echo-worker`) acks each delivery alone, as the worker did before issue 36;
//! `--acks batched` acks in batches as the worker does now ([`broker::AckMode`]), the
//! best the broker allows.
//!
//! It runs as a separate process (`tucano-bench echo-worker`, hidden), configured by
//! the same environment variables as `tucano-auth serve`, so the worker and the echo
//! are measured the same way (CPU time and peak RSS from `/proc`, the time inside the
//! process from the `/metrics` it serves on `METRICS_ADDR`, as the worker does).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tucano_auth::broker;
use tucano_auth::cli::{Cli, Command};
use tucano_auth::error::Code;
use tucano_auth::handle::{Authenticated, Incoming, Outcome, Route, Service, RESULTS_OK};
use tucano_auth::observe::Stats;
use tucano_auth::serve::Settings;
use tucano_auth::token::Signer;

use crate::dataset::{entity_id, SUBSCRIPTION};
use crate::EchoAcks;

/// Answers every request `OK` with a fixed body.
pub struct Echo {
    reply_to_allow: Vec<String>,
    body: Vec<u8>,
}

impl Echo {
    /// An echo with the allow-list of `settings` and a reply signed once with its key.
    pub fn new(settings: &Settings) -> anyhow::Result<Echo> {
        let signer = Signer::new(
            settings.signing.keys.load()?,
            settings.signing.ttl_seconds,
            &settings.signing.apip,
        )?;
        let jwt = signer
            .sign("S0000000329", chrono::Utc::now().timestamp())
            .context("signing the echo's JWT")?;
        let outcome = Outcome::from_result(
            None,
            Ok(Authenticated {
                subscription_id: entity_id(SUBSCRIPTION, 329)
                    .simple()
                    .to_string()
                    .to_uppercase(),
                jwt,
            }),
        );
        Ok(Echo {
            reply_to_allow: settings.reply_to_allow.clone(),
            body: outcome.body,
        })
    }
}

impl Service for Echo {
    fn handle(&self, incoming: Incoming<'_>) -> impl Future<Output = Outcome> + Send {
        let route = match incoming.reply_to {
            Some(name) if !name.is_empty() && self.allows(name) => Route::ReplyTo(name.to_owned()),
            _ => Route::Results(RESULTS_OK),
        };
        std::future::ready(Outcome {
            route,
            code: Code::Ok,
            body: self.body.clone(),
        })
    }

    fn allows(&self, reply_to: &str) -> bool {
        self.reply_to_allow
            .iter()
            .any(|prefix| reply_to.starts_with(prefix.as_str()))
    }

    fn ready(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// `tucano-bench echo-worker`: reads the settings `tucano-auth serve` would (from the
/// environment), then serves the echo until SIGTERM or SIGINT, on the runtime the
/// worker builds (`tucano_auth::serve::runtime::for_serve`), with the threads of those
/// settings (the bench gives the echo one thread per core unless told), acknowledging
/// as `acks` says.
pub fn run(acks: EchoAcks) -> anyhow::Result<()> {
    let _traces =
        tucano_auth::observe::logs::init("info", tucano_auth::observe::logs::LogFormat::Text);
    let cli = Cli::try_parse_from(["tucano-auth", "serve"])
        .context("reading the worker's settings from the environment")?;
    let Command::Serve(serve) = &cli.command else {
        anyhow::bail!("expected the serve settings");
    };
    let settings = serve.settings()?;
    let echo = Echo::new(&settings)?;
    let runtime = tucano_auth::serve::runtime::for_serve(serve.worker_threads)?;
    runtime.block_on(async {
        let stats = Arc::new(Stats::default());
        // The worker's observers, so the echo serves the same `/metrics` (the bench reads
        // the time inside it there) at the same per-request cost.
        let _observers = tucano_auth::observe::start(settings.metrics_addr, &stats, None).await?;
        let acks = match acks {
            EchoAcks::PerDelivery => broker::AckMode::PerDelivery,
            EchoAcks::Batched => broker::AckMode::Batched,
        };
        broker::serve_acking(
            &settings.broker,
            Arc::new(echo),
            stats,
            shutdown_signal(),
            acks,
        )
        .await
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
