//! Read-API latency on an indexed database: p50/p95/p99 of the session summary, trace tree,
//! timeline, session list and usage endpoints, through a running `ducktail run`. Prints one
//! markdown table.
//!
//! ```text
//! # an existing tree and database (e.g. 1M files: ducktail generate --files 1000000; ducktail index)
//! cargo bench --workspace --bench read -- --opencode /tmp/b1m --db /tmp/b1m.duckdb --requests 200
//! ```
//!
//! Requests go one at a time from one client (latency, not throughput), each to a different
//! root session chosen round-robin from the newest 500.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let mut opencode = None;
    let mut db = None;
    let mut requests = 200usize;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--opencode" => opencode = arguments.next().map(PathBuf::from),
            "--db" => db = arguments.next().map(PathBuf::from),
            "--requests" => requests = arguments.next().and_then(|value| value.parse().ok()).expect("--requests N"),
            _ => {}
        }
    }
    let (Some(opencode), Some(db)) = (opencode, db) else {
        eprintln!("usage: cargo bench --workspace --bench read -- --opencode DIR --db FILE [--requests N]");
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("read-bench.toml");
    std::fs::write(&config, "[reconcile]\ninterval = \"1h\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ducktail"))
        .arg("run")
        .arg("--opencode")
        .arg(&opencode)
        .arg("--db")
        .arg(&db)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("XDG_CONFIG_HOME", "/nonexistent-ducktail-bench-config")
        .env("RUST_LOG", "warn,ducktail=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ducktail run");
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(start) = line.find("http://") {
                let _ = sender.send(line[start..].chars().take_while(|c| !c.is_whitespace()).collect::<String>());
            }
        }
    });
    let base = receiver.recv_timeout(Duration::from_secs(60)).expect("the daemon printed its address");
    let started = Instant::now();
    while ureq::get(&format!("{base}/readyz")).call().is_err() {
        assert!(started.elapsed() < Duration::from_secs(600), "the daemon did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("catch-up scan of the existing tree until ready: {:.1} s\n", started.elapsed().as_secs_f64());
    let stats: serde_json::Value = ureq::get(&format!("{base}/api/stats")).call().unwrap().into_json().unwrap();
    println!("database: {} files indexed, {} sessions, {} parts\n", stats["tables"]["file_index"], stats["tables"]["sessions"], stats["tables"]["parts"]);
    let page: serde_json::Value = ureq::get(&format!("{base}/api/sessions?root_only=true&limit=500")).call().unwrap().into_json().unwrap();
    let roots: Vec<String> = page["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert!(!roots.is_empty(), "no sessions in the database");

    println!("| endpoint | requests | p50 ms | p95 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    let endpoints: [(&str, Box<dyn Fn(&str) -> String>); 5] = [
        ("GET /api/sessions/{id}", Box::new(|id| format!("/api/sessions/{id}"))),
        ("GET /api/traces/{id}", Box::new(|id| format!("/api/traces/{id}"))),
        ("GET /api/sessions/{id}/timeline", Box::new(|id| format!("/api/sessions/{id}/timeline"))),
        ("GET /api/sessions?limit=50", Box::new(|_| "/api/sessions?limit=50".to_owned())),
        ("GET /api/usage?group_by=day", Box::new(|_| "/api/usage?group_by=day".to_owned())),
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
        println!("| {name} | {requests} | {:.1} | {:.1} | {:.1} |", at(0.5), at(0.95), at(0.99));
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}
