//! What happens to a local file once its upload is verified: delete, move, or
//! keep.
//!
//! This runs only after the remote item's size and quickXorHash matched the
//! local bytes and the job was recorded done; a crash in between leaves the
//! file in place, and the next scan applies the action again (see the queue's
//! crash points).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::config::AfterUpload;

/// Why the after-upload action failed. The upload itself stands; the file stays
/// where it was.
#[derive(Debug, thiserror::Error)]
pub enum AfterUploadError {
    /// The local file could not be deleted.
    #[error("cannot delete {} after upload: {source}; check the daemon may write to its folder",
        path.display())]
    Delete {
        /// The local file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The local file could not be moved.
    #[error("cannot move {} to {} after upload: {source}; check that the folder exists and \
             is writable", from.display(), to.display())]
    Move {
        /// The local file.
        from: PathBuf,
        /// Where it was to go.
        to: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// What the action did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file was deleted.
    Deleted,
    /// The file was moved to this path.
    Moved(PathBuf),
    /// The file was left in place.
    Kept,
    /// The file was already gone (an earlier run applied the action).
    AlreadyGone,
}

/// Applies `action` to `local_path`, whose path below its mapping root is
/// `relative_path`.
pub fn apply(
    action: &AfterUpload,
    local_path: &Path,
    relative_path: &Path,
) -> Result<Outcome, AfterUploadError> {
    match action {
        AfterUpload::Keep => Ok(Outcome::Kept),
        AfterUpload::Delete => match std::fs::remove_file(local_path) {
            Ok(()) => Ok(Outcome::Deleted),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(Outcome::AlreadyGone),
            Err(source) => Err(AfterUploadError::Delete {
                path: local_path.to_path_buf(),
                source,
            }),
        },
        AfterUpload::MoveTo(folder) => move_into(local_path, &folder.join(relative_path)),
    }
}

fn move_into(from: &Path, wanted: &Path) -> Result<Outcome, AfterUploadError> {
    let error = |to: &Path, source| AfterUploadError::Move {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    };
    if !from.exists() {
        return Ok(Outcome::AlreadyGone);
    }
    if let Some(parent) = wanted.parent() {
        std::fs::create_dir_all(parent).map_err(|source| error(wanted, source))?;
    }
    let to = free_name(wanted);
    match std::fs::rename(from, &to) {
        Ok(()) => Ok(Outcome::Moved(to)),
        // A folder on another file system: copy, flush, then remove the
        // original, so that the bytes exist in one place or the other at every
        // instant.
        Err(err) if err.raw_os_error() == Some(libc::EXDEV) => {
            copy_durably(from, &to).map_err(|source| error(&to, source))?;
            std::fs::remove_file(from).map_err(|source| error(&to, source))?;
            Ok(Outcome::Moved(to))
        }
        Err(source) => Err(error(&to, source)),
    }
}

fn copy_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    std::fs::File::open(to)?.sync_all()
}

/// `wanted`, or `name (1).ext`, `name (2).ext` ... if a file of that name is
/// already there: a moved file never overwrites an earlier one.
fn free_name(wanted: &Path) -> PathBuf {
    if !wanted.exists() {
        return wanted.to_path_buf();
    }
    let stem = wanted
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = wanted
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()));
    (1u32..)
        .map(|n| {
            wanted.with_file_name(format!(
                "{stem} ({n}){}",
                extension.as_deref().unwrap_or("")
            ))
        })
        .find(|candidate| !candidate.exists())
        .expect("some numbered name is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_removes_the_file_and_tolerates_a_second_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"x").expect("write");
        let relative = Path::new("a.txt");
        assert_eq!(
            apply(&AfterUpload::Delete, &file, relative).expect("ok"),
            Outcome::Deleted
        );
        assert!(!file.exists());
        let again = apply(&AfterUpload::Delete, &file, relative).expect("ok");
        assert_eq!(again, Outcome::AlreadyGone);
    }

    #[test]
    fn keep_leaves_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"x").expect("write");
        let outcome = apply(&AfterUpload::Keep, &file, Path::new("a.txt")).expect("ok");
        assert_eq!(outcome, Outcome::Kept);
        assert!(file.exists());
    }

    #[test]
    fn move_keeps_the_relative_path_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let done = dir.path().join("done");
        let action = AfterUpload::MoveTo(done.clone());
        let relative = Path::new("sub/a.txt");
        for content in [b"first", b"secon"] {
            let file = dir.path().join("outbox/sub/a.txt");
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(&file, content).expect("write");
            apply(&action, &file, relative).expect("moved");
            assert!(!file.exists());
        }
        assert_eq!(
            std::fs::read(done.join("sub/a.txt")).expect("first"),
            b"first"
        );
        assert_eq!(
            std::fs::read(done.join("sub/a (1).txt")).expect("second"),
            b"secon"
        );
    }
}
