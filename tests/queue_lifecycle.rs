//! The queue's job life cycle: every transition, the states it refuses,
//! enqueue idempotence and change detection, history, and arrival order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use onedrive_syncd::queue::{
    Candidate, EnqueueOutcome, FileIdentity, HistoryFilter, HistoryRecord, JobId, JobState, Queue,
    QueueError, RetrySelection, SessionRecord, StateCounts, StateKind, UploadUrl,
};
use time::OffsetDateTime;

fn candidate(name: &str, ino: u64) -> Candidate {
    Candidate {
        mapping: "reports".into(),
        local_path: PathBuf::from("/var/outbox/reports").join(name),
        relative_path: PathBuf::from(name),
        remote_path: vec!["Reports".into(), name.into()],
        identity: FileIdentity {
            dev: 2049,
            ino,
            size: 1000 + ino,
            mtime_ns: 1_700_000_000,
        },
    }
}

fn session(identity: FileIdentity) -> SessionRecord {
    let now = OffsetDateTime::now_utc();
    SessionRecord {
        upload_url: UploadUrl::new("https://127.0.0.1:1/upload/abc?tempauth=x".into()),
        expires_at: now + Duration::from_secs(3600),
        created_at: now,
        total_bytes: identity.size,
        identity,
    }
}

fn history_record(name: &str, finished_at: OffsetDateTime) -> HistoryRecord {
    HistoryRecord {
        job_id: JobId(0),
        mapping: "reports".into(),
        local_path: PathBuf::from("/var/outbox/reports").join(name),
        remote_path: format!("/Reports/{name}"),
        item_id: format!("ITEM-{name}"),
        bytes: 1000,
        duration_ms: 250,
        attempts: 1,
        quick_xor_hash: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        finished_at,
    }
}

fn open(dir: &Path) -> Queue {
    Queue::open(dir).expect("queue opens")
}

fn queued_id(outcome: EnqueueOutcome) -> JobId {
    match outcome {
        EnqueueOutcome::Queued(id) => id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[tokio::test]
async fn job_goes_from_queued_to_done_with_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("a.csv", 1);

    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));
    let job = queue.get(id).expect("get").expect("job exists");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.remote_display(), "/Reports/a.csv");

    let claimed = queue
        .claim_next(now())
        .await
        .expect("claim")
        .expect("a job is ready");
    assert_eq!(claimed.id, id);
    assert_eq!(claimed.state, JobState::Uploading { offset: 0 });
    assert_eq!(claimed.claims, 1);
    assert!(queue.claim_next(now()).await.expect("claim").is_none());

    let record = session(file.identity);
    queue.record_session(id, &record).await.expect("session");
    assert_eq!(queue.session(id).expect("read").expect("recorded"), record);
    queue.record_progress(id, 655_360).await.expect("progress");
    let job = queue.get(id).expect("get").expect("job exists");
    assert_eq!(job.state, JobState::Uploading { offset: 655_360 });

    queue.mark_verifying(id).await.expect("verifying");
    let finished_at = now();
    queue
        .mark_done(id, history_record("a.csv", finished_at))
        .await
        .expect("done");

    let job = queue.get(id).expect("get").expect("kept as a record");
    assert_eq!(job.state, JobState::Done);
    assert!(
        queue.session(id).expect("read").is_none(),
        "session dropped when done"
    );
    let history = queue
        .history(&HistoryFilter::default(), 10)
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].job_id, id);
    assert_eq!(history[0].item_id, "ITEM-a.csv");
    assert_eq!(
        queue.counts().expect("counts"),
        StateCounts {
            done: 1,
            ..StateCounts::default()
        }
    );
}

#[tokio::test]
async fn session_url_is_kept_exactly_and_never_debug_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("big.bin", 1);
    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));
    queue
        .claim_next(now())
        .await
        .expect("claim")
        .expect("ready");

    queue
        .record_session(id, &session(file.identity))
        .await
        .expect("session");
    let stored = queue.session(id).expect("read").expect("recorded");
    assert_eq!(
        stored.upload_url.expose(),
        "https://127.0.0.1:1/upload/abc?tempauth=x"
    );
    assert!(!format!("{stored:?}").contains("tempauth"));

    queue.clear_session(id).await.expect("clear");
    assert!(queue.session(id).expect("read").is_none());
}

#[tokio::test]
async fn transitions_from_the_wrong_state_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let id = queued_id(
        queue
            .enqueue(&candidate("a.csv", 1))
            .await
            .expect("enqueue"),
    );

    let err = queue
        .record_progress(id, 10)
        .await
        .expect_err("queued job has no progress");
    assert!(
        matches!(
            err,
            QueueError::WrongState {
                actual: StateKind::Queued,
                ..
            }
        ),
        "{err:?}"
    );
    let err = queue
        .mark_done(id, history_record("a.csv", now()))
        .await
        .expect_err("not sent");
    assert!(matches!(err, QueueError::WrongState { .. }), "{err:?}");
    let err = queue
        .retry_failed(RetrySelection::Job(id))
        .await
        .expect_err("not failed");
    assert!(matches!(err, QueueError::WrongState { .. }), "{err:?}");

    let missing = JobId(id.0 + 1000);
    let err = queue
        .mark_verifying(missing)
        .await
        .expect_err("no such job");
    assert!(
        matches!(err, QueueError::JobNotFound { id } if id == missing),
        "{err:?}"
    );
    assert_eq!(
        queue.get(id).expect("get").expect("job").state,
        JobState::Queued
    );
}

#[tokio::test]
async fn rescheduled_job_waits_for_its_delay_and_keeps_its_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("a.csv", 1);
    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));
    queue
        .claim_next(now())
        .await
        .expect("claim")
        .expect("ready");
    queue
        .record_session(id, &session(file.identity))
        .await
        .expect("session");

    let job = queue
        .reschedule(id, "503 from graph", Duration::from_secs(60))
        .await
        .expect("ok");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("503 from graph"));

    assert!(
        queue.claim_next(now()).await.expect("claim").is_none(),
        "still backing off"
    );
    let ready_at = queue.next_ready_at().expect("next").expect("one queued");
    assert!(ready_at > now());

    let later = now() + Duration::from_secs(61);
    let again = queue
        .claim_next(later)
        .await
        .expect("claim")
        .expect("ready after the delay");
    assert_eq!(again.id, id);
    assert_eq!(again.claims, 2);
    assert!(
        queue.session(id).expect("read").is_some(),
        "session kept for resume"
    );
}

#[tokio::test]
async fn failed_jobs_are_listed_and_can_be_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let a = queued_id(
        queue
            .enqueue(&candidate("a:b.csv", 1))
            .await
            .expect("enqueue"),
    );
    let b = queued_id(
        queue
            .enqueue(&candidate("c|d.csv", 2))
            .await
            .expect("enqueue"),
    );
    let c = queued_id(
        queue
            .enqueue(&candidate("fine.csv", 3))
            .await
            .expect("enqueue"),
    );
    for _ in 0..3 {
        queue
            .claim_next(now())
            .await
            .expect("claim")
            .expect("ready");
    }
    queue.mark_failed(a, "invalid name").await.expect("fail a");
    queue.mark_failed(b, "invalid name").await.expect("fail b");

    let failed = queue.failed().expect("failed");
    assert_eq!(failed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(
        failed[0].state,
        JobState::Failed {
            reason: "invalid name".into()
        }
    );
    let counts = queue.counts().expect("counts");
    assert_eq!((counts.failed, counts.uploading), (2, 1));

    assert_eq!(
        queue
            .retry_failed(RetrySelection::Job(a))
            .await
            .expect("retry a"),
        1
    );
    assert_eq!(
        queue.get(a).expect("get").expect("job").state,
        JobState::Queued
    );
    assert_eq!(
        queue
            .retry_failed(RetrySelection::AllFailed)
            .await
            .expect("retry all"),
        1
    );
    assert!(queue.failed().expect("failed").is_empty());

    let next = queue
        .claim_next(now())
        .await
        .expect("claim")
        .expect("requeued");
    assert_eq!(next.id, a, "retried jobs keep their place in arrival order");
    assert_ne!(next.id, c);
}

#[tokio::test]
async fn claims_follow_arrival_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let mut ids = Vec::new();
    for n in 0..300u64 {
        let name = format!("f{n}.bin");
        ids.push(queued_id(
            queue
                .enqueue(&candidate(&name, n + 1))
                .await
                .expect("enqueue"),
        ));
    }

    let mut claimed = Vec::new();
    while let Some(job) = queue.claim_next(now()).await.expect("claim") {
        claimed.push(job.id);
    }
    assert_eq!(claimed, ids);
}

#[tokio::test]
async fn same_file_is_not_queued_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("a.csv", 1);
    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));

    assert_eq!(
        queue.enqueue(&file).await.expect("again"),
        EnqueueOutcome::AlreadyQueued(id)
    );
    queue
        .claim_next(now())
        .await
        .expect("claim")
        .expect("ready");
    assert_eq!(
        queue.enqueue(&file).await.expect("again"),
        EnqueueOutcome::AlreadyQueued(id)
    );
    assert_eq!(queue.counts().expect("counts").uploading, 1);
    assert_eq!(queue.counts().expect("counts").queued, 0);
}

#[tokio::test]
async fn kept_file_is_unchanged_until_it_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("a.csv", 1);
    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));
    queue
        .claim_next(now())
        .await
        .expect("claim")
        .expect("ready");
    queue.mark_verifying(id).await.expect("verifying");
    queue
        .mark_done(id, history_record("a.csv", now()))
        .await
        .expect("done");

    assert_eq!(
        queue.enqueue(&file).await.expect("again"),
        EnqueueOutcome::Unchanged(id)
    );

    let mut touched = file.clone();
    touched.identity.mtime_ns += 1;
    let outcome = queue.enqueue(&touched).await.expect("changed");
    let EnqueueOutcome::Superseded { new, old } = outcome else {
        panic!("a changed file is a new upload, got {outcome:?}");
    };
    assert_eq!(old, id);
    assert!(new > id);
    assert!(
        queue.get(id).expect("get").is_none(),
        "the old record is replaced"
    );
    assert_eq!(
        queue.get(new).expect("get").expect("job").identity,
        touched.identity
    );
}

#[tokio::test]
async fn reused_inode_with_other_size_is_a_new_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("a.csv", 7);
    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));

    let mut reused = file.clone();
    reused.identity.size += 1;
    let outcome = queue.enqueue(&reused).await.expect("enqueue");
    assert!(
        matches!(outcome, EnqueueOutcome::Superseded { old, .. } if old == id),
        "{outcome:?}"
    );
    assert_eq!(
        queue.counts().expect("counts").queued,
        1,
        "only the new version waits"
    );
}

#[tokio::test]
async fn worker_of_a_superseded_job_is_told_it_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("a.csv", 1);
    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));
    queue
        .claim_next(now())
        .await
        .expect("claim")
        .expect("ready");
    queue
        .record_session(id, &session(file.identity))
        .await
        .expect("session");

    let mut rewritten = file.clone();
    rewritten.identity.size += 10;
    queue.enqueue(&rewritten).await.expect("supersede");

    let err = queue
        .record_progress(id, 327_680)
        .await
        .expect_err("old job is gone");
    assert!(matches!(err, QueueError::JobNotFound { .. }), "{err:?}");
    assert!(
        queue.session(id).expect("read").is_none(),
        "its session went with it"
    );
}

#[tokio::test]
async fn failed_file_is_not_requeued_by_a_rescan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("bad:name.csv", 1);
    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));
    queue.mark_failed(id, "invalid name").await.expect("fail");

    assert_eq!(
        queue.enqueue(&file).await.expect("again"),
        EnqueueOutcome::AlreadyFailed(id)
    );
    assert_eq!(queue.counts().expect("counts").queued, 0);
}

#[tokio::test]
async fn forgotten_path_can_be_queued_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let file = candidate("a.csv", 1);
    let id = queued_id(queue.enqueue(&file).await.expect("enqueue"));

    assert_eq!(
        queue.forget_path(&file.local_path).await.expect("forget"),
        Some(id)
    );
    assert!(queue.get(id).expect("get").is_none());
    assert_eq!(
        queue.forget_path(&file.local_path).await.expect("forget"),
        None
    );
    let again = queued_id(queue.enqueue(&file).await.expect("enqueue"));
    assert_ne!(again, id);
}

#[tokio::test]
async fn history_is_newest_first_and_filtered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = open(dir.path());
    let start = now() - Duration::from_secs(3600);
    for (n, name) in ["old.csv", "mid.log", "new.csv"].iter().enumerate() {
        let id = queued_id(
            queue
                .enqueue(&candidate(name, n as u64 + 1))
                .await
                .expect("enqueue"),
        );
        queue
            .claim_next(now())
            .await
            .expect("claim")
            .expect("ready");
        let finished = start + Duration::from_secs(600 * n as u64);
        queue
            .mark_done(id, history_record(name, finished))
            .await
            .expect("done");
    }

    let names = |records: Vec<HistoryRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.remote_path).collect()
    };
    let all = queue
        .history(&HistoryFilter::default(), 10)
        .expect("history");
    assert_eq!(
        names(all),
        ["/Reports/new.csv", "/Reports/mid.log", "/Reports/old.csv"]
    );
    let latest = queue
        .history(&HistoryFilter::default(), 1)
        .expect("history");
    assert_eq!(names(latest), ["/Reports/new.csv"]);

    let csv = HistoryFilter {
        path_contains: Some(".csv".into()),
        ..HistoryFilter::default()
    };
    assert_eq!(
        names(queue.history(&csv, 10).expect("h")),
        ["/Reports/new.csv", "/Reports/old.csv"]
    );
    let recent = HistoryFilter {
        since: Some(start + Duration::from_secs(300)),
        ..Default::default()
    };
    assert_eq!(
        names(queue.history(&recent, 10).expect("h")),
        ["/Reports/new.csv", "/Reports/mid.log"]
    );
    let other = HistoryFilter {
        mapping: Some("other".into()),
        ..HistoryFilter::default()
    };
    assert!(queue.history(&other, 10).expect("h").is_empty());

    let pruned = queue
        .prune_history(start + Duration::from_secs(300))
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    assert_eq!(
        queue
            .history(&HistoryFilter::default(), 10)
            .expect("h")
            .len(),
        2
    );
}
