//! Transient trouble never fails a job, and nothing local goes before its copy
//! verifies (promises 1 and 5): a storm of 429s and 503s with Retry-After
//! delays uploads but fails none, and no request goes out while a Retry-After
//! is in force; a connection cut in the middle of a fragment is recovered; with
//! `after_upload = "delete"` a file is removed only once OneDrive holds a
//! verified copy, and a corrupted copy keeps the file until a retry succeeds.

mod common;
mod fake_graph;

use std::path::Path;

use common::daemon::{assert_arrived, count, failed_jobs, holds, setup, MappingSpec, PATIENCE};
use common::sample_bytes;
use fake_graph::Route;

const KIB: usize = 1024;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("writing an outbox file");
}

/// Fast uploads but real pacing: the daemon may send faster than the fake's
/// rate limit allows, so the fake throttles it.
const THROTTLED: &str = "\
workers = 5
requests_per_second = 200
fragment_size = \"320 KiB\"
simple_upload_threshold = \"64 KiB\"
max_retry_delay = \"3s\"
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_429_and_503_with_retry_after_fails_nothing_and_is_obeyed() {
    let (fake, home) = setup(THROTTLED, &[MappingSpec::new("storm", "/Storm")]).await;
    let outbox = home.outbox("storm");
    // More requests per second than the fake allows: each burst past five is
    // answered 429 with Retry-After: 1 for the whole account. And two 503s
    // with Retry-After: 2 on top.
    fake.set_rate_limit(Some(5));
    fake.fail_next(Route::Fragment, 503, 2, Some(2));
    let files: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| {
            let size = if i % 4 == 0 { 700 * KIB } else { 2 * KIB + i };
            (format!("f{i:02}.bin"), sample_bytes(size, 40 + i as u64))
        })
        .collect();
    for (name, bytes) in &files {
        write(&outbox, name, bytes);
    }
    let _daemon = home.start().await;

    home.wait_until("every file on the drive", PATIENCE * 2, || {
        files
            .iter()
            .all(|(name, _)| fake.file(&format!("/Storm/{name}")).is_some())
    })
    .await;
    for (name, bytes) in &files {
        assert_arrived(&fake, &format!("/Storm/{name}"), bytes);
    }
    let status = home
        .wait_for_status("every job done", PATIENCE, |s| {
            count(s, "done") == files.len() as u64
        })
        .await;
    assert_eq!(count(&status, "failed"), 0, "no job failed: {status:#}");
    assert!(failed_jobs(&status).is_empty());

    let requests = fake.requests();
    let throttled = requests.iter().filter(|r| r.status == 429).count();
    let unavailable = requests.iter().filter(|r| r.status == 503).count();
    assert!(throttled > 0, "the storm never throttled anything");
    assert_eq!(unavailable, 2, "both injected 503s were served");
    // The fake records any request that arrives inside an announced
    // Retry-After window (beyond requests already in flight) as a violation.
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_in_the_middle_of_a_fragment_is_recovered() {
    let (fake, home) = setup(
        common::daemon::FAST_UPLOADS,
        &[MappingSpec::new("cut", "/Cut")],
    )
    .await;
    let bytes = sample_bytes(3 * 1024 * KIB + 777, 50);
    // Slow enough that the cut can be armed between fragments.
    fake.set_bandwidth(Some(2 * 1024 * KIB as u64));
    write(&home.outbox("cut"), "cut.bin", &bytes);
    let _daemon = home.start().await;

    home.wait_until("a first fragment accepted", PATIENCE, || {
        fake.requests()
            .iter()
            .any(|r| r.route == Route::Fragment && r.status == 202)
    })
    .await;
    // Half way through the next fragment the connection dies.
    fake.cut_connection_after(160 * KIB as u64);
    home.wait_until("cut.bin on the drive", PATIENCE, || {
        fake.file("/Cut/cut.bin").is_some()
    })
    .await;
    assert_arrived(&fake, "/Cut/cut.bin", &bytes);

    let requests = fake.requests();
    let cut = requests
        .iter()
        .filter(|r| r.route == Route::Fragment && r.response_lost)
        .count();
    assert_eq!(cut, 1, "one fragment was cut");
    assert!(
        requests.iter().any(|r| r.route == Route::SessionStatus),
        "the daemon asked the session where it stands"
    );
    assert_eq!(fake.sessions_created(), 1, "recovered in the same session");
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_a_verified_copy_and_a_corrupted_copy_keeps_the_file() {
    let mapping = MappingSpec::new("del", "/Del").after_upload("delete");
    let (fake, home) = setup(common::daemon::FAST_UPLOADS, &[mapping]).await;
    let outbox = home.outbox("del");
    let _daemon = home.start().await;

    // A plain upload first, then one whose first stored copy is corrupted
    // (a session upload) and one more (a simple upload).
    let plain = sample_bytes(30 * KIB, 60);
    let corrupted_big = sample_bytes(900 * KIB, 61);
    let corrupted_small = sample_bytes(20 * KIB, 62);
    let cases = [
        ("plain.bin", &plain, false),
        ("big.bin", &corrupted_big, true),
        ("small.bin", &corrupted_small, true),
    ];
    for (name, bytes, corrupt) in cases {
        if corrupt {
            fake.corrupt_next_stored_file();
        }
        let local = outbox.join(name);
        let remote = format!("/Del/{name}");
        write(&outbox, name, bytes);
        // At every look: the file is either still here, or OneDrive holds a
        // verified copy of it (promise 1).
        home.wait_until(&format!("{name} uploaded and deleted"), PATIENCE, || {
            let gone = !local.exists();
            assert!(
                !gone || holds(&fake, &remote, bytes),
                "{name} was deleted while OneDrive held no verified copy"
            );
            gone
        })
        .await;
        assert_arrived(&fake, &remote, bytes);
    }

    let requests = fake.requests();
    // Each corrupted copy was found out, removed, and uploaded again.
    let deletes = requests
        .iter()
        .filter(|r| r.route == Route::DeleteItem && r.status == 204)
        .count();
    assert_eq!(deletes, 2, "each bad copy was deleted before the retry");
    assert_eq!(
        fake.sessions_created(),
        2,
        "big.bin went up twice, once per session"
    );
    let simple = requests
        .iter()
        .filter(|r| r.route == Route::SimpleUpload && r.path.ends_with("/small.bin:/content"))
        .count();
    assert_eq!(simple, 2, "small.bin went up twice");
    // The history tells the same: the corrupted ones took a second attempt.
    let history = home.history().await;
    for (name, _, corrupt) in cases {
        let remote = format!("/Del/{name}");
        let record = history
            .iter()
            .find(|r| r["remote_path"] == remote.as_str())
            .unwrap_or_else(|| panic!("{remote} not in history: {history:?}"));
        let attempts = if corrupt { 2 } else { 1 };
        assert_eq!(record["attempts"], attempts, "attempts of {name}");
    }
    let status = home.status().await;
    assert_eq!(count(&status, "failed"), 0);
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_failing_past_its_retries_keeps_its_session() {
    let (fake, home) = setup(
        common::daemon::FAST_UPLOADS,
        &[MappingSpec::new("keep", "/Keep")],
    )
    .await;
    let bytes = sample_bytes(2 * 1024 * KIB + 3, 70);
    // Slow enough that the outage starts after the first fragment.
    fake.set_bandwidth(Some(1024 * KIB as u64));
    write(&home.outbox("keep"), "big.bin", &bytes);
    let _daemon = home.start().await;
    home.wait_until("a first fragment accepted", PATIENCE, || {
        fake.requests()
            .iter()
            .any(|r| r.route == Route::Fragment && r.status == 202)
    })
    .await;
    // More 500s in a row than the immediate retries (3) can absorb: the job is
    // put back in the queue, and the next attempt must resume the session.
    fake.fail_next(Route::Fragment, 500, 6, None);
    fake.set_bandwidth(None);

    home.wait_until("the file on the drive", PATIENCE, || {
        holds(&fake, "/Keep/big.bin", &bytes)
    })
    .await;
    assert_eq!(
        fake.sessions_created(),
        1,
        "transient trouble kept the session"
    );
    let failures = fake
        .requests()
        .iter()
        .filter(|r| r.route == Route::Fragment && r.status == 500)
        .count();
    assert_eq!(failures, 6, "the outage was served in full");
    let status = home.status().await;
    assert_eq!(count(&status, "failed"), 0, "{status:#}");
    fake.assert_no_violations();
}
