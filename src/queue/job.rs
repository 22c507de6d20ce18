//! The records the queue persists: jobs, upload-session records and history.
//!
//! Every type here is stored as JSON in a sled tree. Field and variant names
//! are part of the on-disk format of [`super::SCHEMA_VERSION`]: renaming one
//! needs a schema bump. Timestamps are RFC 3339 in UTC.

use std::fmt;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Identifies a job. Ids come from sled's monotonic counter, so a larger id
/// arrived later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl JobId {
    /// The sled key: big-endian, so that key order is arrival order.
    pub(crate) fn to_key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads a key written by [`JobId::to_key`]; `None` if it has the wrong
    /// length.
    pub(crate) fn from_key(key: &[u8]) -> Option<JobId> {
        let bytes: [u8; 8] = key.try_into().ok()?;
        Some(JobId(u64::from_be_bytes(bytes)))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<JobId, Self::Err> {
        s.parse().map(JobId)
    }
}

/// What makes a file "the same file": device, inode, size and modification
/// time. A reused inode with another size or mtime is a different file, and
/// so is the same inode after any write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Device number of the file system holding the file.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Length in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl FileIdentity {
    /// The identity of the file `meta` describes.
    pub fn from_metadata(meta: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        }
    }
}

/// A settled file the watcher hands over, ready to become a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Name of the mapping the file belongs to.
    pub mapping: String,
    /// Absolute local path, below the mapping root.
    pub local_path: PathBuf,
    /// Path below the mapping root; always valid UTF-8.
    pub relative_path: PathBuf,
    /// Remote path segments below the drive root, file name last.
    pub remote_path: Vec<String>,
    /// The file as it was when it was found settled.
    pub identity: FileIdentity,
}

/// Where a job stands in its life cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (possibly not before `Job::not_before`).
    Queued,
    /// A worker holds the job; `offset` is the last byte count the server
    /// acknowledged, for progress display only (resume asks the server).
    Uploading {
        /// Bytes acknowledged by the server so far.
        offset: u64,
    },
    /// All bytes are sent; the remote item is being compared with the file.
    Verifying,
    /// The remote item matched; the job stays as a record of the kept file.
    Done,
    /// A permanent error; only an explicit retry requeues the job.
    Failed {
        /// What went wrong, written for an admin.
        reason: String,
    },
}

impl JobState {
    /// The state without its data.
    pub fn kind(&self) -> StateKind {
        match self {
            JobState::Queued => StateKind::Queued,
            JobState::Uploading { .. } => StateKind::Uploading,
            JobState::Verifying => StateKind::Verifying,
            JobState::Done => StateKind::Done,
            JobState::Failed { .. } => StateKind::Failed,
        }
    }
}

/// A [`JobState`] without its data, for counting and filtering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKind {
    /// See [`JobState::Queued`].
    Queued,
    /// See [`JobState::Uploading`].
    Uploading,
    /// See [`JobState::Verifying`].
    Verifying,
    /// See [`JobState::Done`].
    Done,
    /// See [`JobState::Failed`].
    Failed,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateKind::Queued => "queued",
            StateKind::Uploading => "uploading",
            StateKind::Verifying => "verifying",
            StateKind::Done => "done",
            StateKind::Failed => "failed",
        })
    }
}

/// One file to upload, as stored in the `jobs` tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id; also its key.
    pub id: JobId,
    /// Name of the mapping the file belongs to.
    pub mapping: String,
    /// Absolute local path.
    pub local_path: PathBuf,
    /// Path below the mapping root.
    pub relative_path: PathBuf,
    /// Remote path segments below the drive root, file name last.
    pub remote_path: Vec<String>,
    /// The file as it was when queued; a different identity is a new job.
    pub identity: FileIdentity,
    /// Where the job stands.
    pub state: JobState,
    /// How many times an attempt ended in a transient failure.
    pub attempts: u32,
    /// How many times a worker took the job. More than one means an earlier
    /// attempt may have reached the server, so the remote item is checked
    /// before uploading again.
    pub claims: u32,
    /// Workers leave the job alone until then (backoff).
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// The most recent error, kept across retries for `status`.
    pub last_error: Option<String>,
    /// When the job was queued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the job last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Job {
    /// A fresh queued job for `candidate`.
    pub(crate) fn new(id: JobId, candidate: &Candidate, now: OffsetDateTime) -> Job {
        Job {
            id,
            mapping: candidate.mapping.clone(),
            local_path: candidate.local_path.clone(),
            relative_path: candidate.relative_path.clone(),
            remote_path: candidate.remote_path.clone(),
            identity: candidate.identity,
            state: JobState::Queued,
            attempts: 0,
            claims: 0,
            not_before: None,
            last_error: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The remote path as `/a/b/name.ext`.
    pub fn remote_display(&self) -> String {
        format!("/{}", self.remote_path.join("/"))
    }
}

/// The URL of an upload session. Whoever holds it can write to the file
/// without a token, so it is never printed: `Debug` shows `***` and there is
/// no `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UploadUrl(String);

impl UploadUrl {
    /// Wraps the `uploadUrl` Graph returned.
    pub fn new(url: String) -> UploadUrl {
        UploadUrl(url)
    }

    /// The URL itself, for the request that uses it and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UploadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UploadUrl(***)")
    }
}

/// An upload session, recorded before its first byte is sent so that a
/// restart can resume it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Where the fragments go (a credential in itself).
    pub upload_url: UploadUrl,
    /// When the server forgets the session unless a fragment extends it.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When the session was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Size of the file the session was created for.
    pub total_bytes: u64,
    /// The file the session was created for; a session is never resumed for
    /// a file that changed since.
    pub identity: FileIdentity,
}

/// One finished upload, as kept in the `history` tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// The job that did it.
    pub job_id: JobId,
    /// Name of the mapping.
    pub mapping: String,
    /// Local path at upload time.
    pub local_path: PathBuf,
    /// Remote path, `/`-separated.
    pub remote_path: String,
    /// Graph item id of the uploaded file.
    pub item_id: String,
    /// Bytes uploaded.
    pub bytes: u64,
    /// From the first claim to verification, in milliseconds.
    pub duration_ms: u64,
    /// Attempts it took, the successful one included.
    pub attempts: u32,
    /// The verified quickXorHash, base64.
    pub quick_xor_hash: String,
    /// When the upload was verified.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
}

/// Which history records to return; every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only this mapping.
    pub mapping: Option<String>,
    /// Only records whose local or remote path contains this text.
    pub path_contains: Option<String>,
    /// Only uploads finished at or after this instant.
    pub since: Option<OffsetDateTime>,
}

impl HistoryFilter {
    /// Whether `record` passes the filter.
    pub(crate) fn matches(&self, record: &HistoryRecord) -> bool {
        let mapping_ok = self.mapping.as_ref().is_none_or(|m| *m == record.mapping);
        let path_ok = self.path_contains.as_ref().is_none_or(|text| {
            record.remote_path.contains(text.as_str())
                || record.local_path.to_string_lossy().contains(text.as_str())
        });
        let since_ok = self.since.is_none_or(|since| record.finished_at >= since);
        mapping_ok && path_ok && since_ok
    }
}

/// How many jobs are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Waiting for a worker, including those backing off.
    pub queued: u64,
    /// Held by a worker.
    pub uploading: u64,
    /// Being compared with the remote item.
    pub verifying: u64,
    /// Verified and kept as a record.
    pub done: u64,
    /// Failed permanently.
    pub failed: u64,
}

impl StateCounts {
    /// Counts one more job in `kind`.
    pub(crate) fn add(&mut self, kind: StateKind) {
        let slot = match kind {
            StateKind::Queued => &mut self.queued,
            StateKind::Uploading => &mut self.uploading,
            StateKind::Verifying => &mut self.verifying,
            StateKind::Done => &mut self.done,
            StateKind::Failed => &mut self.failed,
        };
        *slot += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_keys_sort_in_arrival_order() {
        let keys: Vec<[u8; 8]> = [1u64, 255, 256, 70_000]
            .iter()
            .map(|&n| JobId(n).to_key())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(JobId::from_key(&keys[2]), Some(JobId(256)));
        assert_eq!(JobId::from_key(b"short"), None);
    }

    #[test]
    fn upload_url_debug_hides_the_url() {
        let url = UploadUrl::new("https://example.invalid/up?tempauth=secret".into());
        let printed = format!("{url:?}");
        assert!(!printed.contains("secret"), "{printed}");
        assert_eq!(url.expose(), "https://example.invalid/up?tempauth=secret");
    }

    #[test]
    fn job_state_round_trips_through_json() {
        for state in [
            JobState::Queued,
            JobState::Uploading { offset: 42 },
            JobState::Verifying,
            JobState::Done,
            JobState::Failed {
                reason: "name not allowed".into(),
            },
        ] {
            let text = serde_json::to_string(&state).expect("encodes");
            let back: JobState = serde_json::from_str(&text).expect("decodes");
            assert_eq!(back, state);
        }
    }
}
