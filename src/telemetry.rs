//! Logging: `RUST_LOG` (default `info`) to standard error, with the directives that keep
//! message bodies out of the log whatever `RUST_LOG` says.
//!
//! lapin logs a returned message whole (body included) at `warn`, and every frame at
//! `trace`; a reply body carries a JWT, so those targets are capped here.

use tracing_subscriber::EnvFilter;

/// Directives appended to any `RUST_LOG`, so message bodies never reach the log.
pub const REDACTING_DIRECTIVES: [&str; 2] = ["lapin=debug", "lapin::returned_messages=off"];

/// The filter for `RUST_LOG` (or `default` when unset), with [`REDACTING_DIRECTIVES`].
pub fn filter(rust_log: Option<&str>, default: &str) -> EnvFilter {
    let base = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or(default);
    let mut filter = EnvFilter::try_new(base).unwrap_or_else(|err| {
        eprintln!("warning: RUST_LOG is not a valid filter ({err}); using '{default}'");
        EnvFilter::new(default)
    });
    for directive in REDACTING_DIRECTIVES {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the subscriber for the binary.
pub fn init() {
    let rust_log = std::env::var("RUST_LOG").ok();
    tracing_subscriber::fmt()
        .with_env_filter(filter(rust_log.as_deref(), "info"))
        .with_writer(std::io::stderr)
        .init();
}
