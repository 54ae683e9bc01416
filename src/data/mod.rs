//! The work of the operator's data commands: `import` ([`import`]), `user
//! add|disable` (`users.rs`) and `session open|release` (`sessions.rs`). They write
//! the same tables the worker reads, through `DATABASE_URL`; their arguments and
//! what they print are `cli/data.rs`'s.
//!
//! The user and session functions return `Ok` when done, [`Refused`] when the
//! request makes no sense for the data (an unknown user, a user that already exists,
//! an unknown token; the command line's exit 1), and any other error when they could
//! not run (exit 2).

pub mod import;
mod sessions;
mod users;

use std::time::Duration;

pub use sessions::{open_session, release_session, OpenedSession, TokenForm};
pub use users::{add_user, disable_user};

/// The data refuses the request; the message says why (and never holds a secret).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Parses a lifetime such as `2h`, `30m`, `90s`, `7d` or `1h30m`; a bare number is
/// seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a lifetime such as 90s, 30m, 2h, 7d or 1h30m");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds)).and_then(|d| positive(d).ok_or_else(bad));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    positive(Duration::from_secs(total)).ok_or_else(bad)
}

fn positive(ttl: Duration) -> Option<Duration> {
    // Beyond a century chrono's date arithmetic is no longer a sensible expiry.
    (ttl > Duration::ZERO && ttl.as_secs() <= 100 * 365 * 86_400).then_some(ttl)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_as_operators_write_them() {
        assert_eq!(parse_ttl("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_ttl("600").unwrap(), Duration::from_secs(600));
        for bad in [
            "",
            "0",
            "0s",
            "2x",
            "h",
            "2h3",
            "-5m",
            "99999999999999999999d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
