#![doc = include_str!("../README.md")]

pub mod broker;
pub mod call;
pub mod config;
pub mod error;
pub mod handle;
pub mod health;
pub mod probe;
pub mod reply_to;
pub mod request;
pub mod schema;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod worker;
