//! The load of a chaos run: a publisher at a steady rate with publisher confirms of
//! what the [`Traffic`] says, a collector of replies on a durable queue, and the ledger
//! that counts both by `correlation_id`. Both sides reconnect by themselves when the
//! broker goes away.
//!
//! Not the product's `Client`, nor the harness's direct reply-to requester: a direct
//! reply goes to the connection that sent the request, and these scenarios cut that
//! connection (a broker restart, a lost node) while requests are in the worker's hands.
//! Their replies must wait in a durable queue for the collector to come back, or the
//! ledger would count as lost what the worker did answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::traffic::{Class, Traffic};

/// What happened to every request of a run, indexed by its sequence number.
pub struct Ledger {
    confirmed: Vec<AtomicBool>,
    replies: Vec<AtomicU32>,
    /// Microseconds from `epoch` to the publish, plus 1 (0: not published).
    sent_at: Vec<AtomicU64>,
    /// Microseconds from `epoch` to the first reply, plus 1 (0: none yet).
    answered_at: Vec<AtomicU64>,
    epoch: Instant,
    codes: Mutex<BTreeMap<String, u64>>,
    ok_times: Mutex<Vec<Instant>>,
    /// The sequence numbers of replies other than `OK`, once per reply.
    not_ok: Mutex<Vec<u64>>,
}

/// Confirmed and answered requests of one [`Class`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassTally {
    /// Requests the broker confirmed.
    pub confirmed: u64,
    /// Of those, requests with at least one reply.
    pub answered: u64,
    /// Replies other than `OK`.
    pub not_ok: u64,
}

/// The counts of a run.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Requests the broker confirmed.
    pub confirmed: u64,
    /// Requests whose publish was not confirmed (broker down, connection lost).
    pub unconfirmed: u64,
    /// Confirmed requests with at least one reply.
    pub answered: u64,
    /// Confirmed requests with no reply.
    pub missing: u64,
    /// Requests with more than one reply.
    pub duplicated: u64,
    /// Replies by status code.
    pub codes: BTreeMap<String, u64>,
}

impl Ledger {
    /// A ledger for `requests` requests.
    pub fn new(requests: u64) -> Ledger {
        Ledger {
            confirmed: (0..requests).map(|_| AtomicBool::new(false)).collect(),
            replies: (0..requests).map(|_| AtomicU32::new(0)).collect(),
            sent_at: (0..requests).map(|_| AtomicU64::new(0)).collect(),
            answered_at: (0..requests).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            codes: Mutex::new(BTreeMap::new()),
            ok_times: Mutex::new(Vec::new()),
            not_ok: Mutex::new(Vec::new()),
        }
    }

    fn confirm(&self, id: u64) {
        if let Some(flag) = self.confirmed.get(id as usize) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    fn stamp(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    fn sent(&self, id: u64) {
        if let Some(at) = self.sent_at.get(id as usize) {
            at.store(self.stamp(), Ordering::SeqCst);
        }
    }

    fn reply(&self, id: u64, code: &str) {
        if let Some(count) = self.replies.get(id as usize) {
            count.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(at) = self.answered_at.get(id as usize) {
            let _ = at.compare_exchange(0, self.stamp(), Ordering::SeqCst, Ordering::SeqCst);
        }
        if let Ok(mut codes) = self.codes.lock() {
            *codes.entry(code.to_owned()).or_default() += 1;
        }
        if code == "OK" {
            if let Ok(mut times) = self.ok_times.lock() {
                times.push(Instant::now());
            }
        } else if let Ok(mut not_ok) = self.not_ok.lock() {
            not_ok.push(id);
        }
    }

    /// Whether every confirmed request has a reply.
    pub fn settled(&self) -> bool {
        self.confirmed
            .iter()
            .zip(&self.replies)
            .all(|(c, r)| !c.load(Ordering::SeqCst) || r.load(Ordering::SeqCst) > 0)
    }

    /// The first `OK` reply received at or after `since`.
    pub fn first_ok_after(&self, since: Instant) -> Option<Instant> {
        let times = self.ok_times.lock().ok()?;
        times.iter().copied().filter(|t| *t >= since).min()
    }

    /// Confirmed requests whose first reply came more than `threshold` after their
    /// publish, and the longest such wait.
    pub fn waited(&self, threshold: Duration) -> (u64, Duration) {
        let mut count = 0;
        let mut longest = Duration::ZERO;
        for ((confirmed, sent), answered) in self
            .confirmed
            .iter()
            .zip(&self.sent_at)
            .zip(&self.answered_at)
        {
            let (sent, answered) = (sent.load(Ordering::SeqCst), answered.load(Ordering::SeqCst));
            if !confirmed.load(Ordering::SeqCst) || sent == 0 || answered == 0 {
                continue;
            }
            let wait = Duration::from_micros(answered.saturating_sub(sent));
            if wait > threshold {
                count += 1;
            }
            longest = longest.max(wait);
        }
        (count, longest)
    }

    /// When the first reply came to a request published at or after `since`.
    pub fn first_answer_to_sent_after(&self, since: Instant) -> Option<Instant> {
        let since = since.saturating_duration_since(self.epoch).as_micros() as u64 + 1;
        let first = self
            .sent_at
            .iter()
            .zip(&self.answered_at)
            .map(|(sent, answered)| (sent.load(Ordering::SeqCst), answered.load(Ordering::SeqCst)))
            .filter(|(sent, answered)| *sent >= since && *answered > 0)
            .map(|(_, answered)| answered)
            .min()?;
        Some(self.epoch + Duration::from_micros(first - 1))
    }

    /// Confirmed and answered requests by the class `traffic` gave them.
    pub fn by_class(&self, traffic: &Traffic) -> BTreeMap<Class, ClassTally> {
        let mut classes = BTreeMap::<Class, ClassTally>::new();
        for (id, (confirmed, replies)) in self.confirmed.iter().zip(&self.replies).enumerate() {
            if !confirmed.load(Ordering::SeqCst) {
                continue;
            }
            let class = classes.entry(traffic.class(id as u64)).or_default();
            class.confirmed += 1;
            if replies.load(Ordering::SeqCst) > 0 {
                class.answered += 1;
            }
        }
        for id in self.not_ok.lock().map(|n| n.clone()).unwrap_or_default() {
            classes.entry(traffic.class(id)).or_default().not_ok += 1;
        }
        classes
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for (confirmed, replies) in self.confirmed.iter().zip(&self.replies) {
            let confirmed = confirmed.load(Ordering::SeqCst);
            let replies = replies.load(Ordering::SeqCst);
            if confirmed {
                tally.confirmed += 1;
                if replies > 0 {
                    tally.answered += 1;
                } else {
                    tally.missing += 1;
                }
            } else {
                tally.unconfirmed += 1;
            }
            if replies > 1 {
                tally.duplicated += 1;
            }
        }
        tally.codes = self.codes.lock().map(|c| c.clone()).unwrap_or_default();
        tally
    }
}

async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
}

async fn confirming_channel(url: &str) -> Result<(Connection, Channel), lapin::Error> {
    let connection = connect(url, "tucano-chaos publisher").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

/// Publishes `ledger`'s requests at `rate` per second, each to the queue and with the
/// body `traffic` gives it, with `reply_to` = `reply_queue` and `correlation_id` =
/// `c-<n>`. A request whose publish fails is left unconfirmed; the publisher reconnects
/// at most every 200 ms and keeps the schedule.
pub async fn publish(
    url: &str,
    traffic: &Traffic,
    reply_queue: &str,
    requests: u64,
    rate: u64,
    ledger: Arc<Ledger>,
) {
    let start = Instant::now();
    let mut link: Option<(Connection, Channel)> = None;
    let mut last_attempt: Option<Instant> = None;
    for id in 0..requests {
        let due = start + Duration::from_secs_f64(id as f64 / rate.max(1) as f64);
        tokio::time::sleep_until(due).await;
        if link.is_none() && last_attempt.is_none_or(|t| t.elapsed() >= Duration::from_millis(200))
        {
            last_attempt = Some(Instant::now());
            link = confirming_channel(url).await.ok();
        }
        let Some((_, channel)) = &link else { continue };
        let (queue, body) = traffic.pick(id);
        ledger.sent(id);
        let published = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_correlation_id(format!("c-{id}").into())
                    .with_reply_to(reply_queue.into())
                    .with_delivery_mode(2),
            )
            .await;
        match published {
            Ok(confirm) => {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    if let Ok(confirmation) = confirm.await {
                        if confirmation.is_ack() {
                            ledger.confirm(id);
                        }
                    }
                });
            }
            Err(_) => link = None,
        }
    }
    // Let the last confirms arrive before the connection goes.
    if let Some((connection, channel)) = link {
        let _ = tokio::time::timeout(Duration::from_secs(10), channel.wait_for_confirms()).await;
        let _ = connection.close(200, "done".into()).await;
    }
}

/// Consumes `reply_queue` into `ledger` until `stop`, reconnecting when the broker goes.
pub async fn collect(url: &str, reply_queue: &str, ledger: Arc<Ledger>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let session = async {
            let connection = connect(url, "tucano-chaos collector").await?;
            let channel = connection.create_channel().await?;
            channel.basic_qos(500, BasicQosOptions::default()).await?;
            let mut consumer = channel
                .basic_consume(
                    reply_queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery?;
                let id = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|c| c.as_str().strip_prefix("c-")?.parse::<u64>().ok());
                let code = serde_json::from_slice::<serde_json::Value>(&delivery.data)
                    .ok()
                    .and_then(|v| v.pointer("/status/code")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "<unreadable>".to_owned());
                if let Some(id) = id {
                    ledger.reply(id, &code);
                }
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            Ok::<(), lapin::Error>(())
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = session => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// A load under way: the publisher and the collector, and the ledger they fill.
pub struct Run {
    /// What happened to every request so far.
    pub ledger: Arc<Ledger>,
    stop: CancellationToken,
    publisher: tokio::task::JoinHandle<()>,
    collector: tokio::task::JoinHandle<()>,
}

/// Starts `requests` requests of `traffic` at `rate` per second through `url`, with
/// their replies collected from `reply_queue` (which must exist) through the same URL.
pub fn start(url: &str, traffic: Arc<Traffic>, reply_queue: &str, requests: u64, rate: u64) -> Run {
    let ledger = Arc::new(Ledger::new(requests));
    let stop = CancellationToken::new();
    let collector = tokio::spawn({
        let (url, reply_queue, ledger, stop) = (
            url.to_owned(),
            reply_queue.to_owned(),
            ledger.clone(),
            stop.clone(),
        );
        async move { collect(&url, &reply_queue, ledger, stop).await }
    });
    let publisher = tokio::spawn({
        let (url, reply_queue, ledger) = (url.to_owned(), reply_queue.to_owned(), ledger.clone());
        async move { publish(&url, &traffic, &reply_queue, requests, rate, ledger).await }
    });
    Run {
        ledger,
        stop,
        publisher,
        collector,
    }
}

impl Run {
    /// Waits for the publisher to end, then up to `drain` for every confirmed request
    /// to have a reply, and one more second for late duplicates; stops the collector.
    pub async fn finish(self, drain: Duration) -> Arc<Ledger> {
        let _ = self.publisher.await;
        let deadline = Instant::now() + drain;
        while !self.ledger.settled() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Late duplicates (redeliveries) still count.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stop.cancel();
        let _ = self.collector.await;
        self.ledger
    }
}
