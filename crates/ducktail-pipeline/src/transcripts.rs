//! The transcript sources: Claude Code's and Codex CLI's append-only JSON Lines, tracked per file
//! in `file_index` (`kind = 'transcript'`) with their read position in `transcript_files`.
//!
//! [`sync_transcripts`] is the whole algorithm, shared by `ducktail index` and the live
//! [`TranscriptFollower`]: list the folders (or look at the paths events named), compare each
//! file's stamp with the view of what was read, read changed files from their cursor a stretch
//! at a time, and commit each batch of stretches with their new cursors. Nothing here knows an
//! agent: a source is a [`TranscriptFormat`] from `ducktail_sources::transcript` and its folders.
//!
//! A transcript that vanishes keeps its records (the agents delete and move old transcripts;
//! history must outlive that) unless its source's `on_delete` says remove: by default only its
//! `file_index` row goes. A file moved elsewhere in the folders is read again under its new name,
//! and its records merge into the same rows by id.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use ducktail_model::transcript::TranscriptCursor;
use ducktail_model::{FileStamp, FileStatus};
use ducktail_sources::pricing::PriceTable;
use ducktail_sources::transcript::claude::ClaudeCode;
use ducktail_sources::transcript::codex::Codex;
use ducktail_sources::transcript::{list_transcripts, read_stretch, DecodeContext, StretchLimits, TranscriptFormat};
use ducktail_store::{ReaderPool, TranscriptBatch, TranscriptFileState, TranscriptReport};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::index::IndexError;
use crate::settings::{Settings, TranscriptSettings};
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::trigger::Trigger;
use crate::Links;

/// Batch ids of transcript commits have bit 61 set, apart from the other sources' batches.
pub const TRANSCRIPT_BATCH_ID_BASE: u64 = 1 << 61;

/// Most stretches in one transaction.
const BATCH_STRETCHES: usize = 256;

/// One agent's transcripts: how to read them, and where.
#[derive(Clone)]
pub struct TranscriptSource {
    /// The format.
    pub format: Arc<dyn TranscriptFormat>,
    /// Its folders that exist.
    pub roots: Vec<PathBuf>,
    /// Read budget per stretch and line limit.
    pub limits: StretchLimits,
    /// How often the folders are looked at besides events.
    pub poll_interval: Duration,
    /// What a vanished transcript does to its session's rows.
    pub on_delete: ducktail_store::OnDelete,
}

/// Every transcript format ducktail reads, with its settings: the one list a new source joins.
fn formats(settings: &Settings) -> [(Arc<dyn TranscriptFormat>, &TranscriptSettings, &'static str); 2] {
    [(Arc::new(ClaudeCode), &settings.sources.claude_code, "--claude"), (Arc::new(Codex), &settings.sources.codex, "--codex")]
}

/// The enabled transcript sources with the folders of theirs that exist. A configured folder that
/// does not exist is an error; a default one is skipped (the agent may not be installed).
pub fn transcript_sources(settings: &Settings) -> Result<Vec<TranscriptSource>, IndexError> {
    let mut sources = Vec::new();
    for (format, source, flag) in formats(settings) {
        if !source.enabled {
            continue;
        }
        if source.explicit {
            if let Some(missing) = source.paths.iter().find(|path| !path.is_dir()) {
                return Err(IndexError::MissingTranscripts { agent: format.source(), path: missing.clone(), flag });
            }
        }
        let roots: Vec<PathBuf> = source.paths.iter().filter(|path| path.is_dir()).cloned().collect();
        if roots.is_empty() {
            continue;
        }
        sources.push(TranscriptSource {
            format,
            roots,
            limits: StretchLimits { stretch_bytes: source.stretch_bytes, max_line_bytes: source.max_line_bytes },
            poll_interval: source.poll_interval,
            on_delete: crate::index::on_delete_policy(source.on_delete),
        });
    }
    Ok(sources)
}

/// The enabled transcript sources none of whose folders exists, with the folders looked for: a
/// run reports them and goes on.
pub fn absent_sources(settings: &Settings) -> Vec<(&'static str, Vec<PathBuf>)> {
    formats(settings)
        .into_iter()
        .filter(|(_, source, _)| source.enabled && !source.paths.iter().any(|path| path.is_dir()))
        .map(|(format, source, _)| (format.source(), source.paths.clone()))
        .collect()
}

/// The transcript folders looked for, as a clause for the message when there is nothing at all
/// to read (empty when no transcript source is enabled).
pub fn also_looked_for(settings: &Settings) -> String {
    let folders: Vec<String> = formats(settings)
        .into_iter()
        .filter(|(_, source, _)| source.enabled)
        .flat_map(|(_, source, _)| source.paths.iter().map(|path| path.display().to_string()).collect::<Vec<_>>())
        .collect();
    if folders.is_empty() {
        String::new()
    } else {
        format!(", and no Claude Code or Codex folder exists (looked for {})", folders.join(", "))
    }
}

/// What every transcript decoder gets: the decode caps and the price table (the shipped snapshot,
/// overlaid by `pricing.file` when set).
pub fn decode_context(settings: &Settings) -> Result<DecodeContext, IndexError> {
    let file = &settings.pricing.file;
    let prices = if file.as_os_str().is_empty() { PriceTable::embedded() } else { PriceTable::with_overrides(file)? };
    Ok(DecodeContext { limits: crate::index::decode_limits(settings), prices: Arc::new(prices) })
}

/// What the reader knows about one transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownTranscript {
    /// mtime and size when last read.
    pub stamp: FileStamp,
    /// The outcome then.
    pub status: FileStatus,
    /// Where reading stopped.
    pub cursor: Option<TranscriptCursor>,
    /// What the decoder carries on from.
    pub decoder_state: Option<String>,
}

/// The reader's view of a source's transcripts, by path.
// Keyed by the path's bytes with foldhash: a `Path` hashes component by component, and std's
// SipHash is slow on short keys; the periodic look hashes every path of the tree.
pub type TranscriptView = foldhash::HashMap<OsString, KnownTranscript>;

/// The view from what the store holds.
pub fn transcript_view(states: Vec<TranscriptFileState>) -> TranscriptView {
    states
        .into_iter()
        .map(|state| {
            (OsString::from(state.path), KnownTranscript { stamp: state.stamp, status: state.status, cursor: state.cursor, decoder_state: state.decoder_state })
        })
        .collect()
}

/// What one look did.
#[derive(Debug, Default, Clone)]
pub struct TranscriptSyncSummary {
    /// Transcripts on disk (a full look) or looked at (events).
    pub files: usize,
    /// Stretches read and committed.
    pub stretches: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Records merged.
    pub records: usize,
    /// Lines skipped as malformed or too long.
    pub skipped_lines: usize,
    /// Files that could not be read.
    pub errors: usize,
    /// Vanished files whose `file_index` rows were dropped (their records stay).
    pub removed: usize,
}

impl TranscriptSyncSummary {
    fn add(&mut self, report: &TranscriptReport) {
        self.records += report.records;
        self.skipped_lines += report.skipped_lines;
        self.errors += report.errors;
        self.removed += report.removed;
    }
}

/// One look at `source`: every file under its folders when `paths` is `None`, else just those
/// paths (what file events named). `write` commits a batch; on its error the look stops and the
/// view keeps what was committed, so the next look reads the rest again.
pub fn sync_transcripts(
    source: &TranscriptSource,
    view: &mut TranscriptView,
    context: &DecodeContext,
    paths: Option<&[PathBuf]>,
    write: &mut dyn FnMut(TranscriptBatch) -> Result<TranscriptReport, String>,
) -> Result<TranscriptSyncSummary, String> {
    let format = source.format.as_ref();
    // A folder that could not be read hides what it holds; nothing under the roots is taken
    // for removed then.
    let mut complete_listing = true;
    let (on_disk, mut removed): (Vec<(PathBuf, FileStamp)>, Vec<String>) = match paths {
        None => {
            let mut on_disk: Vec<(PathBuf, FileStamp)> = Vec::new();
            for root in &source.roots {
                let listing = list_transcripts(format, root);
                on_disk.extend(listing.files);
                for folder in listing.unreadable {
                    tracing::warn!(folder = %folder.display(), "cannot read a transcript folder; its transcripts are kept as they were until it can be read (check its permissions)");
                    complete_listing = false;
                }
            }
            // Roots may nest (`CLAUDE_CONFIG_DIR` can name both): each file is read once. One
            // root's folders never overlap, and the removal check below counts on it.
            if source.roots.len() > 1 {
                on_disk.sort_by(|(left, _), (right, _)| left.as_os_str().as_encoded_bytes().cmp(right.as_os_str().as_encoded_bytes()));
                on_disk.dedup_by(|(left, _), (right, _)| left == right);
            }
            (on_disk, Vec::new())
        }
        Some(paths) => {
            let mut on_disk = Vec::new();
            let mut removed = Vec::new();
            for path in paths.iter().filter(|path| format.is_transcript(path)) {
                match std::fs::symlink_metadata(path) {
                    Ok(metadata) if metadata.is_file() => on_disk.push((path.clone(), ducktail_sources::opencode::stamp_of(&metadata))),
                    _ if view.contains_key(path.as_os_str()) => removed.push(path.to_string_lossy().into_owned()),
                    _ => {}
                }
            }
            (on_disk, removed)
        }
    };
    let mut summary = TranscriptSyncSummary { files: on_disk.len(), ..TranscriptSyncSummary::default() };
    let mut listed_known = 0usize;
    let mut changed: Vec<&(PathBuf, FileStamp)> = on_disk
        .iter()
        .filter(|(path, stamp)| match view.get(path.as_os_str()) {
            Some(known) => {
                listed_known += 1;
                known.stamp != *stamp || known.status == FileStatus::Pending
            }
            None => true,
        })
        .collect();
    // Read in the order of the paths' bytes (not `Path`'s component-wise order, which costs
    // several times as much): a session's file (`<id>.jsonl`) comes before its `<id>/subagents/`
    // folder, the order the agent wrote them in.
    changed.sort_by(|(left, _), (right, _)| left.as_os_str().as_encoded_bytes().cmp(right.as_os_str().as_encoded_bytes()));
    // On a full look, every known path listed again (the usual case) means none vanished: the
    // set of what was listed is built only when some known path was not.
    if paths.is_none() && complete_listing && listed_known != view.len() {
        let present: foldhash::HashSet<&OsStr> = on_disk.iter().map(|(path, _)| path.as_os_str()).collect();
        removed = view
            .keys()
            .filter(|path| !present.contains(path.as_os_str()) && source.roots.iter().any(|root| Path::new(path).starts_with(root)))
            .map(|path| path.to_string_lossy().into_owned())
            .collect();
    }

    // What is known of each changed file, taken now: the reading below may run on its own
    // thread while the view takes in each commit.
    let to_read: Vec<ChangedTranscript> = changed
        .into_iter()
        .map(|(path, listed)| ChangedTranscript {
            path,
            listed: *listed,
            known: view.get(path.as_os_str()).and_then(|known| known.cursor.map(|cursor| (cursor, known.decoder_state.clone()))),
        })
        .collect();
    let unread: u64 = to_read
        .iter()
        .map(|file| u64::try_from(file.listed.size).unwrap_or(0).saturating_sub(file.known.as_ref().map_or(0, |(cursor, _)| cursor.offset)))
        .sum();
    let first = TranscriptBatch { source: format.source(), removed, on_delete: source.on_delete, ..TranscriptBatch::default() };
    if unread <= source.limits.stretch_bytes {
        // One batch at most (a followed file's append): read and commit on this thread.
        read_changed(source, context, &to_read, first, &mut |read| commit(read, view, &mut summary, write))?;
    } else {
        // Several batches (a catch-up, a cold index): the next one is read and decoded while
        // this one is written, on the two threads, one batch ahead at most.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<ReadBatch>(1);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // A send fails once the committing side stopped on an error: nothing more to read.
                let _ = read_changed(source, context, &to_read, first, &mut |read| sender.send(read).map_err(|_| String::new()));
                drop(sender);
            });
            let committed = receiver.iter().try_for_each(|read| commit(read, view, &mut summary, write));
            // Dropped before the scope waits for the reader: a reader blocked handing over its
            // next batch then sees the receiver gone and stops, instead of waiting forever.
            drop(receiver);
            committed
        })?;
    }
    Ok(summary)
}

/// A changed transcript to read: its listing's stamp and its cursor, if it was read before.
struct ChangedTranscript<'p> {
    path: &'p PathBuf,
    listed: FileStamp,
    known: Option<(TranscriptCursor, Option<String>)>,
}

/// A batch read and decoded, with what the view learns once it is committed.
struct ReadBatch {
    batch: TranscriptBatch,
    learned: Vec<(PathBuf, KnownTranscript)>,
    bytes: u64,
}

/// Reads `files`, each on from its cursor, in batches of at most
/// `source.limits.stretch_bytes` bytes or [`BATCH_STRETCHES`] stretches, handing each to `emit`
/// in reading order; `first` (the look's removed files) starts the first batch.
fn read_changed(
    source: &TranscriptSource,
    context: &DecodeContext,
    files: &[ChangedTranscript<'_>],
    first: TranscriptBatch,
    emit: &mut dyn FnMut(ReadBatch) -> Result<(), String>,
) -> Result<(), String> {
    let format = source.format.as_ref();
    let mut batch = first;
    let mut batch_bytes = 0u64;
    let mut learned: Vec<(PathBuf, KnownTranscript)> = Vec::new();
    for file in files {
        let (path, listed) = (file.path, &file.listed);
        let mut known = file.known.clone();
        loop {
            let stretch = read_stretch(format, path, known.as_ref().map(|(cursor, state)| (*cursor, state.as_deref())), context, source.limits);
            let read = stretch.cursor.offset.saturating_sub(stretch.start_offset);
            let caught_up = stretch.failure.is_some() || read == 0 || stretch.cursor.offset >= u64::try_from(stretch.stamp.size).unwrap_or(0);
            let status = if stretch.failure.is_some() { FileStatus::Error } else { FileStatus::Indexed };
            // A file is "unchanged" only once it is read to its end: a read that stopped short
            // records the size it reached, so a look after an interruption (a crash included,
            // the stamp is stored with the cursor) sees a change and carries on.
            let mut stretch = stretch;
            if stretch.failure.is_some() && stretch.stamp == FileStamp::default() {
                // Not even opened: the listing's stamp, so it is tried again when it changes,
                // not at every look.
                stretch.stamp = *listed;
            }
            if !caught_up {
                stretch.stamp.size = i64::try_from(stretch.cursor.offset).unwrap_or(i64::MAX);
            }
            let stamp = stretch.stamp;
            known = Some((stretch.cursor, stretch.decoder_state.clone()));
            learned.push((
                path.clone(),
                KnownTranscript {
                    stamp,
                    status,
                    cursor: Some(stretch.cursor).filter(|_| stretch.failure.is_none()),
                    decoder_state: stretch.decoder_state.clone(),
                },
            ));
            batch_bytes += read;
            batch.stretches.push(stretch);
            if batch_bytes >= source.limits.stretch_bytes || batch.stretches.len() >= BATCH_STRETCHES {
                let full =
                    std::mem::replace(&mut batch, TranscriptBatch { source: format.source(), on_delete: source.on_delete, ..TranscriptBatch::default() });
                emit(ReadBatch { batch: full, learned: std::mem::take(&mut learned), bytes: batch_bytes })?;
                batch_bytes = 0;
            }
            if caught_up {
                break;
            }
        }
    }
    if !batch.stretches.is_empty() || !batch.removed.is_empty() {
        emit(ReadBatch { batch, learned, bytes: batch_bytes })?;
    }
    Ok(())
}

/// Commits one batch read, then has the view take in what it learned.
fn commit(
    read: ReadBatch,
    view: &mut TranscriptView,
    summary: &mut TranscriptSyncSummary,
    write: &mut dyn FnMut(TranscriptBatch) -> Result<TranscriptReport, String>,
) -> Result<(), String> {
    let ReadBatch { batch, learned, bytes } = read;
    let removed: Vec<PathBuf> = batch.removed.iter().map(PathBuf::from).collect();
    let stretches = batch.stretches.len();
    let report = write(batch)?;
    summary.stretches += stretches;
    summary.bytes += bytes;
    summary.add(&report);
    for (path, known) in learned {
        match view.get_mut(path.as_os_str()) {
            // An error keeps the cursor of the last good read.
            Some(existing) if known.cursor.is_none() => {
                existing.stamp = known.stamp;
                existing.status = known.status;
            }
            _ => {
                view.insert(path.into_os_string(), known);
            }
        }
    }
    for path in removed {
        view.remove(path.as_os_str());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The live follower

/// Anyone → TranscriptFollower, tell. Look now: at the paths events named, or at everything.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct FollowTranscripts;

/// Wakes a transcript follower; see [`Trigger`].
pub type TranscriptTrigger = Trigger<FollowTranscripts>;

/// TranscriptFollower → Writer, tell with a reply channel. One batch of stretches.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WriteTranscripts {
    /// Identifies the commit in the feed.
    pub batch_id: u64,
    /// The batch.
    pub batch: TranscriptBatch,
    /// When the change that caused the look was first noticed (for latency).
    pub observed_at: Instant,
    /// Where the writer answers.
    pub reply: crossbeam_channel::Sender<Result<TranscriptReport, String>>,
}

/// Paths named by events since the last look, and whether a full look is due.
#[derive(Default)]
struct Dirty {
    paths: HashSet<PathBuf>,
    full: bool,
}

#[derive(Clone)]
struct FollowerLinks {
    source: TranscriptSource,
    context: DecodeContext,
    dirty: Arc<Mutex<Dirty>>,
    trigger: Arc<TranscriptTrigger>,
    readers: ReaderPool,
    links: Arc<Links>,
    board: Arc<StatusBoard>,
    faults: Arc<Faults>,
    next_batch: Arc<AtomicU64>,
    /// Set once the first full look committed (readiness waits for it).
    caught_up: Arc<std::sync::atomic::AtomicBool>,
}

/// Follows one agent's transcripts. Runs on its own thread (reads and waits for commits block).
pub struct TranscriptFollower {
    shared: FollowerLinks,
    /// `None` until loaded from the store.
    view: Option<TranscriptView>,
}

impl Actor for TranscriptFollower {
    type Context = SyncContext<Self>;
}

impl TranscriptFollower {
    fn look(&mut self, noticed: Option<Instant>) {
        let shared = &self.shared;
        let source_name = shared.source.format.source();
        if self.view.is_none() {
            match shared.readers.reader().and_then(|reader| reader.transcript_files(source_name)) {
                Ok(states) => {
                    self.view = Some(transcript_view(states));
                    shared.dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).full = true;
                }
                Err(error) => {
                    tracing::warn!(source = source_name, %error, "cannot load the transcripts' read positions; retrying at the next look");
                    return;
                }
            }
        }
        let Some(view) = self.view.as_mut() else { return };
        let (paths, full) = {
            let mut dirty = shared.dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let taken = std::mem::take(&mut *dirty);
            (taken.paths.into_iter().collect::<Vec<_>>(), taken.full)
        };
        if paths.is_empty() && !full {
            return;
        }
        let observed_at = noticed.unwrap_or_else(Instant::now);
        let mut write = |batch: TranscriptBatch| -> Result<TranscriptReport, String> {
            let (reply, answer) = crossbeam_channel::bounded(1);
            let batch_id = TRANSCRIPT_BATCH_ID_BASE | shared.next_batch.fetch_add(1, Ordering::Relaxed);
            shared.links.writer().do_send(WriteTranscripts { batch_id, batch, observed_at, reply });
            answer.recv().unwrap_or_else(|_| Err("the writer stopped before answering".to_owned()))
        };
        let outcome = sync_transcripts(&shared.source, view, &shared.context, if full { None } else { Some(&paths) }, &mut write);
        if full && outcome.is_ok() && !shared.caught_up.swap(true, Ordering::AcqRel) {
            shared.board.transcripts_caught_up();
        }
        match outcome {
            Ok(summary) if summary.stretches + summary.removed > 0 => tracing::debug!(source = source_name, ?summary, "transcripts committed"),
            Ok(_) => {}
            Err(reason) => {
                tracing::warn!(source = source_name, %reason, "transcripts could not be committed; the next look reads them again");
                let mut dirty = shared.dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                dirty.full = true;
            }
        }
    }
}

impl Handler<FollowTranscripts> for TranscriptFollower {
    type Result = ();
    fn handle(&mut self, _message: FollowTranscripts, ctx: &mut Self::Context) {
        // Taken before anything can fail, so later wake-ups always ask for another look.
        let noticed = self.shared.trigger.take();
        let (board, faults) = (self.shared.board.clone(), self.shared.faults.clone());
        let finished = catch_panic("transcript_follower", &board, || {
            faults.maybe_panic("transcript_follower", &board);
            self.look(noticed);
        });
        if finished.is_none() {
            // A restarted follower reloads its view and looks at everything.
            self.shared.dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).full = true;
            ctx.stop();
        }
    }
}

/// What a started follower holds on to: its address, its watches and its poll.
pub struct FollowingTranscripts {
    /// The follower.
    pub follower: Addr<TranscriptFollower>,
    /// One watch per folder that could be watched.
    pub watches: Vec<notify::RecommendedWatcher>,
    /// The periodic full look.
    pub poll: actix_rt::task::JoinHandle<()>,
}

/// Starts a follower for `source`, its watches and its poll.
pub fn start_following_transcripts(
    source: TranscriptSource,
    context: DecodeContext,
    readers: ReaderPool,
    links: Arc<Links>,
    board: Arc<StatusBoard>,
    faults: Arc<Faults>,
) -> FollowingTranscripts {
    let trigger = Arc::new(TranscriptTrigger::new(FollowTranscripts));
    let dirty = Arc::new(Mutex::new(Dirty { full: true, ..Dirty::default() }));
    let poll_interval = source.poll_interval;
    board.transcripts_start_catching_up();
    let shared = FollowerLinks {
        source: source.clone(),
        context,
        dirty: dirty.clone(),
        trigger: trigger.clone(),
        readers,
        links,
        board,
        faults,
        next_batch: Arc::new(AtomicU64::new(1)),
        caught_up: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let follower = SyncArbiter::start(1, move || TranscriptFollower { shared: shared.clone(), view: None });
    trigger.connect(follower.clone().recipient());
    let mut watches = Vec::new();
    for root in &source.roots {
        let (trigger, dirty, format) = (trigger.clone(), dirty.clone(), source.format.clone());
        let handler = move |event: notify::Result<notify::Event>| {
            let mut wake = false;
            match event {
                Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
                Ok(event) => {
                    let mut dirty = dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if event.need_rescan() {
                        dirty.full = true;
                        wake = true;
                    }
                    for path in event.paths {
                        if format.is_transcript(&path) {
                            dirty.paths.insert(path);
                            wake = true;
                        } else if path.is_dir() {
                            // A folder moved in brings files no event named.
                            dirty.full = true;
                            wake = true;
                        }
                    }
                }
                Err(_) => {
                    dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).full = true;
                    wake = true;
                }
            }
            if wake {
                trigger.request(Instant::now());
            }
        };
        let watcher = notify::RecommendedWatcher::new(handler, notify::Config::default().with_event_kinds(notify::EventKindMask::CORE));
        match watcher.and_then(|mut watcher| watcher.watch(root, RecursiveMode::Recursive).map(|()| watcher)) {
            Ok(watcher) => watches.push(watcher),
            Err(error) => tracing::warn!(path = %root.display(), %error, "cannot watch the transcript folder; it is polled instead"),
        }
    }
    let poll = {
        let (dirty, trigger) = (dirty.clone(), trigger.clone());
        actix_rt::spawn(async move {
            let mut ticks = tokio::time::interval(poll_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                dirty.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).full = true;
                trigger.request(Instant::now());
            }
        })
    };
    trigger.request(Instant::now());
    FollowingTranscripts { follower, watches, poll }
}

/// The writer side of [`WriteTranscripts`]: commit, publish, answer. Returns the report for the
/// trace builder.
pub(crate) fn commit_transcripts(
    store: Option<&mut ducktail_store::Store>,
    message: WriteTranscripts,
    board: &StatusBoard,
) -> Option<(u64, TranscriptReport, Vec<Duration>)> {
    let WriteTranscripts { batch_id, batch, observed_at, reply } = message;
    let result = match store {
        Some(store) => store.write_transcripts(&batch).map_err(|error| error.to_string()),
        None => Err("the writer has no database connection".to_owned()),
    };
    let committed = match &result {
        Ok(report) => {
            let latency = observed_at.elapsed();
            let latencies = vec![latency; batch.stretches.len()];
            for latency in &latencies {
                board.metrics.event_to_commit_seconds.observe(latency.as_secs_f64());
            }
            board.metrics.batch_write_seconds.observe(report.duration.as_secs_f64());
            board.metrics.records.with_label_values(&["transcripts"]).inc_by(report.records as u64);
            board.record_commit(batch_id, batch.stretches.len() + batch.removed.len(), &report.touched_sessions, &latencies);
            Some((batch_id, report.clone(), latencies))
        }
        Err(reason) => {
            tracing::error!(batch_id, %reason, "transcripts could not be committed; they are read again");
            board.set_commit_failure(Some(reason.clone()));
            None
        }
    };
    let _ = reply.send(result);
    committed
}

#[cfg(test)]
mod tests {
    use super::*;
    use ducktail_model::transcript::TranscriptStretch;

    /// A Claude Code folder of `files` transcripts of 20 lines each, and a source over it that
    /// commits every 2 KB, so a look takes several batches.
    fn tree(files: usize) -> (tempfile::TempDir, TranscriptSource) {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("projects/-home-u-p");
        std::fs::create_dir_all(&project).unwrap();
        for file in 0..files {
            let lines: String = (0..20)
                .map(|line| {
                    format!(
                        "{{\"type\":\"user\",\"sessionId\":\"s{file}\",\"uuid\":\"u{file}-{line}\",\"message\":{{\"role\":\"user\",\"content\":\"{}\"}}}}\n",
                        "x".repeat(100)
                    )
                })
                .collect();
            std::fs::write(project.join(format!("s{file}.jsonl")), lines).unwrap();
        }
        let source = TranscriptSource {
            format: Arc::new(ClaudeCode),
            roots: vec![dir.path().to_owned()],
            limits: StretchLimits { stretch_bytes: 2_048, ..StretchLimits::default() },
            poll_interval: Duration::from_secs(60),
            on_delete: ducktail_store::OnDelete::Keep,
        };
        (dir, source)
    }

    #[test]
    fn a_look_of_several_batches_commits_them_in_order_and_stops_at_a_failed_one() {
        let (_dir, source) = tree(12);
        let context = decode_context(&Settings::default()).unwrap();
        let mut view = TranscriptView::default();
        // The batch that reaches s7 fails: the look stops there (it does not wait on the reader
        // ahead of it), and the view holds what the batches before committed.
        let read_of = |stretch: &TranscriptStretch| stretch.cursor.offset - stretch.start_offset;
        let mut committed: Vec<PathBuf> = Vec::new();
        let mut committed_bytes = 0;
        let mut write = |batch: TranscriptBatch| {
            if batch.stretches.iter().any(|stretch| stretch.path.ends_with("s7.jsonl")) {
                return Err("disk full".to_owned());
            }
            for stretch in &batch.stretches {
                committed_bytes += read_of(stretch);
                if committed.last() != Some(&stretch.path) {
                    committed.push(stretch.path.clone());
                }
            }
            Ok(TranscriptReport::default())
        };
        // A look that waited on its reader forever would hang the test run: fail it instead.
        let (finished, watched) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if watched.recv_timeout(Duration::from_secs(60)) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                eprintln!("a look whose commit failed did not return within 60 s: it waits on its reader");
                std::process::abort();
            }
        });
        let failed = sync_transcripts(&source, &mut view, &context, None, &mut write);
        drop(finished);
        assert_eq!(failed.unwrap_err(), "disk full");
        assert!(committed.len() >= 3, "several batches were committed before the failed one: {committed:?}");
        assert_eq!(view.len(), committed.len(), "the view holds the files committed, and only those");
        let mut sorted = committed.clone();
        sorted.sort_by(|left, right| left.as_os_str().as_encoded_bytes().cmp(right.as_os_str().as_encoded_bytes()));
        assert_eq!(committed, sorted, "files are read in the order of their paths, each in one run of stretches");

        // The next look reads the rest, from where each file's committed reads stopped.
        let mut rest_bytes = 0;
        let summary = sync_transcripts(&source, &mut view, &context, None, &mut |batch: TranscriptBatch| {
            rest_bytes += batch.stretches.iter().map(read_of).sum::<u64>();
            Ok(TranscriptReport::default())
        })
        .unwrap();
        let total: u64 = (0..12).map(|file| std::fs::metadata(source.roots[0].join(format!("projects/-home-u-p/s{file}.jsonl"))).unwrap().len()).sum();
        assert_eq!(committed_bytes + rest_bytes, total, "every byte is read once across the two looks");
        assert_eq!(summary.bytes, rest_bytes);
        assert_eq!(view.len(), 12);
    }
}
