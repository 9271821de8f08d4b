//! Turning panics into stops, so actix's supervisors restart a panicking actor, and the fault
//! seam tests use to make an actor panic.
//!
//! actix restarts an actor that stops (a `Supervisor`, or a `SyncArbiter` for the sync actors),
//! not one that panics; so handlers run inside [`catch_panic`], and a panic logs, counts a restart
//! and stops the actor, whose replacement rebuilds its state. Work in flight is not lost: a batch
//! comes back to the accumulator as failed, and a restarting watcher, reconciler or accumulator
//! has the whole tree rescanned. The restart is immediate; what backs off is the work (the
//! accumulator's retry backoff), so a file that makes an actor panic costs one panic per backoff
//! step, never a spinning core.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::settings::FaultSettings;
use crate::status::StatusBoard;

/// Runs `handler`; if it panics, logs the panic, counts a restart and returns `None` so the
/// caller stops its actor (which the supervisor then restarts with rebuilt state).
pub fn catch_panic<R>(actor: &'static str, board: &StatusBoard, handler: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(handler)) {
        Ok(result) => Some(result),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            board.actor_restarts.fetch_add(1, Ordering::Relaxed);
            board.metrics.actor_restarts.with_label_values(&[actor]).inc();
            tracing::error!(actor, panic = %message, "actor panicked; restarting it");
            None
        }
    }
}

/// Test-only fault injection, shared by every actor. All faults are off by default.
#[derive(Debug, Default)]
pub struct Faults {
    /// The actor that panics once after the startup catch-up ("" = none).
    panic_actor: String,
    /// Whether that panic has happened.
    panic_fired: AtomicBool,
    /// The watcher drops every event.
    pub drop_watch_events: bool,
    /// Watching the tree fails as if the inotify watch limit were reached.
    pub watch_limit: bool,
}

impl Faults {
    /// Builds the fault plan from `[faults]`.
    pub fn new(settings: &FaultSettings) -> Arc<Faults> {
        Arc::new(Faults {
            panic_actor: settings.panic_actor.clone(),
            panic_fired: AtomicBool::new(false),
            drop_watch_events: settings.drop_watch_events,
            watch_limit: settings.watch_limit,
        })
    }

    /// Panics if `actor` is the configured victim, the pipeline is ready, and it has not
    /// panicked yet. Call it at the top of a handler, inside [`catch_panic`].
    pub fn maybe_panic(&self, actor: &str, board: &StatusBoard) {
        if self.panic_actor == actor && board.is_ready() && !self.panic_fired.swap(true, Ordering::SeqCst) {
            panic!("injected fault: {actor} panics as configured by faults.panic_actor");
        }
    }
}
