//! `asyncapi.yaml` against the worker, so the document cannot drift from the code: the
//! queues, their flags and arguments, the exchanges and their types, the results
//! routing keys and the status codes it describes are what `serve` declares and sends.
//! Each broker fact is checked three ways where it can be: against the library's own
//! names and argument tables, against the broker's view of what a running worker
//! declared (`rabbitmqctl`), and by the broker accepting a declaration with the
//! document's arguments (a mismatch is `PRECONDITION_FAILED`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use serde_json::Value;
use tucano_auth::broker::{dead_letter_queue_arguments, request_queue_arguments, Names};
use tucano_auth::config::QueueType;
use tucano_auth::error::Code;
use tucano_auth::handle::{RESULTS_ERROR, RESULTS_OK};
use tucano_auth::store::seed;

use crate::broker_view::{self, ExchangeView, QueueView};
use crate::helpers::{by_number, TestWorker};

/// The `QUEUE_PREFIX` under which the document names everything.
const DOCUMENT_PREFIX: &str = "tucano";

const WAIT: Duration = Duration::from_secs(10);

/// The document, read as JSON values.
struct Document {
    root: Value,
    /// The prefix its names are read under: a test's own.
    prefix: String,
}

impl Document {
    fn load(prefix: &str) -> Document {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/asyncapi.yaml");
        let text = std::fs::read_to_string(path).expect("read asyncapi.yaml");
        let root = serde_norway::from_str(&text).expect("asyncapi.yaml is YAML");
        Document {
            root,
            prefix: prefix.to_owned(),
        }
    }

    /// Follows a local `$ref` (`#/components/...`); other values are returned as is.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) if reference.starts_with("#/") => {
                let target = self
                    .root
                    .pointer(&reference[1..])
                    .unwrap_or_else(|| panic!("asyncapi.yaml: dangling $ref {reference}"));
                self.resolve(target)
            }
            _ => value,
        }
    }

    /// A name of the document under the test's prefix instead of `tucano`.
    fn rename(&self, name: &str) -> String {
        match name.strip_prefix(DOCUMENT_PREFIX) {
            Some(rest) if rest.starts_with('.') => format!("{}{rest}", self.prefix),
            _ => name.to_owned(),
        }
    }

    /// The channels' AMQP bindings, by channel id.
    fn amqp_bindings(&self) -> impl Iterator<Item = (&str, &Value, &Value)> {
        self.root["channels"]
            .as_object()
            .expect("asyncapi.yaml has channels")
            .iter()
            .filter_map(|(id, channel)| {
                let channel = self.resolve(channel);
                let binding = channel.pointer("/bindings/amqp")?;
                Some((id.as_str(), channel, binding))
            })
    }

    /// The queues (`is: queue`) with their flags and `x-arguments`: (channel, name, queue).
    fn queues(&self) -> Vec<(String, String, QueueView)> {
        self.amqp_bindings()
            .filter(|(_, _, binding)| binding["is"] == "queue")
            .map(|(id, _, binding)| {
                let queue = &binding["queue"];
                let name = queue["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("channel {id}: queue without a name"));
                let arguments = binding
                    .get("x-arguments")
                    .and_then(Value::as_object)
                    .map(|args| {
                        args.iter()
                            .map(|(key, value)| (key.clone(), self.rename_value(value)))
                            .collect()
                    })
                    .unwrap_or_default();
                let view = QueueView {
                    durable: queue["durable"].as_bool().unwrap_or(false),
                    exclusive: queue["exclusive"].as_bool().unwrap_or(false),
                    auto_delete: queue["autoDelete"].as_bool().unwrap_or(false),
                    arguments: Value::Object(arguments),
                };
                (id.to_owned(), self.rename(name), view)
            })
            .collect()
    }

    fn rename_value(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.rename(text)),
            other => other.clone(),
        }
    }

    /// The exchanges of the `is: routingKey` channels: (channel, name, exchange).
    fn exchanges(&self) -> Vec<(String, String, ExchangeView)> {
        self.amqp_bindings()
            .filter(|(_, _, binding)| binding["is"] == "routingKey")
            .map(|(id, _, binding)| {
                let exchange = &binding["exchange"];
                let name = exchange["name"]
                    .as_str()
                    .unwrap_or_else(|| panic!("channel {id}: exchange without a name"));
                let view = ExchangeView {
                    kind: exchange["type"].as_str().unwrap_or("topic").to_owned(),
                    durable: exchange["durable"].as_bool().unwrap_or(false),
                    auto_delete: exchange["autoDelete"].as_bool().unwrap_or(false),
                };
                (id.to_owned(), self.rename(name), view)
            })
            .collect()
    }

    /// The routing keys (channel addresses) on `exchange`, each with the status codes
    /// its messages' `x-status-code` header allows.
    fn routing_keys(&self, exchange: &str) -> BTreeMap<String, BTreeSet<String>> {
        self.amqp_bindings()
            .filter(|(_, _, binding)| {
                binding["is"] == "routingKey"
                    && binding["exchange"]["name"]
                        .as_str()
                        .is_some_and(|name| self.rename(name) == exchange)
            })
            .filter_map(|(_, channel, _)| {
                let key = channel["address"].as_str()?.to_owned();
                let codes = self
                    .channel_codes(channel)
                    .into_keys()
                    .collect::<BTreeSet<_>>();
                Some((key, codes))
            })
            .collect()
    }

    /// The status codes a channel's messages may carry, with their
    /// `x-status-description`.
    fn channel_codes(&self, channel: &Value) -> BTreeMap<String, String> {
        let mut codes = BTreeMap::new();
        for message in channel["messages"].as_object().into_iter().flatten() {
            let message = self.resolve(message.1);
            let headers = self.resolve(&message["headers"]);
            let code = self.resolve(&headers["properties"]["x-status-code"]);
            for choice in code["oneOf"].as_array().into_iter().flatten() {
                if let Some(name) = choice["const"].as_str() {
                    let description = choice["x-status-description"].as_str().unwrap_or("<none>");
                    codes.insert(name.to_owned(), description.to_owned());
                }
            }
        }
        codes
    }

    /// Every status code of every channel, with its `x-status-description`.
    fn status_codes(&self) -> BTreeMap<String, String> {
        let channels = self.root["channels"].as_object().expect("channels");
        channels
            .values()
            .flat_map(|channel| self.channel_codes(self.resolve(channel)))
            .collect()
    }
}

/// An AMQP argument table as a JSON object.
fn table_json(table: &FieldTable) -> Value {
    let mut map = serde_json::Map::new();
    for (key, value) in table.inner() {
        let value = match value {
            AMQPValue::LongString(text) => Value::from(String::from_utf8_lossy(text.as_bytes())),
            AMQPValue::ShortString(text) => Value::from(text.as_str()),
            AMQPValue::LongInt(n) => Value::from(*n),
            AMQPValue::LongLongInt(n) => Value::from(*n),
            AMQPValue::ShortInt(n) => Value::from(*n),
            AMQPValue::Boolean(b) => Value::from(*b),
            other => panic!("argument {key}: unexpected type {other:?}"),
        };
        map.insert(key.as_str().to_owned(), value);
    }
    Value::Object(map)
}

/// A JSON object of arguments as an AMQP table, typed as the worker declares them.
fn json_table(arguments: &Value) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in arguments.as_object().into_iter().flatten() {
        let value = match value {
            Value::String(text) => AMQPValue::LongString(text.as_str().into()),
            Value::Bool(b) => AMQPValue::Boolean(*b),
            Value::Number(n) => match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
                Some(n) => AMQPValue::LongInt(n),
                None => panic!("argument {key}: {n} is not a 32-bit integer"),
            },
            other => panic!("argument {key}: unexpected value {other}"),
        };
        table.insert(key.as_str().into(), value);
    }
    table
}

/// Records a difference between what the document says and what `source` says.
fn differ<T: std::fmt::Debug + PartialEq>(
    drift: &mut Vec<String>,
    what: &str,
    document: &T,
    source: &str,
    actual: &T,
) {
    if document != actual {
        drift.push(format!(
            "{what}: asyncapi.yaml says {document:?}, {source} says {actual:?}"
        ));
    }
}

/// Records, entry by entry, where two maps of named objects differ.
fn differ_each<T: std::fmt::Debug + PartialEq>(
    drift: &mut Vec<String>,
    what: &str,
    document: &BTreeMap<String, T>,
    source: &str,
    actual: &BTreeMap<String, T>,
) {
    for (name, described) in document {
        match actual.get(name) {
            None => drift.push(format!("{what} {name}: in asyncapi.yaml, not in {source}")),
            Some(found) => differ(drift, &format!("{what} {name}"), described, source, found),
        }
    }
    for name in actual.keys().filter(|name| !document.contains_key(*name)) {
        drift.push(format!("{what} {name}: in {source}, not in asyncapi.yaml"));
    }
}

/// Objects described by channels, by name; channels that describe one object in two
/// ways are drift too (the last one would otherwise hide the first).
fn by_name<T: std::fmt::Debug + PartialEq>(
    drift: &mut Vec<String>,
    what: &str,
    described: Vec<(String, String, T)>,
) -> BTreeMap<String, T> {
    let mut objects: BTreeMap<String, (String, T)> = BTreeMap::new();
    for (channel, name, view) in described {
        match objects.get(&name) {
            Some((first, seen)) if *seen != view => drift.push(format!(
                "{what} {name}: channel {first} says {seen:?}, channel {channel} says {view:?}"
            )),
            Some(_) => {}
            None => {
                objects.insert(name, (channel, view));
            }
        }
    }
    objects
        .into_iter()
        .map(|(name, (_, view))| (name, view))
        .collect()
}

fn assert_no_drift(drift: &[String]) {
    assert!(
        drift.is_empty(),
        "asyncapi.yaml differs from the worker ({} differences):\n{}",
        drift.len(),
        drift.join("\n")
    );
}

#[tokio::test]
async fn asyncapi_queues_and_exchanges_are_those_serve_declares() {
    let worker = TestWorker::spawn().await;
    let doc = Document::load(&worker.prefix);
    let names = Names::new(&worker.prefix);
    let mut drift = Vec::new();
    let queues = by_name(&mut drift, "queue", doc.queues());
    let exchanges = by_name(&mut drift, "exchange", doc.exchanges());

    // The library: its names and argument tables.
    let request_args = table_json(&request_queue_arguments(&names, QueueType::Quorum));
    let library_queues: BTreeMap<String, Value> = [
        (names.interactive.clone(), request_args.clone()),
        (names.batch.clone(), request_args),
        (
            names.dead_letter.clone(),
            table_json(&dead_letter_queue_arguments(QueueType::Quorum)),
        ),
    ]
    .into();
    let document_arguments: BTreeMap<String, Value> = queues
        .iter()
        .map(|(name, queue)| (name.clone(), queue.arguments.clone()))
        .collect();
    differ_each(
        &mut drift,
        "arguments of queue",
        &document_arguments,
        "tucano_auth::broker",
        &library_queues,
    );
    let library_exchanges: BTreeSet<String> =
        [names.results.clone(), names.dead_letter.clone()].into();
    let document_exchanges: BTreeSet<String> = exchanges.keys().cloned().collect();
    differ(
        &mut drift,
        "exchanges",
        &document_exchanges,
        "tucano_auth::broker::Names",
        &library_exchanges,
    );

    // The broker's view of what the running worker declared.
    let prefix = format!("{}.", worker.prefix);
    let broker_queues = broker_view::queues(&prefix).await;
    differ_each(
        &mut drift,
        "queue",
        &queues,
        "the broker (rabbitmqctl list_queues)",
        &broker_queues,
    );
    let broker_exchanges = broker_view::exchanges(&prefix).await;
    differ_each(
        &mut drift,
        "exchange",
        &exchanges,
        "the broker (rabbitmqctl list_exchanges)",
        &broker_exchanges,
    );

    // The broker accepts the document's declarations of the existing objects.
    for (name, queue) in queues
        .iter()
        .filter(|(n, _)| broker_queues.contains_key(*n))
    {
        let channel = worker.conn.create_channel().await.expect("channel");
        let options = QueueDeclareOptions {
            durable: queue.durable,
            exclusive: queue.exclusive,
            auto_delete: queue.auto_delete,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(name.as_str().into(), options, json_table(&queue.arguments))
            .await
        {
            Ok(_) => {
                let _ = channel.close(200, "done".into()).await;
            }
            Err(err) => drift.push(format!(
                "queue {name}: the broker refuses the document's declaration: {err}"
            )),
        }
    }
    for (name, exchange) in exchanges
        .iter()
        .filter(|(n, _)| broker_exchanges.contains_key(*n))
    {
        let channel = worker.conn.create_channel().await.expect("channel");
        let kind = match exchange.kind.as_str() {
            "topic" => ExchangeKind::Topic,
            "fanout" => ExchangeKind::Fanout,
            "direct" => ExchangeKind::Direct,
            "headers" => ExchangeKind::Headers,
            other => ExchangeKind::Custom(other.to_owned()),
        };
        let options = ExchangeDeclareOptions {
            durable: exchange.durable,
            auto_delete: exchange.auto_delete,
            ..ExchangeDeclareOptions::default()
        };
        match channel
            .exchange_declare(name.as_str().into(), kind, options, FieldTable::default())
            .await
        {
            Ok(()) => {
                let _ = channel.close(200, "done".into()).await;
            }
            Err(err) => drift.push(format!(
                "exchange {name}: the broker refuses the document's declaration: {err}"
            )),
        }
    }
    assert_no_drift(&drift);
}

#[tokio::test]
async fn asyncapi_results_routing_keys_carry_the_replies_the_document_says() {
    let worker = TestWorker::spawn().await;
    let doc = Document::load(&worker.prefix);
    let keys = doc.routing_keys(&worker.names.results);
    let mut drift = Vec::new();
    let document_keys: BTreeSet<&str> = keys.keys().map(String::as_str).collect();
    differ(
        &mut drift,
        "routing keys of the results exchange",
        &document_keys,
        "tucano_auth::handle",
        &[RESULTS_OK, RESULTS_ERROR].into(),
    );

    // Bind a queue with the document's key for OK replies and one with its key for
    // the others, then send one request of each kind without reply_to.
    let key_for = |code: &str| {
        keys.iter()
            .find(|(_, codes)| codes.contains(code))
            .map(|(key, _)| key.clone())
            .unwrap_or_else(|| panic!("asyncapi.yaml: no results routing key carries {code}"))
    };
    let ok_key = key_for("OK");
    let error_key = key_for("MISSING_IDENTIFIER");
    let ok_queue = worker.declare_queue("results-ok", Some(&ok_key)).await;
    let error_queue = worker
        .declare_queue("results-error", Some(&error_key))
        .await;
    let interactive = worker.names.interactive.clone();
    let valid = by_number(seed::SESSION_TOKEN, seed::SUBSCRIPTION_NUMBER);
    for (body, id) in [(valid.as_bytes(), "ok-1"), (b"{}".as_slice(), "error-1")] {
        let properties = BasicProperties::default().with_correlation_id(id.into());
        worker.publish(&interactive, body, properties).await;
    }
    for (key, queue, expected) in [
        (&ok_key, &ok_queue, "OK"),
        (&error_key, &error_queue, "MISSING_IDENTIFIER"),
    ] {
        let Some(reply) = worker.get(queue, WAIT).await else {
            drift.push(format!(
                "no {expected} reply reached a queue bound to {} with the document's key '{key}'",
                worker.names.results
            ));
            continue;
        };
        let allowed = &keys[key];
        let header = reply.header_code.clone().unwrap_or_default();
        if reply.code() != expected || !allowed.contains(&header) {
            drift.push(format!(
                "routing key '{key}' carried {} (x-status-code {header}); the document allows {allowed:?}",
                reply.code()
            ));
        }
        let persistent = doc.root["operations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, op)| op["action"] == "send")
            .filter_map(|(_, op)| op.pointer("/bindings/amqp/deliveryMode")?.as_u64())
            .collect::<BTreeSet<_>>();
        differ(
            &mut drift,
            "delivery mode of results",
            &persistent,
            "the reply",
            &reply.delivery_mode.map(u64::from).into_iter().collect(),
        );
    }
    assert_no_drift(&drift);
}

#[test]
fn asyncapi_status_codes_are_the_workers_with_their_fixed_descriptions() {
    let doc = Document::load(DOCUMENT_PREFIX);
    let worker: BTreeMap<String, String> = Code::ALL
        .iter()
        .map(|code| (code.as_str().to_owned(), code.description().to_owned()))
        .collect();
    let mut drift = Vec::new();
    differ_each(
        &mut drift,
        "x-status-description of status code",
        &doc.status_codes(),
        "tucano_auth::error::Code",
        &worker,
    );
    assert_no_drift(&drift);
}
