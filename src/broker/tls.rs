//! TLS to RabbitMQ (`amqps://`): the CA that the broker's certificate must chain to
//! (`AMQP_CA_FILE`, else the system's roots) and an optional client certificate
//! (`AMQP_CLIENT_CERT_FILE`, `AMQP_CLIENT_KEY_FILE`).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures_rustls::TlsConnector;
use lapin::uri::AMQPScheme;
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
    /// The variables of the files that are set, for messages.
    fn set(&self) -> Vec<&'static str> {
        [
            (self.ca_file.is_some(), "AMQP_CA_FILE"),
            (self.client_cert_file.is_some(), "AMQP_CLIENT_CERT_FILE"),
            (self.client_key_file.is_some(), "AMQP_CLIENT_KEY_FILE"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }

    /// What to tell the operator when files are set while a node of `amqp_url` (a
    /// comma-separated list) is plain `amqp://`: that node ignores them and speaks in
    /// clear, password included, which someone who set a CA file surely did not mean.
    /// `None` when no file is set or every node is `amqps://`. `serve`, `call` and
    /// `batch` print it once, at start.
    pub fn plain_nodes_warning(&self, amqp_url: &str) -> Option<String> {
        let set = self.set();
        if set.is_empty() {
            return None;
        }
        let nodes = super::nodes::split_nodes(amqp_url);
        let plain: Vec<&str> = nodes
            .iter()
            .copied()
            .filter(|node| super::parse_url(node).is_ok_and(|uri| uri.scheme == AMQPScheme::AMQP))
            .collect();
        if plain.is_empty() {
            return None;
        }
        // One node unparseable hides them all (see `redact::nodes`).
        let shown = match crate::redact::nodes(amqp_url) {
            all if all == crate::redact::UNPARSEABLE => all,
            _ => plain
                .iter()
                .map(|node| crate::redact::url(node))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let (verb, nodes_are) = match (set.len(), plain.len()) {
            (1, 1) => ("is", "node is"),
            (1, _) => ("is", "nodes are"),
            (_, 1) => ("are", "node is"),
            _ => ("are", "nodes are"),
        };
        Some(format!(
            "{} {verb} set, but AMQP_URL's {nodes_are} plain amqp:// ({shown}): TLS files are \
             not used there and that connection, password included, is in clear; use \
             amqps:// for TLS",
            set.join(", ")
        ))
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
