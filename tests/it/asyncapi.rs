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
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use serde_json::Value;
use tucano_auth::broker::QueueType;
use tucano_auth::broker::{dead_letter_queue_arguments, request_queue_arguments, Names};
use tucano_auth::error::Code;
use tucano_auth::handle::{RESULTS_ERROR, RESULTS_OK};
use tucano_auth::store::seed;

use crate::broker_view;
use crate::helpers::{by_number, TestWorker};

mod document;

use document::{json_table, table_json, Document, DOCUMENT_PREFIX};

const WAIT: Duration = Duration::from_secs(10);

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
        differ(
            &mut drift,
            "delivery mode of results",
            &doc.send_delivery_modes(),
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
