//! The writer's and the TraceBuilder's cost per live batch, alone: no daemon, no watcher, no file
//! writing process. On a copy of an indexed database (by default the pipeline bench's 100k one),
//! first recomputes and replaces every derived row once (what a start after a crash does), then
//! rewrites files of its tree in batches of 1, 10 and 100 files — what the Accumulator hands the
//! Writer when it flushes at once on an idle writer — and after each batch computes the derived
//! rows of the sessions it touched on a reader and replaces them, as the TraceBuilder and the
//! Writer do. Prints each batch size's time per batch for the three steps, one after the other on
//! an otherwise idle machine (in the daemon the recompute competes with batches for the cores).
//! Prints rows of the suite's table (see `benches/suite.sh`).
//!
//! ```text
//! cargo bench --workspace --bench batch -- [--files 100000] [--batches 200] [--wal-autocheckpoint 64MB] [--memory-limit 256MB]
//! RUST_LOG=ducktail_store=trace cargo bench --workspace --bench batch   # and each batch's phases
//! ```
//!
//! The files are re-decoded, unchanged, before each batch, so every batch replaces rows that
//! exist, as the live path does while OpenCode rewrites a message or a streaming part. They are
//! taken in path order, so with the default counts every batch holds message files
//! (`message/<session>/…` sorts before `part/`), a session's messages together.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ducktail_model::FileKind;
use ducktail_pipeline::files::{resolve_path, Resolved, OPENCODE_JSON_SOURCE};
use ducktail_sources::opencode::{scan_storage, DecodeLimits};
use ducktail_store::{Store, StoreOptions, TraceScope, WriteBatch};

#[path = "support/suite.rs"]
mod suite;

/// As in the `ducktail` binary: every allocation, DuckDB's included (the workspace's mimalloc
/// has `override`), on mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).try_init();
    let (mut size, mut batches, mut header, mut wal_autocheckpoint, mut memory_limit) = (100_000usize, 200usize, true, None, "256MB".to_owned());
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--files" => size = arguments.next().and_then(|value| value.parse().ok()).expect("--files N"),
            "--batches" => batches = arguments.next().and_then(|value| value.parse().ok()).expect("--batches N"),
            "--wal-autocheckpoint" => wal_autocheckpoint = arguments.next(),
            "--memory-limit" => memory_limit = arguments.next().expect("--memory-limit 1GB"),
            "--no-header" => header = false,
            _ => {}
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let trees = target.join("bench-trees");
    let storage = trees.join(format!("seed42-{size}")).join("storage");
    let indexed = trees.join(format!("bench-{size}.duckdb"));
    assert!(indexed.exists() && storage.is_dir(), "{} and its tree come from `cargo bench --workspace --bench pipeline -- --files {size}`", indexed.display());
    let scratch = tempfile::tempdir().expect("a temp dir");
    let database = scratch.path().join("batch.duckdb");
    std::fs::copy(&indexed, &database).expect("copy the indexed database");
    // The daemon's settings: not a bulk load.
    let options = StoreOptions { memory_limit: Some(memory_limit), wal_autocheckpoint, ..Default::default() };
    let mut store = Store::open(&database, &options).expect("open the copy");

    let mut files: Vec<(PathBuf, FileKind)> = scan_storage(&storage)
        .filter_map(Result::ok)
        .filter(|file| matches!(file.kind, FileKind::Part | FileKind::Message))
        .map(|file| (file.path, file.kind))
        .collect();
    files.sort(); // messages first, session by session
    let limits = DecodeLimits::default();
    let reader = store.reader().expect("a reader");
    if header {
        suite::print_header("the writer and the trace recompute alone, one after the other; DuckDB's default threads");
    }
    // What a start after a crash does once: every derived row, computed and replaced.
    let started = Instant::now();
    let rows = reader.compute_derived(&TraceScope::All).expect("compute every derived row");
    let compute = started.elapsed();
    let started = Instant::now();
    store.replace_derived(&rows).expect("replace every derived row");
    suite::row_text(
        "trace builder: every derived row computed / replaced (a start after a crash)",
        size,
        "s",
        &format!("{:.2} / {:.2}", compute.as_secs_f64(), started.elapsed().as_secs_f64()),
        "",
    );
    drop(rows);
    for batch_files in [1usize, 10, 100] {
        let count = if batch_files == 100 { batches / 4 } else { batches };
        let mut took: Vec<Duration> = Vec::with_capacity(count);
        // What the TraceBuilder then does for the batch: derived rows of its sessions, computed
        // on a reader connection and replaced by the writer.
        let (mut computed, mut replaced): (Vec<Duration>, Vec<Duration>) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for (index, chunk) in files.chunks(batch_files).take(count + 10).enumerate() {
            let mut batch = WriteBatch { source: OPENCODE_JSON_SOURCE, ..Default::default() };
            for (path, kind) in chunk {
                match resolve_path(&storage, path, *kind, &limits, Duration::ZERO) {
                    Resolved::Present(file) => batch.files.push(file),
                    Resolved::Gone(_) => panic!("{} vanished", path.display()),
                }
            }
            let started = Instant::now();
            let report = store.write_batch(&batch).expect("write a batch");
            let written = started.elapsed();
            let started = Instant::now();
            let rows = reader.compute_derived(&TraceScope::Sessions(report.touched_sessions)).expect("compute the derived rows");
            let compute = started.elapsed();
            let started = Instant::now();
            store.replace_derived(&rows).expect("replace the derived rows");
            if index >= 10 {
                // the first ten warm caches and plans
                took.push(written);
                computed.push(compute);
                replaced.push(started.elapsed());
            }
        }
        let quantiles = |mut took: Vec<Duration>| {
            took.sort();
            let ms = |quantile: f64| took[((took.len() - 1) as f64 * quantile).round() as usize].as_secs_f64() * 1e3;
            format!("{:.2} / {:.2} / {:.2}", ms(0.5), ms(0.95), ms(0.99))
        };
        let workload = format!("writer: one live batch of {batch_files} rewritten file(s), {count} batches");
        suite::row_text(&workload, size, "ms per batch p50 / p95 / p99", &quantiles(took), "");
        let workload = format!("trace builder: derived rows of one batch of {batch_files} file(s), computed, {count} batches");
        suite::row_text(&workload, size, "ms per batch p50 / p95 / p99", &quantiles(computed), "");
        let workload = format!("writer: those derived rows replaced, {count} batches");
        suite::row_text(&workload, size, "ms per batch p50 / p95 / p99", &quantiles(replaced), "");
    }
    // What holds DuckDB's buffer pool at the end: when it is full, batches wait for evictions.
    let (_, rows) = store
        .reader()
        .expect("a reader")
        .query("SELECT tag, memory_usage_bytes // 1048576 AS mib FROM duckdb_memory() WHERE memory_usage_bytes > 0 ORDER BY 2 DESC")
        .expect("duckdb_memory()");
    eprintln!("DuckDB memory by tag (MiB): {rows:?}");
}
