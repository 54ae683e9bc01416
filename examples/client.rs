//! Calling tucano-auth from Rust with [`tucano_auth::client::Client`]: one connection,
//! many concurrent calls.
//!
//! ```text
//! cargo run -- serve --demo            # in another terminal
//! cargo run --example client
//! ```
//!
//! `AMQP_URL` (one URL or a comma-separated list of cluster nodes) and `QUEUE_PREFIX`
//! are read as the worker reads them.

use std::sync::Arc;
use std::time::Duration;

use tucano_auth::client::{Client, ClientError};
use tucano_auth::error::Code;

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let prefix = std::env::var("QUEUE_PREFIX").unwrap_or_else(|_| "tucano".to_owned());
    let client = Arc::new(Client::connect(&url, &prefix).await?);

    // One call: the demo subscription by number, with the demo login token.
    let request = serde_json::json!({
        "token": "35108255345D4F98ABFD7810A08E432F",
        "subscription_identifier": {"number": "S0000000329"}
    });
    let reply = client
        .authenticate(request.to_string(), Duration::from_secs(10))
        .await?;
    match reply.code {
        Code::Ok => println!(
            "OK: subscription {} gets a JWT of {} bytes",
            reply.subscription_id.as_deref().unwrap_or_default(),
            reply.jwt.as_deref().map_or(0, str::len)
        ),
        code => println!("{code}: {}", reply.message),
    }

    // Many calls at once over the same connection: each gets its own reply.
    let calls: Vec<_> = ["S0000000329", "S-UNKNOWN", "S0000000329"]
        .into_iter()
        .map(|number| {
            let client = client.clone();
            tokio::spawn(async move {
                let request = serde_json::json!({
                    "token": "35108255345D4F98ABFD7810A08E432F",
                    "subscription_identifier": {"number": number}
                });
                let outcome = client
                    .authenticate(request.to_string(), Duration::from_secs(10))
                    .await;
                (number, outcome)
            })
        })
        .collect();
    for call in calls {
        match call.await {
            Ok((number, Ok(reply))) => println!("{number}: {} {}", reply.code, reply.message),
            Ok((number, Err(err))) => println!("{number}: no reply: {err}"),
            Err(err) => println!("task failed: {err}"),
        }
    }
    if let Ok(client) = Arc::try_unwrap(client) {
        client.close().await;
    }
    Ok(())
}
