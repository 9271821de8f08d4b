//! Store tests on an in-memory database: replacement by key, removal, moves, traces.

use std::collections::BTreeSet;
use std::path::PathBuf;

use duckdb::types::Value;
use ducktail_model::*;

use crate::*;

fn file(path: &str, records: Records) -> DecodedFile {
    DecodedFile {
        path: PathBuf::from(path),
        kind: records.kind(),
        stamp: FileStamp { mtime_ns: 1, size: 1 },
        path_record_id: records.record_id().to_owned(),
        outcome: FileOutcome::Decoded(records),
    }
}

fn session(id: &str, parent: Option<&str>) -> Records {
    Records::Session(SessionRecord {
        id: id.into(),
        project_id: Some("p".into()),
        parent_id: parent.map(Into::into),
        created_at: Some(1_700_000_000_000),
        ..Default::default()
    })
}

fn message(id: &str, session: &str, agent: &str) -> Records {
    Records::Message(MessageRecord {
        id: id.into(),
        session_id: session.into(),
        role: Some("assistant".into()),
        agent: Some(agent.into()),
        created_at: Some(1_700_000_000_100),
        completed_at: Some(1_700_000_000_200),
        ..Default::default()
    })
}

fn finish(id: &str, session: &str, message: &str, input: i64, cost: f64) -> Records {
    Records::Part {
        part: PartRecord { id: id.into(), session_id: session.into(), message_id: message.into(), part_type: "step-finish".into(), ..Default::default() },
        step: Some(StepEvent {
            id: id.into(),
            session_id: session.into(),
            message_id: message.into(),
            event_type: "finish",
            cost: Some(cost),
            tokens: Tokens { input, output: 1, ..Default::default() },
            ..Default::default()
        }),
        file_operation: None,
    }
}

fn task(id: &str, session: &str, message: &str, child: &str) -> Records {
    let Records::Part { mut part, .. } = tool(id, session, message, "task", "completed", 0) else { unreachable!() };
    part.child_session_id = Some(child.into());
    part.subagent_type = Some("general".into());
    (part.started_at, part.ended_at) = (Some(1_700_000_000_150), None);
    Records::Part { part, step: None, file_operation: None }
}

fn batch(files: Vec<DecodedFile>) -> WriteBatch {
    WriteBatch { source: "opencode_json", files, on_delete: OnDelete::Remove, ..Default::default() }
}

fn count(store: &Store, sql: &str) -> i64 {
    let (_, rows) = store.reader().unwrap().query(sql).unwrap();
    match rows[0][0] {
        Value::BigInt(n) => n,
        Value::HugeInt(n) => n as i64,
        Value::Int(n) => n.into(),
        ref other => panic!("not a count: {other:?}"),
    }
}

#[test]
fn migrations_apply_once_and_reopen_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/db.duckdb");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    let latest = crate::schema::MIGRATIONS.last().unwrap().version;
    assert_eq!(store.schema_version().unwrap(), latest);
    drop(store);
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM schema_migrations"), i64::from(latest));
}

#[test]
fn a_new_database_appears_whole_and_a_killed_creation_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.duckdb");
    // What a creation killed midway leaves: a half-written file beside the final path.
    std::fs::write(dir.path().join("db.duckdb.creating"), b"DUCK").unwrap();
    std::fs::write(dir.path().join("db.duckdb.creating.wal"), b"half").unwrap();
    std::fs::write(dir.path().join("db.duckdb.wal"), b"orphan").unwrap();
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(store.schema_version().unwrap(), crate::schema::MIGRATIONS.last().unwrap().version);
    drop(store);
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["db.duckdb"], "nothing of the creation is left");
    // The database the rename put in place opens as any other.
    assert_eq!(count(&Store::open(&path, &StoreOptions::default()).unwrap(), "SELECT count(*) FROM sessions"), 0);
}

#[test]
fn read_only_a_database_of_another_schema_is_refused_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let latest = crate::schema::MIGRATIONS.last().unwrap().version;
    let with_version = |name: &str, version: Option<i32>| {
        let path = dir.path().join(name);
        let connection = duckdb::Connection::open(&path).unwrap();
        if let Some(version) = version {
            connection.execute_batch(&format!("CREATE TABLE schema_migrations (version INTEGER, name VARCHAR, applied_at TIMESTAMPTZ); INSERT INTO schema_migrations VALUES ({version}, 'x', now())")).unwrap();
        }
        drop(connection);
        crate::Reader::open_read_only(&path).err().map(|error| error.to_string())
    };
    let older = with_version("older.duckdb", Some(latest - 1)).expect("an older schema is refused");
    assert!(older.contains("ducktail index --db") && older.contains(&format!("({latest})")), "{older}");
    let newer = with_version("newer.duckdb", Some(latest + 1)).expect("a newer schema is refused");
    assert!(newer.contains("upgrade ducktail"), "{newer}");
    let other = with_version("other.duckdb", None).expect("a database without the table is refused");
    assert!(other.contains("not a ducktail database"), "{other}");
    let path = dir.path().join("current.duckdb");
    drop(Store::open(&path, &StoreOptions::default()).unwrap());
    crate::Reader::open_read_only(&path).expect("the current schema reads");
}

#[test]
fn rewriting_a_record_replaces_it_and_steps_follow() {
    let mut store = Store::open_in_memory().unwrap();
    store.write_batch(&batch(vec![file("/s/part/m/a.json", finish("prt_a", "ses_1", "msg_1", 10, 0.5))])).unwrap();
    store.write_batch(&batch(vec![file("/s/part/m/a.json", finish("prt_a", "ses_1", "msg_1", 20, 0.7))])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM parts"), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM step_events"), 1);
    assert_eq!(count(&store, "SELECT sum(tokens_input)::BIGINT FROM step_events"), 20);
    assert_eq!(count(&store, "SELECT count(*) FROM file_index WHERE status = 'indexed'"), 1);
}

#[test]
fn a_moved_session_stays_one_row_and_survives_removal_of_its_old_path() {
    let mut store = Store::open_in_memory().unwrap();
    store.write_batch(&batch(vec![file("/s/session/global/ses_1.json", session("ses_1", None))])).unwrap();
    let mut moved = batch(vec![file("/s/session/abc/ses_1.json", session("ses_1", None))]);
    store.write_batch(&moved).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM sessions"), 1);
    moved.files.clear();
    moved.removed.push(RemovedFile { path: "/s/session/global/ses_1.json".into() });
    store.write_batch(&moved).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM sessions"), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM file_index"), 1);
    moved.removed = vec![RemovedFile { path: "/s/session/abc/ses_1.json".into() }];
    let report = store.write_batch(&moved).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM sessions"), 0);
    assert!(report.touched_sessions.contains("ses_1"));
}

#[test]
fn keep_policy_keeps_records_of_deleted_files() {
    let mut store = Store::open_in_memory().unwrap();
    store.write_batch(&batch(vec![file("/s/message/ses_1/msg_1.json", message("msg_1", "ses_1", "build"))])).unwrap();
    let mut removal = batch(Vec::new());
    removal.on_delete = OnDelete::Keep;
    removal.removed.push(RemovedFile { path: "/s/message/ses_1/msg_1.json".into() });
    store.write_batch(&removal).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM messages"), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM file_index"), 0);
}

/// A part file that is empty, as the decoder reports it: a failure.
fn empty_part_file(id: &str) -> DecodedFile {
    DecodedFile {
        path: PathBuf::from(format!("/s/part/m/{id}.json")),
        kind: FileKind::Part,
        stamp: FileStamp { mtime_ns: 5, size: 0 },
        path_record_id: id.into(),
        outcome: FileOutcome::Failed("empty file (0 bytes)".into()),
    }
}

#[test]
fn failures_count_attempts_and_success_resets_them() {
    let mut store = Store::open_in_memory().unwrap();
    let failed = empty_part_file("prt_x");
    store.write_batch(&batch(vec![failed.clone()])).unwrap();
    store.write_batch(&batch(vec![failed])).unwrap();
    assert_eq!(count(&store, "SELECT attempts::BIGINT FROM file_index"), 2);
    let status = store.reader().unwrap().status(5).unwrap();
    assert_eq!(status.recent_errors.len(), 1);
    assert_eq!(status.recent_errors[0].message, "empty file (0 bytes)");
    store.write_batch(&batch(vec![file("/s/part/m/prt_x.json", finish("prt_x", "ses_1", "msg_1", 1, 0.1))])).unwrap();
    assert_eq!(count(&store, "SELECT attempts::BIGINT FROM file_index"), 0);
}

#[test]
fn status_counts_every_table_and_the_files_by_status() {
    let mut store = Store::open_in_memory().unwrap();
    let empty = store.reader().unwrap().status(0).unwrap();
    assert!(empty.tables.iter().all(|count| count.rows == 0 || count.table == "schema_migrations"), "{:?}", empty.tables);
    assert_eq!((empty.files_by_status.len(), empty.last_indexed_at), (0, None));
    let failed = empty_part_file("prt_y");
    store.write_batch(&batch(vec![file("/s/part/m/prt_x.json", finish("prt_x", "ses_1", "msg_1", 1, 0.1)), failed])).unwrap();
    let status = store.reader().unwrap().status(0).unwrap();
    let rows = |table: &str| status.tables.iter().find(|count| count.table == table).map(|count| count.rows);
    assert_eq!(status.tables.len(), crate::COUNTED_TABLES.len());
    assert_eq!((rows("parts"), rows("file_index"), rows("sessions")), (Some(1), Some(2), Some(0)));
    assert_eq!(status.files_by_status, [("error".to_owned(), 1), ("indexed".to_owned(), 1)]);
    assert!(status.last_indexed_at.is_some());
    assert!(status.recent_errors.is_empty(), "none asked for");
}

#[test]
fn a_reader_polling_status_sees_the_newest_indexed_time_after_writes_and_removals() {
    let mut store = Store::open_in_memory().unwrap();
    let newest_in_table = |store: &Store| {
        let (_, rows) = store.reader().unwrap().query("SELECT strftime(max(indexed_at)::TIMESTAMP, '%Y-%m-%dT%H:%M:%S.%fZ') FROM file_index").unwrap();
        match &rows[0][0] {
            Value::Text(text) => Some(text.clone()),
            _ => None,
        }
    };
    // One reader throughout, as a pooled one serves a dashboard: each look starts from the
    // newest time the previous one saw.
    let reader = store.reader().unwrap();
    store.write_batch(&batch(vec![file("/s/part/m/prt_a.json", finish("prt_a", "ses_1", "msg_1", 1, 0.1))])).unwrap();
    let first = reader.status(0).unwrap().last_indexed_at;
    assert_eq!(first, newest_in_table(&store));
    store.write_batch(&batch(vec![file("/s/part/m/prt_b.json", finish("prt_b", "ses_1", "msg_1", 1, 0.1))])).unwrap();
    let second = reader.status(0).unwrap();
    assert_eq!(second.last_indexed_at, newest_in_table(&store));
    assert!(second.last_indexed_at > first, "{second:?} after {first:?}");
    assert_eq!(second.files_by_status, [("indexed".to_owned(), 2)]);
    // The newest row goes: nothing is left at or after the floor, and the look reads it whole.
    let removal =
        WriteBatch { source: JSON, removed: vec![RemovedFile { path: "/s/part/m/prt_b.json".into() }], on_delete: OnDelete::Remove, ..Default::default() };
    store.write_batch(&removal).unwrap();
    let third = reader.status(0).unwrap();
    assert_eq!(third.last_indexed_at, newest_in_table(&store));
    assert_eq!(third.last_indexed_at, first);
    assert_eq!(third.files_by_status, [("indexed".to_owned(), 1)]);
    store
        .write_batch(&WriteBatch {
            source: JSON,
            removed: vec![RemovedFile { path: "/s/part/m/prt_a.json".into() }],
            on_delete: OnDelete::Remove,
            ..Default::default()
        })
        .unwrap();
    let empty = reader.status(0).unwrap();
    assert_eq!((empty.last_indexed_at, empty.files_by_status.len()), (None, 0));
}

#[test]
fn traces_resolve_parents_at_depth_two_in_any_arrival_order() {
    let mut store = Store::open_in_memory().unwrap();
    // The grandchild's records arrive first; its ancestors later, in separate batches.
    store
        .write_batch(&batch(vec![
            file("/g", session("ses_g", Some("ses_c"))),
            file("/gm", message("msg_g", "ses_g", "explore")),
            file("/gf", finish("prt_gf", "ses_g", "msg_g", 7, 0.25)),
        ]))
        .unwrap();
    store.refresh_derived(&TraceScope::Sessions(BTreeSet::from(["ses_g".to_owned()]))).unwrap();
    let second = store
        .write_batch(&batch(vec![
            file("/c", session("ses_c", Some("ses_r"))),
            file("/cm", message("msg_c", "ses_c", "general")),
            file("/ct", task("prt_t2", "ses_c", "msg_c", "ses_g")),
        ]))
        .unwrap();
    store.refresh_derived(&TraceScope::Sessions(second.touched_sessions)).unwrap();
    let third = store
        .write_batch(&batch(vec![
            file("/r", session("ses_r", None)),
            file("/rm", message("msg_r", "ses_r", "build")),
            file("/rt", task("prt_t1", "ses_r", "msg_r", "ses_c")),
            file("/rf", finish("prt_rf", "ses_r", "msg_r", 3, 0.5)),
        ]))
        .unwrap();
    store.refresh_derived(&TraceScope::Sessions(third.touched_sessions)).unwrap();
    let incremental =
        store.reader().unwrap().query("SELECT trace_id, parent_trace_id, tokens_input, cost, parent_agent FROM agent_traces ORDER BY trace_id").unwrap().1;
    store.refresh_derived(&TraceScope::All).unwrap();
    let full =
        store.reader().unwrap().query("SELECT trace_id, parent_trace_id, tokens_input, cost, parent_agent FROM agent_traces ORDER BY trace_id").unwrap().1;
    assert_eq!(incremental, full, "incremental traces must equal a full recompute");
    let text = |value: &Value| match value {
        Value::Text(text) => text.clone(),
        Value::Null => "NULL".into(),
        other => format!("{other:?}"),
    };
    let rows: Vec<(String, String)> = full.iter().map(|row| (text(&row[0]), text(&row[1]))).collect();
    assert_eq!(
        rows,
        vec![("prt_t1".to_owned(), "root_ses_r".to_owned()), ("prt_t2".to_owned(), "prt_t1".to_owned()), ("root_ses_r".to_owned(), "NULL".to_owned()),]
    );
    assert_eq!(full[1][2], Value::BigInt(7), "the depth-2 trace carries its child session's finish tokens");
    assert_eq!(count(&store, "SELECT count(*) FROM delegations"), 2);
}

#[test]
fn user_queries_run_one_select_and_never_write() {
    let mut store = Store::open_in_memory().unwrap();
    store.write_batch(&batch(vec![file("/s/session/p/ses_1.json", session("ses_1", None))])).unwrap();
    let reader = store.reader().unwrap();
    let rows = reader.query_json("WITH s AS (SELECT id FROM sessions) SELECT count(*) FROM s;", 10).unwrap();
    assert_eq!(rows.rows, vec![vec![serde_json::json!(1)]]);
    let attempts = [
        // Closing the wrapping subquery early to smuggle statements between.
        "SELECT * FROM sessions) AS x; DELETE FROM sessions; SELECT (1",
        "SELECT 1; DELETE FROM sessions",
        "DELETE FROM sessions",
        "INSERT INTO sessions (id) VALUES ('ses_x')",
        "CREATE TABLE t AS SELECT 1",
        "CALL checkpoint()",
    ];
    for sql in attempts {
        match reader.query_json(sql, 10) {
            Err(StoreError::Refused { .. }) => {}
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(count(&store, "SELECT count(*) FROM sessions"), 1);
}

// ---------------------------------------------------------------------------------------------
// Two sources holding the same records (the JSON tree and opencode.db)

const JSON: &str = "opencode_json";
const SQLITE: &str = "opencode_sqlite";

fn file_at(path: &str, records: Records, mtime_ms: i64) -> DecodedFile {
    DecodedFile { stamp: FileStamp { mtime_ns: mtime_ms * 1_000_000, size: 1 }, ..file(path, records) }
}

fn rows(rows: Vec<(Records, i64)>) -> WriteBatch {
    WriteBatch {
        source: SQLITE,
        rows: rows.into_iter().map(|(records, version_ms)| VersionedRecords { records, version_ms }).collect(),
        database_path: Some("/oc/opencode.db".into()),
        ..Default::default()
    }
}

fn source_of(store: &Store, table: &str, id: &str) -> Option<String> {
    let sql = format!("SELECT source FROM {table} WHERE id = '{id}'");
    store.connection.query_row(&sql, [], |row| row.get(0)).ok()
}

#[test]
fn of_two_sources_the_newer_version_wins_and_each_record_is_one_row() {
    let mut store = Store::open_in_memory().unwrap();
    store.write_batch(&batch(vec![file_at("/s/message/ses_a/msg_1.json", message("msg_1", "ses_a", "json"), 100)])).unwrap();
    // The database's copy is newer: it replaces the file's.
    let report = store.write_batch(&rows(vec![(message("msg_1", "ses_a", "sqlite"), 200)])).unwrap();
    assert_eq!(report.superseded, 0);
    assert_eq!(source_of(&store, "messages", "msg_1").as_deref(), Some(SQLITE));
    // An older file version does not win back; a newer one does.
    let report = store.write_batch(&batch(vec![file_at("/s/message/ses_a/msg_1.json", message("msg_1", "ses_a", "json"), 150)])).unwrap();
    assert_eq!(report.superseded, 1);
    assert_eq!(source_of(&store, "messages", "msg_1").as_deref(), Some(SQLITE));
    assert_eq!(count(&store, "SELECT count(*) FROM file_index WHERE status = 'indexed'"), 1, "the file is still indexed");
    store.write_batch(&batch(vec![file_at("/s/message/ses_a/msg_1.json", message("msg_1", "ses_a", "json"), 300)])).unwrap();
    assert_eq!(source_of(&store, "messages", "msg_1").as_deref(), Some(JSON));
    assert_eq!(count(&store, "SELECT count(*) FROM messages"), 1);
    // Same for parts with their step events, and todo lists.
    store.write_batch(&rows(vec![(finish("prt_1", "ses_a", "msg_1", 10, 0.5), 50)])).unwrap();
    store.write_batch(&batch(vec![file_at("/s/part/msg_1/prt_1.json", finish("prt_1", "ses_a", "msg_1", 10, 0.5), 40)])).unwrap();
    assert_eq!(source_of(&store, "parts", "prt_1").as_deref(), Some(SQLITE));
    assert_eq!(count(&store, "SELECT count(*) FROM step_events"), 1);
}

#[test]
fn a_source_deletes_only_its_own_rows() {
    let mut store = Store::open_in_memory().unwrap();
    store.write_batch(&batch(vec![file_at("/s/part/msg_1/prt_j.json", finish("prt_j", "ses_a", "msg_1", 1, 0.1), 100)])).unwrap();
    store.write_batch(&rows(vec![(finish("prt_s", "ses_a", "msg_1", 2, 0.2), 100), (finish("prt_j", "ses_a", "msg_1", 1, 0.1), 50)])).unwrap();
    assert_eq!(source_of(&store, "parts", "prt_j").as_deref(), Some(JSON), "the file's copy is newer");
    // The database deletes both rows: its own goes, the file's stays.
    let removal = WriteBatch {
        source: SQLITE,
        removed_records: vec![RemovedRecord { kind: FileKind::Part, id: "prt_s".into() }, RemovedRecord { kind: FileKind::Part, id: "prt_j".into() }],
        ..Default::default()
    };
    let report = store.write_batch(&removal).unwrap();
    assert!(report.touched_sessions.contains("ses_a"));
    assert_eq!(report.resurfaced, vec![("/s/part/msg_1/prt_j.json".to_owned(), "part".to_owned())], "the file holding prt_j is read again");
    assert_eq!(source_of(&store, "parts", "prt_s"), None);
    assert_eq!(count(&store, "SELECT count(*) FROM step_events WHERE id = 'prt_s'"), 0);
    assert_eq!(source_of(&store, "parts", "prt_j").as_deref(), Some(JSON));
    assert_eq!(count(&store, "SELECT count(*) FROM step_events WHERE id = 'prt_j'"), 1);
    // A removed file does not take the database's copy with it.
    store.write_batch(&rows(vec![(session("ses_a", None), 500)])).unwrap();
    store.write_batch(&batch(vec![file_at("/s/session/p/ses_a.json", session("ses_a", None), 100)])).unwrap();
    let removed = WriteBatch { source: JSON, removed: vec![RemovedFile { path: "/s/session/p/ses_a.json".into() }], ..Default::default() };
    store.write_batch(&removed).unwrap();
    assert_eq!(source_of(&store, "sessions", "ses_a").as_deref(), Some(SQLITE));
}

#[test]
fn rejected_rows_are_file_index_errors_until_they_decode() {
    let mut store = Store::open_in_memory().unwrap();
    let mut rejected = rows(vec![]);
    rejected.rejected.push(RejectedRow { kind: FileKind::Part, id: "prt_bad".into(), reason: "not valid JSON: x".into() });
    store.write_batch(&rejected).unwrap();
    assert_eq!(
        count(&store, "SELECT count(*) FROM file_index WHERE file_path = '/oc/opencode.db#part/prt_bad' AND status = 'error' AND source = 'opencode_sqlite'"),
        1
    );
    store.write_batch(&rows(vec![(finish("prt_bad", "ses_a", "msg_1", 1, 0.1), 10)])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM file_index"), 0);
    let stored = store.reader().unwrap().records_of_source(SQLITE).unwrap();
    assert_eq!(stored, vec![StoredRecord { kind: FileKind::Part, id: "prt_bad".into(), session_id: Some("ses_a".into()), version_ms: Some(10) }]);
}

/// Step-finish parts `prt_{n}` for `numbers`, of message `msg_1`, in files under `folder`.
fn finishes_in(folder: &str, numbers: std::ops::Range<usize>) -> Vec<DecodedFile> {
    numbers.map(|n| file(&format!("/s/part/{folder}/prt_{n}.json"), finish(&format!("prt_{n}"), "ses_a", "msg_1", 1, 0.0))).collect()
}

/// `n` step-finish parts of one message, each in its own file, at `cost`.
fn finishes(n: usize, cost: f64) -> Vec<DecodedFile> {
    (0..n).map(|index| file(&format!("/s/part/msg_1/prt_{index:04}.json"), finish(&format!("prt_{index:04}"), "ses_a", "msg_1", 1, cost))).collect()
}

fn table_rows(store: &Store, sql: &str) -> Vec<Vec<Value>> {
    store.reader().unwrap().query(sql).unwrap().1
}

#[test]
fn small_batches_bind_their_keys_and_large_ones_stage_them_to_the_same_rows() {
    // Batches up to BOUND_LIST_MAX stored keys take the bound-list path, larger ones the staged
    // one: here the second round, which replaces every row the first appended.
    let files = writer::BOUND_LIST_MAX + 44;
    let mut large = Store::open_in_memory().unwrap();
    let mut small = Store::open_in_memory().unwrap();
    for cost in [0.1, 0.2] {
        large.write_batch(&batch(finishes(files, cost))).unwrap();
        let mut pending = finishes(files, cost);
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(10));
            small.write_batch(&batch(std::mem::replace(&mut pending, rest))).unwrap();
        }
    }
    for sql in [
        "SELECT id, cost FROM step_events ORDER BY id",
        "SELECT id, session_id FROM parts ORDER BY id",
        "SELECT file_path, record_id, status, attempts, mtime_ns FROM file_index ORDER BY file_path",
    ] {
        let (in_large, in_small) = (table_rows(&large, sql), table_rows(&small, sql));
        assert_eq!(in_large.len(), files, "{sql}");
        assert_eq!(in_large, in_small, "{sql}");
    }
    assert_eq!(count(&large, "SELECT count(*) FROM step_events WHERE cost = 0.2"), files as i64);
}

#[test]
fn the_reconcilers_view_of_file_index_holds_one_source_with_its_stamps_and_statuses() {
    let mut store = Store::open_in_memory().unwrap();
    let mut failed = file("/s/message/ses_a/msg_bad.json", message("msg_bad", "ses_a", "build"));
    failed.outcome = FileOutcome::Failed("not valid JSON".into());
    failed.stamp = FileStamp { mtime_ns: 7, size: 3 };
    store.write_batch(&batch(vec![file("/s/session/p/ses_a.json", session("ses_a", None)), failed])).unwrap();
    let mut rejected = rows(vec![]);
    rejected.rejected.push(RejectedRow { kind: FileKind::Part, id: "prt_bad".into(), reason: "not valid JSON".into() });
    store.write_batch(&rejected).unwrap();
    let rows_of = |source: &str| {
        let mut rows = Vec::new();
        let reader = store.reader().unwrap();
        reader.for_each_file_index_row(source, |row| rows.push((row.path.to_owned(), row.kind, row.stamp, row.status))).unwrap();
        assert_eq!(rows.len(), reader.file_index_rows_of_source(source).unwrap());
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    };
    assert_eq!(
        rows_of(JSON),
        vec![
            ("/s/message/ses_a/msg_bad.json".to_owned(), FileKind::Message, FileStamp { mtime_ns: 7, size: 3 }, FileStatus::Error),
            ("/s/session/p/ses_a.json".to_owned(), FileKind::Session, FileStamp { mtime_ns: 1, size: 1 }, FileStatus::Indexed),
        ]
    );
    assert_eq!(rows_of(SQLITE).iter().map(|row| row.0.as_str()).collect::<Vec<_>>(), ["/oc/opencode.db#part/prt_bad"]);
}

#[test]
fn a_version_1_database_takes_record_versions_from_its_files() {
    let connection = duckdb::Connection::open_in_memory().unwrap();
    connection
        .execute_batch(&format!(
            "CREATE TABLE schema_migrations (version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL);
             {}
             INSERT INTO schema_migrations VALUES (1, 'v1', now());
             INSERT INTO parts (id, session_id, message_id, part_type, source) VALUES ('prt_1', 'ses_a', 'msg_1', 'text', 'opencode_json');
             INSERT INTO todos (session_id, position) VALUES ('ses_a', 0);
             INSERT INTO file_index VALUES ('/s/part/msg_1/prt_1.json', 'opencode_json', 'part', NULL, 7000000, 1, 'prt_1', 'indexed', NULL, 0, now());",
            crate::schema::MIGRATIONS[0].sql
        ))
        .unwrap();
    let store = Store::with_connection(connection, PathBuf::from(":memory:"));
    store.migrate().unwrap();
    assert_eq!(store.schema_version().unwrap(), crate::schema::MIGRATIONS.last().unwrap().version);
    assert_eq!(count(&store, "SELECT version_ms FROM parts"), 7);
    assert_eq!(count(&store, "SELECT count(*) FROM todos WHERE source = 'opencode_json'"), 1);
}

fn message_on(id: &str, session: &str, agent: &str, model: &str, created_ms: i64) -> Records {
    let Records::Message(mut record) = message(id, session, agent) else { unreachable!() };
    record.provider_id = Some("anthropic".into());
    record.model_id = Some(model.into());
    record.created_at = Some(created_ms);
    Records::Message(record)
}

fn tool(id: &str, session: &str, message: &str, name: &str, status: &str, took_ms: i64) -> Records {
    Records::Part {
        part: PartRecord {
            id: id.into(),
            session_id: session.into(),
            message_id: message.into(),
            part_type: "tool".into(),
            tool_name: Some(name.into()),
            tool_status: Some(status.into()),
            started_at: Some(1_700_000_000_000),
            ended_at: Some(1_700_000_000_000 + took_ms),
            ..Default::default()
        },
        step: None,
        file_operation: None,
    }
}

/// The rollups, read in a fixed order, for comparing an incremental state with a full recompute.
/// Every row of `tables`, each led by its table's name, for comparing two states of them.
fn rows_of_tables(store: &Store, tables: &[&str]) -> Vec<Vec<Value>> {
    let reader = store.reader().unwrap();
    tables.iter().flat_map(|table| reader.query(&format!("SELECT '{table}', * FROM {table} ORDER BY ALL")).unwrap().1).collect()
}

fn rollup_rows(store: &Store) -> Vec<Vec<Value>> {
    rows_of_tables(store, &["session_stats", "session_usage", "session_tools"])
}

/// The rollup answers beside the same questions aggregated from the records themselves.
fn assert_rollups_match_records(store: &Store) {
    let reader = store.reader().unwrap();
    // A bound one microsecond past the epoch is not a midnight, so it takes the raw path while
    // filtering nothing.
    let pairs = [[UsageGroup::Day, UsageGroup::Model], [UsageGroup::App, UsageGroup::Agent], [UsageGroup::Project, UsageGroup::Day]];
    let groupings = [UsageGroup::Day, UsageGroup::Model, UsageGroup::Agent, UsageGroup::Project, UsageGroup::App]
        .map(|group| vec![group])
        .into_iter()
        .chain(pairs.map(Vec::from));
    for group in groupings {
        let rolled = reader.usage_by(&group, None, None).unwrap();
        let raw = reader.usage_by(&group, Some(1), None).unwrap();
        assert!(rolled.iter().all(|row| row.keys.len() == group.len() && row.key == row.keys.join(" · ")), "{group:?}");
        assert_eq!(rolled.len(), raw.len(), "{group:?}: {rolled:?} vs {raw:?}");
        for (rolled, raw) in rolled.iter().zip(&raw) {
            assert_eq!((&rolled.keys, rolled.sessions, rolled.steps), (&raw.keys, raw.sessions, raw.steps), "{group:?}");
            assert_eq!(Usage { cost: 0.0, ..rolled.usage.clone() }, Usage { cost: 0.0, ..raw.usage.clone() }, "{group:?}");
            assert!((rolled.usage.cost - raw.usage.cost).abs() < 1e-9, "{group:?}: {} vs {}", rolled.usage.cost, raw.usage.cost);
        }
    }
    let (_, expected) = reader
        .query(
            "SELECT s.id,
                    (SELECT count(*) FROM messages m WHERE m.session_id = s.id),
                    (SELECT count(*) FROM parts p WHERE p.session_id = s.id AND p.part_type = 'tool'),
                    (SELECT count(*) FROM parts p WHERE p.session_id = s.id AND p.tool_status = 'error')
                        + (SELECT count(error_name) FROM messages m WHERE m.session_id = s.id),
                    (SELECT coalesce(sum(tokens_input), 0) FROM step_events e WHERE e.session_id = s.id AND e.event_type = 'finish')
             FROM sessions s ORDER BY s.id",
        )
        .unwrap();
    for row in expected {
        let Value::Text(id) = &row[0] else { panic!("a session id: {row:?}") };
        let summary = reader.session_summary(id).unwrap().unwrap();
        let as_int = |value: &Value| match value {
            Value::BigInt(n) => *n,
            Value::HugeInt(n) => *n as i64,
            other => panic!("not an integer: {other:?}"),
        };
        let got = [summary.session.messages, summary.session.tool_calls, summary.session.errors, summary.session.usage.input];
        assert_eq!(got, [as_int(&row[1]), as_int(&row[2]), as_int(&row[3]), as_int(&row[4])], "{id}");
        let per_model: i64 = summary.by_model.iter().map(|usage| usage.usage.input).sum();
        assert_eq!(per_model, summary.session.usage.input, "{id}: per-model inputs sum to the total");
        let tool_calls: i64 = summary.tools.iter().map(|tool| tool.calls).sum();
        assert_eq!(tool_calls, summary.session.tool_calls, "{id}");
    }
}

#[test]
fn rollups_follow_every_change_and_equal_a_full_recompute() {
    let mut store = Store::open_in_memory().unwrap();
    let day = 86_400_000;
    let first = store
        .write_batch(&batch(vec![
            file("/a", session("ses_a", None)),
            file("/a1", message_on("msg_a1", "ses_a", "build", "sonnet", 1_700_000_000_000)),
            file("/a2", message_on("msg_a2", "ses_a", "plan", "opus", 1_700_000_000_000 + day)),
            file("/af1", finish("prt_af1", "ses_a", "msg_a1", 10, 0.1)),
            file("/af2", finish("prt_af2", "ses_a", "msg_a2", 20, 0.2)),
            file("/at1", tool("prt_at1", "ses_a", "msg_a1", "bash", "completed", 100)),
            file("/at2", tool("prt_at2", "ses_a", "msg_a1", "bash", "error", 300)),
            file("/b", session("ses_b", Some("ses_a"))),
            file("/b1", message_on("msg_b1", "ses_b", "explore", "sonnet", 1_700_000_000_000)),
            file("/bf1", finish("prt_bf1", "ses_b", "msg_b1", 5, 0.05)),
        ]))
        .unwrap();
    store.refresh_derived(&TraceScope::Sessions(first.touched_sessions)).unwrap();
    assert_rollups_match_records(&store);
    let bash = store.reader().unwrap().session_summary("ses_a").unwrap().unwrap().tools;
    assert_eq!((bash[0].tool.as_str(), bash[0].calls, bash[0].errors, bash[0].p50_ms), ("bash", 2, 1, Some(200.0)));

    // A rewritten step, a new tool call, a session moved to another project, and a removed step file.
    let Records::Session(mut moved) = session("ses_b", Some("ses_a")) else { unreachable!() };
    moved.project_id = Some("q".into());
    let mut second = batch(vec![
        file("/af1", finish("prt_af1", "ses_a", "msg_a1", 40, 0.4)),
        file("/at3", tool("prt_at3", "ses_a", "msg_a2", "read", "completed", 5)),
        file("/b", Records::Session(moved)),
    ]);
    second.removed.push(RemovedFile { path: "/af2".into() });
    let second = store.write_batch(&second).unwrap();
    assert!(second.touched_sessions.contains("ses_a"));
    store.refresh_derived(&TraceScope::Sessions(second.touched_sessions)).unwrap();
    assert_rollups_match_records(&store);
    let summary = store.reader().unwrap().session_summary("ses_a").unwrap().unwrap();
    assert_eq!((summary.session.usage.input, summary.session.tool_calls), (40, 3));
    let projects: Vec<String> = store.reader().unwrap().usage(UsageGroup::Project, None, None).unwrap().into_iter().map(|row| row.key).collect();
    assert_eq!(projects, ["p", "q"]);

    let incremental = rollup_rows(&store);
    store.refresh_derived(&TraceScope::All).unwrap();
    assert_eq!(incremental, rollup_rows(&store), "incremental rollups must equal a full recompute");
}

#[test]
fn a_database_from_before_the_rollups_has_them_filled_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.duckdb");
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    store
        .write_batch(&batch(vec![
            file("/a", session("ses_a", None)),
            file("/a1", message("msg_a1", "ses_a", "build")),
            file("/af1", finish("prt_af1", "ses_a", "msg_a1", 10, 0.1)),
        ]))
        .unwrap();
    // As a version 4 database: no rollup tables, nothing of migration 6, no record of either.
    store
        .connection
        .execute_batch(&format!(
            "DROP INDEX sessions_by_id; DROP INDEX sessions_by_parent;
             DROP INDEX messages_by_session; DROP INDEX parts_by_session; DROP INDEX step_events_by_session;
             ALTER TABLE messages DROP COLUMN list_cost; ALTER TABLE step_events DROP COLUMN list_cost; ALTER TABLE step_events DROP COLUMN version_ms;
             ALTER TABLE sessions DROP COLUMN app; ALTER TABLE messages DROP COLUMN app; ALTER TABLE messages DROP COLUMN cost_source;
             ALTER TABLE parts DROP COLUMN app; ALTER TABLE step_events DROP COLUMN app; ALTER TABLE step_events DROP COLUMN cost_source;
             CREATE INDEX parts_by_session ON parts (session_id); CREATE INDEX messages_by_session ON messages (session_id);
             CREATE INDEX step_events_by_session ON step_events (session_id);
             DROP TABLE transcript_files; DROP TABLE transcript_lines; DROP TABLE otlp_sent;
             DROP TABLE session_stats; DROP TABLE session_usage; DROP TABLE session_tools;
             DROP INDEX agent_traces_by_id; DROP INDEX agent_traces_by_parent; DROP INDEX agent_traces_by_child_session;
             DELETE FROM schema_migrations WHERE version >= {};",
            crate::schema::FIRST_WITH_ROLLUPS
        ))
        .unwrap();
    drop(store);
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM session_usage"), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM pipeline_state WHERE key = 'derived_complete'"), 1, "the daemon need not recompute them");
    let summary = store.reader().unwrap().session_summary("ses_a").unwrap().unwrap();
    assert_eq!((summary.session.messages, summary.session.usage.input), (1, 10));
}

#[test]
fn a_database_from_before_the_unpriced_count_has_it_filled_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.duckdb");
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    let Records::Part { part, step: Some(mut step), file_operation } = finish("prt_af1", "ses_a", "msg_a1", 10, 0.0) else { unreachable!() };
    step.cost = None;
    let unpriced = Records::Part { part, step: Some(step), file_operation };
    store
        .write_batch(&batch(vec![
            file("/a", session("ses_a", None)),
            file("/a1", message("msg_a1", "ses_a", "build")),
            file("/af1", unpriced),
            file("/af2", finish("prt_af2", "ses_a", "msg_a1", 5, 0.2)),
        ]))
        .unwrap();
    store.refresh_derived(&crate::traces::TraceScope::All).unwrap();
    assert_eq!(count(&store, "SELECT sum(unpriced_steps) FROM session_usage"), 1, "one finish step has no cost");
    // As a version 8 database: no column, no record of migration 9.
    store
        .connection
        .execute_batch(
            "DROP INDEX session_stats_by_session; DROP INDEX session_usage_by_session;
             ALTER TABLE session_stats DROP COLUMN unpriced_steps; ALTER TABLE session_usage DROP COLUMN unpriced_steps;
             CREATE INDEX session_stats_by_session ON session_stats (session_id); CREATE INDEX session_usage_by_session ON session_usage (session_id);
             DELETE FROM schema_migrations WHERE version >= 9;",
        )
        .unwrap();
    drop(store);
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(count(&store, "SELECT sum(unpriced_steps) FROM session_usage"), 1, "recomputed at the upgrade");
    assert_eq!(count(&store, "SELECT sum(unpriced_steps) FROM session_stats"), 1);
    let page = store.reader().unwrap().sessions(&SessionFilter { limit: 10, ..Default::default() }).unwrap();
    assert_eq!((page.sessions[0].unpriced_steps, page.sessions[0].usage.cost), (1, 0.2));
}

/// A decoded file as the decoder makes it: the path's own id comes from its name.
fn file_named(path: &str, records: Records) -> DecodedFile {
    let stem = std::path::Path::new(path).file_stem().unwrap().to_string_lossy().into_owned();
    DecodedFile { path_record_id: stem, ..file(path, records) }
}

#[test]
fn a_file_whose_content_changes_id_leaves_no_stale_record() {
    let file = file_named;
    let mut store = Store::open_in_memory().unwrap();
    // Read between a rename and the rewrite that follows it: the new path still holds the old id.
    store.write_batch(&batch(vec![file("/s/part/m/prt_b.json", finish("prt_a", "ses_1", "msg_1", 1, 0.1))])).unwrap();
    store.write_batch(&batch(vec![file("/s/part/m/prt_c.json", finish("prt_c", "ses_1", "msg_1", 1, 0.1))])).unwrap();
    let rewritten = store.write_batch(&batch(vec![file("/s/part/m/prt_b.json", finish("prt_b", "ses_1", "msg_1", 2, 0.2))])).unwrap();
    assert!(rewritten.touched_sessions.contains("ses_1"));
    assert_eq!(count(&store, "SELECT count(*) FROM parts WHERE id = 'prt_a'"), 0, "the id the file no longer holds is gone");
    assert_eq!(count(&store, "SELECT count(*) FROM step_events WHERE id = 'prt_a'"), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM parts WHERE id IN ('prt_b', 'prt_c')"), 2);

    // An id another file still holds stays.
    store.write_batch(&batch(vec![file("/s/part/m/prt_d.json", finish("prt_c", "ses_1", "msg_1", 1, 0.1))])).unwrap();
    store.write_batch(&batch(vec![file("/s/part/m/prt_d.json", finish("prt_d", "ses_1", "msg_1", 1, 0.1))])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM parts WHERE id = 'prt_c'"), 1, "prt_c.json still holds prt_c");
}

#[test]
fn a_trace_tree_is_walked_by_level_in_start_order_and_a_cycle_ends_it() {
    let store = Store::open_in_memory().unwrap();
    // root → (b at 2, a at 1) → c under a → loop under c; the root names c as its parent (a
    // hand-made cycle no OpenCode data produces).
    store
        .connection
        .execute_batch(
            "INSERT INTO agent_traces (trace_id, session_id, parent_trace_id, child_session_id, started_at) VALUES
                 ('root_ses_r', 'ses_r', 'prt_c', 'ses_r', to_timestamp(0)),
                 ('prt_b', 'ses_r', 'root_ses_r', 'ses_b', to_timestamp(2)),
                 ('prt_a', 'ses_r', 'root_ses_r', 'ses_a', to_timestamp(1)),
                 ('prt_c', 'ses_a', 'prt_a', 'ses_c', to_timestamp(3)),
                 ('prt_loop', 'ses_c', 'prt_c', 'ses_a', NULL);",
        )
        .unwrap();
    let reader = store.reader().unwrap();
    let tree = reader.trace_tree("ses_r").unwrap().unwrap();
    let ids = |nodes: &[TraceNode]| nodes.iter().map(|node| node.trace_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&tree.children), ["prt_a", "prt_b"], "siblings in start order");
    assert_eq!(ids(&tree.children[0].children), ["prt_c"]);
    assert_eq!(ids(&tree.children[0].children[0].children), ["prt_loop"]);
    // A child session starts at the trace that created it.
    assert_eq!(reader.trace_tree("ses_c").unwrap().unwrap().trace_id, "prt_c");
    assert!(reader.trace_tree("ses_unknown").unwrap().is_none());
}

#[test]
fn a_timeline_holds_every_part_of_its_session_even_under_messages_not_indexed() {
    let mut store = Store::open_in_memory().unwrap();
    // msg_2 and msg_3 are indexed; msg_1 and msg_9 are not (their parts lie outside the range of
    // the session's message ids, which narrows the parts' scan); ses_b's parts lie inside it.
    store
        .write_batch(&batch(vec![
            file("/s/session/p/ses_a.json", session("ses_a", None)),
            file("/s/session/p/ses_b.json", session("ses_b", None)),
            file("/s/message/ses_a/msg_2.json", message("msg_2", "ses_a", "build")),
            file("/s/message/ses_a/msg_3.json", message("msg_3", "ses_a", "build")),
            file("/s/part/msg_2/prt_2a.json", finish("prt_2a", "ses_a", "msg_2", 5, 0.5)),
            file("/s/part/msg_2/prt_2b.json", tool("prt_2b", "ses_a", "msg_2", "bash", "completed", 10)),
            file("/s/part/msg_3/prt_3a.json", finish("prt_3a", "ses_a", "msg_3", 7, 0.7)),
            file("/s/part/msg_25/prt_b.json", finish("prt_b", "ses_b", "msg_25", 1, 0.1)),
        ]))
        .unwrap();
    let part_ids = |store: &Store| -> Vec<(String, Vec<String>)> {
        let timeline = store.reader().unwrap().session_timeline("ses_a", 100).unwrap().unwrap();
        timeline.into_iter().map(|message| (message.id, message.parts.into_iter().map(|part| part.id).collect())).collect()
    };
    let in_range = vec![("msg_2".to_owned(), vec!["prt_2a".to_owned(), "prt_2b".to_owned()]), ("msg_3".to_owned(), vec!["prt_3a".to_owned()])];
    assert_eq!(part_ids(&store), in_range);
    store
        .write_batch(&batch(vec![
            file("/s/part/msg_1/prt_1a.json", finish("prt_1a", "ses_a", "msg_1", 1, 0.1)),
            file("/s/part/msg_9/prt_9a.json", tool("prt_9a", "ses_a", "msg_9", "read", "error", 3)),
        ]))
        .unwrap();
    let mut with_placeholders = in_range;
    with_placeholders.push(("msg_1".to_owned(), vec!["prt_1a".to_owned()]));
    with_placeholders.push(("msg_9".to_owned(), vec!["prt_9a".to_owned()]));
    assert_eq!(part_ids(&store), with_placeholders);
    // Step events come along on both paths.
    let timeline = store.reader().unwrap().session_timeline("ses_a", 100).unwrap().unwrap();
    let steps: Vec<(String, i64)> = timeline
        .iter()
        .flat_map(|message| message.parts.iter())
        .filter_map(|part| part.step.as_ref().map(|step| (part.id.clone(), step.usage.input)))
        .collect();
    assert_eq!(steps, [("prt_2a".to_owned(), 5), ("prt_3a".to_owned(), 7), ("prt_1a".to_owned(), 1)]);
}

#[test]
fn the_derived_complete_mark_goes_with_the_first_write_of_records_and_stays_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.duckdb");
    let marks = |store: &Store| count(store, "SELECT count(*) FROM pipeline_state WHERE key = 'derived_complete'");
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert!(!store.take_derived_complete_mark().unwrap());
    store.mark_derived_complete().unwrap();
    drop(store);

    // A run that writes nothing (an unchanged tree) leaves the mark where it was.
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert!(store.take_derived_complete_mark().unwrap());
    assert_eq!(marks(&store), 1);
    store.mark_derived_complete().unwrap();
    drop(store);

    // A run that writes records removes it in its first batch's transaction; stopping before
    // marking again (as a crash would) leaves the next start without it.
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert!(store.take_derived_complete_mark().unwrap());
    store.write_batch(&batch(vec![file("/a", session("ses_a", None))])).unwrap();
    assert_eq!(marks(&store), 0);
    drop(store);
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert!(!store.take_derived_complete_mark().unwrap(), "the next start recomputes the derived tables");
    store.mark_derived_complete().unwrap();
    assert_eq!(marks(&store), 1);
}

#[test]
fn new_paths_are_appended_directly_and_a_wrong_claim_fails_without_duplicating() {
    let mut store = Store::open_in_memory().unwrap();
    let new = |files| WriteBatch { paths_are_new: true, ..batch(files) };
    store.write_batch(&new(vec![file("/a", session("ses_a", None)), file("/b", session("ses_b", None))])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM file_index WHERE status = 'indexed'"), 2);
    assert_eq!(count(&store, "SELECT count(*) FROM sessions"), 2);

    // "/a" has a row: the primary key refuses the batch, and nothing of it is kept.
    let error = store.write_batch(&new(vec![file("/a", session("ses_a2", None)), file("/c", session("ses_c", None))]));
    assert!(error.is_err());
    assert_eq!(count(&store, "SELECT count(*) FROM file_index"), 2);
    assert_eq!(count(&store, "SELECT count(*) FROM sessions"), 2);
    // Without the claim the same batch replaces "/a"'s row.
    store.write_batch(&batch(vec![file("/a", session("ses_a2", None)), file("/c", session("ses_c", None))])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM file_index"), 3);
}

#[test]
fn a_record_stored_before_or_during_this_run_is_replaced_not_duplicated_from_a_new_path() {
    // New paths holding stored ids (a session moved between project folders, a part re-delivered)
    // must find their old rows: the in-memory key filter may skip only deletes that find nothing.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.duckdb");
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    store.write_batch(&batch(vec![file("/s/session/prj_1/ses_a.json", session("ses_a", None))])).unwrap();
    drop(store);

    // Stored before this store opened: the filter is loaded from the tables.
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    store.write_batch(&batch(vec![file("/s/session/prj_2/ses_a.json", session("ses_a", None))])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM sessions WHERE id = 'ses_a'"), 1);

    // Stored by this store: the filter learns every appended key, in small (bound) and large
    // (staged) batches alike.
    store.write_batch(&batch(vec![file("/s/message/ses_a/msg_1.json", message("msg_1", "ses_a", "build"))])).unwrap();
    store.write_batch(&batch(vec![file("/s/message/ses_b/msg_1.json", message("msg_1", "ses_a", "plan"))])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM messages WHERE id = 'msg_1'"), 1);
    let staged = crate::writer::BOUND_LIST_MAX + 10;
    store.write_batch(&batch(finishes_in("msg_1", 0..staged))).unwrap();
    store.write_batch(&batch(finishes_in("msg_2", 0..staged))).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM parts"), (crate::writer::BOUND_LIST_MAX + 10) as i64);
    assert_eq!(count(&store, "SELECT count(*) FROM step_events"), (crate::writer::BOUND_LIST_MAX + 10) as i64);
    let part = |n: usize| vec![file(&format!("/s/part/msg_3/prt_{n}.json"), finish(&format!("prt_{n}"), "ses_a", "msg_1", 2, 0.0))];
    store.write_batch(&batch(part(3))).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM parts WHERE id = 'prt_3'"), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM step_events WHERE id = 'prt_3' AND tokens_input = 2"), 1);
}

#[test]
fn a_path_stored_before_or_during_this_run_keeps_one_file_index_row_beside_new_paths() {
    // A batch mixes new paths (appended directly) with stored ones (replaced): every path the
    // known keys say "no" to must really have no row, or the primary key fails the batch.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.duckdb");
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    store.write_batch(&batch(vec![file("/s/session/prj_1/ses_a.json", session("ses_a", None)), empty_part_file("prt_bad")])).unwrap();
    drop(store);

    // Stored before this store opened, rewritten beside new paths, in a bound and a staged batch.
    let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
    store
        .write_batch(&batch(vec![file("/s/session/prj_1/ses_a.json", session("ses_a", None)), file("/s/session/prj_1/ses_b.json", session("ses_b", None))]))
        .unwrap();
    store.write_batch(&batch(vec![empty_part_file("prt_bad"), empty_part_file("prt_new")])).unwrap();
    assert_eq!(count(&store, "SELECT attempts::BIGINT FROM file_index WHERE record_id = 'prt_bad'"), 2, "a stored failure counts on");
    assert_eq!(count(&store, "SELECT attempts::BIGINT FROM file_index WHERE record_id = 'prt_new'"), 1);
    // Stored during this run: most of the second staged batch was appended by the first.
    let staged = crate::writer::BOUND_LIST_MAX + 10;
    store.write_batch(&batch(finishes_in("msg_1", 0..staged))).unwrap();
    store.write_batch(&batch(finishes_in("msg_1", 100..100 + staged))).unwrap();
    let part_paths = (100 + staged) as i64;
    assert_eq!(count(&store, "SELECT count(*) FROM file_index WHERE kind = 'part' AND status = 'indexed'"), part_paths);
    store.write_batch(&batch(vec![file("/s/part/msg_1/prt_5.json", finish("prt_5", "ses_a", "msg_1", 2, 0.0))])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM file_index WHERE file_path = '/s/part/msg_1/prt_5.json'"), 1);

    // A span file's row, written by the span writer, is known to the record writer too.
    let spans = SpanBatch {
        files: vec![SpanFile {
            path: PathBuf::from("/s/spans/a.parquet"),
            stamp: FileStamp { mtime_ns: 1, size: 1 },
            outcome: SpanFileOutcome::Failed("bad".into()),
        }],
        removed: Vec::new(),
    };
    store.write_spans(&spans).unwrap();
    store.write_batch(&batch(vec![file("/s/spans/a.parquet", session("ses_c", None))])).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM file_index WHERE file_path = '/s/spans/a.parquet'"), 1);
    assert_eq!(count(&store, "SELECT count(*) FROM file_index"), 2 + 2 + part_paths + 1);
}

/// Every derived table, row by row, for comparing a chain of scoped recomputes with a full one.
fn derived_rows(store: &Store) -> Vec<Vec<Value>> {
    rows_of_tables(store, &["agent_traces", "delegations", "session_stats", "session_usage", "session_tools"])
}

/// One session of a generated trace forest.
#[derive(Debug, Clone)]
struct SessionSpec {
    /// Index (modulo the sessions before it) of the session whose task created this one; `None`
    /// for a root.
    creator: Option<proptest::sample::Index>,
    /// Whether the session's own record is ever written (OpenCode may not have written it yet).
    has_record: bool,
    /// Whether the record names the creator as its parent (else it names no parent).
    record_names_creator: bool,
    /// Finish steps' input tokens, one message each.
    steps: Vec<i64>,
    /// Index of a second session whose task call also names this one as its child (a retried
    /// call), started earlier than the first.
    created_again_by: Option<proptest::sample::Index>,
}

fn session_spec() -> impl proptest::strategy::Strategy<Value = SessionSpec> {
    use proptest::prelude::*;
    (
        proptest::option::weighted(0.7, any::<proptest::sample::Index>()),
        proptest::bool::weighted(0.85),
        proptest::bool::weighted(0.85),
        proptest::collection::vec(1i64..100, 0..3),
        proptest::option::weighted(0.15, any::<proptest::sample::Index>()),
    )
        .prop_map(|(creator, has_record, record_names_creator, steps, created_again_by)| SessionSpec {
            creator,
            has_record,
            record_names_creator,
            steps,
            created_again_by,
        })
}

/// A task call of `session` (in its message) that created `child`, started at `started_ms`.
fn task_call(number: usize, copy: usize, session: usize, child: usize, started_ms: i64) -> DecodedFile {
    let Records::Part { mut part, .. } = task(&format!("prt_k{number}_{copy}"), &format!("ses_{session}"), &format!("msg_{session}"), &format!("ses_{child}"))
    else {
        unreachable!()
    };
    part.started_at = Some(started_ms);
    file(&format!("/k/{number}/{copy}"), Records::Part { part, step: None, file_operation: None })
}

/// The records of a forest: each session's record, message, finish steps and a tool call, and the
/// task calls (in their session's message) that created it.
fn forest_records(specs: &[SessionSpec]) -> Vec<DecodedFile> {
    let mut files = Vec::new();
    for (number, spec) in specs.iter().enumerate() {
        let id = format!("ses_{number}");
        let creator = spec.creator.as_ref().filter(|_| number > 0).map(|index| index.index(number));
        if spec.has_record {
            let parent = creator.filter(|_| spec.record_names_creator).map(|parent| format!("ses_{parent}"));
            files.push(file(&format!("/s/{id}"), session(&id, parent.as_deref())));
        }
        let agent = ["build", "plan", "explore"][number % 3];
        files.push(file(&format!("/m/{id}"), message(&format!("msg_{number}"), &id, agent)));
        for (step, input) in spec.steps.iter().enumerate() {
            files.push(file(
                &format!("/f/{id}/{step}"),
                finish(&format!("prt_f{number}_{step}"), &id, &format!("msg_{number}"), *input, *input as f64 / 1000.0),
            ));
        }
        files.push(file(&format!("/t/{id}"), tool(&format!("prt_b{number}"), &id, &format!("msg_{number}"), "bash", "completed", number as i64)));
        if let Some(parent) = creator {
            files.push(task_call(number, 0, parent, number, 1_700_000_000_150));
            if let Some(again) = &spec.created_again_by {
                files.push(task_call(number, 1, again.index(number), number, 1_700_000_000_140));
            }
        }
    }
    files
}

/// A later change, alone in its batch, to one session's records.
#[derive(Debug, Clone)]
enum Rewrite {
    /// Its first finish step, with new tokens: its creator's trace changes though the creator
    /// is not touched.
    Usage(proptest::sample::Index, i64),
    /// Its message, by another agent: its tasks' `parent_agent` and, for a root, its trace.
    Agent(proptest::sample::Index),
    /// Its first finish step removed.
    RemoveStep(proptest::sample::Index),
}

fn rewrite() -> impl proptest::strategy::Strategy<Value = Rewrite> {
    use proptest::prelude::*;
    prop_oneof![
        (any::<proptest::sample::Index>(), 1i64..100).prop_map(|(which, input)| Rewrite::Usage(which, input)),
        any::<proptest::sample::Index>().prop_map(Rewrite::Agent),
        any::<proptest::sample::Index>().prop_map(Rewrite::RemoveStep),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Whatever order a forest's files arrive in, and whatever is rewritten later, recomputing
    /// only the sessions each batch touched leaves every derived table as a full recompute would.
    /// (Records that move to another session, and task calls removed or renaming their child,
    /// are left out: OpenCode does neither, and the scope is found from the records as they are
    /// now, so their old sessions are not recomputed.)
    #[test]
    fn scoped_recomputes_equal_a_full_recompute_in_any_arrival_order(
        specs in proptest::collection::vec(session_spec(), 2..7),
        order in proptest::collection::vec(proptest::prelude::any::<u32>(), 64),
        batches in 1usize..6,
        rewrites in proptest::collection::vec(rewrite(), 0..4),
    ) {
        let mut store = Store::open_in_memory().unwrap();
        let mut files = forest_records(&specs);
        let mut keyed: Vec<(u32, DecodedFile)> = files.drain(..).enumerate().map(|(at, file)| (order[at % order.len()].wrapping_add(at as u32), file)).collect();
        keyed.sort_by_key(|(key, _)| *key);
        let files: Vec<DecodedFile> = keyed.into_iter().map(|(_, file)| file).collect();
        let per_batch = files.len().div_ceil(batches);
        for chunk in files.chunks(per_batch) {
            let report = store.write_batch(&batch(chunk.to_vec())).unwrap();
            store.refresh_derived(&TraceScope::Sessions(report.touched_sessions)).unwrap();
        }
        for change in rewrites {
            let change = match change {
                Rewrite::Usage(which, input) => {
                    let number = which.index(specs.len());
                    batch(vec![file(&format!("/f/ses_{number}/0"), finish(&format!("prt_f{number}_0"), &format!("ses_{number}"), &format!("msg_{number}"), input, 0.5))])
                }
                Rewrite::Agent(which) => {
                    let number = which.index(specs.len());
                    batch(vec![file(&format!("/m/ses_{number}"), message(&format!("msg_{number}"), &format!("ses_{number}"), "rewritten"))])
                }
                Rewrite::RemoveStep(which) => {
                    let mut removal = batch(Vec::new());
                    removal.removed.push(RemovedFile { path: format!("/f/ses_{}/0", which.index(specs.len())) });
                    removal
                }
            };
            let report = store.write_batch(&change).unwrap();
            store.refresh_derived(&TraceScope::Sessions(report.touched_sessions)).unwrap();
        }
        let incremental = derived_rows(&store);
        store.refresh_derived(&TraceScope::All).unwrap();
        proptest::prop_assert_eq!(&incremental, &derived_rows(&store));
        // And the delegations are the task calls themselves, column for column.
        let reader = store.reader().unwrap();
        let delegations = reader.query("SELECT * FROM delegations ORDER BY id").unwrap().1;
        let task_calls = reader
            .query(
                "SELECT p.id, p.session_id, p.child_session_id, m.agent, p.subagent_type, p.started_at
                 FROM parts p LEFT JOIN messages m ON m.id = p.message_id AND m.session_id = p.session_id
                 WHERE p.part_type = 'tool' AND p.tool_name = 'task' AND p.child_session_id IS NOT NULL ORDER BY p.id",
            )
            .unwrap()
            .1;
        proptest::prop_assert_eq!(delegations, task_calls);
    }
}

#[test]
fn running_out_of_memory_names_the_setting_once_and_duckdbs_message_once() {
    let store = Store::open_in_memory().unwrap();
    // No temp directory: DuckDB cannot spill, so the budget is the limit.
    store.connection.execute_batch("SET temp_directory = ''; SET memory_limit = '2MB'; SET threads = 1").unwrap();
    let error = store.reader().unwrap().query("SELECT count(DISTINCT i::VARCHAR || repeat('x', 100)) FROM range(1000000) t(i)").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("raise [database] memory_limit in the config file"), "{message}");
    assert_eq!(message.matches("Out of Memory").count(), 1, "{message}");
    // Printed as a chain (`{:#}`, as the CLI does), nothing repeats it.
    assert!(std::error::Error::source(&error).is_none(), "{message}");
}
