//! `onedrive-syncd login` end to end, run as the real binary against the strict
//! fake: the device-code flow (with a `slow_down` from the server), the PKCE
//! flow with a pasted URL, and the refusals an admin has to understand.

mod common;
mod fake_graph;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::Duration;

use common::{describe, failure, success, Endpoints, TestHome, SMALL_UPLOADS};
use fake_graph::{FakeGraph, FakeOptions, Route};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStderr};

async fn start(options: FakeOptions) -> (FakeGraph, TestHome) {
    let fake = FakeGraph::start(options).await;
    let endpoints = Endpoints {
        graph_url: fake.graph_url(),
        authority_url: fake.authority_url(),
        client_id: fake.client_id(),
    };
    let home = TestHome::new(&endpoints, SMALL_UPLOADS);
    (fake, home)
}

fn spawn(home: &TestHome, args: &[&str]) -> Child {
    home.command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting onedrive-syncd")
}

/// Reads stderr lines until one satisfies `wanted`; returns it and everything
/// read so far.
async fn read_until(
    stderr: &mut BufReader<ChildStderr>,
    wanted: impl Fn(&str) -> bool,
) -> (String, String) {
    let mut seen = String::new();
    let read = async {
        loop {
            let mut line = String::new();
            let n = stderr.read_line(&mut line).await.expect("reading stderr");
            assert!(n > 0, "stderr ended before the expected line; got:\n{seen}");
            seen.push_str(&line);
            if wanted(&line) {
                return line;
            }
        }
    };
    // A bound on waiting only, so that a hung child fails the test instead of
    // hanging it.
    let line = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("no prompt");
    (line, seen)
}

/// Waits for the child and returns its output, with the stderr read so far
/// prepended.
async fn finish(mut child: Child, mut stderr: BufReader<ChildStderr>, seen: String) -> Output {
    let mut rest = String::new();
    stderr
        .read_to_string(&mut rest)
        .await
        .expect("reading stderr");
    let mut stdout = String::new();
    let mut pipe = child.stdout.take().expect("stdout is piped");
    pipe.read_to_string(&mut stdout)
        .await
        .expect("reading stdout");
    let status = child.wait().await.expect("waiting for onedrive-syncd");
    std::process::Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: format!("{seen}{rest}").into_bytes(),
    }
}

type Output = std::process::Output;

fn drive_line(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("drive:"))
        .unwrap_or_default()
        .to_string()
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn device_code_login_stores_the_token_and_binds_the_drive() {
    let (fake, home) = start(FakeOptions::default()).await;
    let output = home.run(&["login"]).await;
    let stdout = success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(stderr.contains("enter the code"), "{}", describe(&output));
    assert!(
        stderr.contains("created the token encryption key"),
        "{}",
        describe(&output)
    );
    assert!(stdout.contains("signed in"), "{stdout}");
    assert_eq!(mode_of(&home.key_path()), 0o600);
    assert_eq!(mode_of(&home.token_path()), 0o600);

    let account = home
        .store()
        .load_blocking()
        .unwrap()
        .unwrap()
        .account
        .unwrap();
    assert!(!account.drive_id.is_empty());
    assert!(drive_line(&stdout).contains(&account.drive_id), "{stdout}");

    let whoami = success(&home.run(&["whoami"]).await);
    assert_eq!(drive_line(&whoami), drive_line(&stdout));
    assert!(whoami.contains("quota:"), "{whoami}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn device_code_login_honours_slow_down() {
    let options = FakeOptions {
        auto_approve_device_code: false,
        ..FakeOptions::default()
    };
    let (fake, home) = start(options).await;
    fake.slow_down_next_polls(1);

    let mut child = spawn(&home, &["login"]);
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let (_, seen) = read_until(&mut stderr, |l| l.contains("enter the code")).await;
    fake.approve_device_code();
    let output = finish(child, stderr, seen).await;
    success(&output);

    let polls: Vec<u16> = fake
        .requests()
        .iter()
        .filter(|r| r.route == Route::Token)
        .map(|r| r.status)
        .collect();
    assert_eq!(polls, [400, 200], "one slow_down, then the token");
    // The fake records a violation for any poll sooner than the interval plus 5
    // s.
    fake.assert_no_violations();
}

#[tokio::test]
async fn pkce_login_accepts_the_pasted_redirect_url() {
    let (fake, home) = start(FakeOptions::default()).await;
    let mut child = spawn(&home, &["login", "--pkce"]);
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let (line, seen) = read_until(&mut stderr, |l| l.contains("/oauth2/v2.0/authorize")).await;

    // The admin's browser: follow the sign-in URL to where it redirects.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(line.trim()).send().await.unwrap();
    assert_eq!(response.status(), 302);
    let landed = response.headers()["location"].to_str().unwrap().to_string();
    assert!(landed.contains("code="), "{landed}");

    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(format!("{landed}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = finish(child, stderr, seen).await;
    let stdout = success(&output);
    assert!(stdout.contains("signed in"), "{}", describe(&output));
    success(&home.run(&["whoami"]).await);
    fake.assert_no_violations();
}

#[tokio::test]
async fn a_pasted_url_from_another_sign_in_is_refused() {
    let (fake, home) = start(FakeOptions::default()).await;
    let pasted = format!(
        "{}/common/oauth2/nativeclient?code=x&state=other\n",
        fake.base_url()
    );
    let stderr = failure(
        &home
            .run_with_stdin(&["login", "--pkce"], pasted.as_bytes())
            .await,
    );
    assert!(stderr.contains("belongs to another sign-in"), "{stderr}");
    assert!(!home.token_path().exists());
    assert!(fake.requests().iter().all(|r| r.route != Route::Token));
    fake.assert_no_violations();
}

#[tokio::test]
async fn a_declined_sign_in_is_explained() {
    let options = FakeOptions {
        auto_approve_device_code: false,
        ..FakeOptions::default()
    };
    let (fake, home) = start(options).await;
    let mut child = spawn(&home, &["login"]);
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let (_, seen) = read_until(&mut stderr, |l| l.contains("enter the code")).await;
    fake.decline_device_code();

    let output = finish(child, stderr, seen).await;
    let stderr = failure(&output);
    assert!(stderr.contains("the sign-in was declined"), "{stderr}");
    assert!(!home.token_path().exists());
    fake.assert_no_violations();
}

#[tokio::test]
async fn an_expired_code_is_explained() {
    let options = FakeOptions {
        auto_approve_device_code: false,
        device_code_lifetime: Duration::from_secs(2),
        ..FakeOptions::default()
    };
    let (fake, home) = start(options).await;
    let stderr = failure(&home.run(&["login"]).await);
    assert!(stderr.contains("sign-in code expired"), "{stderr}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn an_unknown_client_id_is_explained() {
    let fake = FakeGraph::start(FakeOptions::default()).await;
    let endpoints = Endpoints {
        graph_url: fake.graph_url(),
        authority_url: fake.authority_url(),
        client_id: "not-registered".into(),
    };
    let home = TestHome::new(&endpoints, SMALL_UPLOADS);
    let stderr = failure(&home.run(&["login"]).await);
    assert!(
        stderr.contains("does not know the application id `not-registered`"),
        "{stderr}"
    );
    assert!(stderr.contains("application.client_id"), "{stderr}");
    fake.assert_no_violations();
}

#[tokio::test]
async fn plain_http_is_refused_for_remote_hosts() {
    let endpoints = Endpoints {
        graph_url: "http://graph.example.com/v1.0".into(),
        authority_url: "http://login.example.com".into(),
        client_id: "c".into(),
    };
    let home = TestHome::new(&endpoints, SMALL_UPLOADS);
    let stderr = failure(&home.run(&["login"]).await);
    assert!(stderr.contains("must use https"), "{stderr}");
}
