//! The span source: OpenTelemetry span Parquet files under `sources.spans.path`, each file one
//! unit of change, tracked in `file_index` with `source = 'spans'`.
//!
//! [`sync_spans`] is the whole algorithm, shared by `ducktail index` and the live
//! [`SpanFollower`]: list the tree, compare with the view of `file_index`, read new, changed and
//! pending files in flush order, hand them over in batches, and report vanished files. A file
//! that cannot be read while it is younger than `pipeline.settle_ms` is *pending* (Junjo's first
//! writer wrote straight to the final name) and is read again at the next look; an older one is
//! an *error*, read again when it changes.
//!
//! The follower is woken by a recursive watch of the root, by a poll every
//! `sources.spans.poll_interval` (which also retries pending files) and by the reconciler's
//! periodic scan; wake-ups coalesce. Span trees hold tens of files a day, so every look lists the
//! whole tree (milliseconds) rather than tracking paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ducktail_model::{FileStamp, FileStatus, SpanFile, SpanFileOutcome};
use ducktail_sources::spans::{is_span_file, read_span_file, scan_span_files};
use ducktail_store::{ReaderPool, SpanBatch, SpanReport};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::files::now_ns;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::trigger::Trigger;
use crate::Links;

/// Batch ids of span commits have bit 62 set, apart from file batches and `opencode.db` commits.
pub const SPAN_BATCH_ID_BASE: u64 = 1 << 62;

/// What `file_index` says about each span file.
pub type SpanView = HashMap<PathBuf, (FileStamp, FileStatus)>;

/// Builds the view from the span rows of `file_index`.
pub fn span_view(rows: Vec<(String, FileStamp, FileStatus)>) -> SpanView {
    rows.into_iter().map(|(path, stamp, status)| (PathBuf::from(path), (stamp, status))).collect()
}

/// What one look at the tree did.
#[derive(Debug, Default, Clone)]
pub struct SpanSyncSummary {
    /// Span files on disk.
    pub files: usize,
    /// Files read and written.
    pub indexed: usize,
    /// Span rows written.
    pub spans: usize,
    /// Duplicate spans met (kept once).
    pub duplicates: usize,
    /// Files recorded as errors.
    pub errors: usize,
    /// Files not ready yet.
    pub pending: usize,
    /// Vanished files whose spans were removed.
    pub removed: usize,
}

/// Reads one file: its spans, "not ready" when it fails while younger than `settle`, else failed.
/// `None` when it vanished meanwhile.
pub fn read_span(path: &Path, settle: Duration) -> Option<SpanFile> {
    match read_span_file(path) {
        Ok((stamp, spans)) => Some(SpanFile { path: path.to_owned(), stamp, outcome: SpanFileOutcome::Decoded(spans) }),
        Err((stamp, reason)) => {
            let metadata = std::fs::symlink_metadata(path).ok()?;
            let stamp = if stamp == FileStamp::default() { ducktail_sources::opencode::stamp_of(&metadata) } else { stamp };
            let young = now_ns().saturating_sub(stamp.mtime_ns) < settle.as_nanos() as i64;
            let outcome = if young { SpanFileOutcome::NotReady(reason) } else { SpanFileOutcome::Failed(reason) };
            Some(SpanFile { path: path.to_owned(), stamp, outcome })
        }
    }
}

/// One look at the tree under `root` (see the module doc). `write` commits a batch; on its error
/// the look stops and the view keeps what was committed, so the next look redoes the rest.
pub fn sync_spans(
    root: &Path,
    view: &mut SpanView,
    settle: Duration,
    batch_files: usize,
    write: &mut dyn FnMut(SpanBatch) -> Result<SpanReport, String>,
) -> Result<SpanSyncSummary, String> {
    let on_disk = scan_span_files(root);
    let mut summary = SpanSyncSummary { files: on_disk.len(), ..SpanSyncSummary::default() };
    let present: std::collections::HashSet<&Path> = on_disk.iter().map(|(path, _)| path.as_path()).collect();
    let removed: Vec<String> = view.keys().filter(|path| !present.contains(path.as_path())).map(|path| path.to_string_lossy().into_owned()).collect();
    // Flush order: the hive layout's paths sort by date, and names carry the flush time.
    let changed: Vec<&PathBuf> = on_disk
        .iter()
        .filter(|(path, stamp)| match view.get(path) {
            Some((known, status)) => known != stamp || *status == FileStatus::Pending,
            None => true,
        })
        .map(|(path, _)| path)
        .collect();
    let mut removed = Some(removed);
    for chunk in changed.chunks(batch_files.max(1)) {
        let files: Vec<SpanFile> = chunk.iter().filter_map(|path| read_span(path, settle)).collect();
        commit(SpanBatch { files, removed: removed.take().unwrap_or_default() }, view, &mut summary, write)?;
    }
    if let Some(removed) = removed.filter(|removed| !removed.is_empty()) {
        commit(SpanBatch { files: Vec::new(), removed }, view, &mut summary, write)?;
    }
    Ok(summary)
}

fn commit(
    batch: SpanBatch,
    view: &mut SpanView,
    summary: &mut SpanSyncSummary,
    write: &mut dyn FnMut(SpanBatch) -> Result<SpanReport, String>,
) -> Result<(), String> {
    let states: Vec<(PathBuf, FileStamp, FileStatus)> = batch
        .files
        .iter()
        .map(|file| {
            let status = match file.outcome {
                SpanFileOutcome::Decoded(_) => FileStatus::Indexed,
                SpanFileOutcome::NotReady(_) => FileStatus::Pending,
                SpanFileOutcome::Failed(_) => FileStatus::Error,
            };
            (file.path.clone(), file.stamp, status)
        })
        .collect();
    let removed: Vec<PathBuf> = batch.removed.iter().map(PathBuf::from).collect();
    let report = write(batch)?;
    for (path, stamp, status) in states {
        view.insert(path, (stamp, status));
    }
    for path in removed {
        view.remove(&path);
    }
    summary.indexed += report.indexed;
    summary.spans += report.spans;
    summary.duplicates += report.duplicates;
    summary.errors += report.errors;
    summary.pending += report.pending;
    summary.removed += report.removed;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The live follower

/// Anyone → SpanFollower, tell. Look at the tree now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct FollowSpans;

/// Wakes the span follower; see [`Trigger`].
pub type SpanTrigger = Trigger<FollowSpans>;

/// SpanFollower → Writer, tell with a reply channel. One batch of span files.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WriteSpans {
    /// Identifies the commit in the feed.
    pub batch_id: u64,
    /// The batch.
    pub batch: SpanBatch,
    /// When the look that read it started (for latency).
    pub observed_at: Instant,
    /// Where the writer answers.
    pub reply: crossbeam_channel::Sender<Result<SpanReport, String>>,
}

/// What every follower incarnation shares.
#[derive(Clone)]
struct SpanLinks {
    root: PathBuf,
    settle: Duration,
    batch_files: usize,
    trigger: Arc<SpanTrigger>,
    readers: ReaderPool,
    links: Arc<Links>,
    board: Arc<StatusBoard>,
    faults: Arc<Faults>,
    next_batch: Arc<AtomicU64>,
}

/// The follower: owns the view of the span files. Runs on its own thread (reading Parquet and
/// waiting for commits block).
pub struct SpanFollower {
    shared: SpanLinks,
    /// `None` until loaded from `file_index`.
    view: Option<SpanView>,
}

impl Actor for SpanFollower {
    type Context = SyncContext<Self>;
}

impl SpanFollower {
    fn look(&mut self) {
        if self.view.is_none() {
            match self.shared.readers.reader().and_then(|reader| reader.span_file_index()) {
                Ok(rows) => self.view = Some(span_view(rows)),
                Err(error) => {
                    tracing::warn!(%error, "cannot load the span files' index; retrying at the next look");
                    return;
                }
            }
        }
        let Some(view) = self.view.as_mut() else { return };
        let observed_at = Instant::now();
        let shared = &self.shared;
        let mut write = |batch: SpanBatch| -> Result<SpanReport, String> {
            let (reply, answer) = crossbeam_channel::bounded(1);
            let batch_id = SPAN_BATCH_ID_BASE | shared.next_batch.fetch_add(1, Ordering::Relaxed);
            shared.links.writer().do_send(WriteSpans { batch_id, batch, observed_at, reply });
            answer.recv().unwrap_or_else(|_| Err("the writer stopped before answering".to_owned()))
        };
        match sync_spans(&shared.root, view, shared.settle, shared.batch_files, &mut write) {
            Ok(summary) => {
                shared.board.set_spans_catching_up(false);
                if summary.indexed + summary.removed + summary.errors > 0 {
                    tracing::debug!(?summary, "span files committed");
                }
            }
            Err(reason) => tracing::warn!(%reason, "span files could not be committed; the next look retries them"),
        }
    }
}

impl Handler<FollowSpans> for SpanFollower {
    type Result = ();
    fn handle(&mut self, _message: FollowSpans, ctx: &mut Self::Context) {
        // Taken before anything can fail, so later wake-ups always ask for another look.
        self.shared.trigger.take();
        let (board, faults) = (self.shared.board.clone(), self.shared.faults.clone());
        let finished = catch_panic("span_follower", &board, || {
            faults.maybe_panic("span_follower", &board);
            self.look();
        });
        if finished.is_none() {
            ctx.stop();
        }
    }
}

/// Starts the span follower, its watch and its poll.
pub fn start_following_spans(
    settings: &crate::settings::Settings,
    root: &Path,
    readers: ReaderPool,
    links: Arc<Links>,
    board: Arc<StatusBoard>,
    faults: Arc<Faults>,
) -> (Addr<SpanFollower>, Option<notify::RecommendedWatcher>, actix_rt::task::JoinHandle<()>) {
    let trigger = Arc::new(SpanTrigger::new(FollowSpans));
    // Ready waits for the first look, as it waits for the JSON tree's catch-up.
    board.set_spans_catching_up(true);
    let shared = SpanLinks {
        root: root.to_owned(),
        settle: settings.pipeline.settle(),
        batch_files: settings.sources.spans.batch_files,
        trigger: trigger.clone(),
        readers,
        links,
        board,
        faults,
        next_batch: Arc::new(AtomicU64::new(1)),
    };
    let follower = SyncArbiter::start(1, move || SpanFollower { shared: shared.clone(), view: None });
    trigger.connect(follower.clone().recipient());
    let watch = {
        let trigger = trigger.clone();
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(event) if event.paths.iter().any(|path| is_span_file(path) || path.is_dir()) || event.need_rescan() => trigger.request(Instant::now()),
            Ok(_) => {}
            Err(_) => trigger.poll(),
        };
        // Accesses (our own reads of the span files included) are never asked for.
        let watcher = notify::RecommendedWatcher::new(handler, notify::Config::default().with_event_kinds(notify::EventKindMask::CORE));
        match watcher.and_then(|mut watcher| watcher.watch(root, RecursiveMode::Recursive).map(|()| watcher)) {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(path = %root.display(), %error, "cannot watch the span folder; it is polled instead");
                None
            }
        }
    };
    let poll = trigger.poll_every(settings.sources.spans.poll_interval);
    (follower, watch, poll)
}

/// The writer side of [`WriteSpans`]: commit, publish, answer.
pub(crate) fn commit_spans(store: Option<&mut ducktail_store::Store>, message: WriteSpans, board: &StatusBoard) {
    let WriteSpans { batch_id, batch, observed_at, reply } = message;
    let result = match store {
        Some(store) => store.write_spans(&batch).map_err(|error| error.to_string()),
        None => Err("the writer has no database connection".to_owned()),
    };
    match &result {
        Ok(report) => {
            let latency = observed_at.elapsed();
            let latencies = vec![latency; report.indexed];
            board.metrics.batch_write_seconds.observe(report.duration.as_secs_f64());
            board.metrics.records.with_label_values(&["spans"]).inc_by(report.spans as u64);
            board.record_commit(batch_id, batch.files.len() + batch.removed.len(), &Default::default(), &latencies);
        }
        Err(reason) => {
            tracing::error!(batch_id, %reason, "span files could not be committed; they are read again");
            board.set_commit_failure(Some(reason.clone()));
        }
    }
    let _ = reply.send(result);
}
