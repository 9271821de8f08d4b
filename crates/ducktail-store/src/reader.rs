//! Read-only access: connections cloned from the writer's database that see committed batches only.

use std::path::PathBuf;

use duckdb::types::Value;
use ducktail_model::{FileKind, FileStamp, FileStatus, StoredRecord};

use crate::{Result, StoreError};

/// A connection used only for reads. DuckDB's MVCC gives it a consistent snapshot per statement,
/// so it never sees a half-written batch and never blocks the writer.
pub struct Reader {
    /// The cloned connection; never used for writes to the main database.
    pub(crate) connection: duckdb::Connection,
    /// The database file, for error messages.
    path: PathBuf,
    /// The newest `indexed_at` (µs) this reader's last [`Reader::status`] saw: the floor of its
    /// next look (a pooled reader serves a polling dashboard again and again).
    newest_indexed_floor_us: std::cell::Cell<i64>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        // duckdb-rs drops a connection before its statement cache, so a cached statement would
        // be destroyed after its connection (and, for the last connection, after the database):
        // a use-after-free that crashed the daemon at exit. Statements go first.
        self.connection.flush_prepared_statement_cache();
    }
}

/// One row of `file_index` of one source, as the reconciler needs it, borrowed from the query's
/// result (see [`Reader::for_each_file_index_row`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIndexRow<'row> {
    /// `file_index.file_path`.
    pub path: &'row str,
    /// The file's kind.
    pub kind: FileKind,
    /// The stamp the file had when last processed.
    pub stamp: FileStamp,
    /// Its status.
    pub status: FileStatus,
}

/// Row count of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    /// Table name.
    pub table: &'static str,
    /// Rows.
    pub rows: i64,
}

/// A file recorded with `status='error'`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecentError {
    /// The file.
    pub path: String,
    /// Why it failed.
    pub message: String,
    /// When it was last tried, as text (UTC).
    pub at: String,
}

/// What `ducktail status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexStatus {
    /// Row counts of every table.
    pub tables: Vec<TableCount>,
    /// Files per status.
    pub files_by_status: Vec<(String, i64)>,
    /// Newest `indexed_at`, as text (UTC).
    pub last_indexed_at: Option<String>,
    /// The newest errors.
    pub recent_errors: Vec<RecentError>,
}

/// The tables `status` and `/api/stats` count, in display order.
pub const COUNTED_TABLES: [&str; 16] = [
    "projects",
    "sessions",
    "messages",
    "parts",
    "step_events",
    "file_operations",
    "todos",
    "file_diffs",
    "delegations",
    "agent_traces",
    "parquet_files",
    "spans",
    "traces",
    "services",
    "file_index",
    "schema_migrations",
];

/// One row, one snapshot: every counted table's rows in [`COUNTED_TABLES`] order, then the
/// statuses of `file_index` other than `indexed` with their files (two lists in status order),
/// then the newest `indexed_at` at or after `$1` (µs since the epoch; NULL when no row is).
///
/// Only the rows not indexed are grouped, so DuckDB skips the row groups whose min and max
/// status are both `indexed` (most of them); the `indexed` count is the total less the others.
/// Rows are appended as they are indexed, so with `$1` at the newest time a reader saw before,
/// the newest `indexed_at` is read from the last row groups alone. On the 1M-file database
/// (`docs/benchmarks.md`, "Read API"): the grouping 9.8 → 1.0 ms, the newest time 3.7 → 1.0 ms.
static STATUS_QUERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let counts: Vec<String> = COUNTED_TABLES.iter().map(|table| format!("(SELECT count(*) FROM {table})")).collect();
    format!(
        "SELECT {},
           by_status.statuses, by_status.files,
           (SELECT epoch_us(max(indexed_at)::TIMESTAMP) FROM file_index WHERE indexed_at >= make_timestamp($1::BIGINT)::TIMESTAMPTZ)
         FROM (SELECT list(status ORDER BY status) AS statuses, list(files ORDER BY status) AS files
               FROM (SELECT status, count(*) AS files FROM file_index WHERE status <> 'indexed' GROUP BY status)) by_status",
        counts.join(", ")
    )
});

impl Reader {
    pub(crate) fn new(connection: duckdb::Connection, path: PathBuf) -> Reader {
        // Room for every query of the read API (about twenty), so a pooled reader plans each once.
        connection.set_prepared_statement_cache_capacity(64);
        Reader { connection, path, newest_indexed_floor_us: std::cell::Cell::new(0) }
    }

    /// Opens the database file read-only, for read commands while no daemon holds it.
    pub fn open_read_only(path: &std::path::Path) -> Result<Reader> {
        if !path.exists() {
            return Err(StoreError::Open { path: path.to_owned(), detail: "no such file (run `ducktail index` first)".to_owned() });
        }
        let config = duckdb::Config::default()
            .access_mode(duckdb::AccessMode::ReadOnly)
            .map_err(|error| StoreError::Open { path: path.to_owned(), detail: error.to_string() })?;
        let connection = duckdb::Connection::open_with_flags(path, config).map_err(|error| {
            let detail = error.to_string();
            if detail.contains("lock") {
                StoreError::Locked { path: path.to_owned(), detail }
            } else {
                StoreError::Open { path: path.to_owned(), detail }
            }
        })?;
        let reader = Reader::new(connection, path.to_owned());
        // Read-only, an older schema cannot be migrated: say so, rather than fail on a missing column.
        let found: i32 = reader
            .connection
            .query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |row| row.get(0))
            .map_err(|_| StoreError::Open { path: path.to_owned(), detail: "not a ducktail database (it has no schema_migrations table)".to_owned() })?;
        let known = crate::schema::MIGRATIONS.last().map_or(0, |migration| migration.version);
        if found < known {
            return Err(StoreError::TooOld { path: path.to_owned(), found, known });
        }
        if found > known {
            return Err(StoreError::TooNew { path: path.to_owned(), found, known });
        }
        Ok(reader)
    }

    pub(crate) fn query_error(&self, context: &'static str, source: duckdb::Error) -> StoreError {
        StoreError::Query { path: self.path.clone(), context, error: source }
    }

    /// Runs `sql` and returns `columns` values per row.
    pub(crate) fn query_values(&self, sql: &str, columns: usize, context: &'static str) -> Result<Vec<Vec<Value>>> {
        self.query_values_with(sql, &[], columns, context)
    }

    /// [`Reader::query_values`] with bound `parameters`, through the connection's statement
    /// cache: a query run again and again (the trace recompute) is planned once.
    pub(crate) fn query_values_with(&self, sql: &str, parameters: &[Value], columns: usize, context: &'static str) -> Result<Vec<Vec<Value>>> {
        let mut statement = self.connection.prepare_cached(sql).map_err(|source| self.query_error(context, source))?;
        let rows = statement
            .query_map(duckdb::params_from_iter(parameters.iter()), |row| {
                (0..columns).map(|index| row.get::<_, Value>(index)).collect::<duckdb::Result<Vec<Value>>>()
            })
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<Vec<Value>>>>())
            .map_err(|source| self.query_error(context, source))?;
        Ok(rows)
    }

    /// Runs a read query and returns column names and rows of values (the SQL API and tests).
    pub fn query(&self, sql: &str) -> Result<(Vec<String>, Vec<Vec<Value>>)> {
        let context = "running a query";
        let mut statement = self.connection.prepare(sql).map_err(|source| self.query_error(context, source))?;
        let mut rows = statement.query([]).map_err(|source| self.query_error(context, source))?;
        let mut out = Vec::new();
        let mut names = Vec::new();
        while let Some(row) = rows.next().map_err(|source| self.query_error(context, source))? {
            if names.is_empty() {
                names = row.as_ref().column_names();
            }
            let values = (0..names.len())
                .map(|index| row.get::<_, Value>(index))
                .collect::<duckdb::Result<Vec<Value>>>()
                .map_err(|source| self.query_error(context, source))?;
            out.push(values);
        }
        if names.is_empty() {
            names = rows.as_ref().map(|statement| statement.column_names()).unwrap_or_default();
        }
        Ok((names, out))
    }

    /// Hands `visit` every `file_index` row of `source`, one at a time. Nothing is collected and
    /// kind and status are parsed in place: the reconciler loads every row of a 1M-file tree
    /// into its own map, and a `Vec` of owned rows held a second copy of every path while the
    /// map was built (three strings per row had been a third of its allocations before that).
    pub fn for_each_file_index_row(&self, source: &str, mut visit: impl FnMut(FileIndexRow<'_>)) -> Result<()> {
        let context = "loading file_index";
        let mut statement = self
            .connection
            .prepare("SELECT file_path, kind, mtime_ns, size, status FROM file_index WHERE source = ?")
            .map_err(|source| self.query_error(context, source))?;
        let mut rows = statement.query([source]).map_err(|source| self.query_error(context, source))?;
        let mut visit_row = |row: &duckdb::Row<'_>| -> duckdb::Result<()> {
            // A kind or status this version does not know is skipped.
            let kind = row.get_ref(1)?.as_str().ok().and_then(FileKind::parse);
            let status = row.get_ref(4)?.as_str().ok().and_then(FileStatus::parse);
            let (Some(kind), Some(status)) = (kind, status) else { return Ok(()) };
            let path = row.get_ref(0)?.as_str().map_err(|error| duckdb::Error::FromSqlConversionFailure(0, duckdb::types::Type::Text, Box::new(error)))?;
            visit(FileIndexRow { path, kind, stamp: FileStamp { mtime_ns: row.get(2)?, size: row.get(3)? }, status });
            Ok(())
        };
        while let Some(row) = rows.next().map_err(|source| self.query_error(context, source))? {
            visit_row(row).map_err(|source| self.query_error(context, source))?;
        }
        Ok(())
    }

    /// How many `file_index` rows `source` has: the size of a map of them, made once (growing a
    /// map of a million entries by doubling holds the old and the new table at once).
    pub fn file_index_rows_of_source(&self, source: &str) -> Result<usize> {
        let rows: i64 = self
            .connection
            .prepare_cached("SELECT count(*) FROM file_index WHERE source = ?")
            .and_then(|mut statement| statement.query_row([source], |row| row.get(0)))
            .map_err(|error| self.query_error("counting file_index rows", error))?;
        Ok(usize::try_from(rows).unwrap_or(0))
    }

    /// `file_index` rows of span files: (path, stamp, status), for the span source's view.
    pub fn span_file_index(&self) -> Result<Vec<(String, FileStamp, FileStatus)>> {
        let context = "loading the span files' file_index";
        let mut statement = self
            .connection
            .prepare("SELECT file_path, mtime_ns, size, status FROM file_index WHERE source = 'spans'")
            .map_err(|source| self.query_error(context, source))?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?, row.get::<_, String>(3)?)))
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error(context, source))?;
        Ok(rows.into_iter().filter_map(|(path, mtime_ns, size, status)| Some((path, FileStamp { mtime_ns, size }, FileStatus::parse(&status)?))).collect())
    }

    /// The records `source` (a database source) has written, for its reader's mirror after a
    /// restart: what it delivered and the version it delivered.
    pub fn records_of_source(&self, source: &str) -> Result<Vec<StoredRecord>> {
        let context = "loading the records of a database source";
        let mut statement = self
            .connection
            .prepare(
                "SELECT 'project', id, NULL, version_ms FROM projects WHERE source = $1
                 UNION ALL SELECT 'session', id, NULL, version_ms FROM sessions WHERE source = $1
                 UNION ALL SELECT 'message', id, session_id, version_ms FROM messages WHERE source = $1
                 UNION ALL SELECT 'part', id, session_id, version_ms FROM parts WHERE source = $1
                 UNION ALL SELECT DISTINCT 'todo', session_id, NULL, NULL::BIGINT FROM todos WHERE source = $1",
            )
            .map_err(|source| self.query_error(context, source))?;
        let rows = statement
            .query_map([source], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, Option<String>>(2)?, row.get::<_, Option<i64>>(3)?))
            })
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error(context, source))?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, id, session_id, version_ms)| Some(StoredRecord { kind: FileKind::parse(&kind)?, id, session_id, version_ms }))
            .collect())
    }

    /// The one row of [`STATUS_QUERY`] with `floor_us` as its floor.
    fn status_row(&self, floor_us: i64) -> Result<Vec<Value>> {
        let rows = self.query_values_with(&STATUS_QUERY, &[Value::BigInt(floor_us)], COUNTED_TABLES.len() + 3, "counting rows")?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    /// Counts, statuses and recent errors for `ducktail status`.
    pub fn status(&self, recent_errors: usize) -> Result<IndexStatus> {
        let mut status = IndexStatus::default();
        // One cached statement (see `STATUS_QUERY`): a dashboard polls this, and the 18
        // statements it once was, each planned anew, cost 21 ms a call on a 1M-file database.
        let floor_us = self.newest_indexed_floor_us.get();
        let mut row = self.status_row(floor_us)?;
        let file_index_at = COUNTED_TABLES.iter().position(|table| *table == "file_index").unwrap_or(0);
        let has_files = matches!(row.get(file_index_at), Some(Value::BigInt(rows)) if *rows > 0);
        if floor_us != 0 && has_files && matches!(row.last(), Some(Value::Null)) {
            // Nothing at or after the floor: the newest rows were removed since. Everything again
            // with no floor, so counts and time still come from one snapshot.
            row = self.status_row(0)?;
        }
        let (counts, rest) = row.split_at(row.len().min(COUNTED_TABLES.len()));
        let (statuses, files, newest) = match rest {
            [Value::List(statuses), Value::List(files), newest] => (statuses.as_slice(), files.as_slice(), newest.clone()),
            [_, _, newest] => (&[][..], &[][..], newest.clone()),
            _ => (&[][..], &[][..], Value::Null),
        };
        let mut by_status: Vec<(String, i64)> = statuses
            .iter()
            .zip(files)
            .filter_map(|pair| match pair {
                (Value::Text(name), Value::BigInt(count)) => Some((name.clone(), *count)),
                _ => None,
            })
            .collect();
        for (table, count) in COUNTED_TABLES.iter().zip(counts) {
            let rows = match count {
                Value::BigInt(rows) => *rows,
                _ => 0,
            };
            if *table == "file_index" {
                let indexed = rows - by_status.iter().map(|(_, count)| count).sum::<i64>();
                if indexed > 0 {
                    by_status.push(("indexed".to_owned(), indexed));
                    by_status.sort();
                }
            }
            status.tables.push(TableCount { table, rows });
        }
        status.files_by_status = by_status;
        let newest = match newest {
            Value::BigInt(micros) => Some(micros),
            _ => None,
        };
        self.newest_indexed_floor_us.set(newest.unwrap_or(0));
        status.last_indexed_at = newest.map(rfc3339_from_micros);
        if recent_errors == 0 {
            return Ok(status);
        }
        let errors = self.query_values(
            &format!(
                "SELECT file_path, coalesce(error_message, ''), strftime(indexed_at::TIMESTAMP, '%Y-%m-%dT%H:%M:%S.%fZ') FROM file_index
                 WHERE status = 'error' ORDER BY indexed_at DESC, file_path LIMIT {recent_errors}"
            ),
            3,
            "reading recent errors",
        )?;
        for row in errors {
            if let [Value::Text(path), Value::Text(message), Value::Text(at)] = row.as_slice() {
                status.recent_errors.push(RecentError { path: path.clone(), message: message.clone(), at: at.clone() });
            }
        }
        Ok(status)
    }
}

/// Rows of a read query as JSON values, for the HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each a value per column.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Whether more rows existed than were returned.
    pub truncated: bool,
}

/// Cancels the query running on a reader from another thread.
#[derive(Clone)]
pub struct QueryCanceller(std::sync::Arc<duckdb::InterruptHandle>);

impl QueryCanceller {
    /// Interrupts the running query (it fails with "Interrupted").
    pub fn cancel(&self) {
        self.0.interrupt();
    }
}

impl Reader {
    /// A handle that can interrupt this reader's running query from another thread.
    pub fn canceller(&self) -> QueryCanceller {
        QueryCanceller(self.connection.interrupt_handle())
    }

    /// Runs one user query and returns at most `max_rows` rows as JSON.
    ///
    /// Three independent guards keep it read-only: DuckDB's own parser must see exactly one
    /// SELECT statement (`json_serialize_sql` refuses anything else), before and after the query
    /// is wrapped as a subquery for the row cap; it runs inside a transaction that is always
    /// rolled back; and file and network access are disabled database-wide at open.
    pub fn query_json(&self, sql: &str, max_rows: usize) -> Result<JsonRows> {
        let trimmed = sql.trim().trim_end_matches(';').trim();
        self.require_single_select(trimmed)?;
        // One row past the cap tells us whether the result was truncated; DuckDB's LIMIT is an i64.
        let limit = max_rows.saturating_add(1).min(i64::MAX as usize);
        let wrapped = format!("SELECT * FROM ({trimmed}\n) AS user_query LIMIT {limit}");
        self.require_single_select(&wrapped)?;
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(|source| self.query_error("starting a read transaction", source))?;
        let result = self.query(&wrapped);
        let _ = self.connection.execute_batch("ROLLBACK");
        let (columns, rows) = result?;
        let truncated = rows.len() > max_rows;
        let rows = rows.into_iter().take(max_rows).map(|row| row.iter().map(value_to_json).collect()).collect();
        Ok(JsonRows { columns, rows, truncated })
    }
}

impl Reader {
    /// Refuses `sql` unless DuckDB's parser reads it as exactly one SELECT statement. The text is
    /// passed as a bound parameter, so it is only ever parsed here, never run.
    fn require_single_select(&self, sql: &str) -> Result<()> {
        let serialized: String = self
            .connection
            .prepare("SELECT json_serialize_sql(?::VARCHAR)")
            .and_then(|mut statement| statement.query_row([sql], |row| row.get(0)))
            .map_err(|source| self.query_error("parsing a query", source))?;
        let parsed: serde_json::Value = serde_json::from_str(&serialized).unwrap_or_default();
        if parsed["error"] == serde_json::Value::Bool(true) {
            let message = parsed["error_message"].as_str().unwrap_or("not a SELECT statement");
            return Err(crate::StoreError::Refused { reason: message.to_owned() });
        }
        match parsed["statements"].as_array().map(Vec::len) {
            Some(1) => Ok(()),
            Some(count) => Err(crate::StoreError::Refused { reason: format!("{count} statements") }),
            None => Err(crate::StoreError::Refused { reason: "the parser returned no statement".to_owned() }),
        }
    }
}

/// Converts a DuckDB value to JSON; timestamps become RFC 3339 UTC strings.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        Value::Null => Json::Null,
        Value::Boolean(flag) => Json::Bool(*flag),
        Value::TinyInt(number) => (*number).into(),
        Value::SmallInt(number) => (*number).into(),
        Value::Int(number) => (*number).into(),
        Value::BigInt(number) => (*number).into(),
        Value::UTinyInt(number) => (*number).into(),
        Value::USmallInt(number) => (*number).into(),
        Value::UInt(number) => (*number).into(),
        Value::UBigInt(number) => (*number).into(),
        Value::HugeInt(number) => i64::try_from(*number).map_or_else(|_| Json::String(number.to_string()), Into::into),
        Value::UHugeInt(number) => u64::try_from(*number).map_or_else(|_| Json::String(number.to_string()), Into::into),
        Value::Float(number) => serde_json::Number::from_f64(f64::from(*number)).map_or(Json::Null, Json::Number),
        Value::Double(number) => serde_json::Number::from_f64(*number).map_or(Json::Null, Json::Number),
        Value::Decimal(number) => Json::String(number.to_string()),
        Value::Timestamp(unit, amount) => Json::String(rfc3339_from_micros(unit.to_micros(*amount))),
        Value::Text(text) | Value::Enum(text) => Json::String(text.clone()),
        Value::Date32(days) => Json::String(rfc3339_from_micros(i64::from(*days) * 86_400_000_000)[..10].to_owned()),
        Value::List(items) | Value::Array(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Union(inner) => value_to_json(inner),
        other => Json::String(format!("{other:?}")),
    }
}

/// Formats microseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339_from_micros(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = ducktail_model::civil_from_days(seconds.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z", second_of_day / 3_600, second_of_day % 3_600 / 60, second_of_day % 60)
}

#[cfg(test)]
mod format_tests {
    use super::rfc3339_from_micros;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339_from_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_from_micros(1_770_298_070_786_000), "2026-02-05T13:27:50.786000Z");
        assert_eq!(rfc3339_from_micros(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
    }
}
