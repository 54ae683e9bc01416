//! The JWT handed to Tucano (docs/protocol.md §6 and §9): claims `exp`, `iat`, `userid`
//! (the subscription number) and `apip`, signed with the first configured key; header
//! `{"alg":"HS256","typ":"JWT"}` for `TUCANO_JWT_SECRET`, and with the key's `kid` for
//! a key of `TUCANO_JWT_KEYS_FILE`.
//!
//! The time is an argument of [`Signer::sign`], so expiry is testable without waiting.

use serde::{Deserialize, Serialize};

use crate::keys::{Current, KeySet};

/// The claims of an issued JWT, exactly those of docs/protocol.md §6.
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

/// Signs Tucano JWTs with the first key of the configured [`KeySet`]. Clones share
/// the keys, so a reload ([`Signer::replace`]) reaches every request after it.
#[derive(Clone)]
pub struct Signer {
    keys: Current<KeySet>,
    ttl_seconds: i64,
    apip: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("keys", &*self.keys.get())
            .field("ttl_seconds", &self.ttl_seconds)
            .field("apip", &self.apip)
            .finish()
    }
}

/// Why a signer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The TTL is not positive.
    #[error("TUCANO_JWT_TTL_SECONDS must be positive, it is {0}")]
    BadTtl(i64),
}

impl Signer {
    /// A signer with `keys`, issuing tokens valid `ttl_seconds` with claim `apip`.
    pub fn new(keys: KeySet, ttl_seconds: i64, apip: &str) -> Result<Signer, SignerError> {
        if ttl_seconds <= 0 {
            return Err(SignerError::BadTtl(ttl_seconds));
        }
        Ok(Signer {
            keys: Current::new(keys),
            ttl_seconds,
            apip: apip.to_owned(),
        })
    }

    /// The keys in use: the signing key, and the public set `/.well-known/jwks.json` serves.
    pub fn keys(&self) -> &Current<KeySet> {
        &self.keys
    }

    /// Signs with `keys` from the next token on; tokens being signed finish with the old.
    pub fn replace(&self, keys: KeySet) {
        self.keys.set(keys);
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
        self.keys.get().sign(&self.claims(subscription_number, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    fn secret() -> Secret {
        Secret::new("0123456789abcdef0123456789abcdef")
    }

    fn keys(secret: &Secret) -> KeySet {
        KeySet::from_secret(secret, "TUCANO_JWT_SECRET").unwrap()
    }

    #[test]
    fn short_secret_is_refused() {
        let err = KeySet::from_secret(&Secret::new("short"), "TUCANO_JWT_SECRET").unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"));
    }

    #[test]
    fn a_replaced_key_signs_every_later_token_of_every_clone() {
        let signer = Signer::new(keys(&secret()), 300, "crm.com").unwrap();
        let clone = signer.clone();
        let other = Secret::new("another-key-of-at-least-32-bytes-long");
        signer.replace(keys(&other));
        let jwt = clone.sign("S1", chrono::Utc::now().timestamp()).unwrap();
        let decoded = jsonwebtoken::decode::<Claims>(
            &jwt,
            &DecodingKey::from_secret(other.expose().as_bytes()),
            &Validation::new(Algorithm::HS256),
        );
        assert!(decoded.is_ok(), "{decoded:?}");
    }

    #[test]
    fn token_carries_the_contract_header_and_claims() {
        let signer = Signer::new(keys(&secret()), 300, "crm.com").unwrap();
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
        // The header's bytes as documented, not only its fields.
        let header = jwt.split('.').next().unwrap();
        assert_eq!(header, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
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
        let signer = Signer::new(keys(&secret()), 300, "crm.com").unwrap();
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
