//! The queue across restarts and under contention: state survives a reopen,
//! interrupted jobs come back with their sessions, concurrent workers never
//! share a job, and a database that cannot be used is moved aside.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use onedrive_syncd::queue::{
    Candidate, EnqueueOutcome, FileIdentity, JobId, JobState, Queue, QueueError, SessionRecord,
    StateKind, UploadUrl, SCHEMA_VERSION,
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
            size: 4096,
            mtime_ns: 1_700_000_000,
        },
    }
}

fn session(identity: FileIdentity) -> SessionRecord {
    let now = OffsetDateTime::now_utc();
    SessionRecord {
        upload_url: UploadUrl::new("https://127.0.0.1:1/upload/xyz".into()),
        expires_at: now + Duration::from_secs(3600),
        created_at: now,
        total_bytes: identity.size,
        identity,
    }
}

fn db_dir(root: &Path) -> PathBuf {
    root.join("queue")
}

async fn enqueue_new(queue: &Queue, file: &Candidate) -> JobId {
    match queue.enqueue(file).await.expect("enqueue") {
        EnqueueOutcome::Queued(id) => id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

#[tokio::test]
async fn state_survives_reopen() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = db_dir(root.path());
    let (waiting, failed) = {
        let queue = Queue::open(&dir).expect("open");
        let waiting = enqueue_new(&queue, &candidate("waiting.csv", 1)).await;
        let failed = enqueue_new(&queue, &candidate("bad:name.csv", 2)).await;
        queue
            .mark_failed(failed, "invalid name")
            .await
            .expect("fail");
        (waiting, failed)
    };

    let queue = Queue::open(&dir).expect("reopen");
    assert_eq!(
        queue.get(waiting).expect("get").expect("kept").state,
        JobState::Queued
    );
    let reason = JobState::Failed {
        reason: "invalid name".into(),
    };
    assert_eq!(queue.get(failed).expect("get").expect("kept").state, reason);
    assert_eq!(
        queue
            .enqueue(&candidate("waiting.csv", 1))
            .await
            .expect("enqueue"),
        EnqueueOutcome::AlreadyQueued(waiting),
        "the path index survives too"
    );
    let newer = enqueue_new(&queue, &candidate("later.csv", 3)).await;
    assert!(newer > failed, "ids keep growing after a reopen");
}

#[tokio::test]
async fn interrupted_upload_is_requeued_with_its_session() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = db_dir(root.path());
    let file = candidate("large.bin", 1);
    let (id, record) = {
        let queue = Queue::open(&dir).expect("open");
        let id = enqueue_new(&queue, &file).await;
        let now = OffsetDateTime::now_utc();
        queue.claim_next(now).await.expect("claim").expect("ready");
        let record = session(file.identity);
        queue.record_session(id, &record).await.expect("session");
        queue
            .record_progress(id, 3 * 327_680)
            .await
            .expect("progress");
        (id, record)
        // Dropped here without any further transition, as a crash would.
    };

    let queue = Queue::open(&dir).expect("reopen");
    let job = queue.get(id).expect("get").expect("job");
    assert_eq!(
        job.state,
        JobState::Uploading {
            offset: 3 * 327_680
        }
    );
    assert_eq!(queue.requeue_interrupted().await.expect("requeue"), 1);
    assert_eq!(queue.requeue_interrupted().await.expect("requeue"), 0);

    let again = queue
        .claim_next(OffsetDateTime::now_utc())
        .await
        .expect("claim")
        .expect("ready");
    assert_eq!(again.id, id);
    assert_eq!(
        again.claims, 2,
        "a second claim tells the uploader to check the remote first"
    );
    assert_eq!(queue.session(id).expect("read"), Some(record));
}

#[tokio::test]
async fn verifying_job_is_requeued_after_restart() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = db_dir(root.path());
    let id = {
        let queue = Queue::open(&dir).expect("open");
        let id = enqueue_new(&queue, &candidate("a.csv", 1)).await;
        queue
            .claim_next(OffsetDateTime::now_utc())
            .await
            .expect("claim")
            .expect("ready");
        queue.mark_verifying(id).await.expect("verifying");
        id
    };

    let queue = Queue::open(&dir).expect("reopen");
    assert_eq!(queue.list(StateKind::Verifying).expect("list").len(), 1);
    assert_eq!(queue.requeue_interrupted().await.expect("requeue"), 1);
    assert_eq!(
        queue.get(id).expect("get").expect("job").state,
        JobState::Queued
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_job() {
    let root = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(&db_dir(root.path())).expect("open");
    let total = 200u64;
    for n in 0..total {
        enqueue_new(&queue, &candidate(&format!("f{n}.bin"), n + 1)).await;
    }

    let mut workers = Vec::new();
    for _ in 0..8 {
        let queue = queue.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = queue
                .claim_next(OffsetDateTime::now_utc())
                .await
                .expect("claim")
            {
                mine.push(job.id);
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut claimed = 0;
    for worker in workers {
        for id in worker.await.expect("worker finished") {
            claimed += 1;
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(claimed, total);
    assert_eq!(queue.counts().expect("counts").uploading, total);
}

#[tokio::test]
async fn second_open_is_locked_not_corrupt() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = db_dir(root.path());
    let _running = Queue::open(&dir).expect("open");

    let err = Queue::open(&dir).expect_err("held by the first");
    assert!(matches!(err, QueueError::Locked { .. }), "{err:?}");
    let err = Queue::open_or_rebuild(&dir).expect_err("a held database is never moved");
    assert!(matches!(err, QueueError::Locked { .. }), "{err:?}");
    assert!(dir.exists());
}

#[test]
fn garbage_database_is_moved_aside_and_rebuilt() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = db_dir(root.path());
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("conf"), b"\x00\x01not a sled config at all\xff").expect("write");
    std::fs::write(dir.join("db"), vec![0xA5u8; 8192]).expect("write");

    let err = Queue::open(&dir).expect_err("garbage is not a database");
    assert!(matches!(err, QueueError::Corrupt { .. }), "{err:?}");

    let (queue, note) = Queue::open_or_rebuild(&dir).expect("rebuilt");
    let note = note.expect("a rebuild is reported");
    assert!(note.moved_to.starts_with(root.path()));
    assert!(
        note.moved_to.to_string_lossy().contains("queue.broken-"),
        "{:?}",
        note.moved_to
    );
    assert_eq!(
        std::fs::read(note.moved_to.join("db")).expect("old db kept"),
        vec![0xA5u8; 8192]
    );
    assert!(matches!(note.cause, QueueError::Corrupt { .. }));
    assert_eq!(queue.counts().expect("counts").queued, 0);
}

#[test]
fn newer_schema_is_refused_then_moved_aside() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = db_dir(root.path());
    {
        let db = sled::open(&dir).expect("sled");
        let meta = db.open_tree("meta").expect("meta");
        meta.insert("schema_version", &(SCHEMA_VERSION + 1).to_be_bytes())
            .expect("insert");
        db.flush().expect("flush");
    }

    let err = Queue::open(&dir).expect_err("newer schema");
    assert!(
        matches!(err, QueueError::SchemaMismatch { found, expected, .. }
            if found == SCHEMA_VERSION + 1 && expected == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("schema version"));

    let (_queue, note) = Queue::open_or_rebuild(&dir).expect("rebuilt");
    assert!(matches!(
        note.expect("moved").cause,
        QueueError::SchemaMismatch { .. }
    ));
}

#[test]
fn unreadable_state_directory_is_not_moved() {
    let root = tempfile::tempdir().expect("tempdir");
    let not_a_dir = root.path().join("file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let dir = not_a_dir.join("queue");

    let err = Queue::open_or_rebuild(&dir).expect_err("cannot create below a file");
    assert!(matches!(err, QueueError::Unavailable { .. }), "{err:?}");
    assert!(not_a_dir.is_file());
}
