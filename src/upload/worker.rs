//! One job, from claim to `Done` or `Failed`: open the file safely, upload it
//! (resuming a recorded session), verify it, record it, then apply the
//! after-upload action.
//!
//! The order is what keeps the promises:
//! - the upload session is recorded (flushed) before its first byte is sent, so
//!   a restart can resume it from the server's offset;
//! - a job that was claimed before (a crash, a lost answer) first looks at the
//!   remote item, and takes a match of size and quickXorHash as done instead of
//!   uploading again;
//! - the job is recorded `Done` (with its history line) before the local file
//!   is deleted or moved, so a crash in between leaves the file in place and
//!   the next scan finishes the job;
//! - the file is opened without following a symlink (unless the mapping allows
//!   it), and the opened file must be the one that settled: same device, inode,
//!   size and mtime.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::activity::Activity;
use super::after;
use crate::config::{Config, ConflictPolicy, Mapping};
use crate::graph::quickxor::{to_base64, QuickXorHash};
use crate::graph::transfer::{self, UploadJournal, UploadOptions, Uploaded};
use crate::graph::{
    Disposition, GraphApi, GraphError, RemotePath, RetryPolicy, UploadSession, UploadUrl,
};
use crate::queue::{
    FileIdentity, HistoryRecord, Job, Queue, QueueError, SessionRecord, UploadUrl as Url,
};

/// First delay before a job put back in the queue is tried again; it doubles
/// with each attempt up to `uploader.max_retry_delay`.
const JOB_BASE_DELAY: Duration = Duration::from_secs(5);

/// How a job ended this time.
#[derive(Debug)]
pub enum JobOutcome {
    /// Uploaded (or found already uploaded), verified and recorded.
    Done,
    /// Put back in the queue after a transient failure.
    Rescheduled,
    /// Failed for good; an admin has to act.
    Failed,
    /// The job no longer applies (the file vanished or was replaced by a newer
    /// version).
    Dropped,
}

/// Why a job's attempt ended without an upload.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the file changed since it was queued; the new version will be uploaded")]
    Changed,
    #[error("the file disappeared before it was uploaded")]
    Vanished,
    #[error("{0}")]
    Refused(String),
}

/// What a worker needs to process jobs; cheap to share between workers.
pub struct JobRunner<G> {
    /// The paced Graph API.
    pub api: Arc<G>,
    /// The durable queue.
    pub queue: Arc<Queue>,
    /// The configuration in force.
    pub config: Arc<Config>,
    /// In-flight uploads, for status.
    pub activity: Arc<Activity>,
    /// Cancelled at shutdown: an upload session stops at its next fragment
    /// boundary.
    pub shutdown: CancellationToken,
}

impl<G: GraphApi + 'static> JobRunner<G> {
    /// Runs one claimed job to its next state and logs the result.
    pub async fn run(&self, job: Job) -> JobOutcome {
        let started = Instant::now();
        let result = self.attempt(&job).await;
        self.activity.finish(job.id);
        match result {
            Ok(uploaded) => self.finish(&job, uploaded, started).await,
            Err(err) => self.handle_failure(&job, err).await,
        }
    }

    async fn attempt(&self, job: &Job) -> Result<Uploaded, AttemptError> {
        let mapping = self.mapping(job)?;
        let remote = RemotePath::from_segments(job.remote_path.clone())?;
        let file = open_settled(&job.local_path, &job.identity, mapping.follow_symlinks)?;
        let size = job.identity.size;
        self.activity
            .start(job.id, job.local_path.clone(), remote.to_string(), size);

        // A previous run may have finished the upload without recording it (a
        // crash, a lost answer, a queue rebuilt from the outbox). Under
        // `replace` a second upload is harmless; under `rename` or `fail` it
        // would make a copy or a failure, so look first.
        if job.claims > 1 || mapping.conflict != ConflictPolicy::Replace {
            if let Some(uploaded) = self.already_uploaded(job, &remote, &file).await? {
                return Ok(uploaded);
            }
        }
        let resume = self.recorded_session(job, &remote)?;
        let options = UploadOptions::from_config(&self.config.uploader, mapping.conflict);
        let journal = Journal { runner: self, job };
        let uploaded = transfer::upload_open_file(
            self.api.as_ref(),
            tokio::fs::File::from_std(file),
            size,
            &job.local_path,
            &remote,
            &options,
            &journal,
            resume,
        )
        .await;
        match uploaded {
            Err(GraphError::LocalFileChanged { .. }) => Err(AttemptError::Changed),
            other => Ok(other?),
        }
    }

    fn mapping(&self, job: &Job) -> Result<&Mapping, AttemptError> {
        self.config
            .mappings
            .iter()
            .find(|m| m.name == job.mapping)
            .ok_or_else(|| {
                AttemptError::Refused(format!(
                    "mapping `{}` is no longer in the configuration; restore it or remove the file",
                    job.mapping
                ))
            })
    }

    /// The remote item, if it already holds exactly this file.
    async fn already_uploaded(
        &self,
        job: &Job,
        remote: &RemotePath,
        file: &std::fs::File,
    ) -> Result<Option<Uploaded>, AttemptError> {
        let Some(item) = self.api.item_by_path(remote).await? else {
            return Ok(None);
        };
        if item.size != Some(job.identity.size) || item.quick_xor_hash().is_none() {
            return Ok(None);
        }
        let digest = hash_open_file(file, &job.local_path, job.identity.size).await?;
        if item.quick_xor_hash() != Some(digest) {
            return Ok(None);
        }
        debug!(job_id = %job.id, "remote item already matches; not uploading again");
        Ok(Some(Uploaded {
            item,
            bytes: job.identity.size,
            quick_xor_hash: digest,
            sessions: 0,
        }))
    }

    /// The session a previous run recorded for this very file, if any.
    fn recorded_session(
        &self,
        job: &Job,
        remote: &RemotePath,
    ) -> Result<Option<UploadSession>, AttemptError> {
        let Some(record) = self.queue.session(job.id)? else {
            return Ok(None);
        };
        if record.identity != job.identity || record.total_bytes != job.identity.size {
            return Ok(None);
        }
        let Ok(url) = url::Url::parse(record.upload_url.expose()) else {
            return Ok(None);
        };
        Ok(Some(UploadSession {
            upload_url: UploadUrl::new(url),
            remote: remote.clone(),
            expiration: record.expires_at,
            created_at: record.created_at,
        }))
    }

    async fn finish(&self, job: &Job, uploaded: Uploaded, started: Instant) -> JobOutcome {
        let elapsed = started.elapsed();
        let record = HistoryRecord {
            job_id: job.id,
            mapping: job.mapping.clone(),
            local_path: job.local_path.clone(),
            remote_path: job.remote_display(),
            item_id: uploaded.item.id.clone(),
            bytes: uploaded.bytes,
            duration_ms: elapsed.as_millis() as u64,
            attempts: job.attempts + 1,
            quick_xor_hash: to_base64(&uploaded.quick_xor_hash),
            finished_at: OffsetDateTime::now_utc(),
        };
        self.activity.signed_in();
        if let Err(err) = self.queue.mark_done(job.id, record).await {
            return self.queue_trouble(job, err);
        }
        let seconds = elapsed.as_secs_f64();
        info!(
            job_id = %job.id,
            path = %job.local_path.display(),
            remote_path = %job.remote_display(),
            bytes = uploaded.bytes,
            elapsed_ms = elapsed.as_millis() as u64,
            mb_per_sec = format!("{:.1}", uploaded.bytes as f64 / 1e6 / seconds.max(1e-3)),
            attempt = job.attempts + 1,
            "upload verified"
        );
        self.after_upload(job).await;
        JobOutcome::Done
    }

    /// Applies the mapping's after-upload action to a job recorded done.
    pub async fn after_upload(&self, job: &Job) {
        let Ok(mapping) = self.mapping(job) else {
            return;
        };
        // A newer version written since the upload is not the one on OneDrive:
        // it stays, and the watcher queues it.
        if !crate::watch::still_settled(&job.local_path, &job.identity) {
            debug!(job_id = %job.id, "file changed after upload; leaving it for the next job");
            return;
        }
        match after::apply(&mapping.after_upload, &job.local_path, &job.relative_path) {
            Ok(after::Outcome::Kept) => {}
            Ok(outcome) => {
                debug!(job_id = %job.id, ?outcome, "after-upload action done");
                if let Err(err) = self.queue.forget_path(&job.local_path).await {
                    warn!(job_id = %job.id, error = %err, "cannot forget an uploaded file");
                }
            }
            // The upload stands; the next scan finds the file and tries the
            // action again.
            Err(err) => warn!(job_id = %job.id, error = %err, "after-upload action failed"),
        }
    }

    async fn handle_failure(&self, job: &Job, err: AttemptError) -> JobOutcome {
        // The same exponential, jittered backoff as for single requests, on a
        // longer scale.
        let job_policy = RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: JOB_BASE_DELAY,
            max_delay: self.config.uploader.max_retry_delay,
        };
        let transient_delay = |attempts: u32| job_policy.backoff(attempts + 1);
        let (delay, reason) = match &err {
            // Shutdown: the job stays `Uploading` with its session, and the
            // next start requeues and resumes it (queue crash point 3).
            AttemptError::Graph(GraphError::Interrupted { offset, .. }) => {
                info!(job_id = %job.id, offset, "upload paused for shutdown");
                return JobOutcome::Rescheduled;
            }
            AttemptError::Vanished => return self.forget(job, "file vanished before upload").await,
            AttemptError::Graph(GraphError::LocalIo { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return self.forget(job, "file vanished during upload").await
            }
            // A read error other than a missing file or a refused permission
            // (an I/O error of the disk, say) may pass; permissions need an
            // admin.
            AttemptError::Graph(GraphError::LocalIo { source, .. })
                if source.kind() != std::io::ErrorKind::PermissionDenied =>
            {
                (transient_delay(job.attempts), err.to_string())
            }
            AttemptError::Queue(QueueError::JobNotFound { .. }) => return JobOutcome::Dropped,
            AttemptError::Queue(queue_err) => {
                error!(job_id = %job.id, error = %queue_err, "queue database error");
                (transient_delay(job.attempts), err.to_string())
            }
            AttemptError::Changed => (self.settle_time(job), err.to_string()),
            AttemptError::Refused(reason) => return self.fail(job, reason).await,
            // A parent folder deleted on OneDrive while files were on their
            // way: the folder memo is gone with it, and the next attempt makes
            // the folder again.
            AttemptError::Graph(graph) if graph.is_status(404, Some("itemNotFound")) => {
                (transient_delay(job.attempts), err.to_string())
            }
            AttemptError::Graph(graph) => match graph.disposition() {
                Disposition::Permanent => return self.fail(job, &err.to_string()).await,
                Disposition::PauseAll if matches!(graph, GraphError::Auth(_)) => {
                    self.activity.sign_in_failed(graph.to_string());
                    error!(job_id = %job.id, error = %graph, "uploads cannot sign in");
                    (transient_delay(job.attempts), err.to_string())
                }
                Disposition::PauseAll => {
                    error!(job_id = %job.id, error = %graph, "uploads cannot proceed");
                    (self.config.uploader.max_retry_delay, err.to_string())
                }
                _ => (transient_delay(job.attempts), err.to_string()),
            },
        };
        match self.queue.reschedule(job.id, &reason, delay).await {
            Ok(_) => {
                warn!(
                    job_id = %job.id,
                    path = %job.local_path.display(),
                    attempt = job.attempts + 1,
                    retry_after_ms = delay.as_millis() as u64,
                    error = %reason,
                    "upload rescheduled"
                );
                JobOutcome::Rescheduled
            }
            Err(err) => self.queue_trouble(job, err),
        }
    }

    async fn fail(&self, job: &Job, reason: &str) -> JobOutcome {
        match self.queue.mark_failed(job.id, reason).await {
            Ok(()) => {
                error!(
                    job_id = %job.id,
                    path = %job.local_path.display(),
                    error = %reason,
                    "upload failed; fix the cause, then run `onedrive-syncd retry`"
                );
                JobOutcome::Failed
            }
            Err(err) => self.queue_trouble(job, err),
        }
    }

    async fn forget(&self, job: &Job, why: &'static str) -> JobOutcome {
        warn!(job_id = %job.id, path = %job.local_path.display(), "{why}");
        if let Err(err) = self.queue.forget_path(&job.local_path).await {
            return self.queue_trouble(job, err);
        }
        JobOutcome::Dropped
    }

    fn queue_trouble(&self, job: &Job, err: QueueError) -> JobOutcome {
        if matches!(err, QueueError::JobNotFound { .. }) {
            // A newer version of the file superseded the job while it was
            // uploading.
            return JobOutcome::Dropped;
        }
        // The job stays claimed; the next start requeues it (crash point 2 or
        // 3).
        error!(job_id = %job.id, error = %err, "cannot record the job's state");
        JobOutcome::Rescheduled
    }

    fn settle_time(&self, job: &Job) -> Duration {
        self.mapping(job)
            .map_or(Duration::from_secs(5), |m| m.settle_time)
    }
}

/// The worker's side of a transfer: records sessions and progress, re-checks
/// the file.
struct Journal<'a, G> {
    runner: &'a JobRunner<G>,
    job: &'a Job,
}

impl<G: GraphApi + 'static> UploadJournal for Journal<'_, G> {
    fn session_opened<'a>(
        &'a self,
        session: &'a UploadSession,
    ) -> BoxFuture<'a, Result<(), GraphError>> {
        async move {
            let record = SessionRecord {
                upload_url: Url::new(session.upload_url.expose().to_string()),
                expires_at: session.expiration,
                created_at: session.created_at,
                total_bytes: self.job.identity.size,
                identity: self.job.identity,
            };
            self.runner
                .queue
                .record_session(self.job.id, &record)
                .await
                .map_err(|err| GraphError::LocalIo {
                    path: self.job.local_path.clone(),
                    source: std::io::Error::other(format!("cannot record upload session: {err}")),
                })
        }
        .boxed()
    }

    fn resumed(&self, offset: u64) {
        self.runner.activity.resumed_at(self.job.id, offset);
    }

    fn progressed(&self, acknowledged: u64, _total: u64) {
        self.runner.activity.progress(self.job.id, acknowledged);
    }

    fn before_fragment(&self, offset: u64, _last: bool) -> Result<(), GraphError> {
        if self.runner.shutdown.is_cancelled() {
            return Err(GraphError::Interrupted {
                remote: self.job.remote_display(),
                offset,
            });
        }
        // Checked before every fragment, not only the last: a rewritten file's
        // session is given up (and cancelled) at once, so that it does not hold
        // the name against the upload of the new version.
        if crate::watch::still_settled(&self.job.local_path, &self.job.identity) {
            Ok(())
        } else {
            Err(GraphError::LocalFileChanged {
                path: self.job.local_path.clone(),
            })
        }
    }
}

/// Opens the file of a job, refusing a symlink unless allowed, and checks it is
/// the version that settled.
fn open_settled(
    path: &Path,
    identity: &FileIdentity,
    follow_symlinks: bool,
) -> Result<std::fs::File, AttemptError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // O_NONBLOCK: a FIFO put at the path would otherwise block the open (and a
    // runtime thread) until a writer appears; the is_file check refuses it.
    let nonblocking = libc::O_NONBLOCK;
    if follow_symlinks {
        options.custom_flags(nonblocking);
    } else {
        options.custom_flags(nonblocking | libc::O_NOFOLLOW);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(AttemptError::Vanished)
        }
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            return Err(AttemptError::Refused(format!(
                "{} became a symlink; symlinks are not uploaded unless the mapping sets \
                 follow_symlinks = true",
                path.display()
            )))
        }
        Err(source) => {
            return Err(GraphError::LocalIo {
                path: path.to_path_buf(),
                source,
            }
            .into())
        }
    };
    let metadata = file.metadata().map_err(|source| GraphError::LocalIo {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_file() || FileIdentity::from_metadata(&metadata) != *identity {
        return Err(AttemptError::Changed);
    }
    Ok(file)
}

/// The quickXorHash of the first `size` bytes of `file`, already opened and
/// checked, read through a duplicate handle so that nothing is opened by path
/// again (`path` only names it in errors).
async fn hash_open_file(
    file: &std::fs::File,
    path: &Path,
    size: u64,
) -> Result<crate::graph::quickxor::Digest, GraphError> {
    use std::os::unix::fs::FileExt as _;

    let io = |source| GraphError::LocalIo {
        path: path.to_path_buf(),
        source,
    };
    let file = file.try_clone().map_err(io)?;
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = QuickXorHash::new();
        let mut buffer = vec![0; 1 << 20];
        let mut offset = 0;
        while offset < size {
            let want = buffer.len().min((size - offset) as usize);
            let read = file.read_at(&mut buffer[..want], offset)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            offset += read as u64;
        }
        Ok(hasher.finalize())
    });
    hashing
        .await
        .map_err(|err| io(std::io::Error::other(err)))?
        .map_err(io)
}
