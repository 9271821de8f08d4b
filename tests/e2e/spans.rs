//! The span source end to end: the two shared Parquet fixtures indexed with their exact counts,
//! generated trees with duplicates (inside and across files), traces split across files and
//! orphans checked against the generator's own model, deletion, a half-written file under a live
//! daemon, and the span API and CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ducktail_generator::spans::{generate_spans, SpanTreeConfig};

use crate::support::*;

fn span_fixtures() -> PathBuf {
    shared_fixtures("otel-parquet")
}

/// `ducktail index` of a span folder only (an empty OpenCode folder beside it).
fn index_spans(spans: &Path, db: &Path) -> String {
    let opencode = db.with_extension("opencode");
    std::fs::create_dir_all(&opencode).unwrap();
    let output = ducktail(&["index", "--opencode", path_str(&opencode), "--spans", path_str(spans), "--db", path_str(db)], None);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "index failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The span tables as sorted text, with paths made relative to `root` and volatile columns left out.
fn span_snapshot(db: &Path, root: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let root = format!("{}/", root.display());
    [
        ("spans", "SELECT * FROM spans"),
        ("traces", "SELECT * FROM traces"),
        ("services", "SELECT * FROM services"),
        ("parquet_files", "SELECT file_path, row_count, size_bytes, min_time, max_time FROM parquet_files"),
        ("file_index", "SELECT file_path, source, status FROM file_index WHERE source = 'spans'"),
    ]
    .into_iter()
    .map(|(table, sql)| {
        let mut lines: Vec<String> = rows(db, sql).into_iter().map(|row| row.join("|").replace(&root, "")).collect();
        lines.sort();
        (table, lines)
    })
    .collect()
}

#[test]
fn the_fixture_span_files_index_with_their_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spans.duckdb");
    let summary = index_spans(&span_fixtures(), &db);
    assert!(summary.contains("spans: 2 files on disk, 2 read (38 spans"), "{summary}");
    // SOURCES.md: 19 spans / 19 traces / 8 services / 6 roots (13 orphans) and 19 / 6 / 6 / 6.
    assert_eq!(scalar(&db, "SELECT count(*) FROM spans"), 38);
    assert_eq!(scalar(&db, "SELECT count(*) FROM traces"), 25);
    assert_eq!(scalar(&db, "SELECT count(*) FROM traces WHERE has_root"), 12);
    assert_eq!(scalar(&db, "SELECT sum(orphan_count) FROM traces"), 13);
    assert_eq!(scalar(&db, "SELECT count(*) FROM services"), 14);
    assert_eq!(scalar(&db, "SELECT sum(span_count) FROM services"), 38, "every span credited to its own service");
    assert_eq!(scalar(&db, "SELECT count(*) FROM parquet_files WHERE row_count = 19"), 2);
    assert_eq!(scalar(&db, "SELECT count(*) FROM file_index WHERE source = 'spans' AND status = 'indexed'"), 2);
    assert_eq!(scalar(&db, "SELECT count(*) FROM spans WHERE parent_span_id = ''"), 0, "empty parents are NULL");

    // The CLI reads the same through the file: kinds and statuses by name, orphans flagged.
    let traces = ducktail(&["otel", "traces", "--db", path_str(&db), "--daemon", "127.0.0.1:1", "--json", "--limit", "100"], None);
    let traces: serde_json::Value = serde_json::from_slice(&traces.stdout).unwrap();
    let traces = traces["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 25);
    let starts: Vec<&str> = traces.iter().map(|trace| trace["start_time"].as_str().unwrap()).collect();
    assert!(starts.windows(2).all(|pair| pair[0] >= pair[1]), "newest first");
    let failed = traces.iter().find(|trace| trace["error_count"] == 1).expect("the failure workflow trace");
    let id = failed["trace_id"].as_str().unwrap();
    let tree = ducktail(&["otel", "trace", id, "--db", path_str(&db), "--daemon", "127.0.0.1:1", "--json"], None);
    let tree: serde_json::Value = serde_json::from_slice(&tree.stdout).unwrap();
    let text = tree.to_string();
    assert!(text.contains(r#""status":"ERROR""#) && text.contains(r#""status_code":2"#), "{text}");
    let orphaned = traces.iter().find(|trace| trace["orphan_count"] == 1).unwrap()["trace_id"].as_str().unwrap().to_owned();
    let tree = ducktail(&["otel", "trace", &orphaned, "--db", path_str(&db), "--daemon", "127.0.0.1:1", "--json"], None);
    let tree: serde_json::Value = serde_json::from_slice(&tree.stdout).unwrap();
    assert_eq!(tree["spans"][0]["orphan"], true, "an orphan is returned and flagged: {tree}");
    let kinds = [(1, "INTERNAL"), (2, "SERVER"), (3, "CLIENT"), (4, "PRODUCER"), (5, "CONSUMER")];
    let kind = tree["spans"][0]["span_kind"].as_i64().unwrap();
    assert_eq!(tree["spans"][0]["kind"], kinds.iter().find(|(code, _)| *code == kind).unwrap().1);
}

#[test]
fn duplicates_split_traces_and_orphans_match_the_generator_and_deletion_corrects_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spans");
    let config = SpanTreeConfig { seed: 11, files: 6, spans_per_file: 400, services: 7, duplicate_every: 20, orphan_every: 5 };
    let tree = generate_spans(&root, &config).unwrap();
    assert!(tree.rows > tree.spans && tree.split_traces > 0 && tree.orphans > 0, "the tree has every hard case: {tree:?}");
    let db = dir.path().join("db.duckdb");
    let summary = index_spans(&root, &db);
    assert!(summary.contains(&format!("{} duplicates kept once", tree.rows - tree.spans)), "{summary}");
    assert_eq!(scalar(&db, "SELECT count(*) FROM spans") as usize, tree.spans);
    assert_eq!(scalar(&db, "SELECT count(DISTINCT (trace_id, span_id)) FROM spans") as usize, tree.spans, "one row per span");
    assert_eq!(scalar(&db, "SELECT count(*) FROM traces") as usize, tree.traces);
    assert_eq!(scalar(&db, "SELECT sum(orphan_count) FROM traces") as usize, tree.orphans);
    assert_eq!(scalar(&db, "SELECT sum(error_count) FROM traces") as usize, tree.errors);
    let services: BTreeMap<String, usize> =
        rows(&db, "SELECT service_name, span_count FROM services").into_iter().map(|row| (row[0].clone(), row[1].parse().unwrap())).collect();
    assert_eq!(services, tree.services);
    // A trace split across files is one row whose count covers every file.
    assert!(scalar(&db, "SELECT count(*) FROM (SELECT trace_id FROM spans GROUP BY trace_id HAVING count(DISTINCT file_path) > 1)") > 0);
    assert_eq!(scalar(&db, "SELECT count(*) FROM traces t WHERE span_count <> (SELECT count(*) FROM spans s WHERE s.trace_id = t.trace_id)"), 0);

    // Indexing again reads nothing; deleting a file corrects spans, traces and services exactly.
    let again = index_spans(&root, &db);
    assert!(again.contains(", 0 read ("), "{again}");
    std::fs::remove_file(&tree.files[2]).unwrap();
    index_spans(&root, &db);
    let fresh = dir.path().join("fresh.duckdb");
    index_spans(&root, &fresh);
    assert_eq!(span_snapshot(&db, &root), span_snapshot(&fresh, &root));
}

#[test]
fn a_live_daemon_follows_span_files_half_written_new_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // Both sources side by side in one daemon: an OpenCode tree and a span folder.
    let opencode = dir.path().join("opencode");
    ducktail_generator::generate(&opencode, &ducktail_generator::GeneratorConfig { seed: 9, target_files: 150, ..Default::default() }).unwrap();
    let root = dir.path().join("spans");
    copy_tree(&span_fixtures(), &root);
    let db = dir.path().join("live.duckdb");
    let config = test_config(dir.path(), &format!("[sources.spans]\npath = \"{}\"\npoll_interval = \"100ms\"\n[pipeline]\nsettle_ms = 300", root.display()));
    let daemon = Daemon::start(&opencode, &db, &config);
    assert_eq!(daemon.scalar("SELECT count(*) FROM spans"), 38, "ready means the span folder was read once");
    assert_eq!(daemon.get_json("/api/otel/services")["services"].as_array().unwrap().len(), 14);

    // A file written straight to its final name, caught half-way: pending, then indexed.
    let generated = dir.path().join("generated");
    let tree =
        generate_spans(&generated, &SpanTreeConfig { seed: 3, files: 1, spans_per_file: 300, services: 3, duplicate_every: 0, orphan_every: 0 }).unwrap();
    let bytes = std::fs::read(&tree.files[0]).unwrap();
    let target = root.join("year=2026/month=11/day=30/live_1796000000_0badf00d.parquet");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, &bytes[..bytes.len() / 2]).unwrap();
    wait_until("the half-written file is noticed and not indexed", Duration::from_secs(20), || {
        let status = daemon.sql(&format!("SELECT status FROM file_index WHERE file_path = '{}'", target.display()));
        status == vec![vec!["pending".to_owned()]] || status == vec![vec!["error".to_owned()]]
    });
    std::fs::write(&target, &bytes).unwrap();
    wait_until("the completed file is indexed", Duration::from_secs(20), || {
        daemon.sql(&format!("SELECT status FROM file_index WHERE file_path = '{}'", target.display())) == vec![vec!["indexed".to_owned()]]
    });
    assert_eq!(daemon.scalar("SELECT count(*) FROM spans") as usize, 38 + tree.spans);
    let listed = daemon.get_json("/api/otel/traces?service=svc-0&limit=10000");
    let listed = listed["traces"].as_array().unwrap();
    assert!(!listed.is_empty() && listed.len() < tree.traces + 25);

    // A deleted file's spans leave and the summaries follow.
    let fixture = walkdir::WalkDir::new(root.join("year=2025")).into_iter().map(Result::unwrap).find(|entry| entry.file_type().is_file()).unwrap().into_path();
    std::fs::remove_file(&fixture).unwrap();
    wait_until("the deleted file's spans are gone", Duration::from_secs(20), || daemon.scalar("SELECT count(*) FROM spans") as usize == 19 + tree.spans);
    assert_eq!(daemon.scalar("SELECT sum(span_count) FROM services") as usize, 19 + tree.spans);
    assert_eq!(daemon.get_status(&format!("/api/otel/traces/{}", "0".repeat(32))), Some(404));
    assert!(daemon.terminate().success());
    // One index run of both sources gives the same database.
    let fresh = dir.path().join("fresh.duckdb");
    let output = ducktail(&["index", "--opencode", path_str(&opencode), "--spans", path_str(&root), "--db", path_str(&fresh)], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(span_snapshot(&db, &root), span_snapshot(&fresh, &root));
    assert_same_snapshot(&snapshot(&db), &snapshot(&fresh));
}
