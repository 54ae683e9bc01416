//! The command line of the real binary: each subcommand offers what it uses, and
//! configuration errors name what the user set.

use std::process::{Command, Output};

use crate::helpers::{cleanup, unique, PG_SERVER};

const BINARY: &str = env!("CARGO_BIN_EXE_tucano-auth");

fn help(subcommand: &str) -> String {
    let output = Command::new(BINARY)
        .args([subcommand, "--help"])
        .output()
        .expect("run --help");
    assert!(output.status.success(), "{subcommand} --help failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn each_subcommand_offers_only_the_settings_it_uses() {
    let call = help("call");
    assert!(call.contains("--amqp-url"), "{call}");
    assert!(call.contains("--queue-prefix"), "{call}");
    assert!(!call.contains("--database-url"), "{call}");
    for subcommand in ["migrate", "seed-demo"] {
        let text = help(subcommand);
        assert!(text.contains("--database-url"), "{text}");
        assert!(!text.contains("--amqp-url"), "{text}");
        assert!(!text.contains("--queue-prefix"), "{text}");
    }
    let serve = help("serve");
    for flag in [
        "--amqp-url",
        "--database-url",
        "--queue-prefix",
        "--jwt-secret",
    ] {
        assert!(serve.contains(flag), "serve --help lacks {flag}: {serve}");
    }
}

/// `serve` with `env` and a signing key, against a database and a broker that do not
/// exist: for settings refused before anything connects.
fn serve_refusing(env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BINARY)
        .arg("serve")
        .env(
            "TUCANO_JWT_SECRET",
            "an-hs256-key-of-at-least-32-bytes-long",
        )
        .envs(env.iter().copied())
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/never")
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .output()
        .expect("run serve")
}

#[test]
fn both_jwt_secret_variables_are_refused_by_their_names() {
    let output = serve_refusing(&[("TUCANO_JWT_SECRET_FILE", "/nonexistent/jwt-secret")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("TUCANO_JWT_SECRET and TUCANO_JWT_SECRET_FILE"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("an-hs256-key"),
        "the secret was printed: {stderr}"
    );
}

#[test]
fn event_loop_settings_that_cannot_be_used_are_refused_by_their_names() {
    // The variables set, and what the error must say.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 1] = [(
        &[("TUCANO_WORKER_THREADS", "0")],
        &["TUCANO_WORKER_THREADS must be at least 1"],
    )];
    for (env, expected) in cases {
        let output = serve_refusing(env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        for text in expected {
            assert!(stderr.contains(text), "{env:?}: {text:?} in {stderr}");
        }
    }
}

#[tokio::test]
async fn a_second_migrate_logs_no_postgresql_notices() {
    let db = unique("m");
    let url = format!("{PG_SERVER}/{db}");
    let migrate = move || -> Output {
        Command::new(BINARY)
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "info")
            .output()
            .expect("run migrate")
    };
    let again = migrate.clone();
    let first = tokio::task::spawn_blocking(migrate).await.expect("join");
    let second = tokio::task::spawn_blocking(again).await.expect("join");
    cleanup(&db, &db).await;
    let first_err = String::from_utf8_lossy(&first.stderr);
    let second_err = String::from_utf8_lossy(&second.stderr);
    assert!(first.status.success(), "{first_err}");
    assert!(second.status.success(), "{second_err}");
    assert!(second_err.contains("database ready"), "{second_err}");
    // Every restart used to log `relation "_sqlx_migrations" already exists, skipping`.
    for stderr in [&first_err, &second_err] {
        assert!(!stderr.contains("already exists"), "{stderr}");
    }
}
