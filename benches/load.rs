//! Many readers at once: `wrk` (the HTTP load generator, `apt-get install wrk`) with 50
//! connections on a mix of read requests — stats, the session list, usage, one session's summary
//! and one trace tree, round-robin over the newest root sessions — against a daemon on the
//! suite's 1M-file tree while 1,000 new files a second arrive. Run three times in one go: with the
//! defaults (answers reused, for up to `http.max_staleness` after a commit), with answers reused
//! only until the next commit (`max_staleness = "0s"`), and with `http.reused_answers = 0`
//! (every request runs its queries: the baseline). Prints rows of the suite's table.
//!
//! ```text
//! cargo bench --workspace --bench load -- --files 1000000 --connections 50 --seconds 20 --rate 1000
//! cargo bench --workspace --bench load -- --files 1000000 --connections 50 --seconds 20 --rate 1000 --delay-ms 20
//! ```
//!
//! The first sends all wrk can; the second paces each connection (at most 2,500 requests/s),
//! the budget's load.
//!
//! The daemon runs on a copy of `bench-trees/bench-<files>.duckdb` (made by the pipeline bench);
//! the new files go into the tree and are removed when the bench ends. wrk, the writing thread
//! and the daemon share the machine's cores.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/paced.rs"]
mod paced;
#[path = "support/suite.rs"]
mod suite;

struct Options {
    files: usize,
    connections: usize,
    seconds: u64,
    rate: u64,
    header: bool,
    /// Each connection waits this long before each request (wrk's `delay()`): 50 connections
    /// at 20 ms offer at most 2,500 requests/s, the budget's load rather than all wrk can send.
    delay_ms: u64,
}

fn options() -> Options {
    let mut options = Options { files: 1_000_000, connections: 50, seconds: 20, rate: 1_000, header: true, delay_ms: 0 };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_else(|| panic!("{argument} takes a value"));
        match argument.as_str() {
            "--files" => options.files = value().parse().expect("a number of files"),
            "--connections" => options.connections = value().parse().expect("a number of connections"),
            "--seconds" => options.seconds = value().parse().expect("seconds"),
            "--rate" => options.rate = value().parse().expect("files/s"),
            "--no-header" => options.header = false,
            "--delay-ms" => options.delay_ms = value().parse().expect("milliseconds"),
            _ => {}
        }
    }
    options
}

/// The wrk script: requests round-robin over `paths`, accepting gzip, and the latency percentiles printed as one
/// JSON line at the end (wrk's own summary has no p95).
fn wrk_script(paths: &[String], delay_ms: u64) -> String {
    let list: Vec<String> = paths.iter().map(|path| format!("{path:?}")).collect();
    format!(
        r#"
local paths = {{ {} }}
local index = 0
-- As browsers and Grafana do: kept answers then go out gzipped.
wrk.headers["Accept-Encoding"] = "gzip"
request = function()
  index = index % #paths + 1
  return wrk.format("GET", paths[index])
end
{}done = function(summary, latency, requests)
  io.write(string.format('{{"requests":%d,"seconds":%f,"errors":%d,"non2xx":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d}}\n',
    summary.requests, summary.duration / 1e6, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"#,
        list.join(", "),
        if delay_ms > 0 { format!("delay = function()\n  return {delay_ms}\nend\n") } else { String::new() }
    )
}

/// Removes the files the bench added to the suite's tree, panics included.
struct AddedFiles(Vec<PathBuf>);

impl Drop for AddedFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn main() {
    let options = options();
    assert!(Command::new("wrk").arg("--version").output().is_ok(), "wrk is missing: apt-get install wrk");
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    if options.header {
        suite::print_header(&format!("{cores} cores shared by wrk, the writing thread and the daemon"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let trees = target.join("bench-trees");
    let tree = trees.join(format!("seed42-{}", options.files));
    let source_db = trees.join(format!("bench-{}.duckdb", options.files));
    assert!(
        tree.join(".complete").exists() && source_db.exists(),
        "{} and {} come from the pipeline bench: cargo bench --workspace --bench pipeline -- --files {}",
        tree.display(),
        source_db.display(),
        options.files
    );
    let mut rows = Vec::new();
    for reuse in [Reuse::Defaults, Reuse::UntilCommit, Reuse::Off] {
        rows.push((reuse, run(&tree, &source_db, &options, reuse)));
    }
    let paced = if options.delay_ms > 0 { format!(", each waiting {} ms before each request", options.delay_ms) } else { String::new() };
    let workload = format!("read API under load: {} connections{paced}, a mix of 5 routes, {} files/s arriving", options.connections, options.rate);
    let (with, without) = (&rows[0].1, &rows[2].1);
    suite::row(
        &workload,
        options.files,
        "requests/s, answers reused",
        with.requests_per_second,
        "every request computed",
        Some(without.requests_per_second),
        "≥ 2,000",
    );
    suite::row(&workload, options.files, "p95 ms, answers reused", with.p95_ms, "every request computed", Some(without.p95_ms), "≤ 50");
    suite::row(
        &workload,
        options.files,
        "requests/s, answers reused until the next commit",
        rows[1].1.requests_per_second,
        "every request computed",
        Some(without.requests_per_second),
        "",
    );
    for (reuse, outcome) in &rows {
        let label = reuse.label();
        suite::row_text(
            &workload,
            options.files,
            &format!("latency ms p50 / p95 / p99, {label}"),
            &format!("{:.1} / {:.1} / {:.1}", outcome.p50_ms, outcome.p95_ms, outcome.p99_ms),
            "",
        );
        suite::row_text(&workload, options.files, &format!("write → visible ms p50 / p95 / p99 meanwhile, {label}"), &outcome.ingest_latency, "p95 ≤ 50");
        suite::row(&workload, options.files, &format!("errors and non-2xx, {label}"), outcome.failures as f64, "", None, "0");
    }
}

struct Outcome {
    requests_per_second: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    failures: u64,
    ingest_latency: String,
}

/// How the daemon under load reuses its answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reuse {
    /// `[http]` as shipped: answers served for up to `max_staleness` (250 ms) after a commit.
    Defaults,
    /// Only answers of the newest commit (`max_staleness = "0s"`).
    UntilCommit,
    /// Every request runs its queries (`reused_answers = 0`).
    Off,
}

impl Reuse {
    fn label(self) -> &'static str {
        match self {
            Reuse::Defaults => "answers reused",
            Reuse::UntilCommit => "answers reused until the next commit",
            Reuse::Off => "every request computed",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Reuse::Defaults => "",
            Reuse::UntilCommit => "max_staleness = \"0s\"\n",
            Reuse::Off => "reused_answers = 0\n",
        }
    }
}

fn run(tree: &Path, source_db: &Path, options: &Options, reuse: Reuse) -> Outcome {
    let scratch = tempfile::tempdir().expect("a temp dir");
    let db = scratch.path().join("load.duckdb");
    std::fs::copy(source_db, &db).expect("copy the database");
    let config = format!("[http]\nsql_enabled = true\n{}", reuse.config());
    let daemon = daemon::BenchDaemon::start(tree, &db, scratch.path(), &config, Duration::from_secs(900));
    let sessions: serde_json::Value =
        ureq::get(&format!("{}/api/sessions?root_only=true&limit=20", daemon.base_url)).call().expect("sessions").into_json().unwrap();
    let ids: Vec<String> = sessions["sessions"].as_array().unwrap().iter().map(|session| session["id"].as_str().unwrap().to_owned()).collect();
    assert!(!ids.is_empty(), "the tree has root sessions");
    let mut paths = Vec::new();
    for id in &ids {
        paths.extend([
            "/api/stats".to_owned(),
            "/api/sessions?limit=50".to_owned(),
            "/api/usage?group_by=day".to_owned(),
            format!("/api/sessions/{id}"),
            format!("/api/traces/{id}"),
        ]);
    }
    let script = scratch.path().join("mix.lua");
    std::fs::write(&script, wrk_script(&paths, options.delay_ms)).unwrap();

    // New files meanwhile: a seeded plan of its own, into the tree, at the offered rate.
    let files = (options.rate * (options.seconds + 2)) as usize;
    let seed = 900 + reuse as u64;
    let plan: Vec<_> = ducktail_generator::plan(&ducktail_generator::GeneratorConfig { seed, target_files: files, ..Default::default() }).take(files).collect();
    let added = AddedFiles(plan.iter().map(|file| tree.join(&file.relative_path)).collect());
    let last_commit = || -> u64 {
        let stats: serde_json::Value = ureq::get(&format!("{}/api/stats", daemon.base_url)).call().expect("stats").into_json().unwrap();
        stats["last_commit_unix_ms"].as_u64().unwrap_or(0)
    };
    let before = last_commit();
    let writer = {
        let (tree, rate) = (tree.to_owned(), options.rate);
        std::thread::spawn(move || paced::write_files(&tree, plan.iter(), Some(rate), || {}))
    };
    // wrk starts once the new files commit, so the ingest is under way for the whole measurement.
    daemon::wait_until("a new file to be committed", Duration::from_secs(60), Duration::from_millis(20), || last_commit() != before);
    let output = Command::new("wrk")
        .args(["-t", "2", "-c", &options.connections.to_string(), "-d", &format!("{}s", options.seconds), "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(&daemon.base_url)
        .output()
        .expect("run wrk");
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = text
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("wrk printed no summary:\n{text}\n{}", String::from_utf8_lossy(&output.stderr)));
    let stats: serde_json::Value = ureq::get(&format!("{}/api/stats", daemon.base_url)).call().expect("stats").into_json().unwrap();
    let latency = &stats["latency_ms"];
    let milliseconds = |key: &str| latency[key].as_f64().unwrap_or(f64::NAN);
    daemon.stop();
    drop(added);
    let micros = |key: &str| summary[key].as_f64().unwrap_or(f64::NAN) / 1_000.0;
    Outcome {
        requests_per_second: summary["requests"].as_f64().unwrap() / summary["seconds"].as_f64().unwrap(),
        p50_ms: micros("p50_us"),
        p95_ms: micros("p95_us"),
        p99_ms: micros("p99_us"),
        failures: summary["errors"].as_u64().unwrap_or(0) + summary["non2xx"].as_u64().unwrap_or(0),
        ingest_latency: format!("{:.1} / {:.1} / {:.1}", milliseconds("p50"), milliseconds("p95"), milliseconds("p99")),
    }
}
