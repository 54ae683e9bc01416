//! The verifier threads: one long-lived thread per core runs every Argon2
//! verification ([`VERIFIERS`]), each through its helper process when there is one
//! ([`Verifier`]).

use std::sync::{mpsc, Arc, LazyLock, Mutex};
use std::time::Instant;

use argon2::Block;
use tokio::sync::oneshot;

use super::hashing::{check, Verdict};
use super::helper::{lower_priority, Helper, HELPER, HELPER_RETRY};
use crate::error::Error;
use crate::secret::Secret;

/// A verification for the [`VERIFIERS`] threads: the stored hash, the pass code, and
/// where the answer goes.
type Job = (Option<String>, Secret, oneshot::Sender<bool>);

/// One long-lived thread per core runs every Argon2 verification. Long-lived matters:
/// each run allocates 19 MiB, and short-lived blocking threads each left that much in
/// an allocator arena of their own (peak RSS 290 MiB in the benchmark).
static VERIFIERS: LazyLock<Option<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    // Every CPU the process was given (by the kernel, a container's cpuset or taskset).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut started = 0;
    for n in 0..threads {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new()
            .name(format!("argon2-{n}"))
            .spawn(move || {
                lower_priority();
                let mut verifier = Verifier::default();
                loop {
                    // A poisoned lock means another verifier panicked mid-recv: go on.
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    let Ok((stored, pass_code, answer)) = job else {
                        return;
                    };
                    let verdict = verifier.run(stored.as_deref(), &pass_code);
                    if verdict == Verdict::Unreadable {
                        // The caller checked the bounds ([`bounds::usable`]), so this is
                        // a hash whose memory could not be allocated (or a caller that
                        // did not check): answered as a mismatch.
                        tracing::warn!("a stored pass_code_hash could not be computed");
                    }
                    let _ = answer.send(verdict == Verdict::Match);
                }
            });
        match spawned {
            Ok(_) => started += 1,
            Err(err) => tracing::error!(error = %err, "cannot start a pass-code verifier thread"),
        }
    }
    (started > 0).then_some(tx)
});

/// One run on the [`VERIFIERS`] threads.
pub(super) async fn run(stored: Option<String>, pass_code: &Secret) -> Result<bool, Error> {
    let unavailable =
        || Error::Internal(anyhow::anyhow!("no pass-code verifier thread is running"));
    let verifiers = VERIFIERS.as_ref().ok_or_else(unavailable)?;
    let (answer, verdict) = oneshot::channel();
    verifiers
        .send((stored, pass_code.clone(), answer))
        .map_err(|_| unavailable())?;
    verdict.await.map_err(|_| unavailable())
}

/// One verifier thread's way of running verifications: through its helper process
/// when there is one, else itself.
#[derive(Default)]
struct Verifier {
    helper: Option<Helper>,
    /// No new helper before this instant (after a failed start).
    retry_at: Option<Instant>,
    /// Argon2 memory for the runs this thread does itself.
    blocks: Vec<Block>,
}

impl Verifier {
    fn run(&mut self, stored: Option<&str>, pass_code: &Secret) -> Verdict {
        if let Some(helper) = self.helper() {
            match helper.verify(stored, pass_code) {
                Ok(verdict) => return verdict,
                Err(err) => {
                    tracing::warn!(error = %err, "a pass-code helper failed; verifying in the worker and starting a new helper");
                    self.helper = None;
                }
            }
        }
        check(stored, pass_code.expose().as_bytes(), &mut self.blocks)
    }

    /// The running helper, started if needed and allowed.
    fn helper(&mut self) -> Option<&mut Helper> {
        let exe = HELPER.get()?;
        if self.helper.is_none() && self.retry_at.is_none_or(|at| Instant::now() >= at) {
            match Helper::start(exe) {
                Ok(helper) => {
                    self.helper = Some(helper);
                    self.retry_at = None;
                }
                Err(err) => {
                    tracing::warn!(error = %err, helper = %exe.display(), "cannot start a pass-code helper; verifying in the worker");
                    self.retry_at = Some(Instant::now() + HELPER_RETRY);
                }
            }
        }
        self.helper.as_mut()
    }
}
