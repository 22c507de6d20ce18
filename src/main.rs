//! The `onedrive-syncd` binary: parses the command line and hands over to
//! [`cli`].

use std::process::ExitCode;

use clap::Parser as _;
use onedrive_syncd::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let code = cli::run(args);
    ExitCode::from(code as u8)
}
