//! The issued JWT, checked with an independent decoder: base64url and HMAC-SHA256
//! written here from RFC 7515 / RFC 2104, not the worker's jsonwebtoken.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tucano_auth::store::seed;

use crate::helpers::{by_number, TestWorker, JWT_SECRET};

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_key: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_key: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_key)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_key)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Verifies an HS256 JWT by hand and returns (header, payload).
pub fn verify(jwt: &str, key: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "three parts");
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .expect("base64url signature");
    assert_eq!(
        signature,
        hmac_sha256(key.as_bytes(), signing_input.as_bytes()),
        "signature verifies"
    );
    let header =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    let payload =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    (header, payload)
}

#[test]
fn the_hand_written_hmac_matches_rfc_4231_case_2() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[tokio::test]
async fn the_jwt_carries_exactly_the_contracts_header_and_claims() {
    let worker = TestWorker::spawn_with(|s| {
        s.signing.ttl_seconds = 120;
        s.signing.apip = "tucano.example".into();
    })
    .await;
    let before = chrono::Utc::now().timestamp();
    let reply = worker
        .call(&by_number(seed::SESSION_TOKEN, "S0000000329"))
        .await;
    let after = chrono::Utc::now().timestamp();
    assert_eq!(reply.code(), "OK", "{}", reply.raw);
    assert_eq!(
        reply.body["data"]["subscription_id"],
        "75E3E50139F24DC3A6C9AA0C026D0292"
    );
    let jwt = reply.body["data"]["jwt"].as_str().expect("jwt");
    let (header, payload) = verify(jwt, JWT_SECRET);
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    // Byte for byte too: a verifier may compare the encoded header.
    assert_eq!(
        jwt.split('.').next(),
        Some(
            URL_SAFE_NO_PAD
                .encode(r#"{"alg":"HS256","typ":"JWT"}"#)
                .as_str()
        )
    );
    let keys: Vec<&String> = payload.as_object().expect("object").keys().collect();
    let mut keys: Vec<&str> = keys.into_iter().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["apip", "exp", "iat", "userid"]);
    let iat = payload["iat"].as_i64().expect("integer iat");
    assert!((before..=after).contains(&iat));
    assert_eq!(payload["exp"].as_i64(), Some(iat + 120));
    assert_eq!(payload["userid"], "S0000000329");
    assert_eq!(payload["apip"], "tucano.example");
}
