//! `DATABASE_URL`'s TLS parameters for the lookup connections (tokio-postgres), read as
//! sqlx reads them for the pool, so that both kinds of connection are encrypted and
//! checked alike (docs/protocol.md §10).
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require` only, and no
//! `sslrootcert`: [`SslParams::split`] takes them out of the URL and
//! [`SslParams::connector`] gives tokio-postgres a rustls connector that checks what the
//! mode asks for.

use std::path::PathBuf;

use anyhow::Context;
use tokio_postgres::config::SslMode as Negotiate;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{self, Identity, Verify};

/// PostgreSQL's `sslmode` (sqlx's `PgSslMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server wants it (taken here as `prefer`: tokio-postgres has no
    /// plain-first mode).
    Allow,
    /// TLS if the server offers it, its certificate not checked (the default).
    Prefer,
    /// TLS or no connection, the certificate not checked.
    Require,
    /// TLS, the certificate chaining to `sslrootcert` (else the system's roots).
    VerifyCa,
    /// [`SslMode::VerifyCa`], and the certificate naming the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> anyhow::Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => anyhow::bail!(
                "sslmode={other:?} is not one of disable, allow, prefer, \
                 require, verify-ca, verify-full"
            ),
        })
    }
}

/// The TLS parameters of a `DATABASE_URL`.
#[derive(Debug, Clone)]
pub struct SslParams {
    /// `sslmode`, else `PGSSLMODE`, else `prefer`.
    pub mode: SslMode,
    /// `sslrootcert`, else `PGSSLROOTCERT`.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`.
    pub client_key: Option<PathBuf>,
}

/// The parameters taken out of the URL, with sqlx's other spellings of them.
const PARAMETERS: [&str; 8] = [
    "sslmode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
];

impl SslParams {
    /// `database_url` without its TLS parameters, and those parameters. A string that
    /// is not a URL is given back whole (tokio-postgres then says what is wrong).
    pub fn split(database_url: &str) -> anyhow::Result<(String, SslParams)> {
        let mut params = SslParams {
            mode: match std::env::var("PGSSLMODE") {
                Ok(mode) => SslMode::parse(&mode).context("PGSSLMODE")?,
                Err(_) => SslMode::Prefer,
            },
            root_cert: std::env::var_os("PGSSLROOTCERT").map(PathBuf::from),
            client_cert: None,
            client_key: None,
        };
        let Ok(mut url) = url::Url::parse(database_url) else {
            return Ok((database_url.to_owned(), params));
        };
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => params.mode = SslMode::parse(&value)?,
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                    params.root_cert = Some(PathBuf::from(&*value));
                }
                "sslcert" | "ssl-cert" => params.client_cert = Some(PathBuf::from(&*value)),
                "sslkey" | "ssl-key" => params.client_key = Some(PathBuf::from(&*value)),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        debug_assert!(kept
            .iter()
            .all(|(key, _)| !PARAMETERS.contains(&key.as_str())));
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok((url.into(), params))
    }

    /// What tokio-postgres negotiates, and the connector that checks the server's
    /// certificate as the mode asks. Errors name the parameter to fix.
    pub fn connector(&self) -> anyhow::Result<(Negotiate, MakeRustlsConnect)> {
        let roots = || tls::roots(self.root_cert.as_deref(), "DATABASE_URL's sslrootcert");
        let (negotiate, verify) = match self.mode {
            SslMode::Disable => (Negotiate::Disable, Verify::Nothing),
            SslMode::Allow | SslMode::Prefer => (Negotiate::Prefer, Verify::Nothing),
            SslMode::Require => (Negotiate::Require, Verify::Nothing),
            SslMode::VerifyCa => (Negotiate::Require, Verify::ChainOnly(roots()?)),
            SslMode::VerifyFull => (Negotiate::Require, Verify::Full(roots()?)),
        };
        let identity = Identity::load_pair(
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
            ("DATABASE_URL's sslcert", "DATABASE_URL's sslkey"),
        )?;
        let config = tls::client_config(verify, identity)?;
        Ok((negotiate, MakeRustlsConnect::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_the_rest_stays() {
        let (url, params) = SslParams::split(
            "postgres://u:p@db:5432/tucano?sslmode=verify-full&application_name=w&sslrootcert=%2Fetc%2Fca.pem",
        )
        .expect("splits");
        assert_eq!(url, "postgres://u:p@db:5432/tucano?application_name=w");
        assert_eq!(params.mode, SslMode::VerifyFull);
        assert_eq!(params.root_cert, Some(PathBuf::from("/etc/ca.pem")));

        let (url, params) =
            SslParams::split("postgres://u@db/tucano?ssl-ca=ca.pem&sslmode=require")
                .expect("splits");
        assert_eq!(url, "postgres://u@db/tucano");
        assert_eq!(params.mode, SslMode::Require);
        assert_eq!(params.root_cert, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn an_unknown_sslmode_is_refused_by_name() {
        let err = SslParams::split("postgres://db/tucano?sslmode=always")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("sslmode=\"always\""), "{err}");
    }

    #[test]
    fn verify_full_without_a_readable_root_certificate_names_the_parameter() {
        let (_, params) = SslParams::split(
            "postgres://db/tucano?sslmode=verify-full&sslrootcert=/nonexistent.pem",
        )
        .expect("splits");
        let err = format!("{:#}", params.connector().err().expect("refused"));
        assert!(err.contains("sslrootcert /nonexistent.pem"), "{err}");
    }
}
