//! The batch writer: one transaction per batch, records and their `file_index` rows together.
//!
//! Records are replaced by key, never updated row by row: the old rows with the batch's keys are
//! deleted with one statement per table (the keys bound as one list in a small batch, staged in
//! a temp table and joined in a large one), and the new rows are appended with DuckDB's Appender
//! (the large tables as Arrow batches, see `arrow_rows`).
//! Because the one writer does both inside one transaction, a record id is never present twice
//! and a reader never sees the gap.
//!
//! Two sources can hold the same record (OpenCode's JSON tree and its `opencode.db`). Every row
//! keeps its `source` and `version_ms` (when that source last wrote it); a record from another
//! source replaces a row only if it is at least as new, and a source's deletes and removals only
//! ever delete that source's rows. While only one source has written, none of this costs a
//! statement.
//!
//! `file_index` rows are replaced the same way: deleted by path through the primary key's index,
//! then appended (DuckDB's `INSERT … ON CONFLICT DO UPDATE` scanned the whole table). Keys and
//! paths `known_keys` has never seen skip their deletes, and a batch that says `paths_are_new`
//! (a cold `ducktail index`) appends every `file_index` row without looking. A batch binds the
//! keys and paths it deletes to cached statements as one list, up to `BOUND_LIST_MAX`; beyond
//! that, or when it holds a database source's rows, must compare another source's versions,
//! count a failure's attempts on, or may have changed a file's record id, it stages them in temp
//! tables and joins.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use duckdb::types::Value;
use duckdb::{params, Appender};
use ducktail_model::{
    DecodedFile, FileDiffRecord, FileOperation, FileOutcome, FileStatus, MessageRecord, PartRecord, ProjectRecord, Records, RejectedRow, RemovedRecord,
    SessionRecord, StepEvent, TodoRecord, VersionedRecords,
};
use foldhash::{HashMap, HashMapExt};

use crate::arrow_rows::ArrowRows;
use crate::columns;
use crate::known_keys::KnownKeys;
use crate::{Result, Store};

/// What happens to a deleted file's records (`[pipeline] on_delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDelete {
    /// Remove the records (unless another indexed file still holds the same id).
    #[default]
    Remove,
    /// Keep the records as history; only the `file_index` row goes.
    Keep,
}

/// A file that is gone from disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemovedFile {
    /// The path as stored in `file_index.file_path`.
    pub path: String,
}

/// One unit of writing: decoded files and removed paths, committed together.
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// `file_index.source` and the records' `source` column, e.g. `opencode_json`.
    pub source: &'static str,
    /// Files read and decoded (or not) since the last batch.
    pub files: Vec<DecodedFile>,
    /// Files that disappeared.
    pub removed: Vec<RemovedFile>,
    /// Policy for the records of removed files.
    pub on_delete: OnDelete,
    /// Records read from a database source, with their versions.
    pub rows: Vec<VersionedRecords>,
    /// Records a database source no longer holds; only this source's rows are deleted.
    pub removed_records: Vec<RemovedRecord>,
    /// Database rows that did not decode: kept as `file_index` errors under
    /// `<database_path>#<kind>/<id>`.
    pub rejected: Vec<RejectedRow>,
    /// The database file `rows` come from.
    pub database_path: Option<String>,
    /// Every file's path is known to have no `file_index` row (the caller compared its listing
    /// with an empty `file_index`, as a cold `ducktail index` does): the rows are appended
    /// without looking for ones to replace, and no path can have held another record id. A
    /// wrong claim fails the batch on `file_index`'s primary key; it never duplicates a row.
    pub paths_are_new: bool,
}

/// What a committed batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    /// Files whose records were written.
    pub indexed: usize,
    /// Files recorded with `status='error'`.
    pub errors: usize,
    /// Files recorded with `status='pending'` (not ready yet).
    pub pending: usize,
    /// Removed files processed.
    pub removed: usize,
    /// Sessions whose records changed: the input of trace recomputation.
    pub touched_sessions: BTreeSet<String>,
    /// Rows appended per record table (after deduplication by key).
    pub records_by_table: Vec<(&'static str, usize)>,
    /// Records not written because another source holds a newer version.
    pub superseded: usize,
    /// Files of another source that hold records this batch's source deleted, as
    /// (`file_path`, `kind`): read them again, so their (older) copy becomes the record, as a
    /// fresh index would have it.
    pub resurfaced: Vec<(String, String)>,
    /// Time spent in the transaction.
    pub duration: Duration,
}

/// Records of one batch grouped by table, deduplicated by key (the last one wins), each with its
/// version.
#[derive(Default)]
struct Grouped<'a> {
    projects: HashMap<&'a str, (&'a ProjectRecord, i64)>,
    sessions: HashMap<&'a str, (&'a SessionRecord, i64)>,
    messages: HashMap<&'a str, (&'a MessageRecord, i64)>,
    parts: HashMap<&'a str, GroupedPart<'a>>,
    todos: HashMap<&'a str, (&'a [TodoRecord], i64)>,
    file_diffs: HashMap<&'a str, &'a [FileDiffRecord]>,
}

/// A part with the rows that hang off it, and its version.
type GroupedPart<'a> = (&'a PartRecord, Option<&'a StepEvent>, Option<&'a FileOperation>, i64);

/// The keys of one key set (`stage_keys.tbl`) with their versions (none for session diffs).
type StagedKeys<'a> = (&'static str, Vec<(&'a str, Option<i64>)>);

impl<'a> Grouped<'a> {
    /// Rows this batch appends, per table.
    fn row_counts(&self) -> Vec<(&'static str, usize)> {
        let steps = self.parts.values().filter(|(_, step, _, _)| step.is_some()).count();
        let operations = self.parts.values().filter(|(_, _, operation, _)| operation.is_some()).count();
        vec![
            ("projects", self.projects.len()),
            ("sessions", self.sessions.len()),
            ("messages", self.messages.len()),
            ("parts", self.parts.len()),
            ("step_events", steps),
            ("file_operations", operations),
            ("todos", self.todos.values().map(|(items, _)| items.len()).sum()),
            ("file_diffs", self.file_diffs.values().map(|items| items.len()).sum()),
        ]
    }

    /// The keys of `key_set` (a `stage_keys.tbl` value) this batch holds.
    fn keys(&self, key_set: &str) -> Vec<&'a str> {
        match key_set {
            "project" => self.projects.keys().copied().collect(),
            "session" => self.sessions.keys().copied().collect(),
            "message" => self.messages.keys().copied().collect(),
            "part" => self.parts.keys().copied().collect(),
            "todo" => self.todos.keys().copied().collect(),
            "session_diff" => self.file_diffs.keys().copied().collect(),
            _ => Vec::new(),
        }
    }

    fn add(&mut self, records: &'a Records, version_ms: i64) {
        match records {
            Records::Project(project) => {
                self.projects.insert(&project.id, (project, version_ms));
            }
            Records::Session(session) => {
                self.sessions.insert(&session.id, (session, version_ms));
            }
            Records::Message(message) => {
                self.messages.insert(&message.id, (message, version_ms));
            }
            Records::Part { part, step, file_operation } => {
                self.parts.insert(&part.id, (part, step.as_ref(), file_operation.as_ref(), version_ms));
            }
            Records::Todos { session_id, items } => {
                self.todos.insert(session_id, (items, version_ms));
            }
            Records::FileDiffs { session_id, items } => {
                self.file_diffs.insert(session_id, items);
            }
        }
    }

    /// Drops a record another source holds in a newer version.
    fn drop_superseded(&mut self, key_set: &str, key: &str) {
        let removed = match key_set {
            "project" => self.projects.remove(key).is_some(),
            "session" => self.sessions.remove(key).is_some(),
            "message" => self.messages.remove(key).is_some(),
            "part" => self.parts.remove(key).is_some(),
            "todo" => self.todos.remove(key).is_some(),
            _ => false,
        };
        debug_assert!(removed, "a superseded key ({key_set}, {key}) was staged by this batch");
    }
}

/// Temp tables (connection-local, never logged) that carry a batch's keys into set-based SQL.
pub(crate) const TEMP_TABLES: &str = "
CREATE TEMP TABLE IF NOT EXISTS stage_keys (tbl VARCHAR NOT NULL, key VARCHAR NOT NULL, version_ms BIGINT);
CREATE TEMP TABLE IF NOT EXISTS stage_removed_records (kind VARCHAR NOT NULL, record_id VARCHAR NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS stage_file_index (
    file_path VARCHAR NOT NULL, source VARCHAR NOT NULL, kind VARCHAR NOT NULL, mtime TIMESTAMPTZ,
    mtime_ns BIGINT NOT NULL, size BIGINT NOT NULL, record_id VARCHAR, status VARCHAR NOT NULL,
    error_message VARCHAR, attempts INTEGER NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS stage_removed (file_path VARCHAR NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS stage_gone (kind VARCHAR, record_id VARCHAR);
";

/// Per key set (`stage_keys.tbl`), the tables whose rows a batch replaces, with their key column.
/// Each delete scans its table, so only the sets a batch actually has are run.
pub(crate) const REPLACED_BY_KEY: [(&str, &[(&str, &str)]); 6] = [
    ("project", &[("projects", "id")]),
    ("session", &[("sessions", "id")]),
    ("message", &[("messages", "id")]),
    ("part", &[("parts", "id"), ("step_events", "id"), ("file_operations", "id")]),
    ("todo", &[("todos", "session_id")]),
    ("session_diff", &[("file_diffs", "session_id")]),
];

/// Deletes a key set's rows from one table, the keys joined from `stage_keys`.
fn delete_staged_keys_sql(key_set: &str, table: &str, column: &str) -> String {
    format!("DELETE FROM {table} WHERE {column} IN (SELECT key FROM temp.stage_keys WHERE tbl = '{key_set}');")
}

/// Deletes a key set's rows from one table, the keys bound as one `VARCHAR[]` parameter.
fn delete_bound_keys_sql(table: &str, column: &str) -> String {
    format!("DELETE FROM {table} WHERE {column} IN (SELECT unnest(?::VARCHAR[]))")
}

/// Most record keys to delete, or stored paths to replace, that a batch binds to its statements
/// as lists rather than staging them. Writer batch bench on the 100k database, p50: one file
/// 5.1 -> 3.9 ms, 100 files 9.6 -> 8.5 ms; but the bulk load's 5,000-file batches spent 740 ms
/// in all on the bound deletes against 570 staged, so large batches stage.
pub(crate) const BOUND_LIST_MAX: usize = 256;

/// Deletes the `file_index` rows of the paths bound as one `VARCHAR[]` parameter.
const DELETE_BOUND_FILE_INDEX_ROWS: &str = "DELETE FROM file_index WHERE file_path IN (SELECT unnest(?::VARCHAR[]))";

/// Replaces the staged paths' `file_index` rows, staged with their `attempts` (consecutive
/// failures of a path, see [`COUNT_ATTEMPTS`]): a delete through the primary key's index and an
/// insert. Not `INSERT … ON CONFLICT DO UPDATE`: on a 1M-row `file_index` that took 41 ms for 100
/// staged rows, this 3.2 ms.
pub(crate) const REPLACE_FILE_INDEX: &str = "
DELETE FROM file_index WHERE file_path IN (SELECT file_path FROM temp.stage_file_index);
INSERT INTO file_index
SELECT file_path, source, kind, mtime, mtime_ns, size, record_id, status, error_message, attempts, now()
FROM temp.stage_file_index;
";

/// A staged failure (staged with `attempts` 1) counts on from the attempts its path's row holds;
/// run before [`REPLACE_FILE_INDEX`], and only when the batch stages a failure.
pub(crate) const COUNT_ATTEMPTS: &str = "
UPDATE temp.stage_file_index s SET attempts = f.attempts + 1
FROM file_index f WHERE f.file_path = s.file_path AND s.status <> 'indexed';
";

/// Records a changed file held before and holds no longer (its content now names another id):
/// candidates for deletion once `file_index` has the batch's rows, like a removed file's.
const FIND_REPLACED_RECORD_IDS: &str = "
INSERT INTO temp.stage_gone SELECT f.kind, f.record_id FROM file_index f JOIN temp.stage_file_index s ON s.file_path = f.file_path
WHERE s.status = 'indexed' AND f.record_id IS NOT NULL AND s.record_id IS DISTINCT FROM f.record_id;
";

/// `file_index` paths whose record id is not what their file name says (`<id>.json`). A suffix
/// test, not a regular expression: 127 ms against 693 ms over 1M paths.
const ODD_PATHS: &str = "
SELECT file_path FROM file_index WHERE status = 'indexed' AND record_id IS NOT NULL
    AND NOT suffix(file_path, '/' || record_id || '.json')
";

/// Finds the sessions of removed files, then forgets the files. Records are handled after.
const FORGET_REMOVED: &str = "
INSERT INTO temp.stage_gone SELECT kind, record_id FROM file_index
    WHERE file_path IN (SELECT file_path FROM temp.stage_removed);
DELETE FROM file_index WHERE file_path IN (SELECT file_path FROM temp.stage_removed);
";

/// Finds records of removed files that no other indexed file still holds (a session that moved
/// between project folders keeps its row).
const FIND_GONE_ORPHANS: &str = "
CREATE OR REPLACE TEMP TABLE stage_gone_orphans AS
    SELECT g.kind, g.record_id FROM temp.stage_gone g
    WHERE g.record_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM file_index f WHERE f.kind = g.kind AND f.record_id = g.record_id AND f.status = 'indexed');
";

/// With several sources: keeps records whose row another source wrote (`{source}` is the
/// batch's source).
const KEEP_OTHER_SOURCES_ORPHANS: &str = "
DELETE FROM temp.stage_gone_orphans o WHERE
    (o.kind = 'project' AND o.record_id IN (SELECT id FROM projects WHERE source <> '{source}'))
    OR (o.kind = 'session' AND o.record_id IN (SELECT id FROM sessions WHERE source <> '{source}'))
    OR (o.kind = 'message' AND o.record_id IN (SELECT id FROM messages WHERE source <> '{source}'))
    OR (o.kind = 'part' AND o.record_id IN (SELECT id FROM parts WHERE source <> '{source}'))
    OR (o.kind = 'todo' AND o.record_id IN (SELECT session_id FROM todos WHERE source <> '{source}'));
";

/// Deletes the orphaned records of removed files.
const DELETE_GONE_RECORDS: &str = "
DELETE FROM projects WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'project');
DELETE FROM sessions WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'session');
DELETE FROM messages WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'message');
DELETE FROM parts WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'part');
DELETE FROM step_events WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'part');
DELETE FROM file_operations WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'part');
DELETE FROM todos WHERE session_id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'todo');
DELETE FROM file_diffs WHERE session_id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'session_diff');
";

/// With several sources: finds the staged keys another source holds in a newer version, and
/// unstages them (`{source}` is the batch's source). Equal versions go to the incoming record.
const FIND_SUPERSEDED: &str = "
CREATE OR REPLACE TEMP TABLE stage_superseded AS
    SELECT s.tbl, s.key FROM temp.stage_keys s JOIN projects t ON s.tbl = 'project' AND t.id = s.key
        WHERE t.source <> '{source}' AND t.version_ms > s.version_ms
    UNION SELECT s.tbl, s.key FROM temp.stage_keys s JOIN sessions t ON s.tbl = 'session' AND t.id = s.key
        WHERE t.source <> '{source}' AND t.version_ms > s.version_ms
    UNION SELECT s.tbl, s.key FROM temp.stage_keys s JOIN messages t ON s.tbl = 'message' AND t.id = s.key
        WHERE t.source <> '{source}' AND t.version_ms > s.version_ms
    UNION SELECT s.tbl, s.key FROM temp.stage_keys s JOIN parts t ON s.tbl = 'part' AND t.id = s.key
        WHERE t.source <> '{source}' AND t.version_ms > s.version_ms
    UNION SELECT s.tbl, s.key FROM temp.stage_keys s JOIN todos t ON s.tbl = 'todo' AND t.session_id = s.key
        WHERE t.source <> '{source}' AND t.version_ms > s.version_ms;
DELETE FROM temp.stage_keys k USING temp.stage_superseded x WHERE k.tbl = x.tbl AND k.key = x.key;
";

/// Sessions whose records a source's row deletes touch (read before the rows go).
const REMOVED_RECORD_SESSIONS: &str = "
SELECT record_id FROM temp.stage_removed_records WHERE kind IN ('session', 'todo')
UNION SELECT m.session_id FROM messages m JOIN temp.stage_removed_records g ON g.kind = 'message' AND g.record_id = m.id
UNION SELECT p.session_id FROM parts p JOIN temp.stage_removed_records g ON g.kind = 'part' AND g.record_id = p.id
";

/// Files of other sources holding records the batch's source deletes (`{source}`).
const RESURFACED_FILES: &str = "
SELECT f.file_path, f.kind FROM file_index f JOIN temp.stage_removed_records g ON f.kind = g.kind AND f.record_id = g.record_id
WHERE f.source <> '{source}' AND f.status = 'indexed'
";

/// Deletes the rows a database source no longer holds, and only that source's rows
/// (`{source}` is the batch's source); their `file_index` errors go too.
const DELETE_REMOVED_RECORDS: &str = "
DELETE FROM projects WHERE source = '{source}' AND id IN (SELECT record_id FROM temp.stage_removed_records WHERE kind = 'project');
DELETE FROM sessions WHERE source = '{source}' AND id IN (SELECT record_id FROM temp.stage_removed_records WHERE kind = 'session');
DELETE FROM messages WHERE source = '{source}' AND id IN (SELECT record_id FROM temp.stage_removed_records WHERE kind = 'message');
DELETE FROM step_events WHERE id IN (
    SELECT p.id FROM parts p JOIN temp.stage_removed_records g ON g.kind = 'part' AND g.record_id = p.id WHERE p.source = '{source}');
DELETE FROM file_operations WHERE id IN (
    SELECT p.id FROM parts p JOIN temp.stage_removed_records g ON g.kind = 'part' AND g.record_id = p.id WHERE p.source = '{source}');
DELETE FROM parts WHERE source = '{source}' AND id IN (SELECT record_id FROM temp.stage_removed_records WHERE kind = 'part');
DELETE FROM todos WHERE source = '{source}' AND session_id IN (SELECT record_id FROM temp.stage_removed_records WHERE kind = 'todo');
DELETE FROM file_index WHERE source = '{source}' AND status = 'error'
    AND record_id IN (SELECT record_id FROM temp.stage_removed_records);
";

/// A database source's rows that decode now clear their earlier `file_index` errors.
const CLEAR_FIXED_ROW_ERRORS: &str = "
DELETE FROM file_index WHERE source = '{source}' AND status = 'error' AND record_id IN (SELECT key FROM temp.stage_keys);
";

/// Sessions whose records a removal touches (read before the records go).
const GONE_SESSIONS: &str = "
SELECT record_id FROM temp.stage_gone WHERE kind IN ('session', 'todo', 'session_diff') AND record_id IS NOT NULL
UNION SELECT m.session_id FROM messages m JOIN temp.stage_gone g ON g.kind = 'message' AND g.record_id = m.id
UNION SELECT p.session_id FROM parts p JOIN temp.stage_gone g ON g.kind = 'part' AND g.record_id = p.id
";

/// What a batch put in the staging tables, to be emptied before it commits.
#[derive(Clone, Copy, Default)]
struct Staged {
    /// `stage_keys`.
    keys: bool,
    /// `stage_file_index`.
    file_index: bool,
}

/// Empties the staging tables a batch filled; each statement costs a commit ~0.2 ms, so only the
/// tables in use are cleared.
fn clear_stage_sql(batch: &WriteBatch, staged: Staged) -> String {
    let mut sql = String::new();
    if staged.keys {
        sql.push_str("DELETE FROM temp.stage_keys;");
    }
    if staged.file_index {
        sql.push_str("DELETE FROM temp.stage_file_index;");
    }
    if !batch.removed.is_empty() {
        sql.push_str("DELETE FROM temp.stage_removed; DELETE FROM temp.stage_gone;");
    }
    if !batch.removed_records.is_empty() {
        sql.push_str("DELETE FROM temp.stage_removed_records;");
    }
    sql
}

/// Where a batch's time went, phase by phase; logged at `trace` with each commit so a slow
/// commit can be explained without a profiler.
struct Phases {
    last: Instant,
    spent: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start() -> Phases {
        Phases { last: Instant::now(), spent: Vec::with_capacity(12) }
    }

    /// Closes the phase that ran since the previous mark.
    fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.spent.push((phase, now - self.last));
        self.last = now;
    }

    fn summary(&self) -> String {
        self.spent.iter().map(|(phase, spent)| format!("{phase}={:.2}", spent.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(" ")
    }
}

fn temp_appender<'c>(connection: &'c duckdb::Connection, table: &str) -> duckdb::Result<Appender<'c>> {
    connection.appender_to_catalog_and_db(table, "temp", "main")
}

impl Store {
    /// Writes one batch in one transaction and reports what changed. On error nothing of the
    /// batch is visible and the caller may retry it.
    pub fn write_batch(&mut self, batch: &WriteBatch) -> Result<BatchReport> {
        let started = Instant::now();
        let mut phases = Phases::start();
        self.ensure_staging_tables()?;
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(|source| self.query_error("beginning a batch", source))?;
        phases.mark("begin");
        match self.clear_derived_mark_in_transaction().and_then(|()| self.write_batch_in_transaction(batch, &mut phases)) {
            Ok(mut report) => {
                self.connection.execute_batch("COMMIT").map_err(|source| self.query_error("committing a batch", source))?;
                phases.mark("commit");
                self.derived_mark_to_clear = false;
                report.duration = started.elapsed();
                self.note_odd_paths(batch);
                if let Some(touched) = self.touched.as_mut() {
                    touched.extend(report.touched_sessions.iter().cloned());
                }
                tracing::trace!(files = batch.files.len(), rows = batch.rows.len(), phases_ms = %phases.summary(), "batch phases");
                if tracing::enabled!(target: "ducktail_store::memory", tracing::Level::TRACE) {
                    tracing::trace!(target: "ducktail_store::memory", held = %self.memory_by_tag(), "duckdb memory");
                }
                Ok(report)
            }
            Err(error) => {
                let _ = self.connection.execute_batch("ROLLBACK");
                self.odd_paths = None;
                Err(error)
            }
        }
    }

    /// DuckDB's memory by tag, largest first, in MB (`duckdb_memory()`), for tracing where the
    /// buffer pool goes.
    fn memory_by_tag(&self) -> String {
        let held = self.connection.prepare_cached(
            "SELECT tag, memory_usage_bytes // 1048576, temporary_storage_bytes // 1048576 FROM duckdb_memory() \
             WHERE memory_usage_bytes + temporary_storage_bytes > 1048576 ORDER BY memory_usage_bytes DESC",
        );
        let rows = held.and_then(|mut statement| {
            statement
                .query_map([], |row| Ok(format!("{}={}(+{} spilled)", row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)))?
                .collect::<duckdb::Result<Vec<_>>>()
        });
        rows.map(|rows| rows.join(" ")).unwrap_or_else(|error| error.to_string())
    }

    /// Whether one of `files` (a batch's files whose paths may be stored) can change the record
    /// id its path holds (see `Store::odd_paths`).
    fn may_replace_record_ids<'f>(&mut self, mut files: impl Iterator<Item = &'f DecodedFile>) -> Result<bool> {
        if self.odd_paths.is_none() {
            let paths = self
                .reader()?
                .query_values(ODD_PATHS, 1, "finding files whose record id is not their name")?
                .into_iter()
                .filter_map(|row| match row.into_iter().next() {
                    Some(Value::Text(path)) => Some(path),
                    _ => None,
                })
                .collect();
            self.odd_paths = Some(paths);
        }
        let odd = self.odd_paths.as_ref().expect("loaded above");
        Ok(files.any(|file| match &file.outcome {
            FileOutcome::Decoded(records) => records.record_id() != file.path_record_id || odd.contains(file.path.to_string_lossy().as_ref()),
            FileOutcome::NotReady(_) | FileOutcome::Failed(_) => false,
        }))
    }

    /// Brings `odd_paths` up to date with a committed batch.
    fn note_odd_paths(&mut self, batch: &WriteBatch) {
        let Some(odd) = self.odd_paths.as_mut() else { return };
        for file in &batch.files {
            let path = file.path.to_string_lossy().into_owned();
            match &file.outcome {
                FileOutcome::Decoded(records) if records.record_id() != file.path_record_id => {
                    odd.insert(path);
                }
                FileOutcome::Decoded(_) => {
                    odd.remove(&path);
                }
                // Left as it was: a wrong "odd" only costs a lookup.
                FileOutcome::NotReady(_) | FileOutcome::Failed(_) => {}
            }
        }
        for removed in &batch.removed {
            odd.remove(&removed.path);
        }
    }

    fn write_batch_in_transaction(&mut self, batch: &WriteBatch, phases: &mut Phases) -> Result<BatchReport> {
        let mut report = BatchReport::default();
        let mut grouped = Grouped::default();
        for file in &batch.files {
            match &file.outcome {
                FileOutcome::Decoded(records) => {
                    report.indexed += 1;
                    if let Some(session_id) = records.session_id() {
                        report.touched_sessions.insert(session_id.to_owned());
                    }
                    grouped.add(records, file.stamp.mtime_ns.div_euclid(1_000_000));
                }
                FileOutcome::NotReady(_) => report.pending += 1,
                FileOutcome::Failed(_) => report.errors += 1,
            }
        }
        for row in &batch.rows {
            report.indexed += 1;
            if let Some(session_id) = row.records.session_id() {
                report.touched_sessions.insert(session_id.to_owned());
            }
            grouped.add(&row.records, row.version_ms);
        }
        report.errors += batch.rejected.len();
        phases.mark("group");
        let other_sources = self.other_sources_written(batch.source)?;
        let with_source = |sql: &str| sql.replace("{source}", batch.source);
        if self.tracks_known_keys && self.known_keys.is_none() {
            let loading = Instant::now();
            let known = KnownKeys::load(&self.connection).map_err(|source| self.query_error("reading the stored record keys and paths", source))?;
            tracing::debug!(keys = known.len(), took = ?loading.elapsed(), "stored record keys and paths loaded");
            self.known_keys = Some(known);
        }
        // A key the tables certainly do not hold has no rows to delete.
        let known_keys = self.known_keys.as_ref();
        let may_be_stored = |key_set: &str, key: &str| known_keys.is_none_or(|known| known.may_hold(key_set, key));
        // A few keys to delete (a live batch's, or a large batch of new records) are bound to
        // each delete as one list, two statements fewer than staging them. The keys go into a
        // staging table when a statement must join them with more than the tables they replace
        // rows of (another source's versions, a database source's earlier row errors), and when
        // many may be stored, where the join with a staged table is the faster of the two.
        let keys_to_delete: usize =
            REPLACED_BY_KEY.iter().map(|(key_set, _)| grouped.keys(key_set).into_iter().filter(|key| may_be_stored(key_set, key)).count()).sum();
        let mut staged = Staged { keys: other_sources || !batch.rows.is_empty() || keys_to_delete > BOUND_LIST_MAX, file_index: false };
        if staged.keys {
            self.stage_keys(&grouped).map_err(|source| self.query_error("staging record keys", source))?;
            phases.mark("stage_keys");
            if other_sources {
                report.superseded = self.unstage_superseded(&mut grouped, &with_source(FIND_SUPERSEDED))?;
                phases.mark("superseded");
            }
            let deletes: String = REPLACED_BY_KEY
                .iter()
                .filter(|(key_set, _)| grouped.keys(key_set).into_iter().any(|key| may_be_stored(key_set, key)))
                .flat_map(|(key_set, tables)| tables.iter().map(|(table, column)| delete_staged_keys_sql(key_set, table, column)))
                .collect();
            if !deletes.is_empty() {
                self.connection.execute_batch(&deletes).map_err(|source| self.query_error("deleting replaced records", source))?;
            }
        } else {
            self.delete_bound_keys(&grouped, may_be_stored).map_err(|source| self.query_error("deleting replaced records", source))?;
        }
        report.records_by_table = grouped.row_counts();
        phases.mark("delete_replaced");
        self.append_records(&grouped, batch.source).map_err(|source| self.query_error("appending records", source))?;
        if let Some(known) = self.known_keys.as_mut() {
            for (key_set, _) in REPLACED_BY_KEY {
                for key in grouped.keys(key_set) {
                    known.insert(key_set, key);
                }
            }
        }
        phases.mark("append");
        if !batch.rows.is_empty() {
            self.connection.execute_batch(&with_source(CLEAR_FIXED_ROW_ERRORS)).map_err(|source| self.query_error("clearing fixed row errors", source))?;
        }
        // A path `file_index` certainly has no row for (a cold load's listing, or one the known
        // keys have never seen) gets its row appended: no stored attempts to count on from, no
        // stored record id to replace, nothing to delete.
        let rows = file_index_rows(&batch.files);
        let known_keys = self.known_keys.as_ref();
        let (new_rows, maybe_rows): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|row| batch.paths_are_new || known_keys.is_some_and(|known| !known.may_hold_path(&row.path)));
        self.append_file_index_rows(&new_rows, batch.source).map_err(|source| self.query_error("appending file_index rows", source))?;
        // The others' rows are replaced, bound as one list in a small batch; staged when a failure
        // must count on from its path's stored attempts, or a file's content may name another
        // record id.
        let replaces_ids = !maybe_rows.is_empty() && self.may_replace_record_ids(maybe_rows.iter().map(|row| row.file))?;
        let all_decoded = batch.rejected.is_empty() && maybe_rows.iter().all(|row| row.status == FileStatus::Indexed);
        let mut replaced_ids = 0;
        if maybe_rows.is_empty() && batch.rejected.is_empty() {
            // Every row was new.
        } else if maybe_rows.len() <= BOUND_LIST_MAX && all_decoded && !replaces_ids {
            let paths = Value::List(maybe_rows.iter().map(|row| Value::Text(row.path.clone())).collect());
            self.connection
                .prepare_cached(DELETE_BOUND_FILE_INDEX_ROWS)
                .and_then(|mut delete| delete.execute([&paths]))
                .and_then(|_| self.append_file_index_rows(&maybe_rows, batch.source))
                .map_err(|source| self.query_error("replacing file_index rows", source))?;
        } else {
            staged.file_index = true;
            let staged_failures = self.stage_file_index(&maybe_rows, batch).map_err(|source| self.query_error("staging file_index rows", source))?;
            phases.mark("stage_file_index");
            if replaces_ids {
                replaced_ids =
                    self.connection.execute(FIND_REPLACED_RECORD_IDS, []).map_err(|source| self.query_error("finding replaced record ids", source))?;
            }
            if staged_failures {
                self.connection.execute_batch(COUNT_ATTEMPTS).map_err(|source| self.query_error("counting failed attempts", source))?;
            }
            self.connection.execute_batch(REPLACE_FILE_INDEX).map_err(|source| self.query_error("replacing file_index rows", source))?;
        }
        if let Some(known) = self.known_keys.as_mut() {
            let database = batch.database_path.as_deref().unwrap_or("database");
            for row in new_rows.iter().chain(&maybe_rows) {
                known.insert_path(&row.path);
            }
            for row in &batch.rejected {
                known.insert_path(&rejected_row_path(database, row));
            }
        }
        phases.mark("replace_file_index");
        if replaced_ids > 0 {
            // Not subject to the delete policy: the file is there, its content changed.
            self.delete_gone_records(batch, other_sources, &mut report)?;
            self.connection.execute_batch("DELETE FROM temp.stage_gone;").map_err(|source| self.query_error("clearing staging tables", source))?;
        }
        if !batch.removed.is_empty() {
            report.removed = batch.removed.len();
            self.remove_files(batch, other_sources, &mut report)?;
        }
        if !batch.removed_records.is_empty() {
            report.removed += batch.removed_records.len();
            self.remove_records(batch, &mut report)?;
        }
        phases.mark("removals");
        let clear = clear_stage_sql(batch, staged);
        if !clear.is_empty() {
            self.connection.execute_batch(&clear).map_err(|source| self.query_error("clearing staging tables", source))?;
        }
        phases.mark("clear_stage");
        if !(grouped.projects.is_empty() && grouped.sessions.is_empty() && grouped.messages.is_empty() && grouped.parts.is_empty() && grouped.todos.is_empty())
        {
            self.note_source_written(batch.source);
        }
        Ok(report)
    }

    /// Creates the connection's staging tables the first time a batch needs them.
    pub(crate) fn ensure_staging_tables(&mut self) -> Result<()> {
        if !self.staging_ready {
            self.connection.execute_batch(TEMP_TABLES).map_err(|source| self.query_error("creating staging tables", source))?;
            self.staging_ready = true;
        }
        Ok(())
    }

    /// Unstages the keys another source holds in a newer version and drops those records from
    /// the batch; returns how many.
    fn unstage_superseded(&self, grouped: &mut Grouped<'_>, sql: &str) -> Result<usize> {
        self.connection.execute_batch(sql).map_err(|source| self.query_error("finding superseded records", source))?;
        let mut statement =
            self.connection.prepare("SELECT tbl, key FROM temp.stage_superseded").map_err(|source| self.query_error("reading superseded records", source))?;
        let superseded = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<(String, String)>>>())
            .map_err(|source| self.query_error("reading superseded records", source))?;
        for (key_set, key) in &superseded {
            grouped.drop_superseded(key_set, key);
        }
        Ok(superseded.len())
    }

    fn stage_keys(&self, grouped: &Grouped<'_>) -> duckdb::Result<()> {
        let mut keys = temp_appender(&self.connection, "stage_keys")?;
        let sets: [StagedKeys<'_>; 6] = [
            ("project", grouped.projects.iter().map(|(key, (_, version))| (*key, Some(*version))).collect()),
            ("session", grouped.sessions.iter().map(|(key, (_, version))| (*key, Some(*version))).collect()),
            ("message", grouped.messages.iter().map(|(key, (_, version))| (*key, Some(*version))).collect()),
            ("part", grouped.parts.iter().map(|(key, (_, _, _, version))| (*key, Some(*version))).collect()),
            ("todo", grouped.todos.iter().map(|(key, (_, version))| (*key, Some(*version))).collect()),
            ("session_diff", grouped.file_diffs.keys().map(|key| (*key, None)).collect()),
        ];
        for (table, keys_and_versions) in sets {
            for (id, version) in keys_and_versions {
                keys.append_row(params![table, id, version])?;
            }
        }
        keys.flush()
    }

    /// Deletes the rows the batch replaces, each key set's keys that may be stored bound as one
    /// list parameter of a cached statement.
    fn delete_bound_keys(&self, grouped: &Grouped<'_>, may_be_stored: impl Fn(&str, &str) -> bool) -> duckdb::Result<()> {
        for (key_set, tables) in REPLACED_BY_KEY {
            let keys: Vec<&str> = grouped.keys(key_set).into_iter().filter(|key| may_be_stored(key_set, key)).collect();
            if keys.is_empty() {
                continue;
            }
            let keys = Value::List(keys.into_iter().map(|key| Value::Text(key.to_owned())).collect());
            for (table, column) in tables {
                self.connection.prepare_cached(&delete_bound_keys_sql(table, column))?.execute([&keys])?;
            }
        }
        Ok(())
    }

    /// Appends `file_index` rows whose paths hold none: new, or deleted just before by the caller.
    fn append_file_index_rows(&self, rows: &[FileIndexRow<'_>], source: &str) -> duckdb::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let indexed_at = crate::now_ns() / 1_000;
        let rows = file_index_columns(rows, source).timestamp_us("indexed_at", |_| Some(indexed_at)).finish();
        let mut appender = self.connection.appender("file_index")?;
        appender.append_record_batch(rows)?;
        appender.flush()
    }

    fn append_records(&self, grouped: &Grouped<'_>, source: &str) -> duckdb::Result<()> {
        let app = ducktail_model::app_of_source(source);
        let append = |table: &str, batch: arrow_array::RecordBatch| -> duckdb::Result<()> {
            if batch.num_rows() == 0 {
                return Ok(());
            }
            let mut appender = self.connection.appender(table)?;
            appender.append_record_batch(batch)?;
            appender.flush()
        };
        let projects: Vec<(&ProjectRecord, i64)> = grouped.projects.values().map(|(project, version)| (*project, *version)).collect();
        append("projects", columns::project_columns(&projects, source))?;
        let sessions: Vec<(&SessionRecord, i64)> = grouped.sessions.values().map(|(session, version)| (*session, *version)).collect();
        append("sessions", columns::session_columns(&sessions, source, app))?;
        let messages: Vec<(&MessageRecord, i64)> = grouped.messages.values().map(|(message, version)| (*message, *version)).collect();
        append("messages", columns::message_columns(&messages, source, app))?;
        let parts: Vec<(&PartRecord, i64)> = grouped.parts.values().map(|(part, _, _, version)| (*part, *version)).collect();
        append("parts", columns::part_columns(&parts, source, app))?;
        let steps: Vec<(&StepEvent, i64)> = grouped.parts.values().filter_map(|(_, step, _, version)| step.map(|step| (step, *version))).collect();
        append("step_events", columns::step_columns(&steps, app))?;
        let operations: Vec<&FileOperation> = grouped.parts.values().filter_map(|(_, _, operation, _)| *operation).collect();
        append("file_operations", columns::operation_columns(&operations))?;
        let todos: Vec<(&TodoRecord, i64)> = grouped.todos.values().flat_map(|(items, version)| items.iter().map(move |item| (item, *version))).collect();
        append("todos", columns::todo_columns(&todos, source))?;
        let diffs: Vec<&FileDiffRecord> = grouped.file_diffs.values().flat_map(|items| items.iter()).collect();
        append("file_diffs", columns::diff_columns(&diffs, source))?;
        Ok(())
    }

    /// Stages `rows` and the batch's rejected database rows as `file_index` rows; returns whether
    /// any of them is a failure (whose attempts count on from its path's row).
    fn stage_file_index(&self, rows: &[FileIndexRow<'_>], batch: &WriteBatch) -> duckdb::Result<bool> {
        if rows.is_empty() && batch.rejected.is_empty() {
            return Ok(false);
        }
        let mut appender = temp_appender(&self.connection, "stage_file_index")?;
        let failures = !batch.rejected.is_empty() || rows.iter().any(|row| row.status != FileStatus::Indexed);
        if !rows.is_empty() {
            appender.append_record_batch(file_index_columns(rows, batch.source).finish())?;
        }
        let database = batch.database_path.as_deref().unwrap_or("database");
        for row in &batch.rejected {
            appender.append_row(params![
                rejected_row_path(database, row),
                batch.source,
                row.kind.as_str(),
                Option::<Value>::None,
                0i64,
                0i64,
                row.id,
                FileStatus::Error.as_str(),
                row.reason,
                1i32,
            ])?;
        }
        appender.flush()?;
        Ok(failures)
    }

    fn remove_files(&mut self, batch: &WriteBatch, other_sources: bool, report: &mut BatchReport) -> Result<()> {
        {
            let mut appender = temp_appender(&self.connection, "stage_removed").map_err(|source| self.query_error("staging removed files", source))?;
            for removed in &batch.removed {
                appender.append_row(params![removed.path]).map_err(|source| self.query_error("staging removed files", source))?;
            }
            appender.flush().map_err(|source| self.query_error("staging removed files", source))?;
        }
        self.connection.execute_batch(FORGET_REMOVED).map_err(|source| self.query_error("forgetting removed files", source))?;
        if batch.on_delete == OnDelete::Remove {
            self.delete_gone_records(batch, other_sources, report)?;
        }
        Ok(())
    }

    /// Deletes the records staged in `stage_gone` that no indexed file holds any more, and
    /// reports their sessions as touched.
    fn delete_gone_records(&mut self, batch: &WriteBatch, other_sources: bool, report: &mut BatchReport) -> Result<()> {
        let mut statement = self.connection.prepare(GONE_SESSIONS).map_err(|source| self.query_error("finding sessions of removed records", source))?;
        let sessions = statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<String>>>())
            .map_err(|source| self.query_error("finding sessions of removed records", source))?;
        report.touched_sessions.extend(sessions);
        let mut statements = FIND_GONE_ORPHANS.to_owned();
        if other_sources {
            statements.push_str(&KEEP_OTHER_SOURCES_ORPHANS.replace("{source}", batch.source));
        }
        statements.push_str(DELETE_GONE_RECORDS);
        self.connection.execute_batch(&statements).map_err(|source| self.query_error("deleting orphaned records", source))
    }

    /// Deletes the records a database source no longer holds (only that source's rows).
    fn remove_records(&mut self, batch: &WriteBatch, report: &mut BatchReport) -> Result<()> {
        {
            let mut appender =
                temp_appender(&self.connection, "stage_removed_records").map_err(|source| self.query_error("staging removed records", source))?;
            for record in &batch.removed_records {
                appender.append_row(params![record.kind.as_str(), record.id]).map_err(|source| self.query_error("staging removed records", source))?;
            }
            appender.flush().map_err(|source| self.query_error("staging removed records", source))?;
        }
        let mut statement =
            self.connection.prepare(REMOVED_RECORD_SESSIONS).map_err(|source| self.query_error("finding sessions of removed records", source))?;
        let sessions = statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<String>>>())
            .map_err(|source| self.query_error("finding sessions of removed records", source))?;
        report.touched_sessions.extend(sessions);
        let mut statement = self
            .connection
            .prepare(&RESURFACED_FILES.replace("{source}", batch.source))
            .map_err(|source| self.query_error("finding other sources' copies of removed records", source))?;
        report.resurfaced = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error("finding other sources' copies of removed records", source))?;
        self.connection
            .execute_batch(&DELETE_REMOVED_RECORDS.replace("{source}", batch.source))
            .map_err(|source| self.query_error("deleting removed records", source))
    }

    /// Whether a source other than `source` has written records to this database (checked in
    /// the database once per store, then tracked).
    fn other_sources_written(&mut self, source: &str) -> Result<bool> {
        if self.sources_written.is_none() {
            let mut statement = self
                .connection
                .prepare(
                    "SELECT source FROM (SELECT DISTINCT source FROM projects UNION SELECT DISTINCT source FROM sessions
                     UNION SELECT DISTINCT source FROM messages UNION SELECT DISTINCT source FROM parts
                     UNION SELECT DISTINCT source FROM todos) WHERE source IS NOT NULL",
                )
                .map_err(|source| self.query_error("listing record sources", source))?;
            let sources = statement
                .query_map([], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<duckdb::Result<BTreeSet<String>>>())
                .map_err(|source| self.query_error("listing record sources", source))?;
            self.sources_written = Some(sources);
        }
        Ok(self.sources_written.as_ref().is_some_and(|sources| sources.iter().any(|written| written != source)))
    }

    fn note_source_written(&mut self, source: &str) {
        if let Some(sources) = self.sources_written.as_mut() {
            sources.insert(source.to_owned());
        }
    }
}

/// A file's `file_index` row, as far as the file decides it.
struct FileIndexRow<'a> {
    path: String,
    file: &'a DecodedFile,
    status: FileStatus,
    record_id: &'a str,
    error_message: Option<&'a str>,
}

/// The `file_index` rows of a batch's files, one per path: the last outcome for a path wins, as
/// for records.
fn file_index_rows(files: &[DecodedFile]) -> Vec<FileIndexRow<'_>> {
    let mut latest = HashMap::with_capacity(files.len());
    for file in files {
        latest.insert(file.path.to_string_lossy().into_owned(), file);
    }
    latest
        .into_iter()
        .map(|(path, file)| {
            let (status, record_id, error_message) = match &file.outcome {
                FileOutcome::Decoded(records) => (FileStatus::Indexed, records.record_id(), None),
                FileOutcome::NotReady(message) => (FileStatus::Pending, file.path_record_id.as_str(), Some(message.as_str())),
                FileOutcome::Failed(message) => (FileStatus::Error, file.path_record_id.as_str(), Some(message.as_str())),
            };
            FileIndexRow { path, file, status, record_id, error_message }
        })
        .collect()
}

/// `file_index`'s columns up to `attempts`, which is what `stage_file_index` holds; a direct
/// append adds `indexed_at`. A failure has attempts 1: staged, it counts on from its path's
/// stored row ([`COUNT_ATTEMPTS`]).
fn file_index_columns<'r>(rows: &'r [FileIndexRow<'r>], source: &'r str) -> ArrowRows<'r, FileIndexRow<'r>> {
    ArrowRows::new(rows)
        .text("file_path", |row| Some(&row.path))
        .text("source", |_| Some(source))
        .text("kind", |row| Some(row.file.kind.as_str()))
        .timestamp_us("mtime", |row| Some(row.file.stamp.mtime_ns / 1_000))
        .int64("mtime_ns", |row| Some(row.file.stamp.mtime_ns))
        .int64("size", |row| Some(row.file.stamp.size))
        .text("record_id", |row| Some(row.record_id))
        .text("status", |row| Some(row.status.as_str()))
        .text("error_message", |row| row.error_message)
        .int32("attempts", |row| Some(i32::from(row.status != FileStatus::Indexed)))
}

/// The `file_index.file_path` of a database row that did not decode: `<database>#<kind>/<id>`.
pub fn rejected_row_path(database: &str, row: &RejectedRow) -> String {
    format!("{database}#{}/{}", row.kind.as_str(), row.id)
}
