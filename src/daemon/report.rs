//! What `status`, `history` and `retry` ask, and what they are told, whether
//! the answer comes from the running daemon over the control socket or from the
//! queue database directly.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::queue::{HistoryFilter, HistoryRecord, Job, JobId, Queue, QueueError, StateCounts};
use crate::upload::activity::InFlight;

/// A request over the control socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum ControlRequest {
    /// The daemon's state.
    Status,
    /// Recent uploads, newest first.
    History(HistoryQuery),
    /// Requeue one failed job, or all of them.
    Retry {
        /// The job, or `None` for every failed job.
        job: Option<JobId>,
    },
}

/// Which history records to return.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// Only this mapping.
    pub mapping: Option<String>,
    /// Only records whose local or remote path contains this text.
    pub path_contains: Option<String>,
    /// Only uploads finished at or after this time.
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// At most this many records.
    pub limit: usize,
}

impl HistoryQuery {
    /// Runs the query against the queue database.
    pub fn run(&self, queue: &Queue) -> Result<Vec<HistoryRecord>, QueueError> {
        let filter = HistoryFilter {
            mapping: self.mapping.clone(),
            path_contains: self.path_contains.clone(),
            since: self.since,
        };
        queue.history(&filter, self.limit)
    }
}

/// The answer to a control request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum ControlResponse {
    /// The daemon's state.
    Status(Box<StatusReport>),
    /// History records, newest first.
    History {
        /// The records.
        records: Vec<HistoryRecord>,
    },
    /// How many failed jobs were requeued.
    Retried {
        /// The count.
        count: usize,
    },
    /// The request could not be carried out.
    Error {
        /// Why, for the admin.
        message: String,
    },
}

/// Whether the daemon can authenticate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthState {
    /// No upload has failed to sign in.
    Ok,
    /// The refresh token was refused: `onedrive-syncd login` is needed.
    ReauthenticationNeeded,
    /// Uploads cannot get an access token, for this reason.
    Failing(String),
    /// Not known (the daemon is not running).
    Unknown,
}

/// A failed job, as `status` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedJob {
    /// The job, for `retry JOB`.
    pub job_id: JobId,
    /// The local file.
    pub path: PathBuf,
    /// Where it was to go.
    pub remote_path: String,
    /// Why it failed.
    pub reason: String,
    /// When it failed.
    #[serde(with = "time::serde::rfc3339")]
    pub failed_at: OffsetDateTime,
}

impl FailedJob {
    fn from_job(job: &Job) -> FailedJob {
        let reason = match &job.state {
            crate::queue::JobState::Failed { reason } => reason.clone(),
            _ => job.last_error.clone().unwrap_or_default(),
        };
        FailedJob {
            job_id: job.id,
            path: job.local_path.clone(),
            remote_path: job.remote_display(),
            reason,
            failed_at: job.updated_at,
        }
    }
}

/// Everything `status` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Whether the answer comes from a running daemon.
    pub running: bool,
    /// Jobs per state.
    pub counts: StateCounts,
    /// Uploads in flight.
    pub in_flight: Vec<InFlight>,
    /// The most recent error, if any.
    pub last_error: Option<String>,
    /// Whether the daemon can authenticate.
    pub auth: AuthState,
    /// Seconds until Graph's Retry-After lets uploads go on, when throttled.
    pub throttled_for_secs: Option<u64>,
    /// The failed jobs.
    pub failed: Vec<FailedJob>,
    /// The latest verified uploads, newest first.
    pub recent_uploads: Vec<HistoryRecord>,
}

/// How many of the latest uploads `status` shows.
const RECENT_UPLOADS: usize = 5;

impl StatusReport {
    /// What the queue database alone can tell (the daemon fills in the live
    /// parts).
    pub fn from_queue(queue: &Queue) -> Result<StatusReport, QueueError> {
        let failed = queue.failed()?;
        let last_error = latest_error(queue)?;
        Ok(StatusReport {
            running: false,
            counts: queue.counts()?,
            in_flight: Vec::new(),
            last_error,
            auth: AuthState::Unknown,
            throttled_for_secs: None,
            failed: failed.iter().map(FailedJob::from_job).collect(),
            recent_uploads: queue.history(&HistoryFilter::default(), RECENT_UPLOADS)?,
        })
    }

    /// The one-line summary for `systemctl status`.
    pub fn one_line(&self) -> String {
        let c = &self.counts;
        let mut line = format!(
            "{} uploading, {} queued, {} failed, {} done",
            self.in_flight.len(),
            c.queued,
            c.failed,
            c.done
        );
        if let Some(secs) = self.throttled_for_secs {
            line += &format!("; throttled by OneDrive for {secs}s");
        }
        if matches!(
            self.auth,
            AuthState::ReauthenticationNeeded | AuthState::Failing(_)
        ) {
            line += "; sign-in needed: run `onedrive-syncd login`";
        }
        line
    }
}

/// The most recent error recorded on any job still in the queue.
fn latest_error(queue: &Queue) -> Result<Option<String>, QueueError> {
    let mut latest: Option<(OffsetDateTime, String)> = None;
    for kind in [
        crate::queue::StateKind::Queued,
        crate::queue::StateKind::Failed,
    ] {
        for job in queue.list(kind)? {
            if let Some(error) = &job.last_error {
                if latest.as_ref().is_none_or(|(at, _)| job.updated_at > *at) {
                    latest = Some((job.updated_at, error.clone()));
                }
            }
        }
    }
    Ok(latest.map(|(_, error)| error))
}
