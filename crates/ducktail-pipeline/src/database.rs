//! The DatabaseFollower: keeps the store in step with OpenCode's `opencode.db`.
//!
//! Change detection has three layers, cheapest first:
//! - a non-recursive watch of the OpenCode data directory: every commit appends to
//!   `opencode.db-wal`, so its modify event wakes the follower at once ([`DatabaseWatch`]);
//! - a poll every `sources.opencode.database_poll_interval` that asks SQLite's
//!   `PRAGMA data_version` whether anything committed (events can be lost; the file may be
//!   replaced);
//! - the reconciler's periodic full comparison of every `(id, time_updated)`
//!   ([`FollowDatabase`] with [`ReadMode::Full`]), which also runs when the follower starts.
//!
//! Wake-ups coalesce ([`FollowTrigger`]): while a read runs, any number of events make exactly one
//! more read. Each read hands its chunks to the Writer ([`WriteRows`]) and waits for each commit,
//! so the follower never runs ahead of the database; the [`Mirror`] learns a chunk only once it is
//! committed, so nothing is lost if a commit fails — the next read finds it again.
//!
//! Failures (locked, corrupt, missing file) are reported on the status board and retried with
//! backoff, never by exiting; OpenCode's database is only ever read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use ducktail_model::{RejectedRow, RemovedRecord, VersionedRecords};
use ducktail_sources::opencode::sqlite::{
    is_database_file_name, Chunk, DatabaseError, Mirror, MirrorUpdate, OpencodeDatabase, ReadMode, OPENCODE_SQLITE_SOURCE,
};
use ducktail_sources::opencode::DecodeLimits;
use ducktail_store::{BatchReport, ReaderPool};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::status::{DatabaseState, StatusBoard};
use crate::supervision::{catch_panic, Faults};
use crate::trigger::Trigger;
use crate::Links;

/// Batch ids of database commits have the top bit set, so they never collide with the
/// accumulator's file batches in the commit feed.
pub const DATABASE_BATCH_ID_BASE: u64 = 1 << 63;

/// Longest wait between attempts while the database cannot be read.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long a read woken by a file event keeps checking for the commit it announced. The WAL is
/// written before the commit is published in the WAL index, so a reader woken by the last write
/// can still see the previous snapshot, and no further event follows.
const COMMIT_SETTLE: Duration = Duration::from_millis(100);

/// Anyone → DatabaseFollower, tell. Read the database now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct FollowDatabase {
    /// Incremental (a wake-up) or full (the reconciler's comparison).
    pub mode: ReadMode,
}

/// DatabaseFollower → Writer, tell with a reply channel (the follower's thread blocks on it).
/// One chunk of a read, committed in one transaction.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WriteRows {
    /// Identifies the commit in the feed.
    pub batch_id: u64,
    /// The database file, for `file_index` paths of rejected rows.
    pub database_path: String,
    /// New and changed records.
    pub upserts: Vec<VersionedRecords>,
    /// Records gone from the database.
    pub removed: Vec<RemovedRecord>,
    /// Rows that did not decode.
    pub rejected: Vec<RejectedRow>,
    /// When the change that caused this read was first noticed (for latency).
    pub observed_at: Instant,
    /// Where the writer answers.
    pub reply: crossbeam_channel::Sender<Result<BatchReport, String>>,
}

/// Wakes the follower; see [`Trigger`].
pub type FollowTrigger = Trigger<FollowDatabase>;

/// Watches the data directory (not recursively) for changes to `opencode.db` and its WAL.
pub struct DatabaseWatch {
    _watcher: Option<notify::RecommendedWatcher>,
}

impl DatabaseWatch {
    /// Starts watching `data_dir`; if it cannot be watched, the poll alone keeps the store in step.
    pub fn start(data_dir: &Path, trigger: Arc<FollowTrigger>) -> DatabaseWatch {
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
            Ok(event) => {
                let touches_database =
                    event.need_rescan() || event.paths.iter().any(|path| path.file_name().and_then(|name| name.to_str()).is_some_and(is_database_file_name));
                if touches_database {
                    trigger.request(Instant::now());
                }
            }
            Err(_) => trigger.poll(),
        };
        // Accesses (SQLite opening its files, ours included) are never asked for.
        let watcher = notify::RecommendedWatcher::new(handler, notify::Config::default().with_event_kinds(notify::EventKindMask::CORE));
        let watcher = watcher.and_then(|mut watcher| watcher.watch(data_dir, RecursiveMode::NonRecursive).map(|()| watcher));
        match watcher {
            Ok(watcher) => DatabaseWatch { _watcher: Some(watcher) },
            Err(error) => {
                tracing::warn!(path = %data_dir.display(), %error, "cannot watch the OpenCode data folder; opencode.db is polled instead");
                DatabaseWatch { _watcher: None }
            }
        }
    }
}

/// What every follower incarnation shares with the rest of the pipeline.
#[derive(Clone)]
pub struct FollowerLinks {
    trigger: Arc<FollowTrigger>,
    readers: ReaderPool,
    links: Arc<Links>,
    board: Arc<StatusBoard>,
    faults: Arc<Faults>,
    /// Numbers the commits (under [`DATABASE_BATCH_ID_BASE`]) across incarnations.
    next_batch: Arc<AtomicU64>,
}

/// The follower: owns the read-only connection and the mirror. Runs on its own thread (a
/// one-thread `SyncArbiter`) because SQLite calls and waiting for commits block.
pub struct DatabaseFollower {
    path: PathBuf,
    limits: DecodeLimits,
    database: Option<OpencodeDatabase>,
    /// `None` until loaded from the store (at the first read).
    mirror: Option<Mirror>,
    shared: FollowerLinks,
    /// Consecutive failures, and when to try again.
    failures: u32,
    retry_at: Option<Instant>,
    /// A full comparison is due (at start, after a reopen, or asked for while the database could
    /// not be read).
    full_pending: bool,
}

impl DatabaseFollower {
    /// A follower of the database at `path`.
    pub fn new(path: PathBuf, limits: DecodeLimits, shared: FollowerLinks) -> DatabaseFollower {
        DatabaseFollower { path, limits, database: None, mirror: None, shared, failures: 0, retry_at: None, full_pending: true }
    }

    fn follow(&mut self, requested: ReadMode, announced: Option<Instant>) {
        let noticed_at = announced.unwrap_or_else(Instant::now);
        let mut mode = requested;
        if mode == ReadMode::Full {
            self.full_pending = true;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        if self.database.as_ref().is_some_and(OpencodeDatabase::is_replaced) {
            tracing::info!(path = %self.path.display(), "opencode.db was replaced or removed; reopening");
            self.database = None;
            self.full_pending = true;
        }
        if self.database.is_none() {
            match OpencodeDatabase::open(&self.path) {
                Ok(database) => {
                    tracing::info!(path = %self.path.display(), "following OpenCode's database");
                    self.database = Some(database);
                    if let Some(mirror) = self.mirror.as_mut() {
                        mirror.forget_data_version();
                    }
                    self.full_pending = true;
                }
                Err(DatabaseError::Missing { .. }) => {
                    self.forget_everything(noticed_at);
                    return;
                }
                Err(error) => return self.fail(error),
            }
        }
        if self.mirror.is_none() {
            let stored = self.shared.readers.reader().and_then(|reader| reader.records_of_source(OPENCODE_SQLITE_SOURCE));
            match stored {
                Ok(stored) => self.mirror = Some(Mirror::from_stored(stored)),
                Err(error) => {
                    tracing::warn!(%error, "cannot load what was read from opencode.db before; retrying");
                    return self.schedule_retry();
                }
            }
        }
        if self.full_pending {
            mode = ReadMode::Full;
        }
        let (Some(database), Some(mirror)) = (self.database.as_mut(), self.mirror.as_mut()) else { return };
        if mode == ReadMode::Incremental && announced.is_some() {
            wait_for_announced_commit(database, mirror);
        }
        let started = Instant::now();
        let mut committed: Vec<MirrorUpdate> = Vec::new();
        let mut commit_error: Option<String> = None;
        let database_path = self.path.to_string_lossy().into_owned();
        let (links, next_batch) = (&self.shared.links, &self.shared.next_batch);
        let mut deliver = |chunk: Chunk| -> bool {
            if chunk.is_empty() {
                committed.extend(chunk.updates);
                return true;
            }
            match commit_chunk(links, next_batch, &database_path, chunk.upserts, chunk.removed, chunk.rejected, noticed_at) {
                Ok(()) => {
                    committed.extend(chunk.updates);
                    true
                }
                Err(reason) => {
                    commit_error = Some(reason);
                    false
                }
            }
        };
        let result = database.read(mirror, mode, &self.limits, &mut deliver);
        mirror.apply(&committed);
        match (result, commit_error) {
            (Ok(summary), None) => {
                if mode == ReadMode::Full {
                    self.full_pending = false;
                }
                self.failures = 0;
                self.retry_at = None;
                self.shared.board.set_database_state(DatabaseState::Following { records: mirror.len() });
                if !summary.unchanged && (summary.upserted + summary.removed + summary.rejected) > 0 {
                    tracing::debug!(
                        ?mode,
                        upserted = summary.upserted,
                        removed = summary.removed,
                        rejected = summary.rejected,
                        read_ms = started.elapsed().as_millis() as u64,
                        "opencode.db changes committed"
                    );
                }
            }
            (_, Some(reason)) => {
                tracing::warn!(%reason, "a commit of opencode.db changes failed; they are read again");
                mirror.forget_data_version();
                self.schedule_retry();
            }
            (Err(error), None) => {
                mirror.forget_data_version();
                self.fail(error);
            }
        }
    }

    /// The database file is gone: a fresh index of the folder would hold none of its records, so
    /// the store forgets them (they return if the file does).
    fn forget_everything(&mut self, noticed_at: Instant) {
        if self.mirror.is_none() {
            match self.shared.readers.reader().and_then(|reader| reader.records_of_source(OPENCODE_SQLITE_SOURCE)) {
                Ok(stored) => self.mirror = Some(Mirror::from_stored(stored)),
                Err(_) => return self.schedule_retry(),
            }
        }
        let Some(mirror) = self.mirror.as_mut() else { return };
        if !mirror.is_empty() {
            tracing::info!(path = %self.path.display(), records = mirror.len(), "opencode.db is gone; removing its records");
            let chunk = mirror.removal_of_everything();
            let database_path = self.path.to_string_lossy();
            match commit_chunk(&self.shared.links, &self.shared.next_batch, &database_path, Vec::new(), chunk.removed, Vec::new(), noticed_at) {
                Ok(()) => mirror.apply(&chunk.updates),
                Err(_) => return self.schedule_retry(),
            }
        }
        self.full_pending = true;
        self.shared.board.set_database_state(DatabaseState::Waiting);
    }

    fn fail(&mut self, error: DatabaseError) {
        // A corrupt or replaced file needs a new connection to be read again.
        if !matches!(error, DatabaseError::Busy { .. }) {
            self.database = None;
        }
        tracing::warn!(%error, "cannot read OpenCode's database");
        self.shared.board.set_database_state(DatabaseState::Failing { error: error.to_string() });
        self.schedule_retry();
    }

    fn schedule_retry(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let backoff = Duration::from_millis(100).saturating_mul(1 << self.failures.min(9)).min(MAX_BACKOFF);
        self.retry_at = Some(Instant::now() + backoff);
    }
}

/// After a file event, waits (at most [`COMMIT_SETTLE`]) until the commit it announced is
/// visible. Checking `data_version` costs microseconds; without this wait the read would often see
/// the previous snapshot and the change would wait for the next poll.
fn wait_for_announced_commit(database: &OpencodeDatabase, mirror: &Mirror) {
    let deadline = Instant::now() + COMMIT_SETTLE;
    while Instant::now() < deadline {
        match database.changed_since(mirror) {
            Ok(false) => std::thread::sleep(Duration::from_millis(1)),
            // Changed, or an error the read itself will report.
            _ => return,
        }
    }
}

/// Hands one chunk to the Writer and waits for its commit.
fn commit_chunk(
    links: &Links,
    next_batch: &AtomicU64,
    database_path: &str,
    upserts: Vec<VersionedRecords>,
    removed: Vec<RemovedRecord>,
    rejected: Vec<RejectedRow>,
    observed_at: Instant,
) -> Result<(), String> {
    let (reply, answer) = crossbeam_channel::bounded(1);
    let batch_id = DATABASE_BATCH_ID_BASE | next_batch.fetch_add(1, Ordering::Relaxed);
    links.writer().do_send(WriteRows { batch_id, database_path: database_path.to_owned(), upserts, removed, rejected, observed_at, reply });
    match answer.recv() {
        Ok(Ok(_report)) => Ok(()),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err("the writer stopped before answering".to_owned()),
    }
}

impl Actor for DatabaseFollower {
    type Context = SyncContext<Self>;
}

impl Handler<FollowDatabase> for DatabaseFollower {
    type Result = ();
    fn handle(&mut self, message: FollowDatabase, ctx: &mut Self::Context) {
        // Taken before anything can fail, so later wake-ups always ask for another read.
        let announced = self.shared.trigger.take();
        let (board, faults) = (self.shared.board.clone(), self.shared.faults.clone());
        let span = tracing::debug_span!("follow_database", mode = ?message.mode);
        let _entered = span.enter();
        let finished = catch_panic("database_follower", &board, || {
            faults.maybe_panic("database_follower", &board);
            self.follow(message.mode, announced);
        });
        if finished.is_none() {
            // The replacement starts with an empty mirror and reloads it from the store.
            ctx.stop();
        }
    }
}

/// Starts the follower, its watch and its poll. Returns the watch (dropping it stops the events)
/// and the poll task.
pub fn start_following(
    data_dir: &Path,
    poll_interval: Duration,
    limits: DecodeLimits,
    readers: ReaderPool,
    links: Arc<Links>,
    board: Arc<StatusBoard>,
    faults: Arc<Faults>,
) -> (Addr<DatabaseFollower>, DatabaseWatch, actix_rt::task::JoinHandle<()>) {
    let path = ducktail_sources::opencode::sqlite::database_path(data_dir);
    let trigger = Arc::new(FollowTrigger::new(FollowDatabase { mode: ReadMode::Incremental }));
    board.set_database_state(if path.exists() { DatabaseState::Starting } else { DatabaseState::Waiting });
    let shared = FollowerLinks { trigger: trigger.clone(), readers, links, board, faults, next_batch: Arc::new(AtomicU64::new(1)) };
    let follower = SyncArbiter::start(1, move || DatabaseFollower::new(path.clone(), limits, shared.clone()));
    trigger.connect(follower.clone().recipient());
    let watch = DatabaseWatch::start(data_dir, trigger.clone());
    let poll = trigger.poll_every(poll_interval);
    (follower, watch, poll)
}
