//! Codex CLI's rollouts: `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread id>.jsonl`, and
//! the same files after Codex moves them to `archived_sessions/`.
//!
//! What makes a row (see `docs/schema.md`, "Codex CLI"):
//! - a **response** is one `messages` row keyed by the `token_usage_record` line's `response_id`,
//!   with a `step-finish` part and finish `step_events` row `<response_id>/usage`. Codex writes
//!   each response's usage twice (that record, then an `event_msg` `token_count`); only the
//!   record is counted. Its `input_tokens` include the cached ones: `input` here is
//!   `input_tokens - cached_input_tokens`; `output` includes reasoning, as Codex counts it.
//!   The record names no model: it is the model of the record's turn (`turn_context`).
//! - the items of a response (reasoning, assistant text, tool calls) are parts of that response's
//!   message; they are written before its usage record, so they wait for it (the decoder keeps
//!   their ids in its state across reads);
//! - a tool call is a part keyed by its `call_id`; its output and its `item_completed` event
//!   complete it (status `completed`/`error`, output, end time);
//! - a prompt is a `messages` row keyed by `<thread id>#<ordinal>`;
//! - a sub-agent is its own thread and file, with `parent_thread_id`; the parent's
//!   `spawn_agent` call gets the child's thread id (`item_completed` `SubAgentActivity`), so
//!   traces nest it. A fork is a new thread that refers to its parent's file without copying it.
//!
//! Every other line is kept raw in `transcript_lines`.

use std::path::{Path, PathBuf};

use ducktail_model::{MessageRecord, PartRecord, RawDocument, Records, Tokens};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{integer, json_text, object, owned, text, timestamp, DecodeContext, LineDecoder, StretchOutput, TranscriptFormat};

/// `source` and `app` of Codex CLI's rows.
pub const CODEX_SOURCE: &str = "codex";

/// Codex CLI's rollouts under `$CODEX_HOME` (`~/.codex`).
pub struct Codex;

impl TranscriptFormat for Codex {
    fn source(&self) -> &'static str {
        CODEX_SOURCE
    }

    fn folders(&self, root: &Path) -> Vec<PathBuf> {
        let (sessions, archived) = (root.join("sessions"), root.join("archived_sessions"));
        if sessions.is_dir() || archived.is_dir() {
            vec![sessions, archived]
        } else {
            vec![root.to_owned()]
        }
    }

    fn is_transcript(&self, path: &Path) -> bool {
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        // Codex compresses old rollouts: the same session, read whole.
        name.starts_with("rollout-") && (name.ends_with(".jsonl") || name.ends_with(".jsonl.zst"))
    }

    fn decoder(&self, path: &Path, state: Option<&str>, context: &DecodeContext) -> Box<dyn LineDecoder> {
        let mut carried: CodexState = state.and_then(|state| serde_json::from_str(state).ok()).unwrap_or_default();
        if carried.thread_id.is_none() {
            carried.thread_id = thread_id_of_path(path);
        }
        Box::new(CodexDecoder { state: carried, context: context.clone() })
    }
}

/// The thread id a rollout's name ends with (`rollout-<time>-<uuid>.jsonl`, or `.jsonl.zst`).
fn thread_id_of_path(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".zst").unwrap_or(name);
    let stem = stem.strip_suffix(".jsonl").unwrap_or(stem);
    let id = stem.get(stem.len().checked_sub(36)?..)?;
    (id.bytes().filter(|byte| *byte == b'-').count() == 4).then(|| id.to_owned())
}

/// What a read needs from the lines before its cursor.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct CodexState {
    thread_id: Option<String>,
    provider: Option<String>,
    /// The model of the latest `turn_context`.
    model: Option<String>,
    /// Parts written since the last usage record: they belong to the next response.
    pending_parts: Vec<String>,
}

struct CodexDecoder {
    state: CodexState,
    context: DecodeContext,
}

impl CodexDecoder {
    fn session_meta(&mut self, out: &mut StretchOutput, payload: &Map<String, Value>, at: Option<i64>) {
        if let Some(id) = owned(payload, "id") {
            self.state.thread_id = Some(id);
        }
        let Some(thread) = self.state.thread_id.clone() else { return };
        if let Some(provider) = owned(payload, "model_provider") {
            self.state.provider = Some(provider);
        }
        let spawn = object(payload, "source").and_then(|source| object(source, "subagent")).and_then(|subagent| object(subagent, "thread_spawn"));
        let parent = owned(payload, "parent_thread_id").or_else(|| spawn.and_then(|spawn| owned(spawn, "parent_thread_id")));
        let session = out.session(&thread);
        session.directory = owned(payload, "cwd");
        session.project_id = session.directory.clone();
        session.version = owned(payload, "cli_version");
        session.created_at = timestamp(payload, "timestamp").or(at);
        session.updated_at = at;
        if let Some(parent) = parent {
            session.parent_id = Some(parent);
            session.slug = spawn.and_then(|spawn| owned(spawn, "agent_nickname"));
            session.title = spawn.and_then(|spawn| owned(spawn, "agent_path")).or_else(|| session.slug.clone());
        }
    }

    fn part(&mut self, out: &mut StretchOutput, part: PartRecord) {
        if part.message_id.is_empty() {
            self.state.pending_parts.push(part.id.clone());
        }
        out.push(Records::Part { part, step: None, file_operation: None });
    }

    fn response_item(&mut self, out: &mut StretchOutput, thread: &str, item: &Map<String, Value>, key: &str, at: Option<i64>) -> bool {
        let cap = out.max_text_bytes();
        let raw = || super::raw_line(&Value::Object(item.clone()).to_string(), cap);
        let id = owned(item, "id").unwrap_or_else(|| key.to_owned());
        match text(item, "type").unwrap_or_default() {
            "message" => {
                let role = text(item, "role").unwrap_or_default();
                let content: Vec<&str> = item
                    .get("content")
                    .and_then(Value::as_array)
                    .map(|blocks| blocks.iter().filter_map(|block| block.get("text").and_then(Value::as_str)).collect())
                    .unwrap_or_default();
                let joined = content.join("\n");
                match role {
                    "assistant" => {
                        let mut part =
                            PartRecord { id, session_id: thread.to_owned(), part_type: "text".to_owned(), started_at: at, raw: raw(), ..PartRecord::default() };
                        part.text = Some(json_text(&Value::from(joined), cap, &mut part.content_truncated));
                        self.part(out, part);
                        true
                    }
                    "user" if !joined.starts_with("<environment_context>") && !joined.starts_with("<user_instructions>") => {
                        let session = out.session(thread);
                        if session.title.is_none() {
                            session.title = Some(joined.lines().next().unwrap_or_default().chars().take(120).collect());
                        }
                        let mut part = PartRecord {
                            id: format!("{key}/0"),
                            session_id: thread.to_owned(),
                            message_id: key.to_owned(),
                            part_type: "text".to_owned(),
                            started_at: at,
                            raw: raw(),
                            ..PartRecord::default()
                        };
                        part.text = Some(json_text(&Value::from(joined), cap, &mut part.content_truncated));
                        out.push(Records::Message(MessageRecord {
                            id: key.to_owned(),
                            session_id: thread.to_owned(),
                            role: Some("user".to_owned()),
                            agent: Some("main".to_owned()),
                            created_at: at,
                            completed_at: at,
                            raw: raw(),
                            ..MessageRecord::default()
                        }));
                        out.push(Records::Part { part, step: None, file_operation: None });
                        true
                    }
                    _ => false,
                }
            }
            "reasoning" => {
                let summary: Vec<&str> = item
                    .get("summary")
                    .and_then(Value::as_array)
                    .map(|blocks| blocks.iter().filter_map(|block| block.get("text").and_then(Value::as_str)).collect())
                    .unwrap_or_default();
                let mut part =
                    PartRecord { id, session_id: thread.to_owned(), part_type: "reasoning".to_owned(), started_at: at, raw: raw(), ..PartRecord::default() };
                part.text = Some(json_text(&Value::from(summary.join("\n")), cap, &mut part.content_truncated));
                self.part(out, part);
                true
            }
            "function_call" | "custom_tool_call" | "local_shell_call" => {
                let call_id = owned(item, "call_id").unwrap_or(id);
                let mut part = PartRecord {
                    id: call_id.clone(),
                    session_id: thread.to_owned(),
                    part_type: "tool".to_owned(),
                    call_id: Some(call_id),
                    tool_name: owned(item, "name"),
                    tool_status: Some("running".to_owned()),
                    started_at: at,
                    raw: raw(),
                    ..PartRecord::default()
                };
                if let Some(input) = item.get("arguments").or_else(|| item.get("input")) {
                    part.tool_input = Some(json_text(input, cap, &mut part.content_truncated));
                }
                self.part(out, part);
                true
            }
            "function_call_output" | "custom_tool_call_output" | "local_shell_call_output" => {
                let Some(call_id) = owned(item, "call_id") else { return false };
                let mut part = PartRecord {
                    id: call_id.clone(),
                    session_id: thread.to_owned(),
                    part_type: "tool".to_owned(),
                    call_id: Some(call_id),
                    ended_at: at,
                    raw: raw(),
                    ..PartRecord::default()
                };
                let output = item.get("output").map(|output| json_text(output, cap, &mut part.content_truncated));
                // The output is written after the call's `item_completed`, so it must agree with
                // it: a shell call says its exit code in the output's first line.
                let failed = output.as_deref().and_then(exit_code).is_some_and(|code| code != 0);
                part.tool_status = Some(if failed { "error" } else { "completed" }.to_owned());
                if failed {
                    part.tool_error = output;
                } else {
                    part.tool_output = output;
                }
                out.push(Records::Part { part, step: None, file_operation: None });
                true
            }
            _ => false,
        }
    }

    /// `item_completed` events: a tool's final status, a sub-agent's thread.
    fn item_completed(&mut self, out: &mut StretchOutput, thread: &str, item: &Map<String, Value>, at: Option<i64>) -> bool {
        let Some(id) = owned(item, "id") else { return false };
        let cap = out.max_text_bytes();
        let mut part = PartRecord {
            id: id.clone(),
            session_id: thread.to_owned(),
            part_type: "tool".to_owned(),
            call_id: Some(id),
            raw: RawDocument::default(),
            ..PartRecord::default()
        };
        match text(item, "type").unwrap_or_default() {
            "CommandExecution" | "FileChange" | "CollabAgentToolCall" | "McpToolCall" | "WebSearch" => {
                part.tool_status = text(item, "status").map(|status| if status == "completed" { "completed" } else { "error" }.to_owned());
                if part.tool_status.as_deref() == Some("error") {
                    part.tool_error = item.get("aggregated_output").map(|output| json_text(output, cap, &mut part.content_truncated));
                }
                part.ended_at = integer(item, "completed_at_ms").or(at);
                part.started_at = integer(item, "started_at_ms");
            }
            "SubAgentActivity" => {
                let Some(child) = owned(item, "agent_thread_id") else { return false };
                if text(item, "kind") != Some("started") {
                    return false;
                }
                part.child_session_id = Some(child);
            }
            _ => return false,
        }
        out.push(Records::Part { part, step: None, file_operation: None });
        true
    }

    fn usage_record(&mut self, out: &mut StretchOutput, thread: &str, payload: &Map<String, Value>, line: &str, at: Option<i64>) -> bool {
        let (Some(response_id), Some(usage)) = (owned(payload, "response_id"), object(payload, "usage")) else { return false };
        let cap = out.max_text_bytes();
        // The record's turn is the latest `turn_context`'s: Codex writes it at each turn's start.
        let model = self.state.model.clone();
        let input = integer(usage, "input_tokens").unwrap_or(0);
        let cached = integer(usage, "cached_input_tokens").unwrap_or(0);
        let output = integer(usage, "output_tokens").unwrap_or(0);
        let cache_write = integer(usage, "cache_write_input_tokens").unwrap_or(0);
        let tokens = Tokens {
            // Codex's input counts the cached tokens; ducktail's, like OpenCode's and Anthropic's,
            // does not.
            input: input.saturating_sub(cached).max(0),
            output,
            reasoning: integer(usage, "reasoning_output_tokens").unwrap_or(0),
            cache_read: cached,
            cache_write,
            total: integer(usage, "total_tokens"),
        };
        let (cost, cost_source) = super::priced(&self.context.prices, model.as_deref(), &tokens, 0);
        out.push(Records::Message(MessageRecord {
            id: response_id.clone(),
            session_id: thread.to_owned(),
            role: Some("assistant".to_owned()),
            agent: Some("main".to_owned()),
            provider_id: self.state.provider.clone(),
            model_id: model,
            cost,
            cost_source,
            list_cost: cost,
            tokens,
            created_at: at,
            completed_at: at,
            raw: super::raw_line(line, cap),
            ..MessageRecord::default()
        }));
        out.push(super::usage_step(thread, &response_id, None, cost, cost_source, tokens, at));
        // The response's items were written before its usage: they are its parts.
        for part_id in std::mem::take(&mut self.state.pending_parts) {
            out.push(Records::Part {
                part: PartRecord {
                    id: part_id,
                    session_id: thread.to_owned(),
                    message_id: response_id.clone(),
                    raw: super::raw_line("{}", cap),
                    ..PartRecord::default()
                },
                step: None,
                file_operation: None,
            });
        }
        true
    }
}

impl LineDecoder for CodexDecoder {
    fn line(&mut self, line: &Map<String, Value>, raw: &str, _offset: u64, out: &mut StretchOutput) {
        let line_type = text(line, "type").unwrap_or("unknown");
        let at = timestamp(line, "timestamp");
        let empty = Map::new();
        let payload = object(line, "payload").unwrap_or(&empty);
        if line_type == "session_meta" {
            self.session_meta(out, payload, at);
        }
        let Some(thread) = self.state.thread_id.clone() else { return };
        if let Some(at) = at {
            let session = out.session(&thread);
            session.updated_at = Some(session.updated_at.map_or(at, |updated| updated.max(at)));
            session.created_at = Some(session.created_at.map_or(at, |created| created.min(at)));
        }
        let key = format!("{thread}#{}", integer(line, "ordinal").map_or_else(|| super::fnv1a(raw.as_bytes()).to_string(), |ordinal| ordinal.to_string()));
        let payload_type = text(payload, "type");
        let kept = match (line_type, payload_type) {
            ("turn_context", _) => {
                self.state.model = owned(payload, "model").or(self.state.model.take());
                false
            }
            ("token_usage_record", _) => self.usage_record(out, &thread, payload, raw, at),
            ("response_item", _) => self.response_item(out, &thread, payload, &key, at),
            ("event_msg", Some("item_completed")) => object(payload, "item").is_some_and(|item| self.item_completed(out, &thread, item, at)),
            _ => false,
        };
        if !kept && line_type != "session_meta" {
            let line_type = match payload_type {
                Some(sub) => format!("{line_type}/{sub}"),
                None => line_type.to_owned(),
            };
            out.keep_line(&thread, Some(line_type), at, raw);
        } else if line_type == "session_meta" {
            out.keep_line(&thread, Some(line_type.to_owned()), at, raw);
        }
    }

    fn session_id(&self) -> Option<String> {
        self.state.thread_id.clone()
    }

    fn state(&self) -> Option<String> {
        serde_json::to_string(&self.state).ok()
    }
}

/// The exit code in a shell call's output header (`Process exited with code N`, or `Exit code:
/// N` for `apply_patch`), which precedes the command's own output.
fn exit_code(output: &str) -> Option<i64> {
    output.lines().take(4).find_map(|line| {
        let rest = line.strip_prefix("Process exited with code ").or_else(|| line.strip_prefix("Exit code: "))?;
        rest.split(|c: char| !c.is_ascii_digit() && c != '-').next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_output_names_its_exit_code() {
        assert_eq!(exit_code("Chunk ID: 7959b6\nWall time: 0.0000 seconds\nProcess exited with code 1\nOutput:\n"), Some(1));
        assert_eq!(exit_code("Exit code: 0\nWall time: 0.1 seconds"), Some(0));
        assert_eq!(exit_code("{\"task_name\":\"/root/todo_scan\"}"), None);
    }

    #[test]
    fn the_thread_id_is_the_end_of_the_file_name() {
        let path = Path::new("/x/sessions/2026/12/07/rollout-2026-12-07T11-46-47-01a25053-ee8a-7571-9fcb-2d522f81326d.jsonl");
        assert_eq!(thread_id_of_path(path).as_deref(), Some("01a25053-ee8a-7571-9fcb-2d522f81326d"));
        assert_eq!(thread_id_of_path(Path::new("rollout-x.jsonl")), None);
        let compressed = Path::new("/x/sessions/2026/12/07/rollout-2026-12-07T11-46-47-01a25053-ee8a-7571-9fcb-2d522f81326d.jsonl.zst");
        assert_eq!(thread_id_of_path(compressed).as_deref(), Some("01a25053-ee8a-7571-9fcb-2d522f81326d"));
        assert!(Codex.is_transcript(compressed));
    }
}
