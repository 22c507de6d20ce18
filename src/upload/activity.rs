//! What the workers are doing right now, for `status` and the systemd status
//! line.
//!
//! Kept in memory only: after a restart nothing is in flight until a worker
//! claims a job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::queue::JobId;

/// One upload in flight, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// The job.
    pub job_id: JobId,
    /// The local file.
    pub path: PathBuf,
    /// Where it goes.
    pub remote_path: String,
    /// The file size.
    pub bytes: u64,
    /// Bytes the server has acknowledged.
    pub acknowledged_bytes: u64,
    /// Seconds since the worker took the job.
    pub elapsed_secs: f64,
    /// Average speed since the worker took the job, in bytes per second.
    pub bytes_per_sec: f64,
}

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    remote_path: String,
    bytes: u64,
    acknowledged_bytes: u64,
    /// Bytes already on the server when this run resumed the upload, so that
    /// speed counts only what this run sent.
    resumed_from: Option<u64>,
    started: Instant,
}

/// The uploads in flight, shared by the workers and the status reporter.
#[derive(Debug, Default)]
pub struct Activity {
    /// In-flight uploads by job.
    entries: Mutex<BTreeMap<JobId, Entry>>,
    /// Why the last upload could not get an access token, until one succeeds.
    sign_in_trouble: Mutex<Option<String>>,
}

impl Activity {
    /// Records that a worker took `job_id`.
    pub fn start(&self, job_id: JobId, path: PathBuf, remote_path: String, bytes: u64) {
        let entry = Entry {
            path,
            remote_path,
            bytes,
            acknowledged_bytes: 0,
            resumed_from: None,
            started: Instant::now(),
        };
        self.lock().insert(job_id, entry);
    }

    /// Records that the upload of `job_id` resumed with `offset` bytes already
    /// on the server.
    pub fn resumed_at(&self, job_id: JobId, offset: u64) {
        if let Some(entry) = self.lock().get_mut(&job_id) {
            entry.resumed_from = Some(offset);
            entry.acknowledged_bytes = offset;
        }
    }

    /// Records the server's acknowledgement of the first `acknowledged` bytes.
    pub fn progress(&self, job_id: JobId, acknowledged: u64) {
        if let Some(entry) = self.lock().get_mut(&job_id) {
            entry.acknowledged_bytes = acknowledged;
        }
    }

    /// Records that the worker let go of `job_id`.
    pub fn finish(&self, job_id: JobId) {
        self.lock().remove(&job_id);
    }

    /// The uploads in flight, oldest job first.
    pub fn snapshot(&self) -> Vec<InFlight> {
        self.lock()
            .iter()
            .map(|(job_id, entry)| {
                let elapsed = entry.started.elapsed().as_secs_f64();
                let sent = entry
                    .acknowledged_bytes
                    .saturating_sub(entry.resumed_from.unwrap_or(0));
                InFlight {
                    job_id: *job_id,
                    path: entry.path.clone(),
                    remote_path: entry.remote_path.clone(),
                    bytes: entry.bytes,
                    acknowledged_bytes: entry.acknowledged_bytes,
                    elapsed_secs: elapsed,
                    bytes_per_sec: if elapsed > 0.0 {
                        sent as f64 / elapsed
                    } else {
                        0.0
                    },
                }
            })
            .collect()
    }

    /// Records that an upload could not get an access token, and why.
    pub fn sign_in_failed(&self, reason: String) {
        *self.trouble() = Some(reason);
    }

    /// Records that an upload went through, so sign-in works.
    pub fn signed_in(&self) {
        *self.trouble() = None;
    }

    /// Why uploads cannot sign in, if they cannot.
    pub fn sign_in_trouble(&self) -> Option<String> {
        self.trouble().clone()
    }

    fn trouble(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.sign_in_trouble
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many uploads are in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
