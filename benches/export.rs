//! Export benchmark: Parquet rows/s and OTLP spans/s on an indexed tree, each beside a baseline,
//! and what exporting costs the live pipeline (event→commit latency at a paced rate with both
//! exports on versus off, in one run). Prints rows of the suite's table (see `benches/suite.sh`).
//!
//! ```text
//! cargo bench --workspace --bench export -- --files 100000 --rate 1000 --seconds 10
//! ```
//!
//! - The tree is the suite's (`$CARGO_TARGET_DIR/bench-trees/seed42-<files>`, generated if
//!   missing) and is indexed into a scratch database, which every export reads.
//! - Parquet: `ducktail export parquet` of every table (a fresh folder), then again with nothing
//!   changed. Baseline: DuckDB's own `COPY … TO … (FORMAT parquet, PARTITION_BY date)` of the same
//!   rows from Python (`$DUCKTAIL_PY_VENV`, default `~/.cache/ducktail/py-venv`: DuckDB's
//!   parquet extension is not compiled into ducktail). The row is absent without that venv.
//! - OTLP: `ducktail export otlp` of every session to a local receiver that decodes each request
//!   with the official protobuf types. Baseline: the OpenTelemetry Python SDK making and
//!   exporting as many spans (ten attributes each, batches of 512) to the same receiver
//!   (`$DUCKTAIL_PHOENIX_VENV`, which has the SDK); absent without that venv.
//! - Live: the live bench's paced writer (`--rate` files/s for `--seconds`) into an empty tree
//!   under a daemon, three times: no export, OTLP live (to the receiver), and OTLP live with a
//!   Parquet export every second; the rows are the daemon's own event→commit latencies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/otlp_sink.rs"]
mod otlp_sink;
#[path = "support/paced.rs"]
mod paced;
#[path = "support/suite.rs"]
mod suite;

struct Options {
    files: usize,
    rate: u64,
    seconds: u64,
    header: bool,
}

fn options() -> Options {
    let mut options = Options { files: 100_000, rate: 1_000, seconds: 10, header: true };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_else(|| panic!("{argument} takes a value"));
        match argument.as_str() {
            "--files" => options.files = value().parse().expect("a number of files"),
            "--rate" => options.rate = value().parse().expect("files/s"),
            "--seconds" => options.seconds = value().parse().expect("seconds"),
            "--no-header" => options.header = false,
            _ => {}
        }
    }
    options
}

fn main() {
    let options = options();
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    if options.header {
        suite::print_header(&format!("{cores} cores; exports read a scratch copy of the indexed tree's database"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let tree = target.join("bench-trees").join(format!("seed42-{}", options.files));
    ensure_tree(&tree, options.files);
    let scratch = tempfile::tempdir().expect("a temp dir");
    let db = scratch.path().join("export.duckdb");
    ducktail(&["index", "--opencode", path(&tree), "--db", path(&db)]);
    parquet_rows(&db, scratch.path(), options.files);
    let fresh = scratch.path().join("live-start.duckdb");
    std::fs::copy(&db, &fresh).expect("copy the database");
    otlp_rows(&db, options.files);
    live_start_rows(&tree, &fresh, scratch.path(), options.files);
    live_rows(options.rate, options.seconds);
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn ensure_tree(opencode: &Path, size: usize) {
    let marker = opencode.join(".complete");
    if marker.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(opencode);
    let config = ducktail_generator::GeneratorConfig { seed: 42, target_files: size, ..Default::default() };
    ducktail_generator::generate(opencode, &config).expect("generate the bench tree");
    std::fs::write(marker, b"").unwrap();
}

/// Runs the binary with `args`; its stdout.
fn ducktail(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ducktail"))
        .args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent-ducktail-bench-config")
        .env("CLAUDE_CONFIG_DIR", "/nonexistent-ducktail-bench-claude")
        .env("CODEX_HOME", "/nonexistent-ducktail-bench-codex")
        .output()
        .expect("run ducktail");
    assert!(output.status.success(), "ducktail {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = work();
    (value, started.elapsed())
}

fn parquet_rows(db: &Path, scratch: &Path, files: usize) {
    let out = scratch.join("parquet");
    let (report, full) = timed(|| ducktail(&["export", "parquet", path(&out), "--db", path(db), "--json"]));
    let report: serde_json::Value = serde_json::from_str(&report).expect("the report is JSON");
    let rows: f64 = report["tables"].as_array().unwrap().iter().map(|table| table["rows_written"].as_f64().unwrap()).sum();
    let bytes: f64 = report["tables"].as_array().unwrap().iter().map(|table| table["bytes_written"].as_f64().unwrap()).sum();
    let baseline = duckdb_copy_seconds(db, &scratch.join("parquet-baseline"));
    let workload = "export: Parquet, every table, a fresh folder";
    suite::row(workload, files, "rows/s", rows / full.as_secs_f64(), "DuckDB COPY … PARTITION_BY (Python)", baseline.map(|seconds| rows / seconds), "");
    suite::row(workload, files, "seconds", full.as_secs_f64(), "", None, "");
    suite::row(workload, files, "MB written", bytes / 1e6, "", None, "");
    let (_, unchanged) = timed(|| ducktail(&["export", "parquet", path(&out), "--db", path(db), "--json"]));
    suite::row("export: Parquet again, nothing changed", files, "seconds", unchanged.as_secs_f64(), "the first export", Some(full.as_secs_f64()), "");
}

/// DuckDB's own partitioned COPY of the same rows, from Python; `None` without the venv.
fn duckdb_copy_seconds(db: &Path, out: &Path) -> Option<f64> {
    let venv = std::env::var_os("DUCKTAIL_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/ducktail/py-venv"));
    let python = venv.join("bin/python");
    if !python.is_file() {
        eprintln!("{} is missing: no DuckDB COPY baseline (see docs/benchmarks.md)", python.display());
        return None;
    }
    let tables: Vec<&str> = ducktail_store::EXPORT_TABLES.iter().map(|table| table.name).collect();
    let script = format!(
        r#"
import duckdb, time
connection = duckdb.connect({db:?}, read_only=True)
started = time.perf_counter()
for table in {tables:?}:
    session = "LEFT JOIN sessions s ON s.id = t.session_id" if table in ("messages", "parts", "step_events", "todos", "file_diffs", "delegations", "agent_traces") else ""
    day = {{"projects": "t.created_at", "sessions": "t.created_at", "spans": "t.start_time", "traces": "t.start_time", "services": "t.first_seen"}}.get(table, "s.created_at")
    connection.execute(f"COPY (SELECT t.*, CAST({{day}} AS DATE) AS date FROM {{table}} t {{session}}) TO '{out}/{{table}}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd, OVERWRITE_OR_IGNORE)")
print(time.perf_counter() - started)
"#,
        db = path(db),
        out = path(out),
    );
    std::fs::create_dir_all(out).expect("create the baseline folder");
    let output = Command::new(python).arg("-c").arg(script).output().expect("run python");
    assert!(output.status.success(), "the DuckDB baseline failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn otlp_rows(db: &Path, files: usize) {
    let sink = otlp_sink::OtlpSink::start();
    let (report, elapsed) = timed(|| ducktail(&["export", "otlp", "--endpoint", &sink.url, "--db", path(db), "--json"]));
    let report: serde_json::Value = serde_json::from_str(&report).expect("the report is JSON");
    let spans = report["sent"].as_f64().unwrap();
    assert_eq!(sink.spans() as f64, spans, "the receiver got every span");
    let baseline = python_sdk_seconds(&sink.url, spans as u64);
    let workload = "export: OTLP backfill, every session, to a local receiver";
    suite::row(
        workload,
        files,
        "spans/s",
        spans / elapsed.as_secs_f64(),
        "OpenTelemetry Python SDK, same span count",
        baseline.map(|seconds| spans / seconds),
        "",
    );
    suite::row(workload, files, "spans", spans, "", None, "");
    let (_, again) = timed(|| ducktail(&["export", "otlp", "--endpoint", &sink.url, "--db", path(db), "--json"]));
    suite::row("export: OTLP backfill again, everything sent", files, "seconds", again.as_secs_f64(), "the first backfill", Some(elapsed.as_secs_f64()), "");
}

/// Seconds the OpenTelemetry Python SDK (`$DUCKTAIL_PHOENIX_VENV`, which has it) takes to make
/// and export `spans` spans of ten attributes each over OTLP/HTTP protobuf (batch processor, 512
/// per request) to the same receiver: what the reference exporter pays per span. `None`
/// without that venv.
fn python_sdk_seconds(url: &str, spans: u64) -> Option<f64> {
    let venv = std::env::var_os("DUCKTAIL_PHOENIX_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache/ducktail/phoenix-venv"));
    let python = venv.join("bin/python");
    if !python.is_file() {
        eprintln!("{} is missing: no OpenTelemetry SDK baseline (see docs/benchmarks.md)", python.display());
        return None;
    }
    let script = format!(
        r#"
import time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint="{url}/v1/traces"), max_export_batch_size=512, max_queue_size=1 << 20))
tracer = provider.get_tracer("bench")
started = time.perf_counter()
for index in range({spans}):
    with tracer.start_as_current_span("chat model") as span:
        for key in range(10):
            span.set_attribute(f"gen_ai.attribute_{{key}}", index)
provider.force_flush()
print(time.perf_counter() - started)
"#
    );
    let output = Command::new(python).arg("-c").arg(script).output().expect("run python");
    assert!(output.status.success(), "the SDK baseline failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// `ducktail run` with OTLP on, started on the indexed tree whose database has sent nothing:
/// the time from ready until its catch-up walk has sent every final span.
fn live_start_rows(tree: &Path, db: &Path, scratch: &Path, files: usize) {
    let sink = otlp_sink::OtlpSink::start();
    let config = format!("[http]\nsql_enabled = true\n[export.otlp]\nenabled = true\nendpoint = \"{}\"\n", sink.url);
    let daemon = daemon::BenchDaemon::start(tree, db, scratch, &config, Duration::from_secs(300));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    loop {
        let health: serde_json::Value = match ureq::get(&format!("{}/health/detailed", daemon.base_url)).call() {
            Ok(response) => response.into_json().unwrap(),
            Err(ureq::Error::Status(_, response)) => response.into_json().unwrap(),
            Err(error) => panic!("health: {error}"),
        };
        if health["export"]["otlp"]["caught_up"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the catch-up did not end within 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    daemon.stop();
    let spans = sink.spans() as f64;
    let workload = "export: OTLP live, a daemon's start on the indexed tree (nothing sent before)";
    suite::row(workload, files, "spans/s until caught up", spans / elapsed, "", None, "");
    suite::row(workload, files, "seconds", elapsed, "", None, "");
}

/// Live latency at `rate` files/s for `seconds`, with no export and with both exports on.
fn live_rows(rate: u64, seconds: u64) {
    let files = (rate * seconds) as usize;
    let sink = otlp_sink::OtlpSink::start();
    let mut results = Vec::new();
    // Off, OTLP live alone, and OTLP with a Parquet export every second (the default is 15
    // minutes: a second is the worst case of a rewrite racing the writer).
    for (exports, parquet) in [(false, false), (true, false), (true, true)] {
        let scratch = tempfile::tempdir().expect("a temp dir");
        // The written tree on a tmpfs when there is one (as in the live bench): the rows measure
        // the daemon, not the disk. The database and the Parquet folder stay on disk.
        let trees = tempfile::Builder::new().prefix("ducktail-export-").tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("a temp dir");
        let opencode = trees.path().join("opencode");
        std::fs::create_dir_all(opencode.join("storage")).unwrap();
        let mut config = "[http]\nsql_enabled = true\n".to_owned();
        if exports {
            config += &format!("[export.otlp]\nenabled = true\nendpoint = \"{}\"\n", sink.url);
        }
        if parquet {
            config += &format!("[export.parquet]\ndir = \"{}\"\ninterval = \"1s\"\n", scratch.path().join("parquet").display());
        }
        let daemon = daemon::BenchDaemon::start(&opencode, &scratch.path().join("live.duckdb"), scratch.path(), &config, Duration::from_secs(60));
        let plan: Vec<_> =
            ducktail_generator::plan(&ducktail_generator::GeneratorConfig { seed: 7, target_files: files, ..Default::default() }).take(files).collect();
        paced::write_files(&opencode, plan.iter(), Some(rate), || {});
        let deadline = Instant::now() + Duration::from_secs(600);
        let indexed = || -> i64 {
            let answer: serde_json::Value = ureq::post(&format!("{}/api/sql", daemon.base_url))
                .send_json(serde_json::json!({ "sql": "SELECT count(*) FROM file_index" }))
                .expect("POST /api/sql")
                .into_json()
                .unwrap();
            answer["rows"][0][0].as_i64().unwrap_or(0)
        };
        while indexed() < plan.len() as i64 {
            assert!(Instant::now() < deadline, "the daemon did not index every file within 10 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
        let stats: serde_json::Value = ureq::get(&format!("{}/api/stats", daemon.base_url)).call().expect("stats").into_json().unwrap();
        let latency = &stats["latency_ms"];
        let milliseconds = |key: &str| latency[key].as_f64().unwrap_or(f64::NAN);
        results.push((format!("{:.1} / {:.1} / {:.1}", milliseconds("p50"), milliseconds("p95"), milliseconds("p99")), milliseconds("p95")));
        daemon.stop();
    }
    let workload = format!("live: write → visible, {rate} files/s offered, with and without exports");
    suite::row_text(&workload, files, "latency ms p50 / p95 / p99, no export", &results[0].0, "p95 ≤ 50");
    suite::row_text(&workload, files, "latency ms p50 / p95 / p99, OTLP live", &results[1].0, "p95 ≤ 50");
    suite::row_text(&workload, files, "latency ms p50 / p95 / p99, OTLP live + Parquet every 1 s", &results[2].0, "");
    suite::row(&workload, files, "p95 ms, OTLP live", results[1].1, "p95 ms, no export", Some(results[0].1), "");
    suite::row(&workload, files, "p95 ms, OTLP live + Parquet every 1 s", results[2].1, "p95 ms, no export", Some(results[0].1), "");
    suite::row(&workload, files, "spans the receiver got meanwhile", sink.spans() as f64, "", None, "");
}
