//! A strict fake of Microsoft Graph (personal OneDrive) and the Microsoft
//! identity platform, served over real HTTP on loopback for the daemon's
//! integration tests and benchmarks.
//!
//! It enforces the protocol rules of the project's fact sheet
//! (`graph-onedrive.md`): fragment alignment and order,
//! `Content-Range`/`Content-Length` agreement, no `Authorization` on upload
//! URLs, session expiry, refresh-token rotation, name rules, conflict
//! behaviours, paging and Retry-After. A request that breaks a rule is refused
//! the way the service refuses it and, when the client is to blame, recorded in
//! [`FakeGraph::violations`]. Faults (throttling, 5xx, lost responses, cut
//! connections, corrupted files, latency, bandwidth) can be injected at any
//! time, from Rust or through the `/_fake/` HTTP control API.
//!
//! State: item metadata, tokens and sessions live in memory behind one mutex,
//! never held across an await; file bytes live on disk (a temporary directory
//! unless [`FakeOptions::data_dir`] names one), written while they stream in.
//! Nothing survives the process: a restarted fake starts with an empty drive.

#![allow(dead_code)]

mod body;
pub mod control;
mod drive;
pub mod faults;
mod handlers;
mod identity;
pub mod names;
mod paths;
mod replies;
mod server;
mod sessions;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use onedrive_syncd::graph::quickxor::{digest_of, to_base64, Digest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use control::FaultRequest;
use drive::{Drive, Placement, Staged};
use faults::{Faults, LostResponse};
use identity::Identity;
use replies::Refusal;
use sessions::Sessions;

/// Every fragment but the last must be a multiple of this many bytes (320 KiB).
pub const FRAGMENT_MULTIPLE: u64 = 327_680;

/// A fragment must be smaller than this (60 MiB).
pub const MAX_FRAGMENT_BYTES: u64 = 60 * 1024 * 1024;

/// How the fake behaves; every field has a default suited to tests.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The only client id the identity endpoints accept.
    pub client_id: String,
    /// `expires_in` of issued access tokens.
    pub access_token_lifetime: Duration,
    /// Approve a device-code login right after its first poll, and authorize
    /// requests at once.
    pub auto_approve_device_code: bool,
    /// `interval` returned by the device-code endpoint, in seconds.
    pub device_code_interval_secs: u64,
    /// `expires_in` of a device code.
    pub device_code_lifetime: Duration,
    /// How long a session lives after its last accepted fragment.
    pub session_expiry: Duration,
    /// Hard cap on a session's age, whatever `session_expiry` says (the
    /// service's 24 h).
    pub session_max_age: Duration,
    /// Status a session past `session_max_age` answers: 404 (default), 401 or
    /// 403.
    pub session_max_age_status: u16,
    /// Whether using a refresh token revokes it (strict; Microsoft documents
    /// that it does not).
    pub rotate_revokes_old_refresh_token: bool,
    /// Items per children page when the client sends no `$top`.
    pub page_size: usize,
    /// The largest `$top` honoured.
    pub max_page_size: usize,
    /// Drive quota.
    pub quota_total_bytes: u64,
    /// Requests per second before 429, or none.
    pub rate_limit_per_sec: Option<u32>,
    /// Latency added to every request.
    pub latency: Duration,
    /// Per-request body throughput cap, or none.
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Where file bytes are stored; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// The largest simple PUT body (the current Graph page says 250 MB).
    pub simple_upload_max_bytes: u64,
    /// Requests this soon after a Retry-After was announced were already in
    /// flight, and are not counted as violations.
    pub retry_after_grace: Duration,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            client_id: "onedrive-syncd-test-client".to_owned(),
            access_token_lifetime: Duration::from_secs(3600),
            auto_approve_device_code: true,
            device_code_interval_secs: 1,
            device_code_lifetime: Duration::from_secs(900),
            session_expiry: Duration::from_secs(3600),
            session_max_age: Duration::from_secs(24 * 3600),
            session_max_age_status: 404,
            rotate_revokes_old_refresh_token: true,
            page_size: 200,
            max_page_size: 1000,
            quota_total_bytes: 1 << 40,
            rate_limit_per_sec: None,
            latency: Duration::ZERO,
            bandwidth_bytes_per_sec: None,
            data_dir: None,
            simple_upload_max_bytes: 250_000_000,
            retry_after_grace: Duration::from_millis(250),
        }
    }
}

/// A file stored on the fake drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Path from the root as stored (original case), e.g. `/a/b.txt`.
    pub path: String,
    /// Item id.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// quickXorHash of the stored bytes, base64.
    pub quick_xor_hash: String,
}

/// The endpoint a request was classified as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Route {
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Token,
    /// `POST /{tenant}/oauth2/v2.0/devicecode`.
    DeviceCode,
    /// `GET /{tenant}/oauth2/v2.0/authorize`.
    Authorize,
    /// `GET /v1.0/me/drive`.
    Drive,
    /// `GET` an item's metadata.
    Item,
    /// `PATCH` an item.
    UpdateItem,
    /// `DELETE` an item.
    DeleteItem,
    /// `GET …/children`.
    Children,
    /// `POST …/children`.
    CreateFolder,
    /// `PUT …/content`.
    SimpleUpload,
    /// `GET …/content` or the download URL it redirects to.
    Download,
    /// `POST …/createUploadSession`.
    CreateSession,
    /// `PUT {uploadUrl}`.
    Fragment,
    /// `GET {uploadUrl}`.
    SessionStatus,
    /// `DELETE {uploadUrl}`.
    SessionCancel,
    /// The `/_fake/` control API (never recorded).
    Control,
    /// Anything else.
    Unknown,
    /// Matches every route in [`FakeGraph::fail_next`].
    Any,
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Endpoint.
    pub route: Route,
    /// Raw path, without the query (so upload URLs appear without their token).
    pub path: String,
    /// Status answered (or that would have been answered, when the response was
    /// lost).
    pub status: u16,
    /// `Content-Range` as `(first, last, total)`, when present and well formed.
    pub content_range: Option<(u64, u64, u64)>,
    /// Whether an `Authorization` header was present.
    pub had_authorization: bool,
    /// The upload session involved, if any.
    pub session_id: Option<String>,
    /// The client never got the response (dropped connection, cut body or 504).
    pub response_lost: bool,
    /// Milliseconds since the fake started.
    pub at_ms: u64,
}

/// Handle to a running fake; clones share the same server.
#[derive(Clone)]
pub struct FakeGraph {
    inner: Arc<Inner>,
}

/// Shared by the handle and the server task.
pub(crate) struct Inner {
    pub(crate) base_url: String,
    pub(crate) data_dir: PathBuf,
    /// Keeps the temporary data directory alive as long as the server.
    _temp: Option<tempfile::TempDir>,
    /// All mutable state; never held across an await.
    state: Mutex<State>,
    /// Simple PUTs and fragment PUTs being served right now.
    pub(crate) uploads_in_flight: AtomicUsize,
    /// The most `uploads_in_flight` has been.
    pub(crate) peak_uploads: AtomicUsize,
    pub(crate) started: Instant,
    /// Stops the server.
    pub(crate) shutdown: CancellationToken,
}

impl Inner {
    /// Locks the state; a panic in another handler does not poison the fake for
    /// the test.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything behind the mutex.
pub(crate) struct State {
    pub(crate) options: FakeOptions,
    pub(crate) identity: Identity,
    pub(crate) drive: Drive,
    pub(crate) sessions: Sessions,
    pub(crate) faults: Faults,
    requests: Vec<RequestRecord>,
    violations: Vec<String>,
}

impl State {
    /// Records a protocol rule the client broke.
    pub(crate) fn violation(&mut self, rule: impl Into<String>) {
        self.violations.push(rule.into());
    }

    fn record(&mut self, record: RequestRecord) {
        self.requests.push(record);
    }
}

/// Whether and how a handler wants its connection killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Answer normally.
    No,
    /// The work is done but the client must not hear about it.
    LoseResponse,
    /// The body was cut short; close the connection.
    Cut,
}

/// A handler's answer.
pub(crate) struct Reply {
    pub(crate) response: Response<Body>,
    pub(crate) kill: Kill,
    pub(crate) session: Option<String>,
}

impl Reply {
    /// A plain answer.
    pub(crate) fn ok(response: Response<Body>) -> Reply {
        Reply {
            response,
            kill: Kill::No,
            session: None,
        }
    }

    /// A refusal, recording its violation (locks the state).
    pub(crate) fn refusal(inner: &Inner, refusal: Refusal) -> Reply {
        Reply::refusal_locked(&mut inner.lock(), refusal)
    }

    /// A refusal, recording its violation in already-locked state.
    pub(crate) fn refusal_locked(state: &mut State, refusal: Refusal) -> Reply {
        if let Some(rule) = &refusal.violation {
            state.violation(rule.clone());
        }
        Reply::ok(refusal.response())
    }

    /// Tags the reply with the upload session it concerns.
    pub(crate) fn in_session(mut self, id: &str) -> Reply {
        self.session = Some(id.to_owned());
        self
    }
}

impl FakeGraph {
    /// Starts a fake on `127.0.0.1:0` with its data in a temporary directory.
    ///
    /// Panics when loopback cannot be bound, which only happens on a broken
    /// test machine.
    pub async fn start(options: FakeOptions) -> FakeGraph {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeGraph::start_at(addr, options)
            .await
            .expect("binding 127.0.0.1:0 for the fake Graph server")
    }

    /// Starts a fake on `addr`, which must be a loopback address.
    pub async fn start_at(addr: SocketAddr, options: FakeOptions) -> io::Result<FakeGraph> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the fake only listens on loopback; {addr} is not"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        // LIMITATION: item metadata lives in memory only — a fake restarted on
        // the same data_dir starts with an empty drive.
        let (temp, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::Builder::new().prefix("fake-graph-").tempdir()?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        for sub in ["blobs", "parts", "staging"] {
            std::fs::create_dir_all(data_dir.join(sub))?;
        }
        let drive_id = random_hex(8);
        let mut faults = Faults::default();
        faults.rate_limit_per_sec = options.rate_limit_per_sec;
        faults.latency = options.latency;
        faults.bandwidth_bytes_per_sec = options.bandwidth_bytes_per_sec;
        let state = State {
            drive: Drive::new(drive_id, options.quota_total_bytes, data_dir.join("blobs")),
            options,
            identity: Identity::default(),
            sessions: Sessions::default(),
            faults,
            requests: Vec::new(),
            violations: Vec::new(),
        };
        let inner = Arc::new(Inner {
            base_url: format!("http://{local}"),
            data_dir,
            _temp: temp,
            state: Mutex::new(state),
            uploads_in_flight: AtomicUsize::new(0),
            peak_uploads: AtomicUsize::new(0),
            started: Instant::now(),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(server::serve(inner.clone(), listener));
        Ok(FakeGraph { inner })
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> FakeGraph {
        FakeGraph { inner }
    }

    /// Stops accepting connections; requests in flight finish.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The Graph base URL, `{base}/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.inner.base_url)
    }

    /// The authority; clients append `/{tenant}/oauth2/v2.0/...`.
    pub fn authority_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// The accepted client id.
    pub fn client_id(&self) -> String {
        self.inner.lock().options.client_id.clone()
    }

    /// A valid refresh token (scopes `Files.ReadWrite offline_access`), for
    /// tests that skip the login.
    pub fn issue_refresh_token(&self) -> String {
        let mut state = self.inner.lock();
        let lifetime = state.options.access_token_lifetime;
        let scopes = ["Files.ReadWrite".to_owned(), "offline_access".to_owned()];
        let (_, refresh) = state.identity.issue(&scopes, lifetime);
        refresh.unwrap_or_default()
    }

    /// A valid access token with `Files.ReadWrite`.
    pub fn issue_access_token(&self) -> String {
        let mut state = self.inner.lock();
        let lifetime = state.options.access_token_lifetime;
        state
            .identity
            .issue(&["Files.ReadWrite".to_owned()], lifetime)
            .0
    }

    /// Every stored file, ordered by path.
    pub fn files(&self) -> Vec<StoredFile> {
        self.inner.lock().drive.files()
    }

    /// The file at `path` (`/a/b.txt`), matched case-insensitively.
    pub fn file(&self, path: &str) -> Option<StoredFile> {
        let state = self.inner.lock();
        let id = find(&state.drive, path)?;
        state.drive.files().into_iter().find(|f| f.id == id)
    }

    /// The bytes stored at `path`.
    pub fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let blob = {
            let state = self.inner.lock();
            let id = find(&state.drive, path)?;
            state.drive.blob_of(&id)?.to_path_buf()
        };
        std::fs::read(blob).ok()
    }

    /// Every folder but the root, ordered by path.
    pub fn folders(&self) -> Vec<String> {
        self.inner.lock().drive.folders()
    }

    /// Seeds a remote file at `path`, creating parents and replacing any file
    /// there.
    ///
    /// Panics when the path is not a valid OneDrive path, since that is a bug
    /// in the test.
    pub fn put_file(&self, path: &str, bytes: &[u8]) {
        if let Err(message) = self.try_put_file(path, bytes) {
            panic!("put_file({path:?}) failed: {message}");
        }
    }

    /// [`FakeGraph::put_file`] that reports failure instead of panicking.
    pub fn try_put_file(&self, path: &str, bytes: &[u8]) -> Result<StoredFile, String> {
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let Some((name, parents)) = segments.split_last() else {
            return Err("the path names no file".to_owned());
        };
        let staging = self.inner.data_dir.join("staging").join(random_hex(16));
        std::fs::write(&staging, bytes).map_err(|err| format!("staging failed: {err}"))?;
        let mut state = self.inner.lock();
        let root = state.drive.root_id().to_owned();
        let result = state
            .drive
            .create_folders(&root, parents)
            .and_then(|parent| {
                state.drive.check_new_name(&parent, name)?;
                let placement = Placement::Named {
                    parent,
                    name: name.clone(),
                    conflict: drive::Conflict::Replace,
                };
                let staged = Staged {
                    path: staging.clone(),
                    size: bytes.len() as u64,
                    hash: to_base64(&digest_of(bytes)),
                    fs_info: None,
                };
                state.drive.commit(&placement, &staged)
            });
        match result {
            Ok((id, _)) => Ok(state
                .drive
                .files()
                .into_iter()
                .find(|f| f.id == id)
                .unwrap_or_else(|| StoredFile {
                    path: path.to_owned(),
                    id,
                    size: 0,
                    quick_xor_hash: String::new(),
                })),
            Err(refusal) => {
                let _ = std::fs::remove_file(&staging);
                Err(refusal.message)
            }
        }
    }

    /// Deletes the item at `path` (and everything below it); `false` if there
    /// was none.
    pub fn delete(&self, path: &str) -> bool {
        let mut state = self.inner.lock();
        match find(&state.drive, path) {
            Some(id) => {
                state.drive.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Every request so far, in arrival order of their completion.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.lock().requests.clone()
    }

    /// Every protocol rule a client broke, in order.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().violations.clone()
    }

    /// Panics listing the violations, if there are any.
    pub fn assert_no_violations(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "the client broke {} Graph protocol rule(s):\n  - {}",
            violations.len(),
            violations.join("\n  - ")
        );
    }

    /// Forgets recorded requests and violations, and resets the upload peak.
    pub fn clear_records(&self) {
        let mut state = self.inner.lock();
        state.requests.clear();
        state.violations.clear();
        self.inner.peak_uploads.store(0, Ordering::SeqCst);
    }

    /// The most simple PUTs and fragment PUTs that were in flight at once.
    pub fn peak_concurrent_uploads(&self) -> usize {
        self.inner.peak_uploads.load(Ordering::SeqCst)
    }

    /// Sessions neither completed, cancelled nor expired.
    pub fn live_sessions(&self) -> usize {
        let state = self.inner.lock();
        state
            .sessions
            .live_count(Instant::now(), state.options.session_max_age)
    }

    /// Sessions ever created.
    pub fn sessions_created(&self) -> usize {
        self.inner.lock().sessions.created
    }

    /// Bytes sent again for ranges a session already had (each refused with
    /// 416).
    pub fn bytes_resent(&self) -> u64 {
        self.inner.lock().sessions.bytes_resent
    }

    /// Fragments refused with 416 `fragmentOverlap`.
    pub fn overlapping_fragments(&self) -> usize {
        self.inner.lock().sessions.overlaps
    }

    /// Counters as JSON, for the control API.
    pub fn stats(&self) -> Value {
        json!({
            "peak_concurrent_uploads": self.peak_concurrent_uploads(),
            "live_sessions": self.live_sessions(),
            "sessions_created": self.sessions_created(),
            "bytes_resent": self.bytes_resent(),
            "overlapping_fragments": self.overlapping_fragments(),
            "violations": self.violations().len(),
            "requests": self.requests().len(),
        })
    }

    /// Answers the next `count` requests on `route` with `status` (and
    /// `Retry-After`).
    pub fn fail_next(
        &self,
        route: Route,
        status: u16,
        count: usize,
        retry_after_secs: Option<u64>,
    ) {
        self.inner
            .lock()
            .faults
            .push_failure(route, status, count, retry_after_secs);
    }

    /// Limits requests per second; beyond it, 429 with `Retry-After`.
    pub fn set_rate_limit(&self, per_sec: Option<u32>) {
        self.inner.lock().faults.rate_limit_per_sec = per_sec;
    }

    /// Stores the next `count` fragments, then loses their responses.
    pub fn lose_next_fragment_response(&self, count: usize) {
        self.inner.lock().faults.lose_fragment_responses += count;
    }

    /// Commits the files of the next `count` simple uploads, then loses their
    /// responses.
    pub fn lose_next_simple_upload_response(&self, count: usize) {
        self.inner.lock().faults.lose_simple_upload_responses += count;
    }

    /// Commits the next file completed by a session, then loses the response.
    pub fn lose_response_of_final_fragment(&self) {
        self.inner.lock().faults.lose_final_response = true;
    }

    /// Commits the next file completed by a session, then holds the response
    /// for `hold`: the file is on the drive while the client still waits, which
    /// places a client crash between "server finished" and "client recorded".
    pub fn hold_response_of_final_fragment(&self, hold: Duration) {
        self.inner.lock().faults.hold_final_response = Some(hold);
    }

    /// Cuts the next upload request after `bytes` body bytes; nothing of it is
    /// committed.
    pub fn cut_connection_after(&self, bytes: u64) {
        self.inner.lock().faults.cut_after_bytes = Some(bytes);
    }

    /// Flips a byte of the next non-empty file stored; its metadata hash
    /// describes the corrupted bytes, so a client comparing hashes sees a
    /// mismatch.
    pub fn corrupt_next_stored_file(&self) {
        self.inner.lock().faults.corrupt_next_file = true;
    }

    /// How lost responses are lost (dropped connection or 504).
    pub fn set_lost_response(&self, mode: LostResponse) {
        self.inner.lock().faults.lost_response = mode;
    }

    /// Adds latency to every request.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().faults.latency = latency;
    }

    /// Caps each request's body throughput.
    pub fn set_bandwidth(&self, bytes_per_sec: Option<u64>) {
        self.inner.lock().faults.bandwidth_bytes_per_sec = bytes_per_sec;
    }

    /// Changes the drive quota.
    pub fn set_quota_total(&self, bytes: u64) {
        self.inner.lock().drive.quota_total = bytes;
    }

    /// Expires every access token issued so far.
    pub fn expire_access_tokens(&self) {
        self.inner.lock().identity.expire_access_tokens();
    }

    /// Revokes every refresh token issued so far.
    pub fn revoke_refresh_tokens(&self) {
        self.inner.lock().identity.revoke_refresh_tokens();
    }

    /// Answers the next `count` device-code polls with `slow_down` (RFC 8628
    /// section 3.5), as a busy service may; the client must then wait 5 s more
    /// between polls.
    pub fn slow_down_next_polls(&self, count: usize) {
        self.inner.lock().faults.slow_down_polls += count;
    }

    /// Approves pending device-code logins.
    pub fn approve_device_code(&self) {
        self.inner.lock().identity.settle_devices(true);
    }

    /// Declines pending device-code logins.
    pub fn decline_device_code(&self) {
        self.inner.lock().identity.settle_devices(false);
    }

    /// Expires every live upload session now.
    pub fn expire_sessions(&self) {
        self.inner.lock().sessions.expire_all();
    }

    /// Applies a control-API fault request.
    pub fn apply_faults(&self, request: &FaultRequest) {
        for fail in request.fail_next.iter().flatten() {
            self.fail_next(fail.route, fail.status, fail.count, fail.retry_after_secs);
        }
        if let Some(limit) = request.rate_limit_per_sec {
            self.set_rate_limit((limit > 0).then_some(limit));
        }
        if let Some(ms) = request.latency_ms {
            self.set_latency(Duration::from_millis(ms));
        }
        if let Some(rate) = request.bandwidth_bytes_per_sec {
            self.set_bandwidth((rate > 0).then_some(rate));
        }
        if let Some(count) = request.lose_next_fragment_response {
            self.lose_next_fragment_response(count);
        }
        if request.lose_response_of_final_fragment == Some(true) {
            self.lose_response_of_final_fragment();
        }
        if let Some(bytes) = request.cut_connection_after {
            self.cut_connection_after(bytes);
        }
        if request.corrupt_next_stored_file == Some(true) {
            self.corrupt_next_stored_file();
        }
        if let Some(mode) = request.lost_response {
            self.set_lost_response(mode);
        }
        let flags = [
            (
                request.expire_access_tokens,
                Self::expire_access_tokens as fn(&Self),
            ),
            (request.revoke_refresh_tokens, Self::revoke_refresh_tokens),
            (request.approve_device_code, Self::approve_device_code),
            (request.decline_device_code, Self::decline_device_code),
        ];
        for (flag, action) in flags {
            if flag == Some(true) {
                action(self);
            }
        }
    }
}

/// The id of the item at `/a/b.txt`, case-insensitively.
fn find(drive: &Drive, path: &str) -> Option<String> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let addr = paths::Addr::Path {
        base: Box::new(paths::Addr::Root),
        segments,
    };
    match drive.lookup(&addr) {
        drive::Lookup::Found(id) => Some(id),
        _ => None,
    }
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Flips the middle byte of a stored file and returns the digest of the
/// corrupted bytes.
///
/// quickXorHash is linear: flipping byte `p` XORs the register with that byte's
/// pattern at bit offset `11·p mod 160`, and since 11·160 ≡ 0 (mod 160) a
/// buffer of `p mod 160` zeros followed by the pattern lands it at the same
/// offset. The length term cancels out.
pub(crate) fn corrupt_file(path: &Path, size: u64, digest: Digest) -> io::Result<Digest> {
    use std::io::{Read, Seek, SeekFrom, Write};

    const MASK: u8 = 0xFF;
    let position = size / 2;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(position))?;
    file.read_exact(&mut byte)?;
    file.seek(SeekFrom::Start(position))?;
    file.write_all(&[byte[0] ^ MASK])?;
    file.sync_all()?;

    let lead = (position % 160) as usize;
    let mut probe = vec![0u8; lead + 1];
    let zeros = digest_of(&probe);
    probe[lead] = MASK;
    let flipped = digest_of(&probe);
    let mut out = digest;
    for ((o, a), b) in out.iter_mut().zip(flipped).zip(zeros) {
        *o ^= a ^ b;
    }
    Ok(out)
}
