//! The Accumulator: dedupes pending paths and cuts batches (size, window, or at once when the
//! writer is idle), keeps at most `max_in_flight` batches out, and pushes back on producers.
//!
//! [`AccumulatorCore`] holds all the logic as a plain struct; [`Accumulator`] is the actix shell.
//!
//! The rules ([`BatchRules`], from `[pipeline]` and `[index]`):
//! - A batch is cut when `max_files` paths are eligible, when the oldest has waited `window_ms`,
//!   or at once when nothing is in flight (`adaptive`). A cut takes every eligible path up to
//!   `index.batch_files`, so under load one commit carries many files.
//! - At most `max_in_flight` batches are out, and a path is never in two batches at once.
//! - A path committed less than `min_rewrite_interval_ms` ago waits, so a part rewritten on every
//!   streamed token is committed a few times a second and its final content always lands; not
//!   after a read that found the file incomplete, whose next change is its completion.
//! - A path announced as being written ([`Origin::Writing`]) waits for its close, at most a
//!   quarter of `settle_ms`; a path that was not ready, or whose batch failed, is retried with
//!   exponential backoff up to `retry_backoff_max_ms`.
//! - A scan's report of the version a batch in flight commits, or of the one just committed, is
//!   dropped: a file is committed once per version.
//! - Back-pressure: the reply to [`PathsChanged`] tells producers to wait ([`WaitForCapacity`])
//!   from three quarters of `max_pending` until half; beyond `max_pending` new paths are refused,
//!   and a rescan that finds them is asked for once the backlog is back to half. Whether
//!   `max_files` paths wait (the writer is behind) goes on the status board, where the
//!   TraceBuilder reads it.

// foldhash, not SipHash, over the path's bytes (`OsString` keys), not `PathBuf`'s component by
// component hash and comparison: every event and every committed file looks its path up here
// several times, and hashing paths was a third of the accumulator's thread at 20k files/s. The
// watcher and the scans build every path from the same root, so equal paths have equal bytes.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ducktail_model::{FileStamp, FileStatus};
use tokio::sync::oneshot;

use crate::messages::*;
use crate::settings::Settings;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::Links;

/// Batching rules, from `[pipeline]` and `[index]`.
#[derive(Debug, Clone)]
pub struct BatchRules {
    /// Cut when this many paths are eligible.
    pub max_files: usize,
    /// Most paths in one batch: a cut takes every eligible path up to this many.
    pub backlog_batch_files: usize,
    /// Cut at the latest this long after the oldest eligible path arrived.
    pub window: Duration,
    /// Cut at once when nothing is in flight.
    pub adaptive: bool,
    /// Batches out at once.
    pub max_in_flight: usize,
    /// Distinct pending paths before new ones are refused.
    pub max_pending: usize,
    /// A path committed less than this long ago waits before it is batched again, so a file
    /// rewritten on every streamed token is committed a few times a second, not every time.
    pub min_rewrite_interval: Duration,
    /// First retry delay of a not-ready path; doubles per attempt.
    pub retry_base: Duration,
    /// How long a file announced as being written waits for its close before it is read
    /// anyway (a writer that keeps its file open never sends one).
    pub write_grace: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl BatchRules {
    /// Rules from settings.
    pub fn from_settings(settings: &Settings) -> BatchRules {
        let pipeline = &settings.pipeline;
        BatchRules {
            max_files: pipeline.max_files,
            backlog_batch_files: settings.index.batch_files.max(pipeline.max_files),
            window: Duration::from_millis(pipeline.window_ms),
            adaptive: pipeline.adaptive,
            max_in_flight: pipeline.max_in_flight,
            max_pending: pipeline.max_pending,
            min_rewrite_interval: Duration::from_millis(pipeline.min_rewrite_interval_ms),
            retry_base: Duration::from_millis((pipeline.settle_ms / 4).max(10)),
            // As long as a first retry: a file read too early would have waited that long.
            write_grace: Duration::from_millis((pipeline.settle_ms / 4).max(10)),
            retry_max: Duration::from_millis(pipeline.retry_backoff_max_ms.max(10)),
        }
    }
}

/// One pending path.
#[derive(Debug, Clone)]
struct PendingPath {
    kind: ducktail_model::FileKind,
    /// First observation of the change not yet committed (latency is measured from here).
    observed_at: Instant,
    /// Not batched before this instant (rewrite throttling or retry backoff).
    eligible_at: Instant,
    /// Whether this is a scheduled retry (does not block draining).
    is_retry: bool,
    /// Announced as being written: its close makes it eligible at once.
    awaiting_close: bool,
}

/// The accumulator's state and rules, without actix.
#[derive(Debug)]
pub struct AccumulatorCore {
    rules: BatchRules,
    pending: HashMap<OsString, PendingPath>,
    in_flight: HashMap<u64, Vec<OsString>>,
    in_flight_paths: HashSet<OsString>,
    /// Paths a scan reported while they were in flight, with the stamp it listed: decided when
    /// their batch commits (see [`AccumulatorCore::committed`]).
    rescanned_in_flight: HashMap<OsString, (ObservedPath, FileStamp)>,
    /// When each path was last committed, and the stamp it was committed with (not a removal or a
    /// read that found it incomplete), for `min_rewrite_interval`.
    last_committed: HashMap<OsString, (Instant, Option<FileStamp>)>,
    retry_attempts: HashMap<OsString, u32>,
    next_batch_id: u64,
    /// Set when a path was refused for lack of room: a rescan must find it later.
    refused_since_rescan: bool,
    /// Whole-tree scans started and ended so far (see [`AccumulatorCore::full_scan`]).
    full_scans_started: u64,
    full_scans_ended: u64,
    /// Per batch in flight, whether a scan ran when it was cut and how many had started.
    cut_during_scans: HashMap<u64, (bool, u64)>,
    /// Paths to look at once more when the running scan ends (one look per path per scan).
    reverify_after_scan: HashMap<OsString, ducktail_model::FileKind>,
}

impl AccumulatorCore {
    /// An empty accumulator.
    pub fn new(rules: BatchRules) -> AccumulatorCore {
        AccumulatorCore {
            rules,
            pending: HashMap::new(),
            in_flight: HashMap::new(),
            in_flight_paths: HashSet::new(),
            rescanned_in_flight: HashMap::new(),
            last_committed: HashMap::new(),
            retry_attempts: HashMap::new(),
            next_batch_id: 1,
            refused_since_rescan: false,
            full_scans_started: 0,
            full_scans_ended: 0,
            cut_during_scans: HashMap::new(),
            reverify_after_scan: HashMap::new(),
        }
    }

    /// A whole-tree scan started or ended (read the tree). A batch cut before a scan ended and
    /// committed after it started has its paths looked at once more when it commits: it may have
    /// read a file before the scan did, and commit a version (a removal, say) the scan could not
    /// tell from the index's (the file moved away and back, same stamp, its events lost). Batches
    /// cut after the scan read the tree, re-verifications included, are not: no loop.
    pub fn full_scan(&mut self, event: FullScan) {
        match event {
            // Full scans run one at a time: a start also ends any scan whose end was lost (a
            // reconciler restarted mid-scan), or every batch would count as crossing a scan.
            FullScan::Started => {
                self.release_reverifications();
                self.full_scans_ended = self.full_scans_started;
                self.full_scans_started += 1;
            }
            FullScan::Ended => {
                self.full_scans_ended = self.full_scans_started;
                self.release_reverifications();
            }
        }
    }

    /// The paths held for after the scan become pending.
    fn release_reverifications(&mut self) {
        let now = Instant::now();
        for (path, kind) in std::mem::take(&mut self.reverify_after_scan) {
            self.pending.entry(path).or_insert(PendingPath { kind, observed_at: now, eligible_at: now, is_retry: false, awaiting_close: false });
        }
    }

    /// Accepts paths; a path already pending keeps its first observation time. Paths beyond
    /// `max_pending` are refused and remembered as "a rescan is needed".
    ///
    /// A scan's report of a version already committed, or being committed, is dropped: a new
    /// directory's scan lists the files the watcher reported in it, and committing each of those
    /// twice doubled the writer's work at 10,000 new files a second (111,262 file commits for
    /// 50,000 files).
    pub fn offer(&mut self, paths: Vec<ObservedPath>, origin: Origin, now: Instant) -> Backlog {
        for observed in paths {
            let key = observed.path.as_os_str();
            if let (Origin::Reconciler, Some(stamp)) = (origin, observed.scanned_stamp) {
                if !self.pending.contains_key(key) {
                    if self.in_flight_paths.contains(key) {
                        self.rescanned_in_flight.insert(key.to_owned(), (observed, stamp));
                        continue;
                    }
                    if self.last_committed.get(key).is_some_and(|(_, committed)| *committed == Some(stamp)) {
                        continue;
                    }
                }
            } else if origin != Origin::Retry {
                // A change the scan did not see: pending now covers the path.
                self.rescanned_in_flight.remove(key);
            }
            let throttled_until = self.throttled(&observed.path, now);
            let writing_until = throttled_until.max(now + self.rules.write_grace);
            if let Some(existing) = self.pending.get_mut(key) {
                match origin {
                    Origin::Retry => {}
                    // A fresh change beats a scheduled retry: look at it now (or at its close).
                    Origin::Writing if existing.is_retry => {
                        existing.is_retry = false;
                        existing.awaiting_close = true;
                        existing.eligible_at = writing_until;
                    }
                    Origin::Writing => {}
                    // The close (or rename, or removal) the file was waiting for.
                    Origin::Watcher if existing.is_retry || existing.awaiting_close => {
                        existing.is_retry = false;
                        existing.awaiting_close = false;
                        existing.eligible_at = throttled_until;
                    }
                    // A scan cannot tell a finished file from one being written.
                    Origin::Reconciler if existing.is_retry => {
                        existing.is_retry = false;
                        existing.eligible_at = throttled_until;
                    }
                    Origin::Watcher | Origin::Reconciler => {}
                }
                continue;
            }
            if self.pending.len() >= self.rules.max_pending {
                self.refused_since_rescan = true;
                continue;
            }
            let eligible_at = match origin {
                Origin::Retry => observed.observed_at.max(now),
                Origin::Writing => writing_until,
                Origin::Watcher | Origin::Reconciler => throttled_until,
            };
            let observed_at = if origin == Origin::Retry { now } else { observed.observed_at };
            self.pending.insert(
                observed.path.into_os_string(),
                PendingPath { kind: observed.kind, observed_at, eligible_at, is_retry: origin == Origin::Retry, awaiting_close: origin == Origin::Writing },
            );
        }
        self.backlog()
    }

    fn throttled(&self, path: &Path, now: Instant) -> Instant {
        match self.last_committed.get(path.as_os_str()) {
            Some((committed, _)) => (*committed + self.rules.min_rewrite_interval).max(now),
            None => now,
        }
    }

    /// The current backlog and whether producers should wait.
    pub fn backlog(&self) -> Backlog {
        Backlog { pending: self.pending.len(), over_high_water: self.pending.len() >= self.rules.max_pending * 3 / 4 }
    }

    /// Whether `max_files` or more paths wait (eligible or held back): the writer is behind.
    pub fn writer_behind(&self) -> bool {
        self.pending.len() >= self.rules.max_files
    }

    /// Whether producers waiting for capacity may go on.
    pub fn below_low_water(&self) -> bool {
        self.pending.len() <= self.rules.max_pending / 2
    }

    /// Cuts the next batch if the rules say so. `draining` cuts whatever is pending now,
    /// ignoring windows and throttles (but not retry backoff).
    pub fn next_batch(&mut self, now: Instant, draining: bool) -> Option<DecodeBatch> {
        if self.in_flight.len() >= self.rules.max_in_flight {
            return None;
        }
        let eligible: Vec<&OsString> = self
            .pending
            .iter()
            .filter(|(path, pending)| !self.in_flight_paths.contains(*path) && (pending.eligible_at <= now || (draining && !pending.is_retry)))
            .map(|(path, _)| path)
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let oldest = eligible.iter().filter_map(|path| self.pending.get(*path)).map(|pending| pending.observed_at.max(pending.eligible_at)).min()?;
        let writer_idle = self.in_flight.is_empty();
        let cut = draining || eligible.len() >= self.rules.max_files || (self.rules.adaptive && writer_idle) || oldest + self.rules.window <= now;
        if !cut {
            return None;
        }
        // Everything eligible goes, up to the backlog size: under load one commit carries many
        // files, so the per-commit cost is amortised and latency falls instead of queueing.
        let size = self.rules.backlog_batch_files.max(self.rules.max_files);
        let chosen: Vec<OsString> = eligible.into_iter().take(size).cloned().collect();
        let batch_id = self.next_batch_id;
        self.next_batch_id += 1;
        let mut paths = Vec::with_capacity(chosen.len());
        for path in &chosen {
            if let Some(pending) = self.pending.remove(path) {
                paths.push(ObservedPath::new(PathBuf::from(path), pending.kind, pending.observed_at));
            }
            self.in_flight_paths.insert(path.clone());
        }
        self.in_flight.insert(batch_id, chosen);
        self.cut_during_scans.insert(batch_id, (self.full_scans_started > self.full_scans_ended, self.full_scans_started));
        Some(DecodeBatch { batch_id, paths })
    }

    /// When the next cut could happen without new input, if ever. A full in-flight window
    /// needs no timer: the next [`BatchCommitted`] pumps again.
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        if self.in_flight.len() >= self.rules.max_in_flight {
            return None;
        }
        self.pending
            .iter()
            .filter(|(path, _)| !self.in_flight_paths.contains(*path))
            .map(|(_, pending)| if pending.eligible_at > now { pending.eligible_at } else { pending.observed_at.max(pending.eligible_at) + self.rules.window })
            .min()
    }

    /// A batch committed: free its paths and schedule retries of those not ready yet. `files`
    /// says what the index now holds for each path; a scan's report that arrived while the path
    /// was in flight is dropped when it listed the stamp committed, else it becomes pending.
    pub fn committed(&mut self, batch_id: u64, files: &[CommittedFile], not_ready: Vec<ObservedPath>, now: Instant) {
        let crossed_a_scan = self.cut_during_scans.remove(&batch_id).is_some_and(|(scanning, started)| scanning || started < self.full_scans_started);
        let scanning = self.full_scans_started > self.full_scans_ended;
        if let Some(paths) = self.in_flight.remove(&batch_id) {
            let kinds: HashMap<&OsStr, ducktail_model::FileKind> = files.iter().map(|file| (file.path.as_os_str(), file.kind)).collect();
            let not_ready_paths: HashSet<&OsStr> = not_ready.iter().map(|observed| observed.path.as_os_str()).collect();
            let committed_stamps: HashMap<&OsStr, FileStamp> = files
                .iter()
                .filter_map(|file| match file.state {
                    Some((stamp, status)) if status != FileStatus::Pending => Some((file.path.as_os_str(), stamp)),
                    _ => None,
                })
                .collect();
            for path in paths {
                self.in_flight_paths.remove(&path);
                let committed_stamp = committed_stamps.get(path.as_os_str()).copied();
                if let Some((observed, scanned)) = self.rescanned_in_flight.remove(&path) {
                    if committed_stamp != Some(scanned) && !self.pending.contains_key(&path) {
                        self.pending.insert(
                            path.clone(),
                            PendingPath { kind: observed.kind, observed_at: observed.observed_at, eligible_at: now, is_retry: false, awaiting_close: false },
                        );
                    }
                }
                if crossed_a_scan && !self.pending.contains_key(&path) && !not_ready_paths.contains(path.as_os_str()) {
                    if let Some(kind) = kinds.get(path.as_os_str()) {
                        if scanning {
                            // Once the scan has read the tree: looked at now, the path would be
                            // cut during the scan again, and again.
                            self.reverify_after_scan.insert(path.clone(), *kind);
                        } else {
                            self.pending
                                .insert(path.clone(), PendingPath { kind: *kind, observed_at: now, eligible_at: now, is_retry: false, awaiting_close: false });
                        }
                    }
                }
                if !not_ready_paths.contains(path.as_os_str()) {
                    self.retry_attempts.remove(&path);
                }
                // Changed again while in flight (a streamed file): throttle the next commit.
                // Not after a read that found the file incomplete: the change is its completion.
                if let Some(pending) = self.pending.get_mut(&path).filter(|_| !not_ready_paths.contains(path.as_os_str())) {
                    pending.eligible_at = pending.eligible_at.max(now + self.rules.min_rewrite_interval);
                }
                self.last_committed.insert(path, (now, committed_stamp));
            }
        }
        for observed in not_ready {
            self.schedule_retry(observed, now);
        }
        // Forget throttling marks that can no longer matter, so the map stays small.
        let horizon = self.rules.min_rewrite_interval;
        self.last_committed.retain(|_, (committed, _)| now.saturating_duration_since(*committed) < horizon);
    }

    /// A batch failed: free its paths and retry all of them with backoff.
    pub fn failed(&mut self, batch_id: u64, paths: Vec<ObservedPath>, now: Instant) {
        self.cut_during_scans.remove(&batch_id);
        if let Some(in_flight) = self.in_flight.remove(&batch_id) {
            for path in in_flight {
                self.in_flight_paths.remove(&path);
                // Every path of the batch is retried below.
                self.rescanned_in_flight.remove(&path);
            }
        }
        for observed in paths {
            self.schedule_retry(observed, now);
        }
    }

    fn schedule_retry(&mut self, observed: ObservedPath, now: Instant) {
        let attempts = self.retry_attempts.entry(observed.path.as_os_str().to_owned()).or_insert(0);
        *attempts = attempts.saturating_add(1);
        let delay = self.rules.retry_base.saturating_mul(1 << (*attempts - 1).min(16)).min(self.rules.retry_max);
        let retry_at = now + delay;
        match self.pending.get_mut(observed.path.as_os_str()) {
            // A newer change is already pending: it will be looked at anyway.
            Some(_) => {}
            None => {
                self.pending.insert(
                    observed.path.into_os_string(),
                    PendingPath { kind: observed.kind, observed_at: now, eligible_at: retry_at, is_retry: true, awaiting_close: false },
                );
            }
        }
    }

    /// Pending and in-flight counts.
    pub fn status(&self) -> PipelineStatus {
        PipelineStatus { pending: self.pending.len(), in_flight: self.in_flight.len() }
    }

    /// Nothing pending (scheduled retries aside) and nothing in flight.
    pub fn is_drained(&self) -> bool {
        // Paths waiting for a scan to end are not pending work: the next start's scan covers them.
        self.in_flight.is_empty() && self.pending.values().all(|pending| pending.is_retry)
    }

    /// Takes the "a path was refused" flag.
    pub fn take_refused(&mut self) -> bool {
        std::mem::take(&mut self.refused_since_rescan)
    }
}

/// The actix shell around [`AccumulatorCore`].
pub struct Accumulator {
    /// Batching state; rebuilt empty on restart (a rescan recovers what it held).
    core: AccumulatorCore,
    /// Where batches go (decoders) and who rescans (reconciler).
    links: Arc<Links>,
    /// Producers waiting for the backlog to shrink.
    capacity_waiters: Vec<oneshot::Sender<()>>,
    /// Shutdown / readiness waiters for "drained".
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// The pending wake-up timer.
    timer: Option<SpawnHandle>,
    /// Shared counters.
    board: Arc<StatusBoard>,
    /// Test seams.
    faults: Arc<Faults>,
    /// The storage root, for full rescans.
    storage_root: PathBuf,
}

impl Accumulator {
    /// A new accumulator sending batches to `decoders`.
    pub fn new(rules: BatchRules, links: Arc<Links>, board: Arc<StatusBoard>, faults: Arc<Faults>, storage_root: PathBuf) -> Accumulator {
        Accumulator {
            core: AccumulatorCore::new(rules),
            links,
            capacity_waiters: Vec::new(),
            drain_waiters: Vec::new(),
            timer: None,
            board,
            faults,
            storage_root,
        }
    }

    /// Cuts every batch the rules allow, re-arms the timer and wakes waiters.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let draining = !self.drain_waiters.is_empty();
        while let Some(batch) = self.core.next_batch(now, draining) {
            // Bounded: at most max_in_flight batches are ever outstanding.
            self.links.decoders().do_send(batch);
        }
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
        if let Some(wakeup) = self.core.next_wakeup(Instant::now()) {
            let delay = wakeup.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            self.timer = Some(ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                act.pump(ctx);
            }));
        }
        self.board.writer_behind.store(self.core.writer_behind(), std::sync::atomic::Ordering::Relaxed);
        self.board.publish_pipeline_status(self.core.status());
        if self.core.below_low_water() {
            for waiter in self.capacity_waiters.drain(..) {
                let _ = waiter.send(());
            }
            if self.core.take_refused() {
                // Harmless if lost: the periodic scan finds the refused paths too.
                self.links.reconciler().do_send(Rescan { scope: self.storage_root.clone(), reason: "paths were refused while the backlog was full" });
            }
        }
        if self.core.is_drained() {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for Accumulator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64);
    }
}

impl Supervised for Accumulator {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Pending paths are lost with the old state; a full rescan finds every one of them,
        // because none of them was committed.
        self.core = AccumulatorCore::new(self.core.rules.clone());
        self.board.writer_behind.store(false, std::sync::atomic::Ordering::Relaxed);
        self.board.publish_pipeline_status(self.core.status());
        self.capacity_waiters.clear();
        self.timer = None;
        self.links.reconciler().do_send(Rescan { scope: self.storage_root.clone(), reason: "the accumulator restarted" });
    }
}

impl Handler<FullScan> for Accumulator {
    type Result = ();
    fn handle(&mut self, event: FullScan, _ctx: &mut Self::Context) {
        self.core.full_scan(event);
        self.board.publish_pipeline_status(self.core.status());
    }
}

impl Handler<PathsChanged> for Accumulator {
    type Result = MessageResult<PathsChanged>;
    fn handle(&mut self, message: PathsChanged, ctx: &mut Self::Context) -> Self::Result {
        let (faults, board) = (self.faults.clone(), self.board.clone());
        let result = catch_panic("accumulator", &board, || {
            faults.maybe_panic("accumulator", &board);
            self.core.offer(message.paths, message.origin, Instant::now())
        });
        match result {
            Some(backlog) => {
                self.pump(ctx);
                MessageResult(backlog)
            }
            None => {
                ctx.stop();
                MessageResult(Backlog { pending: 0, over_high_water: true })
            }
        }
    }
}

impl Handler<WaitForCapacity> for Accumulator {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _message: WaitForCapacity, _ctx: &mut Self::Context) -> Self::Result {
        let (sender, receiver) = oneshot::channel();
        if self.core.below_low_water() {
            let _ = sender.send(());
        } else {
            self.capacity_waiters.push(sender);
        }
        Box::pin(async move {
            let _ = receiver.await;
        })
    }
}

impl Handler<BatchCommitted> for Accumulator {
    type Result = ();
    fn handle(&mut self, message: BatchCommitted, ctx: &mut Self::Context) {
        self.core.committed(message.batch_id, &message.files, message.not_ready, Instant::now());
        self.pump(ctx);
    }
}

impl Handler<BatchFailed> for Accumulator {
    type Result = ();
    fn handle(&mut self, message: BatchFailed, ctx: &mut Self::Context) {
        tracing::warn!(batch_id = message.batch_id, files = message.paths.len(), reason = %message.reason, "batch failed; retrying its files");
        self.board.batches_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.core.failed(message.batch_id, message.paths, Instant::now());
        self.pump(ctx);
    }
}

impl Handler<Drain> for Accumulator {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _message: Drain, ctx: &mut Self::Context) -> Self::Result {
        let (sender, receiver) = oneshot::channel();
        self.drain_waiters.push(sender);
        self.pump(ctx);
        Box::pin(async move {
            let _ = receiver.await;
        })
    }
}

impl Handler<GetPipelineStatus> for Accumulator {
    type Result = MessageResult<GetPipelineStatus>;
    fn handle(&mut self, _message: GetPipelineStatus, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.core.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ducktail_model::FileKind;

    fn rules() -> BatchRules {
        BatchRules {
            max_files: 3,
            backlog_batch_files: 10,
            window: Duration::from_millis(200),
            adaptive: true,
            max_in_flight: 1,
            max_pending: 8,
            min_rewrite_interval: Duration::from_millis(250),
            retry_base: Duration::from_millis(100),
            write_grace: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
        }
    }

    fn observed(name: &str, at: Instant) -> ObservedPath {
        ObservedPath::new(PathBuf::from(name), FileKind::Part, at)
    }

    #[test]
    fn a_batch_in_flight_across_a_full_scan_is_looked_at_once_more() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        core.offer(vec![observed("a", now)], Origin::Watcher, now);
        let first = core.next_batch(now, false).expect("cut at once");
        // A scan reads the tree while the batch is in flight; the batch then commits "a" as gone.
        core.full_scan(FullScan::Started);
        core.full_scan(FullScan::Ended);
        let gone = [CommittedFile { path: PathBuf::from("a"), kind: FileKind::Part, state: None }];
        core.committed(first.batch_id, &gone, Vec::new(), now);
        assert_eq!(core.status().pending, 1, "the scan could not have told: look again");
        // The second look was cut after the scan read the tree: committed, it is not looked at again.
        let later = now + Duration::from_secs(1);
        let second = core.next_batch(later, false).expect("the second look");
        core.committed(second.batch_id, &gone, Vec::new(), later);
        assert_eq!(core.status().pending, 0);
        assert!(core.is_drained());
    }

    #[test]
    fn a_lone_file_is_cut_at_once_when_idle_and_duplicates_collapse() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        core.offer(vec![observed("a", now), observed("a", now)], Origin::Watcher, now);
        let batch = core.next_batch(now, false).expect("idle writer: cut at once");
        assert_eq!(batch.paths.len(), 1);
        assert!(core.next_batch(now, false).is_none(), "max_in_flight bounds batches out");
    }

    #[test]
    fn a_path_in_flight_is_not_batched_twice_and_rewrites_are_throttled() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        core.offer(vec![observed("a", now)], Origin::Watcher, now);
        let first = core.next_batch(now, false).unwrap();
        core.offer(vec![observed("a", now)], Origin::Watcher, now);
        core.committed(first.batch_id, &[], Vec::new(), now);
        // Committed just now: the rewrite waits for min_rewrite_interval.
        core.offer(vec![observed("a", now)], Origin::Watcher, now);
        assert!(core.next_batch(now, false).is_none());
        assert!(core.next_batch(now + Duration::from_millis(260), false).is_some());
    }

    fn scanned(name: &str, at: Instant, mtime_ns: i64) -> ObservedPath {
        ObservedPath { scanned_stamp: Some(FileStamp { mtime_ns, size: 1 }), ..observed(name, at) }
    }

    fn indexed(name: &str, mtime_ns: i64) -> CommittedFile {
        CommittedFile { path: PathBuf::from(name), kind: FileKind::Part, state: Some((FileStamp { mtime_ns, size: 1 }, FileStatus::Indexed)) }
    }

    #[test]
    fn a_scan_report_of_the_version_being_or_just_committed_is_dropped_and_of_another_kept() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        core.offer(vec![observed("same", now), observed("newer", now), observed("gone", now)], Origin::Watcher, now);
        let batch = core.next_batch(now, false).unwrap();
        // A new directory's scan lists them while their batch is in flight: "same" as the batch
        // read it, "newer" rewritten since (its event lost), "gone" present though the batch
        // found it removed.
        core.offer(vec![scanned("same", now, 1), scanned("newer", now, 2), scanned("gone", now, 1)], Origin::Reconciler, now);
        assert_eq!(core.status().pending, 0, "decided at the commit, not queued behind the batch");
        let removed = CommittedFile { path: PathBuf::from("gone"), kind: FileKind::Part, state: None };
        core.committed(batch.batch_id, &[indexed("same", 1), indexed("newer", 1), removed], Vec::new(), now);
        let later = now + Duration::from_millis(300);
        let again = core.next_batch(later, false).expect("the versions the batch did not commit go again");
        let mut paths: Vec<_> = again.paths.iter().map(|observed| observed.path.to_str().unwrap()).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["gone", "newer"]);
        core.committed(again.batch_id, &[indexed("gone", 1), indexed("newer", 2)], Vec::new(), later);
        // A scan that started before that commit reports what it just committed: dropped; a
        // report of another version is kept.
        core.offer(vec![scanned("newer", later, 2), scanned("gone", later, 3)], Origin::Reconciler, later);
        assert_eq!(core.status().pending, 1);
        // The watcher's reports carry no stamp and are never dropped.
        core.offer(vec![observed("newer", later)], Origin::Watcher, later);
        assert_eq!(core.status().pending, 2);
    }

    #[test]
    fn without_adaptive_the_window_or_size_cuts() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(BatchRules { adaptive: false, max_in_flight: 4, ..rules() });
        core.offer(vec![observed("a", now)], Origin::Watcher, now);
        assert!(core.next_batch(now, false).is_none());
        assert!(core.next_batch(now + Duration::from_millis(200), false).is_some());
        core.offer(vec![observed("b", now), observed("c", now), observed("d", now)], Origin::Watcher, now);
        assert_eq!(core.next_batch(now, false).unwrap().paths.len(), 3);
    }

    #[test]
    fn a_backlog_goes_out_in_batches_up_to_the_backlog_size() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(BatchRules { max_in_flight: 2, max_pending: 100, ..rules() });
        let paths: Vec<ObservedPath> = (0..25).map(|index| observed(&format!("p{index}"), now)).collect();
        core.offer(paths, Origin::Watcher, now);
        assert_eq!(core.next_batch(now, false).unwrap().paths.len(), 10, "more than max_files waiting: one batch takes up to the backlog size");
        assert_eq!(core.next_batch(now, false).unwrap().paths.len(), 10);
    }

    #[test]
    fn the_writer_is_behind_while_a_full_batch_waits() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        core.offer((0..2).map(|index| observed(&format!("p{index}"), now)).collect(), Origin::Watcher, now);
        assert!(!core.writer_behind(), "fewer than max_files wait");
        core.offer(vec![observed("p2", now)], Origin::Watcher, now);
        assert!(core.writer_behind(), "max_files wait");
        core.next_batch(now, false).unwrap();
        assert!(!core.writer_behind(), "cut into a batch");
    }

    #[test]
    fn backlog_is_bounded_and_refusals_request_a_rescan() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        let paths = (0..20).map(|index| observed(&format!("p{index}"), now)).collect();
        let backlog = core.offer(paths, Origin::Reconciler, now);
        assert_eq!(backlog.pending, 8);
        assert!(backlog.over_high_water);
        assert!(core.take_refused());
    }

    #[test]
    fn not_ready_paths_are_retried_with_growing_backoff() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        core.offer(vec![observed("a", now)], Origin::Watcher, now);
        let batch = core.next_batch(now, false).unwrap();
        core.committed(batch.batch_id, &[], vec![observed("a", now)], now);
        assert!(core.is_drained(), "a scheduled retry does not block draining");
        assert!(core.next_batch(now + Duration::from_millis(50), false).is_none());
        let retry = core.next_batch(now + Duration::from_millis(100), false).unwrap();
        core.committed(retry.batch_id, &[], vec![observed("a", now)], now + Duration::from_millis(100));
        assert!(core.next_batch(now + Duration::from_millis(250), false).is_none(), "second retry waits 200 ms");
        assert!(core.next_batch(now + Duration::from_millis(300), false).is_some());
    }

    #[test]
    fn a_file_being_written_waits_for_its_close_or_the_grace() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        core.offer(vec![observed("a", now)], Origin::Writing, now);
        assert!(core.next_batch(now, false).is_none(), "created, not closed: reading now would find it partial");
        core.offer(vec![observed("a", now)], Origin::Watcher, now + Duration::from_millis(1));
        assert!(core.next_batch(now + Duration::from_millis(1), false).is_some(), "closed: read at once");

        core.offer(vec![observed("b", now)], Origin::Writing, now);
        core.offer(vec![observed("b", now)], Origin::Reconciler, now);
        assert!(core.next_batch(now + Duration::from_millis(99), false).is_none(), "a scan does not stand for the close");
        let mut core = AccumulatorCore::new(rules());
        core.offer(vec![observed("b", now)], Origin::Writing, now);
        assert!(core.next_batch(now + Duration::from_millis(100), false).is_some(), "never closed: read after the grace");
    }

    #[test]
    fn a_change_that_completes_a_file_read_too_early_is_not_throttled() {
        let now = Instant::now();
        let mut core = AccumulatorCore::new(rules());
        core.offer(vec![observed("a", now)], Origin::Reconciler, now);
        let batch = core.next_batch(now, false).unwrap();
        // The read found the file incomplete; meanwhile its writer closed it.
        core.offer(vec![observed("a", now)], Origin::Watcher, now);
        core.committed(batch.batch_id, &[], vec![observed("a", now)], now);
        assert!(core.next_batch(now, false).is_some(), "the completed file is read at once, not after the rewrite throttle");
    }
}
