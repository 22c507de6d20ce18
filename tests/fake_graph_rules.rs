//! The strict fake Graph server's own rules: each test shows a wrong request
//! refused (and, where the client is to blame, recorded as a violation) and the
//! right one accepted. The requests are plain reqwest calls, so these tests pin
//! the fake's wire behaviour, not the daemon's.

mod fake_graph;

use std::time::Duration;

use fake_graph::names::{check_name, check_path_length, renamed};
use fake_graph::{FakeGraph, FakeOptions, Route, FRAGMENT_MULTIPLE};
use onedrive_syncd::graph::quickxor::{digest_of, to_base64};
use reqwest::header::{AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{redirect, Client, StatusCode};
use serde_json::{json, Value};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A fake plus a client holding a valid access token.
struct Harness {
    fake: FakeGraph,
    http: Client,
    token: String,
}

impl Harness {
    async fn new() -> Harness {
        Harness::with(FakeOptions::default()).await
    }

    async fn with(options: FakeOptions) -> Harness {
        let fake = FakeGraph::start(options).await;
        let http = Client::builder()
            .redirect(redirect::Policy::none())
            .build()
            .expect("client");
        let token = fake.issue_access_token();
        Harness { fake, http, token }
    }

    fn url(&self, graph_path: &str) -> String {
        format!("{}{graph_path}", self.fake.graph_url())
    }

    fn token_url(&self) -> String {
        format!("{}/consumers/oauth2/v2.0/token", self.fake.authority_url())
    }

    async fn get(&self, graph_path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(graph_path))
            .bearer_auth(&self.token)
            .send()
            .await;
        parts(response.expect("GET reaches the fake")).await
    }

    async fn put_content(&self, graph_path: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let request = self
            .http
            .put(self.url(graph_path))
            .bearer_auth(&self.token)
            .body(bytes);
        parts(request.send().await.expect("PUT reaches the fake")).await
    }

    async fn post_json(&self, graph_path: &str, body: &Value) -> (StatusCode, Value) {
        let request = self
            .http
            .post(self.url(graph_path))
            .bearer_auth(&self.token)
            .json(body);
        parts(request.send().await.expect("POST reaches the fake")).await
    }

    /// Creates a session and returns its upload URL.
    async fn session(&self, graph_path: &str, item: Value) -> String {
        let (status, body) = self.post_json(graph_path, &json!({ "item": item })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["nextExpectedRanges"], json!(["0-"]));
        body["uploadUrl"].as_str().expect("uploadUrl").to_owned()
    }

    /// PUTs `bytes` as the fragment starting at `start` of a `total`-byte file,
    /// without Authorization, as a correct client does.
    async fn fragment(
        &self,
        upload_url: &str,
        bytes: &[u8],
        start: u64,
        total: u64,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let end = start + bytes.len() as u64 - 1;
        let response = self
            .http
            .put(upload_url)
            .header(CONTENT_RANGE, format!("bytes {start}-{end}/{total}"))
            .body(bytes.to_vec())
            .send()
            .await?;
        Ok(parts(response).await)
    }

    async fn status(&self, upload_url: &str) -> (StatusCode, Value) {
        parts(
            self.http
                .get(upload_url)
                .send()
                .await
                .expect("status reaches the fake"),
        )
        .await
    }

    async fn token_form(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self.http.post(self.token_url()).form(form).send().await;
        parts(response.expect("token request reaches the fake")).await
    }
}

async fn parts(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Deterministic, non-repeating-looking test bytes.
fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8)
        .collect()
}

fn inner_code(body: &Value) -> &str {
    body["error"]["innerError"]["code"]
        .as_str()
        .unwrap_or_default()
}

fn assert_violation(fake: &FakeGraph, needle: &str) {
    let violations = fake.violations();
    assert!(
        violations.iter().any(|v| v.contains(needle)),
        "expected a violation mentioning {needle:?}, got {violations:?}"
    );
}

// ---- names ------------------------------------------------------------------

#[test]
fn name_rules_follow_personal_onedrive() {
    for c in ['"', '*', ':', '<', '>', '?', '/', '\\', '|'] {
        let problem = check_name(&format!("a{c}b")).expect_err("invalid character");
        assert_eq!(problem.inner_code, "nameContainsInvalidCharacters");
    }
    let reserved = [
        "CON",
        "con.txt",
        "Com1.log",
        "lpt9",
        ".lock",
        "Desktop.ini",
        "a_vti_b",
        "~$x",
    ];
    for name in reserved {
        assert!(check_name(name).is_err(), "{name} is reserved");
    }
    for name in [
        "console", "com10", "lock", "x~$", "a b", "100%.txt", "#1", ".env",
    ] {
        assert!(check_name(name).is_ok(), "{name} is allowed");
    }
    for name in [" a", "a ", "a."] {
        assert!(check_name(name).is_err(), "{name:?} has a bad edge");
    }
    assert!(check_path_length(&"a".repeat(399)).is_ok());
    assert!(check_path_length(&"a".repeat(400)).is_err());
    assert_eq!(renamed("report.tar.gz", 1, true), "report.tar 1.gz");
    assert_eq!(renamed("a.txt", 2, true), "a 2.txt");
    assert_eq!(renamed("v1.2", 1, false), "v1.2 1");
}

#[tokio::test]
async fn invalid_names_are_refused_with_their_inner_code() {
    let h = Harness::new().await;
    let cases = [
        (
            "/me/drive/root:/a/b%3Ac.txt:/content",
            "nameContainsInvalidCharacters",
        ),
        ("/me/drive/root:/a/CON.txt:/content", "invalidPath"),
        ("/me/drive/root:/a/trailing.:/content", "invalidPath"),
        ("/me/drive/root:/a/%20lead.txt:/content", "invalidPath"),
    ];
    for (path, code) in cases {
        let (status, body) = h.put_content(path, b"x".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(inner_code(&body), code, "{path}: {body}");
    }
    let long = format!("/me/drive/root:/{}/f.txt:/content", "d".repeat(400));
    let (status, body) = h.put_content(&long, b"x".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(inner_code(&body), "pathIsTooLong");
    assert_violation(&h.fake, "invalid name");
    assert!(h.fake.files().is_empty(), "nothing refused is stored");
    assert!(
        h.fake.folders().is_empty(),
        "no parent folder is created for a refused upload"
    );

    h.fake.clear_records();
    let (status, _) = h
        .put_content(
            "/me/drive/root:/a/100%25%20done%23.txt:/content",
            b"x".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        h.fake.file("/a/100% done#.txt").is_some(),
        "segments are decoded exactly once"
    );
    h.fake.assert_no_violations();
}

// ---- simple upload, items, folders ------------------------------------------

#[tokio::test]
async fn simple_upload_stores_the_bytes_and_their_quickxorhash() {
    let h = Harness::new().await;
    let bytes = data(100_000);
    let (status, item) = h
        .put_content("/me/drive/root:/Reports/Q1.csv:/content", bytes.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    let expected = to_base64(&digest_of(&bytes));
    assert_eq!(item["file"]["hashes"]["quickXorHash"], json!(expected));
    assert_eq!(item["size"], json!(100_000));
    assert_eq!(
        item["parentReference"]["path"],
        json!("/drive/root:/Reports")
    );
    let stored = h
        .fake
        .file("/reports/q1.CSV")
        .expect("case-insensitive lookup");
    assert_eq!(stored.path, "/Reports/Q1.csv");
    assert_eq!(stored.quick_xor_hash, expected);
    assert_eq!(h.fake.read_file("/Reports/Q1.csv"), Some(bytes));

    let (status, replaced) = h
        .put_content("/me/drive/root:/REPORTS/q1.csv:/content", data(10))
        .await;
    assert_eq!(status, StatusCode::OK, "replace is the PUT default");
    assert_eq!(replaced["id"], item["id"], "a replaced file keeps its id");
    assert_eq!(
        replaced["name"],
        json!("Q1.csv"),
        "a stored item keeps its original case"
    );
    assert_eq!(h.fake.files().len(), 1);

    let (status, by_id) = h
        .get(&format!("/me/drive/items/{}", item["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["size"], json!(10));
    let (status, body) = h.get("/me/drive/root:/Reports/missing.csv").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], json!("itemNotFound"));
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn simple_upload_honours_conflict_behaviour() {
    let h = Harness::new().await;
    h.fake.put_file("/d/b.txt", b"old");
    let fail = "/me/drive/root:/d/b.txt:/content?@microsoft.graph.conflictBehavior=fail";
    let (status, body) = h.put_content(fail, b"new".to_vec()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], json!("nameAlreadyExists"));
    assert_eq!(h.fake.read_file("/d/b.txt"), Some(b"old".to_vec()));

    let rename = "/me/drive/root:/d/b.txt:/content?@microsoft.graph.conflictBehavior=rename";
    let (status, body) = h.put_content(rename, b"new".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["name"], json!("b 1.txt"));
    let (_, body) = h.put_content(rename, b"newer".to_vec()).await;
    assert_eq!(body["name"], json!("b 2.txt"));
    h.fake.assert_no_violations();
}

fn folder(name: &str, behaviour: &str) -> Value {
    let mut body = json!({"name": name, "folder": {}});
    body["@microsoft.graph.conflictBehavior"] = behaviour.into();
    body
}

#[tokio::test]
async fn folder_creation_honours_conflict_behaviour() {
    let h = Harness::new().await;
    let (status, created) = h
        .post_json("/me/drive/root/children", &folder("Out", "fail"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    h.fake.put_file("/Out/keep.txt", b"k");

    let (status, body) = h
        .post_json("/me/drive/root/children", &folder("out", "fail"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], json!("nameAlreadyExists"));

    let (status, same) = h
        .post_json("/me/drive/root/children", &folder("Out", "replace"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["id"], created["id"]);
    assert!(
        h.fake.file("/Out/keep.txt").is_some(),
        "replace keeps the folder's contents"
    );

    let (status, renamed) = h
        .post_json("/me/drive/root/children", &folder("Out", "rename"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(renamed["name"], json!("Out 1"));

    let id = created["id"].as_str().unwrap();
    let (status, _) = h
        .post_json(
            &format!("/me/drive/items/{id}/children"),
            &folder("Sub", "fail"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = h
        .post_json("/me/drive/root:/Out/Sub:/children", &folder("Deep", "fail"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = h
        .post_json("/me/drive/root:/Nope:/children", &folder("X", "fail"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a missing parent is 404");
    assert_eq!(
        h.fake.folders(),
        vec!["/Out", "/Out 1", "/Out/Sub", "/Out/Sub/Deep"]
    );
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn children_are_paged_with_absolute_next_links() {
    let h = Harness::new().await;
    for i in 0..450 {
        h.fake.put_file(&format!("/many/f{i:03}.txt"), b"x");
    }
    let mut next = Some(h.url("/me/drive/root:/many:/children"));
    let mut names = Vec::new();
    let mut pages = 0;
    while let Some(url) = next {
        assert!(
            url.starts_with(&h.fake.base_url()),
            "nextLink is absolute: {url}"
        );
        let response = h
            .http
            .get(&url)
            .bearer_auth(&h.token)
            .send()
            .await
            .expect("page");
        let (status, page) = parts(response).await;
        assert_eq!(status, StatusCode::OK);
        let items = page["value"].as_array().expect("value");
        assert!(items.len() <= 200, "default page size is 200");
        names.extend(items.iter().map(|i| i["name"].as_str().unwrap().to_owned()));
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 3);
    names.dedup();
    assert_eq!(names.len(), 450, "every child exactly once");

    let (_, page) = h.get("/me/drive/root:/many:/children?$top=5000").await;
    assert_eq!(
        page["value"].as_array().unwrap().len(),
        450,
        "$top is honoured up to 1000"
    );
    assert!(page.get("@odata.nextLink").is_none());
    let (_, page) = h.get("/me/drive/root:/many:/children?$top=100").await;
    assert_eq!(page["value"].as_array().unwrap().len(), 100);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn graph_requests_need_a_valid_bearer_token() {
    let h = Harness::new().await;
    let response = h
        .http
        .get(h.url("/me/drive"))
        .send()
        .await
        .expect("reaches the fake");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let (_, body) = parts(response).await;
    assert_eq!(body["error"]["code"], json!("InvalidAuthenticationToken"));
    assert_violation(&h.fake, "without an Authorization header");

    h.fake.clear_records();
    let (status, drive) = h.get("/me/drive").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(drive["driveType"], json!("personal"));
    assert!(drive["quota"]["remaining"].as_u64().is_some());

    h.fake.expire_access_tokens();
    let (status, body) = h.get("/me/drive").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], json!("InvalidAuthenticationToken"));
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn content_download_redirects_to_the_bytes() {
    let h = Harness::new().await;
    h.fake.put_file("/dl/me.bin", &data(5000));
    let response = h
        .http
        .get(h.url("/me/drive/root:/dl/me.bin:/content"))
        .bearer_auth(&h.token)
        .send()
        .await
        .expect("reaches the fake");
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let bytes = h
        .http
        .get(location)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.to_vec(), data(5000));
}

// ---- upload sessions --------------------------------------------------------

#[tokio::test]
async fn session_upload_in_aligned_fragments_completes_with_the_right_hash() {
    let h = Harness::new().await;
    h.fake.put_file("/big/.keep", b"");
    let bytes = data(FRAGMENT_MULTIPLE as usize * 2 + 1234);
    let total = bytes.len() as u64;
    let url = h
        .session(
            "/me/drive/root:/big/file.bin:/createUploadSession",
            json!({
                "@microsoft.graph.conflictBehavior": "replace",
                "name": "file.bin",
                "fileSize": total,
            }),
        )
        .await;
    let mut start = 0u64;
    for chunk in bytes.chunks(FRAGMENT_MULTIPLE as usize * 2) {
        let (status, body) = h
            .fragment(&url, chunk, start, total)
            .await
            .expect("fragment");
        start += chunk.len() as u64;
        if start < total {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            assert_eq!(body["nextExpectedRanges"], json!([format!("{start}-")]));
        } else {
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(
                body["file"]["hashes"]["quickXorHash"],
                json!(to_base64(&digest_of(&bytes)))
            );
        }
    }
    assert_eq!(h.fake.read_file("/big/file.bin"), Some(bytes));
    let (status, body) = h.status(&url).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a completed session is gone");
    assert_eq!(inner_code(&body), "uploadSessionNotFound");
    assert_eq!(h.fake.live_sessions(), 0);
    let fragments: Vec<_> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.route == Route::Fragment)
        .collect();
    assert_eq!(fragments.len(), 2);
    assert!(fragments
        .iter()
        .all(|r| !r.had_authorization && r.session_id.is_some()));
    assert_eq!(
        fragments[1].content_range,
        Some((655_360, total - 1, total))
    );
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn session_needs_an_existing_parent_and_fails_on_a_taken_name() {
    let h = Harness::new().await;
    let (status, body) = h
        .post_json(
            "/me/drive/root:/nowhere/f.bin:/createUploadSession",
            &json!({"item": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    h.fake.put_file("/here/f.bin", b"taken");
    let (status, body) = h
        .post_json(
            "/me/drive/root:/here/F.BIN:/createUploadSession",
            &json!({"item": {}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the session default is fail: {body}"
    );
    assert_eq!(body["error"]["code"], json!("nameAlreadyExists"));

    let (status, body) = h
        .post_json(
            "/me/drive/root:/here/g.bin:/createUploadSession",
            &json!({"item": {"name": "other.bin"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_violation(&h.fake, "item.name");

    let (status, body) = h
        .post_json(
            "/me/drive/root:/here/h.bin:/createUploadSession",
            &json!({"item": {"fileSize": 251u64 << 30}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(inner_code(&body), "maxFileSizeExceeded");

    h.fake.set_quota_total(1 << 20);
    let (status, body) = h
        .post_json(
            "/me/drive/root:/here/h.bin:/createUploadSession",
            &json!({"item": {"fileSize": 2 << 20}}),
        )
        .await;
    assert_eq!(status.as_u16(), 507, "{body}");
    assert_eq!(body["error"]["code"], json!("quotaLimitReached"));
}

#[tokio::test]
async fn second_session_for_the_same_file_is_refused_until_the_first_is_cancelled() {
    let h = Harness::new().await;
    h.fake.put_file("/s/.keep", b"");
    let path = "/me/drive/root:/s/one.bin:/createUploadSession";
    let first = h.session(path, json!({})).await;
    let (status, body) = h
        .post_json("/me/drive/root:/s/ONE.bin:/createUploadSession", &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], json!("nameAlreadyExists"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("upload session already exists"));

    let response = h.http.delete(&first).send().await.expect("cancel");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = h.status(&first).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.session(path, json!({})).await;
    assert_eq!(h.fake.sessions_created(), 2);
    assert_eq!(h.fake.live_sessions(), 1);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn a_name_taken_during_the_session_fails_the_last_fragment() {
    let h = Harness::new().await;
    h.fake.put_file("/r/.keep", b"");
    let url = h
        .session("/me/drive/root:/r/f.bin:/createUploadSession", json!({}))
        .await;
    h.fake.put_file("/r/F.bin", b"someone else");
    let (status, body) = h.fragment(&url, &data(10), 0, 10).await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], json!("nameAlreadyExists"));
    assert_eq!(h.fake.read_file("/r/f.bin"), Some(b"someone else".to_vec()));
    let (status, body) = h.status(&url).await;
    assert_eq!(status, StatusCode::OK, "the session survives the conflict");
    assert_eq!(body["nextExpectedRanges"], json!([]));
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn misaligned_fragment_is_refused_and_recorded() {
    let h = Harness::new().await;
    h.fake.put_file("/m/.keep", b"");
    let bytes = data(FRAGMENT_MULTIPLE as usize + 10);
    let total = bytes.len() as u64;
    let url = h
        .session("/me/drive/root:/m/f.bin:/createUploadSession", json!({}))
        .await;
    let (status, _) = h.fragment(&url, &bytes[..100_000], 0, total).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_violation(&h.fake, "not a multiple of 320 KiB");

    let (status, _) = h
        .fragment(&url, &bytes[..FRAGMENT_MULTIPLE as usize], 0, total)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = h
        .fragment(
            &url,
            &bytes[FRAGMENT_MULTIPLE as usize..],
            FRAGMENT_MULTIPLE,
            total,
        )
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the last fragment may be any length"
    );
    assert_eq!(h.fake.read_file("/m/f.bin"), Some(bytes));
}

#[tokio::test]
async fn overlapping_fragment_is_416_and_counted_as_resent() {
    let h = Harness::new().await;
    h.fake.put_file("/o/.keep", b"");
    let bytes = data(FRAGMENT_MULTIPLE as usize * 3);
    let total = bytes.len() as u64;
    let step = FRAGMENT_MULTIPLE as usize;
    let url = h
        .session("/me/drive/root:/o/f.bin:/createUploadSession", json!({}))
        .await;
    h.fragment(&url, &bytes[..step], 0, total).await.unwrap();
    let (status, body) = h.fragment(&url, &bytes[..step], 0, total).await.unwrap();
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(body["error"]["code"], json!("invalidRange"));
    assert_eq!(inner_code(&body), "fragmentOverlap");
    assert_eq!(h.fake.bytes_resent(), FRAGMENT_MULTIPLE);
    assert_eq!(h.fake.overlapping_fragments(), 1);

    let (_, status_body) = h.status(&url).await;
    assert_eq!(
        status_body["nextExpectedRanges"],
        json!([format!("{step}-")])
    );
    let (status, _) = h
        .fragment(&url, &bytes[step..], step as u64, total)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        h.fake.read_file("/o/f.bin"),
        Some(bytes),
        "the resent bytes were not stored twice"
    );
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn fragment_past_the_next_expected_byte_is_a_gap() {
    let h = Harness::new().await;
    h.fake.put_file("/g/.keep", b"");
    let bytes = data(FRAGMENT_MULTIPLE as usize * 3);
    let total = bytes.len() as u64;
    let step = FRAGMENT_MULTIPLE as usize;
    let url = h
        .session("/me/drive/root:/g/f.bin:/createUploadSession", json!({}))
        .await;
    let (status, body) = h
        .fragment(&url, &bytes[step..step * 2], step as u64, total)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(inner_code(&body), "fragmentOutOfOrder");
    assert_violation(&h.fake, "gap");
}

#[tokio::test]
async fn content_length_must_match_content_range() {
    let h = Harness::new().await;
    h.fake.put_file("/l/.keep", b"");
    let url = h
        .session("/me/drive/root:/l/f.bin:/createUploadSession", json!({}))
        .await;
    let body = data(1000);
    let response = h
        .http
        .put(&url)
        .header(CONTENT_RANGE, "bytes 0-1999/2000")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_violation(
        &h.fake,
        "Content-Length 1000 but Content-Range covers 2000 bytes",
    );

    let (status, _) = h.fragment(&url, &body, 0, 1000).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn total_must_match_the_declared_file_size() {
    let h = Harness::new().await;
    h.fake.put_file("/t/.keep", b"");
    let bytes = data(4096);
    let url = h
        .session(
            "/me/drive/root:/t/f.bin:/createUploadSession",
            json!({"fileSize": 4096}),
        )
        .await;
    let (status, body) = h.fragment(&url, &bytes, 0, 8192).await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(inner_code(&body), "fragmentLengthMismatch");
    assert_violation(&h.fake, "session total is 4096");

    let (status, _) = h.fragment(&url, &bytes, 0, 4096).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn fragment_of_60_mib_is_too_large() {
    let h = Harness::new().await;
    h.fake.put_file("/x/.keep", b"");
    let size = 60 * 1024 * 1024;
    let url = h
        .session("/me/drive/root:/x/f.bin:/createUploadSession", json!({}))
        .await;
    let (status, body) = h
        .fragment(&url, &vec![7u8; size], 0, size as u64 * 2)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(inner_code(&body), "maxFragmentLengthExceeded");
    assert_violation(&h.fake, "under 60 MiB");
}

#[tokio::test]
async fn authorization_on_an_upload_url_is_refused() {
    let h = Harness::new().await;
    h.fake.put_file("/a/.keep", b"");
    let url = h
        .session("/me/drive/root:/a/f.bin:/createUploadSession", json!({}))
        .await;
    let response = h
        .http
        .put(&url)
        .header(AUTHORIZATION, format!("Bearer {}", h.token))
        .header(CONTENT_RANGE, "bytes 0-9/10")
        .body(data(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_violation(&h.fake, "Authorization header sent to an upload URL");
    let record = h
        .fake
        .requests()
        .into_iter()
        .find(|r| r.route == Route::Fragment)
        .unwrap();
    assert!(record.had_authorization);

    let (status, _) = h.fragment(&url, &data(10), 0, 10).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn zero_byte_files_cannot_go_through_a_session() {
    let h = Harness::new().await;
    h.fake.put_file("/z/.keep", b"");
    let url = h
        .session(
            "/me/drive/root:/z/empty.txt:/createUploadSession",
            json!({}),
        )
        .await;
    let response = h
        .http
        .put(&url)
        .header(CONTENT_RANGE, "bytes 0--1/0")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_violation(&h.fake, "Content-Range");

    let (status, item) = h
        .put_content("/me/drive/root:/z/empty2.txt:/content", Vec::new())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(item["size"], json!(0));
    assert_eq!(
        item["file"]["hashes"]["quickXorHash"],
        json!("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    );
}

#[tokio::test]
async fn expired_sessions_answer_404() {
    let h = Harness::new().await;
    h.fake.put_file("/e/.keep", b"");
    let url = h
        .session("/me/drive/root:/e/f.bin:/createUploadSession", json!({}))
        .await;
    let step = FRAGMENT_MULTIPLE as usize;
    let (status, _) = h
        .fragment(&url, &data(step), 0, step as u64 * 2)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    h.fake.expire_sessions();
    let (status, body) = h
        .fragment(&url, &data(step), step as u64, step as u64 * 2)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(inner_code(&body), "uploadSessionNotFound");
    let (status, _) = h.status(&url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(h.fake.files().iter().all(|f| f.path != "/e/f.bin"));
    h.session("/me/drive/root:/e/f.bin:/createUploadSession", json!({}))
        .await;
}

#[tokio::test]
async fn sessions_past_their_hard_age_cap_answer_as_configured() {
    let options = FakeOptions {
        session_max_age: Duration::ZERO,
        session_max_age_status: 401,
        ..FakeOptions::default()
    };
    let h = Harness::with(options).await;
    h.fake.put_file("/c/.keep", b"");
    let url = h
        .session("/me/drive/root:/c/f.bin:/createUploadSession", json!({}))
        .await;
    let (status, body) = h.status(&url).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(inner_code(&body), "expiredToken");
}

// ---- faults -----------------------------------------------------------------

#[tokio::test]
async fn lost_fragment_response_keeps_the_bytes_and_the_status_tells() {
    let h = Harness::new().await;
    h.fake.put_file("/f/.keep", b"");
    let bytes = data(FRAGMENT_MULTIPLE as usize * 2);
    let total = bytes.len() as u64;
    let step = FRAGMENT_MULTIPLE as usize;
    let url = h
        .session("/me/drive/root:/f/f.bin:/createUploadSession", json!({}))
        .await;
    h.fake.lose_next_fragment_response(1);
    let lost = h.fragment(&url, &bytes[..step], 0, total).await;
    assert!(lost.is_err(), "the client hears nothing: {lost:?}");
    let (_, status) = h.status(&url).await;
    assert_eq!(
        status["nextExpectedRanges"],
        json!([format!("{step}-")]),
        "the bytes were stored"
    );
    let (status, _) = h
        .fragment(&url, &bytes[step..], step as u64, total)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(h.fake.read_file("/f/f.bin"), Some(bytes));
    assert!(h.fake.requests().iter().any(|r| r.response_lost));
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn cut_connection_commits_nothing_of_the_fragment() {
    let h = Harness::new().await;
    h.fake.put_file("/k/.keep", b"");
    let bytes = data(FRAGMENT_MULTIPLE as usize * 2);
    let total = bytes.len() as u64;
    let step = FRAGMENT_MULTIPLE as usize;
    let url = h
        .session("/me/drive/root:/k/f.bin:/createUploadSession", json!({}))
        .await;
    h.fake.cut_connection_after(100_000);
    assert!(h.fragment(&url, &bytes[..step], 0, total).await.is_err());
    let (_, status) = h.status(&url).await;
    assert_eq!(status["nextExpectedRanges"], json!(["0-"]));
    h.fragment(&url, &bytes[..step], 0, total).await.unwrap();
    let (status, _) = h
        .fragment(&url, &bytes[step..], step as u64, total)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(h.fake.read_file("/k/f.bin"), Some(bytes));
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn a_client_timeout_mid_fragment_leaves_the_session_usable() {
    let h = Harness::new().await;
    h.fake.put_file("/to/.keep", b"");
    let step = FRAGMENT_MULTIPLE as usize;
    let bytes = data(step * 2);
    let total = bytes.len() as u64;
    let url = h
        .session("/me/drive/root:/to/f.bin:/createUploadSession", json!({}))
        .await;
    h.fake.set_bandwidth(Some(200_000));
    let slow = h
        .http
        .put(&url)
        .header(CONTENT_RANGE, format!("bytes 0-{}/{total}", step - 1))
        .body(bytes[..step].to_vec())
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(slow.is_err(), "the client gave up: {slow:?}");
    h.fake.set_bandwidth(None);

    let (status, body) = h.fragment(&url, &bytes[..step], 0, total).await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = h
        .fragment(&url, &bytes[step..], step as u64, total)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(h.fake.read_file("/to/f.bin"), Some(bytes));
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn lost_final_response_still_completes_the_file() {
    let h = Harness::new().await;
    h.fake.put_file("/n/.keep", b"");
    let bytes = data(5000);
    let url = h
        .session("/me/drive/root:/n/f.bin:/createUploadSession", json!({}))
        .await;
    h.fake.lose_response_of_final_fragment();
    assert!(h.fragment(&url, &bytes, 0, 5000).await.is_err());
    let stored = h.fake.file("/n/f.bin").expect("the file completed");
    assert_eq!(stored.quick_xor_hash, to_base64(&digest_of(&bytes)));
    let (status, _) = h.status(&url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn corrupted_file_reports_the_hash_of_what_is_stored() {
    let h = Harness::new().await;
    let bytes = data(10_000);
    h.fake.corrupt_next_stored_file();
    let (status, item) = h
        .put_content("/me/drive/root:/bad.bin:/content", bytes.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let stored = h.fake.read_file("/bad.bin").unwrap();
    assert_ne!(stored, bytes);
    let reported = item["file"]["hashes"]["quickXorHash"].as_str().unwrap();
    assert_ne!(reported, to_base64(&digest_of(&bytes)));
    assert_eq!(reported, to_base64(&digest_of(&stored)));
}

#[tokio::test]
async fn injected_failures_hit_only_their_route_and_count() {
    let h = Harness::new().await;
    h.fake.put_file("/i/.keep", b"");
    let url = h
        .session("/me/drive/root:/i/f.bin:/createUploadSession", json!({}))
        .await;
    h.fake.fail_next(Route::Fragment, 503, 2, None);
    let (status, _) = h.get("/me/drive").await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..2 {
        let (status, body) = h.fragment(&url, &data(10), 0, 10).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], json!("serviceNotAvailable"));
    }
    let (status, _) = h.fragment(&url, &data(10), 0, 10).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn retry_after_must_be_obeyed_pool_wide() {
    let h = Harness::new().await;
    h.fake.fail_next(Route::Drive, 429, 1, Some(1));
    let response = h
        .http
        .get(h.url("/me/drive"))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    let (_, body) = parts(response).await;
    assert_eq!(body["error"]["code"], json!("activityLimitReached"));

    // An immediate retry, on another route but the same connection: it was
    // sent after the 429 arrived, so it broke the window.
    let (status, _) = h.get("/me/drive/root").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_violation(&h.fake, "before the announced Retry-After of 1 s ended");

    h.fake.clear_records();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _) = h.get("/me/drive").await;
    assert_eq!(status, StatusCode::OK);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn rate_limit_answers_429_beyond_the_limit() {
    let h = Harness::new().await;
    h.fake.set_rate_limit(Some(2));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(h.get("/me/drive").await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn concurrent_uploads_are_counted() {
    let h = Harness::new().await;
    h.fake.set_latency(Duration::from_millis(500));
    let uploads =
        (0..3).map(|i| h.put_content_owned(format!("/me/drive/root:/p/{i}.txt:/content")));
    let results = futures_util::future::join_all(uploads).await;
    assert!(results
        .iter()
        .all(|(status, _)| *status == StatusCode::CREATED));
    assert_eq!(h.fake.peak_concurrent_uploads(), 3);
}

impl Harness {
    async fn put_content_owned(&self, graph_path: String) -> (StatusCode, Value) {
        self.put_content(&graph_path, b"x".to_vec()).await
    }
}

// ---- identity ---------------------------------------------------------------

async fn start_device_login(h: &Harness, scope: &str) -> String {
    let url = format!(
        "{}/consumers/oauth2/v2.0/devicecode",
        h.fake.authority_url()
    );
    let form = [
        ("client_id", h.fake.client_id()),
        ("scope", scope.to_owned()),
    ];
    let (status, body) = parts(h.http.post(url).form(&form).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for field in [
        "user_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    ] {
        assert!(body.get(field).is_some(), "devicecode response has {field}");
    }
    body["device_code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn device_code_login_is_pending_then_issues_tokens() {
    let options = FakeOptions {
        device_code_interval_secs: 0,
        ..FakeOptions::default()
    };
    let h = Harness::with(options).await;
    let code = start_device_login(&h, "Files.ReadWrite offline_access").await;
    let client_id = h.fake.client_id();
    let poll = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", &client_id),
        ("device_code", &code),
    ];
    let (status, body) = h.token_form(&poll).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], json!("authorization_pending"));
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADSTS"));
    assert!(body["error_codes"].is_array());

    let (status, tokens) = h.token_form(&poll).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], json!("Bearer"));
    assert!(tokens["refresh_token"].is_string());
    let access = tokens["access_token"].as_str().unwrap();
    let response = h
        .http
        .get(h.url("/me/drive"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn polling_faster_than_the_interval_gets_slow_down() {
    let options = FakeOptions {
        auto_approve_device_code: false,
        ..FakeOptions::default()
    };
    let h = Harness::with(options).await;
    let code = start_device_login(&h, "Files.ReadWrite offline_access").await;
    let client_id = h.fake.client_id();
    let poll = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", &client_id),
        ("device_code", &code),
    ];
    let (_, body) = h.token_form(&poll).await;
    assert_eq!(body["error"], json!("authorization_pending"));
    let (_, body) = h.token_form(&poll).await;
    assert_eq!(body["error"], json!("slow_down"));
    assert_violation(&h.fake, "polled faster than its interval (now 6 s)");
}

#[tokio::test]
async fn declined_login_and_missing_offline_access() {
    let options = FakeOptions {
        auto_approve_device_code: false,
        device_code_interval_secs: 0,
        ..FakeOptions::default()
    };
    let h = Harness::with(options).await;
    let client_id = h.fake.client_id();
    let code = start_device_login(&h, "Files.ReadWrite offline_access").await;
    h.fake.decline_device_code();
    let poll = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", &client_id),
        ("device_code", &code),
    ];
    let (_, body) = h.token_form(&poll).await;
    assert_eq!(body["error"], json!("authorization_declined"));

    let code = start_device_login(&h, "Files.ReadWrite").await;
    h.fake.approve_device_code();
    let poll = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", &client_id),
        ("device_code", &code),
    ];
    let (status, tokens) = h.token_form(&poll).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        tokens.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
}

#[tokio::test]
async fn identity_requests_must_be_forms_from_the_known_client() {
    let h = Harness::new().await;
    let (status, body) = h
        .token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "someone-else"),
        ])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], json!("invalid_client"));
    assert_eq!(body["error_codes"], json!([700016]));

    let response = h
        .http
        .post(h.token_url())
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"grant_type":"refresh_token"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_violation(&h.fake, "not a form");
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_is_refused() {
    let h = Harness::new().await;
    let client_id = h.fake.client_id();
    let first = h.fake.issue_refresh_token();
    let refresh = |token: &str| {
        [
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", client_id.clone()),
            ("refresh_token", token.to_owned()),
        ]
    };
    let response = h
        .http
        .post(h.token_url())
        .form(&refresh(&first))
        .send()
        .await
        .unwrap();
    let (status, tokens) = parts(response).await;
    assert_eq!(status, StatusCode::OK);
    let second = tokens["refresh_token"]
        .as_str()
        .expect("a rotated refresh token")
        .to_owned();
    assert_ne!(second, first);
    assert!(tokens["expires_in"].as_u64().is_some());

    let response = h
        .http
        .post(h.token_url())
        .form(&refresh(&first))
        .send()
        .await
        .unwrap();
    let (status, body) = parts(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], json!("invalid_grant"));
    assert_violation(&h.fake, "reused after it was rotated");

    h.fake.clear_records();
    h.fake.revoke_refresh_tokens();
    let response = h
        .http
        .post(h.token_url())
        .form(&refresh(&second))
        .send()
        .await
        .unwrap();
    let (status, body) = parts(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], json!("invalid_grant"));
    h.fake.assert_no_violations();
}

#[tokio::test]
async fn authorization_code_flow_checks_the_pkce_verifier() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};

    let h = Harness::new().await;
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect_uri = "http://localhost:53682/";
    let authorize = format!("{}/consumers/oauth2/v2.0/authorize", h.fake.authority_url());
    let query = [
        ("client_id", h.fake.client_id()),
        ("response_type", "code".to_owned()),
        ("redirect_uri", redirect_uri.to_owned()),
        ("scope", "Files.ReadWrite offline_access".to_owned()),
        ("state", "xyz".to_owned()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".to_owned()),
    ];
    let response = h.http.get(&authorize).query(&query).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = url::Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap();
    let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "xyz");
    let code = pairs["code"].clone();

    let client_id = h.fake.client_id();
    let redeem = |verifier: &str| {
        [
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", client_id.clone()),
            ("code", code.clone()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    let response = h
        .http
        .post(h.token_url())
        .form(&redeem("wrong-verifier"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_violation(&h.fake, "code_verifier does not match");

    let response = h.http.get(&authorize).query(&query).send().await.unwrap();
    let location = url::Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    let (status, tokens) = h.token_form(&form).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens["refresh_token"].is_string());
}
