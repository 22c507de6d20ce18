//! Uploads through the Graph client against the strict fake: every size class,
//! troublesome names, conflict policies, resumption after lost or refused
//! fragments, token expiry in the middle of an upload, and the checks made
//! before any byte is sent. Every test ends with the fake's list of broken
//! protocol rules empty.

mod common;
mod fake_graph;

use std::time::{Duration, Instant};

use common::{sample_bytes, write_file, Endpoints, TestHome, SMALL_UPLOADS};
use fake_graph::{FakeGraph, FakeOptions, Route};
use onedrive_syncd::config::ConflictPolicy;
use onedrive_syncd::graph::quickxor::{digest_of, to_base64};
use onedrive_syncd::graph::transfer::{upload_file, UploadOptions, Uploaded};
use onedrive_syncd::graph::{GraphApi as _, GraphClient, GraphError, RemotePath, RetryPolicy};

const KIB: usize = 1024;
const FRAGMENT: usize = 320 * KIB;

struct Harness {
    fake: FakeGraph,
    home: TestHome,
    client: GraphClient,
}

async fn harness(options: FakeOptions) -> Harness {
    let fake = FakeGraph::start(options).await;
    let endpoints = Endpoints {
        graph_url: fake.graph_url(),
        authority_url: fake.authority_url(),
        client_id: fake.client_id(),
    };
    let home = TestHome::new(&endpoints, SMALL_UPLOADS);
    home.seed_refresh_token(&fake.issue_refresh_token()).await;
    let (client, _) = home.graph_client();
    Harness { fake, home, client }
}

/// Sessions for anything above 64 KiB, 320 KiB fragments, quick retries.
fn small(conflict: ConflictPolicy) -> UploadOptions {
    UploadOptions {
        conflict,
        simple_upload_threshold_bytes: 64 * KIB as u64,
        fragment_size_bytes: FRAGMENT as u64,
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        },
    }
}

impl Harness {
    async fn upload(
        &self,
        bytes: &[u8],
        remote: &str,
        options: &UploadOptions,
    ) -> Result<Uploaded, GraphError> {
        let local = write_file(self.home.dir.path(), "payload.bin", bytes);
        let remote = RemotePath::parse(remote).expect("valid remote path");
        upload_file(&self.client, &local, &remote, options, &|_, _| {}).await
    }

    /// Asserts the fake holds exactly `bytes` at `remote`, with the matching
    /// quickXorHash.
    fn assert_stored(&self, remote: &str, bytes: &[u8]) {
        let stored = self
            .fake
            .file(remote)
            .unwrap_or_else(|| panic!("{remote} not stored"));
        assert_eq!(stored.size, bytes.len() as u64, "{remote}");
        assert_eq!(
            stored.quick_xor_hash,
            to_base64(&digest_of(bytes)),
            "{remote}"
        );
        assert_eq!(
            self.fake.read_file(remote).as_deref(),
            Some(bytes),
            "{remote}"
        );
    }

    fn count(&self, route: Route) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.route == route)
            .count()
    }
}

#[tokio::test]
async fn every_size_class_uploads_with_the_servers_hash() {
    let h = harness(FakeOptions::default()).await;
    let cases: [(&str, usize, Route, usize); 6] = [
        ("/sizes/empty.bin", 0, Route::SimpleUpload, 0),
        ("/sizes/one.bin", 1, Route::SimpleUpload, 0),
        ("/sizes/threshold.bin", 64 * KIB, Route::SimpleUpload, 0),
        ("/sizes/one-fragment.bin", FRAGMENT, Route::Fragment, 1),
        (
            "/sizes/fragment-plus-one.bin",
            FRAGMENT + 1,
            Route::Fragment,
            2,
        ),
        ("/sizes/several.bin", 3 * FRAGMENT + 17, Route::Fragment, 4),
    ];
    for (remote, size, route, fragments) in cases {
        h.fake.clear_records();
        let bytes = sample_bytes(size, size as u64);
        let uploaded = h
            .upload(&bytes, remote, &small(ConflictPolicy::Fail))
            .await
            .unwrap();

        assert_eq!(uploaded.bytes, size as u64);
        assert_eq!(uploaded.quick_xor_hash, digest_of(&bytes), "{remote}");
        h.assert_stored(remote, &bytes);
        assert_eq!(
            h.count(route),
            fragments.max(1),
            "{remote}: requests on {route:?}"
        );
        assert_eq!(
            h.count(Route::CreateSession),
            usize::from(fragments > 0),
            "{remote}"
        );
        h.fake.assert_no_violations();
    }
}

#[tokio::test]
async fn fragments_are_aligned_and_never_carry_authorization() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(5 * FRAGMENT + 999, 7);
    h.upload(&bytes, "/aligned.bin", &small(ConflictPolicy::Fail))
        .await
        .unwrap();

    let fragments: Vec<_> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.route == Route::Fragment)
        .collect();
    assert_eq!(fragments.len(), 6);
    for (index, fragment) in fragments.iter().enumerate() {
        assert!(
            !fragment.had_authorization,
            "fragment {index} carried Authorization"
        );
        let (first, last, total) = fragment.content_range.expect("Content-Range");
        assert_eq!(first, (index * FRAGMENT) as u64);
        assert_eq!(total, bytes.len() as u64);
        if index < 5 {
            assert_eq!((last + 1 - first) as usize, FRAGMENT);
        }
    }
    h.assert_stored("/aligned.bin", &bytes);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn troublesome_names_land_under_exactly_those_names() {
    let h = harness(FakeOptions::default()).await;
    let names = [
        "/names/with space.txt",
        "/names/hash#tag.txt",
        "/names/50% off.txt",
        "/names/test%2546.txt",
        "/names/a+b=c.txt",
        "/names/日本語のファイル.txt",
        "/names/フォルダ #1/報告 100%+.csv",
    ];
    for (index, name) in names.iter().enumerate() {
        let bytes = sample_bytes(100 + index, index as u64);
        h.upload(&bytes, name, &small(ConflictPolicy::Fail))
            .await
            .unwrap();
    }
    let stored: Vec<String> = h.fake.files().into_iter().map(|f| f.path).collect();
    for name in names {
        assert!(
            stored.iter().any(|p| p == name),
            "{name} missing from {stored:?}"
        );
    }
    assert_eq!(stored.len(), names.len(), "{stored:?}");
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn session_uploads_keep_troublesome_names_too() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(FRAGMENT + 5, 3);
    let name = "/大きい #ファイル/50% a+b.bin";
    h.upload(&bytes, name, &small(ConflictPolicy::Fail))
        .await
        .unwrap();
    h.assert_stored(name, &bytes);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn conflict_policies_replace_rename_or_refuse() {
    let h = harness(FakeOptions::default()).await;
    let old = b"old content".to_vec();
    for (remote, size) in [("/c/small.txt", 20), ("/c/large.bin", FRAGMENT + 1)] {
        h.fake.put_file(remote, &old);

        let err = h
            .upload(&sample_bytes(size, 1), remote, &small(ConflictPolicy::Fail))
            .await;
        assert!(
            matches!(err, Err(GraphError::NameConflict { .. })),
            "{remote}: {err:?}"
        );
        h.assert_stored(remote, &old);

        let renamed = sample_bytes(size, 2);
        let uploaded = h
            .upload(&renamed, remote, &small(ConflictPolicy::Rename))
            .await
            .unwrap();
        let new_name = uploaded.item.name.clone().unwrap();
        assert_ne!(Some(new_name.as_str()), remote.rsplit('/').next());
        h.assert_stored(&format!("/c/{new_name}"), &renamed);
        h.assert_stored(remote, &old);

        let replaced = sample_bytes(size, 3);
        h.upload(&replaced, remote, &small(ConflictPolicy::Replace))
            .await
            .unwrap();
        h.assert_stored(remote, &replaced);
    }
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn concurrent_mkdir_of_one_path_creates_it_once() {
    let h = harness(FakeOptions::default()).await;
    let Harness {
        fake,
        home: _home,
        client,
    } = h;
    let client = std::sync::Arc::new(client);
    let path = RemotePath::parse("/deep/er/still/deeper").unwrap();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (client, path) = (client.clone(), path.clone());
            tokio::spawn(async move { client.ensure_folder(&path).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "the tasks saw different folders: {ids:?}");
    assert_eq!(
        fake.folders(),
        [
            "/deep",
            "/deep/er",
            "/deep/er/still",
            "/deep/er/still/deeper"
        ]
    );

    // Idempotent: a second run finds the folder without creating anything.
    fake.clear_records();
    assert_eq!(client.ensure_folder(&path).await.unwrap().id, ids[0]);
    let creates = fake
        .requests()
        .iter()
        .filter(|r| r.route == Route::CreateFolder)
        .count();
    assert_eq!(creates, 0);
    fake.assert_no_violations();
}

#[tokio::test]
async fn listing_follows_every_page() {
    let h = harness(FakeOptions {
        page_size: 3,
        ..FakeOptions::default()
    })
    .await;
    let mut expected: Vec<String> = (0..10).map(|i| format!("file-{i:02}.txt")).collect();
    for name in &expected {
        h.fake.put_file(&format!("/listed/{name}"), name.as_bytes());
    }
    h.fake.clear_records();

    let items = h
        .client
        .list_children(&RemotePath::parse("/listed").unwrap())
        .await
        .unwrap();
    let mut names: Vec<String> = items.into_iter().filter_map(|i| i.name).collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(h.count(Route::Children), 4, "10 items in pages of 3");
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn an_invalid_name_is_refused_before_any_request() {
    let h = harness(FakeOptions::default()).await;
    h.fake.clear_records();
    for bad in [
        "/x/a:b.txt",
        "/x/CON.txt",
        "/x/trailing.",
        "/x/ lead",
        "/x/a|b",
        "/x/~$lock",
    ] {
        let err = RemotePath::parse(bad).unwrap_err();
        assert!(
            matches!(err, GraphError::InvalidName { .. }),
            "{bad}: {err:?}"
        );
    }
    assert!(
        h.fake.requests().is_empty(),
        "requests were sent: {:?}",
        h.fake.requests()
    );
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn files_too_large_or_over_quota_are_refused_before_uploading() {
    let h = harness(FakeOptions::default()).await;
    h.fake.clear_records();

    let huge = h.home.dir.path().join("huge.bin");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(250_000_000_001)
        .unwrap();
    let remote = RemotePath::parse("/huge.bin").unwrap();
    let err = upload_file(
        &h.client,
        &huge,
        &remote,
        &small(ConflictPolicy::Fail),
        &|_, _| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, GraphError::FileTooLarge { .. }), "{err:?}");
    assert!(
        h.fake.requests().is_empty(),
        "a request was sent for a file over 250 GB"
    );

    // Above the simple-upload threshold: small files are left to the server's 507.
    h.fake.set_quota_total(100_000);
    let err = h
        .upload(
            &sample_bytes(200_000, 1),
            "/big.bin",
            &small(ConflictPolicy::Fail),
        )
        .await;
    match err {
        Err(GraphError::QuotaExceeded {
            bytes, remaining, ..
        }) => {
            assert_eq!(bytes, 200_000);
            assert!(remaining <= 100_000);
        }
        other => panic!("expected a quota refusal, got {other:?}"),
    }
    let uploads = h.count(Route::SimpleUpload) + h.count(Route::CreateSession);
    assert_eq!(
        uploads, 0,
        "an upload request was sent for a file over the quota"
    );
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn a_lost_fragment_response_resumes_from_the_server_offset() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(4 * FRAGMENT + 10, 11);
    h.fake.lose_next_fragment_response(2);

    let uploaded = h
        .upload(&bytes, "/lost.bin", &small(ConflictPolicy::Fail))
        .await
        .unwrap();
    assert_eq!(uploaded.sessions, 1);
    h.assert_stored("/lost.bin", &bytes);
    assert_eq!(h.fake.sessions_created(), 1);
    assert_eq!(
        h.fake.bytes_resent(),
        0,
        "bytes the server had were sent again"
    );
    assert!(
        h.count(Route::SessionStatus) >= 2,
        "the session was not asked for its offset"
    );
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn a_cut_fragment_is_sent_again_from_the_server_offset() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(3 * FRAGMENT, 12);
    h.fake.cut_connection_after(100_000);

    h.upload(&bytes, "/cut.bin", &small(ConflictPolicy::Fail))
        .await
        .unwrap();
    h.assert_stored("/cut.bin", &bytes);
    assert_eq!(h.fake.sessions_created(), 1);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn a_lost_final_response_is_recognised_as_done() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(2 * FRAGMENT + 3, 13);
    h.fake.lose_response_of_final_fragment();

    let uploaded = h
        .upload(&bytes, "/final.bin", &small(ConflictPolicy::Fail))
        .await
        .unwrap();
    assert_eq!(uploaded.sessions, 1, "the file was sent a second time");
    assert_eq!(h.fake.sessions_created(), 1);
    h.assert_stored("/final.bin", &bytes);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn a_vanished_session_is_replaced_and_the_hash_restarts() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(3 * FRAGMENT + 1, 14);
    let local = write_file(h.home.dir.path(), "vanish.bin", &bytes);
    let remote = RemotePath::parse("/vanish.bin").unwrap();
    let fake = h.fake.clone();
    // Once the first fragment is in, the session disappears (as after its
    // expiry).
    let progress = move |done: u64, _total: u64| {
        if done == FRAGMENT as u64 && fake.sessions_created() == 1 {
            fake.expire_sessions();
        }
    };

    let options = small(ConflictPolicy::Fail);
    let uploaded = upload_file(&h.client, &local, &remote, &options, &progress)
        .await
        .unwrap();
    assert_eq!(uploaded.sessions, 2);
    assert_eq!(h.fake.sessions_created(), 2);
    h.assert_stored("/vanish.bin", &bytes);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn throttled_and_failing_requests_are_retried_after_retry_after() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(2 * FRAGMENT + 1, 15);
    h.fake.fail_next(Route::CreateSession, 429, 1, Some(1));
    h.fake.fail_next(Route::Fragment, 503, 1, Some(1));
    h.fake.fail_next(Route::Fragment, 500, 1, None);

    h.upload(&bytes, "/throttled.bin", &small(ConflictPolicy::Fail))
        .await
        .unwrap();
    h.assert_stored("/throttled.bin", &bytes);
    assert_eq!(h.fake.sessions_created(), 1);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn access_token_expiry_mid_upload_does_not_restart_it() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(4 * FRAGMENT + 2, 16);
    let local = write_file(h.home.dir.path(), "expiry.bin", &bytes);
    let remote = RemotePath::parse("/expiry.bin").unwrap();
    let fake = h.fake.clone();
    let progress = move |done: u64, _total: u64| {
        if done == 2 * FRAGMENT as u64 {
            fake.expire_access_tokens();
        }
    };
    // The answer to the last fragment is lost, so the client has to look the
    // item up with an access token that has expired meanwhile: 401, refresh,
    // same request again.
    h.fake.lose_response_of_final_fragment();
    h.client.drive().await.unwrap();
    let tokens_before = h.count(Route::Token);

    let options = small(ConflictPolicy::Fail);
    let uploaded = upload_file(&h.client, &local, &remote, &options, &progress)
        .await
        .unwrap();
    assert_eq!(uploaded.sessions, 1);
    assert_eq!(h.fake.sessions_created(), 1, "the upload was restarted");
    h.assert_stored("/expiry.bin", &bytes);
    assert_eq!(
        h.count(Route::Token),
        tokens_before + 1,
        "exactly one refresh"
    );
    let unauthorized = h.fake.requests().iter().filter(|r| r.status == 401).count();
    assert_eq!(unauthorized, 1);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn a_corrupted_copy_is_reported_as_a_mismatch() {
    let h = harness(FakeOptions::default()).await;
    h.fake.corrupt_next_stored_file();
    let bytes = sample_bytes(FRAGMENT + 9, 17);
    let err = h
        .upload(&bytes, "/bad.bin", &small(ConflictPolicy::Fail))
        .await;
    match err {
        Err(GraphError::IntegrityMismatch { what, .. }) => assert_eq!(what, "quickXorHash"),
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    h.fake.assert_no_violations();
}

/// 100 MiB with the default 10 MiB fragments. The elapsed time is printed for
/// the record; run with `--release -- --nocapture` to measure. It is not
/// asserted.
#[tokio::test(flavor = "multi_thread")]
async fn a_100_mib_upload_verifies() {
    let h = harness(FakeOptions::default()).await;
    let bytes = sample_bytes(100 * 1024 * 1024, 100);
    let local = write_file(h.home.dir.path(), "hundred.bin", &bytes);
    let remote = RemotePath::parse("/big/hundred.bin").unwrap();
    let options = UploadOptions {
        fragment_size_bytes: 10 * 1024 * 1024,
        simple_upload_threshold_bytes: 4 * 1024 * 1024,
        ..small(ConflictPolicy::Fail)
    };

    let started = Instant::now();
    let uploaded = upload_file(&h.client, &local, &remote, &options, &|_, _| {})
        .await
        .unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "100 MiB uploaded and verified in {:.2} s",
        elapsed.as_secs_f64()
    );

    assert_eq!(uploaded.bytes, bytes.len() as u64);
    let stored = h.fake.file("/big/hundred.bin").unwrap();
    assert_eq!(stored.quick_xor_hash, to_base64(&digest_of(&bytes)));
    assert_eq!(h.count(Route::Fragment), 10);
    h.fake.assert_no_violations();
}
