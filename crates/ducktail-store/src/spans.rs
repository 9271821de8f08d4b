//! Writing OpenTelemetry spans: one transaction per batch of span files, with the per-trace
//! (`traces`) and per-service (`services`) summaries recomputed for what the batch touched.
//!
//! A span is identified by `(trace_id, span_id)` and is one row: a duplicate inside a file or
//! across files is never an error — the copy read last wins (files are handed over in flush
//! order, so that is the newest). A re-read file replaces exactly its own spans; a removed file's
//! spans leave; a file that fails to read keeps the spans it had.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use std::sync::Arc;

use arrow_array::RecordBatch;
use duckdb::params;
use duckdb::types::{TimeUnit, Value};
use ducktail_model::{Span, SpanFile, SpanFileOutcome};

use crate::writer::{COUNT_ATTEMPTS, REPLACE_FILE_INDEX};
use crate::{Result, Store};

/// `file_index.source` and `.kind` of span files.
const SOURCE: &str = "spans";
const KIND: &str = "span_file";

/// One unit of writing for the span source.
#[derive(Debug, Default)]
pub struct SpanBatch {
    /// Files read since the last batch, oldest flush first (later copies of a span win).
    pub files: Vec<SpanFile>,
    /// Paths of span files that disappeared.
    pub removed: Vec<String>,
}

/// What a committed span batch did.
#[derive(Debug, Default, Clone)]
pub struct SpanReport {
    /// Files whose spans were written.
    pub indexed: usize,
    /// Files recorded as errors.
    pub errors: usize,
    /// Files recorded as pending (not ready yet).
    pub pending: usize,
    /// Removed files processed.
    pub removed: usize,
    /// Span rows written.
    pub spans: usize,
    /// Spans that repeated a `(trace_id, span_id)` already in the batch or the table.
    pub duplicates: usize,
    /// Traces whose summary was recomputed.
    pub traces_touched: usize,
    /// Time in the transaction.
    pub duration: Duration,
}

const SPAN_TEMP_TABLES: &str = "
CREATE TEMP TABLE IF NOT EXISTS stage_span_files (file_path VARCHAR NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS stage_span_keys (trace_id VARCHAR NOT NULL, span_id VARCHAR NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS stage_touched_traces (trace_id VARCHAR NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS stage_touched_services (service_name VARCHAR NOT NULL);
";

/// Forgets the spans of re-read and removed files, and of keys the batch brings again; what they
/// touched is remembered for the summaries.
const REPLACE_SPANS: &str = "
INSERT INTO temp.stage_touched_traces
    SELECT DISTINCT trace_id FROM spans WHERE file_path IN (SELECT file_path FROM temp.stage_span_files);
INSERT INTO temp.stage_touched_services
    SELECT DISTINCT service_name FROM spans WHERE file_path IN (SELECT file_path FROM temp.stage_span_files);
DELETE FROM spans WHERE file_path IN (SELECT file_path FROM temp.stage_span_files);
INSERT INTO temp.stage_touched_services
    SELECT DISTINCT s.service_name FROM spans s JOIN temp.stage_span_keys k ON s.trace_id = k.trace_id AND s.span_id = k.span_id;
CREATE OR REPLACE TEMP TABLE stage_span_duplicates AS
    SELECT count(*) AS n FROM spans s JOIN temp.stage_span_keys k ON s.trace_id = k.trace_id AND s.span_id = k.span_id;
DELETE FROM spans USING temp.stage_span_keys k WHERE spans.trace_id = k.trace_id AND spans.span_id = k.span_id;
DELETE FROM parquet_files WHERE file_path IN (SELECT file_path FROM temp.stage_span_files);
";

/// Recomputes the summaries of the touched traces and services from the spans.
const REFRESH_SUMMARIES: &str = "
DELETE FROM traces WHERE trace_id IN (SELECT trace_id FROM temp.stage_touched_traces);
INSERT INTO traces
WITH t AS (SELECT * FROM spans WHERE trace_id IN (SELECT trace_id FROM temp.stage_touched_traces)),
orphans AS (
    SELECT c.trace_id, count(*) AS n FROM t c
    WHERE c.parent_span_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM t p WHERE p.trace_id = c.trace_id AND p.span_id = c.parent_span_id)
    GROUP BY c.trace_id)
SELECT t.trace_id,
       first(t.span_id ORDER BY t.parent_span_id IS NOT NULL, t.start_ns, t.span_id),
       first(t.service_name ORDER BY t.parent_span_id IS NOT NULL, t.start_ns, t.span_id),
       first(t.name ORDER BY t.parent_span_id IS NOT NULL, t.start_ns, t.span_id),
       bool_or(t.parent_span_id IS NULL),
       min(t.start_time), max(t.end_time), max(t.end_ns) - min(t.start_ns),
       count(*), count(*) FILTER (WHERE t.status_code = 2), count(DISTINCT t.service_name),
       coalesce(any_value(o.n), 0)
FROM t LEFT JOIN orphans o ON o.trace_id = t.trace_id
GROUP BY t.trace_id;
DELETE FROM services WHERE service_name IN (SELECT service_name FROM temp.stage_touched_services);
INSERT INTO services
SELECT service_name, count(*), count(DISTINCT trace_id), count(*) FILTER (WHERE status_code = 2), min(start_time), max(end_time)
FROM spans WHERE service_name IN (SELECT service_name FROM temp.stage_touched_services)
GROUP BY service_name;
";

const CLEAR_SPAN_STAGE: &str = "
DELETE FROM temp.stage_span_files; DELETE FROM temp.stage_span_keys; DELETE FROM temp.stage_touched_traces;
DELETE FROM temp.stage_touched_services; DELETE FROM temp.stage_file_index;
";

fn micros(ns: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, ns.div_euclid(1_000))
}

/// Spans as an Arrow batch in the `spans` table's column order and types.
fn span_record_batch(rows: &[(&Span, &str)]) -> RecordBatch {
    use arrow_array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit as ArrowUnit};
    let text = |pick: &dyn Fn(&Span) -> Option<&str>| -> ArrayRef { Arc::new(rows.iter().map(|(span, _)| pick(span)).collect::<StringArray>()) };
    let int32 = |pick: &dyn Fn(&Span) -> i32| -> ArrayRef { Arc::new(rows.iter().map(|(span, _)| pick(span)).collect::<Int32Array>()) };
    let int64 = |pick: &dyn Fn(&Span) -> Option<i64>| -> ArrayRef { Arc::new(rows.iter().map(|(span, _)| pick(span)).collect::<Int64Array>()) };
    let time = |pick: &dyn Fn(&Span) -> i64| -> ArrayRef {
        Arc::new(rows.iter().map(|(span, _)| Some(pick(span).div_euclid(1_000))).collect::<TimestampMicrosecondArray>().with_timezone("UTC"))
    };
    let timestamp = DataType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into()));
    let schema = Schema::new(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("span_kind", DataType::Int32, false),
        Field::new("start_time", timestamp.clone(), false),
        Field::new("end_time", timestamp, false),
        Field::new("start_ns", DataType::Int64, false),
        Field::new("end_ns", DataType::Int64, false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("status_code", DataType::Int32, false),
        Field::new("status_message", DataType::Utf8, true),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("events", DataType::Utf8, true),
        Field::new("resource_attributes", DataType::Utf8, true),
        Field::new("links", DataType::Utf8, true),
        Field::new("trace_flags", DataType::Int64, true),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("file_path", DataType::Utf8, false),
    ]);
    let columns = vec![
        text(&|span| Some(&span.trace_id)),
        text(&|span| Some(&span.span_id)),
        text(&|span| span.parent_span_id.as_deref()),
        text(&|span| Some(&span.service_name)),
        text(&|span| Some(&span.name)),
        int32(&|span| span.span_kind),
        time(&|span| span.start_ns),
        time(&|span| span.end_ns),
        int64(&|span| Some(span.start_ns)),
        int64(&|span| Some(span.end_ns)),
        int64(&|span| Some(span.duration_ns)),
        int32(&|span| span.status_code),
        text(&|span| span.status_message.as_deref()),
        text(&|span| span.attributes.as_deref()),
        text(&|span| span.events.as_deref()),
        text(&|span| span.resource_attributes.as_deref()),
        text(&|span| span.links.as_deref()),
        int64(&|span| span.trace_flags),
        text(&|span| span.trace_state.as_deref()),
        Arc::new(rows.iter().map(|(_, path)| Some(*path)).collect::<StringArray>()),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("columns built to the schema above")
}

impl Store {
    /// Writes one batch of span files in one transaction. On error nothing of it is visible.
    pub fn write_spans(&mut self, batch: &SpanBatch) -> Result<SpanReport> {
        let started = Instant::now();
        self.ensure_staging_tables()?;
        self.connection.execute_batch(SPAN_TEMP_TABLES).map_err(|source| self.query_error("creating span staging tables", source))?;
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(|source| self.query_error("beginning a span batch", source))?;
        match self.clear_derived_mark_in_transaction().and_then(|()| self.write_spans_in_transaction(batch)) {
            Ok(mut report) => {
                self.connection.execute_batch("COMMIT").map_err(|source| self.query_error("committing a span batch", source))?;
                self.derived_mark_to_clear = false;
                report.duration = started.elapsed();
                Ok(report)
            }
            Err(error) => {
                let _ = self.connection.execute_batch("ROLLBACK");
                Err(error)
            }
        }
    }

    fn write_spans_in_transaction(&mut self, batch: &SpanBatch) -> Result<SpanReport> {
        let mut report = SpanReport { removed: batch.removed.len(), ..SpanReport::default() };
        // The last copy of a key wins, in file order then row order.
        let mut latest: HashMap<(&str, &str), (&Span, &str)> = HashMap::new();
        let mut in_batch = 0usize;
        let mut replaced_files: Vec<&str> = batch.removed.iter().map(String::as_str).collect();
        for file in &batch.files {
            match &file.outcome {
                SpanFileOutcome::Decoded(spans) => {
                    report.indexed += 1;
                    let path = file.path.to_str().unwrap_or_default();
                    replaced_files.push(path);
                    for span in spans {
                        in_batch += 1;
                        latest.insert((span.trace_id.as_str(), span.span_id.as_str()), (span, path));
                    }
                }
                SpanFileOutcome::NotReady(_) => report.pending += 1,
                SpanFileOutcome::Failed(_) => report.errors += 1,
            }
        }
        report.duplicates = in_batch - latest.len();
        let fail = |context: &'static str| {
            let path = self.path.clone();
            move |source| crate::StoreError::Query { path, context, error: source }
        };
        {
            let mut files = self.connection.appender_to_catalog_and_db("stage_span_files", "temp", "main").map_err(fail("staging span files"))?;
            for path in &replaced_files {
                files.append_row(params![path]).map_err(fail("staging span files"))?;
            }
            files.flush().map_err(fail("staging span files"))?;
            let mut keys = self.connection.appender_to_catalog_and_db("stage_span_keys", "temp", "main").map_err(fail("staging span keys"))?;
            for (trace_id, span_id) in latest.keys() {
                keys.append_row(params![trace_id, span_id]).map_err(fail("staging span keys"))?;
            }
            keys.flush().map_err(fail("staging span keys"))?;
        }
        self.connection.execute_batch(REPLACE_SPANS).map_err(fail("replacing spans"))?;
        let across_files: i64 =
            self.connection.query_row("SELECT n FROM temp.stage_span_duplicates", [], |row| row.get(0)).map_err(fail("counting duplicate spans"))?;
        report.duplicates += usize::try_from(across_files).unwrap_or(0);
        let mut touched_traces: BTreeSet<&str> = BTreeSet::new();
        let mut touched_services: BTreeSet<&str> = BTreeSet::new();
        {
            let rows: Vec<(&Span, &str)> = latest.values().copied().collect();
            for (span, _) in &rows {
                touched_traces.insert(&span.trace_id);
                touched_services.insert(&span.service_name);
            }
            // Column-wise through Arrow: one call per 2,048 rows instead of 20 values per row.
            let mut appender = self.connection.appender("spans").map_err(fail("appending spans"))?;
            for chunk in rows.chunks(65_536) {
                appender.append_record_batch(span_record_batch(chunk)).map_err(fail("appending spans"))?;
            }
            appender.flush().map_err(fail("appending spans"))?;
            let mut traces = self.connection.appender_to_catalog_and_db("stage_touched_traces", "temp", "main").map_err(fail("staging traces"))?;
            for trace_id in &touched_traces {
                traces.append_row(params![trace_id]).map_err(fail("staging traces"))?;
            }
            traces.flush().map_err(fail("staging traces"))?;
            let mut services = self.connection.appender_to_catalog_and_db("stage_touched_services", "temp", "main").map_err(fail("staging services"))?;
            for service in &touched_services {
                services.append_row(params![service]).map_err(fail("staging services"))?;
            }
            services.flush().map_err(fail("staging services"))?;
        }
        report.spans = latest.len();
        self.record_span_files(batch).map_err(fail("recording span files"))?;
        if let Some(known) = self.known_keys.as_mut() {
            for file in &batch.files {
                known.insert_path(&file.path.to_string_lossy());
            }
        }
        self.connection.execute_batch(REFRESH_SUMMARIES).map_err(fail("refreshing trace and service summaries"))?;
        report.traces_touched = self
            .connection
            .query_row("SELECT count(DISTINCT trace_id) FROM temp.stage_touched_traces", [], |row| row.get::<_, i64>(0))
            .map_err(fail("counting touched traces"))? as usize;
        self.connection.execute_batch(CLEAR_SPAN_STAGE).map_err(fail("clearing span staging tables"))?;
        Ok(report)
    }

    /// `parquet_files` rows for files read, `file_index` rows for every file of the batch.
    fn record_span_files(&self, batch: &SpanBatch) -> duckdb::Result<()> {
        let mut parquet = self.connection.appender("parquet_files")?;
        let mut index = self.connection.appender_to_catalog_and_db("stage_file_index", "temp", "main")?;
        let mut failures = false;
        for file in &batch.files {
            let path = file.path.to_string_lossy();
            let (status, message) = match &file.outcome {
                SpanFileOutcome::Decoded(spans) => {
                    let min = spans.iter().map(|span| span.start_ns).min();
                    let max = spans.iter().map(|span| span.end_ns).max();
                    parquet.append_row(params![path, spans.len() as i64, file.stamp.size, min.map(micros), max.map(micros), micros(crate::now_ns()),])?;
                    ("indexed", None)
                }
                SpanFileOutcome::NotReady(reason) => ("pending", Some(reason.as_str())),
                SpanFileOutcome::Failed(reason) => ("error", Some(reason.as_str())),
            };
            failures |= status != "indexed";
            index.append_row(params![
                path,
                SOURCE,
                KIND,
                Value::Timestamp(TimeUnit::Microsecond, file.stamp.mtime_ns / 1_000),
                file.stamp.mtime_ns,
                file.stamp.size,
                Option::<String>::None,
                status,
                message,
                i32::from(status != "indexed"),
            ])?;
        }
        parquet.flush()?;
        index.flush()?;
        drop(index);
        if failures {
            self.connection.execute_batch(COUNT_ATTEMPTS)?;
        }
        self.connection.execute_batch(REPLACE_FILE_INDEX)?;
        let mut statement = self.connection.prepare("DELETE FROM file_index WHERE file_path = ?")?;
        for path in &batch.removed {
            statement.execute([path])?;
        }
        Ok(())
    }
}
