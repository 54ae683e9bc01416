//! The lookup statement's connections to PostgreSQL: tokio-postgres clients, each with
//! the statement prepared, opened when a statement needs one and none is idle.

use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sql::STATEMENT;

/// How long opening a lookup connection may take before the attempt counts as
/// "database unreachable" (and is retried by the caller).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The lookup statement's connections, each with the statement prepared, opened when
/// a statement needs one and none is idle (one, as a rule; more only beside stalled
/// statements).
pub(super) struct Connections {
    config: LookupConfig,
    idle: Mutex<Vec<Connection>>,
}

/// How a lookup connection is opened: tokio-postgres' settings, and the TLS that
/// `DATABASE_URL`'s `sslmode` asks for.
#[derive(Clone)]
pub(in crate::store) struct LookupConfig {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

impl LookupConfig {
    /// Opens a connection, its task spawned on the current runtime.
    pub(in crate::store) async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "a database lookup connection ended");
            }
        });
        Ok(client)
    }
}

pub(super) struct Connection {
    pub client: Client,
    pub statement: Statement,
}

impl Connections {
    /// No connection yet; each is opened with `config` when needed.
    pub(super) fn new(config: LookupConfig) -> Connections {
        Connections {
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection that is still open, or a new one.
    pub(super) async fn take(&self) -> Result<Connection, tokio_postgres::Error> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            match idle {
                Some(connection) if !connection.client.is_closed() => return Ok(connection),
                Some(_closed) => continue,
                None => break,
            }
        }
        let client = self.config.connect().await?;
        let statement = client.prepare(STATEMENT.as_str()).await?;
        Ok(Connection { client, statement })
    }

    /// Keeps `connection`, which just ran a statement, for the next one.
    pub(super) fn put_back(&self, connection: Connection) {
        if !connection.client.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(connection);
        }
    }
}

/// The lookup connections' settings: `database_url` (DATABASE_URL, already checked by
/// sqlx at startup) with the generic plan forced, as on the pool's connections, and its
/// TLS parameters turned into a connector (see `sslmode.rs`).
pub(in crate::store) fn connection_config(database_url: &str) -> anyhow::Result<LookupConfig> {
    let (database_url, ssl) = super::super::sslmode::SslParams::split(database_url)?;
    let mut config: tokio_postgres::Config = database_url.parse()?;
    let (negotiate, tls) = ssl.connector()?;
    config
        .ssl_mode(negotiate)
        .options("-c plan_cache_mode=force_generic_plan")
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("tucano-auth lookups");
    Ok(LookupConfig { config, tls })
}
