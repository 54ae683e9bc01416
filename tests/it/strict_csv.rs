//! Input files as a hurried operator or an attacker writes them, through the real
//! `import` and `batch` binaries: a quote that never closes, a record over 1 MiB and
//! bytes that are not UTF-8 refuse the whole file at their line with nothing loaded or
//! sent; CRLF line ends and a byte-order mark change no line number; an NDJSON line
//! over 1 MiB is answered alone; the output of `batch` is private and no symbolic
//! link is followed; no message of `import` shows a secret, whatever the header says.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use lapin::Connection;
use serde_json::json;
use tucano_auth::store::seed;

use crate::batch::{request, results, run_batch, Scratch};
use crate::helpers::{cleanup, declare_durable, depth, unique, TestWorker, AMQP_URL};
use crate::import::{import, import_samples, Run};

const TOKEN: &str = seed::SESSION_TOKEN;

/// The file: a quote opened on line 3 never closes.
const STRAY_QUOTE: &str =
    "number,life_cycle_state,name\nA1,ACTIVE,Alice\nA2,ACTIVE,\"Bob\nA3,ACTIVE,Carol\n";

/// `text` with CRLF line ends.
fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

/// `text` after a UTF-8 byte-order mark.
fn bom(text: &str) -> String {
    format!("\u{feff}{text}")
}

/// The same content in the four encodings a user's tools produce.
fn encodings(text: &str) -> [(&'static str, String); 4] {
    [
        ("LF", text.to_owned()),
        ("CRLF", crlf(text)),
        ("BOM LF", bom(text)),
        ("BOM CRLF", bom(&crlf(text))),
    ]
}

fn stderr(run: &Output) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// The rejection lines of an import's standard error ("line N: reason"), file name cut.
fn rejections(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter_map(|line| {
            line.split_once(": line ")
                .map(|(_, rest)| format!("line {rest}"))
        })
        .collect()
}

async fn accounts(worker: &TestWorker, numbers: &[&str]) -> Vec<(String, String)> {
    let numbers: Vec<String> = numbers.iter().map(|n| (*n).to_owned()).collect();
    sqlx::query_as(
        "SELECT number, name FROM accounts_receivable WHERE number = ANY($1) ORDER BY number",
    )
    .bind(numbers)
    .fetch_all(&worker.pool)
    .await
    .expect("accounts")
}

/// A batch queue of `prefix` that nobody consumes: whatever `batch` sends stays there.
async fn idle_batch_queue(prefix: &str) -> (Connection, String) {
    let conn = Connection::connect(AMQP_URL, Default::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let queue = format!("{prefix}.authenticate.batch");
    declare_durable(&channel, &queue).await;
    (conn, queue)
}

/// A file over the limit: a record of 1 MiB + 1 byte on line 3.
fn over_long_record() -> Vec<u8> {
    let mut text = b"number,life_cycle_state,name\nL1,ACTIVE,Ann\nL2,ACTIVE,".to_vec();
    text.extend(std::iter::repeat_n(b'x', 1 << 20));
    text.extend_from_slice(b"\nL3,ACTIVE,Eve\n");
    text
}

/// Latin-1, as a spreadsheet saves it by default: `é` is the lone byte 0xE9, line 4.
fn latin1() -> Vec<u8> {
    b"number,life_cycle_state,name\nL1,ACTIVE,Ann\nL2,ACTIVE,Bo\nL3,ACTIVE,Jos\xe9\nL4,ACTIVE,Eve\n"
        .to_vec()
}

#[tokio::test]
async fn malformed_csv_files_are_refused_whole_at_their_line_by_import() {
    let worker = TestWorker::spawn().await;
    let scratch = Scratch::new();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "stray",
            STRAY_QUOTE.as_bytes().to_vec(),
            "line 3: quote never closed",
        ),
        (
            "stray-crlf",
            bom(&crlf(STRAY_QUOTE)).into_bytes(),
            "line 3: quote never closed",
        ),
        ("long", over_long_record(), "line 3: record over 1 MiB"),
        ("latin1", latin1(), "line 4: bytes that are not UTF-8"),
        (
            "quote-then-long",
            {
                let mut text = b"number,life_cycle_state,name\nQ1,ACTIVE,\"open\n".to_vec();
                text.extend(std::iter::repeat_n(b'y', 1 << 20));
                text
            },
            "line 2: record over 1 MiB (the quote opened on line 2 never closes)",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = scratch.path(&format!("{name}.csv"));
        std::fs::write(&path, &bytes).expect("write");
        let run = import(&worker, path.to_str().expect("path"), "accounts_receivable").await;
        assert_eq!(run.code, 2, "{name}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{name}: {expected:?} in {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("nothing imported"),
            "{name}: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "{name}: no summary");
    }
    // Through a pipe, which cannot be checked before it is read: refused all the same.
    let piped = crate::import::tucano(
        &worker.db_name,
        &["import", "/dev/stdin", "--table", "accounts_receivable"],
        Some(STRAY_QUOTE),
    )
    .await;
    assert_eq!(piped.code, 2, "{}{}", piped.stdout, piped.stderr);
    assert!(
        piped.stderr.contains("line 3: quote never closed"),
        "{}",
        piped.stderr
    );
    let loaded = accounts(&worker, &["A1", "A2", "A3", "L1", "L2", "L3", "L4", "Q1"]).await;
    assert_eq!(loaded, [], "nothing of any refused file is loaded");

    // The same file with its quote closed loads every row.
    let fixed = scratch.file("fixed.csv", &STRAY_QUOTE.replace("\"Bob", "\"Bob\""));
    let run = import(
        &worker,
        fixed.to_str().expect("path"),
        "accounts_receivable",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("3 rows read: 3 inserted"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn malformed_csv_inputs_stop_batch_before_anything_is_sent() {
    let scratch = Scratch::new();
    let prefix = unique("strict");
    let (conn, queue) = idle_batch_queue(&prefix).await;
    let header = "token,subscription_identifier.number\n";
    let stray = format!("{header}T,S1\nT,\"S2\nT,S3\n");
    let mut long = format!("{header}T,S1\nT,").into_bytes();
    long.extend(std::iter::repeat_n(b'9', 1 << 20));
    long.extend_from_slice(b"\nT,S3\n");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "stray",
            stray.clone().into_bytes(),
            "line 3: quote never closed",
        ),
        (
            "stray-crlf",
            bom(&crlf(&stray)).into_bytes(),
            "line 3: quote never closed",
        ),
        ("long", long, "line 3: record over 1 MiB"),
        (
            "latin1",
            [format!("{header}T,S1\nT,S").as_bytes(), b"\xe9\n"].concat(),
            "line 3: bytes that are not UTF-8",
        ),
    ];
    for (name, bytes, expected) in cases {
        let input = scratch.path(&format!("{name}.csv"));
        std::fs::write(&input, &bytes).expect("write");
        let output = scratch.path(&format!("{name}.out"));
        let run = run_batch(&prefix, &input, &output, &["--timeout", "5"]).await;
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {expected:?} in {err}");
        assert!(!output.exists(), "{name}: no output file is left behind");
        // An output a previous run left is not touched either.
        std::fs::write(&output, "{\"line\":1}\n").expect("write");
        let run = run_batch(&prefix, &input, &output, &["--resume", "--timeout", "5"]).await;
        assert_eq!(run.status.code(), Some(2), "{name}: {}", stderr(&run));
        assert_eq!(
            std::fs::read_to_string(&output).expect("read"),
            "{\"line\":1}\n"
        );
    }
    assert_eq!(
        depth(&conn, &queue).await,
        Some((0, 0)),
        "no request was sent"
    );
    let _ = conn.close(200, "done".into()).await;
    cleanup(&prefix, &prefix).await;
}

#[tokio::test]
async fn crlf_and_bom_files_import_with_the_line_numbers_of_lf_files() {
    let worker = TestWorker::spawn().await;
    let scratch = Scratch::new();
    // A quoted value spanning lines 3-4 and a blank line 5 before the later rows.
    let text = "number,name,life_cycle_state\n\
                AC1,Alice,ACTIVE\n\
                AC2,\"Bob\n\
                Smith\",active\n\
                \n\
                AC3,Carol\n\
                AC1,Alice again,ACTIVE\n\
                AC4,Dave,ACTIVE\n";
    let expected = [
        "line 3: life_cycle_state \"active\" is not upper-case",
        "line 6: 2 fields where the header has 3",
        "line 7: number 'AC1' is already on line 2",
    ];
    for (i, (name, content)) in encodings(text).into_iter().enumerate() {
        let path = scratch.file(&format!("{i}.csv"), &content);
        let run = import(&worker, path.to_str().expect("path"), "accounts_receivable").await;
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        assert_eq!(rejections(&run), expected, "{name}: {}", run.stderr);
        let counts = if i == 0 {
            "5 rows read: 2 inserted, 0 updated, 0 unchanged, 3 rejected"
        } else {
            "5 rows read: 0 inserted, 0 updated, 2 unchanged, 3 rejected"
        };
        assert!(run.stdout.contains(counts), "{name}: {}", run.stdout);
    }
    assert_eq!(
        accounts(&worker, &["AC1", "AC2", "AC3", "AC4"]).await,
        [
            ("AC1".to_owned(), "Alice".to_owned()),
            ("AC4".to_owned(), "Dave".to_owned())
        ],
        "the same rows, the header's mark not part of its first column"
    );
}

#[tokio::test]
async fn crlf_and_bom_inputs_give_batch_the_line_numbers_of_lf_files() {
    let worker = TestWorker::spawn().await;
    let scratch = Scratch::new();
    // CSV: a blank line 3, a quoted value spanning lines 4-5, a short row on line 6.
    let csv = "token,subscription_identifier.number\n\
               TOKEN,S0000000329\n\
               \n\
               TOKEN,\"NOPE\n\
               1\"\n\
               TOKEN\n\
               TOKEN,S0000000329\n"
        .replace("TOKEN", TOKEN);
    // NDJSON: a blank line 2, not JSON on line 3.
    let ndjson = [
        request("S0000000329"),
        String::new(),
        "{not json".to_owned(),
        request("NOPE-1"),
        request("S0000000329"),
    ]
    .join("\n")
        + "\n";
    for (format, text, expected) in [
        (
            "csv",
            csv,
            vec![
                (2, "OK"),
                (4, "NOT_FOUND"),
                (6, "INVALID_REQUEST"),
                (7, "OK"),
            ],
        ),
        (
            "ndjson",
            ndjson,
            vec![
                (1, "OK"),
                (3, "INVALID_REQUEST"),
                (4, "NOT_FOUND"),
                (5, "OK"),
            ],
        ),
    ] {
        for (name, content) in encodings(&text) {
            let tag = format!("{format}-{}", name.replace(' ', "-"));
            let input = scratch.file(&format!("{tag}.{format}"), &content);
            let output = scratch.path(&format!("{tag}.out"));
            let run = run_batch(&worker.prefix, &input, &output, &[]).await;
            assert_eq!(run.status.code(), Some(1), "{tag}: {}", stderr(&run));
            let got: Vec<(u64, String)> = results(&output)
                .into_iter()
                .map(|(line, code, _)| (line, code))
                .collect();
            let want: Vec<(u64, String)> = expected
                .iter()
                .map(|(line, code)| (*line, (*code).to_owned()))
                .collect();
            assert_eq!(got, want, "{tag}");
        }
    }
}

#[tokio::test]
async fn an_ndjson_line_over_1_mib_is_invalid_and_the_rest_is_answered() {
    let worker = TestWorker::spawn().await;
    let scratch = Scratch::new();
    let long = json!({"token": TOKEN, "subscription_identifier": {"number": "x".repeat(1 << 20)}})
        .to_string();
    let input = scratch.file(
        "long.ndjson",
        &[request("S0000000329"), long, request("S0000000329")].join("\n"),
    );
    let output = scratch.path("long.out");
    let run = run_batch(&worker.prefix, &input, &output, &[]).await;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let lines = results(&output);
    let got: Vec<(u64, &str)> = lines.iter().map(|(l, c, _)| (*l, c.as_str())).collect();
    assert_eq!(got, [(1, "OK"), (2, "INVALID_REQUEST"), (3, "OK")]);
    assert_eq!(lines[1].2["message"], "the line is over 1 MiB");
}

#[tokio::test]
async fn batch_output_is_private_and_a_symbolic_link_there_is_refused() {
    let worker = TestWorker::spawn().await;
    let scratch = Scratch::new();
    let input = scratch.file("in.ndjson", &request("S0000000329"));
    let output = scratch.path("out.ndjson");
    let run = run_batch(&worker.prefix, &input, &output, &[]).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&output), 0o600, "created for its owner only");
    // --resume completes the same file (here: nothing left to do).
    let before = std::fs::read_to_string(&output).expect("read");
    let run = run_batch(&worker.prefix, &input, &output, &["--resume"]).await;
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(std::fs::read_to_string(&output).expect("read"), before);

    // A link at the output path, to a file or to nowhere, is refused without writing.
    let victim = scratch.file("victim", "");
    let dangling = scratch.path("nowhere");
    for (name, target) in [("to-file", &victim), ("dangling", &dangling)] {
        let link = scratch.path(name);
        std::os::unix::fs::symlink(target, &link).expect("symlink");
        for extra in [&[][..], &["--resume"][..]] {
            let run = run_batch(&worker.prefix, &input, &link, extra).await;
            let err = stderr(&run);
            assert_eq!(run.status.code(), Some(2), "{name} {extra:?}: {err}");
            assert!(err.contains("is a symbolic link"), "{name}: {err}");
        }
    }
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "");
    assert!(!dangling.exists(), "nothing created through the link");
}

#[tokio::test]
async fn import_messages_never_show_a_secret_whatever_the_header_says() {
    let worker = TestWorker::spawn().await;
    import_samples(&worker).await;
    let scratch = Scratch::new();
    // The header names the columns in another order than the rows give them: each
    // check sees a secret under another column's name.
    let tokens = scratch.file(
        "tokens.csv",
        "number,life_cycle_state,accounts_receivable_number,pass_code,authentication_code,identifier\n\
         SECRET-PASS-1,SECRET-AUTH-1,SECRET-IDENT-1,AT900,EFFECTIVE,AR0001\n\
         SECRET-PASS-1,EFFECTIVE,SECRET-AUTH-2,AT901,EFFECTIVE,AR0001\n\
         SECRET-PASS-3,EFFECTIVE,SECRET-AUTH-3,AT902,EFFECTIVE\n",
    );
    let run_tokens = import(&worker, tokens.to_str().expect("path"), "access_tokens").await;
    assert_eq!(
        run_tokens.code, 1,
        "{}{}",
        run_tokens.stdout, run_tokens.stderr
    );
    assert_eq!(
        rejections(&run_tokens),
        [
            "line 2: life_cycle_state is not one of EFFECTIVE, NOT_EFFECTIVE, PENDING_VERIFICATION",
            "line 3: number is the same as on line 2",
            "line 4: 5 fields where the header has 6",
        ],
        "{}",
        run_tokens.stderr
    );
    let users = scratch.file(
        "users.csv",
        "username,organisation,password,life_cycle_state\n\
         ops2,Tucano CRM,ACTIVE,SECRET-PASSWORD-1\n",
    );
    let run_users = import(&worker, users.to_str().expect("path"), "api_users").await;
    assert_eq!(
        run_users.code, 1,
        "{}{}",
        run_users.stdout, run_users.stderr
    );
    assert!(
        run_users
            .stderr
            .contains("line 2: life_cycle_state is not one of ACTIVE, INACTIVE"),
        "{}",
        run_users.stderr
    );
    // A reference given a secret: named by column, never quoted.
    let mediums = scratch.file(
        "mediums.csv",
        "number,accounts_receivable_number,life_cycle_state\nCIM900,SECRET-AUTH-9,EFFECTIVE\n",
    );
    let run_mediums = import(
        &worker,
        mediums.to_str().expect("path"),
        "customer_identification_mediums",
    )
    .await;
    assert!(
        run_mediums
            .stderr
            .contains("line 2: accounts_receivable_number names no accounts_receivable row"),
        "{}",
        run_mediums.stderr
    );
    // A file without its header row: its first row is read as the header.
    let headless = scratch.file("headless.csv", "AT950,SECRET-PASS-7,EFFECTIVE,AR0001\n");
    let run_headless = import(&worker, headless.to_str().expect("path"), "access_tokens").await;
    assert_eq!(run_headless.code, 2, "{}", run_headless.stderr);
    assert!(
        run_headless
            .stderr
            .contains("line 1: column \"number\" is missing; table access_tokens needs"),
        "{}",
        run_headless.stderr
    );
    assert!(
        run_headless.stderr.contains(
            "4 of the header's 4 fields name no column of the table (is the header row missing?)"
        ),
        "{}",
        run_headless.stderr
    );
    assert!(
        !run_headless.stderr.contains("SECRET"),
        "{}",
        run_headless.stderr
    );
    let batch_headless = scratch.file("headless-batch.csv", "SECRET.TOKEN-8,S0000000329\n");
    let run = run_batch(
        &worker.prefix,
        &batch_headless,
        &scratch.path("o-headless"),
        &[],
    )
    .await;
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("CSV column 1 of the header is not `token`"),
        "{}",
        stderr(&run)
    );
    assert!(!stderr(&run).contains("SECRET"), "{}", stderr(&run));
    for run in [&run_tokens, &run_users, &run_mediums, &run_headless] {
        assert!(!run.stderr.contains("SECRET"), "{}", run.stderr);
        assert!(!run.stdout.contains("SECRET"), "{}", run.stdout);
    }

    // The summary says what was hashed and what was kept, in agreement with its counts.
    let one = scratch.file(
        "one.csv",
        "number,pass_code,life_cycle_state,accounts_receivable_number\nAT903,2468,EFFECTIVE,AR0001\n",
    );
    let first = import(&worker, one.to_str().expect("path"), "access_tokens").await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stdout.contains("1 row read: 1 inserted")
            && first.stdout.contains("(1 pass code hashed, 0 kept"),
        "{}",
        first.stdout
    );
    let again = import(&worker, one.to_str().expect("path"), "access_tokens").await;
    assert!(
        again.stdout.contains("1 unchanged")
            && again.stdout.contains("(0 pass codes hashed, 1 kept"),
        "{}",
        again.stdout
    );
}

#[tokio::test]
async fn header_mistakes_get_messages_that_say_what_to_do() {
    let worker = TestWorker::spawn().await;
    let scratch = Scratch::new();
    let semicolons = scratch.file("semi.csv", "number;name;life_cycle_state\nAR8;x;ACTIVE\n");
    let run = import(
        &worker,
        semicolons.to_str().expect("path"),
        "accounts_receivable",
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no comma but semicolons")
            && run.stderr.contains("separated by commas")
            && !run.stderr.contains("is the header row missing"),
        "{}",
        run.stderr
    );
    let tabs = scratch.file("tabs.csv", "token\tsubscription_identifier.number\nT\tS\n");
    let run = run_batch(&worker.prefix, &tabs, &scratch.path("o-tabs"), &[]).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run).contains("no comma but tabs"),
        "{}",
        stderr(&run)
    );
    let misspelt = scratch.file("numbr.csv", "token,subscription_identifier.numbr\nT,S\n");
    let run = run_batch(&worker.prefix, &misspelt, &scratch.path("o-numbr"), &[]).await;
    assert_eq!(run.status.code(), Some(2));
    assert!(
        stderr(&run)
            .contains("subscription_identifier has no field \"numbr\"; its fields are id, number"),
        "{}",
        stderr(&run)
    );
    assert!(!scratch.path("o-tabs").exists() && !scratch.path("o-numbr").exists());
}
