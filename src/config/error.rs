//! Configuration errors, each pointing at the place an admin has to edit.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where a bad value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A place in the configuration file (line and column count from 1).
    File {
        /// The configuration file.
        path: PathBuf,
        /// Line of the value, from 1.
        line: usize,
        /// Column of the value, from 1, in characters.
        column: usize,
    },
    /// An environment variable that overrode the file.
    Env {
        /// The variable's name.
        var: String,
    },
    /// The file as a whole (for problems that have no single place).
    Whole {
        /// The configuration file.
        path: PathBuf,
    },
}

impl Location {
    /// The location of byte offset `span.start` in `text`, read from `path`.
    pub fn in_file(path: &Path, text: &str, span: Range<usize>) -> Location {
        let start = span.start.min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..start].chars().count() + 1;
        Location::File {
            path: path.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, line, column } => {
                write!(f, "{} line {line}, column {column}", path.display())
            }
            Location::Env { var } => write!(f, "environment variable {var}"),
            Location::Whole { path } => write!(f, "{}", path.display()),
        }
    }
}

/// One problem with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error(
        "cannot read configuration {}: {source}; create it from config.example.toml or \
         point --config at the right file",
        path.display()
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The text is not valid TOML, or a value has the wrong type.
    #[error("{location}: {message}")]
    Syntax {
        /// Where.
        location: Location,
        /// What the parser said, reworded where it helps.
        message: String,
    },
    /// A key that the schema does not know, probably a typo.
    #[error("{location}: unknown key `{key}`{}", suggestion_text(suggestion))]
    UnknownKey {
        /// Where.
        location: Location,
        /// The key as written.
        key: String,
        /// The closest known key, if one is close.
        suggestion: Option<String>,
    },
    /// A value of the right type that is not allowed.
    #[error("{location}: `{key}` {message}")]
    Invalid {
        /// Where.
        location: Location,
        /// The full key, such as `uploader.fragment_size` or
        /// `mapping[2].local_path`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(key) => format!("; did you mean `{key}`?"),
        None => String::new(),
    }
}

impl ConfigError {
    /// Where the problem is, when it has a place.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Unreadable { .. } => None,
            ConfigError::Syntax { location, .. }
            | ConfigError::UnknownKey { location, .. }
            | ConfigError::Invalid { location, .. } => Some(location),
        }
    }
}

/// Every problem found in one configuration, in file order.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// A list holding one error.
    pub fn single(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }

    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors::single(error)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        let noun = if count == 1 { "error" } else { "errors" };
        writeln!(f, "invalid configuration ({count} {noun}):")?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The closest of `candidates` to `word`, if it is close enough to be a likely
/// typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        let offset = text.find('2').unwrap_or_default();
        let location = Location::in_file(Path::new("c.toml"), text, offset..offset + 1);
        assert_eq!(
            location,
            Location::File {
                path: PathBuf::from("c.toml"),
                line: 2,
                column: 6
            }
        );
    }

    #[test]
    fn closest_suggests_typos_but_not_strangers() {
        let keys = ["remote_path", "local_path", "recursive"];
        assert_eq!(closest("remote_pth", keys), Some("remote_path".to_string()));
        assert_eq!(closest("zzz", keys), None);
    }
}
