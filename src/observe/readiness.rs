//! Whether the worker can serve: both request queues consumed, and the database
//! answering. The consume loop and the database probe set it; `/readyz` and the
//! `tucano_auth_broker_connected` / `tucano_auth_database_up` gauges show it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;

use super::metrics::{BROKER_CONNECTED, DATABASE_UP};

/// How often the database is probed, and how long one probe may take: together under
/// the 5 s in which `/readyz` must follow a change.
pub const DATABASE_PROBE: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The two halves of readiness.
#[derive(Debug, Default)]
pub struct Readiness {
    broker: AtomicBool,
    database: AtomicBool,
}

impl Readiness {
    /// Whether both request queues are being consumed.
    pub fn broker(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
    }

    /// Whether the database answered its last probe.
    pub fn database(&self) -> bool {
        self.database.load(Ordering::Relaxed)
    }

    /// Sets whether both request queues are being consumed.
    pub fn set_broker(&self, consuming: bool) {
        self.broker.store(consuming, Ordering::Relaxed);
        metrics::gauge!(BROKER_CONNECTED).set(f64::from(u8::from(consuming)));
    }

    /// Sets whether the database answers.
    pub fn set_database(&self, up: bool) {
        if self.database.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("database reachable");
            } else {
                tracing::warn!("database unreachable (readiness probe)");
            }
        }
        metrics::gauge!(DATABASE_UP).set(f64::from(u8::from(up)));
    }

    /// Probes the database with `SELECT 1` every [`DATABASE_PROBE`], until dropped.
    pub async fn probe_database(&self, pool: PgPool) {
        let mut every = tokio::time::interval(DATABASE_PROBE);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let answered =
                tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&pool))
                    .await
                    .is_ok_and(|result| result.is_ok());
            self.set_database(answered);
        }
    }
}
