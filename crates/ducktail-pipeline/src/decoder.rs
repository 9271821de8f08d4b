//! The Decoder pool: sync actors that read and decode a batch's files off the writer's thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use ducktail_sources::opencode::DecodeLimits;

use crate::files::{resolve_path, Resolved};
use crate::messages::*;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::Links;

/// One decoder thread. Stateless between batches, so a restart loses only the batch it held,
/// which [`BatchFailed`] re-queues.
pub struct Decoder {
    /// `<opencode>/storage`.
    storage_root: PathBuf,
    /// Caps on what is read and stored.
    limits: DecodeLimits,
    /// A failing file younger than this is "not ready".
    settle: Duration,
    /// Writer (results) and accumulator (failures).
    links: Arc<Links>,
    /// Shared counters.
    board: Arc<StatusBoard>,
    /// Test seams.
    faults: Arc<Faults>,
}

impl Decoder {
    /// A decoder for files under `storage_root`.
    pub fn new(storage_root: PathBuf, limits: DecodeLimits, settle: Duration, links: Arc<Links>, board: Arc<StatusBoard>, faults: Arc<Faults>) -> Decoder {
        Decoder { storage_root, limits, settle, links, board, faults }
    }

    fn decode(&self, batch: &DecodeBatch) -> WriteDecoded {
        let mut decoded = WriteDecoded { batch_id: batch.batch_id, files: Vec::with_capacity(batch.paths.len()), removed: Vec::new() };
        for observed in &batch.paths {
            match resolve_path(&self.storage_root, &observed.path, observed.kind, &self.limits, self.settle) {
                Resolved::Present(file) => decoded.files.push((file, observed.observed_at)),
                Resolved::Gone(removed) => decoded.removed.push((removed, observed.observed_at, observed.kind)),
            }
        }
        decoded
    }
}

impl Actor for Decoder {
    type Context = SyncContext<Self>;
}

impl Handler<DecodeBatch> for Decoder {
    type Result = ();
    fn handle(&mut self, batch: DecodeBatch, ctx: &mut Self::Context) {
        let (board, faults) = (self.board.clone(), self.faults.clone());
        let result = catch_panic("decoder", &board, || {
            faults.maybe_panic("decoder", &board);
            self.decode(&batch)
        });
        match result {
            // Bounded: one message per in-flight batch.
            Some(decoded) => self.links.writer().do_send(decoded),
            None => {
                self.links.accumulator().do_send(BatchFailed { batch_id: batch.batch_id, paths: batch.paths, reason: "decoder panicked".to_owned() });
                ctx.stop();
            }
        }
    }
}
