//! Access and refresh tokens against the strict fake: rotation saved before
//! use, one refresh however many tasks ask, a refused refresh token turned into
//! "run login", and the token file's protections (permissions, key) as the
//! command line reports them.

mod common;
mod fake_graph;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use common::{failure, success, Endpoints, TestHome, SMALL_UPLOADS};
use fake_graph::{FakeGraph, FakeOptions, Route};
use onedrive_syncd::auth::AuthError;
use onedrive_syncd::graph::{GraphApi as _, GraphError};

async fn start(options: FakeOptions) -> (FakeGraph, TestHome) {
    let fake = FakeGraph::start(options).await;
    let endpoints = Endpoints {
        graph_url: fake.graph_url(),
        authority_url: fake.authority_url(),
        client_id: fake.client_id(),
    };
    let home = TestHome::new(&endpoints, SMALL_UPLOADS);
    home.seed_refresh_token(&fake.issue_refresh_token()).await;
    (fake, home)
}

fn token_requests(fake: &FakeGraph) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.route == Route::Token)
        .count()
}

#[tokio::test]
async fn a_rotated_refresh_token_is_saved_and_the_old_one_is_not_needed() {
    // The fake revokes a refresh token once used, so only the saved rotation
    // keeps working.
    let options = FakeOptions {
        rotate_revokes_old_refresh_token: true,
        ..FakeOptions::default()
    };
    let (fake, home) = start(options).await;
    let original = home.stored_refresh_token().await.unwrap();

    let tokens = home.token_manager();
    tokens.get().await.unwrap();
    let rotated = home.stored_refresh_token().await.unwrap();
    assert_ne!(rotated, original, "the rotated refresh token was not saved");

    tokens.refresh_now().await.unwrap();
    let rotated_again = home.stored_refresh_token().await.unwrap();
    assert_ne!(rotated_again, rotated);

    // A new process (a restart) starts from the store alone.
    let (client, _) = home.graph_client();
    client.drive().await.unwrap();
    assert_eq!(token_requests(&fake), 3);
    fake.assert_no_violations();
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let (fake, home) = start(FakeOptions::default()).await;
    let tokens = home.token_manager();

    let first = join_all(&tokens, 16).await;
    assert!(
        first.windows(2).all(|w| w[0] == w[1]),
        "callers got different tokens"
    );
    assert_eq!(token_requests(&fake), 1);

    // Sixteen 401s on the same token cause one refresh, not sixteen.
    for _ in 0..16 {
        tokens.invalidate(&first[0]).await;
    }
    let second = join_all(&tokens, 16).await;
    assert!(second.iter().all(|t| *t == second[0] && *t != first[0]));
    assert_eq!(token_requests(&fake), 2);
    fake.assert_no_violations();
}

async fn join_all(
    tokens: &Arc<onedrive_syncd::auth::TokenManager>,
    count: usize,
) -> Vec<onedrive_syncd::secrets::Secret> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.get().await })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap().unwrap());
    }
    out
}

#[tokio::test]
async fn a_401_refreshes_once_and_repeats_the_request() {
    let (fake, home) = start(FakeOptions::default()).await;
    let (client, _) = home.graph_client();
    client.drive().await.unwrap();

    fake.expire_access_tokens();
    client.drive().await.unwrap();
    let drives: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.route == Route::Drive)
        .map(|r| r.status)
        .collect();
    assert_eq!(drives, [200, 401, 200]);
    assert_eq!(token_requests(&fake), 2);
    fake.assert_no_violations();
}

#[tokio::test]
async fn short_lived_access_tokens_are_refreshed_before_they_expire() {
    let options = FakeOptions {
        access_token_lifetime: std::time::Duration::from_secs(2),
        ..Default::default()
    };
    let (fake, home) = start(options).await;
    let (client, _) = home.graph_client();
    client.drive().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    client.drive().await.unwrap();

    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert!(
        !statuses.contains(&401),
        "a request left with an expiring token: {statuses:?}"
    );
    assert_eq!(token_requests(&fake), 2);
    fake.assert_no_violations();
}

#[tokio::test]
async fn a_refused_refresh_token_asks_for_a_new_login() {
    let (fake, home) = start(FakeOptions::default()).await;
    fake.revoke_refresh_tokens();
    let (client, tokens) = home.graph_client();

    let err = client.drive().await.unwrap_err();
    match &err {
        GraphError::Auth(AuthError::ReauthenticationNeeded { .. }) => {}
        other => panic!("expected re-authentication, got {other:?}"),
    }
    assert!(
        err.to_string().contains("run `onedrive-syncd login`"),
        "{err}"
    );
    assert!(tokens.needs_reauthentication());

    // The refused token is not sent again.
    let before = token_requests(&fake);
    assert!(client.drive().await.is_err());
    assert_eq!(token_requests(&fake), before);

    // A new login (a new stored token) ends the state without a restart.
    home.seed_refresh_token(&fake.issue_refresh_token()).await;
    client.drive().await.unwrap();
    assert!(!tokens.needs_reauthentication());
    fake.assert_no_violations();
}

#[tokio::test]
async fn the_command_line_names_the_login_command_when_reauthentication_is_needed() {
    let (fake, home) = start(FakeOptions::default()).await;
    fake.revoke_refresh_tokens();
    let stderr = failure(&home.run(&["whoami"]).await);
    assert!(stderr.contains("run `onedrive-syncd login`"), "{stderr}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn token_and_key_files_readable_by_others_are_refused() {
    let (fake, home) = start(FakeOptions::default()).await;
    success(&home.run(&["whoami"]).await);

    for (path, mode) in [(home.token_path(), 0o644), (home.key_path(), 0o640)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let before = fake.requests().len();
        let stderr = failure(&home.run(&["whoami"]).await);
        let fix = format!("chmod 600 {}", path.display());
        assert!(stderr.contains(&fix), "expected `{fix}` in: {stderr}");
        assert_eq!(
            fake.requests().len(),
            before,
            "a request was sent with an exposed token"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    success(&home.run(&["whoami"]).await);
    fake.assert_no_violations();
}

#[tokio::test]
async fn the_token_file_is_unreadable_without_its_key() {
    let (fake, home) = start(FakeOptions::default()).await;
    let stored = home.stored_refresh_token().await.unwrap();
    let raw = std::fs::read(home.token_path()).unwrap();
    assert!(
        !raw.windows(stored.len()).any(|w| w == stored.as_bytes()),
        "the refresh token is stored in clear"
    );

    // Another key, as on another machine or after the key was regenerated.
    std::fs::remove_file(home.key_path()).unwrap();
    home.store().create_key_if_missing().unwrap();
    let stderr = failure(&home.run(&["whoami"]).await);
    assert!(
        stderr.contains("was it written with another key?"),
        "{stderr}"
    );
    assert!(
        fake.requests().is_empty(),
        "a request was sent without a token"
    );
    fake.assert_no_violations();
}

#[tokio::test]
async fn commands_before_any_login_say_how_to_log_in() {
    let fake = FakeGraph::start(FakeOptions::default()).await;
    let endpoints = Endpoints {
        graph_url: fake.graph_url(),
        authority_url: fake.authority_url(),
        client_id: fake.client_id(),
    };
    let home = TestHome::new(&endpoints, SMALL_UPLOADS);
    let stderr = failure(&home.run(&["ls"]).await);
    assert!(stderr.contains("onedrive-syncd login"), "{stderr}");
    assert!(fake.requests().is_empty());
    fake.assert_no_violations();
}
