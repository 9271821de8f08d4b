//! Operations endpoints end to end: `GET /metrics` counters agree with what the database holds
//! and with the requests the test made; `GET /health/detailed` reports figures and turns 503
//! when a threshold is crossed.

use std::collections::BTreeMap;

use crate::support::*;

/// `name{labels}` → value, from the text exposition.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// `GET /metrics`, parsed.
fn scrape(daemon: &Daemon) -> BTreeMap<String, f64> {
    parse(&ureq::get(&format!("{}/metrics", daemon.base_url)).call().expect("GET /metrics").into_string().unwrap())
}

/// A generated OpenCode tree under `dir/opencode`, and a database path beside it.
fn generated_tree(dir: &std::path::Path, seed: u64, target_files: usize) -> (std::path::PathBuf, ducktail_generator::GeneratedTree, std::path::PathBuf) {
    let opencode = dir.join("opencode");
    let generator = ducktail_generator::GeneratorConfig { seed, target_files, ..Default::default() };
    let tree = ducktail_generator::generate(&opencode, &generator).unwrap();
    (opencode, tree, dir.join("db.duckdb"))
}

fn sum_matching(metrics: &BTreeMap<String, f64>, prefix: &str, label: &str) -> f64 {
    metrics.iter().filter(|(series, _)| series.starts_with(prefix) && series.contains(label)).map(|(_, value)| value).sum()
}

#[test]
fn metrics_count_what_was_committed_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let generator = ducktail_generator::GeneratorConfig { seed: 13, target_files: 400, bad_files: 3, ..Default::default() };
    let tree = ducktail_generator::generate(&opencode, &generator).unwrap();
    let db = dir.path().join("db.duckdb");
    let config = test_config(dir.path(), "");
    let daemon = Daemon::start(&opencode, &db, &config);
    // Bad files younger than the settle delay are retried before they are recorded as errors.
    wait_until("bad files settled into errors", std::time::Duration::from_secs(30), || {
        daemon.scalar("SELECT count(*) FROM file_index WHERE status = 'error'") == tree.bad_files.len() as i64
    });
    for _ in 0..3 {
        assert_eq!(daemon.get_status("/api/stats"), Some(200));
    }

    let response = ureq::get(&format!("{}/metrics", daemon.base_url)).call().expect("GET /metrics");
    assert!(response.content_type().starts_with("text/plain"));
    let metrics = parse(&response.into_string().unwrap());

    // The startup catch-up commits every file exactly once (nothing changed while it ran).
    let indexed = sum_matching(&metrics, "ducktail_files_total{", "outcome=\"indexed\"");
    let errors = sum_matching(&metrics, "ducktail_files_total{", "outcome=\"error\"");
    assert_eq!(indexed as usize, tree.total_files - tree.bad_files.len());
    assert_eq!(errors as usize, tree.bad_files.len());
    assert_eq!(indexed as i64, daemon.scalar("SELECT count(*) FROM file_index WHERE status = 'indexed'"));
    assert_eq!(metrics["ducktail_records_written_total{table=\"parts\"}"] as i64, daemon.scalar("SELECT count(*) FROM parts"));
    assert_eq!(metrics["ducktail_records_written_total{table=\"step_events\"}"] as i64, daemon.scalar("SELECT count(*) FROM step_events"));
    assert_eq!(metrics["ducktail_event_to_commit_seconds_count"], indexed);
    assert!(metrics["ducktail_batch_files_count"] >= 1.0);
    assert_eq!(metrics["ducktail_api_requests_total{route=\"/api/stats\",status=\"200\"}"], 3.0);
    assert_eq!(metrics["ducktail_pending_files"], 0.0);
    assert!(metrics["ducktail_database_bytes"] > 0.0);
    // The states /health/detailed reports, as gauges for alert rules (deploy/prometheus).
    assert_eq!(metrics["ducktail_ready"], 1.0);
    assert_eq!(metrics["ducktail_commit_failing"], 0.0);
    assert_eq!(metrics["ducktail_watch_incomplete"], 0.0);
    assert_eq!(metrics["ducktail_opencode_db_failing"], 0.0);
    let last_commit_ms = daemon.get_json("/api/stats")["last_commit_unix_ms"].as_f64().unwrap();
    let last_commit_seconds = metrics["ducktail_last_commit_timestamp_seconds"];
    assert!(last_commit_seconds > 0.0 && last_commit_seconds <= last_commit_ms / 1_000.0 + 0.001, "{last_commit_seconds} vs {last_commit_ms} ms");
    assert_eq!(metrics["ducktail_actor_restarts_total{actor=\"writer\"}"], 0.0, "restart counters start at 0");
    let build = daemon.get_json("/api/stats")["build"].clone();
    let build_series = format!(
        "ducktail_build_info{{commit=\"{}\",duckdb_version=\"{}\",version=\"{}\"}}",
        build["commit"].as_str().unwrap(),
        build["duckdb_version"].as_str().unwrap(),
        build["version"].as_str().unwrap()
    );
    assert_eq!(metrics.get(&build_series), Some(&1.0), "{build_series}");
    assert!(metrics.keys().all(|series| series.starts_with("ducktail_")));
    assert!(daemon.terminate().success());
}

#[test]
fn a_catch_up_longer_than_the_reconcile_interval_commits_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let (opencode, tree, db) = generated_tree(dir.path(), 19, 10_000);
    // Small batches and a small backlog make the catch-up's delivery outlast many reconcile
    // intervals: a periodic scan during it would list files still on their way and commit them
    // a second time.
    let config = test_config(dir.path(), "[reconcile]\ninterval = \"100ms\"\n[pipeline]\nmax_pending = 2000\nmax_in_flight = 1\n[index]\nbatch_files = 50\n");
    let daemon = Daemon::start(&opencode, &db, &config);
    let metrics = scrape(&daemon);
    let committed = sum_matching(&metrics, "ducktail_files_total{", "outcome=\"indexed\"") as usize;
    assert_eq!(daemon.scalar("SELECT count(*) FROM file_index WHERE status = 'indexed'") as usize, tree.total_files);
    assert_eq!(committed, tree.total_files, "files committed during the catch-up, for {} files", tree.total_files);
    assert!(daemon.terminate().success());
}

#[test]
fn health_is_detailed_and_turns_503_past_a_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let generator = ducktail_generator::GeneratorConfig { seed: 17, target_files: 200, bad_files: 2, ..Default::default() };
    let tree = ducktail_generator::generate(&opencode, &generator).unwrap();
    let health = |daemon: &Daemon| daemon.get_with_status("/health/detailed");

    let db = dir.path().join("healthy.duckdb");
    let daemon = Daemon::start(&opencode, &db, &test_config(dir.path(), "[database]\ncheckpoint_interval = \"1s\"\n"));
    wait_until("bad files settled into errors", std::time::Duration::from_secs(30), || {
        daemon.scalar("SELECT count(*) FROM file_index WHERE status = 'error'") == tree.bad_files.len() as i64
    });
    let (code, body) = health(&daemon);
    assert_eq!((code, body["status"].as_str()), (200, Some("healthy")), "{body}");
    assert_eq!(body["problems"], serde_json::json!([]));
    assert!(body["system"]["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(body["system"]["disk_free_bytes"].as_u64().unwrap() > 0, "the database's volume is found: {body}");
    assert!(body["database"]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(body["pipeline"]["ready"], true);
    assert_eq!(body["pipeline"]["errors_last_hour"].as_u64().unwrap() as usize, tree.bad_files.len());
    wait_until("a periodic checkpoint", std::time::Duration::from_secs(30), || health(&daemon).1["database"]["last_checkpoint_unix_ms"].is_u64());
    assert!(daemon.terminate().success());

    // The same tree, with a free-space floor no disk meets.
    let db = dir.path().join("degraded.duckdb");
    let daemon = Daemon::start(&opencode, &db, &test_config(dir.path(), "[health]\nmin_free_disk_mb = 1000000000000\n"));
    let (code, body) = health(&daemon);
    assert_eq!((code, body["status"].as_str()), (503, Some("degraded")), "{body}");
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{body}");
    assert!(problems[0].as_str().unwrap().contains("health.min_free_disk_mb"), "{body}");
    assert!(daemon.terminate().success());
}

#[test]
fn a_quiet_writer_folds_the_wal_into_the_database_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (opencode, tree, db) = generated_tree(dir.path(), 23, 300);
    // The interval never comes in this test and DuckDB's own threshold is out of reach: only an
    // idle checkpoint can fold the catch-up's WAL in.
    let config = test_config(dir.path(), "[database]\ncheckpoint_interval = \"1h\"\nwal_autocheckpoint = \"1GB\"\nidle_checkpoint_wal_bytes = 1\n");
    let daemon = Daemon::start(&opencode, &db, &config);
    let idle_checkpoints = || scrape(&daemon).get("ducktail_checkpoint_seconds_count{trigger=\"idle\"}").copied().unwrap_or(0.0);
    let wal_bytes = || std::fs::metadata(dir.path().join("db.duckdb.wal")).map_or(0, |metadata| metadata.len());
    // Derived rows written after the first idle checkpoint are folded in by a later one.
    wait_until("idle checkpoints folding the whole WAL in", std::time::Duration::from_secs(30), || idle_checkpoints() >= 1.0 && wal_bytes() == 0);
    assert!(daemon.get_json("/health/detailed")["database"]["last_checkpoint_unix_ms"].is_u64());
    assert_eq!(daemon.scalar("SELECT count(*) FROM file_index WHERE status = 'indexed'") as usize, tree.total_files);
    assert!(daemon.terminate().success());
}
