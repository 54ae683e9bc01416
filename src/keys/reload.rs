//! SIGHUP: re-reads `TUCANO_JWT_KEYS_FILE` or `TUCANO_JWT_SECRET_FILE`, and
//! `CRM_TOKEN_SECRET_FILE`, and swaps what they hold in under the requests in flight
//! (contract section 9).
//!
//! A file that cannot be read or does not parse changes nothing: the keys in use stay,
//! and the error names the file and the problem, never key material. The signal is a
//! stream passed to [`Reloader::run`], so tests can drive reloads without signals.

use std::path::PathBuf;

use futures_util::{Stream, StreamExt as _};

use super::KeySource;
use crate::config::read_crm_secrets;
use crate::store::Store;
use crate::token::Signer;

/// What a reload re-reads, and where it puts what it read.
pub struct Reloader {
    jwt_keys: KeySource,
    crm_token_secret_file: Option<PathBuf>,
    signer: Signer,
    store: Store,
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
        }
    }

    /// Re-reads every file once; `true` when all of them were taken. Logs each
    /// outcome: the signing kid on success (a kid is not secret), the file and the
    /// problem on failure.
    pub fn reload(&self) -> bool {
        let mut ok = true;
        match self.jwt_keys.file() {
            None => tracing::info!(
                "reload: TUCANO_JWT_SECRET comes from the environment, which a reload cannot re-read; the signing key is unchanged"
            ),
            Some((variable, path)) => match self.jwt_keys.load() {
                Ok(keys) => {
                    let kid = keys.signing_kid().unwrap_or("(none)").to_owned();
                    self.signer.replace(keys);
                    tracing::info!(variable, file = %path.display(), kid, "reload: signing keys loaded; new JWTs are signed with kid");
                }
                Err(err) => {
                    ok = false;
                    tracing::error!(error = %format!("{err:#}"), "reload: keeping the signing keys in use");
                }
            },
        }
        if let Some(path) = &self.crm_token_secret_file {
            match read_crm_secrets(path) {
                Ok(secrets) => {
                    let count = secrets.len();
                    self.store.replace_crm_token_secrets(secrets);
                    tracing::info!(file = %path.display(), secrets = count, "reload: CRM login-token secrets loaded");
                }
                Err(err) => {
                    ok = false;
                    tracing::error!(error = %format!("{err:#}"), "reload: keeping the CRM login-token secrets in use");
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
            // A few small files read and checked: short enough for this thread, and
            // requests on the others go on meanwhile.
            self.reload();
        }
    }
}
