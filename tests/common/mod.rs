//! Helpers shared by integration tests: a temporary home with a configuration
//! pointing at a test server, a token store seeded without a login, and the
//! real binary run against it.
//!
//! Nothing here knows the fake server's type; tests pass its URLs and client
//! id, so the helpers work against any Graph-compatible endpoint on loopback.

#![allow(dead_code)]

pub mod daemon;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use onedrive_syncd::auth::TokenManager;
use onedrive_syncd::config::ApplicationConfig;
use onedrive_syncd::graph::GraphClient;
use onedrive_syncd::secrets::{EncryptedFileStore, KeySource, Secret, StoredTokens, TokenStore};

/// Where a test's server lives.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Graph base URL, with its version segment.
    pub graph_url: String,
    /// Identity authority, without the tenant.
    pub authority_url: String,
    /// The client id the identity endpoints accept.
    pub client_id: String,
}

/// A temporary directory holding a configuration file, the token store and the
/// state.
pub struct TestHome {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config_path: PathBuf,
    /// The endpoints the configuration points at.
    pub endpoints: Endpoints,
}

/// Uploader settings small enough to exercise sessions with small files.
pub const SMALL_UPLOADS: &str = "\
fragment_size = \"320 KiB\"
simple_upload_threshold = \"64 KiB\"
max_retry_delay = \"2s\"
";

impl TestHome {
    /// A home whose configuration uses `uploader` (TOML lines of the
    /// `[uploader]` table).
    pub fn new(endpoints: &Endpoints, uploader: &str) -> TestHome {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let root = dir.path();
        let config = format!(
            "[application]\n\
             client_id = \"{client}\"\n\
             authority_url = \"{authority}\"\n\
             graph_url = \"{graph}\"\n\
             \n\
             [token_store]\n\
             path = \"{root}/token.enc\"\n\
             key_path = \"{root}/token.key\"\n\
             credential_name = \"onedrive-syncd-test-key\"\n\
             \n\
             [state]\n\
             directory = \"{root}/state\"\n\
             control_socket = \"{root}/control.sock\"\n\
             \n\
             [uploader]\n\
             {uploader}\n\
             [logging]\n\
             level = \"warn\"\n\
             journald = \"never\"\n",
            client = endpoints.client_id,
            authority = endpoints.authority_url,
            graph = endpoints.graph_url,
            root = root.display(),
        );
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, config).expect("writing the test configuration");
        TestHome {
            dir,
            config_path,
            endpoints: endpoints.clone(),
        }
    }

    /// The encrypted token file.
    pub fn token_path(&self) -> PathBuf {
        self.dir.path().join("token.enc")
    }

    /// The key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("token.key")
    }

    /// The token store the configuration names.
    pub fn store(&self) -> Arc<EncryptedFileStore> {
        Arc::new(EncryptedFileStore::new(
            self.token_path(),
            KeySource::File(self.key_path()),
        ))
    }

    /// Creates the key and stores `refresh_token`, as a login would.
    pub async fn seed_refresh_token(&self, refresh_token: &str) {
        let store = self.store();
        store.prepare().await.expect("creating the key");
        let tokens = StoredTokens {
            refresh_token: Secret::new(refresh_token),
            account: None,
        };
        store
            .save(&tokens)
            .await
            .expect("storing the refresh token");
    }

    /// The refresh token currently stored.
    pub async fn stored_refresh_token(&self) -> Option<String> {
        let tokens = self.store().load().await.expect("reading the token store");
        tokens.map(|t| t.refresh_token.expose().to_string())
    }

    /// The application settings of the configuration.
    pub fn application(&self) -> ApplicationConfig {
        ApplicationConfig {
            client_id: self.endpoints.client_id.clone(),
            tenant: "consumers".into(),
            authority_url: self.endpoints.authority_url.parse().expect("authority URL"),
            graph_url: self.endpoints.graph_url.parse().expect("graph URL"),
            scopes: vec!["Files.ReadWrite".into(), "offline_access".into()],
        }
    }

    /// A token manager over this home's store.
    pub fn token_manager(&self) -> Arc<TokenManager> {
        let manager = TokenManager::new(&self.application(), self.store())
            .expect("building the token manager");
        Arc::new(manager)
    }

    /// A Graph client authenticated through this home's store.
    pub fn graph_client(&self) -> (GraphClient, Arc<TokenManager>) {
        let tokens = self.token_manager();
        let graph_url = self.endpoints.graph_url.parse().expect("graph URL");
        let client = GraphClient::new(&graph_url, tokens.clone()).expect("building the client");
        (client, tokens)
    }

    /// The binary with `--config` set and a clean environment for it.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_onedrive-syncd"));
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("ONEDRIVE_SYNCD_CONFIG")
            .kill_on_drop(true);
        command
    }

    /// Runs the binary to completion with empty stdin.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, b"").await
    }

    /// Runs the binary to completion, feeding `stdin`.
    pub async fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt as _;

        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting onedrive-syncd");
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(stdin).await.expect("writing stdin");
        drop(pipe);
        child
            .wait_with_output()
            .await
            .expect("waiting for onedrive-syncd")
    }
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that the command succeeded and returns its stdout.
pub fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        describe(output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that the command failed and returns its stderr.
pub fn failure(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "command unexpectedly succeeded: {}",
        describe(output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Deterministic pseudo-random bytes, so that a failure can be reproduced.
pub fn sample_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Writes `bytes` to `name` inside `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writing a local test file");
    path
}
