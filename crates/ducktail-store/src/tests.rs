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
        part: PartRecord {
            id: id.into(),
            session_id: session.into(),
            message_id: message.into(),
            part_type: "step-finish".into(),
            ..Default::default()
        },
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
    Records::Part {
        part: PartRecord {
            id: id.into(),
            session_id: session.into(),
            message_id: message.into(),
            part_type: "tool".into(),
            tool_name: Some("task".into()),
            tool_status: Some("completed".into()),
            child_session_id: Some(child.into()),
            subagent_type: Some("general".into()),
            started_at: Some(1_700_000_000_150),
            ..Default::default()
        },
        step: None,
        file_operation: None,
    }
}

fn batch(files: Vec<DecodedFile>) -> WriteBatch {
    WriteBatch { source: "opencode_json", files, removed: Vec::new(), on_delete: OnDelete::Remove }
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
    assert_eq!(store.schema_version().unwrap(), 1);
    drop(store);
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM schema_migrations"), 1);
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

#[test]
fn failures_count_attempts_and_success_resets_them() {
    let mut store = Store::open_in_memory().unwrap();
    let failed = DecodedFile {
        path: PathBuf::from("/s/part/m/prt_x.json"),
        kind: FileKind::Part,
        stamp: FileStamp { mtime_ns: 5, size: 0 },
        path_record_id: "prt_x".into(),
        outcome: FileOutcome::Failed("empty file (0 bytes)".into()),
    };
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
    let incremental = store
        .reader()
        .unwrap()
        .query("SELECT trace_id, parent_trace_id, tokens_input, cost, parent_agent FROM agent_traces ORDER BY trace_id")
        .unwrap()
        .1;
    store.refresh_derived(&TraceScope::All).unwrap();
    let full = store
        .reader()
        .unwrap()
        .query("SELECT trace_id, parent_trace_id, tokens_input, cost, parent_agent FROM agent_traces ORDER BY trace_id")
        .unwrap()
        .1;
    assert_eq!(incremental, full, "incremental traces must equal a full recompute");
    let text = |value: &Value| match value {
        Value::Text(text) => text.clone(),
        Value::Null => "NULL".into(),
        other => format!("{other:?}"),
    };
    let rows: Vec<(String, String)> = full.iter().map(|row| (text(&row[0]), text(&row[1]))).collect();
    assert_eq!(
        rows,
        vec![
            ("prt_t1".to_owned(), "root_ses_r".to_owned()),
            ("prt_t2".to_owned(), "prt_t1".to_owned()),
            ("root_ses_r".to_owned(), "NULL".to_owned()),
        ]
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
