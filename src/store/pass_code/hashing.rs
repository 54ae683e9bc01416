//! The Argon2 work itself: a verification with reused memory ([`verify_into`]), the
//! constant-time [`check`] that verifies a missing or unusable hash against
//! [`DUMMY_HASH`], and [`hash`] for new pass codes.

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Argon2, Block, Params};
use uuid::Uuid;

use super::bounds;

/// What an unknown identifier (or one without a pass code) is verified against: a hash,
/// with the crate's default parameters, of a string no pass code can equal. Its salt is
/// fixed, which is harmless because nothing real is hashed with it.
pub(super) const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY";

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The pass code matches the stored hash.
    Match,
    /// It does not, or there is no stored hash.
    Mismatch,
    /// The stored hash is outside the [`bounds`] or could not be computed: answered
    /// like a mismatch (anything else would tell the caller that the identifier
    /// exists), and logged.
    Unreadable,
}

/// The Argon2 run itself: CPU-heavy, called on a verifier thread or in a helper,
/// whose Argon2 memory (`blocks`) is allocated once and reused run after run. With no
/// stored hash, or one it cannot compute (outside the [`bounds`]), it verifies against
/// [`DUMMY_HASH`], taking the same time. The bounds are checked here too, whatever the
/// caller did: this is where an unchecked hash would abort the process.
pub(super) fn check(stored: Option<&str>, pass_code: &[u8], blocks: &mut Vec<Block>) -> Verdict {
    let verdict = match stored.map(|stored| verify_into(pass_code, stored, blocks)) {
        Some(Some(true)) => return Verdict::Match,
        Some(Some(false)) => return Verdict::Mismatch,
        Some(None) => Verdict::Unreadable,
        None => Verdict::Mismatch,
    };
    // The time of one verification, whose answer cannot be a match.
    let _ = verify_into(pass_code, DUMMY_HASH, blocks);
    verdict
}

/// What `PasswordVerifier::verify_password` does, with the caller's memory blocks instead
/// of a fresh 19 MiB allocation per run. `None`, without computing anything, when
/// `stored` is outside the [`bounds`]; `None` too when its memory cannot be allocated
/// (a failed allocation is an answer, not an abort).
pub(crate) fn verify_into(pass_code: &[u8], stored: &str, blocks: &mut Vec<Block>) -> Option<bool> {
    let hash = bounds::usable(stored).ok()?;
    let count = hash.params.block_count();
    if blocks.len() < count {
        blocks.try_reserve_exact(count - blocks.len()).ok()?;
        blocks.resize(count, Block::default());
    }
    let mut out = [0u8; argon2::password_hash::Output::MAX_LENGTH];
    let out = &mut out[..hash.expected.len()];
    let computed = Argon2::new(hash.algorithm, hash.version, hash.params.clone())
        .hash_password_into_with_memory(pass_code, hash.salt(), out, &mut blocks[..count]);
    // Memory beyond the worker's own parameters (up to 256 MiB) is given back rather
    // than kept by a long-lived thread for the next run, which most likely needs less.
    if blocks.len() > Params::DEFAULT_M_COST as usize {
        blocks.truncate(Params::DEFAULT_M_COST as usize);
        blocks.shrink_to_fit();
    }
    computed.ok()?;
    // `Output` compares in constant time.
    Some(argon2::password_hash::Output::new(out).ok()? == hash.expected)
}

/// An Argon2id PHC string of `pass_code` with the crate's default parameters and a
/// random salt. CPU-heavy: call it from blocking code.
pub fn hash(pass_code: &str) -> anyhow::Result<String> {
    // A v4 UUID is 16 random bytes from the OS generator: a sound salt.
    let salt = SaltString::encode_b64(Uuid::new_v4().as_bytes())
        .map_err(|err| anyhow::anyhow!("could not encode a salt: {err}"))?;
    let hash = Argon2::default()
        .hash_password(pass_code.as_bytes(), &salt)
        .map_err(|err| anyhow::anyhow!("could not hash a pass code: {err}"))?;
    Ok(hash.to_string())
}
