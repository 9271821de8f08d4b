//! Seeded Claude Code transcripts: `<root>/projects/<encoded cwd>/<session id>.jsonl`, one JSON
//! object a line, shaped as Claude Code 2.1.x writes them (the fixtures' `SOURCES.md` describes
//! that format from files the real CLI wrote).
//!
//! A session is a chain of turns. A turn is what one prompt produces: a `queue-operation` pair,
//! the `user` prompt (with `attachment` lines on the first turn), then API responses, each
//! written as one `assistant` line per content block (thinking, text, tool_use) repeating the
//! response's `message.id`, `requestId` and full final usage, and a `user` `tool_result` line
//! answering every `tool_use`; a `cost-state` line closes the turn. A conversation that outgrows
//! the context window is compacted (a `compact_boundary` `system` line, then a summary).
//!
//! [`generate_claude_transcripts`] writes the files and returns what they hold, tokens counted
//! once per `message.id` ([`TranscriptTotals`]), so tests and benches compare a database with it.
//! [`ClaudeTranscript::append_response_line`] carries a written transcript on by one line, for
//! following a file live.
//!
//! Each session draws from its own ChaCha8 stream (the config's seed, the session's number as the
//! stream) and its clock only moves forward: the same config gives the same bytes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::content::{self, Language, ProjectKind};
use crate::json::{obj, write_compact, Json};

/// Claude Code versions written in the lines, with weights.
const VERSIONS: &[(&str, u32)] = &[("2.1.318", 2), ("2.1.325", 3), ("2.1.332", 5)];

/// A model a session runs on, with list prices in USD per million tokens (for `cost-state`).
struct ClaudeModel {
    id: &'static str,
    weight: u32,
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
}

const MODELS: &[ClaudeModel] = &[
    ClaudeModel { id: "claude-opus-5-5", weight: 6, input: 5.0, output: 25.0, cache_read: 0.5, cache_write: 6.25 },
    ClaudeModel { id: "claude-sonnet-4-5-20250929", weight: 3, input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 },
    ClaudeModel { id: "claude-haiku-4-5-20251001", weight: 1, input: 1.0, output: 5.0, cache_read: 0.1, cache_write: 1.25 },
];

/// Tokens of the system prompt and tool definitions a conversation's first request writes to
/// the cache (the fixtures' first requests: 13,302).
const SYSTEM_PROMPT_TOKENS: u64 = 13_300;

/// Claude Code compacts a conversation whose context passes about this many tokens.
const COMPACT_AT_TOKENS: u64 = 160_000;

/// Bytes of lines gathered before they are written to the file.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;

/// What to generate. Every field has a sensible default (see [`Default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptConfig {
    /// Seed of the random streams: the same config always produces the same bytes.
    pub seed: u64,
    /// Transcripts (sessions) to write.
    pub sessions: usize,
    /// Fewest API responses in a session (at least 1).
    pub min_responses: usize,
    /// Most API responses in a session. Counts in between are drawn log-uniformly: many short
    /// sessions, a few long ones.
    pub max_responses: usize,
    /// When set, every session takes responses until its file holds at least this many bytes,
    /// and the response counts are ignored: one session of 500 MB is one large transcript.
    pub grow_to_bytes: Option<u64>,
    /// Every Nth tool result of a session is a large build log (0 = never).
    pub large_output_every: usize,
    /// Size in bytes of a large tool result.
    pub large_output_bytes: usize,
    /// Epoch milliseconds at which the first session starts.
    pub base_time_ms: i64,
}

impl Default for TranscriptConfig {
    fn default() -> Self {
        TranscriptConfig {
            seed: 42,
            sessions: 100,
            min_responses: 1,
            max_responses: 120,
            grow_to_bytes: None,
            large_output_every: 200,
            large_output_bytes: 64 * 1024,
            // 2026-01-05T09:00:00Z
            base_time_ms: 1_767_603_600_000,
        }
    }
}

/// Token counts as `message.usage` gives them; `thinking` is part of `output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenTotals {
    /// `input_tokens` (cache reads and writes excluded).
    pub input: u64,
    /// `cache_creation_input_tokens`.
    pub cache_creation: u64,
    /// `cache_read_input_tokens`.
    pub cache_read: u64,
    /// `output_tokens`.
    pub output: u64,
    /// `output_tokens_details.thinking_tokens`.
    pub thinking: u64,
}

impl TokenTotals {
    /// Input, cache reads, cache writes and output together.
    pub fn total(&self) -> u64 {
        self.input + self.cache_creation + self.cache_read + self.output
    }

    fn add(&mut self, other: &TokenTotals) {
        self.input += other.input;
        self.cache_creation += other.cache_creation;
        self.cache_read += other.cache_read;
        self.output += other.output;
        self.thinking += other.thinking;
    }
}

/// What was written, counted while writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscriptTotals {
    /// Transcript files.
    pub transcripts: usize,
    /// Lines (each one JSON object).
    pub lines: u64,
    /// Bytes, newlines included.
    pub bytes: u64,
    /// `user` lines holding a prompt (not tool results, not compaction summaries).
    pub prompts: u64,
    /// API responses: distinct `message.id`s.
    pub responses: u64,
    /// `assistant` lines (one per content block).
    pub assistant_lines: u64,
    /// `tool_use` blocks, each answered by a `tool_result`.
    pub tool_calls: u64,
    /// Compactions (a `compact_boundary` line and a summary line each).
    pub compactions: u64,
    /// Usage summed once per response.
    pub tokens: TokenTotals,
}

impl TranscriptTotals {
    fn add(&mut self, other: &TranscriptTotals) {
        self.transcripts += other.transcripts;
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.prompts += other.prompts;
        self.responses += other.responses;
        self.assistant_lines += other.assistant_lines;
        self.tool_calls += other.tool_calls;
        self.compactions += other.compactions;
        self.tokens.add(&other.tokens);
    }
}

/// One written transcript, and what it takes to carry it on.
pub struct ClaudeTranscript {
    path: PathBuf,
    session: Session,
}

impl ClaudeTranscript {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The session id, which is also the file's stem.
    pub fn session_id(&self) -> &str {
        &self.session.id
    }

    /// What the file holds, the lines of [`Self::append_response_line`] included.
    pub fn totals(&self) -> &TranscriptTotals {
        &self.session.totals
    }

    /// Appends to `out` one more line of this transcript, newline included: a whole API
    /// response with a single text block (so one line, one new `message.id`), continuing the
    /// session's `parentUuid` chain and clock. The caller writes it to the file. Returns its usage.
    pub fn append_response_line(&mut self, out: &mut Vec<u8>) -> TokenTotals {
        self.session.now_ms += self.session.rng.gen_range(200..2_000);
        let text = self.session.answer();
        let response = self.session.begin_response(text.len() / 4, 0, "end_turn");
        let block = obj! { "type" => "text", "text" => text };
        self.session.assistant_line(out, &response, block, 0, Vec::new());
        response.usage
    }
}

/// What [`generate_claude_transcripts`] wrote.
#[derive(Default)]
pub struct GeneratedTranscripts {
    /// The transcripts, in the order written.
    pub transcripts: Vec<ClaudeTranscript>,
    /// Their totals together.
    pub totals: TranscriptTotals,
}

/// Writes `config.sessions` transcripts under `root` (as `projects/<encoded cwd>/<id>.jsonl`,
/// creating folders) and returns them with their totals. Existing files at the same paths are
/// replaced; nothing else under `root` is touched.
pub fn generate_claude_transcripts(root: &Path, config: &TranscriptConfig) -> std::io::Result<GeneratedTranscripts> {
    let mut generated = GeneratedTranscripts::default();
    for index in 0..config.sessions {
        let mut session = Session::new(config, index);
        let target = match config.grow_to_bytes {
            Some(bytes) => Target::Bytes(bytes),
            None => Target::Responses(response_count(&mut session.rng, config.min_responses, config.max_responses)),
        };
        let path = root.join(session.relative_path());
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        let mut file = std::fs::File::create(&path)?;
        session.write(&mut file, target)?;
        generated.totals.add(&session.totals);
        generated.transcripts.push(ClaudeTranscript { path, session });
    }
    Ok(generated)
}

/// When a session stops taking responses.
#[derive(Clone, Copy)]
enum Target {
    Responses(u64),
    Bytes(u64),
}

/// A response being written: what every one of its lines repeats.
struct Response {
    message_id: String,
    request_id: String,
    request_ref: String,
    stop_reason: &'static str,
    usage: TokenTotals,
}

/// A tool call and what it returned.
struct ToolCall {
    id: String,
    name: &'static str,
    input: Json,
    /// The `tool_result` block's text.
    content: String,
    /// The line's structured `toolUseResult`.
    result: Json,
    is_error: bool,
    duration_ms: i64,
    lines_added: u64,
    lines_removed: u64,
}

/// The running state of one session.
struct Session {
    rng: ChaCha8Rng,
    id: String,
    cwd: String,
    git_branch: String,
    kind: &'static ProjectKind,
    version: &'static str,
    model: &'static ClaudeModel,
    large_output_every: usize,
    large_output_bytes: usize,
    now_ms: i64,
    started_ms: i64,
    /// The uuid the next line names as its parent.
    parent_uuid: Option<String>,
    /// The current prompt's id, repeated by its tool results.
    prompt_id: String,
    /// Tokens of the conversation so far: what the next request finds in the prompt cache.
    context_tokens: u64,
    /// Tokens added since the last request (prompt, tool results): what it writes to the cache.
    pending_tokens: u64,
    tool_results: usize,
    /// Usage for `cost-state`: the responses' and the compactions' (whose responses are not
    /// written as lines).
    billed: TokenTotals,
    api_ms: i64,
    tool_ms: i64,
    lines_added: u64,
    lines_removed: u64,
    totals: TranscriptTotals,
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

/// A version 4 UUID.
fn uuid(rng: &mut ChaCha8Rng) -> String {
    let (first, second, third, fourth, last): (u32, u16, u16, u16, u64) = rng.gen();
    format!("{first:08x}-{second:04x}-4{:03x}-{:04x}-{:012x}", third & 0x0fff, (fourth & 0x3fff) | 0x8000, last & 0xffff_ffff_ffff)
}

/// `2026-01-05T09:00:00.000Z`.
fn iso_timestamp(epoch_ms: i64) -> String {
    let (days, in_day) = (epoch_ms.div_euclid(86_400_000), epoch_ms.rem_euclid(86_400_000));
    let (year, month, day) = ducktail_model::civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1_000 % 60, in_day % 1_000)
}

/// Claude Code's folder name for a working directory: every character that is not a letter or
/// a digit becomes `-`.
fn encoded_cwd(cwd: &str) -> String {
    cwd.chars().map(|character| if character.is_ascii_alphanumeric() { character } else { '-' }).collect()
}

/// A count in `[min, max]`, log-uniform.
fn response_count(rng: &mut ChaCha8Rng, min: usize, max: usize) -> u64 {
    let min = min.max(1);
    let max = max.max(min);
    let (low, high) = ((min as f64).ln(), ((max + 1) as f64).ln());
    (rng.gen_range(low..high).exp().floor() as u64).clamp(min as u64, max as u64)
}

fn usage_json(usage: &TokenTotals) -> Json {
    obj! {
        "input_tokens" => usage.input,
        "cache_creation_input_tokens" => usage.cache_creation,
        "cache_read_input_tokens" => usage.cache_read,
        "output_tokens" => usage.output,
        "output_tokens_details" => obj! { "thinking_tokens" => usage.thinking },
        "server_tool_use" => obj! { "web_search_requests" => 0, "web_fetch_requests" => 0 },
        "service_tier" => "standard",
        "cache_creation" => obj! { "ephemeral_1h_input_tokens" => 0, "ephemeral_5m_input_tokens" => usage.cache_creation },
        "inference_geo" => "",
        "iterations" => Json::Arr(Vec::new()),
        "speed" => "standard",
        "fallback_credit" => Json::Null,
    }
}

impl Session {
    fn new(config: &TranscriptConfig, index: usize) -> Session {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(index as u64);
        let kind = &content::PROJECT_KINDS[rng.gen_range(0..content::PROJECT_KINDS.len())];
        let mut cwd = format!("/home/dev/code/{}", kind.name);
        if rng.gen_bool(0.15) {
            cwd = format!("{cwd}/{}", content::pick(&mut rng, kind.subdirs));
        }
        let git_branch = if rng.gen_bool(0.8) { "main".to_owned() } else { format!("feat/{}", content::slug(&mut rng)) };
        let version = weighted(&mut rng, VERSIONS);
        let model_choices: Vec<(&'static ClaudeModel, u32)> = MODELS.iter().map(|model| (model, model.weight)).collect();
        let model = weighted(&mut rng, &model_choices);
        let id = uuid(&mut rng);
        // Sessions start about 40 minutes apart.
        let now_ms = config.base_time_ms + index as i64 * 2_400_000 + rng.gen_range(0..1_800_000);
        Session {
            rng,
            id,
            cwd,
            git_branch,
            kind,
            version,
            model,
            large_output_every: config.large_output_every,
            large_output_bytes: config.large_output_bytes,
            now_ms,
            started_ms: now_ms,
            parent_uuid: None,
            prompt_id: String::new(),
            context_tokens: 0,
            pending_tokens: 0,
            tool_results: 0,
            billed: TokenTotals::default(),
            api_ms: 0,
            tool_ms: 0,
            lines_added: 0,
            lines_removed: 0,
            totals: TranscriptTotals { transcripts: 1, ..TranscriptTotals::default() },
        }
    }

    fn relative_path(&self) -> PathBuf {
        PathBuf::from("projects").join(encoded_cwd(&self.cwd)).join(format!("{}.jsonl", self.id))
    }

    fn reached(&self, target: Target) -> bool {
        match target {
            Target::Responses(responses) => self.totals.responses >= responses,
            Target::Bytes(bytes) => self.totals.bytes >= bytes,
        }
    }

    /// Writes turns until `target` is reached.
    fn write(&mut self, file: &mut std::fs::File, target: Target) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(WRITE_CHUNK_BYTES + 128 * 1024);
        let mut first = true;
        while first || !self.reached(target) {
            self.prompt(&mut out, first);
            first = false;
            let turn_length = weighted(&mut self.rng, &[(1u64, 15), (2, 20), (3, 20), (4, 15), (6, 15), (10, 10), (16, 5)]);
            for step in 0..turn_length {
                let last = step + 1 == turn_length || matches!(target, Target::Responses(responses) if self.totals.responses + 1 >= responses);
                self.response(&mut out, last);
                if out.len() >= WRITE_CHUNK_BYTES {
                    file.write_all(&out)?;
                    out.clear();
                }
                if last || self.reached(target) {
                    break;
                }
            }
            if self.context_tokens > COMPACT_AT_TOKENS {
                self.compact(&mut out);
            }
            self.cost_state(&mut out);
        }
        file.write_all(&out)
    }

    fn emit(&mut self, out: &mut Vec<u8>, line: &Json) {
        let start = out.len();
        write_compact(line, out);
        out.push(b'\n');
        self.totals.lines += 1;
        self.totals.bytes += (out.len() - start) as u64;
    }

    /// The fields every conversation line ends with.
    fn finish_line(&self, line: &mut Json) {
        line.set("userType", "external");
        line.set("entrypoint", "cli");
        line.set("cwd", self.cwd.as_str());
        line.set("sessionId", self.id.as_str());
        line.set("version", self.version);
        line.set("gitBranch", self.git_branch.as_str());
    }

    fn parent(&self) -> Json {
        self.parent_uuid.clone().map_or(Json::Null, Json::Str)
    }

    fn timestamp(&self) -> String {
        iso_timestamp(self.now_ms)
    }

    fn file(&mut self) -> String {
        format!("{}/{}", self.cwd, content::pick(&mut self.rng, self.kind.files))
    }

    fn answer(&mut self) -> String {
        let file = content::pick(&mut self.rng, self.kind.files);
        content::pick(&mut self.rng, content::ANSWERS).replace("{file}", file)
    }

    /// The queue operations, the prompt and, on the first turn, the attachments.
    fn prompt(&mut self, out: &mut Vec<u8>, first: bool) {
        let file = content::pick(&mut self.rng, self.kind.files);
        let text = if first {
            content::pick(&mut self.rng, content::TASKS).1.replace("{file}", file)
        } else {
            // The user reads the answer and types the next request.
            self.now_ms += self.rng.gen_range(15_000..600_000);
            content::pick(&mut self.rng, content::FOLLOW_UPS).replace("{file}", file)
        };
        let enqueue = obj! {
            "type" => "queue-operation",
            "operation" => "enqueue",
            "timestamp" => self.timestamp(),
            "sessionId" => self.id.as_str(),
            "content" => text.as_str(),
        };
        self.emit(out, &enqueue);
        self.now_ms += self.rng.gen_range(1..5);
        let dequeue = obj! { "type" => "queue-operation", "operation" => "dequeue", "timestamp" => self.timestamp(), "sessionId" => self.id.as_str() };
        self.emit(out, &dequeue);
        self.now_ms += self.rng.gen_range(20..120);
        self.prompt_id = uuid(&mut self.rng);
        let uuid = uuid(&mut self.rng);
        let mut line = obj! {
            "parentUuid" => self.parent(),
            "isSidechain" => false,
            "promptId" => self.prompt_id.as_str(),
            "type" => "user",
            "message" => obj! { "role" => "user", "content" => text.as_str() },
            "uuid" => uuid.as_str(),
            "timestamp" => self.timestamp(),
            "permissionMode" => "default",
        };
        self.finish_line(&mut line);
        self.emit(out, &line);
        self.parent_uuid = Some(uuid);
        self.totals.prompts += 1;
        self.pending_tokens += text.len() as u64 / 4 + 40;
        if first {
            self.attachments(out);
        }
    }

    fn attachments(&mut self, out: &mut Vec<u8>) {
        let date = iso_timestamp(self.now_ms)[..10].to_owned();
        let attachments = [
            (
                obj! {
                    "type" => "environment",
                    "snapshot" => obj! {
                        "workingDirectory" => self.cwd.as_str(),
                        "isWorktree" => false,
                        "isGitRepo" => true,
                        "additionalWorkingDirectories" => Json::Arr(Vec::new()),
                        "platform" => "linux",
                        "shell" => "bash",
                        "osVersion" => "Linux 6.8.0-60-generic",
                    },
                },
                format!(
                    "<system-reminder>\n# Environment\nYou have been invoked in the following environment: \n - Primary working directory: {}\n - Is a git repository: true\n - Platform: linux\n - Shell: bash\n - OS Version: Linux 6.8.0-60-generic\n</system-reminder>",
                    self.cwd
                ),
                "system",
            ),
            (
                obj! {
                    "type" => "session_context",
                    "context" => obj! { "gitStatus" => format!("Current branch: {}\n\nStatus:\n(clean)", self.git_branch) },
                },
                format!("<system-reminder>\nAs you answer the user's questions, you can use the following context:\n# gitStatus\nCurrent branch: {}\n\nStatus:\n(clean)\n</system-reminder>", self.git_branch),
                "user",
            ),
            (obj! { "type" => "date", "date" => date.as_str() }, format!("<system-reminder>\nToday's date is {date}.\n</system-reminder>"), "system"),
        ];
        for (attachment, rendered, role) in attachments {
            let uuid = uuid(&mut self.rng);
            self.pending_tokens += rendered.len() as u64 / 4;
            let mut line = obj! {
                "parentUuid" => self.parent(),
                "isSidechain" => false,
                "attachment" => attachment,
                "type" => "attachment",
                "uuid" => uuid.as_str(),
                "timestamp" => self.timestamp(),
                "rendered" => vec![obj! { "content" => rendered }],
                "renderedRole" => role,
            };
            self.finish_line(&mut line);
            self.emit(out, &line);
            self.parent_uuid = Some(uuid);
        }
    }

    /// Draws a response's ids and usage and counts it; its lines are the caller's.
    fn begin_response(&mut self, visible_output_tokens: usize, thinking: u64, stop_reason: &'static str) -> Response {
        let latency = self.rng.gen_range(800..8_000);
        self.now_ms += latency;
        self.api_ms += latency;
        let input = self.rng.gen_range(3..25);
        let (cache_read, cache_creation) = if self.context_tokens == 0 {
            (0, SYSTEM_PROMPT_TOKENS + self.pending_tokens)
        } else if self.rng.gen_bool(0.04) {
            // A cache miss: the whole prefix is written again.
            (0, self.context_tokens + self.pending_tokens)
        } else {
            (self.context_tokens, self.pending_tokens)
        };
        let output = visible_output_tokens as u64 + thinking + 1;
        let usage = TokenTotals { input, cache_creation, cache_read, output, thinking };
        self.context_tokens = cache_read + cache_creation + input + output;
        self.pending_tokens = 0;
        self.billed.add(&usage);
        self.totals.responses += 1;
        self.totals.tokens.add(&usage);
        Response {
            message_id: format!("msg_01{}", content::base62(&mut self.rng, 22)),
            request_id: format!("req_01{}", content::base62(&mut self.rng, 22)),
            request_ref: uuid(&mut self.rng),
            stop_reason,
            usage,
        }
    }

    /// Writes one `assistant` line holding `block`, returns its uuid.
    fn assistant_line(&mut self, out: &mut Vec<u8>, response: &Response, block: Json, index: usize, extra: Vec<(&'static str, Json)>) -> String {
        let uuid = uuid(&mut self.rng);
        let message = obj! {
            "id" => response.message_id.as_str(),
            "type" => "message",
            "role" => "assistant",
            "model" => self.model.id,
            "content" => vec![block],
            "stop_reason" => response.stop_reason,
            "stop_sequence" => Json::Null,
            "usage" => usage_json(&response.usage),
            "stop_details" => Json::Null,
        };
        let mut line = obj! { "parentUuid" => self.parent(), "isSidechain" => false, "message" => message };
        for (key, value) in extra {
            line.set(key, value);
        }
        line.set("apiBlockIndex", index);
        line.set("requestId", response.request_id.as_str());
        line.set("requestRef", response.request_ref.as_str());
        line.set("requestedModel", self.model.id);
        line.set("promptCacheRequested", "5m");
        line.set("type", "assistant");
        line.set("uuid", uuid.as_str());
        line.set("timestamp", self.timestamp());
        line.set("effort", "medium");
        line.set("perTurnEffort", "medium");
        line.set("madeBy", "model");
        self.finish_line(&mut line);
        self.emit(out, &line);
        self.totals.assistant_lines += 1;
        self.parent_uuid = Some(uuid.clone());
        uuid
    }

    /// One API response: its content blocks, one line each, then the results of its tool calls.
    /// The `last` response of a turn answers in text and calls no tool.
    fn response(&mut self, out: &mut Vec<u8>, last: bool) {
        let thinking = self.rng.gen_bool(if last { 0.3 } else { 0.5 });
        let with_text = last || self.rng.gen_bool(0.6);
        let tool_count = if last { 0 } else { weighted(&mut self.rng, &[(1usize, 80), (2, 15), (3, 5)]) };
        let text = with_text.then(|| {
            if last {
                self.answer()
            } else {
                let file = content::pick(&mut self.rng, self.kind.files);
                content::pick(&mut self.rng, content::OPENERS).replace("{file}", file)
            }
        });
        let calls: Vec<ToolCall> = (0..tool_count).map(|_| self.tool_call()).collect();
        let thinking_tokens = if thinking { self.rng.gen_range(40..1_500) } else { 0 };
        let visible = text.as_ref().map_or(0, String::len) + calls.iter().map(|call| call.input_length()).sum::<usize>();
        let response = self.begin_response(visible / 4, thinking_tokens, if last { "end_turn" } else { "tool_use" });

        let mut index = 0;
        if thinking {
            let shown = self.rng.gen_bool(0.25);
            let thought = if shown { content::pick(&mut self.rng, content::THOUGHTS).to_owned() } else { String::new() };
            let signature_length = self.rng.gen_range(200..420);
            let block = obj! { "type" => "thinking", "thinking" => thought, "signature" => content::base62(&mut self.rng, signature_length) };
            let extra = vec![
                ("thinkingDurationMs", Json::from(self.rng.gen_range(20..4_000i64))),
                ("thinkingDisplay", Json::from(if shown { "updates" } else { "omitted" })),
            ];
            self.assistant_line(out, &response, block, index, extra);
            index += 1;
        }
        if let Some(text) = text {
            self.now_ms += self.rng.gen_range(30..400);
            self.assistant_line(out, &response, obj! { "type" => "text", "text" => text }, index, Vec::new());
            index += 1;
        }
        let mut callers = Vec::with_capacity(calls.len());
        for call in &calls {
            self.now_ms += self.rng.gen_range(30..400);
            let block = obj! { "type" => "tool_use", "id" => call.id.as_str(), "name" => call.name, "input" => call.input.clone() };
            let extra = vec![("toolInputStreamMs", Json::from(self.rng.gen_range(20..300i64)))];
            callers.push(self.assistant_line(out, &response, block, index, extra));
            index += 1;
        }
        self.totals.tool_calls += calls.len() as u64;
        let mut last_result = None;
        for (call, caller) in calls.into_iter().zip(callers) {
            last_result = Some(self.tool_result(out, call, &caller));
        }
        if let Some(result) = last_result {
            self.parent_uuid = Some(result);
        }
    }

    /// Writes the `user` line answering `call` (made on the line `caller`), returns its uuid.
    fn tool_result(&mut self, out: &mut Vec<u8>, call: ToolCall, caller: &str) -> String {
        self.now_ms += call.duration_ms;
        self.tool_ms += call.duration_ms;
        self.lines_added += call.lines_added;
        self.lines_removed += call.lines_removed;
        self.pending_tokens += call.content.len() as u64 / 4 + 10;
        let uuid = uuid(&mut self.rng);
        let block = obj! { "tool_use_id" => call.id, "type" => "tool_result", "content" => call.content, "is_error" => call.is_error };
        let mut line = obj! {
            "parentUuid" => caller,
            "isSidechain" => false,
            "promptId" => self.prompt_id.as_str(),
            "type" => "user",
            "message" => obj! { "role" => "user", "content" => vec![block] },
            "uuid" => uuid.as_str(),
            "timestamp" => self.timestamp(),
            "toolUseResult" => call.result,
            "sourceToolAssistantUUID" => caller,
        };
        if call.name != "Read" && call.name != "Grep" {
            line.set("permissionDecision", obj! { "decision" => "accept", "source" => "config", "reasonType" => "mode" });
        }
        self.finish_line(&mut line);
        self.emit(out, &line);
        uuid
    }

    /// A tool call fitting the project, with its result.
    fn tool_call(&mut self) -> ToolCall {
        self.tool_results += 1;
        let id = format!("toolu_01{}", content::base62(&mut self.rng, 22));
        let language = self.kind.language;
        if self.large_output_every > 0 && self.tool_results.is_multiple_of(self.large_output_every) {
            let output = content::large_log(&mut self.rng, self.large_output_bytes);
            return bash_call(id, "cargo build --release 2>&1".to_owned(), "Build the project", output, 0, self.rng.gen_range(20_000..240_000));
        }
        match weighted(&mut self.rng, &[("Bash", 35), ("Read", 30), ("Edit", 20), ("Grep", 15)]) {
            "Bash" => {
                let run = content::bash_run(&mut self.rng, language, self.kind.files);
                let duration = self.rng.gen_range(100..30_000);
                bash_call(id, run.command, run.description, run.output, run.exit.unwrap_or(0), duration)
            }
            "Read" => {
                let path = self.file();
                let count = self.rng.gen_range(20..200);
                let lines = content::source_lines(&mut self.rng, language, count);
                let numbered: Vec<String> = lines.iter().enumerate().map(|(number, line)| format!("{:>6}\t{line}", number + 1)).collect();
                let result = obj! {
                    "type" => "text",
                    "file" => obj! {
                        "filePath" => path.as_str(),
                        "content" => lines.join("\n"),
                        "numLines" => count,
                        "startLine" => 1,
                        "totalLines" => count,
                    },
                };
                ToolCall {
                    id,
                    name: "Read",
                    input: obj! { "file_path" => path },
                    content: numbered.join("\n"),
                    result,
                    is_error: false,
                    duration_ms: self.rng.gen_range(5..80),
                    lines_added: 0,
                    lines_removed: 0,
                }
            }
            "Edit" => {
                let path = self.file();
                let old = content::source_lines(&mut self.rng, language, 8).into_iter().find(|line| !line.trim().is_empty()).unwrap_or_else(|| "}".to_owned());
                let comment = if matches!(language, Language::Python | Language::Notes) { "  # checked" } else { " // checked" };
                let new = format!("{}{comment}", old.trim_end());
                let input = obj! { "replace_all" => false, "file_path" => path.as_str(), "old_string" => old.as_str(), "new_string" => new.as_str() };
                let duration_ms = self.rng.gen_range(5..60);
                if self.rng.gen_bool(0.04) {
                    let message = format!("String to replace not found in file.\nString: {old}");
                    return ToolCall {
                        id,
                        name: "Edit",
                        input,
                        content: format!("<tool_use_error>{message}</tool_use_error>"),
                        result: Json::from(format!("Error: {message}")),
                        is_error: true,
                        duration_ms,
                        lines_added: 0,
                        lines_removed: 0,
                    };
                }
                let start = self.rng.gen_range(1..300);
                let result = obj! {
                    "filePath" => path.as_str(),
                    "oldString" => old.as_str(),
                    "newString" => new.as_str(),
                    "structuredPatch" => vec![obj! {
                        "oldStart" => start,
                        "oldLines" => 1,
                        "newStart" => start,
                        "newLines" => 1,
                        "lines" => vec![Json::from(format!("-{old}")), Json::from(format!("+{new}"))],
                    }],
                    "userModified" => false,
                    "replaceAll" => false,
                };
                ToolCall {
                    id,
                    name: "Edit",
                    input,
                    content: format!("The file {path} has been updated successfully."),
                    result,
                    is_error: false,
                    duration_ms,
                    lines_added: 1,
                    lines_removed: 1,
                }
            }
            _ => {
                let pattern = content::pick(&mut self.rng, &["TODO", "fn load_", "timeout", "retry", "unwrap()", "config", "def load_"]);
                let found = self.rng.gen_range(0..6);
                let files: Vec<String> = (0..found).map(|_| self.file()).collect();
                let content = if files.is_empty() { "No files found".to_owned() } else { format!("Found {found} files\n{}", files.join("\n")) };
                let result = obj! {
                    "mode" => "files_with_matches",
                    "filenames" => files.into_iter().map(Json::from).collect::<Vec<_>>(),
                    "numFiles" => found,
                };
                ToolCall {
                    id,
                    name: "Grep",
                    input: obj! { "pattern" => pattern, "path" => self.cwd.as_str(), "output_mode" => "files_with_matches" },
                    content,
                    result,
                    is_error: false,
                    duration_ms: self.rng.gen_range(10..400),
                    lines_added: 0,
                    lines_removed: 0,
                }
            }
        }
    }

    /// An automatic compaction: the boundary, the summary the model wrote (its response is not
    /// written as a line, only billed), and a small context after it.
    fn compact(&mut self, out: &mut Vec<u8>) {
        let summary_tokens = self.rng.gen_range(1_500..4_000);
        let usage = TokenTotals { input: self.context_tokens, output: summary_tokens, ..TokenTotals::default() };
        self.billed.add(&usage);
        self.now_ms += self.rng.gen_range(20_000..90_000);
        let boundary = uuid(&mut self.rng);
        let mut line = obj! {
            "parentUuid" => Json::Null,
            "logicalParentUuid" => self.parent(),
            "isSidechain" => false,
            "type" => "system",
            "subtype" => "compact_boundary",
            "content" => "Conversation compacted",
            "isMeta" => false,
            "timestamp" => self.timestamp(),
            "uuid" => boundary.as_str(),
            "level" => "info",
            "compactMetadata" => obj! { "trigger" => "auto", "preTokens" => self.context_tokens },
        };
        self.finish_line(&mut line);
        self.emit(out, &line);
        let answer = self.answer();
        let summary = format!(
            "This session is being continued from a previous conversation that ran out of context. The conversation is summarized below:\n\n1. Primary request: work in {} on the user's requests.\n2. Progress so far: {answer}",
            self.cwd
        );
        let uuid = uuid(&mut self.rng);
        let mut line = obj! {
            "parentUuid" => boundary.as_str(),
            "isSidechain" => false,
            "type" => "user",
            "message" => obj! { "role" => "user", "content" => summary },
            "isVisibleInTranscriptOnly" => true,
            "isCompactSummary" => true,
            "uuid" => uuid.as_str(),
            "timestamp" => self.timestamp(),
        };
        self.finish_line(&mut line);
        self.emit(out, &line);
        self.parent_uuid = Some(uuid);
        self.context_tokens = 0;
        self.pending_tokens = SYSTEM_PROMPT_TOKENS + summary_tokens;
        self.totals.compactions += 1;
    }

    /// The session's running totals, as Claude Code writes them when a run ends.
    fn cost_state(&mut self, out: &mut Vec<u8>) {
        let model = self.model;
        let usage = self.billed;
        let cost = (usage.input as f64 * model.input
            + usage.output as f64 * model.output
            + usage.cache_read as f64 * model.cache_read
            + usage.cache_creation as f64 * model.cache_write)
            / 1e6;
        let model_usage = obj! {
            "inputTokens" => usage.input,
            "outputTokens" => usage.output,
            "thinkingTokens" => usage.thinking,
            "cacheReadInputTokens" => usage.cache_read,
            "cacheCreationInputTokens" => usage.cache_creation,
            "cacheCreationEphemeral5mInputTokens" => usage.cache_creation,
            "cacheCreationEphemeral1hInputTokens" => 0,
            "webSearchRequests" => 0,
            "costUSD" => cost,
        };
        let line = obj! {
            "type" => "cost-state",
            "sessionId" => self.id.as_str(),
            "totalCostUSD" => cost,
            "totalAPIDuration" => self.api_ms,
            "totalAPIDurationWithoutRetries" => self.api_ms,
            "totalToolDuration" => self.tool_ms,
            "totalLinesAdded" => self.lines_added,
            "totalLinesRemoved" => self.lines_removed,
            "totalDuration" => self.now_ms - self.started_ms,
            "startTime" => self.started_ms,
            "modelUsage" => Json::Obj(vec![(model.id, model_usage)]),
            "hasUnknownModelCost" => false,
        };
        self.emit(out, &line);
    }
}

impl ToolCall {
    /// Bytes of the input as the model wrote it (which its output tokens pay for).
    fn input_length(&self) -> usize {
        let mut printed = Vec::new();
        write_compact(&self.input, &mut printed);
        printed.len()
    }
}

fn bash_call(id: String, command: String, description: &str, output: String, exit: i64, duration_ms: i64) -> ToolCall {
    let output = output.trim_end().to_owned();
    let (content, result, is_error) = if exit == 0 {
        let result = obj! { "stdout" => output.as_str(), "stderr" => "", "interrupted" => false, "isImage" => false, "noOutputExpected" => false };
        (output, result, false)
    } else {
        let content = format!("Exit code {exit}\n{output}");
        (content.clone(), Json::from(format!("Error: {content}")), true)
    };
    ToolCall {
        id,
        name: "Bash",
        input: obj! { "command" => command, "description" => description },
        content,
        result,
        is_error,
        duration_ms,
        lines_added: 0,
        lines_removed: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    fn small() -> TranscriptConfig {
        TranscriptConfig { sessions: 12, max_responses: 40, large_output_every: 25, large_output_bytes: 8 * 1024, ..TranscriptConfig::default() }
    }

    fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut folders = vec![root.to_owned()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    files.insert(path.strip_prefix(root).unwrap().to_owned(), std::fs::read(&path).unwrap());
                }
            }
        }
        files
    }

    /// The totals recounted from the bytes: lines, and usage once per `message.id`.
    fn recount(bytes: &[u8]) -> TranscriptTotals {
        let mut totals = TranscriptTotals { transcripts: 1, ..TranscriptTotals::default() };
        let mut seen = BTreeSet::new();
        let (mut calls, mut answered) = (BTreeSet::new(), BTreeSet::new());
        for line in bytes.split_inclusive(|byte| *byte == b'\n') {
            assert_eq!(line.last(), Some(&b'\n'), "every line ends with a newline");
            totals.lines += 1;
            totals.bytes += line.len() as u64;
            let value: Value = serde_json::from_slice(line).expect("every line is JSON");
            let object = value.as_object().expect("every line is an object");
            match object["type"].as_str().expect("every line has a type") {
                "assistant" => {
                    totals.assistant_lines += 1;
                    let message = &object["message"];
                    for block in message["content"].as_array().unwrap() {
                        if block["type"] == "tool_use" {
                            totals.tool_calls += 1;
                            calls.insert(block["id"].as_str().unwrap().to_owned());
                        }
                    }
                    if seen.insert(message["id"].as_str().unwrap().to_owned()) {
                        let usage = &message["usage"];
                        let count = |key: &str| usage[key].as_u64().unwrap_or_else(|| panic!("usage.{key}"));
                        totals.responses += 1;
                        totals.tokens.add(&TokenTotals {
                            input: count("input_tokens"),
                            cache_creation: count("cache_creation_input_tokens"),
                            cache_read: count("cache_read_input_tokens"),
                            output: count("output_tokens"),
                            thinking: usage["output_tokens_details"]["thinking_tokens"].as_u64().unwrap(),
                        });
                    }
                    assert!(object["timestamp"].as_str().unwrap().ends_with('Z'));
                    assert!(object.contains_key("apiBlockIndex") && object.contains_key("requestId") && object.contains_key("parentUuid"));
                }
                "user" => match &object["message"]["content"] {
                    Value::String(_) if object.get("isCompactSummary") == Some(&Value::Bool(true)) => {}
                    Value::String(_) => totals.prompts += 1,
                    Value::Array(blocks) => {
                        for block in blocks {
                            assert_eq!(block["type"], "tool_result");
                            answered.insert(block["tool_use_id"].as_str().unwrap().to_owned());
                        }
                    }
                    other => panic!("unexpected user content {other}"),
                },
                "system" => totals.compactions += 1,
                "attachment" | "queue-operation" | "cost-state" => {}
                other => panic!("unexpected line type {other}"),
            }
        }
        assert_eq!(calls, answered, "every tool_use is answered by a tool_result");
        totals
    }

    #[test]
    fn the_same_seed_writes_the_same_bytes_and_another_seed_does_not() {
        let (first, second, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate_claude_transcripts(first.path(), &small()).unwrap();
        generate_claude_transcripts(second.path(), &small()).unwrap();
        generate_claude_transcripts(other.path(), &TranscriptConfig { seed: 43, ..small() }).unwrap();
        let files = files_under(first.path());
        assert_eq!(files.len(), 12);
        assert_eq!(files, files_under(second.path()));
        assert_ne!(files, files_under(other.path()));
    }

    #[test]
    fn every_line_is_an_object_and_the_totals_match_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let generated = generate_claude_transcripts(dir.path(), &small()).unwrap();
        let mut all = TranscriptTotals::default();
        for transcript in &generated.transcripts {
            let bytes = std::fs::read(transcript.path()).unwrap();
            let counted = recount(&bytes);
            assert_eq!(&counted, transcript.totals(), "{}", transcript.path().display());
            assert!(transcript.path().starts_with(dir.path().join("projects")));
            assert_eq!(transcript.path().file_stem().unwrap(), transcript.session_id());
            let encoded = transcript.path().parent().unwrap().file_name().unwrap().to_str().unwrap();
            assert!(encoded.starts_with("-home-dev-code-") && !encoded.contains('/'), "{encoded}");
            all.add(&counted);
        }
        assert_eq!(all, generated.totals);
        let totals = &generated.totals;
        assert!(totals.responses >= 12 && totals.responses <= 12 * 40);
        assert!(totals.assistant_lines > totals.responses, "some responses span several lines");
        assert!(totals.tool_calls > 0 && totals.tokens.thinking > 0 && totals.tokens.cache_read > 0);
    }

    #[test]
    fn response_counts_stay_within_the_configured_range() {
        let dir = tempfile::tempdir().unwrap();
        let config = TranscriptConfig { sessions: 30, min_responses: 3, max_responses: 9, ..small() };
        let generated = generate_claude_transcripts(dir.path(), &config).unwrap();
        for transcript in &generated.transcripts {
            assert!((3..=9).contains(&transcript.totals().responses), "{}", transcript.totals().responses);
        }
    }

    #[test]
    fn a_grown_transcript_reaches_its_size_and_appended_lines_carry_it_on() {
        let dir = tempfile::tempdir().unwrap();
        let config = TranscriptConfig { sessions: 1, grow_to_bytes: Some(3_000_000), ..small() };
        let mut generated = generate_claude_transcripts(dir.path(), &config).unwrap();
        let transcript = &mut generated.transcripts[0];
        let size = std::fs::metadata(transcript.path()).unwrap().len();
        assert!((3_000_000..3_400_000).contains(&size), "{size} bytes");
        assert!(transcript.totals().compactions > 0, "a long conversation is compacted");
        let mut appended = Vec::new();
        let mut tokens = TokenTotals::default();
        for _ in 0..50 {
            let before = appended.len();
            tokens.add(&transcript.append_response_line(&mut appended));
            assert_eq!(appended.iter().skip(before).filter(|byte| **byte == b'\n').count(), 1, "one line each");
        }
        let mut file = std::fs::OpenOptions::new().append(true).open(transcript.path()).unwrap();
        file.write_all(&appended).unwrap();
        let counted = recount(&std::fs::read(transcript.path()).unwrap());
        assert_eq!(&counted, transcript.totals());
        assert_eq!(counted.responses, generated.totals.responses + 50);
        assert_eq!(counted.tokens.output, generated.totals.tokens.output + tokens.output);
    }

    #[test]
    fn timestamps_are_iso_with_milliseconds_and_z() {
        assert_eq!(iso_timestamp(1_767_603_600_000), "2026-01-05T09:00:00.000Z");
        assert_eq!(iso_timestamp(1_796_643_949_815), "2026-12-07T11:45:49.815Z");
        assert_eq!(encoded_cwd("/home/dev/code/calc-tool"), "-home-dev-code-calc-tool");
    }
}
