//! `tucano-auth keygen`: a new private JWK from the operating system's random source,
//! in the form `TUCANO_JWT_KEYS_FILE` reads.

use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rand_core::{OsRng, RngCore as _};
use serde_json::{json, Value};

use super::jwk::encode;

/// The algorithms a key can be made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Alg {
    /// ECDSA on P-256 with SHA-256.
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
    /// HMAC-SHA256 with a 32-byte random key (a shared secret: never published).
    #[value(name = "HS256")]
    Hs256,
}

/// A new private JWK for `alg` named `kid`, with `"use": "sig"`.
pub fn generate(alg: Alg, kid: &str) -> Value {
    let mut key = match alg {
        Alg::Hs256 => {
            let mut k = [0u8; 32];
            OsRng.fill_bytes(&mut k);
            json!({"kty": "oct", "alg": "HS256", "k": encode(&k)})
        }
        Alg::Es256 => {
            let secret = p256::SecretKey::random(&mut OsRng);
            let point = secret.public_key().to_encoded_point(false);
            let coordinate =
                |c: Option<&p256::FieldBytes>| c.map(|c| encode(c)).unwrap_or_default();
            json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256",
                "x": coordinate(point.x()), "y": coordinate(point.y()),
                "d": encode(&secret.to_bytes()),
            })
        }
        Alg::EdDsa => {
            // An Ed25519 private key is 32 random bytes (RFC 8032, section 5.1.5).
            let mut d = [0u8; 32];
            OsRng.fill_bytes(&mut d);
            let signing = ed25519_dalek::SigningKey::from_bytes(&d);
            json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                "x": encode(signing.verifying_key().as_bytes()), "d": encode(&d),
            })
        }
    };
    key["kid"] = json!(kid);
    key["use"] = json!("sig");
    key
}
