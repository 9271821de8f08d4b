//! Tests of the generated trees: determinism, shape, accounting, delegation, writing and laziness.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::ids::is_well_formed;

fn config(target_files: usize) -> GeneratorConfig {
    GeneratorConfig { target_files, ..Default::default() }
}

/// The 10 000-file tree most tests inspect, generated once.
fn ten_thousand() -> &'static [GeneratedFile] {
    static FILES: OnceLock<Vec<GeneratedFile>> = OnceLock::new();
    FILES.get_or_init(|| plan(&GeneratorConfig { target_files: 10_000, bad_files: 10, ..Default::default() }).collect())
}

fn parsed(files: &[GeneratedFile]) -> Vec<(&GeneratedFile, Value)> {
    files
        .iter()
        .filter(|file| file.kind != "bad")
        .map(|file| {
            let value = serde_json::from_slice(&file.contents).unwrap_or_else(|error| panic!("{} does not parse: {error}", file.relative_path.display()));
            (file, value)
        })
        .collect()
}

fn components(path: &Path) -> Vec<String> {
    path.iter().map(|part| part.to_string_lossy().into_owned()).collect()
}

fn file_stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn same_seed_gives_identical_bytes_and_other_seed_differs() {
    let first: Vec<GeneratedFile> = plan(&GeneratorConfig { bad_files: 3, ..config(3_000) }).collect();
    let second: Vec<GeneratedFile> = plan(&GeneratorConfig { bad_files: 3, ..config(3_000) }).collect();
    assert_eq!(first, second);
    let other: Vec<GeneratedFile> = plan(&GeneratorConfig { seed: 43, bad_files: 3, ..config(3_000) }).collect();
    assert_ne!(first, other);
    assert!(first.len() >= 3_000 && first.len() < 6_000, "{} files", first.len());
}

#[test]
fn parts_are_about_eighty_percent_of_the_files() {
    let files = ten_thousand();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for file in files {
        *by_kind.entry(file.kind).or_default() += 1;
    }
    let share = by_kind["part"] as f64 / files.len() as f64;
    assert!((0.75..=0.85).contains(&share), "part share {share:.3} in {by_kind:?}");
    for kind in KINDS {
        assert!(by_kind.get(kind).copied().unwrap_or(0) > 0, "no {kind} files: {by_kind:?}");
    }
    assert!((3..=6).contains(&by_kind["project"]));
}

#[test]
fn every_good_file_is_pretty_json_with_a_well_formed_unique_id_at_the_right_path() {
    let files = ten_thousand();
    let mut ids = BTreeSet::new();
    for (file, value) in parsed(files) {
        let path = components(&file.relative_path);
        assert_eq!(path[0], "storage");
        assert!(!file.contents.ends_with(b"\n"), "no trailing newline");
        assert!(file.contents.starts_with(b"{\n  \"id\": ") || file.contents.starts_with(b"["), "{path:?}");
        match file.kind {
            "todo" | "session_diff" => {
                assert_eq!(path[1], file.kind);
                assert!(value.is_array(), "{path:?}");
                assert!(is_well_formed(&file_stem(&file.relative_path), "ses"));
                continue;
            }
            _ => {}
        }
        let id = value["id"].as_str().unwrap_or_else(|| panic!("{path:?} has no string id"));
        assert_eq!(file_stem(&file.relative_path), id);
        assert!(ids.insert(id.to_owned()), "duplicate id {id}");
        match file.kind {
            "project" => assert!(id == "global" || (id.len() == 40 && id.bytes().all(|byte| byte.is_ascii_hexdigit()))),
            "session" => {
                assert!(is_well_formed(id, "ses"), "{id}");
                assert_eq!(value["projectID"].as_str(), Some(path[2].as_str()));
                assert!(value["version"].as_str().unwrap().starts_with("1.1."));
            }
            "message" => {
                assert!(is_well_formed(id, "msg"), "{id}");
                assert_eq!(value["sessionID"].as_str(), Some(path[2].as_str()));
            }
            "part" => {
                assert!(is_well_formed(id, "prt"), "{id}");
                assert_eq!(value["messageID"].as_str(), Some(path[2].as_str()));
                assert!(is_well_formed(value["sessionID"].as_str().unwrap(), "ses"));
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    let paths: BTreeSet<&PathBuf> = files.iter().map(|file| &file.relative_path).collect();
    assert_eq!(paths.len(), files.len(), "every path is written once");
}

#[test]
fn message_cost_is_the_sum_of_its_steps_and_tokens_are_the_last_step() {
    let files = ten_thousand();
    let mut steps: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    let mut messages = Vec::new();
    for (file, value) in parsed(files) {
        match (file.kind, value["type"].as_str()) {
            ("part", Some("step-finish")) => {
                let message = value["messageID"].as_str().unwrap().to_owned();
                steps.entry(message).or_default().push((value["id"].as_str().unwrap().to_owned(), value));
            }
            ("message", _) => messages.push(value),
            _ => {}
        }
    }
    let mut checked = 0;
    let mut errors = 0;
    for message in messages.iter().filter(|message| message["role"] == "assistant") {
        let id = message["id"].as_str().unwrap();
        let mut finished = steps.remove(id).unwrap_or_default();
        finished.sort_by(|left, right| left.0.cmp(&right.0));
        let sum: f64 = finished.iter().map(|(_, step)| step["cost"].as_f64().unwrap()).sum();
        assert!((message["cost"].as_f64().unwrap() - sum).abs() < 1e-9, "{id}: cost {} vs {sum}", message["cost"]);
        match finished.last() {
            Some((_, last)) => assert_eq!(message["tokens"], last["tokens"], "{id}"),
            None => assert_eq!(message["tokens"]["output"], 0, "{id}"),
        }
        if message.get("error").is_some() {
            errors += 1;
            assert!(message.get("finish").is_none(), "{id}: errored messages have no finish");
            assert!(["APIError", "MessageAbortedError"].contains(&message["error"]["name"].as_str().unwrap()));
        } else {
            assert_eq!(message["finish"], finished.last().unwrap().1["reason"], "{id}");
        }
        checked += 1;
    }
    assert!(checked > 500 && errors > 0, "{checked} assistant messages, {errors} errors");
}

#[test]
fn delegation_nests_and_every_task_names_a_child_of_its_session() {
    let files = ten_thousand();
    let mut parents: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut tasks = Vec::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for (file, value) in parsed(files) {
        if file.kind == "session" {
            parents.insert(value["id"].as_str().unwrap().to_owned(), value["parentID"].as_str().map(str::to_owned));
        }
        if value["type"] == "tool" {
            *statuses.entry(value["state"]["status"].as_str().unwrap().to_owned()).or_default() += 1;
            assert!(value["callID"].as_str().is_some_and(|call| !call.is_empty()));
            if value["tool"] == "task" {
                tasks.push(value);
            }
        }
    }
    assert!(!tasks.is_empty());
    for task in &tasks {
        let child = task["state"]["metadata"]["sessionId"].as_str().expect("task names its child session");
        let parent = parents.get(child).unwrap_or_else(|| panic!("child {child} was not generated"));
        assert_eq!(parent.as_deref(), task["sessionID"].as_str(), "child {child}");
        assert!(task["state"]["input"]["subagent_type"].is_string());
        assert!(task["state"]["output"].as_str().unwrap().starts_with(&format!("task_id: {child}")));
    }
    let depth = |id: &String| {
        let mut depth = 0;
        let mut current = id;
        while let Some(Some(parent)) = parents.get(current) {
            depth += 1;
            current = parent;
        }
        depth
    };
    let deepest = parents.keys().map(depth).max().unwrap();
    assert!((2..=3).contains(&deepest), "deepest delegation {deepest}");
    assert!(statuses["completed"] > statuses["error"] && statuses["error"] > 0, "{statuses:?}");
}

#[test]
fn message_ids_ascend_with_time_and_session_ids_descend() {
    let files = ten_thousand();
    let mut last_session: Option<(i64, String)> = None;
    let mut by_session: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for (file, value) in parsed(files) {
        match file.kind {
            "session" if value.get("parentID").is_none() => {
                let created = value["time"]["created"].as_i64().unwrap();
                let hex = value["id"].as_str().unwrap()[4..16].to_owned();
                if let Some((previous_created, previous_hex)) = &last_session {
                    assert!(created > *previous_created && hex < *previous_hex, "newer root sessions sort first");
                }
                last_session = Some((created, hex));
            }
            "message" => by_session
                .entry(value["sessionID"].as_str().unwrap().to_owned())
                .or_default()
                .push((value["time"]["created"].as_i64().unwrap(), value["id"].as_str().unwrap().to_owned())),
            _ => {}
        }
    }
    for messages in by_session.values() {
        let mut by_time = messages.clone();
        by_time.sort();
        let mut by_id = messages.clone();
        by_id.sort_by(|left, right| left.1.cmp(&right.1));
        assert_eq!(by_time, by_id);
    }
}

#[test]
fn large_outputs_and_bad_files_are_where_configured() {
    let files = ten_thousand();
    let large = files.iter().filter(|file| file.kind == "part" && file.contents.len() >= 256 * 1024).count();
    assert!(large >= 3, "{large} large parts");
    let bad: Vec<&GeneratedFile> = files.iter().filter(|file| file.kind == "bad").collect();
    assert_eq!(bad.len(), 10);
    for file in &bad {
        let path = components(&file.relative_path);
        assert_eq!(path[1], "part");
        assert!(is_well_formed(&path[2], "msg") && is_well_formed(&file_stem(&file.relative_path), "prt"));
        let usable = serde_json::from_slice::<Value>(&file.contents).is_ok_and(|value| value["id"].is_string());
        assert!(!usable, "{}", file.relative_path.display());
    }
    assert!(bad[0].contents.is_empty());
    assert!(bad[1].contents.len() == 413 && bad[1].contents.iter().all(|byte| *byte == 0));
    assert_eq!(bad[3].contents, b"hello");
    // Spread through the stream, not bunched at the end.
    let first_bad = files.iter().position(|file| file.kind == "bad").unwrap();
    assert!(first_bad < files.len() / 5, "first bad file at {first_bad}");
}

#[test]
fn no_delegation_and_no_large_outputs_when_disabled() {
    let files: Vec<GeneratedFile> = plan(&GeneratorConfig { max_delegation_depth: 0, large_output_every: 0, ..config(3_000) }).collect();
    for (_, value) in parsed(&files) {
        assert!(value.get("parentID").is_none() || value["role"] == "assistant");
        assert_ne!(value["tool"], "task");
    }
    assert!(files.iter().all(|file| file.contents.len() < 200 * 1024));
}

fn walk(directory: &Path, found: &mut BTreeMap<PathBuf, Vec<u8>>, root: &Path) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, found, root);
        } else {
            let contents = std::fs::read(&path).unwrap();
            found.insert(path.strip_prefix(root).unwrap().to_path_buf(), contents);
        }
    }
}

#[test]
fn generate_writes_exactly_the_plan_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = GeneratorConfig { seed: 7, bad_files: 5, ..config(2_000) };
    let tree = generate(dir.path(), &config).unwrap();
    let planned: Vec<GeneratedFile> = plan(&config).collect();
    let mut written = BTreeMap::new();
    walk(dir.path(), &mut written, dir.path());
    assert_eq!(written.len(), planned.len());
    for file in &planned {
        assert_eq!(written.get(&file.relative_path), Some(&file.contents), "{}", file.relative_path.display());
    }
    assert_eq!(tree.total_files, planned.len());
    let mut by_kind = BTreeMap::new();
    for file in &planned {
        *by_kind.entry(file.kind).or_insert(0) += 1;
    }
    assert_eq!(tree.files_by_kind, by_kind);
    assert_eq!(tree.sessions, by_kind["session"]);
    let roots = parsed(&planned).iter().filter(|(file, value)| file.kind == "session" && value.get("parentID").is_none()).count();
    assert_eq!(tree.root_sessions, roots);
    let bad: Vec<PathBuf> = planned.iter().filter(|file| file.kind == "bad").map(|file| file.relative_path.clone()).collect();
    assert_eq!(tree.bad_files, bad);
    assert_eq!(tree.bad_files.len(), 5);
}

#[test]
fn plan_is_lazy_even_for_a_million_files() {
    let started = Instant::now();
    let first: Vec<GeneratedFile> = plan(&config(1_000_000)).take(1_000).collect();
    assert_eq!(first.len(), 1_000);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // The start of a bigger plan is the same as a smaller plan's start.
    let small: Vec<GeneratedFile> = plan(&config(500)).take(300).collect();
    assert_eq!(&first[..300], &small[..]);
}

#[test]
fn tiny_targets_still_produce_a_complete_tree() {
    let files: Vec<GeneratedFile> = plan(&GeneratorConfig { bad_files: 2, ..config(1) }).collect();
    let kinds: BTreeSet<&str> = files.iter().map(|file| file.kind).collect();
    assert!(kinds.contains("project") && kinds.contains("session") && kinds.contains("part"));
    assert_eq!(files.iter().filter(|file| file.kind == "bad").count(), 2);
    let none: Vec<GeneratedFile> = plan(&config(0)).collect();
    assert!(none.iter().all(|file| file.kind == "project"));
}
