//! The outbox watcher: finds files in the mapping roots and hands each one
//! over once it is complete. It never talks to Graph and never opens a file.
//!
//! For every mapping a task watches the root with inotify (through `notify`),
//! walks it at start-up (files that arrived while the daemon was down), again
//! whenever events were lost, and again every `rescan_interval` as a safety
//! net (a file finished through a hard link may send no event at all).
//!
//! Invariants:
//! - A file is sent only once it is *settled*: its size, mtime, inode and
//!   device stayed the same for the mapping's settle time. Events only start
//!   or restart that clock; the verdict comes from looking at the file again.
//! - Excluded names ([`DEFAULT_EXCLUDES`] plus the mapping's) are never sent;
//!   a `.tmp` renamed to its final name is sent under the final name only.
//! - Symlinks, FIFOs, sockets and devices are skipped (each logged once) —
//!   unless the mapping follows symlinks, and even then only targets that
//!   resolve inside the root count. Nothing outside a root is ever opened.
//! - A non-recursive mapping sees only files at the top of its root.
//!
//! Nothing is persisted here: pending files live in memory, and after a
//! restart the start-up walk finds them again. A file may be sent more than
//! once (every rescan sends what is there); the queue's `enqueue` recognises
//! the same file by path and [`FileIdentity`].
//!
//! The uploader re-checks a file with [`still_settled`] just before its last
//! fragment, and should compare [`FileIdentity::from_metadata`] of the file
//! it opened with the job's identity, so that what it reads is what was
//! vetted here.

mod filter;
mod scan;
mod settle;
mod task;

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::config::Mapping;

pub use crate::queue::{Candidate, FileIdentity};
pub use filter::DEFAULT_EXCLUDES;

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// An include or exclude pattern is not a valid glob.
    #[error(
        "mapping {mapping}: pattern {pattern:?} is not a valid glob ({source}); \
         fix it in the config"
    )]
    InvalidGlob {
        /// The mapping's name.
        mapping: String,
        /// The pattern as written.
        pattern: String,
        /// What globset reported.
        source: globset::Error,
    },
}

/// Settings shared by every mapping's watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// How often each root is walked even without events; the safety net for
    /// anything inotify did not report.
    pub rescan_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            rescan_interval: Duration::from_secs(600),
        }
    }
}

/// The running watch of every mapping.
#[derive(Debug)]
pub struct OutboxWatcher {
    tasks: Vec<JoinHandle<()>>,
}

impl OutboxWatcher {
    /// Starts one watch task per mapping on the current tokio runtime. Settled
    /// files go to `candidates` (bounded: when it is full the watchers wait).
    /// The tasks end when `shutdown` is cancelled or `candidates` is closed.
    ///
    /// Fails only on an invalid glob, before any task starts. A root that does
    /// not exist is logged as an ERROR and retried at every rescan.
    pub fn start(
        mappings: &[Mapping],
        options: WatchOptions,
        candidates: mpsc::Sender<Candidate>,
        shutdown: CancellationToken,
    ) -> Result<OutboxWatcher, WatchError> {
        let roots = mappings
            .iter()
            .map(scan::MappingRoot::new)
            .collect::<Result<Vec<_>, _>>()?;
        let tasks = roots
            .into_iter()
            .map(|root| {
                task::MappingWatch::spawn(
                    root,
                    options.clone(),
                    candidates.clone(),
                    shutdown.clone(),
                )
            })
            .collect();
        Ok(OutboxWatcher { tasks })
    }

    /// Waits until every watch task has ended (after `shutdown`).
    pub async fn stopped(self) {
        for task in self.tasks {
            if let Err(err) = task.await {
                error!(error = %err, "outbox watch task failed");
            }
        }
    }
}

/// The identity of the file at `path`, following symlinks. An error if it is
/// missing or not a regular file.
pub fn identity_of(path: &Path) -> io::Result<FileIdentity> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(FileIdentity::from_metadata(&meta))
}

/// Whether the file at `path` is still exactly the one that settled as
/// `identity`: same device, inode, size and mtime. The uploader asks this
/// right before sending the last fragment; `false` means upload it anew.
pub fn still_settled(path: &Path, identity: &FileIdentity) -> bool {
    identity_of(path).is_ok_and(|now| now == *identity)
}
