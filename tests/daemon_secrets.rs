//! Secrets stay secret (promise 6): however verbose the log, it never holds an
//! access token, a refresh token, an upload URL or its `tempauth` capability,
//! even through a token refresh, a lost fragment response and throttling.

mod common;
mod fake_graph;

use common::daemon::{count, DaemonHome, MappingSpec, FAST_UPLOADS, PATIENCE};
use common::{sample_bytes, Endpoints};
use fake_graph::{FakeGraph, FakeOptions, Route};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_show_tokens_or_upload_urls() {
    let fake = FakeGraph::start(FakeOptions::default()).await;
    let endpoints = Endpoints {
        graph_url: fake.graph_url(),
        authority_url: fake.authority_url(),
        client_id: fake.client_id(),
    };
    let home = DaemonHome::new(&endpoints, FAST_UPLOADS, &[MappingSpec::new("s", "/S")]);
    let refresh_token = fake.issue_refresh_token();
    home.home.seed_refresh_token(&refresh_token).await;

    let big = sample_bytes(2 * 1024 * 1024 + 5, 7);
    let small = sample_bytes(300, 8);
    // Slow enough for the faults below to land in the middle of the session.
    fake.set_bandwidth(Some(1024 * 1024));
    std::fs::write(home.outbox("s").join("big.bin"), &big).expect("write");
    std::fs::write(home.outbox("s").join("small.txt"), &small).expect("write");
    // Everything, dependencies included, at the most verbose level.
    let daemon = home.start_logging("trace").await;

    home.wait_until("a first fragment accepted", PATIENCE, || {
        fake.requests()
            .iter()
            .any(|r| r.route == Route::Fragment && r.status == 202)
    })
    .await;
    fake.expire_access_tokens();
    fake.lose_next_fragment_response(1);
    fake.fail_next(Route::Fragment, 429, 1, Some(1));
    home.wait_for_status("both uploads done", PATIENCE * 2, |status| {
        count(status, "done") + count(status, "failed") >= 1
            && fake.file("/S/big.bin").is_some()
            && fake.file("/S/small.txt").is_some()
    })
    .await;
    assert_eq!(daemon.terminate(PATIENCE).await.code(), Some(0));

    let log = home.log();
    assert!(
        log.lines().count() > 50,
        "the trace log is unexpectedly short:\n{log}"
    );
    let sessions: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.session_id.clone())
        .collect();
    assert!(!sessions.is_empty(), "the big file went through a session");
    let mut secrets = vec![
        "fake-at.".to_string(),
        "fake-rt.".to_string(),
        "tempauth".to_string(),
        "Bearer".to_string(),
        refresh_token,
    ];
    secrets.extend(sessions);
    for secret in &secrets {
        let leak = log.lines().find(|line| line.contains(secret.as_str()));
        assert!(leak.is_none(), "the log shows `{secret}`: {leak:?}");
    }
    let stored = std::fs::read(home.home.token_path()).expect("token file");
    assert!(
        !String::from_utf8_lossy(&stored).contains("fake-rt."),
        "the token file holds a refresh token in clear"
    );
    fake.assert_no_violations();
}
