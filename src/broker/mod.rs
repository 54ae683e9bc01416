//! RabbitMQ: names of the topology, connecting with backoff, declaring the topology,
//! the consume loop and publishing replies. Knows nothing of subscriptions: it hands
//! each delivery to [`crate::handle::Handler`] and publishes what comes back.

mod acks;
mod classes;
mod consumer;
mod delivery;
mod endpoint;
pub mod nodes;
mod replies;
pub mod sanitize;
mod settings;
mod tls;
mod topology;
pub mod trace_context;
pub mod transport;

use std::future::Future;
use std::time::Duration;

use lapin::options::BasicConsumeOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connect, Connection, ConnectionProperties, Consumer};

pub use acks::AckMode;
pub use consumer::{serve, serve_acking, SHUTDOWN_SLACK};
pub use endpoint::Endpoint;
pub use nodes::Nodes;
pub use settings::Settings;
pub use tls::{problem as tls_problem, Tls, TlsFiles};
pub use topology::{
    dead_letter_queue_arguments, declare, delete, request_queue_arguments, Names, QueueType,
    TopologyError,
};

/// How long connecting (TCP, login, tuning) may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the worker waits for RabbitMQ to confirm closing a channel or connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one step of setting up a channel (open, qos, consume, declare) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection, naming the connection after the binary and `role`. Its frames
/// pass through the [`sanitize::Sanitizer`], so no message can break lapin's parser.
/// An `amqps://` URL is TLS with `tls`'s files, or an error: never plain text.
/// Gives up after [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str, tls: &TlsFiles, role: &str) -> Result<Connection, lapin::Error> {
    open(url, tls_of(url, tls)?, role, None).await
}

/// The TLS an `amqps://` `url` needs, built from `files`; `None` for `amqp://`. Errors
/// (a file that cannot be read, say) name the variable to fix.
pub fn tls_of(url: &str, files: &TlsFiles) -> Result<Option<Tls>, lapin::Error> {
    let uri = parse_url(url)?;
    if uri.scheme != AMQPScheme::AMQPS {
        return Ok(None);
    }
    files
        .connector(&uri.authority.host)
        .map(Some)
        .map_err(|err| error(std::io::ErrorKind::InvalidInput, format!("{err:#}")))
}

/// [`connect`] with the TLS [`tls_of`] made, dropping the body of any message over
/// `body_limit` bytes as it arrives (the worker's request connection: see
/// [`sanitize`]).
pub async fn open(
    url: &str,
    tls: Option<Tls>,
    role: &str,
    body_limit: Option<u64>,
) -> Result<Connection, lapin::Error> {
    let mut uri = parse_url(url)?;
    let properties =
        ConnectionProperties::default().with_connection_name(format!("tucano-auth {role}").into());
    let shown = crate::redact::url(url);
    if uri.scheme == AMQPScheme::AMQPS && tls.is_none() {
        return Err(error(
            std::io::ErrorKind::InvalidInput,
            format!("AMQP_URL asks for TLS to {shown}, and no TLS was set up for it"),
        ));
    }
    // The TLS is the transport's, under the sanitizer: lapin sees a plain connection.
    uri.scheme = AMQPScheme::AMQP;
    let connecting = uri.connect_with_config(
        properties,
        OwnedTLSConfig::default(),
        transport::runtime(body_limit, tls),
    );
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(result) => result,
        Err(_) => Err(error(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from {shown} within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Parses one node of `AMQP_URL`. The error shows the URL as [`crate::redact::url`]
/// does: the parser's own message may quote it whole ("Invalid URL: '…'"). A URL that
/// parses but that [`crate::redact::url`] will not show (an `@` after its host: a
/// password with an unencoded `/`, `#` or `?` cut it short, and the parser read part
/// of the password as the port) is refused too: it would never reach the broker meant.
pub fn parse_url(url: &str) -> Result<AMQPUri, lapin::Error> {
    let shown = crate::redact::url(url);
    let refused = |why: String| {
        error(
            std::io::ErrorKind::InvalidInput,
            format!(
                "AMQP_URL's node {shown} is not a valid URL: {why} (in the user name and \
                 password, write / # ? @ , % as %2F %23 %3F %40 %2C %25)"
            ),
        )
    };
    let uri: AMQPUri = url.parse().map_err(|err: String| {
        if err.contains(url) || url.is_empty() {
            refused("not of the form amqp[s]://user:password@host:port/vhost".to_owned())
        } else {
            refused(err)
        }
    })?;
    if shown == crate::redact::UNPARSEABLE {
        return Err(refused("an '@' after its host".to_owned()));
    }
    Ok(uri)
}

/// Runs one step of talking to the broker, giving up after [`STEP_TIMEOUT`].
pub async fn step<T>(
    what: &str,
    future: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, lapin::Error> {
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(result) => result,
        Err(_) => Err(error(
            std::io::ErrorKind::TimedOut,
            format!(
                "RabbitMQ did not answer {what} within {} s",
                STEP_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A lapin error of our own making (lapin's constructor for them is private).
fn error(kind: std::io::ErrorKind, message: String) -> lapin::Error {
    std::io::Error::new(kind, message).into()
}

/// Consumes `queue` without acks: replies read by a client, such as the direct
/// reply-to pseudo-queue `amq.rabbitmq.reply-to`, which takes no other mode.
pub async fn consume_no_ack(channel: &Channel, queue: &str) -> Result<Consumer, lapin::Error> {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}
