//! Running the real daemon (`onedrive-syncd run`) in a test: a home whose
//! configuration has outbox mappings with short settle times, the process
//! started, stopped with SIGTERM or killed with SIGKILL, and started again on
//! the same state directory, and the operator commands run beside it.
//!
//! Every wait is a bounded poll that panics with the daemon's log when its
//! deadline passes; no sleep stands in for an assertion. The daemon's stderr
//! goes to `daemon.log` in the home, appended across restarts, so a failing
//! test shows what every run of the daemon said.
//!
//! Like the rest of `common`, nothing here knows the fake server's type:
//! conditions on the server are closures the test passes in.

use std::fs::OpenOptions;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{describe, Endpoints, TestHome};

/// Uploader settings for daemon tests: five workers, no request-rate limit to
/// speak of, sessions above 64 KiB in 320 KiB fragments, quick job retries.
pub const FAST_UPLOADS: &str = "\
workers = 5
requests_per_second = 1000
fragment_size = \"320 KiB\"
simple_upload_threshold = \"64 KiB\"
max_retry_delay = \"2s\"
";

/// How long a test waits for the daemon to do something it should do soon.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);

/// How many lines of the daemon's log a failed wait prints.
const LOG_TAIL_LINES: usize = 80;

/// One `[[mapping]]` of the test configuration; its outbox is created under
/// the home as `outbox/<name>`.
#[derive(Clone, Debug)]
pub struct MappingSpec {
    /// The mapping's name, also its outbox folder's name.
    pub name: String,
    /// The OneDrive folder, such as `/Backups/host`.
    pub remote_path: String,
    /// The settle time as the configuration writes it.
    pub settle_time: String,
    /// `replace`, `rename` or `fail`.
    pub conflict: String,
    /// `keep`, `delete` or `move` (with a `done/<name>` folder).
    pub after_upload: String,
}

impl MappingSpec {
    /// A mapping that settles after 300 ms, replaces on conflict and keeps the
    /// local files.
    pub fn new(name: &str, remote_path: &str) -> MappingSpec {
        MappingSpec {
            name: name.to_owned(),
            remote_path: remote_path.to_owned(),
            settle_time: "300ms".to_owned(),
            conflict: "replace".to_owned(),
            after_upload: "keep".to_owned(),
        }
    }

    /// With another settle time (`"1s"`).
    pub fn settle(mut self, settle_time: &str) -> MappingSpec {
        self.settle_time = settle_time.to_owned();
        self
    }

    /// With another conflict policy.
    pub fn conflict(mut self, conflict: &str) -> MappingSpec {
        self.conflict = conflict.to_owned();
        self
    }

    /// With another after-upload action.
    pub fn after_upload(mut self, action: &str) -> MappingSpec {
        self.after_upload = action.to_owned();
        self
    }

    fn to_toml(&self, home: &Path) -> String {
        let local = home.join("outbox").join(&self.name);
        let mut table = format!(
            "\n[[mapping]]\n\
             name = \"{}\"\n\
             local_path = \"{}\"\n\
             remote_path = \"{}\"\n\
             settle_time = \"{}\"\n\
             conflict = \"{}\"\n\
             after_upload = \"{}\"\n",
            self.name,
            local.display(),
            self.remote_path,
            self.settle_time,
            self.conflict,
            self.after_upload,
        );
        if self.after_upload == "move" {
            let done = home.join("done").join(&self.name);
            table += &format!("move_to = \"{}\"\n", done.display());
        }
        table
    }
}

/// A test home with outboxes, for the daemon.
pub struct DaemonHome {
    /// The configuration, token store and state.
    pub home: TestHome,
}

impl DaemonHome {
    /// A home whose configuration has `uploader` (lines of `[uploader]`) and
    /// `mappings`, with every outbox created empty. The caller seeds the
    /// refresh token.
    pub fn new(endpoints: &Endpoints, uploader: &str, mappings: &[MappingSpec]) -> DaemonHome {
        let home = TestHome::new(endpoints, uploader);
        let root = home.dir.path().to_path_buf();
        let mut tables = String::new();
        for mapping in mappings {
            std::fs::create_dir_all(root.join("outbox").join(&mapping.name))
                .expect("creating an outbox");
            tables += &mapping.to_toml(&root);
        }
        let mut config = OpenOptions::new()
            .append(true)
            .open(&home.config_path)
            .expect("opening the test configuration");
        std::io::Write::write_all(&mut config, tables.as_bytes())
            .expect("adding the mappings to the test configuration");
        DaemonHome { home }
    }

    /// The outbox of mapping `name`.
    pub fn outbox(&self, name: &str) -> PathBuf {
        self.home.dir.path().join("outbox").join(name)
    }

    /// The folder `move` sends uploaded files of mapping `name` to.
    pub fn done_folder(&self, name: &str) -> PathBuf {
        self.home.dir.path().join("done").join(name)
    }

    /// The queue's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.home.dir.path().join("state")
    }

    /// The control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.home.dir.path().join("control.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.home.dir.path().join("daemon.log")
    }

    /// Everything the daemon wrote to stderr, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The end of the log, for failure messages.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Starts `run` without waiting for it to be ready.
    pub fn spawn(&self) -> Daemon {
        // Info level shows each finished upload, which explains a failure.
        self.spawn_logging("onedrive_syncd=info")
    }

    /// Starts `run` with the log filter `filter`, without waiting for it.
    pub fn spawn_logging(&self, filter: &str) -> Daemon {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the daemon log");
        let child = self
            .home
            .command(&["run"])
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("sharing the daemon log"))
            .stderr(log)
            .spawn()
            .expect("starting onedrive-syncd run");
        Daemon { child }
    }

    /// Starts `run` and waits until its control socket answers.
    pub async fn start(&self) -> Daemon {
        self.start_logging("onedrive_syncd=info").await
    }

    /// Starts `run` with the log filter `filter` and waits until it is ready.
    pub async fn start_logging(&self, filter: &str) -> Daemon {
        let mut daemon = self.spawn_logging(filter);
        let socket = self.control_socket();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "the daemon exited with {status} before it was ready\n--- log\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not open its control socket within {PATIENCE:?}\n--- log\n{}",
                self.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs a command of the binary (not `run`) to completion.
    pub async fn command(&self, args: &[&str]) -> Output {
        self.home.run(args).await
    }

    /// Runs a command that must succeed and returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.command(args).await;
        assert!(
            output.status.success(),
            "`{}` failed: {}\n--- daemon log\n{}",
            args.join(" "),
            describe(&output),
            self.log_tail()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `status --json`, parsed.
    pub async fn status(&self) -> Value {
        parse_json(&self.ok(&["status", "--json"]).await)
    }

    /// `history --json`, parsed.
    pub async fn history(&self) -> Vec<Value> {
        match parse_json(&self.ok(&["history", "--json", "--limit", "100000"]).await) {
            Value::Array(records) => records,
            other => panic!("history --json printed no array: {other}"),
        }
    }

    /// Polls `done` until it holds, or panics naming `what` after `patience`.
    pub async fn wait_until(&self, what: &str, patience: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + patience;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "waited {patience:?} for {what}, in vain\n--- daemon log\n{}",
                self.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls `status --json` until `done` accepts it, and returns that report.
    pub async fn wait_for_status(
        &self,
        what: &str,
        patience: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + patience;
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "waited {patience:?} for {what}, in vain; last status {status:#}\n\
                 --- daemon log\n{}",
                self.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls the async `probe` until it yields a value, or panics naming
    /// `what` after `patience`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, patience: Duration, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "waited {patience:?} for {what}, in vain\n--- daemon log\n{}",
                self.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A running `onedrive-syncd run`; killed if dropped while running.
pub struct Daemon {
    child: tokio::process::Child,
}

impl Daemon {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the daemon has not been reaped yet")
    }

    /// Kills the process with SIGKILL and reaps it.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("sending SIGKILL");
        self.child.wait().await.expect("reaping the daemon");
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit.
    pub async fn terminate(mut self, within: Duration) -> ExitStatus {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) has no memory effects; the pid is our own child, not
        // yet reaped, so it cannot name another process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "sending SIGTERM failed");
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("reaping the daemon"),
            Err(_) => panic!("the daemon did not exit within {within:?} of SIGTERM"),
        }
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// Parses command output as JSON, panicking with the text if it is not.
pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("not JSON ({err}):\n{text}"))
}

/// A count from `status --json`'s `counts`.
pub fn count(status: &Value, state: &str) -> u64 {
    status["counts"][state]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no count for {state}: {status}"))
}

/// The `failed` list of `status --json`.
pub fn failed_jobs(status: &Value) -> Vec<Value> {
    status["failed"].as_array().cloned().unwrap_or_default()
}

/// A fresh fake Graph server and a daemon home pointed at it, with `uploader`
/// (lines of `[uploader]`) and `mappings`, its refresh token seeded.
pub async fn setup(
    uploader: &str,
    mappings: &[MappingSpec],
) -> (crate::fake_graph::FakeGraph, DaemonHome) {
    let fake = crate::fake_graph::FakeGraph::start(Default::default()).await;
    let endpoints = Endpoints {
        graph_url: fake.graph_url(),
        authority_url: fake.authority_url(),
        client_id: fake.client_id(),
    };
    let home = DaemonHome::new(&endpoints, uploader, mappings);
    home.home
        .seed_refresh_token(&fake.issue_refresh_token())
        .await;
    (fake, home)
}

/// Whether the fake holds exactly `bytes` at `remote`, by hash and content.
pub fn holds(fake: &crate::fake_graph::FakeGraph, remote: &str, bytes: &[u8]) -> bool {
    let digest = onedrive_syncd::graph::quickxor::to_base64(
        &onedrive_syncd::graph::quickxor::digest_of(bytes),
    );
    fake.file(remote)
        .is_some_and(|f| f.size == bytes.len() as u64 && f.quick_xor_hash == digest)
        && fake.read_file(remote).is_some_and(|stored| stored == bytes)
}

/// Asserts the fake holds exactly `bytes` at `remote`, by hash and content.
pub fn assert_arrived(fake: &crate::fake_graph::FakeGraph, remote: &str, bytes: &[u8]) {
    let stored = fake
        .file(remote)
        .unwrap_or_else(|| panic!("{remote} is not on the drive"));
    assert_eq!(stored.size, bytes.len() as u64, "size of {remote}");
    let digest = onedrive_syncd::graph::quickxor::digest_of(bytes);
    assert_eq!(
        stored.quick_xor_hash,
        onedrive_syncd::graph::quickxor::to_base64(&digest),
        "quickXorHash of {remote}"
    );
    let content = fake.read_file(remote).expect("stored bytes");
    assert!(content == bytes, "{remote} differs from the local bytes");
}
