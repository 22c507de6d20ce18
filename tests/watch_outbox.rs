//! The outbox watcher on a real file system: what it sends, when, and what
//! it never sends. Waits are bounded; when a test needs "X was not sent", it
//! drops a sentinel file afterwards and waits for that, since the watcher
//! would have sent X before a file that arrived later and settles no sooner.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use onedrive_syncd::config::{AfterUpload, ConflictPolicy, Mapping};
use onedrive_syncd::watch::{identity_of, still_settled, Candidate, OutboxWatcher, WatchOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SETTLE: Duration = Duration::from_millis(200);
const PATIENCE: Duration = Duration::from_secs(15);

fn mapping(root: &Path, recursive: bool, follow_symlinks: bool) -> Mapping {
    Mapping {
        name: "outbox".into(),
        local_path: root.to_path_buf(),
        remote_path: vec!["Backups".into(), "host".into()],
        recursive,
        include: vec![],
        exclude: vec![],
        settle_time: SETTLE,
        conflict: ConflictPolicy::Replace,
        after_upload: AfterUpload::Keep,
        follow_symlinks,
    }
}

/// A running watcher over one mapping, stopped on drop.
struct Running {
    rx: mpsc::Receiver<Candidate>,
    shutdown: CancellationToken,
    watcher: Option<OutboxWatcher>,
}

impl Running {
    fn start(mapping: Mapping, rescan_interval: Duration) -> Running {
        let (tx, rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let options = WatchOptions { rescan_interval };
        let watcher = OutboxWatcher::start(&[mapping], options, tx, shutdown.clone())
            .expect("watcher starts");
        Running {
            rx,
            shutdown,
            watcher: Some(watcher),
        }
    }

    async fn next(&mut self) -> Candidate {
        tokio::time::timeout(PATIENCE, self.rx.recv())
            .await
            .expect("a candidate within the patience bound")
            .expect("watcher still running")
    }

    /// Every candidate up to and including the one for `relative`.
    async fn until(&mut self, relative: &str) -> Vec<Candidate> {
        let mut seen = Vec::new();
        loop {
            let candidate = self.next().await;
            let done = candidate.relative_path == Path::new(relative);
            seen.push(candidate);
            if done {
                return seen;
            }
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        let watcher = self.watcher.take().expect("running");
        tokio::time::timeout(PATIENCE, watcher.stopped())
            .await
            .expect("stops promptly");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn canonical(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().canonicalize().expect("canonical tempdir")
}

fn relatives(candidates: &[Candidate]) -> Vec<String> {
    candidates
        .iter()
        .map(|c| c.relative_path.to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn files_present_before_start_are_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    std::fs::create_dir_all(root.join("old/deeper")).expect("mkdir");
    std::fs::write(root.join("early.csv"), b"early").expect("write");
    std::fs::write(root.join("old/deeper/buried.csv"), b"buried!").expect("write");

    let mut running = Running::start(mapping(&root, true, false), Duration::from_secs(3600));
    let mut found = vec![running.next().await, running.next().await];
    found.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));

    assert_eq!(relatives(&found), ["early.csv", "old/deeper/buried.csv"]);
    let buried = &found[1];
    assert_eq!(buried.local_path, root.join("old/deeper/buried.csv"));
    assert_eq!(
        buried.remote_path,
        ["Backups", "host", "old", "deeper", "buried.csv"]
    );
    assert_eq!(buried.mapping, "outbox");
    assert_eq!(buried.identity.size, 7);
    running.stop().await;
}

#[tokio::test]
async fn new_files_at_top_level_and_in_new_nested_folders_are_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    let mut running = Running::start(mapping(&root, true, false), Duration::from_secs(3600));

    std::fs::write(root.join("top.csv"), b"top").expect("write");
    assert_eq!(relatives(&[running.next().await]), ["top.csv"]);

    // Created in one go: the file may exist before inotify watches its folder.
    std::fs::create_dir_all(root.join("2024/05/31")).expect("mkdir");
    std::fs::write(root.join("2024/05/31/nested.csv"), b"nested").expect("write");
    let nested = running.next().await;
    assert_eq!(nested.relative_path, Path::new("2024/05/31/nested.csv"));
    assert_eq!(
        nested.remote_path,
        ["Backups", "host", "2024", "05", "31", "nested.csv"]
    );
    running.stop().await;
}

#[tokio::test]
async fn excluded_names_are_never_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    let mut running = Running::start(mapping(&root, true, false), Duration::from_secs(3600));

    std::fs::create_dir(root.join(".git")).expect("mkdir");
    for name in [
        ".hidden",
        "a.tmp",
        "b.part",
        ".c.swp",
        "d~",
        ".~lock.e#",
        ".git/config",
    ] {
        std::fs::write(root.join(name), b"excluded").expect("write");
    }
    std::fs::write(root.join("sentinel.csv"), b"ok").expect("write");
    let mut seen = running.until("sentinel.csv").await;
    std::fs::write(root.join("sentinel2.csv"), b"ok").expect("write");
    seen.extend(running.until("sentinel2.csv").await);

    assert_eq!(relatives(&seen), ["sentinel.csv", "sentinel2.csv"]);
    running.stop().await;
}

#[tokio::test]
async fn slowly_written_file_is_sent_once_when_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    let mut m = mapping(&root, true, false);
    m.settle_time = Duration::from_millis(600);
    let mut running = Running::start(m, Duration::from_secs(3600));

    let path = root.join("slow.bin");
    let mut file = std::fs::File::create(&path).expect("create");
    let chunk = vec![7u8; 4096];
    for _ in 0..10 {
        file.write_all(&chunk).expect("write");
        file.flush().expect("flush");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(file);
    let final_size = std::fs::metadata(&path).expect("stat").len();

    let sent = running.next().await;
    assert_eq!(sent.relative_path, Path::new("slow.bin"));
    assert_eq!(sent.identity.size, final_size, "sent only once complete");
    assert_eq!(sent.identity, identity_of(&path).expect("identity"));

    std::fs::write(root.join("sentinel.csv"), b"ok").expect("write");
    let after = running.until("sentinel.csv").await;
    assert_eq!(
        relatives(&after),
        ["sentinel.csv"],
        "slow.bin was sent once"
    );
    running.stop().await;
}

#[tokio::test]
async fn tmp_renamed_to_final_name_is_sent_under_final_name_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    let mut running = Running::start(mapping(&root, true, false), Duration::from_secs(3600));

    std::fs::create_dir(root.join("daily")).expect("mkdir");
    let tmp = root.join("daily/report.csv.tmp");
    std::fs::write(&tmp, b"a,b,c\n1,2,3\n").expect("write");
    tokio::time::sleep(SETTLE * 2).await;
    std::fs::rename(&tmp, root.join("daily/report.csv")).expect("rename");

    let seen = running.until("daily/report.csv").await;
    assert_eq!(relatives(&seen), ["daily/report.csv"]);
    assert_eq!(seen[0].identity.size, 12);
    running.stop().await;
}

#[tokio::test]
async fn symlink_to_a_file_outside_the_root_is_never_sent() {
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("id_rsa");
    std::fs::write(&secret, b"-----BEGIN PRIVATE KEY-----").expect("write");

    for follow_symlinks in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = canonical(&dir);
        std::os::unix::fs::symlink(&secret, root.join("before.txt")).expect("symlink");
        let mut running = Running::start(
            mapping(&root, true, follow_symlinks),
            Duration::from_secs(3600),
        );
        std::os::unix::fs::symlink(&secret, root.join("after.txt")).expect("symlink");
        std::fs::write(root.join("sentinel.csv"), b"ok").expect("write");

        let seen = running.until("sentinel.csv").await;
        assert_eq!(
            relatives(&seen),
            ["sentinel.csv"],
            "follow_symlinks = {follow_symlinks}"
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn symlink_inside_the_root_is_sent_only_when_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    std::fs::create_dir(root.join("data")).expect("mkdir");
    std::fs::write(root.join("data/real.csv"), b"real").expect("write");
    std::os::unix::fs::symlink(root.join("data/real.csv"), root.join("alias.csv")).expect("ln");

    let mut running = Running::start(mapping(&root, true, true), Duration::from_secs(3600));
    let mut seen = vec![running.next().await, running.next().await];
    seen.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    assert_eq!(relatives(&seen), ["alias.csv", "data/real.csv"]);
    assert_eq!(
        seen[0].identity, seen[1].identity,
        "the alias is its target's bytes"
    );
    running.stop().await;
}

#[tokio::test]
async fn fifo_is_skipped_without_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    let made = Command::new("mkfifo")
        .arg(root.join("pipe.csv"))
        .status()
        .expect("mkfifo runs");
    assert!(made.success());

    let mut running = Running::start(mapping(&root, true, false), Duration::from_secs(3600));
    let late = Command::new("mkfifo")
        .arg(root.join("late.csv"))
        .status()
        .expect("mkfifo runs");
    assert!(late.success());
    std::fs::write(root.join("sentinel.csv"), b"ok").expect("write");

    let seen = running.until("sentinel.csv").await;
    assert_eq!(relatives(&seen), ["sentinel.csv"]);
    running.stop().await;
}

#[tokio::test]
async fn non_recursive_mapping_ignores_subfolders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    std::fs::create_dir(root.join("sub")).expect("mkdir");
    std::fs::write(root.join("sub/before.csv"), b"no").expect("write");

    let mut running = Running::start(mapping(&root, false, false), Duration::from_secs(3600));
    std::fs::create_dir(root.join("sub/new")).expect("mkdir");
    std::fs::write(root.join("sub/after.csv"), b"no").expect("write");
    std::fs::write(root.join("sub/new/deep.csv"), b"no").expect("write");
    std::fs::write(root.join("top.csv"), b"yes").expect("write");

    let seen = running.until("top.csv").await;
    assert_eq!(relatives(&seen), ["top.csv"]);
    running.stop().await;
}

#[tokio::test]
async fn changed_file_is_sent_again_with_its_new_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    let mut running = Running::start(mapping(&root, true, false), Duration::from_secs(3600));
    let path = root.join("kept.csv");

    std::fs::write(&path, b"version one").expect("write");
    let first = running.next().await;
    assert!(still_settled(&path, &first.identity));

    std::fs::write(&path, b"version two, longer").expect("rewrite");
    assert!(
        !still_settled(&path, &first.identity),
        "a rewrite is noticed"
    );
    let second = running.next().await;
    assert_eq!(second.relative_path, Path::new("kept.csv"));
    assert_eq!(second.identity.size, 19);
    assert_ne!(second.identity, first.identity);
    running.stop().await;
}

#[tokio::test]
async fn root_created_after_start_is_picked_up_by_a_rescan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir).join("late-outbox");
    let mut running = Running::start(mapping(&root, true, false), Duration::from_millis(300));

    std::fs::create_dir(&root).expect("mkdir");
    std::fs::write(root.join("first.csv"), b"first").expect("write");
    assert_eq!(relatives(&[running.next().await]), ["first.csv"]);

    // Once the root is back, inotify watches it again.
    std::fs::create_dir(root.join("sub")).expect("mkdir");
    std::fs::write(root.join("sub/second.csv"), b"second").expect("write");
    let seen = running.until("sub/second.csv").await;
    assert!(relatives(&seen)
        .iter()
        .all(|r| r == "first.csv" || r == "sub/second.csv"));
    running.stop().await;
}

#[tokio::test]
async fn watcher_stops_when_the_receiver_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = canonical(&dir);
    std::fs::write(root.join("a.csv"), b"a").expect("write");
    let (tx, rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let options = WatchOptions {
        rescan_interval: Duration::from_secs(3600),
    };
    let watcher = OutboxWatcher::start(
        &[mapping(&root, true, false)],
        options,
        tx,
        shutdown.clone(),
    )
    .expect("watcher starts");
    drop(rx);

    tokio::time::timeout(PATIENCE, watcher.stopped())
        .await
        .expect("stops by itself");
}

#[test]
fn invalid_glob_is_refused_before_anything_starts() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let _guard = runtime.enter();
    let mut m = mapping(Path::new("/nonexistent"), true, false);
    m.exclude = vec!["[unclosed".into()];
    let (tx, _rx) = mpsc::channel(1);
    let err = OutboxWatcher::start(&[m], WatchOptions::default(), tx, CancellationToken::new())
        .expect_err("invalid glob");
    assert!(err.to_string().contains("[unclosed"), "{err}");
}
