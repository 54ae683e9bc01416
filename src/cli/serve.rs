//! `serve`: the worker's arguments, validated into [`Settings`], and its run (the
//! signals that stop it and reload its keys).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::{Database, JwtKeys, Outcome};
use crate::broker::{self, Endpoint, QueueType};
use crate::keys::MIN_SECRET_BYTES;
use crate::secret::Secret;
use crate::serve::settings::{self, read_crm_secrets, CrmTokens, PassCodes, Settings, Signing};

/// `serve`: the worker's own settings.
#[derive(Args)]
pub struct Serve {
    /// The broker.
    #[command(flatten)]
    pub broker: Endpoint,
    /// The database.
    #[command(flatten)]
    pub database: Database,
    /// A read-only standby of DATABASE_URL's database: the lookups go there, the rest
    /// (migrations, demo data, the pass-code lockout) stays on DATABASE_URL.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,
    /// Load the demo data first; without a JWT secret, use a fixed, loudly logged demo secret.
    #[arg(long)]
    pub demo: bool,
    /// The signing keys.
    #[command(flatten)]
    pub jwt: JwtKeys,
    /// Lifetime of an issued JWT, in seconds.
    #[arg(long, env = "TUCANO_JWT_TTL_SECONDS", default_value_t = 300)]
    pub jwt_ttl_seconds: i64,
    /// Value of the `apip` claim.
    #[arg(long, env = "TUCANO_APIP", default_value = "crm.com")]
    pub apip: String,
    /// HS256 secret of CRM login tokens in JWT form; without it such tokens are INVALID_TOKEN.
    #[arg(long, env = "CRM_TOKEN_SECRET", hide_env_values = true)]
    pub crm_token_secret: Option<String>,
    /// A file of CRM login-token secrets, one per line, any of which verifies a login
    /// token in JWT form (so the CRM can rotate its secret); not with CRM_TOKEN_SECRET.
    #[arg(long, env = "CRM_TOKEN_SECRET_FILE")]
    pub crm_token_secret_file: Option<PathBuf>,
    /// Type of the queues the worker declares.
    #[arg(long, env = "QUEUE_TYPE", value_enum, default_value_t = QueueType::Quorum)]
    pub queue_type: QueueType,
    /// Comma-separated queue-name prefixes replies may be sent to
    /// [default: amq.rabbitmq.reply-to,amq.gen-,QUEUE_PREFIX.]
    #[arg(long, env = "REPLY_TO_ALLOW")]
    pub reply_to_allow: Option<String>,
    /// Unacknowledged interactive requests the worker holds at once.
    #[arg(long, env = "TUCANO_PREFETCH", default_value_t = 64)]
    pub prefetch: u16,
    /// Unacknowledged batch requests the worker holds at once. Small, so that a batch
    /// flood leaves the machine to interactive requests.
    #[arg(long, env = "TUCANO_BATCH_PREFETCH", default_value_t = 2)]
    pub batch_prefetch: u16,
    /// Connections in the database pool (migrations, demo data, readiness probe; opened
    /// as needed). The lookup statement has connections of its own: one, and up to 4
    /// while statements stall.
    #[arg(long, env = "TUCANO_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,
    /// How long a held request retries an unreachable database before TEMPORARILY_UNAVAILABLE.
    #[arg(long, env = "TUCANO_DB_RETRY_BUDGET_SECONDS", default_value_t = 30)]
    pub db_retry_budget_seconds: u64,
    /// How long SIGTERM waits for requests in flight before closing.
    #[arg(long, env = "TUCANO_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Wrong pass codes for one identifier, each within TUCANO_PASS_CODE_LOCKOUT_SECONDS
    /// of the one before, after which its pass code is refused unverified.
    #[arg(long, env = "TUCANO_PASS_CODE_MAX_FAILURES", default_value_t = 5)]
    pub pass_code_max_failures: u32,
    /// How long a locked identifier stays locked after its last wrong pass code.
    #[arg(long, env = "TUCANO_PASS_CODE_LOCKOUT_SECONDS", default_value_t = 900)]
    pub pass_code_lockout_seconds: u64,
    /// Pass-code requests that may wait in this worker for their check; one more is
    /// answered TEMPORARILY_UNAVAILABLE at once.
    #[arg(long, env = "TUCANO_PASS_CODE_BACKLOG", default_value_t = 256)]
    pub pass_code_backlog: u16,
    /// Address of the HTTP server for /metrics, /healthz and /readyz (`off` for none;
    /// port 0 picks a free port, named in the startup log).
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9477")]
    pub metrics_addr: String,
    /// Threads that run the worker's tasks. 1 (the default) runs them all on one
    /// thread, which costs the fewest wake-ups a request; for more than one CPU's worth
    /// of requests, run more workers, or raise this.
    #[arg(long, env = "TUCANO_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: u16,
}

impl Serve {
    /// Validates the flags into settings; errors name the variable to fix.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let serve = self;
        let jwt_keys = serve.jwt.source(serve.demo)?;
        let crm_token_secret = match &serve.crm_token_secret {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => bail!(
                "CRM_TOKEN_SECRET is {} bytes; it must be at least {MIN_SECRET_BYTES} \
                 (HS256 keys shorter than the hash are guessable), or unset to refuse CRM login \
                 tokens in JWT form",
                secret.len()
            ),
            Some(secret) => Some(Secret::new(secret.clone())),
            None => None,
        };
        let crm_token_secret_file = match &serve.crm_token_secret_file {
            Some(_) if crm_token_secret.is_some() => bail!(
                "CRM_TOKEN_SECRET and CRM_TOKEN_SECRET_FILE (or --crm-token-secret and --crm-token-secret-file) are both set: set only one"
            ),
            // On a thread of its own, within a timeout: a FIFO or a hung file system
            // is a startup error naming the file, not a worker stuck before its log.
            Some(path) => {
                let owned = path.clone();
                crate::keys::read_on_a_thread("CRM_TOKEN_SECRET_FILE", path, move || {
                    read_crm_secrets(&owned)
                })?
            }
            None => Vec::new(),
        };
        if serve.prefetch == 0 || serve.batch_prefetch == 0 {
            bail!("TUCANO_PREFETCH and TUCANO_BATCH_PREFETCH must be at least 1");
        }
        if serve.db_pool_size == 0 {
            bail!("TUCANO_DB_POOL_SIZE must be at least 1");
        }
        if serve.pass_code_backlog == 0 {
            bail!("TUCANO_PASS_CODE_BACKLOG must be at least 1");
        }
        if serve.pass_code_max_failures == 0 || serve.pass_code_lockout_seconds == 0 {
            bail!(
                "TUCANO_PASS_CODE_MAX_FAILURES and TUCANO_PASS_CODE_LOCKOUT_SECONDS must be at least 1"
            );
        }
        let (broker, database) = (&serve.broker, &serve.database);
        if broker.queue_prefix.is_empty() {
            bail!("QUEUE_PREFIX must not be empty");
        }
        let reply_to_allow = match &serve.reply_to_allow {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            None => vec![
                "amq.rabbitmq.reply-to".to_owned(),
                "amq.gen-".to_owned(),
                format!("{}.", broker.queue_prefix),
            ],
        };
        Ok(Settings {
            broker: broker::Settings {
                amqp_url: broker.amqp_url.clone(),
                amqp_tls: broker.tls(),
                queue_prefix: broker.queue_prefix.clone(),
                queue_type: serve.queue_type,
                prefetch: serve.prefetch,
                batch_prefetch: serve.batch_prefetch,
                pass_code_backlog: serve.pass_code_backlog,
                shutdown_grace: Duration::from_secs(serve.shutdown_grace_seconds),
            },
            database: settings::Database {
                url: database.database_url.clone(),
                read_url: serve.database_read_url.clone(),
                pool_size: serve.db_pool_size,
                retry_budget: Duration::from_secs(serve.db_retry_budget_seconds),
            },
            signing: Signing {
                keys: jwt_keys,
                ttl_seconds: serve.jwt_ttl_seconds,
                apip: serve.apip.clone(),
            },
            crm_tokens: CrmTokens {
                secret: crm_token_secret,
                secret_file: crm_token_secret_file,
                secret_path: serve.crm_token_secret_file.clone(),
            },
            pass_codes: PassCodes {
                max_failures: serve.pass_code_max_failures,
                lockout: Duration::from_secs(serve.pass_code_lockout_seconds),
            },
            reply_to_allow,
            demo: serve.demo,
            metrics_addr: match serve.metrics_addr.trim() {
                "off" => None,
                addr => Some(addr.parse().with_context(|| {
                    format!(
                        "METRICS_ADDR {addr:?} is not an address such as 127.0.0.1:9477, or `off`"
                    )
                })?),
            },
        })
    }
}

/// Runs `serve` until SIGTERM or SIGINT.
pub async fn run(serve: &Serve) -> anyhow::Result<Outcome> {
    // Before anything else: SIGHUP's default action ends the process.
    let hangups = hangups()?;
    let settings = serve.settings()?;
    match std::env::current_exe() {
        Ok(exe) => crate::store::pass_code::use_helper_process(exe),
        Err(err) => {
            tracing::warn!(error = %err, "cannot find this executable; pass codes are verified in the worker")
        }
    }
    crate::serve::run_reloading(
        settings,
        Arc::new(crate::observe::Stats::default()),
        shutdown_signal(),
        hangups,
    )
    .await?;
    Ok(Outcome::Done)
}
/// A stream of SIGHUPs, each a request to re-read the key files.
fn hangups() -> anyhow::Result<impl futures_util::Stream<Item = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let hangup = signal(SignalKind::hangup())
        .map_err(|err| anyhow::anyhow!("cannot listen for SIGHUP (key reloads): {err}"))?;
    Ok(futures_util::stream::unfold(
        hangup,
        |mut hangup| async move { hangup.recv().await.map(|()| ((), hangup)) },
    ))
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; only SIGINT stops the worker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn crm_token_secret_file_gives_every_secret_and_refuses_short_ones_by_line() {
        let dir = std::env::temp_dir().join(format!("crm-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good");
        let (a, b) = ("a".repeat(32), "b".repeat(40));
        std::fs::write(&good, format!("{a}\r\n\n{b}\n")).expect("write");
        let path = good.to_string_lossy().into_owned();
        let parsed = settings(&["--crm-token-secret-file", &path]).expect("parsed");
        let shown: Vec<&str> = parsed
            .crm_tokens
            .secret_file
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(shown, [a.as_str(), b.as_str()]);

        let short = dir.join("short");
        std::fs::write(&short, format!("{a}\nSHORTSECRET\n")).expect("write");
        let err = settings(&["--crm-token-secret-file", &short.to_string_lossy()])
            .err()
            .expect("refused");
        let shown = format!("{err:#}");
        assert!(
            shown.contains("CRM_TOKEN_SECRET_FILE") && shown.contains("line 2"),
            "{shown}"
        );
        assert!(
            !shown.contains("SHORTSECRET"),
            "the secret is not echoed: {shown}"
        );

        let both = settings(&["--crm-token-secret", &a, "--crm-token-secret-file", &path]);
        assert!(both.is_err(), "both forms at once are refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from([&["tucano-auth", "serve", "--demo"], args].concat())?;
        match &cli.command {
            Command::Serve(serve) => serve.settings(),
            _ => unreachable!("parsed serve"),
        }
    }

    #[test]
    fn a_crm_token_secret_shorter_than_32_bytes_is_refused_by_name() {
        let err = settings(&["--crm-token-secret", "Q7x-tiny"])
            .err()
            .expect("refused");
        let shown = format!("{err:#}");
        assert!(shown.contains("CRM_TOKEN_SECRET"), "{shown}");
        assert!(
            !shown.contains("Q7x-tiny"),
            "the secret is not echoed: {shown}"
        );
        assert!(settings(&["--crm-token-secret", &"k".repeat(32)]).is_ok());
        assert!(settings(&[]).is_ok_and(|s| s.crm_tokens.secret.is_none()));
    }
}
