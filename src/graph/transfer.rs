//! Uploading one whole local file, verified.
//!
//! Empty files and files up to the simple-upload threshold go in one PUT (a
//! session cannot carry zero bytes). Larger files go through an upload session,
//! one fragment in memory at a time, each fragment a multiple of 320 KiB except
//! the last.
//!
//! quickXorHash is computed while the fragments are read, in file order, with a
//! high-water mark: a byte is fed to the hasher the first time it is read and
//! never again. After a failed fragment the session is asked which byte it
//! expects next (it may hold all, part or none of the fragment) and the upload
//! continues from there, re-reading but not re-hashing the bytes before the
//! mark. A session that is gone, or close to its expiry or its 24-hour cap, is
//! cancelled and replaced; the new one starts at byte 0 with a fresh hasher.
//!
//! The result is accepted only when the item's size and its quickXorHash,
//! decoded to bytes, equal the local ones. Nothing here is persisted; the
//! daemon keeps its own session records.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::quickxor::{to_base64, Digest, QuickXorHash};
use super::retry::{retrying, RetryPolicy};
use super::{
    Disposition, DriveItem, FragmentOutcome, GraphApi, GraphError, RemotePath, SessionStatus,
    UploadSession,
};
use crate::config::{ConflictPolicy, UploaderConfig, FRAGMENT_ALIGNMENT_BYTES};

/// Largest file accepted. Microsoft documents "250 GB" without saying whether
/// it means 10^9 or 2^30; the smaller reading is used so that no file is sent
/// only to be refused at the end.
pub const MAX_FILE_BYTES: u64 = 250_000_000_000;

/// Reports progress: bytes the server has acknowledged, and the file size.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// What the caller of a transfer hears about it, and may veto.
///
/// The daemon records each session durably in
/// [`UploadJournal::session_opened`], which runs after the session is created
/// and before its first byte is sent, so that a restart can resume it; and it
/// re-checks the local file in [`UploadJournal::before_fragment`], so that a
/// file that changed during the upload is not committed spliced, and so that
/// shutdown stops a session between two fragments.
pub trait UploadJournal: Send + Sync {
    /// A session was opened; an error cancels it and ends the transfer.
    fn session_opened<'a>(
        &'a self,
        _session: &'a UploadSession,
    ) -> BoxFuture<'a, Result<(), GraphError>> {
        async { Ok(()) }.boxed()
    }

    /// A recorded session was resumed with `offset` bytes already on the
    /// server.
    fn resumed(&self, _offset: u64) {}

    /// The server has acknowledged the first `acknowledged` of `total` bytes.
    fn progressed(&self, _acknowledged: u64, _total: u64) {}

    /// Asked before the bytes from `offset` on are sent (`last` when they
    /// complete the file; a simple upload asks once).
    /// [`GraphError::Interrupted`] stops the transfer and keeps its session, to
    /// be resumed; any other error cancels the session and ends the transfer.
    fn before_fragment(&self, _offset: u64, _last: bool) -> Result<(), GraphError> {
        Ok(())
    }
}

/// A journal that only reports progress, for interactive uploads.
pub struct ProgressOnly<'a>(pub Progress<'a>);

impl UploadJournal for ProgressOnly<'_> {
    fn progressed(&self, acknowledged: u64, total: u64) {
        (self.0)(acknowledged, total)
    }
}

/// How to upload.
#[derive(Clone, Copy, Debug)]
pub struct UploadOptions {
    /// What to do when the name is taken.
    pub conflict: ConflictPolicy,
    /// Files up to this size (and empty ones) go by simple upload.
    pub simple_upload_threshold_bytes: u64,
    /// Fragment size; rounded down to a multiple of 320 KiB (at least one).
    pub fragment_size_bytes: u64,
    /// Retries of single requests.
    pub retry: RetryPolicy,
}

impl UploadOptions {
    /// The uploader settings from the configuration, with `conflict`.
    pub fn from_config(uploader: &UploaderConfig, conflict: ConflictPolicy) -> Self {
        Self {
            conflict,
            simple_upload_threshold_bytes: uploader.simple_upload_threshold_bytes,
            fragment_size_bytes: uploader.fragment_size_bytes,
            retry: RetryPolicy::from_config(uploader),
        }
    }

    fn fragment_bytes(&self) -> u64 {
        (self.fragment_size_bytes / FRAGMENT_ALIGNMENT_BYTES).max(1) * FRAGMENT_ALIGNMENT_BYTES
    }
}

/// A verified upload.
#[derive(Clone, Debug)]
pub struct Uploaded {
    /// The item as OneDrive reported it.
    pub item: DriveItem,
    /// Bytes uploaded (the file size).
    pub bytes: u64,
    /// The quickXorHash of the local bytes, equal to the item's.
    pub quick_xor_hash: Digest,
    /// Upload sessions used: 0 for a simple upload, more than 1 after a session
    /// was replaced.
    pub sessions: u32,
}

/// Uploads the file at `local` to `remote`, creating the parent folders, and
/// verifies it.
pub async fn upload_file<G: GraphApi + ?Sized>(
    api: &G,
    local: &Path,
    remote: &RemotePath,
    options: &UploadOptions,
    progress: Progress<'_>,
) -> Result<Uploaded, GraphError> {
    let file = tokio::fs::File::open(local)
        .await
        .map_err(|e| local_io(local, e))?;
    let metadata = file.metadata().await.map_err(|e| local_io(local, e))?;
    if !metadata.is_file() {
        let not_a_file =
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
        return Err(local_io(local, not_a_file));
    }
    let journal = ProgressOnly(progress);
    upload_open_file(
        api,
        file,
        metadata.len(),
        local,
        remote,
        options,
        &journal,
        None,
    )
    .await
}

/// Uploads `size` bytes of an open file; `label` names it in errors.
///
/// `resume` is a session a previous run opened for this very file: the transfer
/// asks the server where it stands and goes on from there, or opens a new
/// session if it is gone.
#[allow(clippy::too_many_arguments)]
pub async fn upload_open_file<G: GraphApi + ?Sized>(
    api: &G,
    mut file: tokio::fs::File,
    size: u64,
    label: &Path,
    remote: &RemotePath,
    options: &UploadOptions,
    journal: &dyn UploadJournal,
    resume: Option<UploadSession>,
) -> Result<Uploaded, GraphError> {
    check_before_sending(api, size, label, remote, options).await?;
    if let Some(parent) = remote.parent().filter(|p| !p.is_root()) {
        retrying(&options.retry, || api.ensure_folder(&parent)).await?;
    }

    if size <= options.simple_upload_threshold_bytes {
        let mut content = Vec::with_capacity(size as usize);
        let read = (&mut file).take(size).read_to_end(&mut content).await;
        read.map_err(|e| local_io(label, e))?;
        // The bytes just read are the ones sent, so the file must still be the
        // vetted one.
        journal.before_fragment(0, true)?;
        let digest = super::quickxor::digest_of(&content);
        let content = Bytes::from(content);
        let conflict = options.conflict;
        let sent_before = std::sync::atomic::AtomicBool::new(false);
        let item = retrying(&options.retry, || async {
            // A repeat follows an attempt whose answer may have been lost after
            // the server stored the file: look before sending it again, or the
            // repeat meets its own copy as a conflict (or a `name 1` copy).
            if sent_before.swap(true, std::sync::atomic::Ordering::Relaxed) {
                if let Some(item) = matching_item(api, remote, size, &digest).await? {
                    return Ok(item);
                }
            }
            api.upload_small(remote, content.clone(), conflict).await
        })
        .await?;
        journal.progressed(size, size);
        let item = verified(api, item, remote, size, &digest, &options.retry).await?;
        return Ok(Uploaded {
            item,
            bytes: size,
            quick_xor_hash: digest,
            sessions: 0,
        });
    }

    let mut sender = SessionSender {
        api,
        file,
        label,
        size,
        remote,
        options,
        journal,
    };
    let (item, digest, sessions) = sender.run(resume).await?;
    let item = verified(api, item, remote, size, &digest, &options.retry).await?;
    Ok(Uploaded {
        item,
        bytes: size,
        quick_xor_hash: digest,
        sessions,
    })
}

/// The item at `remote`, if it holds exactly `size` bytes hashing to `digest`.
pub async fn matching_item<G: GraphApi + ?Sized>(
    api: &G,
    remote: &RemotePath,
    size: u64,
    digest: &Digest,
) -> Result<Option<DriveItem>, GraphError> {
    let item = api.item_by_path(remote).await?;
    Ok(item.filter(|item| item.size == Some(size) && item.quick_xor_hash() == Some(*digest)))
}

/// Refuses, before any upload request, what cannot succeed: a too large file,
/// the root as a target, a file bigger than the space left.
async fn check_before_sending<G: GraphApi + ?Sized>(
    api: &G,
    size: u64,
    label: &Path,
    remote: &RemotePath,
    options: &UploadOptions,
) -> Result<(), GraphError> {
    if size > MAX_FILE_BYTES {
        return Err(GraphError::FileTooLarge {
            path: label.to_path_buf(),
            bytes: size,
            limit: MAX_FILE_BYTES,
        });
    }
    if remote.is_root() {
        return Err(GraphError::InvalidName {
            path: "/".into(),
            source: super::names::NameError::Empty,
        });
    }
    if size == 0 {
        return Ok(());
    }
    let drive = retrying(&options.retry, || api.drive()).await?;
    match drive.quota.and_then(|q| q.remaining) {
        Some(remaining) if remaining < size => Err(GraphError::QuotaExceeded {
            path: label.to_path_buf(),
            bytes: size,
            remaining,
        }),
        _ => Ok(()),
    }
}

/// How long a resumed session is trusted to live before its next fragment
/// reports the real expiry.
const RESUMED_EXPIRY_GRACE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// How a failed request ends a session's run: a new session for a dead one,
/// giving up for a permanent error, and otherwise a pause that keeps the
/// session (and its record), so that transient trouble never costs the bytes
/// already sent.
fn stop_for(err: GraphError) -> Stop {
    match err.disposition() {
        Disposition::NewSession => Stop::Restart(err),
        Disposition::Permanent => Stop::Fail(err),
        _ => Stop::Pause(err),
    }
}

/// Why a session stopped early.
enum Stop {
    /// The session is unusable; a new one may succeed.
    Restart(GraphError),
    /// Give up.
    Fail(GraphError),
    /// Stop for now and keep the session, to be resumed later.
    Pause(GraphError),
}

/// Sends one file through upload sessions.
struct SessionSender<'a, G: ?Sized> {
    api: &'a G,
    file: tokio::fs::File,
    label: &'a Path,
    size: u64,
    remote: &'a RemotePath,
    options: &'a UploadOptions,
    journal: &'a dyn UploadJournal,
}

/// Where a session stands: the server's offset and the hash high-water mark.
struct Cursor {
    offset: u64,
    hasher: QuickXorHash,
    /// Bytes before this offset have been fed to the hasher.
    hashed_to: u64,
    /// Failed fragments since the last one the server accepted.
    failures: u32,
}

impl Cursor {
    fn at_start() -> Cursor {
        Cursor {
            offset: 0,
            hasher: QuickXorHash::new(),
            hashed_to: 0,
            failures: 0,
        }
    }
}

impl<G: GraphApi + ?Sized> SessionSender<'_, G> {
    /// Resumes `resume` if it is still alive, then opens sessions until one
    /// carries the whole file or the attempts run out.
    async fn run(
        &mut self,
        resume: Option<UploadSession>,
    ) -> Result<(DriveItem, Digest, u32), GraphError> {
        let mut sessions = 0;
        if let Some(session) = resume {
            sessions += 1;
            match self.resume(session.clone()).await {
                Ok(done) => return Ok((done.0, done.1, sessions)),
                Err(Stop::Pause(err)) => return Err(err),
                Err(Stop::Fail(err)) => {
                    self.cancel(&session).await;
                    return Err(err);
                }
                Err(Stop::Restart(err)) => {
                    tracing::debug!(error = %err, "recorded session unusable; starting anew");
                    self.cancel(&session).await;
                }
            }
        }
        loop {
            let (api, remote, conflict) = (self.api, self.remote, self.options.conflict);
            let session = retrying(&self.options.retry, || async {
                let created = api.create_session(remote, self.size, conflict).await;
                match created {
                    Err(GraphError::NameConflict { .. }) => Err(self.why_taken().await),
                    other => other,
                }
            })
            .await?;
            sessions += 1;
            tracing::debug!(
                bytes = self.size,
                attempt = sessions,
                "upload session created"
            );
            if let Err(err) = self.journal.session_opened(&session).await {
                self.cancel(&session).await;
                return Err(err);
            }

            let cursor = Cursor::at_start();
            let err = match self.send(session.clone(), cursor).await {
                Ok((item, digest)) => return Ok((item, digest, sessions)),
                Err(Stop::Pause(err)) => return Err(err),
                Err(Stop::Restart(err)) if sessions < self.options.retry.max_attempts => err,
                Err(Stop::Restart(err) | Stop::Fail(err)) => {
                    self.cancel(&session).await;
                    return Err(err);
                }
            };
            tracing::debug!(attempt = sessions, error = %err, "replacing upload session");
            self.cancel(&session).await;
        }
    }

    /// Continues a session opened by an earlier run from the byte the server
    /// expects next.
    ///
    /// The bytes before that offset were hashed by the earlier run, which is
    /// gone, so they are read and hashed once more (not sent).
    async fn resume(&mut self, mut session: UploadSession) -> Result<(DriveItem, Digest), Stop> {
        // The recorded expiry is the one announced at creation; every accepted
        // fragment has moved it since, so only the 24-hour cap is judged here
        // and the server's answer below tells whether the session still lives.
        let now = OffsetDateTime::now_utc();
        if session.too_old(now) {
            return Err(Stop::Restart(GraphError::SessionExpired {
                remote: self.remote.to_string(),
            }));
        }
        let api = self.api;
        let status = retrying(&self.options.retry, || api.session_status(&session)).await;
        let status = status.map_err(stop_for)?;
        session.expiration = session.expiration.max(now + RESUMED_EXPIRY_GRACE);
        let offset = match status {
            SessionStatus::NextExpected(offset) if offset <= self.size => offset,
            // The session finished (or vanished) before the crash was recorded:
            // the file counts as uploaded only if the remote item holds exactly
            // these bytes.
            SessionStatus::AllReceived | SessionStatus::NotFound => {
                let digest = self
                    .hash_prefix(self.size)
                    .await
                    .map_err(Stop::Fail)?
                    .finalize();
                return self
                    .find_committed(&digest)
                    .await
                    .map(|item| (item, digest));
            }
            SessionStatus::NextExpected(_) => {
                return Err(Stop::Restart(
                    self.unexpected("a resumed session expects too much"),
                ))
            }
        };
        let hasher = self.hash_prefix(offset).await.map_err(Stop::Fail)?;
        tracing::debug!(offset, bytes = self.size, "resuming upload session");
        self.journal.resumed(offset);
        let cursor = Cursor {
            offset,
            hasher,
            hashed_to: offset,
            failures: 0,
        };
        self.send(session, cursor).await
    }

    /// Tells the two causes of 409 `nameAlreadyExists` on session creation
    /// apart (Graph gives both the same code): a file of that name under the `fail`
    /// policy, or another live session for the same name, which holds it until
    /// it is cancelled or expires and so is worth waiting for.
    async fn why_taken(&self) -> GraphError {
        let remote = self.remote.to_string();
        if self.options.conflict != ConflictPolicy::Fail {
            return GraphError::SessionAlreadyExists { remote };
        }
        match self.api.item_by_path(self.remote).await {
            Ok(None) => GraphError::SessionAlreadyExists { remote },
            Ok(Some(_)) => GraphError::NameConflict { path: remote },
            Err(err) => err,
        }
    }

    /// Hashes the first `len` bytes of the file.
    async fn hash_prefix(&mut self, len: u64) -> Result<QuickXorHash, GraphError> {
        let mut hasher = QuickXorHash::new();
        let mut start = 0;
        let step = self.options.fragment_bytes();
        while start < len {
            let end = (start + step).min(len);
            hasher.update(&self.read(start, end).await?);
            start = end;
        }
        Ok(hasher)
    }

    /// Sends the file through `session`, from the cursor on.
    async fn send(
        &mut self,
        mut session: UploadSession,
        mut cursor: Cursor,
    ) -> Result<(DriveItem, Digest), Stop> {
        let fragment = self.options.fragment_bytes();
        loop {
            if session.needs_replacement(OffsetDateTime::now_utc()) {
                return Err(Stop::Restart(GraphError::SessionExpired {
                    remote: self.remote.to_string(),
                }));
            }
            let end = (cursor.offset + fragment).min(self.size);
            let content = self.read(cursor.offset, end).await.map_err(Stop::Fail)?;
            // Asked after the read: any write that could have reached the bytes
            // just read has changed the file's mtime by now.
            match self
                .journal
                .before_fragment(cursor.offset, end == self.size)
            {
                Ok(()) => {}
                Err(err @ GraphError::Interrupted { .. }) => return Err(Stop::Pause(err)),
                Err(err) => return Err(Stop::Fail(err)),
            }
            if end > cursor.hashed_to {
                let fresh = (cursor.hashed_to - cursor.offset) as usize;
                cursor.hasher.update(&content[fresh..]);
                cursor.hashed_to = end;
            }

            let sent = self
                .api
                .upload_fragment(&session, cursor.offset, content, self.size)
                .await;
            match sent {
                Ok(FragmentOutcome::Accepted {
                    next_expected,
                    expiration,
                }) => {
                    if let Some(expiration) = expiration {
                        session.expiration = expiration;
                    }
                    if let Some(done) = self.accept(&mut cursor, &session, next_expected).await? {
                        return Ok(done);
                    }
                }
                Ok(FragmentOutcome::Completed(item)) if cursor.hashed_to == self.size => {
                    self.journal.progressed(self.size, self.size);
                    return Ok((*item, cursor.hasher.finalize()));
                }
                Ok(FragmentOutcome::Completed(_)) => {
                    return Err(Stop::Restart(
                        self.unexpected("completed before the last byte"),
                    ));
                }
                Err(err) => {
                    if let Some(done) = self.recover(&mut cursor, &session, err).await? {
                        return Ok(done);
                    }
                }
            }
        }
    }

    /// Moves the cursor to the server's next expected byte after an accepted
    /// fragment.
    async fn accept(
        &mut self,
        cursor: &mut Cursor,
        session: &UploadSession,
        next_expected: u64,
    ) -> Result<Option<(DriveItem, Digest)>, Stop> {
        if next_expected <= cursor.offset || next_expected > cursor.hashed_to {
            // The server's view disagrees with what was sent; its status is
            // authoritative.
            return self.resync(cursor, session).await;
        }
        cursor.offset = next_expected;
        cursor.failures = 0;
        self.journal.progressed(next_expected, self.size);
        tracing::debug!(
            offset = next_expected,
            bytes = self.size,
            "fragment accepted"
        );
        Ok(None)
    }

    /// Handles a failed fragment; returns the item when the upload turns out
    /// complete.
    async fn recover(
        &mut self,
        cursor: &mut Cursor,
        session: &UploadSession,
        err: GraphError,
    ) -> Result<Option<(DriveItem, Digest)>, Stop> {
        cursor.failures += 1;
        let max_attempts = self.options.retry.max_attempts;
        let wait = match err.disposition() {
            Disposition::NewSession => return Err(Stop::Restart(err)),
            Disposition::ResumeFromServerOffset if cursor.failures < max_attempts => None,
            Disposition::Retry { .. } => {
                match self.options.retry.delay_before_retry(&err, cursor.failures) {
                    Some(delay) => Some(delay),
                    None => return Err(stop_for(err)),
                }
            }
            _ => return Err(stop_for(err)),
        };
        tracing::debug!(
            offset = cursor.offset,
            attempt = cursor.failures,
            retry_after_ms = wait.unwrap_or_default().as_millis() as u64,
            error = %err,
            "fragment failed, asking the session for its offset"
        );
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        self.resync(cursor, session).await
    }

    /// Asks the session where it stands and moves the cursor there.
    async fn resync(
        &mut self,
        cursor: &mut Cursor,
        session: &UploadSession,
    ) -> Result<Option<(DriveItem, Digest)>, Stop> {
        let api = self.api;
        let status = retrying(&self.options.retry, || api.session_status(session)).await;
        let status = status.map_err(stop_for)?;
        match status {
            SessionStatus::NextExpected(offset) if offset <= cursor.hashed_to => {
                cursor.offset = offset;
                Ok(None)
            }
            SessionStatus::NextExpected(_) => Err(Stop::Fail(
                self.unexpected("the session expects a byte never sent"),
            )),
            // Every byte arrived but the answer to the last fragment was lost.
            SessionStatus::AllReceived | SessionStatus::NotFound
                if cursor.hashed_to == self.size =>
            {
                let digest = cursor.hasher.finalize();
                self.find_committed(&digest)
                    .await
                    .map(|item| Some((item, digest)))
            }
            SessionStatus::AllReceived | SessionStatus::NotFound => {
                Err(Stop::Restart(GraphError::SessionExpired {
                    remote: self.remote.to_string(),
                }))
            }
        }
    }

    /// Looks for the item a session committed without telling us; it counts
    /// only if its size and hash are those of the local file.
    async fn find_committed(&self, digest: &Digest) -> Result<DriveItem, Stop> {
        // LIMITATION: a lost `rename` commit is resent — its name is unknown
        let (api, remote, size) = (self.api, self.remote, self.size);
        let found = retrying(&self.options.retry, || {
            matching_item(api, remote, size, digest)
        })
        .await;
        match found.map_err(Stop::Fail)? {
            Some(item) => {
                self.journal.progressed(self.size, self.size);
                Ok(item)
            }
            None => Err(Stop::Restart(GraphError::SessionExpired {
                remote: remote.to_string(),
            })),
        }
    }

    async fn cancel(&self, session: &UploadSession) {
        // Best effort: an abandoned session expires on its own; it only holds
        // space.
        if let Err(err) = self.api.cancel_session(session).await {
            tracing::debug!(error = %err, "cancelling upload session failed");
        }
    }

    /// Reads bytes `start..end` of the file.
    async fn read(&mut self, start: u64, end: u64) -> Result<Bytes, GraphError> {
        let mut buffer = vec![0; (end - start) as usize];
        self.file
            .seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| self.io(e))?;
        self.file
            .read_exact(&mut buffer)
            .await
            .map_err(|e| self.io(e))?;
        Ok(Bytes::from(buffer))
    }

    fn io(&self, err: std::io::Error) -> GraphError {
        local_io(self.label, err)
    }

    fn unexpected(&self, what: &str) -> GraphError {
        GraphError::UnexpectedResponse {
            operation: "upload fragment",
            detail: format!("{what} of {}", self.remote),
        }
    }
}

/// Checks the uploaded item against the local size and hash, looking it up
/// again (with retries) while Graph has not computed the hash yet.
async fn verified<G: GraphApi + ?Sized>(
    api: &G,
    item: DriveItem,
    remote: &RemotePath,
    size: u64,
    digest: &Digest,
    policy: &RetryPolicy,
) -> Result<DriveItem, GraphError> {
    match verify(&item, remote, size, digest) {
        Err(GraphError::HashMissing { .. }) => {}
        Err(mismatch @ GraphError::IntegrityMismatch { .. }) => {
            // The item is the one this upload just wrote, and it is wrong:
            // remove it, so that the next attempt does not meet its own bad
            // copy as a name conflict.
            if let Err(err) = retrying(policy, || api.delete_item(&item)).await {
                tracing::warn!(error = %err, "cannot delete a copy that failed verification");
            }
            return Err(mismatch);
        }
        other => return other.map(|()| item),
    }
    retrying(policy, || async {
        let item = api.item_by_path(remote).await?;
        let item = item.ok_or_else(|| GraphError::HashMissing {
            remote: remote.to_string(),
        })?;
        verify(&item, remote, size, digest).map(|()| item)
    })
    .await
}

/// Compares size and quickXorHash, as decoded bytes.
pub fn verify(
    item: &DriveItem,
    remote: &RemotePath,
    size: u64,
    digest: &Digest,
) -> Result<(), GraphError> {
    let mismatch =
        |what, local_value: String, remote_value: String| GraphError::IntegrityMismatch {
            remote: remote.to_string(),
            what,
            local_value,
            remote_value,
        };
    if item.size != Some(size) {
        let remote_size = item
            .size
            .map_or_else(|| "unknown".into(), |s| s.to_string());
        return Err(mismatch("size", size.to_string(), remote_size));
    }
    let Some(text) = item.quick_xor_hash_text() else {
        return Err(GraphError::HashMissing {
            remote: remote.to_string(),
        });
    };
    match item.quick_xor_hash() {
        Some(remote_digest) if remote_digest == *digest => Ok(()),
        _ => Err(mismatch(
            "quickXorHash",
            to_base64(digest),
            text.to_string(),
        )),
    }
}

fn local_io(path: &Path, source: std::io::Error) -> GraphError {
    GraphError::LocalIo {
        path: PathBuf::from(path),
        source,
    }
}
