//! The HTTP implementation of [`GraphApi`].
//!
//! Every method makes a single attempt; retry policy belongs to the caller (see
//! [`super::retry`]). The one exception is authentication: an API request
//! answered 401 is sent once more after the token source has refreshed, because
//! a token may expire between the moment it was handed out and the moment Graph
//! checks it.
//!
//! Requests to an upload URL go out without any `Authorization` header (the URL
//! carries its own credential, and Graph refuses a request that has both) and
//! are logged without the URL. `@odata.nextLink` is followed only when it
//! points at the configured Graph origin, so a bearer token is never sent
//! anywhere else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio::time::Instant;
use url::Url;

use super::error::{parse_error_body, parse_retry_after, Endpoint, ServiceFailure};
use super::path::{encode_segment, RemotePath};
use super::session::{FragmentOutcome, SessionStatus, UploadSession, UploadUrl, SESSION_MAX_AGE};
use super::types::{ChildrenPage, Drive, DriveItem, SessionProgress, UploadSessionResponse};
use super::{GraphApi, GraphError, USER_AGENT};
use crate::auth::{endpoint_is_secure, AuthError, TokenSource};
use crate::config::ConflictPolicy;

/// How long to wait for the TCP and TLS handshakes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may stall between two reads. There is no overall
/// timeout: a 60 MiB fragment on a slow link legitimately takes minutes.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Talks to Microsoft Graph over HTTP.
pub struct GraphClient {
    http: reqwest::Client,
    /// The configured Graph URL with its version segment, without a trailing
    /// slash.
    base: String,
    /// The origin requests with a bearer token may go to.
    origin: url::Origin,
    tokens: Arc<dyn TokenSource>,
}

impl GraphClient {
    /// A client for the Graph endpoint `graph_url` (such as
    /// `https://graph.microsoft.com/v1.0`), authenticated by `tokens`.
    pub fn new(graph_url: &Url, tokens: Arc<dyn TokenSource>) -> Result<Self, GraphError> {
        if !endpoint_is_secure(graph_url) {
            return Err(AuthError::InsecureEndpoint {
                url: graph_url.to_string(),
            }
            .into());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(60))
            .user_agent(USER_AGENT)
            .build()
            .map_err(|err| network("build HTTP client", err))?;
        Ok(Self {
            http,
            base: graph_url.as_str().trim_end_matches('/').to_string(),
            origin: graph_url.origin(),
            tokens,
        })
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/{rest}", self.base)
    }

    /// `me/drive/root` or `me/drive/root:/{path}` plus `suffix` (`:/content`,
    /// ...).
    fn item_url(&self, path: &RemotePath, suffix: &str) -> String {
        if path.is_root() {
            let suffix = suffix.trim_start_matches(':');
            self.url(&format!("me/drive/root{suffix}"))
        } else {
            self.url(&format!("me/drive/root:/{}{suffix}", path.encoded()))
        }
    }

    /// Sends an authenticated API request; after a 401, refreshes the token and
    /// sends it once more.
    async fn send_api(
        &self,
        operation: &'static str,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<Response, GraphError> {
        let token = self.tokens.access_token().await?;
        let response = self
            .exchange(operation, request().bearer_auth(token.expose()))
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }

        self.tokens.invalidate(&token).await;
        let token = self.tokens.access_token().await?;
        self.exchange(operation, request().bearer_auth(token.expose()))
            .await
    }

    /// Sends one request and logs the exchange, without URL or headers.
    async fn exchange(
        &self,
        operation: &'static str,
        request: RequestBuilder,
    ) -> Result<Response, GraphError> {
        let started = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|err| network(operation, err))?;
        tracing::trace!(
            operation,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "graph exchange"
        );
        Ok(response)
    }

    async fn create_folder_in(
        &self,
        parent: &DriveItem,
        name: &str,
    ) -> Result<DriveItem, GraphError> {
        let url = self.url(&format!(
            "me/drive/items/{}/children",
            encode_segment(&parent.id)
        ));
        let body = serde_json::json!({
            "name": name,
            "folder": {},
            "@microsoft.graph.conflictBehavior": "fail",
        });
        let operation = "create folder";
        let response = self
            .send_api(operation, || self.http.post(&url).json(&body))
            .await?;
        read_json(operation, Endpoint::Api, response).await
    }

    async fn get_item(&self, path: &RemotePath) -> Result<Option<DriveItem>, GraphError> {
        let url = self.item_url(path, "");
        let operation = "get item";
        let response = self.send_api(operation, || self.http.get(&url)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        read_json(operation, Endpoint::Api, response)
            .await
            .map(Some)
    }

    async fn children(&self, path: &RemotePath) -> Result<Vec<DriveItem>, GraphError> {
        let operation = "list folder";
        let mut next = Some(self.item_url(path, ":/children"));
        let mut items = Vec::new();
        while let Some(url) = next.take() {
            let response = self.send_api(operation, || self.http.get(&url)).await?;
            let page: ChildrenPage = read_json(operation, Endpoint::Api, response).await?;
            items.extend(page.value);
            next = page
                .next_link
                .map(|link| self.check_next_link(&link))
                .transpose()?;
        }
        Ok(items)
    }

    /// Accepts a `@odata.nextLink` only on the configured Graph origin.
    fn check_next_link(&self, link: &str) -> Result<String, GraphError> {
        match Url::parse(link) {
            Ok(url) if url.origin() == self.origin => Ok(link.to_string()),
            _ => Err(GraphError::UnexpectedResponse {
                operation: "list folder",
                detail: "the next-page link points outside the configured graph_url".into(),
            }),
        }
    }

    async fn put_small(
        &self,
        path: &RemotePath,
        content: Bytes,
        conflict: ConflictPolicy,
    ) -> Result<DriveItem, GraphError> {
        refuse_root(path)?;
        let url = format!(
            "{}?@microsoft.graph.conflictBehavior={}",
            self.item_url(path, ":/content"),
            conflict.as_graph_value()
        );
        let operation = "upload file";
        let response = self
            .send_api(operation, || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(content.clone())
            })
            .await?;
        read_json(operation, Endpoint::Api, response)
            .await
            .map_err(|err| conflict_error(err, path))
    }

    async fn open_session(
        &self,
        path: &RemotePath,
        size: u64,
        conflict: ConflictPolicy,
    ) -> Result<UploadSession, GraphError> {
        let name = refuse_root(path)?;
        let url = self.item_url(path, ":/createUploadSession");
        // `fileSize` lets the service refuse a file that does not fit before
        // any byte is sent.
        let body = serde_json::json!({
            "item": {
                "@microsoft.graph.conflictBehavior": conflict.as_graph_value(),
                "name": name,
                "fileSize": size,
            }
        });
        let operation = "create upload session";
        let created_at = OffsetDateTime::now_utc();
        let response = self
            .send_api(operation, || self.http.post(&url).json(&body))
            .await?;
        let answer: UploadSessionResponse = read_json(operation, Endpoint::Api, response)
            .await
            .map_err(|err| conflict_error(err, path))?;

        let upload_url = match Url::parse(&answer.upload_url) {
            Ok(url) if endpoint_is_secure(&url) => url,
            _ => {
                return Err(GraphError::UnexpectedResponse {
                    operation,
                    detail: "the upload URL is not an https URL".into(),
                })
            }
        };
        let expiration = parse_time(answer.expiration_date_time.as_deref())
            .unwrap_or(created_at + SESSION_MAX_AGE);
        Ok(UploadSession {
            upload_url: UploadUrl::new(upload_url),
            remote: path.clone(),
            expiration,
            created_at,
        })
    }

    async fn put_fragment(
        &self,
        session: &UploadSession,
        offset: u64,
        content: Bytes,
        total: u64,
    ) -> Result<FragmentOutcome, GraphError> {
        let operation = "upload fragment";
        let length = content.len() as u64;
        if length == 0 || offset + length > total {
            return Err(GraphError::UnexpectedResponse {
                operation,
                detail: format!("fragment {offset}+{length} does not fit a {total}-byte file"),
            });
        }
        let range = format!("bytes {}-{}/{}", offset, offset + length - 1, total);
        let request = self
            .http
            .put(session.upload_url.expose().clone())
            .header(CONTENT_RANGE, range)
            .body(content);
        let response = self.exchange(operation, request).await?;

        match response.status() {
            StatusCode::ACCEPTED => {
                let progress: SessionProgress =
                    read_json(operation, Endpoint::UploadSession, response).await?;
                let next_expected = progress
                    .next_expected()
                    .map_err(|detail| GraphError::UnexpectedResponse { operation, detail })?
                    .unwrap_or(offset + length);
                let expiration = parse_time(progress.expiration_date_time.as_deref());
                Ok(FragmentOutcome::Accepted {
                    next_expected,
                    expiration,
                })
            }
            _ => read_json(operation, Endpoint::UploadSession, response)
                .await
                .map(|item| FragmentOutcome::Completed(Box::new(item)))
                .map_err(|err| conflict_error(err, &session.remote)),
        }
    }

    async fn query_session(&self, session: &UploadSession) -> Result<SessionStatus, GraphError> {
        let operation = "get upload session";
        let request = self.http.get(session.upload_url.expose().clone());
        let response = self.exchange(operation, request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(SessionStatus::NotFound);
        }
        let progress: SessionProgress =
            read_json(operation, Endpoint::UploadSession, response).await?;
        match progress.next_expected() {
            Ok(Some(offset)) => Ok(SessionStatus::NextExpected(offset)),
            Ok(None) => Ok(SessionStatus::AllReceived),
            Err(detail) => Err(GraphError::UnexpectedResponse { operation, detail }),
        }
    }

    async fn delete_session(&self, session: &UploadSession) -> Result<(), GraphError> {
        let operation = "cancel upload session";
        let request = self.http.delete(session.upload_url.expose().clone());
        let response = self.exchange(operation, request).await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(refusal(operation, Endpoint::UploadSession, response).await)
    }
}

impl GraphApi for GraphClient {
    fn drive(&self) -> BoxFuture<'_, Result<Drive, GraphError>> {
        async move {
            let url = self.url("me/drive");
            let response = self.send_api("get drive", || self.http.get(&url)).await?;
            read_json("get drive", Endpoint::Api, response).await
        }
        .boxed()
    }

    fn item_by_path<'a>(
        &'a self,
        path: &'a RemotePath,
    ) -> BoxFuture<'a, Result<Option<DriveItem>, GraphError>> {
        self.get_item(path).boxed()
    }

    fn create_folder<'a>(
        &'a self,
        parent: &'a DriveItem,
        name: &'a str,
    ) -> BoxFuture<'a, Result<DriveItem, GraphError>> {
        self.create_folder_in(parent, name).boxed()
    }

    fn list_children<'a>(
        &'a self,
        path: &'a RemotePath,
    ) -> BoxFuture<'a, Result<Vec<DriveItem>, GraphError>> {
        self.children(path).boxed()
    }

    fn upload_small<'a>(
        &'a self,
        path: &'a RemotePath,
        content: Bytes,
        conflict: ConflictPolicy,
    ) -> BoxFuture<'a, Result<DriveItem, GraphError>> {
        self.put_small(path, content, conflict).boxed()
    }

    fn create_session<'a>(
        &'a self,
        path: &'a RemotePath,
        size: u64,
        conflict: ConflictPolicy,
    ) -> BoxFuture<'a, Result<UploadSession, GraphError>> {
        self.open_session(path, size, conflict).boxed()
    }

    fn session_status<'a>(
        &'a self,
        session: &'a UploadSession,
    ) -> BoxFuture<'a, Result<SessionStatus, GraphError>> {
        self.query_session(session).boxed()
    }

    fn upload_fragment<'a>(
        &'a self,
        session: &'a UploadSession,
        offset: u64,
        content: Bytes,
        total: u64,
    ) -> BoxFuture<'a, Result<FragmentOutcome, GraphError>> {
        self.put_fragment(session, offset, content, total).boxed()
    }

    fn cancel_session<'a>(
        &'a self,
        session: &'a UploadSession,
    ) -> BoxFuture<'a, Result<(), GraphError>> {
        self.delete_session(session).boxed()
    }

    fn delete_item<'a>(&'a self, item: &'a DriveItem) -> BoxFuture<'a, Result<(), GraphError>> {
        async move {
            let url = self.url(&format!("me/drive/items/{}", encode_segment(&item.id)));
            let operation = "delete item";
            let response = self.send_api(operation, || self.http.delete(&url)).await?;
            match response.status() {
                status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
                _ => Err(refusal(operation, Endpoint::Api, response).await),
            }
        }
        .boxed()
    }
}

/// Reads a success body as JSON, or turns an error status into
/// [`GraphError::Refused`].
async fn read_json<T: DeserializeOwned>(
    operation: &'static str,
    endpoint: Endpoint,
    response: Response,
) -> Result<T, GraphError> {
    if !response.status().is_success() {
        return Err(refusal(operation, endpoint, response).await);
    }
    let body = response
        .bytes()
        .await
        .map_err(|err| network(operation, err))?;
    serde_json::from_slice(&body).map_err(|err| GraphError::UnexpectedResponse {
        operation,
        detail: err.to_string(),
    })
}

/// Builds the error for a non-success response from its status, headers and
/// body.
async fn refusal(operation: &'static str, endpoint: Endpoint, response: Response) -> GraphError {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request_id = header("request-id");
    let retry_after = header(RETRY_AFTER.as_str())
        .as_deref()
        .and_then(parse_retry_after);
    // A body that cannot be read still leaves the status, which decides the
    // disposition.
    let body = response.bytes().await.unwrap_or_default();
    let parsed = parse_error_body(&body);
    GraphError::Refused(Box::new(ServiceFailure {
        operation,
        endpoint,
        status,
        code: parsed.code,
        inner_code: parsed.inner_code,
        message: parsed.message,
        request_id: request_id.or(parsed.request_id),
        retry_after,
    }))
}

/// A transport error, described without its URL: an upload URL is a credential.
fn network(operation: &'static str, err: reqwest::Error) -> GraphError {
    let err = err.without_url();
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    GraphError::Network { operation, detail }
}

/// Turns 409 `nameAlreadyExists` into [`GraphError::NameConflict`].
fn conflict_error(err: GraphError, path: &RemotePath) -> GraphError {
    if err.is_status(409, Some("nameAlreadyExists")) {
        GraphError::NameConflict {
            path: path.to_string(),
        }
    } else {
        err
    }
}

/// The item name of a file path; the root cannot be a file.
fn refuse_root(path: &RemotePath) -> Result<&str, GraphError> {
    path.name().ok_or_else(|| GraphError::InvalidName {
        path: "/".into(),
        source: super::names::NameError::Empty,
    })
}

fn parse_time(text: Option<&str>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text?, &time::format_description::well_known::Rfc3339).ok()
}
