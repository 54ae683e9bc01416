//! What the real commands print about their URLs: never a password, however the URL
//! is written (issue 31: `call` and `batch` printed an `AMQP_URL` whose password holds
//! an unencoded `/`), and nothing of a URL that does not parse; and a warning, once,
//! when TLS files are set while a node of `AMQP_URL` is plain `amqp://`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::{binary_command, cleanup, unique, BinaryRun, AMQP_URL};

/// The secret of every hostile URL below; no output may hold any of its pieces.
const PIECES: [&str; 4] = ["Zq9", "Wv7", "Secret", "1234"];

/// Broker URLs as a hurried operator writes them, all with the password
/// `Zq9/Wv7Secret` or alike, none reachable (port 1 refuses at once).
const HOSTILE_AMQP: [&str; 7] = [
    // The issue's: the `/` ends the authority, `Zq9` is no port.
    "amqp://guest:Zq9/Wv7Secret@127.0.0.1:1/%2f",
    // `1234` passes for a port and `Wv7Secret@127.0.0.1:1/%2f` for a path.
    "amqp://guest:1234/Wv7Secret@127.0.0.1:1/%2f",
    "amqp://guest:1234#Wv7Secret@127.0.0.1:1/%2f",
    "amqp://guest:1234?Wv7Secret@127.0.0.1:1/%2f",
    // A comma cuts the URL in two nodes: `amqp://guest:1234` looks like a node.
    "amqp://guest:1234,Wv7Secret@127.0.0.1:1/%2f",
    "guest:Zq9Wv7Secret@127.0.0.1:1",
    // Well formed, in a list with one that is not.
    "amqp://guest:Wv7Secret@127.0.0.1:1/%2f, amqp://guest:Zq9/Wv7Secret@127.0.0.1:2/%2f",
];

/// Runs `command` until it exits, `needle` appears on its standard error, or `limit`
/// passes (then it is killed); returns its exit code (`None` if killed) and standard
/// error.
fn run_until(mut command: Command, needle: &str, limit: Duration) -> (Option<i32>, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let stderr = child.stderr.take().expect("stderr piped");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut text = String::new();
    let code = loop {
        match received.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if !needle.is_empty() && line.contains(needle) {
                    break None;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break child.wait().expect("wait").code();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            break None;
        }
    };
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = reader.join();
    (code, text)
}

fn assert_no_piece(what: &str, url: &str, stderr: &str) {
    for piece in PIECES {
        assert!(
            !stderr.contains(piece),
            "{what} with {url:?} printed {piece:?}:\n{stderr}"
        );
    }
}

fn call(prefix: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tucano-auth"));
    command
        .args(["call", "{}", "--timeout", "5"])
        .env("QUEUE_PREFIX", prefix)
        .env_remove("AMQP_CA_FILE")
        .env_remove("AMQP_CLIENT_CERT_FILE")
        .env_remove("AMQP_CLIENT_KEY_FILE")
        .envs(env.iter().copied());
    command
}

/// A scratch directory with a one-request NDJSON input, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(unique("redaction"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("in.ndjson"), "{}\n").expect("write input");
        Scratch(dir)
    }

    fn batch(&self, prefix: &str, env: &[(&str, &str)]) -> Command {
        let output = self.0.join(format!("out-{}.ndjson", unique("o")));
        let mut command = Command::new(env!("CARGO_BIN_EXE_tucano-auth"));
        command
            .arg("batch")
            .arg("--input")
            .arg(self.0.join("in.ndjson"))
            .arg("--output")
            .arg(output)
            .env("QUEUE_PREFIX", prefix)
            .env_remove("AMQP_CA_FILE")
            .env_remove("AMQP_CLIENT_CERT_FILE")
            .env_remove("AMQP_CLIENT_KEY_FILE")
            .envs(env.iter().copied());
        command
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn call_and_batch_print_no_password_of_amqp_url() {
    tokio::task::spawn_blocking(|| {
        let scratch = Scratch::new();
        let prefix = unique("red");
        for url in HOSTILE_AMQP {
            let env = [("AMQP_URL", url)];
            for (what, command) in [
                ("call", call(&prefix, &env)),
                ("batch", scratch.batch(&prefix, &env)),
            ] {
                let (code, stderr) = run_until(command, "", Duration::from_secs(60));
                assert_eq!(code, Some(2), "{what} with {url:?}:\n{stderr}");
                assert_no_piece(what, url, &stderr);
                assert!(
                    stderr.contains("AMQP_URL"),
                    "{what} with {url:?} does not say which setting failed:\n{stderr}"
                );
            }
        }
        // Well formed: the node is named, without its password.
        let url = "amqp://guest:Wv7Secret@127.0.0.1:1/%2f";
        let (_, stderr) = run_until(
            call(&prefix, &[("AMQP_URL", url)]),
            "",
            Duration::from_secs(60),
        );
        assert!(
            stderr.contains("amqp://guest@127.0.0.1:1/%2f (password hidden)"),
            "{stderr}"
        );
        // The URL: nothing of it.
        let url = HOSTILE_AMQP[0];
        let (_, stderr) = run_until(
            call(&prefix, &[("AMQP_URL", url)]),
            "",
            Duration::from_secs(60),
        );
        assert!(stderr.contains("<unparseable URL>"), "{stderr}");
        assert!(!stderr.contains("127.0.0.1"), "{stderr}");
    })
    .await
    .expect("join");
}

#[tokio::test]
async fn serve_prints_no_password_of_its_urls() {
    let run = BinaryRun::new("redserve").await;
    let (prefix, db_url) = (run.prefix.clone(), run.db_url.clone());
    tokio::task::spawn_blocking(move || {
        // A broker URL that does not parse is a startup error, without the URL.
        for url in HOSTILE_AMQP {
            let command = binary_command(&prefix, &db_url, &[("AMQP_URL", url)], Stdio::null());
            let (code, stderr) = run_until(command, "", Duration::from_secs(60));
            assert_eq!(code, Some(2), "serve with {url:?}:\n{stderr}");
            assert_no_piece("serve", url, &stderr);
            assert!(stderr.contains("AMQP_URL"), "{stderr}");
        }
        // A broker that does not answer is retried, and named without the password.
        let url = "amqp://guest:Wv7Secret@127.0.0.1:1/%2f";
        let command = binary_command(&prefix, &db_url, &[("AMQP_URL", url)], Stdio::null());
        let (_, stderr) = run_until(command, "retrying", Duration::from_secs(60));
        assert!(stderr.contains("retrying"), "{stderr}");
        assert!(
            stderr.contains("amqp://guest@127.0.0.1:1/%2f (password hidden)"),
            "{stderr}"
        );
        assert_no_piece("serve", url, &stderr);
        // The database's URL, however it is written.
        for database in [
            "postgres://app:Zq9/Wv7Secret@127.0.0.1:1/tucano",
            "postgres://app:Zq9Wv7Secret@127.0.0.1:1/tucano?sslmode=disable",
            "host=127.0.0.1 port=1 user= password=Zq9Wv7Secret dbname=tucano",
        ] {
            let command = binary_command(&prefix, database, &[], Stdio::null());
            // Exits, or (a database that does not answer is waited for) says so.
            let (_, stderr) = run_until(command, "retrying", Duration::from_secs(30));
            assert!(
                stderr.contains("DATABASE_URL") || stderr.contains("database"),
                "{stderr}"
            );
            assert_no_piece("serve", database, &stderr);
        }
    })
    .await
    .expect("join");
    cleanup(&run.prefix, &run.prefix).await;
}

#[tokio::test]
async fn tls_files_set_for_a_plain_node_are_warned_about_once() {
    let run = BinaryRun::new("redtls").await;
    let (prefix, db_url) = (run.prefix.clone(), run.db_url.clone());
    let plain_shown = "amqp://guest@127.0.0.1:5672/%2f (password hidden)";
    assert!(AMQP_URL.starts_with("amqp://guest:guest@127.0.0.1:5672/"));
    tokio::task::spawn_blocking(move || {
        let scratch = Scratch::new();
        let count = |stderr: &str| stderr.matches("plain amqp://").count();

        // serve: one warning at start, naming the variable and the node.
        let command = binary_command(
            &prefix,
            &db_url,
            &[("AMQP_CA_FILE", "/nonexistent/ca.pem")],
            Stdio::null(),
        );
        let (_, stderr) = run_until(command, "consuming", Duration::from_secs(60));
        assert!(stderr.contains("consuming"), "{stderr}");
        assert_eq!(count(&stderr), 1, "{stderr}");
        assert!(stderr.contains("AMQP_CA_FILE is set"), "{stderr}");
        assert!(stderr.contains(plain_shown), "{stderr}");
        assert!(!stderr.contains("guest:guest"), "{stderr}");

        // call, a mixed list: only the plain node is named.
        let mixed = format!("amqps://guest:guest@127.0.0.1:1/%2f,{AMQP_URL}");
        let env = [
            ("AMQP_URL", mixed.as_str()),
            ("AMQP_CA_FILE", "/nonexistent/ca.pem"),
            ("AMQP_CLIENT_CERT_FILE", "/nonexistent/cert.pem"),
        ];
        let (_, stderr) = run_until(call(&prefix, &env), "", Duration::from_secs(60));
        assert_eq!(count(&stderr), 1, "{stderr}");
        assert!(
            stderr.contains("AMQP_CA_FILE, AMQP_CLIENT_CERT_FILE are set"),
            "{stderr}"
        );
        let warning = stderr
            .lines()
            .find(|line| line.contains("plain amqp://"))
            .unwrap_or_default();
        assert!(warning.starts_with("warning: "), "{warning}");
        assert!(warning.contains(plain_shown), "{warning}");
        assert!(!warning.contains("127.0.0.1:1/"), "{warning}");

        // batch, the broker away: the warning, then the error.
        let env = [
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("AMQP_CLIENT_KEY_FILE", "/nonexistent/key.pem"),
        ];
        let (code, stderr) = run_until(scratch.batch(&prefix, &env), "", Duration::from_secs(60));
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(count(&stderr), 1, "{stderr}");
        assert!(stderr.contains("AMQP_CLIENT_KEY_FILE is set"), "{stderr}");

        // No file set, or every node amqps://: no warning.
        let (_, stderr) = run_until(
            call(&prefix, &[("AMQP_URL", AMQP_URL)]),
            "",
            Duration::from_secs(60),
        );
        assert_eq!(count(&stderr), 0, "{stderr}");
        let env = [
            ("AMQP_URL", "amqps://guest:guest@127.0.0.1:1/%2f"),
            ("AMQP_CA_FILE", "/nonexistent/ca.pem"),
        ];
        let (_, stderr) = run_until(call(&prefix, &env), "", Duration::from_secs(60));
        assert_eq!(count(&stderr), 0, "{stderr}");
    })
    .await
    .expect("join");
    cleanup(&run.prefix, &run.prefix).await;
}
