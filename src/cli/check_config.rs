//! `onedrive-syncd check-config`: validates a configuration and summarises it.

use std::path::PathBuf;

use super::{Cli, CliError};
use crate::config::{AfterUpload, Config, TokenStoreConfig};

/// Arguments of `check-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to check; defaults to the configuration in effect.
    pub path: Option<PathBuf>,
}

/// Validates the configuration and prints what it would do.
pub fn run(cli: &Cli, args: &Args) -> Result<(), CliError> {
    let path = args.path.clone().unwrap_or_else(|| cli.config_path());
    let config = Config::load(&path)?;
    print!("{}", summary(&config));
    Ok(())
}

/// A short human summary of the effective configuration.
pub fn summary(config: &Config) -> String {
    let mut out = format!("{}: valid\n", config.source.display());
    let app = &config.application;
    out += &format!(
        "account:   client {} on tenant `{}`\n",
        if app.client_id.is_empty() {
            "(not set)"
        } else {
            &app.client_id
        },
        app.tenant
    );
    out += &format!("graph:     {}\n", app.graph_url);
    out += &format!("identity:  {}\n", app.authority_url);
    match &config.token_store {
        TokenStoreConfig::EncryptedFile { path, key_path, .. } => {
            out += &format!(
                "tokens:    encrypted file {} (key {})\n",
                path.display(),
                key_path.display()
            );
        }
    }
    let up = &config.uploader;
    out += &format!(
        "uploader:  {} workers, {} requests/s, {} fragments, simple upload up to {}\n",
        up.workers,
        up.requests_per_second,
        bytesize::ByteSize(up.fragment_size_bytes).display().iec(),
        bytesize::ByteSize(up.simple_upload_threshold_bytes)
            .display()
            .iec(),
    );
    out += &format!("mappings:  {}\n", config.mappings.len());
    for mapping in &config.mappings {
        let after = match &mapping.after_upload {
            AfterUpload::Delete => "delete".to_string(),
            AfterUpload::Keep => "keep".to_string(),
            AfterUpload::MoveTo(dir) => format!("move to {}", dir.display()),
        };
        out += &format!(
            "  {} → {}  (conflict: {}, after upload: {}, settle {}, {})\n",
            mapping.local_path.display(),
            mapping.remote_display(),
            mapping.conflict.as_graph_value(),
            after,
            humantime::format_duration(mapping.settle_time),
            if mapping.recursive {
                "recursive"
            } else {
                "top level only"
            },
        );
    }
    out
}
