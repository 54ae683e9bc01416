//! Pass codes: Argon2 verification off the async runtime, and hashing for the demo
//! data.
//!
//! Verification always costs one Argon2 run, whether or not the identifier exists, so
//! response times do not reveal which identifiers are known.
//!
//! Each run takes tens of milliseconds of CPU and 19 MiB of memory, so runs are queued
//! to one long-lived thread per core (`threads.rs`): a burst of pass-code requests
//! queues here instead of multiplying the worker's memory and starving its other
//! requests.
//!
//! In the `tucano-auth serve` binary each of those threads hands its runs to a helper
//! process of its own ([`use_helper_process`], [`serve_helper`], `helper.rs` with its
//! wire protocol) instead of running
//! them itself: the helper lowers its priority in a scheduling group of its own, which
//! a thread cannot do (see [`serve_helper`]). If a helper cannot be started or dies,
//! the thread runs the verification itself and starts a new helper later.
//!
//! A stored hash is computed only within the bounds of [`bounds`]; any other is
//! verified like a missing one, against a dummy hash (`hashing.rs`), so that no row can make a
//! verification cost more than the most expensive one those bounds allow.
//!
//! [`Backlog`] (`backlog.rs`) bounds how many pass-code requests wait in a worker.

mod backlog;
pub mod bounds;
mod hashing;
mod helper;
mod threads;

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::observe::metrics::PASS_CODES;
use crate::secret::Secret;
use threads::run;

pub use backlog::{Backlog, Place, DEFAULT_BACKLOG};
pub use hashing::hash;
pub(crate) use hashing::verify_into;
pub use helper::{serve_helper, use_helper_process, HELPER_COMMAND};

/// Whether `pass_code` matches `stored` (an Argon2 PHC string). With no stored hash it
/// verifies against a dummy hash (`hashing.rs`) and answers `false`, taking the same time.
///
/// A stored hash outside the [`bounds`] is treated like a missing one (answering
/// anything else would tell the caller that the identifier exists); callers check
/// [`bounds::usable`] first to say which credential holds it.
pub async fn verify(stored: Option<String>, pass_code: &Secret) -> Result<bool, Error> {
    let started = Instant::now();
    let matched = run(stored, pass_code).await?;
    TYPICAL.record(started.elapsed());
    let result = if matched { "match" } else { "mismatch" };
    metrics::counter!(PASS_CODES, "result" => result).increment(1);
    Ok(matched)
}

/// Takes as long as a [`verify`] takes now, for an attempt refused without verifying
/// it (a locked identifier), so its answer comes neither sooner nor later than a
/// verified one's. Not counted in `tucano_auth_pass_code_verifications_total`: no pass
/// code is verified.
///
/// It waits for the recent verifications' typical time, queueing for a verifier
/// included, instead of running one: a flood of tries for a locked identifier then
/// costs no CPU, and does not delay the verifications of other requests. Before the
/// process has measured one, it waits for the first measure ([`measure`]).
pub async fn pretend() {
    match TYPICAL.get() {
        Some(typical) => tokio::time::sleep(typical).await,
        None => measure().await,
    }
}

/// Runs one verification against no stored hash, uncounted, unless one has been
/// measured already, so that [`pretend`] has a time to wait for; the worker calls it at
/// start. Concurrent callers wait for the one that runs it: a burst of refused tries
/// before the first measure costs one verification, not one each.
pub async fn measure() {
    use std::sync::atomic::Ordering;
    let first = FIRST_MEASURE.notified();
    if TYPICAL.get().is_some() {
        return;
    }
    if MEASURING.swap(true, Ordering::AcqRel) {
        first.await;
        return;
    }
    let started = Instant::now();
    if run(None, &Secret::new("")).await.is_ok() {
        TYPICAL.record(started.elapsed());
    }
    MEASURING.store(false, Ordering::Release);
    // Also when the run failed: its waiters then answer at once, as everything does
    // while no verifier runs.
    FIRST_MEASURE.notify_waiters();
}

/// Whether a [`measure`] is running its verification.
static MEASURING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Woken when the first measure is taken, by [`measure`] or by a [`verify`].
static FIRST_MEASURE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// How long a verification takes, from the request's side: a moving average of the
/// latest ones, each weighing 1/8.
static TYPICAL: Typical = Typical(std::sync::atomic::AtomicU64::new(0));

/// Nanoseconds, 0 before the first measure.
struct Typical(std::sync::atomic::AtomicU64);

impl Typical {
    fn record(&self, took: Duration) {
        use std::sync::atomic::Ordering;
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let before = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                Some(match mean {
                    0 => took,
                    mean => mean - mean / 8 + took / 8,
                })
            });
        if before == Ok(0) {
            FIRST_MEASURE.notify_waiters();
        }
    }

    fn get(&self) -> Option<Duration> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    use argon2::{Argon2, Params};

    use super::hashing::{check, Verdict, DUMMY_HASH};
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_pass_code_and_nothing_else() {
        let stored = hash("1234").unwrap();
        assert!(verify(Some(stored.clone()), &Secret::new("1234"))
            .await
            .unwrap());
        assert!(!verify(Some(stored), &Secret::new("4321")).await.unwrap());
    }

    #[tokio::test]
    async fn no_stored_hash_never_verifies() {
        assert!(!verify(None, &Secret::new("")).await.unwrap());
    }

    #[tokio::test]
    async fn a_refused_attempt_takes_about_as_long_as_a_verification() {
        let stored = hash("1234").unwrap();
        assert!(!verify(Some(stored), &Secret::new("0000")).await.unwrap());
        let typical = TYPICAL.get().expect("a measure after a verification");
        let started = Instant::now();
        pretend().await;
        assert!(started.elapsed() >= typical);
    }

    #[test]
    fn the_typical_time_follows_the_latest_verifications() {
        let typical = Typical(std::sync::atomic::AtomicU64::new(0));
        assert_eq!(typical.get(), None);
        typical.record(Duration::from_millis(80));
        assert_eq!(typical.get(), Some(Duration::from_millis(80)));
        for _ in 0..64 {
            typical.record(Duration::from_millis(16));
        }
        let now = typical.get().unwrap();
        assert!(now < Duration::from_millis(17), "{now:?}");
    }

    #[test]
    fn the_dummy_hash_is_within_the_bounds() {
        assert!(bounds::usable(DUMMY_HASH).is_ok());
    }

    #[test]
    fn reused_memory_verifies_exactly_as_the_argon2_crate_does() {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        use argon2::{Algorithm, Version};
        let mut blocks = Vec::new();
        // The least memory the bounds allow, another algorithm, two lanes.
        let light = Params::new(8192, 1, 2, None).unwrap();
        let light = Argon2::new(Algorithm::Argon2i, Version::V0x13, light)
            .hash_password(
                b"light",
                &SaltString::encode_b64(b"salt-salt-salt").unwrap(),
            )
            .unwrap()
            .to_string();
        for stored in [hash("1234").unwrap(), DUMMY_HASH.to_owned(), light] {
            let parsed = PasswordHash::new(&stored).unwrap();
            for code in ["1234", "4321", "", "light"] {
                let expected = Argon2::default()
                    .verify_password(code.as_bytes(), &parsed)
                    .is_ok();
                let ours = verify_into(code.as_bytes(), &stored, &mut blocks).unwrap();
                assert_eq!(ours, expected, "{stored} / {code}");
            }
        }
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_never_verifies() {
        let stored = "$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtc2FsdA$bm90LWEtaGFzaA".to_owned();
        assert!(!verify(Some(stored), &Secret::new("1234")).await.unwrap());
    }

    #[test]
    fn a_hash_outside_the_bounds_is_never_computed_and_answers_in_one_verification() {
        let mut blocks = Vec::new();
        // 4 TiB of memory: computing it would abort the process; an hour of
        // iterations: it would hold the thread. Neither is started.
        for stored in [
            "$argon2id$v=19$m=4294967295,t=1,p=1$dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY",
            "$argon2id$v=19$m=19456,t=4294967295,p=1$dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY",
        ] {
            assert_eq!(verify_into(b"1234", stored, &mut blocks), None);
            assert_eq!(check(Some(stored), b"1234", &mut blocks), Verdict::Unreadable);
        }
        // The dummy run kept the worker's own amount of memory, no more.
        assert_eq!(blocks.len(), Params::DEFAULT_M_COST as usize);
    }

    #[test]
    fn memory_beyond_the_workers_own_is_given_back_after_a_run() {
        let big = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            Params::new(64 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"1234", &SaltString::encode_b64(b"0123456789ab").unwrap())
        .unwrap()
        .to_string();
        let mut blocks = Vec::new();
        assert_eq!(verify_into(b"1234", &big, &mut blocks), Some(true));
        assert!(blocks.capacity() <= Params::DEFAULT_M_COST as usize);
    }
}
