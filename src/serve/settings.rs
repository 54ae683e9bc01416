//! What the worker needs, validated: [`Settings`], built by the command line from
//! `serve`'s arguments (or by a test directly).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::broker::{QueueType, TlsFiles};
use crate::keys::{KeySource, MIN_SECRET_BYTES};
use crate::secret::Secret;

/// Everything the worker needs, validated. No `Debug`: URLs may hold passwords.
#[derive(Clone)]
pub struct Settings {
    /// Broker URL.
    pub amqp_url: String,
    /// The TLS files of an `amqps://` `amqp_url`.
    pub amqp_tls: TlsFiles,
    /// Database URL.
    pub database_url: String,
    /// The standby the lookups read, if any.
    pub database_read_url: Option<String>,
    /// Prefix of exchanges and queues.
    pub queue_prefix: String,
    /// Where the keys that sign Tucano JWTs are read from (at start and on SIGHUP).
    pub jwt_keys: KeySource,
    /// JWT lifetime.
    pub jwt_ttl_seconds: i64,
    /// `apip` claim.
    pub apip: String,
    /// CRM login-token JWT secret.
    pub crm_token_secret: Option<Secret>,
    /// The secrets of `CRM_TOKEN_SECRET_FILE`, each accepted like `crm_token_secret`.
    pub crm_token_secret_file: Vec<Secret>,
    /// `CRM_TOKEN_SECRET_FILE` itself, which SIGHUP re-reads.
    pub crm_token_secret_path: Option<PathBuf>,
    /// Queue type.
    pub queue_type: QueueType,
    /// Allowed `reply_to` prefixes.
    pub reply_to_allow: Vec<String>,
    /// Interactive prefetch.
    pub prefetch: u16,
    /// Batch prefetch.
    pub batch_prefetch: u16,
    /// Database pool size.
    pub db_pool_size: u32,
    /// Database retry budget of a held request.
    pub db_retry_budget: Duration,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Wrong pass codes that lock an identifier.
    pub pass_code_max_failures: u32,
    /// How long a lock lasts after the last wrong pass code.
    pub pass_code_lockout: Duration,
    /// Pass-code requests that may wait in the worker.
    pub pass_code_backlog: u16,
    /// Whether demo data is loaded at start.
    pub demo: bool,
    /// Where the metrics and health server listens; `None` for none.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The secrets of `CRM_TOKEN_SECRET_FILE`: one per line, blank lines ignored, each at
/// least [`MIN_SECRET_BYTES`]. Errors name the file and the line, never a secret.
pub fn read_crm_secrets(path: &std::path::Path) -> anyhow::Result<Vec<Secret>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read CRM_TOKEN_SECRET_FILE {}", path.display()))?;
    let mut secrets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.len() < MIN_SECRET_BYTES {
            bail!(
                "CRM_TOKEN_SECRET_FILE {} line {}: the secret is {} bytes; each must be at least {MIN_SECRET_BYTES}",
                path.display(),
                n + 1,
                line.len()
            );
        }
        secrets.push(Secret::new(line));
    }
    if secrets.is_empty() {
        bail!(
            "CRM_TOKEN_SECRET_FILE {} holds no secret: put one per line, or unset it to refuse CRM login tokens in JWT form",
            path.display()
        );
    }
    Ok(secrets)
}
