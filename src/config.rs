//! Settings: the contract's environment variables, each also a flag of the same meaning
//! (clap with `env`), and the subcommands of the binary.
//!
//! Secrets are read into [`Secret`] and never printed: clap is told to hide their
//! values, and [`Settings`] has no field that would show them in `Debug`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::keys::KeySource;
use crate::secret::Secret;
use crate::token::MIN_SECRET_BYTES;

/// The demo JWT secret `serve --demo` falls back to, loudly, when none is configured.
pub const DEMO_JWT_SECRET: &str = "tucano-auth-demo-secret-do-not-use-in-production";

/// `tucano-auth`: authenticates Tucano subscribers over RabbitMQ.
#[derive(Parser)]
#[command(name = "tucano-auth", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as plain text or one JSON object each.
    #[arg(long, env = "LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `LOG_FORMAT`, defined beside the log it shapes.
pub use crate::telemetry::LogFormat;

/// The subcommands. Each takes only the settings it uses, so its `--help` offers
/// nothing it would ignore.
#[derive(Subcommand)]
pub enum Command {
    /// Create and migrate the database, declare the topology, consume until SIGTERM/SIGINT.
    Serve(Box<Serve>),
    /// Create the database if missing and apply the migrations, then exit.
    Migrate(Database),
    /// Load the demo data (idempotent), then exit.
    SeedDemo(Database),
    /// Send one request and print the reply body (exit 0 on OK, 1 on another status, 2 on timeout).
    Call(Call),
    /// Authenticate every request of a file (NDJSON or CSV) and write one result line per
    /// request line, in input order (exit 0 all OK, 1 some not, 2 the job could not finish).
    Batch(Box<crate::batch::BatchArgs>),
    /// Load a CSV file into one table, upserting by natural key (exit 0 all loaded, 1
    /// some rows rejected, 2 nothing loaded).
    Import(Import),
    /// Add or disable CRM API users.
    User(User),
    /// Open or release login sessions (print a login token, log one out).
    Session(Session),
    /// Print a new private signing key, a JWK on one line, to put in TUCANO_JWT_KEYS_FILE.
    Keygen(Keygen),
    /// Print the public set of the configured signing keys (asymmetric keys only), as
    /// /.well-known/jwks.json serves it.
    Jwks(Jwks),
    /// GET a plain-HTTP URL and print the status line (exit 0 on 2xx, 1 on another
    /// status, 2 without an answer); the container health check.
    Probe(Probe),
    /// Internal: the pass-code verifier process `serve` starts (reads verifications on
    /// standard input until it closes).
    #[command(name = crate::store::pass_code::HELPER_COMMAND, hide = true)]
    PassCodeHelper,
}

/// Where the broker is, and the prefix of the names on it.
#[derive(Args)]
pub struct Broker {
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Prefix of every exchange and queue name.
    #[arg(long, env = "QUEUE_PREFIX", default_value = "tucano")]
    pub queue_prefix: String,
    /// PEM CA certificates that an `amqps://` broker's certificate must chain to
    /// (default: the system's roots).
    #[arg(long, env = "AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
    /// PEM client certificate shown to an `amqps://` broker that asks for one.
    #[arg(long, env = "AMQP_CLIENT_CERT_FILE")]
    pub amqp_client_cert_file: Option<PathBuf>,
    /// PEM private key of `--amqp-client-cert-file`.
    #[arg(long, env = "AMQP_CLIENT_KEY_FILE")]
    pub amqp_client_key_file: Option<PathBuf>,
}

impl Broker {
    /// The TLS files of `amqps://` connections.
    pub fn tls(&self) -> crate::broker::TlsFiles {
        crate::broker::TlsFiles {
            ca_file: self.amqp_ca_file.clone(),
            client_cert_file: self.amqp_client_cert_file.clone(),
            client_key_file: self.amqp_client_key_file.clone(),
        }
    }
}

/// Shows the prefix, never the URL (it may hold a password).
impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("amqp_url", &"[redacted]")
            .field("queue_prefix", &self.queue_prefix)
            .field("amqp_ca_file", &self.amqp_ca_file)
            .field("amqp_client_cert_file", &self.amqp_client_cert_file)
            .field("amqp_client_key_file", &self.amqp_client_key_file)
            .finish()
    }
}

/// Where the database is.
#[derive(Args)]
pub struct Database {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tucano_auth",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// `serve`: the worker's own settings.
#[derive(Args)]
pub struct Serve {
    /// The broker.
    #[command(flatten)]
    pub broker: Broker,
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
    /// The CPU the worker's event loop (its task thread and the broker connections' I/O
    /// threads) is pinned to: `off` (the default), wherever the kernel puts each
    /// thread; a CPU number; or `auto`, the CPU the worker starts on. Pinning saves CPU
    /// on a host of its own; next to RabbitMQ or PostgreSQL on few cores it costs
    /// latency. Needs TUCANO_WORKER_THREADS=1. Pass-code checks use every CPU.
    #[arg(long, env = "TUCANO_CPU", default_value = "off")]
    pub cpu: String,
    /// The Linux scheduling policy of the worker's threads: unset (the default), the
    /// policy the worker was started with; `normal` (SCHED_OTHER); or `batch`
    /// (SCHED_BATCH: a thread the worker wakes does not preempt the one that woke it,
    /// which saves CPU, but the worker's threads no longer preempt the pass-code checks
    /// either). Neither needs a privilege; the nice value is kept.
    #[arg(long, env = "TUCANO_SCHEDULING")]
    pub scheduling: Option<String>,
}

/// Where the JWT signing keys come from (contract section 9): one of the three.
#[derive(Args)]
pub struct JwtKeys {
    /// HS256 key shared with Tucano, at least 32 bytes.
    #[arg(long, env = "TUCANO_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the HS256 key (trailing newline ignored); re-read on SIGHUP.
    #[arg(long, env = "TUCANO_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// A JWK Set of private signing keys (HS256, ES256, EdDSA), the first of which
    /// signs and names its kid in the JWT header; re-read on SIGHUP.
    #[arg(long, env = "TUCANO_JWT_KEYS_FILE")]
    pub jwt_keys_file: Option<PathBuf>,
}

impl JwtKeys {
    /// Which source is configured; with none, the demo secret when `demo`, else an
    /// error saying what to set. The files are read by [`KeySource::load`].
    pub fn source(&self, demo: bool) -> anyhow::Result<KeySource> {
        // Checked here rather than by clap, whose message would name the flags
        // (`--jwt-secret`) when the user most likely set the variables.
        Ok(match (&self.jwt_secret, &self.jwt_secret_file, &self.jwt_keys_file) {
            (Some(_), Some(_), _) => bail!(
                "TUCANO_JWT_SECRET and TUCANO_JWT_SECRET_FILE (or --jwt-secret and --jwt-secret-file) are both set: set only one"
            ),
            (Some(_), None, Some(_)) => bail!(
                "TUCANO_JWT_KEYS_FILE and TUCANO_JWT_SECRET (or --jwt-keys-file and --jwt-secret) are both set: set only one; put the secret in the keys file as an HS256 key if both are needed"
            ),
            (None, Some(_), Some(_)) => bail!(
                "TUCANO_JWT_KEYS_FILE and TUCANO_JWT_SECRET_FILE (or --jwt-keys-file and --jwt-secret-file) are both set: set only one"
            ),
            (Some(value), None, None) => KeySource::Secret(Secret::new(value.clone())),
            (None, Some(path), None) => KeySource::SecretFile(path.clone()),
            (None, None, Some(path)) => KeySource::KeysFile(path.clone()),
            (None, None, None) if demo => {
                tracing::warn!("DEMO MODE: TUCANO_JWT_SECRET is not set, signing JWTs with the public demo secret; never use this in production");
                KeySource::Secret(Secret::new(DEMO_JWT_SECRET))
            }
            (None, None, None) => bail!(
                "TUCANO_JWT_SECRET is not set: set it (at least 32 bytes), TUCANO_JWT_SECRET_FILE or TUCANO_JWT_KEYS_FILE, or run `serve --demo`"
            ),
        })
    }
}

/// `keygen`: a new private key.
#[derive(Args)]
pub struct Keygen {
    /// The algorithm.
    #[arg(long, value_enum, ignore_case = true)]
    pub alg: crate::keys::generate::Alg,
    /// The key's id, shown in the header of the JWTs it signs and in the JWKS.
    #[arg(long)]
    pub kid: String,
}

/// `jwks`: the public keys of the configuration `serve` would use.
#[derive(Args)]
pub struct Jwks {
    /// The signing keys.
    #[command(flatten)]
    pub jwt: JwtKeys,
}

/// `call`: one request-reply round trip.
#[derive(Args)]
pub struct Call {
    /// The broker.
    #[command(flatten)]
    pub broker: Broker,
    /// The request body, a JSON object (or build it with --token and an identifier flag).
    #[arg(required_unless_present = "token")]
    pub json: Option<String>,
    /// The request as flags instead of JSON.
    #[command(flatten)]
    pub request: Box<crate::call::RequestFlags>,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Send to the batch queue instead of the interactive one.
    #[arg(long)]
    pub batch: bool,
}

/// `import`: one CSV file into one table.
#[derive(Args)]
pub struct Import {
    /// The database.
    #[command(flatten)]
    pub database: Database,
    /// The CSV file; its header row names the columns.
    pub file: PathBuf,
    /// The table to load.
    #[arg(long, value_enum)]
    pub table: crate::import::Table,
}

/// `user ...`: the database, then what to do.
#[derive(Args)]
pub struct User {
    /// The database.
    #[command(flatten)]
    pub database: Database,
    /// What to do.
    #[command(subcommand)]
    pub command: UserCommand,
}

/// `session ...`: the database, then what to do.
#[derive(Args)]
pub struct Session {
    /// The database.
    #[command(flatten)]
    pub database: Database,
    /// What to do.
    #[command(subcommand)]
    pub command: SessionCommand,
}

/// `user add|disable`.
#[derive(Subcommand)]
pub enum UserCommand {
    /// Add an ACTIVE API user.
    Add {
        /// Its username.
        username: String,
        /// Its organisation.
        #[arg(long)]
        organisation: String,
        /// Read a password from standard input (stored as Argon2).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make an API user INACTIVE: its login tokens are refused from then on.
    Disable {
        /// Its username.
        username: String,
    },
}

/// `session open|release`.
#[derive(Subcommand)]
pub enum SessionCommand {
    /// Open a session and print its login token.
    Open {
        /// The API user.
        username: String,
        /// Lifetime, such as 90s, 30m, 2h, 7d.
        #[arg(long, default_value = "24h", value_parser = crate::admin::parse_ttl)]
        ttl: Duration,
        /// Print an R12-style JWT signed with CRM_TOKEN_SECRET instead of 32 hex digits.
        #[arg(long)]
        jwt: bool,
        /// HS256 secret of CRM login tokens in JWT form.
        #[arg(long, env = "CRM_TOKEN_SECRET", hide_env_values = true)]
        crm_token_secret: Option<String>,
    },
    /// Release (log out) the session of a login token (`-` reads it from standard input).
    Release {
        /// The login token, in either form, or `-`.
        token: String,
        /// HS256 secret of CRM login tokens in JWT form.
        #[arg(long, env = "CRM_TOKEN_SECRET", hide_env_values = true)]
        crm_token_secret: Option<String>,
    },
}

/// `probe`: one HTTP GET, for container health checks (the image has no `curl`).
#[derive(Args)]
pub struct Probe {
    /// The URL, plain HTTP: `http://127.0.0.1:9477/readyz`.
    pub url: String,
    /// How long to wait for the whole answer: `2s`, `500ms`, or seconds.
    #[arg(long, default_value = "2s", value_parser = crate::probe::parse_timeout)]
    pub timeout: Duration,
}

/// `x-queue-type` of the request queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueType {
    /// Replicated, with a delivery limit.
    Quorum,
    /// Classic.
    Classic,
}

impl QueueType {
    /// The `x-queue-type` argument value.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// Everything the worker needs, validated. No `Debug`: URLs may hold passwords.
#[derive(Clone)]
pub struct Settings {
    /// Broker URL.
    pub amqp_url: String,
    /// The TLS files of an `amqps://` `amqp_url`.
    pub amqp_tls: crate::broker::TlsFiles,
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

impl Settings {
    /// Validates `serve`'s flags into settings; errors name the variable to fix.
    pub fn from_serve(serve: &Serve) -> anyhow::Result<Settings> {
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
            amqp_url: broker.amqp_url.clone(),
            amqp_tls: broker.tls(),
            database_url: database.database_url.clone(),
            database_read_url: serve.database_read_url.clone(),
            queue_prefix: broker.queue_prefix.clone(),
            jwt_keys,
            jwt_ttl_seconds: serve.jwt_ttl_seconds,
            apip: serve.apip.clone(),
            crm_token_secret,
            crm_token_secret_file,
            crm_token_secret_path: serve.crm_token_secret_file.clone(),
            queue_type: serve.queue_type,
            reply_to_allow,
            prefetch: serve.prefetch,
            batch_prefetch: serve.batch_prefetch,
            db_pool_size: serve.db_pool_size,
            db_retry_budget: Duration::from_secs(serve.db_retry_budget_seconds),
            shutdown_grace: Duration::from_secs(serve.shutdown_grace_seconds),
            pass_code_max_failures: serve.pass_code_max_failures,
            pass_code_lockout: Duration::from_secs(serve.pass_code_lockout_seconds),
            pass_code_backlog: serve.pass_code_backlog,
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

#[cfg(test)]
mod tests {
    use super::*;

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
            .crm_token_secret_file
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
            Command::Serve(serve) => Settings::from_serve(serve),
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
        assert!(settings(&[]).is_ok_and(|s| s.crm_token_secret.is_none()));
    }
}
