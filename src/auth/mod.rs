//! OAuth 2.0 with the Microsoft identity platform: login and access-token
//! refresh.
//!
//! This is the only module that talks to the identity endpoints
//! (`{authority}/{tenant}/oauth2/v2.0/{devicecode,authorize,token}`). It never
//! persists a secret itself: refresh tokens go through a
//! [`crate::secrets::TokenStore`].
//!
//! - [`login`]: the device authorization grant (default) and the
//!   authorization-code flow with PKCE, where the admin pastes the redirected
//!   URL back. Both end with a refresh token that the caller stores.
//! - [`TokenManager`]: the daemon's [`TokenSource`]. It keeps the access token
//!   in memory only, refreshes it before it expires and after a 401, one
//!   refresh at a time, and saves every rotated refresh token to the store
//!   *before* handing out the access token that came with it. A refused refresh
//!   token (`invalid_grant`) turns into [`AuthError::ReauthenticationNeeded`],
//!   which names the command that fixes it.
//!
//! Endpoints must use HTTPS unless their host is loopback (tests and the fake
//! server).

pub mod login;
mod oauth;
mod token_manager;

use std::time::Duration;

use futures_util::future::BoxFuture;

pub use token_manager::{TokenManager, KEEPALIVE_INTERVAL};

use crate::secrets::{Secret, SecretsError};

/// Scopes asked for when the configuration does not say: upload to the user's
/// own drive, and a refresh token.
pub const DEFAULT_SCOPES: &[&str] = &["Files.ReadWrite", "offline_access"];

/// Hands out access tokens for Microsoft Graph.
///
/// Implemented by [`TokenManager`]; tests may fake it. Futures are `Send` so
/// that callers can run in `tokio::spawn`.
pub trait TokenSource: Send + Sync {
    /// A currently valid access token, refreshing it first if needed.
    fn access_token(&self) -> BoxFuture<'_, Result<Secret, AuthError>>;

    /// Reports that Graph answered 401 to `rejected`; the next call to
    /// [`TokenSource::access_token`] refreshes unless another caller already
    /// did.
    fn invalidate<'a>(&'a self, rejected: &'a Secret) -> BoxFuture<'a, ()>;
}

/// Errors of login and token refresh, worded for the admin who has to act on
/// them.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A non-loopback endpoint without HTTPS.
    #[error("{url} must use https; plain http is allowed only for loopback hosts")]
    InsecureEndpoint {
        /// The refused URL.
        url: String,
    },
    /// Nobody has logged in yet.
    #[error("no refresh token in the {store}; run `onedrive-syncd login` first")]
    NotLoggedIn {
        /// Description of the token store.
        store: String,
    },
    /// The refresh token was refused; only a new login helps.
    #[error(
        "the stored refresh token was refused ({reason}); \
         run `onedrive-syncd login` to sign in again (queued uploads wait meanwhile)"
    )]
    ReauthenticationNeeded {
        /// The identity platform's error and AADSTS code.
        reason: String,
    },
    /// The user declined the sign-in request.
    #[error("the sign-in was declined in the browser; run `onedrive-syncd login` to try again")]
    Declined,
    /// The device code was not used in time.
    #[error(
        "the sign-in code expired before the sign-in was completed; \
         run `onedrive-syncd login` again and finish within the time it shows"
    )]
    CodeExpired,
    /// The client id is not known to the identity platform.
    #[error(
        "the identity platform does not know the application id `{client_id}` ({detail}); \
         check `application.client_id`, and `application.tenant` (`consumers` for personal \
         accounts)"
    )]
    UnknownClient {
        /// The configured client id.
        client_id: String,
        /// The AADSTS code and description.
        detail: String,
    },
    /// The app registration is not a public client.
    #[error(
        "the app registration does not allow public client flows (AADSTS7000218); in the \
         Azure portal open the app registration, Authentication, and set \"Allow public client \
         flows\" to Yes"
    )]
    PublicClientFlowsDisabled,
    /// The token response carried no refresh token.
    #[error(
        "the identity platform returned no refresh token; add `offline_access` to \
         `application.scopes`"
    )]
    NoRefreshToken,
    /// The pasted redirect URL does not belong to this sign-in.
    #[error(
        "the pasted URL belongs to another sign-in (its `state` does not match); paste the \
         address the browser shows after the sign-in started by this command"
    )]
    StateMismatch,
    /// The pasted redirect URL cannot be used.
    #[error("the pasted URL cannot be used: {reason}")]
    PastedUrlInvalid {
        /// What is wrong with it.
        reason: String,
    },
    /// Any other refusal by the identity platform.
    #[error("the identity platform refused the request: {error}: {description}")]
    Refused {
        /// The OAuth error code.
        error: String,
        /// The AADSTS description.
        description: String,
    },
    /// The identity platform could not be reached or answered with a server
    /// error.
    #[error("cannot get a token from the identity platform, a retry may help: {detail}")]
    Unavailable {
        /// What went wrong.
        detail: String,
    },
    /// Reading or writing the token store failed.
    #[error(transparent)]
    Store(#[from] SecretsError),
}

impl AuthError {
    /// Whether trying again later, without an admin, can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, AuthError::Unavailable { .. })
    }
}

/// Tokens issued by a login.
#[derive(Debug)]
pub struct IssuedTokens {
    /// The access token for Graph.
    pub access_token: Secret,
    /// How long the access token lives.
    pub expires_in: Duration,
    /// The refresh token to store.
    pub refresh_token: Secret,
}

/// Whether `url` may carry credentials: HTTPS, or any scheme to a loopback
/// host.
pub fn endpoint_is_secure(url: &url::Url) -> bool {
    if url.scheme() == "https" {
        return true;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Refuses `url` unless [`endpoint_is_secure`] accepts it.
pub fn require_secure(url: &url::Url) -> Result<(), AuthError> {
    if endpoint_is_secure(url) {
        Ok(())
    } else {
        Err(AuthError::InsecureEndpoint {
            url: url.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_except_on_loopback() {
        let ok = [
            "https://login.microsoftonline.com",
            "http://127.0.0.1:8080",
            "http://127.9.9.9/",
            "http://[::1]:1/",
            "http://localhost:3000/x",
        ];
        for url in ok {
            assert!(endpoint_is_secure(&url.parse().unwrap()), "{url}");
        }
        for url in [
            "http://graph.microsoft.com/v1.0",
            "http://10.0.0.1/",
            "http://localhost.evil/",
        ] {
            let parsed: url::Url = url.parse().unwrap();
            assert!(!endpoint_is_secure(&parsed), "{url}");
            assert!(matches!(
                require_secure(&parsed),
                Err(AuthError::InsecureEndpoint { .. })
            ));
        }
    }
}
