//! `call`: one request-reply round trip for people and scripts, built on
//! [`crate::client::Client`].
//!
//! The request is either a JSON body given as it is, or built from identifier flags
//! ([`RequestFlags`]); clap enforces the combinations (exactly one identifier, a pass
//! code with `identifier`, the subscription type only with an access token), so a
//! mistyped command line fails before anything is sent.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{ArgGroup, Args};
use serde_json::{json, Map, Value};

use super::Outcome;
use crate::broker::Endpoint;
use crate::client::{Client, ClientError, Queue};

/// `call`: one request-reply round trip.
#[derive(Args)]
pub struct Call {
    /// The broker.
    #[command(flatten)]
    pub broker: Endpoint,
    /// The request body, a JSON object (or build it with --token and an identifier flag).
    #[arg(required_unless_present = "token")]
    pub json: Option<String>,
    /// The request as flags instead of JSON.
    #[command(flatten)]
    pub request: Box<RequestFlags>,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Send to the batch queue instead of the interactive one.
    #[arg(long)]
    pub batch: bool,
}

/// The identifier flags of `call`: the request built without writing JSON.
#[derive(Args, Debug, Default)]
#[command(group(ArgGroup::new("identifier").multiple(false).requires("token")))]
#[command(group(ArgGroup::new("credential").multiple(false)))]
#[command(group(ArgGroup::new("access_token").multiple(false)))]
#[command(group(ArgGroup::new("pass").multiple(false).requires("credential")))]
pub struct RequestFlags {
    /// The login token (instead of a JSON body; then exactly one identifier flag).
    #[arg(long, requires = "identifier", conflicts_with = "json")]
    pub token: Option<String>,
    /// subscription_identifier.number
    #[arg(long, group = "identifier")]
    pub subscription_number: Option<String>,
    /// subscription_identifier.id (32 hex digits or a UUID)
    #[arg(long, group = "identifier")]
    pub subscription_id: Option<String>,
    /// installed_item_identifier.serial_number
    #[arg(long, group = "identifier")]
    pub serial_number: Option<String>,
    /// installed_item_identifier.alternative_code
    #[arg(long, group = "identifier")]
    pub item_alternative_code: Option<String>,
    /// installed_item_identifier.id
    #[arg(long, group = "identifier")]
    pub item_id: Option<String>,
    /// access_token_identifier.authentication_code
    #[arg(long, groups = ["identifier", "access_token"])]
    pub access_token_code: Option<String>,
    /// customer_identification_medium_identifier.authentication_code
    #[arg(long, group = "identifier")]
    pub medium_code: Option<String>,
    /// access_token_identifier.identifier (with --pass-code or --pass-code-stdin)
    #[arg(long, groups = ["identifier", "credential", "access_token"], requires = "pass")]
    pub access_token_identifier: Option<String>,
    /// customer_identification_medium_identifier.identifier (with --pass-code or
    /// --pass-code-stdin)
    #[arg(long, groups = ["identifier", "credential"], requires = "pass")]
    pub medium_identifier: Option<String>,
    /// The pass code of --access-token-identifier / --medium-identifier. Visible to
    /// other users in `ps`; prefer --pass-code-stdin.
    #[arg(long, group = "pass")]
    pub pass_code: Option<String>,
    /// Read the pass code from the first line of standard input.
    #[arg(long, group = "pass")]
    pub pass_code_stdin: bool,
    /// subscription_type_identifier.name (only with an access token)
    #[arg(long, requires = "access_token")]
    pub subscription_type: Option<String>,
}

impl RequestFlags {
    /// The request body the flags describe; `pass_code` is the pass code already read
    /// (from the flag or standard input).
    pub fn body(&self, pass_code: Option<&str>) -> anyhow::Result<Value> {
        let Some(token) = &self.token else {
            bail!("--token is required with identifier flags");
        };
        let mut request = Map::new();
        request.insert("token".into(), json!(token));
        let credential = |identifier: &str| -> anyhow::Result<Value> {
            match pass_code {
                Some(pass_code) => Ok(json!({"identifier": identifier, "pass_code": pass_code})),
                None => bail!("--pass-code or --pass-code-stdin is required with an identifier"),
            }
        };
        let (field, value) = if let Some(number) = &self.subscription_number {
            ("subscription_identifier", json!({ "number": number }))
        } else if let Some(id) = &self.subscription_id {
            ("subscription_identifier", json!({ "id": id }))
        } else if let Some(serial) = &self.serial_number {
            (
                "installed_item_identifier",
                json!({ "serial_number": serial }),
            )
        } else if let Some(code) = &self.item_alternative_code {
            (
                "installed_item_identifier",
                json!({ "alternative_code": code }),
            )
        } else if let Some(id) = &self.item_id {
            ("installed_item_identifier", json!({ "id": id }))
        } else if let Some(code) = &self.access_token_code {
            (
                "access_token_identifier",
                json!({ "authentication_code": code }),
            )
        } else if let Some(code) = &self.medium_code {
            (
                "customer_identification_medium_identifier",
                json!({ "authentication_code": code }),
            )
        } else if let Some(identifier) = &self.access_token_identifier {
            ("access_token_identifier", credential(identifier)?)
        } else if let Some(identifier) = &self.medium_identifier {
            (
                "customer_identification_medium_identifier",
                credential(identifier)?,
            )
        } else {
            bail!("give exactly one identifier flag with --token");
        };
        request.insert(field.into(), value);
        if let Some(name) = &self.subscription_type {
            request.insert(
                "subscription_type_identifier".into(),
                json!({ "name": name }),
            );
        }
        Ok(Value::Object(request))
    }

    /// The pass code from `--pass-code`, or the first line of standard input with
    /// `--pass-code-stdin` (its line ending removed).
    fn pass_code(&self) -> anyhow::Result<Option<String>> {
        if !self.pass_code_stdin {
            return Ok(self.pass_code.clone());
        }
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the pass code from standard input")?;
        let pass_code = line.trim_end_matches(['\r', '\n']);
        if pass_code.is_empty() {
            bail!("--pass-code-stdin: standard input holds no pass code");
        }
        Ok(Some(pass_code.to_owned()))
    }
}

/// The request body of a `call` command line: the JSON argument, or the flags'.
pub fn request_body(args: &Call) -> anyhow::Result<String> {
    match &args.json {
        Some(json) => Ok(json.clone()),
        None => {
            let pass_code = args.request.pass_code()?;
            Ok(args.request.body(pass_code.as_deref())?.to_string())
        }
    }
}

/// Runs `call`: prints the reply body on standard output; [`Outcome::Done`] on `OK`,
/// [`Outcome::NotAllOk`] on any other status, an error when no reply came (timeout,
/// broker unreachable, no such queue) or the command line could not become a request.
pub async fn run(args: &Call) -> anyhow::Result<Outcome> {
    let broker = &args.broker;
    let body = request_body(args)?;
    let timeout = Duration::from_secs(args.timeout);
    let queue = if args.batch {
        Queue::Batch
    } else {
        Queue::Interactive
    };
    if let Some(warning) = broker.tls().plain_nodes_warning(&broker.amqp_url) {
        eprintln!("warning: {warning}");
    }
    let client =
        match Client::connect_with_tls(&broker.amqp_url, &broker.queue_prefix, &broker.tls()).await
        {
            Ok(client) => client,
            Err(err) => bail!("cannot connect to RabbitMQ (AMQP_URL): {err}"),
        };
    let outcome = client.send(queue, body.as_bytes(), timeout).await;
    client.close().await;
    match outcome {
        Ok(reply) => {
            println!("{}", reply.body);
            Ok(if reply.is_ok() {
                Outcome::Done
            } else {
                Outcome::NotAllOk
            })
        }
        Err(ClientError::Timeout(_)) => Err(anyhow!("no reply within {} s", args.timeout)),
        // Its own words only: the chain is in the message already.
        Err(err) => Err(anyhow!("{err}")),
    }
}
