//! Where the broker is ([`Endpoint`]): the settings every side that connects shares
//! (`serve`, `call`, `batch`), so they are defined here, with their clap arguments,
//! and the command line flattens them.

use std::path::PathBuf;

use clap::Args;

use super::TlsFiles;

/// Where the broker is, and the prefix of the names on it.
#[derive(Args)]
pub struct Endpoint {
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Prefix of every exchange and queue name.
    #[arg(long, env = "QUEUE_PREFIX", default_value = "tucano")]
    pub queue_prefix: String,
    /// PEM CA certificates that an `amqps://` broker's certificate must chain to
    /// (default: the system's roots).
    #[arg(long, env = "AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
    /// PEM client certificate shown to an `amqps://` broker that asks for one.
    #[arg(long, env = "AMQP_CLIENT_CERT_FILE")]
    pub amqp_client_cert_file: Option<PathBuf>,
    /// PEM private key of `--amqp-client-cert-file`.
    #[arg(long, env = "AMQP_CLIENT_KEY_FILE")]
    pub amqp_client_key_file: Option<PathBuf>,
}

impl Endpoint {
    /// The TLS files of `amqps://` connections.
    pub fn tls(&self) -> TlsFiles {
        TlsFiles {
            ca_file: self.amqp_ca_file.clone(),
            client_cert_file: self.amqp_client_cert_file.clone(),
            client_key_file: self.amqp_client_key_file.clone(),
        }
    }
}

/// Shows the prefix, never the URL (it may hold a password).
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("amqp_url", &"[redacted]")
            .field("queue_prefix", &self.queue_prefix)
            .field("amqp_ca_file", &self.amqp_ca_file)
            .field("amqp_client_cert_file", &self.amqp_client_cert_file)
            .field("amqp_client_key_file", &self.amqp_client_key_file)
            .finish()
    }
}
