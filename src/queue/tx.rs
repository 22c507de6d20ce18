//! One sled transaction over every tree, and the record encoding used in it.
//!
//! Writing jobs only through [`Tx::put_job`] and [`Tx::remove_job`] is what
//! keeps the `queued` and `by_path` indexes in step with `jobs`.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sled::transaction::{abort, ConflictableTransactionResult, TransactionalTree};
use time::OffsetDateTime;

use super::{Job, JobId, JobState, QueueError, StateKind};

pub(super) type TxResult<T> = ConflictableTransactionResult<T, QueueError>;

/// The trees as seen inside one transaction.
pub(super) struct Tx<'a> {
    pub(super) jobs: &'a TransactionalTree,
    pub(super) by_path: &'a TransactionalTree,
    pub(super) queued: &'a TransactionalTree,
    pub(super) sessions: &'a TransactionalTree,
    pub(super) history: &'a TransactionalTree,
}

impl Tx<'_> {
    pub(super) fn job(&self, id: JobId) -> TxResult<Job> {
        match self.jobs.get(id.to_key())? {
            Some(bytes) => decode(&bytes, || format!("job {id}")).or_else(abort),
            None => abort(QueueError::JobNotFound { id }),
        }
    }

    /// Writes `job` and keeps the ready index in step with its state.
    pub(super) fn put_job(&self, job: &Job) -> TxResult<()> {
        let bytes = encode(job, "job").or_else(abort)?;
        self.jobs.insert(&job.id.to_key(), bytes)?;
        if job.state == JobState::Queued {
            self.queued.insert(&job.id.to_key(), &[])?;
        } else {
            self.queued.remove(&job.id.to_key())?;
        }
        Ok(())
    }

    /// Removes `job`, its session, its ready entry and its path entry (if
    /// that still points at it).
    pub(super) fn remove_job(&self, job: &Job) -> TxResult<()> {
        let key = job.id.to_key();
        self.jobs.remove(&key)?;
        self.queued.remove(&key)?;
        self.sessions.remove(&key)?;
        let path = path_key(&job.local_path);
        if self.by_path.get(path)?.as_deref() == Some(&key[..]) {
            self.by_path.remove(path)?;
        }
        Ok(())
    }
}

pub(super) fn encode<T: serde::Serialize>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, QueueError> {
    serde_json::to_vec(value).map_err(|source| QueueError::Encode { what, source })
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, QueueError> {
    serde_json::from_slice(bytes).map_err(|source| QueueError::Decode {
        what: what(),
        source,
    })
}

pub(super) fn path_key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

/// History keys sort by finish time, then job id.
pub(super) fn history_key(finished_at: OffsetDateTime, id: JobId) -> [u8; 16] {
    let nanos = u64::try_from(finished_at.unix_timestamp_nanos()).unwrap_or(0);
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&nanos.to_be_bytes());
    key[8..].copy_from_slice(&id.to_key());
    key
}

pub(super) fn expect_state(job: &Job, allowed: &[StateKind], action: &'static str) -> TxResult<()> {
    let actual = job.state.kind();
    if allowed.contains(&actual) {
        Ok(())
    } else {
        abort(QueueError::WrongState {
            id: job.id,
            actual,
            action,
        })
    }
}
