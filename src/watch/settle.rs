//! Settle detection: a file is complete once its identity (size, mtime,
//! inode, device) has stayed the same for the mapping's settle time.
//!
//! Events and scans only start or restart a file's clock; the verdict comes
//! from looking at the file again when its clock has run out. A file that
//! changed in between starts over, so a writer that sends no events (or whose
//! events were lost) is still caught. Kept in memory only: after a restart
//! the start-up scan starts every clock afresh.
//!
//! A writer that keeps a file open but pauses for longer than the settle
//! time is indistinguishable from a finished one; the uploader's last
//! identity check and the queue's supersede rule make sure the complete
//! version is uploaded after all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use crate::queue::FileIdentity;

/// A file waiting to settle.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// The identity when the clock (re)started.
    identity: FileIdentity,
    /// When the clock (re)started.
    since: Instant,
}

/// The files of one mapping that are not settled yet.
#[derive(Debug)]
pub(crate) struct Settler {
    settle_time: Duration,
    pending: HashMap<PathBuf, Pending>,
}

/// What a fresh look at a pending file means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Unchanged for the whole settle time; no longer pending.
    Settled(FileIdentity),
    /// Changed, or its time is not up yet; still pending.
    Waiting,
    /// Not pending (gone, or never seen).
    Unknown,
}

impl Settler {
    /// An empty settler for files that must stay unchanged for `settle_time`.
    pub(crate) fn new(settle_time: Duration) -> Settler {
        Settler {
            settle_time,
            pending: HashMap::new(),
        }
    }

    /// A file was seen. A new file starts its clock. For a known file an
    /// event (`restart`) restarts the clock, as does a changed identity; a
    /// scan that finds it unchanged leaves the clock alone.
    pub(crate) fn observe(
        &mut self,
        path: PathBuf,
        identity: FileIdentity,
        now: Instant,
        restart: bool,
    ) {
        let fresh = Pending {
            identity,
            since: now,
        };
        self.pending
            .entry(path)
            .and_modify(|p| {
                if restart || p.identity != identity {
                    *p = fresh;
                }
            })
            .or_insert(fresh);
    }

    /// Stops tracking `path` (it is gone or no longer eligible).
    pub(crate) fn forget(&mut self, path: &Path) {
        self.pending.remove(path);
    }

    /// Pending files whose clock has run out at `now`: only these need a
    /// fresh look.
    pub(crate) fn due(&self, now: Instant) -> Vec<PathBuf> {
        self.pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= self.settle_time)
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Judges `path` given how it looks at `now`.
    // LIMITATION: a writer idle past settle_time looks done — no open-fd check.
    pub(crate) fn check(&mut self, path: &Path, identity: FileIdentity, now: Instant) -> Verdict {
        let Some(pending) = self.pending.get_mut(path) else {
            return Verdict::Unknown;
        };
        if pending.identity != identity {
            *pending = Pending {
                identity,
                since: now,
            };
            return Verdict::Waiting;
        }
        if now.saturating_duration_since(pending.since) < self.settle_time {
            return Verdict::Waiting;
        }
        self.pending.remove(path);
        Verdict::Settled(identity)
    }

    /// How many files are waiting.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(200);

    fn id(size: u64, mtime_ns: i64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino: 7,
            size,
            mtime_ns,
        }
    }

    #[test]
    fn unchanged_file_settles_after_the_settle_time() {
        let t0 = Instant::now();
        let path = PathBuf::from("/o/a.csv");
        let mut s = Settler::new(SETTLE);
        s.observe(path.clone(), id(10, 1), t0, false);

        assert!(s.due(t0 + SETTLE / 2).is_empty());
        assert_eq!(s.check(&path, id(10, 1), t0 + SETTLE / 2), Verdict::Waiting);
        assert_eq!(s.due(t0 + SETTLE), vec![path.clone()]);
        assert_eq!(
            s.check(&path, id(10, 1), t0 + SETTLE),
            Verdict::Settled(id(10, 1))
        );
        assert_eq!(s.len(), 0);
        assert_eq!(s.check(&path, id(10, 1), t0 + SETTLE * 2), Verdict::Unknown);
    }

    #[test]
    fn growing_file_restarts_its_clock() {
        let t0 = Instant::now();
        let path = PathBuf::from("/o/a.csv");
        let mut s = Settler::new(SETTLE);
        s.observe(path.clone(), id(10, 1), t0, false);

        let t1 = t0 + SETTLE;
        assert_eq!(
            s.check(&path, id(20, 2), t1),
            Verdict::Waiting,
            "grew since"
        );
        assert!(s.due(t1 + SETTLE / 2).is_empty());
        let t2 = t1 + SETTLE;
        assert_eq!(s.check(&path, id(20, 2), t2), Verdict::Settled(id(20, 2)));
    }

    #[test]
    fn event_restarts_the_clock_but_a_rescan_does_not() {
        let t0 = Instant::now();
        let path = PathBuf::from("/o/a.csv");
        let mut s = Settler::new(SETTLE);
        s.observe(path.clone(), id(10, 1), t0, false);

        s.observe(path.clone(), id(10, 1), t0 + SETTLE / 2, false);
        assert_eq!(
            s.due(t0 + SETTLE),
            vec![path.clone()],
            "scan kept the clock"
        );

        s.observe(path.clone(), id(10, 1), t0 + SETTLE / 2, true);
        assert!(s.due(t0 + SETTLE).is_empty(), "event restarted the clock");
        assert_eq!(
            s.check(&path, id(10, 1), t0 + SETTLE / 2 + SETTLE),
            Verdict::Settled(id(10, 1))
        );
    }

    #[test]
    fn forgotten_file_is_never_settled() {
        let t0 = Instant::now();
        let path = PathBuf::from("/o/a.csv");
        let mut s = Settler::new(SETTLE);
        s.observe(path.clone(), id(10, 1), t0, false);
        s.forget(&path);
        assert!(s.due(t0 + SETTLE).is_empty());
        assert_eq!(s.check(&path, id(10, 1), t0 + SETTLE), Verdict::Unknown);
    }
}
