//! The broker topology of docs/protocol.md §2, declared idempotently.
//!
//! A declaration that the broker refuses because the object exists with other
//! arguments becomes a [`TopologyError`] naming the object and the mismatch, so startup
//! stops with something to fix rather than looping.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ExchangeKind};

use clap::ValueEnum;

/// `x-queue-type` of the request queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueType {
    /// Replicated, with a delivery limit.
    Quorum,
    /// Classic.
    Classic,
}

impl QueueType {
    /// The `x-queue-type` argument value.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// The names of the topology under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Interactive request queue, `PREFIX.authenticate`.
    pub interactive: String,
    /// Batch request queue, `PREFIX.authenticate.batch`.
    pub batch: String,
    /// Topic exchange for replies without `reply_to`, `PREFIX.results`.
    pub results: String,
    /// Fanout exchange and queue for dead letters, `PREFIX.dead-letter`.
    pub dead_letter: String,
}

impl Names {
    /// The names under `prefix`.
    pub fn new(prefix: &str) -> Names {
        Names {
            interactive: format!("{prefix}.authenticate"),
            batch: format!("{prefix}.authenticate.batch"),
            results: format!("{prefix}.results"),
            dead_letter: format!("{prefix}.dead-letter"),
        }
    }

    /// Every name of the topology: the queues and exchanges no reply may go to.
    pub fn all(self) -> [String; 4] {
        [self.interactive, self.batch, self.results, self.dead_letter]
    }
}

/// A declaration the broker refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot declare {kind} '{name}': {source}. If it exists with other arguments, delete it or set QUEUE_TYPE to match it")]
pub struct TopologyError {
    /// `queue` or `exchange`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// The broker's answer, which names the mismatching argument.
    #[source]
    pub source: lapin::Error,
}

/// The arguments of a request queue.
pub fn request_queue_arguments(names: &Names, queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.as_str().into()),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(names.dead_letter.as_str().into()),
    );
    if queue_type == QueueType::Quorum {
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(5));
    }
    args
}

/// The arguments of the dead-letter queue: its type only (it dead-letters nowhere).
pub fn dead_letter_queue_arguments(queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.as_str().into()),
    );
    args
}

/// Declares every exchange and queue of section 2. Each declaration uses a channel of
/// its own, since a refused one closes its channel.
pub async fn declare(
    connection: &Connection,
    names: &Names,
    queue_type: QueueType,
) -> Result<(), TopologyError> {
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    exchange(
        connection,
        &names.results,
        ExchangeKind::Topic,
        durable_exchange,
    )
    .await?;
    exchange(
        connection,
        &names.dead_letter,
        ExchangeKind::Fanout,
        durable_exchange,
    )
    .await?;
    queue(
        connection,
        &names.dead_letter,
        durable_queue,
        dead_letter_queue_arguments(queue_type),
    )
    .await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|source| TopologyError {
            kind: "queue",
            name: names.dead_letter.clone(),
            source,
        })?;
    channel
        .queue_bind(
            names.dead_letter.as_str().into(),
            names.dead_letter.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|source| TopologyError {
            kind: "queue binding",
            name: names.dead_letter.clone(),
            source,
        })?;
    let _ = channel.close(200, "declared".into()).await;
    for name in [&names.interactive, &names.batch] {
        queue(
            connection,
            name,
            durable_queue,
            request_queue_arguments(names, queue_type),
        )
        .await?;
    }
    Ok(())
}

async fn exchange(
    connection: &Connection,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
) -> Result<(), TopologyError> {
    let error = |source| TopologyError {
        kind: "exchange",
        name: name.to_owned(),
        source,
    };
    let channel = connection.create_channel().await.map_err(error)?;
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
        .map_err(error)?;
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

async fn queue(
    connection: &Connection,
    name: &str,
    options: QueueDeclareOptions,
    arguments: FieldTable,
) -> Result<(), TopologyError> {
    let error = |source| TopologyError {
        kind: "queue",
        name: name.to_owned(),
        source,
    };
    let channel = connection.create_channel().await.map_err(error)?;
    channel
        .queue_declare(name.into(), options, arguments)
        .await
        .map_err(error)?;
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

/// Deletes every queue and exchange of `names`, and the `extra_queues` (a caller's reply
/// queues), for tools and tests that set up a prefix of their own. Missing ones are
/// fine: this is best-effort cleanup.
pub async fn delete(connection: &Connection, names: &Names, extra_queues: &[&str]) {
    let queues = [
        names.interactive.as_str(),
        names.batch.as_str(),
        names.dead_letter.as_str(),
    ];
    for queue in queues.iter().chain(extra_queues) {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .queue_delete((*queue).into(), QueueDeleteOptions::default())
                .await;
            let _ = channel.close(200, "deleted".into()).await;
        }
    }
    for exchange in [names.results.as_str(), names.dead_letter.as_str()] {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await;
            let _ = channel.close(200, "deleted".into()).await;
        }
    }
}
