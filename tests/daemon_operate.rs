//! What an operator sees and does (promises 5 and 8): a file with a name
//! OneDrive refuses fails alone, with its reason in `status`, and `retry`
//! requeues it; a queue database full of junk is moved aside with an ERROR
//! that says where, and the outbox is uploaded all the same; `status` and
//! `history` answer from the running daemon and from the database once it
//! stopped.

mod common;
mod fake_graph;

use std::time::Duration;

use common::daemon::{
    assert_arrived, count, failed_jobs, setup, MappingSpec, FAST_UPLOADS, PATIENCE,
};
use common::sample_bytes;
use onedrive_syncd::graph::quickxor::{digest_of, to_base64};
use percent_encoding::percent_decode_str;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const STOP_PATIENCE: Duration = Duration::from_secs(60);

/// The failed job whose local path ends with `name`.
fn failed_entry(status: &Value, name: &str) -> Option<Value> {
    failed_jobs(status)
        .into_iter()
        .find(|job| job["path"].as_str().is_some_and(|p| p.ends_with(name)))
}

/// `failed_at` of the failed job for `name`, if it is failed.
fn failed_at(status: &Value, name: &str) -> Option<OffsetDateTime> {
    let job = failed_entry(status, name)?;
    let text = job["failed_at"].as_str()?;
    Some(OffsetDateTime::parse(text, &Rfc3339).expect("failed_at is RFC 3339"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_remote_name_fails_alone_with_its_reason_and_retry_requeues_it() {
    let (fake, home) = setup(FAST_UPLOADS, &[MappingSpec::new("ops", "/Ops")]).await;
    let outbox = home.outbox("ops");
    let good = sample_bytes(2_000, 70);
    let good_big = sample_bytes(500 * 1024, 71);
    std::fs::write(outbox.join("a:b.txt"), b"colon").expect("writing");
    std::fs::write(outbox.join("CON.txt"), b"reserved").expect("writing");
    std::fs::write(outbox.join("good.txt"), &good).expect("writing");
    std::fs::create_dir(outbox.join("sub")).expect("mkdir");
    std::fs::write(outbox.join("sub/good.bin"), &good_big).expect("writing");
    let daemon = home.start().await;

    let status = home
        .wait_for_status("two failed and two done", PATIENCE, |s| {
            count(s, "failed") == 2 && count(s, "done") == 2
        })
        .await;
    assert_arrived(&fake, "/Ops/good.txt", &good);
    assert_arrived(&fake, "/Ops/sub/good.bin", &good_big);
    let colon = failed_entry(&status, "/a:b.txt").expect("a:b.txt listed as failed");
    let colon_reason = colon["reason"].as_str().expect("a reason");
    assert!(
        colon_reason.contains("a:b.txt") && colon_reason.contains("does not allow"),
        "unclear reason: {colon_reason}"
    );
    assert_eq!(colon["remote_path"], "/Ops/a:b.txt");
    let reserved = failed_entry(&status, "/CON.txt").expect("CON.txt listed as failed");
    let reserved_reason = reserved["reason"].as_str().expect("a reason").to_owned();
    assert!(
        reserved_reason.contains("CON.txt") && reserved_reason.contains("reserves"),
        "unclear reason: {reserved_reason}"
    );
    // Nothing was sent for a name OneDrive would refuse.
    let asked: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| percent_decode_str(&r.path).decode_utf8_lossy().into_owned())
        .filter(|p| p.contains("a:b.txt") || p.contains("CON.txt"))
        .collect();
    assert!(
        asked.is_empty(),
        "refused names reached the server: {asked:?}"
    );

    let text = home.ok(&["status"]).await;
    assert!(text.contains("running"), "{text}");
    assert!(
        text.contains(colon_reason),
        "status shows the reason:\n{text}"
    );
    assert!(text.contains("retry"), "status says how to retry:\n{text}");

    // retry --failed requeues both; they fail again, later, for the same
    // reason, since the names are still refused.
    let before_colon = failed_at(&status, "/a:b.txt").expect("failed_at");
    let before_reserved = failed_at(&status, "/CON.txt").expect("failed_at");
    let said = home.ok(&["retry", "--failed"]).await;
    assert_eq!(said.trim(), "requeued 2 jobs");
    let status = home
        .wait_for_status("both failed again", PATIENCE, |s| {
            failed_at(s, "/a:b.txt").is_some_and(|at| at > before_colon)
                && failed_at(s, "/CON.txt").is_some_and(|at| at > before_reserved)
        })
        .await;
    assert_eq!(count(&status, "failed"), 2);
    assert_eq!(
        failed_entry(&status, "/CON.txt").expect("listed")["reason"],
        reserved_reason.as_str()
    );

    // retry JOB requeues just that job.
    let job_id = failed_entry(&status, "/CON.txt").expect("listed")["job_id"]
        .as_u64()
        .expect("a job id");
    let colon_at = failed_at(&status, "/a:b.txt").expect("failed_at");
    let reserved_at = failed_at(&status, "/CON.txt").expect("failed_at");
    let said = home.ok(&["retry", &job_id.to_string()]).await;
    assert_eq!(said.trim(), "requeued 1 job");
    let status = home
        .wait_for_status("CON.txt failed again", PATIENCE, |s| {
            failed_at(s, "/CON.txt").is_some_and(|at| at > reserved_at)
        })
        .await;
    assert_eq!(failed_at(&status, "/a:b.txt"), Some(colon_at));

    // With the daemon stopped, retry works on the database, and status shows
    // the job queued; the next start fails it again.
    let exit = daemon.terminate(STOP_PATIENCE).await;
    assert!(exit.success(), "the daemon exited with {exit} on SIGTERM");
    let said = home.ok(&["retry", &job_id.to_string()]).await;
    assert_eq!(said.trim(), "requeued 1 job");
    let offline = home.status().await;
    assert_eq!(offline["running"], false);
    assert_eq!(count(&offline, "queued"), 1, "{offline:#}");
    assert_eq!(count(&offline, "failed"), 1, "{offline:#}");
    assert!(failed_entry(&offline, "/CON.txt").is_none());
    let _daemon = home.start().await;
    let status = home
        .wait_for_status("CON.txt failed once more", PATIENCE, |s| {
            count(s, "failed") == 2 && count(s, "queued") == 0
        })
        .await;
    assert_eq!(
        failed_entry(&status, "/CON.txt").expect("listed")["reason"],
        reserved_reason.as_str()
    );

    let history = home.history().await;
    let uploaded: Vec<&str> = history
        .iter()
        .filter_map(|r| r["remote_path"].as_str())
        .collect();
    assert_eq!(uploaded.len(), 2, "{uploaded:?}");
    assert!(uploaded.contains(&"/Ops/good.txt") && uploaded.contains(&"/Ops/sub/good.bin"));
    assert_eq!(fake.files().len(), 2);
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_queue_database_is_moved_aside_and_the_outbox_uploaded() {
    let (fake, home) = setup(FAST_UPLOADS, &[MappingSpec::new("junk", "/Junk")]).await;
    let state = home.state_dir();
    std::fs::create_dir_all(&state).expect("creating the state directory");
    let junk = b"this is not a sled database\n".repeat(200);
    for name in ["conf", "db", "snap.0000000000000000"] {
        std::fs::write(state.join(name), &junk).expect("writing junk");
    }
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("f{i}.dat"),
                sample_bytes(1_000 + i * 300_000, 80 + i as u64),
            )
        })
        .collect();
    for (name, bytes) in &files {
        std::fs::write(home.outbox("junk").join(name), bytes).expect("writing");
    }
    let _daemon = home.start().await;

    home.wait_until("the outbox on the drive", PATIENCE, || {
        files
            .iter()
            .all(|(name, _)| fake.file(&format!("/Junk/{name}")).is_some())
    })
    .await;
    for (name, bytes) in &files {
        assert_arrived(&fake, &format!("/Junk/{name}"), bytes);
    }

    let log = home.log();
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("moved aside"))
        .unwrap_or_else(|| panic!("no ERROR about the moved database:\n{log}"));
    let parent = state.parent().expect("a parent");
    let moved: Vec<_> = std::fs::read_dir(parent)
        .expect("listing the home")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p != &state && p.to_string_lossy().starts_with(&*state.to_string_lossy()))
        .collect();
    assert_eq!(moved.len(), 1, "one moved-aside database: {moved:?}");
    assert!(
        line.contains(&*moved[0].to_string_lossy()),
        "the ERROR names where the database went: {line}"
    );
    let kept = std::fs::read(moved[0].join("db")).expect("the junk was kept");
    assert_eq!(kept, junk, "the old database is kept as it was");
    let status = home.status().await;
    assert_eq!(count(&status, "done"), files.len() as u64);
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_answer_while_running_and_after_stopping() {
    let (fake, home) = setup(FAST_UPLOADS, &[MappingSpec::new("seen", "/Seen")]).await;
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("r{i}.csv"),
                sample_bytes(5_000 + i * 200_000, 90 + i as u64),
            )
        })
        .collect();
    let daemon = home.start().await;
    for (name, bytes) in &files {
        std::fs::write(home.outbox("seen").join(name), bytes).expect("writing");
    }

    let live = home
        .wait_for_status("three uploads done", PATIENCE, |s| {
            count(s, "done") == files.len() as u64
        })
        .await;
    assert_eq!(live["running"], true);
    assert_eq!(live["auth"], "ok");
    assert!(failed_jobs(&live).is_empty());
    let live_history = home.history().await;
    assert_eq!(live_history.len(), files.len());
    for (name, bytes) in &files {
        let remote = format!("/Seen/{name}");
        assert_arrived(&fake, &remote, bytes);
        let record = live_history
            .iter()
            .find(|r| r["remote_path"] == remote.as_str())
            .unwrap_or_else(|| panic!("{remote} not in history: {live_history:?}"));
        assert_eq!(record["bytes"], bytes.len() as u64);
        assert_eq!(record["quick_xor_hash"], to_base64(&digest_of(bytes)));
        assert_eq!(record["mapping"], "seen");
    }
    let text = home.ok(&["status"]).await;
    assert!(text.contains("onedrive-syncd: running"), "{text}");
    assert!(text.contains("3 done"), "{text}");
    let text = home.ok(&["history"]).await;
    for (name, _) in &files {
        assert!(text.contains(&format!("/Seen/{name}")), "{text}");
    }

    let exit = daemon.terminate(STOP_PATIENCE).await;
    assert!(exit.success(), "the daemon exited with {exit} on SIGTERM");
    let stopped = home.status().await;
    assert_eq!(stopped["running"], false);
    assert_eq!(stopped["counts"], live["counts"]);
    assert_eq!(home.history().await, live_history);
    let text = home.ok(&["status"]).await;
    assert!(text.contains("not running"), "{text}");
    assert!(text.contains("3 done"), "{text}");
    let text = home.ok(&["history", "--path", "r1"]).await;
    assert!(text.contains("/Seen/r1.csv"), "{text}");
    assert!(!text.contains("/Seen/r0.csv"), "{text}");
    fake.assert_no_violations();
}
