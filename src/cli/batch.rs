//! `batch`: its arguments are the job's settings, [`BatchArgs`] (defined with the job
//! in `client::batch`); here only how it ended.

use super::Outcome;
use crate::client::batch::{self, BatchArgs};

/// Runs `batch`: [`Outcome::Done`] when every line of the output is `OK`,
/// [`Outcome::NotAllOk`] when some line is not, an error when the job could not run
/// or finish.
pub async fn run(args: &BatchArgs) -> anyhow::Result<Outcome> {
    let written = batch::run(args).await?;
    Ok(if written.not_ok() == 0 {
        Outcome::Done
    } else {
        Outcome::NotAllOk
    })
}
