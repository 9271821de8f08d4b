//! The dashboard's page budgets: cold page loads in Debian's Chromium (headless, driven by
//! playwright-core: `benches/support/page.cjs`) against a daemon on the suite's 1M-file database.
//! For the overview and for the session with the most sub-agents (its figures and delegation
//! waterfall), each load in a fresh browser context (no cache, no cookies), it measures the time
//! from the navigation's start until the view is complete (`<main data-loaded>` and, for the
//! session, its waterfall rows), the bytes that crossed the wire (headers and bodies, the event
//! stream aside) and the requests to any other origin. Prints rows of the suite's table.
//!
//! ```text
//! cargo bench --workspace --bench page -- --files 1000000 --loads 5
//! ```
//!
//! Needs what the browser tests need: Chromium (`apt-get install chromium`, or
//! `$DUCKTAIL_CHROMIUM`), Node.js and playwright-core (`npm install --prefix
//! ~/.cache/ducktail/node playwright-core@1`, or `$DUCKTAIL_PLAYWRIGHT`). The daemon runs on a
//! copy of `bench-trees/bench-<files>.duckdb` (made by the pipeline bench).

use std::path::PathBuf;
use std::time::Duration;

#[path = "../tests/support/browser.rs"]
mod browser;
#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/suite.rs"]
mod suite;

fn main() {
    let mut files = 1_000_000usize;
    let mut loads = 5usize;
    let mut header = true;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--files" => files = arguments.next().and_then(|value| value.parse().ok()).expect("--files takes a number"),
            "--loads" => loads = arguments.next().and_then(|value| value.parse().ok()).expect("--loads takes a number"),
            "--no-header" => header = false,
            _ => {}
        }
    }
    let (chromium, playwright) = (browser::chromium(), browser::playwright());
    if header {
        let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        suite::print_header(&format!("{cores} cores shared by Chromium and the daemon; cold loads, each in a new browser context"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let trees = target.join("bench-trees");
    let (tree, source_db) = (trees.join(format!("seed42-{files}")), trees.join(format!("bench-{files}.duckdb")));
    assert!(
        tree.join(".complete").exists() && source_db.exists(),
        "{} and {} come from the pipeline bench: cargo bench --workspace --bench pipeline -- --files {files}",
        tree.display(),
        source_db.display()
    );
    let scratch = tempfile::tempdir().expect("a temp dir");
    let db = scratch.path().join("page.duckdb");
    std::fs::copy(&source_db, &db).expect("copy the database");
    let daemon = daemon::BenchDaemon::start(&tree, &db, scratch.path(), "[http]\nsql_enabled = true\n", Duration::from_secs(900));
    let sql =
        "SELECT session_id FROM agent_traces WHERE parent_trace_id = 'root_' || session_id GROUP BY session_id ORDER BY count(*) DESC, session_id LIMIT 1";
    let answer: serde_json::Value =
        ureq::post(&format!("{}/api/sql", daemon.base_url)).send_json(serde_json::json!({ "sql": sql })).expect("the SQL API answers").into_json().unwrap();
    let session = answer["rows"][0][0].as_str().unwrap_or_else(|| panic!("the tree has a session with sub-agents: {answer}")).to_owned();
    let settings = serde_json::json!({
        "base_url": daemon.base_url,
        "chromium": chromium,
        "playwright": playwright,
        "loads": loads,
        "views": [
            { "name": "overview", "hash": "/", "ready": null },
            { "name": "session with its waterfall", "hash": format!("/session/{session}"), "ready": "[data-testid='waterfall'] [data-trace-id]" },
        ],
    });
    let driver = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/support/page.cjs");
    let (report, _, _) = browser::run_driver(&driver, &settings);
    daemon.stop();
    for view in report["views"].as_array().unwrap() {
        let name = view["name"].as_str().unwrap();
        let numbers = |key: &str| -> Vec<f64> { view[key].as_array().unwrap().iter().map(|value| value.as_f64().unwrap()).collect() };
        let mut ms = numbers("ms");
        ms.sort_by(f64::total_cmp);
        let workload = format!("dashboard, cold page load: {name}");
        let median = ms[ms.len() / 2];
        suite::row_text(
            &workload,
            files,
            &format!("complete ms, median / worst of {}", ms.len()),
            &format!("{median:.0} / {:.0}", ms[ms.len() - 1]),
            "≤ 1,000",
        );
        let bytes = numbers("bytes").into_iter().fold(0.0, f64::max);
        suite::row(&workload, files, "KB transferred (worst)", bytes / 1024.0, "", None, "≤ 150 (the overview's first load)");
        suite::row(&workload, files, "requests (worst)", numbers("requests").into_iter().fold(0.0, f64::max), "", None, "");
        suite::row(&workload, files, "requests to another origin", numbers("foreign").iter().sum(), "", None, "0");
        let largest: Vec<String> = view["largest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|request| format!("{} {:.1} KB", request["url"].as_str().unwrap_or("?"), request["bytes"].as_f64().unwrap_or(0.0) / 1024.0))
            .collect();
        suite::row_text(&workload, files, "largest requests", &largest.join("; "), "");
        let errors = view["errors"].as_array().unwrap();
        assert!(errors.is_empty(), "{name}: the page logged errors: {errors:?}");
    }
}
