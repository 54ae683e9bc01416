//! Pass codes: Argon2 verification off the async runtime, and hashing for the demo
//! data.
//!
//! Verification always costs one Argon2 run, whether or not the identifier exists, so
//! response times do not reveal which identifiers are known.
//!
//! Each run takes tens of milliseconds of CPU and 19 MiB of memory, so at most one run
//! per core happens at once ([`VERIFIERS`]): a burst of pass-code requests queues here
//! instead of multiplying the worker's memory and starving its other requests of CPU.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use std::sync::LazyLock;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::error::Error;
use crate::secret::Secret;

/// What an unknown identifier (or one without a pass code) is verified against: a hash,
/// with the crate's default parameters, of a string no pass code can equal. Its salt is
/// fixed, which is harmless because nothing real is hashed with it.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY";

/// Permits for Argon2 runs in flight: one per core.
static VERIFIERS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// Whether `pass_code` matches `stored` (an Argon2 PHC string). With no stored hash it
/// verifies against [`DUMMY_HASH`] and answers `false`, taking the same time.
///
/// A stored hash that does not parse is logged and treated like a missing one:
/// answering anything else would tell the caller that the identifier exists.
pub(super) async fn verify(stored: Option<String>, pass_code: &Secret) -> Result<bool, Error> {
    let pass_code = pass_code.clone();
    // The semaphore is never closed, so acquiring cannot fail.
    let _permit = VERIFIERS.acquire().await.map_err(|err| {
        Error::Internal(anyhow::Error::new(err).context("pass code verifiers closed"))
    })?;
    tokio::task::spawn_blocking(move || {
        let stored = stored.as_deref().and_then(|hash| match PasswordHash::new(hash) {
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
        let matches = Argon2::default()
            .verify_password(pass_code.expose().as_bytes(), &target)
            .is_ok();
        known && matches
    })
    .await
    .map_err(|err| {
        Error::Internal(anyhow::Error::new(err).context("pass code verification failed"))
    })
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
}
