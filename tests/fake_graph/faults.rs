//! Injected faults and throttling: what goes wrong, and when.
//!
//! Invariants: a queued failure fires at most `count` times and only on its
//! route; the Retry-After window is pool-wide (the service throttles the
//! account, not a connection), so a request on any Graph or upload route that
//! arrives inside an announced window is a client violation, with one
//! exception: a request within [`super::FakeOptions::retry_after_grace`] of
//! the latest announcement, on a connection that has not carried a 429 of this
//! window, may have been in flight before the client heard the 429. A request
//! on a connection that carried one was necessarily sent after it (HTTP/1.1
//! has one request in flight per connection), so it gets no grace.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Route;

/// How a "lost" response is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LostResponse {
    /// The connection is closed without any response (the default).
    #[default]
    DropConnection,
    /// A 504 `gatewayTimeout` is returned instead of the real response.
    GatewayTimeout,
}

/// One queued failure.
#[derive(Debug, Clone)]
struct FailRule {
    route: Route,
    status: u16,
    remaining: usize,
    retry_after_secs: Option<u64>,
}

/// An announced Retry-After window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    /// When the window was announced.
    pub(crate) announced_at: Instant,
    /// When it ends.
    pub(crate) until: Instant,
    /// The announced length, for messages.
    pub(crate) secs: u64,
    /// Connections that carried a 429 of this window.
    pub(crate) connections: Vec<u64>,
}

/// What the throttle gate says about a request arriving now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// No window is open, or the request was in flight when it opened.
    Open,
    /// The client ignored an announced window; answer 429 again.
    Early {
        remaining_secs: u64,
        early_by: Duration,
        announced_secs: u64,
    },
}

/// All fault knobs; lives inside the fake's state mutex.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    fail_next: Vec<FailRule>,
    /// Requests allowed per one-second window, or none for no limit.
    pub(crate) rate_limit_per_sec: Option<u32>,
    rate_window: Option<(Instant, u32)>,
    window: Option<Window>,
    /// Fragment responses still to lose after storing their bytes.
    pub(crate) lose_fragment_responses: usize,
    /// Lose the response of the next final fragment, after committing the file.
    pub(crate) lose_final_response: bool,
    /// Simple-upload responses still to lose after committing their files.
    pub(crate) lose_simple_upload_responses: usize,
    /// Hold the response of the next final fragment this long after committing
    /// the file, so a test can kill the client between the two.
    pub(crate) hold_final_response: Option<Duration>,
    /// Close the next upload request after reading this many body bytes.
    pub(crate) cut_after_bytes: Option<u64>,
    /// Flip a byte of the next non-empty file committed.
    pub(crate) corrupt_next_file: bool,
    /// Added before each request is handled.
    pub(crate) latency: Duration,
    /// Per-request cap on body throughput.
    pub(crate) bandwidth_bytes_per_sec: Option<u64>,
    /// How lost responses are lost.
    pub(crate) lost_response: LostResponse,
    /// Device-code polls still to answer with `slow_down` although they kept
    /// the interval.
    pub(crate) slow_down_polls: usize,
}

impl Faults {
    /// Queues `count` failures with `status` on `route`.
    pub(crate) fn push_failure(
        &mut self,
        route: Route,
        status: u16,
        count: usize,
        retry: Option<u64>,
    ) {
        if count > 0 {
            self.fail_next.push(FailRule {
                route,
                status,
                remaining: count,
                retry_after_secs: retry,
            });
        }
    }

    /// Takes the next queued failure that applies to `route`, if any.
    pub(crate) fn take_failure(&mut self, route: Route) -> Option<(u16, Option<u64>)> {
        let index = self
            .fail_next
            .iter()
            .position(|rule| rule.route == route || rule.route == Route::Any)?;
        let rule = &mut self.fail_next[index];
        rule.remaining -= 1;
        let taken = (rule.status, rule.retry_after_secs);
        if rule.remaining == 0 {
            self.fail_next.remove(index);
        }
        Some(taken)
    }

    /// Counts a request against the rate limit; `Some(secs)` when it is over
    /// the limit.
    pub(crate) fn over_rate_limit(&mut self, now: Instant) -> Option<u64> {
        let limit = self.rate_limit_per_sec?;
        let (start, count) = match self.rate_window {
            Some((start, count)) if now.duration_since(start) < Duration::from_secs(1) => {
                (start, count + 1)
            }
            _ => (now, 1),
        };
        self.rate_window = Some((start, count));
        (count > limit).then_some(1)
    }

    /// Opens (or widens) the pool-wide Retry-After window.
    pub(crate) fn announce_retry_after(&mut self, now: Instant, secs: u64, connection: u64) {
        let until = now + Duration::from_secs(secs);
        let mut window = match self.window.take() {
            Some(open) if open.until > now => open,
            _ => Window {
                announced_at: now,
                until,
                secs,
                connections: Vec::new(),
            },
        };
        window.announced_at = now;
        window.until = window.until.max(until);
        window.secs = secs;
        if !window.connections.contains(&connection) {
            window.connections.push(connection);
        }
        self.window = Some(window);
    }

    /// Checks a request arriving `now` on `connection` against the window.
    // LIMITATION: a new request on another connection within the grace passes
    // as one in flight — the fake cannot see when the client sent it.
    pub(crate) fn gate(&self, now: Instant, grace: Duration, connection: u64) -> Gate {
        let Some(window) = &self.window else {
            return Gate::Open;
        };
        let in_flight =
            now <= window.announced_at + grace && !window.connections.contains(&connection);
        if now >= window.until || in_flight {
            return Gate::Open;
        }
        let left = window.until - now;
        Gate::Early {
            remaining_secs: left.as_secs() + u64::from(left.subsec_nanos() > 0),
            early_by: left,
            announced_secs: window.secs,
        }
    }
}
