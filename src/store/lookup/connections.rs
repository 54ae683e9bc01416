//! The lookup statement's connections to PostgreSQL: tokio-postgres clients, each with
//! the statement prepared, opened when a statement needs one and none is idle.

use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::{Client, Statement};

use super::STATEMENT;

/// How long opening a lookup connection may take before the attempt counts as
/// "database unreachable" (and is retried by the caller).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The lookup statement's connections, each with the statement prepared, opened when
/// a statement needs one and none is idle (one, as a rule; more only beside stalled
/// statements).
pub(super) struct Connections {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<Connection>>,
}

pub(super) struct Connection {
    pub client: Client,
    pub statement: Statement,
}

impl Connections {
    /// No connection yet; each is opened with `config` when needed.
    pub(super) fn new(config: tokio_postgres::Config) -> Connections {
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
        let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "a database lookup connection ended");
            }
        });
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
/// sqlx at startup) with the generic plan forced, as on the pool's connections.
pub(in crate::store) fn connection_config(
    database_url: &str,
) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = database_url.parse()?;
    config
        .options("-c plan_cache_mode=force_generic_plan")
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("tucano-auth lookups");
    Ok(config)
}
