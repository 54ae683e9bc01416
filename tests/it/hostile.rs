//! What an attacker with publish rights on the request queues can send: every message
//! of the hostile catalogue is answered (or refused) without stopping the worker or
//! costing anyone else an answer, and nothing secret or raw reaches the log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use tucano_auth::store::seed;
use tucano_hostile::{
    attacks, Attack, Properties, Publisher, AUTH_CODE_SENTINEL, PASS_CODE_SENTINEL,
};

use crate::helpers::*;

/// RabbitMQ's default frame_max, which the catalogue's deepest header fills.
const FRAME_MAX: usize = 131_072;

/// How long a plain request after an attack may take to be answered.
const ANSWERED_WITHIN: Duration = Duration::from_secs(5);

async fn send(publisher: &mut Publisher, prefix: &str, attack: &Attack) {
    let queue = if attack.batch {
        format!("{prefix}.authenticate.batch")
    } else {
        format!("{prefix}.authenticate")
    };
    publisher
        .publish(queue.as_bytes(), &attack.properties, &attack.body)
        .await
        .unwrap_or_else(|err| panic!("the broker took {}: {err}", attack.name));
}

/// The code (and a piece of its message) each attack is answered with, by the
/// correlation id its reply carries.
fn expected() -> HashMap<String, (&'static str, &'static str)> {
    HashMap::from([
        ("hostile-deep".to_owned(), ("INVALID_REQUEST", "headers")),
        (
            "hostile-deep-table".to_owned(),
            ("INVALID_REQUEST", "headers"),
        ),
        ("?".to_owned(), ("INVALID_REQUEST", "correlation_id")),
        (
            "hostile-reply-to-bytes".to_owned(),
            ("REPLY_TO_NOT_ALLOWED", ""),
        ),
        (
            "hostile-key-bytes".to_owned(),
            ("INVALID_REQUEST", "message_id"),
        ),
        (
            "hostile-forged-reply-to".to_owned(),
            ("REPLY_TO_NOT_ALLOWED", ""),
        ),
        (
            "hostile-forged-reply-to-shaped".to_owned(),
            ("REPLY_TO_NOT_ALLOWED", ""),
        ),
        (
            "hostile-forged-reply-to-node".to_owned(),
            ("REPLY_TO_NOT_ALLOWED", ""),
        ),
        (
            "reply-to-dead-letter".to_owned(),
            ("REPLY_TO_NOT_ALLOWED", ""),
        ),
        (
            "reply-to-request-queue".to_owned(),
            ("REPLY_TO_NOT_ALLOWED", ""),
        ),
        (
            "reply-to-batch-queue".to_owned(),
            ("REPLY_TO_NOT_ALLOWED", ""),
        ),
        ("reply-to-results".to_owned(), ("REPLY_TO_NOT_ALLOWED", "")),
        (
            "hostile-auth-code".to_owned(),
            ("NOT_FOUND", "authentication code"),
        ),
        (
            "hostile-pass-code".to_owned(),
            ("AUTHENTICATION_FAILED", ""),
        ),
        ("hostile-deep-json".to_owned(), ("INVALID_REQUEST", "")),
        (
            "hostile-oversized".to_owned(),
            ("INVALID_REQUEST", "over the limit"),
        ),
        ("hostile-alg-none".to_owned(), ("INVALID_TOKEN", "")),
        ("hostile-sql".to_owned(), ("NOT_FOUND", "")),
        ("hostile-hash-row".to_owned(), ("AUTHENTICATION_FAILED", "")),
    ])
}

#[tokio::test]
async fn every_hostile_message_is_answered_and_a_plain_request_after_it_too() {
    let worker = TestWorker::spawn().await;
    sqlx::query(tucano_hostile::HOSTILE_HASH_ROW)
        .bind(tucano_hostile::HOSTILE_HASH)
        .bind(tucano_hostile::HOSTILE_HASH_IDENTIFIER)
        .execute(&worker.pool)
        .await
        .expect("store the hostile hash");
    let errors = worker
        .declare_queue("results-error", Some("authenticate.error"))
        .await;
    let oks = worker
        .declare_queue("results-ok", Some("authenticate.ok"))
        .await;
    let mut publisher = Publisher::connect(AMQP_URL).await.expect("raw publisher");
    let plain = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    for attack in attacks(&worker.prefix, FRAME_MAX) {
        send(&mut publisher, &worker.prefix, &attack).await;
        let props =
            BasicProperties::default().with_correlation_id(format!("after-{}", attack.name).into());
        let reply = worker
            .call_waiting(
                &worker.names.interactive,
                plain.as_bytes(),
                props,
                ANSWERED_WITHIN,
            )
            .await
            .unwrap_or_else(|| panic!("no answer within 5 s after {}", attack.name));
        assert_eq!(reply.code(), "OK", "after {}", attack.name);
    }
    publisher.close().await;

    let mut seen = HashMap::new();
    while let Some(reply) = worker.get(&errors, Duration::from_secs(3)).await {
        assert!(!reply.raw.contains(AUTH_CODE_SENTINEL), "{}", reply.raw);
        assert!(!reply.raw.contains(PASS_CODE_SENTINEL), "{}", reply.raw);
        seen.insert(reply.correlation_id.clone().unwrap_or_default(), reply);
    }
    for (correlation_id, (code, says)) in expected() {
        let reply = seen
            .get(&correlation_id)
            .unwrap_or_else(|| panic!("no reply for {correlation_id:?}; got {:?}", seen.keys()));
        assert_eq!(reply.code(), code, "{correlation_id}: {}", reply.raw);
        assert!(
            reply.message().contains(says),
            "{correlation_id}: {}",
            reply.raw
        );
    }
    // Served as usual: 5,000 headers, a correlation id with a newline in it.
    let mut ok_ids = Vec::new();
    while let Some(reply) = worker.get(&oks, Duration::from_secs(1)).await {
        ok_ids.push(reply.correlation_id.unwrap_or_default());
    }
    assert!(
        ok_ids.iter().any(|id| id == "hostile-many-headers"),
        "{ok_ids:?}"
    );
    assert!(
        ok_ids.iter().any(|id| id.contains("FORGED LINE")),
        "{ok_ids:?}"
    );
    for queue in [
        &worker.names.interactive,
        &worker.names.batch,
        &worker.names.dead_letter,
    ] {
        assert_eq!(
            depth(&worker.conn, queue).await.map(|d| d.0),
            Some(0),
            "{queue}"
        );
    }
}

#[tokio::test]
async fn forged_direct_reply_to_names_cost_400_ordinary_requests_nothing() {
    let worker = TestWorker::spawn().await;
    let errors = worker
        .declare_queue("results-error", Some("authenticate.error"))
        .await;
    let replies = worker.declare_queue("replies", None).await;
    let forged: Vec<Attack> = attacks(&worker.prefix, FRAME_MAX)
        .into_iter()
        .filter(|a| a.name.starts_with("forged-direct-reply-to"))
        .collect();
    let mut publisher = Publisher::connect(AMQP_URL).await.expect("raw publisher");
    let channel = worker.conn.create_channel().await.expect("channel");
    let body = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    let mut hostile = 0;
    for i in 0..400 {
        if i % 25 == 0 {
            // 16 forged names, the ones RabbitMQ 3.10 crashes on included.
            send(
                &mut publisher,
                &worker.prefix,
                &forged[hostile % forged.len()],
            )
            .await;
            hostile += 1;
        }
        channel
            .basic_publish(
                "".into(),
                worker.names.interactive.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default()
                    .with_reply_to(replies.as_str().into())
                    .with_correlation_id(format!("r-{i}").into())
                    .with_delivery_mode(2),
            )
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publisher.close().await;
    wait_for("400 replies", async || {
        depth(&worker.conn, &replies)
            .await
            .is_some_and(|(n, _)| n >= 400)
    })
    .await;
    let mut ids = std::collections::HashSet::new();
    while let Some(reply) = worker.get(&replies, Duration::from_millis(500)).await {
        assert_eq!(reply.code(), "OK", "{}", reply.raw);
        ids.insert(reply.correlation_id.unwrap_or_default());
    }
    assert_eq!(
        ids.len(),
        400,
        "every ordinary request answered once at least"
    );
    let mut refused = 0;
    while let Some(reply) = worker.get(&errors, Duration::from_secs(1)).await {
        assert_eq!(reply.code(), "REPLY_TO_NOT_ALLOWED", "{}", reply.raw);
        refused += 1;
    }
    assert_eq!(refused, hostile, "each forged name refused");
    assert_eq!(
        depth(&worker.conn, &worker.names.dead_letter)
            .await
            .map(|d| d.0),
        Some(0),
        "nothing dead-lettered"
    );
}

/// Runs the real binary at `level` through every attack and a plain request with a
/// pass code, and returns its log.
async fn log_of_a_hostile_run(level: &str) -> String {
    let run = BinaryRun::new("hl").await;
    let pool = sqlx::PgPool::connect(&run.db_url).await.expect("database");
    sqlx::query(tucano_hostile::HOSTILE_HASH_ROW)
        .bind(tucano_hostile::HOSTILE_HASH)
        .bind(tucano_hostile::HOSTILE_HASH_IDENTIFIER)
        .execute(&pool)
        .await
        .expect("store the hostile hash");
    pool.close().await;
    let log_path = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = start_binary(
        &run.prefix,
        &run.db_url,
        &[("RUST_LOG", level)],
        std::process::Stdio::from(log),
    );
    run.wait_consumers(1).await;
    let mut publisher = Publisher::connect(AMQP_URL).await.expect("raw publisher");
    for attack in attacks(&run.prefix, FRAME_MAX) {
        send(&mut publisher, &run.prefix, &attack).await;
    }
    let with_pass_code = Properties {
        reply_to: Some(run.replies.as_bytes().to_vec()),
        correlation_id: Some(b"with-pass-code".to_vec()),
        ..Properties::default()
    };
    let body = format!(
        r#"{{"token":"{}","access_token_identifier":{{"identifier":"{}","pass_code":"{}"}}}}"#,
        seed::SESSION_TOKEN,
        seed::ACCESS_TOKEN_IDENTIFIER,
        seed::ACCESS_TOKEN_PASS_CODE
    );
    publisher
        .publish(
            run.names.interactive.as_bytes(),
            &with_pass_code,
            body.as_bytes(),
        )
        .await
        .expect("publish");
    publisher.close().await;
    run.send(1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.replies_ready().await < 2 {
        assert!(
            Instant::now() < deadline,
            "the plain requests were answered"
        );
        assert!(child.try_wait().expect("wait").is_none(), "the worker died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = terminate(&mut child);
    assert!(status.success(), "{status}");
    let log = std::fs::read(&log_path).expect("read the log");
    let _ = std::fs::remove_file(&log_path);
    cleanup(&run.prefix, &run.prefix).await;
    String::from_utf8(log).expect("the log is UTF-8")
}

fn assert_clean(log: &str) {
    assert!(log.lines().count() > 10, "the run logged: {log}");
    for secret in [
        AUTH_CODE_SENTINEL,
        PASS_CODE_SENTINEL,
        seed::SESSION_TOKEN,
        seed::ACCESS_TOKEN_IDENTIFIER,
        JWT_SECRET,
        CRM_SECRET,
        "eyJ",
        tucano_hostile::HOSTILE_HASH,
        tucano_hostile::HOSTILE_HASH_IDENTIFIER,
    ] {
        let line = log.lines().find(|line| line.contains(secret));
        assert!(line.is_none(), "the log shows {secret}: {line:?}");
    }
    let raw = log
        .bytes()
        .position(|b| (b < 0x20 && b != b'\n') || b == 0x7f);
    assert!(raw.is_none(), "a raw control character at byte {raw:?}");
    let forged = log
        .lines()
        .find(|line| line.starts_with("2026-01-01T00:00:00"));
    assert!(forged.is_none(), "a forged line: {forged:?}");
}

#[tokio::test]
async fn a_debug_log_of_hostile_traffic_holds_nothing_secret_or_raw() {
    assert_clean(&log_of_a_hostile_run("debug").await);
}

#[tokio::test]
async fn a_trace_log_of_hostile_traffic_holds_nothing_secret_or_raw() {
    assert_clean(&log_of_a_hostile_run("trace").await);
}

/// A stand-in for a broker that stops answering: it relays the client's bytes to
/// RabbitMQ, and RabbitMQ's back only until the login is done (or not at all), while
/// keeping every socket open.
struct StallingBroker {
    port: u16,
    logged_in: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl StallingBroker {
    async fn start(relay_login: bool) -> StallingBroker {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let logged_in = std::sync::Arc::new(AtomicBool::new(false));
        let flag = logged_in.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                if !relay_login {
                    held.push(client);
                    continue;
                }
                let Ok(broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await else {
                    return;
                };
                let flag = flag.clone();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut broker_read, mut broker_write) = broker.into_split();
                    let upstream = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut broker_write).await;
                    });
                    // Relay whole frames until connection.open-ok (class 10, method 41).
                    loop {
                        let mut head = [0u8; 7];
                        if broker_read.read_exact(&mut head).await.is_err() {
                            break;
                        }
                        let size =
                            u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
                        let mut rest = vec![0u8; size + 1];
                        if broker_read.read_exact(&mut rest).await.is_err() {
                            break;
                        }
                        let open_ok = head[0] == 1 && rest.get(..4) == Some(&[0, 10, 0, 41]);
                        if client_write.write_all(&head).await.is_err()
                            || client_write.write_all(&rest).await.is_err()
                        {
                            break;
                        }
                        if open_ok {
                            flag.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                    // From here on the broker is heard no more; the sockets stay open.
                    let _keep = (broker_read, client_write);
                    std::future::pending::<()>().await;
                    upstream.abort();
                });
            }
        });
        StallingBroker {
            port,
            logged_in,
            task,
        }
    }
}

impl Drop for StallingBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn sigterm_while_stalled_exits_within_grace(relay_login: bool) {
    let broker = StallingBroker::start(relay_login).await;
    let run = BinaryRun::new("st").await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", broker.port);
    let mut child = start_binary(
        &run.prefix,
        &run.db_url,
        &[("AMQP_URL", &url), ("TUCANO_SHUTDOWN_GRACE_SECONDS", "2")],
        std::process::Stdio::null(),
    );
    if relay_login {
        wait_for("the worker to log in", async || {
            broker.logged_in.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
    }
    // Stuck: waiting for the broker's Connection.Start, or for a channel to open.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    let sent = Instant::now();
    let status = terminate(&mut child);
    let took = sent.elapsed();
    cleanup(&run.prefix, &run.prefix).await;
    assert!(status.success(), "{status}");
    assert!(
        took <= Duration::from_secs(2 + 5),
        "SIGTERM took {took:?} with a 2 s grace period"
    );
}

#[tokio::test]
async fn sigterm_while_the_broker_never_answers_exits_within_grace() {
    sigterm_while_stalled_exits_within_grace(false).await;
}

#[tokio::test]
async fn sigterm_while_the_broker_stalls_after_login_exits_within_grace() {
    sigterm_while_stalled_exits_within_grace(true).await;
}
