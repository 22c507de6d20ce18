//! Errors of Graph requests, and the single table that says what a caller
//! should do next.
//!
//! A refusal by the service keeps everything an operator or a retry policy
//! needs: the HTTP status, Graph's top-level code, the innermost `innerError`
//! code (the most specific one), the `request-id` to quote to Microsoft, and
//! `Retry-After`. [`GraphError::disposition`] maps every error to one
//! [`Disposition`]; the mapping for service refusals lives in one function,
//! [`classify`], whose rows are unit-tested one by one. Nothing branches on
//! Graph's `message`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;

use super::names::NameError;
use crate::auth::AuthError;

/// Which kind of URL a request went to: the same status means different things
/// on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Graph's API (`/me/drive/...`), authenticated with a bearer token.
    Api,
    /// A pre-authenticated upload-session URL.
    UploadSession,
}

/// What a caller should do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Try the same request again, after `after` when the server said so, else
    /// with backoff.
    Retry {
        /// The server's `Retry-After`, when it sent one.
        after: Option<Duration>,
    },
    /// Refresh the access token, then try once more.
    RefreshTokenThenRetry,
    /// Ask the upload session which byte it expects next, and continue from
    /// there.
    ResumeFromServerOffset,
    /// The upload session is gone or unusable: start a new one from byte 0.
    NewSession,
    /// Retrying cannot help; the request or the file has to change.
    Permanent,
    /// Nothing can be uploaded until an admin acts (drive full, login needed).
    PauseAll,
}

/// A refusal by Microsoft Graph, as the response described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFailure {
    /// What was being done, such as `create upload session`.
    pub operation: &'static str,
    /// Which kind of URL answered.
    pub endpoint: Endpoint,
    /// The HTTP status.
    pub status: u16,
    /// Graph's top-level `error.code`.
    pub code: Option<String>,
    /// The innermost `innerError.code`, the most specific reason.
    pub inner_code: Option<String>,
    /// Graph's `error.message`, for people only.
    pub message: Option<String>,
    /// The `request-id` header (or the one in `innerError`).
    pub request_id: Option<String>,
    /// The `Retry-After` header.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} refused by OneDrive: HTTP {}",
            self.operation, self.status
        )?;
        match (&self.code, &self.inner_code) {
            (Some(code), Some(inner)) if inner != code => write!(f, " {code}/{inner}")?,
            (Some(code), _) => write!(f, " {code}")?,
            (None, _) => {}
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Errors of the Graph client.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The service answered with an error status.
    #[error("{0}")]
    Refused(Box<ServiceFailure>),
    /// The request did not get an answer: connection refused or reset, timeout,
    /// TLS.
    #[error("network error during {operation}: {detail}")]
    Network {
        /// What was being done.
        operation: &'static str,
        /// The cause, without the URL (an upload URL is a credential).
        detail: String,
    },
    /// A remote path breaks OneDrive's naming rules; nothing was sent.
    #[error("invalid OneDrive path `{path}`: {source}")]
    InvalidName {
        /// The path as given.
        path: String,
        /// The rule it breaks.
        #[source]
        source: NameError,
    },
    /// The name is taken and the conflict policy is `fail`.
    #[error(
        "{path} already exists on OneDrive and the conflict policy is `fail`; \
         use --conflict replace or rename, or remove the remote file"
    )]
    NameConflict {
        /// The remote path.
        path: String,
    },
    /// The file is larger than OneDrive accepts; nothing was sent.
    #[error(
        "{path} is {} ({bytes} bytes); OneDrive accepts files up to {limit} bytes",
        ByteSize(*bytes).display().iec()
    )]
    FileTooLarge {
        /// The local file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The file does not fit in the space left on the drive; nothing was sent.
    #[error(
        "{path} needs {} ({bytes} bytes) but only {} ({remaining} bytes) is free on \
         OneDrive; free some space or empty the recycle bin",
        ByteSize(*bytes).display().iec(),
        ByteSize(*remaining).display().iec()
    )]
    QuotaExceeded {
        /// The local file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// Bytes left on the drive.
        remaining: u64,
    },
    /// What OneDrive stored differs from the local file.
    #[error(
        "OneDrive's copy of {remote} does not match the local file: {what} is {remote_value} \
         there and {local_value} here (did the file change during the upload?)"
    )]
    IntegrityMismatch {
        /// The remote path.
        remote: String,
        /// `size` or `quickXorHash`.
        what: &'static str,
        /// The local value.
        local_value: String,
        /// The remote value.
        remote_value: String,
    },
    /// The uploaded item carries no quickXorHash yet, so it cannot be verified.
    #[error("OneDrive reports no quickXorHash for {remote} yet; the upload is not verified")]
    HashMissing {
        /// The remote path.
        remote: String,
    },
    /// The session reached its expiry or 24-hour cap before the upload
    /// finished.
    #[error("the upload session for {remote} expired before the upload finished")]
    SessionExpired {
        /// The remote path.
        remote: String,
    },
    /// An item on the way to a folder is a file.
    #[error("{path} exists on OneDrive as a file, so it cannot be used as a folder")]
    NotAFolder {
        /// The remote path.
        path: String,
    },
    /// A success status with a body that does not make sense.
    #[error("unexpected answer to {operation}: {detail}")]
    UnexpectedResponse {
        /// What was being done.
        operation: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// Another upload session holds the name, until it is cancelled or expires.
    #[error(
        "another upload session holds {remote} on OneDrive; the upload is tried \
         again when it ends or expires"
    )]
    SessionAlreadyExists {
        /// The remote path.
        remote: String,
    },
    /// The caller stopped the upload between two fragments; its session stays
    /// open.
    #[error("the upload of {remote} paused at byte {offset}; it resumes from there")]
    Interrupted {
        /// The remote path.
        remote: String,
        /// The first byte not yet acknowledged.
        offset: u64,
    },
    /// The local file changed while it was being uploaded; nothing was
    /// committed.
    #[error("{} changed while it was being uploaded; the upload was abandoned", path.display())]
    LocalFileChanged {
        /// The local file.
        path: PathBuf,
    },
    /// The local file could not be read.
    #[error("cannot read {path}: {source}")]
    LocalIo {
        /// The local file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No access token could be obtained.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl GraphError {
    /// What a caller should do about this error.
    pub fn disposition(&self) -> Disposition {
        match self {
            GraphError::Refused(failure) => classify(
                failure.endpoint,
                failure.status,
                failure.code.as_deref(),
                failure.inner_code.as_deref(),
                failure.retry_after,
            ),
            // The request may or may not have reached the server; every Graph
            // request the client makes is safe to repeat (PUTs are idempotent,
            // folder creation tolerates a duplicate, fragments are
            // resynchronised from the server's offset).
            GraphError::Network { .. } | GraphError::UnexpectedResponse { .. } => {
                Disposition::Retry { after: None }
            }
            // Hashes may appear a little after the upload completes.
            GraphError::HashMissing { .. }
            | GraphError::Interrupted { .. }
            | GraphError::SessionAlreadyExists { .. } => Disposition::Retry { after: None },
            // The stored bytes are wrong; only a fresh upload can fix them.
            GraphError::IntegrityMismatch { .. } | GraphError::SessionExpired { .. } => {
                Disposition::NewSession
            }
            GraphError::Auth(err) if err.is_transient() => Disposition::Retry { after: None },
            GraphError::Auth(_) => Disposition::PauseAll,
            // Space may be freed (or the recycle bin emptied): wait, as for 507.
            GraphError::QuotaExceeded { .. } => Disposition::PauseAll,
            GraphError::InvalidName { .. }
            | GraphError::NameConflict { .. }
            | GraphError::FileTooLarge { .. }
            | GraphError::NotAFolder { .. }
            | GraphError::LocalFileChanged { .. }
            | GraphError::LocalIo { .. } => Disposition::Permanent,
        }
    }

    /// The service's refusal, when this error is one.
    pub fn service_failure(&self) -> Option<&ServiceFailure> {
        match self {
            GraphError::Refused(failure) => Some(failure),
            _ => None,
        }
    }

    /// Whether the service answered with `status` and (if given) top-level
    /// `code`.
    pub fn is_status(&self, status: u16, code: Option<&str>) -> bool {
        self.service_failure().is_some_and(|f| {
            f.status == status && code.is_none_or(|c| f.code.as_deref() == Some(c))
        })
    }
}

/// The table: what to do about a refusal, from where it came, its status and
/// Graph codes.
///
/// | endpoint | status | inner code | disposition |
/// |---|---|---|---|
/// | any | 429, 503, 509 | | retry after `Retry-After` |
/// | any | 408, 500, 502, 504 | | retry with backoff |
/// | any | 507 (or code `quotaLimitReached`) | | pause everything |
/// | API | 401 | | refresh the token once, retry |
/// | session | 401, 403 (24-hour cap) | | new session |
/// | session | 404 | | new session |
/// | session | 416 | | resume from the server's offset |
/// | any | 400 | `uploadSession{NotFound,Failed}` | new session |
/// | session | 400 | `fragment{Overlap,OutOfOrder}` | resume from offset |
/// | any | other 4xx | | permanent |
/// | any | other 5xx | | retry with backoff |
pub fn classify(
    endpoint: Endpoint,
    status: u16,
    code: Option<&str>,
    inner_code: Option<&str>,
    retry_after: Option<Duration>,
) -> Disposition {
    use Disposition::*;
    use Endpoint::*;

    let session_gone = matches!(
        inner_code,
        Some("uploadSessionNotFound" | "uploadSessionFailed")
    );
    let fragment_misplaced = matches!(inner_code, Some("fragmentOverlap" | "fragmentOutOfOrder"));
    match (endpoint, status) {
        (_, 429 | 503 | 509) => Retry { after: retry_after },
        (_, 408 | 500 | 502 | 504) => Retry { after: None },
        (_, 507) => PauseAll,
        _ if code == Some("quotaLimitReached") => PauseAll,
        (Api, 401) => RefreshTokenThenRetry,
        (UploadSession, 401 | 403 | 404) => NewSession,
        (UploadSession, 416) => ResumeFromServerOffset,
        (_, 400) if session_gone => NewSession,
        (UploadSession, 400) if fragment_misplaced => ResumeFromServerOffset,
        (_, 400..=499) => Permanent,
        (_, 500..=599) => Retry { after: None },
        // A 1xx or 3xx reaching here means a redirect or protocol surprise;
        // repeating the same request would meet the same answer.
        _ => Permanent,
    }
}

/// Parses `Retry-After`: delta-seconds, or an HTTP date (converted to a delay
/// from now).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let delay = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(delay).unwrap_or(Duration::ZERO))
}

/// Reads Graph's error body: top-level code, innermost code, message and
/// request id.
///
/// The docs spell the nested key both `innerError` and `innererror`, so keys
/// are matched without regard to case. A body that is not JSON (an HTML 400 has
/// been seen) yields nothing.
pub fn parse_error_body(body: &[u8]) -> ErrorBody {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return ErrorBody::default();
    };
    let Some(error) = field(&value, "error") else {
        return ErrorBody::default();
    };
    let text = |v: &serde_json::Value, key: &str| field(v, key)?.as_str().map(str::to_string);

    let mut parsed = ErrorBody {
        code: text(error, "code"),
        inner_code: None,
        message: text(error, "message"),
        request_id: None,
    };
    let mut level = error;
    while let Some(inner) = field(level, "innererror") {
        if let Some(code) = text(inner, "code") {
            parsed.inner_code = Some(code);
        }
        if parsed.request_id.is_none() {
            parsed.request_id = text(inner, "request-id");
        }
        level = inner;
    }
    parsed
}

/// The parts of a Graph error body the client uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// `error.code`.
    pub code: Option<String>,
    /// The innermost `innerError.code`.
    pub inner_code: Option<String>,
    /// `error.message`.
    pub message: Option<String>,
    /// `innerError.request-id`.
    pub request_id: Option<String>,
}

fn field<'v>(value: &'v serde_json::Value, key: &str) -> Option<&'v serde_json::Value> {
    value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::Disposition::*;
    use super::Endpoint::*;
    use super::*;

    const SECS_7: Option<Duration> = Some(Duration::from_secs(7));

    fn row(endpoint: Endpoint, status: u16, code: &str, inner: &str) -> Disposition {
        fn given(s: &str) -> Option<&str> {
            (!s.is_empty()).then_some(s)
        }
        classify(endpoint, status, given(code), given(inner), SECS_7)
    }

    #[test]
    fn throttling_honours_retry_after() {
        assert_eq!(
            row(Api, 429, "activityLimitReached", "throttledRequest"),
            Retry { after: SECS_7 }
        );
        assert_eq!(
            row(Api, 503, "serviceNotAvailable", ""),
            Retry { after: SECS_7 }
        );
        assert_eq!(row(UploadSession, 503, "", ""), Retry { after: SECS_7 });
        assert_eq!(row(Api, 509, "", ""), Retry { after: SECS_7 });
        assert_eq!(classify(Api, 429, None, None, None), Retry { after: None });
    }

    #[test]
    fn server_errors_retry_with_backoff() {
        for status in [408, 500, 502, 504] {
            assert_eq!(
                row(Api, status, "generalException", ""),
                Retry { after: None },
                "{status}"
            );
            assert_eq!(
                row(UploadSession, status, "", ""),
                Retry { after: None },
                "{status}"
            );
        }
        assert_eq!(row(Api, 501, "notSupported", ""), Retry { after: None });
    }

    #[test]
    fn a_full_drive_pauses_everything() {
        assert_eq!(row(Api, 507, "quotaLimitReached", ""), PauseAll);
        assert_eq!(row(UploadSession, 507, "", ""), PauseAll);
        assert_eq!(row(Api, 403, "quotaLimitReached", ""), PauseAll);
    }

    #[test]
    fn unauthorized_api_calls_refresh_the_token() {
        assert_eq!(
            row(Api, 401, "InvalidAuthenticationToken", ""),
            RefreshTokenThenRetry
        );
    }

    #[test]
    fn dead_sessions_are_replaced() {
        assert_eq!(
            row(UploadSession, 401, "unauthenticated", "expiredToken"),
            NewSession
        );
        assert_eq!(row(UploadSession, 403, "accessDenied", ""), NewSession);
        assert_eq!(
            row(UploadSession, 404, "itemNotFound", "uploadSessionNotFound"),
            NewSession
        );
        assert_eq!(
            row(
                UploadSession,
                400,
                "invalidRequest",
                "uploadSessionNotFound"
            ),
            NewSession
        );
        assert_eq!(
            row(Api, 400, "invalidRequest", "uploadSessionFailed"),
            NewSession
        );
    }

    #[test]
    fn misplaced_fragments_resume_from_the_server_offset() {
        assert_eq!(
            row(UploadSession, 416, "invalidRange", "fragmentOverlap"),
            ResumeFromServerOffset
        );
        assert_eq!(row(UploadSession, 416, "", ""), ResumeFromServerOffset);
        assert_eq!(
            row(UploadSession, 400, "invalidRequest", "fragmentOutOfOrder"),
            ResumeFromServerOffset
        );
    }

    #[test]
    fn other_client_errors_are_permanent() {
        assert_eq!(row(Api, 400, "invalidRequest", "pathIsTooLong"), Permanent);
        assert_eq!(row(Api, 403, "accessDenied", ""), Permanent);
        assert_eq!(row(Api, 404, "itemNotFound", ""), Permanent);
        assert_eq!(row(Api, 409, "nameAlreadyExists", ""), Permanent);
        assert_eq!(row(UploadSession, 409, "nameAlreadyExists", ""), Permanent);
        assert_eq!(row(Api, 412, "resourceModified", ""), Permanent);
        assert_eq!(row(Api, 416, "invalidRange", ""), Permanent);
        assert_eq!(
            row(
                UploadSession,
                400,
                "invalidRequest",
                "fragmentLengthMismatch"
            ),
            Permanent
        );
        assert_eq!(row(Api, 302, "", ""), Permanent);
    }

    #[test]
    fn errors_without_a_response_have_fixed_dispositions() {
        let network = GraphError::Network {
            operation: "list",
            detail: "reset".into(),
        };
        assert_eq!(network.disposition(), Retry { after: None });
        let missing = GraphError::HashMissing {
            remote: "/a".into(),
        };
        assert_eq!(missing.disposition(), Retry { after: None });
        let mismatch = GraphError::IntegrityMismatch {
            remote: "/a".into(),
            what: "size",
            local_value: "1".into(),
            remote_value: "2".into(),
        };
        assert_eq!(mismatch.disposition(), NewSession);
        let conflict = GraphError::NameConflict { path: "/a".into() };
        assert_eq!(conflict.disposition(), Permanent);
        let reauth = GraphError::Auth(AuthError::ReauthenticationNeeded { reason: "x".into() });
        assert_eq!(reauth.disposition(), PauseAll);
        let flaky = GraphError::Auth(AuthError::Unavailable { detail: "x".into() });
        assert_eq!(flaky.disposition(), Retry { after: None });
    }

    #[test]
    fn error_bodies_yield_the_innermost_code() {
        let body = br#"{"error":{"code":"activityLimitReached","message":"throttled",
            "innerError":{"code":"throttledRequest","request-id":"r1",
            "innererror":{"code":"quota"}}}}"#;
        let parsed = parse_error_body(body);
        assert_eq!(parsed.code.as_deref(), Some("activityLimitReached"));
        assert_eq!(parsed.inner_code.as_deref(), Some("quota"));
        assert_eq!(parsed.request_id.as_deref(), Some("r1"));
        assert_eq!(
            parse_error_body(b"<html>bad request</html>"),
            ErrorBody::default()
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("41"), Some(Duration::from_secs(41)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn refusals_print_codes_and_request_id() {
        let failure = ServiceFailure {
            operation: "create folder",
            endpoint: Api,
            status: 409,
            code: Some("nameAlreadyExists".into()),
            inner_code: None,
            message: Some("exists".into()),
            request_id: Some("r9".into()),
            retry_after: None,
        };
        assert_eq!(
            failure.to_string(),
            "create folder refused by OneDrive: HTTP 409 nameAlreadyExists: exists (request id r9)"
        );
    }
}
