//! From [`RawConfig`] to [`Config`]: defaults, types, and every rule a value
//! must follow.
//!
//! Validation collects all problems rather than stopping at the first, so that
//! one run of `check-config` shows an admin everything to fix.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{ConfigError, ConfigErrors, Location};
use super::raw::{Field, Overrides, RawConfig, RawMapping, RawSize};
use super::{
    AfterUpload, ApplicationConfig, Config, ConflictPolicy, JournaldMode, LoggingConfig, Mapping,
    StateConfig, TokenStoreConfig, UploaderConfig, WatchConfig, FRAGMENT_ALIGNMENT_BYTES,
    MAX_FRAGMENT_BYTES,
};
use crate::graph::names;

/// Defaults, in one place so the example file and the README can be checked
/// against them.
pub mod defaults {
    /// Identity endpoints for personal Microsoft accounts.
    pub const TENANT: &str = "consumers";
    /// Base URL of the Microsoft identity platform.
    pub const AUTHORITY_URL: &str = "https://login.microsoftonline.com";
    /// Base URL of Microsoft Graph v1.0.
    pub const GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
    /// Least privilege for uploading, plus a refresh token.
    pub const SCOPES: &[&str] = &["Files.ReadWrite", "offline_access"];
    /// The encrypted refresh-token file.
    pub const TOKEN_PATH: &str = "/var/lib/onedrive-syncd/token.enc";
    /// The key that encrypts the token file when no systemd credential provides
    /// one.
    pub const KEY_PATH: &str = "/etc/onedrive-syncd/token.key";
    /// The systemd credential that may provide the key.
    pub const CREDENTIAL_NAME: &str = "onedrive-syncd-token-key";
    /// The queue database's directory.
    pub const STATE_DIRECTORY: &str = "/var/lib/onedrive-syncd/queue";
    /// The control socket.
    pub const CONTROL_SOCKET: &str = "/run/onedrive-syncd/control.sock";
    /// Concurrent uploads.
    pub const WORKERS: usize = 5;
    /// Graph requests per second for the whole process.
    pub const REQUESTS_PER_SECOND: u32 = 10;
    /// 10 MiB, Microsoft's recommendation for fast, stable links.
    pub const FRAGMENT_SIZE_BYTES: u64 = 10 * 1024 * 1024;
    /// Files up to 4 MiB go by simple upload.
    pub const SIMPLE_UPLOAD_THRESHOLD_BYTES: u64 = 4 * 1024 * 1024;
    /// Immediate retries of one request.
    pub const RETRIES: u32 = 3;
    /// Longest pause before a rescheduled job is tried again.
    pub const MAX_RETRY_DELAY_SECS: u64 = 15 * 60;
    /// How often every mapping root is walked even without file events.
    pub const RESCAN_INTERVAL_SECS: u64 = 10 * 60;
    /// Log filter.
    pub const LOG_LEVEL: &str = "info";
    /// How long a file must stay unchanged before it is uploaded.
    pub const SETTLE_TIME_SECS: u64 = 5;
}

/// Largest simple upload Graph documents (250 MB); older pages say 4 MB.
const MAX_SIMPLE_UPLOAD_BYTES: u64 = 250_000_000;
/// More immediate retries than this only delays rescheduling.
const MAX_RETRIES: i64 = 10;
/// A sanity bound: more concurrent uploads than this only invites throttling.
const MAX_WORKERS: i64 = 64;

/// Validates `raw`, read from `path` whose text is `text`.
pub fn validate(
    path: &Path,
    text: &str,
    raw: RawConfig,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        path,
        text,
        overrides,
        errors: Vec::new(),
    };
    let application = v.application(&raw);
    let token_store = v.token_store(&raw);
    let state = v.state(&raw);
    let uploader = v.uploader(&raw);
    let watch = WatchConfig {
        rescan_interval: v
            .duration("watch.rescan_interval", &raw.watch.rescan_interval)
            .unwrap_or(Duration::from_secs(defaults::RESCAN_INTERVAL_SECS)),
    };
    let logging = v.logging(&raw);
    let mappings = raw
        .mapping
        .iter()
        .enumerate()
        .filter_map(|(index, mapping)| v.mapping(index, mapping))
        .collect::<Vec<_>>();
    v.check_overlaps(&raw.mapping, &mappings);

    if !v.errors.is_empty() {
        v.errors.sort_by_key(|error| match error.location() {
            Some(Location::File { line, column, .. }) => (*line, *column),
            _ => (usize::MAX, 0),
        });
        return Err(ConfigErrors(v.errors));
    }
    Ok(Config {
        source: path.to_path_buf(),
        application,
        token_store,
        state,
        uploader,
        watch,
        logging,
        mappings,
    })
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    overrides: &'a Overrides,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn location(&self, key: &str, span: Range<usize>) -> Location {
        match self.overrides.get(key) {
            Some(var) => Location::Env { var: var.clone() },
            None if span == (0..0) => Location::Whole {
                path: self.path.to_path_buf(),
            },
            None => Location::in_file(self.path, self.text, span),
        }
    }

    fn invalid(&mut self, key: &str, span: Range<usize>, message: impl Into<String>) {
        let location = self.location(key, span);
        self.errors.push(ConfigError::Invalid {
            location,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn string_or(&self, field: &Field<String>, default: &str) -> String {
        field
            .as_ref()
            .map_or_else(|| default.to_string(), |s| s.get_ref().clone())
    }

    fn application(&mut self, raw: &RawConfig) -> ApplicationConfig {
        let app = &raw.application;
        let client_id = self.string_or(&app.client_id, "").trim().to_string();
        let tenant = self.string_or(&app.tenant, defaults::TENANT);
        if let Some(field) = &app.tenant {
            let ok = !tenant.is_empty()
                && tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c));
            if !ok {
                self.invalid(
                    "application.tenant",
                    field.span(),
                    "must be `consumers`, `common`, `organizations` or a tenant id",
                );
            }
        }
        let authority_url = self.url(
            "application.authority_url",
            &app.authority_url,
            defaults::AUTHORITY_URL,
        );
        let graph_url = self.url("application.graph_url", &app.graph_url, defaults::GRAPH_URL);
        let scopes = match &app.scopes {
            Some(scopes) if scopes.get_ref().is_empty() => {
                self.invalid(
                    "application.scopes",
                    scopes.span(),
                    "must name at least one scope",
                );
                Vec::new()
            }
            Some(scopes) => scopes.get_ref().clone(),
            None => defaults::SCOPES.iter().map(|s| s.to_string()).collect(),
        };
        ApplicationConfig {
            client_id,
            tenant,
            authority_url,
            graph_url,
            scopes,
        }
    }

    /// Parses a URL and insists on HTTPS unless the host is this machine.
    fn url(&mut self, key: &str, field: &Field<String>, default: &str) -> url::Url {
        let fallback = || url::Url::parse(default).expect("built-in default URLs are valid");
        let Some(field) = field else {
            return fallback();
        };
        let url = match url::Url::parse(field.get_ref().trim()) {
            Ok(url) => url,
            Err(err) => {
                self.invalid(key, field.span(), format!("is not a valid URL ({err})"));
                return fallback();
            }
        };
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            _ => self.invalid(
                key,
                field.span(),
                "must use https:// (plain http:// is allowed only for 127.0.0.1, ::1 or localhost)",
            ),
        }
        url
    }

    fn token_store(&mut self, raw: &RawConfig) -> TokenStoreConfig {
        let store = &raw.token_store;
        if let Some(kind) = &store.kind {
            if kind.get_ref() != "encrypted-file" {
                self.invalid(
                    "token_store.kind",
                    kind.span(),
                    format!(
                        "`{}` is not a known store; use `encrypted-file`",
                        kind.get_ref()
                    ),
                );
            }
        }
        let path = self.absolute_path("token_store.path", &store.path, defaults::TOKEN_PATH);
        let key_path =
            self.absolute_path("token_store.key_path", &store.key_path, defaults::KEY_PATH);
        let credential_name = self.string_or(&store.credential_name, defaults::CREDENTIAL_NAME);
        TokenStoreConfig::EncryptedFile {
            path,
            key_path,
            credential_name,
        }
    }

    fn state(&mut self, raw: &RawConfig) -> StateConfig {
        let state = &raw.state;
        StateConfig {
            directory: self.absolute_path(
                "state.directory",
                &state.directory,
                defaults::STATE_DIRECTORY,
            ),
            control_socket: self.absolute_path(
                "state.control_socket",
                &state.control_socket,
                defaults::CONTROL_SOCKET,
            ),
        }
    }

    fn absolute_path(&mut self, key: &str, field: &Field<String>, default: &str) -> PathBuf {
        let Some(field) = field else {
            return PathBuf::from(default);
        };
        let path = PathBuf::from(field.get_ref());
        if !path.is_absolute() {
            self.invalid(
                key,
                field.span(),
                format!("must be an absolute path, not `{}`", path.display()),
            );
        }
        path
    }

    fn uploader(&mut self, raw: &RawConfig) -> UploaderConfig {
        let up = &raw.uploader;
        let workers = self.integer("uploader.workers", &up.workers, 1..=MAX_WORKERS);
        let requests_per_second = self.integer(
            "uploader.requests_per_second",
            &up.requests_per_second,
            1..=10_000,
        );
        let retries = self.integer("uploader.retries", &up.retries, 0..=MAX_RETRIES);
        let fragment_size_bytes = self.fragment_size(&up.fragment_size);
        let simple_upload_threshold_bytes = self
            .size(
                "uploader.simple_upload_threshold",
                &up.simple_upload_threshold,
            )
            .map_or(defaults::SIMPLE_UPLOAD_THRESHOLD_BYTES, |(bytes, span)| {
                if bytes > MAX_SIMPLE_UPLOAD_BYTES {
                    self.invalid(
                        "uploader.simple_upload_threshold",
                        span,
                        "must be at most 250 MB, Graph's limit for a simple upload",
                    );
                }
                bytes
            });
        let max_retry_delay = self
            .duration("uploader.max_retry_delay", &up.max_retry_delay)
            .unwrap_or(Duration::from_secs(defaults::MAX_RETRY_DELAY_SECS));
        UploaderConfig {
            workers: workers.map_or(defaults::WORKERS, |n| n as usize),
            requests_per_second: requests_per_second
                .map_or(defaults::REQUESTS_PER_SECOND, |n| n as u32),
            fragment_size_bytes,
            simple_upload_threshold_bytes,
            retries: retries.map_or(defaults::RETRIES, |n| n as u32),
            max_retry_delay,
        }
    }

    fn integer(
        &mut self,
        key: &str,
        field: &Field<i64>,
        allowed: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let field = field.as_ref()?;
        let value = *field.get_ref();
        if allowed.contains(&value) {
            return Some(value);
        }
        let (low, high) = (allowed.start(), allowed.end());
        self.invalid(
            key,
            field.span(),
            format!("must be from {low} to {high}, not {value}"),
        );
        None
    }

    fn size(&mut self, key: &str, field: &Field<RawSize>) -> Option<(u64, Range<usize>)> {
        let field = field.as_ref()?;
        let bytes = match field.get_ref() {
            RawSize::Bytes(bytes) if *bytes >= 0 => Ok(*bytes as u64),
            RawSize::Bytes(bytes) => Err(format!("must not be negative, not {bytes}")),
            RawSize::Text(text) => text
                .trim()
                .parse::<bytesize::ByteSize>()
                .map(|b| b.0)
                .map_err(|_| {
                    format!("`{text}` is not a size; write it like \"10 MiB\" or \"512 KiB\"")
                }),
        };
        match bytes {
            Ok(bytes) => Some((bytes, field.span())),
            Err(message) => {
                self.invalid(key, field.span(), message);
                None
            }
        }
    }

    fn fragment_size(&mut self, field: &Field<RawSize>) -> u64 {
        let key = "uploader.fragment_size";
        let Some((bytes, span)) = self.size(key, field) else {
            return defaults::FRAGMENT_SIZE_BYTES;
        };
        let kib = FRAGMENT_ALIGNMENT_BYTES / 1024;
        if bytes == 0 || bytes % FRAGMENT_ALIGNMENT_BYTES != 0 {
            let lower = (bytes / FRAGMENT_ALIGNMENT_BYTES).max(1) * FRAGMENT_ALIGNMENT_BYTES;
            let upper = (bytes / FRAGMENT_ALIGNMENT_BYTES + 1) * FRAGMENT_ALIGNMENT_BYTES;
            self.invalid(
                key,
                span,
                format!(
                    "must be a multiple of {kib} KiB (Graph refuses other fragment sizes); \
                     {bytes} bytes is not — try \"{} KiB\" or \"{} KiB\"",
                    lower / 1024,
                    upper / 1024
                ),
            );
        } else if bytes >= MAX_FRAGMENT_BYTES {
            self.invalid(
                key,
                span,
                format!(
                    "must be under 60 MiB (Graph's limit per request); the largest allowed is \
                     \"{} KiB\"",
                    (MAX_FRAGMENT_BYTES - FRAGMENT_ALIGNMENT_BYTES) / 1024
                ),
            );
        }
        bytes
    }

    fn duration(&mut self, key: &str, field: &Field<String>) -> Option<Duration> {
        let field = field.as_ref()?;
        match humantime::parse_duration(field.get_ref().trim()) {
            Ok(duration) if !duration.is_zero() => Some(duration),
            Ok(_) => {
                self.invalid(key, field.span(), "must be longer than zero");
                None
            }
            Err(_) => {
                let message = format!(
                    "`{}` is not a duration; write it like \"2s\", \"500ms\" or \"5m\"",
                    field.get_ref()
                );
                self.invalid(key, field.span(), message);
                None
            }
        }
    }

    fn logging(&mut self, raw: &RawConfig) -> LoggingConfig {
        let log = &raw.logging;
        let level = self.string_or(&log.level, defaults::LOG_LEVEL);
        if let Some(field) = &log.level {
            if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
                self.invalid(
                    "logging.level",
                    field.span(),
                    "must be a level (error, warn, info, debug, trace) or a tracing filter",
                );
            }
        }
        let journald = match log
            .journald
            .as_ref()
            .map(|f| (f.get_ref().as_str(), f.span()))
        {
            None | Some(("auto", _)) => JournaldMode::Auto,
            Some(("always", _)) => JournaldMode::Always,
            Some(("never", _)) => JournaldMode::Never,
            Some((other, span)) => {
                let message = format!("`{other}` is not one of `auto`, `always`, `never`");
                self.invalid("logging.journald", span, message);
                JournaldMode::Auto
            }
        };
        LoggingConfig { level, journald }
    }

    fn mapping(&mut self, index: usize, spanned: &Spanned<RawMapping>) -> Option<Mapping> {
        let raw = spanned.get_ref();
        let key = |name: &str| format!("mapping[{}].{name}", index + 1);
        let errors_before = self.errors.len();

        let Some(local) = &raw.local_path else {
            self.invalid(
                &key("local_path"),
                spanned.span(),
                "is missing; every mapping needs one",
            );
            return None;
        };
        let local_path = PathBuf::from(local.get_ref());
        if !local_path.is_absolute() {
            let message = format!("must be an absolute path, not `{}`", local_path.display());
            self.invalid(&key("local_path"), local.span(), message);
        } else if local_path
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            self.invalid(&key("local_path"), local.span(), "must not contain `..`");
        }

        let remote_path = match &raw.remote_path {
            None => {
                let message = "is missing; name the OneDrive folder, such as \"/Backups\"";
                self.invalid(&key("remote_path"), spanned.span(), message);
                Vec::new()
            }
            Some(remote) => match names::split_path(remote.get_ref()) {
                Ok(segments) => segments,
                Err(err) => {
                    self.invalid(
                        &key("remote_path"),
                        remote.span(),
                        format!("is refused: {err}"),
                    );
                    Vec::new()
                }
            },
        };

        let include = self.globs(&key("include"), &raw.include);
        let exclude = self.globs(&key("exclude"), &raw.exclude);
        let settle_time = self
            .duration(&key("settle_time"), &raw.settle_time)
            .unwrap_or(Duration::from_secs(defaults::SETTLE_TIME_SECS));
        let conflict = self.conflict(&key("conflict"), &raw.conflict);
        let after_upload = self.after_upload(index, raw, &local_path);

        let name = raw
            .name
            .as_ref()
            .map_or_else(|| local_path.display().to_string(), |n| n.get_ref().clone());
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Mapping {
            name,
            local_path,
            remote_path,
            recursive: raw.recursive.as_ref().is_none_or(|r| *r.get_ref()),
            include,
            exclude,
            settle_time,
            conflict,
            after_upload,
            follow_symlinks: raw.follow_symlinks.as_ref().is_some_and(|f| *f.get_ref()),
        })
    }

    fn globs(&mut self, key: &str, field: &Field<Vec<String>>) -> Vec<String> {
        let Some(field) = field else {
            return Vec::new();
        };
        for pattern in field.get_ref() {
            if let Err(err) = globset::Glob::new(pattern) {
                let message = format!("has an invalid pattern `{pattern}`: {}", err.kind());
                self.invalid(key, field.span(), message);
            }
        }
        field.get_ref().clone()
    }

    fn conflict(&mut self, key: &str, field: &Field<String>) -> ConflictPolicy {
        match field.as_ref().map(|f| (f.get_ref().as_str(), f.span())) {
            None | Some(("fail", _)) => ConflictPolicy::Fail,
            Some(("replace", _)) => ConflictPolicy::Replace,
            Some(("rename", _)) => ConflictPolicy::Rename,
            Some((other, span)) => {
                let message = format!("`{other}` is not one of `replace`, `rename`, `fail`");
                self.invalid(key, span, message);
                ConflictPolicy::Fail
            }
        }
    }

    fn after_upload(&mut self, index: usize, raw: &RawMapping, local_root: &Path) -> AfterUpload {
        let key = |name: &str| format!("mapping[{}].{name}", index + 1);
        let (action, span) = match &raw.after_upload {
            Some(field) => (field.get_ref().as_str(), field.span()),
            None => ("delete", 0..0),
        };
        if action != "move" {
            if let Some(target) = &raw.move_to {
                let message = "is only used with after_upload = \"move\"";
                self.invalid(&key("move_to"), target.span(), message);
            }
        }
        match action {
            "delete" => AfterUpload::Delete,
            "keep" => AfterUpload::Keep,
            "move" => {
                let Some(target) = &raw.move_to else {
                    let message = "is `move` but no `move_to` folder is given";
                    self.invalid(&key("after_upload"), span, message);
                    return AfterUpload::Keep;
                };
                let folder = PathBuf::from(target.get_ref());
                if !folder.is_absolute() {
                    let message = format!("must be an absolute path, not `{}`", folder.display());
                    self.invalid(&key("move_to"), target.span(), message);
                } else if folder.starts_with(local_root) {
                    let message = "must be outside the mapping's local_path, or moved files \
                                   would be uploaded again";
                    self.invalid(&key("move_to"), target.span(), message);
                }
                AfterUpload::MoveTo(folder)
            }
            other => {
                let message = format!("`{other}` is not one of `delete`, `keep`, `move`");
                self.invalid(&key("after_upload"), span, message);
                AfterUpload::Keep
            }
        }
    }

    /// Refuses two mappings whose local roots are the same or nested: a file
    /// would belong to both, and one mapping's uploads would race the other's.
    fn check_overlaps(&mut self, raw: &[Spanned<RawMapping>], mappings: &[Mapping]) {
        if mappings.len() != raw.len() {
            // A mapping already failed validation; overlap indices would not
            // line up.
            return;
        }
        for (i, outer) in mappings.iter().enumerate() {
            for (j, inner) in mappings.iter().enumerate().skip(i + 1) {
                let nested = inner.local_path.starts_with(&outer.local_path)
                    || outer.local_path.starts_with(&inner.local_path);
                if !nested {
                    continue;
                }
                let span = raw[j]
                    .get_ref()
                    .local_path
                    .as_ref()
                    .map_or(0..0, |f| f.span());
                let message = format!(
                    "`{}` overlaps mapping[{}] (`{}`); one local folder may belong to only one \
                     mapping",
                    inner.local_path.display(),
                    i + 1,
                    outer.local_path.display()
                );
                self.invalid(&format!("mapping[{}].local_path", j + 1), span, message);
            }
        }
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
