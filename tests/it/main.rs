//! Integration tests against the real RabbitMQ and PostgreSQL. Each test runs its own
//! worker on its own database and queue prefix, so tests run in parallel.

mod call;
mod codes;
mod faults;
mod fixtures;
mod helpers;
mod import;
mod jwt;
mod paths;
mod recovery;
mod routing;
mod service_times;
mod shutdown;
