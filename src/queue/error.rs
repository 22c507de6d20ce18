//! Why a queue operation failed, and how sled's errors map onto that.

use std::path::{Path, PathBuf};

use super::{JobId, StateKind};

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Another process (normally the running daemon) holds the database.
    #[error(
        "queue database {path} is in use by another process; \
         ask the running daemon instead, or stop it first"
    )]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// sled found the files damaged or in a format it cannot read.
    #[error(
        "queue database {path} is damaged ({detail}); \
         starting the daemon moves it aside and rebuilds the queue from the outboxes"
    )]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// What sled reported.
        detail: String,
    },
    /// The database was written by a build with another schema.
    #[error(
        "queue database {path} has schema version {found}, this build reads version \
         {expected}; run the matching onedrive-syncd or move the directory aside"
    )]
    SchemaMismatch {
        /// The database directory.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// [`super::SCHEMA_VERSION`].
        expected: u32,
    },
    /// The state directory cannot be created or read.
    #[error(
        "cannot open queue database {path}: {source}; \
         check that the state directory exists and belongs to the daemon's user"
    )]
    Unavailable {
        /// The database directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A read, write or flush failed after the database was opened.
    #[error("queue storage failed: {0}; check free space and the state directory")]
    Storage(#[source] sled::Error),
    /// The job does not exist (any more).
    #[error("job {id} is not in the queue; it was finished and forgotten, or superseded")]
    JobNotFound {
        /// The job asked for.
        id: JobId,
    },
    /// The transition does not start from the job's current state.
    #[error("job {id} is {actual}, so it cannot be {action}")]
    WrongState {
        /// The job.
        id: JobId,
        /// Its current state.
        actual: StateKind,
        /// What was attempted, in words.
        action: &'static str,
    },
    /// A record could not be written as JSON.
    #[error("cannot store {what} in the queue: {source}")]
    Encode {
        /// Which record.
        what: &'static str,
        /// The serialisation error.
        source: serde_json::Error,
    },
    /// A stored record could not be read back.
    #[error("queue record {what} is unreadable ({source}); the database may be damaged")]
    Decode {
        /// Which record.
        what: String,
        /// The deserialisation error.
        source: serde_json::Error,
    },
    /// A damaged database could not be moved out of the way.
    #[error("cannot move the damaged queue database {path} to {to}: {source}; move it by hand")]
    MoveAside {
        /// The database directory.
        path: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl QueueError {
    /// Whether moving the directory aside and starting afresh is the cure.
    pub(super) fn calls_for_rebuild(&self) -> bool {
        matches!(
            self,
            QueueError::Corrupt { .. } | QueueError::SchemaMismatch { .. }
        )
    }
}

/// Sorts a sled error found while opening into the condition it means.
pub(super) fn open_error(path: &Path, err: sled::Error) -> QueueError {
    match err {
        // sled reports a held lock only through this message (sled 0.34,
        // `Config::try_lock`); the test `second_open_is_locked` pins it.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            QueueError::Locked {
                path: path.to_path_buf(),
            }
        }
        sled::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            QueueError::Corrupt {
                path: path.to_path_buf(),
                detail: io.to_string(),
            }
        }
        sled::Error::Io(source) => QueueError::Unavailable {
            path: path.to_path_buf(),
            source,
        },
        other => QueueError::Corrupt {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

impl From<sled::Error> for QueueError {
    fn from(err: sled::Error) -> QueueError {
        QueueError::Storage(err)
    }
}
