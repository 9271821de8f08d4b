//! The DuckDB side of ducktail: the schema and its migrations, the batch writer, derived-trace
//! computation and the read queries.
//!
//! # Layout
//! - [`Store`] owns the one read-write connection. [`Store::write_batch`] writes a [`WriteBatch`]
//!   (decoded files and removed paths, or a database source's rows and deleted records) in one
//!   transaction, records and `file_index` rows together. When two sources hold one record id,
//!   the newer version (`version_ms`) is the row, and a source only ever deletes its own rows.
//! - `known_keys` remembers which record keys and `file_index` paths the tables may hold, so a
//!   batch of new files skips the deletes that would replace nothing.
//! - [`Store::reader`] hands out [`Reader`]s: connections to the same database used only for reads,
//!   which see committed batches only (DuckDB's MVCC), so they never block the writer.
//!   [`Reader::records_of_source`] tells a database source what it delivered before a restart.
//! - `traces` computes `agent_traces` and `delegations` for a set of sessions (reading), and the
//!   store replaces those rows (writing).
//! - `schema` holds the append-only migrations applied by [`Store::open`].
//! - `read_api` answers the HTTP read API and the read commands (sessions, summaries, timelines,
//!   trace trees, usage); [`Reader::query_json`] runs users' SQL, refusing anything but one SELECT.
//! - [`Store::purge_sessions_before`] is the retention purge.
//! - `otel_read` answers the span API (services, trace list, one trace as a tree with orphans
//!   flagged); `spans` writes OpenTelemetry spans ([`Store::write_spans`]): one row per
//!   `(trace_id, span_id)`, the newest copy winning, and the `traces` and `services` summaries
//!   recomputed for what each batch touched.
//!
//! This is the only crate that names duckdb. It knows nothing about files on disk, actors or HTTP:
//! it receives already-decoded records and never reads a source file itself.

mod arrow_rows;
pub mod columns;
mod export_read;
mod known_keys;
mod list_prices;
mod otel_read;
mod read_api;
mod reader;
mod schema;
mod spans;
mod traces;
mod transcripts;
mod writer;

use std::path::{Path, PathBuf};

pub use export_read::{ExportDay, ExportTable, SentSpan, TraceMessage, TraceRecords, TraceSession, TraceToolCall, EXPORT_TABLES, UNDATED_DAY};
pub use list_prices::ListPricing;
pub use otel_read::{span_kind_name, status_name, OtelService, OtelSpanNode, OtelTrace, OtelTraceFilter, OtelTraceSummary};
pub use read_api::{
    usage_total, Clipped, DiffStats, ProjectItem, SessionFilter, SessionListItem, SessionPage, SessionSort, SessionSummary, TimelineMessage, TimelinePart,
    TimelineStep, TimelineTool, TodoItem, ToolStats, TraceNode, Usage, UsageBy, UsageGroup, UsageRow, UsageTotal,
};
pub use reader::{rfc3339_from_micros, value_to_json, FileIndexRow, IndexStatus, JsonRows, QueryCanceller, Reader, RecentError, TableCount, COUNTED_TABLES};
pub use spans::{SpanBatch, SpanReport};
pub use traces::{DerivedRows, TraceScope};
pub use transcripts::{skipped_line_path, TranscriptBatch, TranscriptFileState, TranscriptReport, SKIPPED_LINE_KIND, TRANSCRIPT_KIND};
pub use writer::{rejected_row_path, BatchReport, OnDelete, RemovedFile, WriteBatch};

/// Re-exported so callers can hold values of the read API without naming duckdb themselves.
pub use duckdb::types::Value as SqlValue;

/// Errors of the store; each names the database path and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds DuckDB's write lock on the file.
    #[error(
        "database {path} is locked by another process ({detail}); stop the other ducktail (or the \
         program holding it) or pass another --db"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
        /// DuckDB's message.
        detail: String,
    },
    /// The file is not a DuckDB database, or is damaged.
    #[error(
        "database {path} is not a valid DuckDB database or is damaged ({detail}); `ducktail rebuild` recreates it from the sources (or pass another --db)"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// DuckDB's message.
        detail: String,
    },
    /// The database file or its directory cannot be created or opened.
    #[error("cannot open database {path}: {detail}; check that the directory exists and is writable, or pass another --db")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying message.
        detail: String,
    },
    /// A migration failed.
    #[error("cannot migrate database {path} to schema version {version}: {detail}; `ducktail rebuild` recreates it from the sources")]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The migration that failed.
        version: i32,
        /// DuckDB's message.
        detail: String,
    },
    /// The database was written by an older ducktail and is opened read-only, so it cannot be
    /// upgraded here.
    #[error("database {path} has schema version {found}, older than this ducktail reads ({known}); run `ducktail index --db {path}` (or start `ducktail run`) once to upgrade it in place")]
    TooOld {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: i32,
        /// Newest version this build knows.
        known: i32,
    },
    /// The database was written by a newer ducktail.
    #[error("database {path} has schema version {found}, newer than this ducktail knows ({known}); upgrade ducktail or pass another --db")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: i32,
        /// Newest version this build knows.
        known: i32,
    },
    /// A user's query is not a single read-only SELECT and was not run.
    #[error("query refused: {reason}; send one SELECT (or WITH … SELECT) statement")]
    Refused {
        /// Why, in DuckDB's parser's words where it has them.
        reason: String,
    },
    /// The reader pool was closed: the daemon is stopping.
    #[error("database {path} is closed: ducktail is stopping")]
    Closed {
        /// The database file.
        path: PathBuf,
    },
    /// A statement failed while writing or reading.
    #[error("database {path}: {context}: {error}{hint}", hint = out_of_memory_hint(error))]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// DuckDB's error. Part of the message, with the fix after it, and not a `source`: an
        /// error chain printed whole (`{:#}`) would repeat it after the fix.
        error: duckdb::Error,
    },
}

/// The fix for DuckDB running out of its memory budget, appended to such errors.
fn out_of_memory_hint(error: &duckdb::Error) -> &'static str {
    if error.to_string().contains("Out of Memory") {
        "; raise [database] memory_limit in the config file (default 256MB)"
    } else {
        ""
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The version of the DuckDB library compiled into this binary (`v1.4.1`, say), as DuckDB itself
/// reports it: the duckdb crate's own version number encodes it differently. Opens an in-memory
/// database to ask, so callers ask once.
pub fn duckdb_version() -> String {
    duckdb::Connection::open_in_memory()
        .and_then(|connection| connection.query_row("SELECT library_version FROM pragma_version()", [], |row| row.get(0)))
        .unwrap_or_else(|error| format!("unknown ({error})"))
}

/// DuckDB's worker threads when the config leaves them open: half the cores, at least one. The
/// other half is for the decoders, the writing thread and the agent beside ducktail: on two cores
/// the daemon's second DuckDB thread cost more than it gave (live bench at 10,000 files/s, four
/// runs each: p99 363–1,104 ms and 0.97–0.98× of the written rate with one thread, 579–1,647 ms
/// and 0.89–0.96× with two; 1,000 files/s p95 21–24 against 27–28 ms; read endpoints on the 1M
/// database alike but `/api/stats`, 9 → 14 ms).
pub fn default_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1) as u32)
}

/// Tuning of the DuckDB instance, from the `[database]` config section.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// DuckDB `memory_limit`, e.g. `"1GB"`; `None` keeps DuckDB's default (80% of RAM).
    pub memory_limit: Option<String>,
    /// DuckDB worker threads; `None`: half the cores, at least one (see [`default_threads`]),
    /// or one with `bulk_load`.
    pub threads: Option<u32>,
    /// Tuned for a one-shot bulk load (`ducktail index`, `rebuild`): the WAL is folded into the
    /// file once at the end rather than every 16 MB, and DuckDB runs on the writing thread
    /// alone (unless `threads` is set) so the cores go to the decoders. Together these cut a
    /// cold index of 100k files from 4.0 s to 3.3 s on two cores.
    pub bulk_load: bool,
    /// DuckDB `wal_autocheckpoint`, e.g. `"64MB"`; `None` keeps DuckDB's 16MB (or the bulk
    /// load's).
    pub wal_autocheckpoint: Option<String>,
}

/// The writing connection's settings. A batch replaces rows by joining its staged keys; DuckDB
/// turns a join's small side into an `IN` filter that the table's index answers only up to
/// `dynamic_or_filter_threshold` keys (50 by default), and above that scans the whole column. On a
/// 1M-row `file_index`, replacing 100 staged rows took 34 ms by scan and 2 ms through the index.
/// Live batches hold up to `pipeline.max_files` files (100 by default); 2048 keeps batches of up
/// to DuckDB's index-scan limit on the index.
const WRITER_SETTINGS: &str = "SET dynamic_or_filter_threshold = 2048;";

/// `wal_autocheckpoint` of a bulk load: larger than any index run's WAL, so the only checkpoint
/// is the one at close. Rows committed since the last checkpoint stay in DuckDB's pool
/// (`duckdb_memory()` tags them `IN_MEMORY_TABLE` and `OVERFLOW_STRINGS`) and past the memory
/// limit spill to a temporary file (2 GB for a cold index of 1M files), so checkpointing every
/// 256MB made that index faster (30 s against 49 s). But the first later write that deleted
/// rows then took 9.3 s to checkpoint instead of 0.4 s (a stall the daemon's writer would pay
/// too); the mid-load checkpoints had left row groups part-full (`parts`: 8 of 32k-115k rows,
/// against full ones of 122,880), most likely merged then. So one checkpoint it is.
const BULK_LOAD_WAL_CHECKPOINT: &str = "4GB";

/// The database, with its one read-write connection.
pub struct Store {
    /// The read-write connection. Only the owner of the `Store` writes; readers are clones.
    connection: duckdb::Connection,
    /// The database file, for error messages.
    path: PathBuf,
    /// Sources that have written records here, once looked up: while there is one, the
    /// cross-source checks of the writer are skipped.
    sources_written: Option<std::collections::BTreeSet<String>>,
    /// Whether this connection's temp staging tables exist (created once, not per batch).
    staging_ready: bool,
    /// Sessions touched by batches since [`Store::track_touched_sessions`], for a one-shot index
    /// that recomputes only those.
    touched: Option<std::collections::BTreeSet<String>>,
    /// `file_index` paths whose record id is not the one their file name implies (a file read
    /// between a rename and the rewrite that follows it). Only a batch that touches one of them,
    /// or makes a new one, can leave a record no file holds, so only such a batch looks for
    /// replaced ids. Loaded by the first batch with a path `file_index` may hold; dropped (and
    /// reloaded) after a failed one.
    odd_paths: Option<std::collections::HashSet<String>>,
    /// The derived-complete mark was found at the start and is still in `pipeline_state`: the
    /// next transaction that writes records removes it (see `Store::take_derived_complete_mark`).
    derived_mark_to_clear: bool,
    /// The record keys and `file_index` paths the tables may hold, so new ones skip their
    /// deletes (see `known_keys`). Loaded by the first batch; `None` until then, and always for a
    /// bulk load.
    known_keys: Option<known_keys::KnownKeys>,
    /// Whether this store keeps `known_keys` (not for a bulk load).
    tracks_known_keys: bool,
    /// Per merged transcript table (in `transcripts::MERGED_TABLES` order): its merge plan, the
    /// ids transcripts have written with their rows' `version_ms`, and the rows merged lately
    /// (see `transcripts::MergedTable`). Loaded by the first transcript batch; dropped whenever
    /// the tables may have changed under it (a rollback, a purge, a pricing pass).
    transcript_tables: Option<Vec<transcripts::MergedTable>>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // As for readers: duckdb-rs drops a connection before its statement cache, and the
        // writer caches the statements that take a batch's keys as a bound list.
        self.connection.flush_prepared_statement_cache();
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|error| StoreError::Open { path: path.to_owned(), detail: format!("cannot create directory {}: {error}", parent.display()) })?;
        }
        // Not `exists()`: a link to a database yet to be made is opened through, as DuckDB would.
        if std::fs::symlink_metadata(path).is_err_and(|error| error.kind() == std::io::ErrorKind::NotFound) {
            Store::create_whole(path, options)?;
        }
        Store::open_at(path, options)
    }

    /// Creates the database at `path` whole or not at all: built and migrated under
    /// `<path>.creating`, checkpointed, then renamed into place. A process killed while DuckDB
    /// writes a new file's first blocks leaves a file DuckDB refuses ever after ("not a valid
    /// DuckDB database file"); killed here, it leaves only `<path>.creating`, which the next
    /// creation replaces.
    fn create_whole(path: &Path, options: &StoreOptions) -> Result<()> {
        let mut creating = path.as_os_str().to_owned();
        creating.push(".creating");
        let creating = PathBuf::from(creating);
        let wal_of = |path: &Path| {
            let mut wal = path.as_os_str().to_owned();
            wal.push(".wal");
            PathBuf::from(wal)
        };
        let cannot =
            |error: std::io::Error| StoreError::Open { path: path.to_owned(), detail: format!("cannot create it through {}: {error}", creating.display()) };
        // With no database at `path`, a WAL beside it is an orphan (a creation killed between
        // its two renames) that DuckDB would replay into the new file.
        for leftover in [creating.clone(), wal_of(&creating), wal_of(path)] {
            match std::fs::remove_file(&leftover) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(cannot(error)),
                _ => {}
            }
        }
        let store = Store::open_at(&creating, options)?;
        store.checkpoint()?;
        drop(store);
        if wal_of(&creating).exists() {
            std::fs::rename(wal_of(&creating), wal_of(path)).map_err(cannot)?;
        }
        std::fs::rename(&creating, path).map_err(cannot)
    }

    /// Opens the database at `path`, creating it in place if it does not exist, and brings its
    /// schema up to date.
    fn open_at(path: &Path, options: &StoreOptions) -> Result<Store> {
        // SQL never needs the filesystem or network here (records arrive through the Appender),
        // so user SQL through the API cannot read files either.
        let mut config = duckdb::Config::default().enable_external_access(false).map_err(|error| open_error(path, error))?;
        if let Some(limit) = &options.memory_limit {
            config = config.max_memory(limit).map_err(|error| open_error(path, error))?;
        }
        let wal_autocheckpoint = options.wal_autocheckpoint.as_deref().or(options.bulk_load.then_some(BULK_LOAD_WAL_CHECKPOINT));
        if let Some(threshold) = wal_autocheckpoint {
            config = config.with("wal_autocheckpoint", threshold).map_err(|error| open_error(path, error))?;
        }
        let threads = options.threads.unwrap_or(if options.bulk_load { 1 } else { default_threads() });
        config = config.threads(i64::from(threads)).map_err(|error| open_error(path, error))?;
        let connection = duckdb::Connection::open_with_flags(path, config).map_err(|error| open_error(path, error))?;
        connection.execute_batch(WRITER_SETTINGS).map_err(|error| open_error(path, error))?;
        let mut store = Store::with_connection(connection, path.to_owned());
        store.tracks_known_keys = !options.bulk_load;
        // Damage can also show on the first read rather than at open.
        let upgraded_from = store.migrate().map_err(|error| match error {
            StoreError::Query { path, error: source, .. } if is_corruption(&source.to_string()) => StoreError::Corrupt { path, detail: source.to_string() },
            StoreError::Migration { path, detail, .. } if is_corruption(&detail) => StoreError::Corrupt { path, detail },
            other => other,
        })?;
        if (1..schema::ROLLUPS_LAST_CHANGED).contains(&upgraded_from) {
            // The rollup tables arrived empty or hold less than they should; readers without a
            // daemon (the CLI) need them full.
            // Marked complete, so the daemon's first start does not compute them all again.
            store.refresh_derived(&traces::TraceScope::All)?;
            store.mark_derived_complete()?;
        }
        Ok(store)
    }

    /// A store on an open connection, its caches empty.
    fn with_connection(connection: duckdb::Connection, path: PathBuf) -> Store {
        Store {
            connection,
            path,
            sources_written: None,
            staging_ready: false,
            touched: None,
            odd_paths: None,
            derived_mark_to_clear: false,
            transcript_tables: None,
            known_keys: None,
            tracks_known_keys: true,
        }
    }

    /// Opens an in-memory database (tests and benchmarks).
    pub fn open_in_memory() -> Result<Store> {
        let path = PathBuf::from(":memory:");
        let connection = duckdb::Connection::open_in_memory().map_err(|error| open_error(&path, error))?;
        let store = Store::with_connection(connection, path);
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new read-only-by-rule connection to the same database.
    pub fn reader(&self) -> Result<Reader> {
        let connection = self.connection.try_clone().map_err(|source| self.query_error("opening a reader connection", source))?;
        Ok(Reader::new(connection, self.path.clone()))
    }

    /// A cloneable source of reader connections for other threads.
    pub fn reader_pool(&self) -> Result<ReaderPool> {
        let template = self.connection.try_clone().map_err(|source| self.query_error("opening a reader connection", source))?;
        Ok(ReaderPool {
            template: std::sync::Arc::new(std::sync::Mutex::new(Some(template))),
            idle: std::sync::Arc::new(std::sync::Mutex::new(Some(Vec::new()))),
            path: self.path.clone(),
        })
    }

    /// Rolls back a transaction left open by an interrupted batch; a no-op otherwise.
    pub fn rollback_open_transaction(&mut self) {
        let _ = self.connection.execute_batch("ROLLBACK");
        // What a transcript batch learned about stored ids may have been rolled back with it.
        self.forget_learned_ids();
    }

    /// Bytes in the write-ahead log: what the next checkpoint folds into the database file
    /// (0 when there is none). A stat of `<database>.wal`, cheap enough to ask after every batch.
    pub fn wal_bytes(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push(".wal");
        std::fs::metadata(wal).map_or(0, |metadata| metadata.len())
    }

    /// Forces a checkpoint so the WAL is folded into the database file (used at clean shutdown).
    pub fn checkpoint(&self) -> Result<()> {
        self.connection.execute_batch("CHECKPOINT").map_err(|source| self.query_error("checkpointing", source))
    }

    /// Deletes sessions whose last activity (`updated_at`, else `created_at`) is before
    /// `cutoff_us` (Unix microseconds), with everything that hangs off them, in one transaction.
    /// Their `file_index` rows stay, so unchanged files are not indexed again; a file that
    /// changes later is. Returns how many sessions went.
    pub fn purge_sessions_before(&mut self, cutoff_us: i64) -> Result<usize> {
        let fail = |context| {
            let path = self.path.clone();
            move |source| StoreError::Query { path, context, error: source }
        };
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(fail("beginning a purge"))?;
        let result = (|| -> Result<usize> {
            self.connection
                .execute(
                    "CREATE OR REPLACE TEMP TABLE purge_sessions AS SELECT id FROM sessions
                     WHERE epoch_us(coalesce(updated_at, created_at)::TIMESTAMP) < ?",
                    [cutoff_us],
                )
                .map_err(fail("choosing sessions to purge"))?;
            let count: i64 =
                self.connection.query_row("SELECT count(*) FROM temp.purge_sessions", [], |row| row.get(0)).map_err(fail("counting sessions to purge"))?;
            self.connection
                .execute_batch(
                    "DELETE FROM messages WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM parts WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM step_events WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM file_operations WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM todos WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM file_diffs WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM delegations WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM agent_traces WHERE session_id IN (SELECT id FROM temp.purge_sessions)
                         OR child_session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM session_stats WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM session_usage WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM session_tools WHERE session_id IN (SELECT id FROM temp.purge_sessions);
                     DELETE FROM sessions WHERE id IN (SELECT id FROM temp.purge_sessions);
                     DROP TABLE temp.purge_sessions;",
                )
                .map_err(fail("purging old sessions"))?;
            Ok(count as usize)
        })();
        match result {
            Ok(count) => {
                self.connection.execute_batch("COMMIT").map_err(fail("committing a purge"))?;
                // The transcript writer's ids and rows may name what was purged.
                self.forget_learned_ids();
                Ok(count)
            }
            Err(error) => {
                let _ = self.connection.execute_batch("ROLLBACK");
                Err(error)
            }
        }
    }

    /// The current schema version of the open database.
    pub fn schema_version(&self) -> Result<i32> {
        self.connection
            .query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |row| row.get(0))
            .map_err(|source| self.query_error("reading the schema version", source))
    }

    /// Applies the migrations the database lacks; returns the version it had before.
    fn migrate(&self) -> Result<i32> {
        self.connection
            .execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
            .map_err(|source| self.query_error("creating schema_migrations", source))?;
        let current = self.schema_version()?;
        let known = schema::MIGRATIONS.last().map_or(0, |migration| migration.version);
        if current > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found: current, known });
        }
        for migration in schema::MIGRATIONS.iter().filter(|migration| migration.version > current) {
            let sql = format!(
                "BEGIN TRANSACTION;\n{}\nINSERT INTO schema_migrations VALUES ({}, '{}', now());\nCOMMIT;",
                migration.sql,
                migration.version,
                migration.name.replace('\'', "''")
            );
            if let Err(error) = self.connection.execute_batch(&sql) {
                let _ = self.connection.execute_batch("ROLLBACK");
                return Err(StoreError::Migration { path: self.path.clone(), version: migration.version, detail: error.to_string() });
            }
            tracing::info!(version = migration.version, name = migration.name, "applied schema migration");
        }
        Ok(current)
    }

    fn query_error(&self, context: &'static str, source: duckdb::Error) -> StoreError {
        StoreError::Query { path: self.path.clone(), context, error: source }
    }
}

/// Hands out reader connections to the same database from any thread.
///
/// Its clones share one state, and [`ReaderPool::close`] closes the connections it holds for
/// all of them: the process must not exit while a clone held by another thread still owns a
/// connection (DuckDB's globals are destroyed at exit, and the last connection to go would
/// use them).
#[derive(Clone)]
pub struct ReaderPool {
    /// A connection used only to clone readers from; `None` once closed.
    template: std::sync::Arc<std::sync::Mutex<Option<duckdb::Connection>>>,
    /// Readers handed back by [`PooledReader`]s, with their prepared-statement caches; `None`
    /// once closed.
    idle: IdleReaders,
    /// The database file, for error messages.
    path: PathBuf,
}

type IdleReaders = std::sync::Arc<std::sync::Mutex<Option<Vec<Reader>>>>;

/// Most idle readers a pool keeps (one per concurrent request beyond this is closed after use).
const MAX_IDLE_READERS: usize = 8;

/// A reader borrowed from a [`ReaderPool`]: it goes back to the pool when dropped, so the next
/// request reuses its connection and the statements it already prepared (planning the session
/// queries costs more than running them on an indexed session).
pub struct PooledReader {
    reader: Option<Reader>,
    home: IdleReaders,
}

impl std::ops::Deref for PooledReader {
    type Target = Reader;
    fn deref(&self) -> &Reader {
        self.reader.as_ref().expect("a pooled reader is present until dropped")
    }
}

impl Drop for PooledReader {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            let mut idle = self.home.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // A closed pool keeps nothing: the reader closes here.
            if let Some(idle) = idle.as_mut().filter(|idle| idle.len() < MAX_IDLE_READERS) {
                idle.push(reader);
            }
        }
    }
}

impl ReaderPool {
    /// The database file these readers read.
    pub fn database_path(&self) -> &Path {
        &self.path
    }

    /// A new reader connection.
    pub fn reader(&self) -> Result<Reader> {
        let template = self.template.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let connection = template.as_ref().ok_or_else(|| StoreError::Closed { path: self.path.clone() })?.try_clone().map_err(|source| StoreError::Query {
            path: self.path.clone(),
            context: "opening a reader connection",
            error: source,
        })?;
        Ok(Reader::new(connection, self.path.clone()))
    }

    /// A reader for one request: an idle one if there is one, else a new connection. Dropping
    /// it hands it back.
    pub fn pooled(&self) -> Result<PooledReader> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_mut().and_then(Vec::pop);
        let reader = match idle {
            Some(reader) => reader,
            None => self.reader()?,
        };
        Ok(PooledReader { reader: Some(reader), home: self.idle.clone() })
    }

    /// Closes the pool's connections, for every clone: later [`ReaderPool::reader`] calls fail
    /// with [`StoreError::Closed`], and readers handed back close at once. Readers already
    /// handed out stay open until dropped.
    pub fn close(&self) {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        drop(idle);
        let template = self.template.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        drop(template);
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as i64)
}

/// Whether DuckDB's message says the file is not a database or is damaged.
fn is_corruption(detail: &str) -> bool {
    detail.contains("not a valid DuckDB database") || detail.contains("Corrupt") || detail.contains("checksum")
}

fn open_error(path: &Path, error: duckdb::Error) -> StoreError {
    let detail = error.to_string();
    if detail.contains("Could not set lock") || detail.contains("Conflicting lock") {
        StoreError::Locked { path: path.to_owned(), detail }
    } else if is_corruption(&detail) {
        StoreError::Corrupt { path: path.to_owned(), detail }
    } else {
        StoreError::Open { path: path.to_owned(), detail }
    }
}

#[cfg(test)]
mod tests;
