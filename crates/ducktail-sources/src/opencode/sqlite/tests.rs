//! The reader against the real database OpenCode 1.18.33 wrote (`shared/fixtures/opencode-sqlite`),
//! read as it is and as a writable copy changed the way OpenCode changes it.

use std::collections::BTreeMap;

use super::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/opencode-sqlite/opencode.db");
const ROOT_SESSION: &str = "ses_dfe591e98ffeKXu8zl55KXl6Zb";

/// Reads once and applies every chunk, as the pipeline does after each commit.
fn read_all(database: &mut OpencodeDatabase, mirror: &mut Mirror, mode: ReadMode) -> (ReadSummary, Vec<Chunk>) {
    let mut chunks = Vec::new();
    let summary = database
        .read(mirror, mode, &DecodeLimits::default(), &mut |chunk| {
            chunks.push(chunk);
            true
        })
        .expect("read");
    for chunk in &chunks {
        mirror.apply(&chunk.updates);
    }
    (summary, chunks)
}

fn count_by_kind(chunks: &[Chunk]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for records in chunks.iter().flat_map(|chunk| &chunk.upserts) {
        *counts.entry(records.records.kind().as_str()).or_default() += 1;
    }
    counts
}

fn removed(chunks: &[Chunk]) -> Vec<(FileKind, String)> {
    let mut removed: Vec<_> = chunks.iter().flat_map(|chunk| &chunk.removed).map(|record| (record.kind, record.id.clone())).collect();
    removed.sort();
    removed
}

/// A writable copy of the fixture (it has no `-wal`: it was checkpointed) and a writer connection
/// set up like OpenCode's.
fn writable_copy() -> (tempfile::TempDir, PathBuf, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opencode.db");
    std::fs::copy(FIXTURE, &path).unwrap();
    let writer = Connection::open(&path).unwrap();
    writer.pragma_update(None, "journal_mode", "WAL").unwrap();
    (dir, path, writer)
}

#[test]
fn the_fixture_reads_completely_through_a_read_only_folder() {
    // The shared fixture folder is read-only and has no -wal: the immutable fallback opens it.
    let mut database = OpencodeDatabase::open(Path::new(FIXTURE)).expect("open the fixture");
    let mut mirror = Mirror::default();
    let (summary, chunks) = read_all(&mut database, &mut mirror, ReadMode::Full);
    assert_eq!(summary.rejected, 0);
    assert_eq!(summary.removed, 0);
    let counts = count_by_kind(&chunks);
    assert_eq!(counts, BTreeMap::from([("message", 41), ("part", 110), ("project", 1), ("session", 5), ("todo", 1)]));
    let step_cost: f64 = chunks
        .iter()
        .flat_map(|chunk| &chunk.upserts)
        .filter_map(|records| match &records.records {
            Records::Part { step: Some(step), .. } if step.event_type == "finish" => step.cost,
            _ => None,
        })
        .sum();
    assert!((step_cost - 0.012646).abs() < 1e-9, "step-finish costs sum to {step_cost}");
    // Ids come back from the columns, so the documents decode like the JSON files.
    let task = chunks
        .iter()
        .flat_map(|chunk| &chunk.upserts)
        .find_map(|records| match &records.records {
            Records::Part { part, .. } if part.tool_name.as_deref() == Some("task") && part.child_session_id.is_some() => Some(part.clone()),
            _ => None,
        })
        .expect("a task part");
    assert_eq!(task.session_id, ROOT_SESSION);
    assert!(task.message_id.starts_with("msg_"));
    assert!(task.raw.json.contains("\"messageID\""));
    let todos = chunks.iter().flat_map(|chunk| &chunk.upserts).find_map(|records| match &records.records {
        Records::Todos { session_id, items } => Some((session_id.clone(), items.len())),
        _ => None,
    });
    assert_eq!(todos, Some((ROOT_SESSION.to_owned(), 2)));

    // Nothing changed: an incremental read is skipped, a full one finds nothing.
    let (summary, _) = read_all(&mut database, &mut mirror, ReadMode::Incremental);
    assert!(summary.unchanged);
    let (summary, chunks) = read_all(&mut database, &mut mirror, ReadMode::Full);
    assert_eq!((summary.upserted, summary.removed), (0, 0), "{chunks:?}");
}

#[test]
fn live_writes_updates_and_deletes_are_found_incrementally() {
    let (_dir, path, writer) = writable_copy();
    let mut database = OpencodeDatabase::open(&path).unwrap();
    let mut mirror = Mirror::default();
    read_all(&mut database, &mut mirror, ReadMode::Full);

    let now: i64 = writer.query_row("SELECT max(time_updated) + 1000 FROM part", [], |row| row.get(0)).unwrap();
    let (message_id, victim): (String, String) = writer
        .query_row(
            "SELECT m.id, (SELECT id FROM message WHERE session_id = m.session_id AND id <> m.id ORDER BY id DESC LIMIT 1)
             FROM message m WHERE m.session_id = ?1 ORDER BY m.id LIMIT 1",
            [ROOT_SESSION],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let victim_parts: i64 = writer.query_row("SELECT count(*) FROM part WHERE message_id = ?", [&victim], |row| row.get(0)).unwrap();
    writer
        .execute_batch(&format!(
            "BEGIN IMMEDIATE;
             INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
                 VALUES ('prt_live_1', '{message_id}', '{ROOT_SESSION}', {now}, {now}, '{{\"type\":\"text\",\"text\":\"hello live\"}}');
             UPDATE message SET time_updated = {now}, data = json_set(data, '$.agent', 'plan') WHERE id = '{message_id}';
             DELETE FROM part WHERE message_id = '{victim}';
             DELETE FROM message WHERE id = '{victim}';
             UPDATE event_sequence SET seq = seq + 1 WHERE aggregate_id = '{ROOT_SESSION}';
             INSERT INTO event (id, aggregate_id, seq, type, data)
                 SELECT 'evt_live_1', '{ROOT_SESSION}', seq, 'message.removed.1', '{{}}' FROM event_sequence WHERE aggregate_id = '{ROOT_SESSION}';
             DELETE FROM todo WHERE session_id = '{ROOT_SESSION}';
             INSERT INTO todo (session_id, content, status, priority, position, time_created, time_updated)
                 VALUES ('{ROOT_SESSION}', 'only one left', 'pending', 'high', 0, {now}, {now});
             COMMIT;"
        ))
        .unwrap();

    let (summary, chunks) = read_all(&mut database, &mut mirror, ReadMode::Incremental);
    assert!(!summary.unchanged);
    assert_eq!(count_by_kind(&chunks), BTreeMap::from([("message", 1), ("part", 1), ("todo", 1)]));
    let upserted: Vec<&Records> = chunks.iter().flat_map(|chunk| &chunk.upserts).map(|records| &records.records).collect();
    assert!(upserted
        .iter()
        .any(|records| matches!(records, Records::Message(message) if message.id == message_id && message.agent.as_deref() == Some("plan"))));
    assert!(upserted
        .iter()
        .any(|records| matches!(records, Records::Part { part, .. } if part.id == "prt_live_1" && part.text.as_deref() == Some("hello live"))));
    let gone = removed(&chunks);
    assert_eq!(gone.iter().filter(|(kind, _)| *kind == FileKind::Message).count(), 1);
    assert_eq!(gone.iter().filter(|(kind, _)| *kind == FileKind::Part).count() as i64, victim_parts);
    assert!(gone.contains(&(FileKind::Message, victim.clone())));

    // The full comparison agrees: nothing left to deliver.
    let (summary, chunks) = read_all(&mut database, &mut mirror, ReadMode::Full);
    assert_eq!((summary.upserted, summary.removed), (0, 0), "{chunks:?}");
}

#[test]
fn a_deleted_session_takes_its_rows_with_it() {
    let (_dir, path, writer) = writable_copy();
    let mut database = OpencodeDatabase::open(&path).unwrap();
    let mut mirror = Mirror::default();
    read_all(&mut database, &mut mirror, ReadMode::Full);
    let child = "ses_dfe57ef31ffekiAsMswTpHzkrz";
    let (messages, parts): (i64, i64) = writer
        .query_row("SELECT (SELECT count(*) FROM message WHERE session_id = ?1), (SELECT count(*) FROM part WHERE session_id = ?1)", [child], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    // As OpenCode does it: the session row goes, the cascade takes messages, parts and the log.
    writer
        .execute_batch(&format!(
            "PRAGMA foreign_keys = ON; BEGIN IMMEDIATE; DELETE FROM session WHERE id = '{child}';
             DELETE FROM event_sequence WHERE aggregate_id = '{child}'; COMMIT;"
        ))
        .unwrap();
    let (_, chunks) = read_all(&mut database, &mut mirror, ReadMode::Incremental);
    let gone = removed(&chunks);
    assert!(gone.contains(&(FileKind::Session, child.to_owned())));
    assert_eq!(gone.iter().filter(|(kind, _)| *kind == FileKind::Message).count() as i64, messages);
    assert_eq!(gone.iter().filter(|(kind, _)| *kind == FileKind::Part).count() as i64, parts);
    assert!(count_by_kind(&chunks).is_empty());
}

#[test]
fn a_mirror_rebuilt_from_the_store_redelivers_only_the_small_tables() {
    let mut database = OpencodeDatabase::open(Path::new(FIXTURE)).unwrap();
    let mut first = Mirror::default();
    let (_, chunks) = read_all(&mut database, &mut first, ReadMode::Full);
    let stored = chunks.iter().flat_map(|chunk| &chunk.upserts).map(|records| StoredRecord {
        kind: records.records.kind(),
        id: records.records.record_id().to_owned(),
        session_id: records.records.session_id().map(str::to_owned),
        version_ms: Some(records.version_ms),
    });
    let mut rebuilt = Mirror::from_stored(stored);
    let (summary, chunks) = read_all(&mut database, &mut rebuilt, ReadMode::Full);
    assert_eq!(summary.removed, 0);
    assert_eq!(count_by_kind(&chunks), BTreeMap::from([("project", 1), ("session", 5), ("todo", 1)]));

    // A record the store holds but the database no longer has is removed.
    let mut stale =
        Mirror::from_stored([StoredRecord { kind: FileKind::Part, id: "prt_gone".into(), session_id: Some(ROOT_SESSION.into()), version_ms: Some(1) }]);
    let (_, chunks) = read_all(&mut database, &mut stale, ReadMode::Full);
    assert_eq!(removed(&chunks), vec![(FileKind::Part, "prt_gone".to_owned())]);
}

#[test]
fn a_row_that_does_not_decode_is_rejected_and_its_neighbours_are_read() {
    let (_dir, path, writer) = writable_copy();
    let mut database = OpencodeDatabase::open(&path).unwrap();
    let mut mirror = Mirror::default();
    read_all(&mut database, &mut mirror, ReadMode::Full);
    writer
        .execute_batch(
            r#"INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
                 SELECT 'prt_bad', message_id, session_id, 1, max(time_updated) + 1, '{not json' FROM part;
             INSERT INTO part (id, message_id, session_id, time_created, time_updated, data)
                 SELECT 'prt_good', message_id, session_id, 1, max(time_updated) + 1, '{"type":"text","text":"ok"}' FROM part;"#,
        )
        .unwrap();
    let (summary, chunks) = read_all(&mut database, &mut mirror, ReadMode::Incremental);
    assert_eq!(summary.rejected, 1);
    let rejected = &chunks.iter().flat_map(|chunk| &chunk.rejected).next().unwrap();
    assert_eq!((rejected.kind, rejected.id.as_str()), (FileKind::Part, "prt_bad"));
    assert!(rejected.reason.contains("not valid JSON"), "{}", rejected.reason);
    assert_eq!(count_by_kind(&chunks), BTreeMap::from([("part", 1)]));
    // Rejected once: it is not reported again until it changes.
    let (summary, _) = read_all(&mut database, &mut mirror, ReadMode::Full);
    assert_eq!(summary.rejected, 0);
}

#[test]
fn a_database_without_opencode_tables_reads_as_empty_and_a_missing_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opencode.db");
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE unrelated (x); PRAGMA journal_mode = WAL;").unwrap();
    let mut database = OpencodeDatabase::open(&path).unwrap();
    let (summary, chunks) = read_all(&mut database, &mut Mirror::default(), ReadMode::Full);
    assert_eq!(summary.upserted, 0);
    assert!(chunks.iter().all(Chunk::is_empty));

    let missing = OpencodeDatabase::open(&dir.path().join("nope.db")).err().unwrap();
    assert!(matches!(missing, DatabaseError::Missing { .. }), "{missing}");
    std::fs::write(dir.path().join("garbage.db"), vec![7u8; 8192]).unwrap();
    let corrupt = OpencodeDatabase::open(&dir.path().join("garbage.db")).err().unwrap();
    assert!(matches!(corrupt, DatabaseError::Corrupt { .. }), "{corrupt}");
    assert!(corrupt.to_string().contains("garbage.db"));
}

#[test]
fn a_commit_that_fails_is_delivered_again() {
    let mut database = OpencodeDatabase::open(Path::new(FIXTURE)).unwrap();
    let mirror = Mirror::default();
    let mut calls = 0;
    let summary = database
        .read(&mirror, ReadMode::Full, &DecodeLimits::default(), &mut |_| {
            calls += 1;
            false
        })
        .unwrap();
    assert_eq!(calls, 1, "delivery stops at the first refusal");
    assert!(summary.upserted > 0);
    // The mirror was not applied, so everything comes again.
    let mut mirror = mirror;
    let (summary, _) = read_all(&mut database, &mut mirror, ReadMode::Incremental);
    assert_eq!(summary.upserted, 41 + 110 + 5 + 1 + 1);
}

#[test]
fn a_replaced_file_is_noticed_and_a_vanished_one_removes_everything_delivered() {
    let (dir, path, writer) = writable_copy();
    let mut database = OpencodeDatabase::open(&path).unwrap();
    let mut mirror = Mirror::default();
    let (summary, _) = read_all(&mut database, &mut mirror, ReadMode::Full);
    assert!(!database.is_replaced());
    drop(writer);
    let staged = dir.path().join("staged.db");
    std::fs::copy(&path, &staged).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    assert!(database.is_replaced(), "a rename over the file is a new database");
    let everything = mirror.removal_of_everything();
    assert_eq!(everything.removed.len(), summary.upserted);
    mirror.apply(&everything.updates);
    assert!(mirror.is_empty());
}

#[test]
fn a_database_locked_exclusively_is_busy_not_corrupt() {
    let (_dir, path, writer) = writable_copy();
    // A writer in exclusive locking mode keeps every other connection out until it lets go.
    writer.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; DELETE FROM todo;").unwrap();
    let error = OpencodeDatabase::open(&path).err().expect("locked out");
    assert!(matches!(error, DatabaseError::Busy { .. }), "{error}");
    assert!(error.to_string().contains("opencode.db") && error.to_string().contains("retrying"), "{error}");
    drop(writer);
    let mut database = OpencodeDatabase::open(&path).expect("readable again once the lock is gone");
    let (summary, _) = read_all(&mut database, &mut Mirror::default(), ReadMode::Full);
    assert!(summary.upserted > 0);
}
