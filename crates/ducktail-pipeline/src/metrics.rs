//! Prometheus metrics of the pipeline and the HTTP API (`GET /metrics`), all prefixed `ducktail_`.
//!
//! One [`Metrics`] lives on the [`crate::status::StatusBoard`]; actors record into it, the HTTP
//! server renders it. Like the board, it is observability only: nothing reads it to decide.
//! Gauges that describe the present (backlog, database size) are set by the scrape itself.

use prometheus::{Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric ducktail exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Files committed, by kind and outcome (`indexed`, `error`, `pending`, `removed`).
    pub files: IntCounterVec,
    /// Records appended, by table.
    pub records: IntCounterVec,
    /// Files the reconciler found new, changed or gone after the startup catch-up: events the
    /// watcher missed (or that arrived in new directories).
    pub reconciler_recovered: IntCounterVec,
    /// Actor restarts after a panic, by actor.
    pub actor_restarts: IntCounterVec,
    /// API requests, by route pattern and status code.
    pub api_requests: IntCounterVec,
    /// Files per committed batch.
    pub batch_files: Histogram,
    /// Time in a batch's transaction.
    pub batch_write_seconds: Histogram,
    /// From the watcher (or a scan) observing a change to its commit.
    pub event_to_commit_seconds: Histogram,
    /// Duration of reconciler scans, by kind (`full`, `partial`).
    pub reconcile_seconds: HistogramVec,
    /// API latency, by route pattern.
    pub api_seconds: HistogramVec,
    /// CHECKPOINTs the writer ran between batches, by trigger (`interval`, `idle`); those DuckDB
    /// runs inside a commit count in `batch_write_seconds`.
    pub checkpoint_seconds: HistogramVec,
    /// Paths waiting in the accumulator (set at scrape).
    pub pending_files: IntGauge,
    /// Batches being decoded or written (set at scrape).
    pub batches_in_flight: IntGauge,
    /// Database file plus WAL, in bytes (set at scrape).
    pub database_bytes: IntGauge,
    /// 1 once the startup catch-up has committed, as `/readyz` says (set at scrape).
    pub ready: IntGauge,
    /// 1 while commits fail and are retried (a full disk, a lost database) (set at scrape).
    pub commit_failing: IntGauge,
    /// 1 while file events are incomplete (the inotify watch limit) (set at scrape).
    pub watch_incomplete: IntGauge,
    /// 1 while reading `opencode.db` fails (set at scrape).
    pub opencode_db_failing: IntGauge,
    /// 1 while the OTLP backend fails; the spans wait in the database.
    pub otlp_backend_failing: IntGauge,
    /// Spans the OTLP backend acknowledged.
    pub otlp_spans_sent: IntCounter,
    /// OTLP export passes that failed.
    pub otlp_requests_failed: IntCounter,
    /// OTLP attempts after a failure.
    pub otlp_retries: IntCounter,
    /// Rows the Parquet export wrote.
    pub parquet_rows_written: IntCounter,
    /// Read API answers served again because no commit happened since they were computed.
    pub api_answers_reused: IntCounter,
    /// Parquet exports that failed.
    pub parquet_export_failures: IntCounter,
    /// Unix time of the last commit, in seconds; 0 before the first (set at scrape).
    pub last_commit_timestamp_seconds: Gauge,
    /// Always 1, labelled with the version, commit and DuckDB version of the binary.
    pub build_info: IntGaugeVec,
}

/// Every actor that `catch_panic` names, so each restart counter exists at 0 from the start:
/// Prometheus sees no `increase()` in a counter whose first sample is already 1. The same holds
/// for the other labelled series whose label values are known in advance (below).
const SUPERVISED_ACTORS: [&str; 10] = [
    "watcher",
    "reconciler",
    "accumulator",
    "decoder",
    "writer",
    "trace_builder",
    "database_follower",
    "span_follower",
    "transcript_follower",
    "otlp_exporter",
];

/// Buckets for durations from a millisecond to a minute.
const SECONDS_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];
/// Buckets for batch sizes.
const FILES_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0, 20_000.0];

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered at zero.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("ducktail".to_owned()), None).expect("a valid metric prefix");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            registry.register(Box::new(metric.clone())).expect("a unique counter");
            metric
        };
        let files = counter("files_total", "Files committed, by kind and outcome.", &["kind", "outcome"]);
        let records = counter("records_written_total", "Records appended, by table.", &["table"]);
        let reconciler_recovered =
            counter("reconciler_files_recovered_total", "Files the reconciler found changed or gone after the startup catch-up.", &["change"]);
        let actor_restarts = counter("actor_restarts_total", "Actor restarts after a panic, by actor.", &["actor"]);
        for actor in SUPERVISED_ACTORS {
            actor_restarts.with_label_values(&[actor]);
        }
        let api_requests = counter("api_requests_total", "HTTP requests, by route and status.", &["route", "status"]);
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("a valid histogram");
            registry.register(Box::new(metric.clone())).expect("a unique histogram");
            metric
        };
        let batch_files = histogram("batch_files", "Files per committed batch.", &FILES_BUCKETS);
        let batch_write_seconds = histogram("batch_write_seconds", "Time in a batch's transaction.", &SECONDS_BUCKETS);
        let event_to_commit_seconds = histogram("event_to_commit_seconds", "From observing a change to its commit.", &SECONDS_BUCKETS);
        let histogram_vec = |name: &str, help: &str, label: &str| {
            let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(SECONDS_BUCKETS.to_vec()), &[label]).expect("a valid histogram");
            registry.register(Box::new(metric.clone())).expect("a unique histogram");
            metric
        };
        let reconcile_seconds = histogram_vec("reconcile_seconds", "Reconciler scans, full or partial.", "scope");
        let api_seconds = histogram_vec("api_request_seconds", "HTTP request latency, by route.", "route");
        let checkpoint_seconds = histogram_vec("checkpoint_seconds", "CHECKPOINTs between batches, by trigger (interval, idle).", "trigger");
        for change in ["changed", "removed"] {
            reconciler_recovered.with_label_values(&[change]);
        }
        for trigger in ["interval", "idle"] {
            checkpoint_seconds.with_label_values(&[trigger]);
        }
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("a valid gauge");
            registry.register(Box::new(metric.clone())).expect("a unique gauge");
            metric
        };
        let pending_files = gauge("pending_files", "Paths waiting in the accumulator.");
        let batches_in_flight = gauge("batches_in_flight", "Batches being decoded or written.");
        let database_bytes = gauge("database_bytes", "Database file plus WAL, in bytes.");
        let ready = gauge("ready", "1 once the startup catch-up has committed (as /readyz).");
        let commit_failing = gauge("commit_failing", "1 while commits fail and are retried with backoff.");
        let watch_incomplete = gauge("watch_incomplete", "1 while file events are incomplete (the inotify watch limit).");
        let opencode_db_failing = gauge("opencode_db_failing", "1 while reading opencode.db fails.");
        let otlp_backend_failing = gauge("otlp_backend_failing", "1 while the OTLP backend fails (spans wait in the database).");
        let plain_counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("a valid counter");
            registry.register(Box::new(metric.clone())).expect("a unique counter");
            metric
        };
        let otlp_spans_sent = plain_counter("otlp_spans_sent_total", "Spans the OTLP backend acknowledged.");
        let otlp_requests_failed = plain_counter("otlp_requests_failed_total", "OTLP export passes that failed (the backend down or refusing).");
        let otlp_retries = plain_counter("otlp_retries_total", "OTLP export attempts after a failure.");
        let parquet_rows_written = plain_counter("parquet_rows_written_total", "Rows written by the Parquet export.");
        let api_answers_reused = plain_counter("api_answers_reused_total", "Read API answers served again, no commit having changed them.");
        let parquet_export_failures = plain_counter("parquet_export_failures_total", "Parquet exports that failed.");
        let last_commit_timestamp_seconds =
            Gauge::new("last_commit_timestamp_seconds", "Unix time of the last commit; 0 before the first.").expect("a valid gauge");
        registry.register(Box::new(last_commit_timestamp_seconds.clone())).expect("a unique gauge");
        let build_info =
            IntGaugeVec::new(Opts::new("build_info", "Always 1: the binary's version, commit and DuckDB version."), &["version", "commit", "duckdb_version"])
                .expect("a valid gauge");
        registry.register(Box::new(build_info.clone())).expect("a unique gauge");
        Metrics {
            registry,
            files,
            records,
            reconciler_recovered,
            actor_restarts,
            api_requests,
            batch_files,
            batch_write_seconds,
            event_to_commit_seconds,
            reconcile_seconds,
            api_seconds,
            checkpoint_seconds,
            pending_files,
            batches_in_flight,
            database_bytes,
            ready,
            commit_failing,
            watch_incomplete,
            opencode_db_failing,
            otlp_backend_failing,
            otlp_spans_sent,
            otlp_requests_failed,
            otlp_retries,
            parquet_rows_written,
            api_answers_reused,
            parquet_export_failures,
            last_commit_timestamp_seconds,
            build_info,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_prefixed_and_rendered() {
        let metrics = Metrics::new();
        metrics.files.with_label_values(&["part", "indexed"]).inc_by(3);
        metrics.batch_files.observe(3.0);
        metrics.api_requests.with_label_values(&["/api/stats", "200"]).inc();
        let text = metrics.render();
        assert!(text.contains("ducktail_files_total{kind=\"part\",outcome=\"indexed\"} 3"), "{text}");
        assert!(text.contains("ducktail_batch_files_count 1"), "{text}");
        assert!(text.contains("ducktail_pending_files 0"), "{text}");
        assert!(text.contains("ducktail_actor_restarts_total{actor=\"writer\"} 0"), "restart counters exist before a restart: {text}");
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            assert!(line.starts_with("ducktail_"), "unprefixed metric: {line}");
        }
    }
}
