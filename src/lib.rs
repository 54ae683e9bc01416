//! # Layout
//!
//! The crate is rooms by who they serve. A room uses only rooms below it in this
//! list; `tests/layout.rs` draws the imports and fails on a circle, or on anything
//! below [`cli`] importing it.
//!
//! - [`cli`]: the command line. One file per subcommand (its clap arguments and its
//!   run), and the one place that turns how a subcommand ended into the exit code
//!   ([`cli::exit_code`]). `main.rs` only parses and calls [`cli::run`].
//! - [`serve`]: what `serve` is: the assembly ([`serve::run`]), its settings grouped
//!   by subsystem ([`serve::Settings`]), the runtime, the SIGHUP reload.
//! - [`data`]: the operator's data commands' work: `import` (CSV into tables), API
//!   users, login sessions.
//! - [`client`]: the request-reply client that `call` uses, and [`client::batch`], the
//!   batch job built on it (a client of the worker, not a part of it, so it lives
//!   with the client rather than as a room of its own).
//! - [`broker`]: RabbitMQ: connecting and recovering, the topology, the consume loop,
//!   replies, the frame sanitizer; where the broker is ([`broker::Endpoint`]) and
//!   what the consume loop needs ([`broker::Settings`]).
//! - [`handle`]: the request pipeline, a request in and a reply out, with no RabbitMQ
//!   type in it; beside it [`reply_to`] (where a reply may go) and [`token`] (the JWT
//!   it signs).
//! - [`store`]: PostgreSQL: migrations, the batched lookup, login tokens, resolution,
//!   pass codes and their lockout, the demo data.
//! - [`keys`]: signing keys, the JWK Set, key generation.
//! - [`observe`]: what an operator sees: metrics, readiness and the database's
//!   health, the HTTP server of `/metrics`, `/healthz` and `/readyz`, logs, traces,
//!   the worker's counters ([`observe::Stats`]), and the probe's GET.
//! - [`request`] (wire types and decoding), [`schema`] (the JSON Schemas), [`error`]
//!   (the status codes and their messages).
//! - Helpers any room may use: [`backoff`], [`csv_file`], [`redact`], [`secret`],
//!   [`tls`].
//!
//! Settings: a room's settings are a plain struct in that room ([`broker::Settings`],
//! [`serve::settings`]); the command line builds them from its arguments. A struct
//! that *is* a set of command-line settings shared by several subcommands, or one
//! job's whole settings, may derive its clap arguments where it is defined
//! ([`broker::Endpoint`], [`client::batch::BatchArgs`]), and so may a value type
//! ([`broker::QueueType`], [`observe::logs::LogFormat`]); `cli` flattens them. No
//! room but `cli` defines a subcommand or maps an error to an exit code.
//!
//! ## Where to go to add
//!
//! - **An identifier path** (a new way to name a subscription): its wire form in
//!   [`request`] (`Identifier`) and `schemas/`, its branch of the lookup statement in
//!   `store/lookup/sql.rs` (a `Path` in `store/lookup/types.rs`), which branch it takes
//!   and its checks in `store/resolve.rs`; `docs/protocol.md` and an integration test
//!   in `tests/it/paths.rs`.
//! - **A metric**: its name as a constant and its help (`describe`) in
//!   [`observe::metrics`], registered at 0 in `install` when it must exist before its
//!   first event; recorded where the event happens with the `metrics` macros; the
//!   metrics table of `docs/protocol.md`.
//! - **A subcommand**: a file in `src/cli/` with its `Args` struct and a run returning
//!   `anyhow::Result<cli::Outcome>`, a variant of `cli::Command`, an arm of
//!   `cli::dispatch`; the work itself in the room it serves.
//! - **A status code**: a variant of `error::Code` (its name, its message, its index
//!   in `Code::ALL`) and the `Error` that carries it in [`error`]; the reply schema
//!   and `docs/protocol.md`.
//! - **A variable** (a setting of `serve`): a field of `cli::Serve` with
//!   `#[arg(long, env = "NAME")]`, validated in `Serve::settings` into the group of
//!   [`serve::Settings`] whose room uses it; the configuration table of
//!   `docs/operations.md`. A setting earns its place with a production case.
#![doc = include_str!("../README.md")]

pub mod backoff;
pub mod broker;
pub mod cli;
pub mod client;
pub mod csv_file;
pub mod data;
pub mod error;
pub mod handle;
pub mod keys;
pub mod observe;
pub mod redact;
pub mod reply_to;
pub mod request;
pub mod schema;
pub mod secret;
pub mod serve;
pub mod store;
pub mod tls;
pub mod token;
