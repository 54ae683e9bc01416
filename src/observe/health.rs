//! Whether the database is reachable, as far as the worker can tell.
//!
//! When a request finds the database unreachable, [`DbHealth::report_down`] marks it
//! down and starts a probe that retries `SELECT 1` until it answers. While it is down
//! the consume loop takes no new requests ([`DbHealth::wait_up`]): they wait in the
//! queue, and only the requests already held retry, within their budget.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

/// How often the probe retries an unreachable database.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The database's reachability, shared by the handler and the consume loop.
#[derive(Debug, Clone)]
pub struct DbHealth {
    pool: PgPool,
    down: watch::Sender<bool>,
}

impl DbHealth {
    /// Starts as reachable.
    pub fn new(pool: PgPool) -> DbHealth {
        DbHealth {
            pool,
            down: watch::Sender::new(false),
        }
    }

    /// Whether the database is marked down.
    pub fn is_down(&self) -> bool {
        *self.down.borrow()
    }

    /// Marks the database down and, on the transition, starts the probe that marks it up
    /// again once `SELECT 1` answers.
    pub fn report_down(&self) {
        let changed = self
            .down
            .send_if_modified(|down| !std::mem::replace(down, true));
        if !changed {
            return;
        }
        tracing::warn!("database unreachable: taking no new requests until it answers");
        let pool = self.pool.clone();
        let down = self.down.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                if sqlx::query("SELECT 1").execute(&pool).await.is_ok() {
                    down.send_replace(false);
                    tracing::info!("database reachable again: taking requests");
                    return;
                }
            }
        });
    }

    /// Resolves once the database is not marked down.
    pub async fn wait_up(&self) {
        let mut rx = self.down.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|down| !*down).await;
    }
}
