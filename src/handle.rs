//! What happens to one message: the pipeline from a request's body and properties to
//! its reply, in the order of checks of docs/protocol.md §3. No broker types here: the
//! broker layer hands in an [`Incoming`] and publishes the [`Outcome`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::error::{Code, Error};
use crate::observe::health::DbHealth;
use crate::observe::traces;
use crate::reply_to::ReplyPolicy;
use crate::request::{self, Request};
use crate::schema::Schemas;
use crate::store::Store;
use crate::token::Signer;

/// Routing key of replies published to the results exchange for `OK`.
pub const RESULTS_OK: &str = "authenticate.ok";
/// Routing key of replies published to the results exchange for any other code.
pub const RESULTS_ERROR: &str = "authenticate.error";

/// The parts of a request message the pipeline reads.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// `reply_to` property.
    pub reply_to: Option<&'a str>,
    /// `content_type` property.
    pub content_type: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
    /// The properties the broker connection had to repair before they could be read
    /// (comma-separated names, see [`crate::broker::sanitize`]): the message is not
    /// the one its producer sent, so it is refused.
    pub repaired: Option<&'a str>,
}

/// Where a reply goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To this queue (or direct reply-to address) through the default exchange.
    ReplyTo(String),
    /// To the results exchange with this routing key.
    Results(&'static str),
}

/// A reply ready to publish.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Where it goes.
    pub route: Route,
    /// Its status code.
    pub code: Code,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// What the consume loop serves: the authenticate [`Handler`], or in benchmarks and
/// tests another service on the same broker path.
pub trait Service: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, incoming: Incoming<'_>) -> impl Future<Output = Outcome> + Send;

    /// Whether replies may be sent to `reply_to` (used when `handle` panicked).
    fn allows(&self, reply_to: &str) -> bool;

    /// Resolves once the service can take a new request (the database is reachable).
    fn ready(&self) -> impl Future<Output = ()> + Send;

    /// Whether the service can take a new request right now.
    fn is_ready(&self) -> bool;
}

impl Service for Handler {
    fn handle(&self, incoming: Incoming<'_>) -> impl Future<Output = Outcome> + Send {
        Handler::handle(self, incoming)
    }

    fn allows(&self, reply_to: &str) -> bool {
        Handler::allows(self, reply_to)
    }

    fn ready(&self) -> impl Future<Output = ()> + Send {
        self.inner.health.wait_up()
    }

    fn is_ready(&self) -> bool {
        !self.inner.health.is_down()
    }
}

/// The reply envelope of the seed.
#[derive(Debug, Serialize)]
struct Reply<'a> {
    data: Option<Data<'a>>,
    status: Status<'a>,
}

#[derive(Debug, Serialize)]
struct Data<'a> {
    subscription_id: &'a str,
    jwt: &'a str,
}

#[derive(Debug, Serialize)]
struct Status<'a> {
    code: &'static str,
    description: &'static str,
    message: &'a str,
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The subscription id, 32 upper-case hex digits.
    pub subscription_id: String,
    /// The signed JWT.
    pub jwt: String,
}

/// The request pipeline, shared by every consumer task.
#[derive(Clone)]
pub struct Handler {
    inner: Arc<Inner>,
}

struct Inner {
    schemas: Schemas,
    store: Store,
    signer: Signer,
    reply_policy: ReplyPolicy,
    retry_budget: Duration,
    health: DbHealth,
}

impl Handler {
    /// A handler over these parts.
    pub fn new(
        schemas: Schemas,
        store: Store,
        signer: Signer,
        reply_policy: ReplyPolicy,
        retry_budget: Duration,
    ) -> Handler {
        let health = DbHealth::new(store.pool().clone());
        Handler {
            inner: Arc::new(Inner {
                health,
                schemas,
                store,
                signer,
                reply_policy,
                retry_budget,
            }),
        }
    }

    /// Handles one request: step 1 (where the reply goes) and the properties here,
    /// the rest of step 2 and steps 3 to 7 in [`Handler::authenticate`].
    pub async fn handle(&self, incoming: Incoming<'_>) -> Outcome {
        let repaired = incoming.repaired.filter(|list| !list.is_empty());
        let route = match incoming.reply_to {
            None | Some("") => None,
            // A repaired reply_to is not the address its producer wrote.
            Some(name)
                if self.allows(name) && !repaired.is_some_and(|r| r.contains("reply_to")) =>
            {
                Some(Route::ReplyTo(name.to_owned()))
            }
            Some(name) => {
                return Outcome::from_result(None, Err(Error::ReplyToNotAllowed(name.to_owned())));
            }
        };
        if let Some(list) = repaired {
            return Outcome::from_result(route, Err(repaired_properties(list)));
        }
        let result = self
            .authenticate(incoming.content_type, incoming.body)
            .await;
        Outcome::from_result(route, result)
    }

    /// Whether replies may be sent to `reply_to`.
    pub fn allows(&self, reply_to: &str) -> bool {
        self.inner.reply_policy.allows(reply_to)
    }

    /// Steps 2 to 7: decode, check the login token, resolve, sign. Retries an
    /// unreachable database with backoff until the retry budget runs out.
    pub async fn authenticate(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Authenticated, Error> {
        let request = request::decode(content_type, body, &self.inner.schemas)?;
        let deadline = Instant::now() + self.inner.retry_budget;
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.resolve(&request).await {
                Err(Error::Unavailable(err)) => {
                    self.inner.health.report_down();
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Unavailable(err));
                    }
                    let pause = backoff.min(left);
                    tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "database unreachable, retrying a held request");
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    async fn resolve(&self, request: &Request) -> Result<Authenticated, Error> {
        let now = chrono::Utc::now();
        // One read for steps 5 and 6, batched with the other requests in flight; the
        // login token's verdict still comes before anything the resolution found.
        let subscription = self
            .inner
            .store
            .authenticate(&request.token, &request.identifier, now)
            .await?;
        let jwt = traces::child("sign JWT")
            .in_scope(|| {
                self.inner
                    .signer
                    .sign(&subscription.number, now.timestamp())
            })
            .map_err(|err| Error::Internal(anyhow::Error::new(err).context("signing the JWT")))?;
        Ok(Authenticated {
            subscription_id: subscription.id.simple().to_string().to_uppercase(),
            jwt,
        })
    }
}

/// Step 2 for a message whose properties could not be read as sent: names them (only
/// the property names the sanitizer writes, nothing of the producer's).
fn repaired_properties(list: &str) -> Error {
    if list == "body" {
        return Error::InvalidRequest(format!(
            "the body is over the limit of {} bytes",
            request::MAX_BODY
        ));
    }
    let names: Vec<&str> = list
        .split(',')
        .filter(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .collect();
    Error::InvalidRequest(format!(
        "the message's AMQP properties are malformed (a string that is not UTF-8, or \
         headers nested too deep or not parseable): {}",
        if names.is_empty() {
            "properties".to_owned()
        } else {
            names.join(", ")
        }
    ))
}

impl Outcome {
    /// The reply for `result`, routed to `route` or, with none, to the results exchange.
    pub fn from_result(route: Option<Route>, result: Result<Authenticated, Error>) -> Outcome {
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(err) => err.code(),
        };
        let route = route.unwrap_or(Route::Results(if code == Code::Ok {
            RESULTS_OK
        } else {
            RESULTS_ERROR
        }));
        let body = match &result {
            Ok(auth) => render(&Reply {
                data: Some(Data {
                    subscription_id: &auth.subscription_id,
                    jwt: &auth.jwt,
                }),
                status: Status {
                    code: code.as_str(),
                    description: "",
                    message: "",
                },
            }),
            Err(err) => {
                match err {
                    Error::Internal(detail) => {
                        tracing::error!(error = format!("{detail:#}"), "internal error")
                    }
                    Error::Unavailable(detail) => {
                        tracing::error!(error = %detail, "retry budget exhausted")
                    }
                    _ => {}
                }
                render(&Reply {
                    data: None,
                    status: Status {
                        code: code.as_str(),
                        description: code.description(),
                        message: &err.message(),
                    },
                })
            }
        };
        Outcome { route, code, body }
    }
}

fn render(reply: &Reply<'_>) -> Vec<u8> {
    // Serialising a struct of strings into a Vec cannot fail.
    serde_json::to_vec(reply).unwrap_or_else(|_| {
        br#"{"data":null,"status":{"code":"INTERNAL_ERROR","description":"An internal error occurred.","message":""}}"#.to_vec()
    })
}
