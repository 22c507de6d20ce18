//! The daemon's dealings with its host: systemd notifications, signals and the
//! control socket.
//!
//! Nothing here holds business logic. [`notify`] tells systemd what the daemon
//! is doing, [`signals`] turns SIGTERM, SIGINT and SIGHUP into events, and
//! [`control`] serves the Unix socket through which `status`, `history` and
//! `retry` reach a running daemon.

pub mod control;
pub mod notify;
pub mod signals;
