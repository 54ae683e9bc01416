//! The keys the worker signs Tucano JWTs with (docs/protocol.md §9), where they come
//! from, and their reload on SIGHUP.
//!
//! A [`KeySet`] comes from one [`KeySource`]: `TUCANO_JWT_SECRET` or
//! `TUCANO_JWT_SECRET_FILE` (one HS256 key, no `kid`), or `TUCANO_JWT_KEYS_FILE` (a JWK
//! Set, parsed in [`jwk`]; its first key signs and names itself in the header's `kid`).
//! [`generate`] makes new keys for `keygen`; `serve::reload` re-reads the files on
//! SIGHUP; the [`Current`] holder lets a reload replace keys under requests in flight.

mod current;
pub mod generate;
pub mod jwk;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::Serialize;
use serde_json::{json, Value};

pub use current::Current;

/// Shortest accepted HS256 key (`TUCANO_JWT_SECRET`, a JWK's `k`, a CRM login-token
/// secret), in bytes: the hash's size. Owned here, by the keys, so that the token
/// module (which signs with them) and the keys do not import each other.
pub const MIN_SECRET_BYTES: usize = 32;

use crate::secret::Secret;

/// Where the signing keys are read from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// `TUCANO_JWT_SECRET` (or the demo secret): fixed for the life of the process.
    Secret(Secret),
    /// `TUCANO_JWT_SECRET_FILE`: one HS256 key, trailing newline ignored.
    SecretFile(PathBuf),
    /// `TUCANO_JWT_KEYS_FILE`: a JWK Set of private keys.
    KeysFile(PathBuf),
}

impl KeySource {
    /// Reads and checks the keys. Errors name the variable and the file, never a key.
    pub fn load(&self) -> anyhow::Result<KeySet> {
        match self {
            KeySource::Secret(secret) => KeySet::from_secret(secret, "TUCANO_JWT_SECRET"),
            KeySource::SecretFile(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read TUCANO_JWT_SECRET_FILE {}", path.display())
                })?;
                let secret = Secret::new(text.trim_end_matches(['\r', '\n']));
                KeySet::from_secret(&secret, "TUCANO_JWT_SECRET_FILE")
                    .with_context(|| format!("TUCANO_JWT_SECRET_FILE {}", path.display()))
            }
            KeySource::KeysFile(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read TUCANO_JWT_KEYS_FILE {}", path.display())
                })?;
                let keys = jwk::parse_set(&text)
                    .with_context(|| format!("TUCANO_JWT_KEYS_FILE {}", path.display()))?;
                KeySet::from_jwks(keys)
            }
        }
    }

    /// [`KeySource::load`], with the file read off the task thread within
    /// [`READ_TIMEOUT`] (see [`read_off_thread`]).
    pub async fn load_off_thread(&self) -> anyhow::Result<KeySet> {
        match self.file() {
            None => self.load(),
            Some((variable, path)) => {
                let (source, path) = (self.clone(), path.to_owned());
                read_off_thread(variable, &path, move || source.load()).await
            }
        }
    }

    /// The file a reload re-reads, with the variable that names it; `None` for a secret
    /// given in the environment, which a running process cannot see change.
    pub fn file(&self) -> Option<(&'static str, &Path)> {
        match self {
            KeySource::Secret(_) => None,
            KeySource::SecretFile(path) => Some(("TUCANO_JWT_SECRET_FILE", path)),
            KeySource::KeysFile(path) => Some(("TUCANO_JWT_KEYS_FILE", path)),
        }
    }
}

/// How long reading one key file may take (at start and at each SIGHUP) before it is
/// given up: a few small local files take milliseconds; a FIFO without a writer, or a
/// network file system that stopped answering, takes forever.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `read` (opening, reading and parsing the file `path` of `variable`) on
/// tokio's blocking threads and waits for it at most [`READ_TIMEOUT`], so that the
/// task thread, which serves every request and SIGTERM, never waits on a file system.
/// A read that hangs cannot be cancelled: it is left on its blocking thread and the
/// error names the variable and the file.
pub async fn read_off_thread<T: Send + 'static>(
    variable: &str,
    path: &Path,
    read: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    match tokio::time::timeout(READ_TIMEOUT, tokio::task::spawn_blocking(read)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => bail!("reading {variable} {} failed: {join}", path.display()),
        Err(_) => bail!(
            "{variable} {}: reading it did not finish within {} s (a FIFO or a device, \
             or a file system that does not answer?)",
            path.display(),
            READ_TIMEOUT.as_secs()
        ),
    }
}

/// [`read_off_thread`] for code that is not async (the settings, read before anything
/// is served): `read` runs on a thread of its own, waited for at most [`READ_TIMEOUT`].
pub fn read_on_a_thread<T: Send + 'static>(
    variable: &str,
    path: &Path,
    read: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("key-file-read".to_owned())
        .spawn(move || {
            let _ = done.send(read());
        })
        .with_context(|| format!("cannot start a thread to read {variable}"))?;
    match result.recv_timeout(READ_TIMEOUT) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!(
            "{variable} {}: reading it did not finish within {} s (a FIFO or a device, \
             or a file system that does not answer?)",
            path.display(),
            READ_TIMEOUT.as_secs()
        ),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            bail!("reading {variable} {} failed", path.display())
        }
    }
}

/// The configured keys: the first signs, the asymmetric ones are published.
pub struct KeySet {
    signing: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
    /// The signing key's header, base64url-encoded once: `{"alg":..,"typ":"JWT"}` byte
    /// for byte (docs/protocol.md §6 and §9), then `"kid"` when the key has one.
    encoded_header: String,
    /// The public JWKs of the asymmetric keys, in the set's order.
    public: Vec<Value>,
}

impl KeySet {
    /// The simple form: one HS256 key of at least [`MIN_SECRET_BYTES`], no `kid`.
    /// `variable` names where it came from in the error.
    pub fn from_secret(secret: &Secret, variable: &str) -> anyhow::Result<KeySet> {
        let bytes = secret.expose().as_bytes();
        if bytes.len() < MIN_SECRET_BYTES {
            bail!(
                "{variable} must be at least {MIN_SECRET_BYTES} bytes, it has {}",
                bytes.len()
            );
        }
        Ok(KeySet::new(
            EncodingKey::from_secret(bytes),
            Algorithm::HS256,
            None,
            Vec::new(),
        ))
    }

    /// The keys of a JWK Set, which [`jwk::parse_set`] made sure is not empty.
    fn from_jwks(keys: Vec<jwk::Jwk>) -> anyhow::Result<KeySet> {
        let mut keys = keys.into_iter();
        let Some(first) = keys.next() else {
            bail!("the JWK Set holds no key");
        };
        let public = first
            .public
            .into_iter()
            .chain(keys.filter_map(|key| key.public))
            .collect();
        Ok(KeySet::new(
            first.encoding,
            first.alg,
            Some(first.kid),
            public,
        ))
    }

    fn new(signing: EncodingKey, alg: Algorithm, kid: Option<String>, public: Vec<Value>) -> Self {
        let encoded_header = URL_SAFE_NO_PAD.encode(header_json(alg, kid.as_deref()));
        KeySet {
            signing,
            alg,
            kid,
            encoded_header,
            public,
        }
    }

    /// A signed JWT of `claims`: the header written once at load, the claims in their
    /// field order, the signature of the signing key. (`jsonwebtoken::encode` would
    /// write the header's fields in its own order, `typ` first.)
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = serde_json::to_vec(claims).map_err(jsonwebtoken::errors::Error::from)?;
        let mut message =
            String::with_capacity(self.encoded_header.len() + 1 + claims.len() * 4 / 3 + 4);
        message.push_str(&self.encoded_header);
        message.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut message);
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.signing, self.alg)?;
        message.push('.');
        message.push_str(&signature);
        Ok(message)
    }

    /// The signing key's `kid`; `None` for the simple form.
    pub fn signing_kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// `{"keys": [...]}` of the public form of the asymmetric keys, in the set's order;
    /// `None` when there is none (HS256 keys are secrets, never published).
    pub fn public_set(&self) -> Option<Value> {
        (!self.public.is_empty()).then(|| json!({ "keys": self.public }))
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("signing", &"[redacted]")
            .field("published", &self.public.len())
            .field("signing_kid", &self.signing_kid())
            .finish()
    }
}

/// The JOSE header: `alg`, then `typ`, then `kid` if any, with no space.
fn header_json(alg: Algorithm, kid: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Header<'a> {
        alg: Algorithm,
        typ: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        kid: Option<&'a str>,
    }
    serde_json::to_vec(&Header {
        alg,
        typ: "JWT",
        kid,
    })
    .expect("a header of an enum and two strings serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use generate::{generate, Alg};
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn a_signed_jwt_has_the_documented_header_bytes_and_verifies() {
        for (alg, name) in [
            (Alg::Hs256, "HS256"),
            (Alg::Es256, "ES256"),
            (Alg::EdDsa, "EdDSA"),
        ] {
            let set = json!({ "keys": [generate(alg, "2026-12")] }).to_string();
            let keys = KeySet::from_jwks(jwk::parse_set(&set).unwrap()).unwrap();
            let jwt = keys.sign(&json!({"userid": "S1"})).unwrap();
            let header = URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().unwrap())
                .unwrap();
            assert_eq!(
                String::from_utf8(header).unwrap(),
                format!(r#"{{"alg":"{name}","typ":"JWT","kid":"2026-12"}}"#)
            );
            // And a standard verifier accepts it, with the key's public (or shared) part.
            let decoding = match keys.public_set() {
                Some(set) => {
                    let jwk: jsonwebtoken::jwk::Jwk =
                        serde_json::from_value(set["keys"][0].clone()).unwrap();
                    DecodingKey::from_jwk(&jwk).unwrap()
                }
                None => {
                    let key: Value = serde_json::from_str(&set).unwrap();
                    let k = URL_SAFE_NO_PAD.decode(key["keys"][0]["k"].as_str().unwrap());
                    DecodingKey::from_secret(&k.unwrap())
                }
            };
            let mut validation = Validation::new(keys.alg);
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            let claims = jsonwebtoken::decode::<Value>(&jwt, &decoding, &validation).unwrap();
            assert_eq!(claims.claims, json!({"userid": "S1"}));
        }
    }
}
