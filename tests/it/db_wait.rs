//! A database that cannot be reached when `serve` starts is waited for, as the broker
//! is (docs/protocol.md §8): the HTTP server is up, `/readyz` answers 503 naming the
//! database, and once it answers the worker migrates, consumes and answers. What
//! waiting cannot mend (a login refused, a URL or an `sslmode` that does not parse)
//! stays a startup error, exit 2, naming the variable.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::observe::{http_get, start_with_metrics};

/// The retry lines of `variable` in the log `text`.
fn retries(text: &str, variable: &str) -> usize {
    let named = format!("variable=\"{variable}\"");
    text.lines()
        .filter(|line| line.contains("cannot reach the database") && line.contains(&named))
        .count()
}

/// Log lines of `log` containing every one of `parts`.
fn lines_with(log: &std::path::Path, parts: &[&str]) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .count()
}

#[tokio::test]
async fn a_worker_started_before_its_databases_waits_for_both_and_answers_once_they_do() {
    let run = BinaryRun::new("dw").await;
    let log = std::env::temp_dir().join(format!("{}.log", run.prefix));
    let (primary, standby) = (Proxy::start().await, Proxy::start().await);
    primary.cut();
    standby.cut();
    let url = |port: u16| {
        format!(
            "postgres://postgres:SECRET-PW-7031@127.0.0.1:{port}/{}",
            run.prefix
        )
    };
    let (primary_url, standby_url) = (url(primary.port), url(standby.port));
    let (mut child, addr) = start_with_metrics(
        &run,
        &[
            ("DATABASE_URL", &primary_url),
            ("DATABASE_READ_URL", &standby_url),
        ],
        &log,
    )
    .await;

    wait_for("two retries of DATABASE_URL in the log", async || {
        retries(
            &std::fs::read_to_string(&log).unwrap_or_default(),
            "DATABASE_URL",
        ) >= 2
    })
    .await;
    let (status, body) = http_get(addr, "/readyz").await.expect("/readyz answers");
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["database"], false, "{body}");
    assert_eq!(http_get(addr, "/healthz").await.map(|r| r.0), Some(200));
    assert!(child.try_wait().expect("wait").is_none(), "still waiting");

    // The primary answers, the standby not yet: waits for DATABASE_READ_URL.
    primary.restore();
    wait_for("two retries of DATABASE_READ_URL in the log", async || {
        retries(
            &std::fs::read_to_string(&log).unwrap_or_default(),
            "DATABASE_READ_URL",
        ) >= 2
    })
    .await;
    assert_eq!(http_get(addr, "/readyz").await.map(|r| r.0), Some(503));
    assert!(child.try_wait().expect("wait").is_none(), "still waiting");

    standby.restore();
    let restored = Instant::now();
    wait_for("/readyz 200 once both answer", async || {
        http_get(addr, "/readyz").await.map(|r| r.0) == Some(200)
    })
    .await;
    let ready_after = restored.elapsed();
    run.send(1).await;
    wait_for("the reply", async || run.replies_ready().await >= 1).await;
    let reply = run.take_reply().await.expect("a reply");
    let body: serde_json::Value = serde_json::from_slice(&reply.data).expect("JSON reply");

    let status = terminate(&mut child);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    cleanup(&run.prefix, &run.prefix).await;
    assert_eq!(body["status"]["code"], "OK", "{body}");
    assert!(status.success(), "{status}: {text}");
    assert!(
        !text.contains("SECRET-PW-7031"),
        "no password logged: {text}"
    );
    eprintln!(
        "waited {} times for DATABASE_URL and {} for DATABASE_READ_URL; ready {ready_after:?} after both answered",
        retries(&text, "DATABASE_URL"),
        retries(&text, "DATABASE_READ_URL")
    );
}

#[tokio::test]
async fn sigterm_stops_a_worker_that_waits_for_its_database() {
    let prefix = unique("dt");
    let log = std::env::temp_dir().join(format!("{prefix}.log"));
    // Port 1 on loopback: nothing listens, refused at once.
    let mut child = start_binary(
        &prefix,
        &format!("postgres://postgres@127.0.0.1:1/{prefix}"),
        &[],
        Stdio::from(std::fs::File::create(&log).expect("log")),
    );
    wait_for("a retry in the log", async || {
        lines_with(&log, &["cannot reach the database", "127.0.0.1:1"]) >= 1
    })
    .await;
    let start = Instant::now();
    let status = terminate(&mut child);
    let took = start.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    cleanup(&prefix, &prefix).await;
    assert!(status.success(), "{status}: {text}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
}

/// What is wrong, the variables set, and what the error must name.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a [&'a str]);

#[tokio::test]
async fn a_refused_login_a_bad_url_or_sslmode_stays_a_startup_error_naming_the_variable() {
    let run = BinaryRun::new("dr").await;
    let good = run.db_url.clone();
    let nobody = format!("postgres://no_such_role_4711@127.0.0.1:5432/{}", run.prefix);
    let cases: [Case; 5] = [
        (
            "unknown role",
            vec![("DATABASE_URL", nobody.clone())],
            &["DATABASE_URL", "no_such_role_4711"],
        ),
        (
            "unknown role of the standby",
            vec![
                ("DATABASE_URL", good.clone()),
                ("DATABASE_READ_URL", nobody.clone()),
            ],
            &["DATABASE_READ_URL"],
        ),
        (
            "not a URL",
            vec![("DATABASE_URL", "postgres://127.0.0.1:notaport/x".into())],
            &["DATABASE_URL"],
        ),
        (
            "a bad sslmode",
            vec![("DATABASE_URL", format!("{good}?sslmode=always"))],
            &["DATABASE_URL", "sslmode=\"always\""],
        ),
        (
            "a bad sslmode of the standby",
            vec![
                ("DATABASE_URL", good.clone()),
                ("DATABASE_READ_URL", format!("{good}?sslmode=always")),
            ],
            &["DATABASE_READ_URL", "sslmode=\"always\""],
        ),
    ];
    for (what, env, named) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let started = Instant::now();
        let child = binary_command(&run.prefix, &good, &env, Stdio::piped())
            .spawn()
            .expect("start");
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::task::spawn_blocking(move || child.wait_with_output()),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: exits within 30 s, without waiting"))
        .expect("join")
        .expect("output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        let error = stderr
            .lines()
            .find(|line| line.starts_with("error:"))
            .unwrap_or_else(|| panic!("{what}: an error line: {stderr}"));
        for name in named {
            assert!(error.contains(name), "{what}: names {name}: {error}");
        }
        assert!(
            !stderr.contains("cannot reach the database"),
            "{what}: not waited for: {stderr}"
        );
        eprintln!("{what}: exit 2 after {:?}: {error}", started.elapsed());
    }
    cleanup(&run.prefix, &run.prefix).await;
}
