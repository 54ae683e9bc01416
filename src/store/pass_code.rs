//! Pass codes: Argon2 verification off the async runtime, and hashing for the demo
//! data.
//!
//! Verification always costs one Argon2 run, whether or not the identifier exists, so
//! response times do not reveal which identifiers are known.
//!
//! Each run takes tens of milliseconds of CPU and 19 MiB of memory, so runs happen on
//! one long-lived thread per core ([`VERIFIERS`]): a burst of pass-code requests queues
//! here instead of multiplying the worker's memory and starving its other requests.

use argon2::password_hash::Output;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::{mpsc, Arc, LazyLock, Mutex};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::Error;
use crate::secret::Secret;

/// What an unknown identifier (or one without a pass code) is verified against: a hash,
/// with the crate's default parameters, of a string no pass code can equal. Its salt is
/// fixed, which is harmless because nothing real is hashed with it.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY";

/// A verification for the [`VERIFIERS`] threads: the stored hash, the pass code, and
/// where the answer goes.
type Job = (Option<String>, Secret, oneshot::Sender<bool>);

/// One long-lived thread per core runs every Argon2 verification. Long-lived matters:
/// each run allocates 19 MiB, and short-lived blocking threads each left that much in
/// an allocator arena of their own (peak RSS 290 MiB in the benchmark).
static VERIFIERS: LazyLock<Option<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut started = 0;
    for n in 0..threads {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new()
            .name(format!("argon2-{n}"))
            .spawn(move || {
                lower_priority();
                let mut blocks = Vec::new();
                loop {
                    // A poisoned lock means another verifier panicked mid-recv: go on.
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    let Ok((stored, pass_code, answer)) = job else {
                        return;
                    };
                    let _ = answer.send(matches(stored.as_deref(), &pass_code, &mut blocks));
                }
            });
        match spawned {
            Ok(_) => started += 1,
            Err(err) => tracing::error!(error = %err, "cannot start a pass-code verifier thread"),
        }
    }
    (started > 0).then_some(tx)
});

/// Gives the calling verifier thread the lowest scheduling priority (nice 19).
///
/// Worker, broker and database share few cores, and an Argon2 run holds a core for
/// tens of milliseconds: at normal priority the kernel gave it fair turns with the
/// runtime threads, and every other request in flight waited behind it (open-loop p99
/// 24.5 ms with 0.1 % pass-code requests, 6.8 ms without). At nice 19 the runtime
/// threads preempt it as soon as they have work, and it runs in the CPU time they leave.
fn lower_priority() {
    if let Err(err) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        tracing::warn!(error = %err, "cannot lower the priority of a pass-code verifier thread");
    }
}

/// Whether `pass_code` matches `stored` (an Argon2 PHC string). With no stored hash it
/// verifies against [`DUMMY_HASH`] and answers `false`, taking the same time.
///
/// A stored hash that does not parse is logged and treated like a missing one:
/// answering anything else would tell the caller that the identifier exists.
pub(super) async fn verify(stored: Option<String>, pass_code: &Secret) -> Result<bool, Error> {
    let unavailable =
        || Error::Internal(anyhow::anyhow!("no pass-code verifier thread is running"));
    let verifiers = VERIFIERS.as_ref().ok_or_else(unavailable)?;
    let (answer, verdict) = oneshot::channel();
    verifiers
        .send((stored, pass_code.clone(), answer))
        .map_err(|_| unavailable())?;
    verdict.await.map_err(|_| unavailable())
}

/// The Argon2 run itself: CPU-heavy, called on a verifier thread, whose Argon2 memory
/// (`blocks`) is allocated once and reused run after run.
fn matches(stored: Option<&str>, pass_code: &Secret, blocks: &mut Vec<Block>) -> bool {
    let stored = stored.and_then(|hash| match PasswordHash::new(hash) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            tracing::warn!(error = %err, "a stored pass_code_hash is not an Argon2 PHC string");
            None
        }
    });
    let known = stored.is_some();
    let target = match stored {
        Some(parsed) => parsed,
        None => match PasswordHash::new(DUMMY_HASH) {
            Ok(parsed) => parsed,
            // Cannot happen (a unit test parses it); failing closed is still right.
            Err(_) => return false,
        },
    };
    let verified = verify_into(pass_code.expose().as_bytes(), &target, blocks).unwrap_or(false);
    known && verified
}

/// What `PasswordVerifier::verify_password` does, with the caller's memory blocks instead
/// of a fresh 19 MiB allocation per run. `None` when the hash's parameters are unusable.
fn verify_into(pass_code: &[u8], hash: &PasswordHash<'_>, blocks: &mut Vec<Block>) -> Option<bool> {
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(hash).ok()?;
    let expected = hash.hash?;
    let mut salt = [0u8; 64];
    let salt = hash.salt?.decode_b64(&mut salt).ok()?;
    let count = params.block_count();
    if blocks.len() < count {
        blocks.resize(count, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(pass_code, salt, &mut out, &mut blocks[..count])
        .ok()?;
    // `Output` compares in constant time.
    Some(Output::new(&out).ok()? == expected)
}

/// An Argon2id PHC string of `pass_code` with the crate's default parameters and a
/// random salt. CPU-heavy: call it from blocking code.
pub(super) fn hash(pass_code: &str) -> anyhow::Result<String> {
    // A v4 UUID is 16 random bytes from the OS generator: a sound salt.
    let salt = SaltString::encode_b64(Uuid::new_v4().as_bytes())
        .map_err(|err| anyhow::anyhow!("could not encode a salt: {err}"))?;
    let hash = Argon2::default()
        .hash_password(pass_code.as_bytes(), &salt)
        .map_err(|err| anyhow::anyhow!("could not hash a pass code: {err}"))?;
    Ok(hash.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn reused_memory_verifies_exactly_as_the_argon2_crate_does() {
        use argon2::password_hash::PasswordVerifier as _;
        let mut blocks = Vec::new();
        let light = Params::new(64, 1, 1, None).unwrap();
        let light = Argon2::new(Algorithm::Argon2i, Version::V0x10, light)
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
                let ours = verify_into(code.as_bytes(), &parsed, &mut blocks).unwrap();
                assert_eq!(ours, expected, "{stored} / {code}");
            }
        }
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_never_verifies() {
        let stored = "$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtc2FsdA$bm90LWEtaGFzaA".to_owned();
        assert!(!verify(Some(stored), &Secret::new("1234")).await.unwrap());
    }
}
