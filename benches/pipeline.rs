//! Bulk and reconcile benchmark of `ducktail index` against its baselines, on generated trees.
//! Prints rows of the suite's table (see `benches/suite.sh`).
//!
//! ```text
//! cargo bench --workspace --bench pipeline -- --files 10000,100000,1000000 [--baselines-up-to 100000]
//! ```
//!
//! Trees are generated once (seeded) under `$CARGO_TARGET_DIR/bench-trees/` and reused; each size
//! runs, side by side on the same tree:
//! * the raw ceiling: read + JSON-parse every file with one thread per core, write nothing;
//! * the storage ceiling: the same files decoded by ducktail's decoder on as many threads, their
//!   rows appended as Arrow batches to an empty database with ducktail's tables but no keys or
//!   indexes, 5,000 files a transaction, then one `CHECKPOINT` (`support/stored_ceiling.rs`):
//!   what DuckDB allows for these rows, against what `index` does;
//! * the seed design's loader done well (trees up to `--baselines-up-to` files): DuckDB reading
//!   the files itself with `read_text`, extracting each kind's fields from the parsed JSON, and
//!   `INSERT OR REPLACE` into keyed tables with the batch's `file_index` rows upserted in one
//!   statement, `preserve_insertion_order = false`, in micro-batches of 100 and of 1,000 files;
//! * a cold `ducktail index` (files/s, peak RSS of the process);
//! * `index` again with nothing changed, then with 1 % of the files touched (the reconcile cost:
//!   scan, compare, re-read what changed). The database is kept as
//!   `bench-trees/bench-<size>.duckdb` for the read benchmark.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "support/index_run.rs"]
mod index_run;
#[path = "support/stored_ceiling.rs"]
mod stored_ceiling;
#[path = "support/suite.rs"]
mod suite;
use index_run::run_index;

/// As in the `ducktail` binary: every allocation, DuckDB's included (the workspace's mimalloc
/// has `override`), on mimalloc, so the ceilings and baselines run on the allocator `index` has.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut sizes = vec![10_000usize, 100_000];
    let mut baselines_up_to = 100_000usize;
    let mut header = true;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--files" => {
                let list = arguments.next().expect("--files takes a comma-separated list");
                sizes = list.split(',').map(|size| size.trim().parse().expect("a number of files")).collect();
            }
            "--baselines-up-to" => baselines_up_to = arguments.next().and_then(|value| value.parse().ok()).expect("--baselines-up-to N"),
            "--no-header" => header = false,
            _ => {}
        }
    }
    let threads = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let trees = target.join("bench-trees");
    if header {
        suite::print_header(&format!("{threads} cores; warm page cache (each tree is read once before timing)"));
    }
    for size in sizes {
        let opencode = trees.join(format!("seed42-{size}"));
        ensure_tree(&opencode, size);
        let files = list_files(&opencode.join("storage"));
        let n = files.len();
        let _ = raw_ceiling(&files, threads); // warm the page cache
        let raw = raw_ceiling(&files, threads);
        let rate = |elapsed: Duration| n as f64 / elapsed.as_secs_f64();
        let ceiling_db = trees.join(format!("ceiling-{size}.duckdb"));
        let (stored, stored_counts) = stored_ceiling::stored_rows_ceiling(&opencode.join("storage"), &files, threads, &ceiling_db);
        let baselines = (size <= baselines_up_to).then(|| {
            let batch_100 = duckdb_read_text_batches(&files, 100, &trees.join(format!("baseline-100-{size}.duckdb")));
            let batch_1000 = duckdb_read_text_batches(&files, 1_000, &trees.join(format!("baseline-1000-{size}.duckdb")));
            (rate(batch_100), rate(batch_1000))
        });
        let db = trees.join(format!("bench-{size}.duckdb"));
        let _ = std::fs::remove_file(&db);
        let _ = std::fs::remove_file(format!("{}.wal", db.display()));
        let (cold, peak_rss) = run_index(&opencode, &db);
        // The ceiling must have stored what `index` stores, or its figure means nothing.
        let index_counts = stored_ceiling::table_counts(&db);
        if index_counts != stored_counts {
            eprintln!("warning: {size} files: rows per table differ, storage ceiling {stored_counts:?}, ducktail index {index_counts:?}");
        } else {
            eprintln!("{size} files: the storage ceiling stored as many rows as `ducktail index`: {stored_counts:?}");
        }
        if size <= baselines_up_to {
            eprintln!("{size} files: rows only one of the two holds, per table: {:?}", stored_ceiling::rows_differing(&ceiling_db, &db));
        }
        let _ = std::fs::remove_file(&ceiling_db);
        let (unchanged, _) = run_index(&opencode, &db);
        touch_one_percent(&files);
        let (one_percent, _) = run_index(&opencode, &db);
        let index_rate = rate(cold);
        let bulk_goal = if size == 100_000 { "≥ 50,000" } else { "" };
        suite::row(
            "bulk: cold `ducktail index`",
            n,
            "files/s",
            index_rate,
            "raw read+parse, same threads (ceiling)",
            Some(rate(raw)),
            if size == 100_000 { "≥ 0.70×" } else { "" },
        );
        suite::row(
            "bulk: cold `ducktail index`",
            n,
            "files/s",
            index_rate,
            "decoded rows appended to DuckDB, no keys or indexes (storage ceiling)",
            Some(rate(stored)),
            "",
        );
        if let Some((batch_100, batch_1000)) = baselines {
            suite::row("bulk: cold `ducktail index`", n, "files/s", index_rate, "read_text micro-batch 100, keyed", Some(batch_100), "");
            suite::row(
                "bulk: cold `ducktail index`",
                n,
                "files/s",
                index_rate,
                "read_text micro-batch 1000, keyed",
                Some(batch_1000),
                if size == 100_000 { "≥ 10×" } else { "" },
            );
        }
        suite::row("bulk: cold `ducktail index`", n, "files/s", index_rate, "", None, bulk_goal);
        let rss_goal = if size >= 1_000_000 { "≤ 300" } else { "" };
        suite::row("bulk: peak RSS of `ducktail index`", n, "MB", peak_rss as f64 / 1024.0, "", None, rss_goal);
        let reconcile_goal = match size {
            100_000 => "≤ 0.3",
            1_000_000 => "≤ 2",
            _ => "",
        };
        suite::row("reconcile: `ducktail index`, nothing changed", n, "s", unchanged.as_secs_f64(), "", None, reconcile_goal);
        suite::row("reconcile: `ducktail index`, 1% changed", n, "s", one_percent.as_secs_f64(), "", None, "");
    }
}

/// Gives every hundredth file a new mtime (same content), so the next index re-reads 1 %.
fn touch_one_percent(files: &[PathBuf]) {
    let now = std::time::SystemTime::now();
    for path in files.iter().step_by(100) {
        let file = std::fs::File::options().write(true).open(path).expect("open a tree file");
        file.set_modified(now).expect("set a file's mtime");
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
    walkdir::WalkDir::new(storage).into_iter().filter_map(Result::ok).filter(|entry| entry.file_type().is_file()).map(|entry| entry.into_path()).collect()
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

/// A fresh DuckDB file with the seed design's keyed tables: one per record kind (id as primary
/// key, the main fields extracted, the raw document kept) and the file index (path as key).
fn baseline_database(db: &Path) -> duckdb::Connection {
    let _ = std::fs::remove_file(db);
    let _ = std::fs::remove_file(format!("{}.wal", db.display()));
    let connection = duckdb::Connection::open(db).expect("open the baseline database");
    connection
        .execute_batch(
            "SET preserve_insertion_order = false;
             CREATE TABLE projects (id VARCHAR PRIMARY KEY, worktree VARCHAR, created_at BIGINT, raw JSON);
             CREATE TABLE sessions (id VARCHAR PRIMARY KEY, project_id VARCHAR, parent_id VARCHAR, title VARCHAR,
                 created_at BIGINT, updated_at BIGINT, raw JSON);
             CREATE TABLE messages (id VARCHAR PRIMARY KEY, session_id VARCHAR, role VARCHAR, agent VARCHAR,
                 provider_id VARCHAR, model_id VARCHAR, cost DOUBLE, tokens_input BIGINT, tokens_output BIGINT,
                 created_at BIGINT, raw JSON);
             CREATE TABLE parts (id VARCHAR PRIMARY KEY, session_id VARCHAR, message_id VARCHAR, part_type VARCHAR,
                 text VARCHAR, tool VARCHAR, tool_status VARCHAR, tool_output VARCHAR, raw JSON);
             CREATE TABLE todos (session_id VARCHAR PRIMARY KEY, items JSON);
             CREATE TABLE session_diffs (session_id VARCHAR PRIMARY KEY, items JSON);
             CREATE TABLE file_index (file_path VARCHAR PRIMARY KEY, size BIGINT, mtime TIMESTAMPTZ, indexed_at TIMESTAMPTZ);",
        )
        .expect("create the baseline tables");
    connection
}

/// One micro-batch of the seed design, done well: DuckDB reads and parses the batch's files
/// once into a temp table, then `INSERT OR REPLACE`s each kind's rows by key and upserts the
/// batch's `file_index` rows in one statement, all in one transaction.
const BASELINE_BATCH: &str = "
BEGIN;
CREATE OR REPLACE TEMP TABLE batch AS
    SELECT filename, content::JSON AS doc, size, last_modified,
           regexp_extract(filename, '/storage/([a-z_]+)/', 1) AS kind,
           regexp_extract(filename, '([^/]+)\\.json$', 1) AS stem
    FROM read_text([{files}]);
INSERT OR REPLACE INTO projects SELECT doc->>'id', doc->>'worktree', (doc->'time'->>'created')::BIGINT, doc
    FROM batch WHERE kind = 'project';
INSERT OR REPLACE INTO sessions SELECT doc->>'id', doc->>'projectID', doc->>'parentID', doc->>'title',
    (doc->'time'->>'created')::BIGINT, (doc->'time'->>'updated')::BIGINT, doc FROM batch WHERE kind = 'session';
INSERT OR REPLACE INTO messages SELECT doc->>'id', doc->>'sessionID', doc->>'role', doc->>'agent',
    coalesce(doc->>'providerID', doc->'model'->>'providerID'), coalesce(doc->>'modelID', doc->'model'->>'modelID'),
    (doc->>'cost')::DOUBLE, (doc->'tokens'->>'input')::BIGINT, (doc->'tokens'->>'output')::BIGINT,
    (doc->'time'->>'created')::BIGINT, doc FROM batch WHERE kind = 'message';
INSERT OR REPLACE INTO parts SELECT doc->>'id', doc->>'sessionID', doc->>'messageID', doc->>'type', doc->>'text',
    doc->>'tool', doc->'state'->>'status', doc->'state'->>'output', doc FROM batch WHERE kind = 'part';
INSERT OR REPLACE INTO todos SELECT stem, doc FROM batch WHERE kind = 'todo';
INSERT OR REPLACE INTO session_diffs SELECT stem, doc FROM batch WHERE kind = 'session_diff';
INSERT OR REPLACE INTO file_index SELECT filename, size, last_modified, now() FROM batch;
COMMIT;
";

fn sql_string(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// The seed design's loader in micro-batches of `batch` files (see [`BASELINE_BATCH`]).
fn duckdb_read_text_batches(files: &[PathBuf], batch: usize, db: &Path) -> Duration {
    let connection = baseline_database(db);
    let started = Instant::now();
    for chunk in files.chunks(batch) {
        let list: Vec<String> = chunk.iter().map(|path| sql_string(path)).collect();
        connection.execute_batch(&BASELINE_BATCH.replace("{files}", &list.join(","))).expect("a read_text micro-batch");
    }
    let rows: i64 = connection.query_row("SELECT count(*) FROM file_index", [], |row| row.get(0)).expect("count the baseline's files");
    assert_eq!(rows as usize, files.len(), "the baseline indexed every file");
    started.elapsed()
}
