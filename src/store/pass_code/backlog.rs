//! How many pass-code requests may wait in a worker: [`Backlog`].

use crate::error::Error;
use crate::observe::metrics::PASS_CODES_SHED;

/// `TUCANO_PASS_CODE_BACKLOG`'s default.
pub const DEFAULT_BACKLOG: usize = 256;

/// How many pass-code requests may wait in a worker (docs/protocol.md §14): one more is
/// refused at once, so that a flood of them sheds its excess instead of queueing
/// without end, and the worker's other requests keep their slots and their latency.
#[derive(Debug)]
pub struct Backlog {
    waiting: std::sync::atomic::AtomicUsize,
    limit: usize,
}

/// A place in the [`Backlog`], given back when dropped.
#[derive(Debug)]
pub struct Place<'a>(&'a Backlog);

impl Backlog {
    /// A backlog of at most `limit` requests.
    pub fn new(limit: usize) -> Backlog {
        Backlog {
            waiting: std::sync::atomic::AtomicUsize::new(0),
            limit,
        }
    }

    /// A place for one more pass-code request, or [`Error::PassCodeBacklogFull`] (and
    /// one more `tucano_auth_pass_code_shed_total`) when `limit` already wait.
    pub fn enter(&self) -> Result<Place<'_>, Error> {
        use std::sync::atomic::Ordering;
        let entered = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < self.limit).then_some(waiting + 1)
            });
        match entered {
            Ok(_) => Ok(Place(self)),
            Err(_) => {
                metrics::counter!(PASS_CODES_SHED).increment(1);
                Err(Error::PassCodeBacklogFull)
            }
        }
    }

    /// How many wait now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}
