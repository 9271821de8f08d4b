//! The generator core: projects, then one root session tree at a time, as files in write order.
//!
//! Everything is drawn from one ChaCha8 stream in a fixed order, and the simulated clock only moves
//! forward, so the same configuration always yields the same bytes and ids ascend with time.

use std::collections::VecDeque;
use std::path::PathBuf;

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::content::{self, Language, Model, ProjectKind};
use crate::ids::IdGenerator;
use crate::json::{obj, Json};
use crate::{GeneratedFile, GeneratorConfig};

/// A project of the generated tree.
struct Project {
    id: String,
    worktree: String,
    kind: &'static ProjectKind,
    /// Relative weight when a new root session picks its project.
    weight: u32,
}

/// What a session is being created for (a user at the prompt, or a `task` call of a parent).
struct SessionSpec {
    project: usize,
    directory: String,
    version: &'static str,
    model: &'static Model,
    agent: &'static str,
    depth: usize,
    title: String,
    first_prompt: String,
    parent_id: Option<String>,
    /// `opencode run` sessions carry a permission ruleset denying interactive tools.
    run_permissions: bool,
}

/// The running state of one session while its messages are generated.
struct Session {
    id: String,
    project: usize,
    directory: String,
    version: &'static str,
    /// `tokens.total` exists from 1.1.53 on.
    with_total: bool,
    model: &'static Model,
    agent: &'static str,
    depth: usize,
    /// `None` when the session never plans with `todowrite`.
    todos: Option<Vec<Todo>>,
    todos_written: bool,
    diffs: Vec<FileDiff>,
    context_tokens: u64,
    pending_input_tokens: u64,
    task_calls: usize,
    tool_calls: usize,
}

struct Todo {
    id: String,
    content: &'static str,
    status: &'static str,
    priority: &'static str,
}

#[derive(Clone)]
struct FileDiff {
    file: String,
    before: String,
    after: String,
    additions: u64,
    deletions: u64,
    status: &'static str,
}

#[derive(Clone, Copy)]
struct Tokens {
    total: Option<u64>,
    input: u64,
    output: u64,
    reasoning: u64,
    cache_read: u64,
    cache_write: u64,
}

impl Tokens {
    const ZERO: Tokens = Tokens { total: None, input: 0, output: 0, reasoning: 0, cache_read: 0, cache_write: 0 };

    fn to_json(self) -> Json {
        let mut json = Json::Obj(Vec::with_capacity(5));
        if let Some(total) = self.total {
            json.set("total", total);
        }
        json.set("input", self.input);
        json.set("output", self.output);
        json.set("reasoning", self.reasoning);
        json.set("cache", obj! { "read" => self.cache_read, "write" => self.cache_write });
        json
    }
}

/// How an assistant message fails, when it does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    Api,
    Aborted,
}

/// What one tool call produced, before it is wrapped into a state.
struct ToolCall {
    tool: &'static str,
    input: Json,
    output: String,
    title: String,
    metadata: Json,
    error: String,
    duration_ms: i64,
    /// Absolute path and diff of a file the call changed.
    changed: Option<(String, FileDiff)>,
}

/// Produces the files of the tree, one root session tree per [`Generator::root_session`] call.
pub(crate) struct Generator {
    config: GeneratorConfig,
    rng: ChaCha8Rng,
    /// A separate stream for bad files, so adding them leaves the good files' content draws unchanged
    /// (their ids still share the id counter, and bad files count towards the target).
    bad_rng: ChaCha8Rng,
    ids: IdGenerator,
    now: i64,
    projects: Vec<Project>,
    tool_parts: usize,
    bad_files: usize,
    /// Sessions and root sessions generated so far.
    pub(crate) sessions: usize,
    pub(crate) root_sessions: usize,
}

fn storage_path(parts: &[&str]) -> PathBuf {
    let mut path = PathBuf::from("storage");
    for part in parts {
        path.push(part);
    }
    path
}

fn file(kind: &'static str, relative_path: PathBuf, json: &Json) -> GeneratedFile {
    GeneratedFile { relative_path, contents: json.to_pretty(), kind }
}

fn placeholder() -> GeneratedFile {
    GeneratedFile { relative_path: PathBuf::new(), contents: Vec::new(), kind: "" }
}

fn weighted<T: Copy>(rng: &mut ChaCha8Rng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|(_, weight)| weight).sum();
    let mut roll = rng.gen_range(0..total);
    for &(value, weight) in choices {
        if roll < weight {
            return value;
        }
        roll -= weight;
    }
    choices[choices.len() - 1].0
}

fn count_lines(text: &str) -> u64 {
    text.lines().count() as u64
}

impl Generator {
    pub(crate) fn new(config: &GeneratorConfig) -> Self {
        Generator {
            config: config.clone(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            bad_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x6261_645f_6669_6c65),
            ids: IdGenerator::default(),
            now: config.base_time_ms,
            projects: Vec::new(),
            tool_parts: 0,
            bad_files: 0,
            sessions: 0,
            root_sessions: 0,
        }
    }

    fn advance(&mut self, low_ms: i64, high_ms: i64) {
        self.now += self.rng.gen_range(low_ms..=high_ms);
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.rng.gen_bool(probability)
    }

    /// The project files (3–6 projects, sometimes including `global`), in the order opencode creates them.
    pub(crate) fn project_files(&mut self) -> Vec<GeneratedFile> {
        let count = self.rng.gen_range(3..=6);
        let with_global = self.chance(0.4);
        let mut kinds: Vec<&'static ProjectKind> = content::PROJECT_KINDS.iter().collect();
        rand::seq::SliceRandom::shuffle(kinds.as_mut_slice(), &mut self.rng);
        let mut files = Vec::with_capacity(count);
        for (index, &kind) in kinds.iter().enumerate().take(count) {
            let global = with_global && index == count - 1;
            let (id, worktree, kind) = if global {
                ("global".to_owned(), "/home/dev".to_owned(), &content::GLOBAL_KIND)
            } else {
                (content::hex(&mut self.rng, 40), format!("/home/dev/src/{}", kind.name), kind)
            };
            let created = self.config.base_time_ms - self.rng.gen_range(86_400_000..90 * 86_400_000);
            let updated = self.config.base_time_ms - self.rng.gen_range(1_000..3_600_000);
            let mut json = obj! { "id" => id.as_str(), "worktree" => worktree.as_str() };
            if !global {
                json.set("vcs", "git");
            }
            json.set("sandboxes", Json::Arr(Vec::new()));
            let mut time = obj! { "created" => created, "updated" => updated };
            if self.chance(0.5) {
                time.set("initialized", created + self.rng.gen_range(60_000..86_400_000));
            }
            json.set("time", time);
            files.push(file("project", storage_path(&["project", &format!("{id}.json")]), &json));
            // The first project is the busiest, like a real user's main repository.
            let weight = if index == 0 { 6 } else { self.rng.gen_range(1..=4) };
            self.projects.push(Project { id, worktree, kind, weight });
        }
        files
    }

    /// Generates one root session with its whole delegation tree into `out`.
    pub(crate) fn root_session(&mut self, out: &mut VecDeque<GeneratedFile>) {
        let choices: Vec<(usize, u32)> = self.projects.iter().enumerate().map(|(index, project)| (index, project.weight)).collect();
        let project = weighted(&mut self.rng, &choices);
        let version = weighted(&mut self.rng, content::VERSIONS);
        let model_choices: Vec<(&'static Model, u32)> = content::MODELS.iter().map(|model| (model, model.weight)).collect();
        let model = weighted(&mut self.rng, &model_choices);
        let agent = if self.chance(0.85) { "build" } else { "plan" };
        let kind = self.projects[project].kind;
        let (title, prompt) = content::pick(&mut self.rng, content::TASKS);
        let file = content::pick(&mut self.rng, kind.files);
        let worktree = self.projects[project].worktree.clone();
        let directory = if self.chance(0.2) { format!("{worktree}/{}", content::pick(&mut self.rng, kind.subdirs)) } else { worktree };
        let run_permissions = self.chance(0.15);
        let spec = SessionSpec {
            project,
            directory,
            version,
            model,
            agent,
            depth: 0,
            title: title.to_owned(),
            first_prompt: prompt.replace("{file}", file),
            parent_id: None,
            run_permissions,
        };
        self.root_sessions += 1;
        self.session(out, spec);
        // The user comes back later: minutes to an hour and a half.
        self.advance(60_000, 5_400_000);
    }

    fn session(&mut self, out: &mut VecDeque<GeneratedFile>, spec: SessionSpec) -> String {
        self.sessions += 1;
        let created = self.now;
        let id = self.ids.descending("ses", self.now, &mut self.rng);
        let slug = content::slug(&mut self.rng);
        let slot = out.len();
        out.push_back(placeholder());
        let is_root = spec.parent_id.is_none();
        let patch: u32 = spec.version.rsplit('.').next().and_then(|patch| patch.parse().ok()).unwrap_or(0);
        let mut session = Session {
            id: id.clone(),
            project: spec.project,
            directory: spec.directory.clone(),
            version: spec.version,
            with_total: patch >= 53,
            model: spec.model,
            agent: spec.agent,
            depth: spec.depth,
            todos: (is_root && self.chance(0.35)).then(Vec::new),
            todos_written: false,
            diffs: Vec::new(),
            context_tokens: 0,
            pending_input_tokens: 0,
            task_calls: 0,
            tool_calls: 0,
        };
        let turns = if is_root {
            weighted(&mut self.rng, &[(1, 20), (2, 25), (3, 20), (4, 15), (5, 10), (6, 6), (8, 4)])
        } else if self.chance(0.85) {
            1
        } else {
            2
        };
        for turn in 0..turns {
            let prompt = if turn == 0 {
                spec.first_prompt.clone()
            } else {
                // The user reads the answer and types the next request.
                self.advance(15_000, 600_000);
                let file = content::pick(&mut self.rng, self.projects[session.project].kind.files);
                content::pick(&mut self.rng, content::FOLLOW_UPS).replace("{file}", file)
            };
            let user_id = self.user_message(out, &mut session, prompt);
            self.assistant_turn(out, &mut session, &user_id, !is_root);
        }
        let updated = self.now;

        if let Some(todos) = session.todos.as_ref().filter(|_| session.todos_written) {
            let json = Json::Arr(todos.iter().map(todo_json).collect());
            out.push_back(file("todo", storage_path(&["todo", &format!("{id}.json")]), &json));
        }
        let write_diff = if is_root { self.chance(0.85) } else { self.chance(0.3) };
        if write_diff {
            let json = Json::Arr(session.diffs.iter().map(diff_json).collect());
            out.push_back(file("session_diff", storage_path(&["session_diff", &format!("{id}.json")]), &json));
        }

        let project_id = self.projects[spec.project].id.clone();
        let mut json = obj! {
            "id" => id.as_str(),
            "slug" => slug,
            "version" => spec.version,
            "projectID" => project_id.as_str(),
            "directory" => spec.directory.as_str(),
        };
        if let Some(parent) = &spec.parent_id {
            json.set("parentID", parent.as_str());
        }
        json.set("title", spec.title.as_str());
        if !is_root {
            let mut rules = vec![deny_rule("todowrite"), deny_rule("todoread")];
            if spec.depth >= self.config.max_delegation_depth {
                rules.push(deny_rule("task"));
            }
            json.set("permission", Json::Arr(rules));
        } else if spec.run_permissions {
            let rules = ["question", "plan_enter", "plan_exit"]
                .iter()
                .map(|permission| obj! { "permission" => *permission, "pattern" => "*", "action" => "deny" })
                .collect::<Vec<_>>();
            json.set("permission", Json::Arr(rules));
        }
        json.set("time", obj! { "created" => created, "updated" => updated });
        if self.chance(0.75) {
            let additions: u64 = session.diffs.iter().map(|diff| diff.additions).sum();
            let deletions: u64 = session.diffs.iter().map(|diff| diff.deletions).sum();
            json.set("summary", obj! { "additions" => additions, "deletions" => deletions, "files" => session.diffs.len() });
        }
        out[slot] = file("session", storage_path(&["session", &project_id, &format!("{id}.json")]), &json);
        id
    }

    fn user_message(&mut self, out: &mut VecDeque<GeneratedFile>, session: &mut Session, prompt: String) -> String {
        let created = self.now;
        let id = self.ids.ascending("msg", self.now, &mut self.rng);
        let mut json = obj! {
            "id" => id.as_str(),
            "sessionID" => session.id.as_str(),
            "role" => "user",
            "time" => obj! { "created" => created },
        };
        if self.chance(0.7) {
            let mut summary = Json::Obj(Vec::new());
            if self.chance(0.6) {
                let title: String = prompt.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
                summary.set("title", title);
            }
            summary.set("diffs", Json::Arr(Vec::new()));
            json.set("summary", summary);
        }
        json.set("agent", session.agent);
        json.set("model", obj! { "providerID" => session.model.provider, "modelID" => session.model.id });
        out.push_back(file("message", storage_path(&["message", &session.id, &format!("{id}.json")]), &json));

        let part_id = self.ids.ascending("prt", self.now, &mut self.rng);
        session.pending_input_tokens += prompt.len() as u64 / 4 + 5;
        let part = obj! {
            "id" => part_id.as_str(),
            "sessionID" => session.id.as_str(),
            "messageID" => id.as_str(),
            "type" => "text",
            "text" => prompt,
        };
        out.push_back(file("part", storage_path(&["part", &id, &format!("{part_id}.json")]), &part));
        self.advance(5, 80);
        id
    }

    /// One answer to a user message: several assistant messages, each of one or more steps.
    fn assistant_turn(&mut self, out: &mut VecDeque<GeneratedFile>, session: &mut Session, user_id: &str, child: bool) {
        let messages = if child {
            weighted(&mut self.rng, &[(1, 20), (2, 30), (3, 30), (4, 20)])
        } else {
            weighted(&mut self.rng, &[(1, 22), (2, 25), (3, 20), (4, 15), (5, 10), (6, 8)])
        };
        for index in 0..messages {
            let failed = self.assistant_message(out, session, user_id, index + 1 == messages);
            if failed {
                break;
            }
        }
    }

    /// Returns true when the message failed (the turn ends there).
    fn assistant_message(&mut self, out: &mut VecDeque<GeneratedFile>, session: &mut Session, user_id: &str, last: bool) -> bool {
        let created = self.now;
        let id = self.ids.ascending("msg", self.now, &mut self.rng);
        let slot = out.len();
        out.push_back(placeholder());
        let steps = weighted(&mut self.rng, &[(1, 60), (2, 25), (3, 10), (4, 5)]);
        let failure = if self.chance(0.025) { Some(if self.chance(0.5) { Failure::Api } else { Failure::Aborted }) } else { None };
        let mut cost = 0.0_f64;
        let mut tokens = Tokens::ZERO;
        let mut finish = None;
        // Aborting before the first token leaves a message without parts (seen in real trees).
        let silent = failure.is_some() && self.chance(0.4);
        if !silent {
            for step in 0..steps {
                let final_step = step + 1 == steps;
                if final_step {
                    if let Some(failure) = failure {
                        self.partial_step(out, session, &id, failure);
                        break;
                    }
                }
                let reason = if final_step && last { "stop" } else { "tool-calls" };
                let (step_cost, step_tokens) = self.step(out, session, &id, reason);
                // opencode adds each step's cost and overwrites the tokens (Session.updateMessage per finish-step).
                cost += step_cost;
                tokens = step_tokens;
                finish = Some(reason);
            }
        } else {
            self.advance(200, 20_000);
        }
        let completed = self.now;

        let project = &self.projects[session.project];
        let mut json = obj! {
            "id" => id.as_str(),
            "sessionID" => session.id.as_str(),
            "role" => "assistant",
            "time" => obj! { "created" => created, "completed" => completed },
        };
        if let Some(failure) = failure {
            let error = match failure {
                Failure::Aborted => {
                    obj! { "name" => "MessageAbortedError", "data" => obj! { "message" => "The operation was aborted." } }
                }
                Failure::Api => {
                    let (message, status, retryable) = content::pick(&mut self.rng, content::API_ERRORS);
                    obj! {
                        "name" => "APIError",
                        "data" => obj! { "message" => message, "statusCode" => status, "isRetryable" => retryable },
                    }
                }
            };
            json.set("error", error);
            finish = None;
        }
        json.set("parentID", user_id);
        json.set("modelID", session.model.id);
        json.set("providerID", session.model.provider);
        json.set("mode", session.agent);
        json.set("agent", session.agent);
        json.set("path", obj! { "cwd" => session.directory.as_str(), "root" => project.worktree.as_str() });
        json.set("cost", cost);
        json.set("tokens", tokens.to_json());
        if let Some(finish) = finish {
            json.set("finish", finish);
        }
        out[slot] = file("message", storage_path(&["message", &session.id, &format!("{id}.json")]), &json);
        self.advance(2, 40);
        failure.is_some()
    }

    fn new_part(&mut self, session: &Session, message_id: &str, kind: &'static str) -> (String, Json) {
        let id = self.ids.ascending("prt", self.now, &mut self.rng);
        let json = obj! {
            "id" => id.as_str(),
            "sessionID" => session.id.as_str(),
            "messageID" => message_id,
            "type" => kind,
        };
        (id, json)
    }

    fn emit_part(out: &mut VecDeque<GeneratedFile>, message_id: &str, part_id: &str, json: &Json) {
        out.push_back(file("part", storage_path(&["part", message_id, &format!("{part_id}.json")]), json));
    }

    fn reasoning_part(&mut self, out: &mut VecDeque<GeneratedFile>, session: &Session, message_id: &str) -> u64 {
        let (id, mut json) = self.new_part(session, message_id, "reasoning");
        let text = if self.chance(0.25) { String::new() } else { content::pick(&mut self.rng, content::THOUGHTS).to_owned() };
        let start = self.now;
        self.advance(150, 9_000);
        let tokens = text.len() as u64 / 4;
        json.set("text", text.as_str());
        if session.model.anthropic && !text.is_empty() {
            let signature = content::base62(&mut self.rng, 120);
            json.set("metadata", obj! { "anthropic" => obj! { "signature" => signature } });
        }
        json.set("time", obj! { "start" => start, "end" => self.now });
        Self::emit_part(out, message_id, &id, &json);
        tokens
    }

    fn text_part(&mut self, out: &mut VecDeque<GeneratedFile>, session: &Session, message_id: &str, answer: bool) {
        let (id, mut json) = self.new_part(session, message_id, "text");
        let file = content::pick(&mut self.rng, self.projects[session.project].kind.files);
        let text = if answer {
            format!("\n\n{}", content::pick(&mut self.rng, content::ANSWERS).replace("{file}", file))
        } else if self.chance(0.1) {
            String::new()
        } else {
            content::pick(&mut self.rng, content::OPENERS).replace("{file}", file)
        };
        let start = self.now;
        self.advance(100, 6_000);
        json.set("text", text);
        json.set("time", obj! { "start" => start, "end" => self.now });
        Self::emit_part(out, message_id, &id, &json);
    }

    /// One finished step; returns its cost and tokens.
    fn step(&mut self, out: &mut VecDeque<GeneratedFile>, session: &mut Session, message_id: &str, reason: &'static str) -> (f64, Tokens) {
        let snapshot = content::hex(&mut self.rng, 40);
        let (id, mut json) = self.new_part(session, message_id, "step-start");
        json.set("snapshot", snapshot.as_str());
        Self::emit_part(out, message_id, &id, &json);
        self.advance(300, 4_000);

        let mut reasoning_tokens = 0;
        if self.chance(0.5) {
            reasoning_tokens = self.reasoning_part(out, session, message_id) + self.rng.gen_range(0..400);
        }
        let answer = reason == "stop";
        if answer || self.chance(0.3) {
            self.text_part(out, session, message_id, answer);
        }
        let mut changed_files = Vec::new();
        if !answer {
            let calls = weighted(&mut self.rng, &[(1, 65), (2, 22), (3, 13)]);
            for _ in 0..calls {
                if let Some(path) = self.tool_part(out, session, message_id) {
                    if !changed_files.contains(&path) {
                        changed_files.push(path);
                    }
                }
            }
        }

        let tokens = self.step_tokens(session, reasoning_tokens, answer);
        let model = session.model;
        let cost = (tokens.input as f64 * model.price_input
            + (tokens.output + tokens.reasoning) as f64 * model.price_output
            + tokens.cache_read as f64 * model.price_cache_read
            + tokens.cache_write as f64 * model.price_cache_write)
            / 1_000_000.0;
        let end_snapshot = if changed_files.is_empty() { snapshot.clone() } else { content::hex(&mut self.rng, 40) };
        let (id, mut json) = self.new_part(session, message_id, "step-finish");
        json.set("reason", reason);
        json.set("snapshot", end_snapshot);
        json.set("cost", cost);
        json.set("tokens", tokens.to_json());
        Self::emit_part(out, message_id, &id, &json);
        if !changed_files.is_empty() {
            let (id, mut json) = self.new_part(session, message_id, "patch");
            json.set("hash", snapshot);
            json.set("files", Json::Arr(changed_files.into_iter().map(Json::from).collect()));
            Self::emit_part(out, message_id, &id, &json);
        }
        self.advance(5, 120);
        (cost, tokens)
    }

    /// Usage of one LLM request: the context so far is cached, new tool results and prompts are input.
    fn step_tokens(&mut self, session: &mut Session, reasoning: u64, answer: bool) -> Tokens {
        let system = if session.context_tokens == 0 { self.rng.gen_range(9_000..14_000) } else { 0 };
        let fresh = system + session.pending_input_tokens + self.rng.gen_range(10..300);
        session.pending_input_tokens = 0;
        let output = if answer { self.rng.gen_range(60..1_400) } else { self.rng.gen_range(20..500) };
        let (input, cache_read, cache_write) = if session.model.anthropic {
            let input = self.rng.gen_range(1..12).min(fresh);
            (input, session.context_tokens, fresh - input)
        } else {
            (fresh, session.context_tokens, 0)
        };
        session.context_tokens += fresh + output;
        let total = session.with_total.then_some(input + output + cache_read + cache_write);
        Tokens { total, input, output, reasoning, cache_read, cache_write }
    }

    /// The unfinished last step of a failed message: no step-finish, maybe a tool left pending/running.
    fn partial_step(&mut self, out: &mut VecDeque<GeneratedFile>, session: &mut Session, message_id: &str, failure: Failure) {
        let (id, mut json) = self.new_part(session, message_id, "step-start");
        json.set("snapshot", content::hex(&mut self.rng, 40));
        Self::emit_part(out, message_id, &id, &json);
        self.advance(300, 3_000);
        if failure == Failure::Api {
            return;
        }
        if self.chance(0.5) {
            self.reasoning_part(out, session, message_id);
        }
        if self.chance(0.6) {
            let (id, mut json) = self.new_part(session, message_id, "tool");
            let call = self.tool_call(session, "bash");
            json.set("callID", self.call_id(session));
            json.set("tool", call.tool);
            let state = if self.chance(0.5) {
                obj! { "status" => "pending", "input" => Json::Obj(Vec::new()), "raw" => "" }
            } else {
                obj! { "status" => "running", "input" => call.input, "time" => obj! { "start" => self.now } }
            };
            json.set("state", state);
            Self::emit_part(out, message_id, &id, &json);
        }
        self.advance(500, 30_000);
    }

    fn call_id(&mut self, session: &Session) -> String {
        match session.model.provider {
            "anthropic" => format!("toolu_01{}", content::base62(&mut self.rng, 22)),
            "opencode" => format!("chatcmpl-tool-{}", content::hex(&mut self.rng, 32)),
            _ => format!("call_{}", content::base62(&mut self.rng, 24)),
        }
    }

    /// One tool part; returns the absolute path of a file it changed.
    fn tool_part(&mut self, out: &mut VecDeque<GeneratedFile>, session: &mut Session, message_id: &str) -> Option<String> {
        self.tool_parts += 1;
        session.tool_calls += 1;
        let large = self.config.large_output_every > 0 && self.tool_parts.is_multiple_of(self.config.large_output_every);
        let delegate = session.depth < self.config.max_delegation_depth && session.task_calls < 3 && self.chance(if session.depth == 0 { 0.03 } else { 0.07 });
        let plan_todos = session.todos.is_some() && (!session.todos_written || self.chance(0.12));
        let tool = if large {
            "bash"
        } else if delegate {
            "task"
        } else if plan_todos {
            "todowrite"
        } else {
            weighted(&mut self.rng, &[("read", 30), ("bash", 22), ("edit", 16), ("grep", 10), ("glob", 8), ("write", 7)])
        };

        let (id, mut json) = self.new_part(session, message_id, "tool");
        json.set("callID", self.call_id(session));
        json.set("tool", tool);
        let start = self.now;
        if tool == "task" {
            let state = self.delegate(out, session);
            json.set("state", state);
            Self::emit_part(out, message_id, &id, &json);
            return None;
        }
        let mut call = if large { self.large_call(session) } else { self.tool_call(session, tool) };
        self.now += call.duration_ms;
        let end = self.now;
        let failed = tool != "todowrite" && !large && self.chance(0.03);
        let state = if failed {
            call.changed = None;
            obj! {
                "status" => "error",
                "input" => call.input,
                "error" => call.error,
                "time" => obj! { "start" => start, "end" => end },
            }
        } else {
            session.pending_input_tokens += call.output.len() as u64 / 4;
            obj! {
                "status" => "completed",
                "input" => call.input,
                "output" => call.output,
                "title" => call.title,
                "metadata" => call.metadata,
                "time" => obj! { "start" => start, "end" => end },
            }
        };
        json.set("state", state);
        Self::emit_part(out, message_id, &id, &json);
        self.advance(1, 30);
        let (path, diff) = call.changed?;
        if let Some(existing) = session.diffs.iter_mut().find(|existing| existing.file == diff.file) {
            existing.after = diff.after;
            existing.additions += diff.additions;
            existing.deletions += diff.deletions;
        } else if session.diffs.len() < 12 {
            session.diffs.push(diff);
        }
        Some(path)
    }

    /// A `task` call: creates the child session (emitted now, with all its messages) and returns the state.
    fn delegate(&mut self, out: &mut VecDeque<GeneratedFile>, session: &mut Session) -> Json {
        session.task_calls += 1;
        let start = self.now;
        let kind = self.projects[session.project].kind;
        let (description, prompt) = content::pick(&mut self.rng, content::DELEGATIONS);
        let prompt = prompt.replace("{file}", content::pick(&mut self.rng, kind.files));
        let subagent = if self.chance(0.6) { "general" } else { "explore" };
        let model = if subagent == "explore" && session.model.anthropic && self.chance(0.5) { &content::HAIKU } else { session.model };
        self.advance(20, 200);
        let spec = SessionSpec {
            project: session.project,
            directory: session.directory.clone(),
            version: session.version,
            model,
            agent: subagent,
            depth: session.depth + 1,
            title: format!("{description} (@{subagent} subagent)"),
            first_prompt: prompt.clone(),
            parent_id: Some(session.id.clone()),
            run_permissions: false,
        };
        let child = self.session(out, spec);
        self.advance(10, 300);
        let result = content::pick(&mut self.rng, content::TASK_RESULTS);
        session.pending_input_tokens += result.len() as u64 / 4 + 30;
        obj! {
            "status" => "completed",
            "input" => obj! { "description" => description, "prompt" => prompt, "subagent_type" => subagent },
            "output" => format!("task_id: {child} (for resuming to continue this task if needed)\n\n<task_result>\n{result}\n</task_result>"),
            "title" => description,
            "metadata" => obj! {
                "sessionId" => child.as_str(),
                "model" => obj! { "modelID" => model.id, "providerID" => model.provider },
                "truncated" => false,
            },
            "time" => obj! { "start" => start, "end" => self.now },
        }
    }

    fn large_call(&mut self, session: &Session) -> ToolCall {
        let language = self.projects[session.project].kind.language;
        let command = match language {
            Language::Rust => "cargo build --release -vv 2>&1",
            Language::TypeScript => "npm run build -- --verbose 2>&1",
            Language::Python => "pip install -e . -v 2>&1",
            Language::Go => "go build -x ./... 2>&1",
            Language::Notes => "find / -name '*.log' 2>/dev/null",
        };
        let output = content::large_log(&mut self.rng, self.config.large_output_bytes);
        // bash keeps at most 30 000 characters of the output in its metadata (the log is ASCII).
        let preview = output[..output.len().min(30_000)].to_owned();
        ToolCall {
            tool: "bash",
            input: obj! { "command" => command, "description" => "Verbose build" },
            title: "Verbose build".to_owned(),
            metadata: obj! { "output" => preview, "exit" => 0, "description" => "Verbose build", "truncated" => false },
            output,
            error: String::new(),
            duration_ms: self.rng.gen_range(20_000..240_000),
            changed: None,
        }
    }

    fn tool_call(&mut self, session: &mut Session, tool: &'static str) -> ToolCall {
        let project = &self.projects[session.project];
        let kind = project.kind;
        let worktree = project.worktree.clone();
        let relative = content::pick(&mut self.rng, kind.files);
        let absolute = format!("{worktree}/{relative}");
        let rng = &mut self.rng;
        match tool {
            "bash" => {
                let run = content::bash_run(rng, kind.language, kind.files);
                ToolCall {
                    tool,
                    input: obj! { "command" => run.command.as_str(), "description" => run.description },
                    title: run.description.to_owned(),
                    metadata: obj! {
                        "output" => run.output.as_str(),
                        "exit" => run.exit.map_or(Json::Null, Json::Int),
                        "description" => run.description,
                        "truncated" => false,
                    },
                    output: run.output,
                    error: "Error: The user rejected permission to use this specific tool call.".to_owned(),
                    duration_ms: rng.gen_range(40..25_000),
                    changed: None,
                }
            }
            "read" => {
                let count = rng.gen_range(8..90);
                let lines = content::source_lines(rng, kind.language, count);
                let mut output = String::from("<file>\n");
                for (index, line) in lines.iter().enumerate() {
                    output.push_str(&format!("{:05}| {line}\n", index + 1));
                }
                output.push_str(&format!("\n(End of file - total {count} lines)\n</file>"));
                let preview = lines.iter().take(20).cloned().collect::<Vec<_>>().join("\n");
                ToolCall {
                    tool,
                    input: obj! { "filePath" => absolute.as_str() },
                    output,
                    title: relative.to_owned(),
                    metadata: obj! { "preview" => preview, "truncated" => false, "loaded" => Json::Arr(Vec::new()) },
                    error: format!("Error: File not found: {absolute}"),
                    duration_ms: rng.gen_range(2..40),
                    changed: None,
                }
            }
            "write" => {
                let count = rng.gen_range(6..60);
                let text = content::source_lines(rng, kind.language, count).join("\n");
                let exists = rng.gen_bool(0.4);
                let diff = FileDiff {
                    file: relative.to_owned(),
                    before: String::new(),
                    after: text.clone(),
                    additions: count_lines(&text),
                    deletions: 0,
                    status: if exists { "modified" } else { "added" },
                };
                ToolCall {
                    tool,
                    input: obj! { "content" => text, "filePath" => absolute.as_str() },
                    output: "Wrote file successfully.".to_owned(),
                    title: relative.to_owned(),
                    metadata: obj! {
                        "diagnostics" => Json::Obj(Vec::new()),
                        "filepath" => absolute.as_str(),
                        "exists" => exists,
                        "truncated" => false,
                    },
                    error: format!("Error: You must read the file {absolute} before overwriting it. Use the Read tool first"),
                    duration_ms: rng.gen_range(5..700),
                    changed: Some((absolute, diff)),
                }
            }
            "edit" => {
                let count = rng.gen_range(10..60);
                let lines = content::source_lines(rng, kind.language, count);
                let at = rng.gen_range(0..count);
                let old = lines[at].clone();
                let added = rng.gen_range(1..5);
                let new_lines: Vec<String> = content::source_lines(rng, kind.language, added + 3).into_iter().skip(3).collect();
                let new = new_lines.join("\n");
                let mut after_lines = lines.clone();
                after_lines.splice(at..=at, new_lines.iter().cloned());
                let before = lines.join("\n") + "\n";
                let after = after_lines.join("\n") + "\n";
                let context_start = at.saturating_sub(3);
                let mut diff_text = format!(
                    "Index: {absolute}\n===================================================================\n--- {absolute}\n+++ {absolute}\n@@ -{},{} +{},{} @@\n",
                    context_start + 1,
                    at - context_start + 1,
                    context_start + 1,
                    at - context_start + added
                );
                for line in &lines[context_start..at] {
                    diff_text.push_str(&format!(" {line}\n"));
                }
                diff_text.push_str(&format!("-{old}\n"));
                for line in &new_lines {
                    diff_text.push_str(&format!("+{line}\n"));
                }
                let diff = FileDiff {
                    file: relative.to_owned(),
                    before: before.clone(),
                    after: after.clone(),
                    additions: added as u64,
                    deletions: 1,
                    status: "modified",
                };
                ToolCall {
                    tool,
                    input: obj! { "filePath" => absolute.as_str(), "oldString" => old, "newString" => new },
                    output: "Edit applied successfully.".to_owned(),
                    title: relative.to_owned(),
                    metadata: obj! {
                        "diagnostics" => Json::Obj(Vec::new()),
                        "diff" => diff_text,
                        "filediff" => obj! {
                            "file" => absolute.as_str(),
                            "before" => before,
                            "after" => after,
                            "additions" => added,
                            "deletions" => 1,
                        },
                        "truncated" => false,
                    },
                    error: "Error: oldString not found in content".to_owned(),
                    duration_ms: rng.gen_range(5..900),
                    changed: Some((absolute, diff)),
                }
            }
            "glob" => {
                let extension = relative.rsplit('.').next().unwrap_or("md");
                let matches: Vec<String> = kind.files.iter().filter(|file| file.ends_with(extension)).map(|file| format!("{worktree}/{file}")).collect();
                ToolCall {
                    tool,
                    input: obj! { "pattern" => format!("**/*.{extension}") },
                    output: if matches.is_empty() { "No files found".to_owned() } else { matches.join("\n") },
                    title: String::new(),
                    metadata: obj! { "count" => matches.len(), "truncated" => false },
                    error: format!("Error: No such file or directory: {worktree}/build"),
                    duration_ms: rng.gen_range(5..120),
                    changed: None,
                }
            }
            "grep" => {
                let pattern = content::pick(rng, &["TODO", "unwrap\\(", "fetch", "timeout", "load_", "Error", "retry"]);
                let hits = rng.gen_range(0..9);
                let mut output = format!("Found {hits} matches\n");
                for _ in 0..hits {
                    let file = content::pick(rng, kind.files);
                    output.push_str(&format!("{worktree}/{file}:\n  Line {}: {}\n\n", rng.gen_range(1..400), content::source_lines(rng, kind.language, 2)[1]));
                }
                if hits == 0 {
                    output = "No files found".to_owned();
                }
                ToolCall {
                    tool,
                    input: obj! { "pattern" => pattern, "path" => worktree.as_str() },
                    output,
                    title: pattern.to_owned(),
                    metadata: obj! { "matches" => hits, "truncated" => false },
                    error: "Error: ripgrep failed: regex parse error".to_owned(),
                    duration_ms: rng.gen_range(10..300),
                    changed: None,
                }
            }
            _ => self.todo_call(session),
        }
    }

    /// A `todowrite` call: creates the session's list the first time, then advances it one item.
    fn todo_call(&mut self, session: &mut Session) -> ToolCall {
        let todos = session.todos.get_or_insert_with(Vec::new);
        if todos.is_empty() {
            let count = self.rng.gen_range(3..=6);
            let start = self.rng.gen_range(0..content::TODO_ITEMS.len());
            for index in 0..count {
                todos.push(Todo {
                    id: (index + 1).to_string(),
                    content: content::TODO_ITEMS[(start + index) % content::TODO_ITEMS.len()],
                    status: if index == 0 { "in_progress" } else { "pending" },
                    priority: content::pick(&mut self.rng, &["high", "high", "medium", "low"]),
                });
            }
        } else if let Some(current) = todos.iter().position(|todo| todo.status == "in_progress") {
            todos[current].status = "completed";
            if let Some(next) = todos.get_mut(current + 1) {
                next.status = "in_progress";
            }
        } else if let Some(last) = todos.last_mut() {
            last.status = if self.rng.gen_bool(0.8) { "completed" } else { "cancelled" };
        }
        session.todos_written = true;
        let list: Vec<Json> = todos
            .iter()
            .map(|todo| obj! { "content" => todo.content, "status" => todo.status, "priority" => todo.priority, "id" => todo.id.as_str() })
            .collect();
        let open = todos.iter().filter(|todo| todo.status != "completed").count();
        ToolCall {
            tool: "todowrite",
            input: obj! { "todos" => list.clone() },
            output: String::from_utf8(Json::Arr(list.clone()).to_pretty()).unwrap_or_default(),
            title: format!("{open} todos"),
            metadata: obj! { "todos" => list, "truncated" => false },
            error: String::new(),
            duration_ms: self.rng.gen_range(1..8),
            changed: None,
        }
    }

    /// The next deliberately bad file, rotating through the corruptions seen in the wild.
    pub(crate) fn bad_file(&mut self) -> GeneratedFile {
        let rng = &mut self.bad_rng;
        let message = self.ids.ascending("msg", self.now, rng);
        let part = self.ids.ascending("prt", self.now, rng);
        let session = self.ids.descending("ses", self.now, rng);
        let valid = obj! {
            "id" => part.as_str(),
            "sessionID" => session.as_str(),
            "messageID" => message.as_str(),
            "type" => "text",
            "text" => "I'll start by reading the relevant code and then run the tests to see what fails.",
            "time" => obj! { "start" => self.now, "end" => self.now + 40 },
        };
        let contents = match self.bad_files % 5 {
            0 => Vec::new(),
            1 => vec![0u8; 413],
            2 => {
                let mut bytes = valid.to_pretty();
                bytes.truncate(bytes.len() / 2);
                bytes
            }
            3 => b"hello".to_vec(),
            _ => {
                let mut fields = match valid {
                    Json::Obj(fields) => fields,
                    _ => Vec::new(),
                };
                fields[0].1 = Json::Int(self.now);
                Json::Obj(fields).to_pretty()
            }
        };
        self.bad_files += 1;
        GeneratedFile { relative_path: storage_path(&["part", &message, &format!("{part}.json")]), contents, kind: "bad" }
    }
}

fn deny_rule(permission: &'static str) -> Json {
    obj! { "permission" => permission, "action" => "deny", "pattern" => "*" }
}

fn todo_json(todo: &Todo) -> Json {
    obj! { "id" => todo.id.as_str(), "content" => todo.content, "status" => todo.status, "priority" => todo.priority }
}

fn diff_json(diff: &FileDiff) -> Json {
    obj! {
        "file" => diff.file.as_str(),
        "before" => diff.before.as_str(),
        "after" => diff.after.as_str(),
        "additions" => diff.additions,
        "deletions" => diff.deletions,
        "status" => diff.status,
    }
}
