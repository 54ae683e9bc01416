//! Integration tests against the real RabbitMQ and PostgreSQL. Each test runs its own
//! worker on its own database and queue prefix, so tests run in parallel.

mod asyncapi;
mod backlog;
mod batch;
mod batch_reconnect;
mod broker_view;
mod call;
mod cli;
mod client;
mod codes;
mod examples;
mod faults;
mod fixtures;
mod helpers;
mod hostile;
mod import;
mod jwt;
mod keys;
mod kubernetes;
mod lockout;
mod nodes;
mod observe;
mod paths;
mod pinning;
mod privilege;
mod probe;
mod recovery;
mod request_duration;
mod rotation;
mod routing;
mod shutdown;
mod standby;
mod tls;
mod traces;
