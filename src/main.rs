//! The `tucano-auth` binary: parses the command line and runs it; [`tucano_auth::cli`]
//! does the rest, the exit code included.

use std::process::ExitCode;

use clap::Parser;
use tucano_auth::cli::{self, Cli};

fn main() -> ExitCode {
    cli::run(Cli::parse())
}
