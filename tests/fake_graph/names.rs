//! Personal OneDrive naming rules, applied to every item the fake creates.
//!
//! Source: Microsoft's "Restrictions and limitations in OneDrive and
//! SharePoint" page and the project's fact sheet (§2). Matching is
//! case-insensitive everywhere: two siblings may not differ only in case, and
//! an item keeps the case it was created with. Lookups use [`key`], a lowercase
//! fold of the name.

/// Why a name or path was refused: the Graph inner error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameProblem {
    /// Inner error code Graph puts under `innerError.code`.
    pub(crate) inner_code: &'static str,
    /// Human-readable message for the error body.
    pub(crate) message: String,
}

/// Characters OneDrive refuses anywhere in a name.
const INVALID_CHARS: [char; 9] = ['"', '*', ':', '<', '>', '?', '/', '\\', '|'];

/// Device names refused as a name or as the part before the first dot
/// (`CON.txt`).
const DEVICE_NAMES: [&str; 4] = ["con", "prn", "aux", "nul"];

/// The longest decoded path, counted without the leading slash, that is
/// refused: a path must stay under this many characters.
pub(crate) const MAX_PATH_CHARS: usize = 400;

/// The lookup key of a name: names match case-insensitively.
pub(crate) fn key(name: &str) -> String {
    name.to_lowercase()
}

/// Checks one path segment against the personal OneDrive rules.
pub(crate) fn check_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(problem("invalidPath", "A path segment is empty".to_owned()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| INVALID_CHARS.contains(c) || c.is_control())
    {
        return Err(problem(
            "nameContainsInvalidCharacters",
            format!("The name contains the invalid character {bad:?}"),
        ));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(problem(
            "invalidPath",
            "A name may not start or end with a space".into(),
        ));
    }
    if name.ends_with('.') {
        return Err(problem(
            "invalidPath",
            "A name may not end with a period".into(),
        ));
    }
    if is_reserved(name) {
        return Err(problem(
            "invalidPath",
            format!("The name {name:?} is reserved"),
        ));
    }
    Ok(())
}

/// Checks the length of a whole decoded path such as `a/b/c.txt`.
pub(crate) fn check_path_length(path_without_leading_slash: &str) -> Result<(), NameProblem> {
    let chars = path_without_leading_slash.chars().count();
    if chars >= MAX_PATH_CHARS {
        return Err(problem(
            "pathIsTooLong",
            format!("The path is {chars} characters; it must be under {MAX_PATH_CHARS}"),
        ));
    }
    Ok(())
}

/// The name OneDrive gives the `n`th renamed copy: `name 1.ext` for files,
/// `name 1` for folders.
pub(crate) fn renamed(name: &str, n: u32, is_file: bool) -> String {
    match name.rfind('.') {
        Some(dot) if is_file && dot > 0 => format!("{} {n}{}", &name[..dot], &name[dot..]),
        _ => format!("{name} {n}"),
    }
}

fn is_reserved(name: &str) -> bool {
    let lower = key(name);
    let stem = lower.split('.').next().unwrap_or_default();
    let numbered_device = |prefix: &str| {
        stem.len() == 4 && stem.starts_with(prefix) && stem.as_bytes()[3].is_ascii_digit()
    };
    DEVICE_NAMES.contains(&stem)
        || numbered_device("com")
        || numbered_device("lpt")
        || lower == ".lock"
        || lower == "desktop.ini"
        || lower.contains("_vti_")
        || lower.starts_with("~$")
}

fn problem(inner_code: &'static str, message: String) -> NameProblem {
    NameProblem {
        inner_code,
        message,
    }
}
