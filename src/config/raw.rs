//! The configuration as written: serde types that keep the span of every value.
//!
//! Every leaf is optional here; defaults are filled in by validation, so that
//! an error can still point at what the admin wrote. Environment overrides
//! replace a value and remember which variable set it, so that an error about
//! it names the variable instead of a line.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::error::{closest, ConfigError, ConfigErrors, Location};
use super::ENV_PREFIX;

/// An optional value together with where it was written.
pub type Field<T> = Option<Spanned<T>>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub application: RawApplication,
    #[serde(default)]
    pub token_store: RawTokenStore,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub uploader: RawUploader,
    #[serde(default)]
    pub watch: RawWatch,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub mapping: Vec<Spanned<RawMapping>>,
}

/// `[application]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApplication {
    pub client_id: Field<String>,
    pub tenant: Field<String>,
    pub authority_url: Field<String>,
    pub graph_url: Field<String>,
    pub scopes: Field<Vec<String>>,
}

/// `[token_store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenStore {
    pub kind: Field<String>,
    pub path: Field<String>,
    pub key_path: Field<String>,
    pub credential_name: Field<String>,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub directory: Field<String>,
    pub control_socket: Field<String>,
}

/// `[uploader]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUploader {
    pub workers: Field<i64>,
    pub requests_per_second: Field<i64>,
    pub fragment_size: Field<RawSize>,
    pub simple_upload_threshold: Field<RawSize>,
    pub retries: Field<i64>,
    pub max_retry_delay: Field<String>,
}

/// `[watch]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    pub rescan_interval: Field<String>,
}

/// `[logging]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub level: Field<String>,
    pub journald: Field<String>,
}

/// One `[[mapping]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    pub name: Field<String>,
    pub local_path: Field<String>,
    pub remote_path: Field<String>,
    pub recursive: Field<bool>,
    pub include: Field<Vec<String>>,
    pub exclude: Field<Vec<String>>,
    pub settle_time: Field<String>,
    pub conflict: Field<String>,
    pub after_upload: Field<String>,
    pub move_to: Field<String>,
    pub follow_symlinks: Field<bool>,
}

/// A size as people write it: `"10 MiB"`, or a plain number of bytes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}

/// Which environment variable overrode which key (`section.key`).
pub type Overrides = BTreeMap<String, String>;

/// Every key an environment variable may override, as `(section, key)`.
///
/// Mappings are lists and are configured in the file only.
pub const OVERRIDABLE: &[(&str, &str)] = &[
    ("application", "client_id"),
    ("application", "tenant"),
    ("application", "authority_url"),
    ("application", "graph_url"),
    ("application", "scopes"),
    ("token_store", "kind"),
    ("token_store", "path"),
    ("token_store", "key_path"),
    ("token_store", "credential_name"),
    ("state", "directory"),
    ("state", "control_socket"),
    ("uploader", "workers"),
    ("uploader", "requests_per_second"),
    ("uploader", "fragment_size"),
    ("uploader", "simple_upload_threshold"),
    ("uploader", "retries"),
    ("uploader", "max_retry_delay"),
    ("watch", "rescan_interval"),
    ("logging", "level"),
    ("logging", "journald"),
];

/// Variables with the prefix that are not overrides.
const NOT_OVERRIDES: &[&str] = &["CONFIG"];

/// The environment variable that overrides `section.key`.
pub fn env_var_name(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}_{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

impl RawConfig {
    /// Deserialises configuration text, reporting the first structural problem
    /// with its place.
    pub fn from_toml(path: &Path, text: &str) -> Result<RawConfig, ConfigErrors> {
        toml::from_str(text)
            .map_err(|err| ConfigErrors::single(describe_toml_error(path, text, &err)))
    }

    /// Applies `ONEDRIVE_SYNCD_<SECTION>_<KEY>` variables from `env`.
    ///
    /// Returns which key each variable overrode. An unknown variable with the
    /// prefix is an error, since a typo there would otherwise be ignored
    /// silently.
    pub fn apply_env(
        &mut self,
        _path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Overrides, ConfigErrors> {
        let mut overrides = Overrides::new();
        let mut errors = Vec::new();
        for (var, value) in env {
            let Some(suffix) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if NOT_OVERRIDES.contains(&suffix) {
                continue;
            }
            let target = OVERRIDABLE
                .iter()
                .find(|(section, key)| env_var_name(section, key) == var);
            let Some(&(section, key)) = target else {
                let known = OVERRIDABLE
                    .iter()
                    .map(|(s, k)| env_var_name(s, k))
                    .collect::<Vec<_>>();
                errors.push(ConfigError::UnknownKey {
                    location: Location::Env { var: var.clone() },
                    key: var.clone(),
                    suggestion: closest(&var, known.iter().map(String::as_str)),
                });
                continue;
            };
            match self.set(section, key, &value) {
                Ok(()) => {
                    overrides.insert(format!("{section}.{key}"), var);
                }
                Err(message) => errors.push(ConfigError::Invalid {
                    location: Location::Env { var },
                    key: format!("{section}.{key}"),
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(overrides)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Sets one overridable key from an environment variable's text.
    fn set(&mut self, section: &str, key: &str, text: &str) -> Result<(), String> {
        fn text_value(text: &str) -> Field<String> {
            Some(Spanned::new(0..0, text.to_string()))
        }
        fn integer(text: &str) -> Result<Field<i64>, String> {
            let number = text
                .trim()
                .parse()
                .map_err(|_| format!("must be a whole number, not `{text}`"))?;
            Ok(Some(Spanned::new(0..0, number)))
        }
        fn size(text: &str) -> Field<RawSize> {
            let value = match text.trim().parse() {
                Ok(bytes) => RawSize::Bytes(bytes),
                Err(_) => RawSize::Text(text.to_string()),
            };
            Some(Spanned::new(0..0, value))
        }
        fn list(text: &str) -> Field<Vec<String>> {
            let items = text
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(String::from);
            Some(Spanned::new(0..0, items.collect()))
        }

        let app = &mut self.application;
        let store = &mut self.token_store;
        let up = &mut self.uploader;
        match (section, key) {
            ("application", "client_id") => app.client_id = text_value(text),
            ("application", "tenant") => app.tenant = text_value(text),
            ("application", "authority_url") => app.authority_url = text_value(text),
            ("application", "graph_url") => app.graph_url = text_value(text),
            ("application", "scopes") => app.scopes = list(text),
            ("token_store", "kind") => store.kind = text_value(text),
            ("token_store", "path") => store.path = text_value(text),
            ("token_store", "key_path") => store.key_path = text_value(text),
            ("token_store", "credential_name") => store.credential_name = text_value(text),
            ("state", "directory") => self.state.directory = text_value(text),
            ("state", "control_socket") => self.state.control_socket = text_value(text),
            ("uploader", "workers") => up.workers = integer(text)?,
            ("uploader", "requests_per_second") => up.requests_per_second = integer(text)?,
            ("uploader", "fragment_size") => up.fragment_size = size(text),
            ("uploader", "simple_upload_threshold") => up.simple_upload_threshold = size(text),
            ("uploader", "retries") => up.retries = integer(text)?,
            ("uploader", "max_retry_delay") => up.max_retry_delay = text_value(text),
            ("watch", "rescan_interval") => self.watch.rescan_interval = text_value(text),
            ("logging", "level") => self.logging.level = text_value(text),
            ("logging", "journald") => self.logging.journald = text_value(text),
            _ => return Err("cannot be set from the environment".to_string()),
        }
        Ok(())
    }
}

/// Turns a `toml` error into one that names the line and, for unknown keys,
/// suggests one.
fn describe_toml_error(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let location = match err.span() {
        Some(span) => Location::in_file(path, text, span),
        None => Location::Whole {
            path: path.to_path_buf(),
        },
    };
    let message = err.message().trim().to_string();
    if let Some((key, expected)) = parse_unknown_field(&message) {
        let suggestion = closest(&key, expected.iter().map(String::as_str));
        return ConfigError::UnknownKey {
            location,
            key,
            suggestion,
        };
    }
    ConfigError::Syntax {
        location,
        message: reword(&message),
    }
}

/// Extracts the key and the expected keys from serde's "unknown field" message.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect::<Vec<_>>();
    Some((key.to_string(), expected))
}

/// Makes serde's type complaints read as advice.
fn reword(message: &str) -> String {
    if message.contains("data did not match any variant of untagged enum RawSize") {
        return "a size must be a number of bytes or text like \"10 MiB\"".to_string();
    }
    message.replace("invalid type: ", "wrong type: ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_message_is_parsed() {
        let message = "unknown field `remote_pth`, expected one of `name`, `remote_path`";
        let (key, expected) = parse_unknown_field(message).expect("parses");
        assert_eq!(key, "remote_pth");
        assert_eq!(expected, vec!["name", "remote_path"]);
    }

    #[test]
    fn every_overridable_key_can_be_set() {
        let mut raw = RawConfig::default();
        for (section, key) in OVERRIDABLE {
            let value = if *key == "workers" || *key == "retries" {
                "3"
            } else {
                "x"
            };
            let result = if key.ends_with("requests_per_second") {
                raw.set(section, key, "7")
            } else {
                raw.set(section, key, value)
            };
            assert!(result.is_ok(), "{section}.{key}");
        }
    }
}
