//! The test harness: each test gets its own database and queue prefix, a worker running
//! in-process (or as the real binary), and a client that talks to it over the real
//! RabbitMQ. Everything a test declared is deleted when its `TestWorker` drops.

use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tucano_auth::broker::{self, Names, QueueType};
use tucano_auth::keys::KeySource;
use tucano_auth::observe::Stats;
use tucano_auth::secret::Secret;
use tucano_auth::serve::settings::{self, Settings};
use tucano_testkit::process::{Ended, WorkerEnv};
use tucano_testkit::request::{status_header, Requester, DIRECT_REPLY_TO};

pub use tucano_testkit::queue::depth;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";
pub const CRM_SECRET: &str = "test-crm-login-secret-0123456789abcdef";
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A reply as a client sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Value,
    pub raw: String,
    pub correlation_id: Option<String>,
    pub header_code: Option<String>,
    pub delivery_mode: Option<u8>,
    pub content_type: Option<String>,
    pub routing_key: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body
            .pointer("/status/code")
            .and_then(Value::as_str)
            .unwrap_or("<none>")
    }

    pub fn message(&self) -> &str {
        self.body
            .pointer("/status/message")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn from_delivery(delivery: &lapin::message::Delivery) -> Reply {
        let raw = String::from_utf8_lossy(&delivery.data).into_owned();
        let props = &delivery.properties;
        let header_code = status_header(props);
        Reply {
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
            correlation_id: props
                .correlation_id()
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            header_code,
            delivery_mode: *props.delivery_mode(),
            content_type: props.content_type().as_ref().map(|s| s.as_str().to_owned()),
            routing_key: delivery.routing_key.as_str().to_owned(),
        }
    }
}

/// A unique name for this test's database and queue prefix.
pub fn unique(label: &str) -> String {
    format!(
        "t{}_{}",
        label,
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Settings for a worker on `db_url` under `prefix`, as `serve` would build them.
pub fn settings(prefix: &str, db_url: &str) -> Settings {
    Settings {
        broker: broker::Settings {
            amqp_url: AMQP_URL.to_owned(),
            amqp_tls: Default::default(),
            queue_prefix: prefix.to_owned(),
            queue_type: QueueType::Quorum,
            prefetch: 32,
            batch_prefetch: 8,
            pass_code_backlog: 256,
            shutdown_grace: Duration::from_secs(10),
        },
        database: settings::Database {
            url: db_url.to_owned(),
            read_url: None,
            pool_size: 4,
            retry_budget: Duration::from_secs(30),
        },
        signing: settings::Signing {
            keys: KeySource::Secret(Secret::new(JWT_SECRET)),
            ttl_seconds: 300,
            apip: "crm.com".to_owned(),
        },
        crm_tokens: settings::CrmTokens {
            secret: Some(Secret::new(CRM_SECRET)),
            secret_file: Vec::new(),
            secret_path: None,
        },
        pass_codes: settings::PassCodes {
            max_failures: 5,
            lockout: Duration::from_secs(900),
        },
        reply_to_allow: vec![
            "amq.rabbitmq.reply-to".to_owned(),
            "amq.gen-".to_owned(),
            format!("{prefix}."),
        ],
        demo: false,
        metrics_addr: None,
    }
}

/// A client of the worker's queues over its own connection.
pub struct Client {
    pub conn: Connection,
    pub names: Names,
}

/// A worker on its own database and queue prefix, and a client connection.
pub struct TestWorker {
    pub prefix: String,
    pub db_name: String,
    pub pool: PgPool,
    pub client: Client,
    pub stats: Arc<Stats>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestWorker {
    /// A worker with the demo data loaded and default test settings.
    pub async fn spawn() -> TestWorker {
        TestWorker::spawn_with(|_| {}).await
    }

    /// A worker whose settings `adjust` may change, with the demo data loaded.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestWorker {
        TestWorker::spawn_on(None, adjust).await
    }

    /// A worker that reaches its database through `proxy`.
    pub async fn spawn_via(proxy: &Proxy, adjust: impl FnOnce(&mut Settings)) -> TestWorker {
        TestWorker::spawn_on(Some(proxy.port), adjust).await
    }

    async fn spawn_on(proxy_port: Option<u16>, adjust: impl FnOnce(&mut Settings)) -> TestWorker {
        let name = unique("w");
        let db_url = format!("{PG_SERVER}/{name}");
        let pool = tucano_auth::store::prepare(&db_url, 2)
            .await
            .expect("prepare db");
        tucano_auth::store::seed::seed_demo(&pool)
            .await
            .expect("seed");
        let worker_db_url = match proxy_port {
            Some(port) => format!("postgres://postgres@127.0.0.1:{port}/{name}"),
            None => db_url.clone(),
        };
        let mut settings = settings(&name, &worker_db_url);
        adjust(&mut settings);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(tucano_auth::serve::run(
            settings,
            stats.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("client connection");
        let worker = TestWorker {
            client: Client {
                conn,
                names: Names::new(&name),
            },
            prefix: name.clone(),
            db_name: name,
            pool,
            stats,
            shutdown: Some(tx),
            task: Some(task),
        };
        worker.wait_consuming().await;
        worker
    }

    /// Declares a durable queue `PREFIX.<suffix>` and, if `bind_key` is given, binds it
    /// to the results exchange with that key.
    pub async fn declare_queue(&self, suffix: &str, bind_key: Option<&str>) -> String {
        let name = format!("{}.{}", self.prefix, suffix);
        let channel = self.conn.create_channel().await.expect("channel");
        declare_durable(&channel, &name).await;
        if let Some(key) = bind_key {
            channel
                .queue_bind(
                    name.as_str().into(),
                    self.names.results.as_str().into(),
                    key.into(),
                    Default::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind");
        }
        let _ = channel.close(200, "done".into()).await;
        name
    }

    /// Stops the worker as SIGTERM would and returns what `run` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("worker stops within the timeout")
                .expect("worker task joins"),
            None => Ok(()),
        }
    }
}

impl Client {
    /// Waits until the worker consumes both request queues.
    pub async fn wait_consuming(&self) {
        for queue in [&self.names.interactive, &self.names.batch] {
            tucano_testkit::queue::wait_consumers(&self.conn, queue, 1, TIMEOUT, || Ok(()))
                .await
                .expect("the worker starts consuming");
        }
    }

    /// Sends `body` to the interactive queue with direct reply-to and waits for the reply.
    pub async fn call(&self, body: &str) -> Reply {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_correlation_id(uuid::Uuid::new_v4().to_string().into());
        self.call_with(&self.names.interactive, body.as_bytes(), props)
            .await
            .expect("a reply")
    }

    /// Sends a request with these properties to `queue` over direct reply-to; `None` if no
    /// reply came within `wait`.
    pub async fn call_with(
        &self,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Option<Reply> {
        self.call_waiting(queue, body, props, TIMEOUT).await
    }

    /// [`Client::call_with`] waiting `wait`. Raw, not the product's client: the tests
    /// send requests with any properties and bytes, and read the reply's own.
    pub async fn call_waiting(
        &self,
        queue: &str,
        body: &[u8],
        props: BasicProperties,
        wait: Duration,
    ) -> Option<Reply> {
        let channel = self.conn.create_channel().await.expect("channel");
        let replies = tucano_auth::broker::consume_no_ack(&channel, DIRECT_REPLY_TO)
            .await
            .expect("consume direct reply-to");
        let mut requester = Requester::new(channel, replies);
        requester.send(queue, body, props).await.expect("publish");
        let reply = requester
            .next_reply(wait)
            .await
            .map(|d| Reply::from_delivery(&d.expect("delivery")));
        requester.close().await;
        reply
    }

    /// Publishes without waiting for anything.
    pub async fn publish(&self, queue: &str, body: &[u8], props: BasicProperties) {
        let channel = self.conn.create_channel().await.expect("channel");
        channel
            .confirm_select(Default::default())
            .await
            .expect("confirm");
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
        let _ = channel.close(200, "done".into()).await;
    }

    /// Takes one message from `queue`, waiting up to `wait`.
    pub async fn get(&self, queue: &str, wait: Duration) -> Option<Reply> {
        let channel = self.conn.create_channel().await.expect("channel");
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(msg) = channel
                .basic_get(
                    queue.into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .expect("get")
            {
                let reply = Reply::from_delivery(&msg.delivery);
                let _ = channel.close(200, "done".into()).await;
                return Some(reply);
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = channel.close(200, "done".into()).await;
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl std::ops::Deref for TestWorker {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let prefix = self.prefix.clone();
        let db = self.db_name.clone();
        // Drop cannot await: clean up on a thread with a runtime of its own. Not
        // `pool.close()` there: the pool's sockets belong to the test's runtime, which
        // this drop blocks, and closing a TLS connection (sslmode=prefer against a
        // server with ssl on) waits on that runtime: it hung. Dropping the database
        // ends its connections from the server's side.
        block_on_own_thread(async move { cleanup(&prefix, &db).await });
    }
}

/// Runs `work` to its end on a thread with a runtime of its own: what a `Drop` that
/// must clean up over the network does, since it cannot await (and must not block the
/// test's runtime, which may be the one it is dropped on).
pub fn block_on_own_thread(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = tucano_testkit::process::on_own_thread(work);
}

/// Deletes the queues and exchanges under `prefix` and the database `db`.
pub async fn cleanup(prefix: &str, db: &str) {
    if let Ok(conn) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await {
        let extra = [
            format!("{prefix}.replies"),
            format!("{prefix}.results-ok"),
            format!("{prefix}.results-error"),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        tucano_auth::broker::delete(&conn, &Names::new(prefix), &extra).await;
        let _ = conn.close(200, "cleanup".into()).await;
    }
    if let Ok(admin) = PgPool::connect(&format!("{PG_SERVER}/postgres")).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

/// A request body naming the demo subscription by number, with `token`.
pub fn by_number(token: &str, number: &str) -> String {
    serde_json::json!({"token": token, "subscription_identifier": {"number": number}}).to_string()
}

/// A TCP proxy in front of the real PostgreSQL that a test can cut off and restore,
/// to make the database unreachable for the worker alone.
pub struct Proxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy in front of PostgreSQL.
    pub async fn start() -> Proxy {
        Proxy::start_to("127.0.0.1:5432").await
    }

    /// A proxy in front of `target` (such as RabbitMQ's `127.0.0.1:5672`).
    pub async fn start_to(target: &'static str) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let task = {
            let up = up.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Proxy {
            port,
            up,
            generation,
            task,
        }
    }

    /// Refuses new connections and drops the open ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the real `tucano-auth serve` binary on `db_url` under `prefix`, with `env`
/// added to the test settings' variables.
pub fn start_binary(
    prefix: &str,
    db_url: &str,
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> std::process::Child {
    binary_command(prefix, db_url, env, stderr)
        .spawn()
        .expect("start the binary")
}

/// The command [`start_binary`] runs, for a test that changes more (removes a variable).
pub fn binary_command(
    prefix: &str,
    db_url: &str,
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> std::process::Command {
    let worker = WorkerEnv {
        amqp_url: AMQP_URL,
        database_url: db_url,
        prefix,
        jwt_secret: JWT_SECRET,
    };
    let mut vars: Vec<(&str, String)> = worker.vars();
    vars.push(("CRM_TOKEN_SECRET", CRM_SECRET.to_owned()));
    vars.push(("TUCANO_PREFETCH", "64".to_owned()));
    vars.extend(env.iter().map(|(key, value)| (*key, (*value).to_owned())));
    tucano_testkit::process::command(
        std::path::Path::new(env!("CARGO_BIN_EXE_tucano-auth")),
        &["serve"],
        vars,
        &[],
        stderr,
    )
}

/// Declares the durable (classic) queue `name`, as a client's reply queue.
pub async fn declare_durable(channel: &lapin::Channel, name: &str) {
    tucano_testkit::queue::declare_durable(channel, name, None)
        .await
        .unwrap_or_else(|err| panic!("declare {name}: {err}"));
}

/// Polls `check` every 20 ms until it holds; panics after 60 s.
pub async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    tucano_testkit::queue::wait_until(
        what,
        Duration::from_secs(60),
        Duration::from_millis(20),
        async || Ok(check().await),
    )
    .await
    .unwrap_or_else(|err| panic!("{err}"));
}

/// Sends SIGTERM and waits up to 40 s for the process to exit (SIGKILL after that,
/// and a panic: the worker exits within its grace period).
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    match tucano_testkit::process::stop_blocking(child, Duration::from_secs(40)).expect("kill") {
        Ended::Exited(status) => status,
        Ended::Killed(status) => {
            panic!("the worker exits within its grace period (killed: {status})")
        }
    }
}

/// A reply's `correlation_id`, empty when it has none.
pub fn correlation_id(delivery: &lapin::message::Delivery) -> String {
    delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

/// The real binary under test: a demo database and queue prefix of its own, a broker
/// connection, and a durable reply queue with a confirm-mode channel to send on.
pub struct BinaryRun {
    pub prefix: String,
    pub db_url: String,
    pub names: Names,
    pub replies: String,
    pub conn: Connection,
    pub channel: lapin::Channel,
}

impl BinaryRun {
    /// Prepares the database (demo data) and the reply queue for prefix `label...`.
    pub async fn new(label: &str) -> BinaryRun {
        let prefix = unique(label);
        let db_url = format!("{PG_SERVER}/{prefix}");
        let pool = tucano_auth::store::prepare(&db_url, 2)
            .await
            .expect("prepare");
        tucano_auth::store::seed::seed_demo(&pool)
            .await
            .expect("seed");
        pool.close().await;
        let conn = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("conn");
        let replies = format!("{prefix}.replies");
        let channel = conn.create_channel().await.expect("channel");
        declare_durable(&channel, &replies).await;
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        BinaryRun {
            names: Names::new(&prefix),
            prefix,
            db_url,
            replies,
            conn,
            channel,
        }
    }

    /// Starts the binary on this run's prefix and database, and waits until it consumes.
    pub async fn start(&self, stderr: std::process::Stdio) -> Child {
        let child = start_binary(&self.prefix, &self.db_url, &[], stderr);
        self.wait_consumers(1).await;
        child
    }

    /// Waits up to 60 s until this run's interactive queue has `count` consumers.
    pub async fn wait_consumers(&self, count: u32) {
        let consuming = tucano_testkit::queue::wait_consumers(
            &self.conn,
            &self.names.interactive,
            count,
            Duration::from_secs(60),
            || Ok(()),
        );
        consuming.await.expect("the worker to consume");
    }

    /// Publishes `n` persistent requests (`correlation_id` `r-0`, `r-1`...) answered to
    /// the reply queue, and waits for the broker's confirms.
    pub async fn send(&self, n: usize) {
        let body = by_number(tucano_auth::store::seed::SESSION_TOKEN, "S0000000329");
        let bodies = vec![body; n];
        self.send_bodies(&bodies).await;
    }

    /// Publishes each of `bodies` as [`BinaryRun::send`] does (`correlation_id` `r-` and
    /// its position), and waits for the broker's confirms.
    pub async fn send_bodies(&self, bodies: &[String]) {
        for (i, body) in bodies.iter().enumerate() {
            let persistent = BasicProperties::default().with_delivery_mode(2);
            self.publish(body, &format!("r-{i}"), persistent).await;
        }
        self.channel.wait_for_confirms().await.expect("confirmed");
    }

    /// Publishes `body` to the interactive queue with `properties`, answered to the
    /// run's reply queue under `correlation_id`; the broker's confirm is returned, to
    /// await or to leave to `wait_for_confirms`.
    pub async fn publish(
        &self,
        body: &str,
        correlation_id: &str,
        properties: BasicProperties,
    ) -> lapin::PublisherConfirm {
        self.channel
            .basic_publish(
                "".into(),
                self.names.interactive.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties
                    .with_reply_to(self.replies.as_str().into())
                    .with_correlation_id(correlation_id.into()),
            )
            .await
            .expect("publish")
    }

    /// Takes the next reply from the reply queue, if there is one.
    pub async fn take_reply(&self) -> Option<lapin::message::Delivery> {
        self.channel
            .basic_get(
                self.replies.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .expect("get")
            .map(|message| message.delivery)
    }

    /// Takes `n` replies (at most `within`), in any order: each one's status code by
    /// its correlation id.
    pub async fn codes(
        &self,
        n: usize,
        within: Duration,
    ) -> std::collections::HashMap<String, String> {
        let mut codes = std::collections::HashMap::new();
        let deadline = std::time::Instant::now() + within;
        while codes.len() < n {
            match self.take_reply().await {
                Some(reply) => {
                    let body: Value = serde_json::from_slice(&reply.data).expect("a JSON reply");
                    let code = body["status"]["code"].as_str().expect("a code").to_owned();
                    codes.insert(correlation_id(&reply), code);
                }
                None => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{} of {n} replies within {within:?}",
                        codes.len()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        codes
    }

    /// Replies waiting in the reply queue.
    pub async fn replies_ready(&self) -> usize {
        depth(&self.conn, &self.replies)
            .await
            .expect("the reply queue exists")
            .0 as usize
    }
}
