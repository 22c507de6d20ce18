//! The fake's own HTTP control API under `/_fake/`, for a separately started
//! fake (the `fake-graph` example) driven by benchmarks and the README demo.
//!
//! - `GET /_fake/files`, `/folders`, `/violations`, `/requests`, `/stats`:
//!   inspection, as JSON;
//! - `GET /_fake/file?path=/a/b.txt`: the stored bytes;
//! - `PUT /_fake/file?path=/a/b.txt`: seeds a remote file with the body;
//! - `POST /_fake/faults`: a JSON [`FaultRequest`], every field optional;
//! - `POST /_fake/tokens`: `{"access_token","refresh_token"}` for a client that
//!   skips the login;
//! - `POST /_fake/clear`: forgets recorded requests, violations and the upload
//!   peak;
//! - `POST /_fake/expire_sessions`: makes every live upload session expired.
//!
//! Nothing here is authenticated: the fake only listens on loopback.

use axum::body::Body;
use axum::http::{Method, Response};
use serde::Deserialize;
use serde_json::json;

use super::faults::LostResponse;
use super::handlers::query_map;
use super::replies::{empty, json as json_reply, plain};
use super::{FakeGraph, Inner, Route};

/// The largest file accepted by `PUT /_fake/file`.
const MAX_SEED_BYTES: usize = 1 << 30;

/// One `fail_next` entry of a [`FaultRequest`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailNext {
    /// Route to fail (`"Fragment"`, `"Any"`, ...).
    pub route: Route,
    /// HTTP status to answer with.
    pub status: u16,
    /// How many requests to fail; 1 when absent.
    #[serde(default = "one")]
    pub count: usize,
    /// `Retry-After` seconds to send, if any.
    pub retry_after_secs: Option<u64>,
}

fn one() -> usize {
    1
}

/// Body of `POST /_fake/faults`: every present field is applied.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Queue failures.
    pub fail_next: Option<Vec<FailNext>>,
    /// Requests per second before 429; 0 turns the limit off.
    pub rate_limit_per_sec: Option<u32>,
    /// Latency added to every request, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Per-request body throughput cap; 0 turns it off.
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Lose this many fragment responses after storing their bytes.
    pub lose_next_fragment_response: Option<usize>,
    /// Lose the response of the next final fragment.
    pub lose_response_of_final_fragment: Option<bool>,
    /// Cut the next upload request after this many body bytes.
    pub cut_connection_after: Option<u64>,
    /// Corrupt the next stored file.
    pub corrupt_next_stored_file: Option<bool>,
    /// How lost responses are lost.
    pub lost_response: Option<LostResponse>,
    /// Expire every access token.
    pub expire_access_tokens: Option<bool>,
    /// Revoke every refresh token.
    pub revoke_refresh_tokens: Option<bool>,
    /// Approve pending device-code logins.
    pub approve_device_code: Option<bool>,
    /// Decline pending device-code logins.
    pub decline_device_code: Option<bool>,
}

/// Serves one `/_fake/{command}` request.
pub(crate) async fn handle(
    inner: &std::sync::Arc<Inner>,
    method: &Method,
    command: &str,
    query: &str,
    body: Body,
) -> Response<Body> {
    let fake = FakeGraph::from_inner(inner.clone());
    let path = query_map(query).remove("path");
    match (method.as_str(), command) {
        ("GET", "files") => json_reply(200, &json!(fake.files())),
        ("GET", "folders") => json_reply(200, &json!(fake.folders())),
        ("GET", "violations") => json_reply(200, &json!(fake.violations())),
        ("GET", "requests") => json_reply(200, &json!(fake.requests())),
        ("GET", "stats") => json_reply(200, &fake.stats()),
        ("GET", "file") => match path.and_then(|p| fake.read_file(&p)) {
            Some(bytes) => Response::new(Body::from(bytes)),
            None => empty(404),
        },
        ("PUT", "file") => {
            let Some(path) = path else {
                return plain(400, "the path query parameter is required");
            };
            match axum::body::to_bytes(body, MAX_SEED_BYTES).await {
                Ok(bytes) => match fake.try_put_file(&path, &bytes) {
                    Ok(file) => json_reply(201, &json!(file)),
                    Err(message) => plain(400, &message),
                },
                Err(err) => plain(400, &format!("reading the body failed: {err}")),
            }
        }
        ("POST", "faults") => match axum::body::to_bytes(body, 64 * 1024).await {
            Ok(bytes) => match serde_json::from_slice::<FaultRequest>(&bytes) {
                Ok(request) => {
                    fake.apply_faults(&request);
                    empty(204)
                }
                Err(err) => plain(400, &format!("invalid fault request: {err}")),
            },
            Err(err) => plain(400, &format!("reading the body failed: {err}")),
        },
        ("POST", "tokens") => json_reply(
            200,
            &json!({
                "access_token": fake.issue_access_token(),
                "refresh_token": fake.issue_refresh_token(),
            }),
        ),
        ("POST", "clear") => {
            fake.clear_records();
            empty(204)
        }
        ("POST", "expire_sessions") => {
            fake.expire_sessions();
            empty(204)
        }
        _ => plain(404, "unknown control request"),
    }
}
