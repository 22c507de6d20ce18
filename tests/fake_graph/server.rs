//! The HTTP side: accepting connections, routing, the gates every request
//! passes, records.
//!
//! Every request is classified by its raw path, then passes, in order: added
//! latency, the pool-wide Retry-After gate, the rate limit, queued failures,
//! and (for `/v1.0`) the bearer check, before its handler runs. A handler may
//! ask for its connection to be killed: the connection's socket then refuses to
//! write, so the client sees the connection close with no response at all,
//! which is how a lost response or a cut upload looks from outside.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State as AxumState};
use axum::http::{header, HeaderMap, Method, Response};
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::faults::{Gate, LostResponse};
use super::identity::{self, BearerProblem};
use super::paths::{self, Target};
use super::replies::{self, Refusal};
use super::{body, control, handlers, sessions, Inner, Kill, Reply, RequestRecord, Route};

/// A TCP listener whose connections can be killed by the handler serving them.
pub(crate) struct KillableListener {
    listener: TcpListener,
    /// Id of the next accepted connection.
    next_id: u64,
}

/// A connection's peer address and kill switch, handed to handlers as connect
/// info.
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    /// Distinguishes connections for the Retry-After grace.
    id: u64,
    killed: Arc<AtomicBool>,
}

impl ConnHandle {
    // LIMITATION: on an HTTP/2 connection a kill drops every stream on it —
    // clients reach the fake over plain http, which is HTTP/1.1.
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

/// A TCP stream that fails every read and write once killed, which makes hyper
/// drop it.
pub(crate) struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let killed = Arc::new(AtomicBool::new(false));
                    self.next_id += 1;
                    let handle = ConnHandle {
                        id: self.next_id,
                        killed: killed.clone(),
                    };
                    return (
                        KillableStream {
                            inner: stream,
                            killed,
                        },
                        handle,
                    );
                }
                // Accept errors (EMFILE, resets) are transient for a test
                // server.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr().map(|_| ConnHandle {
            id: 0,
            killed: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "connection killed by the fake",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves until the fake's shutdown token fires.
pub(crate) async fn serve(inner: Arc<Inner>, listener: TcpListener) {
    let shutdown = inner.shutdown.clone();
    let app = axum::Router::new().fallback(dispatch).with_state(inner);
    let service = app.into_make_service_with_connect_info::<ConnHandle>();
    let listener = KillableListener {
        listener,
        next_id: 0,
    };
    let _ = axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
}

/// Counts uploads in flight for [`super::FakeGraph::peak_concurrent_uploads`].
struct UploadGuard<'a>(&'a Inner);

impl<'a> UploadGuard<'a> {
    fn enter(inner: &'a Inner) -> Self {
        let now = inner.uploads_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.peak_uploads.fetch_max(now, Ordering::SeqCst);
        UploadGuard(inner)
    }
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.0.uploads_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn dispatch(
    AxumState(inner): AxumState<Arc<Inner>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let target = paths::classify(&raw_path);
    let route = paths::route_of(&target, parts.method.as_str());
    if let Target::Control(command) = &target {
        return control::handle(&inner, &parts.method, command, &query, body).await;
    }
    let arrived = Instant::now();
    let _upload =
        matches!(route, Route::SimpleUpload | Route::Fragment).then(|| UploadGuard::enter(&inner));

    let latency = inner.lock().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let reply = match gates(&inner, &target, route, &parts.headers, arrived, conn.id) {
        Some(reply) => {
            body::drain(body).await;
            reply
        }
        None => {
            handle(
                &inner,
                &target,
                route,
                &parts.method,
                &parts.headers,
                &raw_path,
                &query,
                body,
            )
            .await
        }
    };
    finish(
        &inner,
        &conn,
        &parts.method,
        &parts.headers,
        route,
        raw_path,
        reply,
    )
}

/// Throttling, injected failures and authentication; `Some` when the request
/// stops here.
fn gates(
    inner: &Inner,
    target: &Target,
    route: Route,
    headers: &HeaderMap,
    arrived: Instant,
    connection: u64,
) -> Option<Reply> {
    let mut state = inner.lock();
    let throttled_route = matches!(
        target,
        Target::Drive | Target::Item { .. } | Target::Upload { .. }
    );
    if throttled_route {
        let grace = state.options.retry_after_grace;
        if let Gate::Early {
            remaining_secs,
            early_by,
            announced_secs,
        } = state.faults.gate(arrived, grace, connection)
        {
            state.violation(format!(
                "{route:?} request sent {} ms before the announced Retry-After of \
                 {announced_secs} s ended",
                early_by.as_millis()
            ));
            return Some(Reply::ok(replies::throttled(remaining_secs)));
        }
        if let Some(secs) = state.faults.over_rate_limit(arrived) {
            state.faults.announce_retry_after(arrived, secs, connection);
            return Some(Reply::ok(replies::throttled(secs)));
        }
    }
    if let Some((status, retry_after)) = state.faults.take_failure(route) {
        let response = match target {
            Target::Identity(_) => replies::injected_identity_fault(status),
            Target::Upload { .. } => replies::injected_graph_fault(status, true),
            _ => replies::injected_graph_fault(status, false),
        };
        let response = replies::with_retry_after(response, retry_after);
        if let (Some(secs), true) = (retry_after, throttled_route) {
            state.faults.announce_retry_after(arrived, secs, connection);
        }
        // A session the service calls gone must really be gone, or the client's
        // new session for the same file would collide with it.
        if let (Target::Upload { session }, 401 | 403 | 404) = (target, status) {
            state.sessions.end(session);
        }
        return Some(Reply::ok(response));
    }
    if matches!(target, Target::Drive | Target::Item { .. }) {
        let write = matches!(
            route,
            Route::SimpleUpload
                | Route::CreateSession
                | Route::CreateFolder
                | Route::DeleteItem
                | Route::UpdateItem
        );
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(problem) = state.identity.check_bearer(header, write) {
            return Some(bearer_refusal(inner, &mut state, problem));
        }
    }
    None
}

fn bearer_refusal(inner: &Inner, state: &mut super::State, problem: BearerProblem) -> Reply {
    let authority = inner.base_url.as_str();
    let response = match problem {
        BearerProblem::Missing => {
            state.violation("Graph request without an Authorization header");
            replies::unauthenticated("Access token is empty.", authority)
        }
        BearerProblem::Malformed => {
            state.violation("Graph request whose Authorization is not 'Bearer <token>'");
            replies::unauthenticated(
                "Access token validation failure. Invalid audience.",
                authority,
            )
        }
        BearerProblem::Unknown => {
            state.violation("Graph request with a bearer token that was never issued");
            replies::unauthenticated(
                "CompactToken validation failed with reason code: 80049228.",
                authority,
            )
        }
        BearerProblem::Expired => {
            replies::unauthenticated("Access token has expired or is not yet valid.", authority)
        }
        BearerProblem::InsufficientScope => {
            Refusal::new(403, "accessDenied", None, "Insufficient privileges").response()
        }
    };
    Reply::ok(response)
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    inner: &Inner,
    target: &Target,
    route: Route,
    method: &Method,
    headers: &HeaderMap,
    raw_path: &str,
    query: &str,
    body: Body,
) -> Reply {
    let small = |body| body::small(body, 64 * 1024);
    match (target, route) {
        (Target::Identity(_), Route::DeviceCode) => match small(body).await {
            Some(raw) => Reply::ok(identity::devicecode(inner, method, headers, &raw)),
            None => Reply::ok(replies::identity_error(
                400,
                "invalid_request",
                900144,
                "Unreadable body.",
            )),
        },
        (Target::Identity(_), Route::Token) => match small(body).await {
            Some(raw) => Reply::ok(identity::token(inner, method, headers, &raw)),
            None => Reply::ok(replies::identity_error(
                400,
                "invalid_request",
                900144,
                "Unreadable body.",
            )),
        },
        (Target::Identity(_), Route::Authorize) => {
            Reply::ok(identity::authorize(inner, method, query))
        }
        (Target::Drive, Route::Drive) => handlers::drive_info(inner),
        (Target::Item { addr, .. }, Route::Item) => handlers::get_item(inner, addr, query),
        (Target::Item { addr, .. }, Route::Children) => {
            handlers::list_children(inner, addr, raw_path, query)
        }
        (Target::Item { addr, .. }, Route::CreateFolder) => {
            handlers::create_folder(inner, addr, query, headers, body).await
        }
        (Target::Item { addr, .. }, Route::SimpleUpload) => {
            handlers::simple_upload(inner, addr, query, headers, body).await
        }
        (Target::Item { addr, .. }, Route::Download) => handlers::download_redirect(inner, addr),
        (Target::Item { addr, .. }, Route::DeleteItem) => handlers::delete_item(inner, addr),
        (Target::Item { addr, .. }, Route::UpdateItem) => {
            handlers::update_item(inner, addr, headers, body).await
        }
        (Target::Item { addr, .. }, Route::CreateSession) => {
            sessions::create(inner, addr, headers, body).await
        }
        (Target::Upload { session }, Route::Fragment) => {
            sessions::fragment(inner, session, query, headers, body).await
        }
        (Target::Upload { session }, Route::SessionStatus) => {
            sessions::status(inner, session, query, headers)
        }
        (Target::Upload { session }, Route::SessionCancel) => {
            sessions::cancel(inner, session, query, headers)
        }
        (Target::Download { item }, Route::Download) => handlers::download(inner, item).await,
        (Target::Malformed { reason }, _) => {
            body::drain(body).await;
            Reply::refusal(
                inner,
                Refusal::invalid(Some("invalidPath"), reason.clone())
                    .violating(format!("malformed path: {reason}")),
            )
        }
        _ => {
            body::drain(body).await;
            let refusal = Refusal::new(
                400,
                "invalidRequest",
                None,
                format!("Unsupported request: {method} {raw_path}"),
            )
            .violating(format!("unsupported request {method} {raw_path}"));
            Reply::refusal(inner, refusal)
        }
    }
}

/// Records the exchange and applies any kill the handler asked for.
fn finish(
    inner: &Inner,
    conn: &ConnHandle,
    method: &Method,
    headers: &HeaderMap,
    route: Route,
    raw_path: String,
    reply: Reply,
) -> Response<Body> {
    let mut state = inner.lock();
    let status = reply.response.status().as_u16();
    let (response, lost) = match reply.kill {
        Kill::No => (reply.response, false),
        Kill::Cut => {
            conn.kill();
            (reply.response, true)
        }
        Kill::LoseResponse => match state.faults.lost_response {
            LostResponse::DropConnection => {
                conn.kill();
                (reply.response, true)
            }
            LostResponse::GatewayTimeout => (
                replies::graph_error(504, "gatewayTimeout", None, "Gateway timeout"),
                true,
            ),
        },
    };
    let content_range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(sessions::parse_content_range);
    let record = RequestRecord {
        method: method.to_string(),
        route,
        path: raw_path,
        status,
        content_range,
        had_authorization: headers.contains_key(header::AUTHORIZATION),
        session_id: reply.session,
        response_lost: lost,
        at_ms: inner.started.elapsed().as_millis() as u64,
    };
    state.record(record);
    response
}
