//! OpenTelemetry span files in Parquet (the Junjo AI Studio layout, `shared/otel-parquet.md`):
//! listing them ([`scan_span_files`]) and reading one into [`Span`]s ([`read_span_file`]).
//!
//! Columns are found by name and read whatever their Arrow width: strings as UTF-8, large UTF-8,
//! views or binary; integers of any width; timestamps of any unit (or plain `int64` ns). Only
//! `trace_id`, `span_id` and `start_time` are required; the later schema's extra columns (links,
//! trace flags and state, dropped counts) are read when present and ignored otherwise. A file
//! that cannot be read is an error with a reason — the caller decides whether it is "not ready"
//! (recently written: Junjo's first writer wrote straight to the final name) or failed.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use ducktail_model::{FileStamp, Span};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::opencode::stamp_of;

/// `file_index.source` of span files.
pub const SPANS_SOURCE: &str = "spans";

/// `file_index.kind` of span files.
pub const SPAN_FILE_KIND: &str = "span_file";

/// The columns read, by name; anything else in the file is ignored.
const KNOWN_COLUMNS: [&str; 17] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "service_name",
    "name",
    "span_kind",
    "start_time",
    "end_time",
    "duration_ns",
    "status_code",
    "status_message",
    "attributes",
    "events",
    "resource_attributes",
    "links",
    "trace_flags",
    "trace_state",
];

/// Whether `path` names a span file: `*.parquet` (so `*.parquet.tmp` being written is not one).
pub fn is_span_file(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "parquet")
        && !path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with('.'))
}

/// Every span file under `root` with its stamp, sorted by path (which is flush-time order in the
/// hive layout). Symbolic links are not followed; unreadable entries are skipped.
pub fn scan_span_files(root: &Path) -> Vec<(PathBuf, FileStamp)> {
    let mut files: Vec<(PathBuf, FileStamp)> = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file() && is_span_file(entry.path()))
        .filter_map(|entry| Some((entry.path().to_owned(), stamp_of(&entry.metadata().ok()?))))
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// Reads every span of one file. The stamp is taken from the opened file before reading.
pub fn read_span_file(path: &Path) -> Result<(FileStamp, Vec<Span>), (FileStamp, String)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| (FileStamp::default(), format!("could not open the file: {error}")))?;
    let metadata = file.metadata().map_err(|error| (FileStamp::default(), format!("could not stat the file: {error}")))?;
    let stamp = stamp_of(&metadata);
    if !metadata.file_type().is_file() {
        return Err((stamp, "not a regular file; only regular files are read".to_owned()));
    }
    read_spans(file).map(|spans| (stamp, spans)).map_err(|reason| (stamp, reason))
}

fn read_spans(file: File) -> Result<Vec<Span>, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|error| format!("not a readable Parquet file: {error}"))?;
    let schema = builder.schema().clone();
    for required in ["trace_id", "span_id", "start_time"] {
        if schema.column_with_name(required).is_none() {
            return Err(format!("not a span file: no `{required}` column"));
        }
    }
    let indices: Vec<usize> =
        schema.fields().iter().enumerate().filter(|(_, field)| KNOWN_COLUMNS.contains(&field.name().as_str())).map(|(index, _)| index).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder.with_projection(mask).with_batch_size(8_192).build().map_err(|error| format!("cannot read the file: {error}"))?;
    let mut spans = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|error| format!("cannot read a row group: {error}"))?;
        append_batch(&batch, &mut spans)?;
    }
    Ok(spans)
}

/// Converts one record batch, column by column.
fn append_batch(batch: &RecordBatch, spans: &mut Vec<Span>) -> Result<(), String> {
    let column = |name: &str| batch.column_by_name(name).cloned();
    let text = |name: &str| column(name).map(TextColumn::new).transpose();
    let (trace_id, span_id) = (text("trace_id")?.unwrap_or_default(), text("span_id")?.unwrap_or_default());
    let (parent, service, name) = (text("parent_span_id")?, text("service_name")?, text("name")?);
    let (status_message, attributes, events) = (text("status_message")?, text("attributes")?, text("events")?);
    let (resource_attributes, links, trace_state) = (text("resource_attributes")?, text("links")?, text("trace_state")?);
    let start = column("start_time");
    let end = column("end_time");
    let duration = column("duration_ns");
    let (kind, status, flags) = (column("span_kind"), column("status_code"), column("trace_flags"));
    for row in 0..batch.num_rows() {
        let (Some(trace_id), Some(span_id)) = (trace_id.get(row), span_id.get(row)) else {
            return Err(format!("row {row} has no trace_id or span_id"));
        };
        let start_ns = start.as_ref().and_then(|array| nanos(array, row)).ok_or_else(|| format!("row {row} has no start_time"))?;
        let end_ns = end.as_ref().and_then(|array| nanos(array, row)).unwrap_or(start_ns);
        let optional = |column: &Option<TextColumn>| column.as_ref().and_then(|column| column.get(row)).map(str::to_owned);
        spans.push(Span {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            parent_span_id: optional(&parent).filter(|parent| !parent.is_empty()),
            service_name: optional(&service).unwrap_or_default(),
            name: optional(&name).unwrap_or_default(),
            span_kind: kind.as_ref().and_then(|array| integer(array, row)).unwrap_or(0) as i32,
            start_ns,
            end_ns,
            duration_ns: duration.as_ref().and_then(|array| integer(array, row)).unwrap_or(end_ns - start_ns),
            status_code: status.as_ref().and_then(|array| integer(array, row)).unwrap_or(0) as i32,
            status_message: optional(&status_message).filter(|message| !message.is_empty()),
            attributes: optional(&attributes),
            events: optional(&events),
            resource_attributes: optional(&resource_attributes),
            links: optional(&links),
            trace_flags: flags.as_ref().and_then(|array| integer(array, row)),
            trace_state: optional(&trace_state).filter(|state| !state.is_empty()),
        });
    }
    Ok(())
}

/// A string column of any Arrow string or binary encoding.
struct TextColumn(ArrayRef);

impl TextColumn {
    fn new(array: ArrayRef) -> Result<TextColumn, String> {
        match array.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                Ok(TextColumn(array))
            }
            other => Err(format!("a text column has type {other}")),
        }
    }

    fn get(&self, row: usize) -> Option<&str> {
        let array = &self.0;
        if array.is_null(row) {
            return None;
        }
        match array.data_type() {
            DataType::Utf8 => Some(array.as_string::<i32>().value(row)),
            DataType::LargeUtf8 => Some(array.as_string::<i64>().value(row)),
            DataType::Utf8View => Some(array.as_string_view().value(row)),
            DataType::Binary => std::str::from_utf8(array.as_binary::<i32>().value(row)).ok(),
            DataType::LargeBinary => std::str::from_utf8(array.as_binary::<i64>().value(row)).ok(),
            DataType::BinaryView => std::str::from_utf8(array.as_binary_view().value(row)).ok(),
            _ => None,
        }
    }
}

impl Default for TextColumn {
    fn default() -> Self {
        TextColumn(std::sync::Arc::new(arrow_array::StringArray::from(Vec::<Option<&str>>::new())))
    }
}

/// An integer of any width, or `None` for a null or a non-integer column.
fn integer(array: &ArrayRef, row: usize) -> Option<i64> {
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int8 => i64::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => i64::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => i64::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row),
        DataType::UInt8 => i64::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => i64::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => i64::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => i64::try_from(array.as_primitive::<UInt64Type>().value(row)).unwrap_or(i64::MAX),
        _ => return None,
    })
}

/// A timestamp of any unit (or a plain integer, taken as ns) in ns since the epoch.
fn nanos(array: &ArrayRef, row: usize) -> Option<i64> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => Some(array.as_primitive::<TimestampNanosecondType>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => Some(array.as_primitive::<TimestampMicrosecondType>().value(row).saturating_mul(1_000)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => Some(array.as_primitive::<TimestampMillisecondType>().value(row).saturating_mul(1_000_000)),
        DataType::Timestamp(TimeUnit::Second, _) => Some(array.as_primitive::<TimestampSecondType>().value(row).saturating_mul(1_000_000_000)),
        _ => integer(array, row),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/otel-parquet");

    #[test]
    fn the_two_fixture_files_read_as_their_sources_describe() {
        let files = scan_span_files(Path::new(FIXTURES));
        assert_eq!(files.len(), 2);
        let mut expected = [(19, 19, 8, 6), (19, 6, 6, 6)].into_iter();
        for (path, stamp) in files {
            let (read_stamp, spans) = read_span_file(&path).expect("a readable span file");
            assert_eq!(read_stamp, stamp);
            let traces: BTreeSet<&str> = spans.iter().map(|span| span.trace_id.as_str()).collect();
            let services: BTreeSet<&str> = spans.iter().map(|span| span.service_name.as_str()).collect();
            let roots = spans.iter().filter(|span| span.parent_span_id.is_none()).count();
            assert_eq!((spans.len(), traces.len(), services.len(), roots), expected.next().unwrap(), "{}", path.display());
            assert!(spans.iter().all(|span| span.trace_id.len() == 32 && span.span_id.len() == 16 && span.end_ns >= span.start_ns));
            assert!(spans.iter().all(|span| (0..=5).contains(&span.span_kind) && (0..=2).contains(&span.status_code)));
            assert!(spans.iter().all(|span| span.start_ns > 1_600_000_000_000_000_000), "nanosecond timestamps");
        }
    }

    /// The later (Rust ingestion) schema adds links, trace flags and state and dropped counts;
    /// other writers use other Arrow widths. Unknown columns are ignored, missing optional ones
    /// are absent, an empty parent is a root.
    #[test]
    fn other_widths_the_later_schema_and_missing_columns_read_alike() {
        use std::sync::Arc;

        use arrow_array::{Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray, TimestampMicrosecondArray, UInt32Array};
        use arrow_schema::{Field, Schema};

        let schema = Arc::new(Schema::new(vec![
            Field::new("trace_id", DataType::LargeUtf8, false),
            Field::new("span_id", DataType::Utf8View, false),
            Field::new("parent_span_id", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, false),
            Field::new("span_kind", DataType::Int32, false),
            Field::new("start_time", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("end_time", DataType::Int64, false),
            Field::new("status_code", DataType::Int64, false),
            Field::new("links", DataType::Utf8, false),
            Field::new("trace_flags", DataType::UInt32, false),
            Field::new("dropped_attributes_count", DataType::UInt32, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(LargeStringArray::from(vec!["a".repeat(32), "a".repeat(32)])),
            Arc::new(StringViewArray::from(vec!["b".repeat(16), "c".repeat(16)])),
            Arc::new(StringArray::from(vec![Some(""), Some("b".repeat(16).as_str())])),
            Arc::new(StringArray::from(vec!["root", "child"])),
            Arc::new(Int32Array::from(vec![2, 3])),
            Arc::new(TimestampMicrosecondArray::from(vec![1_700_000_000_000_000, 1_700_000_000_000_100])),
            Arc::new(Int64Array::from(vec![1_700_000_000_500_000_000, 1_700_000_000_400_000_000])),
            Arc::new(Int64Array::from(vec![0, 2])),
            Arc::new(StringArray::from(vec!["[]", "[]"])),
            Arc::new(UInt32Array::from(vec![1, 1])),
            Arc::new(UInt32Array::from(vec![0, 3])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later.parquet");
        let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let (_, spans) = read_span_file(&path).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].parent_span_id, None, "an empty parent is a root");
        assert_eq!(spans[1].parent_span_id.as_deref(), Some("b".repeat(16).as_str()));
        assert_eq!((spans[0].span_kind, spans[1].status_code), (2, 2));
        assert_eq!(spans[0].start_ns, 1_700_000_000_000_000_000, "microseconds become nanoseconds");
        assert_eq!(spans[0].duration_ns, 500_000_000, "computed when the column is missing");
        assert_eq!((spans[0].links.as_deref(), spans[0].trace_flags), (Some("[]"), Some(1)));
        assert_eq!((spans[0].service_name.as_str(), spans[0].attributes.as_deref()), ("", None));
    }

    #[test]
    fn a_file_that_is_not_parquet_or_not_spans_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let half = dir.path().join("half.parquet");
        std::fs::write(&half, b"PAR1 not finished").unwrap();
        let (_, reason) = read_span_file(&half).unwrap_err();
        assert!(reason.contains("not a readable Parquet file"), "{reason}");
        assert!(!is_span_file(Path::new("/s/x.parquet.tmp")) && is_span_file(Path::new("/s/x.parquet")));
    }
}
