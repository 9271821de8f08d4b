//! Read-API latency on an indexed database: p50/p95/p99 of the session summary, trace tree,
//! timeline, session list and usage endpoints, through a running `ducktail run`. Prints rows of
//! the suite's table (see `benches/suite.sh`).
//!
//! ```text
//! # an existing tree and database (e.g. 1M files: ducktail generate --files 1000000; ducktail index)
//! cargo bench --workspace --bench read -- --opencode /tmp/b1m --db /tmp/b1m.duckdb --requests 200
//! ```
//!
//! Requests go one at a time from one client (latency, not throughput), each to a different
//! root session chosen round-robin from the newest 500.

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/suite.rs"]
mod suite;

fn main() {
    let mut opencode = None;
    let mut db = None;
    let mut requests = 200usize;
    let mut header = true;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--opencode" => opencode = arguments.next().map(PathBuf::from),
            "--db" => db = arguments.next().map(PathBuf::from),
            "--requests" => requests = arguments.next().and_then(|value| value.parse().ok()).expect("--requests N"),
            "--no-header" => header = false,
            _ => {}
        }
    }
    let (Some(opencode), Some(db)) = (opencode, db) else {
        eprintln!("usage: cargo bench --workspace --bench read -- --opencode DIR --db FILE [--requests N]");
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let daemon = daemon::BenchDaemon::start(&opencode, &db, scratch.path(), "[reconcile]\ninterval = \"1h\"\n", Duration::from_secs(600));
    let base = daemon.base_url.clone();
    let ready_seconds = started.elapsed().as_secs_f64();
    let stats: serde_json::Value = ureq::get(&format!("{base}/api/stats")).call().unwrap().into_json().unwrap();
    let indexed = stats["tables"]["file_index"].as_u64().unwrap_or(0) as usize;
    if header {
        suite::print_header("one client, one request at a time");
    }
    let database = format!("{} sessions, {} parts", stats["tables"]["sessions"], stats["tables"]["parts"]);
    suite::row(&format!("read: `ducktail run` start on an indexed tree until ready ({database})"), indexed, "s", ready_seconds, "", None, "");
    let page: serde_json::Value = ureq::get(&format!("{base}/api/sessions?root_only=true&limit=500")).call().unwrap().into_json().unwrap();
    let roots: Vec<String> = page["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert!(!roots.is_empty(), "no sessions in the database");

    type PathFor = Box<dyn Fn(&str) -> String>;
    let endpoints: [(&str, PathFor); 6] = [
        ("GET /api/sessions/{id}", Box::new(|id| format!("/api/sessions/{id}"))),
        ("GET /api/traces/{id}", Box::new(|id| format!("/api/traces/{id}"))),
        ("GET /api/sessions/{id}/timeline", Box::new(|id| format!("/api/sessions/{id}/timeline"))),
        ("GET /api/sessions?limit=50", Box::new(|_| "/api/sessions?limit=50".to_owned())),
        ("GET /api/usage?group_by=day", Box::new(|_| "/api/usage?group_by=day".to_owned())),
        // What a dashboard (and the live bench) polls for freshness and counts.
        ("GET /api/stats", Box::new(|_| "/api/stats".to_owned())),
    ];
    for (name, path) in endpoints {
        let mut times: Vec<f64> = (0..requests)
            .map(|index| {
                let url = format!("{base}{}", path(&roots[index % roots.len()]));
                let started = Instant::now();
                ureq::get(&url).call().unwrap_or_else(|error| panic!("{url}: {error}")).into_string().unwrap();
                started.elapsed().as_secs_f64() * 1_000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let at = |quantile: f64| times[((times.len() - 1) as f64 * quantile).round() as usize];
        let values = format!("{:.1} / {:.1} / {:.1}", at(0.5), at(0.95), at(0.99));
        suite::row_text(&format!("read: {name}, {requests} requests"), indexed, "latency ms p50 / p95 / p99", &values, "p95 ≤ 20");
    }
    daemon.stop();
}
