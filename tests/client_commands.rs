//! The admin commands `upload`, `mkdir`, `ls` and `whoami`, run as the real
//! binary against the strict fake with a token stored beforehand.

mod common;
mod fake_graph;

use common::{failure, sample_bytes, success, write_file, Endpoints, TestHome, SMALL_UPLOADS};
use fake_graph::{FakeGraph, FakeOptions, Route};
use onedrive_syncd::graph::quickxor::{digest_of, to_base64};

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

fn assert_stored(fake: &FakeGraph, remote: &str, bytes: &[u8]) {
    let stored = fake
        .file(remote)
        .unwrap_or_else(|| panic!("{remote} is not on the drive"));
    assert_eq!(stored.path, remote);
    assert_eq!(stored.quick_xor_hash, to_base64(&digest_of(bytes)));
    assert_eq!(fake.read_file(remote).as_deref(), Some(bytes));
}

#[tokio::test]
async fn upload_sends_and_verifies_a_file_by_session() {
    let (fake, home) = start(FakeOptions::default()).await;
    let bytes = sample_bytes(3 * 320 * 1024 + 5, 1);
    let local = write_file(home.dir.path(), "data.bin", &bytes);
    let local = local.to_str().unwrap();

    let output = home.run(&["upload", local, "/reports/2024/data.bin"]).await;
    let stdout = success(&output);
    let hash = to_base64(&digest_of(&bytes));
    assert!(
        stdout.contains(&format!("quickXorHash {hash} verified")),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("(100%)"));
    assert_stored(&fake, "/reports/2024/data.bin", &bytes);
    assert_eq!(fake.sessions_created(), 1);
    fake.assert_no_violations();
}

#[tokio::test]
async fn upload_reads_standard_input() {
    let (fake, home) = start(FakeOptions::default()).await;
    let text = b"backup finished at 03:00\n";
    let output = home
        .run_with_stdin(&["upload", "-", "/status/last run.txt"], text)
        .await;
    success(&output);
    assert_stored(&fake, "/status/last run.txt", text);

    let empty = home
        .run_with_stdin(&["upload", "-", "/status/empty.txt"], b"")
        .await;
    success(&empty);
    assert_stored(&fake, "/status/empty.txt", b"");
    fake.assert_no_violations();
}

#[tokio::test]
async fn upload_into_a_folder_keeps_the_local_name() {
    let (fake, home) = start(FakeOptions::default()).await;
    let local = write_file(home.dir.path(), "50% #1+日本.txt", b"x");
    success(
        &home
            .run(&["upload", local.to_str().unwrap(), "/in box/"])
            .await,
    );
    assert_stored(&fake, "/in box/50% #1+日本.txt", b"x");
    fake.assert_no_violations();
}

#[tokio::test]
async fn upload_refuses_an_invalid_name_before_any_request() {
    let (fake, home) = start(FakeOptions::default()).await;
    let local = write_file(home.dir.path(), "a.txt", b"x");
    for remote in ["/reports/a:b.txt", "/reports/aux.txt", "/reports/name."] {
        let stderr = failure(&home.run(&["upload", local.to_str().unwrap(), remote]).await);
        assert!(stderr.contains("invalid OneDrive path"), "{stderr}");
    }
    assert!(
        fake.requests().is_empty(),
        "requests were sent: {:?}",
        fake.requests()
    );
    fake.assert_no_violations();
}

#[tokio::test]
async fn upload_with_conflict_fail_keeps_the_remote_file() {
    let (fake, home) = start(FakeOptions::default()).await;
    fake.put_file("/keep/me.txt", b"original");
    let local = write_file(home.dir.path(), "me.txt", b"newer");
    let local = local.to_str().unwrap();

    let stderr = failure(
        &home
            .run(&["upload", local, "/keep/me.txt", "--conflict", "fail"])
            .await,
    );
    assert!(stderr.contains("already exists on OneDrive"), "{stderr}");
    assert_stored(&fake, "/keep/me.txt", b"original");

    success(
        &home
            .run(&["upload", local, "/keep/me.txt", "--conflict", "rename"])
            .await,
    );
    assert_stored(&fake, "/keep/me.txt", b"original");
    assert_eq!(fake.files().len(), 2);

    success(&home.run(&["upload", local, "/keep/me.txt"]).await);
    assert_stored(&fake, "/keep/me.txt", b"newer");
    fake.assert_no_violations();
}

#[tokio::test]
async fn mkdir_creates_missing_parents_and_tolerates_existing_ones() {
    let (fake, home) = start(FakeOptions::default()).await;
    success(&home.run(&["mkdir", "/a/b c/d#"]).await);
    success(&home.run(&["mkdir", "/a/b c/d#"]).await);
    assert_eq!(fake.folders(), ["/a", "/a/b c", "/a/b c/d#"]);
    let creates = fake
        .requests()
        .iter()
        .filter(|r| r.route == Route::CreateFolder)
        .count();
    assert_eq!(creates, 3);
    fake.assert_no_violations();
}

#[tokio::test]
async fn ls_lists_every_page_as_names_long_lines_or_json() {
    let (fake, home) = start(FakeOptions {
        page_size: 2,
        ..FakeOptions::default()
    })
    .await;
    for i in 0..5 {
        fake.put_file(&format!("/listed/f{i}.txt"), &vec![b'x'; i + 1]);
    }
    fake.put_file("/listed/sub/inner.txt", b"y");

    let names = success(&home.run(&["ls", "/listed"]).await);
    let mut lines: Vec<&str> = names.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt", "sub/"]
    );

    let long = success(&home.run(&["ls", "/listed", "--long"]).await);
    let f4 = long
        .lines()
        .find(|l| l.ends_with("  f4.txt"))
        .expect("f4 listed");
    assert_eq!(f4.split_whitespace().next(), Some("5"), "{long}");

    let json = success(&home.run(&["ls", "/listed", "--json"]).await);
    let items: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(items.len(), 6);
    assert!(items.iter().all(|i| i["id"].is_string()));

    let stderr = failure(&home.run(&["ls", "/missing"]).await);
    assert!(stderr.contains("nothing at /missing"), "{stderr}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn whoami_shows_account_drive_and_quota() {
    let (fake, home) = start(FakeOptions::default()).await;
    fake.put_file("/x.bin", &[0u8; 2048]);
    let stdout = success(&home.run(&["whoami"]).await);
    assert!(stdout.starts_with("account: "), "{stdout}");
    assert!(stdout.contains("drive:   "), "{stdout}");
    assert!(stdout.contains("2.0 KiB used of 1.0 TiB"), "{stdout}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn every_command_has_help_with_an_example() {
    let (_fake, home) = start(FakeOptions::default()).await;
    for command in ["login", "whoami", "mkdir", "upload", "ls"] {
        let stdout = success(&home.run(&[command, "--help"]).await);
        assert!(
            stdout.contains("Example"),
            "{command} --help has no example:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("onedrive-syncd {command}")),
            "{stdout}"
        );
    }
}
