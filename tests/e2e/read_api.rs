//! The read API end to end on a generated tree, against expectations computed from the JSON
//! files themselves (`expected.rs`), never from the same SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::expected::Expected;
use crate::support::*;

fn get(daemon: &Daemon, path: &str) -> (u16, Value) {
    match ureq::get(&format!("{}{path}", daemon.base_url)).call() {
        Ok(response) => (response.status(), response.into_json().unwrap()),
        Err(ureq::Error::Status(code, response)) => (code, response.into_json().unwrap_or(Value::Null)),
        Err(error) => panic!("GET {path}: {error}"),
    }
}

fn close(actual: &Value, expected: f64) -> bool {
    (actual.as_f64().unwrap_or(f64::NAN) - expected).abs() < 1e-6
}

/// Parts per session, straight from the part files: (all parts, tool parts).
fn parts_per_session(opencode: &Path) -> BTreeMap<String, (i64, i64)> {
    let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for folder in std::fs::read_dir(opencode.join("storage/part")).unwrap().flatten() {
        for file in std::fs::read_dir(folder.path()).unwrap().flatten() {
            let Ok(value) = serde_json::from_slice::<Value>(&std::fs::read(file.path()).unwrap()) else { continue };
            if let Some(session) = value["sessionID"].as_str() {
                let entry = counts.entry(session.to_owned()).or_default();
                entry.0 += 1;
                entry.1 += i64::from(value["type"] == "tool");
            }
        }
    }
    counts
}

/// Sessions under `root` (itself included), through parent links.
fn subtree(expected: &Expected, root: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::from([root.to_owned()]);
    loop {
        let before = found.len();
        for (session, parent) in &expected.sessions {
            if parent.as_ref().is_some_and(|parent| found.contains(parent)) {
                found.insert(session.clone());
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

fn collect_trace(node: &Value, ids: &mut BTreeSet<String>, input: &mut i64, cost: &mut f64) {
    ids.insert(node["trace_id"].as_str().unwrap().to_owned());
    *input += node["own"]["input"].as_i64().unwrap();
    *cost += node["own"]["cost"].as_f64().unwrap();
    for child in node["children"].as_array().unwrap() {
        collect_trace(child, ids, input, cost);
    }
}

#[test]
fn sessions_summaries_traces_and_usage_match_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let generator = ducktail_generator::GeneratorConfig { seed: 71, target_files: 1_500, ..Default::default() };
    ducktail_generator::generate(&opencode, &generator).unwrap();
    let expected = Expected::from_tree(&opencode);
    let parts = parts_per_session(&opencode);
    let tools: BTreeMap<String, i64> = parts.iter().map(|(session, (_, tools))| (session.clone(), *tools)).collect();
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), ""));
    let no_usage = (0, 0, 0.0);

    // Every session exactly once across pages, newest first, with its own totals.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut previous_created: Option<String> = None;
    loop {
        let (code, page) = get(&daemon, &format!("/api/sessions?limit=7&cursor={cursor}"));
        assert_eq!(code, 200, "{page}");
        for session in page["sessions"].as_array().unwrap() {
            let id = session["id"].as_str().unwrap().to_owned();
            let created = session["created_at"].as_str().map(str::to_owned);
            if let (Some(previous), Some(created)) = (&previous_created, &created) {
                assert!(created <= previous, "not newest first: {created} after {previous}");
            }
            previous_created = created.or(previous_created);
            let (input, output, cost) = expected.finish_sums.get(&id).copied().unwrap_or(no_usage);
            assert_eq!(session["usage"]["input"].as_i64(), Some(input), "{id}");
            assert_eq!(session["usage"]["output"].as_i64(), Some(output), "{id}");
            assert!(close(&session["usage"]["cost"], cost), "{id}: cost {} vs {cost}", session["usage"]["cost"]);
            let children = expected.sessions.values().filter(|parent| parent.as_deref() == Some(id.as_str())).count() as i64;
            assert_eq!(session["children"].as_i64(), Some(children), "{id}");
            assert_eq!(session["tool_calls"].as_i64(), Some(tools.get(&id).copied().unwrap_or(0)), "{id}");
            seen.push(id);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a session appeared on two pages");
    assert_eq!(unique, expected.sessions.keys().cloned().collect::<BTreeSet<_>>());

    // Sorted by the server across pages: by cost, largest first; by tokens, smallest first.
    for (query, ascending) in [("sort=cost", false), ("sort=tokens&order=asc", true)] {
        let mut keys = Vec::new();
        let mut listed = BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let (code, page) = get(&daemon, &format!("/api/sessions?{query}&limit=9&cursor={cursor}"));
            assert_eq!(code, 200, "{query}: {page}");
            for session in page["sessions"].as_array().unwrap() {
                let usage = &session["usage"];
                let key = if query.contains("cost") {
                    usage["cost"].as_f64().unwrap()
                } else {
                    ["input", "output", "reasoning", "cache_read", "cache_write"].iter().map(|kind| usage[kind].as_i64().unwrap()).sum::<i64>() as f64
                };
                keys.push(key);
                assert!(listed.insert(session["id"].as_str().unwrap().to_owned()), "{query}: a session on two pages");
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
        }
        assert_eq!(listed, expected.sessions.keys().cloned().collect::<BTreeSet<_>>(), "{query}: every session once");
        let ordered = keys.windows(2).all(|pair| if ascending { pair[0] <= pair[1] + 1e-9 } else { pair[0] + 1e-9 >= pair[1] });
        assert!(ordered, "{query}: not in order: {keys:?}");
        assert!(keys.first() != keys.last(), "{query}: the tree has sessions of different sizes");
    }
    // Filtered by a model the files name: exactly the sessions with a finish step of it.
    let model = expected.finish_models.values().flatten().next().expect("the generated tree names models").clone();
    let (code, page) = get(&daemon, &format!("/api/sessions?model={}&limit=500", model.replace('/', "%2F")));
    assert_eq!(code, 200, "{page}");
    let listed: BTreeSet<String> = page["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    let wanted: BTreeSet<String> = expected.finish_models.iter().filter(|(_, models)| models.contains(&model)).map(|(id, _)| id.clone()).collect();
    assert_eq!(listed, wanted, "sessions of {model}");
    let (_, by_agent) = get(&daemon, "/api/usage?group_by=agent");
    let agent = by_agent["rows"][0]["key"].as_str().unwrap().to_owned();
    let (_, page) = get(&daemon, &format!("/api/sessions?agent={agent}&sort=updated&order=asc&limit=500"));
    let sessions = page["sessions"].as_array().unwrap();
    assert!(!sessions.is_empty() && sessions.len() < expected.sessions.len(), "agent {agent}: {} of {} sessions", sessions.len(), expected.sessions.len());

    let roots: BTreeSet<String> = expected.sessions.iter().filter(|(_, parent)| parent.is_none()).map(|(id, _)| id.clone()).collect();
    let (_, page) = get(&daemon, "/api/sessions?root_only=true&limit=500");
    let listed: BTreeSet<String> = page["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed, roots);

    // The session with the most descendants: its summary and its delegation tree.
    let root = roots.iter().max_by_key(|root| subtree(&expected, root).len()).unwrap().clone();
    let descendants = subtree(&expected, &root);
    assert!(descendants.len() >= 3, "the generated tree should delegate at depth ≥ 2");
    let (code, summary) = get(&daemon, &format!("/api/sessions/{root}"));
    assert_eq!(code, 200, "{summary}");
    let (input, _, cost) = expected.finish_sums.get(&root).copied().unwrap_or(no_usage);
    assert_eq!(summary["session"]["usage"]["input"].as_i64(), Some(input));
    let agent_cost: f64 = summary["by_agent"].as_array().unwrap().iter().map(|row| row["usage"]["cost"].as_f64().unwrap()).sum();
    assert!((agent_cost - cost).abs() < 1e-6, "per-agent costs {agent_cost} sum to the total {cost}");
    let tool_calls: i64 = summary["tools"].as_array().unwrap().iter().map(|row| row["calls"].as_i64().unwrap()).sum();
    assert_eq!(tool_calls, tools.get(&root).copied().unwrap_or(0));
    let children: BTreeSet<String> = summary["children"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    let expected_children: BTreeSet<String> =
        expected.sessions.iter().filter(|(_, parent)| parent.as_deref() == Some(root.as_str())).map(|(id, _)| id.clone()).collect();
    assert_eq!(children, expected_children);

    // The timeline: every message of the session in order, every part under its message, texts cut.
    let (code, timeline) = get(&daemon, &format!("/api/sessions/{root}/timeline?max_chars=10"));
    assert_eq!(code, 200, "{timeline}");
    let messages = timeline["messages"].as_array().unwrap();
    let expected_messages: BTreeSet<String> = expected.messages.iter().filter(|(_, (session, _, _))| session == &root).map(|(id, _)| id.clone()).collect();
    assert_eq!(messages.iter().map(|message| message["id"].as_str().unwrap().to_owned()).collect::<BTreeSet<_>>(), expected_messages);
    let created: Vec<&str> = messages.iter().filter_map(|message| message["created_at"].as_str()).collect();
    assert!(created.windows(2).all(|pair| pair[0] <= pair[1]), "messages in order");
    let timeline_parts: i64 = messages.iter().map(|message| message["parts"].as_array().unwrap().len() as i64).sum();
    assert_eq!(timeline_parts, parts.get(&root).map_or(0, |counts| counts.0));
    let mut cut = 0;
    for part in messages.iter().flat_map(|message| message["parts"].as_array().unwrap()) {
        for clipped in [&part["text"], &part["tool"]["input"], &part["tool"]["output"]] {
            if let Some(text) = clipped["text"].as_str() {
                assert!(text.chars().count() <= 10, "{clipped}");
                let longer = clipped["chars"].as_i64().unwrap() > 10;
                assert!(!longer || clipped["truncated"] == true, "{clipped}");
                cut += i64::from(longer);
            }
        }
    }
    assert!(cut > 0, "some text was long enough to be cut");
    assert_eq!(get(&daemon, &format!("/api/sessions/{root}/timeline?max_chars=0")).0, 400);

    let (code, tree) = get(&daemon, &format!("/api/traces/{root}"));
    assert_eq!(code, 200, "{tree}");
    let (mut ids, mut own_input, mut own_cost) = (BTreeSet::new(), 0, 0.0);
    collect_trace(&tree, &mut ids, &mut own_input, &mut own_cost);
    let mut expected_ids: BTreeSet<String> =
        expected.delegations.iter().filter(|(_, session, _)| descendants.contains(session)).map(|(task, _, _)| task.clone()).collect();
    expected_ids.insert(format!("root_{root}"));
    assert_eq!(ids, expected_ids, "the tree holds the root and every task under it, at any depth");
    let subtree_input: i64 = descendants.iter().map(|session| expected.finish_sums.get(session).copied().unwrap_or(no_usage).0).sum();
    let subtree_cost: f64 = descendants.iter().map(|session| expected.finish_sums.get(session).copied().unwrap_or(no_usage).2).sum();
    assert_eq!(tree["cumulative"]["input"].as_i64(), Some(own_input), "cumulative = sum of the nodes");
    assert_eq!(own_input, subtree_input, "and equals the subtree's finish steps");
    assert!((own_cost - subtree_cost).abs() < 1e-6 && close(&tree["cumulative"]["cost"], subtree_cost));

    // Usage: every grouping sums to the whole tree's finish steps.
    let total_input: i64 = expected.finish_sums.values().map(|sums| sums.0).sum();
    let total_cost: f64 = expected.finish_sums.values().map(|sums| sums.2).sum();
    for group in ["day", "model", "agent", "project"] {
        let (code, usage) = get(&daemon, &format!("/api/usage?group_by={group}"));
        assert_eq!(code, 200, "{usage}");
        let rows = usage["rows"].as_array().unwrap();
        assert!(!rows.is_empty());
        let input: i64 = rows.iter().map(|row| row["usage"]["input"].as_i64().unwrap()).sum();
        let cost: f64 = rows.iter().map(|row| row["usage"]["cost"].as_f64().unwrap()).sum();
        assert_eq!(input, total_input, "{group}");
        assert!((cost - total_cost).abs() < 1e-6, "{group}: {cost} vs {total_cost}");
    }
    let (_, future) = get(&daemon, "/api/usage?group_by=day&since=2999-01-01");
    assert_eq!(future["rows"], serde_json::json!([]));

    // Errors are JSON with a status that says what is wrong.
    for (path, code, mentions) in [
        ("/api/sessions/ses_nope", 404, "ses_nope"),
        ("/api/sessions/ses_nope/timeline", 404, "ses_nope"),
        ("/api/traces/ses_nope", 404, "ses_nope"),
        ("/api/usage?group_by=week", 400, "group_by"),
        ("/api/sessions?since=yesterday", 400, "since"),
        ("/api/sessions?limit=0", 400, "limit"),
        ("/api/sessions?cursor=garbage", 400, "cursor"),
        ("/api/sessions?sort=price", 400, "sort"),
        ("/api/sessions?order=up", 400, "order"),
        ("/api/sessions?cursor=cost:asc:1.ses_x", 400, "another sort"),
    ] {
        let (status, body) = get(&daemon, path);
        assert_eq!(status, code, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|error| error.contains(mentions)), "{path}: {body}");
    }
    assert!(daemon.terminate().success());
}

/// Runs a read command and parses its `--json` output.
fn command_json(args: &[&str]) -> Value {
    let output = ducktail(args, None);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{args:?}: {error}: {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn read_commands_answer_the_same_with_the_daemon_up_or_down() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let generator = ducktail_generator::GeneratorConfig { seed: 73, target_files: 800, ..Default::default() };
    ducktail_generator::generate(&opencode, &generator).unwrap();
    let expected = Expected::from_tree(&opencode);
    let db = dir.path().join("db.duckdb");
    let db_text = db.display().to_string();
    index(&opencode, &db);
    let root = expected
        .sessions
        .iter()
        .find(|(id, parent)| parent.is_none() && expected.sessions.values().any(|p| p.as_deref() == Some(id.as_str())))
        .unwrap()
        .0
        .clone();
    let commands: Vec<Vec<String>> = vec![
        vec!["sessions".into(), "--limit".into(), "500".into()],
        vec!["session".into(), root.clone()],
        vec!["trace".into(), root.clone()],
        vec!["usage".into(), "--by".into(), "model".into()],
        vec!["sql".into(), "SELECT count(*) AS parts FROM parts".into()],
    ];
    // Daemon down: nothing listens on port 1, so the file is read.
    let offline: Vec<Value> = commands
        .iter()
        .map(|command| {
            let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
            args.extend(["--db", &db_text, "--daemon", "127.0.0.1:1", "--json"]);
            command_json(&args)
        })
        .collect();
    assert_eq!(offline[0]["sessions"].as_array().unwrap().len(), expected.sessions.len());
    assert_eq!(offline[4]["rows"][0][0].as_u64().unwrap() as usize, expected.parts.len());
    assert_eq!(offline[2]["trace_id"].as_str(), Some(format!("root_{root}").as_str()));

    // Daemon up: the file is locked, so answers must come through the API — and be the same.
    let daemon = Daemon::start(&opencode, &db, &test_config(dir.path(), ""));
    let address = daemon.base_url.trim_start_matches("http://").to_owned();
    for (command, offline) in commands.iter().zip(&offline) {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.extend(["--db", &db_text, "--daemon", &address, "--json"]);
        assert_eq!(&command_json(&args), offline, "{command:?} differs between the daemon and the file");
    }
    // A table for terminals by default.
    let table = ducktail(&["usage", "--by", "agent", "--db", &db_text, "--daemon", &address], None);
    assert!(String::from_utf8_lossy(&table.stdout).contains("cost $"));
    // With the daemon up but not named, the locked file is refused with the fix.
    let refused = ducktail(&["sessions", "--db", &db_text, "--daemon", "127.0.0.1:1"], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--daemon"), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(daemon.terminate().success());
}

/// `GET path` with an optional `If-None-Match`: the status and the ETag.
fn conditional_get(daemon: &Daemon, path: &str, tag: Option<&str>) -> (u16, Option<String>) {
    let mut request = ureq::get(&format!("{}{path}", daemon.base_url)).timeout(std::time::Duration::from_secs(10));
    if let Some(tag) = tag {
        request = request.set("If-None-Match", tag);
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("GET {path}: {error}"),
    };
    (response.status(), response.header("etag").map(str::to_owned))
}

#[test]
fn read_answers_revalidate_with_304_until_a_commit_changes_them() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), ""));
    // Derived rows trail the catch-up's commit: wait until the tag holds still.
    let mut tag = String::new();
    wait_until("the tag holds still", std::time::Duration::from_secs(20), || {
        let (status, current) = conditional_get(&daemon, "/api/sessions", None);
        assert_eq!(status, 200);
        let current = current.expect("a read answer carries an ETag");
        let settled = current == tag;
        tag = current;
        settled && conditional_get(&daemon, "/api/sessions", Some(&tag)).0 == 304
    });
    for path in ["/api/sessions?limit=5", "/api/usage?group_by=model", "/api/otel/services"] {
        assert_eq!(conditional_get(&daemon, path, Some(&tag)).0, 304, "{path}: nothing was committed since the tag");
    }
    assert_eq!(conditional_get(&daemon, "/api/stats", None).1, None, "stats change without a commit: no validator");
    // A commit changes every answer's validator.
    let part = opencode.join("storage/part/msg_etag00000000000000000000001/prt_etag.json");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, r#"{"id":"prt_etag","sessionID":"ses_etag","messageID":"msg_etag00000000000000000000001","type":"text","text":"new"}"#).unwrap();
    wait_until("the commit invalidates the tag", std::time::Duration::from_secs(20), || conditional_get(&daemon, "/api/sessions", Some(&tag)).0 == 200);
    let (_, fresh) = conditional_get(&daemon, "/api/sessions", None);
    assert_ne!(fresh.as_deref(), Some(tag.as_str()));
    assert!(daemon.terminate().success());
}

/// The ETag of `path`'s newest answer once two in a row are the same: derived rows trail the
/// catch-up's commit.
fn settled_tag(daemon: &Daemon, path: &str) -> String {
    let mut tag = String::new();
    wait_until("the tag holds still", std::time::Duration::from_secs(20), || {
        let response = ureq::get(&format!("{}{path}", daemon.base_url)).set("Cache-Control", "no-cache").call().unwrap();
        let current = response.header("etag").unwrap_or_default().to_owned();
        let settled = current == tag;
        tag = current;
        settled
    });
    tag
}

fn answers_reused(daemon: &Daemon) -> u64 {
    let metrics = daemon.metrics_text();
    metrics.lines().find_map(|line| line.strip_prefix("ducktail_api_answers_reused_total ")).and_then(|value| value.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn many_clients_polling_one_view_share_one_computation_and_then_see_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), ""));
    let path = "/api/sessions?limit=50";
    let tag = settled_tag(&daemon, path);
    let before = answers_reused(&daemon);
    let bodies: Vec<(Option<String>, String)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let response = ureq::get(&format!("{}{path}", daemon.base_url)).call().unwrap();
                    let tag = response.header("etag").map(str::to_owned);
                    (tag, response.into_string().unwrap())
                })
            })
            .collect();
        clients.into_iter().map(|client| client.join().unwrap()).collect()
    });
    let reused = answers_reused(&daemon) - before;
    assert!(reused >= 8, "16 clients asking one view at one version: {reused} answers were reused");
    for (response_tag, body) in &bodies {
        if response_tag.as_deref() == Some(tag.as_str()) {
            assert_eq!(body, &bodies[0].1, "one version, one answer");
        }
    }
    // A commit: the next answer is computed again and shows it.
    let session = opencode.join("storage/session/global/ses_reused00000000000000001.json");
    std::fs::create_dir_all(session.parent().unwrap()).unwrap();
    std::fs::write(
        &session,
        r#"{"id":"ses_reused00000000000000001","projectID":"global","directory":"/tmp","title":"reuse","version":"1.1.65","time":{"created":4102444800000,"updated":4102444800000}}"#,
    )
    .unwrap();
    wait_until("the new session is in the reused view", std::time::Duration::from_secs(20), || {
        let (_, body) = conditional_get_body(&daemon, path);
        body.contains("ses_reused00000000000000001")
    });
    assert!(daemon.terminate().success());
}

fn conditional_get_body(daemon: &Daemon, path: &str) -> (u16, String) {
    let response = ureq::get(&format!("{}{path}", daemon.base_url)).call().unwrap();
    (response.status(), response.into_string().unwrap())
}

#[test]
fn a_sessions_own_answers_hold_while_others_are_written_and_move_when_a_child_changes() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), ""));
    let (parent, child) = ("ses_dfe759be5ffeN6yyyalYgawUnP", "ses_dfe759aaeffeszLmECt3Igrdw7");
    let summary = format!("/api/sessions/{parent}");
    let mut tag = String::new();
    wait_until("the parent's tag holds still", std::time::Duration::from_secs(20), || {
        let current = conditional_get(&daemon, &summary, None).1.unwrap_or_default();
        let settled = current == tag;
        tag = current;
        settled && conditional_get(&daemon, &summary, Some(&tag)).0 == 304
    });
    // Another session is written: the list moves, the parent's summary and trace tree do not.
    let trace = format!("/api/traces/{parent}");
    let trace_tag = conditional_get(&daemon, &trace, None).1.unwrap();
    let list_tag = conditional_get(&daemon, "/api/sessions", None).1.unwrap();
    let other = opencode.join("storage/part/msg_other0000000000000000000001/prt_other.json");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, r#"{"id":"prt_other","sessionID":"ses_other","messageID":"msg_other0000000000000000000001","type":"text","text":"x"}"#).unwrap();
    wait_until("the list moves", std::time::Duration::from_secs(20), || conditional_get(&daemon, "/api/sessions", Some(&list_tag)).0 == 200);
    assert_eq!(conditional_get(&daemon, &summary, Some(&tag)).0, 304, "another session's commit leaves the parent's summary");
    assert_eq!(conditional_get(&daemon, &trace, Some(&trace_tag)).0, 304, "and its trace tree");
    // Its child is written: the parent's summary (which shows its children) moves.
    let message = std::fs::read_dir(opencode.join("storage/message").join(child)).unwrap().next().unwrap().unwrap().path();
    let message_id = message.file_stem().unwrap().to_str().unwrap().to_owned();
    let part = opencode.join("storage/part").join(&message_id).join("prt_childnew.json");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, format!(r#"{{"id":"prt_childnew","sessionID":"{child}","messageID":"{message_id}","type":"text","text":"more"}}"#)).unwrap();
    wait_until("the parent's summary moves with its child", std::time::Duration::from_secs(20), || conditional_get(&daemon, &summary, Some(&tag)).0 == 200);
    wait_until("so does its trace tree", std::time::Duration::from_secs(20), || conditional_get(&daemon, &trace, Some(&trace_tag)).0 == 200);
    assert!(daemon.terminate().success());
}

/// GETs `path` with `Cache-Control: <cache_control>` when given: its ETag and body.
fn get_with(daemon: &Daemon, path: &str, cache_control: Option<&str>) -> (Option<String>, String) {
    let mut request = ureq::get(&format!("{}{path}", daemon.base_url));
    if let Some(value) = cache_control {
        request = request.set("Cache-Control", value);
    }
    let response = request.call().unwrap();
    (response.header("etag").map(str::to_owned), response.into_string().unwrap())
}

#[test]
fn a_kept_answer_is_served_for_max_staleness_unless_the_request_wants_the_newest_commit() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    // A minute, so that the steps below surely run inside it.
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), "max_staleness = \"60s\""));
    let path = "/api/sessions?limit=200";
    let tag = settled_tag(&daemon, path);
    let (kept_tag, kept_body) = get_with(&daemon, path, None);
    assert_eq!(kept_tag.as_deref(), Some(tag.as_str()));
    let sessions_counted = |stats: &str| serde_json::from_str::<serde_json::Value>(stats).unwrap()["tables"]["sessions"].as_i64().unwrap();
    let kept_sessions = sessions_counted(&get_with(&daemon, "/api/stats", None).1);

    // Another answer's tag names the data version the HTTP side knows: it moves once the
    // writer has announced the commit, a moment after the row is visible to SQL.
    let probe = "/api/usage?group_by=day";
    let probe_tag = get_with(&daemon, probe, Some("no-cache")).0;
    let session = opencode.join("storage/session/global/ses_staleness000000000000001.json");
    std::fs::create_dir_all(session.parent().unwrap()).unwrap();
    std::fs::write(
        &session,
        r#"{"id":"ses_staleness000000000000001","projectID":"global","directory":"/tmp","title":"staleness","version":"1.1.65","time":{"created":4102444800000,"updated":4102444800000}}"#,
    )
    .unwrap();
    // Watched through SQL, which is never kept: the read answers must not be asked meanwhile.
    wait_until("the session is committed", std::time::Duration::from_secs(20), || {
        !daemon.sql("SELECT id FROM sessions WHERE id = 'ses_staleness000000000000001'").is_empty()
    });
    wait_until("the commit is announced", std::time::Duration::from_secs(20), || get_with(&daemon, probe, Some("no-cache")).0 != probe_tag);

    let (stale_tag, stale_body) = get_with(&daemon, path, None);
    assert_eq!(
        (stale_tag.as_deref(), stale_body.as_str()),
        (Some(tag.as_str()), kept_body.as_str()),
        "within max_staleness the kept answer is served, with its own tag"
    );
    assert!(!stale_body.contains("ses_staleness000000000000001"));
    assert_eq!(conditional_get(&daemon, path, Some(&tag)).0, 304, "a client holding that answer is told it still holds");
    assert_eq!(sessions_counted(&get_with(&daemon, "/api/stats", None).1), kept_sessions, "the database part of /api/stats is kept alike");

    for wants_newest in ["no-cache", "max-age=0"] {
        let (fresh_tag, fresh_body) = get_with(&daemon, path, Some(wants_newest));
        assert!(fresh_body.contains("ses_staleness000000000000001"), "Cache-Control: {wants_newest} gets the newest commit");
        assert_ne!(fresh_tag.as_deref(), Some(tag.as_str()));
    }
    assert_eq!(sessions_counted(&get_with(&daemon, "/api/stats", Some("no-cache")).1), kept_sessions + 1);
    let (_, body) = get_with(&daemon, path, None);
    assert!(body.contains("ses_staleness000000000000001"), "the newer answer is the one kept from then on");
    assert!(daemon.terminate().success());
}

#[test]
fn the_http_workers_run_at_a_lower_priority_than_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), "workers = 3"));
    // A query, so that a worker has spawned a blocking thread for it.
    let _ = get_with(&daemon, "/api/sessions", Some("no-cache"));
    let tasks = std::path::PathBuf::from(format!("/proc/{}/task", daemon.child.id()));
    let mut threads = Vec::new();
    for task in std::fs::read_dir(&tasks).unwrap() {
        let task = task.unwrap().path();
        let (Ok(name), Ok(stat)) = (std::fs::read_to_string(task.join("comm")), std::fs::read_to_string(task.join("stat"))) else { continue };
        // The fields after the parenthesised name start with the state (field 3); nice is field 19.
        let nice: i64 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(16).unwrap().parse().unwrap();
        threads.push((name.trim().to_owned(), nice));
    }
    // The HTTP workers are actix arbiters (`actix-rt|system:0|arbiter:N`); the queries' blocking
    // threads are tokio's, spawned by them.
    let lowered: Vec<&(String, i64)> = threads.iter().filter(|(_, nice)| *nice == 10).collect();
    assert_eq!(
        lowered.iter().filter(|(name, _)| name.starts_with("actix-rt|system")).count(),
        3,
        "the three HTTP workers at nice 10 (http.worker_nice): {threads:?}"
    );
    assert!(
        lowered.iter().all(|(name, _)| name.starts_with("actix-rt|system") || name.starts_with("tokio-rt-worker")),
        "only HTTP threads are lowered: {threads:?}"
    );
    assert!(lowered.iter().any(|(name, _)| name.starts_with("tokio-rt-worker")), "a query's blocking thread inherits its worker's priority: {threads:?}");
    assert!(threads.iter().filter(|(name, _)| name == "ducktail").all(|(_, nice)| *nice == 0), "the pipeline keeps the priority it started with: {threads:?}");
    assert!(daemon.terminate().success());
}

#[test]
fn answers_go_out_gzipped_to_clients_that_accept_it_and_the_event_stream_never_does() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), ""));
    let get = |path: &str, gzip: bool| {
        let mut request = ureq::get(&format!("{}{path}", daemon.base_url));
        if gzip {
            request = request.set("Accept-Encoding", "gzip");
        }
        let response = request.call().unwrap();
        let encoding = response.header("content-encoding").unwrap_or("identity").to_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
        (encoding, body)
    };
    let gunzip = |body: &[u8]| {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut text).expect("a gzip body");
        text
    };
    // A kept answer (twice: computed, then reused), a route computed per request, an asset.
    for path in ["/api/sessions?limit=200", "/api/sessions?limit=200", "/api/stats", "/assets/app.js"] {
        let (plain_encoding, plain) = get(path, false);
        let (encoding, gzipped) = get(path, true);
        assert_eq!(plain_encoding, "identity", "{path}: a client that does not ask gets it as it is");
        assert_eq!(encoding, "gzip", "{path}");
        assert!(gzipped.len() < plain.len(), "{path}: {} bytes gzipped, {} as it is", gzipped.len(), plain.len());
        if path.starts_with("/api/sessions") {
            assert_eq!(gunzip(&gzipped), plain, "{path}: the same answer");
        } else {
            assert!(!gunzip(&gzipped).is_empty());
        }
    }
    let events = ureq::get(&format!("{}/api/events", daemon.base_url)).set("Accept-Encoding", "gzip").call().unwrap();
    assert_ne!(events.header("content-encoding"), Some("gzip"), "a compressor would hold events back");
    let mut first = [0u8; 13];
    std::io::Read::read_exact(&mut events.into_reader(), &mut first).unwrap();
    assert_eq!(&first, b"event: ready\n", "the stream's first frame arrives as it is");
    assert!(daemon.terminate().success());
}
