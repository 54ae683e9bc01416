//! The JWT handed to Tucano (contract section 6): HS256, header `{"alg":"HS256","typ":"JWT"}`,
//! claims `exp`, `iat`, `userid` (the subscription number) and `apip`.
//!
//! The time is an argument of [`Signer::sign`], so expiry is testable without waiting.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Shortest accepted `TUCANO_JWT_SECRET`, in bytes (the HS256 key size).
pub const MIN_SECRET_BYTES: usize = 32;

/// The claims of an issued JWT, exactly the contract's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the epoch (`iat` + TTL).
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// The subscription number.
    pub userid: String,
    /// The platform identifier Tucano expects.
    pub apip: String,
}

/// Signs Tucano JWTs with the shared HS256 key.
#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
    header: Header,
    ttl_seconds: i64,
    apip: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &"[redacted]")
            .field("ttl_seconds", &self.ttl_seconds)
            .field("apip", &self.apip)
            .finish()
    }
}

/// Why a signer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The key is shorter than [`MIN_SECRET_BYTES`].
    #[error("TUCANO_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes, it has {0}")]
    ShortSecret(usize),
    /// The TTL is not positive.
    #[error("TUCANO_JWT_TTL_SECONDS must be positive, it is {0}")]
    BadTtl(i64),
}

impl Signer {
    /// A signer for `secret`, issuing tokens valid `ttl_seconds` with claim `apip`.
    pub fn new(secret: &Secret, ttl_seconds: i64, apip: &str) -> Result<Signer, SignerError> {
        let bytes = secret.expose().as_bytes();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SignerError::ShortSecret(bytes.len()));
        }
        if ttl_seconds <= 0 {
            return Err(SignerError::BadTtl(ttl_seconds));
        }
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".to_owned());
        Ok(Signer {
            key: EncodingKey::from_secret(bytes),
            header,
            ttl_seconds,
            apip: apip.to_owned(),
        })
    }

    /// The claims a token for `subscription_number` issued at `now` (epoch seconds) carries.
    pub fn claims(&self, subscription_number: &str, now: i64) -> Claims {
        Claims {
            exp: now.saturating_add(self.ttl_seconds),
            iat: now,
            userid: subscription_number.to_owned(),
            apip: self.apip.clone(),
        }
    }

    /// Signs a token for `subscription_number`, issued at `now` (epoch seconds).
    pub fn sign(
        &self,
        subscription_number: &str,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(
            &self.header,
            &self.claims(subscription_number, now),
            &self.key,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn secret() -> Secret {
        Secret::new("0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn short_secret_is_refused() {
        let err = Signer::new(&Secret::new("short"), 300, "crm.com").unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"));
    }

    #[test]
    fn token_carries_the_contract_header_and_claims() {
        let signer = Signer::new(&secret(), 300, "crm.com").unwrap();
        let jwt = signer.sign("S0000000329", 1_000).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(
            &jwt,
            &DecodingKey::from_secret(secret().expose().as_bytes()),
            &validation,
        )
        .unwrap();
        assert_eq!(data.header.typ.as_deref(), Some("JWT"));
        assert_eq!(
            data.claims,
            Claims {
                exp: 1_300,
                iat: 1_000,
                userid: "S0000000329".into(),
                apip: "crm.com".into()
            }
        );
    }

    #[test]
    fn token_issued_long_ago_is_expired_for_a_verifier() {
        let signer = Signer::new(&secret(), 300, "crm.com").unwrap();
        let jwt = signer.sign("S1", 1_000).unwrap();
        let err = jsonwebtoken::decode::<Claims>(
            &jwt,
            &DecodingKey::from_secret(secret().expose().as_bytes()),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap_err();
        assert_eq!(
            err.kind(),
            &jsonwebtoken::errors::ErrorKind::ExpiredSignature
        );
    }
}
