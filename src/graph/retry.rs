//! The per-request retry policy: how often and how long to wait before
//! repeating one Graph request. Only errors whose [`Disposition`] is `Retry`
//! are repeated; everything else goes back to the caller at once, because its
//! remedy (a new session, a fresh token, an admin) is not "the same request
//! again".
//!
//! The daemon's uploader uses the same policy for a single request and adds the
//! pool-wide Retry-After gate around it; this module has no shared state.

use std::future::Future;
use std::time::Duration;

use super::{Disposition, GraphError};
use crate::config::UploaderConfig;

/// First backoff step when the server gave no `Retry-After`.
const BASE_DELAY: Duration = Duration::from_millis(500);

/// How many times to try one request, and how long to wait in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The first backoff step; each further step doubles it.
    pub base_delay: Duration,
    /// No wait is longer than this; a longer `Retry-After` ends the retries
    /// instead, so that the caller can reschedule rather than hold a worker.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// `uploader.retries` immediate retries, waits capped at
    /// `uploader.max_retry_delay`.
    pub fn from_config(uploader: &UploaderConfig) -> Self {
        Self {
            max_attempts: uploader.retries.saturating_add(1),
            base_delay: BASE_DELAY,
            max_delay: uploader.max_retry_delay,
        }
    }

    /// The wait before attempt `attempt + 1` after a failure without
    /// `Retry-After`: exponential, with the upper half randomised so that
    /// workers do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let ceiling = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        let half = ceiling / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// How long to wait before repeating a request that failed with `err` on
    /// attempt `attempt` (1-based); `None` when it should not be repeated.
    pub fn delay_before_retry(&self, err: &GraphError, attempt: u32) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        match err.disposition() {
            Disposition::Retry { after: Some(after) } if after <= self.max_delay => Some(after),
            Disposition::Retry { after: Some(_) } => None,
            Disposition::Retry { after: None } => Some(self.backoff(attempt)),
            _ => None,
        }
    }
}

/// Runs `call` until it succeeds, fails in a way retrying cannot fix, or runs
/// out of attempts.
pub async fn retrying<T, F, Fut>(policy: &RetryPolicy, mut call: F) -> Result<T, GraphError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, GraphError>>,
{
    let mut attempt = 1;
    loop {
        let err = match call().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let Some(delay) = policy.delay_before_retry(&err, attempt) else {
            return Err(err);
        };
        tracing::debug!(
            attempt,
            max_attempts = policy.max_attempts,
            retry_after_ms = delay.as_millis() as u64,
            error = %err,
            "retrying graph request"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::graph::{Endpoint, ServiceFailure};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }

    fn refused(status: u16, retry_after: Option<Duration>) -> GraphError {
        GraphError::Refused(Box::new(ServiceFailure {
            operation: "test",
            endpoint: Endpoint::Api,
            status,
            code: None,
            inner_code: None,
            message: None,
            request_id: None,
            retry_after,
        }))
    }

    #[test]
    fn backoff_doubles_within_bounds() {
        let p = policy();
        for attempt in 1..=10 {
            let ceiling = (Duration::from_millis(100) * 2u32.pow(attempt - 1)).min(p.max_delay);
            let delay = p.backoff(attempt);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn only_retryable_errors_are_repeated() {
        let p = policy();
        let after = Some(Duration::from_secs(3));
        assert_eq!(p.delay_before_retry(&refused(429, after), 1), after);
        assert!(p.delay_before_retry(&refused(503, None), 1).is_some());
        assert_eq!(
            p.delay_before_retry(&refused(429, Some(Duration::from_secs(60))), 1),
            None
        );
        assert_eq!(p.delay_before_retry(&refused(400, None), 1), None);
        assert_eq!(p.delay_before_retry(&refused(401, None), 1), None);
        assert_eq!(p.delay_before_retry(&refused(503, None), 4), None);
    }

    /// Real waits, kept to milliseconds.
    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn retrying_stops_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retrying(&quick(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(refused(500, None))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn retrying_returns_the_first_success() {
        let calls = AtomicU32::new(0);
        let result = retrying(&quick(), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(refused(429, Some(Duration::from_millis(5)))),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
    }
}
