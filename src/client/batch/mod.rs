//! `batch`: authenticates every request line of a file through a
//! [`Client`] and writes one result line per request line, in
//! input order, so a nightly job needs no AMQP code of its own.
//!
//! At most `--window` request lines are between being read and being written: sent and
//! unanswered, or answered and waiting for an earlier line to be written (results
//! arrive out of order and are put back in order in a buffer the window bounds). So
//! memory stays bounded whatever the file's size.
//!
//! Requests go persistent, with publisher confirms, to the batch queue (or with
//! `--interactive` the interactive one). A lost broker connection does not stop the
//! job: the calls waiting on it fail at once, the job connects again (the next node of
//! an `AMQP_URL` list that answers, or the same URL, pausing 0.1 s doubling to 2 s
//! between tries) and sends those requests again, for at most `--retry-for` seconds
//! without a connection (300 by default; `0` stops at once). The worker answers at
//! least once, so a request sent again may be answered twice: each call waits for the
//! reply to its own `correlation_id`, so a second answer reaches no call and is
//! dropped, and every line still gets exactly one output line. A reply that does not
//! come within `--timeout` (300 s by default: long enough for a worker restart, since
//! the request waits in its durable queue meanwhile), or a connection not made again
//! within `--retry-for`, stops the job with exit 2 after the lines before it are
//! written; `--resume` then completes the same output.

mod input;
mod output;
mod progress;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use crate::client::{Client, ClientError, Queue, Reply};
use crate::error::Code;

pub use input::{count_requests, Format, Input, Item, ItemKind};
pub use output::{resume, Output, ResultLine, Written};
pub use progress::Progress;

/// `batch`'s command line: the job's settings, so it derives its clap arguments here
/// and the command line flattens it.
#[derive(Args, Debug)]
pub struct BatchArgs {
    /// The broker.
    #[command(flatten)]
    pub broker: crate::broker::Endpoint,
    /// The requests: NDJSON (one request body per line), or CSV for a name ending in
    /// `.csv` or with --format csv (a header of `token` and `<identifier>.<field>`).
    #[arg(long)]
    pub input: PathBuf,
    /// Where the results go: one NDJSON line per request line, in input order.
    #[arg(long)]
    pub output: PathBuf,
    /// The login token of every request that has none.
    #[arg(long, env = "TUCANO_BATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Complete the output a stopped or killed run left: its lines are not sent again.
    #[arg(long)]
    pub resume: bool,
    /// Request lines read but not yet written (sent and unanswered, or answered and
    /// waiting for an earlier line) at most.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub window: u32,
    /// Send to the interactive queue instead of the batch queue.
    #[arg(long)]
    pub interactive: bool,
    /// The input format (default: by the file name).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Seconds to wait for one reply before stopping the job (exit 2; resume later).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Seconds to keep connecting again after the broker connection is lost, before
    /// stopping the job (exit 2; resume later); 0 stops at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub retry_for: u64,
    /// Seconds between progress lines when standard error is not a terminal.
    #[arg(long, default_value_t = 10, hide = true)]
    pub progress_every: u64,
}

/// The whole job; returns what the output holds at the end (the command line makes
/// the exit code of it).
///
/// Everything that can stop the job before its first request is checked before the
/// output is opened (the input, the broker, the request queue), so a job that cannot
/// start leaves no empty output behind and never suggests `--resume`.
pub async fn run(args: &BatchArgs) -> anyhow::Result<Written> {
    let broker = &args.broker;
    let format = Format::of(&args.input, args.format);
    let total = count_requests(&args.input, format)?;
    let mut input = Input::open(&args.input, format, args.token.clone())?;
    if let Some(warning) = broker.tls().plain_nodes_warning(&broker.amqp_url) {
        eprintln!("warning: {warning}");
    }
    let client = Client::connect_with_tls(&broker.amqp_url, &broker.queue_prefix, &broker.tls())
        .await
        .context("cannot connect to RabbitMQ (AMQP_URL)")?;
    let queue = if args.interactive {
        Queue::Interactive
    } else {
        Queue::Batch
    };
    if let Err(err) = client.check_queue(queue).await {
        client.close().await;
        return Err(match err {
            ClientError::NoQueue(name) => anyhow::anyhow!(
                "the request queue {name} does not exist: check QUEUE_PREFIX (now {:?}; \
                 it must be the worker's) and that a worker has started on this broker; \
                 nothing was sent",
                broker.queue_prefix
            ),
            err => anyhow::Error::new(err).context("cannot check the request queue"),
        });
    }
    let mut written = if args.resume {
        resume(&args.output)?
    } else {
        Written::default()
    };
    let mut output = match Output::open(&args.output, args.resume) {
        Ok(output) => output,
        Err(err) => {
            client.close().await;
            return Err(err);
        }
    };
    let mut progress = Progress::new(
        total,
        &written,
        Duration::from_secs(args.progress_every.max(1)),
    );
    let job = Job {
        client: &client,
        queue,
        window: args.window as usize,
        timeout: Duration::from_secs(args.timeout),
        retry_for: Duration::from_secs(args.retry_for),
    };
    let outcome = job
        .pump(&mut input, &mut output, &mut written, &mut progress)
        .await;
    let late_replies = client.late_replies();
    client.close().await;
    match outcome {
        Ok(()) => {
            progress.finish(&written, "done", late_replies);
            Ok(written)
        }
        Err(err) => {
            progress.finish(&written, "stopped", late_replies);
            let hint = if written.total() == 0 && !args.resume {
                "nothing was written; fix the cause and run the same command again \
                 (or with --resume)"
            } else {
                "run the same command with --resume to complete it"
            };
            Err(err.context(format!("the job stopped; {hint}")))
        }
    }
}

/// How a request line ended, before it is written.
enum Answer {
    Reply(Reply),
    /// A code given here, with its message (`INVALID_REQUEST` for an unreadable line).
    Local(Code, String),
}

struct Job<'a> {
    client: &'a Client,
    queue: Queue,
    window: usize,
    timeout: Duration,
    retry_for: Duration,
}

/// A request line sent and not answered when the connection was lost.
struct Unanswered {
    seq: u64,
    line: u64,
    body: Vec<u8>,
}

impl Job<'_> {
    /// Reads, sends and writes until the input ends or a call fails.
    async fn pump(
        &self,
        input: &mut Input,
        output: &mut Output,
        written: &mut Written,
        progress: &mut Progress,
    ) -> anyhow::Result<()> {
        let skip_through = written.last_line;
        let mut calls = FuturesUnordered::new();
        // Answers by sequence number, waiting for every earlier one to be written.
        let mut answered: BTreeMap<u64, (u64, Answer)> = BTreeMap::new();
        // Requests whose connection was lost, to send again once connected, and since
        // when the job has had no working connection.
        let mut unanswered: Vec<Unanswered> = Vec::new();
        let mut lost_since: Option<Instant> = None;
        let (mut next_read, mut next_write, mut exhausted) = (0_u64, 0_u64, false);
        loop {
            // Every call of the lost connection has ended: connect again, send again.
            if !unanswered.is_empty() && calls.is_empty() {
                let since = lost_since.unwrap_or_else(Instant::now);
                self.wait_for_broker(since, progress).await?;
                progress.resent(unanswered.len() as u64);
                unanswered.sort_by_key(|u| u.seq);
                for Unanswered { seq, line, body } in unanswered.drain(..) {
                    calls.push(self.call(seq, line, body));
                }
            }
            while unanswered.is_empty() && !exhausted && calls.len() + answered.len() < self.window
            {
                let Some(item) = input.next_item()? else {
                    exhausted = true;
                    break;
                };
                if item.line <= skip_through {
                    continue;
                }
                let seq = next_read;
                next_read += 1;
                match item.kind {
                    ItemKind::Invalid(why) => {
                        answered.insert(seq, (item.line, Answer::Local(Code::InvalidRequest, why)));
                    }
                    ItemKind::Request(body) => calls.push(self.call(seq, item.line, body)),
                }
            }
            while let Some(entry) = answered.first_entry() {
                if *entry.key() != next_write {
                    break;
                }
                let (line, answer) = entry.remove();
                write(output, written, progress, line, &answer)?;
                next_write += 1;
            }
            let Some((sent, result)) = calls.next().await else {
                if exhausted && answered.is_empty() && unanswered.is_empty() {
                    return Ok(());
                }
                continue;
            };
            let answer = match result {
                Ok(reply) => {
                    if lost_since.take().is_some() {
                        progress.reconnected();
                    }
                    Answer::Reply(reply)
                }
                Err(ClientError::BadReply(why)) => {
                    Answer::Local(Code::InternalError, format!("unreadable reply: {why}"))
                }
                Err(ClientError::Connection(why)) if !self.retry_for.is_zero() => {
                    if lost_since.is_none() {
                        lost_since = Some(Instant::now());
                        progress.connection_lost(&why);
                    }
                    unanswered.push(sent);
                    continue;
                }
                Err(err) => {
                    return Err(anyhow::Error::new(err).context(format!("input line {}", sent.line)))
                }
            };
            answered.insert(sent.seq, (sent.line, answer));
        }
    }

    /// Sends one request line; gives the line back with the outcome, so that it can be
    /// sent again after a lost connection.
    async fn call(
        &self,
        seq: u64,
        line: u64,
        body: Vec<u8>,
    ) -> (Unanswered, Result<Reply, ClientError>) {
        let result = self.client.send(self.queue, &body, self.timeout).await;
        (Unanswered { seq, line, body }, result)
    }

    /// Connects again, pausing 0.1 s doubling to 2 s between tries, until a node
    /// answers or `--retry-for` has passed since the connection was lost.
    async fn wait_for_broker(&self, since: Instant, progress: &mut Progress) -> anyhow::Result<()> {
        let mut pause = Duration::from_millis(100);
        loop {
            let left = self.retry_for.saturating_sub(since.elapsed());
            // An attempt to a node that drops packets would wait for TCP's own
            // time-out; it gets what is left of the bound (at least half a second).
            let attempt = tokio::time::timeout(
                left.max(Duration::from_millis(500)),
                self.client.reconnect(),
            )
            .await;
            let why = match attempt {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(err)) => err.to_string(),
                Err(_) => "no node answered in time".to_owned(),
            };
            let left = self.retry_for.saturating_sub(since.elapsed());
            if left.is_zero() {
                anyhow::bail!(
                    "the broker connection was lost and not made again within --retry-for {} s ({why})",
                    self.retry_for.as_secs()
                );
            }
            progress.reconnecting(since.elapsed());
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

fn write(
    output: &mut Output,
    written: &mut Written,
    progress: &mut Progress,
    line: u64,
    answer: &Answer,
) -> anyhow::Result<()> {
    let result = match answer {
        Answer::Reply(reply) => ResultLine {
            line,
            code: reply.code.as_str(),
            subscription_id: reply.subscription_id.as_deref(),
            jwt: reply.jwt.as_deref(),
            message: &reply.message,
        },
        Answer::Local(code, message) => ResultLine {
            line,
            code: code.as_str(),
            subscription_id: None,
            jwt: None,
            message,
        },
    };
    output.write(&result)?;
    written.count(result.code);
    written.last_line = line;
    progress.line(result.code == Code::Ok.as_str());
    Ok(())
}
