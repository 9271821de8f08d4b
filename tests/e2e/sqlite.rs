//! OpenCode ≥ 1.2's `opencode.db`: indexed exactly (against expectations computed from the
//! database itself with SQLite's own JSON functions), followed live while it is written the way
//! OpenCode writes it, and merged with a JSON tree holding the same records.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::Connection;

use crate::support::*;

fn sqlite_fixtures() -> PathBuf {
    shared_fixtures("opencode-sqlite")
}

/// A data folder holding a copy of `database` as `opencode.db`.
fn data_dir_with(database: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    std::fs::create_dir_all(&opencode).unwrap();
    std::fs::copy(database, opencode.join("opencode.db")).unwrap();
    (dir, opencode)
}

/// One integer (or real, rounded to 1e-9) computed by SQLite from the source database.
fn source_number(database: &Path, sql: &str) -> String {
    let connection = Connection::open(database).unwrap();
    let value: rusqlite::types::Value = connection.query_row(sql, [], |row| row.get(0)).unwrap();
    match value {
        rusqlite::types::Value::Integer(number) => number.to_string(),
        rusqlite::types::Value::Real(number) => format!("{number:.9}"),
        rusqlite::types::Value::Null => "NULL".to_owned(),
        other => panic!("{sql}: not a number: {other:?}"),
    }
}

fn ducktail_number(db: &Path, sql: &str) -> String {
    let text = rows(db, sql)[0][0].clone();
    match text.parse::<i64>() {
        Ok(integer) => integer.to_string(),
        Err(_) => text.parse::<f64>().map(|real| format!("{real:.9}")).unwrap_or(text),
    }
}

#[test]
fn the_fixture_database_indexes_exactly() {
    let (dir, opencode) = data_dir_with(&sqlite_fixtures().join("opencode.db"));
    let source = opencode.join("opencode.db");
    let db = dir.path().join("ducktail.duckdb");
    let summary = index(&opencode, &db);
    assert!(summary.contains("opencode.db: 158 records written"), "{summary}");
    // Each pair: what SQLite computes from OpenCode's rows, what ducktail's tables must say.
    let checks = [
        ("SELECT count(*) FROM session", "SELECT count(*) FROM sessions"),
        ("SELECT count(*) FROM session WHERE parent_id IS NOT NULL", "SELECT count(*) FROM sessions WHERE parent_id IS NOT NULL"),
        ("SELECT count(*) FROM message", "SELECT count(*) FROM messages"),
        ("SELECT count(*) FROM message WHERE json_extract(data, '$.role') = 'assistant'", "SELECT count(*) FROM messages WHERE role = 'assistant'"),
        ("SELECT count(*) FROM part", "SELECT count(*) FROM parts"),
        ("SELECT count(*) FROM part WHERE json_extract(data, '$.type') = 'tool'", "SELECT count(*) FROM parts WHERE part_type = 'tool'"),
        ("SELECT count(*) FROM part WHERE json_extract(data, '$.type') = 'step-finish'", "SELECT count(*) FROM step_events WHERE event_type = 'finish'"),
        ("SELECT count(*) FROM part WHERE json_extract(data, '$.type') = 'step-start'", "SELECT count(*) FROM step_events WHERE event_type = 'start'"),
        (
            "SELECT sum(json_extract(data, '$.cost')) FROM part WHERE json_extract(data, '$.type') = 'step-finish'",
            "SELECT sum(cost) FROM step_events WHERE event_type = 'finish'",
        ),
        (
            "SELECT sum(json_extract(data, '$.tokens.input')) FROM part WHERE json_extract(data, '$.type') = 'step-finish'",
            "SELECT sum(tokens_input) FROM step_events WHERE event_type = 'finish'",
        ),
        (
            "SELECT sum(json_extract(data, '$.tokens.cache.read')) FROM part WHERE json_extract(data, '$.type') = 'step-finish'",
            "SELECT sum(tokens_cache_read) FROM step_events WHERE event_type = 'finish'",
        ),
        ("SELECT sum(json_extract(data, '$.cost')) FROM message", "SELECT sum(cost) FROM messages"),
        (
            "SELECT count(*) FROM part WHERE json_extract(data, '$.tool') = 'task' AND json_extract(data, '$.state.metadata.sessionId') IS NOT NULL",
            "SELECT count(*) FROM parts WHERE tool_name = 'task' AND child_session_id IS NOT NULL",
        ),
        ("SELECT count(*) FROM todo", "SELECT count(*) FROM todos"),
        ("SELECT count(*) FROM project", "SELECT count(*) FROM projects"),
        // One root trace per root session, one per task call that created a session.
        (
            "SELECT (SELECT count(*) FROM session WHERE parent_id IS NULL)
                  + (SELECT count(*) FROM part WHERE json_extract(data, '$.tool') = 'task' AND json_extract(data, '$.state.metadata.sessionId') IS NOT NULL)",
            "SELECT count(*) FROM agent_traces",
        ),
        // A root session's own usage, as OpenCode itself totals it in its columns.
        ("SELECT sum(cost) FROM session WHERE parent_id IS NULL", "SELECT sum(cost) FROM agent_traces WHERE parent_trace_id IS NULL"),
        ("SELECT sum(tokens_input) FROM session WHERE parent_id IS NULL", "SELECT sum(tokens_input) FROM agent_traces WHERE parent_trace_id IS NULL"),
    ];
    for (expected_sql, actual_sql) in checks {
        assert_eq!(ducktail_number(&db, actual_sql), source_number(&source, expected_sql), "{actual_sql}  vs  {expected_sql}");
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM messages WHERE source <> 'opencode_sqlite'"), 0);
    assert_eq!(scalar(&db, "SELECT count(*) FROM file_index"), 0, "no row was rejected");
    let titles = rows(&db, "SELECT id || ' ' || title FROM sessions ORDER BY id");
    let connection = Connection::open(&source).unwrap();
    let mut statement = connection.prepare("SELECT id || ' ' || title FROM session ORDER BY id").unwrap();
    let expected: Vec<Vec<String>> = statement.query_map([], |row| Ok(vec![row.get::<_, String>(0)?])).unwrap().map(Result::unwrap).collect();
    assert_eq!(titles, expected);

    // Indexing again changes nothing.
    let before = snapshot(&db);
    let again = index(&opencode, &db);
    assert!(
        !again.contains("opencode.db:") || again.contains("opencode.db: 7 records written"),
        "only sessions, projects and todo lists are compared again: {again}"
    );
    assert_same_snapshot(&snapshot(&db), &before);
}

/// Writes to the copy the way OpenCode does: one IMMEDIATE transaction per change, WAL mode,
/// foreign keys on (deletes cascade).
fn opencode_writer(database: &Path) -> Connection {
    let connection = Connection::open(database).unwrap();
    connection.pragma_update(None, "journal_mode", "WAL").unwrap();
    connection.pragma_update(None, "foreign_keys", true).unwrap();
    connection.busy_timeout(Duration::from_secs(5)).unwrap();
    connection
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn a_live_database_is_followed_and_ends_equal_to_a_fresh_index() {
    let (dir, opencode) = data_dir_with(&sqlite_fixtures().join("opencode.db"));
    let source = opencode.join("opencode.db");
    let db = dir.path().join("live.duckdb");
    let config = test_config(dir.path(), "");
    let daemon = Daemon::start(&opencode, &db, &config);
    assert_eq!(daemon.scalar("SELECT count(*) FROM parts"), 110);
    let stats = daemon.get_json("/api/stats");
    assert_eq!(stats["opencode_db"]["state"], "following", "{stats}");

    let writer = opencode_writer(&source);
    let session = "ses_dfe591e98ffeKXu8zl55KXl6Zb";
    let project: String = writer.query_row("SELECT project_id FROM session WHERE id = ?", [session], |row| row.get(0)).unwrap();
    let deadline = Duration::from_secs(20);

    // A new session with a message and a step-finish part.
    let t = now_ms();
    writer
        .execute_batch(&format!(
            "BEGIN IMMEDIATE;
             INSERT INTO session (id, project_id, slug, directory, title, version, time_created, time_updated)
                 VALUES ('ses_live', '{project}', 'live-one', '/home/dev/work', 'Live session', '1.18.33', {t}, {t});
             INSERT INTO message (id, session_id, time_created, time_updated, data)
                 VALUES ('msg_live', 'ses_live', {t}, {t}, '{{\"role\":\"assistant\",\"agent\":\"build\",\"cost\":0.5,\"time\":{{\"created\":{t}}}}}');
             INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
                 VALUES ('prt_live', 'msg_live', 'ses_live', {t}, {t},
                         '{{\"type\":\"step-finish\",\"reason\":\"stop\",\"cost\":0.5,\"tokens\":{{\"input\":100,\"output\":7,\"reasoning\":0,\"cache\":{{\"read\":0,\"write\":0}}}}}}');
             COMMIT;"
        ))
        .unwrap();
    wait_until("the new part", deadline, || daemon.scalar("SELECT count(*) FROM step_events WHERE id = 'prt_live'") == 1);
    wait_until("the new session's trace", deadline, || daemon.scalar("SELECT count(*) FROM agent_traces WHERE child_session_id = 'ses_live'") == 1);

    // The part is updated in place (time_updated bumped), the session renamed without a bump.
    writer
        .execute_batch(&format!(
            "UPDATE part SET data = json_set(data, '$.cost', 0.75), time_updated = {} WHERE id = 'prt_live';
             UPDATE session SET title = 'Renamed live session' WHERE id = 'ses_live';",
            t + 1
        ))
        .unwrap();
    wait_until("the updated cost", deadline, || daemon.sql("SELECT cost FROM step_events WHERE id = 'prt_live'") == vec![vec!["0.75".to_owned()]]);
    wait_until("the new title", deadline, || daemon.scalar("SELECT count(*) FROM sessions WHERE title = 'Renamed live session'") == 1);

    // A revert deletes the last message of the root session (parts cascade), logged as an event;
    // the todo list is rewritten.
    let victim: String = writer.query_row("SELECT id FROM message WHERE session_id = ? ORDER BY id DESC LIMIT 1", [session], |row| row.get(0)).unwrap();
    writer
        .execute_batch(&format!(
            "BEGIN IMMEDIATE;
             DELETE FROM message WHERE id = '{victim}';
             UPDATE event_sequence SET seq = seq + 1 WHERE aggregate_id = '{session}';
             INSERT INTO event (id, aggregate_id, seq, type, data)
                 SELECT 'evt_live_removed', '{session}', seq, 'message.removed.1', '{{}}' FROM event_sequence WHERE aggregate_id = '{session}';
             DELETE FROM todo WHERE session_id = '{session}';
             INSERT INTO todo (session_id, content, status, priority, position, time_created, time_updated)
                 VALUES ('{session}', 'ship it', 'in_progress', 'high', 0, {t}, {t});
             COMMIT;"
        ))
        .unwrap();
    wait_until("the reverted message is gone", deadline, || {
        daemon.scalar(&format!("SELECT count(*) FROM parts WHERE message_id = '{victim}'")) == 0
            && daemon.scalar(&format!("SELECT count(*) FROM messages WHERE id = '{victim}'")) == 0
    });
    wait_until("the rewritten todo list", deadline, || daemon.sql("SELECT content FROM todos") == vec![vec!["ship it".to_owned()]]);

    // A deleted session takes everything with it.
    writer.execute_batch("DELETE FROM session WHERE id = 'ses_live'; DELETE FROM event_sequence WHERE aggregate_id = 'ses_live';").unwrap();
    wait_until("the deleted session is gone", deadline, || {
        daemon.scalar("SELECT count(*) FROM sessions WHERE id = 'ses_live'") + daemon.scalar("SELECT count(*) FROM parts WHERE session_id = 'ses_live'") == 0
    });
    wait_until("its trace is gone", deadline, || daemon.scalar("SELECT count(*) FROM agent_traces WHERE child_session_id = 'ses_live'") == 0);

    assert!(daemon.terminate().success());
    drop(writer);
    assert_equals_fresh_index(&opencode, &db, dir.path());
}

#[test]
fn a_database_created_after_start_is_picked_up_and_a_corrupt_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    std::fs::create_dir_all(opencode.join("storage")).unwrap();
    let db = dir.path().join("late.duckdb");
    let config = test_config(dir.path(), "[sources.opencode]\ndatabase_poll_interval = \"100ms\"");
    let daemon = Daemon::start(&opencode, &db, &config);
    assert_eq!(daemon.get_json("/api/stats")["opencode_db"]["state"], "waiting");

    // A corrupt file: reported through health with the path, the daemon stays up.
    std::fs::write(opencode.join("opencode.db"), vec![0x5a_u8; 16_384]).unwrap();
    wait_until("health reports the unreadable database", Duration::from_secs(20), || daemon.get_status("/health/detailed") == Some(503));
    let stats = daemon.get_json("/api/stats");
    assert_eq!(stats["opencode_db"]["state"], "failing", "{stats}");
    assert!(stats["opencode_db"]["error"].as_str().unwrap().contains("opencode.db"), "{stats}");

    // OpenCode replaces it with a real database: read after the backoff, health recovers.
    let staged = dir.path().join("staged.db");
    std::fs::copy(sqlite_fixtures().join("opencode.db"), &staged).unwrap();
    std::fs::rename(&staged, opencode.join("opencode.db")).unwrap();
    wait_until("the replaced database is read", Duration::from_secs(60), || daemon.scalar("SELECT count(*) FROM parts") == 110);
    wait_until("health recovers", Duration::from_secs(20), || daemon.get_json("/api/stats")["opencode_db"]["state"] == "following");
    assert!(daemon.terminate().success());
}

/// Sets a file's modification time.
fn set_mtime(path: &Path, at: SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(at).unwrap();
}

#[test]
fn records_in_both_the_json_tree_and_the_database_are_one_row_each_newest_winning() {
    // OpenCode 1.15.13 imported this JSON tree into this database: the same 5 sessions, 23
    // messages and 64 parts are in both.
    let (dir, opencode) = data_dir_with(&sqlite_fixtures().join("import-test/imported-by-1.15.13.db"));
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65/storage"), &opencode.join("storage"));
    let json_only = dir.path().join("json-only");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65/storage"), &json_only.join("storage"));
    let json_db = dir.path().join("json.duckdb");
    index(&json_only, &json_db);

    // The files are older than the import: every shared record comes from the database.
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for entry in walkdir::WalkDir::new(opencode.join("storage")).into_iter().map(Result::unwrap).filter(|entry| entry.file_type().is_file()) {
        set_mtime(entry.path(), long_ago);
    }
    let db = dir.path().join("both.duckdb");
    index(&opencode, &db);
    for table in ["sessions", "messages", "parts"] {
        assert_eq!(
            scalar(&db, &format!("SELECT count(*) FROM {table}")),
            scalar(&db, &format!("SELECT count(DISTINCT id) FROM {table}")),
            "{table}: one row per id"
        );
        assert_eq!(
            scalar(&db, &format!("SELECT count(*) FROM {table}")),
            scalar(&json_db, &format!("SELECT count(*) FROM {table}")),
            "{table}: the same records as the JSON tree alone"
        );
        assert_eq!(scalar(&db, &format!("SELECT count(*) FROM {table} WHERE source = 'opencode_json'")), 0, "{table}: the database's copies are newer");
    }
    assert_eq!(scalar(&db, "SELECT count(*) FROM step_events"), scalar(&json_db, "SELECT count(*) FROM step_events"));
    assert_eq!(
        rows(&db, "SELECT round(sum(cost), 9), sum(tokens_input), sum(tokens_output) FROM agent_traces"),
        rows(&json_db, "SELECT round(sum(cost), 9), sum(tokens_input), sum(tokens_output) FROM agent_traces"),
        "usage is counted once"
    );

    // One part file is written after the import: that record comes from the JSON tree.
    let part =
        walkdir::WalkDir::new(opencode.join("storage/part")).into_iter().map(Result::unwrap).find(|entry| entry.file_type().is_file()).unwrap().into_path();
    let part_id = part.file_stem().unwrap().to_str().unwrap().to_owned();
    set_mtime(&part, SystemTime::now() + Duration::from_secs(86_400));
    index(&opencode, &db);
    assert_eq!(rows(&db, &format!("SELECT source FROM parts WHERE id = '{part_id}'")), vec![vec!["opencode_json".to_owned()]]);
    assert_eq!(scalar(&db, "SELECT count(*) FROM parts WHERE source = 'opencode_json'"), 1);
    assert_eq!(scalar(&db, "SELECT count(*) FROM parts"), scalar(&json_db, "SELECT count(*) FROM parts"));

    // OpenCode deletes a part the JSON tree still holds: the file's copy becomes the record, as a
    // fresh index of the two sources would have it.
    let deleted: String = rows(&db, "SELECT id FROM parts WHERE source = 'opencode_sqlite' ORDER BY id LIMIT 1")[0][0].clone();
    Connection::open(opencode.join("opencode.db")).unwrap().execute("DELETE FROM part WHERE id = ?", [&deleted]).unwrap();
    index(&opencode, &db);
    assert_eq!(rows(&db, &format!("SELECT source FROM parts WHERE id = '{deleted}'")), vec![vec!["opencode_json".to_owned()]]);
    assert_eq!(scalar(&db, "SELECT count(*) FROM parts"), scalar(&json_db, "SELECT count(*) FROM parts"));

    // A fresh index of the same two sources gives the same database.
    let fresh = dir.path().join("fresh.duckdb");
    index(&opencode, &fresh);
    assert_same_snapshot(&snapshot(&db), &snapshot(&fresh));
}

#[test]
fn a_panicking_database_follower_is_restarted_and_loses_nothing() {
    let (dir, opencode) = data_dir_with(&sqlite_fixtures().join("opencode.db"));
    let db = dir.path().join("restart.duckdb");
    let config = test_config(dir.path(), "[faults]\npanic_actor = \"database_follower\"\n[sources.opencode]\ndatabase_poll_interval = \"50ms\"");
    let daemon = Daemon::start(&opencode, &db, &config);
    wait_until("the follower panicked once and was replaced", Duration::from_secs(20), || {
        daemon.get_json("/api/stats")["actor_restarts"].as_u64().unwrap_or(0) >= 1
    });
    let writer = opencode_writer(&opencode.join("opencode.db"));
    let t = now_ms();
    writer
        .execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
             SELECT 'prt_after_restart', id, session_id, ?1, ?1, '{\"type\":\"text\",\"text\":\"still here\"}' FROM message LIMIT 1",
            [t],
        )
        .unwrap();
    wait_until("the part written after the restart", Duration::from_secs(20), || {
        daemon.scalar("SELECT count(*) FROM parts WHERE id = 'prt_after_restart'") == 1
    });
    assert!(daemon.terminate().success());
    drop(writer);
    assert_equals_fresh_index(&opencode, &db, dir.path());
}

#[test]
fn an_older_schema_and_its_upgrade_read_alike() {
    // The same data in the schema OpenCode 1.15.13 wrote and after 1.18.33 migrated it in place
    // (columns appended in another order, __drizzle_migrations left behind).
    let usage = |database: &str| {
        let (dir, opencode) = data_dir_with(&sqlite_fixtures().join("import-test").join(database));
        let db = dir.path().join("db.duckdb");
        index(&opencode, &db);
        rows(
            &db,
            "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM messages), (SELECT count(*) FROM parts),
                    (SELECT count(*) FROM step_events), (SELECT round(sum(cost), 9) FROM step_events WHERE event_type = 'finish'),
                    (SELECT sum(tokens_input) FROM step_events WHERE event_type = 'finish'), (SELECT count(*) FROM agent_traces)",
        )
    };
    let imported = usage("imported-by-1.15.13.db");
    assert_eq!(&imported[0][..3], &["5".to_owned(), "23".to_owned(), "64".to_owned()]);
    assert_eq!(usage("upgraded-1.15.13-to-1.18.33.db"), imported);
}
