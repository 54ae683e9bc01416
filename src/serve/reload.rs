//! SIGHUP: re-reads `TUCANO_JWT_KEYS_FILE` or `TUCANO_JWT_SECRET_FILE`, and
//! `CRM_TOKEN_SECRET_FILE`, and swaps what they hold in under the requests in flight
//! (docs/protocol.md §9).
//!
//! A file that cannot be read or does not parse changes nothing: the keys in use stay,
//! and the error names the file and the problem, never key material. The signal is a
//! stream passed to [`Reloader::run`], so tests can drive reloads without signals.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};

use super::settings::read_crm_secrets;
use crate::keys::{read_off_thread, KeySource};
use crate::store::Store;
use crate::token::Signer;

/// What a reload re-reads, and where it puts what it read.
pub struct Reloader {
    jwt_keys: KeySource,
    crm_token_secret_file: Option<PathBuf>,
    signer: Signer,
    store: Store,
    jwt_reading: Reading,
    crm_reading: Reading,
}

impl Reloader {
    /// Reloads `jwt_keys` into `signer` and `crm_token_secret_file` (if set) into
    /// `store`; both share their keys with the clones the request handler holds.
    pub fn new(
        jwt_keys: KeySource,
        crm_token_secret_file: Option<PathBuf>,
        signer: Signer,
        store: Store,
    ) -> Reloader {
        Reloader {
            jwt_keys,
            crm_token_secret_file,
            signer,
            store,
            jwt_reading: Reading::default(),
            crm_reading: Reading::default(),
        }
    }

    /// Re-reads every file once; `true` when all of them were taken. Logs each
    /// outcome: the signing kid on success (a kid is not secret), the file and the
    /// problem on failure. The files are read off the task thread, each within
    /// [`READ_TIMEOUT`](crate::keys::READ_TIMEOUT); a file still hanging from an earlier
    /// reload is not read again (each hung read holds a blocking thread).
    pub async fn reload(&self) -> bool {
        let mut ok = true;
        match self.jwt_keys.file() {
            None => tracing::info!(
                "reload: TUCANO_JWT_SECRET comes from the environment, which a reload cannot re-read; the signing key is unchanged"
            ),
            Some((variable, path)) => {
                let source = self.jwt_keys.clone();
                match self.jwt_reading.read(variable, path, move || source.load()).await {
                    Ok(keys) => {
                        let kid = keys.signing_kid().unwrap_or("(none)").to_owned();
                        self.signer.replace(keys);
                        tracing::info!(variable, file = %path.display(), kid, "reload: signing keys loaded; new JWTs are signed with kid");
                    }
                    Err(err) => {
                        ok = false;
                        tracing::error!(variable, file = %path.display(), error = %format!("{err:#}"), "reload: keeping the signing keys in use");
                    }
                }
            }
        }
        if let Some(path) = &self.crm_token_secret_file {
            let owned = path.clone();
            let read = self
                .crm_reading
                .read("CRM_TOKEN_SECRET_FILE", path, move || {
                    read_crm_secrets(&owned)
                })
                .await;
            match read {
                Ok(secrets) => {
                    let count = secrets.len();
                    self.store.replace_crm_token_secrets(secrets);
                    tracing::info!(file = %path.display(), secrets = count, "reload: CRM login-token secrets loaded");
                }
                Err(err) => {
                    ok = false;
                    tracing::error!(variable = "CRM_TOKEN_SECRET_FILE", file = %path.display(), error = %format!("{err:#}"), "reload: keeping the CRM login-token secrets in use");
                }
            }
        }
        ok
    }

    /// Reloads at each item of `signals` (SIGHUP in the binary) until it ends.
    pub async fn run(self, signals: impl Stream<Item = ()>) {
        let mut signals = std::pin::pin!(signals);
        while signals.next().await.is_some() {
            tracing::info!("SIGHUP: re-reading the key files");
            // Off the task thread: requests and SIGTERM go on while the files are read.
            self.reload().await;
        }
    }
}

/// Whether a read of one file is still running, possibly hung past its timeout.
#[derive(Default)]
struct Reading(Arc<AtomicBool>);

impl Reading {
    /// Reads with [`read_off_thread`], unless the previous read of this file has not
    /// ended: then that is the error, and no other thread is spent on the file.
    async fn read<T: Send + 'static>(
        &self,
        variable: &str,
        path: &Path,
        read: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        if self.0.swap(true, Ordering::AcqRel) {
            anyhow::bail!(
                "{variable} {}: an earlier read of it has not ended yet (hung?); not read again",
                path.display()
            );
        }
        let running = Running(self.0.clone());
        read_off_thread(variable, path, move || {
            let _running = running;
            read()
        })
        .await
    }
}

/// Clears its flag when the read ends, on whichever thread that is.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
