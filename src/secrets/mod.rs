//! Secret values and the stores that keep the refresh token.
//!
//! Two rules hold everywhere in the crate:
//!
//! - a credential (refresh token, access token, upload URL, encryption key)
//!   lives in a [`Secret`] or in a type whose `Debug` redacts it, so that no
//!   `?value` in a log line and no `{:?}` in an error message can print it;
//! - the refresh token is persisted only through a [`TokenStore`], and every
//!   rotated token is saved (and, for the file backend, fsynced) before the
//!   access token that came with it is handed out, so a crash can never leave
//!   the store holding a token the server has retired.
//!
//! Only the encrypted-file backend exists today ([`EncryptedFileStore`]). The
//! trait is async and object-safe so that a backend talking to AWS Secrets
//! Manager can be added without touching its callers.

mod encrypted_file;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use encrypted_file::{EncryptedFileStore, KeySource};

use crate::config::TokenStoreConfig;

/// A string that must never be printed: `Debug` and `Display` both show `***`.
///
/// The value is reachable only through [`Secret::expose`], so every place that
/// sends a credential over the wire is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that has to send or store it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Who the stored refresh token belongs to, as shown by `whoami` and `login`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountInfo {
    /// The account owner's display name.
    pub display_name: String,
    /// The sign-in address, when Graph reports one.
    pub email: Option<String>,
    /// Id of the drive the token was bound to at login.
    pub drive_id: String,
    /// `personal`, `business` or `documentLibrary`.
    pub drive_type: String,
}

/// What a token store keeps: the refresh token and who it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTokens {
    /// The current refresh token; replaced on every rotation.
    pub refresh_token: Secret,
    /// The account bound at login; `None` until login has looked it up.
    pub account: Option<AccountInfo>,
}

/// Errors of the token stores.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A token or key file can be read by users other than its owner.
    #[error(
        "{path} can be read by other users (mode {mode:03o}); \
         run `chmod 600 {path}` and try again"
    )]
    ReadableByOthers {
        /// The offending file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// No key exists yet where the configuration says it should be.
    #[error(
        "the token encryption key {path} does not exist; \
         run `onedrive-syncd login` to create it and sign in"
    )]
    KeyMissing {
        /// Where the key file was looked for.
        path: PathBuf,
    },
    /// The key file does not hold 32 bytes (raw, or base64 on one line).
    #[error(
        "the token encryption key {path} is not 32 bytes (raw or base64); \
         move it away and run `onedrive-syncd login` to create a new one"
    )]
    KeyMalformed {
        /// The key file.
        path: PathBuf,
    },
    /// Authenticated decryption failed: wrong key or a damaged file.
    #[error(
        "cannot decrypt {path} with the key from {key}: was it written with another key? \
         restore the matching key, or run `onedrive-syncd login` to sign in again"
    )]
    CannotDecrypt {
        /// The token file.
        path: PathBuf,
        /// Where the key came from, for the admin.
        key: String,
    },
    /// The file is not a token file of this program, or of a newer version.
    #[error(
        "{path} is not an onedrive-syncd token file (unknown header); \
         check `token_store.path`, or run `onedrive-syncd login` to replace it"
    )]
    UnknownFormat {
        /// The token file.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted: `read`, `write`, `create`...
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A place that keeps the refresh token between runs.
///
/// Implementations must make [`TokenStore::save`] durable before returning: the
/// token manager relies on that to hand out an access token only once its
/// rotated refresh token is safe.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The stored tokens, or `None` when nobody has logged in yet.
    fn load(&self) -> BoxFuture<'_, Result<Option<StoredTokens>, SecretsError>>;

    /// Replaces the stored tokens, durably.
    fn save<'a>(&'a self, tokens: &'a StoredTokens) -> BoxFuture<'a, Result<(), SecretsError>>;

    /// Makes the store ready to be written at login (for example creates a
    /// missing key). Returns a sentence for the admin when it did something
    /// worth saying.
    fn prepare(&self) -> BoxFuture<'_, Result<Option<String>, SecretsError>>;

    /// A short description for messages, such as `encrypted file
    /// /var/lib/x/token`.
    fn describe(&self) -> String;
}

/// Opens the store the configuration names.
///
/// For the encrypted file the key is looked up in `$CREDENTIALS_DIRECTORY`
/// first (systemd credentials), then in the configured key file; nothing is
/// read until first use.
pub fn open_store(config: &TokenStoreConfig) -> Arc<dyn TokenStore> {
    match config {
        TokenStoreConfig::EncryptedFile {
            path,
            key_path,
            credential_name,
        } => {
            let credentials_dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
            let key = KeySource::choose(credentials_dir, credential_name, key_path);
            Arc::new(EncryptedFileStore::new(path.clone(), key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("refresh-me");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(secret.expose(), "refresh-me");

        let tokens = StoredTokens {
            refresh_token: secret,
            account: None,
        };
        assert!(!format!("{tokens:?}").contains("refresh-me"));
    }
}
