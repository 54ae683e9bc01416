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

/// Whether `pool`'s database answers `SELECT 1` within [`PROBE_TIMEOUT`].
async fn answers(pool: &PgPool) -> bool {
    tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(pool))
        .await
        .is_ok_and(|result| result.is_ok())
}

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

    /// Probes the database with `SELECT 1` every [`DATABASE_PROBE`], until dropped; with
    /// a `standby` (`DATABASE_READ_URL`, where the lookups go), both must answer.
    pub async fn probe_database(&self, pool: PgPool, standby: Option<PgPool>) {
        let mut every = tokio::time::interval(DATABASE_PROBE);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut standby_up = true;
        loop {
            every.tick().await;
            let primary = answers(&pool).await;
            let standby = match &standby {
                Some(standby) => answers(standby).await,
                None => true,
            };
            if standby != standby_up {
                standby_up = standby;
                match standby {
                    true => tracing::info!("the standby (DATABASE_READ_URL) answers again"),
                    false => tracing::warn!("the standby (DATABASE_READ_URL) does not answer: lookups fail until it does"),
                }
            }
            self.set_database(primary && standby);
        }
    }
}
