//! Session records → agent spans, following the GenAI conventions (names in
//! [`super::conventions`]).
//!
//! A session is cut into turns: a user message and every model response after it up to the next
//! user message. A root session's turn is one trace (`invoke_agent`), so a day-long session is
//! many small traces rather than one that never ends, as agent tracers do it. Under the turn, one
//! `chat` span per model response and, under each, one `execute_tool` span per tool call. A tool
//! call that created a session (a delegation) is the parent of that session's turns, in the same
//! trace, at any depth.
//!
//! Ids are derived from the records' ids (FNV-1a, labelled per span kind), so every export of
//! the same records yields the same spans and a backend can deduplicate. A span is built only
//! once it is final: a response completed (or failed) — for agents that write a response over
//! several lines (Claude Code, Codex), once a later line of the session follows it —, a tool
//! call completed or failed, a turn whose responses and calls are all final and which is not the
//! last of its session or ended with a terminal finish reason. A session whose whole tree (root
//! and sub-agents) has been idle for longer than the configured time is final as it stands (an agent that crashed never completes its last
//! response); a prompt nothing answered then makes no span.

use std::collections::HashMap;

use ducktail_store::{TraceMessage, TraceRecords, TraceSession, TraceToolCall};

use super::conventions as semconv;

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// A list of strings.
    TextList(Vec<String>),
}

/// OTLP span kinds the export uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In-process work: agent turns and tool calls.
    Internal,
    /// A call to a model provider.
    Client,
}

/// One span, ready to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpan {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Parent span id; `None` for a trace's root.
    pub parent_span_id: Option<[u8; 8]>,
    /// `invoke_agent {agent}`, `chat {model}` or `execute_tool {tool}`.
    pub name: String,
    /// Span kind.
    pub kind: Kind,
    /// Start, ns since the epoch.
    pub start_ns: u64,
    /// End, ns since the epoch.
    pub end_ns: u64,
    /// The error, when the span failed.
    pub error: Option<String>,
    /// Attributes.
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// The session the span belongs to (recorded with it once sent).
    pub session_id: String,
}

impl AgentSpan {
    /// The span id as lowercase hex (how `otlp_sent` and backends show it).
    pub fn span_hex(&self) -> String {
        hex(&self.span_id)
    }
    /// The trace id as lowercase hex.
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What [`build_spans`] needs besides the records.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Now, µs since the epoch.
    pub now_us: i64,
    /// A session idle this long is final as it stands.
    pub idle_final_us: i64,
    /// Put prompts, tool arguments and results and titles in attributes.
    pub capture_content: bool,
    /// Truncate each captured text to this many bytes.
    pub max_content_bytes: usize,
}

/// The spans of some session trees: those final now, and how many are not final yet.
#[derive(Debug, Clone, Default)]
pub struct BuiltSpans {
    /// Final spans (a parent may come after its children: backends assemble a trace by ids).
    pub spans: Vec<AgentSpan>,
    /// Spans not final yet (sent by a later pass).
    pub pending: usize,
}

fn fnv1a(label: &str, id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in label.bytes().chain([b':']).chain(id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A span id for the record `id` of span kind `label` (never all zeros, which OTLP forbids).
pub fn span_id(label: &str, id: &str) -> [u8; 8] {
    fnv1a(label, id).max(1).to_be_bytes()
}

/// The trace id of the turn whose key is `id`.
pub fn trace_id(id: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&fnv1a("trace-high", id).to_be_bytes());
    bytes[8..].copy_from_slice(&fnv1a("trace-low", id).max(1).to_be_bytes());
    bytes
}

/// Finish reasons after which the model waits for tools: the turn goes on.
const CONTINUING_FINISH: [&str; 3] = ["tool-calls", "tool_calls", "tool_use"];

fn micros_to_nanos(micros: i64) -> u64 {
    u64::try_from(micros).unwrap_or(0).saturating_mul(1_000)
}

fn truncated(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Where a session's turns hang: their trace and parent span (the tool call that created the
/// session), or their own trace per turn for a root.
#[derive(Clone, Copy)]
struct Entry {
    trace_id: [u8; 16],
    parent: [u8; 8],
}

/// Builds the final spans of `records` (see the module doc).
pub fn build_spans(records: &TraceRecords, options: &BuildOptions) -> BuiltSpans {
    let mut built = BuiltSpans::default();
    let mut messages_by_session: HashMap<&str, Vec<&TraceMessage>> = HashMap::new();
    for message in &records.messages {
        messages_by_session.entry(&message.session_id).or_default().push(message);
    }
    let mut tools_by_message: HashMap<(&str, &str), Vec<&TraceToolCall>> = HashMap::new();
    for call in &records.tool_calls {
        tools_by_message.entry((&call.session_id, &call.message_id)).or_default().push(call);
    }
    let mut entries: HashMap<String, Entry> = HashMap::new();
    // Idle is the whole tree's quiet: a parent waiting on a long sub-agent is not idle.
    let mut tree_activity: HashMap<&str, i64> = HashMap::new();
    let root_of = roots_of(&records.sessions);
    for session in &records.sessions {
        let root = root_of.get(session.id.as_str()).copied().unwrap_or(session.id.as_str());
        let latest = tree_activity.entry(root).or_insert(i64::MIN);
        *latest = (*latest).max(session.last_activity_us.unwrap_or(i64::MIN));
    }
    for session in &records.sessions {
        let entry = entries.get(&session.id).copied();
        if entry.is_none() && session.parent_id.is_some() {
            // A child whose delegating call is not (yet) in the parent: its turns get their own
            // traces rather than none.
            tracing::debug!(session = %session.id, "no tool call created this child session; its turns are traces of their own");
        }
        let messages = messages_by_session.get(session.id.as_str()).map(Vec::as_slice).unwrap_or_default();
        let root = root_of.get(session.id.as_str()).copied().unwrap_or(session.id.as_str());
        let idle = tree_activity.get(root).is_some_and(|latest| *latest != i64::MIN && options.now_us - latest >= options.idle_final_us);
        session_spans(session, messages, &tools_by_message, entry, idle, options, &mut entries, &mut built);
    }
    built
}

/// Each session's root within `sessions` (roots come first, as the records are read).
fn roots_of(sessions: &[TraceSession]) -> HashMap<&str, &str> {
    let mut roots: HashMap<&str, &str> = HashMap::new();
    for session in sessions {
        let root = session.parent_id.as_deref().and_then(|parent| roots.get(parent).copied()).unwrap_or(session.id.as_str());
        roots.insert(session.id.as_str(), root);
    }
    roots
}

/// The spans of one session's turns; `idle`: its tree has been quiet for `idle_final`.
#[allow(clippy::too_many_arguments)]
fn session_spans(
    session: &TraceSession,
    messages: &[&TraceMessage],
    tools_by_message: &HashMap<(&str, &str), Vec<&TraceToolCall>>,
    entry: Option<Entry>,
    idle: bool,
    options: &BuildOptions,
    entries: &mut HashMap<String, Entry>,
    built: &mut BuiltSpans,
) {
    // Turns: a user message and the responses after it; responses before any user message
    // make a turn of their own, keyed by the first of them.
    let mut turns: Vec<(Option<&TraceMessage>, Vec<&TraceMessage>)> = Vec::new();
    for message in messages {
        if message.role == "user" {
            turns.push((Some(message), Vec::new()));
        } else if message.role == "assistant" {
            match turns.last_mut() {
                Some((_, responses)) => responses.push(message),
                None => turns.push((None, vec![message])),
            }
        }
    }
    let turn_count = turns.len();
    // Claude Code and Codex write a response over several lines (its usage grows until the last
    // one): a response is complete once something follows it in the session. OpenCode marks
    // completion itself.
    let last_message = messages.last().map(|message| message.id.as_str());
    let completes_itself = session.app.as_deref().is_none_or(|app| app == "opencode");
    for (index, (user, responses)) in turns.iter().enumerate() {
        let Some(key) = user.map(|user| user.id.as_str()).or_else(|| responses.first().map(|response| response.id.as_str())) else { continue };
        if responses.is_empty() {
            // A prompt nothing answered: once the session is idle, there is no turn to send.
            if !idle {
                built.pending += 1;
            }
            continue;
        }
        let turn_span = span_id(semconv::INVOKE_AGENT, key);
        let (trace, turn_parent) = match entry {
            Some(entry) => (entry.trace_id, Some(entry.parent)),
            None => (trace_id(key), None),
        };
        let mut turn_final = true;
        let mut turn_end_us = user.and_then(|user| user.created_us).unwrap_or(0);
        for response in responses {
            let complete = response.completed_us.is_some() && (completes_itself || last_message != Some(response.id.as_str()));
            let response_final = complete || response.error_name.is_some() || idle;
            turn_final &= response_final;
            turn_end_us = turn_end_us.max(response.completed_us.or(response.created_us).unwrap_or(0));
            let chat_span = span_id(semconv::CHAT, &response.id);
            for call in tools_by_message.get(&(session.id.as_str(), response.id.as_str())).map(Vec::as_slice).unwrap_or_default() {
                let tool_span = span_id(semconv::EXECUTE_TOOL, &call.id);
                if let Some(child) = &call.child_session_id {
                    entries.insert(child.clone(), Entry { trace_id: trace, parent: tool_span });
                }
                let call_final = matches!(call.status.as_deref(), Some("completed" | "error")) || idle;
                turn_final &= call_final;
                turn_end_us = turn_end_us.max(call.ended_us.unwrap_or(0));
                if !call_final {
                    built.pending += 1;
                    continue;
                }
                built.spans.push(tool_call_span(session, response, call, trace, tool_span, chat_span, options));
            }
            if !response_final {
                built.pending += 1;
                continue;
            }
            built.spans.push(chat_span_of(session, response, trace, chat_span, turn_span));
        }
        let last = index + 1 == turn_count;
        let ended = responses.last().and_then(|response| response.finish_reason.as_deref()).is_some_and(|finish| !CONTINUING_FINISH.contains(&finish));
        turn_final &= !last || ended || idle;
        if !turn_final {
            built.pending += 1;
            continue;
        }
        let start_us = user.and_then(|user| user.created_us).or_else(|| responses.first().and_then(|response| response.created_us)).unwrap_or(turn_end_us);
        let agent = responses
            .iter()
            .find_map(|response| response.agent.clone())
            .or_else(|| user.and_then(|user| user.agent.clone()))
            .unwrap_or_else(|| "main".to_owned());
        let mut attributes = vec![
            (semconv::OPERATION_NAME, AttributeValue::Text(semconv::INVOKE_AGENT.to_owned())),
            (semconv::AGENT_NAME, AttributeValue::Text(agent.clone())),
            (semconv::CONVERSATION_ID, AttributeValue::Text(session.id.clone())),
            (semconv::OPENINFERENCE_SPAN_KIND, AttributeValue::Text("AGENT".to_owned())),
        ];
        if let Some(first) = responses.first() {
            if let Some(provider) = &first.provider_id {
                attributes.push((semconv::PROVIDER_NAME, AttributeValue::Text(semconv::provider_name(provider).to_owned())));
            }
            if let Some(model) = &first.model_id {
                attributes.push((semconv::REQUEST_MODEL, AttributeValue::Text(model.clone())));
            }
        }
        if let Some(app) = &session.app {
            attributes.push((semconv::APP, AttributeValue::Text(app.clone())));
        }
        if options.capture_content {
            if let Some(text) = user.and_then(|user| user.text.as_deref()) {
                let message = serde_json::json!([{ "role": "user", "parts": [{ "type": "text", "content": truncated(text, options.max_content_bytes) }] }]);
                attributes.push((semconv::INPUT_MESSAGES, AttributeValue::Text(message.to_string())));
            }
            if let Some(title) = &session.title {
                attributes.push((semconv::SESSION_TITLE, AttributeValue::Text(truncated(title, options.max_content_bytes))));
            }
        }
        built.spans.push(AgentSpan {
            trace_id: trace,
            span_id: turn_span,
            parent_span_id: turn_parent,
            name: format!("{} {agent}", semconv::INVOKE_AGENT),
            kind: Kind::Internal,
            start_ns: micros_to_nanos(start_us),
            end_ns: micros_to_nanos(turn_end_us.max(start_us)),
            error: None,
            attributes,
            session_id: session.id.clone(),
        });
    }
}

fn chat_span_of(session: &TraceSession, response: &TraceMessage, trace: [u8; 16], chat_span: [u8; 8], turn_span: [u8; 8]) -> AgentSpan {
    let [input, output, reasoning, cache_read, cache_write] = response.tokens;
    let model = response.model_id.clone().unwrap_or_else(|| "unknown".to_owned());
    let mut attributes = vec![
        (semconv::OPERATION_NAME, AttributeValue::Text(semconv::CHAT.to_owned())),
        (semconv::CONVERSATION_ID, AttributeValue::Text(session.id.clone())),
        (semconv::REQUEST_MODEL, AttributeValue::Text(model.clone())),
        (semconv::RESPONSE_MODEL, AttributeValue::Text(model.clone())),
        (semconv::USAGE_INPUT_TOKENS, AttributeValue::Int(input + cache_read + cache_write)),
        (semconv::USAGE_OUTPUT_TOKENS, AttributeValue::Int(output)),
        (semconv::USAGE_CACHE_READ_INPUT_TOKENS, AttributeValue::Int(cache_read)),
        (semconv::USAGE_CACHE_CREATION_INPUT_TOKENS, AttributeValue::Int(cache_write)),
        (semconv::USAGE_REASONING_OUTPUT_TOKENS, AttributeValue::Int(reasoning)),
        (semconv::OPENINFERENCE_SPAN_KIND, AttributeValue::Text("LLM".to_owned())),
    ];
    if let Some(provider) = &response.provider_id {
        attributes.push((semconv::PROVIDER_NAME, AttributeValue::Text(semconv::provider_name(provider).to_owned())));
    }
    if let Some(agent) = &response.agent {
        attributes.push((semconv::AGENT_NAME, AttributeValue::Text(agent.clone())));
    }
    if let Some(finish) = &response.finish_reason {
        attributes.push((semconv::RESPONSE_FINISH_REASONS, AttributeValue::TextList(vec![finish.clone()])));
    }
    if let Some(cost) = response.cost {
        attributes.push((semconv::COST_USD, AttributeValue::Double(cost)));
    }
    if let Some(source) = &response.cost_source {
        attributes.push((semconv::COST_SOURCE, AttributeValue::Text(source.clone())));
    }
    if let Some(app) = &session.app {
        attributes.push((semconv::APP, AttributeValue::Text(app.clone())));
    }
    if let Some(error) = &response.error_name {
        attributes.push((semconv::ERROR_TYPE, AttributeValue::Text(error.clone())));
    }
    let start_us = response.created_us.unwrap_or(0);
    AgentSpan {
        trace_id: trace,
        span_id: chat_span,
        parent_span_id: Some(turn_span),
        name: format!("{} {model}", semconv::CHAT),
        kind: Kind::Client,
        start_ns: micros_to_nanos(start_us),
        end_ns: micros_to_nanos(response.completed_us.unwrap_or(start_us).max(start_us)),
        error: response.error_name.clone(),
        attributes,
        session_id: session.id.clone(),
    }
}

fn tool_call_span(
    session: &TraceSession,
    response: &TraceMessage,
    call: &TraceToolCall,
    trace: [u8; 16],
    tool_span: [u8; 8],
    chat_span: [u8; 8],
    options: &BuildOptions,
) -> AgentSpan {
    let tool = call.tool_name.clone().unwrap_or_else(|| "unknown".to_owned());
    let mut attributes = vec![
        (semconv::OPERATION_NAME, AttributeValue::Text(semconv::EXECUTE_TOOL.to_owned())),
        (semconv::TOOL_NAME, AttributeValue::Text(tool.clone())),
        (semconv::TOOL_TYPE, AttributeValue::Text("function".to_owned())),
        (semconv::CONVERSATION_ID, AttributeValue::Text(session.id.clone())),
        (semconv::OPENINFERENCE_SPAN_KIND, AttributeValue::Text("TOOL".to_owned())),
    ];
    if let Some(call_id) = &call.call_id {
        attributes.push((semconv::TOOL_CALL_ID, AttributeValue::Text(call_id.clone())));
    }
    if let Some(child) = &call.child_session_id {
        attributes.push((semconv::CHILD_SESSION_ID, AttributeValue::Text(child.clone())));
    }
    let failed = call.status.as_deref() != Some("completed");
    // The tool's error text quotes its output: it is content, sent only when content is.
    let error = failed.then(|| {
        let text = if options.capture_content { call.error.as_deref().map(|error| truncated(error, options.max_content_bytes)) } else { None };
        text.unwrap_or_else(|| call.status.clone().unwrap_or_else(|| "interrupted".to_owned()))
    });
    if failed {
        attributes
            .push((semconv::ERROR_TYPE, AttributeValue::Text(if call.status.as_deref() == Some("error") { "tool_error" } else { "interrupted" }.to_owned())));
    }
    if options.capture_content {
        if let Some(input) = &call.input {
            attributes.push((semconv::TOOL_CALL_ARGUMENTS, AttributeValue::Text(truncated(input, options.max_content_bytes))));
        }
        if let Some(output) = &call.output {
            attributes.push((semconv::TOOL_CALL_RESULT, AttributeValue::Text(truncated(output, options.max_content_bytes))));
        }
    }
    let start_us = call.started_us.or(response.created_us).unwrap_or(0);
    AgentSpan {
        trace_id: trace,
        span_id: tool_span,
        parent_span_id: Some(chat_span),
        name: format!("{} {tool}", semconv::EXECUTE_TOOL),
        kind: Kind::Internal,
        start_ns: micros_to_nanos(start_us),
        end_ns: micros_to_nanos(call.ended_us.unwrap_or(start_us).max(start_us)),
        error,
        attributes,
        session_id: session.id.clone(),
    }
}
