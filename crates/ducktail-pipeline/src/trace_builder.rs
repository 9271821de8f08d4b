//! The TraceBuilder: recomputes `agent_traces` and `delegations` for the sessions a batch touched
//! (and their children), reading through its own reader connection, and hands the rows to the
//! Writer. It never writes.
//!
//! Coalescing: a [`BatchCommitted`] only marks its sessions dirty and, if nothing was dirty,
//! queues a [`ComputeDirtyTraces`] to itself behind the batches already waiting. A burst of
//! batches therefore costs one recompute per recompute time, not one per batch.

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::prelude::*;
use ducktail_store::{Reader, ReaderPool, TraceScope};

use crate::messages::*;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::Links;

/// One sync actor on its own thread (its queries block).
pub struct TraceBuilder {
    /// Source of reader connections.
    readers: ReaderPool,
    /// This incarnation's reader.
    reader: Option<Reader>,
    /// Sessions committed since the last recompute.
    dirty: BTreeSet<String>,
    /// The writer, which applies the rows.
    links: Arc<Links>,
    /// Shared counters.
    board: Arc<StatusBoard>,
    /// Test seams.
    faults: Arc<Faults>,
}

impl TraceBuilder {
    /// A trace builder reading through `readers`.
    pub fn new(readers: ReaderPool, links: Arc<Links>, board: Arc<StatusBoard>, faults: Arc<Faults>) -> TraceBuilder {
        TraceBuilder { readers, reader: None, dirty: BTreeSet::new(), links, board, faults }
    }

    fn recompute(&mut self, scope: &TraceScope) -> Result<(), String> {
        if self.reader.is_none() {
            self.reader = Some(self.readers.reader().map_err(|error| error.to_string())?);
        }
        let reader = self.reader.as_ref().expect("reader was just opened");
        let started = std::time::Instant::now();
        let rows = reader.compute_derived(scope).map_err(|error| error.to_string())?;
        tracing::debug!(compute_ms = started.elapsed().as_millis() as u64, "derived traces computed");
        // Bounded: at most one message per committed batch.
        self.links.writer().do_send(ReplaceDerived(rows));
        Ok(())
    }
}

impl Actor for TraceBuilder {
    type Context = SyncContext<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        // A crash (of this actor or the process) can fall between a batch's commit and its trace
        // update, so every incarnation starts with a full recompute. The first incarnation may
        // start before the daemon has wired the writer's address; the daemon then sends
        // `RecomputeAllTraces` itself.
        if self.links.is_wired() {
            self.recompute_all();
        }
    }
}

impl TraceBuilder {
    fn recompute_all(&mut self) {
        if let Err(reason) = self.recompute(&TraceScope::All) {
            tracing::warn!(%reason, "full trace recompute failed; traces refresh on the next change");
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
    /// Recomputes every dirty session now.
    fn compute_dirty(&mut self, ctx: &mut SyncContext<Self>) {
        if self.dirty.is_empty() {
            return;
        }
        let sessions = std::mem::take(&mut self.dirty);
        let (board, faults) = (self.board.clone(), self.faults.clone());
        let result = catch_panic("trace_builder", &board, || {
            faults.maybe_panic("trace_builder", &board);
            self.recompute(&TraceScope::Sessions(sessions))
        });
        match result {
            Some(Ok(())) => {}
            Some(Err(reason)) => tracing::warn!(%reason, "trace recompute failed; traces refresh on the next change"),
            // The next incarnation starts with a full recompute, so the lost dirty set is covered.
            None => ctx.stop(),
        }
    }
}

impl Handler<BatchCommitted> for TraceBuilder {
    type Result = ();
    fn handle(&mut self, committed: BatchCommitted, ctx: &mut Self::Context) {
        if committed.touched_sessions.is_empty() {
            return;
        }
        if self.dirty.is_empty() {
            ctx.address().do_send(ComputeDirtyTraces);
        }
        self.dirty.extend(committed.touched_sessions);
    }
}

impl Handler<ComputeDirtyTraces> for TraceBuilder {
    type Result = ();
    fn handle(&mut self, _message: ComputeDirtyTraces, ctx: &mut Self::Context) {
        self.compute_dirty(ctx);
    }
}

impl Handler<FlushTraces> for TraceBuilder {
    type Result = ();
    fn handle(&mut self, _message: FlushTraces, ctx: &mut Self::Context) {
        self.compute_dirty(ctx);
    }
}
