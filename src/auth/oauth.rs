//! The `oauth2` client for the configured identity platform, and how its errors
//! read.
//!
//! The identity platform answers errors as `{"error", "error_description":
//! "AADSTS<n>: ..", "error_codes": [n]}`; the AADSTS number is what
//! distinguishes, say, an unknown client id from an app that is not enabled for
//! public-client flows, so it is taken from the description (the `oauth2` crate
//! keeps only the standard fields).

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, ClientId, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, RedirectUrl,
    RequestTokenError, StandardErrorResponse, TokenUrl,
};
use url::Url;

use super::{require_secure, AuthError};
use crate::config::ApplicationConfig;

/// The `oauth2` client with the authorize, device-code and token endpoints set.
pub(crate) type OAuthClient =
    BasicClient<EndpointSet, EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// How long to wait for the TCP and TLS handshakes with the identity platform.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for one token request; they are small.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client for identity requests.
///
/// Redirects are disabled: the token endpoint never redirects legitimately, and
/// following one could send a refresh token to another host.
pub(crate) fn http_client() -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(crate::graph::USER_AGENT)
        .build()
        .map_err(|err| AuthError::Unavailable {
            detail: format!("cannot build HTTP client: {err}"),
        })
}

/// `{authority}/{tenant}/oauth2/v2.0/{leaf}`, refused unless HTTPS or loopback.
pub(crate) fn endpoint(app: &ApplicationConfig, leaf: &str) -> Result<Url, AuthError> {
    let mut url = app.authority_url.clone();
    match url.path_segments_mut() {
        Ok(mut segments) => {
            segments
                .pop_if_empty()
                .extend([app.tenant.as_str(), "oauth2", "v2.0", leaf]);
        }
        Err(()) => {
            return Err(AuthError::InsecureEndpoint {
                url: app.authority_url.to_string(),
            });
        }
    }
    require_secure(&url)?;
    Ok(url)
}

/// The `oauth2` client for `app`, with `redirect` set for the
/// authorization-code flow.
pub(crate) fn client(
    app: &ApplicationConfig,
    redirect: Option<RedirectUrl>,
) -> Result<OAuthClient, AuthError> {
    let client = BasicClient::new(ClientId::new(app.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(endpoint(app, "authorize")?))
        .set_device_authorization_url(DeviceAuthorizationUrl::from_url(endpoint(
            app,
            "devicecode",
        )?))
        .set_token_uri(TokenUrl::from_url(endpoint(app, "token")?));
    Ok(match redirect {
        Some(redirect) => client.set_redirect_uri(redirect),
        None => client,
    })
}

/// The AADSTS number in an identity-platform error description, if any.
pub(crate) fn aadsts_code(description: &str) -> Option<u32> {
    let start = description.find("AADSTS")? + "AADSTS".len();
    let digits: String = description[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Turns an `oauth2` request error into an [`AuthError`] an admin can act on.
pub(crate) fn translate<RE, T>(
    err: RequestTokenError<RE, StandardErrorResponse<T>>,
    client_id: &str,
) -> AuthError
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponseType + AsRef<str> + std::fmt::Display,
{
    match err {
        RequestTokenError::ServerResponse(response) => {
            let description = response.error_description().cloned().unwrap_or_default();
            explain(response.error().as_ref(), &description, client_id)
        }
        RequestTokenError::Request(err) => AuthError::Unavailable {
            detail: error_chain(&err),
        },
        // The body is not quoted: a response that failed to parse may still
        // hold a token.
        RequestTokenError::Parse(err, _body) => AuthError::Unavailable {
            detail: format!("unexpected answer from the token endpoint: {}", err.inner()),
        },
        RequestTokenError::Other(detail) => AuthError::Unavailable { detail },
    }
}

/// Maps an OAuth error code and its AADSTS description to an [`AuthError`].
pub(crate) fn explain(error: &str, description: &str, client_id: &str) -> AuthError {
    let first_line = description
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    match (error, aadsts_code(description)) {
        (_, Some(7_000_218)) => AuthError::PublicClientFlowsDisabled,
        (_, Some(700_016)) => AuthError::UnknownClient {
            client_id: client_id.to_string(),
            detail: first_line,
        },
        ("authorization_declined" | "access_denied", _) => AuthError::Declined,
        ("expired_token", _) => AuthError::CodeExpired,
        ("temporarily_unavailable" | "server_error", _) => AuthError::Unavailable {
            detail: format!("{error}: {first_line}"),
        },
        _ => AuthError::Refused {
            error: error.to_string(),
            description: first_line,
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(authority: &str) -> ApplicationConfig {
        ApplicationConfig {
            client_id: "cid".into(),
            tenant: "consumers".into(),
            authority_url: authority.parse().unwrap(),
            graph_url: "https://graph.microsoft.com/v1.0".parse().unwrap(),
            scopes: vec![],
        }
    }

    #[test]
    fn endpoints_append_tenant_and_leaf() {
        let url = endpoint(&app("https://login.microsoftonline.com"), "token").unwrap();
        assert_eq!(
            url.as_str(),
            "https://login.microsoftonline.com/consumers/oauth2/v2.0/token"
        );
        let url = endpoint(&app("http://127.0.0.1:9/id/"), "devicecode").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/id/consumers/oauth2/v2.0/devicecode"
        );
        assert!(endpoint(&app("http://login.example.com"), "token").is_err());
    }

    #[test]
    fn aadsts_codes_decide_the_explanation() {
        let d = "AADSTS7000218: The request body must contain the following parameter: \
                 'client_assertion' or 'client_secret'.\r\nTrace ID: x";
        assert!(matches!(
            explain("invalid_client", d, "c"),
            AuthError::PublicClientFlowsDisabled
        ));

        let d = "AADSTS700016: Application with identifier 'c' was not found in the directory.";
        match explain("unauthorized_client", d, "c") {
            AuthError::UnknownClient { client_id, detail } => {
                assert_eq!(client_id, "c");
                assert!(detail.starts_with("AADSTS700016"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            explain("authorization_declined", "", "c"),
            AuthError::Declined
        ));
        assert!(matches!(
            explain("expired_token", "AADSTS70020: x", "c"),
            AuthError::CodeExpired
        ));
        assert!(explain("temporarily_unavailable", "", "c").is_transient());
        assert!(matches!(
            explain("invalid_scope", "AADSTS70011: x", "c"),
            AuthError::Refused { .. }
        ));
        assert_eq!(aadsts_code("no code here"), None);
    }
}
