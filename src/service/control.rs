//! The control socket: how admin commands talk to a running daemon.
//!
//! sled lets only one process open the queue database, so while the daemon
//! runs, `status`, `history` and `retry` ask it over this Unix socket instead.
//! The protocol is one JSON request per connection, on one line, answered by
//! one JSON line; the transport is generic over the request and response types,
//! which the daemon defines.
//!
//! The socket is created with mode 0660 inside a directory of mode 0750, so the
//! daemon's user and its group (the admins) can connect and nobody else can.

use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// Longest request line accepted; requests are tiny, so anything longer is a
/// mistake.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// Mode of the socket file: owner and group may connect.
const SOCKET_MODE: u32 = 0o660;

/// Mode of a socket directory the daemon creates itself.
const DIRECTORY_MODE: u32 = 0o750;

/// Why the control socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No daemon listens on the socket.
    #[error("onedrive-syncd is not running (no daemon listens on {})", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Another daemon already listens on the socket.
    #[error(
        "another onedrive-syncd already listens on {}; stop it first (systemctl stop \
         onedrive-syncd)",
        path.display()
    )]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but this user may not connect.
    #[error(
        "permission denied on {}; run as root or as a member of the daemon's group",
        path.display()
    )]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// The daemon answered something this version does not understand.
    #[error("the daemon sent an answer this command cannot read: {0}")]
    Protocol(String),
    /// Any other I/O failure.
    #[error("control socket {}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

impl ControlError {
    fn from_io(path: &Path, source: std::io::Error) -> ControlError {
        let path = path.to_path_buf();
        match source.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => ControlError::NotRunning { path },
            ErrorKind::PermissionDenied => ControlError::PermissionDenied { path },
            _ => ControlError::Io { path, source },
        }
    }
}

/// Binds the control socket, replacing a stale socket file left by a crashed
/// daemon.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent).map_err(|err| ControlError::from_io(path, err))?;
            let mode = std::fs::Permissions::from_mode(DIRECTORY_MODE);
            std::fs::set_permissions(parent, mode)
                .map_err(|err| ControlError::from_io(path, err))?;
        }
    }
    if path.exists() {
        // A socket file nobody answers on is what a crash leaves behind.
        match UnixStream::connect(path).await {
            Ok(_) => {
                return Err(ControlError::AlreadyRunning {
                    path: path.to_path_buf(),
                })
            }
            Err(_) => {
                std::fs::remove_file(path).map_err(|err| ControlError::from_io(path, err))?;
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(|err| ControlError::from_io(path, err))?;
    let mode = std::fs::Permissions::from_mode(SOCKET_MODE);
    std::fs::set_permissions(path, mode).map_err(|err| ControlError::from_io(path, err))?;
    Ok(listener)
}

/// Serves requests until `shutdown` is cancelled, each connection on its own
/// task.
///
/// A connection that sends something unreadable gets an error line and is
/// closed; it never affects the daemon.
pub async fn serve<Req, Resp, H, Fut>(
    listener: UnixListener,
    handler: H,
    shutdown: CancellationToken,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    H: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "control socket accept failed");
                    continue;
                }
            },
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(err) = answer(stream, handler).await {
                tracing::debug!(error = %err, "control connection ended early");
            }
        });
    }
}

async fn answer<Req, Resp, H, Fut>(stream: UnixStream, handler: H) -> std::io::Result<()>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    H: Fn(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let (read_half, mut write_half) = stream.into_split();
    let mut line = String::new();
    tokio::io::AsyncReadExt::take(BufReader::new(read_half), MAX_REQUEST_BYTES)
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<Req>(&line) {
        Ok(request) => serde_json::to_string(&Reply::Ok(handler(request).await)),
        Err(err) => serde_json::to_string(&Reply::<()>::Error(format!("bad request: {err}"))),
    }
    .map_err(std::io::Error::other)?;
    write_half.write_all(reply.as_bytes()).await?;
    write_half.write_all(b"\n").await?;
    write_half.shutdown().await
}

/// The envelope around every answer.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply<T> {
    Ok(T),
    Error(String),
}

/// Sends one request to the daemon listening on `path` and returns its answer.
pub async fn request<Req, Resp>(path: &Path, request: &Req) -> Result<Resp, ControlError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let stream = UnixStream::connect(path)
        .await
        .map_err(|err| ControlError::from_io(path, err))?;
    let (read_half, mut write_half) = stream.into_split();
    let mut line =
        serde_json::to_string(request).map_err(|e| ControlError::Protocol(e.to_string()))?;
    line.push('\n');
    let io = |err| ControlError::from_io(path, err);
    write_half.write_all(line.as_bytes()).await.map_err(io)?;

    let mut answer = String::new();
    BufReader::new(read_half)
        .read_line(&mut answer)
        .await
        .map_err(io)?;
    match serde_json::from_str::<Reply<Resp>>(&answer) {
        Ok(Reply::Ok(response)) => Ok(response),
        Ok(Reply::Error(message)) => Err(ControlError::Protocol(message)),
        Err(err) => Err(ControlError::Protocol(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, serde::Deserialize, PartialEq)]
    struct Echo {
        text: String,
    }

    #[tokio::test]
    async fn a_request_gets_the_handlers_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/control.sock");
        let listener = bind(&path).await.expect("bind");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            |request: Echo| async move {
                Echo {
                    text: request.text.to_uppercase(),
                }
            },
            shutdown.clone(),
        ));

        let answer: Echo = request(&path, &Echo { text: "hi".into() })
            .await
            .expect("answer");
        assert_eq!(answer, Echo { text: "HI".into() });
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        let dir_mode = std::fs::metadata(path.parent().expect("parent"))
            .expect("dir")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, DIRECTORY_MODE);

        shutdown.cancel();
        server.await.expect("server stops");
    }

    #[tokio::test]
    async fn no_daemon_means_not_running() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let result: Result<Echo, _> = request(&path, &Echo { text: "x".into() }).await;
        assert!(
            matches!(result, Err(ControlError::NotRunning { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
        let live = bind(&path).await.expect("stale socket replaced");
        let second = bind(&path).await;
        assert!(
            matches!(second, Err(ControlError::AlreadyRunning { .. })),
            "{second:?}"
        );
        drop(live);
    }

    #[tokio::test]
    async fn garbage_gets_an_error_answer_and_the_server_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let listener = bind(&path).await.expect("bind");
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            |r: Echo| async move { r },
            shutdown.clone(),
        ));

        let wrong: Result<Echo, _> = request(&path, &"not an echo").await;
        assert!(matches!(wrong, Err(ControlError::Protocol(_))), "{wrong:?}");
        let right: Echo = request(&path, &Echo { text: "ok".into() })
            .await
            .expect("answer");
        assert_eq!(right.text, "ok");
        shutdown.cancel();
    }
}
