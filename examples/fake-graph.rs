//! Runs the strict fake Microsoft Graph + identity platform server on its own,
//! for benchmarks and the README demo:
//!
//! ```text
//! cargo run --release --example fake-graph -- --listen 127.0.0.1:8080
//! ```
//!
//! It prints the Graph URL, the authority URL and the accepted client id, then
//! serves until Ctrl-C. Device-code logins are approved after the first poll
//! unless `--no-auto-approve` is given. It refuses to listen on anything but
//! loopback. Faults and inspection are available over HTTP under `/_fake/` (see
//! `tests/fake_graph/control.rs`).

#[path = "../tests/fake_graph/mod.rs"]
mod fake_graph;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_graph::{FakeGraph, FakeOptions};

/// Command line of the fake server.
#[derive(Debug, Parser)]
#[command(about = "Strict fake Microsoft Graph (OneDrive) and identity platform server")]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Client id the identity endpoints accept.
    #[arg(long, default_value = "onedrive-syncd-test-client")]
    client_id: String,
    /// Leave device-code logins pending until approved through `/_fake/faults`.
    #[arg(long)]
    no_auto_approve: bool,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime_secs: u64,
    /// Device-code polling interval announced to clients, in seconds.
    #[arg(long, default_value_t = 1)]
    device_code_interval_secs: u64,
    /// Requests per second before 429 with Retry-After.
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Per-request body throughput cap, in bytes per second.
    #[arg(long)]
    bandwidth: Option<u64>,
    /// Directory for stored bytes (a temporary directory when absent).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Upload session lifetime after the last fragment, in seconds.
    #[arg(long, default_value_t = 3600)]
    session_expiry_secs: u64,
    /// Children per listing page without `$top`.
    #[arg(long, default_value_t = 200)]
    page_size: usize,
    /// Drive quota in bytes.
    #[arg(long, default_value_t = 1 << 40)]
    quota_bytes: u64,
    /// Keep a refresh token valid after it has been used once (Microsoft's
    /// documented behaviour); by default a used refresh token is revoked.
    #[arg(long)]
    keep_used_refresh_tokens: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let options = FakeOptions {
        client_id: args.client_id,
        access_token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        auto_approve_device_code: !args.no_auto_approve,
        device_code_interval_secs: args.device_code_interval_secs,
        session_expiry: Duration::from_secs(args.session_expiry_secs),
        rotate_revokes_old_refresh_token: !args.keep_used_refresh_tokens,
        page_size: args.page_size,
        quota_total_bytes: args.quota_bytes,
        rate_limit_per_sec: args.rate_limit,
        latency: Duration::from_millis(args.latency_ms),
        bandwidth_bytes_per_sec: args.bandwidth,
        data_dir: args.data_dir,
        ..FakeOptions::default()
    };
    let fake = match FakeGraph::start_at(args.listen, options).await {
        Ok(fake) => fake,
        Err(err) => {
            eprintln!("fake-graph: cannot listen on {}: {err}", args.listen);
            return ExitCode::from(2);
        }
    };
    println!("fake-graph listening");
    println!("  graph url:     {}", fake.graph_url());
    println!("  authority url: {}", fake.authority_url());
    println!("  client id:     {}", fake.client_id());
    println!(
        "  control api:   {}/_fake/ (files, violations, requests, stats, faults)",
        fake.base_url()
    );
    println!("press Ctrl-C to stop");
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("fake-graph: waiting for Ctrl-C failed: {err}");
    }
    fake.shutdown();
    let violations = fake.violations();
    println!(
        "fake-graph stopped; {} protocol violation(s) recorded",
        violations.len()
    );
    for violation in violations {
        println!("  - {violation}");
    }
    ExitCode::SUCCESS
}
