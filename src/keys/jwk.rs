//! The JWK Set of `TUCANO_JWT_KEYS_FILE` (RFC 7517): private keys parsed and checked
//! strictly, and their public form for `/.well-known/jwks.json`.
//!
//! Errors name the key (by `kid`, else by its place in the set) and what is wrong with
//! it, never a value of a key's material: the set is read as untyped JSON and every
//! member checked by name, so no deserializer can echo what it refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{json, Map, Value};

use super::MIN_SECRET_BYTES;

/// A private key of the set, ready to sign.
pub struct Jwk {
    /// Its `kid`.
    pub kid: String,
    /// Its `alg`.
    pub alg: Algorithm,
    /// The key jsonwebtoken signs with.
    pub encoding: EncodingKey,
    /// The public JWK (`kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`); `None` for `oct`.
    pub public: Option<Value>,
}

/// Why a JWK Set was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwkError {
    /// Not JSON at all (serde_json names the line and column, never the text).
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON, but no `{"keys": [...]}`.
    #[error("not a JWK Set: it must be an object with a \"keys\" array")]
    NotASet,
    /// `"keys": []`.
    #[error("the set holds no key: put the signing key first")]
    Empty,
    /// One key is wrong.
    #[error("key {key}: {problem}")]
    Key {
        /// `"kid"` or `#N (no kid)`.
        key: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// What is wrong with one key. Shows member names and lengths, never their values
/// (except `alg`, `kty`, `crv` and `use`, which are names, not key material).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A required member is absent.
    #[error("has no \"{0}\"")]
    Missing(&'static str),
    /// An asymmetric key without its private part.
    #[error("has no \"d\": it is a public key, and signing needs the private key")]
    NoPrivatePart,
    /// A member that is not a string.
    #[error("\"{0}\" is not a string")]
    NotAString(String),
    /// `kid` is `""`.
    #[error("\"kid\" is empty")]
    EmptyKid,
    /// Two keys with one `kid`.
    #[error("the kid is also that of key #{0}: each kid must be unique")]
    DuplicateKid(usize),
    /// An `alg` other than HS256, ES256, EdDSA.
    #[error("\"alg\" {0:?} is not one of HS256, ES256, EdDSA")]
    UnknownAlg(String),
    /// The `kty` does not go with the `alg`.
    #[error("\"alg\" {alg} needs \"kty\" {expected:?}, not {found:?}")]
    KtyMismatch {
        /// The key's `alg`.
        alg: &'static str,
        /// The `kty` it needs.
        expected: &'static str,
        /// The `kty` given.
        found: String,
    },
    /// The `crv` does not go with the `alg`.
    #[error("\"alg\" {alg} needs \"crv\" {expected:?}, not {found:?}")]
    CurveMismatch {
        /// The key's `alg`.
        alg: &'static str,
        /// The `crv` it needs.
        expected: &'static str,
        /// The `crv` given.
        found: String,
    },
    /// `use` other than `sig`.
    #[error("\"use\" is {0:?}; a signing key's is \"sig\"")]
    NotForSigning(String),
    /// A member this kind of key does not have.
    #[error("has the member {0:?}, which a {1} key does not have")]
    UnknownMember(String, &'static str),
    /// Not unpadded base64url.
    #[error("\"{0}\" is not base64url without padding")]
    NotBase64(&'static str),
    /// A curve coordinate or private scalar of the wrong size.
    #[error("\"{field}\" is {found} bytes, it must be {expected}")]
    WrongLength {
        /// The member.
        field: &'static str,
        /// Its required length.
        expected: usize,
        /// Its length.
        found: usize,
    },
    /// An HS256 key shorter than the hash.
    #[error("\"k\" is {0} bytes, it must be at least {MIN_SECRET_BYTES}")]
    ShortSecret(usize),
    /// `d` is not a private key of the curve (zero, or not below its order).
    #[error("\"d\" is not a valid {0} private key")]
    InvalidPrivate(&'static str),
    /// `x` (and `y`) are not the public key of `d`.
    #[error("the public part (\"x\"{0}) is not that of the private key \"d\"")]
    PublicMismatch(&'static str),
}

/// Parses and checks a JWK Set of private keys, in the set's order.
pub fn parse_set(text: &str) -> Result<Vec<Jwk>, JwkError> {
    let set: Value = serde_json::from_str(text).map_err(JwkError::NotJson)?;
    let keys = set
        .as_object()
        .and_then(|set| set.get("keys"))
        .and_then(Value::as_array)
        .ok_or(JwkError::NotASet)?;
    if keys.is_empty() {
        return Err(JwkError::Empty);
    }
    let mut parsed: Vec<Jwk> = Vec::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate() {
        let name = || match key.get("kid").and_then(Value::as_str) {
            Some(kid) if !kid.is_empty() => format!("{:?}", shown(kid)),
            _ => format!("#{} (no kid)", index + 1),
        };
        let jwk = parse_key(key).map_err(|problem| JwkError::Key {
            key: name(),
            problem,
        })?;
        if let Some(first) = parsed.iter().position(|other| other.kid == jwk.kid) {
            return Err(JwkError::Key {
                key: name(),
                problem: Problem::DuplicateKid(first + 1),
            });
        }
        parsed.push(jwk);
    }
    Ok(parsed)
}

/// One private JWK.
pub fn parse_key(key: &Value) -> Result<Jwk, Problem> {
    let key = key.as_object().ok_or(Problem::NotAnObject)?;
    let kid = required(key, "kid")?;
    if kid.is_empty() {
        return Err(Problem::EmptyKid);
    }
    let alg = required(key, "alg")?;
    if let Some(usage) = string(key, "use")? {
        if usage != "sig" {
            return Err(Problem::NotForSigning(shown(usage)));
        }
    }
    let kty = required(key, "kty")?;
    let (alg, name, expected_kty, members): (_, _, _, &[&str]) = match alg {
        "HS256" => (Algorithm::HS256, "HS256", "oct", &["k"]),
        "ES256" => (Algorithm::ES256, "ES256", "EC", &["crv", "x", "y", "d"]),
        "EdDSA" => (Algorithm::EdDSA, "EdDSA", "OKP", &["crv", "x", "d"]),
        other => return Err(Problem::UnknownAlg(shown(other))),
    };
    if kty != expected_kty {
        return Err(Problem::KtyMismatch {
            alg: name,
            expected: expected_kty,
            found: shown(kty),
        });
    }
    if let Some(member) = key.keys().find(|m| {
        !["kid", "alg", "use", "kty"].contains(&m.as_str()) && !members.contains(&m.as_str())
    }) {
        return Err(Problem::UnknownMember(shown(member), name));
    }
    let (encoding, public) = match alg {
        Algorithm::HS256 => {
            let k = bytes(key, "k")?;
            if k.len() < MIN_SECRET_BYTES {
                return Err(Problem::ShortSecret(k.len()));
            }
            (EncodingKey::from_secret(&k), None)
        }
        Algorithm::ES256 => {
            curve(key, name, "P-256")?;
            let (x, y) = (sized(key, "x", 32)?, sized(key, "y", 32)?);
            let d = private(key)?;
            let secret =
                p256::SecretKey::from_slice(&d).map_err(|_| Problem::InvalidPrivate("P-256"))?;
            let point = secret.public_key().to_encoded_point(false);
            if point.x().map(|c| &c[..]) != Some(x.as_slice())
                || point.y().map(|c| &c[..]) != Some(y.as_slice())
            {
                return Err(Problem::PublicMismatch(", \"y\""));
            }
            let der = secret
                .to_pkcs8_der()
                .map_err(|_| Problem::InvalidPrivate("P-256"))?;
            (
                EncodingKey::from_ec_der(der.as_bytes()),
                Some(json!({"kty": "EC", "crv": "P-256", "x": encode(&x), "y": encode(&y)})),
            )
        }
        _ => {
            curve(key, name, "Ed25519")?;
            let x = sized(key, "x", 32)?;
            let d: [u8; 32] = private(key)?
                .try_into()
                .map_err(|_| Problem::InvalidPrivate("Ed25519"))?;
            let signing = ed25519_dalek::SigningKey::from_bytes(&d);
            if signing.verifying_key().to_bytes().as_slice() != x.as_slice() {
                return Err(Problem::PublicMismatch(""));
            }
            let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&signing)
                .map_err(|_| Problem::InvalidPrivate("Ed25519"))?;
            (
                EncodingKey::from_ed_der(der.as_bytes()),
                Some(json!({"kty": "OKP", "crv": "Ed25519", "x": encode(&x)})),
            )
        }
    };
    let public = public.map(|mut public| {
        public["kid"] = json!(kid);
        public["alg"] = json!(name);
        public["use"] = json!("sig");
        public
    });
    Ok(Jwk {
        kid: kid.to_owned(),
        alg,
        encoding,
        public,
    })
}

/// Unpadded base64url, as JWK members are written.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A name from the file, cut short so a hostile file cannot flood the log.
fn shown(value: &str) -> String {
    value.chars().take(40).collect()
}

fn string<'a>(key: &'a Map<String, Value>, member: &str) -> Result<Option<&'a str>, Problem> {
    match key.get(member) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(Problem::NotAString(member.to_owned())),
    }
}

fn required<'a>(key: &'a Map<String, Value>, member: &'static str) -> Result<&'a str, Problem> {
    string(key, member)?.ok_or(Problem::Missing(member))
}

fn bytes(key: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, Problem> {
    URL_SAFE_NO_PAD
        .decode(required(key, member)?)
        .map_err(|_| Problem::NotBase64(member))
}

fn sized(key: &Map<String, Value>, member: &'static str, size: usize) -> Result<Vec<u8>, Problem> {
    let value = bytes(key, member)?;
    if value.len() != size {
        return Err(Problem::WrongLength {
            field: member,
            expected: size,
            found: value.len(),
        });
    }
    Ok(value)
}

fn private(key: &Map<String, Value>) -> Result<Vec<u8>, Problem> {
    if !key.contains_key("d") {
        return Err(Problem::NoPrivatePart);
    }
    sized(key, "d", 32)
}

fn curve(
    key: &Map<String, Value>,
    alg: &'static str,
    expected: &'static str,
) -> Result<(), Problem> {
    let found = required(key, "crv")?;
    if found != expected {
        return Err(Problem::CurveMismatch {
            alg,
            expected,
            found: shown(found),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::generate::{generate, Alg};

    fn problem(key: Value) -> Problem {
        match parse_key(&key) {
            Ok(_) => panic!("accepted {key}"),
            Err(problem) => problem,
        }
    }

    fn with(mut key: Value, member: &str, value: Value) -> Value {
        key[member] = value;
        key
    }

    fn without(mut key: Value, member: &str) -> Value {
        key.as_object_mut().unwrap().remove(member);
        key
    }

    #[test]
    fn generated_keys_of_every_algorithm_parse_and_show_only_their_public_part() {
        for (alg, kty) in [(Alg::Hs256, "oct"), (Alg::Es256, "EC"), (Alg::EdDsa, "OKP")] {
            let key = generate(alg, "k1");
            assert_eq!(key["kty"], kty);
            let jwk = parse_key(&key).unwrap();
            assert_eq!(jwk.kid, "k1");
            match jwk.public {
                None => assert_eq!(kty, "oct", "only oct keys have no public form"),
                Some(public) => {
                    assert_eq!(public["use"], "sig");
                    assert_eq!(public["alg"], key["alg"]);
                    assert_eq!(public["x"], key["x"]);
                    assert!(public.get("d").is_none(), "{public}");
                }
            }
        }
    }

    #[test]
    fn an_unknown_alg_or_a_kty_that_does_not_match_is_refused() {
        let ec = generate(Alg::Es256, "k");
        assert_eq!(
            problem(with(ec.clone(), "alg", json!("RS256"))),
            Problem::UnknownAlg("RS256".into())
        );
        assert_eq!(
            problem(with(ec.clone(), "kty", json!("OKP"))),
            Problem::KtyMismatch {
                alg: "ES256",
                expected: "EC",
                found: "OKP".into()
            }
        );
        assert_eq!(
            problem(with(ec, "crv", json!("P-384"))),
            Problem::CurveMismatch {
                alg: "ES256",
                expected: "P-256",
                found: "P-384".into()
            }
        );
        let ed = generate(Alg::EdDsa, "k");
        assert!(matches!(
            problem(with(ed, "kty", json!("oct"))),
            Problem::KtyMismatch { .. }
        ));
    }

    #[test]
    fn a_public_key_alone_is_refused_for_its_missing_d() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            assert_eq!(
                problem(without(generate(alg, "k"), "d")),
                Problem::NoPrivatePart
            );
        }
    }

    #[test]
    fn a_public_part_of_another_key_is_refused() {
        let (a, b) = (generate(Alg::Es256, "a"), generate(Alg::Es256, "b"));
        assert_eq!(
            problem(with(a.clone(), "y", b["y"].clone())),
            Problem::PublicMismatch(", \"y\"")
        );
        let (a, b) = (generate(Alg::EdDsa, "a"), generate(Alg::EdDsa, "b"));
        assert_eq!(
            problem(with(a, "x", b["x"].clone())),
            Problem::PublicMismatch("")
        );
    }

    #[test]
    fn short_secrets_bad_base64_and_wrong_sizes_are_refused_by_member() {
        let oct = generate(Alg::Hs256, "k");
        assert_eq!(
            problem(with(oct.clone(), "k", json!(encode(&[7; 31])))),
            Problem::ShortSecret(31)
        );
        assert_eq!(
            problem(with(oct, "k", json!("not+base64/=="))),
            Problem::NotBase64("k")
        );
        assert_eq!(
            problem(with(
                generate(Alg::EdDsa, "k"),
                "d",
                json!(encode(&[1; 31]))
            )),
            Problem::WrongLength {
                field: "d",
                expected: 32,
                found: 31
            }
        );
        let ec = generate(Alg::Es256, "k");
        assert_eq!(
            problem(with(ec.clone(), "d", json!(encode(&[0; 32])))),
            Problem::InvalidPrivate("P-256")
        );
        assert_eq!(
            problem(with(ec.clone(), "k", json!("x"))),
            Problem::UnknownMember("k".into(), "ES256")
        );
        assert_eq!(
            problem(with(ec.clone(), "use", json!("enc"))),
            Problem::NotForSigning("enc".into())
        );
        assert_eq!(problem(without(ec.clone(), "kid")), Problem::Missing("kid"));
        assert_eq!(
            problem(with(ec, "x", json!(5))),
            Problem::NotAString("x".into())
        );
    }

    #[test]
    fn set_errors_name_the_key_by_kid_or_place_and_never_show_key_material() {
        let a = generate(Alg::EdDsa, "a");
        let secret = generate(Alg::Hs256, "s");
        let duplicate = json!({"keys": [a, secret, generate(Alg::Es256, "a")]}).to_string();
        let err = parse_set(&duplicate).err().unwrap().to_string();
        assert_eq!(
            err,
            "key \"a\": the kid is also that of key #1: each kid must be unique"
        );
        let nameless = json!({"keys": [secret, without(generate(Alg::Es256, "x"), "kid")]});
        let err = parse_set(&nameless.to_string()).err().unwrap().to_string();
        assert_eq!(err, "key #2 (no kid): has no \"kid\"");
        let short = with(secret.clone(), "alg", json!("HS512"));
        let err = parse_set(&json!({"keys": [short]}).to_string())
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains(secret["k"].as_str().unwrap()), "{err}");
        assert!(matches!(parse_set(r#"{"keys": []}"#), Err(JwkError::Empty)));
        assert!(matches!(
            parse_set(r#"[{"kid": "a"}]"#),
            Err(JwkError::NotASet)
        ));
        let err = parse_set("{\"keys\": [").err().unwrap().to_string();
        assert!(
            err.starts_with("not JSON: ") && err.contains("line 1"),
            "{err}"
        );
    }
}
