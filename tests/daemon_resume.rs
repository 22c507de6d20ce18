//! Crashes and stops of the daemon in the middle of an upload (promises 3 and
//! 4): after `kill -9` a large upload goes on in the same session from the
//! byte the server asks for; a crash between the server's completion and the
//! daemon's record neither uploads again nor leaves a renamed copy; SIGTERM
//! exits cleanly and the upload completes after the next start.

mod common;
mod fake_graph;

use std::time::Duration;

use common::daemon::{assert_arrived, count, setup, MappingSpec, FAST_UPLOADS, PATIENCE};
use common::sample_bytes;
use fake_graph::{RequestRecord, Route};

const MIB: usize = 1024 * 1024;

/// Fragments the server took (202 while incomplete, 200/201 at the end).
fn accepted_fragments(requests: &[RequestRecord]) -> Vec<(u64, u64)> {
    requests
        .iter()
        .filter(|r| r.route == Route::Fragment && (200..=202).contains(&r.status))
        .filter(|r| !r.response_lost)
        .filter_map(|r| r.content_range.map(|(first, last, _)| (first, last)))
        .collect()
}

/// The byte the session expects next, judged from the fragments it accepted.
fn server_offset(requests: &[RequestRecord]) -> u64 {
    accepted_fragments(requests)
        .iter()
        .map(|(_, last)| last + 1)
        .max()
        .unwrap_or(0)
}

fn count_route(requests: &[RequestRecord], route: Route) -> usize {
    requests.iter().filter(|r| r.route == route).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_killed_with_sigkill_resumes_from_the_server_offset() {
    let (fake, home) = setup(FAST_UPLOADS, &[MappingSpec::new("big", "/Big")]).await;
    let bytes = sample_bytes(20 * MIB, 30);
    std::fs::write(home.outbox("big").join("data.bin"), &bytes).expect("writing the file");
    // 64 fragments of 320 KiB at 4 MiB/s each: the kill lands mid-upload.
    fake.set_bandwidth(Some(4 * MIB as u64));
    let daemon = home.start().await;

    home.wait_until("a quarter of the file acknowledged", PATIENCE, || {
        server_offset(&fake.requests()) >= 5 * MIB as u64
    })
    .await;
    daemon.kill9().await;
    fake.set_bandwidth(None);
    let before = fake.requests();
    let offset_at_kill = server_offset(&before);
    assert_eq!(
        count_route(&before, Route::SessionStatus),
        0,
        "the first run had no reason to ask the session"
    );

    let _daemon = home.start().await;
    home.wait_until("data.bin on the drive", PATIENCE, || {
        fake.file("/Big/data.bin").is_some()
    })
    .await;
    assert_arrived(&fake, "/Big/data.bin", &bytes);

    let requests = fake.requests();
    assert_eq!(
        fake.sessions_created(),
        1,
        "the session was resumed, not replaced"
    );
    assert_eq!(count_route(&requests, Route::CreateSession), 1);
    // The restarted run asks the session where it stands before sending.
    let asked = requests
        .iter()
        .position(|r| r.route == Route::SessionStatus)
        .expect("the restarted daemon asked the session for its offset");
    let resumed_offset = server_offset(&requests[..asked]);
    assert!(resumed_offset >= offset_at_kill && resumed_offset > 0);
    assert!(
        resumed_offset < bytes.len() as u64,
        "the kill came before the last fragment"
    );
    let after: Vec<(u64, u64)> = accepted_fragments(&requests[asked..]);
    let first = after.first().expect("fragments after the restart");
    assert_eq!(
        first.0, resumed_offset,
        "the first fragment after the restart starts at the server's offset"
    );
    assert!(
        after.iter().all(|(start, _)| *start >= resumed_offset),
        "no byte before the server's offset was sent again: {after:?}"
    );
    assert_eq!(
        fake.bytes_resent(),
        0,
        "no acknowledged byte was sent again"
    );
    assert_eq!(fake.overlapping_fragments(), 0);
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_last_fragment_neither_uploads_again_nor_renames() {
    let mapping = MappingSpec::new("crash", "/Crash")
        .conflict("rename")
        .after_upload("delete");
    let (fake, home) = setup(FAST_UPLOADS, &[mapping]).await;
    let bytes = sample_bytes(MIB + 12_345, 31);
    let local = home.outbox("crash").join("result.bin");
    std::fs::write(&local, &bytes).expect("writing the file");
    // The server commits the file, then sits on its answer: a kill now comes
    // after "server finished" and before "daemon recorded done".
    fake.hold_response_of_final_fragment(Duration::from_secs(120));
    let daemon = home.start().await;

    home.wait_until("result.bin committed by the server", PATIENCE, || {
        fake.file("/Crash/result.bin").is_some()
    })
    .await;
    daemon.kill9().await;
    assert!(
        local.exists(),
        "the file stays until its upload is recorded"
    );
    let uploads_before = fake.requests().len();

    let _daemon = home.start().await;
    home.wait_until("result.bin deleted after upload", PATIENCE, || {
        !local.exists()
    })
    .await;

    let stored: Vec<String> = fake.files().into_iter().map(|f| f.path).collect();
    assert_eq!(
        stored,
        vec!["/Crash/result.bin".to_owned()],
        "no renamed copy"
    );
    assert_arrived(&fake, "/Crash/result.bin", &bytes);
    // A second upload needs a new session or a simple PUT; the one session
    // was committed before the kill, so no fragment can have added to it.
    let requests = fake.requests();
    assert_eq!(fake.sessions_created(), 1, "no second session");
    assert_eq!(count_route(&requests, Route::CreateSession), 1);
    assert_eq!(count_route(&requests, Route::SimpleUpload), 0);
    let looked = requests[uploads_before..]
        .iter()
        .any(|r| r.route == Route::Item && r.status == 200 && r.path.ends_with("/result.bin"));
    assert!(looked, "the restarted daemon looked at the remote item");
    let history = home.history().await;
    assert_eq!(history.len(), 1, "one upload recorded: {history:?}");
    assert_eq!(history[0]["remote_path"], "/Crash/result.bin");
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_exits_zero_and_the_upload_completes_after_restart() {
    let (fake, home) = setup(FAST_UPLOADS, &[MappingSpec::new("term", "/Term")]).await;
    let bytes = sample_bytes(12 * MIB, 32);
    std::fs::write(home.outbox("term").join("long.bin"), &bytes).expect("writing the file");
    // 320 KiB fragments at 256 KiB/s: the whole file would take about 50 s,
    // longer than the daemon's grace for uploads in flight at shutdown.
    fake.set_bandwidth(Some(256 * 1024));
    let daemon = home.start().await;
    home.wait_until("the upload under way", PATIENCE, || {
        server_offset(&fake.requests()) > 0
    })
    .await;

    let exit = daemon.terminate(Duration::from_secs(60)).await;
    assert!(exit.success(), "the daemon exited with {exit} on SIGTERM");
    assert!(
        fake.file("/Term/long.bin").is_none(),
        "the upload was not finished before the daemon stopped"
    );
    let status = home.status().await;
    assert_eq!(status["running"], false);
    assert!(common::daemon::failed_jobs(&status).is_empty());

    fake.set_bandwidth(None);
    let _daemon = home.start().await;
    home.wait_until("long.bin on the drive", PATIENCE, || {
        fake.file("/Term/long.bin").is_some()
    })
    .await;
    assert_arrived(&fake, "/Term/long.bin", &bytes);
    assert_eq!(fake.sessions_created(), 1, "the session was resumed");
    assert_eq!(fake.bytes_resent(), 0);
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_a_simple_upload_neither_fails_nor_copies() {
    let mappings = [
        MappingSpec::new("fail", "/Fail").conflict("fail"),
        MappingSpec::new("rename", "/Rename").conflict("rename"),
    ];
    let (fake, home) = setup(FAST_UPLOADS, &mappings).await;
    // The server stores both files, and the daemon never hears so.
    fake.lose_next_simple_upload_response(2);
    let (first, second) = (sample_bytes(3000, 60), sample_bytes(4000, 61));
    std::fs::write(home.outbox("fail").join("a.txt"), &first).expect("write");
    std::fs::write(home.outbox("rename").join("b.txt"), &second).expect("write");
    let _daemon = home.start().await;

    let status = home
        .wait_for_status("both jobs settled", PATIENCE, |s| {
            count(s, "done") + count(s, "failed") == 2
        })
        .await;
    assert_eq!(
        count(&status, "failed"),
        0,
        "a lost answer is no conflict: {status:#}"
    );
    assert_arrived(&fake, "/Fail/a.txt", &first);
    assert_arrived(&fake, "/Rename/b.txt", &second);
    let paths: Vec<String> = fake.files().into_iter().map(|f| f.path).collect();
    assert_eq!(
        paths,
        vec!["/Fail/a.txt", "/Rename/b.txt"],
        "no renamed copy"
    );
    fake.assert_no_violations();
}
