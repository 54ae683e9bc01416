//! What an attacker with publish rights on tucano-auth's request queues can send, and
//! the raw publisher that sends it byte for byte.
//!
//! The catalogue ([`attacks`]) holds every hostile message the worker has been tried
//! with: the ones that once stopped it and the ones it always withstood. The chaos
//! tool sends them beside ordinary traffic; the integration tests send them one by one.

mod raw;

pub use raw::{Properties, Publisher};

/// The `number` of the demo subscription, and the demo login token.
const DEMO_NUMBER: &str = "S0000000329";
const DEMO_TOKEN: &str = "35108255345D4F98ABFD7810A08E432F";

/// An authentication code no log line or reply may ever show (attack 6).
pub const AUTH_CODE_SENTINEL: &str = "AUTHCODE-SENTINEL-5555";
/// A pass code no log line or reply may ever show.
pub const PASS_CODE_SENTINEL: &str = "PASSCODE-SENTINEL-7777";
/// A line a log-injection attempt tries to forge.
pub const FORGED_LINE: &str = "FORGED LINE";

/// The identifier of the credential the attack `hostile-hash-row` asks for. The
/// message alone is harmless; a tool that can write the database first stores
/// [`HOSTILE_HASH`] for it ([`HOSTILE_HASH_ROW`]), as `tucano-chaos` and the tests do.
pub const HOSTILE_HASH_IDENTIFIER: &str = "hostile-hash-identifier";
/// A stored pass-code hash asking for 4 TiB of Argon2 memory: computed, it aborts the
/// worker (and every worker the request is redelivered to).
pub const HOSTILE_HASH: &str = "$argon2id$v=19$m=4294967295,t=1,p=1$c2VjcmV0LXNhbHQtdGV4dA$SGFzaE11c3ROZXZlckJlTG9nZ2VkSGFzaE11c3ROZXZl";
/// The statement that stores [`HOSTILE_HASH`] (`$1`) as the pass code of an access
/// token `HOSTILE-HASH-ROW` with identifier [`HOSTILE_HASH_IDENTIFIER`] (`$2`), on the
/// demo data's account, as a careless import by other means would.
pub const HOSTILE_HASH_ROW: &str = "INSERT INTO access_tokens \
    (number, identifier, pass_code_hash, life_cycle_state, accounts_receivable_id) \
    SELECT 'HOSTILE-HASH-ROW', $2, $1, 'EFFECTIVE', id FROM accounts_receivable \
    WHERE number = 'AR0000000001' \
    ON CONFLICT (number) DO UPDATE SET pass_code_hash = EXCLUDED.pass_code_hash";

/// One hostile message.
#[derive(Debug, Clone)]
pub struct Attack {
    /// A short name, for reports.
    pub name: &'static str,
    /// What it tries.
    pub what: &'static str,
    /// `true` for the attacks that once stopped the worker or cost others their answer.
    pub once_harmful: bool,
    /// The request queue it goes to: the interactive one, or the batch one.
    pub batch: bool,
    /// Its properties, as raw bytes.
    pub properties: Properties,
    /// Its body.
    pub body: Vec<u8>,
}

/// A valid request body for the demo subscription.
pub fn demo_body() -> Vec<u8> {
    format!(r#"{{"token":"{DEMO_TOKEN}","subscription_identifier":{{"number":"{DEMO_NUMBER}"}}}}"#)
        .into_bytes()
}

/// The entries of a field table holding one entry, `key` = `value` (a type tag and
/// its encoding), without the table's length prefix.
pub fn table_entry(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + key.len() + 1);
    raw::put_short(&mut out, key);
    out.extend_from_slice(value);
    out
}

/// A field value: a long string (`S`).
pub fn long_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'S'];
    raw::put_long(&mut out, bytes);
    out
}

/// A field value: `depth` arrays (`A`) nested in each other around a long string.
pub fn nested_arrays(depth: usize) -> Vec<u8> {
    nest(depth, b'A', |inner| inner.to_vec())
}

/// A field value: `depth` tables (`F`) nested in each other, each holding one entry
/// `k`, around a long string.
pub fn nested_tables(depth: usize) -> Vec<u8> {
    nest(depth, b'F', |inner| table_entry(b"k", inner))
}

fn nest(depth: usize, tag: u8, wrap: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let mut value = long_string(b"x");
    for _ in 0..depth {
        let content = wrap(&value);
        let mut next = Vec::with_capacity(content.len() + 5);
        next.push(tag);
        raw::put_long(&mut next, &content);
        value = next;
    }
    value
}

/// The deepest nesting of arrays whose header still fits a frame of `frame_max`
/// bytes (RabbitMQ's default is 131,072): each level costs 5 bytes.
pub fn deepest_arrays(frame_max: usize) -> usize {
    frame_max.saturating_sub(256) / 5
}

/// Properties of an ordinary request answered through the results exchange, with
/// `correlation_id` set so the chaos tool can tell its replies apart.
fn plain(correlation_id: &str) -> Properties {
    Properties {
        content_type: Some(b"application/json".to_vec()),
        delivery_mode: Some(2),
        correlation_id: Some(correlation_id.as_bytes().to_vec()),
        ..Properties::default()
    }
}

/// Every hostile message, for a worker whose queues are under `prefix`. `frame_max`
/// is the frame size the broker negotiates (the deepest header must fit it).
pub fn attacks(prefix: &str, frame_max: usize) -> Vec<Attack> {
    let deep = |depth| Properties {
        headers: Some(table_entry(b"deep", &nested_arrays(depth))),
        ..plain("hostile-deep")
    };
    let mut list = vec![
        Attack {
            name: "deep-header-1800",
            what: "a header of arrays nested 1,800 deep (9 KB)",
            once_harmful: true,
            batch: false,
            properties: deep(1_800),
            body: demo_body(),
        },
        Attack {
            name: "deep-header-frame",
            what: "a header of arrays nested as deep as the frame allows",
            once_harmful: true,
            batch: false,
            properties: deep(deepest_arrays(frame_max)),
            body: demo_body(),
        },
        Attack {
            name: "deep-table-header",
            what: "a header of tables nested 5,000 deep, on the batch queue",
            once_harmful: true,
            batch: true,
            properties: Properties {
                headers: Some(table_entry(b"deep", &nested_tables(5_000))),
                ..plain("hostile-deep-table")
            },
            body: demo_body(),
        },
        Attack {
            name: "correlation-id-not-utf8",
            what: "a correlation_id of one byte 0xFF",
            once_harmful: true,
            batch: false,
            properties: Properties {
                correlation_id: Some(b"\xff".to_vec()),
                ..plain("")
            },
            body: demo_body(),
        },
        Attack {
            name: "reply-to-not-utf8",
            what: "a reply_to that is not UTF-8",
            once_harmful: true,
            batch: false,
            properties: Properties {
                reply_to: Some(format!("{prefix}.\u{0}").into_bytes().into_iter().chain([0xC3, 0x28]).collect()),
                ..plain("hostile-reply-to-bytes")
            },
            body: demo_body(),
        },
        Attack {
            name: "header-key-not-utf8",
            what: "a header whose key is not UTF-8, and a message_id that is not either",
            once_harmful: true,
            batch: true,
            properties: Properties {
                headers: Some(table_entry(b"k\xfe\xff", &long_string(b"v"))),
                message_id: Some(b"\xe2\x82".to_vec()),
                ..plain("hostile-key-bytes")
            },
            body: demo_body(),
        },
        Attack {
            name: "forged-direct-reply-to",
            what: "a direct reply-to name RabbitMQ never issued",
            once_harmful: true,
            batch: false,
            properties: Properties {
                reply_to: Some(
                    b"amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxMzI3NDk0NjIAAE9XAAAAAEqZVdk=.forgedkey"
                        .to_vec(),
                ),
                ..plain("hostile-forged-reply-to")
            },
            body: demo_body(),
        },
        Attack {
            name: "forged-direct-reply-to-shaped",
            what: "a direct reply-to name of the right shape for a node that does not exist",
            once_harmful: true,
            batch: false,
            properties: Properties {
                reply_to: Some(
                    b"amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxMzI3NDk0NjIAAE9XAAAAAEqZVdk=.AAAAAAAAAAAAAAAAAAAAAA=="
                        .to_vec(),
                ),
                ..plain("hostile-forged-reply-to-shaped")
            },
            body: demo_body(),
        },
        Attack {
            name: "forged-direct-reply-to-unknown-node",
            what: "a well-formed direct reply-to name for a node that is not in the cluster",
            once_harmful: true,
            batch: false,
            properties: Properties {
                reply_to: Some(
                    b"amq.rabbitmq.reply-to.g1h3B3JlcGx5QDEAAAECAAAAAGNfKhE=.BwcHBwcHBwcHBwcHBwcHBw=="
                        .to_vec(),
                ),
                ..plain("hostile-forged-reply-to-node")
            },
            body: demo_body(),
        },
    ];
    for (name, suffix) in [
        ("reply-to-dead-letter", "dead-letter"),
        ("reply-to-request-queue", "authenticate"),
        ("reply-to-batch-queue", "authenticate.batch"),
        ("reply-to-results", "results"),
    ] {
        list.push(Attack {
            name,
            what: "a reply_to naming one of the worker's own queues or exchanges",
            once_harmful: true,
            batch: false,
            properties: Properties {
                reply_to: Some(format!("{prefix}.{suffix}").into_bytes()),
                ..plain(name)
            },
            body: demo_body(),
        });
    }
    list.extend([
        Attack {
            name: "log-injection-reply-to",
            what: "a reply_to holding a newline, a forged log line and an escape sequence",
            once_harmful: true,
            batch: false,
            properties: Properties {
                reply_to: Some(
                    format!("{prefix}.x\n2026-01-01T00:00:00.000000Z  INFO tucano_auth: {FORGED_LINE} \x1b[31m")
                        .into_bytes(),
                ),
                ..plain("hostile-log-injection")
            },
            body: demo_body(),
        },
        Attack {
            name: "log-injection-correlation-id",
            what: "a correlation_id holding a newline and an escape sequence",
            once_harmful: true,
            batch: false,
            properties: plain(&format!("x\n{FORGED_LINE} \x1b[31m")),
            body: demo_body(),
        },
        Attack {
            name: "authentication-code-echo",
            what: "an unknown authentication code, which must not be echoed or logged",
            once_harmful: true,
            batch: false,
            properties: plain("hostile-auth-code"),
            body: format!(
                r#"{{"token":"{DEMO_TOKEN}","customer_identification_medium_identifier":{{"authentication_code":"{AUTH_CODE_SENTINEL}"}}}}"#
            )
            .into_bytes(),
        },
        Attack {
            name: "pass-code-guess",
            what: "an identifier with a wrong pass code, which must not be logged",
            once_harmful: false,
            batch: false,
            properties: plain("hostile-pass-code"),
            body: format!(
                r#"{{"token":"{DEMO_TOKEN}","access_token_identifier":{{"identifier":"{AUTH_CODE_SENTINEL}","pass_code":"{PASS_CODE_SENTINEL}"}}}}"#
            )
            .into_bytes(),
        },
        Attack {
            name: "hostile-hash-row",
            what: "a pass code for a credential whose stored hash asks for 4 TiB of memory",
            once_harmful: true,
            batch: false,
            properties: plain("hostile-hash-row"),
            body: format!(
                r#"{{"token":"{DEMO_TOKEN}","access_token_identifier":{{"identifier":"{HOSTILE_HASH_IDENTIFIER}","pass_code":"{PASS_CODE_SENTINEL}"}}}}"#
            )
            .into_bytes(),
        },
        Attack {
            name: "many-headers",
            what: "5,000 headers",
            once_harmful: false,
            batch: false,
            properties: Properties {
                headers: Some(
                    (0..5_000)
                        .flat_map(|i| table_entry(format!("h{i}").as_bytes(), &long_string(b"v")))
                        .collect(),
                ),
                ..plain("hostile-many-headers")
            },
            body: demo_body(),
        },
        Attack {
            name: "deep-json-body",
            what: "a JSON body nested 30,000 deep",
            once_harmful: false,
            batch: false,
            properties: plain("hostile-deep-json"),
            body: {
                let mut body = "[".repeat(30_000).into_bytes();
                body.extend("]".repeat(30_000).into_bytes());
                body
            },
        },
        Attack {
            name: "oversized-body",
            what: "a 1 MiB body",
            once_harmful: false,
            batch: false,
            properties: plain("hostile-oversized"),
            body: vec![b' '; 1 << 20],
        },
        Attack {
            name: "alg-none-token",
            what: "a login token in JWT form with alg none",
            once_harmful: false,
            batch: false,
            properties: plain("hostile-alg-none"),
            body: format!(
                r#"{{"token":"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJqdGkiOiIwIiwiZXhwIjo5OTk5OTk5OTk5fQ.","subscription_identifier":{{"number":"{DEMO_NUMBER}"}}}}"#
            )
            .into_bytes(),
        },
        Attack {
            name: "sql-injection",
            what: "an identifier built to break out of a SQL string",
            once_harmful: false,
            batch: false,
            properties: plain("hostile-sql"),
            body: format!(
                r#"{{"token":"{DEMO_TOKEN}","subscription_identifier":{{"number":"' OR 1=1; DROP TABLE subscriptions; --"}}}}"#
            )
            .into_bytes(),
        },
    ]);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_arrays_cost_five_bytes_a_level() {
        let shallow = nested_arrays(0);
        assert_eq!(shallow, b"S\x00\x00\x00\x01x");
        assert_eq!(nested_arrays(10).len(), shallow.len() + 50);
        let two = nested_arrays(2);
        assert_eq!(&two[..5], b"A\x00\x00\x00\x0b");
    }

    #[test]
    fn the_deepest_header_fits_the_frame() {
        let depth = deepest_arrays(131_072);
        assert!(table_entry(b"deep", &nested_arrays(depth)).len() < 131_072 - 100);
        assert!(depth > 25_000);
    }

    #[test]
    fn every_attack_has_a_distinct_name() {
        let list = attacks("p", 131_072);
        let mut names: Vec<_> = list.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), list.len());
    }
}
