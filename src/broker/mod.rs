//! RabbitMQ: names of the topology, connecting with backoff, declaring the topology,
//! the consume loop and publishing replies. Knows nothing of subscriptions: it hands
//! each delivery to [`crate::handle::Handler`] and publishes what comes back.

mod consumer;
mod topology;

use std::time::Duration;

use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

pub use consumer::{serve, ServiceReport, ServiceTimes, Stats, SERVICE_REPORT};
pub use topology::{
    dead_letter_queue_arguments, declare, delete, request_queue_arguments, Names, TopologyError,
};

/// Opens a connection, naming the connection after the binary and `role`.
pub async fn connect(url: &str, role: &str) -> Result<Connection, lapin::Error> {
    let properties =
        ConnectionProperties::default().with_connection_name(format!("tucano-auth {role}").into());
    Connection::connect(url, properties).await
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

/// Exponential backoff for reconnecting: 100 ms doubling up to 5 s.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(100),
        }
    }

    /// The delay to wait now; the following one is twice as long, at most 5 s.
    pub(crate) fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        now
    }
}
