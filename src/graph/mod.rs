//! Microsoft Graph: the only module that knows Graph URLs.
//!
//! - [`GraphApi`] is what the rest of the daemon sees: one method per Graph
//!   operation, each a single attempt, with `Send` futures. [`GraphClient`]
//!   implements it over HTTP; tests of the uploader can implement it in memory.
//! - [`error`] maps every failure to a [`Disposition`] from one table;
//!   [`retry`] is the small per-request retry policy built on it, shared by the
//!   CLI and the daemon's uploader.
//! - [`path`] validates names before any request and encodes them per segment;
//!   [`names`] holds OneDrive's rules; [`quickxor`] the content hash.
//! - [`transfer::upload_file`] sends a whole local file (simple upload or
//!   session), resumes from the server's offset after a failed fragment, and
//!   verifies size and quickXorHash.
//!
//! Nothing here is persisted; the daemon persists [`UploadSession`] itself.

pub mod client;
pub mod error;
pub mod names;
pub mod path;
pub mod quickxor;
pub mod retry;
pub mod session;
pub mod transfer;
pub mod types;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;

pub use client::GraphClient;
pub use error::{Disposition, Endpoint, GraphError, ServiceFailure};
pub use path::RemotePath;
pub use retry::RetryPolicy;
pub use session::{FragmentOutcome, SessionStatus, UploadSession, UploadUrl};
pub use types::{Drive, DriveItem, Quota};

use crate::config::ConflictPolicy;

/// The `User-Agent` sent to Microsoft, in the `ISV|Company|App/Version` form
/// Microsoft asks for so that throttling decisions can tell applications apart.
pub const USER_AGENT: &str = concat!(
    "ISV|onedrive-syncd|onedrive-syncd/",
    env!("CARGO_PKG_VERSION")
);

/// The Graph operations the daemon uses. Each call is one attempt (plus one
/// token refresh on a 401); retrying is the caller's decision, guided by
/// [`GraphError::disposition`].
pub trait GraphApi: Send + Sync {
    /// The signed-in user's drive, with owner and quota.
    fn drive(&self) -> BoxFuture<'_, Result<Drive, GraphError>>;

    /// The item at `path`, or `None` when there is none.
    fn item_by_path<'a>(
        &'a self,
        path: &'a RemotePath,
    ) -> BoxFuture<'a, Result<Option<DriveItem>, GraphError>>;

    /// Creates folder `name` inside `parent`, failing with 409 if the name is
    /// taken.
    fn create_folder<'a>(
        &'a self,
        parent: &'a DriveItem,
        name: &'a str,
    ) -> BoxFuture<'a, Result<DriveItem, GraphError>>;

    /// Every child of the folder at `path`, following all pages.
    fn list_children<'a>(
        &'a self,
        path: &'a RemotePath,
    ) -> BoxFuture<'a, Result<Vec<DriveItem>, GraphError>>;

    /// Uploads a small file in one request.
    fn upload_small<'a>(
        &'a self,
        path: &'a RemotePath,
        content: Bytes,
        conflict: ConflictPolicy,
    ) -> BoxFuture<'a, Result<DriveItem, GraphError>>;

    /// Opens an upload session for a file of `size` bytes.
    fn create_session<'a>(
        &'a self,
        path: &'a RemotePath,
        size: u64,
        conflict: ConflictPolicy,
    ) -> BoxFuture<'a, Result<UploadSession, GraphError>>;

    /// Asks the server which byte the session expects next.
    fn session_status<'a>(
        &'a self,
        session: &'a UploadSession,
    ) -> BoxFuture<'a, Result<SessionStatus, GraphError>>;

    /// Sends the bytes starting at `offset` of a `total`-byte file.
    fn upload_fragment<'a>(
        &'a self,
        session: &'a UploadSession,
        offset: u64,
        content: Bytes,
        total: u64,
    ) -> BoxFuture<'a, Result<FragmentOutcome, GraphError>>;

    /// Drops a session and the bytes it holds; an unknown session is not an
    /// error.
    fn cancel_session<'a>(
        &'a self,
        session: &'a UploadSession,
    ) -> BoxFuture<'a, Result<(), GraphError>>;

    /// Deletes an item (to the drive's recycle bin); an item already gone is
    /// not an error.
    fn delete_item<'a>(&'a self, item: &'a DriveItem) -> BoxFuture<'a, Result<(), GraphError>>;

    /// Creates `path` and any missing parents (`mkdir -p`) and returns the
    /// folder.
    ///
    /// Idempotent, and safe when several tasks create the same path at once: a
    /// folder that appears between the lookup and the creation (409) is looked
    /// up instead.
    fn ensure_folder<'a>(
        &'a self,
        path: &'a RemotePath,
    ) -> BoxFuture<'a, Result<DriveItem, GraphError>> {
        ensure_folder_path(self, path).boxed()
    }
}

/// `mkdir -p` over any [`GraphApi`]: what [`GraphApi::ensure_folder`] does by
/// default, for implementations that wrap it (to cache or pace) and still need
/// the walk itself.
pub async fn ensure_folder_path<G: GraphApi + ?Sized>(
    api: &G,
    path: &RemotePath,
) -> Result<DriveItem, GraphError> {
    // Walk up to the deepest folder that exists; the root always does.
    let mut depth = path.segments().len();
    let mut folder = loop {
        let prefix = path.prefix(depth);
        match api.item_by_path(&prefix).await? {
            Some(item) => break expect_folder(item, &prefix)?,
            None if depth > 0 => depth -= 1,
            None => {
                return Err(GraphError::UnexpectedResponse {
                    operation: "get item",
                    detail: "the drive root was not found".into(),
                })
            }
        }
    };

    for (index, name) in path.segments().iter().enumerate().skip(depth) {
        let prefix = path.prefix(index + 1);
        folder = match api.create_folder(&folder, name).await {
            Ok(created) => created,
            // Another worker created it first: use theirs.
            Err(err) if err.is_status(409, None) => match api.item_by_path(&prefix).await? {
                Some(item) => expect_folder(item, &prefix)?,
                None => return Err(err),
            },
            Err(err) => return Err(err),
        };
    }
    Ok(folder)
}

fn expect_folder(item: DriveItem, path: &RemotePath) -> Result<DriveItem, GraphError> {
    if item.is_folder() {
        Ok(item)
    } else {
        Err(GraphError::NotAFolder {
            path: path.to_string(),
        })
    }
}
