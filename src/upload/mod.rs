//! The uploader pool: N workers that take jobs from the queue in arrival order
//! and upload them.
//!
//! - Concurrency: `uploader.workers` tasks, each holding at most one job; so at
//!   most that many uploads are in flight.
//! - Pacing: every Graph request goes through one [`pacer::Pacer`] (a
//!   `governor` limiter for the whole process, plus the Retry-After gate that a
//!   429 or 503 closes for every worker).
//! - Connections: each worker has its own runner and so its own HTTP
//!   connections. Over a shared pool, a connection that just carried a 429 can
//!   go straight back out with another worker's request, admitted before the
//!   429 was read, and reach Graph inside the window the 429 announced. A
//!   worker's own connections carry its requests one after another, each sent
//!   only after the pacer has seen the answer to the previous one.
//! - Retries: each request is repeated a few times by [`crate::graph::retry`];
//!   after that a transient failure puts the job back in the queue with a
//!   growing, capped delay. Only permanent errors fail a job.
//! - Shutdown: workers stop claiming jobs at once. An upload session in flight
//!   stops at its next fragment boundary and stays `Uploading` with its session
//!   recorded, so the next start resumes it from the server's offset; a simple
//!   upload finishes. Whatever still runs after [`SHUTDOWN_GRACE`] (a fragment
//!   crawling over a slow link) is cut mid-request, which the server discards
//!   and the resume sends again.

pub mod activity;
pub mod after;
pub mod paced;
pub mod pacer;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::graph::GraphApi;
use crate::queue::Queue;
pub use worker::{JobOutcome, JobRunner};

/// How long a job in flight may go on after shutdown was asked for.
///
/// Under systemd's default 90-second stop timeout this leaves time to flush the
/// queue.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Longest a worker sleeps before looking at the queue again without being
/// woken.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// The running workers.
pub struct UploaderPool {
    workers: JoinSet<()>,
}

impl UploaderPool {
    /// Starts one worker per runner; the runners share the queue, pacer and
    /// activity but not their Graph clients (see the module docs). `wake` is
    /// notified whenever a job is queued.
    pub fn start<G: GraphApi + 'static>(
        runners: Vec<Arc<JobRunner<G>>>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> UploaderPool {
        let mut workers = JoinSet::new();
        for runner in runners {
            workers.spawn(work(runner, wake.clone(), shutdown.clone()));
        }
        UploaderPool { workers }
    }

    /// Waits for every worker to stop (after `shutdown` was cancelled).
    pub async fn stopped(mut self) {
        while let Some(result) = self.workers.join_next().await {
            if let Err(err) = result {
                tracing::error!(error = %err, "upload worker failed");
            }
        }
    }
}

async fn work<G: GraphApi + 'static>(
    runner: Arc<JobRunner<G>>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let claimed = runner.queue.claim_next(OffsetDateTime::now_utc()).await;
        let job = match claimed {
            Ok(Some(job)) => job,
            Ok(None) => {
                idle(&runner.queue, &wake, &shutdown).await;
                continue;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot read the queue");
                idle(&runner.queue, &wake, &shutdown).await;
                continue;
            }
        };
        let id = job.id;
        let run = runner.run(job);
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => {}
            _ = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                runner.activity.finish(id);
                tracing::info!(job_id = %id, "upload interrupted by shutdown; it resumes at start");
            }
        }
    }
}

/// Sleeps until a job is queued, the next delayed job is due, or shutdown.
async fn idle(queue: &Queue, wake: &Notify, shutdown: &CancellationToken) {
    let now = OffsetDateTime::now_utc();
    let until_due = match queue.next_ready_at() {
        Ok(Some(at)) if at > now => (at - now).try_into().unwrap_or(IDLE_POLL),
        Ok(Some(_)) => Duration::ZERO,
        _ => IDLE_POLL,
    };
    tokio::select! {
        _ = wake.notified() => {}
        _ = tokio::time::sleep(until_due.min(IDLE_POLL)) => {}
        _ = shutdown.cancelled() => {}
    }
}
