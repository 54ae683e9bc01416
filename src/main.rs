//! The `tucano-auth` binary: parses the command line, sets up logging, runs the
//! subcommand, and turns its result into the exit code (printing the whole error chain).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tucano_auth::config::{Cli, Command, Settings};
use tucano_auth::{admin, batch, broker, call, keys, store, worker};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::PassCodeHelper = cli.command {
        return match store::pass_code::serve_helper() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: pass-code helper: {err}");
                ExitCode::from(2)
            }
        };
    }
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
    let _traces = tucano_auth::telemetry::init(level, cli.log_format);
    let built = match &cli.command {
        Command::Serve(serve) => tucano_auth::runtime::for_serve(serve),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|err| anyhow::Error::new(err).context("cannot start the async runtime")),
    };
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    };
    // Whatever is still running (a broker call that never answered) does not hold the
    // exit: SIGTERM must end the process within the grace period and a few seconds.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(serve) => {
            // Before anything else: SIGHUP's default action ends the process.
            let hangups = hangups()?;
            let settings = Settings::from_serve(&serve)?;
            match std::env::current_exe() {
                Ok(exe) => store::pass_code::use_helper_process(exe),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot find this executable; pass codes are verified in the worker")
                }
            }
            worker::run_reloading(
                settings,
                Arc::new(broker::Stats::default()),
                shutdown_signal(),
                hangups,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(database) => {
            store::prepare(&database.database_url, 1).await?;
            tracing::info!("database ready");
            Ok(ExitCode::SUCCESS)
        }
        Command::SeedDemo(database) => {
            let pool = store::prepare(&database.database_url, 1).await?;
            store::seed::seed_demo(&pool).await?;
            tracing::info!("demo data loaded");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import(args) => {
            let url = args.database.database_url.clone();
            Ok(ExitCode::from(admin::commands::import(&url, args).await))
        }
        Command::User(args) => Ok(ExitCode::from(
            admin::commands::user(&args.database.database_url, args.command).await,
        )),
        Command::Session(args) => Ok(ExitCode::from(
            admin::commands::session(&args.database.database_url, args.command).await,
        )),
        Command::Keygen(args) => {
            anyhow::ensure!(!args.kid.trim().is_empty(), "--kid must not be empty");
            println!("{}", keys::generate::generate(args.alg, &args.kid));
            Ok(ExitCode::SUCCESS)
        }
        Command::Jwks(args) => {
            let keys = args.jwt.source(false)?.load()?;
            let set = keys
                .public_set()
                .unwrap_or_else(|| serde_json::json!({"keys": []}));
            println!("{set}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe(args) => match tucano_auth::probe::probe(&args.url, args.timeout).await {
            Ok(answer) => {
                println!("{}", answer.status_line);
                // Why it is not ready (`/readyz` names it), kept short for a health log.
                let body = answer.body.trim();
                if !answer.is_success() && !body.is_empty() {
                    println!("{}", body.chars().take(1024).collect::<String>());
                }
                Ok(if answer.is_success() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            Err(err) => {
                eprintln!("error: {err}");
                Ok(ExitCode::from(2))
            }
        },
        // Served by `main` before any runtime or logging starts; never reaches here.
        Command::PassCodeHelper => Ok(ExitCode::SUCCESS),
        Command::Call(args) => Ok(call::run(&args.broker, &args).await),
        Command::Batch(args) => Ok(batch::run(&args).await),
    }
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
