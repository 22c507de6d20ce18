//! [`Paced`]: a [`GraphApi`] that passes every request through the process-wide
//! [`Pacer`], and remembers the folders it has made sure of.
//!
//! Each worker has its own `Paced` over its own HTTP client, and they all share
//! one [`PacedShared`] (pacer, folder memo, drive memo).
//!
//! Wrapping the API, rather than the places that call it, means no request can
//! skip the rate limit or the Retry-After gate, whichever code path sends it
//! (folder creation, fragments, status queries, verification look-ups). The
//! folder memo saves the look-ups that `mkdir -p` would otherwise repeat for
//! every file of a busy outbox folder; it is forgotten when an upload reports a
//! missing parent, so a folder deleted on OneDrive is made again. Likewise the
//! drive (with its quota, which every upload checks first) is asked for at most
//! once per [`DRIVE_MEMO_TTL`]; an upload that a stale figure lets through is
//! refused by OneDrive with 507 instead, which pauses the job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;

use super::pacer::Pacer;
use crate::config::ConflictPolicy;
use crate::graph::{
    ensure_folder_path, Drive, DriveItem, FragmentOutcome, GraphApi, GraphError, RemotePath,
    SessionStatus, UploadSession,
};

/// How long a fetched drive (and its quota) is reused.
pub const DRIVE_MEMO_TTL: Duration = Duration::from_secs(30);

/// How long the gate closes on a 429 or 503 that came without `Retry-After`.
const DEFAULT_HOLD_OFF: Duration = Duration::from_secs(5);

/// What every worker's [`Paced`] shares.
#[derive(Debug)]
pub struct PacedShared {
    /// The process-wide rate limit and Retry-After gate.
    pacer: Arc<Pacer>,
    /// Folders known to exist, by lower-cased path (OneDrive names ignore
    /// case).
    folders: Mutex<HashMap<String, DriveItem>>,
    /// The drive as last fetched, and when.
    drive: Mutex<Option<(Instant, Drive)>>,
}

impl PacedShared {
    /// Shared state around `pacer`, with empty memos.
    pub fn new(pacer: Arc<Pacer>) -> Arc<Self> {
        Arc::new(Self {
            pacer,
            folders: Mutex::new(HashMap::new()),
            drive: Mutex::new(None),
        })
    }

    /// Forgets every folder known to exist, after OneDrive said one is missing.
    pub fn forget_folders(&self) {
        self.folders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// A [`GraphApi`] whose every request waits for the [`Pacer`] and reports
/// throttling to it.
pub struct Paced<G> {
    inner: G,
    /// Shared with every other worker's `Paced`.
    shared: Arc<PacedShared>,
}

impl<G: GraphApi> Paced<G> {
    /// Paces `inner` with the pacer and memos in `shared`.
    pub fn new(inner: G, shared: Arc<PacedShared>) -> Self {
        Self { inner, shared }
    }

    fn folder_key(path: &RemotePath) -> String {
        path.to_string().to_lowercase()
    }

    /// The pacer in use.
    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.shared.pacer
    }

    async fn call<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, GraphError>>,
    ) -> Result<T, GraphError> {
        self.shared.pacer.admit().await;
        let result = request.await;
        if let Err(err) = &result {
            self.observe(err);
            if err.is_status(404, None) {
                self.shared.forget_folders();
            }
        }
        result
    }

    /// Closes the gate for the whole pool when Graph says it is throttling us.
    fn observe(&self, err: &GraphError) {
        let Some(failure) = err.service_failure() else {
            return;
        };
        if !matches!(failure.status, 429 | 503) {
            return;
        }
        let hold_off = failure.retry_after.unwrap_or(DEFAULT_HOLD_OFF);
        if self.shared.pacer.hold_off(hold_off) {
            tracing::warn!(
                status = failure.status,
                retry_after_ms = hold_off.as_millis() as u64,
                "onedrive is throttling; pausing all uploads"
            );
        }
    }
}

impl<G: GraphApi> GraphApi for Paced<G> {
    fn ensure_folder<'a>(
        &'a self,
        path: &'a RemotePath,
    ) -> BoxFuture<'a, Result<DriveItem, GraphError>> {
        async move {
            let key = Self::folder_key(path);
            let known = self
                .shared
                .folders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            if let Some(folder) = known {
                return Ok(folder);
            }
            let folder = ensure_folder_path(self, path).await?;
            self.shared
                .folders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, folder.clone());
            Ok(folder)
        }
        .boxed()
    }

    fn drive(&self) -> BoxFuture<'_, Result<Drive, GraphError>> {
        async move {
            let memo = self
                .shared
                .drive
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some((_, drive)) = memo.filter(|(at, _)| at.elapsed() < DRIVE_MEMO_TTL) {
                return Ok(drive);
            }
            let drive = self.call(self.inner.drive()).await?;
            *self.shared.drive.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((Instant::now(), drive.clone()));
            Ok(drive)
        }
        .boxed()
    }

    fn item_by_path<'a>(
        &'a self,
        path: &'a RemotePath,
    ) -> BoxFuture<'a, Result<Option<DriveItem>, GraphError>> {
        self.call(self.inner.item_by_path(path)).boxed()
    }

    fn create_folder<'a>(
        &'a self,
        parent: &'a DriveItem,
        name: &'a str,
    ) -> BoxFuture<'a, Result<DriveItem, GraphError>> {
        self.call(self.inner.create_folder(parent, name)).boxed()
    }

    fn list_children<'a>(
        &'a self,
        path: &'a RemotePath,
    ) -> BoxFuture<'a, Result<Vec<DriveItem>, GraphError>> {
        self.call(self.inner.list_children(path)).boxed()
    }

    fn upload_small<'a>(
        &'a self,
        path: &'a RemotePath,
        content: Bytes,
        conflict: ConflictPolicy,
    ) -> BoxFuture<'a, Result<DriveItem, GraphError>> {
        self.call(self.inner.upload_small(path, content, conflict))
            .boxed()
    }

    fn create_session<'a>(
        &'a self,
        path: &'a RemotePath,
        size: u64,
        conflict: ConflictPolicy,
    ) -> BoxFuture<'a, Result<UploadSession, GraphError>> {
        self.call(self.inner.create_session(path, size, conflict))
            .boxed()
    }

    fn session_status<'a>(
        &'a self,
        session: &'a UploadSession,
    ) -> BoxFuture<'a, Result<SessionStatus, GraphError>> {
        self.call(self.inner.session_status(session)).boxed()
    }

    fn upload_fragment<'a>(
        &'a self,
        session: &'a UploadSession,
        offset: u64,
        content: Bytes,
        total: u64,
    ) -> BoxFuture<'a, Result<FragmentOutcome, GraphError>> {
        self.call(self.inner.upload_fragment(session, offset, content, total))
            .boxed()
    }

    fn cancel_session<'a>(
        &'a self,
        session: &'a UploadSession,
    ) -> BoxFuture<'a, Result<(), GraphError>> {
        self.call(self.inner.cancel_session(session)).boxed()
    }

    fn delete_item<'a>(&'a self, item: &'a DriveItem) -> BoxFuture<'a, Result<(), GraphError>> {
        self.call(self.inner.delete_item(item)).boxed()
    }
}
