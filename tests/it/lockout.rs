//! The pass-code lockout (docs/protocol.md §14, "Guessing"), through two workers that
//! share one database, each on a queue prefix of its own so the test knows which worker
//! answered which request.

use std::sync::Arc;
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use serde_json::json;
use tokio::sync::oneshot;
use tucano_auth::broker::Names;
use tucano_auth::observe::Stats;
use tucano_auth::store::seed::SESSION_TOKEN;

use lapin::BasicProperties;

use crate::helpers::{
    cleanup, settings, terminate, unique, BinaryRun, Client, TestWorker, AMQP_URL, PG_SERVER,
};

/// Failures that lock, and how long the lock lasts: short, so the test sees it end.
const MAX_FAILURES: u32 = 3;
const WINDOW: Duration = Duration::from_secs(4);

fn user(pass_code: &str) -> String {
    json!({"token": SESSION_TOKEN, "access_token_identifier": {"identifier": "demo-user-1", "pass_code": pass_code}}).to_string()
}

fn card(pass_code: &str) -> String {
    json!({"token": SESSION_TOKEN, "customer_identification_medium_identifier": {"identifier": "demo-card-1", "pass_code": pass_code}}).to_string()
}

/// A second worker on `first`'s database, under a prefix of its own.
struct Second {
    client: Client,
    prefix: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Second {
    async fn start(first: &TestWorker) -> Second {
        let prefix = unique("lock2");
        let mut settings = settings(&prefix, &format!("{PG_SERVER}/{}", first.db_name));
        settings.pass_codes.max_failures = MAX_FAILURES;
        settings.pass_codes.lockout = WINDOW;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(tucano_auth::serve::run(
            settings,
            Arc::new(Stats::default()),
            async move {
                let _ = rx.await;
            },
        ));
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("client connection");
        let client = Client {
            conn,
            names: Names::new(&prefix),
        };
        client.wait_consuming().await;
        Second {
            client,
            prefix,
            shutdown: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
        // The database is the first worker's, dropped with it; only the queues are ours.
        cleanup(&self.prefix, &self.prefix).await;
    }
}

async fn failures(worker: &TestWorker, holder: &str, identifier: &str) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT failures FROM pass_code_failures WHERE holder = $1 AND identifier = $2",
    )
    .bind(holder)
    .bind(identifier)
    .fetch_optional(&worker.pool)
    .await
    .expect("read the failure count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pass_codes_lock_an_identifier_across_workers_until_the_window_passes() {
    let first = TestWorker::spawn_with(|s| {
        s.pass_codes.max_failures = MAX_FAILURES;
        s.pass_codes.lockout = WINDOW;
    })
    .await;
    let second = Second::start(&first).await;

    // A success resets the count: two failures, a success, two more failures, and the
    // right pass code still works (without the reset that would be four of three).
    for _ in 0..2 {
        assert_eq!(
            first.call(&user("0000")).await.code(),
            "AUTHENTICATION_FAILED"
        );
    }
    assert_eq!(
        failures(&first, "access_token", "demo-user-1").await,
        Some(2)
    );
    assert_eq!(second.client.call(&user("1234")).await.code(), "OK");
    assert_eq!(failures(&first, "access_token", "demo-user-1").await, None);
    for _ in 0..2 {
        assert_eq!(
            second.client.call(&user("0000")).await.code(),
            "AUTHENTICATION_FAILED"
        );
    }
    assert_eq!(first.call(&user("1234")).await.code(), "OK");

    // Two failures through one worker and one through the other lock the identifier
    // for both: the count lives in the database they share.
    let wrong = first.call(&user("0000")).await;
    assert_eq!(
        first.call(&user("0001")).await.code(),
        "AUTHENTICATION_FAILED"
    );
    assert_eq!(
        second.client.call(&user("0002")).await.code(),
        "AUTHENTICATION_FAILED"
    );
    assert_eq!(
        failures(&first, "access_token", "demo-user-1").await,
        Some(3)
    );
    for worker in [&first.client, &second.client] {
        let locked = worker.call(&user("1234")).await;
        assert_eq!(
            locked.code(),
            "AUTHENTICATION_FAILED",
            "the right pass code while locked"
        );
        // Nothing tells a locked identifier from a wrong pass code.
        assert_eq!(locked.body["status"], wrong.body["status"]);
    }
    // Refused attempts are not failures: they neither add to the count nor extend it.
    assert_eq!(
        failures(&first, "access_token", "demo-user-1").await,
        Some(3)
    );
    // The lock is the identifier's, not the holder table's nor the session's.
    assert_eq!(first.call(&card("5678")).await.code(), "OK");

    // Once the window has passed since the last failure, the right pass code is
    // accepted again and the count is gone.
    tokio::time::sleep(WINDOW + Duration::from_millis(500)).await;
    assert_eq!(second.client.call(&user("1234")).await.code(), "OK");
    assert_eq!(failures(&first, "access_token", "demo-user-1").await, None);

    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_identifiers_are_counted_like_known_ones() {
    let worker = TestWorker::spawn_with(|s| s.pass_codes.max_failures = MAX_FAILURES).await;
    let nobody = json!({"token": SESSION_TOKEN, "customer_identification_medium_identifier": {"identifier": "nobody", "pass_code": "1"}}).to_string();
    for _ in 0..4 {
        assert_eq!(worker.call(&nobody).await.code(), "AUTHENTICATION_FAILED");
    }
    // Three counted, the fourth refused unverified: a lockout cannot tell an attacker
    // which identifiers exist.
    assert_eq!(failures(&worker, "medium", "nobody").await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_pass_code_sent_many_times_at_once_is_accepted_every_time() {
    // Tries are counted before they are verified, so more right ones at once than
    // MAX_FAILURES hold every try of the window for a while; the others wait for
    // them instead of being refused, and a right one frees them all.
    let worker = TestWorker::spawn_with(|s| {
        s.pass_codes.max_failures = MAX_FAILURES;
        s.pass_codes.lockout = WINDOW;
    })
    .await;
    let body = user("1234");
    let calls = (0..4 * MAX_FAILURES).map(|_| worker.call(&body));
    let codes: Vec<String> = futures_util::future::join_all(calls)
        .await
        .iter()
        .map(|reply| reply.code().to_owned())
        .collect();
    assert!(codes.iter().all(|code| code == "OK"), "{codes:?}");
    assert_eq!(
        failures(&worker, "access_token", "demo-user-1").await,
        None,
        "nothing counted, nothing left in flight"
    );
}

/// A worker SIGKILLed between taking tries and settling them leaves them pending. They
/// must not hold the identifier once no try has been taken for the expiry: the right
/// pass code is answered `OK` (not `TEMPORARILY_UNAVAILABLE` after a wait), while a
/// live burst still gets no more tries than the limit.
#[tokio::test]
async fn tries_a_dead_worker_left_pending_stop_holding_the_identifier() {
    let worker = TestWorker::spawn().await;
    // As a worker killed mid-verification leaves them: every try of the window taken
    // and never settled, the last one taken just now.
    sqlx::query(
        "INSERT INTO pass_code_failures \
             (holder, identifier, failures, pending, last_failure, pending_seen) \
         VALUES ('access_token', 'demo-user-1', 0, 5, now(), now())",
    )
    .execute(&worker.pool)
    .await
    .expect("leave tries pending");
    let started = std::time::Instant::now();
    let reply = worker.call(&user("1234")).await;
    let waited = started.elapsed();
    assert_eq!(reply.code(), "OK", "{}", reply.raw);
    // It waited for the dead worker's tries to expire, not for the window (900 s).
    assert!(
        waited >= tucano_auth::store::lockout::PENDING_EXPIRY - Duration::from_millis(500)
            && waited < Duration::from_secs(14),
        "answered after {waited:?}"
    );
    // Wrong pass codes after a dead worker's tries still count toward the lock.
    sqlx::query(
        "INSERT INTO pass_code_failures (holder, identifier, failures, pending, last_failure) \
         VALUES ('access_token', 'demo-user-1', 5, 3, now() - interval '30 seconds') \
         ON CONFLICT (holder, identifier) DO UPDATE SET failures = 5, pending = 3, \
         last_failure = now() - interval '30 seconds'",
    )
    .execute(&worker.pool)
    .await
    .expect("a locked identifier with stale tries");
    assert_eq!(
        worker.call(&user("1234")).await.code(),
        "AUTHENTICATION_FAILED",
        "five wrong pass codes in the window still lock, whatever is pending"
    );
}

/// A burst against one identifier whose tries wait behind slow verifications, for
/// longer than a dead worker's tries are held: the tries being verified keep holding
/// the identifier (the worker vouches for them while they wait), so no more than the
/// limit are verified. Expiring them a fixed time after they were taken let as many
/// again through. The real binary, so that its verifiers are its own.
#[tokio::test]
async fn a_burst_waiting_behind_slow_verifications_gets_no_more_than_the_limit_verified() {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    use std::time::Instant;
    use tucano_auth::store::lockout::PENDING_EXPIRY;

    let run = BinaryRun::new("lockslow").await;
    let pool = sqlx::PgPool::connect(&run.db_url).await.expect("pool");
    // The dearest hash the bounds allow a verifier to run, hashed (as long as one
    // verification) and timed here: enough such verifications ahead of the burst keep
    // every verifier of the worker busy for twice the expiry, whatever this machine's
    // speed.
    let started = Instant::now();
    let heavy = tokio::task::spawn_blocking(|| {
        let params = argon2::Params::new(65_536, 10, 1, None).expect("params");
        let salt = SaltString::encode_b64(b"tucano-slow-salt").expect("salt");
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"9999", &salt)
            .expect("hash")
            .to_string()
    })
    .await
    .expect("hashed");
    let one = started.elapsed();
    let verifiers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let fillers = ((2 * PENDING_EXPIRY).as_secs_f64() * verifiers as f64 / one.as_secs_f64()).ceil()
        as usize
        + verifiers;
    for i in 0..fillers {
        sqlx::query(
            "INSERT INTO access_tokens \
                 (number, identifier, pass_code_hash, life_cycle_state, accounts_receivable_id) \
             SELECT $1, $2, $3, 'EFFECTIVE', accounts_receivable_id FROM access_tokens \
             WHERE identifier = 'demo-user-1'",
        )
        .bind(format!("ATSLOW{i}"))
        .bind(format!("slow-{i}"))
        .bind(&heavy)
        .execute(&pool)
        .await
        .expect("a slow credential");
    }
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let (mut child, _) = crate::observe::binary_with_metrics(
        &run,
        &[(
            "TUCANO_PASS_CODE_MAX_FAILURES",
            MAX_FAILURES.to_string().as_str(),
        )],
        &log,
    )
    .await;

    let slow = |i: usize| {
        json!({"token": SESSION_TOKEN, "access_token_identifier": {"identifier": format!("slow-{i}"), "pass_code": "0000"}}).to_string()
    };
    let mut bodies: Vec<(String, String)> = (0..fillers)
        .map(|i| (format!("slow-{i}"), slow(i)))
        .collect();
    let burst = 12;
    bodies.extend((0..burst).map(|i| (format!("burst-{i}"), user(&format!("{:04}", 100 + i)))));
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for (id, body) in &bodies {
        run.publish(body, id, persistent.clone()).await;
    }
    run.channel.wait_for_confirms().await.expect("confirmed");

    let codes = run.codes(bodies.len(), Duration::from_secs(180)).await;
    let burst_codes: Vec<&str> = (0..burst)
        .map(|i| codes[&format!("burst-{i}")].as_str())
        .collect();
    assert!(
        burst_codes
            .iter()
            .all(|code| matches!(*code, "AUTHENTICATION_FAILED" | "TEMPORARILY_UNAVAILABLE")),
        "{burst_codes:?}"
    );
    let counted: Option<i32> = sqlx::query_scalar(
        "SELECT failures FROM pass_code_failures \
         WHERE holder = 'access_token' AND identifier = 'demo-user-1'",
    )
    .fetch_optional(&pool)
    .await
    .expect("the count");
    assert_eq!(
        counted,
        Some(i32::try_from(MAX_FAILURES).expect("small")),
        "wrong pass codes verified for one identifier, with {fillers} verifications of \
         {one:?} ahead of them on {verifiers} verifiers ({burst_codes:?})"
    );
    assert!(terminate(&mut child).success());
    pool.close().await;
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;
}
