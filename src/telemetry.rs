//! Logging: one place that sets up the `tracing` subscriber.
//!
//! Lines go to journald, with structured fields, when the process runs under
//! systemd with its stderr connected to the journal (`JOURNAL_STREAM`) or when
//! the configuration asks for it; otherwise to stderr as human-readable lines.
//! The filter comes from `RUST_LOG` when set, else from the configured level.
//! Secrets never reach a log line: they are wrapped in
//! [`crate::secrets::Secret`], whose `Debug` prints a redaction.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::JournaldMode;

/// Environment variable that overrides the configured log filter.
pub const FILTER_ENV: &str = "RUST_LOG";

/// Where log lines end up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The systemd journal, with structured fields.
    Journald,
    /// Human-readable lines on stderr.
    Stderr,
}

/// Decides the destination from the configured mode and whether stderr is the
/// journal.
pub fn choose_destination(mode: JournaldMode, stderr_is_journal: bool) -> Destination {
    match mode {
        JournaldMode::Always => Destination::Journald,
        JournaldMode::Never => Destination::Stderr,
        JournaldMode::Auto if stderr_is_journal => Destination::Journald,
        JournaldMode::Auto => Destination::Stderr,
    }
}

/// Installs the global subscriber. Call once, early; later calls do nothing.
///
/// Falls back to stderr when journald was chosen but its socket cannot be
/// reached, so that a misconfigured host still shows its logs somewhere.
pub fn init(level: &str, mode: JournaldMode) {
    let filter = EnvFilter::try_from_env(FILTER_ENV)
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr_is_journal = std::env::var_os("JOURNAL_STREAM").is_some();

    let journald = match choose_destination(mode, stderr_is_journal) {
        Destination::Journald => tracing_journald::layer().ok(),
        Destination::Stderr => None,
    };
    let stderr = match journald {
        Some(_) => None,
        // Under systemd the journal stamps each line itself, so time and colour
        // would be noise.
        None => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(
                    !stderr_is_journal && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                )
                .with_target(false),
        ),
    };
    let stderr = stderr.map(|layer| {
        if stderr_is_journal {
            layer.without_time().boxed()
        } else {
            layer.boxed()
        }
    });

    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_journal_stream() {
        assert_eq!(
            choose_destination(JournaldMode::Auto, true),
            Destination::Journald
        );
        assert_eq!(
            choose_destination(JournaldMode::Auto, false),
            Destination::Stderr
        );
    }

    #[test]
    fn explicit_modes_win() {
        assert_eq!(
            choose_destination(JournaldMode::Always, false),
            Destination::Journald
        );
        assert_eq!(
            choose_destination(JournaldMode::Never, true),
            Destination::Stderr
        );
    }
}
