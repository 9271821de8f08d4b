//! Every message of the live pipeline, grouped by the edge it travels.
//!
//! Data path (bounded: asks with awaited replies, or one message per in-flight batch):
//! Watcher/Reconciler → Accumulator ([`PathsChanged`], [`WaitForCapacity`]) → Decoder pool
//! ([`DecodeBatch`]) → Writer ([`WriteDecoded`]) → subscribers ([`BatchCommitted`]).
//! Derived data: TraceBuilder → itself ([`ComputeDirtyTraces`]) → Writer ([`ReplaceDerived`]).
//! Control: [`Rescan`], [`Drain`], [`GetPipelineStatus`], [`BatchFailed`], [`DerivedFailed`].
//! The source followers' messages live beside them: `FollowDatabase` and `WriteRows` in
//! [`crate::database`], `FollowSpans` and `WriteSpans` in [`crate::spans`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::Message;
use ducktail_model::{DecodedFile, FileKind, FileStamp, FileStatus};
use ducktail_store::{DerivedRows, RemovedFile};

/// A path that needs a look, and when the change was first observed (for latency).
#[derive(Debug, Clone)]
pub struct ObservedPath {
    /// Absolute path.
    pub path: PathBuf,
    /// Its kind, from its place in the tree.
    pub kind: FileKind,
    /// When the watcher or reconciler saw the change.
    pub observed_at: Instant,
    /// The stamp a scan listed, for a path a scan reported as new or changed: lets the
    /// accumulator drop the report when that very version is being or was just committed (a
    /// new directory's scan lists files the watcher already reported). `None` from the watcher.
    pub scanned_stamp: Option<FileStamp>,
}

impl ObservedPath {
    /// A path observed at `observed_at`, not by a scan.
    pub fn new(path: PathBuf, kind: FileKind, observed_at: Instant) -> ObservedPath {
        ObservedPath { path, kind, observed_at, scanned_stamp: None }
    }
}

/// Who noticed a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A filesystem event of a finished change: a file closed after writing, renamed into
    /// place, or removed.
    Watcher,
    /// A filesystem event of a write still in progress (a file created, or modified where the
    /// backend reports it, not yet closed): looked at once it is closed, or after a grace period
    /// if it never is.
    Writing,
    /// A scan (startup catch-up, periodic, or on demand).
    Reconciler,
    /// A retry of a file that was not ready or whose batch failed.
    Retry,
}

/// Watcher | Reconciler → Accumulator, ask. Paths to (re)examine; the decoder decides whether each
/// is present or gone. Reply: the backlog after accepting them. A dropped message is recovered by
/// the next reconcile.
#[derive(Debug, Message)]
#[rtype(result = "Backlog")]
pub struct PathsChanged {
    /// The paths.
    pub paths: Vec<ObservedPath>,
    /// Who noticed.
    pub origin: Origin,
}

/// Reconciler → Accumulator, tell. A whole-tree scan started, or ended (it has read the tree,
/// or failed). A batch in flight across a scan may commit a version the scan
/// could not see as different, because the scan compared the disk with the index before that
/// commit: a file moved away and back (same stamp, events lost) reads as gone in the batch and
/// as unchanged in the scan. The paths of such batches are looked at once more after they commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum FullScan {
    /// The scan is about to read the tree.
    Started,
    /// The scan has read the tree (or failed); its differences follow.
    Ended,
}

/// Reply to [`PathsChanged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Distinct paths waiting to be batched.
    pub pending: usize,
    /// Whether the sender should wait ([`WaitForCapacity`]) before sending more.
    pub over_high_water: bool,
}

/// Watcher | Reconciler → Accumulator, ask. Resolves once the backlog is below its low-water
/// mark: this is how back-pressure reaches the producers.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WaitForCapacity;

/// Accumulator → Decoder pool, tell (at most `max_in_flight` outstanding). A batch to read and
/// decode; the result goes to the Writer. If lost, [`BatchFailed`] re-queues the paths.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DecodeBatch {
    /// Identifies the batch in [`BatchCommitted`] / [`BatchFailed`].
    pub batch_id: u64,
    /// The paths, deduplicated.
    pub paths: Vec<ObservedPath>,
}

/// Decoder → Writer, tell (one per in-flight batch). A decoded batch to commit.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WriteDecoded {
    /// The batch.
    pub batch_id: u64,
    /// Files present on disk, with their observation time.
    pub files: Vec<(DecodedFile, Instant)>,
    /// Files gone from disk, with their observation time.
    pub removed: Vec<(RemovedFile, Instant, FileKind)>,
}

impl WriteDecoded {
    /// Every path of the batch as observed: what the accumulator retries if the batch fails.
    pub fn observed_paths(&self) -> Vec<ObservedPath> {
        let files = self.files.iter().map(|(file, at)| ObservedPath::new(file.path.clone(), file.kind, *at));
        let removed = self.removed.iter().map(|(removed, at, kind)| ObservedPath::new(PathBuf::from(&removed.path), *kind, *at));
        files.chain(removed).collect()
    }
}

/// What the index now says about one committed path.
#[derive(Debug, Clone)]
pub struct CommittedFile {
    /// The path.
    pub path: PathBuf,
    /// Its kind.
    pub kind: FileKind,
    /// Stamp and status, or `None` when the file was removed.
    pub state: Option<(FileStamp, FileStatus)>,
}

/// Writer → Accumulator, Reconciler, TraceBuilder and the status board, tell (one per batch). A
/// batch is durable. Losing it only delays trace updates or bookkeeping until the next scan.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct BatchCommitted {
    /// The batch.
    pub batch_id: u64,
    /// Every path of the batch and what the index now says about it.
    pub files: Vec<CommittedFile>,
    /// Paths committed as `pending` (not ready): the accumulator retries them with backoff.
    pub not_ready: Vec<ObservedPath>,
    /// Sessions whose records changed.
    pub touched_sessions: BTreeSet<String>,
    /// Per file, time from observation to commit.
    pub latencies: Vec<Duration>,
    /// Time spent in the transaction.
    pub commit_duration: Duration,
}

/// Decoder | Writer → Accumulator, tell. A batch could not be committed (database error, or a
/// panic in the decoder or writer); its paths are re-queued with backoff.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct BatchFailed {
    /// The batch.
    pub batch_id: u64,
    /// Its paths.
    pub paths: Vec<ObservedPath>,
    /// Why, for the log.
    pub reason: String,
}

/// TraceBuilder → Writer, tell (at most one per committed batch). Derived rows to replace.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReplaceDerived(pub DerivedRows);

/// Writer → TraceBuilder, tell. A [`ReplaceDerived`] could not be committed (a full disk): its
/// scope (`None`: everything) is recomputed after the next commit. Losing it leaves those traces
/// stale until their sessions change.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DerivedFailed {
    /// The sessions whose traces were not replaced; `None` for all.
    pub scope: Option<Vec<String>>,
}

/// Daemon → TraceBuilder, ask. Replies once every earlier [`BatchCommitted`] has been turned into
/// [`ReplaceDerived`] (it recomputes whatever is still dirty first), so a following
/// [`Checkpoint`] lands after them. Answers whether every dirty session's rows were computed and
/// sent (nothing owed).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct FlushTraces;

/// Daemon → Writer, request, at a clean stop after [`FlushTraces`]. Marks the derived tables
/// complete (unless one of this run's [`ReplaceDerived`] failed), so the next start skips its
/// full recompute.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct MarkDerivedComplete;

/// TraceBuilder → itself, tell. Recompute the sessions marked dirty so far. Queued behind the
/// [`BatchCommitted`] messages already waiting, so one recompute covers all of them: under load
/// traces are recomputed once per recompute time, not once per batch.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ComputeDirtyTraces;

/// Daemon → TraceBuilder, tell. Recompute every trace (after wiring at startup).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecomputeAllTraces;

/// Anyone → Reconciler, tell. Compare disk and index under `scope` (the storage root for a full
/// scan). Dropping one is harmless: the periodic scan covers it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Rescan {
    /// Directory to scan.
    pub scope: PathBuf,
    /// Why, for the log.
    pub reason: &'static str,
}

/// Daemon → Accumulator, ask. Cut everything pending into batches now (ignoring windows and
/// retry delays) and reply once nothing is pending or in flight. Used at shutdown.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Reconciler → Writer, ask. Answered once every message sent to the writer before it has been
/// handled (the mailbox is FIFO): a barrier, e.g. for derived rows handed over just before.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WriterBarrier;

/// Daemon → Writer, ask. Fold the WAL into the database file (clean shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Checkpoint;

/// Daemon → Writer, tell. Checkpoint now if the WAL is over `database.idle_checkpoint_wal_bytes`
/// and the writer has written nothing for `quiet_for`: a checkpoint then most likely holds up no
/// file, where one DuckDB runs inside a commit (`database.wal_autocheckpoint`) holds that batch
/// and every file behind it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CheckpointIfIdle {
    /// Least time since the writer's last write (of any source).
    pub quiet_for: std::time::Duration,
}

/// Daemon → TraceBuilder, then Writer, ask; the last message of a clean stop. The actor closes
/// the DuckDB connections it holds, on its own thread, and replies once they are closed. Without
/// it they closed when the actor's thread ended, which could be after the main thread had begun
/// exiting and destroyed DuckDB's globals: a crash at exit, once in a few stops.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CloseDatabase;

/// Daemon → Writer, tell. Purge sessions inactive since before this Unix time (µs)
/// (`[retention]`). Losing one is harmless: the next interval purges.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PurgeBefore(pub i64);

/// HTTP | daemon → Accumulator, ask. Reply: the pipeline's current load.
#[derive(Debug, Message)]
#[rtype(result = "PipelineStatus")]
pub struct GetPipelineStatus;

/// Reply to [`GetPipelineStatus`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStatus {
    /// Distinct paths waiting to be batched (including scheduled retries).
    pub pending: usize,
    /// Batches being decoded or written.
    pub in_flight: usize,
}
