//! The durable job queue: every file the daemon has to upload, in sled.
//!
//! This is the only module that knows sled. The database lives in the state
//! directory and holds six trees:
//!
//! | tree       | key                        | value                          |
//! |------------|----------------------------|--------------------------------|
//! | `jobs`     | job id, big-endian         | [`Job`] as JSON                |
//! | `by_path`  | local path bytes           | job id                         |
//! | `queued`   | job id, big-endian         | empty: the ready index         |
//! | `sessions` | job id, big-endian         | [`SessionRecord`] as JSON      |
//! | `history`  | finish time (ns) + job id  | [`HistoryRecord`] as JSON      |
//! | `meta`     | `schema_version`           | [`SCHEMA_VERSION`], big-endian |
//!
//! Invariants, kept by doing every change in one sled transaction:
//! - a job is in `queued` exactly when its state is `Queued`;
//! - `by_path` points every local path to at most one job, the newest one
//!   for that path, and a job's session record goes when the job goes;
//! - job ids grow with arrival, so iterating `queued` gives arrival order.
//!
//! Every state change is one transaction, then a flush (fsync) before the
//! method returns, so the caller never acts on a transition that a crash
//! could undo. Delivery is at-least-once; the crash points are:
//!
//! 1. Before `enqueue` returns: the job may be lost, but the file is still in
//!    the outbox and the start-up scan finds it again.
//! 2. In `Uploading` before `record_session`: `requeue_interrupted` puts the
//!    job back to `Queued` and a new session is made. A session the server
//!    created but we never recorded holds no item and expires on its own.
//! 3. In `Uploading` with a session record: the job is requeued with its
//!    session kept; the uploader asks the server for `nextExpectedRanges` and
//!    goes on from there (the stored offset is for display only).
//! 4. After the server completed the file, before `mark_done`: the job comes
//!    back with `claims > 1` (and perhaps a session the server has closed).
//!    The uploader's hook is to look at the remote item first and, if its size
//!    and quickXorHash match the local file, call `mark_done` without
//!    uploading again. The same holds after a simple upload whose response
//!    was lost.
//! 5. After `mark_done`, before the after-upload action: the file is still
//!    there with the same identity, so the next scan's `enqueue` answers
//!    [`EnqueueOutcome::Unchanged`] with the job id; the caller applies the
//!    mapping's action (delete or move) again.
//! 6. After the action, before `forget_path`: a `Done` job for a path that is
//!    gone. It is harmless; a new file there has another identity and
//!    supersedes it.
//!
//! A database that cannot be opened is moved aside by
//! [`Queue::open_or_rebuild`]; the outboxes are the source of truth and the
//! start-up scan rebuilds the queue from them.

mod error;
mod job;
mod tx;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use time::OffsetDateTime;

use error::open_error;
use tx::{decode, encode, expect_state, history_key, path_key, Tx, TxResult};

pub use error::QueueError;
pub use job::{
    Candidate, FileIdentity, HistoryFilter, HistoryRecord, Job, JobId, JobState, SessionRecord,
    StateCounts, StateKind, UploadUrl,
};

/// Version of the on-disk format; a database with another version is not
/// read.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA_KEY: &[u8] = b"schema_version";

/// What [`Queue::enqueue`] did with a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new job, for a path the queue did not know.
    Queued(JobId),
    /// A new job replacing `old`, whose file has changed since. A worker
    /// still holding `old` gets [`QueueError::JobNotFound`] from then on.
    Superseded {
        /// The new job.
        new: JobId,
        /// The job it replaced, now gone with its session.
        old: JobId,
    },
    /// The same file is already waiting or being uploaded.
    AlreadyQueued(JobId),
    /// The same file failed permanently; only a retry requeues it.
    AlreadyFailed(JobId),
    /// The same file was already uploaded and kept (see crash point 5 in the
    /// module docs for why the caller may still act on it).
    Unchanged(JobId),
}

/// Which failed jobs [`Queue::retry_failed`] requeues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrySelection {
    /// One job.
    Job(JobId),
    /// Every failed job.
    AllFailed,
}

/// Where a damaged database went, so the caller can log it as an ERROR.
#[derive(Debug)]
pub struct RebuildNote {
    /// The directory the old database was moved to.
    pub moved_to: PathBuf,
    /// Why it could not be used.
    pub cause: QueueError,
}

/// The job queue. Cheap to clone; clones share the same database.
#[derive(Clone, Debug)]
pub struct Queue {
    db: sled::Db,
    jobs: sled::Tree,
    by_path: sled::Tree,
    queued: sled::Tree,
    sessions: sled::Tree,
    history: sled::Tree,
}

impl Queue {
    /// Opens (creating if needed) the database in `dir`.
    ///
    /// A new directory is created with mode 0700: session records hold upload
    /// URLs, which are credentials.
    pub fn open(dir: &Path) -> Result<Queue, QueueError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| QueueError::Unavailable {
                path: dir.to_path_buf(),
                source,
            })?;
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|e| open_error(dir, e))?;
        let reopen = |name: &str| db.open_tree(name).map_err(|e| open_error(dir, e));
        let queue = Queue {
            jobs: reopen("jobs")?,
            by_path: reopen("by_path")?,
            queued: reopen("queued")?,
            sessions: reopen("sessions")?,
            history: reopen("history")?,
            db: db.clone(),
        };
        queue.check_schema(dir, &reopen("meta")?)?;
        Ok(queue)
    }

    /// Like [`Queue::open`], but a damaged database or one of another schema
    /// is moved to `<dir>.broken-<UTC time>` and a fresh one is created. The
    /// note says where the old one went; the caller logs it as an ERROR and
    /// rescans the outboxes. A locked or unreachable database is an error, as
    /// moving it would not help.
    pub fn open_or_rebuild(dir: &Path) -> Result<(Queue, Option<RebuildNote>), QueueError> {
        match Queue::open(dir) {
            Ok(queue) => Ok((queue, None)),
            Err(cause) if cause.calls_for_rebuild() => {
                let moved_to = move_aside(dir)?;
                let queue = Queue::open(dir)?;
                Ok((queue, Some(RebuildNote { moved_to, cause })))
            }
            Err(other) => Err(other),
        }
    }

    fn check_schema(&self, dir: &Path, meta: &sled::Tree) -> Result<(), QueueError> {
        let Some(stored) = meta.get(SCHEMA_KEY)? else {
            if !self.jobs.is_empty() || !self.history.is_empty() {
                let detail = "records without a schema version".to_string();
                return Err(QueueError::Corrupt {
                    path: dir.to_path_buf(),
                    detail,
                });
            }
            meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            self.db.flush()?;
            return Ok(());
        };
        let found = <[u8; 4]>::try_from(stored.as_ref())
            .map(u32::from_be_bytes)
            .map_err(|_| {
                let detail = "unreadable schema version".to_string();
                QueueError::Corrupt {
                    path: dir.to_path_buf(),
                    detail,
                }
            })?;
        if found != SCHEMA_VERSION {
            let path = dir.to_path_buf();
            return Err(QueueError::SchemaMismatch {
                path,
                found,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// Runs `f` as one transaction over every tree. sled may run `f` more
    /// than once, so it must not have side effects outside the trees.
    fn transact<T>(&self, f: impl Fn(&Tx<'_>) -> TxResult<T>) -> Result<T, QueueError> {
        let trees = (
            &self.jobs,
            &self.by_path,
            &self.queued,
            &self.sessions,
            &self.history,
        );
        trees
            .transaction(|(jobs, by_path, queued, sessions, history)| {
                f(&Tx {
                    jobs,
                    by_path,
                    queued,
                    sessions,
                    history,
                })
            })
            .map_err(|err| match err {
                TransactionError::Abort(err) => err,
                TransactionError::Storage(err) => QueueError::Storage(err),
            })
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), QueueError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Changes one job in a transaction, then flushes. `f` checks the state
    /// it starts from and may touch the other trees.
    async fn update(
        &self,
        id: JobId,
        f: impl Fn(&mut Job, &Tx<'_>) -> TxResult<()>,
    ) -> Result<Job, QueueError> {
        let now = OffsetDateTime::now_utc();
        let job = self.transact(|tx| {
            let mut job = tx.job(id)?;
            f(&mut job, tx)?;
            job.updated_at = now;
            tx.put_job(&job)?;
            Ok(job)
        })?;
        self.flush().await?;
        Ok(job)
    }

    /// Queues a settled file, unless the same file is known already.
    ///
    /// "The same file" is the same local path with the same identity. A path
    /// whose identity changed supersedes its old job, whatever state that job
    /// was in: the new content is a new upload.
    pub async fn enqueue(&self, candidate: &Candidate) -> Result<EnqueueOutcome, QueueError> {
        let new_id = JobId(self.db.generate_id()?);
        let now = OffsetDateTime::now_utc();
        let key = path_key(&candidate.local_path);
        let outcome = self.transact(|tx| {
            let existing = match tx.by_path.get(key)?.as_deref().and_then(JobId::from_key) {
                Some(id) => match tx.job(id) {
                    Ok(job) => Some(job),
                    Err(ConflictableTransactionError::Abort(QueueError::JobNotFound {
                        ..
                    })) => None,
                    Err(other) => return Err(other),
                },
                None => None,
            };
            if let Some(old) = &existing {
                if old.identity == candidate.identity {
                    return Ok(match old.state.kind() {
                        StateKind::Done => EnqueueOutcome::Unchanged(old.id),
                        StateKind::Failed => EnqueueOutcome::AlreadyFailed(old.id),
                        _ => EnqueueOutcome::AlreadyQueued(old.id),
                    });
                }
                tx.remove_job(old)?;
            }
            tx.put_job(&Job::new(new_id, candidate, now))?;
            tx.by_path.insert(key, &new_id.to_key())?;
            Ok(match existing {
                Some(old) => EnqueueOutcome::Superseded {
                    new: new_id,
                    old: old.id,
                },
                None => EnqueueOutcome::Queued(new_id),
            })
        })?;
        if matches!(
            outcome,
            EnqueueOutcome::Queued(_) | EnqueueOutcome::Superseded { .. }
        ) {
            self.flush().await?;
        }
        Ok(outcome)
    }

    /// Takes the oldest queued job whose backoff has passed at `now` and moves
    /// it to `Uploading`. Two callers never get the same job: the move is a
    /// transaction that re-checks the state, so a lost race moves on.
    pub async fn claim_next(&self, now: OffsetDateTime) -> Result<Option<Job>, QueueError> {
        for entry in self.queued.iter() {
            let (key, _) = entry?;
            let Some(id) = JobId::from_key(&key) else {
                continue;
            };
            if !self.is_ready(id, now)? {
                continue;
            }
            let updated_at = OffsetDateTime::now_utc();
            let claimed = self.transact(|tx| {
                let mut job = tx.job(id)?;
                let ready =
                    job.state == JobState::Queued && job.not_before.is_none_or(|at| at <= now);
                if !ready {
                    return Ok(None);
                }
                job.state = JobState::Uploading { offset: 0 };
                job.claims += 1;
                job.not_before = None;
                job.updated_at = updated_at;
                tx.put_job(&job)?;
                Ok(Some(job))
            });
            match claimed {
                Ok(Some(job)) => {
                    self.flush().await?;
                    return Ok(Some(job));
                }
                Ok(None) | Err(QueueError::JobNotFound { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
        Ok(None)
    }

    /// A cheap check outside any transaction, to skip jobs still backing off.
    fn is_ready(&self, id: JobId, now: OffsetDateTime) -> Result<bool, QueueError> {
        let Some(bytes) = self.jobs.get(id.to_key())? else {
            return Ok(false);
        };
        let job: Job = decode(&bytes, || format!("job {id}"))?;
        Ok(job.state == JobState::Queued && job.not_before.is_none_or(|at| at <= now))
    }

    /// The earliest instant a queued job becomes ready: `Some(now or
    /// earlier)` if one is ready already, `None` if nothing is queued. Lets
    /// the pool sleep until then instead of polling.
    pub fn next_ready_at(&self) -> Result<Option<OffsetDateTime>, QueueError> {
        let mut earliest: Option<OffsetDateTime> = None;
        for entry in self.queued.iter() {
            let (key, _) = entry?;
            let Some(id) = JobId::from_key(&key) else {
                continue;
            };
            let Some(job) = self.get(id)? else { continue };
            let at = job.not_before.unwrap_or(OffsetDateTime::UNIX_EPOCH);
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        Ok(earliest)
    }

    /// Records the upload session of an `Uploading` job. Call it, and let it
    /// return, before sending the first byte.
    pub async fn record_session(
        &self,
        id: JobId,
        session: &SessionRecord,
    ) -> Result<(), QueueError> {
        let bytes = encode(session, "upload session")?;
        self.update(id, |job, tx| {
            expect_state(job, &[StateKind::Uploading], "given an upload session")?;
            tx.sessions.insert(&id.to_key(), bytes.clone())?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The recorded upload session of a job, if any.
    pub fn session(&self, id: JobId) -> Result<Option<SessionRecord>, QueueError> {
        match self.sessions.get(id.to_key())? {
            Some(bytes) => decode(&bytes, || format!("session of job {id}")).map(Some),
            None => Ok(None),
        }
    }

    /// Forgets a job's upload session (expired, vanished, or made for a file
    /// that has changed), so the next attempt starts a new one.
    pub async fn clear_session(&self, id: JobId) -> Result<(), QueueError> {
        self.update(id, |_, tx| {
            tx.sessions.remove(&id.to_key())?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Stores the byte count the server has acknowledged, for `status`.
    pub async fn record_progress(&self, id: JobId, offset: u64) -> Result<(), QueueError> {
        self.update(id, |job, _| {
            expect_state(job, &[StateKind::Uploading], "given upload progress")?;
            job.state = JobState::Uploading { offset };
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Moves an `Uploading` job to `Verifying`: every byte is with the server.
    pub async fn mark_verifying(&self, id: JobId) -> Result<(), QueueError> {
        self.update(id, |job, _| {
            expect_state(job, &[StateKind::Uploading], "verified")?;
            job.state = JobState::Verifying;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Marks a job done, drops its session and appends `record` to the
    /// history, all in one transaction. Call it only once the remote item's
    /// size and quickXorHash match the file. `record.job_id` is set to `id`.
    pub async fn mark_done(&self, id: JobId, record: HistoryRecord) -> Result<(), QueueError> {
        let record = HistoryRecord {
            job_id: id,
            ..record
        };
        let history_bytes = encode(&record, "history record")?;
        let history_key = history_key(record.finished_at, id);
        self.update(id, |job, tx| {
            // Uploading is allowed too: a job whose file the server already
            // holds (crash point 4) is verified without a second upload.
            expect_state(
                job,
                &[StateKind::Uploading, StateKind::Verifying],
                "marked done",
            )?;
            job.state = JobState::Done;
            job.not_before = None;
            job.last_error = None;
            tx.sessions.remove(&id.to_key())?;
            tx.history.insert(&history_key, history_bytes.clone())?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Sends a job back to `Queued` after a transient failure, not to be taken
    /// before `delay` has passed. Its session stays, so the next attempt can
    /// resume.
    pub async fn reschedule(
        &self,
        id: JobId,
        error: &str,
        delay: Duration,
    ) -> Result<Job, QueueError> {
        let not_before = OffsetDateTime::now_utc() + delay;
        self.update(id, |job, _| {
            expect_state(
                job,
                &[StateKind::Uploading, StateKind::Verifying],
                "rescheduled",
            )?;
            job.state = JobState::Queued;
            job.attempts = job.attempts.saturating_add(1);
            job.not_before = Some(not_before);
            job.last_error = Some(error.to_string());
            Ok(())
        })
        .await
    }

    /// Marks a job failed for a permanent reason written for an admin. Its
    /// session is dropped: a retry starts afresh.
    pub async fn mark_failed(&self, id: JobId, reason: &str) -> Result<(), QueueError> {
        let active = [
            StateKind::Queued,
            StateKind::Uploading,
            StateKind::Verifying,
        ];
        self.update(id, |job, tx| {
            expect_state(job, &active, "marked failed")?;
            job.state = JobState::Failed {
                reason: reason.to_string(),
            };
            job.last_error = Some(reason.to_string());
            tx.sessions.remove(&id.to_key())?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Requeues failed jobs at once, with their attempt count reset. Returns
    /// how many were requeued; asking for a job that is not failed is
    /// [`QueueError::WrongState`].
    pub async fn retry_failed(&self, which: RetrySelection) -> Result<usize, QueueError> {
        let ids: Vec<JobId> = match which {
            RetrySelection::Job(id) => vec![id],
            RetrySelection::AllFailed => self.failed()?.iter().map(|job| job.id).collect(),
        };
        let now = OffsetDateTime::now_utc();
        let count = self.transact(|tx| {
            let mut count = 0;
            for &id in &ids {
                let mut job = tx.job(id)?;
                if which == RetrySelection::AllFailed && job.state.kind() != StateKind::Failed {
                    // Changed since listed (a retry racing another); not failed
                    // now.
                    continue;
                }
                expect_state(&job, &[StateKind::Failed], "retried")?;
                job.state = JobState::Queued;
                job.attempts = 0;
                job.not_before = None;
                job.updated_at = now;
                tx.put_job(&job)?;
                count += 1;
            }
            Ok(count)
        })?;
        self.flush().await?;
        Ok(count)
    }

    /// At start-up, before any worker runs: jobs a previous run left in
    /// `Uploading` or `Verifying` go back to `Queued`, ready at once, keeping
    /// their session records so the uploader resumes. Returns how many.
    pub async fn requeue_interrupted(&self) -> Result<usize, QueueError> {
        let mut interrupted = self.list(StateKind::Uploading)?;
        interrupted.extend(self.list(StateKind::Verifying)?);
        let now = OffsetDateTime::now_utc();
        let count = self.transact(|tx| {
            let mut count = 0;
            for stale in &interrupted {
                let mut job = tx.job(stale.id)?;
                if matches!(
                    job.state.kind(),
                    StateKind::Uploading | StateKind::Verifying
                ) {
                    job.state = JobState::Queued;
                    job.not_before = None;
                    job.updated_at = now;
                    tx.put_job(&job)?;
                    count += 1;
                }
            }
            Ok(count)
        })?;
        self.flush().await?;
        Ok(count)
    }

    /// Removes whatever the queue knows about `path`: its job, session and
    /// index entry. For a file that is gone: deleted or moved after upload,
    /// or vanished before it. Returns the job removed, if any.
    pub async fn forget_path(&self, path: &Path) -> Result<Option<JobId>, QueueError> {
        let key = path_key(path);
        let removed = self.transact(|tx| {
            let Some(id) = tx.by_path.get(key)?.as_deref().and_then(JobId::from_key) else {
                return Ok(None);
            };
            tx.by_path.remove(key)?;
            match tx.job(id) {
                Ok(job) => tx.remove_job(&job)?,
                Err(ConflictableTransactionError::Abort(QueueError::JobNotFound { .. })) => {}
                Err(other) => return Err(other),
            }
            Ok(Some(id))
        })?;
        if removed.is_some() {
            self.flush().await?;
        }
        Ok(removed)
    }

    /// One job.
    pub fn get(&self, id: JobId) -> Result<Option<Job>, QueueError> {
        match self.jobs.get(id.to_key())? {
            Some(bytes) => decode(&bytes, || format!("job {id}")).map(Some),
            None => Ok(None),
        }
    }

    /// Every job in state `kind`, oldest first.
    pub fn list(&self, kind: StateKind) -> Result<Vec<Job>, QueueError> {
        self.jobs_matching(|job| job.state.kind() == kind)
    }

    /// Every failed job, oldest first.
    pub fn failed(&self) -> Result<Vec<Job>, QueueError> {
        self.list(StateKind::Failed)
    }

    fn jobs_matching(&self, keep: impl Fn(&Job) -> bool) -> Result<Vec<Job>, QueueError> {
        let mut jobs = Vec::new();
        for entry in self.jobs.iter() {
            let (key, bytes) = entry?;
            let job: Job = decode(&bytes, || format!("job key {key:?}"))?;
            if keep(&job) {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> Result<StateCounts, QueueError> {
        let mut counts = StateCounts::default();
        for entry in self.jobs.iter() {
            let (key, bytes) = entry?;
            let job: Job = decode(&bytes, || format!("job key {key:?}"))?;
            counts.add(job.state.kind());
        }
        Ok(counts)
    }

    /// Finished uploads that pass `filter`, newest first, at most `limit`.
    pub fn history(
        &self,
        filter: &HistoryFilter,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, QueueError> {
        let mut records = Vec::new();
        for entry in self.history.iter().rev() {
            if records.len() >= limit {
                break;
            }
            let (key, bytes) = entry?;
            let record: HistoryRecord = decode(&bytes, || format!("history key {key:?}"))?;
            if filter.since.is_some_and(|since| record.finished_at < since) {
                break;
            }
            if filter.matches(&record) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Drops history records of uploads finished before `before`; returns how
    /// many. History otherwise grows without bound.
    pub async fn prune_history(&self, before: OffsetDateTime) -> Result<usize, QueueError> {
        let end = history_key(before, JobId(0));
        let mut count = 0;
        for entry in self.history.range(..end) {
            let (key, _) = entry?;
            self.history.remove(key)?;
            count += 1;
        }
        self.flush().await?;
        Ok(count)
    }
}

/// Renames `dir` to `<dir>.broken-<UTC time>` (with a counter if taken).
fn move_aside(dir: &Path) -> Result<PathBuf, QueueError> {
    let stamp_format =
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let stamp = OffsetDateTime::now_utc()
        .format(&stamp_format)
        .unwrap_or_else(|_| OffsetDateTime::now_utc().unix_timestamp().to_string());
    let with_suffix = |suffix: String| {
        let mut name = dir.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let mut target = with_suffix(format!(".broken-{stamp}"));
    let mut counter = 1;
    while target.exists() {
        counter += 1;
        target = with_suffix(format!(".broken-{stamp}-{counter}"));
    }
    std::fs::rename(dir, &target).map_err(|source| QueueError::MoveAside {
        path: dir.to_path_buf(),
        to: target.clone(),
        source,
    })?;
    Ok(target)
}
