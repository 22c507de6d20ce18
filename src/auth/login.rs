//! Interactive sign-in: the device authorization grant and the
//! authorization-code flow with PKCE. Neither stores anything; the caller saves
//! [`IssuedTokens::refresh_token`].
//!
//! Device code (RFC 8628) is the default on a headless host: the admin opens
//! the verification URL on any device and types the code. Polling waits the
//! interval the server asked for, also before the first poll (polling at once
//! would only earn a `slow_down`), and adds five seconds for every `slow_down`,
//! as RFC 8628 section 3.5 requires.
//!
//! Some app registrations cannot use device code. For them [`PkceLogin`] prints
//! a sign-in URL to open anywhere; after sign-in the browser lands on the
//! redirect URI (by default Microsoft's `nativeclient` page) and the admin
//! pastes that address back. The `state` parameter ties the pasted URL to this
//! run, and the PKCE verifier never leaves the process.

use std::time::Duration;

use oauth2::{
    AuthorizationCode, CsrfToken, DeviceAuthorizationResponse, ExtraDeviceAuthorizationFields,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use url::Url;

use super::oauth::{client, explain, http_client, translate, OAuthClient};
use super::{AuthError, IssuedTokens, DEFAULT_SCOPES};
use crate::config::ApplicationConfig;
use crate::secrets::Secret;

/// Lifetime assumed for an access token when the response does not say.
const DEFAULT_ACCESS_LIFETIME: Duration = Duration::from_secs(3600);

/// What the admin must do to finish a device-code sign-in.
#[derive(Clone, Debug)]
pub struct DeviceCodePrompt {
    /// The page to open, on any device.
    pub verification_uri: String,
    /// The code to type there.
    pub user_code: String,
    /// How long the code stays valid.
    pub expires_in: Duration,
    /// The identity platform's own sentence, when it sends one.
    pub message: Option<String>,
}

/// The `message` field Microsoft adds to the device authorization response.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
struct MicrosoftDeviceFields {
    message: Option<String>,
}

impl ExtraDeviceAuthorizationFields for MicrosoftDeviceFields {}

/// The scopes to ask for: the configured ones, or [`DEFAULT_SCOPES`].
pub fn scopes(app: &ApplicationConfig) -> Vec<Scope> {
    if app.scopes.is_empty() {
        DEFAULT_SCOPES
            .iter()
            .map(|s| Scope::new(s.to_string()))
            .collect()
    } else {
        app.scopes.iter().cloned().map(Scope::new).collect()
    }
}

/// Runs the device authorization grant to the end.
///
/// `show` is called once with the code to enter; the function then polls until
/// the sign-in completes, is declined, or the code expires.
pub async fn device_code(
    app: &ApplicationConfig,
    show: impl FnOnce(&DeviceCodePrompt),
) -> Result<IssuedTokens, AuthError> {
    let http = http_client()?;
    let oauth = client(app, None)?;
    let details: DeviceAuthorizationResponse<MicrosoftDeviceFields> = oauth
        .exchange_device_code()
        .add_scopes(scopes(app))
        .request_async(&http)
        .await
        .map_err(|err| translate(err, &app.client_id))?;

    show(&DeviceCodePrompt {
        verification_uri: details.verification_uri().to_string(),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in(),
        message: details.extra_fields().message.clone(),
    });
    tracing::debug!(
        retry_after_ms = details.interval().as_millis() as u64,
        "waiting for device sign-in"
    );

    tokio::time::sleep(details.interval()).await;
    let token = oauth
        .exchange_device_access_token(&details)
        .request_async(&http, tokio::time::sleep, None)
        .await
        .map_err(|err| translate(err, &app.client_id))?;
    issued(&token)
}

/// Microsoft's page for native clients, where the browser lands after sign-in;
/// its address carries the authorization code.
pub fn default_redirect_uri(app: &ApplicationConfig) -> String {
    let mut url = app.authority_url.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments
            .pop_if_empty()
            .extend(["common", "oauth2", "nativeclient"]);
    }
    url.to_string()
}

/// An authorization-code sign-in with PKCE, waiting for the pasted redirect
/// URL.
pub struct PkceLogin {
    oauth: OAuthClient,
    client_id: String,
    authorize_url: Url,
    redirect_uri: String,
    state: CsrfToken,
    verifier: PkceCodeVerifier,
}

impl PkceLogin {
    /// Prepares the sign-in URL. `redirect_uri` must be registered on the app;
    /// `None` means [`default_redirect_uri`].
    pub fn start(app: &ApplicationConfig, redirect_uri: Option<&str>) -> Result<Self, AuthError> {
        let redirect_uri = redirect_uri.map_or_else(|| default_redirect_uri(app), str::to_string);
        let redirect =
            RedirectUrl::new(redirect_uri.clone()).map_err(|err| AuthError::PastedUrlInvalid {
                reason: format!("redirect URI {redirect_uri}: {err}"),
            })?;
        let oauth = client(app, Some(redirect))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (authorize_url, state) = oauth
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes(app))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Self {
            oauth,
            client_id: app.client_id.clone(),
            authorize_url,
            redirect_uri,
            state,
            verifier,
        })
    }

    /// The address the admin opens in a browser.
    pub fn authorize_url(&self) -> &Url {
        &self.authorize_url
    }

    /// Where the browser will land after sign-in.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Redeems the code in the pasted redirect URL.
    pub async fn finish(self, pasted: &str) -> Result<IssuedTokens, AuthError> {
        let code = self.code_from(pasted.trim())?;
        let http = http_client()?;
        let token = self
            .oauth
            .exchange_code(code)
            .set_pkce_verifier(self.verifier)
            .request_async(&http)
            .await
            .map_err(|err| translate(err, &self.client_id))?;
        issued(&token)
    }

    fn code_from(&self, pasted: &str) -> Result<AuthorizationCode, AuthError> {
        let url = Url::parse(pasted).map_err(|err| AuthError::PastedUrlInvalid {
            reason: format!("not a URL ({err}); copy the whole address from the browser"),
        })?;
        let mut code = None;
        let mut state = None;
        let mut error = None;
        let mut description = String::new();
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "code" => code = Some(value.into_owned()),
                "state" => state = Some(value.into_owned()),
                "error" => error = Some(value.into_owned()),
                "error_description" => description = value.into_owned(),
                _ => {}
            }
        }

        if let Some(error) = error {
            return Err(explain(&error, &description, &self.client_id));
        }
        if state.as_deref() != Some(self.state.secret().as_str()) {
            return Err(AuthError::StateMismatch);
        }
        code.map(AuthorizationCode::new)
            .ok_or_else(|| AuthError::PastedUrlInvalid {
                reason: "it has no `code` parameter; paste the address shown after signing in"
                    .to_string(),
            })
    }
}

/// Checks and unpacks a token response from a login.
pub(crate) fn issued(token: &oauth2::basic::BasicTokenResponse) -> Result<IssuedTokens, AuthError> {
    let refresh_token = token.refresh_token().ok_or(AuthError::NoRefreshToken)?;
    Ok(IssuedTokens {
        access_token: Secret::new(token.access_token().secret().clone()),
        expires_in: token.expires_in().unwrap_or(DEFAULT_ACCESS_LIFETIME),
        refresh_token: Secret::new(refresh_token.secret().clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> ApplicationConfig {
        ApplicationConfig {
            client_id: "cid".into(),
            tenant: "consumers".into(),
            authority_url: "https://login.microsoftonline.com".parse().unwrap(),
            graph_url: "https://graph.microsoft.com/v1.0".parse().unwrap(),
            scopes: vec![],
        }
    }

    #[test]
    fn the_sign_in_url_carries_pkce_and_state() {
        let login = PkceLogin::start(&app(), None).unwrap();
        assert_eq!(
            login.redirect_uri(),
            "https://login.microsoftonline.com/common/oauth2/nativeclient"
        );
        let url = login.authorize_url();
        assert_eq!(url.path(), "/consumers/oauth2/v2.0/authorize");
        let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["scope"], "Files.ReadWrite offline_access");
        assert_eq!(query["state"], *login.state.secret());
    }

    #[test]
    fn pasted_urls_are_checked() {
        let login = PkceLogin::start(&app(), None).unwrap();
        let state = login.state.secret().clone();
        let base = login.redirect_uri().to_string();

        let good = format!("{base}?code=abc&state={state}");
        assert_eq!(login.code_from(&good).unwrap().secret(), "abc");

        let other = format!("{base}?code=abc&state=someone-else");
        assert!(matches!(
            login.code_from(&other),
            Err(AuthError::StateMismatch)
        ));

        let no_code = format!("{base}?state={state}");
        assert!(matches!(
            login.code_from(&no_code),
            Err(AuthError::PastedUrlInvalid { .. })
        ));

        let declined = format!("{base}?error=access_denied&error_description=no&state={state}");
        assert!(matches!(
            login.code_from(&declined),
            Err(AuthError::Declined)
        ));

        assert!(matches!(
            login.code_from("abc"),
            Err(AuthError::PastedUrlInvalid { .. })
        ));
    }
}
