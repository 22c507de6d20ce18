//! Many files at once: a thousand small files in ten folders and five large
//! ones dropped together all arrive with matching hashes, never more than five
//! uploads in flight (the configured workers), and without a single broken
//! protocol rule, folder creation by concurrent workers included.

mod common;
mod fake_graph;

use std::collections::BTreeMap;

use common::daemon::{count, DaemonHome, MappingSpec, FAST_UPLOADS, PATIENCE};
use common::{sample_bytes, Endpoints};
use fake_graph::{FakeGraph, FakeOptions};
use onedrive_syncd::graph::quickxor::{digest_of, to_base64};

const SMALL_FILES: usize = 1_000;
const FOLDERS: usize = 10;
const LARGE_FILES: usize = 5;
const LARGE_BYTES: usize = 3 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_small_and_five_large_files_arrive_within_the_worker_limit() {
    let fake = FakeGraph::start(FakeOptions::default()).await;
    let endpoints = Endpoints {
        graph_url: fake.graph_url(),
        authority_url: fake.authority_url(),
        client_id: fake.client_id(),
    };
    let home = DaemonHome::new(
        &endpoints,
        FAST_UPLOADS,
        &[MappingSpec::new("load", "/Load")],
    );
    home.home
        .seed_refresh_token(&fake.issue_refresh_token())
        .await;
    let outbox = home.outbox("load");

    // Remote path → expected quickXorHash and size.
    let mut expected: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut write = |relative: String, bytes: Vec<u8>| {
        let path = outbox.join(&relative);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, &bytes).expect("writing an outbox file");
        let hash = to_base64(&digest_of(&bytes));
        expected.insert(format!("/Load/{relative}"), (hash, bytes.len() as u64));
    };
    // Half the small files wait in the outbox before start, the rest and the
    // large files are dropped while the daemon runs.
    let small = |i: usize| sample_bytes(200 + (i * 37) % 4_000, 1_000 + i as u64);
    for i in 0..SMALL_FILES / 2 {
        write(format!("d{}/s{i:04}.txt", i % FOLDERS), small(i));
    }
    let daemon = home.start().await;
    for i in 0..LARGE_FILES {
        write(
            format!("large/l{i}.bin"),
            sample_bytes(LARGE_BYTES, 500 + i as u64),
        );
    }
    for i in SMALL_FILES / 2..SMALL_FILES {
        write(format!("d{}/s{i:04}.txt", i % FOLDERS), small(i));
    }

    let total = expected.len();
    home.wait_until("every file on the drive", PATIENCE * 3, || {
        fake.files().len() >= total
    })
    .await;
    let stored: BTreeMap<String, (String, u64)> = fake
        .files()
        .into_iter()
        .map(|f| (f.path, (f.quick_xor_hash, f.size)))
        .collect();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "missing on the drive: {missing:?}");
    let wrong: Vec<&String> = expected
        .iter()
        .filter(|(path, want)| stored.get(*path) != Some(want))
        .map(|(path, _)| path)
        .collect();
    assert!(wrong.is_empty(), "size or hash differs: {wrong:?}");
    assert_eq!(stored.len(), total, "nothing else was stored");

    let peak = fake.peak_concurrent_uploads();
    assert!(peak <= 5, "{peak} uploads were in flight at once");
    assert!(peak >= 2, "the workers did upload concurrently");
    let status = home
        .wait_for_status("every job done", PATIENCE, |s| {
            count(s, "done") == total as u64
        })
        .await;
    assert_eq!(count(&status, "failed"), 0);
    assert_eq!(fake.sessions_created(), LARGE_FILES);
    drop(daemon);
    fake.assert_no_violations();
}
