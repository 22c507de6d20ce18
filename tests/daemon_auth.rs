//! Sign-in trouble loses nothing (promises 1 and 5): a daemon started before
//! anyone logged in, or whose refresh token is then revoked, keeps the files
//! queued, says in `status` what is wrong and which command fixes it, and
//! uploads them once a login has stored a usable token.

mod common;
mod fake_graph;

use common::daemon::{count, holds, setup, MappingSpec, FAST_UPLOADS, PATIENCE};
use common::sample_bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_wait_for_a_login_and_then_arrive() {
    let (fake, home) = setup(FAST_UPLOADS, &[MappingSpec::new("a", "/A")]).await;
    // The setup stored a token; take it away, as on a host never logged in.
    std::fs::remove_file(home.home.token_path()).expect("removing the token");
    let bytes = sample_bytes(5000, 1);
    std::fs::write(home.outbox("a").join("early.bin"), &bytes).expect("write");
    let _daemon = home.start().await;

    let status = home
        .wait_for_status("sign-in trouble reported", PATIENCE, |s| {
            s["auth"].get("failing").is_some()
        })
        .await;
    let reason = status["auth"]["failing"].as_str().unwrap_or_default();
    assert!(reason.contains("onedrive-syncd login"), "{reason}");
    assert_eq!(
        count(&status, "failed"),
        0,
        "waiting is not failing: {status:#}"
    );
    assert!(fake.file("/A/early.bin").is_none());
    let text = home.ok(&["status"]).await;
    assert!(text.contains("sign-in: failing"), "{text}");

    // What `login` leaves behind: a stored refresh token.
    home.home
        .seed_refresh_token(&fake.issue_refresh_token())
        .await;
    home.wait_until("the file after the login", PATIENCE, || {
        holds(&fake, "/A/early.bin", &bytes)
    })
    .await;
    home.wait_for_status("sign-in healthy again", PATIENCE, |s| s["auth"] == "ok")
        .await;
    fake.assert_no_violations();
}
