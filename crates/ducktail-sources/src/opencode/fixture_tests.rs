//! Tests that scan and decode every real and generated fixture tree, with what each must yield.
//!
//! The fixtures live in `/work/shared/fixtures/opencode-json` (beside the project root); their
//! origin is described in its `SOURCES.md`. The storage roots are the four `*/storage` folders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ducktail_model::{FileKind, FileOperation, FileOutcome, MessageRecord, PartRecord, ProjectRecord, Records, SessionRecord, StepEvent, Tokens};
use walkdir::WalkDir;

use super::decode::{decode_file, DecodeLimits};
use super::layout::classify;
use super::scan::scan_storage;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/fixtures/opencode-json");

const GENERATED: &str = "generated-opencode-1.1.65";
const ANSHGRAG: &str = "Anshgrag__amazon-tools-dashboard";
const THEONEAND33: &str = "theoneand33__.local-opencode";
const AALLQSSS: &str = "aallqsss__anotherworldsimulator";

/// Every record a fixture tree decodes to, keyed by record id (parts, messages …) or by session
/// id (todo and session_diff lists, which the `todos`/`diffs` maps hold).
#[derive(Default)]
struct Tree {
    projects: BTreeMap<String, ProjectRecord>,
    sessions: BTreeMap<String, SessionRecord>,
    messages: BTreeMap<String, MessageRecord>,
    parts: BTreeMap<String, (PartRecord, Option<StepEvent>, Option<FileOperation>)>,
    todos: BTreeMap<String, Vec<ducktail_model::TodoRecord>>,
    diffs: BTreeMap<String, Vec<ducktail_model::FileDiffRecord>>,
    files_per_kind: BTreeMap<FileKind, usize>,
}

impl Tree {
    fn part(&self, id: &str) -> &(PartRecord, Option<StepEvent>, Option<FileOperation>) {
        self.parts.get(id).unwrap_or_else(|| panic!("no part {id}"))
    }
}

fn storage_root(fixture: &str) -> PathBuf {
    Path::new(FIXTURES).join(fixture).join("storage")
}

/// Scans one storage root, checks the scan agrees with `classify` on every file in the tree,
/// decodes every scanned file and asserts it decoded (no fixture legitimately fails).
fn load(fixture: &str) -> Tree {
    let root = storage_root(fixture);
    let scanned: Vec<_> = scan_storage(&root).map(|result| result.unwrap_or_else(|error| panic!("{fixture}: {error}"))).collect();

    // Every file of the tree: classified ones must be exactly the scanned ones, and the only
    // unclassified file a tree may hold is the bare `migration` counter.
    let mut classified = BTreeSet::new();
    for entry in WalkDir::new(&root) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        match classify(&root, entry.path()) {
            Some((kind, id)) => {
                classified.insert((entry.path().to_path_buf(), kind, id));
            }
            None => assert_eq!(entry.path().strip_prefix(&root).unwrap(), Path::new("migration"), "{fixture}: unexpected unclassified file"),
        }
    }
    let from_scan: BTreeSet<_> = scanned.iter().map(|file| (file.path.clone(), file.kind, file.record_id())).collect();
    assert_eq!(from_scan, classified, "{fixture}: scan and classify disagree");
    assert_eq!(from_scan.len(), scanned.len(), "{fixture}: scan listed a file twice");

    let mut tree = Tree::default();
    let limits = DecodeLimits::default();
    for file in scanned {
        let decoded = decode_file(&root, &file.path, file.kind, &limits);
        assert_eq!(decoded.stamp, file.stamp, "{}", file.path.display());
        assert_eq!(decoded.path_record_id, file.record_id());
        let FileOutcome::Decoded(records) = decoded.outcome else {
            panic!("{}: {:?}", file.path.display(), decoded.outcome);
        };
        assert_eq!(records.kind(), file.kind);
        // Every fixture file is named after the id it holds.
        assert_eq!(records.record_id(), file.record_id(), "{}", file.path.display());
        *tree.files_per_kind.entry(file.kind).or_default() += 1;
        let size = file.stamp.size;
        match records {
            Records::Project(project) => {
                assert_eq!(project.raw.size_bytes, size);
                tree.projects.insert(project.id.clone(), project);
            }
            Records::Session(session) => {
                assert_eq!(session.raw.size_bytes, size);
                tree.sessions.insert(session.id.clone(), session);
            }
            Records::Message(message) => {
                assert_eq!(message.raw.size_bytes, size);
                tree.messages.insert(message.id.clone(), message);
            }
            Records::Part { part, step, file_operation } => {
                // Files this small keep their text byte for byte.
                assert_eq!(part.raw.json.as_bytes(), std::fs::read(&file.path).unwrap());
                assert!(!part.raw.truncated && !part.content_truncated);
                tree.parts.insert(part.id.clone(), (part, step, file_operation));
            }
            Records::Todos { session_id, items } => {
                tree.todos.insert(session_id, items);
            }
            Records::FileDiffs { session_id, items } => {
                tree.diffs.insert(session_id, items);
            }
        }
    }
    tree
}

fn counts(pairs: &[(FileKind, usize)]) -> BTreeMap<FileKind, usize> {
    pairs.iter().copied().collect()
}

#[test]
fn fixture_totals_per_kind_and_no_failures() {
    let roots: BTreeSet<String> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().join("storage").is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let expected_roots: BTreeSet<String> = [ANSHGRAG, AALLQSSS, GENERATED, THEONEAND33].map(String::from).into();
    assert_eq!(roots, expected_roots);

    let mut totals: BTreeMap<FileKind, usize> = BTreeMap::new();
    for root in &roots {
        for (kind, count) in load(root).files_per_kind {
            *totals.entry(kind).or_default() += count;
        }
    }
    assert_eq!(
        totals,
        counts(&[
            (FileKind::Project, 3),
            (FileKind::Session, 24),
            (FileKind::Message, 29),
            (FileKind::Part, 82),
            (FileKind::Todo, 1),
            (FileKind::SessionDiff, 9),
        ])
    );
}

#[test]
fn generated_1_1_65_tree() {
    let tree = load(GENERATED);
    assert_eq!(
        tree.files_per_kind,
        counts(&[(FileKind::Project, 1), (FileKind::Session, 5), (FileKind::Message, 23), (FileKind::Part, 64), (FileKind::SessionDiff, 5),])
    );

    let project = &tree.projects["0090546a1016c0f27c9d15fea5bf2b9a2e12a691"];
    assert_eq!(project.worktree.as_deref(), Some("/home/dev/work"));
    assert_eq!(project.vcs.as_deref(), Some("git"));
    assert_eq!(project.created_at, Some(1795322176305));
    assert_eq!(project.updated_at, Some(1795322266057));
    assert_eq!(project.initialized_at, None);

    // Two child sessions: one made by the `task` tool, one by a subtask command.
    let children: BTreeMap<&str, &str> = tree.sessions.values().filter_map(|session| Some((session.id.as_str(), session.parent_id.as_deref()?))).collect();
    assert_eq!(
        children,
        BTreeMap::from([
            ("ses_dfe759aaeffeszLmECt3Igrdw7", "ses_dfe759be5ffeN6yyyalYgawUnP"),
            ("ses_dfe74a643ffeT3u50ltDzaHg6q", "ses_dfe74a75affeA4PqQHDh9w7ULZ"),
        ])
    );
    let child = &tree.sessions["ses_dfe759aaeffeszLmECt3Igrdw7"];
    assert_eq!(child.title.as_deref(), Some("Echo via subagent (@general subagent)"));
    assert_eq!(child.slug.as_deref(), Some("clever-lagoon"));
    assert_eq!(child.version.as_deref(), Some("1.1.65"));
    assert_eq!(child.directory.as_deref(), Some("/home/dev/work"));
    assert_eq!(child.project_id.as_deref(), Some("0090546a1016c0f27c9d15fea5bf2b9a2e12a691"));
    assert_eq!((child.created_at, child.updated_at), (Some(1795322176849), Some(1795322177197)));
    assert_eq!((child.summary_additions, child.summary_deletions, child.summary_files), (Some(0), Some(0), Some(0)));

    // Part types.
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for (part, _, _) in tree.parts.values() {
        *types.entry(part.part_type.as_str()).or_default() += 1;
    }
    assert_eq!(
        types,
        BTreeMap::from([
            ("agent", 1),
            ("compaction", 1),
            ("file", 1),
            ("patch", 1),
            ("reasoning", 8),
            ("step-finish", 13),
            ("step-start", 13),
            ("subtask", 1),
            ("text", 19),
            ("tool", 6),
        ])
    );
    let steps = tree.parts.values().filter(|(_, step, _)| step.is_some()).count();
    assert_eq!(steps, 26, "every step-start and step-finish is a step event");

    // The two task parts and the child sessions they created.
    let task_children: BTreeMap<&str, (&str, &str)> = tree
        .parts
        .values()
        .filter(|(part, _, _)| part.tool_name.as_deref() == Some("task"))
        .map(|(part, _, _)| (part.id.as_str(), (part.child_session_id.as_deref().unwrap(), part.subagent_type.as_deref().unwrap())))
        .collect();
    assert_eq!(
        task_children,
        BTreeMap::from([
            ("prt_2018a658f001QmWK0Se12uEjrI", ("ses_dfe759aaeffeszLmECt3Igrdw7", "general")),
            ("prt_2018b59a200122xJFNGNAnROp0", ("ses_dfe74a643ffeT3u50ltDzaHg6q", "general")),
        ])
    );
    let (task, _, task_operation) = tree.part("prt_2018a658f001QmWK0Se12uEjrI");
    assert!(task_operation.is_none());
    assert_eq!(task.call_id.as_deref(), Some("call_mock_3"));
    assert_eq!(task.tool_status.as_deref(), Some("completed"));
    assert_eq!(task.tool_title.as_deref(), Some("Echo via subagent"));
    assert!(task.tool_output.as_deref().unwrap().starts_with("task_id: ses_dfe759aaeffeszLmECt3Igrdw7"));
    assert!(task.tool_input.as_deref().unwrap().contains(r#""subagent_type":"general""#));
    assert_eq!((task.started_at, task.ended_at), (Some(1795322176913), Some(1795322177201)));

    // A finish step: 200 input, 42 output, 7 reasoning, 1000 cached, $0.000398.
    let (_, step, _) = tree.part("prt_2018a6603001NQ6Y4ikktElcLb");
    let step = step.as_ref().unwrap();
    assert_eq!(step.event_type, "finish");
    assert_eq!(step.session_id, "ses_dfe759aaeffeszLmECt3Igrdw7");
    assert_eq!(step.message_id, "msg_2018a6599001nqY5tIEO2gYfvF");
    assert_eq!(step.reason.as_deref(), Some("tool-calls"));
    assert_eq!(step.cost, Some(0.000398));
    assert_eq!(step.snapshot.as_deref(), Some("64126c86d552f7310438659bcfd8f4d0e775e655"));
    assert_eq!(step.tokens, Tokens { input: 200, output: 42, reasoning: 7, cache_read: 1000, cache_write: 0, total: Some(1242) });

    // The read tool that failed.
    let (read, _, read_operation) = tree.part("prt_2018a8cfd001eGt4Jfj7GgjLKB");
    assert_eq!(read.tool_name.as_deref(), Some("read"));
    assert_eq!(read.tool_status.as_deref(), Some("error"));
    assert_eq!(read.tool_error.as_deref(), Some("Error: File not found: /home/dev/work/does-not-exist.txt"));
    assert_eq!(read.tool_output, None);
    assert_eq!((read.started_at, read.ended_at), (Some(1795322187010), Some(1795322187014)));
    let read_operation = read_operation.as_ref().unwrap();
    assert_eq!(read_operation.operation, "read");
    assert_eq!(read_operation.file_path.as_deref(), Some("/home/dev/work/does-not-exist.txt"));
    assert_eq!(read_operation.status.as_deref(), Some("error"));
    assert_eq!(read_operation.started_at, Some(1795322187010));

    // The write tool is a file operation too.
    let writes: Vec<_> = tree.parts.values().filter_map(|(_, _, operation)| operation.as_ref()).filter(|operation| operation.operation == "write").collect();
    assert_eq!(writes.len(), 1);
    assert!(writes[0].file_path.is_some());

    // The subtask part names its agent.
    let (subtask, _, _) = tree.part("prt_2018b5986001Nhu0A5sz554psX");
    assert_eq!(subtask.part_type, "subtask");
    assert_eq!(subtask.subagent_type.as_deref(), Some("general"));

    // Exactly one compaction summary message.
    let summaries: Vec<_> = tree.messages.values().filter(|message| message.is_summary).collect();
    assert_eq!(summaries.len(), 1);
    let summary = summaries[0];
    assert_eq!(summary.id, "msg_2018ad350001sVBXn5cVfcBzee");
    assert_eq!(summary.session_id, "ses_dfe759be5ffeN6yyyalYgawUnP");
    assert_eq!(summary.role.as_deref(), Some("assistant"));
    assert_eq!(summary.agent.as_deref(), Some("compaction"));
    assert_eq!(summary.mode.as_deref(), Some("compaction"));
    assert_eq!(summary.provider_id.as_deref(), Some("mock"));
    assert_eq!(summary.model_id.as_deref(), Some("mock-model"));
    assert_eq!(summary.parent_id.as_deref(), Some("msg_2018ad2ae001fuAaOK7uZEp0iI"));
    assert_eq!(summary.finish_reason.as_deref(), Some("stop"));
    assert_eq!(summary.cost, Some(0.000398));
    assert_eq!(summary.tokens.total, Some(1242));
    assert_eq!((summary.created_at, summary.completed_at), (Some(1795322205008), Some(1795322205222)));

    let roles: BTreeMap<&str, usize> = tree.messages.values().fold(BTreeMap::new(), |mut roles, message| {
        *roles.entry(message.role.as_deref().unwrap()).or_default() += 1;
        roles
    });
    assert_eq!(roles, BTreeMap::from([("assistant", 14), ("user", 9)]));

    // One non-empty session diff, four empty ones.
    assert_eq!(tree.diffs.len(), 5);
    let diff = &tree.diffs["ses_dfe759be5ffeN6yyyalYgawUnP"];
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].file.as_deref(), Some("notes.txt"));
    assert_eq!(diff[0].status.as_deref(), Some("added"));
    assert_eq!((diff[0].additions, diff[0].deletions), (Some(2), Some(0)));
    assert_eq!((diff[0].before_bytes, diff[0].after_bytes), (Some(0), Some(12)));
    assert_eq!(tree.diffs.values().filter(|items| items.is_empty()).count(), 4);
}

#[test]
fn anshgrag_tree() {
    let tree = load(ANSHGRAG);
    assert_eq!(
        tree.files_per_kind,
        counts(&[
            (FileKind::Project, 1),
            (FileKind::Session, 15),
            (FileKind::Message, 6),
            (FileKind::Part, 18),
            (FileKind::Todo, 1),
            (FileKind::SessionDiff, 1),
        ])
    );
    let project = &tree.projects["global"];
    assert_eq!(project.worktree.as_deref(), Some("/home/bot4u"));
    assert_eq!(project.initialized_at, Some(1768122671070));

    // A 1.1.12 session predates `slug`.
    assert_eq!(tree.sessions["ses_4567b0e1affeRu0da2D26ls6sf"].slug, None);
    assert_eq!(tree.sessions["ses_4567b0e1affeRu0da2D26ls6sf"].version.as_deref(), Some("1.1.12"));
    assert!(tree.sessions.values().all(|session| session.project_id.as_deref() == Some("global")));
    assert!(tree.sessions.values().all(|session| session.parent_id.is_none()));

    // The user message names its model in `model`.
    let user = &tree.messages["msg_c2dfcd6ad001iWC9SmxwaA3NDR"];
    assert_eq!(user.role.as_deref(), Some("user"));
    assert_eq!(user.agent.as_deref(), Some("build"));
    assert_eq!(user.provider_id.as_deref(), Some("opencode"));
    assert_eq!(user.model_id.as_deref(), Some("glm-4.7-free"));
    assert!(!user.is_summary, "a user message's summary object is not a compaction summary");

    // The aborted turn: an error, no finish reason, zero usage.
    let aborted = &tree.messages["msg_c2dfcd74b001IfZeOhPv5Jw2Qa"];
    assert_eq!(aborted.error_name.as_deref(), Some("MessageAbortedError"));
    assert_eq!(aborted.error_message.as_deref(), Some("The operation was aborted."));
    assert_eq!(aborted.finish_reason, None);
    assert_eq!(aborted.parent_id.as_deref(), Some("msg_c2dfcd6ad001iWC9SmxwaA3NDR"));
    assert_eq!(aborted.session_id, "ses_3d203296affeRwyJfJ6ZBdOCGT");
    assert_eq!(aborted.cost, Some(0.0));
    assert_eq!(aborted.tokens, Tokens::default());
    assert_eq!((aborted.created_at, aborted.completed_at), (Some(1770298070859), Some(1770298168274)));
    assert_eq!(tree.messages["msg_c2dff7191001pZOzEBWRZ0XflE"].finish_reason.as_deref(), Some("stop"));
    assert_eq!(tree.messages["msg_c0ef34ddf001CjzfTX46EFyoRy"].tokens.reasoning, 1);

    // Empty reasoning and text parts keep their empty text.
    let (reasoning, _, _) = tree.part("prt_c0ef35e18001iEsQS9xZiyX9PZ");
    assert_eq!(reasoning.part_type, "reasoning");
    assert_eq!(reasoning.text.as_deref(), Some(""));
    assert_eq!((reasoning.started_at, reasoning.ended_at), (Some(1769777356312), Some(1769777357591)));
    let (empty_text, _, _) = tree.part("prt_c0ef37ec700159NDu4FAAMB6KR");
    assert_eq!(empty_text.text.as_deref(), Some(""));
    // A user text part has no times.
    let (user_text, _, _) = tree.part("prt_c2dfcd6ae001ZeixaBRQdU25Bb");
    assert!(user_text.text.as_deref().is_some_and(|text| !text.is_empty()));
    assert_eq!((user_text.started_at, user_text.ended_at), (None, None));

    // The hallucinated tool.
    let (invalid, _, invalid_operation) = tree.part("prt_c0ef362cf001CnTxkVwm14M5fd");
    assert_eq!(invalid.tool_name.as_deref(), Some("invalid"));
    assert_eq!(invalid.tool_status.as_deref(), Some("completed"));
    assert_eq!(invalid.tool_title.as_deref(), Some("Invalid Tool"));
    assert_eq!(invalid.call_id.as_deref(), Some("call_b40dcf1c74f442a688629d38"));
    assert!(invalid.tool_input.as_deref().unwrap().contains(r#""tool":"ls""#));
    assert!(invalid.tool_output.as_deref().unwrap().starts_with("The arguments provided to the tool are invalid"));
    assert!(invalid_operation.is_none());

    // The bash call killed by its timeout: completed, exit null, metadata suffix.
    let (bash, _, bash_operation) = tree.part("prt_c2e01bb57001y8r6xUC8xxkoGf");
    assert_eq!(bash.tool_name.as_deref(), Some("bash"));
    assert_eq!(bash.tool_status.as_deref(), Some("completed"));
    assert_eq!(bash.call_id.as_deref(), Some("chatcmpl-tool-30ed2458330e498abadab13af788e74a"));
    assert!(bash.tool_output.as_deref().unwrap().ends_with("</bash_metadata>"));
    assert_eq!(bash.tool_error, None);
    assert_eq!((bash.started_at, bash.ended_at), (Some(1770298391398), Some(1770298511515)));
    assert!(bash.raw.json.contains(r#""exit": null"#));
    assert!(bash_operation.is_none());

    // The write tool.
    let (_, _, write) = tree.part("prt_c2e004cf8001mKSsvYvQJQcnx3");
    let write = write.as_ref().unwrap();
    assert_eq!(write.operation, "write");
    assert_eq!(write.status.as_deref(), Some("completed"));
    assert!(write.file_path.is_some());
    assert_eq!((write.additions, write.deletions), (None, None));

    // Step events: 2 starts, 4 finishes (one without tokens.total).
    let (mut starts, mut finishes) = (0, 0);
    for (_, step, _) in tree.parts.values() {
        match step.as_ref().map(|step| step.event_type) {
            Some("start") => starts += 1,
            Some("finish") => finishes += 1,
            _ => {}
        }
    }
    assert_eq!((starts, finishes), (2, 4));
    let (_, step, _) = tree.part("prt_c2dff841e001Jqk9Buq6ffeQtQ");
    assert_eq!(step.as_ref().unwrap().tokens.total, None);

    // The todo list: eight items, ids "1" … "8", all completed.
    let todos = &tree.todos["ses_3f5beb1bbffeofuXBKIpji4ZGz"];
    assert_eq!(todos.len(), 8);
    for (position, todo) in todos.iter().enumerate() {
        assert_eq!(todo.position, position as i64);
        assert_eq!(todo.todo_id, Some((position + 1).to_string()));
        assert_eq!(todo.status.as_deref(), Some("completed"));
        assert!(todo.content.is_some());
    }
    assert_eq!(todos[0].content.as_deref(), Some("Create project directory structure"));
    assert_eq!(todos[0].priority.as_deref(), Some("high"));
    assert_eq!(todos[7].priority.as_deref(), Some("medium"));

    let diff = &tree.diffs["ses_3d203296affeRwyJfJ6ZBdOCGT"];
    assert_eq!(diff.len(), 1);
    assert_eq!(diff[0].file.as_deref(), Some("Desktop/EYE/git-quickpush"));
    assert_eq!((diff[0].additions, diff[0].deletions), (Some(26), Some(0)));
    assert_eq!((diff[0].before_bytes, diff[0].after_bytes), (Some(0), Some(891)));
}

#[test]
fn theoneand33_tree() {
    let tree = load(THEONEAND33);
    assert_eq!(tree.files_per_kind, counts(&[(FileKind::Project, 1), (FileKind::Session, 4)]));
    // A 0.13.x project file: no vcs, no time.updated.
    let project = &tree.projects["global"];
    assert_eq!(project.worktree.as_deref(), Some("/"));
    assert_eq!(project.vcs, None);
    assert_eq!(project.created_at, Some(1759359618925));
    assert_eq!(project.updated_at, None);
    // 0.6.5 and 0.13.7 sessions: no slug.
    assert!(tree.sessions.values().all(|session| session.slug.is_none()));
    assert_eq!(tree.sessions["ses_6d9a8155bffeGjJ0q3doyWXUMD"].version.as_deref(), Some("0.6.5"));
}

#[test]
fn theoneand33_legacy_tree_is_not_a_current_storage_root() {
    // The pre-0.6 per-project tree (`project/<dir>/storage/session/{info,message,part}`) is not
    // one of ducktail's roots. Pointed at it anyway, only `session/info/<ses>.json` matches a
    // current layout (as sessions of a project named `info`); its messages and parts sit one
    // and two levels deeper than the current layout and are skipped.
    let root = Path::new(FIXTURES).join(THEONEAND33).join("project/global/storage");
    let scanned: Vec<_> = scan_storage(&root).map(Result::unwrap).collect();
    assert_eq!(scanned.len(), 5);
    assert!(scanned.iter().all(|file| file.kind == FileKind::Session && file.path.parent().unwrap().ends_with("session/info")));
}

#[test]
fn aallqsss_tree_after_the_sqlite_switch() {
    let tree = load(AALLQSSS);
    assert_eq!(tree.files_per_kind, counts(&[(FileKind::SessionDiff, 3)]));
    assert!(tree.diffs.values().all(Vec::is_empty));
}
