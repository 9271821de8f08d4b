//! The Reconciler: owns "what is on disk vs. what is indexed". It loads the file index once,
//! does the startup catch-up, rescans periodically and on demand, and feeds what is new, changed
//! or gone to the accumulator.
//!
//! Its view of `file_index` ([`IndexView`]) is built once, as the rows stream in, and kept all
//! day: every [`BatchCommitted`] updates it (commits that arrive while a scan has the view are
//! applied when it comes back). Scans run on the blocking pool and are of two kinds:
//! - a full scan (the startup catch-up, the periodic reconcile, a [`Rescan`] of the whole tree
//!   after a queue overflow or a watcher error) streams the listing ([`scan_storage_streaming`])
//!   into a [`Comparison`] that keeps only what changed, so the listing of unchanged files is
//!   never held; only a full scan sweeps the view for removals;
//! - a new directory's scan ([`scan_folder`], the same listing rules) looks for the files written
//!   before its watch existed, not for removals: a removal is an event, and the next full scan is
//!   the net for one that was missed (a folder moved away included).
//!
//! Scopes requested while a scan runs are collapsed to the outermost and scanned together in the
//! next pass. Files that batches committed while a scan ran are dropped from its report, so a
//! file is committed once per version.
//!
//! The periodic reconcile waits `reconcile.interval`, or twenty times the last full scan when
//! that is longer ([`periodic_delay`]), and skips its scan while an earlier scan's changes are
//! still being delivered: it would list them again, still uncommitted, and they would be committed
//! twice. Each tick also asks the source followers for their full comparison.
//!
//! Readiness: once the catch-up's paths are handed over, the reconciler drains the accumulator,
//! has the TraceBuilder compute at once ([`FlushTraces`]) and waits on a [`WriterBarrier`], then
//! marks the board ready; so `/readyz` means the catch-up's records and traces are committed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ducktail_sources::opencode::{scan_folder, scan_storage_streaming, scan_threads, ScannedFile};
use ducktail_store::ReaderPool;

use crate::files::{Comparison, Differences, IndexView, IndexedState};
use crate::messages::*;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::Links;

/// Path → indexed state: the reconciler's view of `file_index`.
type View = IndexView;

/// A scan's result: the view back with what changed and what could not be read, or the view (if
/// it was loaded) and why the scan failed.
type ScanOutcome = Result<(View, Differences, Vec<String>), (Option<View>, String)>;

/// Paths per [`PathsChanged`] message from a scan.
const SCAN_CHUNK: usize = 1_000;

/// Files a full scan compares per piece of its streamed listing.
const COMPARE_CHUNK: usize = 1_000;

/// Lists the OpenCode files under `scope` and keeps in `changed` those `comparison` finds new,
/// changed or pending. The whole tree (`scope` is the storage root) is compared as the listing
/// streams in, so a full scan of 1M files never holds the listing of the unchanged ones.
fn compare_scope(storage_root: &Path, scope: &Path, comparison: &mut Comparison<'_>, changed: &mut Vec<ScannedFile>, errors: &mut Vec<String>) {
    if scope == storage_root {
        let mut piece = Vec::with_capacity(COMPARE_CHUNK);
        scan_storage_streaming(storage_root, scan_threads(), &mut |item| {
            match item {
                Ok(file) => piece.push(file),
                Err(error) => errors.push(error.to_string()),
            }
            if piece.len() >= COMPARE_CHUNK {
                comparison.keep_changed(&mut piece);
                changed.append(&mut piece);
            }
            true
        });
        comparison.keep_changed(&mut piece);
        changed.append(&mut piece);
        return;
    }
    let mut files = Vec::new();
    for item in scan_folder(storage_root, scope) {
        match item {
            Ok(file) => files.push(file),
            Err(error) => errors.push(error.to_string()),
        }
    }
    comparison.keep_changed(&mut files);
    changed.append(&mut files);
}

/// The reconciler actor.
pub struct Reconciler {
    /// `<opencode>/storage`.
    storage_root: PathBuf,
    /// Path → indexed state. `None` while a scan has it on a blocking thread (or before loading).
    view: Option<View>,
    /// Commits that arrived while the view was out; applied when it returns.
    buffered_commits: Vec<BatchCommitted>,
    /// Increments per scan (mark-and-sweep of removals).
    scan_mark: u32,
    /// A scan is running.
    scanning: bool,
    /// Scopes requested while a scan ran; the next scan covers all of them in one pass (a burst
    /// of new directories would otherwise cost one round trip per directory).
    queued_scopes: HashSet<PathBuf>,
    /// Scans whose differences are still being handed to the accumulator (a catch-up of 1M files
    /// takes minutes, paced by the accumulator's capacity).
    delivering: usize,
    /// Reader connections for loading the file index.
    readers: ReaderPool,
    /// The accumulator.
    links: Arc<Links>,
    /// Least time between full scans (see [`periodic_delay`]).
    interval: Duration,
    /// How long the last full scan took.
    last_full_scan: Duration,
    /// Shared counters (readiness is set here).
    board: Arc<StatusBoard>,
    /// Test seams.
    faults: Arc<Faults>,
}

impl Reconciler {
    /// A reconciler for the tree under `storage_root`.
    pub fn new(storage_root: PathBuf, readers: ReaderPool, links: Arc<Links>, interval: Duration, board: Arc<StatusBoard>, faults: Arc<Faults>) -> Reconciler {
        Reconciler {
            storage_root,
            view: None,
            buffered_commits: Vec::new(),
            scan_mark: 0,
            scanning: false,
            queued_scopes: HashSet::new(),
            delivering: 0,
            readers,
            links,
            interval,
            last_full_scan: Duration::ZERO,
            board,
            faults,
        }
    }

    fn apply_commit(view: &mut View, committed: &BatchCommitted) {
        for file in &committed.files {
            match file.state {
                Some((stamp, status)) => {
                    let seen_in_scan = view.get(&file.path).map_or(0, |state| state.seen_in_scan);
                    view.insert(&file.path, IndexedState { kind: file.kind, stamp, status, seen_in_scan });
                }
                None => {
                    view.remove(&file.path);
                }
            }
        }
    }

    fn request_scan(&mut self, scope: PathBuf, reason: &'static str, ctx: &mut Context<Self>) {
        if self.scanning {
            // Made disjoint when the scan starts: comparing each request with every queued scope
            // here took 66 % of the daemon's CPU while a burst made thousands of directories.
            self.queued_scopes.insert(scope);
            return;
        }
        self.start_scan(vec![scope], reason, ctx);
    }

    /// Scans `scopes` (disjoint: none inside another) in one pass on the blocking pool.
    fn start_scan(&mut self, scopes: Vec<PathBuf>, reason: &'static str, ctx: &mut Context<Self>) {
        self.scanning = true;
        self.scan_mark = self.scan_mark.wrapping_add(1);
        let mark = self.scan_mark;
        let view = self.view.take();
        let readers = self.readers.clone();
        let storage_root = self.storage_root.clone();
        let is_catch_up = !self.board.is_ready();
        let is_full_scan = scopes.contains(&self.storage_root);
        if is_full_scan {
            // Batches in flight across the scan are looked at once more (see `FullScan`).
            self.links.accumulator().do_send(FullScan::Started);
        }
        tracing::debug!(scopes = scopes.len(), first = %scopes[0].display(), reason, "scan started");
        let started = Instant::now();
        let scan = actix_rt::task::spawn_blocking(move || -> ScanOutcome {
            let mut view = match view {
                Some(view) => view,
                None => match readers.reader().and_then(|reader| IndexView::load(&storage_root, &reader)) {
                    Ok(view) => view,
                    Err(error) => return Err((None, error.to_string())),
                },
            };
            if !storage_root.is_dir() {
                return Err((Some(view), format!("OpenCode storage folder {} does not exist (yet); waiting for it", storage_root.display())));
            }
            let (mut changed, mut errors) = (Vec::new(), Vec::new());
            let mut comparison = Comparison::new(&mut view, mark);
            for scope in &scopes {
                compare_scope(&storage_root, scope, &mut comparison, &mut changed, &mut errors);
            }
            let unchanged = comparison.unchanged;
            // Only a new directory is scanned below the root (every other rescan is of the whole
            // tree), and it is scanned for the files written before its watch, not for removals:
            // a file's removal is an event, and the periodic full scan is the net for missed ones
            // (a folder moved away leaves its files to it, as it always did). The sweep visits
            // the whole view: on a 1M-file tree, 19 of the 30 ms of CPU a new folder cost.
            let removed = if is_full_scan { comparison.removed() } else { Vec::new() };
            Ok((view, Differences { changed, removed, unchanged }, errors))
        });
        ctx.spawn(actix::fut::wrap_future(scan).map(move |result, act: &mut Reconciler, ctx: &mut Context<Self>| {
            act.scanning = false;
            if is_full_scan {
                // The tree is read: a batch cut from now on reads after the scan did.
                act.links.accumulator().do_send(FullScan::Ended);
            }
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(join_error) => Err((None, format!("scan thread failed: {join_error}"))),
            };
            match outcome {
                Ok((mut view, mut differences, errors)) => {
                    let commits_while_scanning = !act.buffered_commits.is_empty();
                    for committed in act.buffered_commits.drain(..) {
                        Reconciler::apply_commit(&mut view, &committed);
                    }
                    if commits_while_scanning {
                        // The scan compared with the view as it was when it started; batches
                        // committed since may hold the very versions it listed (a new directory's
                        // files, which the watcher reported too): sending those would commit
                        // them again.
                        differences.changed.retain(|file| !view.get(&file.path).is_some_and(|state| state.holds(file.stamp)));
                    }
                    act.view = Some(view);
                    for error in errors.iter().take(10) {
                        tracing::warn!(%error, "could not read part of the tree");
                    }
                    act.board.scans_completed.fetch_add(1, Ordering::Relaxed);
                    let (changed, removed) = (differences.changed.len(), differences.removed.len());
                    let scan_ms = started.elapsed().as_millis() as u64;
                    let metrics = &act.board.metrics;
                    metrics.reconcile_seconds.with_label_values(&[if is_full_scan { "full" } else { "partial" }]).observe(started.elapsed().as_secs_f64());
                    if !is_catch_up {
                        metrics.reconciler_recovered.with_label_values(&["changed"]).inc_by(changed as u64);
                        metrics.reconciler_recovered.with_label_values(&["removed"]).inc_by(removed as u64);
                    }
                    // Whole-tree scans are rare and worth a line; new-directory scans are not.
                    if is_full_scan {
                        act.last_full_scan = started.elapsed();
                        tracing::info!(changed, removed, unchanged = differences.unchanged, scan_ms, "scan finished");
                    } else {
                        tracing::debug!(changed, removed, unchanged = differences.unchanged, scan_ms, "scan finished");
                    }
                    act.send_differences(differences, is_catch_up, ctx);
                }
                Err((view, reason)) => {
                    if view.is_some() {
                        act.view = view;
                    }
                    tracing::warn!(%reason, "scan failed; retrying at the next interval");
                    if is_catch_up {
                        // Nothing to catch up from: serve what the database holds.
                        act.board.ready.store(true, Ordering::Release);
                    }
                }
            }
            let queued = outermost_scopes(std::mem::take(&mut act.queued_scopes));
            if !queued.is_empty() {
                act.start_scan(queued, "queued while another scan ran", ctx);
            }
        }));
    }

    fn send_differences(&mut self, differences: Differences, is_catch_up: bool, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut paths: Vec<ObservedPath> = differences
            .changed
            .into_iter()
            .map(|file| ObservedPath { path: file.path, kind: file.kind, observed_at: now, scanned_stamp: Some(file.stamp) })
            .collect();
        paths.extend(differences.removed.into_iter().map(|(path, kind)| ObservedPath::new(path, kind, now)));
        let accumulator = self.links.accumulator().clone();
        let (trace_builder, writer) = (self.links.trace_builder().clone(), self.links.writer().clone());
        let board = self.board.clone();
        let sending = async move {
            let mut remaining = paths;
            while !remaining.is_empty() {
                let rest = remaining.split_off(remaining.len().min(SCAN_CHUNK));
                let chunk = std::mem::replace(&mut remaining, rest);
                match accumulator.send(PathsChanged { paths: chunk, origin: Origin::Reconciler }).await {
                    Ok(backlog) if backlog.over_high_water => {
                        let _ = accumulator.send(WaitForCapacity).await;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        // The accumulator is restarting; it asks for a full rescan itself.
                        tracing::warn!(%error, "accumulator unavailable; the next scan resends");
                        break;
                    }
                }
            }
            if is_catch_up {
                let _ = accumulator.send(Drain).await;
                // Ready also means the traces reflect the catch-up: the TraceBuilder computes what
                // the drained batches dirtied now (not after its rest), and the barrier returns once
                // the writer has applied those rows.
                let _ = trace_builder.send(FlushTraces).await;
                let _ = writer.send(WriterBarrier).await;
                board.ready.store(true, Ordering::Release);
                tracing::info!("startup catch-up committed; ready");
            }
        };
        self.delivering += 1;
        ctx.spawn(actix::fut::wrap_future(sending).map(|(), act: &mut Reconciler, _| act.delivering -= 1));
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        let root = self.storage_root.clone();
        self.request_scan(root, "startup catch-up", ctx);
        self.schedule_periodic_reconcile(ctx);
    }
}

/// The scopes not inside another of them (a scan of those covers all), in path order.
fn outermost_scopes(scopes: HashSet<PathBuf>) -> Vec<PathBuf> {
    let mut outermost: Vec<PathBuf> = scopes.iter().filter(|scope| !scope.ancestors().skip(1).any(|ancestor| scopes.contains(ancestor))).cloned().collect();
    outermost.sort_unstable();
    outermost
}

/// A full scan takes at most one part in this many of the time between scans: the watcher sees
/// changes as they happen, and the periodic comparison is the safety net, which on a tree of a
/// million files (a 6 s scan on two cores) must not cost a core all day.
const SCAN_DUTY_INVERSE: u32 = 20;

/// The wait before the next periodic reconcile: `interval`, or 20 times the last full scan's
/// duration when that is longer.
pub fn periodic_delay(interval: Duration, last_full_scan: Duration) -> Duration {
    interval.max(last_full_scan * SCAN_DUTY_INVERSE)
}

impl Reconciler {
    fn schedule_periodic_reconcile(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(periodic_delay(self.interval, self.last_full_scan), |act, ctx| {
            if act.delivering > 0 {
                // A scan's changes are still on their way (the startup catch-up of a large
                // tree): a new full scan would list them again, still uncommitted, and they would
                // be committed twice — on a 1M-file catch-up the 30-s tick found 863,099 such
                // files. The next tick looks again.
                tracing::debug!("periodic reconcile skipped: the last scan's changes are still being delivered");
            } else {
                let root = act.storage_root.clone();
                act.request_scan(root, "periodic reconcile", ctx);
            }
            // The database's counterpart of a full scan: compare every (id, time_updated).
            if let Some(follower) = act.links.database() {
                follower.do_send(crate::database::FollowDatabase { mode: ducktail_sources::opencode::sqlite::ReadMode::Full });
            }
            if let Some(follower) = act.links.spans() {
                follower.do_send(crate::spans::FollowSpans);
            }
            act.schedule_periodic_reconcile(ctx);
        });
    }
}

impl Supervised for Reconciler {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Rebuild the view from the database; the full scan in `started` recovers anything the
        // old incarnation had in flight.
        self.view = None;
        self.buffered_commits.clear();
        self.scanning = false;
        self.queued_scopes.clear();
        self.delivering = 0;
    }
}

impl Handler<Rescan> for Reconciler {
    type Result = ();
    fn handle(&mut self, rescan: Rescan, ctx: &mut Self::Context) {
        let (board, faults) = (self.board.clone(), self.faults.clone());
        if catch_panic("reconciler", &board, || faults.maybe_panic("reconciler", &board)).is_none() {
            ctx.stop();
            return;
        }
        self.request_scan(rescan.scope, rescan.reason, ctx);
    }
}

impl Handler<BatchCommitted> for Reconciler {
    type Result = ();
    fn handle(&mut self, committed: BatchCommitted, _ctx: &mut Self::Context) {
        match self.view.as_mut() {
            Some(view) => Reconciler::apply_commit(view, &committed),
            None if self.scanning => self.buffered_commits.push(committed),
            // No view yet: the first load reads the database, which already holds this commit.
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_periodic_reconcile_waits_twenty_scan_times_on_a_large_tree() {
        let interval = Duration::from_secs(30);
        assert_eq!(periodic_delay(interval, Duration::ZERO), interval, "before the first scan");
        assert_eq!(periodic_delay(interval, Duration::from_millis(400)), interval, "a small tree keeps the setting");
        assert_eq!(periodic_delay(interval, Duration::from_secs(6)), Duration::from_secs(120), "a 1M-file tree: 5 % of the time");
    }

    #[test]
    fn queued_scopes_collapse_into_the_outermost() {
        let scopes: HashSet<PathBuf> =
            ["/s/part/msg_1", "/s/part", "/s/message/ses_1", "/s/message/ses_1/sub", "/s/messages"].into_iter().map(PathBuf::from).collect();
        // "/s/messages" is a sibling of "/s/message", not inside it.
        assert_eq!(outermost_scopes(scopes), ["/s/message/ses_1", "/s/messages", "/s/part"].map(PathBuf::from));
    }
}
