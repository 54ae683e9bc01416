//! Batch requests get the capacity interactive ones leave (docs/protocol.md §14).
//!
//! The batch channel holds as many deliveries as the interactive one
//! (`TUCANO_PREFETCH` + `TUCANO_PASS_CODE_BACKLOG`), but only `TUCANO_BATCH_PREFETCH`
//! of them are worked on while interactive requests come in: the rest wait here,
//! unacked (bounded by the channel's prefetch, and given back to the queue if the
//! worker dies), until no interactive request has arrived for [`QUIET`] and none is in
//! flight. So a nightly job drains at the worker's full rate on an idle machine, at any
//! client window the interactive queue serves at full rate, and an interactive request
//! arriving during a batch flood finds only the small share running once the batch
//! requests already running are done.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long interactive traffic must have stopped before batch requests beyond the
/// base share start: longer than the gap between requests of any stream that matters.
pub const QUIET: Duration = Duration::from_millis(50);

/// The shares of the batch channel, and what interactive traffic is doing.
#[derive(Debug)]
pub struct BatchGate {
    /// `TUCANO_BATCH_PREFETCH` permits: batch requests that always run.
    base: Arc<Semaphore>,
    /// The rest of the batch window: batch requests that run while interactive is quiet.
    extra: Arc<Semaphore>,
    interactive_in_flight: AtomicUsize,
    /// When the last interactive request arrived, in ms since `epoch`.
    last_interactive_ms: AtomicU64,
    epoch: Instant,
}

/// An interactive request in flight, until dropped.
#[derive(Debug)]
pub struct Interactive<'a>(&'a BatchGate);

impl BatchGate {
    /// `base` batch requests always, up to `window` while interactive traffic is quiet.
    pub fn new(base: u16, window: u16) -> BatchGate {
        let base = usize::from(base.max(1));
        let window = usize::from(window).max(base);
        BatchGate {
            base: Arc::new(Semaphore::new(base)),
            extra: Arc::new(Semaphore::new(window - base)),
            interactive_in_flight: AtomicUsize::new(0),
            last_interactive_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Marks an interactive request arrived, in flight until the guard drops.
    pub fn interactive(&self) -> Interactive<'_> {
        self.interactive_in_flight.fetch_add(1, Ordering::AcqRel);
        self.last_interactive_ms
            .store(self.now_ms(), Ordering::Release);
        Interactive(self)
    }

    /// Waits until a batch request may run: at once within the base share, else once
    /// interactive traffic is quiet and the window has room. Run while the permit lives.
    pub async fn admit(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.base.clone().try_acquire_owned() {
            return permit;
        }
        let base = self.base.clone();
        tokio::select! {
            permit = base.acquire_owned() => permit,
            permit = self.extra_when_quiet() => permit,
        }
        .unwrap_or_else(|_| unreachable!("the gate's semaphores are never closed"))
    }

    async fn extra_when_quiet(&self) -> Result<OwnedSemaphorePermit, tokio::sync::AcquireError> {
        loop {
            let left = self.quiet_left();
            if left.is_zero() {
                let permit = self.extra.clone().acquire_owned().await?;
                // Interactive traffic may have come back while the window was full.
                if self.quiet_left().is_zero() {
                    return Ok(permit);
                }
                drop(permit);
                continue;
            }
            tokio::time::sleep(left).await;
        }
    }

    /// How much longer interactive traffic must stay quiet; zero when it is.
    fn quiet_left(&self) -> Duration {
        if self.interactive_in_flight.load(Ordering::Acquire) > 0 {
            return QUIET;
        }
        let last = self.last_interactive_ms.load(Ordering::Acquire);
        let since = Duration::from_millis(self.now_ms().saturating_sub(last));
        QUIET.saturating_sub(since)
    }

    fn now_ms(&self) -> u64 {
        // Offset by QUIET so that a gate with no interactive request yet is quiet.
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
            + QUIET.as_millis() as u64
    }
}

impl Drop for Interactive<'_> {
    fn drop(&mut self) {
        // Quiet is counted from the last one done as well as the last one arrived.
        self.0
            .last_interactive_ms
            .store(self.0.now_ms(), Ordering::Release);
        self.0.interactive_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batch_takes_the_whole_window_while_interactive_is_quiet() {
        let gate = BatchGate::new(2, 6);
        let mut permits = Vec::new();
        for _ in 0..6 {
            permits.push(
                tokio::time::timeout(Duration::from_millis(1), gate.admit())
                    .await
                    .expect("admitted at once"),
            );
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), gate.admit())
                .await
                .is_err(),
            "the window is full"
        );
    }

    #[tokio::test]
    async fn batch_keeps_to_its_share_while_interactive_requests_come_in() {
        let gate = BatchGate::new(2, 6);
        let _first = gate.admit().await;
        let _second = gate.admit().await;
        {
            let _interactive = gate.interactive();
            assert!(
                tokio::time::timeout(Duration::from_millis(300), gate.admit())
                    .await
                    .is_err(),
                "a third batch request ran beside an interactive one"
            );
        }
        // The interactive request done: the third one waits out QUIET, then runs.
        let started = tokio::time::Instant::now();
        let _third = gate.admit().await;
        assert!(started.elapsed() >= QUIET - Duration::from_millis(1));
    }
}
