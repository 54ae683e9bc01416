//! TLS to RabbitMQ (`amqps://`): the CA that the broker's certificate must chain to
//! (`AMQP_CA_FILE`, else the system's roots) and an optional client certificate
//! (`AMQP_CLIENT_CERT_FILE`, `AMQP_CLIENT_KEY_FILE`).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use crate::tls::{self, Identity, Verify};

/// The files of `amqps://` connections; none set means the system's roots and no client
/// certificate. Plain `amqp://` URLs ignore them.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// PEM CA certificates the broker's certificate must chain to (`AMQP_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (`AMQP_CLIENT_CERT_FILE`).
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (`AMQP_CLIENT_KEY_FILE`).
    pub client_key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is set.
    pub fn any(&self) -> bool {
        self.ca_file.is_some() || self.client_cert_file.is_some() || self.client_key_file.is_some()
    }

    /// The TLS of a connection to `host`, its certificate checked against the CA and
    /// named `host`. Errors name the variable to fix.
    pub fn connector(&self, host: &str) -> anyhow::Result<Tls> {
        let roots = tls::roots(self.ca_file.as_deref(), "AMQP_CA_FILE")?;
        let identity = Identity::load_pair(
            self.client_cert_file.as_deref(),
            self.client_key_file.as_deref(),
            ("AMQP_CLIENT_CERT_FILE", "AMQP_CLIENT_KEY_FILE"),
        )?;
        let config = tls::client_config(Verify::Full(roots), identity)?;
        let server_name = ServerName::try_from(host.to_owned()).map_err(|_| {
            anyhow::anyhow!("AMQP_URL's host {host:?} is not a DNS name or IP address")
        })?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// How a connection speaks TLS: the client configuration and the name the broker's
/// certificate must carry.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The TLS handshake over `socket`.
    pub(super) async fn handshake<S>(
        &self,
        socket: S,
    ) -> io::Result<futures_rustls::client::TlsStream<S>>
    where
        S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
    {
        self.connector
            .connect(self.server_name.clone(), socket)
            .await
    }
}

/// What is wrong with the TLS of a connection that failed with `err`, if the failure
/// is TLS's (see [`tls::handshake_failure`]): a setting to fix, not an outage.
pub fn problem(err: &lapin::Error) -> Option<String> {
    tls::handshake_failure(err)
}
