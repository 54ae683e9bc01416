//! Which stored Argon2 hashes are data the worker will compute (docs/protocol.md §13):
//! the one place that decides it, for `import` on the way in and for the worker (and
//! its helper processes) on the way out.
//!
//! An Argon2 PHC string carries its own cost. Unchecked, one row could make a worker
//! allocate 4 TiB (`m=4294967295`: the allocation fails and the process aborts) or
//! hold a verifier thread for hours (a huge `t`), and every worker that takes the
//! redelivered request after it would do the same. So a hash is computed only within
//! these bounds, which hold the worker's own hashes (Argon2id, 19 MiB, 2 iterations,
//! 1 lane), RFC 9106's second recommended setting (64 MiB, 3, 4) and OWASP's first
//! (19 MiB, 2, 1); its most expensive one then costs about 70 times the worker's own:
//!
//! | | accepted |
//! |---|---|
//! | algorithm | `argon2id`, `argon2i`, `argon2d` |
//! | version | `v=19` (written out) |
//! | memory `m` | 8,192 to 262,144 KiB (8 MiB to 256 MiB) |
//! | iterations `t` | 1 to 10 |
//! | parallelism `p` | 1 to 8 |
//! | other parameters (`keyid`, `data`) | none |
//! | salt | 8 to 48 bytes |
//! | hash | 10 to 64 bytes |
//! | the whole string | at most 512 characters |

use std::fmt;
use std::ops::RangeInclusive;

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Params, Version};

/// Memory cost in KiB: 8 MiB to 256 MiB.
pub const MEMORY_KIB: RangeInclusive<u32> = 8 * 1024..=256 * 1024;
/// Iterations.
pub const ITERATIONS: RangeInclusive<u32> = 1..=10;
/// Lanes.
pub const PARALLELISM: RangeInclusive<u32> = 1..=8;
/// Salt bytes: Argon2's minimum, up to the most a PHC salt holds (64 base64 digits).
pub const SALT_BYTES: RangeInclusive<usize> = 8..=48;
/// Hash bytes: what a PHC string's hash field holds.
pub const HASH_BYTES: RangeInclusive<usize> = Output::MIN_LENGTH..=Output::MAX_LENGTH;
/// The longest string parsed at all: an accepted one is under 200 characters, and a
/// longer one is refused before the parser walks it.
pub const MAX_CHARS: usize = 512;

/// A stored hash within the bounds, ready to compute.
#[derive(Debug)]
pub struct Usable {
    /// Argon2id, Argon2i or Argon2d.
    pub algorithm: Algorithm,
    /// Always 0x13 (19).
    pub version: Version,
    /// `m`, `t`, `p` and the hash's length.
    pub params: Params,
    /// The salt's bytes (the first `salt_len` of them).
    salt: [u8; 64],
    salt_len: usize,
    /// The hash to compare with (constant-time on `==`).
    pub expected: Output,
}

impl Usable {
    /// The salt's bytes.
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.salt_len]
    }
}

/// Why a stored hash is outside the bounds. Its text names the bound, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfBounds {
    /// Not a PHC string with a salt and a hash, or longer than [`MAX_CHARS`].
    NotPhc,
    /// Not `argon2id`, `argon2i` or `argon2d`.
    Algorithm,
    /// Not `v=19`.
    Version,
    /// `m` missing or outside [`MEMORY_KIB`].
    Memory,
    /// `t` missing or outside [`ITERATIONS`].
    Iterations,
    /// `p` missing or outside [`PARALLELISM`].
    Parallelism,
    /// A parameter other than `m`, `t` and `p`, or one of them twice or not a number.
    Parameter,
    /// A salt outside [`SALT_BYTES`].
    Salt,
    /// A hash outside [`HASH_BYTES`].
    Hash,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, t, p) = (&MEMORY_KIB, &ITERATIONS, &PARALLELISM);
        match self {
            OutOfBounds::NotPhc => write!(
                f,
                "not an Argon2 PHC string of at most {MAX_CHARS} characters with parameters, salt and hash"
            ),
            OutOfBounds::Algorithm => f.write_str("the algorithm is not argon2id, argon2i or argon2d"),
            OutOfBounds::Version => f.write_str("the version is not v=19"),
            OutOfBounds::Memory => write!(
                f,
                "the memory cost m is not within {} to {} KiB",
                m.start(),
                m.end()
            ),
            OutOfBounds::Iterations => write!(
                f,
                "the iterations t are not within {} to {}",
                t.start(),
                t.end()
            ),
            OutOfBounds::Parallelism => write!(
                f,
                "the parallelism p is not within {} to {}",
                p.start(),
                p.end()
            ),
            OutOfBounds::Parameter => {
                f.write_str("the parameters are not exactly m, t and p, each a number")
            }
            OutOfBounds::Salt => write!(
                f,
                "the salt is not {} to {} bytes",
                SALT_BYTES.start(),
                SALT_BYTES.end()
            ),
            OutOfBounds::Hash => write!(
                f,
                "the hash is not {} to {} bytes",
                HASH_BYTES.start(),
                HASH_BYTES.end()
            ),
        }
    }
}

/// `stored` as a hash to compute, if it is within the bounds. Cheap (no Argon2 run):
/// fit for the async runtime.
pub fn usable(stored: &str) -> Result<Usable, OutOfBounds> {
    if stored.len() > MAX_CHARS {
        return Err(OutOfBounds::NotPhc);
    }
    let hash = PasswordHash::new(stored).map_err(|_| OutOfBounds::NotPhc)?;
    let algorithm = Algorithm::try_from(hash.algorithm).map_err(|_| OutOfBounds::Algorithm)?;
    let version = match hash.version {
        Some(19) => Version::V0x13,
        _ => return Err(OutOfBounds::Version),
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for (name, value) in hash.params.iter() {
        let slot = match name.as_str() {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            _ => return Err(OutOfBounds::Parameter),
        };
        let value = value.decimal().map_err(|_| OutOfBounds::Parameter)?;
        if slot.replace(value).is_some() {
            return Err(OutOfBounds::Parameter);
        }
    }
    let m = m
        .filter(|m| MEMORY_KIB.contains(m))
        .ok_or(OutOfBounds::Memory)?;
    let t = t
        .filter(|t| ITERATIONS.contains(t))
        .ok_or(OutOfBounds::Iterations)?;
    let p = p
        .filter(|p| PARALLELISM.contains(p))
        .ok_or(OutOfBounds::Parallelism)?;
    let mut salt = [0u8; 64];
    let salt_len = hash
        .salt
        .ok_or(OutOfBounds::NotPhc)?
        .decode_b64(&mut salt)
        .map_err(|_| OutOfBounds::Salt)?
        .len();
    if !SALT_BYTES.contains(&salt_len) {
        return Err(OutOfBounds::Salt);
    }
    let expected = hash.hash.ok_or(OutOfBounds::NotPhc)?;
    if !HASH_BYTES.contains(&expected.len()) {
        return Err(OutOfBounds::Hash);
    }
    // Within the bounds above Argon2 accepts every combination; refusing is still
    // safer than trusting that.
    let params = Params::new(m, t, p, Some(expected.len())).map_err(|_| OutOfBounds::Parameter)?;
    Ok(Usable {
        algorithm,
        version,
        params,
        salt,
        salt_len,
        expected,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    use argon2::Argon2;

    /// A PHC string of `algorithm` with these parameters, hashed for real.
    fn phc(algorithm: Algorithm, m: u32, t: u32, p: u32) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::new(
            algorithm,
            Version::V0x13,
            Params::new(m, t, p, None).unwrap(),
        )
        .hash_password(b"1234", &salt)
        .unwrap()
        .to_string()
    }

    const SALT_AND_HASH: &str =
        "dHVjYW5vLWF1dGgtZHVtbXk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG+LC1FHprhOY";

    fn with(head: &str) -> String {
        format!("{head}${SALT_AND_HASH}")
    }

    #[test]
    fn the_workers_rfc_9106_and_owasp_settings_are_within() {
        assert!(usable(&crate::store::pass_code::hash("1234").unwrap()).is_ok());
        // RFC 9106 section 4, the second recommended option; OWASP's first.
        assert!(usable(&phc(Algorithm::Argon2id, 64 * 1024, 3, 4)).is_ok());
        assert!(usable(&phc(Algorithm::Argon2id, 19 * 1024, 2, 1)).is_ok());
        for algorithm in ["argon2id", "argon2i", "argon2d"] {
            assert!(usable(&with(&format!("${algorithm}$v=19$m=8192,t=1,p=1"))).is_ok());
            assert!(usable(&with(&format!("${algorithm}$v=19$m=262144,t=10,p=8"))).is_ok());
        }
    }

    #[test]
    fn hostile_and_garbage_hashes_are_out() {
        let cases = [
            ("$argon2id$v=19$m=4294967295,t=1,p=1", OutOfBounds::Memory),
            ("$argon2id$v=19$m=262145,t=1,p=1", OutOfBounds::Memory),
            ("$argon2id$v=19$m=8191,t=1,p=1", OutOfBounds::Memory),
            ("$argon2id$v=19$t=1,p=1", OutOfBounds::Memory),
            (
                "$argon2id$v=19$m=19456,t=4294967295,p=1",
                OutOfBounds::Iterations,
            ),
            ("$argon2id$v=19$m=19456,t=11,p=1", OutOfBounds::Iterations),
            ("$argon2id$v=19$m=19456,t=0,p=1", OutOfBounds::Iterations),
            ("$argon2id$v=19$m=19456,t=2,p=0", OutOfBounds::Parallelism),
            ("$argon2id$v=19$m=19456,t=2,p=9", OutOfBounds::Parallelism),
            (
                "$argon2id$v=19$m=19456,t=2,p=16777215",
                OutOfBounds::Parallelism,
            ),
            ("$argon2id$v=19$m=19456,t=2,p=1,x=1", OutOfBounds::Parameter),
            (
                "$argon2id$v=19$m=19456,t=2,p=1,keyid=AAAA",
                OutOfBounds::Parameter,
            ),
            ("$argon2id$v=19$m=lots,t=2,p=1", OutOfBounds::Parameter),
            ("$argon2id$v=16$m=19456,t=2,p=1", OutOfBounds::Version),
            ("$argon2id$m=19456,t=2,p=1", OutOfBounds::Version),
            ("$argon2x$v=19$m=19456,t=2,p=1", OutOfBounds::Algorithm),
            ("$scrypt$v=19$m=19456,t=2,p=1", OutOfBounds::Algorithm),
        ];
        for (head, why) in cases {
            assert_eq!(usable(&with(head)).err(), Some(why), "{head}");
        }
        let head = "$argon2id$v=19$m=19456,t=2,p=1";
        assert_eq!(usable(head).err(), Some(OutOfBounds::NotPhc));
        assert_eq!(
            usable(&format!("{head}$c2FsdHk$ZR5YvFeQ5SbhdHZo4GJy5fR5uR1LR9CG")).err(),
            Some(OutOfBounds::Salt)
        );
        assert_eq!(
            usable(&format!("{head}${}", "A".repeat(MAX_CHARS))).err(),
            Some(OutOfBounds::NotPhc)
        );
        assert!(usable("$argon2id$nonsense").is_err());
        assert_eq!(usable("").err(), Some(OutOfBounds::NotPhc));
    }

    #[test]
    fn reasons_name_the_bound_not_the_value() {
        let why = usable(&with("$argon2id$v=19$m=4294967295,t=1,p=1")).unwrap_err();
        assert_eq!(
            why.to_string(),
            "the memory cost m is not within 8192 to 262144 KiB"
        );
    }
}
