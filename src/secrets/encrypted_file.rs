//! The encrypted-file token store.
//!
//! File format, version 1: the 8-byte magic `ODSYTOK1`, a 24-byte random nonce,
//! then the XChaCha20-Poly1305 ciphertext of a small JSON document (refresh
//! token and account). The magic is also the associated data, so a file cannot
//! be passed off as another format. A fresh nonce is drawn for every write;
//! with 192-bit nonces random draws never realistically repeat.
//!
//! The 256-bit key comes from a systemd credential
//! (`$CREDENTIALS_DIRECTORY/<name>`, managed and protected by systemd) or else
//! from the configured key file, holding either 32 raw bytes or their base64 on
//! one line. `onedrive-syncd login` creates the key file when it is absent.
//!
//! Invariants:
//! - a token or key file whose mode gives group or others any access is
//!   refused, never silently fixed: the admin has to learn that it was exposed;
//! - every write goes to a temporary file in the same directory (mode 0600 from
//!   creation), which is fsynced, renamed over the target, and then the
//!   directory is fsynced; a crash leaves either the old file or the new one,
//!   never a mix.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;

use super::{AccountInfo, Secret, SecretsError, StoredTokens, TokenStore};

/// First bytes of every token file; also bound into the ciphertext as
/// associated data.
const MAGIC: &[u8; 8] = b"ODSYTOK1";
/// XChaCha20 nonce length.
const NONCE_LEN: usize = 24;
/// Key length in bytes.
const KEY_LEN: usize = 32;
/// Permission bits that must be clear on secret files: any access by group or
/// others.
const EXPOSED_BITS: u32 = 0o077;

/// Where the encryption key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A systemd credential file; systemd restricts it to the service.
    Credential(PathBuf),
    /// A key file on disk, which must be mode 0600 or stricter.
    File(PathBuf),
}

impl KeySource {
    /// The credential `<dir>/<name>` when systemd provided it, else the key
    /// file.
    pub fn choose(
        credentials_dir: Option<PathBuf>,
        credential_name: &str,
        key_path: &Path,
    ) -> Self {
        if let Some(dir) = credentials_dir.filter(|_| !credential_name.is_empty()) {
            let candidate = dir.join(credential_name);
            if candidate.is_file() {
                return KeySource::Credential(candidate);
            }
        }
        KeySource::File(key_path.to_path_buf())
    }

    fn path(&self) -> &Path {
        match self {
            KeySource::Credential(path) | KeySource::File(path) => path,
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Credential(path) => write!(f, "systemd credential {}", path.display()),
            KeySource::File(path) => write!(f, "key file {}", path.display()),
        }
    }
}

/// A loaded key; `Debug` does not show it.
struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

/// The JSON document inside the ciphertext.
#[derive(serde::Serialize, serde::Deserialize)]
struct Plaintext {
    refresh_token: String,
    account: Option<AccountInfo>,
}

/// Keeps the refresh token in a file encrypted with XChaCha20-Poly1305.
#[derive(Clone, Debug)]
pub struct EncryptedFileStore {
    path: PathBuf,
    key: KeySource,
}

impl EncryptedFileStore {
    /// A store for the token file `path`, encrypted with the key from `key`.
    pub fn new(path: PathBuf, key: KeySource) -> Self {
        Self { path, key }
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and decrypts the token file; `None` when it does not exist.
    pub fn load_blocking(&self) -> Result<Option<StoredTokens>, SecretsError> {
        let sealed = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error("read", &self.path, source)),
        };
        refuse_if_exposed(&self.path)?;

        let key = read_key(&self.key)?;
        let plain = open(&sealed, &key).map_err(|failure| match failure {
            OpenFailure::Header => SecretsError::UnknownFormat {
                path: self.path.clone(),
            },
            OpenFailure::Tag => SecretsError::CannotDecrypt {
                path: self.path.clone(),
                key: self.key.to_string(),
            },
        })?;
        let doc: Plaintext =
            serde_json::from_slice(&plain).map_err(|_| SecretsError::UnknownFormat {
                path: self.path.clone(),
            })?;
        Ok(Some(StoredTokens {
            refresh_token: Secret::new(doc.refresh_token),
            account: doc.account,
        }))
    }

    /// Encrypts and durably replaces the token file.
    pub fn save_blocking(&self, tokens: &StoredTokens) -> Result<(), SecretsError> {
        let key = read_key(&self.key)?;
        let doc = Plaintext {
            refresh_token: tokens.refresh_token.expose().to_string(),
            account: tokens.account.clone(),
        };
        let plain = serde_json::to_vec(&doc)
            .map_err(|err| io_error("encode", &self.path, std::io::Error::other(err)))?;
        write_atomically(&self.path, &seal(&plain, &key))
    }

    /// Creates the key file with a fresh random key if it does not exist yet.
    ///
    /// Returns the path it created, or `None` when a usable key was already
    /// there.
    pub fn create_key_if_missing(&self) -> Result<Option<PathBuf>, SecretsError> {
        let path = match &self.key {
            KeySource::Credential(_) => {
                read_key(&self.key)?;
                return Ok(None);
            }
            KeySource::File(path) => path,
        };
        if path.exists() {
            read_key(&self.key)?;
            return Ok(None);
        }

        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut text = BASE64.encode(key.as_slice());
        text.push('\n');
        write_atomically(path, text.as_bytes())?;
        Ok(Some(path.clone()))
    }
}

impl TokenStore for EncryptedFileStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<StoredTokens>, SecretsError>> {
        let store = self.clone();
        blocking(move || store.load_blocking()).boxed()
    }

    fn save<'a>(&'a self, tokens: &'a StoredTokens) -> BoxFuture<'a, Result<(), SecretsError>> {
        let store = self.clone();
        let tokens = tokens.clone();
        blocking(move || store.save_blocking(&tokens)).boxed()
    }

    fn prepare(&self) -> BoxFuture<'_, Result<Option<String>, SecretsError>> {
        let store = self.clone();
        blocking(move || {
            let created = store.create_key_if_missing()?;
            Ok(created.map(|path| {
                format!(
                    "created the token encryption key {}; without it the stored token \
                     cannot be read, so keep it (or move it into a systemd credential)",
                    path.display()
                )
            }))
        })
        .boxed()
    }

    fn describe(&self) -> String {
        format!("encrypted file {} ({})", self.path.display(), self.key)
    }
}

/// Runs blocking file work off the async worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SecretsError> + Send + 'static,
) -> Result<T, SecretsError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => Err(io_error(
            "run file task for",
            Path::new("token store"),
            std::io::Error::other(join.to_string()),
        )),
    }
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> SecretsError {
    SecretsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses a file that group or others may access.
fn refuse_if_exposed(path: &Path) -> Result<(), SecretsError> {
    let metadata = fs::metadata(path).map_err(|source| io_error("inspect", path, source))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & EXPOSED_BITS != 0 {
        return Err(SecretsError::ReadableByOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn read_key(source: &KeySource) -> Result<Key, SecretsError> {
    let path = source.path();
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretsError::KeyMissing {
                path: path.to_path_buf(),
            })
        }
        Err(err) => return Err(io_error("read", path, err)),
    };
    // systemd owns the permissions of its credentials; only our own key file is
    // checked.
    if let KeySource::File(_) = source {
        refuse_if_exposed(path)?;
    }
    parse_key(&bytes).ok_or_else(|| SecretsError::KeyMalformed {
        path: path.to_path_buf(),
    })
}

/// Accepts 32 raw bytes, or 32 bytes in base64 surrounded by optional
/// whitespace.
fn parse_key(bytes: &[u8]) -> Option<Key> {
    if let Ok(raw) = <[u8; KEY_LEN]>::try_from(bytes) {
        return Some(Key(raw));
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let decoded = BASE64.decode(text).ok()?;
    <[u8; KEY_LEN]>::try_from(decoded.as_slice()).ok().map(Key)
}

fn cipher(key: &Key) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&key.0.into())
}

fn seal(plain: &[u8], key: &Key) -> Vec<u8> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    // The cipher fails only for messages near its 256 GiB limit; a token
    // document is a few hundred bytes.
    let ciphertext = cipher(key)
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: MAGIC,
            },
        )
        .expect("a token document is far below the cipher's length limit");
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

enum OpenFailure {
    Header,
    Tag,
}

fn open(sealed: &[u8], key: &Key) -> Result<Vec<u8>, OpenFailure> {
    let rest = sealed
        .strip_prefix(MAGIC.as_slice())
        .ok_or(OpenFailure::Header)?;
    if rest.len() < NONCE_LEN {
        return Err(OpenFailure::Header);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    cipher(key)
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: MAGIC,
            },
        )
        .map_err(|_| OpenFailure::Tag)
}

/// Writes `bytes` to `path` through a fsynced temporary file and a rename, mode
/// 0600.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| io_error("create directory", &dir, source))?;

    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = write_then_rename(&temp, path, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;

    // The rename is durable only once the directory entry itself reaches the
    // disk.
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error("sync directory", &dir, source))
}

fn write_then_rename(temp: &Path, path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(|source| io_error("create", temp, source))?;
    file.write_all(bytes)
        .map_err(|source| io_error("write", temp, source))?;
    file.sync_all()
        .map_err(|source| io_error("sync", temp, source))?;
    fs::rename(temp, path).map_err(|source| io_error("replace", path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &Path) -> EncryptedFileStore {
        EncryptedFileStore::new(dir.join("token"), KeySource::File(dir.join("key")))
    }

    fn tokens(value: &str) -> StoredTokens {
        StoredTokens {
            refresh_token: Secret::new(value),
            account: Some(AccountInfo {
                display_name: "Ada".into(),
                email: Some("ada@example.com".into()),
                drive_id: "d1".into(),
                drive_type: "personal".into(),
            }),
        }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn round_trips_through_an_encrypted_0600_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        assert_eq!(store.load_blocking().unwrap(), None);

        assert!(store.create_key_if_missing().unwrap().is_some());
        assert!(store.create_key_if_missing().unwrap().is_none());
        store.save_blocking(&tokens("rt-secret-1")).unwrap();

        let raw = fs::read(dir.path().join("token")).unwrap();
        assert!(raw.starts_with(MAGIC));
        assert!(!String::from_utf8_lossy(&raw).contains("rt-secret-1"));
        assert_eq!(mode_of(&dir.path().join("token")), 0o600);
        assert_eq!(mode_of(&dir.path().join("key")), 0o600);
        assert_eq!(store.load_blocking().unwrap(), Some(tokens("rt-secret-1")));

        store.save_blocking(&tokens("rt-secret-2")).unwrap();
        assert_eq!(store.load_blocking().unwrap(), Some(tokens("rt-secret-2")));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left behind: {leftovers:?}"
        );
    }

    #[test]
    fn another_key_cannot_decrypt() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        store.create_key_if_missing().unwrap();
        store.save_blocking(&tokens("rt")).unwrap();

        fs::remove_file(dir.path().join("key")).unwrap();
        store.create_key_if_missing().unwrap();
        let err = store.load_blocking().unwrap_err();
        assert!(matches!(err, SecretsError::CannotDecrypt { .. }), "{err:?}");
        assert!(
            err.to_string().contains("was it written with another key?"),
            "{err}"
        );
    }

    #[test]
    fn files_readable_by_others_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        store.create_key_if_missing().unwrap();
        store.save_blocking(&tokens("rt")).unwrap();

        let token = dir.path().join("token");
        fs::set_permissions(&token, fs::Permissions::from_mode(0o640)).unwrap();
        let err = store.load_blocking().unwrap_err().to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", token.display())),
            "{err}"
        );

        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        let key = dir.path().join("key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o604)).unwrap();
        let err = store.load_blocking().unwrap_err().to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", key.display())),
            "{err}"
        );
    }

    #[test]
    fn a_missing_key_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = store_in(dir.path())
            .save_blocking(&tokens("rt"))
            .unwrap_err();
        assert!(matches!(err, SecretsError::KeyMissing { .. }), "{err:?}");
    }

    #[test]
    fn keys_are_read_raw_or_base64() {
        assert!(parse_key(&[7u8; 32]).is_some());
        let text = format!("  {}\n", BASE64.encode([9u8; 32]));
        assert_eq!(parse_key(text.as_bytes()).map(|k| k.0), Some([9u8; 32]));
        assert!(parse_key(b"too short").is_none());
        assert!(parse_key(BASE64.encode([1u8; 16]).as_bytes()).is_none());
    }

    #[test]
    fn a_foreign_file_is_not_mistaken_for_a_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        store.create_key_if_missing().unwrap();
        write_atomically(&dir.path().join("token"), b"{\"refresh_token\":\"x\"}").unwrap();
        let err = store.load_blocking().unwrap_err();
        assert!(matches!(err, SecretsError::UnknownFormat { .. }), "{err:?}");
    }

    #[test]
    fn a_systemd_credential_wins_over_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("odk"), [3u8; 32]).unwrap();
        let chosen = KeySource::choose(Some(dir.path().into()), "odk", Path::new("/k"));
        assert_eq!(chosen, KeySource::Credential(dir.path().join("odk")));
        let fallback = KeySource::choose(Some(dir.path().into()), "absent", Path::new("/k"));
        assert_eq!(fallback, KeySource::File("/k".into()));
        assert_eq!(
            KeySource::choose(None, "odk", Path::new("/k")),
            KeySource::File("/k".into())
        );
    }
}
