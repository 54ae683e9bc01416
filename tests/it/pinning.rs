//! `TUCANO_CPU` and `TUCANO_SCHEDULING` on the real binary: the event loop's threads
//! (the task thread and the broker connections' I/O threads) run on the CPU it names,
//! while the pass-code verifiers and their helper processes keep every CPU; every
//! thread has the scheduling policy asked for, with the nice value it started with;
//! and requests of both kinds are answered as usual.

use std::process::Stdio;

use serde_json::{json, Value};
use tucano_auth::store::seed::{
    ACCESS_TOKEN_IDENTIFIER, ACCESS_TOKEN_PASS_CODE, SESSION_TOKEN, SUBSCRIPTION_NUMBER,
};

use crate::helpers::{by_number, cleanup, terminate, wait_for, BinaryRun};

/// A thread's or process's `Cpus_allowed_list` line, from its `status` file.
fn allowed(status_path: &std::path::Path) -> Option<String> {
    let status = std::fs::read_to_string(status_path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
}

/// Each thread of `pid`: its name and the CPUs it may run on.
fn threads(pid: u32) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the worker's threads") {
        let path = task.expect("a thread").path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if let Some(cpus) = allowed(&path.join("status")) {
            found.push((name.trim().to_owned(), cpus));
        }
    }
    found
}

/// The fields of a `stat` file after `pid (comm)`, so the third field is at index 0
/// (comm may hold spaces, hence reading after its last `)`).
fn stat_fields(path: &std::path::Path) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The processes whose parent is `pid` (the pass-code helpers).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // `pid (comm) state ppid ...`
        let parent = stat_fields(&entry.path().join("stat"))
            .and_then(|fields| fields.get(1)?.parse::<u32>().ok());
        if parent == Some(pid) {
            found.push(child);
        }
    }
    found
}

#[tokio::test]
async fn a_pinned_worker_keeps_its_event_loop_on_that_cpu_and_pass_codes_on_every_cpu() {
    let everything = allowed(std::path::Path::new("/proc/self/status")).expect("own CPUs");
    // The last CPU this test may use: not necessarily the one the worker starts on.
    let cpu = rustix::thread::sched_getaffinity(None)
        .map(|set| {
            (0..rustix::thread::CpuSet::MAX_CPU)
                .rev()
                .find(|&n| set.is_set(n))
                .unwrap_or(0)
        })
        .expect("own affinity");
    let (run, child) = answering("cpu", &[("TUCANO_CPU", &cpu.to_string())]).await;

    let pid = child.id();
    let threads = threads(pid);
    let pinned = cpu.to_string();
    let io_loops: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name == "lapin-io-loop")
        .collect();
    assert!(
        io_loops.len() >= 2,
        "the request and reply connections' I/O threads: {threads:?}"
    );
    for (name, cpus) in threads
        .iter()
        .filter(|(name, _)| !name.starts_with("argon2"))
    {
        assert_eq!(cpus, &pinned, "{name} runs on TUCANO_CPU's CPU");
    }
    let verifiers: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("argon2"))
        .collect();
    assert!(
        !verifiers.is_empty(),
        "a pass code was checked: {threads:?}"
    );
    for (name, cpus) in &verifiers {
        assert_eq!(cpus, &everything, "{name} keeps every CPU");
    }
    for helper in children(pid) {
        let cpus = allowed(
            &std::path::Path::new("/proc")
                .join(helper.to_string())
                .join("status"),
        );
        assert_eq!(
            cpus.as_deref(),
            Some(everything.as_str()),
            "pass-code helper {helper} keeps every CPU"
        );
    }

    stop(run, child).await;
}

/// Starts the binary with `env` and has it answer a plain and a pass-code request
/// `OK` (so the pass-code verifiers exist); it keeps running for the caller to look at.
async fn answering(prefix: &str, env: &[(&str, &str)]) -> (BinaryRun, std::process::Child) {
    let run = BinaryRun::new(prefix).await;
    let child = crate::helpers::start_binary(&run.prefix, &run.db_url, env, Stdio::null());
    run.wait_consumers(1).await;
    let bodies = [
        by_number(SESSION_TOKEN, SUBSCRIPTION_NUMBER),
        json!({"token": SESSION_TOKEN, "access_token_identifier": {
            "identifier": ACCESS_TOKEN_IDENTIFIER, "pass_code": ACCESS_TOKEN_PASS_CODE}})
        .to_string(),
    ];
    run.send_bodies(&bodies).await;
    wait_for("both replies", async || run.replies_ready().await >= 2).await;
    for _ in 0..2 {
        let reply = run.take_reply().await.expect("a reply");
        let body: Value = serde_json::from_slice(&reply.data).expect("JSON reply");
        assert_eq!(body["status"]["code"], "OK", "{body}");
    }
    (run, child)
}

/// Stops what [`answering`] started: SIGTERM (a clean exit), then the run's queues.
async fn stop(run: BinaryRun, mut child: std::process::Child) {
    assert!(terminate(&mut child).success());
    let _ = run.conn.close(200, "bye".into()).await;
    cleanup(&run.prefix, &run.prefix).await;
}

/// Each thread of `pid`: its name, its scheduling policy (`SCHED_OTHER` 0,
/// `SCHED_BATCH` 3) and its nice value, from its `stat` file.
fn policies(pid: u32) -> Vec<(String, u32, i32)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the worker's threads") {
        let path = task.expect("a thread").path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Some(fields) = stat_fields(&path.join("stat")) else {
            continue;
        };
        // Nice is the 19th field, the policy the 41st.
        let nice = fields.get(16).and_then(|nice| nice.parse().ok());
        let policy = fields.get(38).and_then(|policy| policy.parse().ok());
        if let (Some(nice), Some(policy)) = (nice, policy) {
            found.push((name.trim().to_owned(), policy, nice));
        }
    }
    found
}

#[tokio::test]
async fn every_thread_has_the_policy_asked_for_or_the_one_it_started_with_and_its_nice() {
    let own_nice = rustix::process::getpriority_process(None).expect("own nice value");
    // Unset, the worker keeps the policy it was started with: this thread's.
    let own_policy = stat_fields(std::path::Path::new("/proc/thread-self/stat"))
        .and_then(|fields| fields.get(38)?.parse::<u32>().ok())
        .expect("own policy");
    for (prefix, env, policy) in [
        ("batch", &[("TUCANO_SCHEDULING", "batch")][..], 3),
        ("normal", &[("TUCANO_SCHEDULING", "normal")][..], 0),
        ("unset", &[][..], own_policy),
    ] {
        let (run, child) = answering(prefix, env).await;
        let threads = policies(child.id());
        stop(run, child).await;
        assert!(
            threads
                .iter()
                .filter(|(name, ..)| name == "lapin-io-loop")
                .count()
                >= 2,
            "the request and reply connections' I/O threads: {threads:?}"
        );
        assert!(
            threads.iter().any(|(name, ..)| name.starts_with("argon2")),
            "a pass code was checked: {threads:?}"
        );
        for (name, found, nice) in &threads {
            assert_eq!(*found, policy, "{name}'s policy with {env:?}: {threads:?}");
            // The verifiers lower their own priority; every other thread keeps the
            // nice value the worker was started with.
            if !name.starts_with("argon2") {
                assert_eq!(*nice, own_nice, "{name}'s nice value with {env:?}");
            }
        }
    }
}
