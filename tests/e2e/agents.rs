//! Claude Code and Codex CLI transcripts: the real binary on the shared fixtures (written by the
//! real CLIs), checked against totals an independent reader computes from the same files
//! (`tests/support/agent_totals.py`, which follows the de-duplication rule of `docs/schema.md`
//! and shares no code with the decoders).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::support::{assert_same_snapshot, copy_tree, ducktail, path_str, rows, shared_fixtures, snapshot, test_config, wait_until, Daemon};

fn claude_fixtures() -> PathBuf {
    shared_fixtures("claude-code/dot-claude")
}

fn codex_fixtures() -> PathBuf {
    shared_fixtures("codex/dot-codex")
}

/// Totals per agent, per session and per model, as the independent reader computes them.
fn reference_totals(claude: &Path, codex: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/agent_totals.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(["--claude", path_str(claude), "--codex", path_str(codex)])
        .output()
        .unwrap_or_else(|error| panic!("python3 {}: {error}; the transcript tests need Python 3", script.display()));
    assert!(output.status.success(), "{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    let mut totals: Value = serde_json::from_slice(&output.stdout).expect("the reference prints JSON");
    // An agent with no response has no row in the database either.
    totals.as_object_mut().unwrap().retain(|_, agent| agent["sessions"].as_object().is_some_and(|sessions| !sessions.is_empty()));
    totals
}

/// The same totals from the database's finish steps, through `query` (a read-only connection,
/// or a running daemon's SQL API, which holds the write lock).
fn totals_through(query: impl Fn(&str) -> Vec<Vec<String>>) -> Value {
    const SUMS: &str = "sum(e.tokens_input), sum(e.tokens_output), sum(e.tokens_reasoning), sum(e.tokens_cache_read), sum(e.tokens_cache_write), count(*)";
    let mut totals = Map::new();
    for (key, sql) in [
        ("sessions", format!("SELECT e.app, e.session_id, {SUMS} FROM step_events e WHERE e.event_type = 'finish' AND e.app <> 'opencode' GROUP BY ALL")),
        (
            "models",
            format!(
                "SELECT e.app, m.model_id, {SUMS} FROM step_events e JOIN messages m ON m.id = e.message_id
                 WHERE e.event_type = 'finish' AND e.app <> 'opencode' GROUP BY ALL"
            ),
        ),
    ] {
        for row in query(&sql) {
            let number = |at: usize| row[at].parse::<i64>().unwrap();
            let entry = json!({
                "input": number(2), "output": number(3), "reasoning": number(4),
                "cache_read": number(5), "cache_write": number(6), "responses": number(7),
            });
            let agent = totals.entry(row[0].clone()).or_insert_with(|| json!({"sessions": {}, "models": {}}));
            agent[key][&row[1]] = entry;
        }
    }
    Value::Object(totals)
}

fn stored_totals(db: &Path) -> Value {
    totals_through(|sql| rows(db, sql))
}

fn stored_totals_live(daemon: &Daemon) -> Value {
    totals_through(|sql| daemon.sql(sql))
}

fn index_agents(claude: &Path, codex: &Path, db: &Path) -> String {
    let missing = db.with_extension("no-opencode");
    let output = ducktail(&["index", "--opencode", path_str(&missing), "--claude", path_str(claude), "--codex", path_str(codex), "--db", path_str(db)], None);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "index failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// `ducktail run` following `claude` and `codex` (and no OpenCode) into `db`.
fn follow_agents(scratch: &Path, claude: &Path, codex: &Path, db: &Path, config: &Path) -> Daemon {
    let missing_opencode = scratch.join("no-opencode");
    Daemon::start_in(
        Path::new("."),
        &[
            "--opencode",
            path_str(&missing_opencode),
            "--claude",
            path_str(claude),
            "--codex",
            path_str(codex),
            "--db",
            path_str(db),
            "--config",
            path_str(config),
        ],
    )
}

#[test]
fn both_agents_index_to_the_independent_totals_per_session_and_model() {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("agents.duckdb");
    let stdout = index_agents(&claude_fixtures(), &codex_fixtures(), &db);
    assert!(stdout.contains("claude_code: 6 transcripts on disk, 6 read"), "{stdout}");
    assert!(stdout.contains("codex: 7 transcripts on disk, 7 read"), "{stdout}");
    let reference = reference_totals(&claude_fixtures(), &codex_fixtures());
    assert_eq!(stored_totals(&db), reference);
    // The figures the model server returned (its own log, not the files): 20 Claude responses
    // whose ids are in the files, 17 Codex ones; Codex's input excludes its cached tokens.
    assert_eq!(
        rows(&db, "SELECT app, count(*), sum(tokens_input), sum(tokens_cache_read), sum(tokens_output) FROM step_events GROUP BY 1 ORDER BY 1"),
        [["claude_code", "20", "153", "161946", "4761"], ["codex", "17", "107903", "149568", "3413"]]
    );

    // A sub-agent is a child session, nested under the call that started it, in both agents.
    let children = rows(
        &db,
        "SELECT t.child_session_id, t.parent_trace_id, p.tool_name FROM agent_traces t JOIN parts p ON p.id = t.trace_id
         WHERE t.parent_trace_id IS NOT NULL ORDER BY 1",
    );
    assert_eq!(
        children,
        [
            ["01a25054-0fa8-7421-a710-7224b4181b18", "root_01a25054-0e16-74c3-81b0-0abde61d0f0c", "spawn_agent"],
            ["f8ad02a3-71f3-4b78-8446-95f8b5e6b433/agent-ac9fe4291bc9adfcc", "root_f8ad02a3-71f3-4b78-8446-95f8b5e6b433", "Agent"],
        ]
    );
    // Tool outcomes: Claude's failed Edit, Codex's command that exited 1.
    assert_eq!(rows(&db, "SELECT app, tool_name FROM parts WHERE tool_status = 'error' ORDER BY 1"), [["claude_code", "Edit"], ["codex", "exec_command"]]);
    // A part completed by later lines (a result, the response it joins) keeps what the first
    // line said: its type, its raw block.
    assert_eq!(rows(&db, "SELECT count(*) FROM parts WHERE part_type = '' OR raw = '' OR raw IS NULL"), [["0"]]);
    assert_eq!(
        rows(&db, "SELECT part_type, count(*) FROM parts WHERE app = 'codex' AND part_type IN ('reasoning', 'text') AND message_id LIKE 'resp_%' GROUP BY 1 ORDER BY 1"),
        [["reasoning", "5"], ["text", "8"]]
    );
    // Every line no typed table holds is kept, and nothing was skipped.
    assert!(rows(&db, "SELECT count(*) FROM transcript_lines WHERE line_type = 'cost-state'")[0][0].parse::<i64>().unwrap() > 0);
    assert_eq!(rows(&db, "SELECT count(*) FROM file_index WHERE status <> 'indexed'"), [["0"]]);

    // Usage across agents, and an unchanged second run that reads nothing.
    let usage = ducktail(&["usage", "--db", path_str(&db), "--by", "app", "--json"], None);
    let usage: Value = serde_json::from_slice(&usage.stdout).expect("usage --json");
    let keys: Vec<&str> = usage["rows"].as_array().unwrap().iter().map(|row| row["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["claude_code", "codex"]);
    // The total counts every token once and says how much of the prompts the caches served.
    let (input, output, cache_read, cache_write) = (153 + 107_903, 4_761 + 3_413, 161_946 + 149_568, 104_178);
    assert_eq!(usage["total"]["tokens"].as_i64(), Some(input + output + cache_read + cache_write));
    let rate = usage["total"]["cache_hit_rate"].as_f64().unwrap();
    assert!((rate - cache_read as f64 / (input + cache_read + cache_write) as f64).abs() < 1e-12, "{rate}");
    // An agent as usage by agent names it (`claude_code/main`) finds that app's sessions.
    let by_agent = ducktail(&["usage", "--db", path_str(&db), "--by", "agent", "--json"], None);
    let by_agent: Value = serde_json::from_slice(&by_agent.stdout).expect("usage --by agent --json");
    for agent in ["claude_code/main", "codex/main"] {
        let row = by_agent["rows"].as_array().unwrap().iter().find(|row| row["key"] == agent).unwrap_or_else(|| panic!("no {agent}: {by_agent}"));
        let listed = ducktail(&["sessions", "--db", path_str(&db), "--agent", agent, "--limit", "500", "--json"], None);
        let listed: Value = serde_json::from_slice(&listed.stdout).expect("sessions --json");
        let sessions = listed["sessions"].as_array().unwrap();
        assert_eq!(sessions.len() as i64, row["sessions"].as_i64().unwrap(), "{agent}: {listed}");
        assert!(sessions.iter().all(|session| agent.starts_with(session["app"].as_str().unwrap())), "{agent}: {listed}");
    }
    let before = snapshot(&db);
    let again = index_agents(&claude_fixtures(), &codex_fixtures(), &db);
    assert!(again.contains("claude_code: 6 transcripts on disk, 0 read"), "{again}");
    assert_same_snapshot(&snapshot(&db), &before);
}

/// Writes `content` to `path` in pieces that end mid-line, waiting after each for `settled`.
fn append_in_pieces(path: &Path, content: &[u8], pieces: usize, settled: &mut dyn FnMut()) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let step = content.len().div_ceil(pieces.max(1)).max(1);
    for piece in content.chunks(step) {
        file.write_all(piece).unwrap();
        file.flush().unwrap();
        settled();
    }
}

#[test]
fn following_appends_half_lines_included_gives_what_a_fresh_index_gives() {
    let scratch = tempfile::tempdir().unwrap();
    let (claude, codex) = (scratch.path().join("claude"), scratch.path().join("codex"));
    std::fs::create_dir_all(claude.join("projects")).unwrap();
    std::fs::create_dir_all(codex.join("sessions")).unwrap();
    let db = scratch.path().join("live.duckdb");
    let config = test_config(scratch.path(), "");
    let daemon = follow_agents(scratch.path(), &claude, &codex, &db, &config);
    // Every fixture file, written the way the CLIs write them: appended, a piece at a time, the
    // pieces cut mid-line. Sub-agents' meta files come first, as Claude Code writes them.
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (from, to) in [(claude_fixtures(), claude.clone()), (codex_fixtures(), codex.clone())] {
        for entry in walkdir::WalkDir::new(&from).sort_by_file_name().into_iter().filter_map(Result::ok).filter(|entry| entry.file_type().is_file()) {
            let relative = entry.path().strip_prefix(&from).unwrap();
            files.push((entry.path().to_owned(), to.join(relative)));
        }
    }
    files.sort_by_key(|(from, _)| !from.to_string_lossy().ends_with(".meta.json"));
    let committed = |daemon: &Daemon| daemon.scalar("SELECT count(*) FROM file_index WHERE kind = 'transcript'");
    for (from, to) in &files {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let content = std::fs::read(from).unwrap();
        if !from.to_string_lossy().ends_with(".jsonl") {
            std::fs::write(to, &content).unwrap();
            continue;
        }
        let before = committed(&daemon);
        append_in_pieces(to, &content, 3, &mut || {});
        wait_until("the transcript committed", Duration::from_secs(30), || committed(&daemon) > before);
    }
    let reference = reference_totals(&claude, &codex);
    wait_until("the live totals reach the reference", Duration::from_secs(60), || stored_totals_live(&daemon) == reference);

    // The sub-agent is a child session in the trace API.
    let trace = daemon.get_json("/api/traces/f8ad02a3-71f3-4b78-8446-95f8b5e6b433");
    let text = trace.to_string();
    assert!(text.contains("f8ad02a3-71f3-4b78-8446-95f8b5e6b433/agent-ac9fe4291bc9adfcc"), "{text}");
    daemon.terminate();

    let fresh = scratch.path().join("fresh.duckdb");
    index_agents(&claude, &codex, &fresh);
    assert_same_snapshot(&snapshot(&db), &snapshot(&fresh));
}

/// The Claude fixture session a) (a plain Q&A), with its session id replaced.
fn claude_session_as(session_id: &str) -> String {
    let from = claude_fixtures().join("projects/-home-dev-code-notes-app/cdb4138e-b8f8-46f9-82fc-50856d6f5d25.jsonl");
    std::fs::read_to_string(from).unwrap().replace("cdb4138e-b8f8-46f9-82fc-50856d6f5d25", session_id)
}

#[test]
fn a_copied_or_forked_transcript_counts_each_response_once() {
    let scratch = tempfile::tempdir().unwrap();
    let claude = scratch.path().join("claude");
    copy_tree(&claude_fixtures(), &claude);
    let codex = scratch.path().join("codex");
    copy_tree(&codex_fixtures(), &codex);
    let reference = reference_totals(&claude, &codex);
    // A fork repeats the parent's responses (same message ids) under a new session id.
    let fork = claude.join("projects/-home-dev-code-notes-app/0f0f0f0f-0000-4000-8000-000000000001.jsonl");
    std::fs::write(&fork, claude_session_as("0f0f0f0f-0000-4000-8000-000000000001")).unwrap();
    // Codex moves old rollouts to archived_sessions/: the same thread under another path.
    let rollout = "rollout-2026-12-07T11-46-47-01a25053-ee8a-7571-9fcb-2d522f81326d.jsonl";
    std::fs::create_dir_all(codex.join("archived_sessions")).unwrap();
    std::fs::copy(codex.join("sessions/2026/12/07").join(rollout), codex.join("archived_sessions").join(rollout)).unwrap();
    let db = scratch.path().join("copies.duckdb");
    index_agents(&claude, &codex, &db);
    let stored = stored_totals(&db);
    // Each response counted once, with the usage the server returned: per model exactly the
    // independent totals, and no response more than the files hold.
    assert_eq!(stored["claude_code"]["models"], reference["claude_code"]["models"]);
    assert_eq!(stored["codex"], reference["codex"], "the archived copy of a rollout adds nothing");
    // The fork is a session of its own. A response held by two files belongs to one session:
    // together the fork and its parent hold exactly the parent's responses.
    assert_eq!(rows(&db, "SELECT count(*) FROM sessions WHERE id = '0f0f0f0f-0000-4000-8000-000000000001'"), [["1"]]);
    let responses = |session: &str| stored["claude_code"]["sessions"].get(session).map_or(0, |totals| totals["responses"].as_i64().unwrap());
    assert_eq!(
        responses("0f0f0f0f-0000-4000-8000-000000000001") + responses("cdb4138e-b8f8-46f9-82fc-50856d6f5d25"),
        reference["claude_code"]["sessions"]["cdb4138e-b8f8-46f9-82fc-50856d6f5d25"]["responses"].as_i64().unwrap()
    );
}

#[test]
fn a_truncated_or_replaced_transcript_is_read_again_and_a_bad_line_is_skipped_and_recorded() {
    let scratch = tempfile::tempdir().unwrap();
    let project = scratch.path().join("claude/projects/-home-dev-code-notes-app");
    std::fs::create_dir_all(&project).unwrap();
    let codex = scratch.path().join("codex");
    std::fs::create_dir_all(&codex).unwrap();
    let claude = scratch.path().join("claude");
    let db = scratch.path().join("rewrites.duckdb");
    let transcript = project.join("transcript.jsonl");
    let sessions = |db: &Path| rows(db, "SELECT id FROM sessions ORDER BY id").into_iter().map(|row| row[0].clone()).collect::<Vec<_>>();

    // A bad line in the middle: skipped, recorded with its byte offset, the rest read.
    let first = claude_session_as("aaaaaaaa-0000-4000-8000-000000000001");
    let cut = first.find('\n').unwrap() + 1;
    std::fs::write(&transcript, format!("{}{{not json\n{}", &first[..cut], &first[cut..])).unwrap();
    index_agents(&claude, &codex, &db);
    assert_eq!(sessions(&db), ["aaaaaaaa-0000-4000-8000-000000000001"]);
    let skipped = rows(&db, "SELECT file_path, status, error_message FROM file_index WHERE kind = 'line'");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0][0], format!("{}#byte={cut}", transcript.display()));
    assert!(skipped[0][2].starts_with("not JSON"), "{skipped:?}");
    let responses = rows(&db, "SELECT count(*) FROM step_events")[0][0].clone();
    assert_eq!(responses, "2");

    // Replaced (a new file under the same name): read from its start.
    let replacement = scratch.path().join("replacement.jsonl");
    std::fs::write(&replacement, claude_session_as("bbbbbbbb-0000-4000-8000-000000000002")).unwrap();
    std::fs::rename(&replacement, &transcript).unwrap();
    index_agents(&claude, &codex, &db);
    // The first session's rows stay (history outlives the file); the new one is there.
    assert_eq!(sessions(&db), ["aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"]);
    assert_eq!(rows(&db, "SELECT count(*) FROM file_index WHERE kind = 'line'"), [["0"]], "the replaced file's skipped line went with it");

    // Truncated in place and rewritten shorter (same inode): read from its start too.
    let third = claude_session_as("cccccccc-0000-4000-8000-000000000003");
    let shorter: String = third.lines().take(4).map(|line| format!("{line}\n")).collect();
    std::fs::OpenOptions::new().write(true).truncate(true).open(&transcript).unwrap().write_all(shorter.as_bytes()).unwrap();
    index_agents(&claude, &codex, &db);
    assert!(sessions(&db).contains(&"cccccccc-0000-4000-8000-000000000003".to_owned()), "{:?}", sessions(&db));
    let offset: Vec<Vec<String>> = rows(&db, "SELECT read_offset FROM transcript_files");
    assert_eq!(offset, [[shorter.len().to_string()]]);

    // A transcript that disappears keeps its rows; only its file_index row goes.
    std::fs::remove_file(&transcript).unwrap();
    index_agents(&claude, &codex, &db);
    assert_eq!(sessions(&db).len(), 3);
    assert_eq!(rows(&db, "SELECT count(*) FROM file_index WHERE source = 'claude_code'"), [["0"]]);
}

#[test]
fn agent_folders_are_optional_unless_named() {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("x.duckdb");
    // Named and missing: an error that names the folder and the flag, and no database.
    let missing = scratch.path().join("no-such-claude");
    let output = ducktail(
        &[
            "index",
            "--opencode",
            path_str(&crate::support::shared_opencode_fixtures().join("generated-opencode-1.1.65")),
            "--claude",
            path_str(&missing),
            "--db",
            path_str(&db),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("claude_code folder {} does not exist; pass --claude", missing.display())), "{stderr}");
    assert!(!db.exists());
    // Not named: the defaults that do not exist are reported, and OpenCode is indexed.
    let output = ducktail(
        &["index", "--opencode", path_str(&crate::support::shared_opencode_fixtures().join("generated-opencode-1.1.65")), "--db", path_str(&db)],
        None,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("claude_code: not found (looked in /nonexistent-ducktail-test-claude)"), "{stdout}");
    assert!(stdout.contains("codex: not found (looked in /nonexistent-ducktail-test-codex)"), "{stdout}");
}

/// One long session: the Claude fixture session b) repeated `copies` times, each copy's
/// responses under their own message ids (as a long session has).
fn long_claude_session(copies: usize) -> String {
    let one = std::fs::read_to_string(claude_fixtures().join("projects/-home-dev-code-calc-tool/df67d830-1a12-4069-aa2b-c35a6395bdd0.jsonl")).unwrap();
    (0..copies).map(|copy| one.replace("\"msg_01", &format!("\"msg_{copy:04}_"))).collect()
}

#[test]
fn a_kill_9_during_a_large_append_loses_nothing_and_counts_nothing_twice() {
    let scratch = tempfile::tempdir().unwrap();
    let claude = scratch.path().join("claude");
    let project = claude.join("projects/-home-dev-code-calc-tool");
    std::fs::create_dir_all(&project).unwrap();
    let codex = scratch.path().join("codex");
    std::fs::create_dir_all(&codex).unwrap();
    let db = scratch.path().join("killed.duckdb");
    // Small stretches: the append is committed in many transactions, and the kill lands between.
    let config = test_config(scratch.path(), "[sources.claude_code]\nstretch_bytes = 262144");
    let transcript = project.join("df67d830-1a12-4069-aa2b-c35a6395bdd0.jsonl");
    let content = long_claude_session(60);
    let daemon = follow_agents(scratch.path(), &claude, &codex, &db, &config);
    std::fs::write(&transcript, &content).unwrap();
    let read_offset = |daemon: &Daemon| daemon.sql("SELECT coalesce(max(read_offset), 0) FROM transcript_files")[0][0].parse::<u64>().unwrap();
    wait_until("part of the append committed", Duration::from_secs(30), || read_offset(&daemon) > 0);
    daemon.kill();

    let daemon = follow_agents(scratch.path(), &claude, &codex, &db, &config);
    wait_until("the rest read after the restart", Duration::from_secs(60), || read_offset(&daemon) == content.len() as u64);
    let reference = reference_totals(&claude, &codex);
    wait_until("the live totals reach the reference", Duration::from_secs(30), || stored_totals_live(&daemon) == reference);
    daemon.terminate();
    let fresh = scratch.path().join("fresh.duckdb");
    index_agents(&claude, &codex, &fresh);
    assert_same_snapshot(&snapshot(&db), &snapshot(&fresh));
}

#[test]
fn a_panicking_transcript_follower_is_restarted_and_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let claude = scratch.path().join("claude");
    std::fs::create_dir_all(claude.join("projects")).unwrap();
    let codex = scratch.path().join("codex");
    std::fs::create_dir_all(&codex).unwrap();
    let db = scratch.path().join("panics.duckdb");
    let config = test_config(scratch.path(), "[faults]\npanic_actor = \"transcript_follower\"");
    let daemon = follow_agents(scratch.path(), &claude, &codex, &db, &config);
    // The first look after readiness panics; the restarted follower reads the file anyway.
    copy_tree(&claude_fixtures(), &claude);
    // A line that is not JSON is skipped, and the dashboard's stats name it.
    let mut broken =
        std::fs::OpenOptions::new().append(true).open(claude.join("projects/-home-dev-code-notes-app/cdb4138e-b8f8-46f9-82fc-50856d6f5d25.jsonl")).unwrap();
    broken.write_all(b"{\"type\": \"assistant\", \"message\": {\n").unwrap();
    let reference = reference_totals(&claude, &codex);
    wait_until("the totals after the restart", Duration::from_secs(60), || stored_totals_live(&daemon) == reference);
    let metrics = daemon.metrics_text();
    assert!(metrics.contains("ducktail_actor_restarts_total{actor=\"transcript_follower\"} 1"), "{metrics}");
    wait_until("the skipped line listed in /api/stats", Duration::from_secs(30), || {
        daemon.get_json("/api/stats")["recent_errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|error| error["path"].as_str().is_some_and(|path| path.contains("cdb4138e-b8f8-46f9-82fc-50856d6f5d25.jsonl#byte=")))
        })
    });
}

#[test]
fn a_new_price_table_prices_stored_rows_without_reading_a_file_again() {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("prices.duckdb");
    let opencode = crate::support::shared_opencode_fixtures().join("generated-opencode-1.1.65");
    let index_with = |config: Option<&Path>| {
        let output = ducktail(
            &[
                "index",
                "--opencode",
                path_str(&opencode),
                "--claude",
                path_str(&claude_fixtures()),
                "--codex",
                path_str(&codex_fixtures()),
                "--db",
                path_str(&db),
            ],
            config,
        );
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    index_with(None);
    // The shipped table does not know the Codex fixture's model nor OpenCode's mock model.
    assert_eq!(rows(&db, "SELECT count(*) FROM step_events WHERE app = 'codex' AND cost IS NULL AND list_cost IS NULL"), [["17"]]);
    assert_eq!(rows(&db, "SELECT count(*) FROM step_events WHERE app = 'opencode' AND list_cost IS NULL AND event_type = 'finish'"), [["13"]]);
    // Their totals say what they leave out, rather than read as $0.00.
    let unpriced = |app: &str| {
        let output = ducktail(&["usage", "--by", "app", "--json", "--db", path_str(&db)], None);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let usage: Value = serde_json::from_slice(&output.stdout).unwrap();
        let row = usage["rows"].as_array().unwrap().iter().find(|row| row["key"] == app).cloned().unwrap_or_else(|| panic!("no {app} row: {usage}"));
        (row["unpriced_steps"].as_i64().unwrap(), usage["total"]["unpriced_steps"].as_i64().unwrap())
    };
    assert_eq!(unpriced("codex"), (17, 17));
    assert_eq!(rows(&db, "SELECT sum(unpriced_steps) FROM session_stats WHERE session_id IN (SELECT id FROM sessions WHERE app = 'codex')"), [["17"]]);

    let prices = scratch.path().join("prices.json");
    std::fs::write(
        &prices,
        r#"{"models": {"mock-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
                       "gpt-6.2-sol": {"input_cost_per_token": 2e-6, "output_cost_per_token": 1e-5, "cache_read_input_token_cost": 2e-7}}}"#,
    )
    .unwrap();
    let config = scratch.path().join("prices.toml");
    std::fs::write(&config, format!("[pricing]\nfile = \"{}\"\n", prices.display())).unwrap();
    let stdout = index_with(Some(&config));
    assert!(stdout.contains("codex: 7 transcripts on disk, 0 read"), "no file is read again: {stdout}");
    // Codex logs no cost: it is computed from the stored tokens, and its rollups follow.
    let expected =
        rows(&db, "SELECT round(sum(tokens_input * 2e-6 + tokens_output * 1e-5 + tokens_cache_read * 2e-7), 9) FROM step_events WHERE app = 'codex'");
    let codex = rows(&db, "SELECT round(sum(cost), 9), round(sum(list_cost), 9), min(cost_source) FROM step_events WHERE app = 'codex'");
    assert_eq!(codex, [[expected[0][0].clone(), expected[0][0].clone(), "computed".to_owned()]]);
    assert_eq!(rows(&db, "SELECT round(sum(cost), 9) FROM session_usage WHERE app = 'codex'"), expected);
    assert_eq!(unpriced("codex"), (0, 0), "priced now, nothing left out");
    // OpenCode logged its cost: kept, with the list price beside it (a model priced without
    // cache rates has its cache tokens priced as input).
    let opencode_costs = rows(
        &db,
        "SELECT count(*) FILTER (WHERE cost_source = 'logged'), round(sum(list_cost), 9),
                round(sum(tokens_input * 1e-6 + tokens_output * 2e-6 + (tokens_cache_read + tokens_cache_write) * 1e-6), 9)
         FROM step_events WHERE app = 'opencode' AND event_type = 'finish'",
    );
    assert_eq!(opencode_costs[0][0], "13");
    assert_eq!(opencode_costs[0][1], opencode_costs[0][2]);
    // Messages carry their steps' sums.
    assert_eq!(
        rows(&db, "SELECT round(sum(list_cost), 9) FROM messages WHERE app = 'opencode'"),
        rows(&db, "SELECT round(sum(list_cost), 9) FROM step_events WHERE app = 'opencode' AND event_type = 'finish'")
    );
}

#[test]
fn a_vanished_transcript_removes_its_session_only_when_configured() {
    let scratch = tempfile::tempdir().unwrap();
    let claude = scratch.path().join("claude");
    copy_tree(&claude_fixtures(), &claude);
    let codex = scratch.path().join("codex");
    std::fs::create_dir_all(&codex).unwrap();
    let db = scratch.path().join("removed.duckdb");
    let config = scratch.path().join("remove.toml");
    std::fs::write(&config, "[sources.claude_code]\non_delete = \"remove\"\n").unwrap();
    let index = || {
        let output = ducktail(
            &["index", "--opencode", path_str(&scratch.path().join("none")), "--claude", path_str(&claude), "--codex", path_str(&codex), "--db", path_str(&db)],
            Some(&config),
        );
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    index();
    let session = "cdb4138e-b8f8-46f9-82fc-50856d6f5d25";
    let held = |table: &str, column: &str| rows(&db, &format!("SELECT count(*) FROM {table} WHERE {column} = '{session}'"))[0][0].clone();
    assert_ne!(held("step_events", "session_id"), "0");
    std::fs::remove_file(claude.join("projects/-home-dev-code-notes-app").join(format!("{session}.jsonl"))).unwrap();
    index();
    for (table, column) in
        [("sessions", "id"), ("messages", "session_id"), ("parts", "session_id"), ("step_events", "session_id"), ("transcript_lines", "session_id")]
    {
        assert_eq!(held(table, column), "0", "{table} still holds the removed session");
    }
    assert_eq!(rows(&db, "SELECT count(*) FROM agent_traces WHERE child_session_id = 'cdb4138e-b8f8-46f9-82fc-50856d6f5d25'"), [["0"]]);
    // The other sessions are untouched.
    assert_eq!(rows(&db, "SELECT count(DISTINCT session_id) FROM step_events"), [["5"]]);
}

#[test]
fn with_no_flags_every_agent_in_the_home_folder_is_read_and_usage_shows_all_three() {
    let home = tempfile::tempdir().unwrap();
    copy_tree(&crate::support::shared_opencode_fixtures().join("generated-opencode-1.1.65"), &home.path().join(".local/share/opencode"));
    copy_tree(&claude_fixtures(), &home.path().join(".claude"));
    copy_tree(&codex_fixtures(), &home.path().join(".codex"));
    // A user's machine: only HOME, no ducktail flag, no agent variable.
    let run = |arguments: &[&str]| {
        let output = Command::new(crate::support::binary())
            .args(arguments)
            .current_dir(home.path())
            .env("HOME", home.path())
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("CODEX_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("RUST_LOG")
            .env("XDG_CONFIG_HOME", "/nonexistent-ducktail-test-config")
            .output()
            .expect("run ducktail");
        assert!(output.status.success(), "{arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let summary = run(&["index"]);
    assert!(summary.contains("claude_code: 6 transcripts on disk, 6 read"), "{summary}");
    assert!(summary.contains("codex: 7 transcripts on disk, 7 read"), "{summary}");
    let keys = |by: &str| -> Vec<String> {
        let usage: Value = serde_json::from_str(&run(&["usage", "--by", by, "--json"])).expect("usage --json");
        usage["rows"].as_array().unwrap().iter().map(|row| row["key"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(keys("app"), ["claude_code", "codex", "opencode"]);
    // OpenCode's agents keep their names; the other apps' are named with their app.
    assert_eq!(keys("agent"), ["build", "claude_code/general-purpose", "claude_code/main", "codex/main", "compaction", "general"]);
    // Two groupings: cost per day and model.
    let by_day_and_model = keys("day,model");
    assert!(by_day_and_model.contains(&"2026-12-07 · anthropic/claude-opus-5-5".to_owned()), "{by_day_and_model:?}");
    assert!(by_day_and_model.contains(&"2026-12-07 · mockai/gpt-6.2-sol".to_owned()), "{by_day_and_model:?}");
}

#[test]
fn a_rollout_codex_compressed_is_read_whole_and_counts_as_the_same_session() {
    let scratch = tempfile::tempdir().unwrap();
    let (claude, codex) = (scratch.path().join("claude"), scratch.path().join("codex"));
    std::fs::create_dir_all(&claude).unwrap();
    copy_tree(&codex_fixtures(), &codex);
    // Even with vanished rollouts' rows removed: the compressed copy still holds the session.
    let config = scratch.path().join("remove.toml");
    std::fs::write(&config, "[sources.codex]\non_delete = \"remove\"\n").unwrap();
    let index = |db: &Path| {
        let output = ducktail(
            &["index", "--opencode", path_str(&scratch.path().join("none")), "--claude", path_str(&claude), "--codex", path_str(&codex), "--db", path_str(db)],
            Some(&config),
        );
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let db = scratch.path().join("agents.duckdb");
    index(&db);
    let plain = stored_totals(&db);
    // Codex compresses finished rollouts in place: `….jsonl.zst` is written, then the plain file goes.
    let rollouts: Vec<PathBuf> = walkdir::WalkDir::new(&codex)
        .into_iter()
        .map(Result::unwrap)
        .map(|entry| entry.into_path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "jsonl"))
        .collect();
    assert!(rollouts.len() >= 2);
    for rollout in &rollouts {
        let compressed = zstd::stream::encode_all(std::fs::File::open(rollout).unwrap(), 3).unwrap();
        std::fs::write(PathBuf::from(format!("{}.zst", rollout.display())), compressed).unwrap();
        std::fs::remove_file(rollout).unwrap();
    }
    let summary = index(&db);
    assert!(summary.contains(&format!("{} read", rollouts.len())), "{summary}");
    assert_eq!(stored_totals(&db), plain, "the compressed rollouts are the same sessions: nothing lost, nothing counted twice");
    // And read from nothing, they give what the plain files gave.
    let fresh = scratch.path().join("fresh.duckdb");
    index(&fresh);
    assert_eq!(stored_totals(&fresh), plain);
}
