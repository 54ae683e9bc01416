//! Acknowledging a channel's deliveries in batches (docs/protocol.md §7 unchanged).
//!
//! One `basic.ack` frame per delivery is as much of RabbitMQ's work per request as the
//! reply's publish; RabbitMQ's guidance is to acknowledge with `multiple = true`, which
//! acks every unacked delivery tag up to the one named. So a delivery whose reply is
//! confirmed does not ack itself: it tells its channel's [`Acks`], and one task per
//! channel sends the acks. That task acks at once when woken, and what completes while
//! its previous ack frame is being written is covered by the next: under load one frame
//! covers many deliveries, when idle each goes out alone, and no timer ever holds an
//! ack back.
//!
//! A `multiple` ack with tag T covers every unacked tag up to T on the channel, so it
//! is sent only when every delivery up to T is settled: its reply confirmed (acked by
//! this frame), or already given back or acked alone ([`Window`]). A delivery still
//! being worked on (a pass code behind Argon2, a slow statement) therefore holds the
//! frontier; the deliveries finished behind it would hold their places in the prefetch
//! window until it is done and could stall the consumer, so once the frontier has been
//! held for [`HOLD`], or they fill [`HOLD_SHARE`] of the prefetch, they are acked one
//! by one.
//!
//! Delivery tags are the channel's: a new channel (after a reconnection) starts again
//! at 1 with a new [`Acks`]. A channel that is gone cannot ack; what it held comes back
//! from the broker (section 7's at-least-once), as it always did.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::BasicAckOptions;
use lapin::Channel;
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::observe::Stats;

/// How the worker acknowledges its deliveries. The product always batches; the bench's
/// echo also measures the naive conversation, one ack per delivery, to show what
/// batching is worth against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// One `basic.ack` per delivery, sent by the delivery's task once its reply is
    /// confirmed.
    PerDelivery,
    /// `multiple` acks over the run of settled deliveries (this module).
    #[default]
    Batched,
}

/// How long deliveries finished behind an unfinished one wait for it before they are
/// acked one by one: a few ms, longer than requests of one lookup statement take to
/// finish apart, shorter than a pass code's Argon2 verification.
pub const HOLD: Duration = Duration::from_millis(4);

/// The share of the channel's prefetch that deliveries finished behind an unfinished one
/// may fill before they are acked one by one, whatever [`HOLD`] says.
const HOLD_SHARE: usize = 4;

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Being worked on: not to be covered by any ack.
    Working,
    /// Its reply confirmed: to be acked.
    Finished,
    /// No longer unacked at the broker: given back (nacked), or acked alone.
    Gone,
}

/// The acks to send now.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Due {
    /// A `multiple` ack with this tag, and how many finished deliveries it acks.
    pub multiple: Option<(u64, usize)>,
    /// Tags to ack one by one (finished behind an unfinished one held too long).
    pub single: Vec<u64>,
}

impl Due {
    fn is_empty(&self) -> bool {
        self.multiple.is_none() && self.single.is_empty()
    }
}

/// A channel's unsettled deliveries in the order they arrived (their tags grow), and
/// which may be acked. Pure bookkeeping: [`Acks`] sends what it says.
#[derive(Debug, Default)]
pub(super) struct Window {
    entries: VecDeque<(u64, State)>,
    /// Finished entries not yet acked.
    held: usize,
    /// Since when the frontier (the first unfinished entry) has held finished ones.
    held_since: Option<Instant>,
}

impl Window {
    /// A delivery arrived (in tag order: called from the consume loop, before the
    /// delivery's task can finish it).
    pub fn arrived(&mut self, tag: u64) {
        debug_assert!(self.entries.back().is_none_or(|(last, _)| *last < tag));
        self.entries.push_back((tag, State::Working));
    }

    /// The delivery `tag`'s reply is confirmed: it is to be acked.
    pub fn finished(&mut self, tag: u64, now: Instant) {
        if self.set(tag, State::Finished) {
            self.held += 1;
            self.held_since.get_or_insert(now);
        }
    }

    /// The delivery `tag` was nacked (or rejected) alone: no ack may name it, and it no
    /// longer holds the frontier.
    pub fn gone(&mut self, tag: u64) {
        self.set(tag, State::Gone);
    }

    /// Whether the finished deliveries behind the frontier should be acked one by one
    /// now: held since `HOLD` before `now`, or as many as `limit`.
    pub fn overdue(&self, now: Instant, limit: usize) -> bool {
        self.held > 0
            && (self.held >= limit
                || self
                    .held_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= HOLD))
    }

    /// When the held deliveries become overdue, if any are held.
    pub fn deadline(&self) -> Option<Instant> {
        self.held_since.map(|t| t + HOLD)
    }

    /// The acks due: one `multiple` ack over the settled run at the front, and with
    /// `release`, every finished delivery behind the frontier one by one. What they
    /// name is forgotten: each finished delivery is acked exactly once.
    pub fn take(&mut self, release: bool, now: Instant) -> Due {
        let mut due = Due::default();
        let mut covered = 0;
        let mut top = None;
        let mut moved = false;
        while let Some(&(tag, state)) = self.entries.front() {
            match state {
                State::Working => break,
                State::Finished => {
                    top = Some(tag);
                    covered += 1;
                    self.held -= 1;
                }
                State::Gone => moved = true,
            }
            self.entries.pop_front();
        }
        // The front run ends at an unfinished delivery (or the end): T = the last
        // finished one is unacked at the broker, and nothing unfinished is below it.
        due.multiple = top.map(|tag| (tag, covered));
        if release && self.held > 0 {
            for (tag, state) in &mut self.entries {
                if *state == State::Finished {
                    *state = State::Gone;
                    due.single.push(*tag);
                }
            }
            self.held = 0;
        }
        if self.held == 0 {
            self.held_since = None;
        } else if top.is_some() || moved {
            // The frontier moved: what is held now waits on another delivery. Under
            // load it moves all the time; one stuck request stops it.
            self.held_since = Some(now);
        }
        due
    }

    fn set(&mut self, tag: u64, to: State) -> bool {
        let Ok(at) = self.entries.binary_search_by_key(&tag, |(t, _)| *t) else {
            return false;
        };
        let state = &mut self.entries[at].1;
        if *state != State::Working {
            return false;
        }
        // Finished at the front: counted as held until `take` pops it (it will).
        *state = to;
        true
    }
}

/// One channel's acks: the [`Window`] the delivery tasks update and the task that acks.
pub(super) struct Acks {
    window: Mutex<Window>,
    wake: Notify,
    flushing: std::sync::atomic::AtomicBool,
    stop: CancellationToken,
    flushed: Mutex<Option<oneshot::Sender<()>>>,
}

impl Acks {
    /// Starts the ack task of `channel`, whose prefetch is `prefetch`; `stats` counts
    /// the answered requests as their acks go out.
    pub fn start(channel: Channel, prefetch: u16, stats: Arc<Stats>) -> Arc<Acks> {
        let acks = Arc::new(Acks {
            window: Mutex::new(Window::default()),
            wake: Notify::new(),
            flushing: false.into(),
            stop: CancellationToken::new(),
            flushed: Mutex::new(None),
        });
        let limit = (usize::from(prefetch) / HOLD_SHARE).max(1);
        tokio::spawn(acks.clone().run(channel, limit, stats));
        acks
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // Each update is a few field writes: a panic cannot leave it half-done.
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// See [`Window::arrived`].
    pub fn arrived(&self, tag: u64) {
        self.lock().arrived(tag);
    }

    /// The delivery's reply is confirmed: its ack goes out with the next frame.
    pub fn finished(&self, tag: u64) {
        self.lock().finished(tag, Instant::now());
        self.wake.notify_one();
    }

    /// The delivery was nacked alone (after its nack was written): see [`Window::gone`].
    pub fn gone(&self, tag: u64) {
        self.lock().gone(tag);
        self.wake.notify_one();
    }

    /// Acks everything finished now, then each later finished delivery at once (a
    /// draining worker: nothing more will complete behind it), and waits until those
    /// acks are written, up to `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (sender, receiver) = oneshot::channel();
        *self
            .flushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sender);
        self.flushing.store(true, Ordering::Release);
        self.wake.notify_one();
        tokio::select! {
            _ = receiver => {}
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(timeout) => {}
        }
    }

    /// Ends the ack task (its channel is closed or lost).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    async fn run(self: Arc<Acks>, channel: Channel, limit: usize, stats: Arc<Stats>) {
        self.acking(channel, limit, stats).await;
        // A flush waiting on this task returns at once.
        self.stop.cancel();
    }

    async fn acking(&self, channel: Channel, limit: usize, stats: Arc<Stats>) {
        loop {
            let deadline = self.lock().deadline();
            let wait = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = wait => {}
            }
            let flushing = self.flushing.load(Ordering::Acquire);
            let due = {
                let mut window = self.lock();
                let now = Instant::now();
                let release = flushing || window.overdue(now, limit);
                window.take(release, now)
            };
            if !due.is_empty() && !send(&channel, &due, &stats).await {
                // The channel is gone: its unacked deliveries go back to the queue.
                return;
            }
            if flushing {
                let sender = self
                    .flushed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                if let Some(sender) = sender {
                    let _ = sender.send(());
                }
            }
        }
    }
}

/// Sends `due`'s acks; false once the channel can take no more. The frames are queued
/// together, not one written before the next is queued: tens of single acks released
/// at once would otherwise take as many round trips to the connection's writer, and a
/// worker killed meanwhile would have them all answered again.
async fn send(channel: &Channel, due: &Due, stats: &Stats) -> bool {
    let mut acks: Vec<(u64, bool, usize)> = Vec::with_capacity(due.single.len() + 1);
    if let Some((tag, count)) = due.multiple {
        acks.push((tag, count > 1, count));
    }
    acks.extend(due.single.iter().map(|&tag| (tag, false, 1)));
    // The multiple ack covers tags below every single one: their order does not matter.
    let sent =
        futures_util::future::join_all(acks.iter().map(|&(tag, multiple, count)| async move {
            (
                channel.basic_ack(tag, BasicAckOptions { multiple }).await,
                count,
            )
        }))
        .await;
    let mut alive = true;
    for (result, count) in sent {
        match result {
            Ok(()) => {
                stats.answered.fetch_add(count as u64, Ordering::Relaxed);
            }
            Err(err) => {
                if alive {
                    tracing::warn!(error = %err, "cannot ack answered requests; the broker will redeliver them");
                }
                alive = false;
            }
        }
    }
    alive
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The broker's side: which tags are unacked, and what an ack does to them.
    #[derive(Default)]
    struct Broker {
        unacked: BTreeSet<u64>,
    }

    impl Broker {
        /// Applies an ack as RabbitMQ does; an unknown tag is a channel error.
        fn ack(&mut self, tag: u64, multiple: bool) -> Result<Vec<u64>, String> {
            if !self.unacked.contains(&tag) {
                return Err(format!("unknown delivery tag {tag}"));
            }
            if multiple {
                let covered: Vec<u64> = self.unacked.range(..=tag).copied().collect();
                for t in &covered {
                    self.unacked.remove(t);
                }
                Ok(covered)
            } else {
                self.unacked.remove(&tag);
                Ok(vec![tag])
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Finish(usize),
        Nack(usize),
        Take { release: bool },
    }

    /// Drives a window through `events` over `n` deliveries (tags 1..=n, or with gaps
    /// when `gaps`), checking each ack against the broker's rules.
    fn drive(n: usize, gaps: bool, events: &[Event]) -> Result<(), TestCaseError> {
        let tags: Vec<u64> = (1..=n as u64)
            .map(|i| if gaps { i * 3 } else { i })
            .collect();
        let mut window = Window::default();
        let mut broker = Broker::default();
        for &tag in &tags {
            window.arrived(tag);
            broker.unacked.insert(tag);
        }
        let mut finished = BTreeSet::new();
        let mut nacked = BTreeSet::new();
        let mut acked = BTreeSet::new();
        let now = Instant::now();
        let apply = |due: Due,
                     broker: &mut Broker,
                     acked: &mut BTreeSet<u64>,
                     finished: &BTreeSet<u64>|
         -> Result<(), TestCaseError> {
            let mut frames: Vec<(u64, bool)> = Vec::new();
            if let Some((tag, count)) = due.multiple {
                frames.push((tag, count > 1));
            }
            frames.extend(due.single.iter().map(|&t| (t, false)));
            for (tag, multiple) in frames {
                let covered = broker.ack(tag, multiple).map_err(TestCaseError::fail)?;
                for t in covered {
                    prop_assert!(finished.contains(&t), "an ack covered unfinished tag {t}");
                    prop_assert!(acked.insert(t), "tag {t} acked twice");
                }
            }
            Ok(())
        };
        for event in events {
            match *event {
                Event::Finish(i) | Event::Nack(i) if i >= n => {}
                Event::Finish(i) => {
                    if !nacked.contains(&tags[i]) {
                        finished.insert(tags[i]);
                        window.finished(tags[i], now);
                    }
                }
                Event::Nack(i) => {
                    let tag = tags[i];
                    if !finished.contains(&tag) && nacked.insert(tag) {
                        broker.unacked.remove(&tag);
                        window.gone(tag);
                    }
                }
                Event::Take { release } => {
                    let due = window.take(release, now);
                    apply(due, &mut broker, &mut acked, &finished)?;
                }
            }
        }
        // Everything not yet settled finishes, in order; then all finished is acked.
        for &tag in &tags {
            if !finished.contains(&tag) && !nacked.contains(&tag) {
                finished.insert(tag);
                window.finished(tag, now);
            }
        }
        let due = window.take(false, now);
        apply(due, &mut broker, &mut acked, &finished)?;
        prop_assert_eq!(&acked, &finished, "every finished delivery acked once");
        prop_assert!(broker.unacked.is_empty());
        prop_assert!(acked.is_disjoint(&nacked));
        Ok(())
    }

    fn event(n: usize) -> impl Strategy<Value = Event> {
        prop_oneof![
            6 => (0..n).prop_map(Event::Finish),
            1 => (0..n).prop_map(Event::Nack),
            3 => any::<bool>().prop_map(|release| Event::Take { release }),
        ]
    }

    proptest! {
        #[test]
        fn a_multiple_ack_never_covers_an_unfinished_delivery_and_all_finished_are_acked(
            (n, events) in (1usize..40).prop_flat_map(|n| (Just(n), prop::collection::vec(event(n), 0..120))),
            gaps in any::<bool>(),
        ) {
            drive(n, gaps, &events)?;
        }
    }

    #[test]
    fn the_front_run_goes_in_one_multiple_ack() {
        let now = Instant::now();
        let mut window = Window::default();
        for tag in 1..=5 {
            window.arrived(tag);
        }
        window.finished(2, now);
        window.finished(1, now);
        window.gone(3);
        window.finished(5, now);
        let due = window.take(false, now);
        assert_eq!(due.multiple, Some((2, 2)));
        assert!(due.single.is_empty(), "5 waits behind 4");
        assert!(!window.overdue(now, 100));
        assert!(window.overdue(now + HOLD, 100), "held for HOLD");
        assert!(window.overdue(now, 1), "the prefetch share is full");
        let due = window.take(true, now);
        assert_eq!(
            due,
            Due {
                multiple: None,
                single: vec![5]
            }
        );
        window.finished(4, now);
        // 4 is the last unacked one: a multiple ack may name it (5 is acked already).
        assert_eq!(window.take(false, now).multiple, Some((4, 1)));
        assert_eq!(window.deadline(), None);
    }
}
