//! Claude Code's transcripts: `<config>/projects/<encoded cwd>/<session id>.jsonl`, and a
//! sub-agent's in `<session id>/subagents/agent-<agent id>.jsonl` beside `agent-<id>.meta.json`.
//!
//! What makes a row (see `docs/schema.md`, "Claude Code"):
//! - a **response** is one `messages` row keyed by `message.id`, with one `step-finish` part and
//!   finish `step_events` row `<message.id>/usage` holding its usage. Claude Code writes one
//!   `assistant` line per content block, each repeating the whole response's final usage, so
//!   every copy merges into the same rows; a resumed or forked file repeating them adds nothing.
//! - a content block is a part: `<message.id>/<apiBlockIndex>` for text and thinking, the
//!   `tool_use` id for a tool call, which the `tool_result` block of a later `user` line
//!   completes (status, output, end time);
//! - a prompt (a `user` line with text) is a `messages` row keyed by the line's `uuid`;
//! - a sub-agent's lines (`isSidechain` with an `agentId`, in its own file in current versions)
//!   make the child session `<session id>/agent-<agent id>`, and its `Agent`/`Task` call's part
//!   gets `child_session_id`, so traces nest it. The parent's `toolUseResult.usage` repeats the
//!   sub-agent's last response and is not counted.
//!
//! Every other line (attachments, request logs, `cost-state`, compaction markers, types newer
//! than this decoder) is kept raw in `transcript_lines`.

use std::path::{Path, PathBuf};

use ducktail_model::{MessageRecord, PartRecord, RawDocument, Records, Tokens};
use serde_json::{Map, Value};

use super::{integer, json_text, object, owned, text, timestamp, DecodeContext, LineDecoder, StretchOutput, TranscriptFormat};

/// `source` and `app` of Claude Code's rows.
pub const CLAUDE_CODE_SOURCE: &str = "claude_code";

/// Claude Code's transcripts under a config folder (`~/.claude`, `$CLAUDE_CONFIG_DIR`).
pub struct ClaudeCode;

impl TranscriptFormat for ClaudeCode {
    fn source(&self) -> &'static str {
        CLAUDE_CODE_SOURCE
    }

    fn folders(&self, root: &Path) -> Vec<PathBuf> {
        // Pointed at `projects/` itself, or at a folder of transcripts, read that.
        if root.join("projects").is_dir() {
            vec![root.join("projects")]
        } else {
            vec![root.to_owned()]
        }
    }

    fn is_transcript(&self, path: &Path) -> bool {
        path.extension().is_some_and(|extension| extension == "jsonl")
    }

    // Claude Code carries no state across reads: every line names its session, and the path
    // names the rest.
    fn decoder(&self, path: &Path, _state: Option<&str>, context: &DecodeContext) -> Box<dyn LineDecoder> {
        Box::new(ClaudeDecoder { file: FileContext::of(path), context: context.clone(), session_id: None, linked: false })
    }
}

/// What the path (and a sub-agent's `.meta.json`) says about a transcript.
#[derive(Debug, Default, Clone)]
struct FileContext {
    /// The parent session's id, for a file under `<session>/subagents/`.
    parent_session: Option<String>,
    /// The sub-agent's id, from `agent-<id>.jsonl`.
    agent_id: Option<String>,
    /// `agentType` from the meta file.
    agent_type: Option<String>,
    /// `description` from the meta file.
    description: Option<String>,
    /// `toolUseId` from the meta file: the parent's call that started the sub-agent.
    tool_use_id: Option<String>,
    /// The session a main file is named after (`<session id>.jsonl`).
    own_session: Option<String>,
}

impl FileContext {
    fn of(path: &Path) -> FileContext {
        let folder = path.parent();
        let in_subagents = folder.and_then(Path::file_name).is_some_and(|name| name == "subagents");
        let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
        let Some(agent_id) = stem.strip_prefix("agent-").filter(|_| in_subagents) else {
            // A session's own file is named after it: lines before the first that says its
            // session (older `summary` lines) belong to it.
            return FileContext { own_session: Some(stem.to_owned()), ..FileContext::default() };
        };
        let parent_session = folder.and_then(Path::parent).and_then(Path::file_name).and_then(|name| name.to_str()).map(str::to_owned);
        let meta: Map<String, Value> = read_meta(&path.with_extension("meta.json")).unwrap_or_default();
        FileContext {
            parent_session,
            agent_id: Some(agent_id.to_owned()),
            agent_type: owned(&meta, "agentType"),
            description: owned(&meta, "description"),
            tool_use_id: owned(&meta, "toolUseId"),
            own_session: None,
        }
    }
}

/// A sub-agent's meta file, read like every source file: never through a symbolic link, never
/// blocking on a FIFO, and at most 1 MiB (it holds a few short fields).
fn read_meta(path: &Path) -> Option<Map<String, Value>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(1024 * 1024).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

struct ClaudeDecoder {
    file: FileContext,
    context: DecodeContext,
    session_id: Option<String>,
    /// Whether this stretch has linked the sub-agent to the call that started it.
    linked: bool,
}

/// The child session a sub-agent's lines make.
fn sub_agent_session(parent: &str, agent_id: &str) -> String {
    format!("{parent}/agent-{agent_id}")
}

impl ClaudeDecoder {
    /// The session a line belongs to, and the sub-agent's id when it is a sub-agent's line.
    fn session_of(&self, line: &Map<String, Value>) -> Option<(String, Option<String>)> {
        let session = text(line, "sessionId").map(str::to_owned).or_else(|| self.file.parent_session.clone()).or_else(|| self.file.own_session.clone())?;
        let agent_id = (line.get("isSidechain") == Some(&Value::Bool(true))).then(|| owned(line, "agentId")).flatten().or_else(|| self.file.agent_id.clone());
        Some(match agent_id {
            Some(agent_id) => (sub_agent_session(&session, &agent_id), Some(agent_id)),
            None => (session, None),
        })
    }

    fn describe_session(&self, out: &mut StretchOutput, line: &Map<String, Value>, session_id: &str, parent: Option<&str>, at: Option<i64>) {
        let session = out.session(session_id);
        if session.directory.is_none() {
            session.directory = owned(line, "cwd");
            session.project_id = session.directory.clone();
        }
        if session.version.is_none() {
            session.version = owned(line, "version");
        }
        if let Some(slug) = owned(line, "slug") {
            session.slug = Some(slug);
        }
        if let Some(parent) = parent {
            session.parent_id = Some(parent.to_owned());
            if session.title.is_none() {
                session.title = self.file.description.clone();
            }
        }
        if let Some(at) = at {
            session.created_at = Some(session.created_at.map_or(at, |created| created.min(at)));
            session.updated_at = Some(session.updated_at.map_or(at, |updated| updated.max(at)));
        }
    }

    fn assistant(&self, out: &mut StretchOutput, line: &Map<String, Value>, raw: &str, session_id: &str, agent: &str, at: Option<i64>) {
        let Some(message) = object(line, "message") else {
            out.keep_line(session_id, Some("assistant".to_owned()), at, raw);
            return;
        };
        let Some(id) = owned(message, "id").or_else(|| owned(line, "uuid")) else {
            out.keep_line(session_id, Some("assistant".to_owned()), at, raw);
            return;
        };
        let cap = out.max_text_bytes();
        let model = owned(message, "model");
        let api_error = line.get("isApiErrorMessage") == Some(&Value::Bool(true)) || model.as_deref() == Some("<synthetic>");
        let usage = object(message, "usage");
        let tokens = usage.map(claude_tokens).unwrap_or_default();
        let cache_write_1h = usage.and_then(|usage| object(usage, "cache_creation")).and_then(|cache| integer(cache, "ephemeral_1h_input_tokens")).unwrap_or(0);
        let (cost, cost_source) = if api_error { (None, None) } else { super::priced(&self.context.prices, model.as_deref(), &tokens, cache_write_1h) };
        let stop_reason = owned(message, "stop_reason");
        out.push(Records::Message(MessageRecord {
            id: id.clone(),
            session_id: session_id.to_owned(),
            role: Some("assistant".to_owned()),
            parent_id: owned(line, "parentUuid"),
            agent: Some(agent.to_owned()),
            provider_id: Some("anthropic".to_owned()),
            model_id: model,
            cost,
            cost_source,
            list_cost: cost,
            tokens,
            finish_reason: stop_reason.clone(),
            error_name: api_error.then(|| "api_error".to_owned()),
            created_at: at,
            completed_at: at,
            raw: super::raw_line(raw, cap),
            ..MessageRecord::default()
        }));
        if !api_error && usage.is_some() {
            out.push(super::usage_step(session_id, &id, stop_reason, cost, cost_source, tokens, at));
        }
        let blocks = message.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let first_index = integer(line, "apiBlockIndex").unwrap_or(0);
        for (position, block) in blocks.iter().enumerate() {
            let Some(block) = block.as_object() else { continue };
            let index = first_index.saturating_add(position as i64);
            let mut part = PartRecord {
                id: format!("{id}/{index}"),
                session_id: session_id.to_owned(),
                message_id: id.clone(),
                started_at: at,
                raw: super::raw_line(&Value::Object(block.clone()).to_string(), cap),
                ..PartRecord::default()
            };
            match text(block, "type").unwrap_or("unknown") {
                "text" => {
                    part.part_type = "text".to_owned();
                    part.text = text(block, "text").map(|value| json_text(&Value::from(value), cap, &mut part.content_truncated));
                }
                "thinking" | "redacted_thinking" => {
                    part.part_type = "reasoning".to_owned();
                    part.text = text(block, "thinking").map(|value| json_text(&Value::from(value), cap, &mut part.content_truncated));
                }
                "tool_use" | "server_tool_use" => {
                    part.part_type = "tool".to_owned();
                    if let Some(call_id) = owned(block, "id") {
                        part.id = call_id.clone();
                        part.call_id = Some(call_id);
                    }
                    part.tool_name = owned(block, "name");
                    part.tool_status = Some("running".to_owned());
                    if let Some(input) = block.get("input") {
                        part.tool_input = Some(json_text(input, cap, &mut part.content_truncated));
                        part.tool_title = input.get("description").and_then(Value::as_str).map(str::to_owned);
                        part.subagent_type = input.get("subagent_type").and_then(Value::as_str).map(str::to_owned);
                    }
                }
                other => part.part_type = other.to_owned(),
            }
            out.push(Records::Part { part, step: None, file_operation: None });
        }
    }

    fn user(&self, out: &mut StretchOutput, line: &Map<String, Value>, raw: &str, session_id: &str, agent: &str, at: Option<i64>) {
        let cap = out.max_text_bytes();
        let Some(message) = object(line, "message") else {
            out.keep_line(session_id, Some("user".to_owned()), at, raw);
            return;
        };
        let uuid = owned(line, "uuid").unwrap_or_else(|| format!("{session_id}#{}", super::fnv1a(raw.as_bytes())));
        let mut prompt = None;
        let mut results = Vec::new();
        match message.get("content") {
            Some(Value::String(content)) => prompt = Some(content.clone()),
            Some(Value::Array(blocks)) => {
                for block in blocks.iter().filter_map(Value::as_object) {
                    match text(block, "type") {
                        Some("text") => prompt = text(block, "text").map(str::to_owned),
                        Some("tool_result") => results.push(block),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        for result in results {
            let Some(call_id) = owned(result, "tool_use_id") else { continue };
            let failed = result.get("is_error") == Some(&Value::Bool(true));
            let output = result.get("content").map(|content| match content {
                Value::Array(blocks) => blocks.iter().filter_map(|block| block.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n"),
                other => json_text(other, usize::MAX, &mut false),
            });
            let mut part = PartRecord {
                id: call_id.clone(),
                session_id: session_id.to_owned(),
                part_type: "tool".to_owned(),
                call_id: Some(call_id),
                tool_status: Some(if failed { "error" } else { "completed" }.to_owned()),
                ended_at: at,
                raw: super::raw_line(&Value::Object(result.clone()).to_string(), cap),
                ..PartRecord::default()
            };
            let output = output.map(|output| json_text(&Value::from(output), cap, &mut part.content_truncated));
            if failed {
                part.tool_error = output;
            } else {
                part.tool_output = output;
            }
            if let Some(agent_id) = object(line, "toolUseResult").and_then(|result| owned(result, "agentId")) {
                part.child_session_id = Some(sub_agent_session(self.parent_or_own(session_id), &agent_id));
            }
            out.push(Records::Part { part, step: None, file_operation: None });
        }
        let Some(prompt) = prompt else { return };
        let is_command = prompt.starts_with("<command-") || prompt.starts_with("<local-command-");
        let is_meta = line.get("isMeta") == Some(&Value::Bool(true)) || line.get("isCompactSummary") == Some(&Value::Bool(true));
        if !is_command && !is_meta {
            let session = out.session(session_id);
            if session.title.is_none() {
                let first_line = prompt.lines().next().unwrap_or_default();
                session.title = Some(first_line.chars().take(120).collect());
            }
        }
        let mut part = PartRecord {
            id: format!("{uuid}/0"),
            session_id: session_id.to_owned(),
            message_id: uuid.clone(),
            part_type: "text".to_owned(),
            started_at: at,
            raw: super::raw_line(raw, cap),
            ..PartRecord::default()
        };
        part.text = Some(json_text(&Value::from(prompt), cap, &mut part.content_truncated));
        out.push(Records::Message(MessageRecord {
            id: uuid,
            session_id: session_id.to_owned(),
            role: Some("user".to_owned()),
            parent_id: owned(line, "parentUuid"),
            agent: Some(agent.to_owned()),
            is_summary: line.get("isCompactSummary") == Some(&Value::Bool(true)),
            created_at: at,
            completed_at: at,
            raw: super::raw_line(raw, cap),
            ..MessageRecord::default()
        }));
        out.push(Records::Part { part, step: None, file_operation: None });
    }

    /// The main session of `session_id` (a sub-agent's session names its parent first).
    fn parent_or_own<'s>(&self, session_id: &'s str) -> &'s str {
        session_id.split_once("/agent-").map_or(session_id, |(parent, _)| parent)
    }
}

impl LineDecoder for ClaudeDecoder {
    fn line(&mut self, line: &Map<String, Value>, raw: &str, _offset: u64, out: &mut StretchOutput) {
        let line_type = text(line, "type").unwrap_or("unknown").to_owned();
        let at = timestamp(line, "timestamp");
        let Some((session_id, agent_id)) = self.session_of(line) else {
            // Lines without a session id (older `summary` lines) belong to the file's session.
            if let Some(session_id) = self.session_id.clone() {
                if line_type == "summary" {
                    out.session(&session_id).title = owned(line, "summary");
                }
                out.keep_line(&session_id, Some(line_type), at, raw);
            }
            return;
        };
        if self.session_id.is_none() {
            self.session_id = Some(session_id.clone());
        }
        let parent = agent_id.as_ref().map(|_| self.parent_or_own(&session_id).to_owned());
        let agent = match &agent_id {
            Some(_) => self.file.agent_type.clone().unwrap_or_else(|| "subagent".to_owned()),
            None => "main".to_owned(),
        };
        if matches!(line_type.as_str(), "user" | "assistant" | "system" | "attachment") {
            self.describe_session(out, line, &session_id, parent.as_deref(), at);
        }
        if let (Some(parent), Some(call_id), false) = (&parent, &self.file.tool_use_id, self.linked) {
            self.linked = true;
            // The meta file names the call that started this sub-agent: link it even before the
            // parent's result line says so.
            out.push(Records::Part {
                part: PartRecord {
                    id: call_id.clone(),
                    session_id: parent.clone(),
                    part_type: "tool".to_owned(),
                    call_id: Some(call_id.clone()),
                    child_session_id: Some(session_id.clone()),
                    subagent_type: self.file.agent_type.clone(),
                    raw: RawDocument::default(),
                    ..PartRecord::default()
                },
                step: None,
                file_operation: None,
            });
        }
        if line_type == "summary" {
            // Older versions name the session in `summary` lines.
            if let Some(summary) = owned(line, "summary") {
                out.session(&session_id).title.get_or_insert(summary);
            }
        }
        match line_type.as_str() {
            "assistant" => self.assistant(out, line, raw, &session_id, &agent, at),
            "user" => self.user(out, line, raw, &session_id, &agent, at),
            _ => out.keep_line(&session_id, Some(line_type), at, raw),
        }
    }

    fn session_id(&self) -> Option<String> {
        self.session_id.clone()
    }

    fn state(&self) -> Option<String> {
        // Every line names its session; the path names the rest.
        None
    }
}

/// Claude's usage in ducktail's terms: `input` already excludes cache reads and writes;
/// thinking tokens are part of `output` (`reasoning` repeats them).
fn claude_tokens(usage: &Map<String, Value>) -> Tokens {
    let input = integer(usage, "input_tokens").unwrap_or(0);
    let output = integer(usage, "output_tokens").unwrap_or(0);
    let cache_read = integer(usage, "cache_read_input_tokens").unwrap_or(0);
    let cache_write = integer(usage, "cache_creation_input_tokens").unwrap_or(0);
    Tokens {
        input,
        output,
        reasoning: object(usage, "output_tokens_details").and_then(|details| integer(details, "thinking_tokens")).unwrap_or(0),
        cache_read,
        cache_write,
        total: Some(input.saturating_add(output).saturating_add(cache_read).saturating_add(cache_write)),
    }
}
