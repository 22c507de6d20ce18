//! The daemon's intake, end to end (promises 1 and 2): files dropped into an
//! outbox, at the top or in folders made after start, and files that were
//! there before start, arrive under the mapped remote folder byte for byte;
//! excluded names never reach OneDrive, not even as a request; a file written
//! slowly goes up once, complete; a `.tmp` renamed to its final name goes up
//! under that name only.

mod common;
mod fake_graph;

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use common::daemon::{assert_arrived, setup, MappingSpec, FAST_UPLOADS, PATIENCE};
use common::sample_bytes;
use fake_graph::{RequestRecord, Route};
use percent_encoding::percent_decode_str;

/// Writes `bytes` at `relative` below `root`, creating folders.
fn drop_file(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating folders");
    std::fs::write(&path, bytes).expect("writing an outbox file");
}

/// A request's path, percent-decoded.
fn decoded(record: &RequestRecord) -> String {
    percent_decode_str(&record.path)
        .decode_utf8_lossy()
        .into_owned()
}

/// Requests that upload content or open a session for a path ending in `name`.
fn uploads_of<'a>(requests: &'a [RequestRecord], name: &str) -> Vec<&'a RequestRecord> {
    requests
        .iter()
        .filter(|r| matches!(r.route, Route::SimpleUpload | Route::CreateSession))
        .filter(|r| {
            let path = decoded(r);
            path.ends_with(&format!("/{name}:/content"))
                || path.ends_with(&format!("/{name}:/createUploadSession"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_nested_and_preexisting_files_arrive_and_excluded_names_never_do() {
    let (fake, home) = setup(FAST_UPLOADS, &[MappingSpec::new("outbox", "/Backups/host")]).await;
    let outbox = home.outbox("outbox");
    let excluded = ["x.tmp", ".hidden", "y.part", "z~"];

    // Before start: a small file, a session-sized one in folders, and
    // excluded names.
    let early = sample_bytes(10_000, 1);
    let early_nested = sample_bytes(700 * 1024, 2);
    drop_file(&outbox, "early.txt", &early);
    drop_file(&outbox, "pre/nested/early.bin", &early_nested);
    for (i, name) in excluded.iter().enumerate() {
        drop_file(&outbox, name, &sample_bytes(5_000, 10 + i as u64));
    }

    let daemon = home.start().await;

    // After start: excluded names first, then files at the top and in folders
    // made now. The wanted files settle no sooner than the excluded ones, so
    // once they arrived an excluded file would have arrived too.
    for (i, name) in excluded.iter().enumerate() {
        drop_file(
            &outbox,
            &format!("new/{name}"),
            &sample_bytes(5_000, 20 + i as u64),
        );
    }
    let top = sample_bytes(3_000, 3);
    let late = sample_bytes(400 * 1024, 4);
    let deep = sample_bytes(0, 5);
    drop_file(&outbox, "top.txt", &top);
    drop_file(&outbox, "new/deeper/dir/late.bin", &late);
    drop_file(&outbox, "new/deeper/dir/empty.dat", &deep);

    let expected = [
        ("/Backups/host/early.txt", &early),
        ("/Backups/host/pre/nested/early.bin", &early_nested),
        ("/Backups/host/top.txt", &top),
        ("/Backups/host/new/deeper/dir/late.bin", &late),
        ("/Backups/host/new/deeper/dir/empty.dat", &deep),
    ];
    home.wait_until("every dropped file on the drive", PATIENCE, || {
        expected.iter().all(|(remote, bytes)| {
            fake.file(remote)
                .is_some_and(|f| f.size == bytes.len() as u64)
        })
    })
    .await;
    for (remote, bytes) in expected {
        assert_arrived(&fake, remote, bytes);
    }

    // A last file written after everything: once it is there, nothing dropped
    // earlier is still on its way.
    let sentinel = sample_bytes(100, 6);
    drop_file(&outbox, "sentinel.txt", &sentinel);
    home.wait_until("the sentinel on the drive", PATIENCE, || {
        fake.file("/Backups/host/sentinel.txt").is_some()
    })
    .await;
    let exit = daemon.terminate(Duration::from_secs(60)).await;
    assert!(exit.success(), "the daemon exited with {exit} on SIGTERM");

    let stored: Vec<String> = fake.files().into_iter().map(|f| f.path).collect();
    assert_eq!(
        stored.len(),
        expected.len() + 1,
        "only the wanted files are stored: {stored:?}"
    );
    let requests = fake.requests();
    for name in excluded {
        assert!(
            !stored.iter().any(|p| p.ends_with(&format!("/{name}"))),
            "{name} was stored: {stored:?}"
        );
        let asked: Vec<String> = requests
            .iter()
            .map(decoded)
            .filter(|p| p.contains(name))
            .collect();
        assert!(asked.is_empty(), "{name} reached the server: {asked:?}");
    }
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_slowly_is_uploaded_once_and_complete() {
    let (fake, home) = setup(
        FAST_UPLOADS,
        &[MappingSpec::new("slow", "/Slow").settle("1s")],
    )
    .await;
    let _daemon = home.start().await;

    // Ten appends 300 ms apart: the file keeps changing for about three
    // seconds, longer than the settle time in total but never for a whole
    // settle time at once. Under 64 KiB, so it goes in one simple upload.
    let whole = sample_bytes(60 * 1024, 7);
    let path = home.outbox("slow").join("growing.log");
    let mut file = std::fs::File::create(&path).expect("creating the file");
    for piece in whole.chunks(whole.len() / 10) {
        file.write_all(piece).expect("appending");
        file.flush().expect("flushing");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(file);

    home.wait_until("growing.log on the drive", PATIENCE, || {
        fake.file("/Slow/growing.log").is_some()
    })
    .await;
    // A sentinel settles after any second upload of the file would have been
    // sent.
    std::fs::write(home.outbox("slow").join("after.txt"), b"after").expect("sentinel");
    home.wait_until("the sentinel on the drive", PATIENCE, || {
        fake.file("/Slow/after.txt").is_some()
    })
    .await;

    assert_arrived(&fake, "/Slow/growing.log", &whole);
    let requests = fake.requests();
    let uploads = uploads_of(&requests, "growing.log");
    assert_eq!(
        uploads.len(),
        1,
        "growing.log was sent {} times: {uploads:?}",
        uploads.len()
    );
    fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tmp_file_renamed_to_its_final_name_is_uploaded_under_that_name_only() {
    let (fake, home) = setup(FAST_UPLOADS, &[MappingSpec::new("renamed", "/Renamed")]).await;
    let _daemon = home.start().await;

    let bytes = sample_bytes(200 * 1024, 8);
    let outbox = home.outbox("renamed");
    let temporary = outbox.join("report.csv.tmp");
    std::fs::write(&temporary, &bytes).expect("writing the temporary file");
    // The temporary name stays in place well past the settle time, so an
    // exclusion that did not work would have had its chance.
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::rename(&temporary, outbox.join("report.csv")).expect("renaming");

    home.wait_until("report.csv on the drive", PATIENCE, || {
        fake.file("/Renamed/report.csv").is_some()
    })
    .await;
    assert_arrived(&fake, "/Renamed/report.csv", &bytes);

    let requests = fake.requests();
    assert_eq!(uploads_of(&requests, "report.csv").len(), 1);
    let stored: Vec<String> = fake.files().into_iter().map(|f| f.path).collect();
    assert_eq!(stored, vec!["/Renamed/report.csv".to_owned()]);
    let tmp_requests: Vec<String> = requests
        .iter()
        .map(decoded)
        .filter(|p| p.contains(".tmp"))
        .collect();
    assert!(
        tmp_requests.is_empty(),
        "the temporary name reached the server: {tmp_requests:?}"
    );
    fake.assert_no_violations();
}
