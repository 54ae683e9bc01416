//! Key rotation on the real binary (docs/protocol.md §9): SIGHUP re-reads the keys file
//! and `CRM_TOKEN_SECRET_FILE` under load without losing a request; a file that does
//! not parse keeps the keys in use, and the log says which file and why.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use tucano_auth::broker::Names;
use tucano_auth::store::seed;

use crate::helpers::{
    binary_command, by_number, cleanup, correlation_id, terminate, wait_for, BinaryRun, Client,
    AMQP_URL,
};
use crate::keys::{jwks, keygen, verify, write_atomically, write_keys, TempDir};

/// Starts the binary of `run` signing from `keys_file`, logging to `log`, with `env`
/// and without the test settings' variables named in `remove`.
async fn start(
    run: &BinaryRun,
    keys_file: &Path,
    log: &Path,
    env: &[(&str, &str)],
    remove: &[&str],
) -> Child {
    let keys_file = keys_file.to_string_lossy().into_owned();
    let mut env = env.to_vec();
    env.push(("TUCANO_JWT_KEYS_FILE", &keys_file));
    let mut command = binary_command(
        &run.prefix,
        &run.db_url,
        &env,
        Stdio::from(std::fs::File::create(log).expect("log file")),
    );
    command.env_remove("TUCANO_JWT_SECRET");
    for variable in remove {
        command.env_remove(variable);
    }
    let child = command.spawn().expect("start the binary");
    run.wait_consumers(1).await;
    child
}

fn hang_up(child: &Child) {
    tucano_testkit::process::signal(child, tucano_testkit::process::Signal::HUP).expect("kill");
}

fn read_log(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

/// Waits until the log has a line containing every one of `parts`; gives that line.
async fn log_line(log: &Path, parts: &[&str]) -> String {
    let mut found = String::new();
    wait_for(
        &format!("a log line with {parts:?}"),
        async || match read_log(log)
            .lines()
            .find(|line| parts.iter().all(|part| line.contains(part)))
        {
            Some(line) => {
                found = line.to_owned();
                true
            }
            None => false,
        },
    )
    .await;
    found
}

async fn client(run: &BinaryRun) -> Client {
    Client {
        conn: Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("client connection"),
        names: Names::new(&run.prefix),
    }
}

/// The `kid` in the header of the JWT of an `OK` reply, and the JWT.
async fn signed(client: &Client) -> String {
    let reply = client
        .call(&by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER))
        .await;
    assert_eq!(reply.code(), "OK", "{}", reply.raw);
    reply.body["data"]["jwt"].as_str().expect("jwt").to_owned()
}

/// Requests sent in the rotation under load.
const TOTAL: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_first_key_signs_within_a_second_of_sighup_and_no_request_under_load_is_lost() {
    let dir = TempDir::new("rotate");
    let (file, log) = (dir.path("keys.json"), dir.path("worker.log"));
    let (old, new) = (keygen("ES256", "old-ec"), keygen("EdDSA", "new-ed"));
    write_keys(&file, &[&old]);
    let run = BinaryRun::new("rot").await;
    let mut child = start(&run, &file, &log, &[], &[]).await;

    let channel = run.conn.create_channel().await.expect("channel");
    let mut consumer = tucano_auth::broker::consume_no_ack(&channel, &run.replies)
        .await
        .expect("consume the replies");
    let collector = tokio::spawn(async move {
        let mut replies: Vec<(Instant, String, String)> = Vec::new();
        // Until 20 s without a reply, or half a second after the last one expected
        // (time enough for a duplicate to show).
        loop {
            let wait = if replies.len() >= TOTAL {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(20)
            };
            let Ok(Some(Ok(delivery))) = tokio::time::timeout(wait, consumer.next()).await else {
                break;
            };
            let body: Value = serde_json::from_slice(&delivery.data).expect("JSON reply");
            let id = correlation_id(&delivery);
            let jwt = body["data"]["jwt"].as_str().unwrap_or_default().to_owned();
            replies.push((Instant::now(), id, jwt));
        }
        replies
    });

    // 200 requests a second for 3 s; the keys file is rewritten and SIGHUP sent after 1 s.
    let total = TOTAL;
    let body = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    let mut hung_up = None;
    for i in 0..total {
        pace.tick().await;
        if i == 200 {
            write_keys(&file, &[&new, &old]);
            // Read before the signal: read after, a busy machine let a reply signed
            // with the new key arrive (and be timed) between the two.
            hung_up = Some(Instant::now());
            hang_up(&child);
        }
        let persistent = BasicProperties::default().with_delivery_mode(2);
        let _confirm = run.publish(&body, &format!("r-{i}"), persistent).await;
    }
    run.channel.wait_for_confirms().await.expect("confirmed");
    let hung_up = hung_up.expect("SIGHUP sent");
    let replies = collector.await.expect("collector");
    let published = jwks(&file);
    let loaded = log_line(&log, &["signing keys loaded", "new-ed"]).await;
    let address = read_log(&log)
        .lines()
        .find_map(|line| {
            let at = line.find("address=")? + "address=".len();
            line[at..].split_whitespace().next().map(str::to_owned)
        })
        .expect("the metrics address in the log");
    let served = tucano_auth::observe::probe::probe(
        &format!("http://{address}/.well-known/jwks.json"),
        Duration::from_secs(5),
    )
    .await
    .expect("jwks.json answers");
    assert!(terminate(&mut child).success());
    cleanup(&run.prefix, &run.prefix).await;

    let mut answers: HashMap<&str, usize> = HashMap::new();
    for (_, id, _) in &replies {
        *answers.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(answers.len(), total, "every request is answered");
    assert!(
        answers.values().all(|&n| n == 1),
        "each exactly once: {:?}",
        answers.iter().filter(|(_, &n)| n != 1).collect::<Vec<_>>()
    );
    let kids: Vec<&str> = published["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|key| key["kid"].as_str())
        .collect();
    assert_eq!(kids, ["new-ed", "old-ec"], "the old key stays published");
    assert_eq!(
        serde_json::from_str::<Value>(&served.body).expect("JSON"),
        published,
        "/.well-known/jwks.json serves the reloaded set"
    );

    let jwts: Vec<&str> = replies.iter().map(|(_, _, jwt)| jwt.as_str()).collect();
    let verdicts = verify(&json!({"jwks": published, "jwts": jwts}));
    let mut first_new = None;
    for ((at, id, _), verdict) in replies.iter().zip(&verdicts) {
        assert_eq!(verdict["ok"], true, "{id}: {verdict}");
        let kid = verdict["header"]["kid"].as_str().expect("a kid");
        if *at < hung_up {
            assert_eq!(kid, "old-ec", "{id} answered before SIGHUP");
        } else if *at > hung_up + Duration::from_secs(1) {
            assert_eq!(kid, "new-ed", "{id} answered over 1 s after SIGHUP");
        }
        if kid == "new-ed" && first_new.is_none() {
            first_new = Some(at.duration_since(hung_up));
        }
    }
    let first_new = first_new.expect("replies signed with the new key");
    assert!(first_new < Duration::from_secs(1), "{first_new:?}");
    eprintln!("first reply signed with the new key {first_new:?} after SIGHUP; {loaded}");
}

#[tokio::test]
async fn a_keys_file_broken_before_sighup_keeps_the_old_key_and_the_log_names_the_file_and_why() {
    let dir = TempDir::new("broken");
    let (file, log) = (dir.path("keys.json"), dir.path("worker.log"));
    let steady = keygen("ES256", "steady");
    write_keys(&file, &[&steady]);
    let published = jwks(&file);
    let run = BinaryRun::new("brk").await;
    let mut child = start(&run, &file, &log, &[], &[]).await;
    let client = client(&run).await;
    let still_signs_with_steady = async || {
        let verdict =
            verify(&json!({"jwks": published, "jwts": [signed(&client).await]})).remove(0);
        assert_eq!(verdict["ok"], true, "{verdict}");
        assert_eq!(verdict["header"]["kid"], "steady");
    };
    still_signs_with_steady().await;

    write_atomically(&file, "{\"keys\": [");
    hang_up(&child);
    let shown = file.display().to_string();
    let line = log_line(
        &log,
        &["keeping the signing keys in use", &shown, "not JSON"],
    )
    .await;
    assert!(line.contains("ERROR"), "{line}");
    still_signs_with_steady().await;

    let mut public = keygen("EdDSA", "public-only");
    let d = public
        .as_object_mut()
        .and_then(|key| key.remove("d"))
        .expect("a d");
    write_keys(&file, &[&public, &steady]);
    hang_up(&child);
    log_line(&log, &[&shown, "key \"public-only\": has no \"d\""]).await;
    still_signs_with_steady().await;

    assert!(terminate(&mut child).success());
    cleanup(&run.prefix, &run.prefix).await;
    let text = read_log(&log);
    for private in [&steady["d"], &d] {
        assert!(!text.contains(private.as_str().expect("b64")), "{text}");
    }
}

#[tokio::test]
async fn sighup_rereads_the_crm_token_secret_file() {
    let dir = TempDir::new("crm");
    let (file, log, crm) = (
        dir.path("keys.json"),
        dir.path("worker.log"),
        dir.path("crm-secrets"),
    );
    write_keys(&file, &[&keygen("EdDSA", "ed")]);
    let (old, new) = (
        "crm-old-secret-0123456789abcdef0123",
        "crm-new-secret-0123456789abcdef0123",
    );
    write_atomically(&crm, &format!("{old}\n"));
    let run = BinaryRun::new("crm").await;
    let crm_file = crm.to_string_lossy().into_owned();
    let mut child = start(
        &run,
        &file,
        &log,
        &[("CRM_TOKEN_SECRET_FILE", &crm_file)],
        &["CRM_TOKEN_SECRET"],
    )
    .await;
    let pool = sqlx::PgPool::connect(&run.db_url).await.expect("pool");
    let now = chrono::Utc::now();
    let session = crate::fixtures::session(
        &pool,
        None,
        now + chrono::Duration::hours(1),
        false,
        "ACTIVE",
    )
    .await;
    pool.close().await;
    let ts = now.timestamp();
    let token = crate::fixtures::crm_jwt(session, (ts + 600).into(), ts.into(), new);
    let client = client(&run).await;
    let code = async || {
        client
            .call(&by_number(&token, seed::SUBSCRIPTION_NUMBER))
            .await
            .code()
            .to_owned()
    };
    assert_eq!(code().await, "INVALID_TOKEN", "not yet accepted");

    write_atomically(&crm, &format!("{new}\n{old}\n"));
    hang_up(&child);
    log_line(&log, &["CRM login-token secrets loaded", "secrets=2"]).await;
    assert_eq!(code().await, "OK", "accepted after SIGHUP");

    assert!(terminate(&mut child).success());
    cleanup(&run.prefix, &run.prefix).await;
    let text = read_log(&log);
    assert!(!text.contains(new) && !text.contains(old), "{text}");
}

/// The `kid` in the header of `jwt`.
fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().expect("a header");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: Value = serde_json::from_slice(&header).expect("JSON header");
    header["kid"].as_str().unwrap_or_default().to_owned()
}

/// Replaces `path` with a FIFO that nobody writes to: opening it for reading blocks
/// until a writer comes, which none does (a hung file system, as the worker sees it).
fn replace_with_fifo(path: &Path) {
    let fifo = path.with_extension("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    std::fs::rename(&fifo, path).expect("rename the FIFO over the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_hanging_key_files_stalls_neither_requests_nor_sigterm_and_keeps_the_keys() {
    use tucano_auth::keys::READ_TIMEOUT;
    let dir = TempDir::new("hang");
    let (file, log, crm) = (
        dir.path("keys.json"),
        dir.path("worker.log"),
        dir.path("crm-secrets"),
    );
    write_keys(&file, &[&keygen("ES256", "steady")]);
    write_atomically(&crm, "crm-hang-secret-0123456789abcdef0123\n");
    let run = BinaryRun::new("hng").await;
    let crm_file = crm.to_string_lossy().into_owned();
    let mut child = start(
        &run,
        &file,
        &log,
        &[("CRM_TOKEN_SECRET_FILE", &crm_file)],
        &["CRM_TOKEN_SECRET"],
    )
    .await;
    let client = client(&run).await;
    assert_eq!(kid_of(&signed(&client).await), "steady");

    replace_with_fifo(&file);
    replace_with_fifo(&crm);
    hang_up(&child);
    let hung_up = Instant::now();
    // Requests all through the reads' timeout and after: each answered at once, signed
    // with the key in use.
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while hung_up.elapsed() < READ_TIMEOUT + Duration::from_secs(1) {
        let start = Instant::now();
        let jwt = tokio::time::timeout(Duration::from_secs(3), signed(&client))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "a request {:?} after SIGHUP was not answered within 3 s",
                    hung_up.elapsed()
                )
            });
        assert_eq!(kid_of(&jwt), "steady");
        slowest = slowest.max(start.elapsed());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shown = file.display().to_string();
    let keys_line = log_line(
        &log,
        &["keeping the signing keys in use", &shown, "did not finish"],
    )
    .await;
    let crm_line = log_line(
        &log,
        &[
            "keeping the CRM login-token secrets in use",
            &crm_file,
            "did not finish",
        ],
    )
    .await;
    assert!(
        keys_line.contains("ERROR") && keys_line.contains("TUCANO_JWT_KEYS_FILE"),
        "{keys_line}"
    );
    assert!(crm_line.contains("ERROR"), "{crm_line}");

    // Another SIGHUP while the first reads still hang: not read again, said so; then
    // SIGTERM, at once.
    hang_up(&child);
    log_line(&log, &[&shown, "has not ended yet"]).await;
    assert_eq!(kid_of(&signed(&client).await), "steady");
    let terminating = Instant::now();
    let status = terminate(&mut child);
    let took = terminating.elapsed();
    cleanup(&run.prefix, &run.prefix).await;
    eprintln!(
        "after SIGHUP on two FIFOs: {answered} requests answered, the slowest in {slowest:?}; \
         SIGTERM during the hung reads exited in {took:?}"
    );
    assert!(status.success(), "{status}: {}", read_log(&log));
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
}

#[tokio::test]
async fn a_key_file_that_hangs_at_start_is_a_startup_error_naming_it() {
    let dir = TempDir::new("hangstart");
    let (fifo, keys) = (dir.path("hung"), dir.path("keys.json"));
    write_keys(&keys, &[&keygen("ES256", "steady")]);
    replace_with_fifo(&fifo);
    let fifo_text = fifo.to_string_lossy().into_owned();
    let keys_text = keys.to_string_lossy().into_owned();
    for (variable, env) in [
        (
            "TUCANO_JWT_KEYS_FILE",
            vec![("TUCANO_JWT_KEYS_FILE", fifo_text.as_str())],
        ),
        (
            "CRM_TOKEN_SECRET_FILE",
            vec![
                ("TUCANO_JWT_KEYS_FILE", keys_text.as_str()),
                ("CRM_TOKEN_SECRET_FILE", fifo_text.as_str()),
            ],
        ),
    ] {
        let prefix = crate::helpers::unique("hs");
        let mut command = binary_command(
            &prefix,
            &format!("{}/{prefix}", crate::helpers::PG_SERVER),
            &env,
            Stdio::piped(),
        );
        command
            .env_remove("TUCANO_JWT_SECRET")
            .env_remove("CRM_TOKEN_SECRET");
        let started = Instant::now();
        let child = command.spawn().expect("start the binary");
        let output = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await
        .expect("exits within 20 s")
        .expect("join")
        .expect("output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        cleanup(&prefix, &prefix).await;
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(
            stderr.contains(variable)
                && stderr.contains(&fifo_text)
                && stderr.contains("did not finish"),
            "{variable}: {stderr}"
        );
        eprintln!("{variable} on a FIFO: exit 2 after {:?}", started.elapsed());
    }
}
