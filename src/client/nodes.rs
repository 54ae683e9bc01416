//! `AMQP_URL` as a list of cluster nodes: splitting it, connecting to the first node
//! that answers starting at a random one, and naming a node without its password.

use lapin::Connection;

use super::ClientError;
use crate::broker::TlsFiles;

pub use crate::broker::nodes::split_nodes;
use crate::redact;

/// Connects to one of the nodes of `amqp_url`, trying each once, starting at a random
/// one so that clients spread across a cluster.
pub(super) async fn connect_any(
    amqp_url: &str,
    tls: &TlsFiles,
    role: &str,
) -> Result<Connection, ClientError> {
    let nodes = split_nodes(amqp_url);
    if nodes.is_empty() {
        return Err(ClientError::Connection("AMQP_URL names no node".to_owned()));
    }
    // Every node checked before any is tried: a password with a comma splits its URL
    // in two, and the first half (`amqp://guest:1234`) would be tried, and named, as a
    // node; the second half does not parse.
    for node in &nodes {
        crate::broker::parse_url(node).map_err(|err| ClientError::Connection(err.to_string()))?;
    }
    let start = (uuid::Uuid::new_v4().as_u128() % nodes.len() as u128) as usize;
    let mut failures = Vec::new();
    for offset in 0..nodes.len() {
        let node = nodes[(start + offset) % nodes.len()];
        match crate::broker::connect(node, tls, role).await {
            Ok(connection) => return Ok(connection),
            Err(err) => failures.push(format!(
                "{}: {}",
                redact::url(node),
                crate::broker::tls_problem(&err).unwrap_or_else(|| err.to_string())
            )),
        }
    }
    Err(ClientError::Connection(format!(
        "no node of AMQP_URL answered ({})",
        failures.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_split_on_commas_and_blanks_dropped() {
        assert_eq!(
            split_nodes("amqp://a:5672/%2f, amqp://b:5672/%2f,,"),
            ["amqp://a:5672/%2f", "amqp://b:5672/%2f"]
        );
        assert_eq!(split_nodes("amqp://a"), ["amqp://a"]);
    }
}
