//! The pass-code helper process of `tucano-auth serve`, through the real binary: its
//! answers equal the in-process verification's, it runs in a scheduling group of its
//! own at the lowest priority without the worker's environment, a killed helper is
//! replaced without a wrong answer, and a helper exits as soon as its input closes.
//!
//! A test binary of its own: choosing the helper is process-wide.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use tucano_auth::secret::Secret;
use tucano_auth::store::pass_code::{self, HELPER_COMMAND};
use tucano_testkit::process::{self, Ended, Signal};
use tucano_testkit::procfs;

const BINARY: &str = env!("CARGO_BIN_EXE_tucano-auth");

/// The helpers this process started: `(pid, session id)`.
fn helpers() -> Vec<(u32, u32)> {
    let mut found = Vec::new();
    for pid in procfs::children(std::process::id()) {
        let Some(fields) = procfs::stat_fields(pid) else {
            continue;
        };
        let session: u32 = fields[3].parse().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(HELPER_COMMAND) {
            found.push((pid, session));
        }
    }
    found
}

/// What verification answers for a right code, a wrong one, no stored hash and an
/// unreadable one.
async fn answers(stored: &str) -> [bool; 4] {
    [
        pass_code::verify(Some(stored.to_owned()), &Secret::new("1234"))
            .await
            .unwrap(),
        pass_code::verify(Some(stored.to_owned()), &Secret::new("4321"))
            .await
            .unwrap(),
        pass_code::verify(None, &Secret::new("1234")).await.unwrap(),
        pass_code::verify(
            Some("$argon2id$v=19$m=19456,t=2,p=1$bm90$bm90".to_owned()),
            &Secret::new("1234"),
        )
        .await
        .unwrap(),
    ]
}

#[tokio::test]
async fn verifications_run_in_a_low_priority_helper_that_is_replaced_when_killed() {
    let stored = pass_code::hash("1234").unwrap();
    // Before any helper is chosen: the verifier threads answer themselves.
    assert_eq!(answers(&stored).await, [true, false, false, false]);

    pass_code::use_helper_process(BINARY.into());
    assert_eq!(answers(&stored).await, [true, false, false, false]);
    let first = helpers();
    assert!(!first.is_empty(), "no helper process was started");
    let my_session: u32 = procfs::stat_fields(std::process::id()).unwrap()[3]
        .parse()
        .unwrap();
    for &(pid, session) in &first {
        assert_eq!(
            session, pid,
            "helper {pid} does not lead a session of its own"
        );
        assert_ne!(session, my_session);
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(environ.is_empty(), "helper {pid} inherited an environment");
        if let Ok(group) = std::fs::read_to_string(format!("/proc/{pid}/autogroup")) {
            assert!(
                group.trim_end().ends_with("nice 19"),
                "helper {pid}: {group}"
            );
        }
    }

    for &(pid, _) in &first {
        process::signal_pid(pid, Signal::KILL).unwrap();
    }
    // Every answer stays right while the killed helpers are found dead and replaced.
    for _ in 0..3 {
        assert_eq!(answers(&stored).await, [true, false, false, false]);
    }
    let second = helpers();
    assert!(!second.is_empty(), "no helper was started again");
    assert!(
        second.iter().all(|h| !first.contains(h)),
        "{first:?} -> {second:?}"
    );
}

/// Starts a helper directly and waits (bounded) for it to exit.
fn helper_exit(input: &[u8]) -> std::process::ExitStatus {
    let mut child = Command::new(BINARY)
        .arg(HELPER_COMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    match process::reap_blocking(&mut child, Duration::from_secs(10)).unwrap() {
        Ended::Exited(status) => status,
        Ended::Killed(_) => panic!("the helper did not exit after its input closed"),
    }
}

#[test]
fn a_helper_exits_when_its_input_closes_and_refuses_a_corrupt_length() {
    assert!(helper_exit(b"").success());
    assert_eq!(helper_exit(&0x7fff_fff0u32.to_le_bytes()).code(), Some(2));
}
