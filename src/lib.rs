//! onedrive-syncd: uploads files dropped into outbox folders to a personal
//! Microsoft OneDrive.
//!
//! The crate is split along the parts named in the design brief. Each module
//! owns one concern and states its invariants in its own header:
//!
//! - [`config`]: the TOML schema, environment overrides and validation;
//! - [`telemetry`]: the `tracing` subscriber (stderr or journald);
//! - [`secrets`]: the [`secrets::Secret`] wrapper and token stores;
//! - [`auth`]: OAuth 2.0 login and access-token refresh;
//! - [`graph`]: Microsoft Graph requests, path rules and quickXorHash;
//! - [`cli`]: the command line, exit codes and what each subcommand prints.

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod auth;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod graph;
pub mod queue;
pub mod secrets;
pub mod service;
pub mod telemetry;
pub mod upload;
pub mod watch;
