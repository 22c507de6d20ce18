//! Pacing of Graph requests for the whole process: a rate limit and a shared
//! Retry-After gate.
//!
//! Throttling applies to the OneDrive account, not to one worker, so when Graph
//! answers 429 or 503 with `Retry-After`, every worker holds back until that
//! moment passes; a worker that ignored it would only prolong the penalty. On
//! top of that, one `governor` limiter bounds the request rate of the whole
//! daemon. Every Graph request passes [`Pacer::admit`] first.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Longest extra wait, chosen at random, of a request held by the gate when it
/// reopens.
const REOPEN_SPREAD: Duration = Duration::from_millis(500);

/// Admits Graph requests at a bounded rate, and not at all while a Retry-After
/// is in force.
#[derive(Debug)]
pub struct Pacer {
    /// The process-wide request-rate limit.
    limiter: DefaultDirectRateLimiter,
    /// Until when Graph asked us to send nothing; `None` when the gate is open.
    closed_until: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer that admits at most `requests_per_second` requests a second.
    pub fn new(requests_per_second: NonZeroU32) -> Pacer {
        Pacer {
            limiter: RateLimiter::direct(Quota::per_second(requests_per_second)),
            closed_until: Mutex::new(None),
        }
    }

    /// Waits until a request may be sent.
    ///
    /// A caller held by the gate waits a little longer, by a random amount,
    /// when it reopens, so that the workers it held do not all hit Graph in the
    /// same instant and draw the next 429 at once.
    pub async fn admit(&self) {
        let mut held = false;
        while let Some(until) = self.closed_until() {
            held = true;
            tokio::time::sleep_until(until).await;
        }
        if held {
            let spread = rand::random_range(Duration::ZERO..=REOPEN_SPREAD);
            tokio::time::sleep(spread).await;
        }
        self.limiter.until_ready().await;
        // The gate may have closed while this request waited for the limiter.
        while let Some(until) = self.closed_until().filter(|until| *until > Instant::now()) {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Closes the gate for `retry_after`, for every worker. A later deadline
    /// wins over an earlier one, never the other way round. Returns whether
    /// this closed an open gate.
    pub fn hold_off(&self, retry_after: Duration) -> bool {
        let until = Instant::now() + retry_after;
        let mut closed = self.closed_until.lock().unwrap_or_else(|e| e.into_inner());
        let was_open = closed.is_none_or(|current| current <= Instant::now());
        if closed.is_none_or(|current| current < until) {
            *closed = Some(until);
        }
        was_open
    }

    /// Until when the gate is closed, if it is.
    pub fn closed_until(&self) -> Option<Instant> {
        let closed = self.closed_until.lock().unwrap_or_else(|e| e.into_inner());
        closed.filter(|until| *until > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer() -> Pacer {
        Pacer::new(NonZeroU32::new(1000).expect("non-zero"))
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_gate_admits_at_once() {
        let pacer = pacer();
        let start = Instant::now();
        pacer.admit().await;
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_every_caller_until_it_passes() {
        let pacer = std::sync::Arc::new(pacer());
        let start = Instant::now();
        assert!(pacer.hold_off(Duration::from_secs(30)));
        let waiters = (0..3)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.admit().await;
                    Instant::now()
                })
            })
            .collect::<Vec<_>>();
        for waiter in waiters {
            let admitted_at = waiter.await.expect("task");
            assert!(admitted_at >= start + Duration::from_secs(30));
            assert!(admitted_at <= start + Duration::from_secs(30) + REOPEN_SPREAD);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_retry_after_does_not_shorten_a_longer_one() {
        let pacer = pacer();
        let start = Instant::now();
        assert!(pacer.hold_off(Duration::from_secs(60)));
        assert!(!pacer.hold_off(Duration::from_secs(5)));
        assert_eq!(pacer.closed_until(), Some(start + Duration::from_secs(60)));
        pacer.admit().await;
        assert!(Instant::now() >= start + Duration::from_secs(60));
    }
}
