//! The broker's own view of what a test's worker declared: queues with their flags and
//! arguments, exchanges with their types, read with `rabbitmqctl`. AMQP cannot read a
//! queue's arguments back (a passive declare answers only counts), and the management
//! plugin is not enabled on every broker we test against; `rabbitmqctl` is there
//! wherever RabbitMQ runs.
//!
//! `RABBITMQCTL` replaces the command for a broker elsewhere, e.g.
//! `RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl"`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// A queue as the broker holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueView {
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    /// The declared arguments, as a JSON object.
    pub arguments: Value,
}

/// An exchange as the broker holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeView {
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
}

/// The queues whose names start with `prefix`, by name.
pub async fn queues(prefix: &str) -> BTreeMap<String, QueueView> {
    let rows = rabbitmqctl(&[
        "list_queues",
        "name",
        "durable",
        "exclusive",
        "auto_delete",
        "arguments",
    ])
    .await;
    rows_under(rows, prefix)
        .map(|(name, row)| {
            let view = QueueView {
                durable: flag(&row, "durable"),
                // `exclusive` is `true` or the owner's pid when exclusive; `false`, an
                // empty string or nothing when not, depending on the version.
                exclusive: match row.get("exclusive") {
                    Some(Value::Bool(exclusive)) => *exclusive,
                    Some(Value::String(owner)) => !owner.is_empty(),
                    _ => false,
                },
                auto_delete: flag(&row, "auto_delete"),
                arguments: arguments(row.get("arguments")),
            };
            (name, view)
        })
        .collect()
}

/// The exchanges whose names start with `prefix`, by name.
pub async fn exchanges(prefix: &str) -> BTreeMap<String, ExchangeView> {
    let rows = rabbitmqctl(&["list_exchanges", "name", "type", "durable", "auto_delete"]).await;
    rows_under(rows, prefix)
        .map(|(name, row)| {
            let view = ExchangeView {
                kind: row["type"].as_str().unwrap_or_default().to_owned(),
                durable: flag(&row, "durable"),
                auto_delete: flag(&row, "auto_delete"),
            };
            (name, view)
        })
        .collect()
}

fn rows_under(rows: Value, prefix: &str) -> impl Iterator<Item = (String, Value)> + '_ {
    let Value::Array(rows) = rows else {
        panic!("rabbitmqctl printed no JSON array: {rows}");
    };
    rows.into_iter().filter_map(move |row| {
        let name = row.get("name")?.as_str()?.to_owned();
        name.starts_with(prefix).then_some((name, row))
    })
}

fn flag(row: &Value, key: &str) -> bool {
    row.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Queue arguments come as a JSON object, or, from some versions, as a list of
/// `[name, type, value]` triples or an empty list.
fn arguments(value: Option<&Value>) -> Value {
    match value {
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(Value::Array(items)) => Value::Object(
            items
                .iter()
                .filter_map(|item| {
                    let item = item.as_array()?;
                    Some((item.first()?.as_str()?.to_owned(), item.last()?.clone()))
                })
                .collect(),
        ),
        _ => Value::Object(Default::default()),
    }
}

/// Runs `rabbitmqctl -q ARGS --formatter json` and parses what it prints.
async fn rabbitmqctl(args: &[&str]) -> Value {
    let command = std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned());
    let mut words = command.split_whitespace();
    let program = words.next().expect("RABBITMQCTL names a command");
    let run = tokio::process::Command::new(program)
        .args(words)
        .arg("-q")
        .args(args)
        .args(["--formatter", "json"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("`{command}` did not answer within 60 s"))
        .unwrap_or_else(|err| {
            panic!("cannot run `{command}`: {err}. Set RABBITMQCTL to a command that runs the broker's rabbitmqctl")
        });
    assert!(
        output.status.success(),
        "`{command} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "`{command} {}` printed no JSON ({err}): {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The prefetch of each consumer of the queues whose names start with `prefix`, by
/// queue name.
pub async fn prefetch_counts(prefix: &str) -> BTreeMap<String, Vec<u64>> {
    let Value::Array(rows) = rabbitmqctl(&["list_consumers", "queue_name", "prefetch_count"]).await
    else {
        panic!("rabbitmqctl printed no JSON array");
    };
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for row in rows {
        let (Some(queue), Some(prefetch)) = (
            row.get("queue_name").and_then(Value::as_str),
            row.get("prefetch_count").and_then(Value::as_u64),
        ) else {
            continue;
        };
        if queue.starts_with(prefix) {
            counts.entry(queue.to_owned()).or_default().push(prefetch);
        }
    }
    counts
}
