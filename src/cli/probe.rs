//! `probe`: one HTTP GET, for container health checks (the image has no `curl`); the
//! GET itself is [`crate::observe::probe`].

use std::time::Duration;

use clap::Args;

use super::Outcome;
use crate::observe::probe::{parse_timeout, probe};

/// `probe`: the URL and how long to wait.
#[derive(Args)]
pub struct Probe {
    /// The URL, plain HTTP: `http://127.0.0.1:9477/readyz`.
    pub url: String,
    /// How long to wait for the whole answer: `2s`, `500ms`, or seconds.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// Runs `probe`: prints the status line (and, when not 2xx, the start of the body);
/// [`Outcome::Done`] on 2xx, [`Outcome::NotAllOk`] on another status, an error
/// without an answer.
pub async fn run(args: &Probe) -> anyhow::Result<Outcome> {
    let answer = probe(&args.url, args.timeout)
        .await
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    println!("{}", answer.status_line);
    // Why it is not ready (`/readyz` names it), kept short for a health log.
    let body = answer.body.trim();
    if !answer.is_success() && !body.is_empty() {
        println!("{}", body.chars().take(1024).collect::<String>());
    }
    Ok(if answer.is_success() {
        Outcome::Done
    } else {
        Outcome::NotAllOk
    })
}
