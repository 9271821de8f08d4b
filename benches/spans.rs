//! Span indexing throughput: generated span Parquet files (the Junjo Plan-002 schema, ZSTD,
//! several services per file, duplicates, split traces, orphans) indexed cold by
//! `ducktail index --spans`, beside the ceiling of reading and decoding the same files with the
//! same reader and writing nothing. Prints one markdown table.
//!
//! ```text
//! cargo bench --workspace --bench spans -- --files 100 --spans 10000
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use ducktail_generator::spans::{generate_spans, SpanTreeConfig};

#[path = "support/index_run.rs"]
mod index_run;

fn options() -> (usize, usize) {
    let (mut files, mut spans) = (100, 10_000);
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_else(|| panic!("{argument} takes a value"));
        match argument.as_str() {
            "--files" => files = value().parse().expect("a number of files"),
            "--spans" => spans = value().parse().expect("spans per file"),
            _ => {}
        }
    }
    (files, spans)
}

/// Reads and decodes every file, writing nothing: the ceiling for any span indexer.
fn read_ceiling(files: &[std::path::PathBuf]) -> (Duration, usize) {
    let started = Instant::now();
    let rows = files.iter().map(|path| ducktail_sources::spans::read_span_file(path).expect("readable").1.len()).sum();
    (started.elapsed(), rows)
}

fn main() {
    let (files, spans_per_file) = options();
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("spans");
    let config = SpanTreeConfig { seed: 5, files, spans_per_file, services: 12, duplicate_every: 200, orphan_every: 20 };
    let tree = generate_spans(&root, &config).expect("generate the span tree");
    let bytes: u64 = tree.files.iter().map(|path| std::fs::metadata(path).unwrap().len()).sum();
    let (ceiling, rows) = read_ceiling(&tree.files);
    let opencode = scratch.path().join("opencode");
    std::fs::create_dir_all(&opencode).unwrap();
    let db = scratch.path().join("spans.duckdb");
    let (cold, peak_kib) = index_spans(&opencode, &root, &db);
    let (again, _) = index_spans(&opencode, &root, &db);
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    println!("machine: {cores} cores; {} files, {} rows ({} distinct spans), {:.1} MB of Parquet\n", tree.files.len(), rows, tree.spans, bytes as f64 / 1e6);
    println!("| run | rows | wall s | rows/s | vs read ceiling | peak RSS MB |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rate = |elapsed: Duration| rows as f64 / elapsed.as_secs_f64();
    println!("| read + decode only (ceiling, 1 thread) | {rows} | {:.2} | {:.0} | 1.00 | |", ceiling.as_secs_f64(), rate(ceiling));
    println!(
        "| `ducktail index --spans`, cold | {rows} | {:.2} | {:.0} | {:.2} | {:.0} |",
        cold.as_secs_f64(),
        rate(cold),
        rate(cold) / rate(ceiling),
        peak_kib as f64 / 1024.0
    );
    println!("| `ducktail index --spans`, unchanged | {rows} | {:.2} | | | |", again.as_secs_f64());
    println!(
        "\nReference (shared/otel-parquet.md §2.1, 2 cores): the original indexer inserted ~524 rows/s with executemany, ~230,000 rows/s with an Arrow INSERT."
    );
}

fn index_spans(opencode: &Path, root: &Path, db: &Path) -> (Duration, u64) {
    // `run_index` runs `ducktail index --opencode … --db …`; the span folder comes in through the
    // environment's config layer, so the same helper serves both benches.
    std::env::set_var("DUCKTAIL__SOURCES__SPANS__PATH", root);
    index_run::run_index(opencode, db)
}
