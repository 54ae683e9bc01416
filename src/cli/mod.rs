//! The command line: every subcommand's arguments (clap, each also an environment
//! variable where the product documents one) and its run, one file each; and the one
//! place that turns how a subcommand ended into the exit code ([`exit_code`]).
//!
//! Nothing below this module depends on it: a subcommand's run turns its arguments
//! into the settings of the room that does the work (`serve::Settings`,
//! `client::batch::BatchArgs`, a database URL) and calls it. Secrets are read into
//! [`Secret`](crate::secret::Secret) and never printed: clap is told to hide their
//! values.

mod batch;
mod call;
mod data;
mod keys;
mod probe;
mod serve;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::data::Refused;
use crate::observe::logs::LogFormat;

pub use call::{Call, RequestFlags};
pub use data::{Database, Import, Session, SessionCommand, User, UserCommand};
pub use keys::{Jwks, JwtKeys, Keygen, DEMO_JWT_SECRET};
pub use probe::Probe;
pub use serve::Serve;

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
    Batch(Box<crate::client::batch::BatchArgs>),
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

/// How a subcommand that ran to its end ended; a subcommand that could not run or
/// finish returns an error instead. [`exit_code`] maps both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything as asked: the reply `OK`, every batch line `OK`, every row loaded,
    /// the probe's status 2xx.
    Done,
    /// Ran to the end, but not everything was `OK`: `call`'s reply had another status,
    /// some `batch` line or `import` row did not pass, `probe`'s status was not 2xx.
    NotAllOk,
}

/// The exit code of every subcommand, decided here and nowhere else: 0 done, 1 done
/// but not all `OK` or refused by the data (a [`Refused`] error: an unknown user or
/// token), 2 could not run or finish.
pub fn exit_code(ended: &anyhow::Result<Outcome>) -> u8 {
    match ended {
        Ok(Outcome::Done) => 0,
        Ok(Outcome::NotAllOk) => 1,
        Err(err) if err.is::<Refused>() => 1,
        Err(_) => 2,
    }
}

/// Runs the command line `cli`: sets up logging and the runtime, runs the subcommand,
/// prints an error with its whole chain, and gives the exit code.
pub fn run(cli: Cli) -> ExitCode {
    let ended = if let Command::PassCodeHelper = cli.command {
        // Before any runtime or logging: the helper's standard streams are its protocol.
        crate::store::pass_code::serve_helper()
            .map(|()| Outcome::Done)
            .map_err(|err| anyhow::anyhow!("pass-code helper: {err}"))
    } else {
        run_logged(cli)
    };
    if let Err(err) = &ended {
        eprintln!("error: {err:#}");
    }
    ExitCode::from(exit_code(&ended))
}

/// Every subcommand but the pass-code helper: with logging, on a runtime.
fn run_logged(cli: Cli) -> anyhow::Result<Outcome> {
    // The data commands print what the operator needs; the log says only what went
    // wrong (not that a statement was slow: a large import's are).
    let level = match cli.command {
        Command::Import(_) | Command::User(_) | Command::Session(_) => "warn,sqlx::query=error",
        // batch says what went wrong with the broker in its own words: a missing queue
        // (its passive declare, which the broker answers by closing that channel) and a
        // lost connection (it reconnects and says so). lapin would log both as errors,
        // three lines for each failed reconnection attempt.
        Command::Batch(_) => "info,lapin=off",
        _ => "info",
    };
    // Dropped last, after the runtime: exports the spans still queued.
    let _traces = crate::observe::logs::init(level, cli.log_format);
    let runtime = match &cli.command {
        Command::Serve(serve) => crate::serve::runtime::for_serve(serve.worker_threads)?,
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|err| anyhow::Error::new(err).context("cannot start the async runtime"))?,
    };
    let ended = runtime.block_on(dispatch(cli));
    // Whatever is still running (a broker call that never answered) does not hold the
    // exit: SIGTERM must end the process within the grace period and a few seconds.
    runtime.shutdown_timeout(Duration::from_millis(500));
    ended
}

async fn dispatch(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Serve(args) => serve::run(&args).await,
        Command::Migrate(database) => data::migrate(&database).await,
        Command::SeedDemo(database) => data::seed_demo(&database).await,
        Command::Import(args) => data::import(args).await,
        Command::User(args) => data::user(args).await,
        Command::Session(args) => data::session(args).await,
        Command::Keygen(args) => keys::keygen(&args),
        Command::Jwks(args) => keys::jwks(&args),
        Command::Probe(args) => probe::run(&args).await,
        Command::Call(args) => call::run(&args).await,
        Command::Batch(args) => batch::run(&args).await,
        // Served by `run` before any runtime or logging starts; never reaches here.
        Command::PassCodeHelper => Ok(Outcome::Done),
    }
}
