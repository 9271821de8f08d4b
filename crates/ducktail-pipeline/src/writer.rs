//! The Writer: the one actor that owns the read-write DuckDB connection.
//!
//! Every write of the daemon comes here, from every source: the JSON tree's decoded batches
//! ([`WriteDecoded`]), `opencode.db`'s chunks ([`WriteRows`]), span files
//! ([`WriteSpans`](crate::spans::WriteSpans)), the TraceBuilder's derived rows
//! ([`ReplaceDerived`]) and the retention purge ([`PurgeBefore`]). Each is one transaction. A
//! decoded batch that commits is announced as [`BatchCommitted`] to the accumulator, the
//! reconciler and the trace builder (a database chunk's, to the trace builder; the followers
//! learn of their commits from the reply); one that fails goes back to the accumulator as
//! [`BatchFailed`], whose paths are retried with backoff.
//!
//! Checkpoints are taken where they most likely hold up no file. [`CheckpointIfIdle`], offered
//! several times a second, checkpoints once nothing was written (by any source) for a moment and
//! the WAL is over `database.idle_checkpoint_wal_bytes`; [`Checkpoint`] comes every
//! `database.checkpoint_interval` and at a clean stop. DuckDB's own checkpoint inside a commit
//! (`database.wal_autocheckpoint`) is left for load that never pauses, because it holds that batch
//! and every file behind it.
//!
//! [`CloseDatabase`] ends every clean stop: the connection closes on this thread, before the
//! process exits and destroys DuckDB's globals.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use ducktail_model::{FileOutcome, FileStatus};
use ducktail_sources::opencode::sqlite::OPENCODE_SQLITE_SOURCE;
use ducktail_store::{OnDelete, RemovedFile, Store, WriteBatch};

use crate::database::WriteRows;
use crate::files::OPENCODE_JSON_SOURCE;
use crate::messages::*;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::Links;

/// What asked for a CHECKPOINT between batches (the `trigger` label of
/// `ducktail_checkpoint_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckpointTrigger {
    /// `database.checkpoint_interval`, or a clean stop.
    Interval,
    /// [`CheckpointIfIdle`]: the writer has been quiet.
    Idle,
}

impl CheckpointTrigger {
    fn as_str(self) -> &'static str {
        match self {
            CheckpointTrigger::Interval => "interval",
            CheckpointTrigger::Idle => "idle",
        }
    }
}

/// Hands the one [`Store`] from a stopped writer to its replacement.
pub type StoreSlot = Arc<Mutex<Option<Store>>>;

/// The single writer. Runs on its own thread (a one-thread `SyncArbiter`) because every call into
/// DuckDB blocks.
pub struct Writer {
    /// Where the store waits between writer incarnations.
    slot: StoreSlot,
    /// The store while this writer runs.
    store: Option<Store>,
    /// Policy for removed files' records.
    on_delete: OnDelete,
    /// `database.idle_checkpoint_wal_bytes`: the WAL size worth a checkpoint when idle (0: never).
    idle_checkpoint_wal_bytes: u64,
    /// When the last write (of any kind) ended.
    last_write: Instant,
    /// Subscribers of [`BatchCommitted`] and the accumulator for [`BatchFailed`].
    links: Arc<Links>,
    /// Shared counters.
    board: Arc<StatusBoard>,
    /// Test seams.
    faults: Arc<Faults>,
}

impl Writer {
    /// A writer that takes its store from `slot` when it starts.
    pub fn new(
        slot: StoreSlot,
        on_delete: OnDelete,
        idle_checkpoint_wal_bytes: u64,
        links: Arc<Links>,
        board: Arc<StatusBoard>,
        faults: Arc<Faults>,
    ) -> Writer {
        Writer { slot, store: None, on_delete, idle_checkpoint_wal_bytes, last_write: Instant::now(), links, board, faults }
    }

    /// Runs a CHECKPOINT. Timed because it holds the writer: a long one is a stall of live
    /// commits (those DuckDB runs inside a commit show in that batch's `commit` phase instead).
    fn checkpoint(&self, trigger: CheckpointTrigger) {
        let Some(store) = &self.store else { return };
        let started = Instant::now();
        let (why, wal_bytes) = (trigger.as_str(), store.wal_bytes());
        match store.checkpoint() {
            Ok(()) => {
                tracing::debug!(why, wal_bytes, took = ?started.elapsed(), "checkpoint");
                self.board.metrics.checkpoint_seconds.with_label_values(&[why]).observe(started.elapsed().as_secs_f64());
                let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64);
                self.board.last_checkpoint_unix_ms.store(now_ms, std::sync::atomic::Ordering::Relaxed);
            }
            // Offered four times a second, an idle checkpoint that keeps failing would flood the
            // log: the periodic one reports the same failure.
            Err(error) if trigger == CheckpointTrigger::Idle => tracing::debug!(why, %error, "checkpoint failed"),
            Err(error) => tracing::warn!(why, %error, "checkpoint failed; DuckDB replays the WAL at next open"),
        }
    }

    /// Commits a batch; the error says why it could not be.
    fn commit(&mut self, decoded: WriteDecoded) -> Result<BatchCommitted, String> {
        let Some(store) = self.store.as_mut() else {
            return Err("the writer has no database connection".to_owned());
        };
        let mut observed_at = Vec::with_capacity(decoded.files.len());
        let mut batch = WriteBatch { source: OPENCODE_JSON_SOURCE, on_delete: self.on_delete, ..Default::default() };
        for (file, at) in decoded.files {
            observed_at.push(at);
            batch.files.push(file);
        }
        let removed_kinds: Vec<_> = decoded.removed.iter().map(|(_, _, kind)| *kind).collect();
        batch.removed = decoded.removed.into_iter().map(|(removed, _, _)| removed).collect::<Vec<RemovedFile>>();
        let report = match store.write_batch(&batch) {
            Ok(report) => report,
            Err(error) => return Err(error.to_string()),
        };
        let committed_at = Instant::now();
        let metrics = &self.board.metrics;
        metrics.batch_files.observe((batch.files.len() + batch.removed.len()) as f64);
        metrics.batch_write_seconds.observe(report.duration.as_secs_f64());
        for (table, rows) in &report.records_by_table {
            metrics.records.with_label_values(&[table]).inc_by(*rows as u64);
        }
        let mut committed = BatchCommitted {
            batch_id: decoded.batch_id,
            files: Vec::with_capacity(batch.files.len() + batch.removed.len()),
            not_ready: Vec::new(),
            touched_sessions: report.touched_sessions,
            latencies: Vec::with_capacity(batch.files.len()),
            commit_duration: report.duration,
        };
        for (file, at) in batch.files.into_iter().zip(observed_at) {
            let status = match &file.outcome {
                FileOutcome::Decoded(_) => {
                    let latency = committed_at.saturating_duration_since(at);
                    metrics.event_to_commit_seconds.observe(latency.as_secs_f64());
                    committed.latencies.push(latency);
                    FileStatus::Indexed
                }
                FileOutcome::NotReady(_) => {
                    committed.not_ready.push(ObservedPath::new(file.path.clone(), file.kind, at));
                    FileStatus::Pending
                }
                FileOutcome::Failed(_) => FileStatus::Error,
            };
            metrics.files.with_label_values(&[file.kind.as_str(), status.as_str()]).inc();
            committed.files.push(CommittedFile { path: file.path, kind: file.kind, state: Some((file.stamp, status)) });
        }
        for (removed, kind) in batch.removed.into_iter().zip(removed_kinds) {
            metrics.files.with_label_values(&[kind.as_str(), "removed"]).inc();
            committed.files.push(CommittedFile { path: PathBuf::from(removed.path), kind, state: None });
        }
        Ok(committed)
    }
}

impl Actor for Writer {
    type Context = SyncContext<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.store = self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if self.store.is_none() {
            tracing::error!("writer started without a database connection");
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(mut store) = self.store.take() {
            // A panic may have left a transaction open; the next writer starts clean.
            store.rollback_open_transaction();
            *self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(store);
        }
    }
}

impl Handler<WriteDecoded> for Writer {
    type Result = ();
    fn handle(&mut self, decoded: WriteDecoded, ctx: &mut Self::Context) {
        let batch_id = decoded.batch_id;
        let paths = decoded.observed_paths();
        let (board, faults) = (self.board.clone(), self.faults.clone());
        let span = tracing::debug_span!("write_batch", batch_id, files = paths.len());
        let _entered = span.enter();
        let result = catch_panic("writer", &board, || {
            faults.maybe_panic("writer", &board);
            self.commit(decoded)
        });
        match result {
            Some(Ok(committed)) => {
                board.record_commit(committed.batch_id, committed.files.len(), &committed.touched_sessions, &committed.latencies);
                tracing::debug!(files = committed.files.len(), commit_ms = committed.commit_duration.as_millis() as u64, "batch committed");
                // Bounded: one message per committed batch to each subscriber.
                self.links.trace_builder().do_send(committed.clone());
                self.links.reconciler().do_send(committed.clone());
                self.links.accumulator().do_send(committed);
            }
            Some(Err(reason)) => {
                tracing::error!(batch_id, %reason, "batch could not be committed; its files will be retried");
                board.set_commit_failure(Some(reason.clone()));
                self.links.accumulator().do_send(BatchFailed { batch_id, paths, reason });
            }
            None => {
                self.links.accumulator().do_send(BatchFailed { batch_id, paths, reason: "writer panicked".to_owned() });
                ctx.stop();
            }
        }
        self.last_write = Instant::now();
    }
}

impl Handler<WriteRows> for Writer {
    type Result = ();
    fn handle(&mut self, rows: WriteRows, ctx: &mut Self::Context) {
        let WriteRows { batch_id, database_path, upserts, removed, rejected, observed_at, reply } = rows;
        let batch = WriteBatch {
            source: OPENCODE_SQLITE_SOURCE,
            rows: upserts,
            removed_records: removed,
            rejected,
            database_path: Some(database_path),
            ..Default::default()
        };
        let (board, faults) = (self.board.clone(), self.faults.clone());
        let span = tracing::debug_span!("write_rows", batch_id, rows = batch.rows.len(), removed = batch.removed_records.len());
        let _entered = span.enter();
        let result = catch_panic("writer", &board, || {
            faults.maybe_panic("writer", &board);
            match self.store.as_mut() {
                Some(store) => store.write_batch(&batch).map_err(|error| error.to_string()),
                None => Err("the writer has no database connection".to_owned()),
            }
        });
        match result {
            Some(Ok(report)) => {
                let metrics = &board.metrics;
                metrics.batch_files.observe((batch.rows.len() + batch.removed_records.len()) as f64);
                metrics.batch_write_seconds.observe(report.duration.as_secs_f64());
                for (table, count) in &report.records_by_table {
                    metrics.records.with_label_values(&[table]).inc_by(*count as u64);
                }
                let latency = observed_at.elapsed();
                let latencies = vec![latency; batch.rows.len()];
                for latency in &latencies {
                    metrics.event_to_commit_seconds.observe(latency.as_secs_f64());
                }
                let changes = batch.rows.len() + batch.removed_records.len() + batch.rejected.len();
                board.record_commit(batch_id, changes, &report.touched_sessions, &latencies);
                self.links.trace_builder().do_send(BatchCommitted {
                    batch_id,
                    files: Vec::new(),
                    not_ready: Vec::new(),
                    touched_sessions: report.touched_sessions.clone(),
                    latencies,
                    commit_duration: report.duration,
                });
                if !report.resurfaced.is_empty() {
                    // OpenCode deleted records the JSON tree still holds: that copy is the record now.
                    let now = Instant::now();
                    let paths = report
                        .resurfaced
                        .iter()
                        .filter_map(|(path, kind)| Some(ObservedPath::new(PathBuf::from(path), ducktail_model::FileKind::parse(kind)?, now)))
                        .collect();
                    self.links.accumulator().do_send(PathsChanged { paths, origin: Origin::Retry });
                }
                let _ = reply.send(Ok(report));
            }
            Some(Err(reason)) => {
                tracing::error!(batch_id, %reason, "opencode.db changes could not be committed; they are read again");
                board.set_commit_failure(Some(reason.clone()));
                let _ = reply.send(Err(reason));
            }
            None => {
                let _ = reply.send(Err("writer panicked".to_owned()));
                ctx.stop();
            }
        }
        self.last_write = Instant::now();
    }
}

impl Handler<crate::spans::WriteSpans> for Writer {
    type Result = ();
    fn handle(&mut self, message: crate::spans::WriteSpans, ctx: &mut Self::Context) {
        let (board, faults) = (self.board.clone(), self.faults.clone());
        let span = tracing::debug_span!("write_spans", batch_id = message.batch_id, files = message.batch.files.len());
        let _entered = span.enter();
        let reply = message.reply.clone();
        let finished = catch_panic("writer", &board, || {
            faults.maybe_panic("writer", &board);
            crate::spans::commit_spans(self.store.as_mut(), message, &board);
        });
        if finished.is_none() {
            let _ = reply.send(Err("writer panicked".to_owned()));
            ctx.stop();
        }
        self.last_write = Instant::now();
    }
}

impl Handler<crate::transcripts::WriteTranscripts> for Writer {
    type Result = ();
    fn handle(&mut self, message: crate::transcripts::WriteTranscripts, ctx: &mut Self::Context) {
        let (board, faults) = (self.board.clone(), self.faults.clone());
        let span = tracing::debug_span!("write_transcripts", batch_id = message.batch_id, stretches = message.batch.stretches.len());
        let _entered = span.enter();
        let reply = message.reply.clone();
        let finished = catch_panic("writer", &board, || {
            faults.maybe_panic("writer", &board);
            crate::transcripts::commit_transcripts(self.store.as_mut(), message, &board)
        });
        match finished {
            Some(Some((batch_id, report, latencies))) => {
                // The derived tables (traces, rollups) follow the sessions the batch touched.
                self.links.trace_builder().do_send(BatchCommitted {
                    batch_id,
                    files: Vec::new(),
                    not_ready: Vec::new(),
                    touched_sessions: report.touched_sessions,
                    latencies,
                    commit_duration: report.duration,
                });
            }
            Some(None) => {}
            None => {
                let _ = reply.send(Err("writer panicked".to_owned()));
                ctx.stop();
            }
        }
        self.last_write = Instant::now();
    }
}

impl Handler<crate::pricing::PriceStoredRows> for Writer {
    type Result = ();
    fn handle(&mut self, message: crate::pricing::PriceStoredRows, _ctx: &mut Self::Context) {
        let Some(store) = self.store.as_mut() else { return };
        match crate::pricing::price_stored_rows(store, &message.prices) {
            Ok(pricing) if !pricing.changed_sessions.is_empty() => {
                tracing::info!(
                    steps = pricing.steps,
                    sessions = pricing.changed_sessions.len(),
                    repriced_all = pricing.repriced_all,
                    "costs computed from list prices"
                );
                // Their rollups follow, as after any commit that touched them.
                self.links.trace_builder().do_send(BatchCommitted {
                    batch_id: 0,
                    files: Vec::new(),
                    not_ready: Vec::new(),
                    touched_sessions: pricing.changed_sessions,
                    latencies: Vec::new(),
                    commit_duration: Duration::ZERO,
                });
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "list prices could not be applied; the next pass retries"),
        }
        self.last_write = Instant::now();
    }
}

impl Handler<crate::export::RecordSentSpans> for Writer {
    type Result = ();
    fn handle(&mut self, message: crate::export::RecordSentSpans, _ctx: &mut Self::Context) {
        let outcome = match self.store.as_mut() {
            Some(store) => store.record_sent_spans(&message.spans).map_err(|error| error.to_string()),
            None => Err("the database is closed".to_owned()),
        };
        let _ = message.reply.send(outcome);
        self.last_write = Instant::now();
    }
}

impl Handler<ReplaceDerived> for Writer {
    type Result = ();
    fn handle(&mut self, message: ReplaceDerived, ctx: &mut Self::Context) {
        let board = self.board.clone();
        let started = std::time::Instant::now();
        let scope = message.0.scope.clone().map(|mut sessions| {
            sessions.extend(message.0.ancestors.iter().cloned());
            sessions
        });
        let result = catch_panic("writer", &board, || match self.store.as_mut() {
            Some(store) => store.replace_derived(&message.0).map_err(|error| error.to_string()),
            None => Err("the writer has no database connection".to_owned()),
        });
        match result {
            Some(Ok(())) => {
                tracing::debug!(write_ms = started.elapsed().as_millis() as u64, "derived traces replaced");
                board.record_derived(scope.iter().flatten().cloned().collect());
            }
            Some(Err(reason)) => {
                board.derived_write_failed.store(true, std::sync::atomic::Ordering::Release);
                tracing::warn!(%reason, "could not replace derived traces; they are recomputed after the next commit");
                board.set_commit_failure(Some(reason));
                self.links.trace_builder().do_send(DerivedFailed { scope });
            }
            None => {
                board.derived_write_failed.store(true, std::sync::atomic::Ordering::Release);
                self.links.trace_builder().do_send(DerivedFailed { scope });
                ctx.stop();
            }
        }
        self.last_write = Instant::now();
    }
}

impl Handler<MarkDerivedComplete> for Writer {
    type Result = ();
    fn handle(&mut self, _message: MarkDerivedComplete, _ctx: &mut Self::Context) {
        // Conservative: after any failed derived write in this run, the next start recomputes.
        if self.board.derived_write_failed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let Some(store) = self.store.as_mut() else { return };
        if let Err(error) = store.mark_derived_complete() {
            tracing::warn!(%error, "could not mark the derived tables complete; the next start recomputes them");
        }
    }
}

impl Handler<PurgeBefore> for Writer {
    type Result = ();
    fn handle(&mut self, message: PurgeBefore, _ctx: &mut Self::Context) {
        let Some(store) = self.store.as_mut() else { return };
        match store.purge_sessions_before(message.0) {
            Ok(0) => {}
            Ok(sessions) => {
                tracing::info!(sessions, "retention: purged sessions older than retention.max_age_days");
                // Announced as derived rows of every session: readers refresh what they show.
                self.board.record_derived(Default::default());
            }
            Err(error) => tracing::warn!(%error, "retention purge failed; retrying at the next interval"),
        }
        self.last_write = Instant::now();
    }
}

impl Handler<WriterBarrier> for Writer {
    type Result = ();
    fn handle(&mut self, _message: WriterBarrier, _ctx: &mut Self::Context) {}
}

impl Handler<CloseDatabase> for Writer {
    type Result = ();
    fn handle(&mut self, _message: CloseDatabase, _ctx: &mut Self::Context) {
        // The store waiting for a next incarnation closes too: there will be none.
        let waiting = self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        for mut store in self.store.take().into_iter().chain(waiting) {
            store.rollback_open_transaction();
            drop(store);
        }
    }
}

impl Handler<Checkpoint> for Writer {
    type Result = ();
    fn handle(&mut self, _message: Checkpoint, _ctx: &mut Self::Context) {
        self.checkpoint(CheckpointTrigger::Interval);
    }
}

impl Handler<CheckpointIfIdle> for Writer {
    type Result = ();
    fn handle(&mut self, message: CheckpointIfIdle, _ctx: &mut Self::Context) {
        let Some(store) = &self.store else { return };
        if self.idle_checkpoint_wal_bytes == 0 || self.last_write.elapsed() < message.quiet_for || store.wal_bytes() < self.idle_checkpoint_wal_bytes {
            return;
        }
        self.checkpoint(CheckpointTrigger::Idle);
    }
}
