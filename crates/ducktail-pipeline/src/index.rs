//! The one-shot indexer behind `ducktail index`: scan, skip what is unchanged, decode the rest
//! in parallel, write in batches, retry what was not ready once, remove what disappeared; then
//! read `opencode.db` against what the store holds from it, and the span folder (when set); and
//! recompute the derived traces.
//!
//! Decoder threads feed the writing thread through a bounded channel, so decoding overlaps
//! writing while memory stays bounded by a few batches.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ducktail_model::{FileKind, FileOutcome};
use ducktail_sources::opencode::sqlite::{database_path, Chunk, Mirror, OpencodeDatabase, ReadMode, OPENCODE_SQLITE_SOURCE};
use ducktail_sources::opencode::{scan_storage_streaming, scan_threads, storage_root, DecodeLimits, ScanError, ScannedFile};
use ducktail_store::{OnDelete, RemovedFile, Store, StoreError, TraceScope, WriteBatch};

use crate::files::{now_ns, resolve_path, Comparison, IndexView, Resolved, OPENCODE_JSON_SOURCE};
use crate::settings::{OnDeleteSetting, Settings};

/// Why an index run could not complete (bad files are not failures: they are counted).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The OpenCode directory has neither a `storage/` folder nor an `opencode.db`, and no other
    /// source has anything to read.
    #[error(
        "{path} holds neither OpenCode's storage/ folder nor its opencode.db{also}; pass --opencode with OpenCode's data folder (default ~/.local/share/opencode), or --claude / --codex"
    )]
    MissingStorage {
        /// The folder looked in.
        path: PathBuf,
        /// The transcript folders also looked for, as a clause (empty when none).
        also: String,
    },
    /// The OpenCode folder does not exist, and no other source has anything to read.
    #[error(
        "OpenCode folder {path} does not exist{also}; pass --opencode with OpenCode's data folder (default ~/.local/share/opencode), or --claude / --codex"
    )]
    NoOpencodeFolder {
        /// The folder looked for.
        path: PathBuf,
        /// The transcript folders also looked for, as a clause (empty when none).
        also: String,
    },
    /// The span folder does not exist.
    #[error("span folder {path} does not exist; pass --spans with the folder holding year=YYYY/… (or leave sources.spans.path empty)")]
    MissingSpans {
        /// The folder looked for.
        path: PathBuf,
    },
    /// A transcript folder given by flag or config does not exist.
    #[error("{agent} folder {path} does not exist; pass {flag} with an existing folder (or leave it out to use the default)")]
    MissingTranscripts {
        /// The source (`claude_code`, `codex`).
        agent: &'static str,
        /// The folder looked for.
        path: PathBuf,
        /// The flag that sets it.
        flag: &'static str,
    },
    /// The price file could not be used.
    #[error(transparent)]
    Pricing(#[from] ducktail_sources::pricing::PricingError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an index run did, for the summary line.
#[derive(Debug, Clone, Default)]
pub struct IndexSummary {
    /// Files found on disk per kind.
    pub files_by_kind: BTreeMap<&'static str, usize>,
    /// Files found on disk.
    pub scanned: usize,
    /// Files skipped because their stamp matched the index.
    pub unchanged: usize,
    /// Files whose records were written.
    pub indexed: usize,
    /// Files recorded as errors.
    pub errors: usize,
    /// Indexed files no longer on disk.
    pub removed: usize,
    /// Entries the directory walk could not read.
    pub scan_errors: Vec<String>,
    /// Records written from `opencode.db` (new or changed since the last run).
    pub database_records: usize,
    /// Records removed because `opencode.db` no longer holds them.
    pub database_removed: usize,
    /// `opencode.db` rows that did not decode (recorded as `file_index` errors).
    pub database_rejected: usize,
    /// Why `opencode.db` could not be read, if it could not (the JSON tree is indexed anyway).
    pub database_error: Option<String>,
    /// The span source's run, when `sources.spans.path` is set.
    pub spans: Option<crate::spans::SpanSyncSummary>,
    /// Each transcript source's run (`claude_code`, `codex`), for those with a folder.
    pub transcripts: Vec<(&'static str, crate::transcripts::TranscriptSyncSummary)>,
    /// Enabled transcript sources with no folder, and where they were looked for.
    pub absent_sources: Vec<(&'static str, Vec<PathBuf>)>,
    /// The OpenCode folder, when it held nothing to read (other sources did).
    pub opencode_absent: Option<PathBuf>,
    /// Wall time.
    pub duration: Duration,
}

impl IndexSummary {
    /// Files decoded per second of wall time.
    pub fn files_per_second(&self) -> f64 {
        (self.indexed + self.errors) as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// Reports progress as (files processed, files to process).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Converts the configured delete policy into the store's.
pub fn on_delete_policy(setting: OnDeleteSetting) -> OnDelete {
    match setting {
        OnDeleteSetting::Remove => OnDelete::Remove,
        OnDeleteSetting::Keep => OnDelete::Keep,
    }
}

/// Decode limits from settings.
pub fn decode_limits(settings: &Settings) -> DecodeLimits {
    DecodeLimits { max_text_bytes: settings.decode.max_text_bytes, max_file_bytes: settings.decode.max_file_bytes }
}

/// Checks that `index_once` has something to read: OpenCode's `storage/` folder or its
/// `opencode.db` under `opencode_dir`, or a span folder that exists. Callers run it before they
/// create the database, so a mistyped folder leaves no empty database behind.
pub fn check_sources(opencode_dir: &Path, settings: &Settings) -> Result<(), IndexError> {
    let read_database = settings.sources.opencode.follow_database && database_path(opencode_dir).exists();
    let span_root = &settings.sources.spans.path;
    let read_spans = !span_root.as_os_str().is_empty();
    if read_spans && !span_root.is_dir() {
        return Err(IndexError::MissingSpans { path: span_root.clone() });
    }
    let transcripts = crate::transcripts::transcript_sources(settings)?;
    crate::transcripts::decode_context(settings)?;
    if !storage_root(opencode_dir).is_dir() && !read_database && !read_spans && transcripts.is_empty() {
        let also = crate::transcripts::also_looked_for(settings);
        if !opencode_dir.is_dir() {
            return Err(IndexError::NoOpencodeFolder { path: opencode_dir.to_owned(), also });
        }
        return Err(IndexError::MissingStorage { path: opencode_dir.to_owned(), also });
    }
    Ok(())
}

/// Indexes OpenCode's data under `opencode_dir` into `store` once: the JSON tree under
/// `storage/` and, when present and followed, `opencode.db`; then `sources.spans.path`, if set.
pub fn index_once(store: &mut Store, opencode_dir: &Path, settings: &Settings, progress: Progress<'_>) -> Result<IndexSummary, IndexError> {
    let started = Instant::now();
    // A run that stops half-way must leave the next start to recompute the derived tables. If
    // they were complete, only the sessions this run touches need recomputing.
    let was_complete = store.take_derived_complete_mark()?;
    store.track_touched_sessions();
    check_sources(opencode_dir, settings)?;
    let root = storage_root(opencode_dir);
    let database = database_path(opencode_dir);
    let read_database = settings.sources.opencode.follow_database && database.exists();
    let span_root = &settings.sources.spans.path;
    let read_spans = !span_root.as_os_str().is_empty();
    let mut summary = if root.is_dir() { index_tree(store, &root, settings, progress)? } else { IndexSummary::default() };
    if read_database {
        index_database(store, &database, settings, &mut summary)?;
    }
    if read_spans {
        let mut view = crate::spans::span_view(store.reader()?.span_file_index()?);
        let settle = settings.pipeline.settle();
        let mut write_error = None;
        let mut write = |batch: ducktail_store::SpanBatch| {
            store.write_spans(&batch).map_err(|error| {
                let message = error.to_string();
                write_error = Some(error);
                message
            })
        };
        let batch_files = settings.sources.spans.batch_files;
        let mut spans = crate::spans::sync_spans(span_root, &mut view, settle, batch_files, &mut write);
        // As for the JSON tree: files not ready get one more look once they had time to settle.
        if spans.as_ref().is_ok_and(|first| first.pending > 0) {
            let pending = view.iter().filter(|(_, (_, status))| *status == ducktail_model::FileStatus::Pending).map(|(path, _)| path.as_path());
            wait_until_settled(pending, settle);
            spans = crate::spans::sync_spans(span_root, &mut view, settle, batch_files, &mut write).map(|second| {
                let first = spans.as_ref().cloned().unwrap_or_default();
                crate::spans::SpanSyncSummary {
                    files: second.files,
                    indexed: first.indexed + second.indexed,
                    spans: first.spans + second.spans,
                    duplicates: first.duplicates + second.duplicates,
                    errors: first.errors + second.errors,
                    pending: second.pending,
                    removed: first.removed + second.removed,
                }
            });
        }
        if let Some(error) = write_error {
            return Err(error.into());
        }
        summary.spans = spans.ok();
    }
    let transcripts = crate::transcripts::transcript_sources(settings)?;
    summary.absent_sources = crate::transcripts::absent_sources(settings);
    if !root.is_dir() && !read_database {
        summary.opencode_absent = Some(opencode_dir.to_owned());
    }
    if !transcripts.is_empty() {
        let context = crate::transcripts::decode_context(settings)?;
        for source in &transcripts {
            let name = source.format.source();
            let mut view = crate::transcripts::transcript_view(store.reader()?.transcript_files(name)?);
            let mut write_error = None;
            let mut write = |batch: ducktail_store::TranscriptBatch| {
                store.write_transcripts(&batch).map_err(|error| {
                    let message = error.to_string();
                    write_error = Some(error);
                    message
                })
            };
            let synced = crate::transcripts::sync_transcripts(source, &mut view, &context, None, &mut write);
            if let Some(error) = write_error {
                return Err(error.into());
            }
            if let Ok(synced) = synced {
                summary.transcripts.push((name, synced));
            }
        }
    }
    let prices = crate::transcripts::decode_context(settings)?.prices;
    let pricing = crate::pricing::price_stored_rows(store, &prices)?;
    let touched = store.take_touched_sessions();
    let derived = Instant::now();
    // Complete and untouched (the usual reconcile of an unchanged tree): nothing to recompute.
    // Costs computed by the pricing pass change those sessions' rollups too.
    let mut touched = touched;
    touched.extend(pricing.changed_sessions);
    let all = !was_complete;
    if all || !touched.is_empty() {
        store.refresh_derived(&if all { TraceScope::All } else { TraceScope::Sessions(touched) })?;
    }
    store.mark_derived_complete()?;
    tracing::debug!(took = ?derived.elapsed(), was_complete, "index: derived tables refreshed");
    summary.duration = started.elapsed();
    Ok(summary)
}

/// Reads every row of `opencode.db` that the store does not hold in its current version, and
/// removes what the database no longer holds. A database that cannot be read is reported in the
/// summary, not as a failure of the run.
fn index_database(store: &mut Store, path: &Path, settings: &Settings, summary: &mut IndexSummary) -> Result<(), IndexError> {
    let mut database = match OpencodeDatabase::open(path) {
        Ok(database) => database,
        Err(error) => {
            summary.database_error = Some(error.to_string());
            return Ok(());
        }
    };
    let mirror = Mirror::from_stored(store.reader()?.records_of_source(OPENCODE_SQLITE_SOURCE)?);
    let mut write_error: Option<StoreError> = None;
    let mut resurfaced: Vec<(String, String)> = Vec::new();
    let database_path = path.to_string_lossy().into_owned();
    let mut deliver = |chunk: Chunk| -> bool {
        let batch = WriteBatch {
            source: OPENCODE_SQLITE_SOURCE,
            rows: chunk.upserts,
            removed_records: chunk.removed,
            rejected: chunk.rejected,
            database_path: Some(database_path.clone()),
            ..Default::default()
        };
        match store.write_batch(&batch) {
            Ok(report) => {
                summary.database_records += batch.rows.len() - report.superseded;
                summary.database_removed += batch.removed_records.len();
                summary.database_rejected += batch.rejected.len();
                resurfaced.extend(report.resurfaced);
                true
            }
            Err(error) => {
                write_error = Some(error);
                false
            }
        }
    };
    let read = database.read(&mirror, ReadMode::Full, &decode_limits(settings), &mut deliver);
    if let Some(error) = write_error {
        return Err(error.into());
    }
    if let Err(error) = read {
        summary.database_error = Some(error.to_string());
    }
    // Records the database deleted but the JSON tree still holds: the files' copies return.
    if !resurfaced.is_empty() {
        let root = storage_root(path.parent().unwrap_or(Path::new(".")));
        let limits = decode_limits(settings);
        let mut batch = WriteBatch { source: OPENCODE_JSON_SOURCE, on_delete: on_delete_policy(settings.pipeline.on_delete), ..Default::default() };
        for (file, kind) in resurfaced {
            let Some(kind) = FileKind::parse(&kind) else { continue };
            match resolve_path(&root, Path::new(&file), kind, &limits, Duration::ZERO) {
                Resolved::Present(decoded) => batch.files.push(decoded),
                Resolved::Gone(removed) => batch.removed.push(removed),
            }
        }
        store.write_batch(&batch)?;
    }
    Ok(())
}

/// What the comparer of [`index_tree`] found in the listing.
#[derive(Default)]
struct Listing {
    scanned: usize,
    unchanged: usize,
    files_by_kind: BTreeMap<&'static str, usize>,
    scan_errors: Vec<String>,
    removed: Vec<(PathBuf, FileKind)>,
}

/// Indexes the JSON tree under `root`.
///
/// One pipeline, every stage on its own thread(s) with bounded channels between them: the scan
/// hands its listing on folder by folder (in name order); the comparer drops what `file_index`
/// already holds in the same version; decoders read what is left; this thread writes batches.
/// So at no point is the whole listing in memory: a cold index of 1M files peaked at 601 MB
/// with the listing collected first, most of it the listing. `file_index` loads while the
/// scan's first folders are listed. The progress total grows while the listing runs.
fn index_tree(store: &mut Store, root: &Path, settings: &Settings, progress: Progress<'_>) -> Result<IndexSummary, IndexError> {
    let root = root.to_owned();
    let mut summary = IndexSummary::default();
    let started = Instant::now();
    let limits = decode_limits(settings);
    let on_delete = on_delete_policy(settings.pipeline.on_delete);
    // Everything fresh is decoded with no settle window so first attempts are fast; failures
    // are retried once below, after they had time to settle.
    let mut retry: Vec<(PathBuf, FileKind)> = Vec::new();
    let processed = AtomicUsize::new(0);
    let to_process = AtomicUsize::new(0);
    let mut write_error: Option<StoreError> = None;
    let batch_files = settings.index.batch_files;
    let threads = settings.decode.thread_count();
    let chunk_size = batch_files.div_ceil(threads).clamp(1, 1_000);
    let mut paths_are_new = false;
    let listing = std::thread::scope(|scope| -> Result<Listing, IndexError> {
        let (listed_sender, listed) = crossbeam_channel::bounded::<Vec<Result<ScannedFile, ScanError>>>(4);
        let root_ref = &root;
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(chunk_size);
            scan_storage_streaming(root_ref, scan_threads(), &mut |item| {
                chunk.push(item);
                chunk.len() < chunk_size || listed_sender.send(std::mem::replace(&mut chunk, Vec::with_capacity(chunk_size))).is_ok()
            });
            if !chunk.is_empty() {
                let _ = listed_sender.send(chunk);
            }
        });
        let (view_sender, view_received) = crossbeam_channel::bounded::<IndexView>(1);
        let (work_sender, work) = crossbeam_channel::bounded::<Vec<ScannedFile>>(threads * 2);
        let to_process = &to_process;
        // Without the view (its load failed, and the run with it) the comparer returns at once.
        let comparer = scope.spawn(move || -> Listing {
            // Until file_index is loaded the listing is kept here rather than held up, so the
            // two run side by side (unchanged 100k tree: listing 183 ms, load 65-100 ms). A cold
            // index loads an empty table at once, so nothing piles up where memory matters.
            let mut early = Vec::new();
            let view = loop {
                crossbeam_channel::select! {
                    recv(view_received) -> view => break view,
                    recv(listed) -> chunk => match chunk {
                        Ok(chunk) => early.push(chunk),
                        Err(_) => break view_received.recv(),
                    },
                }
            };
            let Ok(mut indexed) = view else { return Listing::default() };
            let mut comparison = Comparison::new(&mut indexed, 1);
            let (mut scanned, mut files_by_kind, mut scan_errors) = (0, BTreeMap::new(), Vec::new());
            for chunk in early.into_iter().chain(listed.iter()) {
                let mut files = Vec::with_capacity(chunk.len());
                for item in chunk {
                    match item {
                        Ok(file) => {
                            *files_by_kind.entry(file.kind.as_str()).or_default() += 1;
                            files.push(file);
                        }
                        Err(error) => scan_errors.push(error.to_string()),
                    }
                }
                scanned += files.len();
                comparison.keep_changed(&mut files);
                if !files.is_empty() {
                    to_process.fetch_add(files.len(), Ordering::Relaxed);
                    if work_sender.send(files).is_err() {
                        break;
                    }
                }
            }
            let unchanged = comparison.unchanged;
            let removed = comparison.removed();
            tracing::debug!(files = scanned, unchanged, "index: listed and compared the tree");
            Listing { scanned, unchanged, files_by_kind, scan_errors, removed }
        });
        let loading = Instant::now();
        // On failure the comparer, then the scan, stop: `view_sender` drops here.
        let indexed = IndexView::load(&root, &store.reader()?)?;
        tracing::debug!(took = ?loading.elapsed(), rows = indexed.len(), "index: file_index loaded");
        // A cold index: no listed path has a row, so the writer appends them without a lookup.
        paths_are_new = indexed.is_empty();
        // Fails only if the comparer is gone, which `join` below reports.
        let _ = view_sender.send(indexed);
        let (sender, receiver) = crossbeam_channel::bounded::<Vec<Resolved>>(threads * 2);
        for _ in 0..threads {
            let (sender, work) = (sender.clone(), work.clone());
            let (root, limits) = (&root, &limits);
            scope.spawn(move || {
                for chunk in work.iter() {
                    let resolved: Vec<Resolved> = chunk.iter().map(|file| resolve_path(root, &file.path, file.kind, limits, Duration::ZERO)).collect();
                    drop(chunk);
                    if sender.send(resolved).is_err() {
                        break;
                    }
                }
            });
        }
        drop((sender, work));
        let mut pending = WriteBatch { source: OPENCODE_JSON_SOURCE, on_delete, paths_are_new, ..Default::default() };
        let flush = |batch: &mut WriteBatch, store: &mut Store, summary: &mut IndexSummary| -> Result<(), StoreError> {
            let files = batch.files.len() + batch.removed.len();
            let report = store.write_batch(batch)?;
            summary.indexed += report.indexed;
            summary.removed += report.removed;
            batch.files.clear();
            batch.removed.clear();
            progress(processed.fetch_add(files, Ordering::Relaxed) + files, to_process.load(Ordering::Relaxed));
            Ok(())
        };
        for resolved in receiver.iter() {
            if write_error.is_some() {
                continue; // drain so the comparer and decoders finish
            }
            for item in resolved {
                match item {
                    Resolved::Present(file) if matches!(file.outcome, FileOutcome::Decoded(_)) => pending.files.push(file),
                    Resolved::Present(file) => {
                        retry.push((file.path.clone(), file.kind));
                        processed.fetch_add(1, Ordering::Relaxed);
                    }
                    Resolved::Gone(removed) => pending.removed.push(removed),
                }
            }
            if pending.files.len() >= batch_files {
                if let Err(error) = flush(&mut pending, store, &mut summary) {
                    write_error = Some(error);
                }
            }
        }
        if write_error.is_none() && !(pending.files.is_empty() && pending.removed.is_empty()) {
            if let Err(error) = flush(&mut pending, store, &mut summary) {
                write_error = Some(error);
            }
        }
        Ok(comparer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })?;
    tracing::debug!(took = ?started.elapsed(), "index: listed, compared, decoded and wrote the tree");
    summary.scanned = listing.scanned;
    summary.unchanged = listing.unchanged;
    summary.files_by_kind = listing.files_by_kind;
    summary.scan_errors = listing.scan_errors;
    let removed_files = listing.removed;
    let total = to_process.load(Ordering::Relaxed);
    if let Some(error) = write_error {
        return Err(error.into());
    }

    // Failed files get one more chance once they have been quiet for the settle delay: a file
    // caught mid-write by OpenCode parses on the second read; a broken one fails again.
    if !retry.is_empty() {
        wait_until_settled(retry.iter().map(|(path, _)| path.as_path()), settings.pipeline.settle());
        // Never written by this run's first pass, so as new as they were then.
        let mut batch = WriteBatch { source: OPENCODE_JSON_SOURCE, on_delete, paths_are_new, ..Default::default() };
        for (path, kind) in &retry {
            match resolve_path(&root, path, *kind, &limits, Duration::ZERO) {
                Resolved::Present(mut file) => {
                    if let FileOutcome::NotReady(message) = file.outcome {
                        file.outcome = FileOutcome::Failed(message);
                    }
                    batch.files.push(file);
                }
                Resolved::Gone(removed) => batch.removed.push(removed),
            }
        }
        let report = store.write_batch(&batch)?;
        summary.indexed += report.indexed;
        summary.errors += report.errors;
        summary.removed += report.removed;
    }

    if !removed_files.is_empty() {
        let removed = removed_files.iter().map(|(path, _)| RemovedFile { path: path.to_string_lossy().into_owned() }).collect();
        let batch = WriteBatch { source: OPENCODE_JSON_SOURCE, on_delete, removed, ..Default::default() };
        summary.removed += store.write_batch(&batch)?.removed;
    }
    progress(total, total);
    Ok(summary)
}

/// Sleeps until every file in `files` has been unmodified for `settle` (at most `settle`).
fn wait_until_settled<'a>(files: impl IntoIterator<Item = &'a Path>, settle: Duration) {
    let newest_mtime_ns = files
        .into_iter()
        .filter_map(|path| std::fs::symlink_metadata(path).ok())
        .map(|metadata| ducktail_sources::opencode::stamp_of(&metadata).mtime_ns)
        .max()
        .unwrap_or(0);
    let quiet_for = Duration::from_nanos(now_ns().saturating_sub(newest_mtime_ns).max(0) as u64);
    if let Some(remaining) = settle.checked_sub(quiet_for) {
        std::thread::sleep(remaining);
    }
}
