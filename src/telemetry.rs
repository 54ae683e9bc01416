//! Logging: `RUST_LOG` (default `info`) to standard error, with a filter that keeps
//! message bodies out of the log whatever `RUST_LOG` says.
//!
//! lapin logs a returned message whole (body included) at `warn`, and frames at
//! `trace`; a reply body carries a JWT, so those events are always dropped.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The filter for `RUST_LOG` (or `default` when unset or invalid).
pub fn filter(rust_log: Option<&str>, default: &str) -> EnvFilter {
    let base = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or(default);
    EnvFilter::try_new(base).unwrap_or_else(|err| {
        eprintln!("warning: RUST_LOG is not a valid filter ({err}); using '{default}'");
        EnvFilter::new(default)
    })
}

/// Whether an event may carry a message body, and so must never be logged.
pub fn may_carry_a_body(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    target.starts_with("lapin::returned_messages")
        || ((target.starts_with("lapin") || target.starts_with("amq_protocol"))
            && *meta.level() == Level::TRACE)
}

/// Installs the subscriber: `RUST_LOG` (or `default`) to standard error, less the
/// events that may carry a message body. Colours only on a terminal: a log file or a
/// log collector gets plain text.
pub fn init(default: &str) {
    use std::io::IsTerminal as _;
    let rust_log = std::env::var("RUST_LOG").ok();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter(rust_log.as_deref(), default))
        .with_filter(FilterFn::new(|meta| !may_carry_a_body(meta)));
    tracing_subscriber::registry().with(layer).init();
}
