//! The command-line face of `import`, `user` and `session`: runs them, prints what
//! the operator needs (tokens and summaries on standard output, everything else on
//! standard error) and gives the exit code.

use std::io::Read as _;
use std::time::Instant;

use crate::config::{Import, SessionCommand, UserCommand};
use crate::import::{self, Job};
use crate::secret::Secret;
use crate::store;

use super::{Refused, TokenForm};

/// Exit code: done.
const DONE: u8 = 0;
/// Exit code: the data refused the request (or, for `import`, some rows).
const REFUSED: u8 = 1;
/// Exit code: could not run.
const FAILED: u8 = 2;

/// Prints `err` with its whole chain and gives its exit code.
fn report(err: &anyhow::Error) -> u8 {
    eprintln!("error: {err:#}");
    if err.downcast_ref::<Refused>().is_some() {
        REFUSED
    } else {
        FAILED
    }
}

/// `import FILE --table TABLE`: rejected rows and progress on standard error, the
/// summary on standard output.
pub async fn import(database_url: &str, args: Import) -> u8 {
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
    match import::run(database_url, &job, &mut report).await {
        Ok(outcome) => {
            println!(
                "{}",
                outcome.summary.line(job.table.name(), started.elapsed())
            );
            outcome.exit_code()
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            FAILED
        }
    }
}

/// `user add|disable`.
pub async fn user(database_url: &str, command: UserCommand) -> u8 {
    let run = async {
        let pool = store::prepare(database_url, 1).await?;
        match command {
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
                super::add_user(&pool, &username, &organisation, password).await?;
                eprintln!("added ACTIVE API user {username:?} of {organisation:?}");
            }
            UserCommand::Disable { username } => {
                if super::disable_user(&pool, &username).await? {
                    eprintln!(
                        "API user {username:?} is now INACTIVE; its login tokens are refused"
                    );
                } else {
                    eprintln!("API user {username:?} was already INACTIVE");
                }
            }
        }
        anyhow::Ok(())
    };
    run.await.map_or_else(|err| report(&err), |()| DONE)
}

/// `session open|release`: `open` prints the token alone on standard output.
pub async fn session(database_url: &str, command: SessionCommand) -> u8 {
    let run = async {
        let pool = store::prepare(database_url, 1).await?;
        match command {
            SessionCommand::Open {
                username,
                ttl,
                jwt,
                crm_token_secret,
            } => {
                let form = if jwt { TokenForm::Jwt } else { TokenForm::Hex };
                let secret = crm_token_secret.map(Secret::new);
                let opened =
                    super::open_session(&pool, &username, ttl, form, secret.as_ref()).await?;
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
                let id = super::release_session(&pool, &token, secret.as_ref()).await?;
                eprintln!(
                    "released session {}",
                    id.simple().to_string().to_uppercase()
                );
            }
        }
        anyhow::Ok(())
    };
    run.await.map_or_else(|err| report(&err), |()| DONE)
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
