//! `onedrive-syncd run`: wires the parts together and keeps them running until
//! a signal.
//!
//! Start-up order matters for the promises: the queue is opened first (moved
//! aside and rebuilt if damaged: the outboxes are the source of truth), jobs a
//! crash left in flight are requeued with their sessions, then the control
//! socket, the watchers (whose start-up scan finds files that arrived while the
//! daemon was down), and the workers. Only then is systemd told READY.
//!
//! Shutdown runs the other way: STOPPING, stop the watchers and stop claiming
//! jobs, give uploads in flight a grace period, flush the queue, exit.

pub mod report;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::auth::{TokenManager, KEEPALIVE_INTERVAL};
use crate::config::{AfterUpload, Config};
use crate::graph::GraphClient;
use crate::queue::{Candidate, EnqueueOutcome, JobState, Queue, RetrySelection};
use crate::service::{control, notify, signals};
use crate::upload::activity::Activity;
use crate::upload::paced::{Paced, PacedShared};
use crate::upload::pacer::Pacer;
use crate::upload::{JobRunner, UploaderPool};
use crate::watch::{OutboxWatcher, WatchOptions};
use report::{AuthState, ControlRequest, ControlResponse, StatusReport};

/// Files found by the watchers and not yet queued; the watchers wait when it is
/// full.
const CANDIDATE_BUFFER: usize = 1024;

/// How often the systemd status line is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);

type Runner = JobRunner<Paced<GraphClient>>;

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.mappings.is_empty() {
        anyhow::bail!(
            "{} has no [[mapping]]; add one (see config.example.toml) so there is something \
             to upload",
            config.source.display()
        );
    }
    info!(
        version = env!("CARGO_PKG_VERSION"),
        mappings = config.mappings.len(),
        workers = config.uploader.workers,
        "starting"
    );
    let config = Arc::new(config);
    let queue = Arc::new(open_queue(&config).await?);
    let tokens = Arc::new(
        TokenManager::new(
            &config.application,
            crate::secrets::open_store(&config.token_store),
        )
        .context("cannot set up sign-in")?,
    );
    let shutdown = CancellationToken::new();
    let rate = NonZeroU32::new(config.uploader.requests_per_second).unwrap_or(NonZeroU32::MIN);
    let pacer = Arc::new(Pacer::new(rate));
    let runners = build_runners(&config, &queue, &tokens, &pacer, &shutdown)?;
    let runner = runners[0].clone();

    let wake = Arc::new(Notify::new());
    let live = Live {
        runner: runner.clone(),
        tokens: tokens.clone(),
        pacer,
        wake: wake.clone(),
    };
    let control_task = serve_control(&config, live, &shutdown).await?;
    let (candidates_tx, candidates_rx) = mpsc::channel(CANDIDATE_BUFFER);
    let watch_options = WatchOptions {
        rescan_interval: config.watch.rescan_interval,
    };
    let watcher = OutboxWatcher::start(
        &config.mappings,
        watch_options,
        candidates_tx,
        shutdown.clone(),
    )?;
    let intake = tokio::spawn(intake(candidates_rx, runner.clone(), wake.clone()));
    let pool = UploaderPool::start(runners, wake, shutdown.clone());
    let mut signals = signals::Signals::install().context("cannot install signal handlers")?;

    let status = Live::status_of(&runner, &tokens, None);
    notify::ready(&status.map(|s| s.one_line()).unwrap_or_default());
    info!(mappings = config.mappings.len(), "ready");
    supervise(&mut signals, &runner, &tokens).await;

    let in_flight = runner.activity.len();
    notify::stopping(&format!(
        "stopping; {in_flight} uploads in flight stop at their next fragment"
    ));
    info!(in_flight, "shutting down");
    shutdown.cancel();
    watcher.stopped().await;
    pool.stopped().await;
    let _ = intake.await;
    let _ = control_task.await;
    queue
        .flush()
        .await
        .context("cannot flush the queue database")?;
    let counts = queue.counts().unwrap_or_default();
    info!(
        queued = counts.queued,
        failed = counts.failed,
        done = counts.done,
        "stopped"
    );
    Ok(())
}

/// One runner per worker, each with its own Graph client (and so its own
/// connections; see `crate::upload` on why), all sharing the queue, the tokens,
/// the pacer and its memos.
fn build_runners(
    config: &Arc<Config>,
    queue: &Arc<Queue>,
    tokens: &Arc<TokenManager>,
    pacer: &Arc<Pacer>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<Arc<Runner>>> {
    let shared = PacedShared::new(pacer.clone());
    let activity = Arc::new(Activity::default());
    (0..config.uploader.workers)
        .map(|_| {
            let graph = GraphClient::new(&config.application.graph_url, tokens.clone())
                .context("cannot set up the Graph client")?;
            Ok(Arc::new(JobRunner {
                api: Arc::new(Paced::new(graph, shared.clone())),
                queue: queue.clone(),
                config: config.clone(),
                activity: activity.clone(),
                shutdown: shutdown.clone(),
            }))
        })
        .collect()
}

/// Binds the control socket and answers on it until shutdown.
async fn serve_control(
    config: &Config,
    live: Live,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = control::bind(&config.state.control_socket).await?;
    Ok(tokio::spawn(control::serve(
        listener,
        move |request| {
            let live = live.clone();
            async move { live.answer(request).await }
        },
        shutdown.clone(),
    )))
}

/// Opens the queue, moving a damaged one aside, and requeues jobs a crash left
/// in flight.
async fn open_queue(config: &Config) -> anyhow::Result<Queue> {
    let directory = &config.state.directory;
    let (queue, rebuilt) = Queue::open_or_rebuild(directory)
        .with_context(|| format!("cannot open the queue database in {}", directory.display()))?;
    if let Some(note) = rebuilt {
        error!(
            moved_to = %note.moved_to.display(),
            error = %note.cause,
            "queue database unusable; moved aside, rebuilding from the outboxes"
        );
    }
    let requeued = queue.requeue_interrupted().await?;
    if requeued > 0 {
        info!(
            jobs = requeued,
            "resuming uploads interrupted by the last stop"
        );
    }
    Ok(queue)
}

/// Waits for a shutdown signal, refreshing the systemd status, pinging the
/// watchdog and keeping the refresh token alive meanwhile.
async fn supervise(signals: &mut signals::Signals, runner: &Runner, tokens: &Arc<TokenManager>) {
    let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
    let watchdog_period = notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
    let mut watchdog_tick = tokio::time::interval(watchdog_period);
    let mut keepalive_tick = tokio::time::interval(KEEPALIVE_INTERVAL);
    keepalive_tick.tick().await;
    loop {
        tokio::select! {
            event = signals.next() => match event {
                signals::SignalEvent::Shutdown => return,
                signals::SignalEvent::Reload => reload(runner),
            },
            _ = status_tick.tick() => {
                if let Ok(report) = Live::status_of(runner, tokens, None) {
                    notify::status(&report.one_line());
                }
            }
            _ = watchdog_tick.tick() => notify::watchdog(),
            // Refresh tokens expire after 90 days unused; refreshing daily
            // keeps one alive on a server that has nothing to upload for
            // months.
            _ = keepalive_tick.tick() => {
                // On its own task: a slow identity platform must not hold up
                // the watchdog or a shutdown.
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    if let Err(err) = tokens.refresh_now().await {
                        error!(error = %err, "cannot refresh the sign-in");
                    }
                });
            }
        }
    }
}

/// SIGHUP: checks the configuration file again and says whether a restart
/// would take it.
// LIMITATION: a valid new config applies at restart — no live rebuild of the pool.
fn reload(runner: &Runner) {
    notify::reloading();
    match Config::load(&runner.config.source) {
        Ok(new) if new == *runner.config => info!("configuration unchanged"),
        Ok(_) => warn!("configuration changed; restart the service to apply it"),
        Err(errors) => error!(error = %errors, "new configuration is invalid; keeping the old one"),
    }
    notify::ready("configuration checked");
}

/// Queues settled files as the watchers find them.
async fn intake(mut candidates: mpsc::Receiver<Candidate>, runner: Arc<Runner>, wake: Arc<Notify>) {
    while let Some(candidate) = candidates.recv().await {
        match runner.queue.enqueue(&candidate).await {
            Ok(EnqueueOutcome::Queued(id) | EnqueueOutcome::Superseded { new: id, .. }) => {
                debug!(job_id = %id, path = %candidate.local_path.display(), "queued");
                wake.notify_one();
            }
            // Uploaded and recorded, but still here: a crash came between
            // recording the job done and deleting or moving the file. Finish
            // that now.
            Ok(EnqueueOutcome::Unchanged(id)) => {
                let pending =
                    runner.config.mappings.iter().any(|m| {
                        m.name == candidate.mapping && m.after_upload != AfterUpload::Keep
                    });
                if let (true, Ok(Some(job))) = (pending, runner.queue.get(id)) {
                    if job.state == JobState::Done {
                        runner.after_upload(&job).await;
                    }
                }
            }
            Ok(EnqueueOutcome::AlreadyQueued(_) | EnqueueOutcome::AlreadyFailed(_)) => {}
            Err(err) => error!(
                path = %candidate.local_path.display(),
                error = %err,
                "cannot queue a file; it will be found again at the next scan"
            ),
        }
    }
}

/// What the control socket needs from the running daemon.
#[derive(Clone)]
struct Live {
    runner: Arc<Runner>,
    tokens: Arc<TokenManager>,
    pacer: Arc<Pacer>,
    wake: Arc<Notify>,
}

impl Live {
    async fn answer(&self, request: ControlRequest) -> ControlResponse {
        let result = match request {
            ControlRequest::Status => {
                Self::status_of(&self.runner, &self.tokens, Some(&self.pacer))
                    .map(|report| ControlResponse::Status(Box::new(report)))
            }
            ControlRequest::History(query) => query
                .run(&self.runner.queue)
                .map(|records| ControlResponse::History { records }),
            ControlRequest::Retry { job } => {
                let which = job.map_or(RetrySelection::AllFailed, RetrySelection::Job);
                let retried = self.runner.queue.retry_failed(which).await;
                if matches!(retried, Ok(count) if count > 0) {
                    self.wake.notify_waiters();
                    self.wake.notify_one();
                }
                retried.map(|count| ControlResponse::Retried { count })
            }
        };
        result.unwrap_or_else(|err| ControlResponse::Error {
            message: err.to_string(),
        })
    }

    fn status_of(
        runner: &Runner,
        tokens: &TokenManager,
        pacer: Option<&Pacer>,
    ) -> Result<StatusReport, crate::queue::QueueError> {
        let mut report = StatusReport::from_queue(&runner.queue)?;
        report.running = true;
        report.in_flight = runner.activity.snapshot();
        report.auth = match runner.activity.sign_in_trouble() {
            _ if tokens.needs_reauthentication() => AuthState::ReauthenticationNeeded,
            Some(reason) => AuthState::Failing(reason),
            None => AuthState::Ok,
        };
        let now = tokio::time::Instant::now();
        report.throttled_for_secs = pacer
            .and_then(Pacer::closed_until)
            .map(|until| until.saturating_duration_since(now).as_secs().max(1));
        Ok(report)
    }
}
