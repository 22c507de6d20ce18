//! What a path inside a mapping root is, and a walk of the tree below it.
//!
//! Everything here only asks the file system about paths (`lstat`, and for
//! followed symlinks `realpath` and `stat`); nothing is ever opened, so a FIFO
//! cannot block and no byte outside the root is read. A symlink is followed
//! only when the mapping allows it and its target resolves inside the root;
//! symlinked folders are never entered, so the walk cannot loop.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::filter::PathFilter;
use crate::config::Mapping;
use crate::queue::{Candidate, FileIdentity};

/// A mapping as the watcher needs it: the root resolved, the globs compiled.
#[derive(Clone, Debug)]
pub(crate) struct MappingRoot {
    pub(crate) name: String,
    /// The root with symlinks resolved when it existed at start; events and
    /// candidates use paths below this.
    pub(crate) root: PathBuf,
    pub(crate) remote_path: Vec<String>,
    pub(crate) recursive: bool,
    pub(crate) follow_symlinks: bool,
    pub(crate) settle_time: Duration,
    pub(crate) filter: PathFilter,
}

/// Why a path is not uploaded although it is not excluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SkipReason {
    /// A symlink, and the mapping does not follow symlinks.
    Symlink,
    /// A symlink whose target is missing.
    DanglingSymlink,
    /// A followed symlink whose target lies outside the mapping root.
    SymlinkOutsideRoot,
    /// A followed symlink to a folder; such folders are not entered.
    SymlinkToFolder,
    /// A FIFO, socket or device.
    Special(&'static str),
    /// A name that is not UTF-8, which OneDrive cannot store.
    NotUtf8,
}

/// What a path turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A regular file (possibly through a followed symlink) to consider.
    File(FileIdentity),
    /// A folder to walk.
    Folder,
    /// Not uploaded, and worth telling the admin once.
    Skipped(SkipReason),
    /// Excluded by a glob, or below the top level of a non-recursive mapping.
    Ignored,
    /// No longer there.
    Gone,
}

/// The result of walking a tree.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub(crate) files: Vec<(PathBuf, FileIdentity)>,
    pub(crate) skipped: Vec<(PathBuf, SkipReason)>,
    pub(crate) errors: Vec<(PathBuf, io::Error)>,
}

impl MappingRoot {
    /// Resolves the mapping's root (kept as written if it cannot be resolved
    /// yet) and compiles its globs.
    pub(crate) fn new(mapping: &Mapping) -> Result<MappingRoot, super::WatchError> {
        let root = std::fs::canonicalize(&mapping.local_path)
            .unwrap_or_else(|_| mapping.local_path.clone());
        Ok(MappingRoot {
            name: mapping.name.clone(),
            root,
            remote_path: mapping.remote_path.clone(),
            recursive: mapping.recursive,
            follow_symlinks: mapping.follow_symlinks,
            settle_time: mapping.settle_time,
            filter: PathFilter::new(&mapping.name, &mapping.include, &mapping.exclude)?,
        })
    }

    /// `path` relative to the root; `None` for the root itself and for paths
    /// outside it.
    pub(crate) fn relative<'a>(&self, path: &'a Path) -> Option<&'a Path> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let normal = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        (normal && !relative.as_os_str().is_empty()).then_some(relative)
    }

    /// Classifies `path` without opening it.
    pub(crate) fn classify(&self, path: &Path) -> io::Result<Entry> {
        if path == self.root {
            return match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.is_dir() => Ok(Entry::Folder),
                Ok(_) => Ok(Entry::Gone),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Entry::Gone),
                Err(err) => Err(err),
            };
        }
        let Some(relative) = self.relative(path) else {
            return Ok(Entry::Ignored);
        };
        if !self.recursive && relative.components().count() > 1 {
            return Ok(Entry::Ignored);
        }
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Entry::Gone),
            Err(err) => return Err(err),
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            let enter = self.recursive && self.filter.allows_dir(relative);
            return Ok(if enter { Entry::Folder } else { Entry::Ignored });
        }
        if !self.filter.allows_file(relative) {
            return Ok(Entry::Ignored);
        }
        if relative.to_str().is_none() {
            // LIMITATION: logged, not a failed job — jobs store UTF-8 paths.
            return Ok(Entry::Skipped(SkipReason::NotUtf8));
        }
        if kind.is_file() {
            return Ok(Entry::File(FileIdentity::from_metadata(&meta)));
        }
        if kind.is_symlink() {
            return self.classify_symlink(path);
        }
        Ok(Entry::Skipped(SkipReason::Special(special_kind(&kind))))
    }

    fn classify_symlink(&self, path: &Path) -> io::Result<Entry> {
        if !self.follow_symlinks {
            return Ok(Entry::Skipped(SkipReason::Symlink));
        }
        let target = match std::fs::canonicalize(path) {
            Ok(target) => target,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Ok(Entry::Skipped(SkipReason::DanglingSymlink));
            }
            Err(err) => return Err(err),
        };
        if !target.starts_with(&self.root) {
            return Ok(Entry::Skipped(SkipReason::SymlinkOutsideRoot));
        }
        // `target` has no symlinks left, so this stat cannot leave the root.
        let meta = std::fs::symlink_metadata(&target)?;
        let kind = meta.file_type();
        Ok(if kind.is_file() {
            Entry::File(FileIdentity::from_metadata(&meta))
        } else if kind.is_dir() {
            // LIMITATION: linked folders are not entered — that needs loop checks.
            Entry::Skipped(SkipReason::SymlinkToFolder)
        } else {
            Entry::Skipped(SkipReason::Special(special_kind(&kind)))
        })
    }

    /// Walks the tree below `start` (the root or a folder inside it), depth
    /// first, without following symlinked folders.
    pub(crate) fn walk(&self, start: &Path) -> Walk {
        let mut walk = Walk::default();
        let mut folders = vec![start.to_path_buf()];
        while let Some(folder) = folders.pop() {
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(err) if err.kind() == io::ErrorKind::NotFound && folder != self.root => {
                    continue;
                }
                Err(err) => {
                    walk.errors.push((folder, err));
                    continue;
                }
            };
            for entry in entries {
                let path = match entry {
                    Ok(entry) => entry.path(),
                    Err(err) => {
                        walk.errors.push((folder.clone(), err));
                        continue;
                    }
                };
                match self.classify(&path) {
                    Ok(Entry::File(identity)) => walk.files.push((path, identity)),
                    Ok(Entry::Folder) => folders.push(path),
                    Ok(Entry::Skipped(reason)) => walk.skipped.push((path, reason)),
                    Ok(Entry::Ignored | Entry::Gone) => {}
                    Err(err) => walk.errors.push((path, err)),
                }
            }
        }
        walk
    }

    /// The candidate for a settled file at `path`; `None` if `path` is not
    /// below the root or not UTF-8 (which `classify` has already reported).
    pub(crate) fn candidate(&self, path: &Path, identity: FileIdentity) -> Option<Candidate> {
        let relative = self.relative(path)?;
        let mut remote_path = self.remote_path.clone();
        for part in relative.components() {
            remote_path.push(part.as_os_str().to_str()?.to_string());
        }
        Some(Candidate {
            mapping: self.name.clone(),
            local_path: path.to_path_buf(),
            relative_path: relative.to_path_buf(),
            remote_path,
            identity,
        })
    }
}

fn special_kind(kind: &std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "fifo"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AfterUpload, ConflictPolicy};

    fn root(dir: &Path, recursive: bool, follow_symlinks: bool) -> MappingRoot {
        let mapping = Mapping {
            name: "test".into(),
            local_path: dir.to_path_buf(),
            remote_path: vec!["Backups".into()],
            recursive,
            include: vec![],
            exclude: vec![],
            settle_time: Duration::from_millis(100),
            conflict: ConflictPolicy::Replace,
            after_upload: AfterUpload::Keep,
            follow_symlinks,
        };
        MappingRoot::new(&mapping).expect("valid mapping")
    }

    #[test]
    fn candidate_maps_subfolders_to_remote_subfolders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = root(dir.path(), true, false);
        let path = r.root.join("2024/05/report.csv");
        let identity = FileIdentity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
        };
        let candidate = r.candidate(&path, identity).expect("inside the root");
        assert_eq!(
            candidate.remote_path,
            ["Backups", "2024", "05", "report.csv"]
        );
        assert_eq!(candidate.relative_path, Path::new("2024/05/report.csv"));
        assert!(r.candidate(Path::new("/etc/passwd"), identity).is_none());
    }

    #[test]
    fn relative_refuses_parent_components_and_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = root(dir.path(), true, false);
        assert!(r.relative(&r.root.join("../escape")).is_none());
        assert!(r.relative(&r.root).is_none());
        assert_eq!(r.relative(&r.root.join("a/b")), Some(Path::new("a/b")));
    }

    #[test]
    fn symlink_inside_root_is_followed_only_when_allowed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical");
        std::fs::write(base.join("real.csv"), b"data").expect("write");
        std::os::unix::fs::symlink(base.join("real.csv"), base.join("link.csv")).expect("link");

        let strict = root(&base, true, false);
        let entry = strict.classify(&base.join("link.csv")).expect("classify");
        assert_eq!(entry, Entry::Skipped(SkipReason::Symlink));

        let following = root(&base, true, true);
        let real = following
            .classify(&base.join("real.csv"))
            .expect("classify");
        let linked = following
            .classify(&base.join("link.csv"))
            .expect("classify");
        assert!(matches!(linked, Entry::File(_)));
        assert_eq!(linked, real, "the link has its target's identity");
    }

    #[test]
    fn followed_symlink_leaving_the_root_is_skipped() {
        let outside = tempfile::tempdir().expect("tempdir");
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = outside.path().join("secret.txt");
        std::fs::write(&secret, b"secret").expect("write");
        let base = dir.path().canonicalize().expect("canonical");
        std::os::unix::fs::symlink(&secret, base.join("innocent.txt")).expect("link");
        std::os::unix::fs::symlink(outside.path(), base.join("folder")).expect("link");
        std::os::unix::fs::symlink(base.join("missing"), base.join("dangling")).expect("link");

        let r = root(&base, true, true);
        let outside_entry = r.classify(&base.join("innocent.txt")).expect("classify");
        assert_eq!(
            outside_entry,
            Entry::Skipped(SkipReason::SymlinkOutsideRoot)
        );
        let walk = r.walk(&base);
        assert!(walk.files.is_empty(), "{:?}", walk.files);
        assert_eq!(walk.skipped.len(), 3, "{:?}", walk.skipped);
    }

    #[test]
    fn non_recursive_root_ignores_subfolders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir(base.join("sub")).expect("mkdir");
        std::fs::write(base.join("sub/a.csv"), b"a").expect("write");
        std::fs::write(base.join("top.csv"), b"t").expect("write");

        let walk = root(&base, false, false).walk(&base);
        let names: Vec<_> = walk.files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(names, [base.join("top.csv")]);
    }
}
