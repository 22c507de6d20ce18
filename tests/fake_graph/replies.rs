//! Response builders in the exact shapes the real services use.
//!
//! Graph errors carry `{"error":{"code","message","innerError":{..}}}`; the
//! identity platform answers with a flat
//! `{"error","error_description","error_codes",..}` object. Keeping both shapes
//! in one place means every handler refuses a request the same way the service
//! would.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A fresh request id in the GUID form Graph and the identity platform use.
pub(crate) fn request_id() -> String {
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// An RFC 3339 timestamp with millisecond precision, as Graph writes them.
pub(crate) fn timestamp(at: OffsetDateTime) -> String {
    let millis = at.millisecond();
    let trimmed = at.replace_millisecond(millis).unwrap_or(at);
    trimmed.format(&Rfc3339).unwrap_or_default()
}

/// The current wall-clock time as a Graph timestamp.
pub(crate) fn now_stamp() -> String {
    timestamp(OffsetDateTime::now_utc())
}

/// A JSON response with the given status.
pub(crate) fn json(status: u16, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status_of(status))
        .header(header::CONTENT_TYPE, "application/json")
        .header("request-id", request_id())
        .body(Body::from(body))
        .unwrap_or_else(|_| plain(500, "response build failed"))
}

/// A plain-text response, for the few places no JSON is expected.
pub(crate) fn plain(status: u16, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(text.to_owned()));
    *response.status_mut() = status_of(status);
    response
}

/// An empty response (204 and friends).
pub(crate) fn empty(status: u16) -> Response<Body> {
    plain(status, "")
}

/// A Graph error body: `code` at the top, the specific `inner` code nested as
/// Graph does.
pub(crate) fn graph_error(
    status: u16,
    code: &str,
    inner: Option<&str>,
    message: &str,
) -> Response<Body> {
    let id = request_id();
    let mut inner_error = json!({
        "request-id": id,
        "client-request-id": id,
        "date": now_stamp(),
    });
    if let Some(inner) = inner {
        inner_error["code"] = Value::from(inner);
    }
    let body = json!({"error": {"code": code, "message": message, "innerError": inner_error}});
    json(status, &body)
}

/// A 401 for a missing, unknown or expired bearer token, with the challenge
/// header Graph sends.
pub(crate) fn unauthenticated(message: &str, authority: &str) -> Response<Body> {
    let mut response = graph_error(401, "InvalidAuthenticationToken", None, message);
    let challenge = format!(
        "Bearer realm=\"\", authorization_uri=\"{authority}/common/oauth2/authorize\", \
         error=\"invalid_token\", client_id=\"00000003-0000-0000-c000-000000000000\""
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A throttling answer: 429 `activityLimitReached` with `Retry-After` in
/// seconds.
pub(crate) fn throttled(retry_after_secs: u64) -> Response<Body> {
    with_retry_after(throttled_without_header(), Some(retry_after_secs))
}

/// The 429 body alone; Graph may omit `Retry-After`, leaving the client to back
/// off.
pub(crate) fn throttled_without_header() -> Response<Body> {
    let id = request_id();
    let body = json!({"error": {
        "code": "activityLimitReached",
        "message": "The request has been throttled",
        "innerError": {
            "code": "throttledRequest",
            "innerError": {"code": "quota"},
            "request-id": id,
            "date": now_stamp(),
        }
    }});
    json(429, &body)
}

/// Adds a `Retry-After` header when one is given.
pub(crate) fn with_retry_after(mut response: Response<Body>, secs: Option<u64>) -> Response<Body> {
    if let Some(secs) = secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The Graph body the service sends for a given status when a fault is
/// injected.
pub(crate) fn injected_graph_fault(status: u16, on_session_url: bool) -> Response<Body> {
    match status {
        401 if on_session_url => graph_error(
            401,
            "unauthenticated",
            Some("expiredToken"),
            "The upload session's token is no longer valid",
        ),
        401 => graph_error(
            401,
            "InvalidAuthenticationToken",
            None,
            "Access token has expired.",
        ),
        403 => graph_error(403, "accessDenied", None, "Access denied"),
        404 if on_session_url => graph_error(
            404,
            "itemNotFound",
            Some("uploadSessionNotFound"),
            "The upload session was not found",
        ),
        404 => graph_error(
            404,
            "itemNotFound",
            None,
            "The resource could not be found.",
        ),
        409 => graph_error(
            409,
            "nameAlreadyExists",
            None,
            "The specified item name already exists.",
        ),
        416 => graph_error(
            416,
            "invalidRange",
            Some("fragmentOverlap"),
            "Invalid range",
        ),
        429 => throttled_without_header(),
        500 => graph_error(
            500,
            "generalException",
            None,
            "An unspecified error has occurred.",
        ),
        502 => graph_error(502, "badGateway", None, "Bad gateway"),
        503 => graph_error(503, "serviceNotAvailable", None, "Service unavailable"),
        504 => graph_error(504, "gatewayTimeout", None, "Gateway timeout"),
        507 => graph_error(507, "quotaLimitReached", None, "Insufficient Storage"),
        other => graph_error(other, "invalidRequest", None, "Injected failure"),
    }
}

/// An identity-platform error body (`/oauth2/v2.0/token` and friends).
pub(crate) fn identity_error(
    status: u16,
    error: &str,
    aadsts: u32,
    description: &str,
) -> Response<Body> {
    let trace_id = request_id();
    let correlation_id = request_id();
    let stamp = now_stamp();
    let text = format!(
        "AADSTS{aadsts}: {description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: \
         {correlation_id}\r\nTimestamp: {stamp}"
    );
    let body = json!({
        "error": error,
        "error_description": text,
        "error_codes": [aadsts],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    });
    json(status, &body)
}

/// The identity-platform body for an injected fault on the token or device-code
/// endpoint.
pub(crate) fn injected_identity_fault(status: u16) -> Response<Body> {
    match status {
        400 => identity_error(400, "invalid_grant", 70000, "Injected invalid grant."),
        401 => identity_error(401, "invalid_client", 7000215, "Injected invalid client."),
        429 => with_retry_after(
            identity_error(429, "temporarily_unavailable", 50196, "Too many requests."),
            Some(1),
        ),
        other => identity_error(
            other,
            "temporarily_unavailable",
            50001,
            "Injected service error.",
        ),
    }
}

/// A refused Graph request: status, codes, message, and the rule the client
/// broke, if any.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// HTTP status.
    pub(crate) status: u16,
    /// Top-level Graph error code.
    pub(crate) code: &'static str,
    /// Specific inner error code.
    pub(crate) inner: Option<&'static str>,
    /// Message for the body.
    pub(crate) message: String,
    /// Set when the refusal is the client's fault: recorded as a protocol
    /// violation.
    pub(crate) violation: Option<String>,
}

impl Refusal {
    /// A refusal that does not blame the client.
    pub(crate) fn new(
        status: u16,
        code: &'static str,
        inner: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            code,
            inner,
            message: message.into(),
            violation: None,
        }
    }

    /// The same refusal, recorded as a violation of `rule`.
    pub(crate) fn violating(mut self, rule: impl Into<String>) -> Self {
        self.violation = Some(rule.into());
        self
    }

    /// 404 `itemNotFound`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Refusal::new(404, "itemNotFound", None, message)
    }

    /// 400 `invalidRequest` with an optional inner code.
    pub(crate) fn invalid(inner: Option<&'static str>, message: impl Into<String>) -> Self {
        Refusal::new(400, "invalidRequest", inner, message)
    }

    /// 409 `nameAlreadyExists`.
    pub(crate) fn name_exists(message: impl Into<String>) -> Self {
        Refusal::new(409, "nameAlreadyExists", None, message)
    }

    /// The Graph error response.
    pub(crate) fn response(&self) -> Response<Body> {
        graph_error(self.status, self.code, self.inner, &self.message)
    }
}

/// A redirect to `location`.
pub(crate) fn redirect(location: &str) -> Response<Body> {
    let mut response = empty(302);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn status_of(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
