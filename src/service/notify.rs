//! systemd's notify protocol: READY, STATUS, WATCHDOG, RELOADING and STOPPING.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is unset (run by hand, or
//! `Type=simple`), and a failure to reach the socket is logged at DEBUG and
//! otherwise ignored: the daemon's work must never depend on systemd hearing
//! about it.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the daemon has finished starting.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Sets the one-line status that `systemctl status` shows.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Tells systemd the daemon is reloading its configuration.
///
/// systemd 253 and later require the monotonic time with RELOADING=1.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Tells systemd the daemon is shutting down.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Pings the watchdog.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog: half the interval systemd asked for, if it
/// asked.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::debug!(error = %err, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    /// The notify functions read `NOTIFY_SOCKET` from the process environment,
    /// so every case runs in this one test to keep them from racing each other.
    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        std::env::set_var("NOTIFY_SOCKET", &path);

        let mut buffer = [0u8; 512];
        let mut receive = || {
            let len = socket.recv(&mut buffer).expect("a datagram");
            String::from_utf8_lossy(&buffer[..len]).into_owned()
        };
        ready("watching 2 folders");
        assert_eq!(receive(), "READY=1\nSTATUS=watching 2 folders\n");
        status("uploading 1 file");
        assert_eq!(receive(), "STATUS=uploading 1 file\n");
        watchdog();
        assert_eq!(receive(), "WATCHDOG=1\n");
        stopping("finishing 1 upload");
        assert_eq!(receive(), "STOPPING=1\nSTATUS=finishing 1 upload\n");
        reloading();
        assert!(receive().starts_with("RELOADING=1\nMONOTONIC_USEC="));

        std::env::remove_var("NOTIFY_SOCKET");
    }
}
