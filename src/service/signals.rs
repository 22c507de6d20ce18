//! Unix signals as events: SIGTERM and SIGINT ask for shutdown, SIGHUP for a
//! reload.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a signal asks the daemon to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGTERM or SIGINT: stop taking work, finish or park what is in flight,
    /// exit.
    Shutdown,
    /// SIGHUP: read the configuration again, keeping the old one if the new one
    /// is invalid.
    Reload,
}

/// Listens for the signals the daemon reacts to.
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers. From then on these signals no longer kill the
    /// process.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.terminate.recv() => SignalEvent::Shutdown,
            _ = self.interrupt.recv() => SignalEvent::Shutdown,
            _ = self.hangup.recv() => SignalEvent::Reload,
        }
    }
}
