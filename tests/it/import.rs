//! `import`, `user` and `session` through the real binary, against a running worker:
//! imported data authenticates by every identifier path, bad rows are reported by
//! line while the rest loads, a second import changes nothing, and the sessions the
//! binary opens, releases and disables are honoured by the worker.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;

use crate::helpers::{TestWorker, CRM_SECRET, PG_SERVER};

/// The sample files, in the order their references need.
const SAMPLES: &[&str] = &[
    "accounts_receivable",
    "subscription_types",
    "subscriptions",
    "installed_items",
    "access_tokens",
    "customer_identification_mediums",
    "api_users",
];

/// What one run of the binary gave.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `tucano-auth ARGS` on `database`, with `stdin` on its standard input.
pub(crate) async fn tucano(database: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let env = [
        ("DATABASE_URL", format!("{PG_SERVER}/{database}")),
        ("CRM_TOKEN_SECRET", CRM_SECRET.to_owned()),
    ];
    run_binary(args, &env, stdin).await
}

/// Runs the binary with `args` and `env`, killing it after a minute. Through std's
/// processes on a blocking thread: tokio's child reaping hung when other tests'
/// runtimes had shut down.
async fn run_binary(args: &[&str], env: &[(&str, String)], stdin: Option<&str>) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tucano-auth"))
            .args(&args)
            .envs(env)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        // Read both pipes on threads of their own so a chatty child never blocks.
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        let ended = tucano_testkit::process::reap_blocking(&mut child, crate::helpers::TIMEOUT * 3);
        let tucano_testkit::process::Ended::Exited(status) = ended.expect("wait") else {
            panic!("tucano-auth {args:?} did not finish in time");
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        }
    })
    .await
    .expect("the binary's thread")
}

/// Fails unless `stderr` holds each of `expected`.
fn said(stderr: &str, expected: &[&str]) {
    for expected in expected {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
}

fn sample(table: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/data")
        .join(format!("{table}.csv"))
}

/// A CSV file of the test's own, removed when dropped.
pub(crate) struct TempCsv(PathBuf);

impl TempCsv {
    pub(crate) fn new(text: &str) -> TempCsv {
        let path = std::env::temp_dir().join(format!("{}.csv", crate::helpers::unique("csv")));
        std::fs::write(&path, text).expect("write the CSV");
        TempCsv(path)
    }

    pub(crate) fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for TempCsv {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) async fn import(worker: &TestWorker, file: &str, table: &str) -> Run {
    tucano(&worker.db_name, &["import", file, "--table", table], None).await
}

pub(crate) async fn import_samples(worker: &TestWorker) {
    for table in SAMPLES {
        let run = import(worker, sample(table).to_str().expect("path"), table).await;
        assert_eq!(run.code, 0, "{table}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains(" 0 updated, 0 unchanged, 0 rejected"),
            "{table}: {}",
            run.stdout
        );
    }
}

/// Opens a session of `user` with the binary and gives its token.
async fn open(worker: &TestWorker, user: &str, jwt: bool) -> String {
    let mut args = vec!["session", "open", user, "--ttl", "10m"];
    if jwt {
        args.push("--jwt");
    }
    let run = tucano(&worker.db_name, &args, None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.trim().to_owned()
}

async fn code_for(worker: &TestWorker, token: &str) -> String {
    let body = json!({"token": token, "subscription_identifier": {"number": "S1000001"}});
    worker.call(&body.to_string()).await.code().to_owned()
}

async fn subscription_id(worker: &TestWorker, number: &str) -> String {
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM subscriptions WHERE number = $1")
        .bind(number)
        .fetch_one(&worker.pool)
        .await
        .expect("subscription");
    id.simple().to_string().to_uppercase()
}

#[tokio::test]
async fn imported_samples_authenticate_by_every_identifier_path() {
    let worker = TestWorker::spawn().await;
    import_samples(&worker).await;
    let added = tucano(
        &worker.db_name,
        &["user", "add", "ops", "--organisation", "Tucano CRM"],
        None,
    )
    .await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let token = open(&worker, "ops", false).await;
    let item_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM installed_items WHERE serial_number = 'STB-1000002'")
            .fetch_one(&worker.pool)
            .await
            .expect("item");
    let cases = [
        (
            json!({"subscription_identifier": {"number": "S1000002"}}),
            "S1000002",
        ),
        // The id the file gave the subscription.
        (
            json!({"subscription_identifier": {"id": "9C1B2D3E4F5A46B7889900AABBCCDD01"}}),
            "S1000001",
        ),
        (
            json!({"installed_item_identifier": {"serial_number": "STB-1000001"}}),
            "S1000001",
        ),
        (
            json!({"installed_item_identifier": {"alternative_code": "MAC-0011223344A2"}}),
            "S1000003",
        ),
        (
            json!({"installed_item_identifier": {"id": item_id.simple().to_string()}}),
            "S1000003",
        ),
        (
            json!({"access_token_identifier": {"authentication_code": "AUTH-7F3K-0002"}}),
            "S1000003",
        ),
        (
            json!({"access_token_identifier": {"identifier": "andreas@example.com", "pass_code": "8765"}}),
            "S1000003",
        ),
        (
            json!({"access_token_identifier": {"authentication_code": "AUTH-7F3K-0001"}, "subscription_type_identifier": {"name": "OTT Premium"}}),
            "S1000002",
        ),
        (
            json!({"access_token_identifier": {"identifier": "maria@example.com", "pass_code": "4321"}, "subscription_type_identifier": {"alternative_code": "OTT-BASIC"}}),
            "S1000001",
        ),
        (
            json!({"customer_identification_medium_identifier": {"authentication_code": "CARD-0001"}}),
            "S1000003",
        ),
        (
            json!({"customer_identification_medium_identifier": {"identifier": "4000-0000-0001", "pass_code": "1111"}}),
            "S1000003",
        ),
    ];
    for (mut body, number) in cases {
        body["token"] = json!(token);
        let reply = worker.call(&body.to_string()).await;
        assert_eq!(reply.code(), "OK", "{body}: {}", reply.raw);
        assert_eq!(
            reply.body["data"]["subscription_id"].as_str(),
            Some(subscription_id(&worker, number).await.as_str()),
            "{body}"
        );
    }
    assert_eq!(
        subscription_id(&worker, "S1000001").await,
        "9C1B2D3E4F5A46B7889900AABBCCDD01"
    );
    // Two subscriptions and no type: ambiguous; a wrong pass code fails.
    for (body, code) in [
        (
            json!({"token": token, "access_token_identifier": {"authentication_code": "AUTH-7F3K-0001"}}),
            "AMBIGUOUS_SUBSCRIPTION",
        ),
        (
            json!({"token": token, "access_token_identifier": {"identifier": "andreas@example.com", "pass_code": "8766"}}),
            "AUTHENTICATION_FAILED",
        ),
        (
            json!({"token": token, "subscription_identifier": {"number": "S1000004"}}),
            "SUBSCRIPTION_INACTIVE",
        ),
        (
            json!({"token": token, "installed_item_identifier": {"serial_number": "STB-1000003"}}),
            "NOT_EFFECTIVE",
        ),
    ] {
        assert_eq!(worker.call(&body.to_string()).await.code(), code, "{body}");
    }

    // Pass codes are stored only as Argon2: no row holds the clear value anywhere.
    // The random parts of a row (its uuids, the hash's salt and digest) are left out of
    // the search: a 4-digit PIN turns up in them by chance (one run in a few hundred).
    for (table, clear) in [
        ("access_tokens", "8765"),
        ("access_tokens", "4321"),
        ("customer_identification_mediums", "1111"),
    ] {
        let (hashes, leaks): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE pass_code_hash LIKE '$argon2id$%'), \
             count(*) FILTER (WHERE \
               (to_jsonb(t) - 'id' - 'accounts_receivable_id' - 'pass_code_hash')::text \
                 LIKE '%' || $1 || '%' \
               OR split_part(pass_code_hash, '$', 4) LIKE '%' || $1 || '%' \
               OR pass_code_hash NOT LIKE '$argon2id$%') \
             FROM {table} t \
             WHERE number IN ('AT1000001', 'AT1000002', 'CIM1000001')"
        ))
        .bind(clear)
        .fetch_one(&worker.pool)
        .await
        .expect("hashes");
        assert!(hashes >= 1, "{table}");
        assert_eq!(leaks, 0, "{table} holds the pass code {clear} in clear");
    }

    let (password, leaks): (String, i64) = sqlx::query_as(
        "SELECT password_hash, (SELECT count(*) FROM api_users t WHERE t::text LIKE '%change-me-please%') \
         FROM api_users WHERE username = 'crm-loader'",
    )
    .fetch_one(&worker.pool)
    .await
    .expect("imported user");
    assert!(password.starts_with("$argon2id$"), "{password}");
    assert_eq!(leaks, 0, "the password is stored only as Argon2");

    // The same files again: nothing changes, pass codes included.
    for table in SAMPLES {
        let run = import(&worker, sample(table).to_str().expect("path"), table).await;
        assert_eq!(run.code, 0, "{table}: {}", run.stderr);
        let rows = std::fs::read_to_string(sample(table))
            .expect("sample")
            .lines()
            .count()
            - 1;
        assert!(
            run.stdout.contains(&format!(
                ": 0 inserted, 0 updated, {rows} unchanged, 0 rejected"
            )),
            "{table}: {}",
            run.stdout
        );
    }
}

#[tokio::test]
async fn bad_rows_are_reported_by_line_and_the_rest_loads() {
    let worker = TestWorker::spawn().await;
    import_samples(&worker).await;
    let csv = TempCsv::new(
        "number,accounts_receivable_number,subscription_type_name,life_cycle_state,provisioning_provider\n\
         S3000001,AR0001,OTT Basic,EFFECTIVE,TUCANO\n\
         S3000002,AR9999,OTT Basic,EFFECTIVE,TUCANO\n\
         S3000003,AR0001,OTT Basic,ACTIVE,TUCANO\n\
         S3000001,AR0002,OTT Basic,EFFECTIVE,TUCANO\n\
         S3000004,AR0001,OTT Basic\n\
         S3000005,AR0001,No Such Type,EFFECTIVE,\n\
         S3000006,AR0002,OTT Premium,DRAFT,\n",
    );
    let run = import(&worker, csv.path(), "subscriptions").await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    said(
        &run.stderr,
        &[
            "line 3: unknown accounts_receivable_number 'AR9999'",
            "line 4: life_cycle_state \"ACTIVE\" is not one of",
            "line 5: number 'S3000001' is already on line 2",
            "line 6: 3 fields where the header has 5",
            "line 7: unknown subscription_type_name 'No Such Type'",
        ],
    );
    assert!(
        run.stdout
            .contains("7 rows read: 2 inserted, 0 updated, 0 unchanged, 5 rejected"),
        "{}",
        run.stdout
    );
    let loaded: Vec<(String, String)> = sqlx::query_as(
        "SELECT s.number, a.number FROM subscriptions s \
         JOIN accounts_receivable a ON a.id = s.accounts_receivable_id \
         WHERE s.number LIKE 'S3%' ORDER BY s.number",
    )
    .fetch_all(&worker.pool)
    .await
    .expect("loaded");
    assert_eq!(
        loaded,
        [
            ("S3000001".to_owned(), "AR0001".to_owned()),
            ("S3000006".to_owned(), "AR0002".to_owned())
        ],
        "the first of a duplicate key loads, the rest of the file too"
    );

    // Codes already used by another row, or twice in the file, and malformed ids.
    let tokens = TempCsv::new(
        "number,authentication_code,life_cycle_state,accounts_receivable_number,id\n\
         AT3000001,AUTH-7F3K-0001,EFFECTIVE,AR0001,\n\
         AT3000002,AUTH-NEW-1,EFFECTIVE,AR0001,not-an-id\n\
         AT3000003,AUTH-NEW-2,EFFECTIVE,AR0001,\n\
         AT3000004,AUTH-NEW-2,EFFECTIVE,AR0001,\n\
         AT3000005,AUTH-NEW-3,SUSPENDED,AR0001,\n",
    );
    let run = import(&worker, tokens.path(), "access_tokens").await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    said(
        &run.stderr,
        &[
            "line 2: authentication_code already belongs to another access_tokens row",
            "line 3: id is not 32 hex digits or a UUID",
            "line 5: authentication_code is the same as on line 4",
            // A table with pass codes: no value is quoted (see strict_csv.rs).
            "line 6: life_cycle_state is not one of EFFECTIVE, NOT_EFFECTIVE, PENDING_VERIFICATION",
        ],
    );
    assert!(
        !run.stderr.contains("AUTH-NEW"),
        "codes stay out of messages: {}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("1 inserted, 0 updated, 0 unchanged, 4 rejected"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn a_column_the_table_does_not_take_rejects_the_rows_that_fill_it() {
    let worker = TestWorker::spawn().await;
    import_samples(&worker).await;
    let accounts = TempCsv::new(
        "number,name,life_cycle_state,colour\n\
         AR3100001,x,ACTIVE,red\n\
         AR3100002,y,ACTIVE,\n",
    );
    let run = import(&worker, accounts.path(), "accounts_receivable").await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    said(
        &run.stderr,
        &[
            "line 1: column \"colour\" names no column of table accounts_receivable",
            "line 2: column \"colour\" has a value, but the table has no such column",
        ],
    );
    assert!(
        run.stdout
            .contains("2 rows read: 1 inserted, 0 updated, 0 unchanged, 1 rejected"),
        "{}",
        run.stdout
    );
    let loaded: Vec<String> = sqlx::query_scalar(
        "SELECT number FROM accounts_receivable WHERE number LIKE 'AR31%' ORDER BY number",
    )
    .fetch_all(&worker.pool)
    .await
    .expect("loaded");
    assert_eq!(loaded, ["AR3100002"]);

    // A misspelt pass-code column must not load a credential without its pass code;
    // in a table with secrets the column is named by position, no value quoted.
    let tokens = TempCsv::new(
        "number,authentication_code,pass_cod,life_cycle_state,accounts_receivable_number\n\
         AT3100001,AUTH-UNK-1,4321,EFFECTIVE,AR0001\n\
         AT3100002,AUTH-UNK-2,,EFFECTIVE,AR0001\n",
    );
    let run = import(&worker, tokens.path(), "access_tokens").await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    said(
        &run.stderr,
        &[
            "line 1: column 3 names no column of table access_tokens",
            "line 2: column 3 has a value, but the table has no such column",
        ],
    );
    assert!(
        !run.stderr.contains("4321") && !run.stderr.contains("AUTH-UNK"),
        "{}",
        run.stderr
    );
    let loaded: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT number, pass_code_hash FROM access_tokens WHERE number LIKE 'AT31%' ORDER BY number",
    )
    .fetch_all(&worker.pool)
    .await
    .expect("loaded");
    assert_eq!(loaded, [("AT3100002".to_owned(), None)]);

    // Left empty everywhere, the column loses nothing: every row loads.
    let empty = TempCsv::new("number,name,life_cycle_state,notes\nAR3100003,z,ACTIVE,\n");
    let run = import(&worker, empty.path(), "accounts_receivable").await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("line 1: column \"notes\" names no column of table accounts_receivable"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn changed_rows_are_updated_and_columns_left_out_are_kept() {
    let worker = TestWorker::spawn().await;
    import_samples(&worker).await;
    let stored = |number: &'static str| {
        let pool = worker.pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT life_cycle_state, pass_code_hash FROM access_tokens WHERE number = $1",
            )
            .bind(number)
            .fetch_one(&pool)
            .await
            .expect("token")
        }
    };
    let before = stored("AT1000002").await;
    let csv = TempCsv::new(
        "number,life_cycle_state,accounts_receivable_number\n\
         AT1000001,EFFECTIVE,AR0001\n\
         AT1000002,NOT_EFFECTIVE,AR0002\n",
    );
    let run = import(&worker, csv.path(), "access_tokens").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("0 inserted, 1 updated, 1 unchanged, 0 rejected"),
        "{}",
        run.stdout
    );
    let after = stored("AT1000002").await;
    assert_eq!(after.0, "NOT_EFFECTIVE");
    assert_eq!(
        after.1, before.1,
        "a file without pass_code keeps the stored hash"
    );

    // A new pass code replaces the hash; an Argon2 PHC string is stored as given.
    let phc = before.1.clone().expect("hash");
    let csv = TempCsv::new(&format!(
        "number,pass_code,life_cycle_state,accounts_receivable_number\n\
         AT1000001,\"{phc}\",EFFECTIVE,AR0001\n\
         AT1000002,2468,EFFECTIVE,AR0002\n"
    ));
    let run = import(&worker, csv.path(), "access_tokens").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("0 inserted, 2 updated, 0 unchanged"),
        "{}",
        run.stdout
    );
    assert_eq!(stored("AT1000001").await.1.as_deref(), Some(phc.as_str()));
    let token = open_user(&worker).await;
    let body = |code: &str| {
        json!({"token": token, "access_token_identifier": {"identifier": "andreas@example.com", "pass_code": code}})
            .to_string()
    };
    assert_eq!(worker.call(&body("2468")).await.code(), "OK");
    assert_eq!(
        worker.call(&body("8765")).await.code(),
        "AUTHENTICATION_FAILED"
    );
}

async fn open_user(worker: &TestWorker) -> String {
    let run = tucano(
        &worker.db_name,
        &[
            "user",
            "add",
            "ops",
            "--organisation",
            "Tucano CRM",
            "--password-stdin",
        ],
        Some("correct horse\n"),
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let hash: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM api_users WHERE username = 'ops'")
            .fetch_one(&worker.pool)
            .await
            .expect("user");
    assert!(hash.is_some_and(|h| h.starts_with("$argon2id$") && !h.contains("correct horse")));
    open(worker, "ops", false).await
}

#[tokio::test]
async fn files_that_cannot_be_loaded_exit_2_and_load_nothing() {
    let worker = TestWorker::spawn().await;
    let no_header = TempCsv::new("AR7,x,ACTIVE\n");
    let missing_column = TempCsv::new("number,name\nAR7,x\n");
    let cases = [
        (
            vec!["import", no_header.path(), "--table", "accounts_receivable"],
            "3 of the header's 3 fields name no column of the table (is the header row missing?)",
        ),
        (
            vec![
                "import",
                missing_column.path(),
                "--table",
                "accounts_receivable",
            ],
            "line 1: column \"life_cycle_state\" is missing",
        ),
        (
            vec![
                "import",
                "/nonexistent/file.csv",
                "--table",
                "accounts_receivable",
            ],
            "cannot open /nonexistent/file.csv",
        ),
        (
            vec!["import", no_header.path(), "--table", "customers"],
            "invalid value 'customers'",
        ),
    ];
    for (args, expected) in cases {
        let run = tucano(&worker.db_name, &args, None).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{expected:?} in {}",
            run.stderr
        );
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts_receivable WHERE number = 'AR7'")
            .fetch_one(&worker.pool)
            .await
            .expect("count");
    assert_eq!(count, 0);

    // An unreachable database.
    let good = TempCsv::new("number,name,life_cycle_state\nAR7,x,ACTIVE\n");
    let run = run_binary(
        &["import", good.path(), "--table", "accounts_receivable"],
        &[(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/nowhere".to_owned(),
        )],
        None,
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("nothing imported"), "{}", run.stderr);
}

#[tokio::test]
async fn sessions_open_release_and_disabled_users_are_honoured_by_the_worker() {
    let worker = TestWorker::spawn().await;
    import_samples(&worker).await;
    let hex = open_user(&worker).await;
    assert!(
        hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hex}"
    );
    let jwt = open(&worker, "ops", true).await;
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    assert_eq!(code_for(&worker, &hex).await, "OK");
    assert_eq!(code_for(&worker, &jwt).await, "OK");
    // Its claims are the CRM's: jti is the session id.
    let (_, claims) = crate::jwt::verify(&jwt, CRM_SECRET);
    let session: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM sessions WHERE token_sha256 IS NULL")
            .fetch_one(&worker.pool)
            .await
            .expect("session");
    assert_eq!(
        claims["jti"],
        json!(session.simple().to_string().to_uppercase())
    );
    assert_eq!(claims["usr"], json!("ops"));
    assert_eq!(claims["org"], json!("Tucano CRM"));
    let lifetime = claims["exp"]
        .as_i64()
        .zip(claims["iat"].as_i64())
        .map(|(e, i)| e - i);
    assert_eq!(lifetime, Some(600));

    for token in [&hex, &jwt] {
        let run = tucano(&worker.db_name, &["session", "release", "-"], Some(token)).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(code_for(&worker, token).await, "INVALID_TOKEN");
        let again = tucano(&worker.db_name, &["session", "release", token], None).await;
        assert_eq!(
            again.code, 1,
            "a released token is refused: {}",
            again.stderr
        );
    }

    let hex = open(&worker, "ops", false).await;
    let jwt = open(&worker, "ops", true).await;
    let run = tucano(&worker.db_name, &["user", "disable", "ops"], None).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for token in [&hex, &jwt] {
        assert_eq!(code_for(&worker, token).await, "INVALID_TOKEN");
    }
    let refused = tucano(&worker.db_name, &["session", "open", "ops"], None).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stdout.is_empty());
    let unknown = tucano(&worker.db_name, &["user", "disable", "nobody"], None).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no API user \"nobody\""),
        "{}",
        unknown.stderr
    );
}
