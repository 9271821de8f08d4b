//! The batch writer: one transaction per batch, records and their `file_index` rows together.
//!
//! Records are replaced by key, never updated row by row: the batch's keys go into a temp table,
//! the old rows with those keys are deleted with one statement per table, and the new rows are
//! appended with DuckDB's Appender. Because the one writer does both inside one transaction, a
//! record id is never present twice and a reader never sees the gap.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use duckdb::types::{TimeUnit, Value};
use duckdb::{params, Appender};
use ducktail_model::{
    DecodedFile, FileDiffRecord, FileOperation, FileOutcome, FileStatus, MessageRecord, PartRecord,
    ProjectRecord, Records, SessionRecord, StepEvent, TodoRecord,
};

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
    /// Time spent in the transaction.
    pub duration: Duration,
}

/// Records of one batch grouped by table, deduplicated by key (the last file wins).
#[derive(Default)]
struct Grouped<'a> {
    projects: HashMap<&'a str, &'a ProjectRecord>,
    sessions: HashMap<&'a str, &'a SessionRecord>,
    messages: HashMap<&'a str, &'a MessageRecord>,
    parts: HashMap<&'a str, (&'a PartRecord, Option<&'a StepEvent>, Option<&'a FileOperation>)>,
    todos: HashMap<&'a str, &'a [TodoRecord]>,
    file_diffs: HashMap<&'a str, &'a [FileDiffRecord]>,
}

impl<'a> Grouped<'a> {
    /// Rows this batch appends, per table.
    fn row_counts(&self) -> Vec<(&'static str, usize)> {
        let steps = self.parts.values().filter(|(_, step, _)| step.is_some()).count();
        let operations = self.parts.values().filter(|(_, _, operation)| operation.is_some()).count();
        vec![
            ("projects", self.projects.len()),
            ("sessions", self.sessions.len()),
            ("messages", self.messages.len()),
            ("parts", self.parts.len()),
            ("step_events", steps),
            ("file_operations", operations),
            ("todos", self.todos.values().map(|items| items.len()).sum()),
            ("file_diffs", self.file_diffs.values().map(|items| items.len()).sum()),
        ]
    }

    /// Whether this batch holds keys of `key_set` (a `stage_keys.tbl` value).
    fn has_keys(&self, key_set: &str) -> bool {
        match key_set {
            "project" => !self.projects.is_empty(),
            "session" => !self.sessions.is_empty(),
            "message" => !self.messages.is_empty(),
            "part" => !self.parts.is_empty(),
            "todo" => !self.todos.is_empty(),
            "session_diff" => !self.file_diffs.is_empty(),
            _ => true,
        }
    }

    fn add(&mut self, records: &'a Records) {
        match records {
            Records::Project(project) => {
                self.projects.insert(&project.id, project);
            }
            Records::Session(session) => {
                self.sessions.insert(&session.id, session);
            }
            Records::Message(message) => {
                self.messages.insert(&message.id, message);
            }
            Records::Part { part, step, file_operation } => {
                self.parts.insert(&part.id, (part, step.as_ref(), file_operation.as_ref()));
            }
            Records::Todos { session_id, items } => {
                self.todos.insert(session_id, items);
            }
            Records::FileDiffs { session_id, items } => {
                self.file_diffs.insert(session_id, items);
            }
        }
    }
}

/// Temp tables (connection-local, never logged) that carry a batch's keys into set-based SQL.
const TEMP_TABLES: &str = "
CREATE TEMP TABLE IF NOT EXISTS stage_keys (tbl VARCHAR NOT NULL, key VARCHAR NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS stage_file_index (
    file_path VARCHAR NOT NULL, source VARCHAR NOT NULL, kind VARCHAR NOT NULL, mtime TIMESTAMPTZ,
    mtime_ns BIGINT NOT NULL, size BIGINT NOT NULL, record_id VARCHAR, status VARCHAR NOT NULL,
    error_message VARCHAR);
CREATE TEMP TABLE IF NOT EXISTS stage_removed (file_path VARCHAR NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS stage_gone (kind VARCHAR, record_id VARCHAR);
";

/// Per key set (`stage_keys.tbl`), the statements that delete the rows a batch replaces. Each
/// statement scans its table, so only the sets a batch actually has are run.
const DELETE_REPLACED: [(&str, &str); 6] = [
    ("project", "DELETE FROM projects WHERE id IN (SELECT key FROM temp.stage_keys WHERE tbl = 'project');"),
    ("session", "DELETE FROM sessions WHERE id IN (SELECT key FROM temp.stage_keys WHERE tbl = 'session');"),
    ("message", "DELETE FROM messages WHERE id IN (SELECT key FROM temp.stage_keys WHERE tbl = 'message');"),
    (
        "part",
        "DELETE FROM parts WHERE id IN (SELECT key FROM temp.stage_keys WHERE tbl = 'part');
         DELETE FROM step_events WHERE id IN (SELECT key FROM temp.stage_keys WHERE tbl = 'part');
         DELETE FROM file_operations WHERE id IN (SELECT key FROM temp.stage_keys WHERE tbl = 'part');",
    ),
    ("todo", "DELETE FROM todos WHERE session_id IN (SELECT key FROM temp.stage_keys WHERE tbl = 'todo');"),
    ("session_diff", "DELETE FROM file_diffs WHERE session_id IN (SELECT key FROM temp.stage_keys WHERE tbl = 'session_diff');"),
];

/// Upserts the staged `file_index` rows; `attempts` counts consecutive failures of a path.
const MERGE_FILE_INDEX: &str = "
INSERT INTO file_index
SELECT file_path, source, kind, mtime, mtime_ns, size, record_id, status, error_message,
       CASE WHEN status = 'indexed' THEN 0 ELSE 1 END, now()
FROM temp.stage_file_index
ON CONFLICT (file_path) DO UPDATE SET
    source = excluded.source, kind = excluded.kind, mtime = excluded.mtime,
    mtime_ns = excluded.mtime_ns, size = excluded.size, record_id = excluded.record_id,
    status = excluded.status, error_message = excluded.error_message,
    attempts = CASE WHEN excluded.status = 'indexed' THEN 0 ELSE file_index.attempts + 1 END,
    indexed_at = excluded.indexed_at;
";

/// Finds the sessions of removed files, then forgets the files. Records are handled after.
const FORGET_REMOVED: &str = "
INSERT INTO temp.stage_gone SELECT kind, record_id FROM file_index
    WHERE file_path IN (SELECT file_path FROM temp.stage_removed);
DELETE FROM file_index WHERE file_path IN (SELECT file_path FROM temp.stage_removed);
";

/// Deletes records of removed files unless another indexed file still holds the same id (a
/// session that moved between project folders keeps its row).
const DELETE_GONE_RECORDS: &str = "
CREATE OR REPLACE TEMP TABLE stage_gone_orphans AS
    SELECT g.kind, g.record_id FROM temp.stage_gone g
    WHERE g.record_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM file_index f WHERE f.kind = g.kind AND f.record_id = g.record_id AND f.status = 'indexed');
DELETE FROM projects WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'project');
DELETE FROM sessions WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'session');
DELETE FROM messages WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'message');
DELETE FROM parts WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'part');
DELETE FROM step_events WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'part');
DELETE FROM file_operations WHERE id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'part');
DELETE FROM todos WHERE session_id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'todo');
DELETE FROM file_diffs WHERE session_id IN (SELECT record_id FROM temp.stage_gone_orphans WHERE kind = 'session_diff');
";

/// Sessions whose records a removal touches (read before the records go).
const GONE_SESSIONS: &str = "
SELECT record_id FROM temp.stage_gone WHERE kind IN ('session', 'todo', 'session_diff') AND record_id IS NOT NULL
UNION SELECT m.session_id FROM messages m JOIN temp.stage_gone g ON g.kind = 'message' AND g.record_id = m.id
UNION SELECT p.session_id FROM parts p JOIN temp.stage_gone g ON g.kind = 'part' AND g.record_id = p.id
";

const CLEAR_STAGE: &str = "
DELETE FROM temp.stage_keys; DELETE FROM temp.stage_file_index; DELETE FROM temp.stage_removed;
DELETE FROM temp.stage_gone;
";

fn timestamp_ms(ms: Option<i64>) -> Option<Value> {
    ms.map(|ms| Value::Timestamp(TimeUnit::Millisecond, ms))
}

fn temp_appender<'c>(connection: &'c duckdb::Connection, table: &str) -> duckdb::Result<Appender<'c>> {
    connection.appender_to_catalog_and_db(table, "temp", "main")
}

impl Store {
    /// Writes one batch in one transaction and reports what changed. On error nothing of the
    /// batch is visible and the caller may retry it.
    pub fn write_batch(&mut self, batch: &WriteBatch) -> Result<BatchReport> {
        let started = Instant::now();
        self.connection.execute_batch(TEMP_TABLES).map_err(|source| self.query_error("creating staging tables", source))?;
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(|source| self.query_error("beginning a batch", source))?;
        match self.write_batch_in_transaction(batch) {
            Ok(mut report) => {
                self.connection.execute_batch("COMMIT").map_err(|source| self.query_error("committing a batch", source))?;
                report.duration = started.elapsed();
                Ok(report)
            }
            Err(error) => {
                let _ = self.connection.execute_batch("ROLLBACK");
                Err(error)
            }
        }
    }

    fn write_batch_in_transaction(&mut self, batch: &WriteBatch) -> Result<BatchReport> {
        let mut report = BatchReport::default();
        let mut grouped = Grouped::default();
        for file in &batch.files {
            match &file.outcome {
                FileOutcome::Decoded(records) => {
                    report.indexed += 1;
                    if let Some(session_id) = records.session_id() {
                        report.touched_sessions.insert(session_id.to_owned());
                    }
                    grouped.add(records);
                }
                FileOutcome::NotReady(_) => report.pending += 1,
                FileOutcome::Failed(_) => report.errors += 1,
            }
        }
        report.records_by_table = grouped.row_counts();
        self.stage_keys(&grouped).map_err(|source| self.query_error("staging record keys", source))?;
        let deletes: String = DELETE_REPLACED
            .iter()
            .filter(|(key_set, _)| grouped.has_keys(key_set))
            .map(|(_, statements)| *statements)
            .collect::<Vec<_>>()
            .join("\n");
        if !deletes.is_empty() {
            self.connection.execute_batch(&deletes).map_err(|source| self.query_error("deleting replaced records", source))?;
        }
        self.append_records(&grouped, batch.source).map_err(|source| self.query_error("appending records", source))?;
        self.stage_file_index(batch).map_err(|source| self.query_error("staging file_index rows", source))?;
        self.connection.execute_batch(MERGE_FILE_INDEX).map_err(|source| self.query_error("merging file_index", source))?;
        if !batch.removed.is_empty() {
            report.removed = batch.removed.len();
            self.remove_files(batch, &mut report)?;
        }
        self.connection.execute_batch(CLEAR_STAGE).map_err(|source| self.query_error("clearing staging tables", source))?;
        Ok(report)
    }

    fn stage_keys(&self, grouped: &Grouped<'_>) -> duckdb::Result<()> {
        let mut keys = temp_appender(&self.connection, "stage_keys")?;
        let sets: [(&str, Vec<&str>); 6] = [
            ("project", grouped.projects.keys().copied().collect()),
            ("session", grouped.sessions.keys().copied().collect()),
            ("message", grouped.messages.keys().copied().collect()),
            ("part", grouped.parts.keys().copied().collect()),
            ("todo", grouped.todos.keys().copied().collect()),
            ("session_diff", grouped.file_diffs.keys().copied().collect()),
        ];
        for (table, ids) in sets {
            for id in ids {
                keys.append_row(params![table, id])?;
            }
        }
        keys.flush()
    }

    fn append_records(&self, grouped: &Grouped<'_>, source: &str) -> duckdb::Result<()> {
        let connection = &self.connection;
        if !grouped.projects.is_empty() {
            let mut appender = connection.appender("projects")?;
            for project in grouped.projects.values() {
                appender.append_row(params![
                    project.id,
                    project.worktree,
                    project.vcs,
                    project.name,
                    timestamp_ms(project.created_at),
                    timestamp_ms(project.updated_at),
                    timestamp_ms(project.initialized_at),
                    source,
                    project.raw.json,
                    project.raw.size_bytes,
                    project.raw.truncated,
                ])?;
            }
            appender.flush()?;
        }
        if !grouped.sessions.is_empty() {
            let mut appender = connection.appender("sessions")?;
            for session in grouped.sessions.values() {
                appender.append_row(params![
                    session.id,
                    session.project_id,
                    session.parent_id,
                    session.slug,
                    session.title,
                    session.directory,
                    session.version,
                    timestamp_ms(session.created_at),
                    timestamp_ms(session.updated_at),
                    timestamp_ms(session.archived_at),
                    session.summary_additions,
                    session.summary_deletions,
                    session.summary_files,
                    session.share_url,
                    source,
                    session.raw.json,
                    session.raw.size_bytes,
                    session.raw.truncated,
                ])?;
            }
            appender.flush()?;
        }
        if !grouped.messages.is_empty() {
            let mut appender = connection.appender("messages")?;
            for message in grouped.messages.values() {
                let tokens = &message.tokens;
                appender.append_row(params![
                    message.id,
                    message.session_id,
                    message.role,
                    message.parent_id,
                    message.agent,
                    message.mode,
                    message.provider_id,
                    message.model_id,
                    message.cost,
                    tokens.input,
                    tokens.output,
                    tokens.reasoning,
                    tokens.cache_read,
                    tokens.cache_write,
                    tokens.total,
                    message.finish_reason,
                    message.error_name,
                    message.error_message,
                    message.is_summary,
                    timestamp_ms(message.created_at),
                    timestamp_ms(message.completed_at),
                    source,
                    message.raw.json,
                    message.raw.size_bytes,
                    message.raw.truncated,
                ])?;
            }
            appender.flush()?;
        }
        if !grouped.parts.is_empty() {
            let mut parts = connection.appender("parts")?;
            let mut steps = connection.appender("step_events")?;
            let mut operations = connection.appender("file_operations")?;
            for (part, step, operation) in grouped.parts.values() {
                parts.append_row(params![
                    part.id,
                    part.session_id,
                    part.message_id,
                    part.part_type,
                    part.text,
                    part.tool_name,
                    part.tool_status,
                    part.call_id,
                    part.tool_title,
                    part.tool_input,
                    part.tool_output,
                    part.tool_error,
                    part.child_session_id,
                    part.subagent_type,
                    timestamp_ms(part.started_at),
                    timestamp_ms(part.ended_at),
                    part.content_truncated,
                    source,
                    part.raw.json,
                    part.raw.size_bytes,
                    part.raw.truncated,
                ])?;
                if let Some(step) = step {
                    let tokens = &step.tokens;
                    steps.append_row(params![
                        step.id,
                        step.session_id,
                        step.message_id,
                        step.event_type,
                        step.reason,
                        step.cost,
                        tokens.input,
                        tokens.output,
                        tokens.reasoning,
                        tokens.cache_read,
                        tokens.cache_write,
                        tokens.total,
                        step.snapshot,
                    ])?;
                }
                if let Some(operation) = operation {
                    operations.append_row(params![
                        operation.id,
                        operation.session_id,
                        operation.message_id,
                        operation.operation,
                        operation.file_path,
                        operation.status,
                        operation.additions,
                        operation.deletions,
                        timestamp_ms(operation.started_at),
                    ])?;
                }
            }
            parts.flush()?;
            steps.flush()?;
            operations.flush()?;
        }
        if !grouped.todos.is_empty() {
            let mut appender = connection.appender("todos")?;
            for item in grouped.todos.values().flat_map(|items| items.iter()) {
                appender.append_row(params![
                    item.session_id,
                    item.position,
                    item.todo_id,
                    item.content,
                    item.status,
                    item.priority,
                ])?;
            }
            appender.flush()?;
        }
        if !grouped.file_diffs.is_empty() {
            let mut appender = connection.appender("file_diffs")?;
            for item in grouped.file_diffs.values().flat_map(|items| items.iter()) {
                appender.append_row(params![
                    item.session_id,
                    item.position,
                    item.file,
                    item.status,
                    item.additions,
                    item.deletions,
                    item.before_bytes,
                    item.after_bytes,
                ])?;
            }
            appender.flush()?;
        }
        Ok(())
    }

    fn stage_file_index(&self, batch: &WriteBatch) -> duckdb::Result<()> {
        if batch.files.is_empty() {
            return Ok(());
        }
        // The last outcome for a path wins, as for records.
        let mut latest: HashMap<String, &DecodedFile> = HashMap::with_capacity(batch.files.len());
        for file in &batch.files {
            latest.insert(file.path.to_string_lossy().into_owned(), file);
        }
        let mut appender = temp_appender(&self.connection, "stage_file_index")?;
        for (path, file) in &latest {
            let (status, record_id, error_message) = match &file.outcome {
                FileOutcome::Decoded(records) => (FileStatus::Indexed, records.record_id(), None),
                FileOutcome::NotReady(message) => (FileStatus::Pending, file.path_record_id.as_str(), Some(message.as_str())),
                FileOutcome::Failed(message) => (FileStatus::Error, file.path_record_id.as_str(), Some(message.as_str())),
            };
            appender.append_row(params![
                path,
                batch.source,
                file.kind.as_str(),
                Value::Timestamp(TimeUnit::Microsecond, file.stamp.mtime_ns / 1_000),
                file.stamp.mtime_ns,
                file.stamp.size,
                record_id,
                status.as_str(),
                error_message,
            ])?;
        }
        appender.flush()
    }

    fn remove_files(&mut self, batch: &WriteBatch, report: &mut BatchReport) -> Result<()> {
        {
            let mut appender = temp_appender(&self.connection, "stage_removed")
                .map_err(|source| self.query_error("staging removed files", source))?;
            for removed in &batch.removed {
                appender.append_row(params![removed.path]).map_err(|source| self.query_error("staging removed files", source))?;
            }
            appender.flush().map_err(|source| self.query_error("staging removed files", source))?;
        }
        self.connection.execute_batch(FORGET_REMOVED).map_err(|source| self.query_error("forgetting removed files", source))?;
        if batch.on_delete == OnDelete::Remove {
            let mut statement =
                self.connection.prepare(GONE_SESSIONS).map_err(|source| self.query_error("finding sessions of removed files", source))?;
            let sessions = statement
                .query_map([], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<duckdb::Result<Vec<String>>>())
                .map_err(|source| self.query_error("finding sessions of removed files", source))?;
            report.touched_sessions.extend(sessions);
            self.connection
                .execute_batch(DELETE_GONE_RECORDS)
                .map_err(|source| self.query_error("deleting records of removed files", source))?;
        }
        Ok(())
    }
}
