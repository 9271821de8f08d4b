//! A model-based test of the whole daemon: proptest generates sequences of file operations —
//! create, in-place partial rewrite, full rewrite, delete, rename, and moving a session between
//! project folders — applied to a live tree while `ducktail run` follows it (watcher only: the
//! periodic reconcile is an hour away). After each sequence the contract tables must equal what a
//! plain in-memory model of the tree says they hold. A failure shrinks to a minimal sequence.
//!
//! `DUCKTAIL_MODEL_CASES=N` runs N sequences (default 4, which CI runs).

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use crate::support::*;

const MESSAGES: [(&str, &str); 4] = [("msg_1", "ses_1"), ("msg_2", "ses_1"), ("msg_3", "ses_2"), ("msg_4", "ses_2")];
const SESSIONS: [&str; 2] = ["ses_1", "ses_2"];
const PROJECTS: [&str; 2] = ["proj_a", "proj_b"];
/// Few part ids, so operations collide on the same files often.
const PART_IDS: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    /// Write a part file (create or replace it whole).
    Write { part: usize, message: usize, text: String },
    /// Rewrite a part in place the way OpenCode does: truncate, write half, then the rest.
    RewriteInPlace { part: usize, text: String },
    /// Delete a part file.
    Delete { part: usize },
    /// Rename a part file to another id (its content follows the new name).
    Rename { from: usize, to: usize },
    /// Move a session file to the other project folder.
    MoveSession { session: usize },
    /// Let time pass between operations.
    Pause { millis: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let text = "[a-z]{1,12}";
    prop_oneof![
        4 => (0..PART_IDS, 0..MESSAGES.len(), text).prop_map(|(part, message, text)| Op::Write { part, message, text }),
        2 => (0..PART_IDS, text).prop_map(|(part, text)| Op::RewriteInPlace { part, text }),
        2 => (0..PART_IDS).prop_map(|part| Op::Delete { part }),
        2 => (0..PART_IDS, 0..PART_IDS).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => (0..SESSIONS.len()).prop_map(|session| Op::MoveSession { session }),
        1 => (0u64..40).prop_map(|millis| Op::Pause { millis }),
    ]
}

/// What the tree holds, and so what the tables must hold.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model {
    /// part id → (message id, text)
    parts: BTreeMap<String, (String, String)>,
    /// session id → project folder
    sessions: BTreeMap<String, String>,
}

fn part_id(index: usize) -> String {
    format!("prt_{index:02}")
}

fn session_of(message: &str) -> &'static str {
    MESSAGES.iter().find(|(id, _)| *id == message).map(|(_, session)| *session).unwrap()
}

fn part_path(storage: &Path, message: &str, id: &str) -> PathBuf {
    storage.join("part").join(message).join(format!("{id}.json"))
}

fn part_json(id: &str, message: &str, text: &str) -> String {
    format!(r#"{{"id":"{id}","sessionID":"{}","messageID":"{message}","type":"text","text":"{text}"}}"#, session_of(message))
}

fn session_json(id: &str, project: &str) -> String {
    format!(r#"{{"id":"{id}","projectID":"{project}","title":"{id}","time":{{"created":1700000000000,"updated":1700000000000}}}}"#)
}

/// The starting tree: two projects, two sessions, four messages, no parts.
fn base_tree(opencode: &Path) -> Model {
    let storage = opencode.join("storage");
    let mut model = Model::default();
    for project in PROJECTS {
        std::fs::create_dir_all(storage.join("project")).unwrap();
        std::fs::write(storage.join(format!("project/{project}.json")), format!(r#"{{"id":"{project}","worktree":"/w/{project}"}}"#)).unwrap();
    }
    for session in SESSIONS {
        let dir = storage.join("session").join(PROJECTS[0]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{session}.json")), session_json(session, PROJECTS[0])).unwrap();
        model.sessions.insert(session.to_owned(), PROJECTS[0].to_owned());
    }
    for (message, session) in MESSAGES {
        let dir = storage.join("message").join(session);
        std::fs::create_dir_all(&dir).unwrap();
        let json = format!(r#"{{"id":"{message}","sessionID":"{session}","role":"user","time":{{"created":1700000000000}}}}"#);
        std::fs::write(dir.join(format!("{message}.json")), json).unwrap();
    }
    model
}

/// Applies `op` to the tree and the model alike.
fn apply(op: &Op, storage: &Path, model: &mut Model) {
    match op {
        Op::Write { part, message, text } => {
            let id = part_id(*part);
            let message = MESSAGES[*message].0;
            // One id lives at one path: writing it under another message moves it.
            if let Some((old_message, _)) = model.parts.get(&id) {
                if old_message != message {
                    std::fs::remove_file(part_path(storage, old_message, &id)).unwrap();
                }
            }
            let path = part_path(storage, message, &id);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, part_json(&id, message, text)).unwrap();
            model.parts.insert(id, (message.to_owned(), text.clone()));
        }
        Op::RewriteInPlace { part, text } => {
            let id = part_id(*part);
            let Some((message, _)) = model.parts.get(&id).cloned() else { return };
            let json = part_json(&id, &message, text);
            let mut file = std::fs::OpenOptions::new().write(true).open(part_path(storage, &message, &id)).unwrap();
            file.set_len(0).unwrap();
            let (first, rest) = json.split_at(json.len() / 2);
            file.write_all(first.as_bytes()).unwrap();
            file.flush().unwrap();
            std::thread::sleep(Duration::from_millis(2));
            file.seek(std::io::SeekFrom::Start(first.len() as u64)).unwrap();
            file.write_all(rest.as_bytes()).unwrap();
            model.parts.insert(id, (message, text.clone()));
        }
        Op::Delete { part } => {
            let id = part_id(*part);
            if let Some((message, _)) = model.parts.remove(&id) {
                std::fs::remove_file(part_path(storage, &message, &id)).unwrap();
            }
        }
        Op::Rename { from, to } => {
            let (from, to) = (part_id(*from), part_id(*to));
            if from == to || model.parts.contains_key(&to) {
                return;
            }
            let Some((message, text)) = model.parts.remove(&from) else { return };
            let (old, new) = (part_path(storage, &message, &from), part_path(storage, &message, &to));
            std::fs::rename(&old, &new).unwrap();
            std::fs::write(&new, part_json(&to, &message, &text)).unwrap();
            model.parts.insert(to, (message, text));
        }
        Op::MoveSession { session } => {
            let id = SESSIONS[*session];
            let from = model.sessions[id].clone();
            let to = if from == PROJECTS[0] { PROJECTS[1] } else { PROJECTS[0] };
            let target = storage.join("session").join(to);
            std::fs::create_dir_all(&target).unwrap();
            let new_path = target.join(format!("{id}.json"));
            std::fs::rename(storage.join("session").join(&from).join(format!("{id}.json")), &new_path).unwrap();
            // OpenCode rewrites the moved file with its new project id.
            std::fs::write(&new_path, session_json(id, to)).unwrap();
            model.sessions.insert(id.to_owned(), to.to_owned());
        }
        Op::Pause { millis } => std::thread::sleep(Duration::from_millis(*millis)),
    }
}

/// What the daemon's tables say, in the model's terms.
fn observed(daemon: &Daemon) -> Model {
    let parts =
        daemon.sql("SELECT id, message_id, text FROM parts ORDER BY id").into_iter().map(|row| (row[0].clone(), (row[1].clone(), row[2].clone()))).collect();
    let sessions = daemon.sql("SELECT id, project_id FROM sessions ORDER BY id").into_iter().map(|row| (row[0].clone(), row[1].clone())).collect();
    Model { parts, sessions }
}

/// Runs one sequence against a fresh daemon; `Err` describes how the tables differ from the model.
fn run_sequence(ops: &[Op]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let mut model = base_tree(&opencode);
    let db = dir.path().join("model.duckdb");
    let config = test_config(dir.path(), "[reconcile]\ninterval = \"1h\"\n");
    let daemon = Daemon::start(&opencode, &db, &config);
    let storage = opencode.join("storage");
    for op in ops {
        apply(op, &storage, &mut model);
    }
    // Quiescence is the model's own condition: the tables say what the tree holds and every file
    // is indexed (a file read mid-rewrite is `pending` until its retry, even when its final
    // content equals what the tables already hold).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = observed(&daemon);
        let not_indexed = daemon.scalar("SELECT count(*) FROM file_index WHERE status <> 'indexed'");
        if last == model && not_indexed == 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "after 30 s the daemon has not settled on the model ({not_indexed} files not indexed although every file is valid)\nmodel:    {model:?}\nobserved: {last:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !daemon.terminate().success() {
        return Err("the daemon did not exit cleanly".to_owned());
    }
    Ok(())
}

#[test]
fn random_file_operations_on_a_live_tree_end_equal_to_the_model() {
    let cases = std::env::var("DUCKTAIL_MODEL_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(4);
    let config = ProptestConfig { cases, max_shrink_iters: 64, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..40))| {
        if let Err(difference) = run_sequence(&ops) {
            return Err(TestCaseError::fail(difference));
        }
    });
}
