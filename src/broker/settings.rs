//! The broker side's settings ([`Settings`]): where the broker is, the topology, and
//! how many deliveries the consumer holds. `serve`'s settings hold them as a group.

use std::time::Duration;

use super::{QueueType, TlsFiles};

/// What the consume loop needs. No `Debug`: the URL may hold a password.
#[derive(Clone)]
pub struct Settings {
    /// Broker URL (`AMQP_URL`, a node list allowed).
    pub amqp_url: String,
    /// The TLS files of an `amqps://` `amqp_url`.
    pub amqp_tls: TlsFiles,
    /// Prefix of exchanges and queues.
    pub queue_prefix: String,
    /// Queue type.
    pub queue_type: QueueType,
    /// Interactive prefetch.
    pub prefetch: u16,
    /// Batch prefetch.
    pub batch_prefetch: u16,
    /// Pass-code requests that may wait in the worker: the consumer holds this many
    /// deliveries beyond the prefetch, and the store queues this many checks.
    pub pass_code_backlog: u16,
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
}
