//! Signing keys from `TUCANO_JWT_KEYS_FILE` (docs/protocol.md §9): keys made by
//! `keygen`, replies signed by a real worker, and the signatures checked by an
//! independent verifier (Node's crypto, `verifier/verify-jwts.js`) fed only what a
//! verifier gets: the `jwks` command's output, or the shared secret for HS256.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tucano_auth::keys::KeySource;
use tucano_auth::store::seed;

use crate::helpers::{by_number, wait_for, TestWorker};

const BINARY: &str = env!("CARGO_BIN_EXE_tucano-auth");

/// A directory of this test's own, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(crate::helpers::unique(label));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `tucano-auth keygen --alg ALG --kid KID`: the one line it prints, parsed.
pub fn keygen(alg: &str, kid: &str) -> Value {
    let output = Command::new(BINARY)
        .args(["keygen", "--alg", alg, "--kid", kid])
        .output()
        .expect("run keygen");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).expect("a JSON key")
}

/// Writes the set `{"keys": keys}` to `path` as a whole (a rename), as an operator's
/// editor or config tool would, so a reader never sees half a file.
pub fn write_keys(path: &Path, keys: &[&Value]) {
    write_atomically(path, &json!({ "keys": keys }).to_string());
}

pub fn write_atomically(path: &Path, text: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

/// `tucano-auth jwks` with `TUCANO_JWT_KEYS_FILE=keys_file`: what it prints, parsed.
pub fn jwks(keys_file: &Path) -> Value {
    let output = Command::new(BINARY)
        .arg("jwks")
        .env("TUCANO_JWT_KEYS_FILE", keys_file)
        .env_remove("TUCANO_JWT_SECRET")
        .env_remove("TUCANO_JWT_SECRET_FILE")
        .output()
        .expect("run jwks");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("a JSON set")
}

/// Runs the Node verifier on `input` (`{"jwks"|"secret": .., "jwts": [..]}`): one
/// verdict per token.
pub fn verify(input: &Value) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/verifier/verify-jwts.js");
    let mut node = Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (Node 20 verifies the JWTs)");
    node.stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("feed node");
    let output = node.wait_with_output().expect("node ends");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a verdict"))
        .collect()
}

/// The JWT of an `OK` reply for the demo subscription.
async fn jwt_of(worker: &TestWorker) -> String {
    let reply = worker
        .call(&by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER))
        .await;
    assert_eq!(reply.code(), "OK", "{}", reply.raw);
    reply.body["data"]["jwt"]
        .as_str()
        .expect("a jwt")
        .to_owned()
}

/// A worker serving with `keys` in its keys file signs with the first; the verifier,
/// given `verifier_key` (the JWKS or the secret), accepts its JWT. Returns the verdict.
async fn signed_reply_verifies(keys: &[&Value], verifier: impl FnOnce(&Path) -> Value) -> Value {
    let dir = TempDir::new("keys");
    let file = dir.path("keys.json");
    write_keys(&file, keys);
    let worker =
        TestWorker::spawn_with(|s| s.signing.keys = KeySource::KeysFile(file.clone())).await;
    let jwt = jwt_of(&worker).await;
    let mut input = verifier(&file);
    // The verifier is worth something only if it can say no: the same token with
    // another subscription in its payload must fail.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("base64url"))
            .expect("JSON payload");
    payload["userid"] = json!("S0000000330");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let forged = parts.join(".");
    input["jwts"] = json!([jwt, forged]);
    let verdicts = verify(&input);
    assert_eq!(
        verdicts[1]["ok"], false,
        "a forged token verifies: {}",
        verdicts[1]
    );
    let verdict = verdicts[0].clone();
    assert_eq!(verdict["ok"], true, "{verdict}");
    let kid = keys[0]["kid"].as_str().expect("kid");
    assert_eq!(
        verdict["header"],
        json!({"alg": keys[0]["alg"], "typ": "JWT", "kid": kid})
    );
    assert_eq!(verdict["payload"]["userid"], seed::SUBSCRIPTION_NUMBER);
    assert_eq!(verdict["payload"]["apip"], "crm.com");
    verdict
}

#[tokio::test]
async fn an_es256_key_from_keygen_signs_replies_that_verify_with_the_published_jwks() {
    let key = keygen("ES256", "ec-2026-12");
    signed_reply_verifies(&[&key], |file| json!({"jwks": jwks(file)})).await;
}

#[tokio::test]
async fn an_eddsa_key_from_keygen_signs_replies_that_verify_with_the_published_jwks() {
    let key = keygen("EdDSA", "ed-2026-12");
    // A second key, published only: the first one signs.
    let other = keygen("ES256", "ec-old");
    signed_reply_verifies(&[&key, &other], |file| json!({"jwks": jwks(file)})).await;
}

#[tokio::test]
async fn an_hs256_key_of_the_keys_file_signs_with_its_kid_and_verifies_with_the_secret() {
    let key = keygen("HS256", "hs-2026-12");
    let secret = key["k"].clone();
    signed_reply_verifies(&[&key], |_| json!({"secret": secret})).await;
}

#[test]
fn jwks_prints_only_the_public_part_of_asymmetric_keys() {
    let dir = TempDir::new("jwks");
    let file = dir.path("keys.json");
    let (hs, ec, ed) = (
        keygen("HS256", "hs"),
        keygen("ES256", "ec"),
        keygen("EdDSA", "ed"),
    );
    write_keys(&file, &[&hs, &ec, &ed]);
    let set = jwks(&file);
    let keys = set["keys"].as_array().expect("a keys array");
    let kids: Vec<&str> = keys.iter().filter_map(|k| k["kid"].as_str()).collect();
    assert_eq!(kids, ["ec", "ed"], "{set}");
    for key in keys {
        assert_eq!(key["use"], "sig", "{key}");
        assert_ne!(key["kty"], "oct", "{key}");
        assert!(key.get("d").is_none() && key.get("k").is_none(), "{key}");
    }
    let printed = set.to_string();
    for private in [&hs["k"], &ec["d"], &ed["d"]] {
        let private = private.as_str().expect("base64url");
        assert!(
            !printed.contains(private),
            "a private part is printed: {printed}"
        );
    }
    write_keys(&file, &[&hs]);
    assert_eq!(
        jwks(&file),
        json!({"keys": []}),
        "an oct key is never printed"
    );
}

fn serve_output(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(BINARY);
    command
        .arg("serve")
        .env_remove("TUCANO_JWT_SECRET")
        .env_remove("TUCANO_JWT_SECRET_FILE")
        .env_remove("TUCANO_JWT_KEYS_FILE")
        // Never reached: the keys are refused before anything connects.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/never")
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("METRICS_ADDR", "off");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_keys_file_with_a_jwt_secret_is_refused_naming_both() {
    let dir = TempDir::new("both");
    let file = dir.path("keys.json");
    write_keys(&file, &[&keygen("EdDSA", "ed")]);
    let file = file.to_string_lossy().into_owned();
    let secret = "an-hs256-key-of-at-least-32-bytes-long";
    let (code, stderr) = serve_output(&[
        ("TUCANO_JWT_KEYS_FILE", &file),
        ("TUCANO_JWT_SECRET", secret),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("TUCANO_JWT_KEYS_FILE and TUCANO_JWT_SECRET "),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "{stderr}");
    let (code, stderr) = serve_output(&[
        ("TUCANO_JWT_KEYS_FILE", &file),
        ("TUCANO_JWT_SECRET_FILE", &file),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("TUCANO_JWT_KEYS_FILE and TUCANO_JWT_SECRET_FILE"),
        "{stderr}"
    );
}

#[test]
fn a_public_key_in_the_keys_file_is_a_startup_error_naming_the_file_and_the_kid() {
    let dir = TempDir::new("public");
    let file = dir.path("keys.json");
    let good = keygen("ES256", "good");
    let mut public = keygen("EdDSA", "only-public");
    let d = public
        .as_object_mut()
        .and_then(|k| k.remove("d"))
        .expect("a d");
    write_keys(&file, &[&good, &public]);
    let (code, stderr) = serve_output(&[("TUCANO_JWT_KEYS_FILE", &file.to_string_lossy())]);
    assert_eq!(code, Some(2), "{stderr}");
    let expected = format!(
        "TUCANO_JWT_KEYS_FILE {}: key \"only-public\": has no \"d\"",
        file.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    for private in [&good["d"], &d] {
        assert!(!stderr.contains(private.as_str().expect("b64")), "{stderr}");
    }
}

/// GET `path` on `addr`: status, content type and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

#[tokio::test]
async fn the_metrics_server_publishes_the_same_set_as_the_jwks_command() {
    let dir = TempDir::new("wellknown");
    let file = dir.path("keys.json");
    write_keys(&file, &[&keygen("EdDSA", "ed"), &keygen("HS256", "hs")]);
    let worker = TestWorker::spawn_with(|s| {
        s.signing.keys = KeySource::KeysFile(file.clone());
        s.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let mut addr = None;
    wait_for("the metrics server", async || {
        addr = worker.stats.metrics_addr.get().copied();
        addr.is_some()
    })
    .await;
    let (status, content_type, body) =
        http_get(addr.expect("bound"), "/.well-known/jwks.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json");
    let served: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(served, jwks(&file));
}

#[tokio::test]
async fn the_metrics_server_has_no_jwks_for_the_simple_secret() {
    let worker = TestWorker::spawn_with(|s| {
        s.metrics_addr = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let mut addr = None;
    wait_for("the metrics server", async || {
        addr = worker.stats.metrics_addr.get().copied();
        addr.is_some()
    })
    .await;
    let (status, _, _) = http_get(addr.expect("bound"), "/.well-known/jwks.json").await;
    assert_eq!(status, 404);
}
