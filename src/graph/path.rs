//! Remote paths: validated against OneDrive's name rules, encoded one segment
//! at a time.
//!
//! A [`RemotePath`] can only be built from names that pass
//! [`super::names::check_name`], so an invalid name is refused before any
//! request, with an error naming the character or the reserved word. Encoding
//! follows RFC 3986: each segment is percent-encoded on its own, and everything
//! but the unreserved characters (`A-Z a-z 0-9 - . _ ~`) is escaped. That
//! covers the characters that broke real clients: space, `#` (a fragment
//! delimiter), `%` (OneDrive once decoded it twice), `+` (once read as a
//! space), `?`, and every non-ASCII byte.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::names::{check_name, split_path, NameError, MAX_PATH_CHARS};
use super::GraphError;

/// Bytes escaped in a path segment: all but RFC 3986's unreserved set.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path below the drive root, such as `/reports/2024/summary.csv`; empty for
/// the root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RemotePath {
    segments: Vec<String>,
}

impl RemotePath {
    /// The drive root.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses a `/`-separated path; leading and trailing slashes are optional.
    pub fn parse(path: &str) -> Result<Self, GraphError> {
        split_path(path)
            .map(|segments| Self { segments })
            .map_err(|source| GraphError::InvalidName {
                path: path.to_string(),
                source,
            })
    }

    /// Builds a path from names, checking each one and the total length.
    pub fn from_segments(segments: Vec<String>) -> Result<Self, GraphError> {
        let path = Self { segments };
        let invalid = |source| GraphError::InvalidName {
            path: path.to_string(),
            source,
        };
        for segment in &path.segments {
            check_name(segment).map_err(invalid)?;
        }
        let chars = path.to_string().chars().count();
        if chars >= MAX_PATH_CHARS {
            return Err(invalid(NameError::PathTooLong { chars }));
        }
        Ok(path)
    }

    /// This path with `name` appended.
    pub fn join(&self, name: &str) -> Result<Self, GraphError> {
        let mut segments = self.segments.clone();
        segments.push(name.to_string());
        Self::from_segments(segments)
    }

    /// Whether this is the drive root.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The names from the root down.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The last name; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// The folder that holds this item; `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        let (_, parent) = self.segments.split_last()?;
        Some(Self {
            segments: parent.to_vec(),
        })
    }

    /// The first `depth` names (the root for 0).
    pub fn prefix(&self, depth: usize) -> Self {
        Self {
            segments: self.segments[..depth.min(self.segments.len())].to_vec(),
        }
    }

    /// The segments percent-encoded and joined with `/`, without a leading
    /// slash, for Graph's `root:/{path}:` addressing.
    pub fn encoded(&self) -> String {
        let encoded: Vec<String> = self
            .segments
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect();
        encoded.join("/")
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for segment in &self.segments {
            write!(f, "/{segment}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for RemotePath {
    type Error = GraphError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RemotePath> for String {
    fn from(path: RemotePath) -> Self {
        path.to_string()
    }
}

/// Percent-encodes one path segment that is not a name, such as an item id.
pub(crate) fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn troublesome_characters_are_encoded_per_segment() {
        let path = RemotePath::parse("/in box/50% #1+2/日本語 ファイル.txt").unwrap();
        assert_eq!(
            path.encoded(),
            "in%20box/50%25%20%231%2B2/%E6%97%A5%E6%9C%AC%E8%AA%9E%20%E3%83%95%E3%82%A1%E3%82%A4\
             %E3%83%AB.txt"
        );
        assert_eq!(path.to_string(), "/in box/50% #1+2/日本語 ファイル.txt");
        assert_eq!(encode_segment("a?b&c=d"), "a%3Fb%26c%3Dd");
        assert_eq!(encode_segment("keep-._~"), "keep-._~");
    }

    #[test]
    fn invalid_names_are_refused_with_the_reason() {
        let err = RemotePath::parse("/reports/a:b.txt").unwrap_err();
        assert!(
            matches!(
                &err,
                GraphError::InvalidName {
                    source: NameError::InvalidCharacter { character: ':', .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("`a:b.txt` contains `:`"), "{err}");

        let err = RemotePath::parse("/x/CON.txt").unwrap_err();
        assert!(err.to_string().contains("reserves"), "{err}");
        assert!(RemotePath::root().join("trailing.").is_err());
        assert!(RemotePath::from_segments(vec!["a/b".into()]).is_err());
    }

    #[test]
    fn paths_navigate() {
        let path = RemotePath::parse("a/b/c.txt").unwrap();
        assert_eq!(path.name(), Some("c.txt"));
        assert_eq!(path.parent().unwrap().to_string(), "/a/b");
        assert_eq!(path.prefix(1).to_string(), "/a");
        assert_eq!(path.prefix(0), RemotePath::root());
        assert_eq!(RemotePath::root().parent(), None);
        assert_eq!(RemotePath::parse("/").unwrap(), RemotePath::root());
        assert_eq!(RemotePath::root().to_string(), "/");
    }

    #[test]
    fn paths_round_trip_through_serde_with_validation() {
        let path = RemotePath::parse("/a b/c").unwrap();
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(json, "\"/a b/c\"");
        assert_eq!(serde_json::from_str::<RemotePath>(&json).unwrap(), path);
        assert!(serde_json::from_str::<RemotePath>("\"/a|b\"").is_err());
    }
}
