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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Every counted table's rows as one row, in [`COUNTED_TABLES`] order; `file_index`'s (a 0
/// here) come from its count by status.
static STATUS_COUNTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let counts: Vec<String> =
        COUNTED_TABLES.iter().map(|table| if *table == "file_index" { "0::BIGINT".to_owned() } else { format!("(SELECT count(*) FROM {table})") }).collect();
    format!("SELECT {}", counts.join(", "))
});

impl Reader {
    pub(crate) fn new(connection: duckdb::Connection, path: PathBuf) -> Reader {
        // Room for every query of the read API (about twenty), so a pooled reader plans each once.
        connection.set_prepared_statement_cache_capacity(64);
        Reader { connection, path }
    }

    /// Opens the database file read-only, for read commands while no daemon holds it.
    pub fn open_read_only(path: &std::path::Path) -> Result<Reader> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.to_owned(),
                detail: "no such file (run `ducktail index` first)".to_owned(),
            });
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
        Ok(Reader { connection, path: path.to_owned() })
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
            .query_map(duckdb::params_from_iter(parameters.iter()), |row| (0..columns).map(|index| row.get::<_, Value>(index)).collect::<duckdb::Result<Vec<Value>>>())
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
    /// into its own map, and a `Vec` of owned rows beside that map was a third of the peak
    /// memory of an unchanged `ducktail index` (three strings per row had been a third of its
    /// allocations before that).
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
        Ok(rows
            .into_iter()
            .filter_map(|(path, mtime_ns, size, status)| Some((path, FileStamp { mtime_ns, size }, FileStatus::parse(&status)?)))
            .collect())
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

    /// Counts, statuses and recent errors for `ducktail status`.
    pub fn status(&self, recent_errors: usize) -> Result<IndexStatus> {
        let mut status = IndexStatus::default();
        // Two cached statements: a dashboard polls this, and the 18 statements it used to be,
        // each planned anew, cost 21 ms a call on a 1M-file database. `file_index` is read once,
        // for its rows by status and the last indexed time.
        let counts = self.query_values(&STATUS_COUNTS, COUNTED_TABLES.len(), "counting rows")?.into_iter().next().unwrap_or_default();
        let by_status = self.query_values(
            "SELECT status, count(*), epoch_us(max(indexed_at)::TIMESTAMP) FROM file_index GROUP BY status ORDER BY status",
            3,
            "counting files by status",
        )?;
        let mut last_indexed_us = None;
        for row in by_status {
            if let [Value::Text(name), Value::BigInt(count), last] = row.as_slice() {
                status.files_by_status.push((name.clone(), *count));
                if let Value::BigInt(micros) = last {
                    last_indexed_us = last_indexed_us.max(Some(*micros));
                }
            }
        }
        status.last_indexed_at = last_indexed_us.map(rfc3339_from_micros);
        let files: i64 = status.files_by_status.iter().map(|(_, count)| count).sum();
        for (table, count) in COUNTED_TABLES.iter().zip(&counts) {
            let rows = match count {
                _ if *table == "file_index" => files,
                Value::BigInt(rows) => *rows,
                _ => 0,
            };
            status.tables.push(TableCount { table, rows });
        }
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
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
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
