//! TLS to RabbitMQ and PostgreSQL (docs/protocol.md §10). The test makes a CA and
//! certificates with rcgen and puts TLS-terminating proxies in front of the real
//! servers: an `amqps://` one before RabbitMQ, and one before PostgreSQL that speaks
//! its `SSLRequest` negotiation and refuses clients that skip it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::AbortOnDropHandle;
use tucano_auth::observe::Stats;
use tucano_auth::store::seed;

use crate::helpers::{by_number, settings, unique, TestWorker, PG_SERVER};

/// A CA, a server certificate for `localhost` and 127.0.0.1, a client certificate, and
/// a second CA that signed none of them; PEM files in a folder of the test's own.
struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(unique("pki"));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let ca = authority("tucano test CA");
        let other = authority("some other CA");
        let server_key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let client_key = KeyPair::generate().expect("key");
        let client = CertificateParams::new(vec!["tucano-worker".to_owned()])
            .expect("params")
            .signed_by(&client_key, &ca)
            .expect("client certificate");
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write pem");
            path
        };
        Pki {
            ca: write("ca.pem", ca.pem()),
            other_ca: write("other-ca.pem", other.pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
            ca_der: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
            dir,
        }
    }

    /// The servers' TLS, asking for a client certificate from the CA if `client_auth`.
    fn server_config(&self, client_auth: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = if client_auth {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        Arc::new(
            builder
                .with_single_cert(self.server_chain.clone(), key)
                .expect("server config"),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

/// What a proxy stands in front of.
#[derive(Clone, Copy)]
enum Upstream {
    /// RabbitMQ: TLS from the first byte.
    Amqp,
    /// PostgreSQL: `SSLRequest` first; answered `S` (and TLS) if `offer_tls`, else `N`.
    Postgres { offer_tls: bool },
}

/// What went through a proxy.
#[derive(Default)]
struct Seen {
    /// Connections that completed a TLS handshake.
    tls: AtomicUsize,
    /// TLS handshakes that failed.
    failed: AtomicUsize,
    /// PostgreSQL connections in clear (no `SSLRequest`, or after an `N`).
    plain: AtomicUsize,
    /// `application_name` of each PostgreSQL connection that came through TLS.
    applications: Mutex<Vec<String>>,
}

/// A TLS-terminating proxy on a free port of 127.0.0.1.
struct TlsProxy {
    port: u16,
    seen: Arc<Seen>,
    _task: AbortOnDropHandle<()>,
}

impl TlsProxy {
    async fn start(upstream: Upstream, config: Arc<ServerConfig>) -> TlsProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Seen::default());
        let acceptor = TlsAcceptor::from(config);
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(relay(upstream, client, acceptor.clone(), seen.clone()));
                }
            })
        };
        TlsProxy {
            port,
            seen,
            _task: AbortOnDropHandle::new(task),
        }
    }

    fn tls(&self) -> usize {
        self.seen.tls.load(Ordering::SeqCst)
    }

    fn plain(&self) -> usize {
        self.seen.plain.load(Ordering::SeqCst)
    }

    fn applications(&self) -> Vec<String> {
        self.seen.applications.lock().expect("lock").clone()
    }
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

async fn relay(upstream: Upstream, mut client: TcpStream, acceptor: TlsAcceptor, seen: Arc<Seen>) {
    match upstream {
        Upstream::Amqp => {
            let Ok(tls) = acceptor.accept(client).await else {
                seen.failed.fetch_add(1, Ordering::SeqCst);
                return;
            };
            seen.tls.fetch_add(1, Ordering::SeqCst);
            let server = TcpStream::connect("127.0.0.1:5672")
                .await
                .expect("RabbitMQ");
            pipe(tls, server).await;
        }
        Upstream::Postgres { offer_tls } => {
            let mut first = [0u8; 8];
            if client.read_exact(&mut first).await.is_err() {
                return;
            }
            if first != SSL_REQUEST {
                // A startup message in clear: refused, as by a server that wants TLS.
                seen.plain.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if !offer_tls {
                if client.write_all(b"N").await.is_err() {
                    return;
                }
                seen.plain.fetch_add(1, Ordering::SeqCst);
                let startup = startup_message(&mut client).await;
                forward_postgres(client, startup).await;
                return;
            }
            if client.write_all(b"S").await.is_err() {
                return;
            }
            let Ok(mut tls) = acceptor.accept(client).await else {
                seen.failed.fetch_add(1, Ordering::SeqCst);
                return;
            };
            seen.tls.fetch_add(1, Ordering::SeqCst);
            let startup = startup_message(&mut tls).await;
            seen.applications
                .lock()
                .expect("lock")
                .push(application_name(&startup));
            forward_postgres(tls, startup).await;
        }
    }
}

/// Reads PostgreSQL's startup message (length first, length included).
async fn startup_message(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut length = [0u8; 4];
    if stream.read_exact(&mut length).await.is_err() {
        return Vec::new();
    }
    let mut message = length.to_vec();
    message.resize(u32::from_be_bytes(length) as usize, 0);
    let _ = stream.read_exact(&mut message[4..]).await;
    message
}

/// The `application_name` a startup message carries, `""` if none.
fn application_name(startup: &[u8]) -> String {
    let fields: Vec<&[u8]> = startup
        .get(8..)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .collect();
    fields
        .chunks(2)
        .find(|pair| pair[0] == b"application_name")
        .and_then(|pair| pair.get(1))
        .map(|value| String::from_utf8_lossy(value).into_owned())
        .unwrap_or_default()
}

async fn forward_postgres(client: impl AsyncRead + AsyncWrite + Unpin, startup: Vec<u8>) {
    if startup.is_empty() {
        return;
    }
    let mut server = TcpStream::connect("127.0.0.1:5432")
        .await
        .expect("PostgreSQL");
    if server.write_all(&startup).await.is_ok() {
        pipe(client, server).await;
    }
}

async fn pipe(mut a: impl AsyncRead + AsyncWrite + Unpin, mut b: TcpStream) {
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

#[tokio::test]
async fn the_worker_serves_through_tls_to_the_broker_and_to_the_database() {
    let pki = Pki::new();
    let amqp = TlsProxy::start(Upstream::Amqp, pki.server_config(false)).await;
    let pg = TlsProxy::start(
        Upstream::Postgres { offer_tls: true },
        pki.server_config(false),
    )
    .await;
    let ca = pki.ca.clone();
    let worker = TestWorker::spawn_with(|s| {
        s.broker.amqp_url = format!("amqps://guest:guest@localhost:{}/%2f", amqp.port);
        s.broker.amqp_tls.ca_file = Some(ca.clone());
        s.database.url = format!(
            "postgres://postgres@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
            pg.port,
            s.broker.queue_prefix,
            ca.display()
        );
    })
    .await;

    let reply = worker
        .call(&by_number(seed::SESSION_TOKEN, "S0000000329"))
        .await;
    assert_eq!(reply.code(), "OK", "{}", reply.raw);

    // The consuming and the reply connections, both through TLS.
    assert!(
        amqp.tls() >= 2,
        "{} TLS connections to RabbitMQ",
        amqp.tls()
    );
    // The pool's connections and the lookup statement's: all through TLS, none in clear.
    let applications = pg.applications();
    assert!(
        applications
            .iter()
            .any(|name| name == "tucano-auth lookups"),
        "{applications:?}"
    );
    assert!(
        applications
            .iter()
            .any(|name| name != "tucano-auth lookups"),
        "the pool's connections went elsewhere: {applications:?}"
    );
    assert_eq!(pg.plain(), 0, "a connection to PostgreSQL in clear");
}

/// Runs the worker with `adjust`ed test settings until it stops; it must stop on its
/// own, with an error.
async fn startup_error(adjust: impl FnOnce(&mut tucano_auth::serve::Settings)) -> String {
    let prefix = unique("tls");
    let mut settings = settings(&prefix, &format!("{PG_SERVER}/{prefix}"));
    settings.metrics_addr = None;
    adjust(&mut settings);
    let run = tucano_auth::serve::run(settings, Arc::new(Stats::default()), std::future::pending());
    let outcome = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the worker gave up within 30 s");
    crate::helpers::cleanup(&prefix, &prefix).await;
    format!("{:#}", outcome.expect_err("a startup error"))
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_a_startup_error_naming_the_connection() {
    let pki = Pki::new();
    let amqp = TlsProxy::start(Upstream::Amqp, pki.server_config(false)).await;
    let pg = TlsProxy::start(
        Upstream::Postgres { offer_tls: true },
        pki.server_config(false),
    )
    .await;

    let other_ca = pki.other_ca.clone();
    let err = startup_error(|s| {
        s.broker.amqp_url = format!("amqps://guest:guest@localhost:{}/%2f", amqp.port);
        s.broker.amqp_tls.ca_file = Some(other_ca);
    })
    .await;
    assert!(
        err.contains(&format!(
            "RabbitMQ at amqps://guest@localhost:{}/%2f (password hidden)",
            amqp.port
        )),
        "{err}"
    );
    assert!(err.contains("not signed by a trusted CA"), "{err}");
    assert!(err.contains("AMQP_CA_FILE"), "{err}");
    assert!(!err.contains("guest:guest"), "{err}");

    // amqps:// to RabbitMQ's plain listener: an error, never a plain connection.
    let err = startup_error(|s| {
        s.broker.amqp_url = "amqps://guest:guest@localhost:5672/%2f".to_owned();
    })
    .await;
    assert!(
        err.contains("RabbitMQ at amqps://guest@localhost:5672/%2f (password hidden)"),
        "{err}"
    );
    assert!(!err.contains("guest:guest"), "{err}");
    assert!(err.contains("TLS"), "{err}");

    let other_ca = pki.other_ca.clone();
    let err = startup_error(|s| {
        s.database.url = format!(
            "postgres://postgres:pg-secret@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
            pg.port,
            s.broker.queue_prefix,
            other_ca.display()
        );
    })
    .await;
    assert!(err.contains("database"), "{err}");
    assert!(err.contains(&format!("localhost:{}", pg.port)), "{err}");
    assert!(err.contains("sslrootcert"), "{err}");
    assert!(!err.contains("pg-secret"), "{err}");
    assert!(pg.seen.failed.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn sslmode_require_encrypts_or_refuses_and_prefer_falls_back_to_clear() {
    let pki = Pki::new();
    let tls = TlsProxy::start(
        Upstream::Postgres { offer_tls: true },
        pki.server_config(false),
    )
    .await;
    let clear = TlsProxy::start(
        Upstream::Postgres { offer_tls: false },
        pki.server_config(false),
    )
    .await;
    let db = unique("ssl");

    // `require` checks no certificate (as sqlx and libpq without a root certificate).
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{db}?sslmode=require",
        tls.port
    );
    let pool = tucano_auth::store::prepare(&url, 1)
        .await
        .expect("prepare over TLS");
    pool.close().await;
    assert!(
        tls.applications()
            .iter()
            .any(|name| name == "tucano-auth lookups"),
        "the lookup connection is checked at start, through TLS: {:?}",
        tls.applications()
    );
    assert_eq!(tls.plain(), 0);

    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{db}?sslmode=require",
        clear.port
    );
    let err = format!(
        "{:#}",
        tucano_auth::store::prepare(&url, 1)
            .await
            .expect_err("refused")
    );
    assert!(err.contains("does not offer"), "{err}");

    // `prefer` (the default): TLS where offered, clear where not.
    let url = format!("postgres://postgres@127.0.0.1:{}/{db}", clear.port);
    let pool = tucano_auth::store::prepare(&url, 1)
        .await
        .expect("prepare in clear");
    pool.close().await;
    assert!(clear.plain() >= 2, "{} connections in clear", clear.plain());

    crate::helpers::cleanup(&db, &db).await;
}

/// Runs `tucano-auth call` with `env`; returns (exit code, stdout, stderr).
fn call(prefix: &str, env: &[(&str, &std::ffi::OsStr)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tucano-auth"));
    command
        .args([
            "call",
            &by_number(seed::SESSION_TOKEN, "S0000000329"),
            "--timeout",
            "20",
        ])
        .env("QUEUE_PREFIX", prefix)
        .env_remove("AMQP_CA_FILE")
        .env_remove("AMQP_CLIENT_CERT_FILE")
        .env_remove("AMQP_CLIENT_KEY_FILE");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run call");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn call_speaks_amqps_with_the_ca_file_and_a_client_certificate() {
    let pki = Pki::new();
    let worker = TestWorker::spawn().await;
    let plain = TlsProxy::start(Upstream::Amqp, pki.server_config(false)).await;
    let mutual = TlsProxy::start(Upstream::Amqp, pki.server_config(true)).await;
    let url = |port: u16| format!("amqps://guest:guest@localhost:{port}/%2f");
    let (plain_url, mutual_url) = (url(plain.port), url(mutual.port));
    let prefix = worker.prefix.clone();
    let (ca, cert, key) = (
        pki.ca.clone(),
        pki.client_cert.clone(),
        pki.client_key.clone(),
    );
    let runs = tokio::task::spawn_blocking(move || {
        [
            call(
                &prefix,
                &[
                    ("AMQP_URL", plain_url.as_ref()),
                    ("AMQP_CA_FILE", ca.as_ref()),
                ],
            ),
            // The system's roots do not hold the test's CA.
            call(&prefix, &[("AMQP_URL", plain_url.as_ref())]),
            call(
                &prefix,
                &[
                    ("AMQP_URL", mutual_url.as_ref()),
                    ("AMQP_CA_FILE", ca.as_ref()),
                    ("AMQP_CLIENT_CERT_FILE", cert.as_ref()),
                    ("AMQP_CLIENT_KEY_FILE", key.as_ref()),
                ],
            ),
            call(
                &prefix,
                &[
                    ("AMQP_URL", mutual_url.as_ref()),
                    ("AMQP_CA_FILE", ca.as_ref()),
                ],
            ),
        ]
    })
    .await
    .expect("join");

    let [with_ca, without_ca, with_client_cert, without_client_cert] = runs;
    assert_eq!(with_ca.0, Some(0), "{with_ca:?}");
    assert!(with_ca.1.contains("\"OK\""), "{with_ca:?}");
    assert_eq!(without_ca.0, Some(2), "{without_ca:?}");
    assert!(
        without_ca.2.contains("not signed by a trusted CA"),
        "{without_ca:?}"
    );
    assert_eq!(with_client_cert.0, Some(0), "{with_client_cert:?}");
    assert_eq!(without_client_cert.0, Some(2), "{without_client_cert:?}");
    assert!(plain.tls() >= 1 && mutual.tls() >= 1);
}
