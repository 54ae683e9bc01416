//! `serve`: assembles the worker from its settings and runs it until the shutdown
//! future resolves. The shutdown trigger is an argument so tests control it.

pub mod reload;
pub mod runtime;
pub mod settings;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use futures_util::Stream;
use tokio_util::task::AbortOnDropHandle;

use crate::broker;
use crate::handle::Handler;
use crate::observe::{self, Stats};
use crate::reply_to::ReplyPolicy;
use crate::schema::Schemas;
use crate::store::{self, Store};
use crate::token::Signer;
use reload::Reloader;
pub use settings::Settings;

/// Runs the worker: checks the settings, prepares the database (creating and migrating
/// it, once it answers: an unreachable one is waited for, see [`store::wait_for`]),
/// loads the demo data with `--demo`, then serves until `shutdown` resolves and
/// drains. Key files are read once; see [`run_reloading`] to re-read them.
pub async fn run(
    settings: Settings,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_reloading(settings, stats, shutdown, futures_util::stream::pending()).await
}

/// [`run`], re-reading the key files (signing keys, CRM login-token secrets) at each
/// item of `reloads` (SIGHUP in the binary), without stopping a request.
pub async fn run_reloading(
    settings: Settings,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
    reloads: impl Stream<Item = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let keys = settings.signing.keys.load_off_thread().await?;
    if let Some(kid) = keys.signing_kid() {
        tracing::info!(kid, "signing JWTs with kid");
    }
    let signer = Signer::new(keys, settings.signing.ttl_seconds, &settings.signing.apip)?;
    let schemas = Schemas::load().context("compiling the schemas in schemas/")?;
    let jwks: observe::server::Jwks = {
        let keys = signer.keys().clone();
        Arc::new(move || keys.get().public_set())
    };
    // Up first, so /healthz answers and /readyz says what is missing while the worker
    // waits for the database or the broker.
    let _observers = observe::start(settings.metrics_addr, &stats, Some(jwks)).await?;
    // Polled from here on, so SIGTERM stops a worker that still waits for its database.
    let mut shutdown = std::pin::pin!(shutdown);
    let prepared = tokio::select! {
        prepared = store::wait_for("DATABASE_URL", &settings.database.url, || {
            store::prepare(&settings.database.url, settings.database.pool_size)
        }) => prepared,
        () = &mut shutdown => {
            stopped_waiting("DATABASE_URL");
            return Ok(());
        }
    };
    let pool = prepared?;
    if settings.demo {
        store::seed::seed_demo(&pool)
            .await
            .context("loading the demo data")?;
        tracing::info!("demo data loaded");
    }
    // The lookups (the hot path) read the standby if there is one; the pool (migrations,
    // demo data, the lockout's writes) stays on the primary.
    let standby = match &settings.database.read_url {
        Some(read_url) => {
            let prepared = tokio::select! {
                prepared = store::wait_for("DATABASE_READ_URL", read_url, || {
                    store::prepare_read(read_url)
                }) => prepared,
                () = &mut shutdown => {
                    stopped_waiting("DATABASE_READ_URL");
                    return Ok(());
                }
            };
            let standby = prepared?;
            tracing::info!(standby = %crate::redact::url(read_url), "lookups read the standby (DATABASE_READ_URL)");
            Some(standby)
        }
        None => None,
    };
    let _probe = {
        let (stats, pool) = (stats.clone(), pool.clone());
        AbortOnDropHandle::new(tokio::spawn(async move {
            stats.readiness.probe_database(pool, standby).await
        }))
    };
    let store = Store::new(
        pool,
        settings
            .database
            .read_url
            .as_deref()
            .unwrap_or(&settings.database.url),
        settings
            .crm_tokens
            .secret
            .iter()
            .chain(&settings.crm_tokens.secret_file)
            .cloned(),
    )?
    .with_pass_code_lockout(
        settings.pass_codes.max_failures,
        settings.pass_codes.lockout,
    )
    .with_pass_code_backlog(usize::from(settings.broker.pass_code_backlog));
    // A first measure of how long a verification takes, which a try refused by the
    // lockout waits for (see `pass_code::pretend`): without it, refused tries arriving
    // before this worker's first verification would each run one.
    let _measure = AbortOnDropHandle::new(tokio::spawn(store::pass_code::measure()));
    let _reloader = AbortOnDropHandle::new(tokio::spawn(
        Reloader::new(
            settings.signing.keys.clone(),
            settings.crm_tokens.secret_path.clone(),
            signer.clone(),
            store.clone(),
        )
        .run(reloads),
    ));
    let handler = Handler::new(
        schemas,
        store.clone(),
        signer,
        ReplyPolicy::new(
            settings.reply_to_allow.clone(),
            broker::Names::new(&settings.broker.queue_prefix).all(),
        ),
        settings.database.retry_budget,
    );
    let served = broker::serve(&settings.broker, Arc::new(handler), stats, shutdown).await;
    let lookups = store.lookup_counts();
    tracing::info!(
        requests = lookups.requests,
        statements = lookups.statements,
        "database lookups: requests read in batched statements"
    );
    served
}

/// Logs that the worker stopped (SIGTERM) before `variable`'s database answered.
fn stopped_waiting(variable: &str) {
    tracing::info!(
        variable,
        "stopped while waiting for the database; nothing was consumed"
    );
}
