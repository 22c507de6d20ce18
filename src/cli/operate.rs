//! `run`, `status`, `history` and `retry`: the daemon and the commands that
//! look after it.
//!
//! While the daemon runs it holds the queue database, so the other commands ask
//! it over the control socket; when it does not run, they open the database
//! themselves.

use std::path::Path;

use bytesize::ByteSize;
use time::OffsetDateTime;

use super::{Cli, CliError};
use crate::config::Config;
use crate::daemon::report::{
    AuthState, ControlRequest, ControlResponse, HistoryQuery, StatusReport,
};
use crate::queue::{HistoryRecord, JobId, Queue, QueueError, RetrySelection};
use crate::service::control::{self, ControlError};

/// Help shown after `run --help`.
pub const RUN_HELP: &str = "\
Runs in the foreground until SIGTERM or SIGINT; systemd starts it as
`onedrive-syncd run`. Sign in once with `onedrive-syncd login` first.

Example:
  onedrive-syncd --config /etc/onedrive-syncd/config.toml run";

/// Help shown after `status --help`.
pub const STATUS_HELP: &str = "\
Example:
  onedrive-syncd status
  onedrive-syncd status --json | jq .counts";

/// Help shown after `history --help`.
pub const HISTORY_HELP: &str = "\
Example:
  onedrive-syncd history --since 1h --mapping reports
  onedrive-syncd history --path invoice --json";

/// Help shown after `retry --help`.
pub const RETRY_HELP: &str = "\
Example:
  onedrive-syncd retry 42        # one failed job, by the id `status` shows
  onedrive-syncd retry --failed  # every failed job";

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Show at most this many uploads, newest first.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Only uploads of this mapping (its name).
    #[arg(long)]
    pub mapping: Option<String>,
    /// Only uploads whose local or remote path contains this text.
    #[arg(long)]
    pub path: Option<String>,
    /// Only uploads finished within this long, such as `1h` or `2days`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `retry`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct RetryArgs {
    /// The failed job to requeue, as `status` lists it.
    pub job: Option<u64>,
    /// Requeue every failed job.
    #[arg(long)]
    pub failed: bool,
}

/// Runs the daemon.
pub fn run(cli: &Cli, _args: &RunArgs) -> Result<(), CliError> {
    let config = cli.load_config()?;
    let runtime = super::account::start(&config)?;
    // The error is printed once, on stderr, which systemd puts in the journal.
    runtime
        .block_on(crate::daemon::run(config))
        .map_err(CliError::Runtime)
}

/// Shows the daemon's state.
pub fn status(cli: &Cli, args: &StatusArgs) -> Result<(), CliError> {
    let config = cli.load_config()?;
    let report = match ask(&config, &ControlRequest::Status)? {
        Some(ControlResponse::Status(report)) => *report,
        Some(other) => return Err(unexpected(other)),
        None => with_queue(&config, StatusReport::from_queue)?,
    };
    if args.json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", status_text(&report));
    }
    Ok(())
}

/// Lists recent uploads.
pub fn history(cli: &Cli, args: &HistoryArgs) -> Result<(), CliError> {
    let config = cli.load_config()?;
    let query = HistoryQuery {
        mapping: args.mapping.clone(),
        path_contains: args.path.clone(),
        since: args.since.map(|ago| OffsetDateTime::now_utc() - ago),
        limit: args.limit,
    };
    let records = match ask(&config, &ControlRequest::History(query.clone()))? {
        Some(ControlResponse::History { records }) => records,
        Some(other) => return Err(unexpected(other)),
        None => with_queue(&config, |queue| query.run(queue))?,
    };
    if args.json {
        println!("{}", to_json(&records)?);
    } else if records.is_empty() {
        println!(
            "no uploads recorded{}",
            if args.since.is_some() {
                " in that time"
            } else {
                ""
            }
        );
    } else {
        for record in &records {
            println!("{}", history_line(record));
        }
    }
    Ok(())
}

/// Requeues failed jobs.
pub fn retry(cli: &Cli, args: &RetryArgs) -> Result<(), CliError> {
    let config = cli.load_config()?;
    let job = args.job.map(JobId);
    let count = match ask(&config, &ControlRequest::Retry { job })? {
        Some(ControlResponse::Retried { count }) => count,
        Some(other) => return Err(unexpected(other)),
        None => {
            let which = job.map_or(RetrySelection::AllFailed, RetrySelection::Job);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|err| CliError::Runtime(err.into()))?;
            with_queue(&config, |queue| runtime.block_on(queue.retry_failed(which)))?
        }
    };
    match count {
        0 => println!("no failed jobs to retry"),
        1 => println!("requeued 1 job"),
        n => println!("requeued {n} jobs"),
    }
    Ok(())
}

/// Asks the running daemon; `None` when no daemon runs.
fn ask(config: &Config, request: &ControlRequest) -> Result<Option<ControlResponse>, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| CliError::Runtime(err.into()))?;
    match runtime.block_on(control::request(&config.state.control_socket, request)) {
        Ok(ControlResponse::Error { message }) => Err(CliError::Operator(message)),
        Ok(response) => Ok(Some(response)),
        Err(ControlError::NotRunning { .. }) => Ok(None),
        Err(err) => Err(CliError::Operator(err.to_string())),
    }
}

/// Opens the queue database of a daemon that is not running.
fn with_queue<T>(
    config: &Config,
    read: impl FnOnce(&Queue) -> Result<T, QueueError>,
) -> Result<T, CliError> {
    let directory = &config.state.directory;
    if !directory.join("db").exists() && !directory.join("conf").exists() && is_empty(directory) {
        return Err(CliError::Operator(format!(
            "no queue database in {}: the daemon has not run with this configuration yet",
            directory.display()
        )));
    }
    let queue = Queue::open(directory).map_err(|err| CliError::Operator(err.to_string()))?;
    read(&queue).map_err(|err| CliError::Operator(err.to_string()))
}

fn is_empty(directory: &Path) -> bool {
    std::fs::read_dir(directory).map_or(true, |mut entries| entries.next().is_none())
}

fn unexpected(response: ControlResponse) -> CliError {
    CliError::Operator(format!(
        "the daemon gave an unexpected answer: {response:?}"
    ))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|err| CliError::Runtime(err.into()))
}

/// The human form of a status report.
pub fn status_text(report: &StatusReport) -> String {
    let c = &report.counts;
    let mut out = format!(
        "onedrive-syncd: {}\n",
        if report.running {
            "running"
        } else {
            "not running (read from the queue database)"
        }
    );
    out += &format!(
        "jobs: {} queued, {} uploading, {} verifying, {} failed, {} done and kept\n",
        c.queued, c.uploading, c.verifying, c.failed, c.done
    );
    let auth = match &report.auth {
        AuthState::Ok => "ok".to_string(),
        AuthState::ReauthenticationNeeded => {
            "sign-in refused: run `onedrive-syncd login`".to_string()
        }
        AuthState::Failing(reason) => format!("failing: {reason}"),
        AuthState::Unknown => "unknown (daemon not running)".to_string(),
    };
    out += &format!("sign-in: {auth}\n");
    if let Some(secs) = report.throttled_for_secs {
        out += &format!("throttled: OneDrive asked to wait {secs}s more; all uploads paused\n");
    }
    if !report.in_flight.is_empty() {
        out += "uploading now:\n";
    }
    for upload in &report.in_flight {
        let percent = match upload.bytes {
            0 => 100.0,
            total => upload.acknowledged_bytes as f64 * 100.0 / total as f64,
        };
        out += &format!(
            "  job {}  {} → {}  {percent:.0}% of {}, {}/s\n",
            upload.job_id,
            upload.path.display(),
            upload.remote_path,
            ByteSize(upload.bytes).display().iec(),
            ByteSize(upload.bytes_per_sec as u64).display().iec(),
        );
    }
    if !report.recent_uploads.is_empty() {
        out += "latest uploads:\n";
    }
    for record in &report.recent_uploads {
        out += &format!("  {}\n", history_line(record));
    }
    if let Some(error) = &report.last_error {
        out += &format!("last error: {error}\n");
    }
    if !report.failed.is_empty() {
        out += "failed (retry with `onedrive-syncd retry JOB` or `retry --failed`):\n";
    }
    for failed in &report.failed {
        out += &format!(
            "  job {}  {} → {}: {}\n",
            failed.job_id,
            failed.path.display(),
            failed.remote_path,
            failed.reason
        );
    }
    out
}

fn history_line(record: &HistoryRecord) -> String {
    let when = record
        .finished_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "{when}  {} → {}  {} in {:.1}s",
        record.local_path.display(),
        record.remote_path,
        ByteSize(record.bytes).display().iec(),
        record.duration_ms as f64 / 1000.0
    )
}
