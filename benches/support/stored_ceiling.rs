//! The storage ceiling of a bulk load: the tree's files read and decoded by ducktail's own
//! decoder, their rows appended as Arrow batches into an empty DuckDB database that has the same
//! tables but no keys, constraints or indexes, then one `CHECKPOINT`. It stores the rows a cold
//! `ducktail index` stores (records and `file_index` rows), and does nothing else: no deletes, no
//! key checks, no derived tables. Shared by the benches through `#[path]`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duckdb::arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use ducktail_model::{DecodedFile, FileOutcome, FileStatus, Records};
use ducktail_pipeline::files::{resolve_path, Resolved, OPENCODE_JSON_SOURCE};
use ducktail_sources::opencode::{classify, DecodeLimits};
use ducktail_store::{columns, Store, StoreOptions};

/// The tables a cold index appends to, in the order they are created.
pub const TABLES: [&str; 9] = ["projects", "sessions", "messages", "parts", "step_events", "file_operations", "todos", "file_diffs", "file_index"];

/// Files per transaction: `ducktail index`'s default batch (`index.batch_files`).
const BATCH_FILES: usize = 5_000;

/// DuckDB's settings of a bulk load in `ducktail index` (`database.memory_limit`'s default, one
/// DuckDB thread beside the decoders, the WAL folded once at the end), so the two differ only in
/// what they do with the rows.
const MEMORY_LIMIT: &str = "256MB";
const WAL_AUTOCHECKPOINT: &str = "4GB";

/// Decodes `files` (below `storage`) on `threads` threads and stores their rows in a fresh
/// database at `db`, as described in the module doc. Returns the time from the first read to
/// the end of the checkpoint, and the rows of each table in [`TABLES`] order.
pub fn stored_rows_ceiling(storage: &Path, files: &[PathBuf], threads: usize, db: &Path) -> (Duration, Vec<(&'static str, i64)>) {
    let connection = empty_tables(db);
    let limits = DecodeLimits::default();
    let chunk_size = BATCH_FILES.div_ceil(threads).clamp(1, 1_000);
    let next_chunk = AtomicUsize::new(0);
    let mut checked = HashSet::new();
    // The previous step's writes are still being written back; not this run's I/O.
    let _ = std::process::Command::new("sync").status();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<DecodedFile>>(threads * 2);
        for _ in 0..threads {
            let (sender, next_chunk, limits) = (sender.clone(), &next_chunk, &limits);
            scope.spawn(move || loop {
                let start = next_chunk.fetch_add(1, Ordering::Relaxed) * chunk_size;
                let Some(chunk) = files.get(start..(start + chunk_size).min(files.len())).filter(|chunk| !chunk.is_empty()) else { break };
                let decoded: Vec<DecodedFile> = chunk
                    .iter()
                    .filter_map(|path| classify(storage, path).map(|(kind, _)| (path, kind)))
                    .filter_map(|(path, kind)| match resolve_path(storage, path, kind, limits, Duration::ZERO) {
                        Resolved::Present(file) => Some(file),
                        Resolved::Gone(_) => None,
                    })
                    .collect();
                if sender.send(decoded).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        let mut pending: Vec<DecodedFile> = Vec::with_capacity(BATCH_FILES + chunk_size);
        for decoded in receiver.iter() {
            pending.extend(decoded);
            if pending.len() >= BATCH_FILES {
                append_batch(&connection, &pending, &mut checked);
                pending.clear();
            }
        }
        if !pending.is_empty() {
            append_batch(&connection, &pending, &mut checked);
        }
    });
    connection.execute_batch("CHECKPOINT;").expect("checkpoint the ceiling's database");
    let elapsed = started.elapsed();
    let counts = TABLES
        .iter()
        .map(|table| (*table, connection.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0)).expect("count a ceiling table")))
        .collect();
    (elapsed, counts)
}

/// Rows of each table in [`TABLES`] order in a database `ducktail index` wrote.
pub fn table_counts(db: &Path) -> Vec<(&'static str, i64)> {
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).expect("a read-only config");
    let connection = duckdb::Connection::open_with_flags(db, config).expect("open the indexed database");
    TABLES.iter().map(|table| (*table, connection.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0)).expect("count a table"))).collect()
}

/// Per table, the rows one of the two databases holds and the other does not (`EXCEPT ALL` both
/// ways; `file_index.indexed_at` left out): zero everywhere when the ceiling stored exactly the
/// rows `ducktail index` stored in `indexed`.
pub fn rows_differing(ceiling: &Path, indexed: &Path) -> Vec<(&'static str, i64)> {
    let connection = duckdb::Connection::open(ceiling).expect("open the ceiling's database");
    connection.execute_batch(&format!("ATTACH '{}' AS indexed (READ_ONLY);", indexed.display())).expect("attach the indexed database");
    TABLES
        .iter()
        .map(|table| {
            let columns = if *table == "file_index" { "* EXCLUDE (indexed_at)" } else { "*" };
            let (mine, theirs) = (format!("SELECT {columns} FROM main.{table}"), format!("SELECT {columns} FROM indexed.main.{table}"));
            let sql = format!("SELECT count(*) FROM (({mine} EXCEPT ALL {theirs}) UNION ALL ({theirs} EXCEPT ALL {mine}))");
            (*table, connection.query_row(&sql, [], |row| row.get(0)).expect("compare a table"))
        })
        .collect()
}

/// A fresh database at `db` holding [`TABLES`] with ducktail's columns and types and nothing
/// else: the schema comes from a database `Store::open` creates beside it, copied with
/// `CREATE TABLE … AS SELECT … LIMIT 0`, which keeps columns and types and drops keys,
/// constraints and indexes.
fn empty_tables(db: &Path) -> duckdb::Connection {
    let schema = db.with_extension("schema.duckdb");
    for path in [db.to_owned(), schema.clone()] {
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(format!("{}.wal", path.display()));
    }
    drop(Store::open(&schema, &StoreOptions { bulk_load: true, ..Default::default() }).expect("create ducktail's schema"));
    let config = duckdb::Config::default()
        .max_memory(MEMORY_LIMIT)
        .and_then(|config| config.threads(1))
        .and_then(|config| config.with("wal_autocheckpoint", WAL_AUTOCHECKPOINT))
        .expect("the ceiling's DuckDB settings");
    let connection = duckdb::Connection::open_with_flags(db, config).expect("open the ceiling's database");
    let copies: String = TABLES.iter().map(|table| format!("CREATE TABLE {table} AS SELECT * FROM ducktail_schema.main.{table} LIMIT 0;\n")).collect();
    connection
        .execute_batch(&format!("ATTACH '{}' AS ducktail_schema (READ_ONLY);\n{copies}DETACH ducktail_schema;", schema.display()))
        .expect("copy ducktail's tables");
    let _ = std::fs::remove_file(&schema);
    connection
}

/// One transaction: every table's rows of `files` appended as one Arrow batch each.
fn append_batch(connection: &duckdb::Connection, files: &[DecodedFile], checked: &mut HashSet<&'static str>) {
    let (mut projects, mut sessions, mut messages, mut parts, mut steps, mut operations, mut todos, mut diffs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for file in files {
        let FileOutcome::Decoded(records) = &file.outcome else { continue };
        let version = file.stamp.mtime_ns.div_euclid(1_000_000);
        match records {
            Records::Project(project) => projects.push((project, version)),
            Records::Session(session) => sessions.push((session, version)),
            Records::Message(message) => messages.push((message, version)),
            Records::Part { part, step, file_operation } => {
                parts.push((part, version));
                steps.extend(step.as_ref().map(|step| (step, version)));
                operations.extend(file_operation.as_ref());
            }
            Records::Todos { items, .. } => todos.extend(items.iter().map(|item| (item, version))),
            Records::FileDiffs { items, .. } => diffs.extend(items.iter()),
        }
    }
    let source = OPENCODE_JSON_SOURCE;
    let app = ducktail_model::app_of_source(source);
    let indexed_at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as i64);
    // The writer's own column builders: the ceiling stores exactly the rows `index` stores.
    let batches = [
        ("projects", columns::project_columns(&projects, source)),
        ("sessions", columns::session_columns(&sessions, source, app)),
        ("messages", columns::message_columns(&messages, source, app)),
        ("parts", columns::part_columns(&parts, source, app)),
        ("step_events", columns::step_columns(&steps, app)),
        ("file_operations", columns::operation_columns(&operations)),
        ("todos", columns::todo_columns(&todos, source)),
        ("file_diffs", columns::diff_columns(&diffs, source)),
        ("file_index", file_index_rows(files, source, indexed_at)),
    ];
    connection.execute_batch("BEGIN;").expect("begin a ceiling batch");
    for (table, batch) in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        if checked.insert(table) {
            assert_same_columns(connection, table, &batch);
        }
        let mut appender = connection.appender(table).expect("an appender");
        appender.append_record_batch(batch).expect("append an Arrow batch");
        appender.flush().expect("flush the appender");
    }
    connection.execute_batch("COMMIT;").expect("commit a ceiling batch");
}

/// The appender matches columns by position: a batch must name the table's columns in order.
fn assert_same_columns(connection: &duckdb::Connection, table: &str, batch: &RecordBatch) {
    let mut statement = connection
        .prepare("SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() AND table_name = ? ORDER BY column_index")
        .expect("list a table's columns");
    let columns: Vec<String> = statement.query_map([table], |row| row.get(0)).and_then(|rows| rows.collect()).expect("read a table's columns");
    let fields: Vec<String> = batch.schema().fields().iter().map(|field| field.name().clone()).collect();
    assert_eq!(fields, columns, "the ceiling's {table} columns are ducktail's (update benches/support/stored_ceiling.rs after a migration)");
}

/// An Arrow batch built a column at a time over `rows`, for the `file_index` rows (the records'
/// come from `ducktail_store::columns`).
struct Columns<'r, R> {
    rows: &'r [R],
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl<'r, R> Columns<'r, R> {
    fn new(rows: &'r [R]) -> Self {
        Columns { rows, fields: Vec::new(), arrays: Vec::new() }
    }

    fn column(mut self, name: &str, data_type: DataType, array: ArrayRef) -> Self {
        self.fields.push(Field::new(name, data_type, true));
        self.arrays.push(array);
        self
    }

    fn text(self, name: &str, pick: impl Fn(&'r R) -> Option<&'r str>) -> Self {
        let array: StringArray = self.rows.iter().map(pick).collect();
        self.column(name, DataType::Utf8, Arc::new(array))
    }

    fn int64(self, name: &str, pick: impl Fn(&'r R) -> Option<i64>) -> Self {
        let array: Int64Array = self.rows.iter().map(pick).collect();
        self.column(name, DataType::Int64, Arc::new(array))
    }

    fn int32(self, name: &str, pick: impl Fn(&'r R) -> Option<i32>) -> Self {
        let array: Int32Array = self.rows.iter().map(pick).collect();
        self.column(name, DataType::Int32, Arc::new(array))
    }

    /// A `TIMESTAMPTZ` column from Unix microseconds.
    fn timestamp_us(self, name: &str, pick: impl Fn(&'r R) -> Option<i64>) -> Self {
        let array = self.rows.iter().map(pick).collect::<TimestampMicrosecondArray>().with_timezone("UTC");
        self.column(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), Arc::new(array))
    }

    fn finish(self) -> RecordBatch {
        RecordBatch::try_new(Arc::new(Schema::new(self.fields)), self.arrays).expect("every column has one value per row")
    }
}

/// One `file_index` row per file, as a cold index writes it: a decoded file is `indexed` under
/// its record's id, a failed one an `error` with its message and one attempt.
fn file_index_rows(files: &[DecodedFile], source: &str, indexed_at_us: i64) -> RecordBatch {
    let paths: Vec<String> = files.iter().map(|file| file.path.to_string_lossy().into_owned()).collect();
    let rows: Vec<(&DecodedFile, &str)> = files.iter().zip(&paths).map(|(file, path)| (file, path.as_str())).collect();
    Columns::new(&rows)
        .text("file_path", |(_, path)| Some(*path))
        .text("source", |_| Some(source))
        .text("kind", |(file, _)| Some(file.kind.as_str()))
        .timestamp_us("mtime", |(file, _)| Some(file.stamp.mtime_ns / 1_000))
        .int64("mtime_ns", |(file, _)| Some(file.stamp.mtime_ns))
        .int64("size", |(file, _)| Some(file.stamp.size))
        .text("record_id", |(file, _)| match &file.outcome {
            FileOutcome::Decoded(records) => Some(records.record_id()),
            _ => Some(file.path_record_id.as_str()),
        })
        .text("status", |(file, _)| Some(outcome(file).0.as_str()))
        .text("error_message", |(file, _)| outcome(file).1)
        .int32("attempts", |(file, _)| Some(i32::from(outcome(file).0 != FileStatus::Indexed)))
        .timestamp_us("indexed_at", |_| Some(indexed_at_us))
        .finish()
}

/// A file's `file_index` status and error message.
fn outcome(file: &DecodedFile) -> (FileStatus, Option<&str>) {
    match &file.outcome {
        FileOutcome::Decoded(_) => (FileStatus::Indexed, None),
        FileOutcome::NotReady(message) => (FileStatus::Pending, Some(message.as_str())),
        FileOutcome::Failed(message) => (FileStatus::Error, Some(message.as_str())),
    }
}
