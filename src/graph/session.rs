//! Upload sessions: the resumable way to send a file in fragments.
//!
//! A session is created with `createUploadSession` and then addressed only
//! through its `uploadUrl`. That URL embeds a credential (`tempauth`), so it
//! lives in [`UploadUrl`], whose `Debug` redacts it; it is never logged and
//! never sent an `Authorization` header (Graph answers such requests with 401).
//!
//! A session can be persisted (serde) so that an upload resumes after a
//! restart: the daemon stores the whole [`UploadSession`] and asks
//! [`super::GraphApi::session_status`] for the next byte the server expects,
//! never trusting its own count. The embedded credential dies 24 hours after
//! creation whatever `expirationDateTime` says, so
//! [`UploadSession::needs_replacement`] retires a session a margin before that.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use url::Url;

use super::path::RemotePath;
use super::types::DriveItem;

/// The hard cap on a session's age: its credential expires 24 hours after
/// creation.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Retire a session this long before its age cap or expiry, so that no fragment
/// is in flight when it dies.
pub const SESSION_RETIRE_MARGIN: Duration = Duration::from_secs(30 * 60);

/// A session's pre-authenticated URL: a bearer credential, redacted from
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct UploadUrl(Url);

impl UploadUrl {
    /// Wraps a URL returned by `createUploadSession`.
    pub fn new(url: Url) -> Self {
        Self(url)
    }

    /// The URL itself, for the one place that sends a request to it.
    pub fn expose(&self) -> &Url {
        &self.0
    }
}

impl fmt::Debug for UploadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UploadUrl(***)")
    }
}

impl Serialize for UploadUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for UploadUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Url::parse(&text)
            .map(UploadUrl)
            .map_err(serde::de::Error::custom)
    }
}

/// An open upload session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    /// Where fragments go; a credential.
    pub upload_url: UploadUrl,
    /// The file the session will create.
    pub remote: RemotePath,
    /// When the server will drop the session unless it sees progress; each
    /// accepted fragment moves it forward.
    #[serde(with = "time::serde::rfc3339")]
    pub expiration: OffsetDateTime,
    /// When the session was requested (a little before the server created it).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl UploadSession {
    /// Whether the session is too close to its expiry or its 24-hour cap to
    /// carry on.
    pub fn needs_replacement(&self, now: OffsetDateTime) -> bool {
        self.too_old(now) || now >= self.expiration - MIN_EXPIRY_SLACK
    }

    /// Whether the session is close to its 24-hour cap, which no fragment
    /// extends.
    pub fn too_old(&self, now: OffsetDateTime) -> bool {
        now >= self.created_at + (SESSION_MAX_AGE - SESSION_RETIRE_MARGIN)
    }
}

/// The server may announce a short expiry (15 minutes on business drives) that
/// each fragment extends; only this much slack is demanded of it.
const MIN_EXPIRY_SLACK: Duration = Duration::from_secs(60);

/// What the server knows about a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// The session is alive; this is the first byte it still needs.
    NextExpected(u64),
    /// Every byte has arrived; the file is (or is about to be) committed.
    AllReceived,
    /// The server no longer knows the session: expired, cancelled or completed.
    NotFound,
}

/// The server's answer to one fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FragmentOutcome {
    /// Stored; the session wants this byte next.
    Accepted {
        /// First byte of the first missing range.
        next_expected: u64,
        /// The session's new expiry, when the server sent it.
        expiration: Option<OffsetDateTime>,
    },
    /// That was the last fragment: the file exists.
    Completed(Box<DriveItem>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(created_at: OffsetDateTime, expiration: OffsetDateTime) -> UploadSession {
        UploadSession {
            upload_url: UploadUrl::new(
                "https://up.example/rup/abc?tempauth=SECRET"
                    .parse()
                    .unwrap(),
            ),
            remote: RemotePath::parse("/a.bin").unwrap(),
            expiration,
            created_at,
        }
    }

    #[test]
    fn the_upload_url_is_redacted_but_persisted() {
        let now = OffsetDateTime::now_utc();
        let s = session(now, now + Duration::from_secs(3600));
        assert!(!format!("{s:?}").contains("SECRET"));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("tempauth=SECRET"));
        assert_eq!(serde_json::from_str::<UploadSession>(&json).unwrap(), s);
    }

    #[test]
    fn sessions_retire_before_the_age_cap_and_expiry() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let far = t0 + Duration::from_secs(7 * 24 * 3600);
        let s = session(t0, far);
        assert!(!s.needs_replacement(t0 + Duration::from_secs(23 * 3600)));
        assert!(s.needs_replacement(t0 + Duration::from_secs(23 * 3600 + 1801)));

        let short = session(t0, t0 + Duration::from_secs(900));
        assert!(!short.needs_replacement(t0 + Duration::from_secs(839)));
        assert!(short.needs_replacement(t0 + Duration::from_secs(841)));
    }
}
