//! Logging: `RUST_LOG` (default `info`) to standard error, with a filter that keeps
//! message bodies and statement parameters out of the log whatever `RUST_LOG` says,
//! and a writer that escapes every control character.
//!
//! What is always dropped: lapin logs a returned message whole (body included) at
//! `warn`, and frames at `trace`, and a reply body carries a JWT; tokio-postgres logs
//! each statement's parameters (identifiers, authentication codes, session hashes) at
//! `debug`, and sqlx its statements.
//!
//! What is escaped: a log line is one line. Request data (a `reply_to`, a broker's
//! error naming a queue a producer chose) can hold a newline or a terminal escape
//! sequence; [`Escaping`] writes every control character inside a line as `\u{..}`,
//! so no request can forge a log line or drive the reader's terminal.

mod json;

use std::io::{self, Write};

use super::traces;

/// `LOG_FORMAT`. Defined here, beside the log it shapes; the command line only reads
/// it (nothing here imports `cli`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per line: timestamp, level, target, message, the event's fields
    /// and, while a request is handled, its `correlation_id` and `queue`.
    Json,
}

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter for `RUST_LOG` (or `default` when unset or invalid).
pub fn filter(rust_log: Option<&str>, default: &str) -> EnvFilter {
    let base = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or(default);
    EnvFilter::try_new(base).unwrap_or_else(|err| {
        eprintln!("warning: RUST_LOG is not a valid filter ({err}); using '{default}'");
        EnvFilter::new(default)
    })
}

/// Whether an event may carry a message body or a statement's parameters, and so
/// must never be logged.
pub fn may_carry_a_body(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let verbose = *meta.level() >= Level::DEBUG;
    target.starts_with("lapin::returned_messages")
        || ((target.starts_with("lapin") || target.starts_with("amq_protocol"))
            && *meta.level() == Level::TRACE)
        || (target.starts_with("tokio_postgres") && verbose)
        || target.starts_with("sqlx::query")
}

/// Installs the subscriber: `RUST_LOG` (or `default`) to standard error, less the
/// events that may carry a message body, through [`Escaping`], as text or JSON. No
/// colours: they are control characters too, and a log must not hold any. With an
/// OTLP endpoint in the `OTEL_*` variables, spans are exported too ([`traces`]); keep
/// the returned pipeline until the end, when dropping it exports what is left.
///
/// In JSON, every line is one object: `timestamp` (RFC 3339), `level`, `target`,
/// `message`, the event's fields, and the fields of the spans it was logged in (a
/// request's `correlation_id` and `queue`) at the top level, with `trace_id` and
/// `span_id` while a traced span is active.
pub fn init(default: &str, format: LogFormat) -> Option<traces::Traces> {
    let rust_log = std::env::var("RUST_LOG").ok();
    // Global filters, not per-layer ones: with a per-layer filter the JSON formatter
    // did not see the request span of the first event of each call site.
    let registry = tracing_subscriber::registry()
        .with(filter(rust_log.as_deref(), default))
        .with(FilterFn::new(|meta| !may_carry_a_body(meta)));
    let (otel, pipeline, refused) = match traces::layer() {
        Ok(Some((layer, pipeline))) => (Some(layer), Some(pipeline), None),
        Ok(None) => (None, None, None),
        Err(why) => (None, None, Some(why)),
    };
    let registry = registry.with(otel);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(|| Escaping(io::stderr()))
                    .with_ansi(false),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(json::Lines)
                    .with_writer(|| Escaping(io::stderr())),
            )
            .init(),
    }
    if let Some(why) = refused {
        tracing::warn!("{why}");
    }
    pipeline
}

/// A writer of log lines that escapes the control characters inside each line
/// (everything but its final newline) as `\u{..}`. The formatter hands it one whole
/// line per write.
#[derive(Debug)]
pub struct Escaping<W>(pub W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let (line, end) = match buf.strip_suffix(b"\n") {
            Some(line) => (line, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !line.iter().any(|&b| b < 0x20 || b == 0x7f) && !has_c1_control(line) {
            return self.0.write_all(buf);
        }
        let mut escaped = String::with_capacity(line.len() + 16);
        for c in String::from_utf8_lossy(line).chars() {
            if c.is_control() {
                escaped.extend(c.escape_unicode());
            } else {
                escaped.push(c);
            }
        }
        escaped.push_str(std::str::from_utf8(end).unwrap_or_default());
        self.0.write_all(escaped.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Whether UTF-8 `bytes` hold a C1 control character (U+0080 to U+009F: `C2 80`..`C2 9F`).
fn has_c1_control(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|pair| pair[0] == 0xC2 && (0x80..=0x9F).contains(&pair[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(line: &[u8]) -> String {
        let mut out = Escaping(Vec::new());
        out.write_all(line).unwrap();
        String::from_utf8(out.0).unwrap()
    }

    #[test]
    fn control_characters_inside_a_line_are_escaped() {
        assert_eq!(
            escaped(b"reply_to=a\nFORGED \x1b[31m\r\n"),
            "reply_to=a\\u{a}FORGED \\u{1b}[31m\\u{d}\n"
        );
        assert_eq!(escaped("x\u{85}y\n".as_bytes()), "x\\u{85}y\n");
        assert_eq!(escaped(b"plain line\n"), "plain line\n");
        assert_eq!(escaped(b"tab\there"), "tab\\u{9}here");
    }
}
