//! OneDrive's rules for item names and paths, checked before any request is
//! sent.
//!
//! Sources: Microsoft's "Restrictions and limitations in OneDrive and
//! SharePoint" and the Graph addressing page. Personal OneDrive refuses the
//! characters `" * : < > ? / \ |`, leading or trailing spaces, a trailing dot,
//! a set of reserved names (case-insensitive, with or without an extension),
//! `_vti_` anywhere, a `~$` prefix and `forms` as a top-level folder; the
//! decoded path must be shorter than 400 characters. Names compare
//! case-insensitively on the server.

/// Characters OneDrive refuses anywhere in a name.
pub const INVALID_CHARACTERS: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];

/// Names OneDrive reserves, compared case-insensitively, alone or before an
/// extension.
const RESERVED_STEMS: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM0", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7",
    "COM8", "COM9", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Whole names OneDrive reserves, compared case-insensitively.
const RESERVED_NAMES: &[&str] = &[".lock", "desktop.ini"];

/// The decoded path of an item must be shorter than this many characters.
pub const MAX_PATH_CHARS: usize = 400;

/// Why OneDrive would refuse a name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty (two slashes in a row, for example).
    #[error("an empty name is not allowed (look for `//` in the path)")]
    Empty,
    /// The name contains a character OneDrive refuses.
    #[error("`{name}` contains `{character}`, which OneDrive does not allow in names")]
    InvalidCharacter {
        /// The name.
        name: String,
        /// The first refused character.
        character: char,
    },
    /// The name contains a control character such as a newline, or a character
    /// from the Specials block (U+FFF0 to U+FFFF), which Graph answers with an
    /// HTML error page.
    #[error(
        "`{}` contains a control or special character (such as a newline or U+FFFD)",
        name.escape_debug()
    )]
    ControlCharacter {
        /// The name.
        name: String,
    },
    /// The name starts or ends with a space.
    #[error("`{name}` starts or ends with a space, which OneDrive does not allow")]
    SurroundingSpace {
        /// The name.
        name: String,
    },
    /// The name ends with a dot.
    #[error("`{name}` ends with a dot, which OneDrive does not allow")]
    TrailingDot {
        /// The name.
        name: String,
    },
    /// The name is reserved.
    #[error("`{name}` is a name OneDrive reserves; choose another name")]
    Reserved {
        /// The name.
        name: String,
    },
    /// The whole path is too long.
    #[error("the path is {chars} characters long; OneDrive allows fewer than {MAX_PATH_CHARS}")]
    PathTooLong {
        /// Length of the decoded path in characters.
        chars: usize,
    },
}

/// Checks one name (a single path segment) against OneDrive's rules.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(character) = name.chars().find(|c| INVALID_CHARACTERS.contains(c)) {
        return Err(NameError::InvalidCharacter {
            name: name.to_string(),
            character,
        });
    }
    if name
        .chars()
        .any(|c| c.is_control() || ('\u{FFF0}'..='\u{FFFF}').contains(&c))
    {
        return Err(NameError::ControlCharacter {
            name: name.to_string(),
        });
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(NameError::SurroundingSpace {
            name: name.to_string(),
        });
    }
    if name.ends_with('.') {
        return Err(NameError::TrailingDot {
            name: name.to_string(),
        });
    }
    if is_reserved(name) {
        return Err(NameError::Reserved {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let stem = lower.split('.').next().unwrap_or_default();
    RESERVED_NAMES.contains(&lower.as_str())
        || RESERVED_STEMS
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(stem))
        || lower.contains("_vti_")
        || lower.starts_with("~$")
}

/// Splits a `/`-separated path into names and checks each, and the total
/// length.
///
/// Leading and trailing slashes are ignored, so `/`, `` and `/a/b/` are all
/// accepted.
pub fn split_path(path: &str) -> Result<Vec<String>, NameError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let chars = trimmed.chars().count() + 1;
    if chars >= MAX_PATH_CHARS {
        return Err(NameError::PathTooLong { chars });
    }
    let segments = trimmed.split('/').map(String::from).collect::<Vec<_>>();
    for segment in &segments {
        check_name(segment)?;
    }
    if segments[0].eq_ignore_ascii_case("forms") {
        return Err(NameError::Reserved {
            name: segments[0].clone(),
        });
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "report.csv",
            "a b",
            "50% done",
            "#1",
            "a+b",
            "日本語.txt",
            ".hidden",
            "~x",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn each_refused_character_is_named() {
        for character in INVALID_CHARACTERS {
            let name = format!("a{character}b");
            assert_eq!(
                check_name(&name),
                Err(NameError::InvalidCharacter {
                    name: name.clone(),
                    character: *character
                })
            );
        }
    }

    #[test]
    fn reserved_names_are_refused_with_or_without_extension() {
        for name in [
            "CON",
            "con.txt",
            "Lpt1.log",
            "desktop.ini",
            ".lock",
            "a_vti_b",
            "~$doc",
        ] {
            assert!(
                matches!(check_name(name), Err(NameError::Reserved { .. })),
                "{name}"
            );
        }
        assert_eq!(check_name("console.txt"), Ok(()));
    }

    #[test]
    fn spaces_dots_and_control_characters_are_refused() {
        assert!(matches!(
            check_name(" a"),
            Err(NameError::SurroundingSpace { .. })
        ));
        assert!(matches!(
            check_name("a "),
            Err(NameError::SurroundingSpace { .. })
        ));
        assert!(matches!(
            check_name("a."),
            Err(NameError::TrailingDot { .. })
        ));
        assert!(matches!(
            check_name("a\nb"),
            Err(NameError::ControlCharacter { .. })
        ));
        assert!(matches!(
            check_name("a\u{FFFD}b"),
            Err(NameError::ControlCharacter { .. })
        ));
    }

    #[test]
    fn paths_split_into_checked_names() {
        assert_eq!(split_path("/"), Ok(vec![]));
        assert_eq!(
            split_path("/a/b/"),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(split_path("a//b"), Err(NameError::Empty));
        assert!(matches!(
            split_path("/Forms/x"),
            Err(NameError::Reserved { .. })
        ));
        assert_eq!(
            split_path("/a/forms"),
            Ok(vec!["a".to_string(), "forms".to_string()])
        );
        let long = "x/".repeat(200);
        assert!(matches!(
            split_path(&long),
            Err(NameError::PathTooLong { .. })
        ));
    }
}
