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
//! The rules are one SQL statement per table, built from the table's columns, so a column added
//! by a migration is merged without code here. Transcript ids never meet OpenCode's (they come
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
CREATE TEMP TABLE IF NOT EXISTS stage_t_merged_sessions AS SELECT * FROM main.sessions LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_merged_messages AS SELECT * FROM main.messages LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_merged_parts AS SELECT * FROM main.parts LIMIT 0;
CREATE TEMP TABLE IF NOT EXISTS stage_t_merged_step_events AS SELECT * FROM main.step_events LIMIT 0;
";

/// One merged table's statements, built from its columns.
#[derive(Debug, Clone)]
pub(crate) struct MergeStatements {
    /// The merge of staged rows with stored ones (see the module doc). `$1` is the lowest
    /// `version_ms` the stored copies have: rows are appended roughly in line order, so the bound
    /// lets DuckDB skip older row groups, and merging an append into a long transcript reads
    /// what is recent, not the whole table.
    merge: [String; 5],
    /// The same when no staged id is stored yet: copies of a key in the batch are folded, and
    /// the stored table is not read at all. Appends to a long transcript are mostly new
    /// responses and blocks, so this keeps their cost that of what was appended.
    append: [String; 2],
}

/// The merge of one table's staged rows into it (see the module doc), from its columns as
/// `(name, type, nullable)` in table order.
fn merge_sql(table: &str, columns: &[(String, String, bool)]) -> MergeStatements {
    let picks: Vec<String> = columns
        .iter()
        .map(|(name, data_type, nullable)| {
            let quoted = format!("\"{name}\"");
            let pick = match name.as_str() {
                "id" => quoted,
                "created_at" | "started_at" => format!("min({quoted})"),
                // The newest line that wrote the record, whichever file was read first.
                "updated_at" | "completed_at" | "ended_at" | "version_ms" => format!("max({quoted})"),
                first if FIRST_WINS.contains(&first) => {
                    let present = if data_type == "VARCHAR" { format!("nullif({quoted}, '') IS NOT NULL") } else { format!("{quoted} IS NOT NULL") };
                    format!("arg_min({quoted}, seq) FILTER (WHERE {present})")
                }
                // A patch (a tool's result, a part joining its response) carries only what it
                // knows: its empty texts and empty raw document are absent, not values.
                "raw_size" | "raw_truncated" => format!("arg_max({quoted}, seq) FILTER (WHERE nullif(raw, '') IS NOT NULL)"),
                "content_truncated" => format!("bool_or({quoted})"),
                _ if data_type == "VARCHAR" => format!("arg_max({quoted}, seq) FILTER (WHERE nullif({quoted}, '') IS NOT NULL)"),
                _ => format!("arg_max({quoted}, seq) FILTER (WHERE {quoted} IS NOT NULL)"),
            };
            if !nullable && data_type == "VARCHAR" && name != "id" {
                format!("coalesce({pick}, '')")
            } else {
                pick
            }
        })
        .collect();
    let picks = picks.join(", ");
    MergeStatements {
        // One statement each, so they are prepared once and planned once per connection.
        merge: [
            format!(
                "INSERT INTO temp.stage_t_merged_{table}
                 SELECT {picks} FROM (
                     SELECT 0 AS seq, * FROM main.{table} WHERE version_ms >= $1::BIGINT AND id IN (SELECT id FROM temp.stage_t_{table})
                     UNION ALL SELECT rowid + 1 AS seq, * FROM temp.stage_t_{table})
                 GROUP BY id"
            ),
            format!("DELETE FROM main.{table} WHERE version_ms >= $1::BIGINT AND id IN (SELECT id FROM temp.stage_t_merged_{table})"),
            format!("INSERT INTO main.{table} SELECT * FROM temp.stage_t_merged_{table}"),
            format!("DELETE FROM temp.stage_t_{table}"),
            format!("DELETE FROM temp.stage_t_merged_{table}"),
        ],
        append: [
            format!("INSERT INTO main.{table} SELECT {picks} FROM (SELECT rowid + 1 AS seq, * FROM temp.stage_t_{table}) GROUP BY id"),
            format!("DELETE FROM temp.stage_t_{table}"),
        ],
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
                statements.push(merge_sql(table, &columns));
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
                     DELETE FROM temp.stage_t_step_events; DELETE FROM temp.stage_t_lines; DELETE FROM temp.stage_t_merged_sessions;
                     DELETE FROM temp.stage_t_merged_messages; DELETE FROM temp.stage_t_merged_parts; DELETE FROM temp.stage_t_merged_step_events;",
                );
                self.forget_learned_ids();
                Err(error)
            }
        }
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
            let run = |sql: &str, parameters: &[i64]| -> duckdb::Result<usize> {
                self.connection.prepare_cached(sql)?.execute(duckdb::params_from_iter(parameters.iter()))
            };
            match since {
                Some(since) => {
                    run(&statements.merge[0], &[since]).map_err(fail("merging transcript records"))?;
                    run(&statements.merge[1], &[since]).map_err(fail("merging transcript records"))?;
                    for sql in &statements.merge[2..] {
                        run(sql, &[]).map_err(fail("merging transcript records"))?;
                    }
                }
                None => {
                    for sql in &statements.append {
                        run(sql, &[]).map_err(fail("merging transcript records"))?;
                    }
                }
            }
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
