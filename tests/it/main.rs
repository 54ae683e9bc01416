//! Integration tests against the real RabbitMQ and PostgreSQL. Each test runs its own
//! worker on its own database and queue prefix, so tests run in parallel.

mod asyncapi;
mod broker_view;
mod call;
mod cli;
mod codes;
mod faults;
mod fixtures;
mod helpers;
mod hostile;
mod jwt;
mod paths;
mod probe;
mod recovery;
mod routing;
mod service_times;
mod shutdown;
