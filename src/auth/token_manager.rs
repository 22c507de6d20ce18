//! The access-token cache with single-flight refresh and durable rotation.
//!
//! All state sits behind one `tokio::sync::Mutex`, held across the refresh
//! request: however many tasks ask at once, exactly one talks to the token
//! endpoint and the others wait, then find the fresh token. Holding an async
//! mutex across `.await` is the point here, which is why it is tokio's and not
//! std's.
//!
//! Ordering on refresh: (1) re-read the store, since `login` may have replaced
//! the token while the daemon ran; (2) redeem the refresh token; (3) save the
//! rotated refresh token, durably; (4) only then cache and hand out the access
//! token. If (3) fails the new refresh token is kept in memory and saved again
//! before the next refresh, and the caller gets the error.
//!
//! Nothing is persisted here except through the [`TokenStore`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use oauth2::{RefreshToken, RequestTokenError, TokenResponse as _};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::login::scopes;
use super::oauth::{client, http_client, translate, OAuthClient};
use super::{AuthError, TokenSource};
use crate::config::ApplicationConfig;
use crate::secrets::{Secret, StoredTokens, TokenStore};

/// How often the daemon should call [`TokenManager::refresh_now`] while idle.
/// Refresh tokens die after 90 days unused; a daily refresh keeps them alive
/// with a wide margin.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Refresh this long before the access token expires (at most half its
/// lifetime), so that a request never leaves with a token that dies in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// Lifetime assumed when the token response does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A cached access token.
struct Cached {
    token: Secret,
    /// When to stop handing it out and refresh instead.
    refresh_after: Instant,
}

#[derive(Default)]
struct State {
    access: Option<Cached>,
    /// A rotated refresh token whose save failed; saved again before the next
    /// refresh.
    unsaved: Option<Secret>,
    /// The refresh token the server refused, and why; not sent again.
    refused: Option<(Secret, String)>,
}

/// Keeps a valid Graph access token; see the module docs for the guarantees.
pub struct TokenManager {
    oauth: OAuthClient,
    http: reqwest::Client,
    client_id: String,
    scopes: Vec<oauth2::Scope>,
    store: Arc<dyn TokenStore>,
    /// Everything a refresh reads or writes; held for the whole refresh (single
    /// flight).
    state: Mutex<State>,
    /// Set while the stored refresh token is known to be refused, for status
    /// reports.
    reauth_needed: AtomicBool,
}

impl TokenManager {
    /// A manager for the application `app` whose refresh token lives in
    /// `store`.
    pub fn new(app: &ApplicationConfig, store: Arc<dyn TokenStore>) -> Result<Self, AuthError> {
        Ok(Self {
            oauth: client(app, None)?,
            http: http_client()?,
            client_id: app.client_id.clone(),
            scopes: scopes(app),
            store,
            state: Mutex::new(State::default()),
            reauth_needed: AtomicBool::new(false),
        })
    }

    /// Seeds the cache with an access token just issued by a login.
    pub async fn with_access_token(self, token: Secret, expires_in: Duration) -> Self {
        self.state.lock().await.access = Some(Cached {
            token,
            refresh_after: refresh_deadline(Instant::now(), expires_in),
        });
        self
    }

    /// A valid access token, refreshed first when it is missing or about to
    /// expire.
    pub async fn get(&self) -> Result<Secret, AuthError> {
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.access {
            if Instant::now() < cached.refresh_after {
                return Ok(cached.token.clone());
            }
        }
        self.refresh_locked(&mut state).await
    }

    /// Forgets `rejected` if it is still the cached token, so that the next
    /// [`Self::get`] refreshes. A token another task already replaced is left
    /// alone: one 401 storm causes one refresh.
    pub async fn invalidate(&self, rejected: &Secret) {
        let mut state = self.state.lock().await;
        if state
            .access
            .as_ref()
            .is_some_and(|cached| cached.token == *rejected)
        {
            state.access = None;
        }
    }

    /// Refreshes now, whatever the cache holds. The daemon calls this every
    /// [`KEEPALIVE_INTERVAL`] so that an idle refresh token does not expire.
    pub async fn refresh_now(&self) -> Result<(), AuthError> {
        let mut state = self.state.lock().await;
        self.refresh_locked(&mut state).await.map(|_| ())
    }

    /// Whether the stored refresh token was refused and an admin must run
    /// `login`.
    pub fn needs_reauthentication(&self) -> bool {
        self.reauth_needed.load(Ordering::Relaxed)
    }

    async fn refresh_locked(&self, state: &mut State) -> Result<Secret, AuthError> {
        state.access = None;
        let stored = self.current_tokens(state).await?;
        if let Some((refused, reason)) = &state.refused {
            // Sending a refused token again cannot succeed; wait for a new
            // login instead.
            if *refused == stored.refresh_token {
                return Err(AuthError::ReauthenticationNeeded {
                    reason: reason.clone(),
                });
            }
        }

        let started = Instant::now();
        let response = self
            .oauth
            .exchange_refresh_token(&RefreshToken::new(
                stored.refresh_token.expose().to_string(),
            ))
            .add_scopes(self.scopes.clone())
            .request_async(&self.http)
            .await;
        let token = match response {
            Ok(token) => token,
            Err(RequestTokenError::ServerResponse(refusal))
                if refusal.error().as_ref() == "invalid_grant" =>
            {
                let reason = refusal_reason(refusal.error().as_ref(), refusal.error_description());
                state.refused = Some((stored.refresh_token, reason.clone()));
                self.reauth_needed.store(true, Ordering::Relaxed);
                return Err(AuthError::ReauthenticationNeeded { reason });
            }
            Err(err) => return Err(translate(err, &self.client_id)),
        };

        if let Some(rotated) = token.refresh_token() {
            let rotated = Secret::new(rotated.secret().clone());
            if rotated != stored.refresh_token {
                let next = StoredTokens {
                    refresh_token: rotated.clone(),
                    account: stored.account,
                };
                if let Err(err) = self.store.save(&next).await {
                    state.unsaved = Some(rotated);
                    return Err(err.into());
                }
            }
        }

        state.refused = None;
        self.reauth_needed.store(false, Ordering::Relaxed);
        let access = Secret::new(token.access_token().secret().clone());
        let lifetime = token.expires_in().unwrap_or(DEFAULT_LIFETIME);
        state.access = Some(Cached {
            token: access.clone(),
            refresh_after: refresh_deadline(started, lifetime),
        });
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "access token refreshed"
        );
        Ok(access)
    }

    /// The stored tokens, after first saving a rotated token a previous save
    /// lost.
    async fn current_tokens(&self, state: &mut State) -> Result<StoredTokens, AuthError> {
        let stored = self.store.load().await?;
        if let Some(unsaved) = state.unsaved.clone() {
            let account = stored.and_then(|s| s.account);
            let tokens = StoredTokens {
                refresh_token: unsaved,
                account,
            };
            self.store.save(&tokens).await?;
            state.unsaved = None;
            return Ok(tokens);
        }
        stored.ok_or_else(|| AuthError::NotLoggedIn {
            store: self.store.describe(),
        })
    }
}

impl TokenSource for TokenManager {
    fn access_token(&self) -> BoxFuture<'_, Result<Secret, AuthError>> {
        self.get().boxed()
    }

    fn invalidate<'a>(&'a self, rejected: &'a Secret) -> BoxFuture<'a, ()> {
        TokenManager::invalidate(self, rejected).boxed()
    }
}

fn refresh_deadline(issued: Instant, lifetime: Duration) -> Instant {
    let margin = EXPIRY_MARGIN.min(lifetime / 2);
    issued + (lifetime - margin)
}

fn refusal_reason(error: &str, description: Option<&String>) -> String {
    let first_line = description
        .and_then(|d| d.lines().next())
        .unwrap_or_default();
    // Keep the AADSTS code and its sentence; drop trace and correlation ids.
    let short = first_line
        .split(" Trace ID:")
        .next()
        .unwrap_or_default()
        .trim();
    if short.is_empty() {
        error.to_string()
    } else {
        format!("{error}: {short}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_happens_before_expiry() {
        let now = Instant::now();
        let long = refresh_deadline(now, Duration::from_secs(3600));
        assert_eq!(long, now + Duration::from_secs(3300));
        let short = refresh_deadline(now, Duration::from_secs(10));
        assert_eq!(short, now + Duration::from_secs(5));
    }

    #[test]
    fn refusal_reasons_drop_trace_ids() {
        let d = "AADSTS700082: The refresh token has expired due to inactivity. Trace ID: 1 \
                 Correlation ID: 2";
        assert_eq!(
            refusal_reason("invalid_grant", Some(&d.to_string())),
            "invalid_grant: AADSTS700082: The refresh token has expired due to inactivity."
        );
        assert_eq!(refusal_reason("invalid_grant", None), "invalid_grant");
    }
}
