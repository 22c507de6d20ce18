//! Configuration: the TOML schema, environment overrides and validation.
//!
//! Loading happens in two stages, so that every error can name where it came
//! from:
//!
//! 1. [`raw`] deserialises the file into `RawConfig`, keeping the byte span of
//!    every value an error may need to point at, then applies
//!    `ONEDRIVE_SYNCD_*` environment overrides;
//! 2. [`validate`] turns the raw form into the typed [`Config`] below,
//!    collecting every problem (not just the first) as a [`ConfigError`] with
//!    file, line and column, or with the environment variable that set the
//!    value.
//!
//! Nothing here touches the network; the only I/O is reading the file.

mod error;
mod raw;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors, Location};

/// Where the configuration lives unless `--config` or `ONEDRIVE_SYNCD_CONFIG`
/// says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/onedrive-syncd/config.toml";

/// Prefix of every environment variable that overrides a setting.
pub const ENV_PREFIX: &str = "ONEDRIVE_SYNCD_";

/// Upload fragments must be a multiple of this many bytes (320 KiB), except the
/// last.
pub const FRAGMENT_ALIGNMENT_BYTES: u64 = 320 * 1024;

/// Graph refuses fragments of 60 MiB or more.
pub const MAX_FRAGMENT_BYTES: u64 = 60 * 1024 * 1024;

/// The validated, typed configuration the rest of the daemon works with.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this configuration was read from.
    pub source: PathBuf,
    /// The OneDrive application registration and the endpoints it talks to.
    pub application: ApplicationConfig,
    /// Where the refresh token is kept.
    pub token_store: TokenStoreConfig,
    /// Where the daemon keeps its queue database and control socket.
    pub state: StateConfig,
    /// The upload worker pool.
    pub uploader: UploaderConfig,
    /// How the outboxes are watched.
    pub watch: WatchConfig,
    /// Log level and destinations.
    pub logging: LoggingConfig,
    /// One entry per watched local folder.
    pub mappings: Vec<Mapping>,
}

/// The Microsoft application the daemon signs in as, and the endpoints it uses.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplicationConfig {
    /// Application (client) id of the app registration.
    pub client_id: String,
    /// Tenant segment of the identity endpoints: `consumers` for personal
    /// accounts.
    pub tenant: String,
    /// Base URL of the identity platform, without the tenant segment.
    pub authority_url: url::Url,
    /// Base URL of Microsoft Graph, including the version segment.
    pub graph_url: url::Url,
    /// OAuth scopes requested at login.
    pub scopes: Vec<String>,
}

/// Which backend keeps the refresh token.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenStoreConfig {
    /// An encrypted file on local disk.
    EncryptedFile {
        /// The encrypted token file.
        path: PathBuf,
        /// The 256-bit key file, used when no systemd credential provides the
        /// key.
        key_path: PathBuf,
        /// Name of the systemd credential that holds the key, if any.
        credential_name: String,
    },
}

/// Where the daemon keeps its own state.
#[derive(Clone, Debug, PartialEq)]
pub struct StateConfig {
    /// Directory of the sled queue database.
    pub directory: PathBuf,
    /// Path of the Unix control socket.
    pub control_socket: PathBuf,
}

/// The upload worker pool.
#[derive(Clone, Debug, PartialEq)]
pub struct UploaderConfig {
    /// Number of concurrent uploads.
    pub workers: usize,
    /// Graph requests per second for the whole process.
    pub requests_per_second: u32,
    /// Size of one upload-session fragment; a multiple of 320 KiB, under 60
    /// MiB.
    pub fragment_size_bytes: u64,
    /// Files up to this size go by simple upload; larger ones by upload
    /// session.
    pub simple_upload_threshold_bytes: u64,
    /// Immediate retries of one request before the job is rescheduled.
    pub retries: u32,
    /// Longest delay before a rescheduled job is tried again.
    pub max_retry_delay: Duration,
}

/// How the outboxes are watched.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchConfig {
    /// How often every mapping root is walked even without file events: the
    /// safety net for anything inotify did not report (a file finished through
    /// a hard link, a lost event).
    pub rescan_interval: Duration,
}

/// Log level and destinations.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggingConfig {
    /// A `tracing` filter such as `info` or `onedrive_syncd=debug`.
    pub level: String,
    /// Whether to log to journald: `Auto` decides from `JOURNAL_STREAM`.
    pub journald: JournaldMode,
}

/// Whether to log to journald.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournaldMode {
    /// Journald when stderr is connected to the journal, stderr otherwise.
    Auto,
    /// Always journald.
    Always,
    /// Never journald.
    Never,
}

/// What to do when a file of the same name already exists on OneDrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictPolicy {
    /// Overwrite the remote file (OneDrive keeps the old one as a version).
    Replace,
    /// Keep both: OneDrive names the new one `name 1.ext`.
    Rename,
    /// Fail the job and leave the local file in place.
    Fail,
}

impl ConflictPolicy {
    /// The value of `@microsoft.graph.conflictBehavior` for this policy.
    pub fn as_graph_value(self) -> &'static str {
        match self {
            ConflictPolicy::Replace => "replace",
            ConflictPolicy::Rename => "rename",
            ConflictPolicy::Fail => "fail",
        }
    }
}

/// What to do with a local file once its upload is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterUpload {
    /// Delete the local file.
    Delete,
    /// Leave it; it is not uploaded again unless it changes.
    Keep,
    /// Move it into this folder, keeping its path relative to the mapping root.
    MoveTo(PathBuf),
}

/// One watched local folder and where its files go.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    /// A short name for logs and status; defaults to the local path.
    pub name: String,
    /// Absolute local folder that is watched.
    pub local_path: PathBuf,
    /// OneDrive folder, as `/`-separated segments below the drive root (empty =
    /// the root).
    pub remote_path: Vec<String>,
    /// Whether subfolders are watched and mirrored.
    pub recursive: bool,
    /// Only files matching one of these globs are uploaded (all when empty).
    pub include: Vec<String>,
    /// Files matching one of these globs are never uploaded.
    pub exclude: Vec<String>,
    /// How long size and mtime must stay unchanged before a file counts as
    /// complete.
    pub settle_time: Duration,
    /// What to do on a name conflict.
    pub conflict: ConflictPolicy,
    /// What to do with the local file after a verified upload.
    pub after_upload: AfterUpload,
    /// Whether symlinks inside the root are followed (never outside it).
    pub follow_symlinks: bool,
}

impl Mapping {
    /// The remote folder as a path string, `/` for the drive root.
    pub fn remote_display(&self) -> String {
        format!("/{}", self.remote_path.join("/"))
    }
}

impl Config {
    /// Reads, overrides from the process environment, and validates the file at
    /// `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`], with the environment given explicitly (for
    /// tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            ConfigErrors::single(ConfigError::Unreadable {
                path: path.to_path_buf(),
                source,
            })
        })?;
        Self::parse(path, &text, env)
    }

    /// Parses and validates configuration text that came from `path`.
    pub fn parse(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut raw = raw::RawConfig::from_toml(path, text)?;
        let overrides = raw.apply_env(path, env)?;
        validate::validate(path, text, raw, &overrides)
    }
}
