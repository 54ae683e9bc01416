//! `Backoff`: how long to wait between attempts to reach a service that is down.
//! The broker's reconnects and the database's wait at startup share it, so it belongs
//! to neither.

use std::time::Duration;

/// Exponential backoff for reconnecting: 100 ms doubling up to 2 s, so a broker that
/// comes back is served again within the 5 s in which readiness must follow.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(100),
        }
    }

    /// The delay to wait now; the following one is twice as long, at most 2 s.
    pub(crate) fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(2));
        now
    }
}
