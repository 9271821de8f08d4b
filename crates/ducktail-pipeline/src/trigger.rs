//! Coalescing wake-ups for the source followers: any number of file events and poll ticks while
//! a read is queued or running make exactly one more read, and the oldest announced change is
//! remembered for latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::{Message, Recipient};

/// Wakes one follower with `message`, at most one queued at a time.
pub struct Trigger<M: Message<Result = ()> + Clone + Send + 'static> {
    requested: AtomicBool,
    /// When the oldest change not yet read was announced by a file event.
    first_noticed: Mutex<Option<Instant>>,
    target: OnceLock<Recipient<M>>,
    message: M,
}

impl<M: Message<Result = ()> + Clone + Send + 'static> Trigger<M> {
    /// A trigger that sends `message` once connected.
    pub fn new(message: M) -> Trigger<M> {
        Trigger { requested: AtomicBool::new(false), first_noticed: Mutex::new(None), target: OnceLock::new(), message }
    }

    /// Connects the follower (once, at wiring).
    pub fn connect(&self, target: Recipient<M>) {
        let _ = self.target.set(target);
    }

    /// A file event announced a change noticed at `noticed_at` (cheap, from any thread).
    pub fn request(&self, noticed_at: Instant) {
        {
            let mut first = self.first_noticed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if first.is_none() {
                *first = Some(noticed_at);
            }
        }
        self.poll();
    }

    /// A wake-up with no announced change (a poll tick).
    pub fn poll(&self) {
        if !self.requested.swap(true, Ordering::AcqRel) {
            if let Some(target) = self.target.get() {
                target.do_send(self.message.clone());
            }
        }
    }

    /// Polls every `interval` on the event loop, for changes no file event announces; aborting
    /// the handle stops it.
    pub fn poll_every(self: &Arc<Self>, interval: Duration) -> actix_rt::task::JoinHandle<()> {
        let trigger = self.clone();
        actix_rt::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                trigger.poll();
            }
        })
    }

    /// Called by the follower first thing when a read starts, before anything can fail: later
    /// wake-ups ask for another read. `Some` when a file event announced a change.
    pub fn take(&self) -> Option<Instant> {
        self.requested.store(false, Ordering::Release);
        self.first_noticed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }
}
