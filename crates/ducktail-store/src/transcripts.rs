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
//! a column added by a migration is merged without code here. A batch's records become rows
//! through the same column builders the main writer appends with, never through a table; the
//! stored copy of a key comes from the rows this writer merged lately ([`MergedTable`]), else
//! from one read of the table. Then one `DELETE` (only when a key is already stored) and one
//! append per table. Following a transcript, a commit thus reads nothing: it deletes the rows
//! it replaces and appends. (The same rules as one `GROUP BY` statement cost 8 ms per table
//! whatever the rows: DuckDB's aggregate with one filtered `arg_max` per column has that cost,
//! and a commit merges four tables.) Transcript ids never meet OpenCode's (they come from
//! other agents), so none of the cross-source version checks of the main writer apply.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use duckdb::params;
use duckdb::types::Value;
use ducktail_model::transcript::{TranscriptCursor, TranscriptStretch};
use ducktail_model::{app_of_source, FileStamp, FileStatus, MessageRecord, PartRecord, Records, SessionRecord, StepEvent};
use foldhash::{HashMap, HashMapExt};

use crate::arrow_rows::values_by_row;
use crate::columns::{message_columns, part_columns, session_columns, step_columns};
use crate::{Reader, Result, Store};

/// The record tables transcripts write, merged by `id`.
const MERGED_TABLES: [&str; 4] = ["sessions", "messages", "parts", "step_events"];

/// Most rows per table [`MergedTable::recent_rows`] keeps; past it, or past
/// [`RECENT_BYTES_MAX`], the memory starts again empty. A followed transcript merges a few dozen
/// rows a commit, each usually again within a few commits (a response's lines, a tool's
/// result); a cold index merges thousands, which are not kept.
const RECENT_ROWS_MAX: usize = 4_096;

/// Most bytes of text per table [`MergedTable::recent_rows`] keeps: a part's tool output or raw
/// line may be up to the decoder's 1 MiB limit.
const RECENT_BYTES_MAX: usize = 16 << 20;

/// A row larger than this is not kept: reading it again when its next copy comes costs less
/// than holding it.
const RECENT_ROW_BYTES_MAX: usize = 256 << 10;

/// What a row holds in memory, roughly: its texts and a word per value.
fn row_bytes(row: &[Value]) -> usize {
    row.iter().map(|value| if let Value::Text(text) = value { text.len() + 16 } else { 16 }).sum()
}

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

/// Records a transcript's, or a skipped line's, `file_index` row.
const RECORD_FILE: &str =
    "INSERT OR REPLACE INTO file_index (file_path, source, kind, mtime, mtime_ns, size, record_id, status, error_message, attempts, indexed_at)
     VALUES ($1, $2, $3, make_timestamp($4 // 1000)::TIMESTAMPTZ, $4, $5, $6, $7, $8, $9, now())";

/// The `file_index.file_path` of a skipped line.
pub fn skipped_line_path(path: &str, offset: u64) -> String {
    format!("{path}#byte={offset}")
}

const TRANSCRIPT_TEMP_TABLES: &str = "
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
    /// Which column is `version_ms`.
    version: usize,
    /// The stored rows of the ids bound as `$2`, of `version_ms` at least `$1`: rows are
    /// appended roughly in line order, so the bound lets DuckDB skip older row groups, and
    /// merging an append into a long transcript reads what is recent, not the whole table.
    read: String,
    /// Deletes the same rows.
    delete: String,
}

/// One merged table as the transcript writer knows it between batches.
#[derive(Debug)]
pub(crate) struct MergedTable {
    plan: MergePlan,
    /// Every id transcripts have stored in the table, with its row's `version_ms`: an id not in
    /// it is new, and neither read nor deleted.
    stored_versions: HashMap<String, i64>,
    /// The stored rows of ids merged lately, exactly as stored (the merge made them), so the
    /// next copies of a record merge without reading the table.
    recent_rows: HashMap<String, Vec<Value>>,
    /// [`row_bytes`] of `recent_rows`.
    recent_bytes: usize,
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
            version: columns.iter().position(|(name, _, _)| name == "version_ms").expect("every merged table has version_ms"),
            read: format!("SELECT * FROM main.{table} WHERE version_ms >= $1::BIGINT AND id IN (SELECT unnest($2::VARCHAR[]))"),
            delete: format!("DELETE FROM main.{table} WHERE version_ms >= $1::BIGINT AND id IN (SELECT unnest($2::VARCHAR[]))"),
        }
    }

    /// One row from a key's copies, stored first, then in reading order.
    fn merge(&self, copies: &[&[duckdb::types::Value]]) -> Vec<duckdb::types::Value> {
        use duckdb::types::Value;
        let with_raw: Vec<&[Value]> = self.raw.map(|raw| copies.iter().copied().filter(|copy| present(&copy[raw])).collect()).unwrap_or_default();
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

    /// What [`merge`](Self::merge) makes of a single copy, without copying it: a new key read
    /// once, most rows of a cold index.
    fn settle(&self, mut row: Vec<duckdb::types::Value>) -> Vec<duckdb::types::Value> {
        use duckdb::types::Value;
        // As in `merge`: without a raw column no copy has a raw document.
        let raw_present = self.raw.is_some_and(|raw| present(&row[raw]));
        for (value, (rule, empty_text)) in row.iter_mut().zip(&self.rules) {
            let kept = match rule {
                ColumnRule::Key => true,
                ColumnRule::Earliest | ColumnRule::Latest => ordered(value).is_some(),
                ColumnRule::First | ColumnRule::Last => present(value),
                ColumnRule::WithRaw => raw_present,
                ColumnRule::Any => matches!(value, Value::Boolean(_)),
            };
            if !kept {
                *value = Value::Null;
            }
            if *empty_text && matches!(value, Value::Null) {
                *value = Value::Text(String::new());
            }
        }
        row
    }
}

/// Every copy of the batch's records, per merged table ([`MERGED_TABLES`] order), in reading
/// order, as rows of the table. Projects, todos, diffs and file operations are not transcript
/// records: should a decoder make one, it is dropped here.
fn batch_rows(batch: &TranscriptBatch) -> [Vec<Vec<Value>>; 4] {
    let source = batch.source;
    let app = app_of_source(source);
    let mut sessions: Vec<(&SessionRecord, i64)> = Vec::new();
    let mut messages: Vec<(&MessageRecord, i64)> = Vec::new();
    let mut parts: Vec<(&PartRecord, i64)> = Vec::new();
    let mut steps: Vec<(&StepEvent, i64)> = Vec::new();
    for records in batch.stretches.iter().flat_map(|stretch| stretch.records.iter()) {
        let version = written_at(records);
        match records {
            Records::Session(session) => sessions.push((session, version)),
            Records::Message(message) => messages.push((message, version)),
            Records::Part { part, step, .. } => {
                parts.push((part, version));
                if let Some(step) = step {
                    steps.push((step, version));
                }
            }
            Records::Project(_) | Records::Todos { .. } | Records::FileDiffs { .. } => {}
        }
    }
    let rows = |batch: Option<arrow_array::RecordBatch>| batch.map(|batch| values_by_row(&batch)).unwrap_or_default();
    [
        rows((!sessions.is_empty()).then(|| session_columns(&sessions, source, app))),
        rows((!messages.is_empty()).then(|| message_columns(&messages, source, app))),
        rows((!parts.is_empty()).then(|| part_columns(&parts, source, app))),
        rows((!steps.is_empty()).then(|| step_columns(&steps, app))),
    ]
}

/// A list of ids bound as one `VARCHAR[]` parameter.
fn id_list(ids: &[&str]) -> Value {
    Value::List(ids.iter().map(|id| Value::Text((*id).to_owned())).collect())
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
        if self.transcript_tables.is_none() {
            self.connection.execute_batch(TRANSCRIPT_TEMP_TABLES).map_err(|source| self.query_error("creating transcript staging tables", source))?;
            let mut tables = Vec::new();
            for table in MERGED_TABLES {
                let columns = self.table_columns(table)?;
                tables.push(MergedTable {
                    plan: MergePlan::new(table, &columns),
                    stored_versions: self.transcript_ids(table)?,
                    recent_rows: HashMap::new(),
                    recent_bytes: 0,
                });
            }
            self.transcript_tables = Some(tables);
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
                // The stage may hold half a batch's lines.
                let _ = self.connection.execute_batch("DELETE FROM temp.stage_t_lines;");
                self.forget_learned_ids();
                Err(error)
            }
        }
    }

    /// Merges `copies` (rows of `table`'s table in reading order) with their stored copies,
    /// replaces the stored rows and learns the merged ones. Returns the rows written.
    fn merge_into(&self, table: &mut MergedTable, copies: Vec<Vec<Value>>) -> duckdb::Result<usize> {
        let plan = &table.plan;
        // The copies by id, ids in order of first appearance (the order rows are appended in).
        let mut position_of: HashMap<String, usize> = HashMap::with_capacity(copies.len());
        let mut ids: Vec<String> = Vec::new();
        let mut groups: Vec<Vec<Vec<Value>>> = Vec::new();
        for copy in copies {
            let Value::Text(id) = &copy[0] else { unreachable!("a merged table's first column is its VARCHAR id") };
            match position_of.get(id.as_str()) {
                Some(position) => groups[*position].push(copy),
                None => {
                    position_of.insert(id.clone(), groups.len());
                    ids.push(id.clone());
                    groups.push(vec![copy]);
                }
            }
        }
        let stored: Vec<&str> = ids.iter().map(String::as_str).filter(|id| table.stored_versions.contains_key(*id)).collect();
        let oldest_version = |ids: &[&str]| ids.iter().map(|id| table.stored_versions[*id]).min().unwrap_or(i64::MAX);
        let unremembered: Vec<&str> = stored.iter().copied().filter(|id| !table.recent_rows.contains_key(*id)).collect();
        let mut read: HashMap<String, Vec<Vec<Value>>> = HashMap::new();
        if !unremembered.is_empty() {
            let mut statement = self.connection.prepare_cached(&plan.read)?;
            let mut rows = statement.query(params![oldest_version(&unremembered), id_list(&unremembered)])?;
            let columns = plan.rules.len();
            while let Some(row) = rows.next()? {
                let copy = (0..columns).map(|index| row.get::<_, Value>(index)).collect::<duckdb::Result<Vec<_>>>()?;
                let Value::Text(id) = &copy[0] else { unreachable!("a merged table's first column is its VARCHAR id") };
                read.entry(id.clone()).or_default().push(copy);
            }
        }
        let merged: Vec<Vec<Value>> = ids
            .iter()
            .zip(groups)
            .map(|(id, mut batch_copies)| {
                let remembered = table.recent_rows.get(id.as_str());
                let read = read.remove(id.as_str()).unwrap_or_default();
                if remembered.is_none() && read.is_empty() && batch_copies.len() == 1 {
                    return plan.settle(batch_copies.pop().expect("one copy"));
                }
                let copies: Vec<&[Value]> = remembered.into_iter().chain(&read).chain(&batch_copies).map(Vec::as_slice).collect();
                plan.merge(&copies)
            })
            .collect();
        if !stored.is_empty() {
            self.connection.prepare_cached(&plan.delete)?.execute(params![oldest_version(&stored), id_list(&stored)])?;
        }
        let mut appender = self.connection.appender(plan.table)?;
        for row in &merged {
            appender.append_row(duckdb::appender_params_from_iter(row))?;
        }
        appender.flush()?;
        drop(appender);
        // Learned before the commit; should the batch fail, all of it is dropped and loaded
        // again (see `write_transcripts`).
        let remember = merged.len() <= RECENT_ROWS_MAX / 4;
        let sizes: Vec<usize> = merged.iter().map(|row| row_bytes(row)).collect();
        if remember && (table.recent_rows.len() + merged.len() > RECENT_ROWS_MAX || table.recent_bytes + sizes.iter().sum::<usize>() > RECENT_BYTES_MAX) {
            table.recent_rows.clear();
            table.recent_bytes = 0;
        }
        let written = merged.len();
        drop(stored);
        for ((id, row), size) in ids.into_iter().zip(merged).zip(sizes) {
            let version = ordered(&row[plan.version]).map_or(0, |version| version as i64);
            table.stored_versions.insert(id.clone(), version);
            let replaced = if remember && size <= RECENT_ROW_BYTES_MAX {
                table.recent_bytes += size;
                table.recent_rows.insert(id, row)
            } else {
                table.recent_rows.remove(&id)
            };
            if let Some(replaced) = replaced {
                table.recent_bytes = table.recent_bytes.saturating_sub(row_bytes(&replaced));
            }
        }
        Ok(written)
    }

    /// Drops what the transcript writer knows of the stored rows, after a failed batch or any
    /// other write to the merged tables. A rolled-back batch's versions would bound a merge
    /// past a stored copy, which would then be stored twice; a remembered row that a purge
    /// deleted or a pricing pass changed would come back. The next batch loads the ids again.
    pub(crate) fn forget_learned_ids(&mut self) {
        self.transcript_tables = None;
    }

    /// Drops the rows the transcript writer remembers, keeping the ids it knows: for writes
    /// that may change a stored transcript row's columns but never add, remove nor re-version
    /// one (a pricing pass).
    pub(crate) fn forget_remembered_rows(&mut self) {
        for table in self.transcript_tables.iter_mut().flatten() {
            table.recent_rows.clear();
            table.recent_bytes = 0;
        }
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
        let phase_started = Instant::now();
        let mut phases: Vec<(&'static str, f64)> = Vec::new();
        let mut lap = |name: &'static str, since: &mut Instant| {
            phases.push((name, since.elapsed().as_secs_f64() * 1e3));
            *since = Instant::now();
        };
        let mut phase_clock = phase_started;
        report.records = batch.stretches.iter().map(|stretch| stretch.records.len()).sum();
        let rows = batch_rows(batch);
        lap("rows", &mut phase_clock);
        // Taken out while merging; left out on error, so the next batch loads it again.
        let mut tables = self.transcript_tables.take().expect("loaded by write_transcripts");
        for ((table, rows), name) in tables.iter_mut().zip(rows).zip(MERGED_TABLES) {
            if rows.is_empty() {
                continue;
            }
            self.merge_into(table, rows).map_err(fail("merging transcript records"))?;
            lap(name, &mut phase_clock);
        }
        self.transcript_tables = Some(tables);
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
            // A stretch that carries on from where the file's last read stopped updates its rows
            // in place: two statements instead of a delete and two replacing inserts.
            let continued = stretch.failure.is_none()
                && stretch.start_offset > 0
                && self.record_continued_read(&path, stretch).map_err(fail("recording a transcript's read position"))?;
            if !continued {
                // A stretch read from the start replaces what the file's earlier reads recorded.
                self.forget_transcript(&path, stretch.failure.is_none() && stretch.start_offset == 0)
                    .map_err(fail("replacing a transcript's file_index rows"))?;
                self.connection
                    .prepare_cached(RECORD_FILE)
                    .and_then(|mut statement| {
                        statement.execute(params![
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
                    })
                    .map_err(fail("recording a transcript in file_index"))?;
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
            for skipped in &stretch.skipped {
                report.skipped_lines += 1;
                self.connection
                    .prepare_cached(RECORD_FILE)
                    .and_then(|mut statement| {
                        statement.execute(params![
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
                    })
                    .map_err(fail("recording a skipped line in file_index"))?;
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

    /// Records a stretch read on from an earlier read of the same file in place, when the
    /// file's `file_index` row says it was read before; returns whether it did.
    fn record_continued_read(&self, path: &str, stretch: &TranscriptStretch) -> duckdb::Result<bool> {
        let updated = self
            .connection
            .prepare_cached(
                "UPDATE file_index SET mtime = make_timestamp($2 // 1000)::TIMESTAMPTZ, mtime_ns = $2, size = $3, record_id = $4,
                     status = 'indexed', error_message = NULL, attempts = 0, indexed_at = now()
                 WHERE file_path = $1 AND kind = 'transcript'",
            )?
            .execute(params![path, stretch.stamp.mtime_ns, stretch.stamp.size, stretch.session_id])?;
        if updated == 0 {
            return Ok(false);
        }
        let cursor = &stretch.cursor;
        let position = params![path, cursor.device, cursor.inode, cursor.offset, cursor.fingerprint, stretch.decoder_state];
        let moved = self
            .connection
            .prepare_cached("UPDATE transcript_files SET device = $2, inode = $3, read_offset = $4, fingerprint = $5, decoder_state = $6 WHERE file_path = $1")?
            .execute(position)?;
        if moved == 0 {
            self.connection.prepare_cached("INSERT INTO transcript_files VALUES ($1, $2, $3, $4, $5, $6)")?.execute(position)?;
        }
        Ok(true)
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
            ("version_ms", "BIGINT", true),
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
            Value::BigInt(2_000),
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
            Value::BigInt(3_000),
        ];
        for copy in [&stored, &patch] {
            assert_eq!(plan.settle(copy.clone()), plan.merge(&[copy]), "a single copy settles as it merges");
        }
        let merged = plan.merge(&[&stored, &patch]);
        assert_eq!(merged[1], text("ses_a"), "the first session wins: a fork never moves a record");
        assert_eq!((merged[2].clone(), merged[3].clone()), (at(1_000), at(3_000)), "the earliest start, the latest update");
        assert_eq!(merged[4], text("completed"), "the last present value");
        assert_eq!(merged[5], Value::BigInt(5), "a patch's NULL does not erase");
        assert_eq!((merged[6].clone(), merged[7].clone()), (text("{\"a\":1}"), Value::BigInt(7)), "raw_size follows the last raw document");
        assert_eq!(merged[8], Value::Boolean(true), "truncated if any copy was");
        assert_eq!(merged[9], text(""), "a NOT NULL text never absent");
        assert_eq!(merged[10], Value::BigInt(3_000), "the latest version");
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;
    use crate::StoreOptions;
    use ducktail_model::{ListPrice, ListRates, RawDocument, Tokens};

    const PATH: &str = "/home/u/.claude/projects/p/ses_1.jsonl";

    fn raw(json: &str) -> RawDocument {
        RawDocument { json: json.to_owned(), size_bytes: json.len() as i64, truncated: false }
    }

    /// A response read from bytes `start..end` of the transcript: its session, the message with
    /// `output` tokens (and `finish`, when the line says), and one part carrying a finish step.
    fn stretch(start: u64, end: u64, at_ms: i64, output: i64, finish: Option<&str>) -> TranscriptStretch {
        let tokens = Tokens { input: 10, output, ..Tokens::default() };
        let session = SessionRecord { id: "ses_1".into(), created_at: Some(1_000), updated_at: Some(at_ms), raw: raw("{}"), ..SessionRecord::default() };
        let message = MessageRecord {
            id: "msg_1".into(),
            session_id: "ses_1".into(),
            role: Some("assistant".into()),
            model_id: Some("model-a".into()),
            finish_reason: finish.map(str::to_owned),
            tokens,
            created_at: Some(1_000),
            completed_at: Some(at_ms),
            raw: raw(&format!("{{\"output\":{output}}}")),
            ..MessageRecord::default()
        };
        let step =
            StepEvent { id: "prt_1".into(), session_id: "ses_1".into(), message_id: "msg_1".into(), event_type: "finish", tokens, ..StepEvent::default() };
        let part = PartRecord {
            id: "prt_1".into(),
            session_id: "ses_1".into(),
            message_id: "msg_1".into(),
            part_type: "step-finish".into(),
            started_at: Some(1_000),
            ended_at: Some(at_ms),
            raw: raw("{}"),
            ..PartRecord::default()
        };
        TranscriptStretch {
            path: PATH.into(),
            stamp: FileStamp { mtime_ns: at_ms * 1_000_000, size: end as i64 },
            start_offset: start,
            cursor: TranscriptCursor { device: 1, inode: 2, offset: end, fingerprint: 3 },
            decoder_state: None,
            session_id: Some("ses_1".into()),
            records: vec![Records::Session(session), Records::Message(message), Records::Part { part, step: Some(step), file_operation: None }],
            lines: Vec::new(),
            skipped: Vec::new(),
            failure: None,
        }
    }

    fn write(store: &mut Store, stretch: TranscriptStretch) {
        store.write_transcripts(&TranscriptBatch { source: "claude_code", stretches: vec![stretch], ..TranscriptBatch::default() }).unwrap();
    }

    fn one<T: duckdb::types::FromSql>(store: &Store, sql: &str) -> T {
        store.connection.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn copies_of_a_record_over_batches_and_restarts_make_one_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.duckdb");
        let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
        write(&mut store, stretch(0, 100, 2_000, 5, None));
        // The next lines of the same response: merged with the row this writer remembers.
        write(&mut store, stretch(100, 200, 3_000, 20, Some("end_turn")));
        drop(store);
        // After a restart the stored row is read from the table instead.
        let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
        write(&mut store, stretch(200, 300, 4_000, 25, None));
        for table in MERGED_TABLES {
            assert_eq!(one::<i64>(&store, &format!("SELECT count(*) FROM {table}")), 1, "{table} holds its record once");
        }
        assert_eq!(one::<i64>(&store, "SELECT tokens_output FROM messages"), 25, "the last copy's usage");
        assert_eq!(one::<String>(&store, "SELECT finish_reason FROM messages"), "end_turn", "a later copy's absent value does not erase");
        assert_eq!(one::<i64>(&store, "SELECT version_ms FROM messages"), 4_000);
        assert_eq!(one::<i64>(&store, "SELECT epoch_ms(updated_at) FROM sessions"), 4_000);
        assert_eq!(one::<i64>(&store, "SELECT tokens_output FROM step_events"), 25);
        // Each read after the first carries on: the file's rows are updated, not added.
        assert_eq!(one::<i64>(&store, "SELECT count(*) FROM file_index"), 1);
        assert_eq!(one::<i64>(&store, "SELECT size FROM file_index WHERE kind = 'transcript'"), 300);
        assert_eq!(one::<i64>(&store, "SELECT read_offset FROM transcript_files"), 300);
    }

    #[test]
    fn the_rows_remembered_stay_within_their_budget() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.duckdb"), &StoreOptions::default()).unwrap();
        let part = |id: String, text_bytes: usize| Records::Part {
            part: PartRecord {
                id,
                session_id: "ses_1".into(),
                message_id: "msg_1".into(),
                part_type: "text".into(),
                text: Some("x".repeat(text_bytes)),
                raw: raw("{}"),
                ..PartRecord::default()
            },
            step: None,
            file_operation: None,
        };
        for round in 0..5u64 {
            let mut batch = stretch(round * 100, round * 100 + 100, 2_000 + round as i64, 5, None);
            // 6.4 MB of parts a batch: the third batch passes the budget.
            batch.records.extend((0..100).map(|index| part(format!("prt_{round}_{index}"), 64 << 10)));
            batch.records.push(part(format!("prt_big_{round}"), RECENT_ROW_BYTES_MAX));
            write(&mut store, batch);
            let parts = &store.transcript_tables.as_ref().unwrap()[2];
            assert_eq!(parts.recent_bytes, parts.recent_rows.values().map(|row| row_bytes(row)).sum::<usize>(), "the count follows the rows");
            assert!(parts.recent_bytes <= RECENT_BYTES_MAX, "round {round}: {} bytes remembered", parts.recent_bytes);
            assert!(parts.recent_rows.contains_key(&format!("prt_{round}_99")), "the batch just merged is remembered");
            assert!(!parts.recent_rows.contains_key(&format!("prt_big_{round}")), "a row over the limit is read again instead");
        }
        // Each batch also carries the response's own part, the same record every time.
        assert_eq!(one::<i64>(&store, "SELECT count(*) FROM parts"), 5 * 101 + 1);
    }

    #[test]
    fn a_pricing_pass_between_batches_is_kept_by_the_next_copy() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db.duckdb"), &StoreOptions::default()).unwrap();
        write(&mut store, stretch(0, 100, 2_000, 5, Some("end_turn")));
        let rates = ListRates { input: 1.0, output: 2.0, cache_read: 0.0, cache_write: 0.0 };
        let price = ListPrice { model_id: "model-a".into(), standard: rates, long_above: None, long: rates };
        store.apply_list_prices(&[price], false, "prices-1").unwrap();
        assert_eq!(one::<f64>(&store, "SELECT list_cost FROM messages"), 20.0, "10 input + 5 output tokens priced");
        // A later copy of the response carries no list cost: the priced row is what it merges
        // with, not the row as the writer last wrote it.
        let mut later = stretch(100, 200, 3_000, 5, None);
        later.records.retain(|records| matches!(records, Records::Message(_)));
        write(&mut store, later);
        assert_eq!(one::<f64>(&store, "SELECT list_cost FROM messages"), 20.0);
        assert_eq!(one::<String>(&store, "SELECT cost_source FROM messages"), "computed");
    }
}
