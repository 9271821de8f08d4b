//! Seeded OpenTelemetry span files in the Junjo AI Studio layout (`shared/otel-parquet.md` §1):
//! `year=YYYY/month=MM/day=DD/{service}_{unix}_{hex8}.parquet`, the Plan-002 schema (14 columns,
//! `int8` kind and status, `timestamp[ns, UTC]`), ZSTD, several services per file — with the
//! hard cases a span indexer must survive: traces split across files, duplicate spans inside and
//! across files, and orphans (spans whose parent is in no file).
//!
//! [`generate_spans`] returns what it wrote, counted by a plain model (distinct spans, traces,
//! services, orphans), so tests compare the index with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, Int8Array, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One span as the generator writes it (times in ns since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedSpan {
    /// 32 hex chars.
    pub trace_id: String,
    /// 16 hex chars.
    pub span_id: String,
    /// `None` for roots.
    pub parent_span_id: Option<String>,
    /// Service.
    pub service_name: String,
    /// Operation name.
    pub name: String,
    /// Raw OTLP kind.
    pub span_kind: i8,
    /// Start, ns.
    pub start_ns: i64,
    /// End, ns.
    pub end_ns: i64,
    /// Raw OTLP status code.
    pub status_code: i8,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SpanTreeConfig {
    /// Seed of the one random stream.
    pub seed: u64,
    /// Parquet files.
    pub files: usize,
    /// Rows per file (duplicates included).
    pub spans_per_file: usize,
    /// Distinct services.
    pub services: usize,
    /// One span in this many is written twice (0: never).
    pub duplicate_every: usize,
    /// One trace in this many has a span whose parent exists nowhere (0: never).
    pub orphan_every: usize,
}

impl Default for SpanTreeConfig {
    fn default() -> Self {
        SpanTreeConfig { seed: 7, files: 4, spans_per_file: 200, services: 5, duplicate_every: 50, orphan_every: 10 }
    }
}

/// What was written, counted by the generator's own model.
#[derive(Debug, Clone, Default)]
pub struct SpanTree {
    /// The files, in flush order.
    pub files: Vec<PathBuf>,
    /// Rows written (duplicates included).
    pub rows: usize,
    /// Distinct (trace_id, span_id).
    pub spans: usize,
    /// Distinct traces.
    pub traces: usize,
    /// Traces whose spans are in more than one file.
    pub split_traces: usize,
    /// Distinct services, with their distinct span counts.
    pub services: BTreeMap<String, usize>,
    /// Spans whose parent is in no file.
    pub orphans: usize,
    /// Spans with status ERROR.
    pub errors: usize,
}

/// Writes one span file (the Plan-002 schema) at `path`: to `path.tmp`, then renamed.
pub fn write_span_file(path: &Path, spans: &[GeneratedSpan]) -> std::io::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("span_id", DataType::Utf8, false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("span_kind", DataType::Int8, false),
        Field::new("start_time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("end_time", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("status_code", DataType::Int8, false),
        Field::new("status_message", DataType::Utf8, true),
        Field::new("attributes", DataType::Utf8, false),
        Field::new("events", DataType::Utf8, false),
        Field::new("resource_attributes", DataType::Utf8, false),
    ]));
    let text = |values: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let owned = |pick: &dyn Fn(&GeneratedSpan) -> String| spans.iter().map(|span| Some(pick(span))).collect::<Vec<_>>();
    let columns: Vec<ArrayRef> = vec![
        text(owned(&|span| span.span_id.clone())),
        text(owned(&|span| span.trace_id.clone())),
        text(spans.iter().map(|span| span.parent_span_id.clone()).collect()),
        text(owned(&|span| span.service_name.clone())),
        text(owned(&|span| span.name.clone())),
        Arc::new(Int8Array::from(spans.iter().map(|span| span.span_kind).collect::<Vec<_>>())),
        Arc::new(TimestampNanosecondArray::from(spans.iter().map(|span| span.start_ns).collect::<Vec<_>>()).with_timezone("UTC")),
        Arc::new(TimestampNanosecondArray::from(spans.iter().map(|span| span.end_ns).collect::<Vec<_>>()).with_timezone("UTC")),
        Arc::new(Int64Array::from(spans.iter().map(|span| span.end_ns - span.start_ns).collect::<Vec<_>>())),
        Arc::new(Int8Array::from(spans.iter().map(|span| span.status_code).collect::<Vec<_>>())),
        text(spans.iter().map(|span| (span.status_code == 2).then(|| "generated failure".to_owned())).collect()),
        text(owned(&|span| format!(r#"{{"gen.kind":{}}}"#, span.span_kind))),
        text(owned(&|_| "[]".to_owned())),
        text(owned(&|span| format!(r#"{{"service.name":"{}"}}"#, span.service_name))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(std::io::Error::other)?;
    let properties = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(std::io::Error::other)?)).build();
    let mut staging = path.as_os_str().to_owned();
    staging.push(".tmp");
    let staging = PathBuf::from(staging);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::File::create(&staging)?;
    let mut writer = ArrowWriter::try_new(file, schema, Some(properties)).map_err(std::io::Error::other)?;
    writer.write(&batch).map_err(std::io::Error::other)?;
    writer.close().map_err(std::io::Error::other)?;
    std::fs::rename(&staging, path)
}

fn hex(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rng.gen::<u8>())).collect()
}

/// Writes `config.files` span files under `root` and returns what they hold.
pub fn generate_spans(root: &Path, config: &SpanTreeConfig) -> std::io::Result<SpanTree> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let services: Vec<String> = (0..config.services.max(1)).map(|index| format!("svc-{index}")).collect();
    let mut tree = SpanTree::default();
    let mut clock_ns: i64 = 1_775_000_000_000_000_000;
    let mut written: BTreeMap<(String, String), GeneratedSpan> = BTreeMap::new();
    let mut files_of_trace: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let mut trace_count = 0usize;
    // The open trace: its id, the span ids it has, and whether it already got an orphan.
    let mut open: Option<(String, Vec<String>)> = None;
    for file_index in 0..config.files {
        let mut rows: Vec<GeneratedSpan> = Vec::with_capacity(config.spans_per_file);
        while rows.len() < config.spans_per_file {
            let (trace_id, ids) = match open.take() {
                Some(open_trace) if rng.gen_range(0..12) != 0 => open_trace,
                _ => {
                    trace_count += 1;
                    (hex(&mut rng, 16), Vec::new())
                }
            };
            let span_id = hex(&mut rng, 8);
            let orphan = config.orphan_every > 0 && !ids.is_empty() && trace_count.is_multiple_of(config.orphan_every) && rng.gen_range(0..4) == 0;
            let parent = if ids.is_empty() {
                None
            } else if orphan {
                Some(hex(&mut rng, 8))
            } else {
                Some(ids[rng.gen_range(0..ids.len())].clone())
            };
            clock_ns += rng.gen_range(1_000..5_000_000);
            let span = GeneratedSpan {
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                parent_span_id: parent,
                service_name: services[rng.gen_range(0..services.len())].clone(),
                name: format!("op-{}", rng.gen_range(0..20)),
                span_kind: if ids.is_empty() { 2 } else { rng.gen_range(1..=5) },
                start_ns: clock_ns,
                end_ns: clock_ns + rng.gen_range(10_000..50_000_000),
                status_code: if rng.gen_range(0..25) == 0 { 2 } else { rng.gen_range(0..2) },
            };
            rows.push(span.clone());
            if config.duplicate_every > 0 && rng.gen_range(0..config.duplicate_every) == 0 && rows.len() < config.spans_per_file {
                rows.push(span.clone());
            }
            files_of_trace.entry(trace_id.clone()).or_default().insert(file_index);
            written.insert((trace_id.clone(), span_id.clone()), span);
            let mut ids = ids;
            ids.push(span_id);
            open = Some((trace_id, ids));
        }
        // A duplicate of an earlier file's span, as a re-flush would write it.
        if config.duplicate_every > 0 && file_index > 0 {
            if let Some(span) = written.values().nth(rng.gen_range(0..written.len())).cloned() {
                rows.push(span);
            }
        }
        let flush_s = clock_ns / 1_000_000_000;
        let (year, month, day) = civil_date(flush_s);
        let service = rows.first().map_or("unknown", |span| span.service_name.as_str()).to_owned();
        let path = root
            .join(format!("year={year}"))
            .join(format!("month={month:02}"))
            .join(format!("day={day:02}"))
            .join(format!("{service}_{flush_s}_{}.parquet", hex(&mut rng, 4)));
        write_span_file(&path, &rows)?;
        tree.rows += rows.len();
        tree.files.push(path);
    }
    let all_ids: BTreeSet<(&str, &str)> = written.keys().map(|(trace, span)| (trace.as_str(), span.as_str())).collect();
    tree.spans = written.len();
    tree.traces = files_of_trace.len();
    tree.split_traces = files_of_trace.values().filter(|files| files.len() > 1).count();
    tree.orphans =
        written.values().filter(|span| span.parent_span_id.as_deref().is_some_and(|parent| !all_ids.contains(&(span.trace_id.as_str(), parent)))).count();
    tree.errors = written.values().filter(|span| span.status_code == 2).count();
    for span in written.values() {
        *tree.services.entry(span.service_name.clone()).or_default() += 1;
    }
    Ok(tree)
}

/// The UTC calendar date of a Unix time.
fn civil_date(unix_seconds: i64) -> (i64, u32, u32) {
    ducktail_model::civil_from_days(unix_seconds.div_euclid(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(1_760_738_064), (2025, 10, 17));
        assert_eq!(civil_date(1_775_390_400), (2026, 4, 5));
    }

    #[test]
    fn the_generated_tree_has_every_hard_case() {
        let dir = tempfile::tempdir().unwrap();
        let tree = generate_spans(dir.path(), &SpanTreeConfig::default()).unwrap();
        assert_eq!(tree.files.len(), 4);
        assert!(tree.rows > tree.spans, "duplicates were written");
        assert!(tree.split_traces > 0 && tree.orphans > 0 && tree.services.len() > 1);
        assert!(tree.files.iter().all(|path| path.exists() && path.to_string_lossy().contains("year=")));
        let again = generate_spans(&dir.path().join("again"), &SpanTreeConfig::default()).unwrap();
        assert_eq!((again.rows, again.spans, again.orphans), (tree.rows, tree.spans, tree.orphans), "seeded");
    }
}
