//! The Microsoft identity platform endpoints: device code, token, authorize
//! (PKCE).
//!
//! Invariants: tokens are opaque random strings; an access token is valid until
//! its `expires_in` passes or [`super::FakeGraph::expire_access_tokens`] is
//! called; a refresh token is single-use when
//! `rotate_revokes_old_refresh_token` is set (reusing a rotated one is refused
//! and recorded as a violation, since the client should have saved the new
//! one); `offline_access` decides whether a refresh token is issued at all.
//! Every request must be a form-urlencoded POST (authorize is a GET), as the
//! platform requires.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use super::replies::{identity_error, json, redirect};
use super::{random_hex, Inner, State};

/// Scopes that are never echoed back in `scope`: they shape the response, not
/// the token.
const OIDC_SCOPES: [&str; 3] = ["offline_access", "openid", "profile"];

/// A device-code poll that comes this much sooner than `interval` still counts
/// as on time.
const POLL_TOLERANCE: Duration = Duration::from_millis(20);

/// How long an authorization code can be redeemed.
const AUTH_CODE_LIFETIME: Duration = Duration::from_secs(600);

/// All identity state: issued tokens, device grants and authorization codes.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    devices: HashMap<String, DeviceGrant>,
    codes: HashMap<String, AuthCode>,
}

#[derive(Debug)]
struct AccessToken {
    expires: Instant,
    scopes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Live,
    Rotated,
    Revoked,
}

#[derive(Debug)]
struct RefreshToken {
    state: RefreshState,
    scopes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceStatus {
    Pending,
    Approved,
    Declined,
    Redeemed,
}

#[derive(Debug)]
struct DeviceGrant {
    expires: Instant,
    interval_secs: u64,
    last_poll: Option<Instant>,
    polls: u32,
    status: DeviceStatus,
    scopes: Vec<String>,
}

#[derive(Debug)]
struct AuthCode {
    redirect_uri: String,
    challenge: String,
    scopes: Vec<String>,
    expires: Instant,
    used: bool,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BearerProblem {
    /// No `Authorization` header.
    Missing,
    /// Not of the form `Bearer <token>`.
    Malformed,
    /// A token this fake never issued.
    Unknown,
    /// Issued, but past its lifetime (or expired on purpose by a test).
    Expired,
    /// Valid, but without a `Files.*` scope that allows the request.
    InsufficientScope,
}

impl Identity {
    /// Issues an access token and, when `offline_access` is among the scopes, a
    /// refresh token.
    pub(crate) fn issue(
        &mut self,
        scopes: &[String],
        lifetime: Duration,
    ) -> (String, Option<String>) {
        let access = format!("fake-at.{}", random_hex(24));
        self.access.insert(
            access.clone(),
            AccessToken {
                expires: Instant::now() + lifetime,
                scopes: scopes.to_vec(),
            },
        );
        let refresh = scopes.iter().any(|s| s == "offline_access").then(|| {
            let token = format!("fake-rt.{}", random_hex(32));
            let record = RefreshToken {
                state: RefreshState::Live,
                scopes: scopes.to_vec(),
            };
            self.refresh.insert(token.clone(), record);
            token
        });
        (access, refresh)
    }

    /// Makes every access token issued so far expired.
    pub(crate) fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for token in self.access.values_mut() {
            token.expires = now;
        }
    }

    /// Revokes every refresh token issued so far (as a password change would).
    pub(crate) fn revoke_refresh_tokens(&mut self) {
        for token in self.refresh.values_mut() {
            token.state = RefreshState::Revoked;
        }
    }

    /// Approves (or declines) every pending device-code login.
    pub(crate) fn settle_devices(&mut self, approve: bool) {
        let status = if approve {
            DeviceStatus::Approved
        } else {
            DeviceStatus::Declined
        };
        for grant in self.devices.values_mut() {
            if grant.status == DeviceStatus::Pending {
                grant.status = status;
            }
        }
    }

    /// Checks an `Authorization` header for a Graph request that reads (`write`
    /// false) or writes files.
    pub(crate) fn check_bearer(
        &self,
        header: Option<&str>,
        write: bool,
    ) -> Result<(), BearerProblem> {
        let header = header.ok_or(BearerProblem::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(BearerProblem::Malformed)?;
        let record = self
            .access
            .get(token.trim())
            .ok_or(BearerProblem::Unknown)?;
        if Instant::now() >= record.expires {
            return Err(BearerProblem::Expired);
        }
        let allowed: &[&str] = if write {
            &["files.readwrite", "files.readwrite.all", ".default"]
        } else {
            &[
                "files.read",
                "files.read.all",
                "files.readwrite",
                "files.readwrite.all",
                ".default",
            ]
        };
        let granted = record
            .scopes
            .iter()
            .any(|s| allowed.contains(&bare_scope(s).as_str()));
        if granted {
            Ok(())
        } else {
            Err(BearerProblem::InsufficientScope)
        }
    }
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub(crate) fn devicecode(
    inner: &Inner,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let mut state = inner.lock();
    let form = match form_of(&mut state, method, headers, body, "devicecode") {
        Ok(form) => form,
        Err(response) => return *response,
    };
    if let Err(response) = check_client(&state, &form) {
        return *response;
    }
    let Some(scope) = form.get("scope").filter(|s| !s.trim().is_empty()) else {
        state.violation("devicecode request without a scope");
        return missing_parameter("scope");
    };
    let device_code = format!("fake-dc.{}", random_hex(24));
    let user_code = random_hex(4).to_uppercase();
    let lifetime = state.options.device_code_lifetime;
    let interval_secs = state.options.device_code_interval_secs;
    let grant = DeviceGrant {
        expires: Instant::now() + lifetime,
        interval_secs,
        last_poll: None,
        polls: 0,
        status: DeviceStatus::Pending,
        scopes: split_scopes(scope),
    };
    state.identity.devices.insert(device_code.clone(), grant);
    let verification_uri = format!("{}/devicelogin", inner.base_url);
    let message = format!(
        "To sign in, use a web browser to open the page {verification_uri} and enter the code \
         {user_code} to authenticate."
    );
    json(
        200,
        &json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "expires_in": lifetime.as_secs(),
            "interval": interval_secs,
            "message": message,
        }),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`, all grant types.
pub(crate) fn token(
    inner: &Inner,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let mut state = inner.lock();
    let form = match form_of(&mut state, method, headers, body, "token") {
        Ok(form) => form,
        Err(response) => return *response,
    };
    if let Err(response) = check_client(&state, &form) {
        return *response;
    }
    let grant_type = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    match grant_type {
        "urn:ietf:params:oauth:grant-type:device_code" => device_code_grant(&mut state, &form),
        "refresh_token" => refresh_grant(&mut state, &form),
        "authorization_code" => authorization_code_grant(&mut state, &form),
        "" => missing_parameter("grant_type"),
        other => {
            state.violation(format!(
                "token request with unsupported grant_type {other:?}"
            ));
            identity_error(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            )
        }
    }
}

/// `GET /{tenant}/oauth2/v2.0/authorize`: answers at once with a redirect,
/// since no person signs in here.
pub(crate) fn authorize(inner: &Inner, method: &Method, query: &str) -> Response<Body> {
    let mut state = inner.lock();
    if method != Method::GET {
        state.violation(format!("authorize endpoint called with {method}"));
        return identity_error(
            400,
            "invalid_request",
            900561,
            "The endpoint only accepts GET requests.",
        );
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if let Err(response) = check_client(&state, &params) {
        return *response;
    }
    let Some(redirect_uri) = params
        .get("redirect_uri")
        .and_then(|r| url::Url::parse(r).ok())
    else {
        state.violation("authorize request without a valid redirect_uri");
        return missing_parameter("redirect_uri");
    };
    let state_param = params.get("state").cloned().unwrap_or_default();
    let challenge = params.get("code_challenge").cloned().unwrap_or_default();
    let pkce_ok = !challenge.is_empty()
        && params.get("code_challenge_method").map(String::as_str) == Some("S256")
        && params.get("response_type").map(String::as_str) == Some("code");
    if !pkce_ok {
        state.violation("authorize request without response_type=code and a PKCE S256 challenge");
        return redirect_with(
            &redirect_uri,
            &[("error", "invalid_request"), ("state", &state_param)],
        );
    }
    // LIMITATION: without auto approval the authorize request is denied at
    // once — no sign-in page waits for approve_device_code().
    if !state.options.auto_approve_device_code {
        return redirect_with(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "auto approval is off"),
                ("state", &state_param),
            ],
        );
    }
    let code = format!("fake-code.{}", random_hex(24));
    let record = AuthCode {
        redirect_uri: redirect_uri.to_string(),
        challenge,
        scopes: split_scopes(params.get("scope").map(String::as_str).unwrap_or_default()),
        expires: Instant::now() + AUTH_CODE_LIFETIME,
        used: false,
    };
    state.identity.codes.insert(code.clone(), record);
    redirect_with(&redirect_uri, &[("code", &code), ("state", &state_param)])
}

fn device_code_grant(state: &mut State, form: &HashMap<String, String>) -> Response<Body> {
    let auto_approve = state.options.auto_approve_device_code;
    let lifetime = state.options.access_token_lifetime;
    let now = Instant::now();
    let code = form
        .get("device_code")
        .map(String::as_str)
        .unwrap_or_default();
    let Some(grant) = state.identity.devices.get_mut(code) else {
        state.violation("token poll with a device_code that was never issued");
        return identity_error(
            400,
            "bad_verification_code",
            70000,
            "The device code is not valid.",
        );
    };
    let too_soon = grant.last_poll.is_some_and(|last| {
        let interval = Duration::from_secs(grant.interval_secs);
        now + POLL_TOLERANCE < last + interval
    });
    grant.last_poll = Some(now);
    grant.polls += 1;
    if now >= grant.expires {
        return identity_error(400, "expired_token", 70019, "The device code has expired.");
    }
    if too_soon {
        // RFC 8628 §3.5: the client must add 5 seconds to its interval from now
        // on.
        grant.interval_secs += 5;
        let interval = grant.interval_secs;
        state.violation(format!(
            "device code polled faster than its interval (now {interval} s)"
        ));
        return identity_error(400, "slow_down", 70016, "Polling too fast; slow down.");
    }
    if state.faults.slow_down_polls > 0 {
        // Injected: the service asks for more time although the client kept to
        // the interval.
        state.faults.slow_down_polls -= 1;
        grant.interval_secs += 5;
        return identity_error(400, "slow_down", 70016, "Polling too fast; slow down.");
    }
    match grant.status {
        DeviceStatus::Pending => {
            if auto_approve && grant.polls == 1 {
                grant.status = DeviceStatus::Approved;
            }
            identity_error(
                400,
                "authorization_pending",
                70016,
                "Authorization is pending.",
            )
        }
        DeviceStatus::Declined => identity_error(
            400,
            "authorization_declined",
            70000,
            "The user declined the sign-in.",
        ),
        DeviceStatus::Redeemed => {
            state.violation("device code redeemed twice");
            identity_error(
                400,
                "invalid_grant",
                70000,
                "The device code was already redeemed.",
            )
        }
        DeviceStatus::Approved => {
            grant.status = DeviceStatus::Redeemed;
            let scopes = grant.scopes.clone();
            token_response(state, &scopes, lifetime)
        }
    }
}

fn refresh_grant(state: &mut State, form: &HashMap<String, String>) -> Response<Body> {
    let lifetime = state.options.access_token_lifetime;
    let rotate = state.options.rotate_revokes_old_refresh_token;
    let presented = form
        .get("refresh_token")
        .map(String::as_str)
        .unwrap_or_default();
    let Some(record) = state.identity.refresh.get_mut(presented) else {
        state.violation("refresh with a refresh token that was never issued");
        return identity_error(
            400,
            "invalid_grant",
            9002313,
            "Invalid request. The refresh token is malformed or invalid.",
        );
    };
    match record.state {
        RefreshState::Live => {}
        RefreshState::Rotated => {
            state.violation(
                "refresh token reused after it was rotated; the client lost the new one",
            );
            return identity_error(
                400,
                "invalid_grant",
                70000,
                "The refresh token was already used and rotated.",
            );
        }
        RefreshState::Revoked => {
            return identity_error(
                400,
                "invalid_grant",
                50173,
                "The provided grant has been revoked; sign in again.",
            );
        }
    }
    if rotate {
        record.state = RefreshState::Rotated;
    }
    let mut scopes = record.scopes.clone();
    if let Some(asked) = form.get("scope").map(|s| split_scopes(s)) {
        if asked.iter().any(|s| !scopes.contains(s)) {
            state.violation("refresh asked for scopes beyond the original grant");
            return identity_error(
                400,
                "invalid_grant",
                65001,
                "The refresh asked for scopes that were not granted.",
            );
        }
        // The refreshed grant keeps offline_access: refresh tokens always roll
        // forward.
        scopes = asked;
        if !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".to_owned());
        }
    }
    token_response(state, &scopes, lifetime)
}

fn authorization_code_grant(state: &mut State, form: &HashMap<String, String>) -> Response<Body> {
    let lifetime = state.options.access_token_lifetime;
    let code = form.get("code").map(String::as_str).unwrap_or_default();
    let Some(record) = state.identity.codes.get_mut(code) else {
        state.violation("authorization_code grant with a code that was never issued");
        return identity_error(
            400,
            "invalid_grant",
            70000,
            "The authorization code is not valid.",
        );
    };
    if record.used {
        state.violation("authorization code redeemed twice");
        return identity_error(
            400,
            "invalid_grant",
            54005,
            "The authorization code was already redeemed.",
        );
    }
    if Instant::now() >= record.expires {
        return identity_error(
            400,
            "invalid_grant",
            70008,
            "The authorization code has expired.",
        );
    }
    record.used = true;
    let redirect_matches = form.get("redirect_uri").is_some_and(|r| {
        url::Url::parse(r).map(|u| u.to_string()) == Ok(record.redirect_uri.clone())
    });
    let verifier = form
        .get("code_verifier")
        .map(String::as_str)
        .unwrap_or_default();
    let verifier_matches =
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == record.challenge;
    let scopes = record.scopes.clone();
    if !redirect_matches {
        state.violation("authorization_code grant with a different redirect_uri");
        return identity_error(
            400,
            "invalid_grant",
            50148,
            "The redirect_uri does not match the authorization request.",
        );
    }
    if !verifier_matches {
        state
            .violation("authorization_code grant whose code_verifier does not match the challenge");
        return identity_error(
            400,
            "invalid_grant",
            501481,
            "The code_verifier does not match the code_challenge.",
        );
    }
    token_response(state, &scopes, lifetime)
}

fn token_response(state: &mut State, scopes: &[String], lifetime: Duration) -> Response<Body> {
    let (access, refresh) = state.identity.issue(scopes, lifetime);
    let shown: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !OIDC_SCOPES.contains(s))
        .collect();
    let mut body = json!({
        "token_type": "Bearer",
        "scope": shown.join(" "),
        "expires_in": lifetime.as_secs(),
        "ext_expires_in": lifetime.as_secs(),
        "access_token": access,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = refresh.into();
    }
    json(200, &body)
}

/// Parses a form-urlencoded POST body, refusing anything else as the platform
/// does.
fn form_of(
    state: &mut State,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &str,
) -> Result<HashMap<String, String>, Box<Response<Body>>> {
    if method != Method::POST {
        state.violation(format!(
            "{endpoint} endpoint called with {method} instead of POST"
        ));
        return Err(Box::new(identity_error(
            400,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        )));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        state.violation(format!(
            "{endpoint} request with content type {content_type:?}, not a form"
        ));
        return Err(Box::new(identity_error(
            400,
            "invalid_request",
            900144,
            "The request body must be form-urlencoded.",
        )));
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

fn check_client(state: &State, form: &HashMap<String, String>) -> Result<(), Box<Response<Body>>> {
    match form.get("client_id") {
        None => Err(Box::new(missing_parameter("client_id"))),
        Some(id) if *id == state.options.client_id => Ok(()),
        Some(id) => Err(Box::new(identity_error(
            401,
            "invalid_client",
            700016,
            &format!("Application with identifier '{id}' was not found in the directory."),
        ))),
    }
}

fn missing_parameter(name: &str) -> Response<Body> {
    identity_error(
        400,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

fn redirect_with(base: &url::Url, pairs: &[(&str, &str)]) -> Response<Body> {
    let mut target = base.clone();
    {
        let mut query = target.query_pairs_mut();
        for (key, value) in pairs {
            query.append_pair(key, value);
        }
    }
    redirect(target.as_str())
}

fn split_scopes(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// `https://graph.microsoft.com/Files.ReadWrite` and `Files.ReadWrite` name the same scope.
fn bare_scope(scope: &str) -> String {
    scope.rsplit('/').next().unwrap_or(scope).to_lowercase()
}
