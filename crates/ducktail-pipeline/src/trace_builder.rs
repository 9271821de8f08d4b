//! The TraceBuilder: recomputes `agent_traces`, `delegations` and the per-session rollups
//! (`session_stats`, `session_usage`, `session_tools`) for the sessions a batch touched (and
//! their children), reading through its own reader connection, and hands the rows to the Writer
//! as one [`ReplaceDerived`], with the changed sessions' ancestors, which the derived notice names
//! too (the read API keeps a session's answers until a notice names it). It never writes. Every
//! commit's touched sessions also go on to the OtlpExporter, when the export is on.
//!
//! Coalescing: a [`BatchCommitted`] only marks its sessions dirty and, if nothing was dirty,
//! queues a [`ComputeDirtyTraces`] to itself behind the batches already waiting. A burst of
//! batches therefore costs one recompute per recompute time, not one per batch.
//!
//! Duty cycle: a recompute starts no sooner than [`REST_PER_COMPUTE`] times its predecessor's
//! duration after that one ended, so under a steady stream of commits the TraceBuilder keeps at
//! most a quarter of a core and leaves the rest to the batches. Traces lag a commit by at most
//! about four recompute times (milliseconds on a small database, under a second on a 1M-file one).
//! While the writer is behind (`max_files` or more paths wait in the accumulator: a burst) the
//! rest is [`REST_PER_COMPUTE_WHILE_WRITER_BEHIND`] times, and traces lag by about ten: the
//! records come first. The rest is decided when a recompute is queued, so the first one queued
//! after the backlog clears rests the short time again. [`FlushTraces`] computes at once (the
//! end of the startup catch-up, a clean stop).
//!
//! Restarts: a crash can fall between a batch's commit and its traces, so every incarnation
//! starts with a full recompute, except the first after a clean stop. A clean stop that drained,
//! flushed and saw no derived write fail has the writer put `derived_complete` in
//! `pipeline_state`; `Daemon::start` reads it, and the first transaction that writes records
//! takes it out again, so after a crash the mark is absent.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ducktail_store::{Reader, ReaderPool, TraceScope};

use crate::messages::*;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::Links;

/// Rest after a recompute, as a multiple of its duration (see the module doc).
const REST_PER_COMPUTE: u32 = 3;

/// The rest while the writer is behind: at most a tenth of a core. In a 20k-file burst on
/// two cores the recomputes were a quarter of the daemon's CPU beside the writer's half.
const REST_PER_COMPUTE_WHILE_WRITER_BEHIND: u32 = 9;

/// When the next recompute may start, after one that took `spent` and ended at `ended`.
fn rested_at(ended: Instant, spent: Duration, writer_behind: bool) -> Instant {
    ended + spent * if writer_behind { REST_PER_COMPUTE_WHILE_WRITER_BEHIND } else { REST_PER_COMPUTE }
}

/// One sync actor on its own thread (its queries block).
pub struct TraceBuilder {
    /// Source of reader connections.
    readers: ReaderPool,
    /// This incarnation's reader.
    reader: Option<Reader>,
    /// Sessions committed since the last recompute.
    dirty: BTreeSet<String>,
    /// A full recompute is owed (the last one could not be committed).
    all_dirty: bool,
    /// A [`ComputeDirtyTraces`] is queued.
    compute_queued: bool,
    /// When the last recompute ended and how long it took: no recompute of dirty sessions starts
    /// before the rest after it (see [`rested_at`]).
    last_compute: (Instant, Duration),
    /// The writer, which applies the rows.
    links: Arc<Links>,
    /// Shared counters.
    board: Arc<StatusBoard>,
    /// Test seams.
    faults: Arc<Faults>,
    /// Set when the last run stopped cleanly with its derived tables complete: the first
    /// incarnation then skips the full recompute (taken once; restarts always recompute).
    derived_complete_at_start: Arc<AtomicBool>,
}

impl TraceBuilder {
    /// A trace builder reading through `readers`.
    pub fn new(
        readers: ReaderPool,
        links: Arc<Links>,
        board: Arc<StatusBoard>,
        faults: Arc<Faults>,
        derived_complete_at_start: Arc<AtomicBool>,
    ) -> TraceBuilder {
        TraceBuilder {
            readers,
            reader: None,
            dirty: BTreeSet::new(),
            all_dirty: false,
            compute_queued: false,
            last_compute: (Instant::now(), Duration::ZERO),
            links,
            board,
            faults,
            derived_complete_at_start,
        }
    }

    fn recompute(&mut self, scope: &TraceScope) -> Result<(), String> {
        if self.reader.is_none() {
            self.reader = Some(self.readers.reader().map_err(|error| error.to_string())?);
        }
        let reader = self.reader.as_ref().expect("reader was just opened");
        let started = std::time::Instant::now();
        let mut rows = reader.compute_derived(scope).map_err(|error| error.to_string())?;
        // The derived notice names the ancestors too: a parent's summary and its trace tree show
        // its children's figures, and the read API reuses a session's answers until a notice
        // names it.
        if let Some(scope) = &rows.scope {
            rows.ancestors = reader.session_ancestors(scope).map_err(|error| error.to_string())?;
        }
        let spent = started.elapsed();
        self.last_compute = (Instant::now(), spent);
        tracing::debug!(compute_ms = spent.as_millis() as u64, "derived traces computed");
        // Bounded: at most one message per committed batch.
        self.links.writer().do_send(ReplaceDerived(rows));
        Ok(())
    }
}

impl Actor for TraceBuilder {
    type Context = SyncContext<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        // A crash (of this actor or the process) can fall between a batch's commit and its trace
        // update, so every incarnation starts with a full recompute, except the first after a
        // clean stop that left the derived tables complete. The first incarnation may start
        // before the daemon has wired the writer's address; the daemon then sends
        // `RecomputeAllTraces` itself.
        let complete = self.derived_complete_at_start.swap(false, Ordering::AcqRel);
        if self.links.is_wired() && !complete {
            self.recompute_all();
        }
    }
}

impl TraceBuilder {
    fn recompute_all(&mut self) {
        if let Err(reason) = self.recompute(&TraceScope::All) {
            tracing::warn!(%reason, "full trace recompute failed; retried after the next commit");
            self.all_dirty = true;
        }
    }
}

impl Handler<RecomputeAllTraces> for TraceBuilder {
    type Result = ();
    fn handle(&mut self, _message: RecomputeAllTraces, _ctx: &mut Self::Context) {
        self.recompute_all();
    }
}

impl TraceBuilder {
    /// Recomputes every dirty session (or everything, when a full recompute is owed) now.
    fn compute_dirty(&mut self, ctx: &mut SyncContext<Self>) {
        self.compute_queued = false;
        let scope = if std::mem::take(&mut self.all_dirty) {
            self.dirty.clear();
            TraceScope::All
        } else if self.dirty.is_empty() {
            return;
        } else {
            TraceScope::Sessions(std::mem::take(&mut self.dirty))
        };
        let (board, faults) = (self.board.clone(), self.faults.clone());
        let result = catch_panic("trace_builder", &board, || {
            faults.maybe_panic("trace_builder", &board);
            self.recompute(&scope)
        });
        match result {
            Some(Ok(())) => {}
            Some(Err(reason)) => {
                tracing::warn!(%reason, "trace recompute failed; retried after the next commit");
                self.owe(scope);
            }
            // The next incarnation starts with a full recompute, so the lost dirty set is covered;
            // a stop before it runs must not mark the derived tables complete.
            None => {
                self.board.derived_write_failed.store(true, Ordering::Release);
                ctx.stop();
            }
        }
    }

    /// Remembers a scope whose traces are stale, for the recompute after the next commit.
    fn owe(&mut self, scope: TraceScope) {
        match scope {
            TraceScope::All => self.all_dirty = true,
            TraceScope::Sessions(sessions) => self.dirty.extend(sessions),
        }
    }
}

impl Handler<BatchCommitted> for TraceBuilder {
    type Result = ();
    fn handle(&mut self, committed: BatchCommitted, ctx: &mut Self::Context) {
        if let Some(exporter) = self.links.otlp_exporter() {
            if !committed.touched_sessions.is_empty() {
                exporter.do_send(crate::export::SessionsChanged(committed.touched_sessions.clone()));
            }
        }
        self.dirty.extend(committed.touched_sessions);
        // One queued recompute covers every commit before it (coalescing); owed scopes ride along.
        if (self.all_dirty || !self.dirty.is_empty()) && !self.compute_queued {
            self.compute_queued = true;
            let (ended, spent) = self.last_compute;
            let rest = rested_at(ended, spent, self.board.writer_behind.load(Ordering::Relaxed)).saturating_duration_since(Instant::now());
            if rest.is_zero() {
                ctx.address().do_send(ComputeDirtyTraces);
            } else {
                send_later(ctx.address(), rest);
            }
        }
    }
}

/// Queues a [`ComputeDirtyTraces`] after `rest`, on the system's event loop (this actor's own
/// thread blocks in queries and has no timers).
fn send_later(address: Addr<TraceBuilder>, rest: Duration) {
    actix_rt::System::current().arbiter().spawn(async move {
        actix_rt::time::sleep(rest).await;
        address.do_send(ComputeDirtyTraces);
    });
}

impl Handler<DerivedFailed> for TraceBuilder {
    type Result = ();
    fn handle(&mut self, failed: DerivedFailed, _ctx: &mut Self::Context) {
        // Not recomputed at once: the writer just failed; the next commit says it works again.
        self.owe(match failed.scope {
            None => TraceScope::All,
            Some(sessions) => TraceScope::Sessions(sessions.into_iter().collect()),
        });
    }
}

impl Handler<ComputeDirtyTraces> for TraceBuilder {
    type Result = ();
    fn handle(&mut self, _message: ComputeDirtyTraces, ctx: &mut Self::Context) {
        self.compute_dirty(ctx);
    }
}

impl Handler<CloseDatabase> for TraceBuilder {
    type Result = ();
    fn handle(&mut self, _message: CloseDatabase, _ctx: &mut Self::Context) {
        self.reader = None;
        self.readers.close();
    }
}

impl Handler<FlushTraces> for TraceBuilder {
    type Result = bool;
    fn handle(&mut self, _message: FlushTraces, ctx: &mut Self::Context) -> bool {
        self.compute_dirty(ctx);
        !self.all_dirty && self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recompute_rests_longer_while_the_writer_is_behind() {
        let (ended, spent) = (Instant::now(), Duration::from_millis(10));
        assert_eq!(rested_at(ended, spent, false), ended + Duration::from_millis(30));
        assert_eq!(rested_at(ended, spent, true), ended + Duration::from_millis(90));
    }
}
