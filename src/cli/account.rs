//! `login` and `whoami`, and the plumbing every OneDrive command shares: the
//! runtime, the token store, the token manager, the Graph client, and how their
//! errors are reported.
//!
//! `login` creates the token encryption key when it is absent (it is the
//! documented way to create it), stores the refresh token, then looks up the
//! drive and stores who it belongs to. Prompts go to stderr; the outcome goes
//! to stdout.

use std::io::BufRead as _;
use std::sync::Arc;

use bytesize::ByteSize;

use super::{Cli, CliError};
use crate::auth::login::{self, DeviceCodePrompt, PkceLogin};
use crate::auth::{AuthError, IssuedTokens, TokenManager};
use crate::config::Config;
use crate::graph::{Drive, GraphApi as _, GraphClient, GraphError};
use crate::secrets::{open_store, AccountInfo, SecretsError, StoredTokens, TokenStore};

/// Arguments of `login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Sign in with the authorization-code flow (PKCE) instead of a device
    /// code: open the printed URL anywhere, then paste the address the browser
    /// lands on.
    #[arg(long)]
    pub pkce: bool,

    /// Redirect URI registered on the app, for --pkce. Defaults to Microsoft's
    /// nativeclient page under the configured authority.
    #[arg(long, value_name = "URI", requires = "pkce")]
    pub redirect_uri: Option<String>,
}

/// Help shown under `login --help`.
pub const LOGIN_HELP: &str = "\
Examples:
  onedrive-syncd login
  onedrive-syncd login --pkce

The first run creates the token encryption key (token_store.key_path) if it does not exist
and no systemd credential provides it. Run login again whenever a command says the refresh
token was refused.";

/// Help shown under `whoami --help`.
pub const WHOAMI_HELP: &str = "\
Example:
  onedrive-syncd whoami";

/// Arguments of `whoami`.
#[derive(Debug, clap::Args)]
pub struct WhoamiArgs {}

/// What a OneDrive command works with.
pub(super) struct Connection {
    /// The validated configuration.
    pub config: Config,
    /// The Graph client, authenticated by the token manager.
    pub graph: GraphClient,
    /// The runtime every async step runs on.
    pub runtime: tokio::runtime::Runtime,
}

/// Loads the configuration, starts logging and a runtime, and builds the Graph
/// client.
pub(super) fn connect(cli: &Cli) -> Result<Connection, CliError> {
    let config = cli.load_config()?;
    let runtime = start(&config)?;
    let store = open_store(&config.token_store);
    let tokens = TokenManager::new(&config.application, store).map_err(auth_failure)?;
    let graph =
        GraphClient::new(&config.application.graph_url, Arc::new(tokens)).map_err(graph_failure)?;
    Ok(Connection {
        config,
        graph,
        runtime,
    })
}

/// Starts logging and the runtime, after checking the application is
/// configured.
pub(super) fn start(config: &Config) -> Result<tokio::runtime::Runtime, CliError> {
    crate::telemetry::init(&config.logging.level, config.logging.journald);
    if config.application.client_id.trim().is_empty() {
        return Err(CliError::Operator(format!(
            "application.client_id is not set in {}; put the application (client) id of your \
             app registration there",
            config.source.display()
        )));
    }
    tokio::runtime::Runtime::new()
        .map_err(|err| CliError::Runtime(anyhow::Error::new(err).context("starting tokio")))
}

/// Runs `login`.
pub fn login(cli: &Cli, args: &LoginArgs) -> Result<(), CliError> {
    let config = cli.load_config()?;
    let runtime = start(&config)?;
    runtime.block_on(async {
        let store = open_store(&config.token_store);
        if let Some(note) = store.prepare().await.map_err(store_failure)? {
            eprintln!("{note}");
        }

        let issued = if args.pkce {
            pkce_login(&config, args.redirect_uri.as_deref()).await
        } else {
            login::device_code(&config.application, show_device_code).await
        }
        .map_err(auth_failure)?;

        let drive = bind_account(&config, store.clone(), issued).await?;
        println!("signed in; the token is stored in the {}", store.describe());
        print!("{}", describe_drive(&drive));
        Ok(())
    })
}

fn show_device_code(prompt: &DeviceCodePrompt) {
    eprintln!(
        "To sign in, open {} in a browser on any device and enter the code {}",
        prompt.verification_uri, prompt.user_code
    );
    eprintln!(
        "(the code is valid for {} minutes; waiting for the sign-in...)",
        prompt.expires_in.as_secs().div_ceil(60)
    );
}

async fn pkce_login(config: &Config, redirect: Option<&str>) -> Result<IssuedTokens, AuthError> {
    let pending = PkceLogin::start(&config.application, redirect)?;
    eprintln!("Open this address in a browser on any machine and sign in:\n");
    eprintln!("  {}\n", pending.authorize_url());
    eprintln!(
        "The browser then lands on {} (the page may look blank or show an error).",
        pending.redirect_uri()
    );
    eprintln!("Copy the whole address from the browser's address bar and paste it here:");

    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await;
    match line {
        Ok(Ok(line)) if !line.trim().is_empty() => pending.finish(&line).await,
        _ => Err(AuthError::PastedUrlInvalid {
            reason: "nothing was pasted".into(),
        }),
    }
}

/// Saves the new refresh token, then looks up the drive and saves whose it is.
async fn bind_account(
    config: &Config,
    store: Arc<dyn TokenStore>,
    issued: IssuedTokens,
) -> Result<Drive, CliError> {
    let tokens = StoredTokens {
        refresh_token: issued.refresh_token,
        account: None,
    };
    store.save(&tokens).await.map_err(store_failure)?;

    let manager = TokenManager::new(&config.application, store.clone())
        .map_err(auth_failure)?
        .with_access_token(issued.access_token, issued.expires_in)
        .await;
    let graph = GraphClient::new(&config.application.graph_url, Arc::new(manager))
        .map_err(graph_failure)?;
    let drive = graph.drive().await.map_err(graph_failure)?;

    // Re-read: a refresh during the lookup may have rotated the token just
    // saved.
    let mut current = store.load().await.map_err(store_failure)?.unwrap_or(tokens);
    let owner = drive
        .owner
        .as_ref()
        .and_then(|o| o.user.clone())
        .unwrap_or_default();
    current.account = Some(AccountInfo {
        display_name: owner.display_name.unwrap_or_default(),
        email: owner.email,
        drive_id: drive.id.clone(),
        drive_type: drive.drive_type.clone().unwrap_or_default(),
    });
    store.save(&current).await.map_err(store_failure)?;
    Ok(drive)
}

/// Runs `whoami`.
pub fn whoami(cli: &Cli, _args: &WhoamiArgs) -> Result<(), CliError> {
    let connection = connect(cli)?;
    let drive = connection
        .runtime
        .block_on(connection.graph.drive())
        .map_err(graph_failure)?;
    print!("{}", describe_drive(&drive));
    Ok(())
}

/// Account, drive and quota, one fact per line.
fn describe_drive(drive: &Drive) -> String {
    let owner = drive.owner.as_ref().and_then(|o| o.user.as_ref());
    let name = owner
        .and_then(|u| u.display_name.as_deref())
        .unwrap_or("(unknown)");
    let mut out = match owner.and_then(|u| u.email.as_deref()) {
        Some(email) => format!("account: {name} <{email}>\n"),
        None => format!("account: {name}\n"),
    };
    out += &format!(
        "drive:   {} ({})\n",
        drive.id,
        drive.drive_type.as_deref().unwrap_or("unknown type")
    );
    if let Some(quota) = &drive.quota {
        let size = |bytes: Option<u64>| {
            bytes.map_or_else(
                || "?".to_string(),
                |b| ByteSize(b).display().iec().to_string(),
            )
        };
        out += &format!(
            "quota:   {} used of {}, {} free ({})\n",
            size(quota.used),
            size(quota.total),
            size(quota.remaining),
            quota.state.as_deref().unwrap_or("normal")
        );
    }
    out
}

/// Reports a token-store error: all but I/O are for the admin to fix.
pub(super) fn store_failure(err: SecretsError) -> CliError {
    match err {
        SecretsError::Io { .. } => runtime_error(err),
        other => CliError::Operator(other.to_string()),
    }
}

/// Reports an authentication error: only an unreachable identity platform is
/// not the admin's to fix.
pub(super) fn auth_failure(err: AuthError) -> CliError {
    match err {
        AuthError::Unavailable { .. } => runtime_error(err),
        AuthError::Store(store) => store_failure(store),
        other => CliError::Operator(other.to_string()),
    }
}

/// Reports a Graph error: refused input and missing login are the admin's to
/// fix.
pub(super) fn graph_failure(err: GraphError) -> CliError {
    match err {
        GraphError::Auth(auth) => auth_failure(auth),
        GraphError::InvalidName { .. }
        | GraphError::NameConflict { .. }
        | GraphError::FileTooLarge { .. }
        | GraphError::QuotaExceeded { .. }
        | GraphError::NotAFolder { .. }
        | GraphError::LocalIo { .. } => CliError::Operator(err.to_string()),
        other => runtime_error(other),
    }
}

fn runtime_error(err: impl std::error::Error + Send + Sync + 'static) -> CliError {
    CliError::Runtime(anyhow::Error::new(err))
}
