//! Files that change, and what happens after an upload (promises 1 and 2): a
//! file rewritten while its upload runs is never committed spliced, and the
//! new content is uploaded instead; a kept file is not uploaded again unless
//! it changes; a moved file lands in the done folder with its relative path.

mod common;
mod fake_graph;

use std::path::Path;

use common::daemon::{count, holds, setup, MappingSpec, FAST_UPLOADS, PATIENCE};
use common::sample_bytes;
use fake_graph::{FakeGraph, Route};

/// Upload requests (simple or session) whose path ends with `name`.
fn uploads_of(fake: &FakeGraph, name: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| matches!(r.route, Route::SimpleUpload | Route::CreateSession))
        .filter(|r| r.path.contains(name))
        .count()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating folders");
    std::fs::write(path, bytes).expect("writing an outbox file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_rewritten_during_its_upload_is_not_committed_spliced() {
    let mapping = MappingSpec::new("c", "/C")
        .after_upload("delete")
        .conflict("fail");
    let (fake, home) = setup(FAST_UPLOADS, &[mapping]).await;
    let path = home.outbox("c").join("report.bin");
    let first = sample_bytes(2 * 1024 * 1024, 1);
    // Same size, other bytes: only the identity check can tell them apart.
    let second = sample_bytes(2 * 1024 * 1024, 2);
    fake.set_bandwidth(Some(512 * 1024));
    write(&path, &first);
    let _daemon = home.start().await;

    home.wait_until("a first fragment accepted", PATIENCE, || {
        fake.requests()
            .iter()
            .any(|r| r.route == Route::Fragment && r.status == 202)
    })
    .await;
    write(&path, &second);
    fake.set_bandwidth(None);

    home.wait_until("the new content on the drive", PATIENCE * 2, || {
        holds(&fake, "/C/report.bin", &second)
    })
    .await;
    let stored = fake.read_file("/C/report.bin").expect("stored");
    assert!(
        stored == second,
        "the drive holds the rewritten content, not a splice"
    );
    assert!(
        fake.sessions_created() >= 2,
        "the first session was abandoned, not completed"
    );
    home.wait_until(
        "the local file deleted after verification",
        PATIENCE,
        || !path.exists(),
    )
    .await;
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_file_is_not_uploaded_again_unless_it_changes() {
    let mapping = MappingSpec::new("k", "/K")
        .settle("300ms")
        .after_upload("keep")
        .conflict("replace");
    let (fake, home) = setup(FAST_UPLOADS, &[mapping]).await;
    let path = home.outbox("k").join("kept.txt");
    write(&path, b"version one");
    let daemon = home.start().await;
    home.wait_until("the first version", PATIENCE, || {
        holds(&fake, "/K/kept.txt", b"version one")
    })
    .await;
    assert!(path.exists(), "kept");
    daemon.terminate(PATIENCE).await;

    // A restart scans the outbox again and finds the same file.
    let daemon = home.start().await;
    home.wait_for_status("the scan settled", PATIENCE, |s| count(s, "queued") == 0)
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        uploads_of(&fake, "kept.txt"),
        1,
        "an unchanged kept file is not sent again"
    );

    write(&path, b"version two, longer");
    home.wait_until("the second version", PATIENCE, || {
        holds(&fake, "/K/kept.txt", b"version two, longer")
    })
    .await;
    assert_eq!(uploads_of(&fake, "kept.txt"), 2);
    daemon.terminate(PATIENCE).await;
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_file_lands_in_the_done_folder_with_its_relative_path() {
    let mapping = MappingSpec::new("m", "/M")
        .settle("300ms")
        .after_upload("move");
    let (fake, home) = setup(FAST_UPLOADS, &[mapping]).await;
    let bytes = sample_bytes(100 * 1024, 3);
    write(&home.outbox("m").join("2026/12/day.csv"), &bytes);
    let _daemon = home.start().await;

    let moved = home.done_folder("m").join("2026/12/day.csv");
    home.wait_until("the file in the done folder", PATIENCE, || moved.exists())
        .await;
    assert!(holds(&fake, "/M/2026/12/day.csv", &bytes));
    assert_eq!(std::fs::read(&moved).expect("moved file"), bytes);
    assert!(!home.outbox("m").join("2026/12/day.csv").exists());
    fake.assert_no_violations();
}
