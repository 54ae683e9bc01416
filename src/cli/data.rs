//! The command-line face of the data commands, `migrate`, `seed-demo`, `import`,
//! `user` and `session`: their arguments, and runs that print what the operator needs
//! (tokens and summaries on standard output, everything else on standard error). The
//! work is [`crate::data`]'s and [`crate::store`]'s.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::Outcome;
use crate::data::import::{self, Job};
use crate::data::{self, Refused, TokenForm};
use crate::secret::Secret;
use crate::store;

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
    pub table: crate::data::import::Table,
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
        #[arg(long, default_value = "24h", value_parser = crate::data::parse_ttl)]
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

/// Runs `migrate`.
pub async fn migrate(database: &Database) -> anyhow::Result<Outcome> {
    store::prepare(&database.database_url, 1).await?;
    tracing::info!("database ready");
    Ok(Outcome::Done)
}

/// Runs `seed-demo`.
pub async fn seed_demo(database: &Database) -> anyhow::Result<Outcome> {
    let pool = store::prepare(&database.database_url, 1).await?;
    store::seed::seed_demo(&pool).await?;
    tracing::info!("demo data loaded");
    Ok(Outcome::Done)
}

/// `import FILE --table TABLE`: rejected rows and progress on standard error, the
/// summary on standard output. [`Outcome::NotAllOk`] when some rows were rejected.
pub async fn import(args: Import) -> anyhow::Result<Outcome> {
    let database_url = args.database.database_url.as_str();
    let started = Instant::now();
    let job = Job {
        file: args.file,
        table: args.table,
    };
    let file = job.file.display().to_string();
    // Printed as found: an import with millions of bad rows holds none of them.
    let mut report = |rejection: import::Rejection| {
        eprintln!("{file}: line {}: {}", rejection.line, rejection.reason);
    };
    let outcome = import::run(database_url, &job, &mut report).await?;
    println!(
        "{}",
        outcome.summary.line(job.table.name(), started.elapsed())
    );
    Ok(if outcome.summary.rejected > 0 {
        Outcome::NotAllOk
    } else {
        Outcome::Done
    })
}

/// `user add|disable`; a [`Refused`] error when the data refuses it.
pub async fn user(args: User) -> anyhow::Result<Outcome> {
    let pool = store::prepare(&args.database.database_url, 1).await?;
    match args.command {
        UserCommand::Add {
            username,
            organisation,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(read_stdin("password")?)
            } else {
                None
            };
            data::add_user(&pool, &username, &organisation, password).await?;
            eprintln!("added ACTIVE API user {username:?} of {organisation:?}");
        }
        UserCommand::Disable { username } => {
            if data::disable_user(&pool, &username).await? {
                eprintln!("API user {username:?} is now INACTIVE; its login tokens are refused");
            } else {
                eprintln!("API user {username:?} was already INACTIVE");
            }
        }
    }
    Ok(Outcome::Done)
}

/// `session open|release`: `open` prints the token alone on standard output; a
/// [`Refused`] error when the data refuses it.
pub async fn session(args: Session) -> anyhow::Result<Outcome> {
    let pool = store::prepare(&args.database.database_url, 1).await?;
    match args.command {
        SessionCommand::Open {
            username,
            ttl,
            jwt,
            crm_token_secret,
        } => {
            let form = if jwt { TokenForm::Jwt } else { TokenForm::Hex };
            let secret = crm_token_secret.map(Secret::new);
            let opened = data::open_session(&pool, &username, ttl, form, secret.as_ref()).await?;
            eprintln!(
                "opened session {} of {username:?}, valid until {}",
                opened.id.simple().to_string().to_uppercase(),
                opened.expires_at.to_rfc3339()
            );
            println!("{}", opened.token.expose());
        }
        SessionCommand::Release {
            token,
            crm_token_secret,
        } => {
            let token = if token == "-" {
                read_stdin("token")?
            } else {
                Secret::new(token)
            };
            let secret = crm_token_secret.map(Secret::new);
            let id = data::release_session(&pool, &token, secret.as_ref()).await?;
            eprintln!(
                "released session {}",
                id.simple().to_string().to_uppercase()
            );
        }
    }
    Ok(Outcome::Done)
}

/// Standard input, without its trailing line break; empty is an error.
fn read_stdin(what: &str) -> anyhow::Result<Secret> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| anyhow::anyhow!("cannot read the {what} from standard input: {err}"))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(Refused(format!("the {what} on standard input is empty")).into());
    }
    Ok(Secret::new(text))
}
