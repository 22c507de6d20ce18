//! `mkdir`, `upload` and `ls`: one-off OneDrive operations for admins.
//!
//! `upload` goes through the same verified transfer as the daemon (simple
//! upload or session, quickXorHash checked). Reading stdin (`-`) spools it to
//! an unlinked temporary file first, because the size must be known before the
//! first request and a session may need to re-read a fragment. Progress is a
//! bar on a terminal and a line per tenth otherwise, on stderr; stdout carries
//! only the result.

use std::fs::File;
use std::io::{Seek as _, SeekFrom};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytesize::ByteSize;

use super::account::{connect, graph_failure, Connection};
use super::{Cli, CliError};
use crate::config::ConflictPolicy;
use crate::graph::retry::retrying;
use crate::graph::transfer::{upload_open_file, ProgressOnly, UploadOptions, Uploaded};
use crate::graph::{DriveItem, GraphApi as _, RemotePath, RetryPolicy};

/// Help shown under `mkdir --help`.
pub const MKDIR_HELP: &str = "\
Example:
  onedrive-syncd mkdir /reports/2024/q3

Missing parent folders are created too; an existing folder is not an error.";

/// Help shown under `upload --help`.
pub const UPLOAD_HELP: &str = "\
Examples:
  onedrive-syncd upload ./summary.csv /reports/summary.csv
  onedrive-syncd upload ./summary.csv /reports/          (keeps the local name)
  echo \"backup done\" | onedrive-syncd upload - /status/last-run.txt --conflict replace

Missing parent folders are created. The upload is verified by size and quickXorHash.";

/// Help shown under `ls --help`.
pub const LS_HELP: &str = "\
Examples:
  onedrive-syncd ls
  onedrive-syncd ls /reports --long
  onedrive-syncd ls /reports --json";

/// Arguments of `mkdir`.
#[derive(Debug, clap::Args)]
pub struct MkdirArgs {
    /// The OneDrive folder to create, such as /reports/2024.
    pub remote: String,
}

/// Arguments of `upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// The local file, or `-` for standard input.
    pub local: PathBuf,
    /// Where it goes on OneDrive; a trailing `/` means "into this folder, same
    /// name".
    pub remote: String,
    /// What to do when the remote name is taken.
    #[arg(long, value_enum, default_value_t = ConflictArg::Replace)]
    pub conflict: ConflictArg,
}

/// `--conflict` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConflictArg {
    /// Overwrite; OneDrive keeps the previous content as a version.
    Replace,
    /// Keep both; OneDrive names the new one `name 1.ext`.
    Rename,
    /// Refuse, and leave the remote file alone.
    Fail,
}

impl From<ConflictArg> for ConflictPolicy {
    fn from(arg: ConflictArg) -> Self {
        match arg {
            ConflictArg::Replace => ConflictPolicy::Replace,
            ConflictArg::Rename => ConflictPolicy::Rename,
            ConflictArg::Fail => ConflictPolicy::Fail,
        }
    }
}

/// Arguments of `ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// The OneDrive folder (or file) to list; the root when omitted.
    #[arg(default_value = "/")]
    pub remote: String,
    /// Show size, last change and name.
    #[arg(long, conflicts_with = "json")]
    pub long: bool,
    /// Print Graph's items as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mkdir`.
pub fn mkdir(cli: &Cli, args: &MkdirArgs) -> Result<(), CliError> {
    let remote = RemotePath::parse(&args.remote).map_err(graph_failure)?;
    let Connection {
        config,
        graph,
        runtime,
    } = connect(cli)?;
    let policy = RetryPolicy::from_config(&config.uploader);
    let folder = runtime
        .block_on(retrying(&policy, || graph.ensure_folder(&remote)))
        .map_err(graph_failure)?;
    println!("{remote} (folder id {})", folder.id);
    Ok(())
}

/// Runs `upload`.
pub fn upload(cli: &Cli, args: &UploadArgs) -> Result<(), CliError> {
    let from_stdin = args.local.as_os_str() == "-";
    let remote = target_path(&args.remote, &args.local, from_stdin)?;
    let (file, size, label) = if from_stdin {
        let (file, size) = spool_stdin()?;
        (file, size, PathBuf::from("<stdin>"))
    } else {
        let (file, size) = open_local(&args.local)?;
        (file, size, args.local.clone())
    };

    let Connection {
        config,
        graph,
        runtime,
    } = connect(cli)?;
    let options = UploadOptions::from_config(&config.uploader, args.conflict.into());
    let reporter = Reporter::new(size);
    let progress = |done: u64, total: u64| reporter.update(done, total);
    let file = tokio::fs::File::from_std(file);
    let uploaded = runtime
        .block_on(upload_open_file(
            &graph,
            file,
            size,
            &label,
            &remote,
            &options,
            &ProgressOnly(&progress),
            None,
        ))
        .map_err(graph_failure);
    reporter.finish();

    let Uploaded { item, bytes, .. } = uploaded?;
    println!(
        "uploaded {} to {remote}: {} ({bytes} bytes), quickXorHash {} verified, item id {}",
        label.display(),
        ByteSize(bytes).display().iec(),
        item.quick_xor_hash_text().unwrap_or_default(),
        item.id
    );
    Ok(())
}

/// The remote file path: `REMOTE`, or `REMOTE/<local name>` when it ends with
/// `/`.
fn target_path(remote: &str, local: &Path, from_stdin: bool) -> Result<RemotePath, CliError> {
    if !remote.ends_with('/') {
        return RemotePath::parse(remote).map_err(graph_failure);
    }
    let name = local.file_name().filter(|_| !from_stdin).ok_or_else(|| {
        CliError::Operator(format!(
            "`{remote}` is a folder; give the full remote file name, such as {remote}notes.txt"
        ))
    })?;
    let folder = RemotePath::parse(remote).map_err(graph_failure)?;
    folder.join(&name.to_string_lossy()).map_err(graph_failure)
}

fn open_local(path: &Path) -> Result<(File, u64), CliError> {
    let unreadable =
        |err: std::io::Error| CliError::Operator(format!("cannot read {}: {err}", path.display()));
    let file = File::open(path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(CliError::Operator(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok((file, metadata.len()))
}

/// Copies stdin to a temporary file that is unlinked at once, so nothing is
/// left behind whatever happens next.
fn spool_stdin() -> Result<(File, u64), CliError> {
    let failed = |err: std::io::Error| {
        CliError::Runtime(anyhow::Error::new(err).context("spooling standard input"))
    };
    let dir = std::env::temp_dir();
    let name = format!(
        ".onedrive-syncd-stdin-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(failed)?;
    std::fs::remove_file(&path).map_err(failed)?;

    let size = std::io::copy(&mut std::io::stdin().lock(), &mut file).map_err(failed)?;
    file.seek(SeekFrom::Start(0)).map_err(failed)?;
    Ok((file, size))
}

/// Shows upload progress on stderr.
enum Reporter {
    /// A progress bar, on a terminal.
    Bar(indicatif::ProgressBar),
    /// A line each time another tenth is done; holds the last tenth printed.
    Lines(AtomicU64),
}

impl Reporter {
    fn new(size: u64) -> Self {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Reporter::Lines(AtomicU64::new(0));
        }
        let bar = indicatif::ProgressBar::new(size);
        let style = indicatif::ProgressStyle::with_template(
            "{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        );
        if let Ok(style) = style {
            bar.set_style(style);
        }
        Reporter::Bar(bar)
    }

    fn update(&self, done: u64, total: u64) {
        match self {
            Reporter::Bar(bar) => bar.set_position(done),
            Reporter::Lines(last) => {
                let tenth = done.saturating_mul(10).checked_div(total).unwrap_or(10);
                if tenth > last.swap(tenth, Ordering::Relaxed) {
                    eprintln!(
                        "uploaded {} of {} ({}%)",
                        ByteSize(done).display().iec(),
                        ByteSize(total).display().iec(),
                        tenth * 10
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Reporter::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// Runs `ls`.
pub fn ls(cli: &Cli, args: &LsArgs) -> Result<(), CliError> {
    let remote = RemotePath::parse(&args.remote).map_err(graph_failure)?;
    let Connection {
        config,
        graph,
        runtime,
    } = connect(cli)?;
    let policy = RetryPolicy::from_config(&config.uploader);
    let items = runtime.block_on(async {
        let item = retrying(&policy, || graph.item_by_path(&remote)).await?;
        match item {
            Some(item) if item.is_folder() => retrying(&policy, || graph.list_children(&remote))
                .await
                .map(Some),
            other => Ok(other.map(|file| vec![file])),
        }
    });
    let Some(items) = items.map_err(graph_failure)? else {
        return Err(CliError::Operator(format!(
            "there is nothing at {remote} on OneDrive"
        )));
    };

    if args.json {
        let json = serde_json::to_string_pretty(&items)
            .map_err(|err| CliError::Runtime(anyhow::Error::new(err)))?;
        println!("{json}");
        return Ok(());
    }
    for item in &items {
        println!("{}", listing_line(item, args.long));
    }
    Ok(())
}

/// One line of `ls`: the name (folders end with `/`), with size and date when
/// `long`.
fn listing_line(item: &DriveItem, long: bool) -> String {
    let mut name = item.name.clone().unwrap_or_default();
    if item.is_folder() {
        name.push('/');
    }
    if !long {
        return name;
    }
    let size = item.size.map_or_else(|| "-".to_string(), |s| s.to_string());
    let modified = item.last_modified_date_time.as_deref().unwrap_or("-");
    format!("{size:>14}  {modified:<24}  {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_slash_keeps_the_local_name() {
        let path = target_path("/reports/", Path::new("./x/summary.csv"), false).unwrap();
        assert_eq!(path.to_string(), "/reports/summary.csv");
        let path = target_path("/reports/s.csv", Path::new("a.csv"), false).unwrap();
        assert_eq!(path.to_string(), "/reports/s.csv");
        assert!(target_path("/reports/", Path::new("-"), true).is_err());
        assert!(target_path("/bad|name", Path::new("a"), false).is_err());
    }

    #[test]
    fn listing_lines_mark_folders() {
        let item: DriveItem = serde_json::from_str(
            r#"{"id":"1","name":"docs","size":10,"folder":{"childCount":2},
                "lastModifiedDateTime":"2024-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(listing_line(&item, false), "docs/");
        assert_eq!(
            listing_line(&item, true),
            "            10  2024-01-02T03:04:05Z      docs/"
        );
    }
}
