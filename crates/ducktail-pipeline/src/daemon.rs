//! Wiring and shutdown of the supervised actor tree behind `ducktail run`.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use ducktail_sources::opencode::storage_root;
use ducktail_store::{ReaderPool, Store, StoreError};

use crate::accumulator::{Accumulator, BatchRules};
use crate::database::{start_following, DatabaseWatch};
use crate::decoder::Decoder;
use crate::index::{decode_limits, on_delete_policy, IndexError};
use crate::messages::{Checkpoint, CheckpointIfIdle, CloseDatabase, Drain, FlushTraces, GetPipelineStatus, MarkDerivedComplete, PipelineStatus};
use crate::reconciler::Reconciler;
use crate::settings::Settings;
use crate::status::StatusBoard;
use crate::supervision::Faults;
use crate::trace_builder::TraceBuilder;
use crate::watcher::{StopWatching, Watcher};
use crate::writer::Writer;
use crate::Links;

/// How often the writer is offered an idle checkpoint.
const IDLE_CHECKPOINT_TICK: Duration = Duration::from_millis(250);
/// How long the writer must have been quiet to take it. A pause, not a gap between batches: when
/// the accumulator's drained state after a commit was the trigger, files arriving a millisecond
/// apart (1,000 files/s) waited for checkpoints of 50-200 ms, and that run's p95 went from
/// 16-32 ms to 190 ms.
const IDLE_CHECKPOINT_QUIET: Duration = Duration::from_millis(500);

/// A running pipeline: the handles the binary and the HTTP server need.
pub struct Daemon {
    /// Counters for health and readiness.
    pub board: Arc<StatusBoard>,
    /// Reader connections for the HTTP API.
    pub readers: ReaderPool,
    /// Every actor's address.
    links: Arc<Links>,
    /// The watcher (not linked: nobody sends to it but the daemon).
    watcher: Addr<Watcher>,
    /// The periodic checkpoint task, stopped at shutdown.
    checkpoints: actix_rt::task::JoinHandle<()>,
    /// The periodic retention purge, when `[retention]` is on.
    retention: Option<actix_rt::task::JoinHandle<()>>,
    /// The watch and poll of `opencode.db`, when it is followed.
    database: Option<(DatabaseWatch, actix_rt::task::JoinHandle<()>)>,
    /// The watch and poll of the span folder, when there is one.
    spans: Option<(Option<notify::RecommendedWatcher>, actix_rt::task::JoinHandle<()>)>,
    /// One follower per transcript source with a folder.
    transcripts: Vec<crate::transcripts::FollowingTranscripts>,
    /// The periodic list-price pass.
    pricing: actix_rt::task::JoinHandle<()>,
    /// The price table it applies, for the last pass at shutdown.
    prices: Arc<ducktail_sources::pricing::PriceTable>,
    /// The OTLP exporter's ticks and the scheduled Parquet export, when configured.
    export_tasks: Vec<actix_rt::task::JoinHandle<()>>,
}

/// Checks that a daemon has something to follow before the caller creates the database: the
/// OpenCode folder itself (its `storage/` and `opencode.db` may appear later, when OpenCode first
/// runs), or a span folder that exists.
pub fn check_sources_to_follow(opencode_dir: &Path, settings: &Settings) -> Result<(), IndexError> {
    let span_root = &settings.sources.spans.path;
    let follow_spans = !span_root.as_os_str().is_empty();
    if follow_spans && !span_root.is_dir() {
        return Err(IndexError::MissingSpans { path: span_root.clone() });
    }
    let transcripts = crate::transcripts::transcript_sources(settings)?;
    crate::transcripts::decode_context(settings)?;
    if !opencode_dir.is_dir() && !follow_spans && transcripts.is_empty() {
        return Err(IndexError::NoOpencodeFolder { path: opencode_dir.to_owned(), also: crate::transcripts::also_looked_for(settings) });
    }
    Ok(())
}

impl Daemon {
    /// Starts every actor. Must be called inside a running actix `System`. The store is moved
    /// into the writer; readers are cloned from it first.
    pub fn start(settings: &Settings, opencode_dir: &Path, mut store: Store) -> Result<Daemon, StoreError> {
        let readers = store.reader_pool()?;
        // Taken (removed) now: if this run crashes, the next start recomputes the derived tables.
        let was_complete = store.take_derived_complete_mark()?;
        let derived_complete = Arc::new(AtomicBool::new(was_complete));
        let board = Arc::new(StatusBoard::default());
        let faults = Faults::new(&settings.faults);
        let links = Arc::new(Links::default());
        let root = storage_root(opencode_dir);

        let slot: Arc<Mutex<Option<Store>>> = Arc::new(Mutex::new(Some(store)));
        let on_delete = on_delete_policy(settings.pipeline.on_delete);
        let writer = {
            let (links, board, faults) = (links.clone(), board.clone(), faults.clone());
            let idle_checkpoint_wal_bytes = settings.database.idle_checkpoint_wal_bytes;
            SyncArbiter::start(1, move || Writer::new(slot.clone(), on_delete, idle_checkpoint_wal_bytes, links.clone(), board.clone(), faults.clone()))
        };
        let decoders = {
            let (links, board, faults) = (links.clone(), board.clone(), faults.clone());
            let (root, limits, settle) = (root.clone(), decode_limits(settings), settings.pipeline.settle());
            SyncArbiter::start(settings.decode.thread_count(), move || Decoder::new(root.clone(), limits, settle, links.clone(), board.clone(), faults.clone()))
        };
        let trace_builder = {
            let (links, board, faults, readers) = (links.clone(), board.clone(), faults.clone(), readers.clone());
            let derived_complete = derived_complete.clone();
            SyncArbiter::start(1, move || TraceBuilder::new(readers.clone(), links.clone(), board.clone(), faults.clone(), derived_complete.clone()))
        };
        let accumulator = {
            let rules = BatchRules::from_settings(settings);
            let (links, board, faults, root) = (links.clone(), board.clone(), faults.clone(), root.clone());
            Supervisor::start(move |_| Accumulator::new(rules, links, board, faults, root))
        };
        // Every link is set before the reconciler and watcher start producing messages.
        let _ = links.writer.set(writer);
        let _ = links.decoders.set(decoders);
        let _ = links.trace_builder.set(trace_builder);
        let _ = links.accumulator.set(accumulator);
        {
            let (links_for_actor, board, faults, root, readers) = (links.clone(), board.clone(), faults.clone(), root.clone(), readers.clone());
            let interval = settings.reconcile.interval;
            let links = links.clone();
            // The link is set inside the constructor closure, before the actor's first scan runs.
            Supervisor::start(move |ctx: &mut Context<Reconciler>| {
                let _ = links.reconciler.set(ctx.address());
                Reconciler::new(root, readers, links_for_actor, interval, board, faults)
            });
        }
        let database = settings.sources.opencode.follow_database.then(|| {
            let (follower, watch, poll) = start_following(
                opencode_dir,
                settings.sources.opencode.database_poll_interval,
                decode_limits(settings),
                readers.clone(),
                links.clone(),
                board.clone(),
                faults.clone(),
            );
            let _ = links.database.set(follower);
            (watch, poll)
        });
        let span_root = &settings.sources.spans.path;
        let spans = (!span_root.as_os_str().is_empty()).then(|| {
            let (follower, watch, poll) =
                crate::spans::start_following_spans(settings, span_root, readers.clone(), links.clone(), board.clone(), faults.clone());
            let _ = links.spans.set(follower);
            (watch, poll)
        });
        // `check_sources_to_follow` has read the price file already; should it fail now, the
        // shipped prices still cost what can be costed.
        let context = crate::transcripts::decode_context(settings).unwrap_or_else(|error| {
            tracing::error!(%error, "using the shipped prices");
            ducktail_sources::transcript::DecodeContext {
                limits: crate::index::decode_limits(settings),
                prices: Arc::new(ducktail_sources::pricing::PriceTable::embedded()),
            }
        });
        let transcripts = crate::transcripts::transcript_sources(settings)
            .unwrap_or_default()
            .into_iter()
            .map(|source| {
                crate::transcripts::start_following_transcripts(source, context.clone(), readers.clone(), links.clone(), board.clone(), faults.clone())
            })
            .collect();
        let pricing = {
            let (links, prices) = (links.clone(), context.prices.clone());
            actix_rt::spawn(async move {
                let mut ticks = tokio::time::interval(crate::pricing::PRICING_INTERVAL);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    links.writer().do_send(crate::pricing::PriceStoredRows { prices: prices.clone() });
                }
            })
        };
        // The first trace builder may have started before the links existed; after a clean stop
        // that left the derived tables complete, there is nothing to recompute.
        if !was_complete {
            links.trace_builder().do_send(crate::messages::RecomputeAllTraces);
        }
        let watcher = {
            let (links, board, faults, root) = (links.clone(), board.clone(), faults.clone(), root.clone());
            let retry = settings.reconcile.interval.min(Duration::from_secs(5));
            Supervisor::start(move |_| Watcher::new(root, retry, links, board, faults))
        };
        // Fold the WAL into the database file now and then, so a crash replays little and the
        // file's size reflects its content. The writer runs it between batches; and, four times
        // a second, it is offered a checkpoint for when it has been quiet (`CheckpointIfIdle`).
        let checkpoints = {
            let (links, period) = (links.clone(), settings.database.checkpoint_interval);
            actix_rt::spawn(async move {
                let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                let mut idle_ticks = tokio::time::interval(IDLE_CHECKPOINT_TICK);
                idle_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => links.writer().do_send(Checkpoint),
                        _ = idle_ticks.tick() => links.writer().do_send(CheckpointIfIdle { quiet_for: IDLE_CHECKPOINT_QUIET }),
                    }
                }
            })
        };
        let retention = (settings.retention.max_age_days > 0).then(|| {
            let (links, board, retention) = (links.clone(), board.clone(), settings.retention.clone());
            actix_rt::spawn(async move {
                let max_age = Duration::from_secs(retention.max_age_days * 86_400);
                let mut ticks = tokio::time::interval(retention.interval);
                loop {
                    ticks.tick().await;
                    // Purging during the catch-up would race files still arriving.
                    if !board.is_ready() {
                        continue;
                    }
                    let cutoff = std::time::SystemTime::now().checked_sub(max_age).unwrap_or(std::time::UNIX_EPOCH);
                    let cutoff_us = cutoff.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_micros() as i64);
                    links.writer().do_send(crate::messages::PurgeBefore(cutoff_us));
                }
            })
        });
        let prices = context.prices.clone();
        let export_tasks = start_exports(settings, &readers, &links, &board, &faults);
        Ok(Daemon { board, readers, links, watcher, checkpoints, retention, database, spans, transcripts, pricing, prices, export_tasks })
    }

    /// The OTLP exporter, when `[export.otlp]` is enabled (the HTTP API's backfill asks it).
    pub fn otlp_exporter(&self) -> Option<Addr<crate::export::OtlpExporter>> {
        self.links.otlp_exporter().cloned()
    }

    /// The pipeline's current load.
    pub async fn status(&self) -> PipelineStatus {
        self.links.accumulator().send(GetPipelineStatus).await.unwrap_or_default()
    }

    /// Stops watching, commits everything pending, checkpoints. Gives up waiting after
    /// `deadline` (what is not committed then is found by the next start's catch-up).
    pub async fn shutdown(self, deadline: Duration) {
        self.checkpoints.abort();
        self.pricing.abort();
        for task in &self.export_tasks {
            task.abort();
        }
        if let Some(retention) = &self.retention {
            retention.abort();
        }
        let _ = self.watcher.send(StopWatching).await;
        if let Some((watch, poll)) = self.database {
            poll.abort();
            drop(watch);
        }
        if let Some((watch, poll)) = self.spans {
            poll.abort();
            drop(watch);
        }
        for following in self.transcripts {
            following.poll.abort();
            drop(following.watches);
        }
        let drained = tokio::time::timeout(deadline, self.links.accumulator().send(Drain)).await;
        if drained.is_err() {
            tracing::warn!(?deadline, "pending work did not drain in time; the next start catches up");
        }
        // A clean stop leaves every committed row priced (and the rollups that follows flushed
        // next), as a fresh `ducktail index` would have it.
        let _ = tokio::time::timeout(deadline, self.links.writer().send(crate::pricing::PriceStoredRows { prices: self.prices.clone() })).await;
        let flushed = tokio::time::timeout(deadline, self.links.trace_builder().send(FlushTraces)).await;
        // Everything committed and every trace computed: the next start need not recompute all.
        if drained.is_ok() && matches!(flushed, Ok(Ok(true))) {
            let _ = tokio::time::timeout(deadline, self.links.writer().send(MarkDerivedComplete)).await;
        }
        let _ = tokio::time::timeout(deadline, self.links.writer().send(Checkpoint)).await;
        // Every connection closes before the process exits (see `CloseDatabase`).
        let _ = tokio::time::timeout(deadline, self.links.trace_builder().send(CloseDatabase)).await;
        self.readers.close();
        let _ = tokio::time::timeout(deadline, self.links.writer().send(CloseDatabase)).await;
    }
}

/// Starts the OTLP exporter and its ticks, and the scheduled Parquet export, as configured.
/// A target that cannot be built was reported before the daemon started (`ducktail run` checks
/// it); here it only disables the export, loudly.
fn start_exports(
    settings: &Settings,
    readers: &ReaderPool,
    links: &Arc<Links>,
    board: &Arc<StatusBoard>,
    faults: &Arc<Faults>,
) -> Vec<actix_rt::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    if settings.export.otlp.enabled {
        match crate::export::otlp_target(settings) {
            Ok(target) => {
                let exporter = {
                    let (settings, readers, links, board, faults) = (settings.clone(), readers.clone(), links.clone(), board.clone(), faults.clone());
                    SyncArbiter::start(1, move || {
                        crate::export::OtlpExporter::new(settings.clone(), target.clone(), readers.clone(), links.clone(), board.clone(), faults.clone())
                    })
                };
                let _ = links.otlp_exporter.set(exporter.clone());
                let interval = settings.export.otlp.interval;
                tasks.push(actix_rt::spawn(async move {
                    let mut ticks = tokio::time::interval(interval);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        ticks.tick().await;
                        // One tick at a time: a slow backend must not pile ticks up in the mailbox.
                        let _ = exporter.send(crate::export::ExportTick).await;
                    }
                }));
            }
            Err(error) => tracing::error!(%error, "the OTLP export is off"),
        }
    }
    let parquet = &settings.export.parquet;
    if !parquet.dir.as_os_str().is_empty() {
        let options = ducktail_export::parquet::ParquetOptions {
            dir: parquet.dir.clone(),
            since: None,
            tables: parquet.tables.clone(),
            machine: crate::export::machine_name(settings),
        };
        let (readers, board, interval) = (readers.clone(), board.clone(), parquet.interval);
        tasks.push(actix_rt::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // After the catch-up, so the first export is of a complete database.
                if !board.is_ready() {
                    continue;
                }
                let (readers, board, options) = (readers.clone(), board.clone(), options.clone());
                let _ = tokio::task::spawn_blocking(move || crate::export::export_parquet_now(&readers, &options, &board, true)).await;
            }
        }));
    }
    tasks
}
