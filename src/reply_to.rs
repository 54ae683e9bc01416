//! Where a reply may go (docs/protocol.md §3): a `reply_to` must start with one of the
//! allowed prefixes (`REPLY_TO_ALLOW`), must not name one of the worker's own queues
//! or exchanges, and, when it is a direct reply-to address, must have the shape
//! RabbitMQ gives such addresses. Anything else is `REPLY_TO_NOT_ALLOWED`.
//!
//! The shape matters because RabbitMQ decodes a direct reply-to name when a reply is
//! published to it, and a name it did not issue can crash the publishing channel and
//! its connection (seen with 3.10: `541 INTERNAL_ERROR`). A name of the right shape
//! for a node that does not exist still does that; the reply publisher
//! ([`crate::broker`]) isolates such a reply and refuses it the same way.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The prefix of direct reply-to names.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The reply addresses a worker accepts.
#[derive(Debug, Clone)]
pub struct ReplyPolicy {
    allow: Vec<String>,
    own: [String; 4],
}

impl ReplyPolicy {
    /// Replies may go to names starting with one of `allow`, never to `own`, the
    /// worker's topology (the broker's [`Names::all`](crate::broker::Names::all): the
    /// names are the broker's to know, so the caller passes them).
    pub fn new(allow: Vec<String>, own: [String; 4]) -> ReplyPolicy {
        ReplyPolicy { allow, own }
    }

    /// Whether a reply may be sent to `reply_to`.
    pub fn allows(&self, reply_to: &str) -> bool {
        if self.own.iter().any(|name| name == reply_to) {
            return false;
        }
        if is_direct(reply_to) && !is_issued_direct_address(reply_to) {
            return false;
        }
        self.allow
            .iter()
            .any(|prefix| reply_to.starts_with(prefix.as_str()))
    }
}

/// Whether `name` is meant as a direct reply-to address (whatever its shape).
pub fn is_direct(name: &str) -> bool {
    name.starts_with(DIRECT_REPLY_TO)
}

/// Whether `name` has the shape of a direct reply-to address RabbitMQ issues:
/// `amq.rabbitmq.reply-to.` + base64 of an Erlang pid + `.` + base64 of a 16-byte key.
/// The pid is Erlang's external term format (`NEW_PID_EXT` or `PID_EXT`) holding the
/// node name as an atom: RabbitMQ 3.10 and later write a shortened `reply@<hash>`
/// there, older ones the node's name.
pub fn is_issued_direct_address(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("amq.rabbitmq.reply-to.") else {
        return false;
    };
    let Some((pid, key)) = rest.split_once('.') else {
        return false;
    };
    if key.contains('.') {
        return false;
    }
    let key_is_16_bytes = STANDARD.decode(key).is_ok_and(|key| key.len() == 16);
    key_is_16_bytes && STANDARD.decode(pid).is_ok_and(|pid| is_pid_term(&pid))
}

/// Whether `bytes` is exactly one pid in Erlang's external term format.
fn is_pid_term(bytes: &[u8]) -> bool {
    const VERSION: u8 = 131;
    const NEW_PID_EXT: u8 = 88;
    const PID_EXT: u8 = 103;
    let (tail_len, rest) = match bytes {
        [VERSION, NEW_PID_EXT, rest @ ..] => (12, rest),
        [VERSION, PID_EXT, rest @ ..] => (9, rest),
        _ => return false,
    };
    // ATOM_UTF8_EXT and ATOM_EXT have a 2-byte length, the SMALL_ ones a 1-byte one.
    let (node, tail) = match rest {
        [118 | 100, high, low, rest @ ..] => {
            let len = usize::from(u16::from_be_bytes([*high, *low]));
            (rest.get(..len), rest.get(len..))
        }
        [119 | 115, len, rest @ ..] => {
            (rest.get(..usize::from(*len)), rest.get(usize::from(*len)..))
        }
        _ => return false,
    };
    match (node, tail) {
        (Some(node), Some(tail)) => {
            tail.len() == tail_len
                && std::str::from_utf8(node).is_ok_and(|node| {
                    node.split_once('@')
                        .is_some_and(|(name, host)| !name.is_empty() && !host.is_empty())
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Names;

    /// A direct reply-to name as RabbitMQ 3.10 issues it (pid of node `reply@<hash>`).
    fn issued(node: &str) -> String {
        let mut pid = vec![131, 88, 119, node.len() as u8];
        pid.extend_from_slice(node.as_bytes());
        pid.extend_from_slice(&[0, 0, 1, 2, 0, 0, 0, 0, 0x63, 0x5f, 0x2a, 0x11]);
        format!(
            "amq.rabbitmq.reply-to.{}.{}",
            STANDARD.encode(pid),
            STANDARD.encode([7u8; 16])
        )
    }

    fn policy() -> ReplyPolicy {
        ReplyPolicy::new(
            vec![
                DIRECT_REPLY_TO.to_owned(),
                "amq.gen-".to_owned(),
                "tucano.".to_owned(),
            ],
            Names::new("tucano").all(),
        )
    }

    #[test]
    fn issued_direct_addresses_are_allowed() {
        assert!(policy().allows(&issued("reply@1327494620")));
        assert!(policy().allows(&issued("rabbit@my-host")));
    }

    #[test]
    fn forged_direct_addresses_are_refused() {
        for name in [
            "amq.rabbitmq.reply-to",
            "amq.rabbitmq.reply-to.",
            "amq.rabbitmq.reply-tox",
            // The name that crashed RabbitMQ 3.10.8's channel: a node atom one byte
            // longer than its length says, and a key that is not 16 bytes.
            "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxMzI3NDk0NjIAAE9XAAAAAEqZVdk=.forgedkey",
            "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxMzI3NDk0NjIAAE9XAAAAAEqZVdk=.AAAAAAAAAAAAAAAAAAAAAA==",
        ] {
            assert!(!policy().allows(name), "{name}");
        }
        let good = issued("reply@1");
        assert!(!policy().allows(&format!("{good}.extra")));
        assert!(!policy().allows(&good.replace(".BwcH", ".!wcH")));
    }

    #[test]
    fn the_workers_own_names_are_refused_whatever_the_list() {
        let policy = ReplyPolicy::new(vec![String::new()], Names::new("tucano").all());
        for own in [
            "tucano.authenticate",
            "tucano.authenticate.batch",
            "tucano.results",
            "tucano.dead-letter",
        ] {
            assert!(!policy.allows(own), "{own}");
        }
        assert!(policy.allows("tucano.replies"));
        assert!(policy.allows("tucano.authenticate.replies"));
    }

    #[test]
    fn names_outside_the_list_are_refused() {
        assert!(!policy().allows("other.queue"));
        assert!(policy().allows("amq.gen-Xyz"));
    }
}
