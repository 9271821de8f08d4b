//! `ducktail index` end to end: the shared fixtures, generated trees, idempotency, changes,
//! deletions, moves and bad files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::expected::Expected;
use crate::support::*;

/// Checks every contract table against expectations computed from the JSON itself.
fn assert_matches_tree(opencode: &Path, db: &Path) {
    let expected = Expected::from_tree(opencode);
    let column = |sql: &str| -> Vec<String> { rows(db, sql).into_iter().map(|mut row| row.remove(0)).collect() };

    let sessions: BTreeMap<String, Option<String>> = rows(db, "SELECT id, parent_id FROM sessions")
        .into_iter()
        .map(|row| (row[0].clone(), Some(row[1].clone()).filter(|parent| parent != "NULL")))
        .collect();
    assert_eq!(sessions, expected.sessions, "sessions and their parents");
    assert_eq!(column("SELECT id FROM projects ORDER BY id").into_iter().collect::<BTreeSet<_>>(), expected.projects);

    let messages: BTreeMap<String, (String, i64, f64)> = rows(db, "SELECT id, session_id, tokens_input, coalesce(cost, 0) FROM messages")
        .into_iter()
        .map(|row| (row[0].clone(), (row[1].clone(), row[2].parse().unwrap(), row[3].parse().unwrap())))
        .collect();
    assert_eq!(messages.len(), expected.messages.len(), "message count");
    for (id, (session, tokens, cost)) in &expected.messages {
        let actual = &messages[id];
        assert_eq!((&actual.0, actual.1), (session, *tokens), "message {id}");
        assert!((actual.2 - cost).abs() < 1e-9, "cost of message {id}: {} vs {cost}", actual.2);
    }
    assert_eq!(column("SELECT id FROM parts").into_iter().collect::<BTreeSet<_>>(), expected.parts, "part ids");
    assert_eq!(scalar(db, "SELECT count(*) - count(DISTINCT id) FROM parts"), 0, "no duplicate parts");

    let sums: BTreeMap<String, (i64, i64, f64)> =
        rows(db, "SELECT session_id, sum(tokens_input), sum(tokens_output), sum(coalesce(cost, 0)) FROM step_events WHERE event_type = 'finish' GROUP BY 1")
            .into_iter()
            .map(|row| (row[0].clone(), (row[1].parse().unwrap(), row[2].parse().unwrap(), row[3].parse().unwrap())))
            .collect();
    assert_eq!(sums.keys().collect::<Vec<_>>(), expected.finish_sums.keys().collect::<Vec<_>>(), "sessions with finish steps");
    for (session, (input, output, cost)) in &expected.finish_sums {
        let actual = sums[session];
        assert_eq!((actual.0, actual.1), (*input, *output), "finish-step token sums of {session}");
        assert!((actual.2 - cost).abs() < 1e-9, "finish-step cost of {session}");
    }

    let delegations: BTreeSet<(String, String, String)> =
        rows(db, "SELECT id, session_id, child_session_id FROM delegations").into_iter().map(|row| (row[0].clone(), row[1].clone(), row[2].clone())).collect();
    assert_eq!(delegations, expected.delegations, "delegation edges");

    let trace_parents: BTreeMap<String, Option<String>> = rows(db, "SELECT trace_id, parent_trace_id FROM agent_traces WHERE trace_id NOT LIKE 'root_%'")
        .into_iter()
        .map(|row| (row[0].clone(), Some(row[1].clone()).filter(|parent| parent != "NULL")))
        .collect();
    assert_eq!(trace_parents, expected.task_trace_parents(), "task trace parents");
    let roots: BTreeSet<String> = column("SELECT child_session_id FROM agent_traces WHERE trace_id LIKE 'root_%'").into_iter().collect();
    let expected_roots: BTreeSet<String> = expected.sessions.iter().filter(|(_, parent)| parent.is_none()).map(|(id, _)| id.clone()).collect();
    assert_eq!(roots, expected_roots, "one root trace per root session");
    // Each trace's tokens are its own session's finish-step sums.
    for row in rows(db, "SELECT trace_id, child_session_id, tokens_input FROM agent_traces") {
        let expected_input = expected.finish_sums.get(&row[1]).map_or(0, |sums| sums.0);
        assert_eq!(row[2].parse::<i64>().unwrap(), expected_input, "tokens of trace {}", row[0]);
    }

    assert_eq!(scalar(db, "SELECT count(*) FROM todos") as usize, expected.todos, "todo items");
    assert_eq!(scalar(db, "SELECT count(*) FROM file_diffs") as usize, expected.file_diffs, "diff items");
    let statuses: BTreeMap<String, String> =
        rows(db, "SELECT file_path, status FROM file_index").into_iter().map(|row| (row[0].clone(), row[1].clone())).collect();
    for path in &expected.good_files {
        assert_eq!(statuses.get(path_str(path)).map(String::as_str), Some("indexed"), "{}", path.display());
    }
    for path in &expected.bad_files {
        assert_eq!(statuses.get(path_str(path)).map(String::as_str), Some("error"), "{}", path.display());
    }
    assert_eq!(statuses.len(), expected.good_files.len() + expected.bad_files.len(), "file_index has exactly the OpenCode files");
}

#[test]
fn every_shared_fixture_tree_indexes_exactly() {
    let fixtures = shared_opencode_fixtures();
    let mut trees = 0;
    for entry in std::fs::read_dir(&fixtures).expect("../shared/fixtures/opencode-json exists") {
        let opencode = entry.unwrap().path();
        if !opencode.join("storage").is_dir() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.duckdb");
        index(&opencode, &db);
        assert_matches_tree(&opencode, &db);
        trees += 1;
    }
    assert!(trees >= 4, "expected the four fixture trees, found {trees}");
}

#[test]
fn generated_tree_with_bad_files_indexes_exactly_and_reindex_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let config = ducktail_generator::GeneratorConfig { seed: 7, target_files: 3_000, bad_files: 10, ..Default::default() };
    let tree = ducktail_generator::generate(&opencode, &config).unwrap();
    let db = dir.path().join("db.duckdb");
    let first = index(&opencode, &db);
    assert!(first.contains("errors 10"), "{first}");
    assert_matches_tree(&opencode, &db);
    let before = snapshot(&db);
    let second = index(&opencode, &db);
    assert!(second.contains("indexed 0,"), "second run must skip unchanged files: {second}");
    assert!(second.contains(&format!("unchanged {}", tree.total_files)), "{second}");
    assert_same_snapshot(&snapshot(&db), &before);
    let errors = rows(&db, "SELECT error_message FROM file_index WHERE status = 'error'");
    assert!(errors.iter().all(|row| !row[0].is_empty() && row[0] != "NULL"), "every error has a message: {errors:?}");
}

/// The first file under `folder` (walk order) that `wanted` accepts.
fn first_file(folder: &Path, wanted: impl Fn(&Path) -> bool) -> PathBuf {
    walkdir::WalkDir::new(folder)
        .into_iter()
        .filter_map(Result::ok)
        .find(|entry| entry.file_type().is_file() && wanted(entry.path()))
        .unwrap_or_else(|| panic!("no such file under {}", folder.display()))
        .into_path()
}

#[test]
fn changes_deletions_moves_and_bad_files_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    let db = dir.path().join("db.duckdb");
    index(&opencode, &db);
    let storage = opencode.join("storage");

    // Change: a step-finish part gets new tokens; its row is replaced, not duplicated.
    let part = first_file(&storage.join("part"), |path| std::fs::read_to_string(path).unwrap().contains("\"step-finish\""));
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&part).unwrap()).unwrap();
    value["tokens"]["input"] = 123_456.into();
    std::fs::write(&part, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let part_id = value["id"].as_str().unwrap().to_owned();

    // Move: a session file goes to another project folder.
    let session = first_file(&storage.join("session"), |_| true);
    let session_id = session.file_stem().unwrap().to_string_lossy().into_owned();
    let moved_dir = storage.join("session/0123456789abcdef0123456789abcdef01234567");
    std::fs::create_dir_all(&moved_dir).unwrap();
    std::fs::rename(&session, moved_dir.join(session.file_name().unwrap())).unwrap();

    // Delete: a message file disappears.
    let message = first_file(&storage.join("message"), |_| true);
    let message_id = message.file_stem().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&message).unwrap();

    // Bad files of every kind, next to good neighbours; and things that must be ignored.
    let bad_dir = storage.join("part/msg_badbadbadbad0000000000000000");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let bad: [(&str, &[u8]); 6] = [
        ("prt_empty0000000000000000000000.json", b""),
        ("prt_nul00000000000000000000000.json", &[0u8; 413]),
        ("prt_trunc000000000000000000000.json", b"{\"id\": \"prt_trunc\", \"sessionID\": \"ses_x\", \"type\": \"te"),
        ("prt_notjson0000000000000000000.json", b"hello"),
        ("prt_idnum00000000000000000000.json", b"{\"id\": 42, \"sessionID\": \"ses_x\", \"messageID\": \"msg_x\", \"type\": \"text\"}"),
        ("prt_array0000000000000000000000.json", b"[1, 2]"),
    ];
    for (name, contents) in bad {
        std::fs::write(bad_dir.join(name), contents).unwrap();
    }
    std::fs::write(
        bad_dir.join("prt_good with space 'quote'.json"),
        br#"{"id":"prt_goodspace","sessionID":"ses_x","messageID":"msg_x","type":"text","text":"ok"}"#,
    )
    .unwrap();
    std::fs::write(bad_dir.join("prt_tmp.json.tmp"), b"{").unwrap();
    std::fs::create_dir_all(storage.join("agent-usage-reminder")).unwrap();
    std::fs::write(storage.join("agent-usage-reminder/ses_x.json"), b"{}").unwrap();
    std::os::unix::fs::symlink(&part, bad_dir.join("prt_symlink000000000000000000.json")).unwrap();

    let summary = index(&opencode, &db);
    assert!(summary.contains("errors 6"), "{summary}");
    assert_eq!(scalar(&db, &format!("SELECT tokens_input FROM step_events WHERE id = '{part_id}'")), 123_456);
    assert_eq!(scalar(&db, &format!("SELECT count(*) FROM step_events WHERE id = '{part_id}'")), 1);
    assert_eq!(scalar(&db, &format!("SELECT count(*) FROM sessions WHERE id = '{session_id}'")), 1, "moved session stays one row");
    assert_eq!(rows(&db, &format!("SELECT project_id FROM sessions WHERE id = '{session_id}'"))[0][0], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(scalar(&db, &format!("SELECT count(*) FROM messages WHERE id = '{message_id}'")), 0, "deleted message is gone");
    assert_eq!(scalar(&db, "SELECT count(*) FROM parts WHERE id = 'prt_goodspace'"), 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM file_index WHERE file_path LIKE '%.tmp' OR file_path LIKE '%symlink%' OR file_path LIKE '%agent-usage%'"), 0);
    let messages: BTreeMap<String, String> = rows(&db, "SELECT file_path, error_message FROM file_index WHERE status = 'error'")
        .into_iter()
        .map(|row| (Path::new(&row[0]).file_name().unwrap().to_string_lossy().into_owned(), row[1].clone()))
        .collect();
    assert!(messages["prt_empty0000000000000000000000.json"].contains("empty"), "{messages:?}");
    assert!(messages["prt_nul00000000000000000000000.json"].contains("NUL"), "{messages:?}");
    assert!(messages["prt_trunc000000000000000000000.json"].contains("truncated"), "{messages:?}");
    assert!(messages["prt_notjson0000000000000000000.json"].contains("JSON"), "{messages:?}");
    assert!(messages["prt_idnum00000000000000000000.json"].contains("`id`"), "{messages:?}");
    assert!(messages["prt_array0000000000000000000000.json"].contains("object"), "{messages:?}");
    assert_matches_tree(&opencode, &db);

    // A bad file that is fixed is retried because it changed.
    std::fs::write(
        bad_dir.join("prt_notjson0000000000000000000.json"),
        br#"{"id":"prt_fixed","sessionID":"ses_x","messageID":"msg_x","type":"text","text":"fixed"}"#,
    )
    .unwrap();
    index(&opencode, &db);
    assert_eq!(scalar(&db, "SELECT count(*) FROM parts WHERE id = 'prt_fixed'"), 1);
    // The runs after the first recomputed only the sessions they touched (the first left the
    // derived tables marked complete); traces and rollups still equal a fresh index's.
    assert_eq!(scalar(&db, "SELECT count(*) FROM pipeline_state WHERE key = 'derived_complete'"), 1);
    assert_equals_fresh_index(&opencode, &db, dir.path());
}

#[test]
fn a_corrupted_database_is_named_with_the_fix_and_rebuild_recreates_it() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = shared_opencode_fixtures().join("generated-opencode-1.1.65");
    let db = dir.path().join("db.duckdb");
    index(&opencode, &db);
    let before = snapshot(&db);
    // Damage every byte after the header, as a failing disk or a stray write would.
    let mut bytes = std::fs::read(&db).unwrap();
    for byte in bytes.iter_mut().skip(4_096) {
        *byte ^= 0x5a;
    }
    std::fs::write(&db, &bytes).unwrap();
    let output = ducktail(&["index", "--opencode", path_str(&opencode), "--db", path_str(&db)], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(path_str(&db)) && stderr.contains("ducktail rebuild"), "names the file and the fix: {stderr}");
    let output = ducktail(&["rebuild", "--opencode", path_str(&opencode), "--db", path_str(&db)], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_same_snapshot(&snapshot(&db), &before);
}

#[test]
fn index_fails_clearly_without_a_storage_folder_or_with_a_locked_database() {
    let dir = tempfile::tempdir().unwrap();
    let output = ducktail(&["index", "--opencode", path_str(&dir.path().join("nope")), "--db", path_str(&dir.path().join("db.duckdb"))], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist") && stderr.contains("nope") && stderr.contains("--opencode"), "{stderr}");
    let output = ducktail(&["index", "--opencode", path_str(dir.path()), "--db", path_str(&dir.path().join("db.duckdb"))], None);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("neither") && stderr.contains("opencode.db") && stderr.contains("--opencode"), "{stderr}");
    assert!(!dir.path().join("db.duckdb").exists(), "inputs are checked before the database is created");

    std::fs::create_dir_all(dir.path().join("storage")).unwrap();
    let output = ducktail(&["index", "--opencode", path_str(dir.path()), "--db", "/proc/ducktail-cannot-write/db.duckdb"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/proc/ducktail-cannot-write"), "names the path");

    let output = ducktail(&["status", "--db", path_str(&dir.path().join("missing.duckdb"))], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ducktail index"));
}

#[test]
fn a_bad_config_value_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[pipeline]\nwindow_ms = \"soon\"\n").unwrap();
    let output = ducktail(&["status"], Some(&config));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("window_ms"), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn status_reports_counts_and_newest_errors() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let config = ducktail_generator::GeneratorConfig { seed: 3, target_files: 300, bad_files: 2, ..Default::default() };
    ducktail_generator::generate(&opencode, &config).unwrap();
    let db = dir.path().join("db.duckdb");
    index(&opencode, &db);
    let output = ducktail(&["status", "--db", path_str(&db), "--json"], None);
    assert!(output.status.success());
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["files_by_status"]["error"], 2);
    assert_eq!(status["recent_errors"].as_array().unwrap().len(), 2);
    assert!(status["tables"]["parts"].as_i64().unwrap() > 100);
}

#[test]
fn the_readme_demo_answers_every_example_question() {
    let dir = tempfile::tempdir().unwrap();
    let output = ducktail(&["demo", "--files", "600", "--dir", path_str(dir.path())], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for question in ["## Cost and tokens per day", "## Tool calls and error rate per tool", "## Most expensive root sessions", "## Delegation depth"] {
        let answer = stdout.split(question).nth(1).unwrap_or_else(|| panic!("{question} missing:\n{stdout}"));
        // After the title line: the SQL, a blank line, the header, then at least one row.
        let section = answer.split("\n## ").next().unwrap();
        let rows = section.lines().skip(1).skip_while(|line| !line.is_empty()).skip(2).take_while(|line| !line.is_empty()).count();
        assert!(rows >= 1, "{question} has no rows:\n{section}");
    }
    let db = dir.path().join("ducktail.duckdb");
    let days = rows(&db, "SELECT count(DISTINCT CAST(date_trunc('day', created_at::TIMESTAMP) AS DATE)) FROM messages");
    assert!(days[0][0].parse::<i64>().unwrap() >= 1);
}
