//! The production overlay of `deploy/kubernetes/` against the binary it deploys, with no
//! cluster: `kubectl kustomize` renders the overlay, and the migration Job's container
//! and the worker Deployment's container run here as plain processes with exactly the
//! arguments and environment the manifests give them (and nothing else: the
//! environment is cleared first). What a cluster would supply comes from the test:
//! the Secrets' values (this machine's broker and database, a fresh database and a
//! RabbitMQ virtual host of its own), and the mounted Secret volume, written to a
//! temporary directory that replaces the mount path in the variables that name it,
//! with the volume's mode and group. Run as root (as CI does), the processes take the
//! user and groups of the manifests' securityContext, so the Secret files must be
//! readable the way the manifests mount them, and with readOnlyRootFilesystem they
//! see the machine's file system read-only.
//!
//! So a manifest that names a variable the binary does not read as intended, a
//! probe on a path it does not serve, a grace period shorter than the drain, or a
//! migration that the worker's read-only role (created as docs/operations.md says)
//! cannot then read, fails here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_norway::Value;
use sqlx::Connection;

use crate::helpers::{by_number, unique, PG_SERVER};

const BIN: &str = env!("CARGO_BIN_EXE_tucano-auth");
const OVERLAY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/kubernetes/overlays/production"
);
const OPERATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md");

/// Every object `kubectl kustomize` renders for `overlay` (`KUBECTL` names another kubectl).
fn render(overlay: &str) -> Vec<Value> {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    let output = Command::new(&kubectl)
        .args(["kustomize", overlay])
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run `{kubectl} kustomize` ({err}): install kubectl (1.27 or later: kustomize v5) or set KUBECTL")
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("the overlay renders no {kind}/{name}"))
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value:?}"))
}

fn u64_of(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value:?}"))
}

/// The values of the Secrets the manifests refer to, by (Secret, key).
type Secrets = BTreeMap<(&'static str, &'static str), String>;

/// The one container of a pod template, ready to run as a process.
struct Container {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Mount path in the pod, and where its files are here.
    mounts: Vec<(String, PathBuf)>,
    spec: Value,
    pod: Value,
    /// The user, group and supplementary group (fsGroup) of the securityContext, when
    /// the test runs as root and can take them on.
    user: Option<(u64, u64, Option<u64>)>,
}

/// Whether this process runs as root (and so can run the pods' processes as their users).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        .unwrap_or(false)
}

impl Container {
    /// The container of `object`'s pod template. Every variable is resolved as the
    /// kubelet would: a literal, or a Secret's key (an unknown Secret key fails the
    /// test unless the reference is optional). Secret volumes are written under `dir`.
    fn of(object: &Value, secrets: &Secrets, dir: &Path) -> Container {
        let pod = object["spec"]["template"]["spec"].clone();
        let containers = pod["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1, "one container a pod");
        let spec = containers[0].clone();
        assert!(
            spec["envFrom"].is_null(),
            "envFrom is not resolved by this test"
        );
        // No `command`: the image's ENTRYPOINT, `tucano-auth`, runs with `args`.
        assert!(
            spec["command"].is_null(),
            "the manifests keep the image's entrypoint"
        );
        let args = spec["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| str_of(a, "an argument").to_owned())
            .collect();

        // The container's securityContext wins over the pod's, as in the kubelet.
        let context = |field: &str| {
            spec["securityContext"][field]
                .as_u64()
                .or_else(|| pod["securityContext"][field].as_u64())
        };
        let user = if is_root() {
            Some((
                context("runAsUser").expect("runAsUser"),
                context("runAsGroup").expect("runAsGroup"),
                pod["securityContext"]["fsGroup"].as_u64(),
            ))
        } else {
            eprintln!(
                "not root: the pod's processes run as this user, not as their securityContext's"
            );
            None
        };

        let mut mounts = Vec::new();
        for mount in spec["volumeMounts"].as_sequence().into_iter().flatten() {
            let name = str_of(&mount["name"], "a volumeMount's name");
            let path = str_of(&mount["mountPath"], "a mountPath").to_owned();
            let volume = pod["volumes"]
                .as_sequence()
                .expect("volumes")
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("no volume {name}"));
            let secret = &volume["secret"];
            assert!(
                !secret.is_null(),
                "volume {name}: only Secret volumes are mounted"
            );
            let secret_name = str_of(&secret["secretName"], "secretName");
            let here = dir.join(name);
            std::fs::create_dir_all(&here).expect("mount directory");
            for item in secret["items"]
                .as_sequence()
                .expect("the volume lists its items")
            {
                let key = str_of(&item["key"], "an item's key");
                let value = secrets
                    .iter()
                    .find(|((s, k), _)| *s == secret_name && *k == key)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| {
                        panic!("the test has no value for Secret {secret_name} key {key}")
                    });
                let file = here.join(str_of(&item["path"], "an item's path"));
                std::fs::write(&file, value).expect("write a Secret file");
                // As the kubelet leaves it: the volume's mode, owned by root and, with
                // an fsGroup, that group.
                let mode = item["mode"]
                    .as_u64()
                    .or_else(|| secret["defaultMode"].as_u64())
                    .unwrap_or(0o644) as u32;
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
                    .expect("chmod a Secret file");
                if let Some((_, _, Some(group))) = user {
                    std::os::unix::fs::chown(&file, Some(0), Some(group as u32))
                        .expect("chown a Secret file");
                }
            }
            mounts.push((path, here));
        }

        let mut env = Vec::new();
        for var in spec["env"].as_sequence().expect("env") {
            let name = str_of(&var["name"], "a variable's name").to_owned();
            let value = if let Some(value) = var["value"].as_str() {
                Some(value.to_owned())
            } else {
                let reference = &var["valueFrom"]["secretKeyRef"];
                assert!(
                    !reference.is_null(),
                    "{name}: only literal values and Secret keys are resolved"
                );
                let secret = str_of(&reference["name"], "secretKeyRef.name");
                let key = str_of(&reference["key"], "secretKeyRef.key");
                let found = secrets
                    .iter()
                    .find(|((s, k), _)| *s == secret && *k == key)
                    .map(|(_, v)| v.clone());
                if found.is_none() && reference["optional"].as_bool() != Some(true) {
                    panic!("{name}: the test has no value for Secret {secret} key {key}");
                }
                found
            };
            if let Some(mut value) = value {
                // A file of a mounted volume: where the test wrote it.
                for (path, here) in &mounts {
                    if let Some(rest) = value.strip_prefix(path.as_str()) {
                        value = format!("{}{rest}", here.display());
                    }
                }
                env.push((name, value));
            }
        }
        Container {
            args,
            env,
            mounts,
            spec,
            pod,
            user,
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The process: the binary, the arguments, this environment and no other; as
    /// root, under the securityContext's user and groups (`setpriv`, from util-linux).
    fn command(&self) -> Command {
        let mut command = match self.user {
            Some((uid, gid, fs_group)) => {
                // readOnlyRootFilesystem: the machine's one disk file system, read-only
                // in a mount namespace of the process's own (the rest of the machine
                // keeps writing); then the user and groups. Each step execs the next,
                // so the process id stays the worker's, for SIGTERM.
                let read_only =
                    self.spec["securityContext"]["readOnlyRootFilesystem"].as_bool() == Some(true);
                let mut command = if read_only {
                    let mut command = Command::new("/usr/bin/unshare");
                    command.args([
                        "--mount",
                        "--propagation",
                        "private",
                        "--",
                        "/bin/sh",
                        "-c",
                        r#"mount -o remount,bind,ro / && exec "$0" "$@""#,
                        "/usr/bin/setpriv",
                    ]);
                    command
                } else {
                    Command::new("/usr/bin/setpriv")
                };
                command.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()]);
                match fs_group {
                    Some(group) => command.args(["--groups", &group.to_string()]),
                    None => command.arg("--clear-groups"),
                };
                command.args(["--", BIN]);
                command
            }
            None => Command::new(BIN),
        };
        command.args(&self.args).env_clear().envs(self.env.clone());
        command
    }

    /// The port a probe's `httpGet.port` names (a number or a container port's name).
    fn probe(&self, probe: &str) -> (String, u16) {
        let get = &self.spec[probe]["httpGet"];
        let path = str_of(&get["path"], "a probe's path").to_owned();
        let port = match &get["port"] {
            Value::Number(n) => n.as_u64().expect("a port") as u16,
            Value::String(name) => self.spec["ports"]
                .as_sequence()
                .expect("ports")
                .iter()
                .find(|p| p["name"].as_str() == Some(name))
                .map(|p| u64_of(&p["containerPort"], "containerPort") as u16)
                .unwrap_or_else(|| panic!("{probe}: no container port named {name}")),
            other => panic!("{probe}: port {other:?}"),
        };
        (path, port)
    }
}

/// The status code of a plain `GET path` on 127.0.0.1:`port`, as a kubelet's httpGet
/// probe sends it; `None` without an answer.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `probe` (a kubelet counts 200 to 399 as success) until it succeeds; panics
/// after `within`.
fn wait_probe(port: u16, path: &str, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        if http_status(port, path).is_some_and(|s| (200..400).contains(&s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} ({path}) did not pass within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a short command to its end (60 s at most); its status and output.
fn run(mut command: Command, what: &str) -> (bool, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn rabbitmqctl(args: &[&str]) {
    let command = std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned());
    let mut parts = command.split_whitespace();
    let mut cmd = Command::new(parts.next().expect("a command"));
    cmd.args(parts).arg("-q").args(args);
    let (ok, output) = run(cmd, "rabbitmqctl");
    assert!(ok, "rabbitmqctl {args:?}: {output}");
}

/// Deletes what the test made, whatever happened.
struct Cleanup {
    vhost: String,
    db: String,
    roles: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let command = std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned());
        let mut parts = command.split_whitespace();
        if let Some(program) = parts.next() {
            let _ = Command::new(program)
                .args(parts)
                .args(["-q", "delete_vhost", &self.vhost])
                .output();
        }
        let db = self.db.clone();
        let roles = self.roles.clone();
        crate::helpers::block_on_own_thread(async move {
            if let Ok(mut admin) =
                sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres")).await
            {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
                for role in roles {
                    let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
                        .execute(&mut admin)
                        .await;
                }
                let _ = admin.close().await;
            }
        });
    }
}

/// The read-only role's SQL, from docs/operations.md ("Least privilege"), for `role`
/// on `db`.
fn documented_worker_role(role: &str, password: &str, db: &str) -> String {
    let docs = std::fs::read_to_string(OPERATIONS).expect("docs/operations.md");
    let block = docs
        .split("```sql\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("CREATE ROLE tucano_worker"))
        .expect("docs/operations.md shows the worker's role in an sql block");
    block
        .replace("tucano_worker", role)
        .replace("'PASSWORD'", &format!("'{password}'"))
        .replace("DATABASE tucano_auth", &format!("DATABASE {db}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_production_overlay_migrates_then_serves_under_the_read_only_role() {
    let objects = render(OVERLAY);
    let job = find(&objects, "Job", "tucano-auth-migrate");
    let deployment = find(&objects, "Deployment", "tucano-auth");

    let name = unique("k8s");
    let owner = format!("{name}_owner");
    let worker_role = format!("{name}_worker");
    let _cleanup = Cleanup {
        vhost: name.clone(),
        db: name.clone(),
        roles: vec![worker_role.clone(), owner.clone()],
    };
    // A virtual host of its own: the overlay sets no QUEUE_PREFIX, so the worker
    // declares the default `tucano.*` names, which must not meet anyone else's.
    rabbitmqctl(&["add_vhost", &name]);
    rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:5672/{name}");

    // The owner: may create the database and what is in it, as the Job's Secret says.
    let mut admin = sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres"))
        .await
        .expect("admin connection");
    sqlx::query(&format!(
        "CREATE ROLE {owner} LOGIN CREATEDB PASSWORD 'owner-pass'"
    ))
    .execute(&mut admin)
    .await
    .expect("create the owner");
    let owner_url = format!("postgres://{owner}:owner-pass@127.0.0.1:5432/{name}");
    let worker_url = format!("postgres://{worker_role}:worker-pass@127.0.0.1:5432/{name}");

    let keys = tempdir(&name);
    let jwk = {
        let mut keygen = Command::new(BIN);
        keygen
            .args(["keygen", "--alg", "ES256", "--kid", "k8s-test"])
            .env_clear();
        let (ok, out) = run(keygen, "keygen");
        assert!(ok, "keygen: {out}");
        out.trim().to_owned()
    };
    let secrets: Secrets = BTreeMap::from([
        (("tucano-auth-migrate", "DATABASE_URL"), owner_url.clone()),
        (("tucano-auth-worker", "AMQP_URL"), amqp_url.clone()),
        (("tucano-auth-worker", "DATABASE_URL"), worker_url.clone()),
        (
            ("tucano-auth-keys", "jwt-keys.json"),
            format!("{{\"keys\":[{jwk}]}}\n"),
        ),
        (
            ("tucano-auth-keys", "crm-token-secrets"),
            "a-crm-login-token-secret-of-at-least-32-bytes\n".to_owned(),
        ),
    ]);

    // 1. The Job's container alone creates the database and the schema, as the owner.
    let migrate = Container::of(job, &secrets, &keys.join("job"));
    assert_eq!(migrate.args, ["migrate"]);
    let (ok, output) = run(migrate.command(), "the migration Job's command");
    assert!(ok, "the migration Job's command failed: {output}");
    let mut as_owner = sqlx::PgConnection::connect(&owner_url)
        .await
        .expect("the database exists");
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user",
    )
    .fetch_one(&mut as_owner)
    .await
    .expect("count tables");
    assert!(
        owned >= 5,
        "the migration made the owner's tables ({owned})"
    );
    let _ = as_owner.close().await;
    // The CRM loader's part (as the owner): data to answer from.
    let mut seed = Command::new(BIN);
    seed.arg("seed-demo")
        .env_clear()
        .env("DATABASE_URL", &owner_url);
    let (ok, output) = run(seed, "seed-demo");
    assert!(ok, "seed-demo: {output}");

    // 2. The worker's role, created and granted exactly as docs/operations.md says.
    let mut on_db = sqlx::PgConnection::connect(&format!("{PG_SERVER}/{name}"))
        .await
        .expect("connect to the new database");
    sqlx::raw_sql(&documented_worker_role(&worker_role, "worker-pass", &name))
        .execute(&mut on_db)
        .await
        .expect("the documented role and grants");
    let _ = on_db.close().await;
    let mut as_worker = sqlx::PgConnection::connect(&worker_url)
        .await
        .expect("connect as the worker");
    assert!(
        sqlx::query("CREATE TABLE t (x int)")
            .execute(&mut as_worker)
            .await
            .is_err(),
        "the worker's role may not create a table"
    );
    let _ = as_worker.close().await;

    // 3. The Deployment's container, with the pod's environment and nothing else.
    let worker = Container::of(deployment, &secrets, &keys.join("pod"));
    assert_eq!(worker.args, ["serve"]);
    assert_eq!(worker.var("DATABASE_URL"), Some(worker_url.as_str()));
    assert_eq!(
        worker.var("DATABASE_READ_URL"),
        None,
        "optional, and not given"
    );
    assert_eq!(worker.mounts.len(), 1, "the keys Secret");
    let grace = u64_of(
        &worker.pod["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    let drain: u64 = worker
        .var("TUCANO_SHUTDOWN_GRACE_SECONDS")
        .expect("the manifest writes the drain out")
        .parse()
        .expect("a number");
    // The process is gone within the drain plus 4 s (docs/operations.md, "Signals").
    assert!(
        grace > drain + 4,
        "terminationGracePeriodSeconds {grace} <= {drain} + 4"
    );
    let (startup_path, port) = worker.probe("startupProbe");
    let (liveness_path, liveness_port) = worker.probe("livenessProbe");
    let (readiness_path, readiness_port) = worker.probe("readinessProbe");
    assert_eq!(
        worker.var("METRICS_ADDR"),
        Some(format!("0.0.0.0:{port}").as_str()),
        "the probes' port is the one the worker listens on, beyond loopback"
    );
    assert_eq!((liveness_port, readiness_port), (port, port));
    // The port is fixed by the manifest: say so plainly if something here holds it.
    drop(
        std::net::TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|err| {
            panic!("port {port} of the manifest is taken on this machine: {err}")
        }),
    );

    let log = keys.join("worker.log");
    let mut child = Running(
        worker
            .command()
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the worker"),
    );
    let startup = &worker.spec["startupProbe"];
    let budget = Duration::from_secs(
        u64_of(&startup["periodSeconds"], "periodSeconds")
            * u64_of(&startup["failureThreshold"], "failureThreshold"),
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let probes = std::panic::catch_unwind(|| {
        wait_probe(port, &startup_path, budget, "the startup probe");
        wait_probe(
            port,
            &readiness_path,
            Duration::from_secs(30),
            "the readiness probe",
        );
        wait_probe(
            port,
            &liveness_path,
            Duration::from_secs(2),
            "the liveness probe",
        );
    });
    if probes.is_err() {
        panic!("probes failed; the worker's log:\n{}", logged());
    }

    // The process really runs as the manifest says (when the test could arrange it).
    if let Some((uid, _, _)) = worker.user {
        let pid = child.0.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let uids = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        assert!(
            uids.split_whitespace()
                .skip(1)
                .all(|u| u == uid.to_string()),
            "the worker runs as {uid}: {uids}"
        );
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
        let root = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .expect("the root mount");
        assert!(
            root.split_whitespace()
                .nth(5)
                .is_some_and(|o| o.split(',').any(|f| f == "ro")),
            "the worker's root file system is read-only: {root}"
        );
    }

    // 4. A request, answered from the read-only role's reads and signed with the key
    // of the mounted file; a wrong pass code, counted through its one writable table.
    let call = |body: &str| {
        let mut call = Command::new(BIN);
        call.args(["call", body])
            .env_clear()
            .env("AMQP_URL", &amqp_url);
        run(call, "call").1
    };
    let reply = call(&by_number(
        tucano_auth::store::seed::SESSION_TOKEN,
        "S0000000329",
    ));
    let parsed: serde_json::Value = serde_json::from_str(reply.trim())
        .unwrap_or_else(|_| panic!("a JSON reply: {reply}\n{}", logged()));
    assert_eq!(parsed["status"]["code"], "OK", "{reply}\n{}", logged());
    let jwt = parsed["data"]["jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("a JWT in {reply}"));
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwt.split('.').next().expect("a header"))
        .expect("base64url");
    let header: serde_json::Value = serde_json::from_slice(&header).expect("a JSON header");
    assert_eq!(
        header["kid"], "k8s-test",
        "signed with the mounted keys file"
    );
    let wrong = format!(
        r#"{{"token":"{}","access_token_identifier":{{"identifier":"demo-user-1","pass_code":"0000"}}}}"#,
        tucano_auth::store::seed::SESSION_TOKEN
    );
    let reply = call(&wrong);
    assert!(
        reply.contains("AUTHENTICATION_FAILED"),
        "{reply}\n{}",
        logged()
    );
    let mut on_db = sqlx::PgConnection::connect(&format!("{PG_SERVER}/{name}"))
        .await
        .expect("connect to the database");
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM pass_code_failures")
        .fetch_one(&mut on_db)
        .await
        .expect("count");
    let _ = on_db.close().await;
    assert_eq!(failures, 1, "the wrong pass code was counted\n{}", logged());

    // 5. SIGTERM, as the kubelet sends it: gone well within the grace period, exit 0.
    let grace_period = Duration::from_secs(grace);
    let status =
        match tucano_testkit::process::stop_blocking(&mut child.0, grace_period).expect("kill") {
            tucano_testkit::process::Ended::Exited(status) => status,
            tucano_testkit::process::Ended::Killed(_) => {
                panic!("the worker outlived terminationGracePeriodSeconds ({grace} s)")
            }
        };
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        logged()
    );
    let _ = std::fs::remove_dir_all(&keys);
    let _ = admin.close().await;
}

/// The worker's process, killed if the test ends before it does.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory for the pod's files.
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}
