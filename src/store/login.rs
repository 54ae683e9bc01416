//! Step 5 of the order of checks (docs/protocol.md §3): is the login token valid?
//! (docs/protocol.md §4).
//!
//! A token of 32 hex digits is found by the SHA-256 of its upper-cased ASCII form; a
//! JWT is verified with `CRM_TOKEN_SECRET` and found by its `jti`. Either way the
//! lookup statement (`lookup.rs`) reads the session joined with its API user.
//! Messages say why a token was refused but never echo it.

use std::fmt;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::lookup::{SessionKey, SessionRow};
use crate::error::Error;
use crate::secret::Secret;

/// The checks of a login token that need no database: its form, and for a JWT its
/// signature (with any of `crm_token_keys`), claims and `exp`. Gives the key of
/// its session.
pub(super) fn session_key(
    crm_token_keys: &[DecodingKey],
    token: &Secret,
    now: DateTime<Utc>,
) -> Result<SessionKey, Error> {
    let token = token.expose();
    if is_hex_token(token) {
        let digest = Sha256::digest(token.to_ascii_uppercase().as_bytes());
        Ok(SessionKey::TokenSha256(digest.to_vec()))
    } else if is_jwt_shaped(token) {
        // Any of the keys: the CRM rotates its secret by signing with a new one
        // while the old one is still accepted.
        let mut verdict = Err(Error::InvalidToken(
            "login tokens in JWT form are not accepted by this service",
        ));
        for key in crm_token_keys {
            verdict = decode_jwt(token, key);
            if verdict.is_ok() {
                break;
            }
        }
        let (session_id, exp) = verdict?;
        if exp <= now.timestamp() {
            return Err(Error::TokenExpired("the login token has expired"));
        }
        Ok(SessionKey::Id(session_id))
    } else {
        Err(Error::InvalidToken(
            "the login token is neither 32 hex digits nor a JWT",
        ))
    }
}

/// The session checks on what the lookup found at time `now`, in the documented
/// order (docs/protocol.md §4); the token's own checks are [`session_key`]'s.
///
/// A token of 32 hex digits (any case) names the `sessions` row whose
/// `token_sha256` is the SHA-256 of the upper-cased token; a JWT (three base64url
/// parts) must be HS256-signed with `CRM_TOKEN_SECRET`, carry `jti` (the session
/// id), `usr`, `org`, `exp` and `iat` (`exp` and `iat` as numbers or numeric
/// strings) and not be past `exp`, and then names the session whose `id` is `jti`.
/// Anything else is [`Error::InvalidToken`].
///
/// When several faults apply, the first of these is reported: malformed token or
/// bad signature (`INVALID_TOKEN`), JWT past `exp` (`TOKEN_EXPIRED`), no such
/// session (`INVALID_TOKEN`), session released (`INVALID_TOKEN`), session expired
/// (`TOKEN_EXPIRED`), API user not `ACTIVE` (`INVALID_TOKEN`). Times are compared
/// without leeway: a token is valid while `now` is before its expiry.
pub(super) fn check_session(session: Option<SessionRow>, now: DateTime<Utc>) -> Result<(), Error> {
    let session = session.ok_or(Error::InvalidToken("the login token is not known"))?;
    if session.released_at.is_some() {
        return Err(Error::InvalidToken(
            "the login token's session has been released",
        ));
    }
    if session.expires_at <= now {
        return Err(Error::TokenExpired("the login token's session has expired"));
    }
    if session.user_state != "ACTIVE" {
        return Err(Error::InvalidToken(
            "the login token's API user is not ACTIVE",
        ));
    }
    Ok(())
}

/// The pre-R12 form: 32 hex digits.
fn is_hex_token(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The R12 form: three non-empty base64url parts separated by dots.
fn is_jwt_shaped(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        let base64url = part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if part.is_empty() || !base64url {
            return false;
        }
    }
    parts == 3
}

/// The claims of a CRM login token in JWT form.
#[derive(Deserialize)]
struct Claims {
    jti: String,
    // Required, but the worker has no use for them: the session names the user.
    #[serde(rename = "usr")]
    _usr: IgnoredAny,
    #[serde(rename = "org")]
    _org: IgnoredAny,
    #[serde(deserialize_with = "seconds")]
    exp: i64,
    #[serde(rename = "iat", deserialize_with = "seconds")]
    _iat: i64,
}

impl Claims {
    /// `jti` as a session id: 32 hex digits or a hyphenated UUID.
    fn session_id(&self) -> Result<Uuid, Error> {
        let invalid = Error::InvalidToken("the login token's jti is not a session id");
        if !matches!(self.jti.len(), 32 | 36) {
            return Err(invalid);
        }
        Uuid::try_parse(&self.jti).map_err(|_| invalid)
    }
}

/// Verifies the signature (HS256 only) and decodes the claims into the session id
/// and `exp`. `exp` is checked by the caller against its own clock, since the library
/// neither takes numeric strings nor a caller's time.
fn decode_jwt(token: &str, key: &DecodingKey) -> Result<(Uuid, i64), Error> {
    if jsonwebtoken::decode_header(token).is_err() {
        return Err(Error::InvalidToken(
            "the login token is not a well-formed JWT",
        ));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map_err(|err| match err.kind() {
            ErrorKind::InvalidSignature => {
                Error::InvalidToken("the login token's signature does not verify")
            }
            ErrorKind::InvalidAlgorithm => {
                Error::InvalidToken("the login token is not signed with HS256")
            }
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => Error::InvalidToken(
                "the login token's claims are malformed: jti, usr, org, exp and iat are required",
            ),
            _ => Error::InvalidToken("the login token is not a well-formed JWT"),
        })?
        .claims;
    Ok((claims.session_id()?, claims.exp))
}

/// Seconds since the epoch, given as a JSON number or a numeric string.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Seconds;

    impl Visitor<'_> for Seconds {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("seconds since the epoch, as a number or a numeric string")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value).map_err(|_| E::custom("seconds out of range"))
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<i64, E> {
            // Beyond ±2^53 a float no longer holds whole seconds exactly; refuse it.
            if value.is_finite() && value.abs() < 9_007_199_254_740_992.0 {
                Ok(value.trunc() as i64)
            } else {
                Err(E::custom("seconds out of range"))
            }
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<i64, E> {
            match value.parse::<i64>() {
                Ok(seconds) => Ok(seconds),
                Err(_) => match value.parse::<f64>() {
                    Ok(seconds) => self.visit_f64(seconds),
                    Err(_) => Err(E::custom("not a numeric string")),
                },
            }
        }
    }

    deserializer.deserialize_any(Seconds)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes_are_told_apart() {
        assert!(is_hex_token("35108255345D4F98ABFD7810A08E432F"));
        assert!(is_hex_token("35108255345d4f98abfd7810a08e432f"));
        assert!(!is_hex_token("35108255345D4F98ABFD7810A08E432"));
        assert!(!is_hex_token("35108255345D4F98ABFD7810A08E432G"));
        assert!(is_jwt_shaped("eyJh.eyJl.Fg-_"));
        assert!(!is_jwt_shaped("eyJh.eyJl."));
        assert!(!is_jwt_shaped("eyJh.eyJl"));
        assert!(!is_jwt_shaped("a.b.c.d"));
        assert!(!is_jwt_shaped("a.b+.c"));
    }

    #[test]
    fn seconds_accept_numbers_and_numeric_strings() {
        let parse = |json: &str| seconds(&mut serde_json::Deserializer::from_str(json));
        assert_eq!(parse("1478251931").unwrap(), 1_478_251_931);
        assert_eq!(parse("\"1478251931\"").unwrap(), 1_478_251_931);
        assert_eq!(parse("1478251931.7").unwrap(), 1_478_251_931);
        assert_eq!(parse("\"1478251931.0\"").unwrap(), 1_478_251_931);
        assert!(parse("\"soon\"").is_err());
        assert!(parse("\"NaN\"").is_err());
        assert!(parse("true").is_err());
        assert!(parse("18446744073709551615").is_err());
    }
}
