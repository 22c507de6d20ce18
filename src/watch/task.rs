//! The task that watches one mapping root until shutdown.
//!
//! Three sources feed the settler: inotify events (through `notify`), a walk
//! of the whole root at start and every `rescan_interval`, and a walk after
//! events were lost (kernel queue overflow, our own event channel full, or a
//! watch error). A tick looks again at files whose settle clock ran out and
//! sends the settled ones as candidates. When inotify cannot watch everything
//! (its watch limit), the task says so once and rescans more often instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{self, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::scan::{Entry, MappingRoot, SkipReason, Walk};
use super::settle::{Settler, Verdict};
use super::WatchOptions;
use crate::queue::Candidate;

/// Events buffered between notify's thread and the task; when full, events
/// are dropped and a rescan makes up for them.
const EVENT_CAPACITY: usize = 4096;

/// How often the whole root is walked while inotify cannot cover it.
const DEGRADED_RESCAN_INTERVAL: Duration = Duration::from_secs(30);

/// Bounds of `rescan_interval`: a shorter one would spin, a longer one
/// would overflow the timer.
const MIN_RESCAN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_RESCAN_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Paths remembered as "already reported skipped"; the set is cleared when it
/// grows past this, so a pathological outbox cannot grow memory without end.
const REPORTED_LIMIT: usize = 100_000;

type NotifyResult = notify::Result<Event>;

/// Whether the task goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The state of one mapping's watch.
pub(crate) struct MappingWatch {
    root: Arc<MappingRoot>,
    options: WatchOptions,
    settler: Settler,
    /// Paths whose skip was logged already, so each is logged once.
    reported: HashSet<PathBuf>,
    /// Cloned into notify's handler; bounded by [`EVENT_CAPACITY`].
    events_tx: mpsc::Sender<NotifyResult>,
    /// Set when events were lost; the next tick rescans.
    lost_events: Arc<AtomicBool>,
    /// Dropping it ends the inotify watch; `None` while the root is missing.
    watcher: Option<RecommendedWatcher>,
    /// inotify does not cover the whole tree; rescans fill the gap.
    degraded: bool,
    /// The root could not be read; logged once until it comes back.
    root_unavailable: bool,
    last_scan: Instant,
    /// Where settled files go; bounded, so a slow queue slows the watcher.
    candidates: mpsc::Sender<Candidate>,
}

impl MappingWatch {
    /// Watches `root`, sending settled files to `candidates`.
    pub(crate) fn spawn(
        root: MappingRoot,
        options: WatchOptions,
        candidates: mpsc::Sender<Candidate>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let watch = MappingWatch {
            settler: Settler::new(root.settle_time),
            root: Arc::new(root),
            options,
            reported: HashSet::new(),
            events_tx,
            lost_events: Arc::new(AtomicBool::new(false)),
            watcher: None,
            degraded: false,
            root_unavailable: false,
            last_scan: Instant::now(),
            candidates,
        };
        tokio::spawn(watch.run(events_rx, shutdown))
    }

    async fn run(mut self, mut events: mpsc::Receiver<NotifyResult>, shutdown: CancellationToken) {
        // The watch comes first so that nothing created during the scan is
        // missed; a file both seen and reported is simply observed twice.
        self.ensure_watch();
        self.full_scan("startup").await;

        let mut tick = time::interval(tick_period(self.root.settle_time));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let every = self
            .options
            .rescan_interval
            .clamp(MIN_RESCAN_INTERVAL, MAX_RESCAN_INTERVAL);
        let mut rescan = time::interval_at(Instant::now() + every, every);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let flow = tokio::select! {
                _ = shutdown.cancelled() => Flow::Stop,
                Some(event) = events.recv() => self.on_event(event).await,
                _ = tick.tick() => self.on_tick(&shutdown).await,
                _ = rescan.tick() => {
                    self.ensure_watch();
                    self.full_scan("periodic").await;
                    Flow::Continue
                }
            };
            if flow == Flow::Stop {
                break;
            }
        }
        debug!(mapping = %self.root.name, "outbox watch stopped");
    }

    /// Starts the inotify watch if there is none and the root exists.
    fn ensure_watch(&mut self) {
        if self.watcher.is_some() || !self.root.root.is_dir() {
            return;
        }
        let events = self.events_tx.clone();
        let lost = Arc::clone(&self.lost_events);
        let handler = move |event: NotifyResult| {
            if events.try_send(event).is_err() {
                lost.store(true, Ordering::Relaxed);
            }
        };
        // notify must not follow symlinked folders: that would watch paths
        // outside the root.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher = match RecommendedWatcher::new(handler, config) {
            Ok(watcher) => watcher,
            Err(err) => return self.on_watch_error(err),
        };
        let mode = if self.root.recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        match watcher.watch(&self.root.root, mode) {
            Ok(()) => {
                self.degraded = false;
                self.watcher = Some(watcher);
            }
            Err(err) => {
                // At the watch limit the folders watched so far still report.
                let partial = matches!(err.kind, notify::ErrorKind::MaxFilesWatch);
                self.on_watch_error(err);
                if partial {
                    self.watcher = Some(watcher);
                }
            }
        }
    }

    fn on_watch_error(&mut self, err: notify::Error) {
        let mapping = &self.root.name;
        let path = self.root.root.display();
        if matches!(err.kind, notify::ErrorKind::MaxFilesWatch) {
            if !self.degraded {
                error!(
                    %mapping, %path,
                    fix = "sysctl fs.inotify.max_user_watches=524288",
                    "inotify watch limit reached, relying on rescans"
                );
            }
            self.degraded = true;
        } else if self.watcher.is_none() {
            if !self.degraded {
                error!(%mapping, %path, error = %err, "cannot watch outbox, relying on rescans");
            }
            self.degraded = true;
        } else {
            warn!(%mapping, %path, error = %err, "file watch error, rescanning");
        }
        self.lost_events.store(true, Ordering::Relaxed);
    }

    async fn on_event(&mut self, event: NotifyResult) -> Flow {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                self.on_watch_error(err);
                return Flow::Continue;
            }
        };
        if event.need_rescan() {
            self.lost_events.store(true, Ordering::Relaxed);
            return Flow::Continue;
        }
        let walk_folders = match event.kind {
            // Opening or reading (our own upload included) changes nothing.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
            EventKind::Access(_) => return Flow::Continue,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)) => true,
            EventKind::Any | EventKind::Other => true,
            EventKind::Modify(_) | EventKind::Remove(_) => false,
        };
        for path in event.paths {
            self.consider(path, walk_folders).await;
        }
        Flow::Continue
    }

    /// Reacts to an event about `path`: starts or restarts its clock, walks a
    /// folder that appeared, or forgets what is gone.
    async fn consider(&mut self, path: PathBuf, walk_folders: bool) {
        match self.root.classify(&path) {
            Ok(Entry::File(identity)) => {
                debug!(mapping = %self.root.name, path = %path.display(), "file event");
                self.settler.observe(path, identity, Instant::now(), true);
            }
            Ok(Entry::Folder) if walk_folders && path != self.root.root => {
                let walk = self.walk(path).await;
                self.merge(walk);
            }
            Ok(Entry::Skipped(reason)) => {
                self.settler.forget(&path);
                self.report_skip(path, reason);
            }
            Ok(Entry::Gone) if path == self.root.root => {
                self.watcher = None;
                self.set_root_unavailable(None);
            }
            Ok(Entry::Gone | Entry::Ignored) => self.settler.forget(&path),
            Ok(Entry::Folder) => {}
            Err(err) => {
                debug!(mapping = %self.root.name, path = %path.display(), error = %err,
                    "cannot inspect path");
            }
        }
    }

    async fn on_tick(&mut self, shutdown: &CancellationToken) -> Flow {
        if self.lost_events.swap(false, Ordering::Relaxed) {
            warn!(mapping = %self.root.name, path = %self.root.root.display(),
                "file events were lost, rescanning");
            self.full_scan("events lost").await;
        } else if self.degraded
            && self.last_scan.elapsed()
                >= DEGRADED_RESCAN_INTERVAL.min(self.options.rescan_interval)
        {
            self.ensure_watch();
            self.full_scan("degraded").await;
        }
        self.send_settled(shutdown).await
    }

    /// Looks again at files whose clock ran out and sends the settled ones.
    async fn send_settled(&mut self, shutdown: &CancellationToken) -> Flow {
        let now = Instant::now();
        for path in self.settler.due(now) {
            let identity = match self.root.classify(&path) {
                Ok(Entry::File(identity)) => identity,
                Ok(Entry::Skipped(reason)) => {
                    self.settler.forget(&path);
                    self.report_skip(path, reason);
                    continue;
                }
                Ok(_) | Err(_) => {
                    // Gone or unreadable: a later event or rescan brings it
                    // back if it returns.
                    self.settler.forget(&path);
                    continue;
                }
            };
            let Verdict::Settled(identity) = self.settler.check(&path, identity, now) else {
                continue;
            };
            let Some(candidate) = self.root.candidate(&path, identity) else {
                continue;
            };
            debug!(mapping = %self.root.name, path = %path.display(), bytes = identity.size,
                "file settled");
            tokio::select! {
                _ = shutdown.cancelled() => return Flow::Stop,
                sent = self.candidates.send(candidate) => {
                    if sent.is_err() {
                        // Nobody takes candidates any more: the daemon is
                        // stopping.
                        return Flow::Stop;
                    }
                }
            }
        }
        Flow::Continue
    }

    async fn full_scan(&mut self, reason: &'static str) {
        let started = Instant::now();
        let walk = self.walk(self.root.root.clone()).await;
        self.last_scan = Instant::now();
        let files = walk.files.len();
        self.merge(walk);
        debug!(
            mapping = %self.root.name, path = %self.root.root.display(), reason, files,
            pending = self.settler.len(), elapsed_ms = started.elapsed().as_millis() as u64,
            "outbox scan finished"
        );
    }

    /// Walks below `start` on a blocking thread: a large tree takes a while.
    async fn walk(&self, start: PathBuf) -> Walk {
        let root = Arc::clone(&self.root);
        match tokio::task::spawn_blocking(move || root.walk(&start)).await {
            Ok(walk) => walk,
            Err(err) => {
                error!(mapping = %self.root.name, error = %err, "outbox scan failed");
                Walk::default()
            }
        }
    }

    fn merge(&mut self, walk: Walk) {
        let now = Instant::now();
        let mut root_failed = false;
        for (path, err) in walk.errors {
            if path == self.root.root {
                root_failed = true;
                self.set_root_unavailable(Some(&err));
            } else if self.first_report(&path) {
                warn!(mapping = %self.root.name, path = %path.display(), error = %err,
                    "cannot read in outbox");
            }
        }
        if !root_failed && self.root_unavailable {
            self.root_unavailable = false;
            info!(mapping = %self.root.name, path = %self.root.root.display(),
                "outbox folder is available again");
        }
        for (path, identity) in walk.files {
            self.settler.observe(path, identity, now, false);
        }
        for (path, reason) in walk.skipped {
            self.report_skip(path, reason);
        }
    }

    fn set_root_unavailable(&mut self, err: Option<&std::io::Error>) {
        if self.root_unavailable {
            return;
        }
        self.root_unavailable = true;
        let error = err.map_or_else(|| "removed".to_string(), ToString::to_string);
        error!(mapping = %self.root.name, path = %self.root.root.display(), %error,
            "outbox folder is unavailable, retrying on rescans");
    }

    /// Whether `path` has not been reported yet (and remembers it now).
    fn first_report(&mut self, path: &Path) -> bool {
        if self.reported.len() >= REPORTED_LIMIT {
            self.reported.clear();
        }
        self.reported.insert(path.to_path_buf())
    }

    fn report_skip(&mut self, path: PathBuf, reason: SkipReason) {
        if !self.first_report(&path) {
            return;
        }
        let mapping = &self.root.name;
        let path = path.display();
        match reason {
            SkipReason::Symlink => {
                info!(%mapping, %path, "skipping symlink, follow_symlinks is off")
            }
            SkipReason::DanglingSymlink => info!(%mapping, %path, "skipping dangling symlink"),
            SkipReason::SymlinkToFolder => info!(%mapping, %path, "skipping symlink to a folder"),
            SkipReason::SymlinkOutsideRoot => {
                warn!(%mapping, %path, "skipping symlink that leaves the mapping root");
            }
            SkipReason::Special(kind) => info!(%mapping, %path, kind, "skipping special file"),
            SkipReason::NotUtf8 => warn!(%mapping, %path, "skipping file name that is not utf-8"),
        }
    }
}

/// How often pending files are looked at: often enough that a file is sent
/// soon after its settle time, rarely enough to cost nothing.
fn tick_period(settle_time: Duration) -> Duration {
    (settle_time / 4).clamp(Duration::from_millis(25), Duration::from_secs(1))
}
