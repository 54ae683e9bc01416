//! What the worker needs, validated: [`Settings`], built by the command line from
//! `serve`'s arguments (or by a test directly).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::broker;
use crate::keys::{KeySource, MIN_SECRET_BYTES};
use crate::secret::Secret;

/// Everything the worker needs, validated, grouped by the part of the worker that
/// uses it. No `Debug`: URLs may hold passwords.
#[derive(Clone)]
pub struct Settings {
    /// The broker and the consume loop.
    pub broker: broker::Settings,
    /// The database.
    pub database: Database,
    /// The JWTs the worker signs.
    pub signing: Signing,
    /// The CRM login tokens in JWT form the worker verifies.
    pub crm_tokens: CrmTokens,
    /// The pass-code lockout.
    pub pass_codes: PassCodes,
    /// Allowed `reply_to` prefixes.
    pub reply_to_allow: Vec<String>,
    /// Whether demo data is loaded at start.
    pub demo: bool,
    /// Where the metrics and health server listens; `None` for none.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Where the database is and how the worker uses it.
#[derive(Clone)]
pub struct Database {
    /// Database URL.
    pub url: String,
    /// The standby the lookups read, if any.
    pub read_url: Option<String>,
    /// Database pool size.
    pub pool_size: u32,
    /// How long a held request retries an unreachable database.
    pub retry_budget: Duration,
}

/// The JWTs handed to Tucano.
#[derive(Clone)]
pub struct Signing {
    /// Where the keys that sign them are read from (at start and on SIGHUP).
    pub keys: KeySource,
    /// JWT lifetime, in seconds.
    pub ttl_seconds: i64,
    /// `apip` claim.
    pub apip: String,
}

/// The secrets of CRM login tokens in JWT form.
#[derive(Clone)]
pub struct CrmTokens {
    /// `CRM_TOKEN_SECRET`.
    pub secret: Option<Secret>,
    /// The secrets of `CRM_TOKEN_SECRET_FILE`, each accepted like `secret`.
    pub secret_file: Vec<Secret>,
    /// `CRM_TOKEN_SECRET_FILE` itself, which SIGHUP re-reads.
    pub secret_path: Option<PathBuf>,
}

/// The pass-code lockout (how many checks may wait is the broker's
/// `pass_code_backlog`, which sizes the consumer too).
#[derive(Clone)]
pub struct PassCodes {
    /// Wrong pass codes that lock an identifier.
    pub max_failures: u32,
    /// How long a lock lasts after the last wrong pass code.
    pub lockout: Duration,
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
