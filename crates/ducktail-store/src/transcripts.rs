//! Writing what was read from append-only transcripts (Claude Code, Codex CLI): records merged
//! into the record tables by key, lines kept raw, and each file's read position — in one
//! transaction, so a crash never loses a line nor counts one twice.
//!
//! A transcript is read a stretch at a time, and an agent spreads one record over several lines
//! (Claude Code writes a response's usage on every content block's line, a tool's result lines
//! after its call) and several files (a resumed or forked session repeats earlier lines). So a
//! record is never replaced whole: every copy of it — the stored row, then the batch's copies in
//! reading order — is staged, and one row is made per key column by column:
//!
//! - the key (`id`) and the columns of [`FIRST_WINS`] keep the first value seen (a forked file
//!   never moves a response to its own session);
//! - `created_at` and `started_at` keep the earliest, `updated_at`, `completed_at`, `ended_at`
//!   and `version_ms` the latest;
//! - every other column takes the last value that is neither NULL nor an empty text (a tool's
//!   result fills in the status and output of its call without erasing its name and input);
//!   `raw_size` and `raw_truncated` follow `raw`, and `content_truncated` holds if any copy was.
//!
//! The rules are applied in memory ([`MergePlan`]), to rules made from the table's columns, so
//! a column added by a migration is merged without code here: DuckDB reads the stored and staged
//! copies in one statement, and takes one `DELETE` and one append per table. (The same rules as
//! one `GROUP BY` statement cost 8 ms per table whatever the rows: DuckDB's aggregate with one
//! filtered `arg_max` per column has that cost, and a commit merges four tables.) Transcript ids never meet OpenCode's (they come
//! from other agents), so none of the cross-source version checks of the main writer apply.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use duckdb::params;
use ducktail_model::transcript::{TranscriptCursor, TranscriptStretch};
use ducktail_model::{app_of_source, FileStamp, FileStatus, Records};

use crate::writer::{Grouped, RecordTables};
use crate::{Reader, Result, Store};

/// The record tables transcripts write, merged by `id`.
const MERGED_TABLES: [&str; 4] = ["sessions", "messages", "parts", "step_events"];

/// Columns that keep the first non-empty value seen for a key.
const FIRST_WINS: [&str; 7] = ["session_id", "message_id", "parent_id", "project_id", "directory", "title", "version"];

/// `file_index.kind` of a transcript.
pub const TRANSCRIPT_KIND: &str = "transcript";

/// `file_index.kind` of a line that was skipped, under `<path>#byte=<offset>`.
pub const SKIPPED_LINE_KIND: &str = "line";

/// One unit of writing for one transcript source.
#[derive(Debug, Default)]
pub struct TranscriptBatch {
    /// `source` of the rows and `file_index.source`, e.g. `claude_code`.
    pub source: &'static str,
    /// Stretches read, in reading order (later copies of a record win where the rules say so).
    pub stretches: Vec<TranscriptStretch>,
    /// Transcripts gone from disk: their `file_index` rows go; their session's records stay
    /// (an agent's cleanup must not erase history) unless `on_delete` says remove.
    pub removed: Vec<String>,
    /// What a removed transcript does to its session's records.
    pub on_delete: crate::OnDelete,
}

/// What a committed transcript batch did.
#[derive(Debug, Default, Clone)]
pub struct TranscriptReport {
    /// Stretches whose records were written.
    pub indexed: usize,
    /// Files that could not be read.
    pub errors: usize,
    /// Lines skipped (recorded in `file_index`).
    pub skipped_lines: usize,
    /// Removed files processed.
    pub removed: usize,
    /// Records merged, all tables together.
    pub records: usize,
    /// Lines kept raw that were new.
    pub lines: usize,
    /// Sessions whose records changed: the input of trace recomputation.
    pub touched_sessions: BTreeSet<String>,
    /// Time spent in the transaction.
    pub duration: Duration,
}

/// What the store knows about one transcript, for its reader after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptFileState {
    /// Absolute path.
    pub path: String,
    /// mtime and size when last read.
    pub stamp: FileStamp,
    /// The outcome then.
    pub status: FileStatus,
    /// Where reading stopped, when the file was ever read.
    pub cursor: Option<TranscriptCursor>,
    /// What the decoder needs to carry on mid-file.
    pub decoder_state: Option<String>,
}

/// The `file_index.file_path` of a skipped line.
pub fn skipped_line_path(path: &str, offset: u64) -> String {
    format!("{path}#byte={offset}")
}

const TRANSCRIPT_TEMP_TABLES: &str = "
CREATE TEMP TABLE IF NOT EXISTS stage_t_sessions AS SELECT * FROM main.sessions LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_messages AS SELECT * FROM main.messages LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_parts AS SELECT * FROM main.parts LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_step_events AS SELECT * FROM main.step_events LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_file_operations AS SELECT * FROM main.file_operations LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_projects AS SELECT * FROM main.projects LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_todos AS SELECT * FROM main.todos LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_file_diffs AS SELECT * FROM main.file_diffs LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_lines AS SELECT * FROM main.transcript_lines LIMIT 0;
";

/// How one column's value is chosen among a key's copies (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq)]
enum ColumnRule {
    /// The key: the same in every copy.
    Key,
    /// The earliest (`created_at`, `started_at`).
    Earliest,
    /// The latest (`updated_at`, `completed_at`, `ended_at`, `version_ms`).
    Latest,
    /// The first present value ([`FIRST_WINS`]).
    First,
    /// `raw_size` and `raw_truncated`: those of the last copy with a raw document.
    WithRaw,
    /// `content_truncated`: whether any copy was.
    Any,
    /// Every other column: the last present value.
    Last,
}

/// One merged table's plan, built from its columns once per connection.
#[derive(Debug, Clone)]
pub(crate) struct MergePlan {
    table: &'static str,
    /// Per column: its rule, and whether an absent value becomes `''` (a NOT NULL text).
    rules: Vec<(ColumnRule, bool)>,
    /// Which column is `raw`.
    raw: Option<usize>,
    /// The stored copies (`version_ms` at least `$1`: rows are appended roughly in line order,
    /// so the bound lets DuckDB skip older row groups, and merging an append into a long
    /// transcript reads what is recent, not the whole table; `$1` past every version reads
    /// none) and the staged ones, by key, stored first, then in reading order.
    read: String,
    /// Deletes the stored copies the merge replaces, with the same `$1`.
    delete: String,
    /// Empties the stage.
    clear: String,
}

/// Whether a value counts as present: neither NULL nor an empty text.
fn present(value: &duckdb::types::Value) -> bool {
    match value {
        duckdb::types::Value::Null => false,
        duckdb::types::Value::Text(text) => !text.is_empty(),
        _ => true,
    }
}

/// An order over the values the earliest and latest rules compare (times and integers).
fn ordered(value: &duckdb::types::Value) -> Option<i128> {
    use duckdb::types::{TimeUnit, Value};
    let scale = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 1_000_000_000i128,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    match value {
        Value::Timestamp(unit, at) => Some(i128::from(*at) * scale(unit)),
        Value::BigInt(number) => Some(i128::from(*number)),
        Value::Int(number) => Some(i128::from(*number)),
        Value::HugeInt(number) => Some(*number),
        _ => None,
    }
}

impl MergePlan {
    /// The plan for `table` from its columns as `(name, type, nullable)` in table order.
    fn new(table: &'static str, columns: &[(String, String, bool)]) -> MergePlan {
        let rules = columns
            .iter()
            .map(|(name, data_type, nullable)| {
                let rule = match name.as_str() {
                    "id" => ColumnRule::Key,
                    "created_at" | "started_at" => ColumnRule::Earliest,
                    // The newest line that wrote the record, whichever file was read first.
                    "updated_at" | "completed_at" | "ended_at" | "version_ms" => ColumnRule::Latest,
                    first if FIRST_WINS.contains(&first) => ColumnRule::First,
                    // A patch (a tool's result, a part joining its response) carries only what it
                    // knows: its empty texts and empty raw document are absent, not values.
                    "raw_size" | "raw_truncated" => ColumnRule::WithRaw,
                    "content_truncated" => ColumnRule::Any,
                    _ => ColumnRule::Last,
                };
                (rule, !nullable && data_type == "VARCHAR" && name != "id")
            })
            .collect();
        MergePlan {
            table,
            rules,
            raw: columns.iter().position(|(name, _, _)| name == "raw"),
            read: format!(
                "SELECT * EXCLUDE (seq) FROM (
                     SELECT 0 AS seq, * FROM main.{table} WHERE version_ms >= $1::BIGINT AND id IN (SELECT id FROM temp.stage_t_{table})
                     UNION ALL SELECT rowid + 1 AS seq, * FROM temp.stage_t_{table})
                 ORDER BY id, seq"
            ),
            delete: format!("DELETE FROM main.{table} WHERE version_ms >= $1::BIGINT AND id IN (SELECT id FROM temp.stage_t_{table})"),
            clear: format!("DELETE FROM temp.stage_t_{table}"),
        }
    }

    /// One row from a key's copies, stored first, then in reading order.
    fn merge(&self, copies: &[Vec<duckdb::types::Value>]) -> Vec<duckdb::types::Value> {
        use duckdb::types::Value;
        let with_raw: Vec<&Vec<Value>> = self.raw.map(|raw| copies.iter().filter(|copy| present(&copy[raw])).collect()).unwrap_or_default();
        self.rules
            .iter()
            .enumerate()
            .map(|(column, (rule, empty_text))| {
                let values = copies.iter().map(|copy| &copy[column]);
                let mut chosen = match rule {
                    ColumnRule::Key => values.clone().next().cloned(),
                    ColumnRule::Earliest => values.filter(|value| ordered(value).is_some()).min_by_key(|value| ordered(value)).cloned(),
                    ColumnRule::Latest => values.filter(|value| ordered(value).is_some()).max_by_key(|value| ordered(value)).cloned(),
                    ColumnRule::First => values.clone().find(|value| present(value)).cloned(),
                    ColumnRule::WithRaw => with_raw.iter().rev().map(|copy| &copy[column]).find(|value| !matches!(value, Value::Null)).cloned(),
                    ColumnRule::Any => {
                        let flags: Vec<bool> = values.filter_map(|value| if let Value::Boolean(flag) = value { Some(*flag) } else { None }).collect();
                        (!flags.is_empty()).then(|| Value::Boolean(flags.iter().any(|flag| *flag)))
                    }
                    ColumnRule::Last => values.rev().find(|value| present(value)).cloned(),
                }
                .unwrap_or(Value::Null);
                if *empty_text && matches!(chosen, Value::Null) {
                    chosen = Value::Text(String::new());
                }
                chosen
            })
            .collect()
    }
}

/// The ids of one merged table's records in the batch, in reading order, with the version each
/// copy writes.
fn staged_ids<'b>(batch: &'b TranscriptBatch, table: &str) -> Vec<(&'b str, i64)> {
    let records = batch.stretches.iter().flat_map(|stretch| stretch.records.iter());
    let id = |records: &'b Records| -> Option<&'b str> {
        match (table, records) {
            ("sessions", Records::Session(session)) => Some(&session.id),
            ("messages", Records::Message(message)) => Some(&message.id),
            ("parts", Records::Part { part, .. }) => Some(&part.id),
            ("step_events", Records::Part { step: Some(step), .. }) => Some(&step.id),
            _ => None,
        }
    };
    records.filter_map(|records| id(records).map(|id| (id, written_at(records)))).collect()
}

/// A transcript record's `version_ms`: when its line was written, by the line's own timestamp.
/// Not the file's mtime, which depends on when the file was read: following a file live and
/// indexing it afterwards must give the same rows.
fn written_at(records: &Records) -> i64 {
    let at = match records {
        Records::Session(session) => session.updated_at.or(session.created_at),
        Records::Message(message) => message.completed_at.or(message.created_at),
        Records::Part { part, .. } => part.ended_at.or(part.started_at),
        _ => None,
    };
    at.unwrap_or(0)
}

impl Store {
    /// Writes one batch of transcript stretches in one transaction. On error nothing of it is
    /// visible and every cursor stays where it was, so the stretches are read again.
    pub fn write_transcripts(&mut self, batch: &TranscriptBatch) -> Result<TranscriptReport> {
        let started = Instant::now();
        self.ensure_staging_tables()?;
        if self.transcript_merge_sql.is_none() {
            self.connection.execute_batch(TRANSCRIPT_TEMP_TABLES).map_err(|source| self.query_error("creating transcript staging tables", source))?;
            let mut statements = Vec::new();
            let mut known = Vec::new();
            for table in MERGED_TABLES {
                let columns = self.table_columns(table)?;
                statements.push(MergePlan::new(table, &columns));
                known.push(self.transcript_ids(table)?);
            }
            self.transcript_merge_sql = Some(statements);
            self.transcript_known_ids = known;
        }
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(|source| self.query_error("beginning a transcript batch", source))?;
        match self.clear_derived_mark_in_transaction().and_then(|()| self.write_transcripts_in_transaction(batch)) {
            Ok(mut report) => {
                if let Err(source) = self.connection.execute_batch("COMMIT") {
                    let _ = self.connection.execute_batch("ROLLBACK");
                    self.forget_learned_ids();
                    return Err(self.query_error("committing a transcript batch", source));
                }
                self.derived_mark_to_clear = false;
                if let Some(touched) = self.touched.as_mut() {
                    touched.extend(report.touched_sessions.iter().cloned());
                }
                report.duration = started.elapsed();
                Ok(report)
            }
            Err(error) => {
                let _ = self.connection.execute_batch("ROLLBACK");
                // The staging tables may hold half a batch.
                let _ = self.connection.execute_batch(
                    "DELETE FROM temp.stage_t_sessions; DELETE FROM temp.stage_t_messages; DELETE FROM temp.stage_t_parts;
                     DELETE FROM temp.stage_t_step_events; DELETE FROM temp.stage_t_lines;",
                );
                self.forget_learned_ids();
                Err(error)
            }
        }
    }

    /// Merges `plan`'s staged rows with their stored copies of `version_ms` at least `bound`.
    fn merge_staged(&self, plan: &MergePlan, bound: i64) -> duckdb::Result<()> {
        let mut read = self.connection.prepare_cached(&plan.read)?;
        let columns = plan.rules.len();
        let mut rows = read.query([bound])?;
        let mut merged = Vec::new();
        let mut copies: Vec<Vec<duckdb::types::Value>> = Vec::new();
        while let Some(row) = rows.next()? {
            let copy = (0..columns).map(|index| row.get::<_, duckdb::types::Value>(index)).collect::<duckdb::Result<Vec<_>>>()?;
            if copies.first().is_some_and(|first| first[0] != copy[0]) {
                merged.push(plan.merge(&copies));
                copies.clear();
            }
            copies.push(copy);
        }
        if !copies.is_empty() {
            merged.push(plan.merge(&copies));
        }
        drop(rows);
        if bound != i64::MAX {
            self.connection.prepare_cached(&plan.delete)?.execute([bound])?;
        }
        let mut appender = self.connection.appender(plan.table)?;
        for row in &merged {
            appender.append_row(duckdb::appender_params_from_iter(row))?;
        }
        appender.flush()?;
        drop(appender);
        self.connection.prepare_cached(&plan.clear)?.execute([])?;
        Ok(())
    }

    /// Drops the known ids after a failed batch. They learned the batch's versions, which the
    /// rollback undid: a merge bounded by a version newer than a stored copy's would miss that
    /// copy and store its id twice. The next batch loads them again from the tables.
    pub(crate) fn forget_learned_ids(&mut self) {
        self.transcript_merge_sql = None;
        self.transcript_known_ids.clear();
    }

    /// The ids a merged table holds from transcripts, with their rows' `version_ms`.
    fn transcript_ids(&self, table: &str) -> Result<foldhash::HashMap<String, i64>> {
        let context = "loading the transcript records' ids";
        let mut statement = self
            .connection
            .prepare(&format!("SELECT id, coalesce(min(version_ms), 0) FROM main.{table} WHERE app IS NOT NULL AND app <> 'opencode' GROUP BY id"))
            .map_err(|source| self.query_error(context, source))?;
        statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
            .and_then(|rows| rows.collect::<duckdb::Result<foldhash::HashMap<String, i64>>>())
            .map_err(|source| self.query_error(context, source))
    }

    fn table_columns(&self, table: &str) -> Result<Vec<(String, String, bool)>> {
        let context = "reading a table's columns";
        let mut statement = self
            .connection
            .prepare("SELECT column_name, data_type, is_nullable FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = $1 ORDER BY column_index")
            .map_err(|source| self.query_error(context, source))?;
        statement
            .query_map([table], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, bool>(2)?)))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error(context, source))
    }

    fn write_transcripts_in_transaction(&mut self, batch: &TranscriptBatch) -> Result<TranscriptReport> {
        let mut report = TranscriptReport { removed: batch.removed.len(), ..TranscriptReport::default() };
        let fail = |context: &'static str| {
            let path = self.path.clone();
            move |source| crate::StoreError::Query { path, context, error: source }
        };
        // Records go to the stage in rounds in which every key appears once (the grouping keeps
        // one record per key); appending round after round keeps the reading order in `rowid`.
        let records: Vec<(&Records, i64)> =
            batch.stretches.iter().flat_map(|stretch| stretch.records.iter().map(|records| (records, written_at(records)))).collect();
        report.records = records.len();
        let phase_started = Instant::now();
        let mut phases: Vec<(&'static str, f64)> = Vec::new();
        let mut lap = |name: &'static str, since: &mut Instant| {
            phases.push((name, since.elapsed().as_secs_f64() * 1e3));
            *since = Instant::now();
        };
        let mut phase_clock = phase_started;
        let mut rest = records;
        while !rest.is_empty() {
            let mut round = Grouped::default();
            let mut next = Vec::new();
            for (records, version_ms) in rest {
                if round.holds(records) {
                    next.push((records, version_ms));
                } else {
                    round.add(records, version_ms);
                }
            }
            self.append_records(&round, batch.source, RecordTables::TranscriptStage).map_err(fail("staging transcript records"))?;
            rest = next;
        }
        lap("stage", &mut phase_clock);
        // Only the tables this batch staged rows for are merged, and a table whose staged ids
        // are all new is appended to without reading it.
        let statements = self.transcript_merge_sql.clone().unwrap_or_default();
        for (position, (table, statements)) in MERGED_TABLES.iter().zip(statements).enumerate() {
            let ids = staged_ids(batch, table);
            if ids.is_empty() {
                continue;
            }
            let known = &mut self.transcript_known_ids[position];
            // The lowest version a stored copy has: the merged row keeps the highest version of
            // its copies, which the map follows.
            let since = ids.iter().filter_map(|(id, _)| known.get(*id)).min().copied();
            // Learned before the commit; should the batch fail, the map is dropped and reloaded
            // (see `write_transcripts`).
            for (id, version) in ids {
                known.entry(id.to_owned()).and_modify(|known| *known = (*known).max(version)).or_insert(version);
            }
            // With no staged id stored yet, the stored table is not read at all: appends to a long
            // transcript are mostly new responses and blocks, so they cost what was appended.
            let bound = since.unwrap_or(i64::MAX);
            self.merge_staged(&statements, bound).map_err(fail("merging transcript records"))?;
            lap(table, &mut phase_clock);
        }
        // Transcripts hold no projects, todos, diffs nor file operations; should a decoder make
        // one, it is dropped here rather than left for the next batch.
        let unmerged = batch.stretches.iter().flat_map(|stretch| stretch.records.iter()).any(|records| {
            matches!(records, Records::Project(_) | Records::Todos { .. } | Records::FileDiffs { .. } | Records::Part { file_operation: Some(_), .. })
        });
        if unmerged {
            self.connection
                .execute_batch(
                    "DELETE FROM temp.stage_t_file_operations; DELETE FROM temp.stage_t_projects; DELETE FROM temp.stage_t_todos; DELETE FROM temp.stage_t_file_diffs;",
                )
                .map_err(fail("clearing the transcript stage"))?;
        }
        for stretch in &batch.stretches {
            for records in &stretch.records {
                if let Some(session_id) = records.session_id() {
                    report.touched_sessions.insert(session_id.to_owned());
                }
            }
        }

        let app = app_of_source(batch.source);
        if batch.stretches.iter().any(|stretch| !stretch.lines.is_empty()) {
            let mut lines = self.connection.appender_to_catalog_and_db("stage_t_lines", "temp", "main").map_err(fail("staging transcript lines"))?;
            for stretch in &batch.stretches {
                for line in &stretch.lines {
                    lines
                        .append_row(params![
                            line.session_id,
                            line.line_hash,
                            app,
                            batch.source,
                            line.line_type,
                            line.at_ms.map(|ms| duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Millisecond, ms)),
                            line.raw.json,
                            line.raw.size_bytes,
                            line.raw.truncated,
                        ])
                        .map_err(fail("staging transcript lines"))?;
                }
            }
            lines.flush().map_err(fail("staging transcript lines"))?;
            drop(lines);
            // The key's index finds the lines already kept without reading the table.
            report.lines = self
                .connection
                .prepare_cached("INSERT OR IGNORE INTO transcript_lines SELECT DISTINCT ON (session_id, line_hash) * FROM temp.stage_t_lines")
                .and_then(|mut statement| statement.execute([]))
                .map_err(fail("keeping transcript lines"))?;
            self.connection
                .prepare_cached("DELETE FROM temp.stage_t_lines")
                .and_then(|mut statement| statement.execute([]))
                .map_err(fail("keeping transcript lines"))?;
        }
        for stretch in &batch.stretches {
            for line in &stretch.lines {
                report.touched_sessions.insert(line.session_id.clone());
            }
        }
        lap("lines", &mut phase_clock);

        let mut sessions_removed = false;
        for path in &batch.removed {
            if batch.on_delete == crate::OnDelete::Remove {
                let session: Option<String> = self
                    .connection
                    .prepare_cached("SELECT record_id FROM file_index WHERE file_path = $1 AND kind = 'transcript'")
                    .and_then(|mut statement| statement.query_row([path], |row| row.get(0)))
                    .ok()
                    .flatten();
                // Another file may hold the same session (Codex writes a compressed copy before
                // removing the plain one; an archived copy): then the rows stay.
                let held_elsewhere = |session: &String| {
                    batch.stretches.iter().any(|stretch| stretch.session_id.as_ref() == Some(session))
                        || self
                            .connection
                            .prepare_cached("SELECT count(*) FROM file_index WHERE kind = 'transcript' AND record_id = $1 AND file_path <> $2")
                            .and_then(|mut statement| statement.query_row(duckdb::params![session, path], |row| row.get::<_, i64>(0)))
                            .is_ok_and(|others| others > 0)
                };
                if let Some(session) = session.filter(|session| !held_elsewhere(session)) {
                    for sql in [
                        "DELETE FROM step_events WHERE session_id = $1",
                        "DELETE FROM parts WHERE session_id = $1",
                        "DELETE FROM messages WHERE session_id = $1",
                        "DELETE FROM transcript_lines WHERE session_id = $1",
                        "DELETE FROM sessions WHERE id = $1",
                    ] {
                        self.connection
                            .prepare_cached(sql)
                            .and_then(|mut statement| statement.execute([&session]))
                            .map_err(fail("removing a vanished transcript's session"))?;
                    }
                    report.touched_sessions.insert(session);
                    sessions_removed = true;
                }
            }
            self.forget_transcript(path, true).map_err(fail("removing a transcript's file_index rows"))?;
        }
        for stretch in &batch.stretches {
            let path = stretch.path.to_string_lossy();
            // A stretch read from the start replaces what the file's earlier reads recorded.
            self.forget_transcript(&path, stretch.failure.is_none() && stretch.start_offset == 0).map_err(fail("replacing a transcript's file_index rows"))?;
            let (status, message) = match &stretch.failure {
                None => {
                    report.indexed += 1;
                    (FileStatus::Indexed, None)
                }
                Some(reason) => {
                    report.errors += 1;
                    (FileStatus::Error, Some(reason.as_str()))
                }
            };
            let mut insert = self
                .connection
                .prepare_cached(
                    "INSERT OR REPLACE INTO file_index (file_path, source, kind, mtime, mtime_ns, size, record_id, status, error_message, attempts, indexed_at)
                     VALUES ($1, $2, $3, make_timestamp($4 // 1000)::TIMESTAMPTZ, $4, $5, $6, $7, $8, $9, now())",
                )
                .map_err(fail("recording a transcript in file_index"))?;
            insert
                .execute(params![
                    path,
                    batch.source,
                    TRANSCRIPT_KIND,
                    stretch.stamp.mtime_ns,
                    stretch.stamp.size,
                    stretch.session_id,
                    status.as_str(),
                    message,
                    i32::from(status != FileStatus::Indexed),
                ])
                .map_err(fail("recording a transcript in file_index"))?;
            for skipped in &stretch.skipped {
                report.skipped_lines += 1;
                insert
                    .execute(params![
                        skipped_line_path(&path, skipped.offset),
                        batch.source,
                        SKIPPED_LINE_KIND,
                        stretch.stamp.mtime_ns,
                        stretch.stamp.size,
                        stretch.session_id,
                        FileStatus::Error.as_str(),
                        skipped.reason,
                        1i32,
                    ])
                    .map_err(fail("recording a skipped line in file_index"))?;
            }
            if stretch.failure.is_none() {
                let cursor = &stretch.cursor;
                self.connection
                    .prepare_cached("INSERT OR REPLACE INTO transcript_files VALUES ($1, $2, $3, $4, $5, $6)")
                    .and_then(|mut statement| {
                        statement.execute(params![path, cursor.device, cursor.inode, cursor.offset, cursor.fingerprint, stretch.decoder_state])
                    })
                    .map_err(fail("recording a transcript's read position"))?;
            }
        }
        if sessions_removed {
            // The known ids still name the removed rows: reloaded by the next batch.
            self.forget_learned_ids();
        }
        lap("bookkeeping", &mut phase_clock);
        tracing::trace!(records = report.records, phases_ms = ?phases, "transcript batch written, before its commit");
        Ok(report)
    }

    /// Deletes `path`'s `file_index` row, and with `everything` its skipped lines and read
    /// position too.
    fn forget_transcript(&self, path: &str, everything: bool) -> duckdb::Result<()> {
        self.connection.prepare_cached("DELETE FROM file_index WHERE file_path = $1")?.execute([path])?;
        if everything {
            let prefix = skipped_line_path(path, 0);
            let prefix = &prefix[..prefix.len() - 1];
            self.connection.prepare_cached("DELETE FROM file_index WHERE kind = 'line' AND starts_with(file_path, $1)")?.execute([prefix])?;
            self.connection.prepare_cached("DELETE FROM transcript_files WHERE file_path = $1")?.execute([path])?;
        }
        Ok(())
    }
}

impl Reader {
    /// Every transcript of `source` the store has read, with where reading stopped.
    pub fn transcript_files(&self, source: &str) -> Result<Vec<TranscriptFileState>> {
        let context = "loading the transcripts' read positions";
        let mut statement = self
            .connection
            .prepare(
                "SELECT f.file_path, f.mtime_ns, f.size, f.status, t.device, t.inode, t.read_offset, t.fingerprint, t.decoder_state
                 FROM file_index f LEFT JOIN transcript_files t USING (file_path)
                 WHERE f.source = $1 AND f.kind = 'transcript'",
            )
            .map_err(|source| self.query_error(context, source))?;
        let rows = statement
            .query_map([source], |row| {
                let cursor = match (row.get::<_, Option<u64>>(4)?, row.get::<_, Option<u64>>(5)?, row.get::<_, Option<u64>>(6)?, row.get::<_, Option<u64>>(7)?)
                {
                    (Some(device), Some(inode), Some(offset), Some(fingerprint)) => Some(TranscriptCursor { device, inode, offset, fingerprint }),
                    _ => None,
                };
                Ok(TranscriptFileState {
                    path: row.get(0)?,
                    stamp: FileStamp { mtime_ns: row.get(1)?, size: row.get(2)? },
                    status: FileStatus::parse(&row.get::<_, String>(3)?).unwrap_or(FileStatus::Error),
                    cursor,
                    decoder_state: row.get(8)?,
                })
            })
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error(context, source))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;
    use duckdb::types::{TimeUnit, Value};

    #[test]
    fn a_keys_copies_merge_column_by_column() {
        let columns: Vec<(String, String, bool)> = [
            ("id", "VARCHAR", false),
            ("session_id", "VARCHAR", false),
            ("created_at", "TIMESTAMP WITH TIME ZONE", true),
            ("updated_at", "TIMESTAMP WITH TIME ZONE", true),
            ("tool_status", "VARCHAR", true),
            ("tokens_output", "BIGINT", true),
            ("raw", "VARCHAR", true),
            ("raw_size", "BIGINT", true),
            ("content_truncated", "BOOLEAN", true),
            ("title", "VARCHAR", false),
        ]
        .iter()
        .map(|(name, data_type, nullable)| (name.to_string(), data_type.to_string(), *nullable))
        .collect();
        let plan = MergePlan::new("parts", &columns);
        let at = |ms| Value::Timestamp(TimeUnit::Millisecond, ms);
        let text = |value: &str| Value::Text(value.to_owned());
        // The stored row first, then the batch's copies in reading order.
        let stored = vec![
            text("prt_1"),
            text("ses_a"),
            at(2_000),
            at(2_000),
            text("running"),
            Value::BigInt(5),
            text("{\"a\":1}"),
            Value::BigInt(7),
            Value::Boolean(false),
            Value::Null,
        ];
        let patch = vec![
            text("prt_1"),
            text("ses_fork"),
            at(1_000),
            at(3_000),
            text("completed"),
            Value::Null,
            text(""),
            Value::BigInt(0),
            Value::Boolean(true),
            Value::Null,
        ];
        let merged = plan.merge(&[stored, patch]);
        assert_eq!(merged[1], text("ses_a"), "the first session wins: a fork never moves a record");
        assert_eq!((merged[2].clone(), merged[3].clone()), (at(1_000), at(3_000)), "the earliest start, the latest update");
        assert_eq!(merged[4], text("completed"), "the last present value");
        assert_eq!(merged[5], Value::BigInt(5), "a patch's NULL does not erase");
        assert_eq!((merged[6].clone(), merged[7].clone()), (text("{\"a\":1}"), Value::BigInt(7)), "raw_size follows the last raw document");
        assert_eq!(merged[8], Value::Boolean(true), "truncated if any copy was");
        assert_eq!(merged[9], text(""), "a NOT NULL text never absent");
    }
}
