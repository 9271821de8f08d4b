//! Expectations computed independently from the JSON files, without ducktail's decoder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What a correct index of a tree contains, derived straight from the files.
#[derive(Debug, Default)]
pub struct Expected {
    /// session id → parent id.
    pub sessions: BTreeMap<String, Option<String>>,
    /// message id → (session id, tokens.input, cost).
    pub messages: BTreeMap<String, (String, i64, f64)>,
    /// part ids.
    pub parts: BTreeSet<String>,
    /// session id → (sum input, sum output, sum cost) over step-finish parts.
    pub finish_sums: BTreeMap<String, (i64, i64, f64)>,
    /// session id → the models (`provider/model` of their message) of its step-finish parts.
    pub finish_models: BTreeMap<String, BTreeSet<String>>,
    /// message id → its `provider/model`, when it names both.
    pub message_models: BTreeMap<String, String>,
    /// (task part id, session id, child session id).
    pub delegations: BTreeSet<(String, String, String)>,
    /// Todo items in total.
    pub todos: usize,
    /// Session-diff items in total.
    pub file_diffs: usize,
    /// Project ids.
    pub projects: BTreeSet<String>,
    /// Files that do not parse as the right shape.
    pub bad_files: BTreeSet<PathBuf>,
    /// Files that should be indexed.
    pub good_files: BTreeSet<PathBuf>,
}

fn read(path: &Path) -> Option<Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_str(&String::from_utf8_lossy(&bytes)).ok()
}

fn json_files(dir: &Path, depth: usize) -> Vec<PathBuf> {
    if !dir.is_dir() {
        return Vec::new();
    }
    walkdir::WalkDir::new(dir)
        .min_depth(depth)
        .max_depth(depth)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file() && entry.path().extension().is_some_and(|extension| extension == "json"))
        .map(|entry| entry.into_path())
        .collect()
}

fn string(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn number(value: &Value, pointer: &str) -> f64 {
    value.pointer(pointer).and_then(Value::as_f64).unwrap_or(0.0)
}

impl Expected {
    /// Reads every OpenCode file under `<opencode>/storage`.
    pub fn from_tree(opencode: &Path) -> Expected {
        let storage = opencode.join("storage");
        let mut expected = Expected::default();
        let mark = |expected: &mut Expected, path: &Path, good: bool| {
            if good {
                expected.good_files.insert(path.to_owned());
            } else {
                expected.bad_files.insert(path.to_owned());
            }
        };
        for path in json_files(&storage.join("project"), 1) {
            match read(&path).filter(Value::is_object).and_then(|value| string(&value, "id")) {
                Some(id) => {
                    expected.projects.insert(id);
                    mark(&mut expected, &path, true);
                }
                None => mark(&mut expected, &path, false),
            }
        }
        for path in json_files(&storage.join("session"), 2) {
            match read(&path).filter(Value::is_object) {
                Some(value) if string(&value, "id").is_some() => {
                    expected.sessions.insert(string(&value, "id").unwrap(), string(&value, "parentID"));
                    mark(&mut expected, &path, true);
                }
                _ => mark(&mut expected, &path, false),
            }
        }
        for path in json_files(&storage.join("message"), 2) {
            match read(&path).filter(Value::is_object) {
                Some(value) if string(&value, "id").is_some() => {
                    let session = string(&value, "sessionID").unwrap_or_else(|| path.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned());
                    let tokens = value.pointer("/tokens/input").and_then(Value::as_f64).unwrap_or(0.0).round() as i64;
                    let cost = number(&value, "/cost");
                    if let (Some(provider), Some(model)) = (string(&value, "providerID"), string(&value, "modelID")) {
                        expected.message_models.insert(string(&value, "id").unwrap(), format!("{provider}/{model}"));
                    }
                    expected.messages.insert(string(&value, "id").unwrap(), (session, tokens, cost));
                    mark(&mut expected, &path, true);
                }
                _ => mark(&mut expected, &path, false),
            }
        }
        for path in json_files(&storage.join("part"), 2) {
            match read(&path).filter(Value::is_object) {
                Some(value) if string(&value, "id").is_some() && string(&value, "sessionID").is_some() => {
                    let id = string(&value, "id").unwrap();
                    let session = string(&value, "sessionID").unwrap();
                    if value.get("type").and_then(Value::as_str) == Some("step-finish") {
                        let sums = expected.finish_sums.entry(session.clone()).or_default();
                        sums.0 += number(&value, "/tokens/input").round() as i64;
                        sums.1 += number(&value, "/tokens/output").round() as i64;
                        sums.2 += number(&value, "/cost");
                        if let Some(model) = string(&value, "messageID").and_then(|message| expected.message_models.get(&message).cloned()) {
                            expected.finish_models.entry(session.clone()).or_default().insert(model);
                        }
                    }
                    if value.get("tool").and_then(Value::as_str) == Some("task") {
                        if let Some(child) = value.pointer("/state/metadata/sessionId").and_then(Value::as_str) {
                            expected.delegations.insert((id.clone(), session.clone(), child.to_owned()));
                        }
                    }
                    expected.parts.insert(id);
                    mark(&mut expected, &path, true);
                }
                _ => mark(&mut expected, &path, false),
            }
        }
        for path in json_files(&storage.join("todo"), 1) {
            match read(&path).as_ref().and_then(Value::as_array) {
                Some(items) => {
                    expected.todos += items.iter().filter(|item| item.is_object()).count();
                    mark(&mut expected, &path, true);
                }
                None => mark(&mut expected, &path, false),
            }
        }
        for path in json_files(&storage.join("session_diff"), 1) {
            match read(&path).as_ref().and_then(Value::as_array) {
                Some(items) => {
                    expected.file_diffs += items.iter().filter(|item| item.is_object()).count();
                    mark(&mut expected, &path, true);
                }
                None => mark(&mut expected, &path, false),
            }
        }
        expected
    }

    /// The trace a session was created by: the earliest task part naming it as child.
    fn creator_of(&self, session: &str) -> Option<&str> {
        self.delegations.iter().filter(|(_, _, child)| child == session).map(|(part, _, _)| part.as_str()).min()
    }

    /// Expected parent of each task trace.
    pub fn task_trace_parents(&self) -> BTreeMap<String, Option<String>> {
        self.delegations
            .iter()
            .map(|(part, session, _)| {
                let parent = match self.creator_of(session) {
                    Some(creator) => Some(creator.to_owned()),
                    None => match self.sessions.get(session) {
                        Some(None) => Some(format!("root_{session}")),
                        _ => None,
                    },
                };
                (part.clone(), parent)
            })
            .collect()
    }
}
