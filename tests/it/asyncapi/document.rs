//! `asyncapi.yaml` read for the drift test: its queues, exchanges, routing keys and
//! status codes as plain values, with names moved from the document's prefix to a
//! test's own.

use std::collections::{BTreeMap, BTreeSet};

use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

use crate::broker_view::{ExchangeView, QueueView};

/// The `QUEUE_PREFIX` under which the document names everything.
pub const DOCUMENT_PREFIX: &str = "tucano";

/// The document, read as JSON values.
pub struct Document {
    root: Value,
    /// The prefix its names are read under: a test's own.
    prefix: String,
}

impl Document {
    pub fn load(prefix: &str) -> Document {
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
    pub fn queues(&self) -> Vec<(String, String, QueueView)> {
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
    pub fn exchanges(&self) -> Vec<(String, String, ExchangeView)> {
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
    pub fn routing_keys(&self, exchange: &str) -> BTreeMap<String, BTreeSet<String>> {
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

    /// The `deliveryMode`s of the operations the worker sends with.
    pub fn send_delivery_modes(&self) -> BTreeSet<u64> {
        self.root["operations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, operation)| operation["action"] == "send")
            .filter_map(|(_, operation)| operation.pointer("/bindings/amqp/deliveryMode")?.as_u64())
            .collect()
    }

    /// Every status code of every channel, with its `x-status-description`.
    pub fn status_codes(&self) -> BTreeMap<String, String> {
        let channels = self.root["channels"].as_object().expect("channels");
        channels
            .values()
            .flat_map(|channel| self.channel_codes(self.resolve(channel)))
            .collect()
    }
}

/// An AMQP argument table as a JSON object.
pub fn table_json(table: &FieldTable) -> Value {
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
pub fn json_table(arguments: &Value) -> FieldTable {
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
