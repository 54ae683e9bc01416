//! The one harness of tucano-auth's integration tests, its chaos tool and its bench:
//! what each of them needs to run the real worker binary and talk to it, written once.
//!
//! # Layout
//! - [`process`]: the worker's environment, starting a process with it, signalling it,
//!   stopping it (SIGTERM, a deadline, then SIGKILL).
//! - [`procfs`]: a process's CPU time and peak memory from `/proc`.
//! - [`queue`]: a queue's depth and consumers by a passive declare, waiting until a
//!   worker consumes, declaring a durable reply queue, and polling with a deadline.
//! - [`request`]: the one raw request-reply client, for what the product's
//!   `tucano_auth::client::Client` must not do (see its docs).
//!
//! This crate does not depend on `tucano-auth`: the product's tests take it as a
//! dev-dependency, and through a normal dependency on the product they would build a
//! second, incompatible copy of it. What needs the product's types (`Names`, the
//! store, the client) stays with the caller, which passes names and consumers in.

pub mod process;
pub mod procfs;
pub mod queue;
pub mod request;
