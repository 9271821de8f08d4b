//! Freshness of OpenCode ≥ 1.2's `opencode.db`: the time from OpenCode committing a part to the
//! database to that part being visible through the HTTP API, at an interactive rate. Prints one
//! markdown table.
//!
//! ```text
//! cargo bench --workspace --bench sqlite -- --parts 300 --rate 10 --copies 1000
//! ```
//!
//! A second table measures bulk reading: the fixture's messages and parts copied `--copies` times
//! under new ids (1,000 copies = 151,000 rows), indexed cold by `ducktail index`, then indexed
//! again unchanged (the full `(id, time_updated)` comparison), with the peak RSS of each run.
//!
//! A copy of the shared fixture database (written by OpenCode 1.18.33) is followed by a fresh
//! `ducktail run`. This process plays OpenCode: each part is one `BEGIN IMMEDIATE` transaction on
//! a WAL-mode connection, as OpenCode writes (a new part, then the same part updated, as a
//! streamed text part is written twice). After each commit it polls `POST /api/sql` every
//! millisecond until the new version is visible; that wait is the sample.

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/index_run.rs"]
mod index_run;

struct Options {
    parts: usize,
    rate: f64,
    copies: usize,
}

fn options() -> Options {
    let mut options = Options { parts: 300, rate: 10.0, copies: 1_000 };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_else(|| panic!("{argument} takes a value"));
        match argument.as_str() {
            "--parts" => options.parts = value().parse().expect("a number of parts"),
            "--rate" => options.rate = value().parse().expect("parts per second"),
            "--copies" => options.copies = value().parse().expect("a number of copies"),
            _ => {}
        }
    }
    options
}

fn visible(base_url: &str, sql: &str) -> bool {
    let response: serde_json::Value =
        ureq::post(&format!("{base_url}/api/sql")).send_json(serde_json::json!({ "sql": sql })).expect("the SQL API answers").into_json().expect("JSON");
    response["rows"][0][0].as_i64() == Some(1)
}

fn wait_visible(base_url: &str, sql: &str, committed: Instant) -> Duration {
    while !visible(base_url, sql) {
        assert!(committed.elapsed() < Duration::from_secs(30), "not visible after 30 s: {sql}");
        std::thread::sleep(Duration::from_millis(1));
    }
    committed.elapsed()
}

fn percentile(sorted: &[Duration], quantile: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * quantile).round() as usize].as_secs_f64() * 1_000.0
}

/// An OpenCode data folder under `scratch` holding a copy of the fixture's `opencode.db`:
/// (folder, database).
fn copy_fixture_database(scratch: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let opencode = scratch.join("opencode");
    std::fs::create_dir_all(&opencode).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/opencode-sqlite/opencode.db");
    let database = opencode.join("opencode.db");
    std::fs::copy(&fixture, &database).unwrap();
    (opencode, database)
}

/// Bulk reading of a database with the fixture's messages and parts copied `copies` times.
fn bulk(copies: usize) {
    let scratch = tempfile::tempdir().unwrap();
    let (opencode, database) = copy_fixture_database(scratch.path());
    let writer = rusqlite::Connection::open(&database).unwrap();
    writer
        .execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {copies})
             INSERT INTO message (id, session_id, time_created, time_updated, data)
                 SELECT id || '_' || i, session_id, time_created, time_updated, data FROM message, n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {copies})
             INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
                 SELECT id || '_' || i, message_id || '_' || i, session_id, time_created, time_updated, data FROM part, n;
             COMMIT;
             PRAGMA wal_checkpoint(TRUNCATE);"
        ))
        .unwrap();
    let rows: i64 = writer.query_row("SELECT (SELECT count(*) FROM message) + (SELECT count(*) FROM part)", [], |row| row.get(0)).unwrap();
    drop(writer);
    let db = scratch.path().join("bulk.duckdb");
    let (cold, cold_rss) = index_run::run_index(&opencode, &db);
    let (warm, warm_rss) = index_run::run_index(&opencode, &db);
    let (cold_rss, warm_rss) = (cold_rss as f64 / 1024.0, warm_rss as f64 / 1024.0);
    println!("\n| bulk read of opencode.db | rows | wall s | rows/s | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");
    println!("| cold `ducktail index` | {rows} | {:.2} | {:.0} | {cold_rss:.0} |", cold.as_secs_f64(), rows as f64 / cold.as_secs_f64());
    println!(
        "| `ducktail index` again, unchanged (full comparison) | {rows} | {:.2} | {:.0} | {warm_rss:.0} |",
        warm.as_secs_f64(),
        rows as f64 / warm.as_secs_f64()
    );
}

fn main() {
    let options = options();
    let scratch = tempfile::tempdir().unwrap();
    let (opencode, database) = copy_fixture_database(scratch.path());
    let db = scratch.path().join("bench.duckdb");
    let daemon = daemon::BenchDaemon::start(&opencode, &db, scratch.path(), "[http]\nsql_enabled = true\n", Duration::from_secs(60));

    let writer = rusqlite::Connection::open(&database).unwrap();
    writer.pragma_update(None, "journal_mode", "WAL").unwrap();
    writer.busy_timeout(Duration::from_secs(5)).unwrap();
    let (message_id, session_id): (String, String) =
        writer.query_row("SELECT id, session_id FROM message ORDER BY id DESC LIMIT 1", [], |row| Ok((row.get(0)?, row.get(1)?))).unwrap();
    let period = Duration::from_secs_f64(1.0 / options.rate);
    let mut inserts = Vec::with_capacity(options.parts);
    let mut updates = Vec::with_capacity(options.parts);
    let started = Instant::now();
    for index in 0..options.parts {
        let id = format!("prt_bench_{index:06}");
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        // Written empty first, then complete: what OpenCode does with a streamed text part.
        writer
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
                     VALUES ('{id}', '{message_id}', '{session_id}', {now_ms}, {now_ms}, '{{\"type\":\"text\",\"text\":\"\"}}');
                 COMMIT;"
            ))
            .unwrap();
        let committed = Instant::now();
        inserts.push(wait_visible(&daemon.base_url, &format!("SELECT count(*) FROM parts WHERE id = '{id}'"), committed));
        writer
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 UPDATE part SET data = '{{\"type\":\"text\",\"text\":\"answer {index}\"}}', time_updated = {} WHERE id = '{id}';
                 COMMIT;",
                now_ms + 1
            ))
            .unwrap();
        let committed = Instant::now();
        updates.push(wait_visible(&daemon.base_url, &format!("SELECT count(*) FROM parts WHERE id = '{id}' AND text = 'answer {index}'"), committed));
        let next = started + period * (index as u32 + 1);
        if let Some(pause) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(pause);
        }
    }
    daemon.stop();

    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    println!("machine: {cores} cores; this process (OpenCode's role and the API poller) and the daemon share them\n");
    println!("| change | samples | rate | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, mut samples) in [("new part (INSERT)", inserts), ("part rewritten (UPDATE)", updates)] {
        samples.sort_unstable();
        println!(
            "| {name} | {} | {} parts/s | {:.1} | {:.1} | {:.1} | {:.1} |",
            samples.len(),
            options.rate,
            percentile(&samples, 0.50),
            percentile(&samples, 0.95),
            percentile(&samples, 0.99),
            samples.last().unwrap().as_secs_f64() * 1_000.0
        );
    }
    if options.copies > 0 {
        bulk(options.copies);
    }
}
