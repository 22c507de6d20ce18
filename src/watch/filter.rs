//! Include and exclude globs of one mapping.
//!
//! Patterns are matched against the path relative to the mapping root, and
//! also against bare names: excludes against every component of the path (so
//! `.*` hides a hidden folder and everything in it), includes against the
//! file name (so `*.csv` means "any CSV file, at any depth"). `*` may cross
//! `/`, as in a shell's `**`.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::WatchError;

// LIMITATION: defaults cannot be re-included — includes only narrow the set.
/// Names never uploaded, whatever the mapping says: hidden files and folders,
/// and the temporary names editors and downloaders use before a rename.
pub const DEFAULT_EXCLUDES: &[&str] = &[".*", "*.tmp", "*.part", "*.swp", "*~", ".~*"];

/// A mapping's compiled include and exclude globs.
#[derive(Clone, Debug)]
pub(crate) struct PathFilter {
    /// `None` when the mapping lists no includes: everything is included.
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl PathFilter {
    /// Compiles the mapping's globs; [`DEFAULT_EXCLUDES`] are always added.
    pub(crate) fn new(
        mapping: &str,
        include: &[String],
        exclude: &[String],
    ) -> Result<PathFilter, WatchError> {
        let include = if include.is_empty() {
            None
        } else {
            Some(build(mapping, include.iter().map(String::as_str))?)
        };
        let excludes = DEFAULT_EXCLUDES
            .iter()
            .copied()
            .chain(exclude.iter().map(String::as_str));
        Ok(PathFilter {
            include,
            exclude: build(mapping, excludes)?,
        })
    }

    /// Whether a folder at `relative` may be entered.
    pub(crate) fn allows_dir(&self, relative: &Path) -> bool {
        !self.is_excluded(relative)
    }

    /// Whether a file at `relative` is to be uploaded.
    pub(crate) fn allows_file(&self, relative: &Path) -> bool {
        if self.is_excluded(relative) {
            return false;
        }
        match &self.include {
            None => true,
            Some(include) => {
                include.is_match(relative)
                    || relative
                        .file_name()
                        .is_some_and(|name| include.is_match(name))
            }
        }
    }

    fn is_excluded(&self, relative: &Path) -> bool {
        self.exclude.is_match(relative)
            || relative
                .components()
                .any(|part| self.exclude.is_match(part.as_os_str()))
    }
}

fn build<'a>(
    mapping: &str,
    patterns: impl Iterator<Item = &'a str>,
) -> Result<GlobSet, WatchError> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|source| WatchError::InvalidGlob {
            mapping: mapping.to_string(),
            pattern: pattern.to_string(),
            source,
        })?;
        set.add(glob);
    }
    set.build().map_err(|source| WatchError::InvalidGlob {
        mapping: mapping.to_string(),
        pattern: "(the set as a whole)".to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> PathFilter {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PathFilter::new("test", &owned(include), &owned(exclude)).expect("valid globs")
    }

    #[test]
    fn default_excludes_hide_temporary_and_hidden_names() {
        let f = filter(&[], &[]);
        for name in [
            "a.tmp",
            "a.part",
            ".a.swp",
            "a~",
            ".~lock.a#",
            ".hidden",
            "d/x.tmp",
        ] {
            assert!(!f.allows_file(Path::new(name)), "{name} should be excluded");
        }
        for name in ["a.csv", "d/e/report.pdf", "tmp/a.csv", "a.tmp.csv"] {
            assert!(f.allows_file(Path::new(name)), "{name} should be allowed");
        }
    }

    #[test]
    fn hidden_folder_hides_its_contents() {
        let f = filter(&[], &[]);
        assert!(!f.allows_dir(Path::new("sub/.cache")));
        assert!(!f.allows_file(Path::new("sub/.cache/data.csv")));
        assert!(f.allows_dir(Path::new("sub/cache")));
    }

    #[test]
    fn includes_match_names_at_any_depth_and_relative_paths() {
        let f = filter(&["*.csv", "exports/*.json"], &[]);
        assert!(f.allows_file(Path::new("a.csv")));
        assert!(f.allows_file(Path::new("deep/down/a.csv")));
        assert!(f.allows_file(Path::new("exports/b.json")));
        assert!(!f.allows_file(Path::new("b.json")));
        assert!(!f.allows_file(Path::new("a.txt")));
        assert!(
            f.allows_dir(Path::new("deep")),
            "includes never hide folders"
        );
    }

    #[test]
    fn mapping_excludes_add_to_the_defaults() {
        let f = filter(&[], &["*.log", "scratch/*"]);
        assert!(!f.allows_file(Path::new("x/run.log")));
        assert!(!f.allows_file(Path::new("scratch/a.csv")));
        assert!(!f.allows_file(Path::new("a.tmp")));
        assert!(f.allows_file(Path::new("a.csv")));
    }

    #[test]
    fn invalid_glob_names_mapping_and_pattern() {
        let err = PathFilter::new("reports", &[], &["a[".to_string()]).expect_err("bad glob");
        let text = err.to_string();
        assert!(text.contains("reports") && text.contains("a["), "{text}");
    }
}
