//! The command line: subcommands, what they print, and exit codes.
//!
//! Errors are split in two. A [`CliError::Operator`] is something an admin can
//! fix (bad configuration, a missing login, a refused file) and is printed as a
//! plain sentence; anything else is a runtime failure, printed with its cause
//! chain. Both go to stderr; stdout carries only what a command was asked to
//! show, so it can be piped.

mod account;
mod check_config;
mod files;
mod operate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigErrors, DEFAULT_CONFIG_PATH};

/// Exit codes, as documented in `--help` and the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The command did what was asked.
    Ok = 0,
    /// A runtime failure: network, OneDrive, disk, or a refused login.
    Failure = 1,
    /// Bad usage or bad configuration; nothing was attempted.
    Usage = 2,
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  runtime failure (network, OneDrive, disk, authentication)
  2  bad usage or invalid configuration

Configuration is read from --config, else $ONEDRIVE_SYNCD_CONFIG, else
/etc/onedrive-syncd/config.toml. Environment variables ONEDRIVE_SYNCD_<SECTION>_<KEY>
override single settings (see the README).";

/// Uploads files dropped into outbox folders to Microsoft OneDrive.
#[derive(Debug, Parser)]
#[command(name = "onedrive-syncd", version, about, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "ONEDRIVE_SYNCD_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and print a summary of what it does.
    #[command(
        after_help = "Example:\n  onedrive-syncd check-config /etc/onedrive-syncd/config.toml"
    )]
    CheckConfig(check_config::Args),
    /// Sign in to OneDrive and store the refresh token (creates the encryption
    /// key if absent).
    #[command(after_help = account::LOGIN_HELP)]
    Login(account::LoginArgs),
    /// Show the signed-in account, its drive and the quota.
    #[command(after_help = account::WHOAMI_HELP)]
    Whoami(account::WhoamiArgs),
    /// Create a OneDrive folder and any missing parents.
    #[command(after_help = files::MKDIR_HELP)]
    Mkdir(files::MkdirArgs),
    /// Upload one file (or standard input) to OneDrive, verified.
    #[command(after_help = files::UPLOAD_HELP)]
    Upload(files::UploadArgs),
    /// List a OneDrive folder.
    #[command(after_help = files::LS_HELP)]
    Ls(files::LsArgs),
    /// Run the daemon: watch the outboxes and upload what arrives.
    #[command(after_help = operate::RUN_HELP)]
    Run(operate::RunArgs),
    /// Show what the daemon is doing: queue, uploads in flight, failures.
    #[command(after_help = operate::STATUS_HELP)]
    Status(operate::StatusArgs),
    /// List recent uploads.
    #[command(after_help = operate::HISTORY_HELP)]
    History(operate::HistoryArgs),
    /// Requeue failed uploads.
    #[command(after_help = operate::RETRY_HELP)]
    Retry(operate::RetryArgs),
}

/// An error as the command line reports it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is invalid; every problem is listed.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// Something the operator can fix, explained in the message.
    #[error("{0}")]
    Operator(String),
    /// A runtime failure.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) => ExitCode::Usage,
            CliError::Operator(_) | CliError::Runtime(_) => ExitCode::Failure,
        }
    }
}

impl Cli {
    /// The configuration path in effect: `--config`, `$ONEDRIVE_SYNCD_CONFIG`,
    /// or the default.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    /// Loads and validates the configuration in effect.
    pub fn load_config(&self) -> Result<Config, CliError> {
        Ok(Config::load(&self.config_path())?)
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match &cli.command {
        Command::CheckConfig(args) => check_config::run(&cli, args),
        Command::Login(args) => account::login(&cli, args),
        Command::Whoami(args) => account::whoami(&cli, args),
        Command::Mkdir(args) => files::mkdir(&cli, args),
        Command::Upload(args) => files::upload(&cli, args),
        Command::Ls(args) => files::ls(&cli, args),
        Command::Run(args) => operate::run(&cli, args),
        Command::Status(args) => operate::status(&cli, args),
        Command::History(args) => operate::history(&cli, args),
        Command::Retry(args) => operate::retry(&cli, args),
    };
    match result {
        Ok(()) => ExitCode::Ok,
        Err(err) => {
            match &err {
                CliError::Runtime(cause) => eprintln!("error: {cause:#}"),
                other => eprintln!("{other}"),
            }
            err.exit_code()
        }
    }
}
