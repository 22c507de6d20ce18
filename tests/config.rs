//! Configuration: the example is valid, every class of mistake names its line
//! and column, and the environment overrides the file.

use std::path::{Path, PathBuf};
use std::process::Command;

use onedrive_syncd::config::{
    AfterUpload, Config, ConfigError, ConfigErrors, ConflictPolicy, Location,
};

const BINARY: &str = env!("CARGO_BIN_EXE_onedrive-syncd");

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_with_env(text, &[])
}

fn parse_with_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::parse(Path::new("config.toml"), text, env)
}

fn single_error(text: &str) -> ConfigError {
    let errors = parse(text).expect_err("configuration should be refused").0;
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one error, got {errors:?}"
    );
    errors.into_iter().next().expect("one error")
}

fn line_and_column(error: &ConfigError) -> (usize, usize) {
    match error.location() {
        Some(Location::File { line, column, .. }) => (*line, *column),
        other => panic!("error has no file position: {other:?} ({error})"),
    }
}

const MINIMAL: &str = r#"
[[mapping]]
local_path = "/var/outbox/a"
remote_path = "/A"
"#;

#[test]
fn example_config_is_valid_and_documents_its_mapping() {
    let config = Config::load_with_env(&example_path(), std::iter::empty()).expect("example valid");
    assert_eq!(config.uploader.workers, 5);
    assert_eq!(config.uploader.fragment_size_bytes, 10 * 1024 * 1024);
    assert_eq!(config.mappings.len(), 1);
    let mapping = &config.mappings[0];
    assert_eq!(mapping.remote_path, vec!["Backups", "reports"]);
    assert_eq!(mapping.conflict, ConflictPolicy::Rename);
    assert_eq!(
        mapping.after_upload,
        AfterUpload::MoveTo("/var/outbox-done/reports".into())
    );
}

#[test]
fn check_config_accepts_the_example_and_prints_the_mapping() {
    let output = Command::new(BINARY)
        .arg("check-config")
        .arg(example_path())
        .env_remove("ONEDRIVE_SYNCD_CONFIG")
        .output()
        .expect("run binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("/var/outbox/reports → /Backups/reports"),
        "{stdout}"
    );
}

#[test]
fn check_config_lists_every_error_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    let text = "[uploader]\nworkers = 0\nfragment_size = \"1000 KiB\"\n";
    std::fs::write(&path, text).expect("write");
    let output = Command::new(BINARY)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml line 2, column 11"), "{stderr}");
    assert!(stderr.contains("bad.toml line 3, column 17"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn defaults_fill_everything_left_out() {
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(config.application.tenant, "consumers");
    assert_eq!(
        config.application.graph_url.as_str(),
        "https://graph.microsoft.com/v1.0"
    );
    assert_eq!(
        config.uploader.simple_upload_threshold_bytes,
        4 * 1024 * 1024
    );
    assert_eq!(config.uploader.retries, 3);
    let mapping = &config.mappings[0];
    assert!(mapping.recursive);
    assert_eq!(mapping.conflict, ConflictPolicy::Fail);
    assert_eq!(mapping.after_upload, AfterUpload::Delete);
}

#[test]
fn unknown_key_names_line_column_and_closest_key() {
    let text = "[[mapping]]\nlocal_path = \"/a\"\nremote_pth = \"/A\"\n";
    let error = single_error(text);
    assert_eq!(line_and_column(&error), (3, 1));
    let message = error.to_string();
    assert!(message.contains("unknown key `remote_pth`"), "{message}");
    assert!(message.contains("did you mean `remote_path`?"), "{message}");
}

#[test]
fn unknown_section_is_an_error() {
    let error = single_error("[uplaoder]\nworkers = 2\n");
    assert_eq!(line_and_column(&error), (1, 2));
    assert!(
        error.to_string().contains("did you mean `uploader`?"),
        "{error}"
    );
}

#[test]
fn wrong_type_names_its_line() {
    let error = single_error("[uploader]\nworkers = \"five\"\n");
    assert_eq!(line_and_column(&error), (2, 11));
}

#[test]
fn broken_toml_names_its_line() {
    let error = single_error("[uploader\nworkers = 2\n");
    assert_eq!(line_and_column(&error).0, 1);
}

#[test]
fn impossible_values_name_their_line_and_column() {
    let cases = [
        ("[uploader]\nworkers = 0\n", (2, 11), "must be from 1"),
        (
            "[uploader]\nfragment_size = \"1000 KiB\"\n",
            (2, 17),
            "multiple of 320 KiB",
        ),
        (
            "[uploader]\nfragment_size = \"60 MiB\"\n",
            (2, 17),
            "under 60 MiB",
        ),
        (
            "[uploader]\nfragment_size = \"ten\"\n",
            (2, 17),
            "is not a size",
        ),
        (
            "[uploader]\nmax_retry_delay = \"soon\"\n",
            (2, 19),
            "is not a duration",
        ),
        (
            "[application]\ngraph_url = \"http://example.com/v1.0\"\n",
            (2, 13),
            "https://",
        ),
        (
            "[[mapping]]\nlocal_path = \"outbox\"\nremote_path = \"/A\"\n",
            (2, 14),
            "absolute",
        ),
        (
            "[[mapping]]\nlocal_path = \"/o\"\nremote_path = \"/A/b:c\"\n",
            (3, 15),
            "`:`",
        ),
        (
            "[[mapping]]\nlocal_path = \"/o\"\nremote_path = \"/CON\"\n",
            (3, 15),
            "reserves",
        ),
        (
            "[[mapping]]\nlocal_path = \"/o\"\nremote_path = \"/A\"\nconflict = \"merge\"\n",
            (4, 12),
            "`replace`, `rename`, `fail`",
        ),
        (
            "[[mapping]]\nlocal_path = \"/o\"\nremote_path = \"/A\"\nafter_upload = \"move\"\n",
            (4, 16),
            "no `move_to`",
        ),
        (
            "[[mapping]]\nlocal_path = \"/o\"\nremote_path = \"/A\"\nafter_upload = \"move\"\n\
             move_to = \"/o/done\"\n",
            (5, 11),
            "outside the mapping",
        ),
        (
            "[[mapping]]\nlocal_path = \"/o\"\nremote_path = \"/A\"\nexclude = [\"a[\"]\n",
            (4, 11),
            "invalid pattern",
        ),
    ];
    for (text, position, fragment) in cases {
        let error = single_error(text);
        assert_eq!(line_and_column(&error), position, "{text}: {error}");
        assert!(error.to_string().contains(fragment), "{text}: {error}");
    }
}

#[test]
fn every_problem_is_reported_in_one_pass_in_file_order() {
    let text = "[uploader]\nworkers = 0\nretries = 99\n[[mapping]]\nlocal_path = \"rel\"\n\
                remote_path = \"/a|b\"\n";
    let errors = parse(text).expect_err("refused").0;
    let lines = errors
        .iter()
        .map(|e| line_and_column(e).0)
        .collect::<Vec<_>>();
    assert_eq!(lines, vec![2, 3, 5, 6]);
}

#[test]
fn overlapping_mappings_are_refused() {
    let text = r#"
[[mapping]]
local_path = "/var/outbox"
remote_path = "/A"

[[mapping]]
local_path = "/var/outbox/reports"
remote_path = "/B"
"#;
    let error = single_error(text);
    assert_eq!(line_and_column(&error), (7, 14));
    assert!(error.to_string().contains("overlaps mapping[1]"), "{error}");
}

#[test]
fn sibling_mappings_with_a_common_prefix_do_not_overlap() {
    let text = r#"
[[mapping]]
local_path = "/var/outbox/a"
remote_path = "/A"

[[mapping]]
local_path = "/var/outbox/ab"
remote_path = "/B"
"#;
    assert_eq!(parse(text).expect("valid").mappings.len(), 2);
}

#[test]
fn environment_overrides_win_over_the_file() {
    let text = format!("[uploader]\nworkers = 2\nfragment_size = \"320 KiB\"\n{MINIMAL}");
    let config = parse_with_env(
        &text,
        &[
            ("ONEDRIVE_SYNCD_UPLOADER_WORKERS", "7"),
            ("ONEDRIVE_SYNCD_UPLOADER_FRAGMENT_SIZE", "640 KiB"),
            ("ONEDRIVE_SYNCD_APPLICATION_CLIENT_ID", "abc-123"),
            (
                "ONEDRIVE_SYNCD_APPLICATION_SCOPES",
                "Files.ReadWrite,offline_access",
            ),
            ("ONEDRIVE_SYNCD_CONFIG", "/ignored/here.toml"),
            ("UNRELATED", "x"),
        ],
    )
    .expect("valid");
    assert_eq!(config.uploader.workers, 7);
    assert_eq!(config.uploader.fragment_size_bytes, 640 * 1024);
    assert_eq!(config.application.client_id, "abc-123");
    assert_eq!(
        config.application.scopes,
        vec!["Files.ReadWrite", "offline_access"]
    );
}

#[test]
fn a_bad_override_names_the_variable() {
    let errors = parse_with_env(
        MINIMAL,
        &[("ONEDRIVE_SYNCD_UPLOADER_FRAGMENT_SIZE", "1 MB")],
    )
    .expect_err("refused")
    .0;
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(message.starts_with("environment variable ONEDRIVE_SYNCD_UPLOADER_FRAGMENT_SIZE"));
    assert!(message.contains("multiple of 320 KiB"), "{message}");
}

#[test]
fn a_misspelt_variable_is_refused_with_a_suggestion() {
    let errors = parse_with_env(MINIMAL, &[("ONEDRIVE_SYNCD_UPLOADER_WORKER", "3")])
        .expect_err("refused")
        .0;
    let message = errors[0].to_string();
    assert!(
        message.contains("did you mean `ONEDRIVE_SYNCD_UPLOADER_WORKERS`?"),
        "{message}"
    );
}

#[test]
fn a_missing_file_says_how_to_create_it() {
    let error = Config::load_with_env(Path::new("/nonexistent/config.toml"), std::iter::empty())
        .expect_err("refused");
    assert!(error.to_string().contains("config.example.toml"), "{error}");
}
