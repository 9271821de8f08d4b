//! The status board: counters and recent latencies every actor updates and health reads.
//!
//! This is observability only. No actor decides anything from another actor's numbers here; the
//! board exists so `/readyz`, health and benchmarks can see the pipeline without asking it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many recent event→commit latencies are kept for percentiles.
const LATENCY_WINDOW: usize = 10_000;

/// Commit notices buffered per subscriber; a subscriber further behind is told how many it missed.
const COMMIT_FEED_CAPACITY: usize = 1_024;

/// What one committed batch changed, for readers that refresh on change (`GET /api/events`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitNotice {
    /// The batch.
    pub batch_id: u64,
    /// Files the batch committed (indexed, error, pending or removed).
    pub files: usize,
    /// Sessions whose records changed.
    pub sessions: BTreeSet<String>,
    /// When the commit finished, Unix milliseconds.
    pub committed_unix_ms: u64,
    /// The notice is of derived rows (traces and the per-session rollups that sessions, usage
    /// and traces answers read), written after the commit that touched `sessions` (all sessions
    /// when empty): readers that showed those answers read them again. `GET /api/events` names
    /// it `derived` rather than `commit`.
    #[serde(skip)]
    pub derived: bool,
}

/// A broadcast of [`CommitNotice`]s. Publishing never blocks the writer: a slow subscriber
/// misses notices (and learns how many) instead of holding anything up.
#[derive(Debug)]
pub struct CommitFeed(tokio::sync::broadcast::Sender<CommitNotice>);

impl Default for CommitFeed {
    fn default() -> Self {
        CommitFeed(tokio::sync::broadcast::channel(COMMIT_FEED_CAPACITY).0)
    }
}

impl CommitFeed {
    /// Sends a notice to every current subscriber (none is fine).
    pub fn publish(&self, notice: CommitNotice) {
        let _ = self.0.send(notice);
    }

    /// A new subscriber, receiving notices published from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<CommitNotice> {
        self.0.subscribe()
    }
}

/// Shared, lock-light pipeline counters.
#[derive(Debug, Default)]
pub struct StatusBoard {
    /// Set once the startup catch-up has committed.
    pub ready: AtomicBool,
    /// Computing or writing derived rows failed (or panicked) in this run: a clean stop must not
    /// mark the derived tables complete.
    pub derived_write_failed: AtomicBool,
    /// Batches committed since start.
    pub batches_committed: AtomicU64,
    /// Files committed since start (any status).
    pub files_committed: AtomicU64,
    /// Batches that failed and were re-queued.
    pub batches_failed: AtomicU64,
    /// Unix milliseconds of the last commit (0 = none yet).
    pub last_commit_unix_ms: AtomicU64,
    /// Bumped before every notice on the commit feed (records, derived rows, a retention purge):
    /// while it holds still, every read answer of the database is the same. Conditional GETs of
    /// the read API use it as their validator.
    pub data_version: AtomicU64,
    /// Actor restarts after a panic or stop, since start.
    pub actor_restarts: AtomicU64,
    /// Full or partial scans completed by the reconciler.
    pub scans_completed: AtomicU64,
    /// Unix milliseconds of the last successful CHECKPOINT (0 = none yet).
    pub last_checkpoint_unix_ms: AtomicU64,
    /// `pipeline.max_files` or more paths wait in the accumulator (eligible or held back): the
    /// writer is behind, as in a burst. Set by the accumulator after every change; the
    /// TraceBuilder rests longer while it holds.
    pub writer_behind: AtomicBool,
    /// Recent event→commit latencies with their commit instants, newest last.
    latencies: Mutex<VecDeque<(Instant, Duration)>>,
    /// Bumped whenever `latencies` changes, so [`StatusBoard::latency_summary`] sorts the window
    /// once per commit, not once per `/api/stats` request (sorting 10,000 samples per request
    /// under load cost more than answering it).
    latency_generation: AtomicU64,
    /// The window's percentiles and the generation they were computed at.
    latency_memo: Mutex<Option<(u64, LatencySummary)>>,
    /// Paths waiting in the accumulator, as it published after its last change.
    pending_files: AtomicU64,
    /// Batches being decoded or written, as the accumulator published after its last change.
    batches_in_flight: AtomicU64,
    /// Commit notices for readers (server-sent events).
    pub commits: CommitFeed,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Where following `opencode.db` stands.
    database: Mutex<DatabaseState>,
    /// Why file events are incomplete (the inotify watch limit), if they are.
    watch_problem: Mutex<Option<String>>,
    /// Why the last commit failed, while commits fail (cleared by the next success).
    commit_failure: Mutex<Option<String>>,
    /// The span source has not finished its first look at its folder yet.
    spans_catching_up: AtomicBool,
    /// Transcript sources whose first full look has not committed yet.
    transcripts_catching_up: std::sync::atomic::AtomicUsize,
    /// Per session, the data version of the last notice that named it (records or derived
    /// rows): the read API reuses a session's own answers until it moves.
    session_versions: Mutex<std::collections::HashMap<String, u64>>,
    /// The data version of the last notice that named every session (a full recompute, a purge).
    all_sessions_version: AtomicU64,
    /// The live OTLP export.
    otlp: Mutex<OtlpExportState>,
    /// The scheduled (or requested) Parquet export.
    parquet: Mutex<ParquetExportState>,
}

/// Where the OTLP export stands (`/health/detailed` shows it as is).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OtlpExportState {
    /// `[export.otlp] enabled`.
    pub enabled: bool,
    /// Where spans go.
    pub endpoint: String,
    /// The catch-up walk over every session has finished.
    pub caught_up: bool,
    /// Spans acknowledged since start.
    pub spans_sent: u64,
    /// Requests that failed since start.
    pub requests_failed: u64,
    /// Attempts made after a failure.
    pub retries: u64,
    /// Spans not final at the last pass (sent once they are).
    pub not_final: u64,
    /// The last failure, while the backend fails.
    pub last_error: Option<String>,
    /// The wait before the next attempt, while the backend fails.
    pub retry_in_ms: Option<u64>,
    /// Unix ms of the last pass that succeeded.
    pub last_success_unix_ms: Option<u64>,
}

/// Where the Parquet export stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ParquetExportState {
    /// The folder, once an export ran.
    pub dir: Option<String>,
    /// Exports that succeeded since start.
    pub runs: u64,
    /// Rows written since start.
    pub rows_written: u64,
    /// Unix ms of the last run.
    pub last_run_unix_ms: Option<u64>,
    /// How long the last run took.
    pub last_run_ms: Option<u64>,
    /// The last failure, until a run succeeds.
    pub last_error: Option<String>,
}

/// Where following OpenCode's `opencode.db` stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DatabaseState {
    /// Not followed (`sources.opencode.follow_database = false`, or `index`).
    #[default]
    Off,
    /// The file does not exist (yet); it is read as soon as it appears.
    Waiting,
    /// The file exists and its first full read has not committed yet: not ready.
    Starting,
    /// Read and in step; `records` is how many records it holds.
    Following {
        /// Records delivered from the database.
        records: usize,
    },
    /// The last attempt failed; retried with backoff.
    Failing {
        /// What went wrong, with the fix.
        error: String,
    },
}

impl DatabaseState {
    /// A short name for status output: off, waiting, starting, following, failing.
    pub fn name(&self) -> &'static str {
        match self {
            DatabaseState::Off => "off",
            DatabaseState::Waiting => "waiting",
            DatabaseState::Starting => "starting",
            DatabaseState::Following { .. } => "following",
            DatabaseState::Failing { .. } => "failing",
        }
    }
}

/// Percentiles of recent event→commit latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    /// Samples in the window.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// The wall clock in Unix milliseconds, as commit notices carry it.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl StatusBoard {
    /// Changes the OTLP export's state.
    pub fn update_otlp(&self, change: impl FnOnce(&mut OtlpExportState)) {
        change(&mut self.otlp.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    /// The OTLP export's state.
    pub fn otlp(&self) -> OtlpExportState {
        self.otlp.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Changes the Parquet export's state.
    pub fn update_parquet(&self, change: impl FnOnce(&mut ParquetExportState)) {
        change(&mut self.parquet.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    /// The Parquet export's state.
    pub fn parquet(&self) -> ParquetExportState {
        self.parquet.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn name_sessions(&self, sessions: &BTreeSet<String>, version: u64) {
        let mut versions = self.session_versions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for session in sessions {
            versions.insert(session.clone(), version);
        }
    }

    /// The data version one session's own answers (its summary, its timeline) depend on: that
    /// of the last notice naming it, its ancestors' derived notices naming it too.
    pub fn session_version(&self, session: &str) -> u64 {
        let named = self.session_versions.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(session).copied().unwrap_or(0);
        named.max(self.all_sessions_version.load(Ordering::Acquire))
    }

    /// Tells subscribers that the derived rows of `sessions` (all, when empty) were replaced: a
    /// rollup read right after the records' commit notice may have predated them.
    pub fn record_derived(&self, sessions: BTreeSet<String>) {
        let now_ms = unix_now_ms();
        let version = self.data_version.fetch_add(1, Ordering::AcqRel) + 1;
        if sessions.is_empty() {
            self.all_sessions_version.store(version, Ordering::Release);
        } else {
            self.name_sessions(&sessions, version);
        }
        self.commits.publish(CommitNotice { batch_id: 0, files: 0, sessions, committed_unix_ms: now_ms, derived: true });
    }

    /// Records a committed batch and tells subscribers which sessions it touched.
    pub fn record_commit(&self, batch_id: u64, files: usize, sessions: &BTreeSet<String>, latencies: &[Duration]) {
        self.set_commit_failure(None);
        self.batches_committed.fetch_add(1, Ordering::Relaxed);
        self.files_committed.fetch_add(files as u64, Ordering::Relaxed);
        let now_ms = unix_now_ms();
        self.last_commit_unix_ms.store(now_ms, Ordering::Relaxed);
        let version = self.data_version.fetch_add(1, Ordering::AcqRel) + 1;
        self.name_sessions(sessions, version);
        self.commits.publish(CommitNotice { batch_id, files, sessions: sessions.clone(), committed_unix_ms: now_ms, derived: false });
        let now = Instant::now();
        let mut window = self.latencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for latency in latencies {
            if window.len() == LATENCY_WINDOW {
                window.pop_front();
            }
            window.push_back((now, *latency));
        }
        drop(window);
        self.latency_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Records the accumulator's load, which the HTTP routes read without asking it (a question
    /// per request would queue in its mailbox beside the file events).
    pub fn publish_pipeline_status(&self, status: crate::messages::PipelineStatus) {
        self.pending_files.store(status.pending as u64, Ordering::Relaxed);
        self.batches_in_flight.store(status.in_flight as u64, Ordering::Relaxed);
    }

    /// The accumulator's load as of its last change.
    pub fn pipeline_status(&self) -> crate::messages::PipelineStatus {
        crate::messages::PipelineStatus {
            pending: self.pending_files.load(Ordering::Relaxed) as usize,
            in_flight: self.batches_in_flight.load(Ordering::Relaxed) as usize,
        }
    }

    /// Percentiles over the recent window.
    pub fn latency_summary(&self) -> LatencySummary {
        let generation = self.latency_generation.load(Ordering::Acquire);
        let mut memo = self.latency_memo.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match *memo {
            Some((computed_at, summary)) if computed_at == generation => summary,
            _ => {
                // Read the generation before the window: a commit meanwhile leaves the memo
                // older than its content, so the next call computes again.
                let summary = self.latency_summary_since(None);
                *memo = Some((generation, summary));
                summary
            }
        }
    }

    /// Percentiles over the window's commits of the last `period` (all of the window if `None`).
    pub fn latency_summary_since(&self, period: Option<Duration>) -> LatencySummary {
        let cutoff = period.and_then(|period| Instant::now().checked_sub(period));
        let window = self.latencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut samples: Vec<Duration> = window.iter().filter(|(at, _)| cutoff.is_none_or(|cutoff| *at >= cutoff)).map(|(_, latency)| *latency).collect();
        drop(window);
        if samples.is_empty() {
            return LatencySummary::default();
        }
        samples.sort_unstable();
        let at = |quantile: f64| samples[((samples.len() - 1) as f64 * quantile).round() as usize];
        LatencySummary { samples: samples.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99) }
    }

    /// Whether the startup catch-up has committed (the JSON tree's, the database's first read
    /// when there is a database, and the span source's first look when there is one).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self.database_state() != DatabaseState::Starting
            && !self.spans_catching_up.load(Ordering::Acquire)
            && self.transcripts_catching_up.load(Ordering::Acquire) == 0
    }

    /// Where following `opencode.db` stands.
    pub fn database_state(&self) -> DatabaseState {
        self.database.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Why file events are incomplete, if they are.
    pub fn watch_problem(&self) -> Option<String> {
        self.watch_problem.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Sets (or clears) why file events are incomplete; returns whether that changed anything.
    pub fn set_watch_problem(&self, problem: Option<String>) -> bool {
        let mut current = self.watch_problem.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let changed = *current != problem;
        *current = problem;
        changed
    }

    /// Marks the span source's first look as outstanding (`true`) or done (`false`).
    pub fn set_spans_catching_up(&self, catching_up: bool) {
        self.spans_catching_up.store(catching_up, Ordering::Release);
    }

    /// A transcript source starts catching up: ready waits for its first full look.
    pub fn transcripts_start_catching_up(&self) {
        self.transcripts_catching_up.fetch_add(1, Ordering::AcqRel);
    }

    /// A transcript source's first full look committed.
    pub fn transcripts_caught_up(&self) {
        let _ = self.transcripts_catching_up.fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| count.checked_sub(1));
    }

    /// Why commits are failing (a full disk, a lost database), while they are.
    pub fn commit_failure(&self) -> Option<String> {
        self.commit_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Records a failed commit (`Some(reason)`) or a successful one (`None`).
    pub fn set_commit_failure(&self, failure: Option<String>) {
        *self.commit_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = failure;
    }

    /// Sets where following `opencode.db` stands.
    pub fn set_database_state(&self, state: DatabaseState) {
        *self.database.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_window() {
        let board = StatusBoard::default();
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let mut feed = board.commits.subscribe();
        board.record_commit(7, 100, &BTreeSet::from(["ses_a".to_owned()]), &latencies);
        let summary = board.latency_summary();
        let notice = feed.try_recv().expect("a commit notice");
        assert_eq!((notice.batch_id, notice.files, notice.sessions.len()), (7, 100, 1));
        assert_eq!(summary.samples, 100);
        assert_eq!(summary.p50, Duration::from_millis(51));
        assert_eq!(summary.p99, Duration::from_millis(99));
    }
}
