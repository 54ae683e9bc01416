//! `AMQP_URL` as a list of the nodes of one RabbitMQ cluster (docs/protocol.md §11):
//! comma-separated URLs, each with its own TLS. A worker starts at a random node, so
//! that workers spread over the cluster, and moves to the next when a node fails.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use lapin::Connection;

use super::{error, open, tls_of, Tls, TlsFiles};

/// The node URLs of a comma-separated `AMQP_URL`, blanks dropped.
pub fn split_nodes(amqp_url: &str) -> Vec<&str> {
    amqp_url
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .collect()
}

/// One node: its URL, the TLS its `amqps://` needs, and how messages show it.
#[derive(Clone, Debug)]
pub struct Node {
    url: String,
    tls: Option<Tls>,
    /// The URL as [`crate::redact::url`] shows it, never the password.
    pub shown: String,
}

/// The nodes of `AMQP_URL` and which one is tried next; clones share that choice, so
/// the reply connection follows the consuming one to the node that answers.
#[derive(Clone, Debug)]
pub struct Nodes {
    nodes: Arc<[Node]>,
    next: Arc<AtomicUsize>,
}

impl Nodes {
    /// Every node of `amqp_url`, checked now (a URL that does not parse, a TLS file that
    /// cannot be read), starting at a random one.
    pub fn new(amqp_url: &str, files: &TlsFiles) -> Result<Nodes, lapin::Error> {
        let mut nodes = Vec::new();
        for url in split_nodes(amqp_url) {
            nodes.push(Node {
                url: url.to_owned(),
                tls: tls_of(url, files)?,
                shown: crate::redact::url(url),
            });
        }
        if nodes.is_empty() {
            return Err(error(
                std::io::ErrorKind::InvalidInput,
                "AMQP_URL names no node".to_owned(),
            ));
        }
        let start = (uuid::Uuid::new_v4().as_u128() % nodes.len() as u128) as usize;
        Ok(Nodes {
            nodes: nodes.into(),
            next: Arc::new(AtomicUsize::new(start)),
        })
    }

    /// The node tried next.
    pub fn current(&self) -> &Node {
        &self.nodes[self.next.load(Ordering::Relaxed) % self.nodes.len()]
    }

    /// Moves on to the next node (the current one failed).
    pub fn advance(&self) {
        self.next.fetch_add(1, Ordering::Relaxed);
    }

    /// Every node as messages show it.
    pub fn shown(&self) -> String {
        let shown: Vec<&str> = self.nodes.iter().map(|node| node.shown.as_str()).collect();
        shown.join(", ")
    }

    /// Opens a connection to the current node (see [`open`]).
    pub async fn open_current(
        &self,
        role: &str,
        body_limit: Option<u64>,
    ) -> Result<Connection, lapin::Error> {
        let node = self.current().clone();
        open(&node.url, node.tls, role, body_limit).await
    }

    /// Opens a connection to the first node that answers, trying each once from the
    /// current one; the error is the last node's.
    pub async fn open_any(&self, role: &str) -> Result<Connection, lapin::Error> {
        let mut failed = None;
        for _ in 0..self.nodes.len() {
            match self.open_current(role, None).await {
                Ok(connection) => return Ok(connection),
                Err(err) => {
                    self.advance();
                    failed = Some(err);
                }
            }
        }
        Err(failed.unwrap_or_else(|| {
            error(
                std::io::ErrorKind::InvalidInput,
                "AMQP_URL names no node".to_owned(),
            )
        }))
    }
}
