//! End-to-end benchmark of `ducktail index` against the raw read+parse ceiling, on generated
//! trees. Prints one markdown table.
//!
//! ```text
//! cargo bench --bench pipeline -- --files 10000,100000
//! ```
//!
//! Trees are generated once (seeded) under `$CARGO_TARGET_DIR/bench-trees/` and reused; each size
//! runs, side by side on the same tree:
//! * the raw ceiling: read + JSON-parse every file with one thread per core, write nothing;
//! * the seed design's loader: DuckDB reading the files itself, `read_text` + a `::JSON` cast
//!   (parse and validate) into one raw table, in micro-batches of 100 files per transaction and
//!   in one bulk statement over a glob. It stores raw documents only — no decoding into tables,
//!   no file index — so it is a lower bound on that design's cost;
//! * a cold `ducktail index` (files/s, peak RSS of the process);
//! * a second `index` with nothing changed (the reconcile cost: scan + compare).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "support/index_run.rs"]
mod index_run;
use index_run::run_index;

fn main() {
    let mut sizes = vec![10_000usize, 100_000];
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        if argument == "--files" {
            let list = arguments.next().expect("--files takes a comma-separated list");
            sizes = list.split(',').map(|size| size.trim().parse().expect("a number of files")).collect();
        }
    }
    let threads = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let trees = target.join("bench-trees");
    println!("machine: {threads} cores; warm page cache (each tree is read once before timing)\n");
    println!(
        "| files | raw read+parse files/s | DuckDB read_text batch 100 files/s | DuckDB read_text bulk files/s \
         | ducktail index cold files/s | index / raw | index / batch-100 | index / bulk | peak RSS MB | reconcile unchanged s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        let opencode = trees.join(format!("seed42-{size}"));
        ensure_tree(&opencode, size);
        let files = list_files(&opencode.join("storage"));
        let _ = raw_ceiling(&files, threads); // warm the page cache
        let raw = raw_ceiling(&files, threads);
        let db = trees.join(format!("bench-{size}.duckdb"));
        let _ = std::fs::remove_file(&db);
        let _ = std::fs::remove_file(format!("{}.wal", db.display()));
        let micro_batches = duckdb_read_text_batches(&files, 100, &trees.join(format!("baseline-batch-{size}.duckdb")));
        let bulk = duckdb_read_text_bulk(&opencode.join("storage"), &trees.join(format!("baseline-bulk-{size}.duckdb")));
        let (cold, peak_rss) = run_index(&opencode, &db);
        let (warm, _) = run_index(&opencode, &db);
        let rate = |elapsed: Duration| files.len() as f64 / elapsed.as_secs_f64();
        let index_rate = rate(cold);
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} | {:.3} |",
            files.len(),
            rate(raw),
            rate(micro_batches),
            rate(bulk),
            index_rate,
            index_rate / rate(raw),
            index_rate / rate(micro_batches),
            index_rate / rate(bulk),
            peak_rss as f64 / 1024.0,
            warm.as_secs_f64()
        );
    }
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

fn list_files(storage: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(storage)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| entry.into_path())
        .collect()
}

/// Reads and parses every file with `threads` threads, writing nothing.
fn raw_ceiling(files: &[PathBuf], threads: usize) -> Duration {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let parsed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(index) else { break };
                if let Ok(bytes) = std::fs::read(path) {
                    if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() {
                        parsed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(parsed.load(Ordering::Relaxed) > 0);
    started.elapsed()
}

/// A fresh DuckDB file with the table the seed design loaded raw documents into.
fn baseline_database(db: &Path) -> duckdb::Connection {
    let _ = std::fs::remove_file(db);
    let _ = std::fs::remove_file(format!("{}.wal", db.display()));
    let connection = duckdb::Connection::open(db).expect("open the baseline database");
    connection.execute_batch("CREATE TABLE raw_files (filename VARCHAR, content JSON)").expect("create raw_files");
    connection
}

fn sql_string(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// The seed design's micro-batches: one `INSERT … FROM read_text([…])` transaction per batch.
fn duckdb_read_text_batches(files: &[PathBuf], batch: usize, db: &Path) -> Duration {
    let connection = baseline_database(db);
    let started = Instant::now();
    for chunk in files.chunks(batch) {
        let list: Vec<String> = chunk.iter().map(|path| sql_string(path)).collect();
        connection
            .execute_batch(&format!("INSERT INTO raw_files SELECT filename, content::JSON FROM read_text([{}])", list.join(",")))
            .expect("a read_text micro-batch");
    }
    started.elapsed()
}

/// DuckDB loading the whole tree in one statement over a glob.
fn duckdb_read_text_bulk(storage: &Path, db: &Path) -> Duration {
    let connection = baseline_database(db);
    let glob = storage.join("**").join("*.json");
    let started = Instant::now();
    connection
        .execute_batch(&format!("INSERT INTO raw_files SELECT filename, content::JSON FROM read_text({})", sql_string(&glob)))
        .expect("a bulk read_text");
    started.elapsed()
}

