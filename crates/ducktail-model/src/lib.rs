//! The records ducktail indexes, as plain data: what a decoded OpenCode file contains and what a
//! file's indexing outcome is.
//!
//! # Layout
//! - [`FileKind`] names the kinds of source file and the relative-path layout that identifies them.
//! - [`Records`] is everything one file contributes to the database: a session, a message, a part
//!   (plus its step event and file operation), a project, a todo list or a session diff.
//! - [`FileOutcome`] is what decoding one file produced: records, "not ready yet", or an error.
//! - [`VersionedRecords`], [`RemovedRecord`] and [`RejectedRow`] are what a database source
//!   (OpenCode's `opencode.db`) reports: rows with the time they were written, rows gone, rows
//!   that did not decode.
//!
//! Times are Unix epoch milliseconds (`i64`, UTC) everywhere in this crate; the store turns them
//! into `TIMESTAMPTZ`.
//!
//! This crate does no I/O and names neither duckdb nor actix: it is the vocabulary the other crates
//! share, so it must stay cheap to compile and free of policy.

use std::path::PathBuf;

pub mod transcript;

/// `cost_source` of a cost the agent wrote in its own record (OpenCode).
pub const COST_LOGGED: &str = "logged";
/// `cost_source` of a cost ducktail computed from tokens and the shipped price table.
pub const COST_COMPUTED: &str = "computed";

/// List prices of one model in USD per token, as the store applies them to stored tokens
/// (`list_cost`, and `cost` of rows whose cost was computed).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ListRates {
    /// Input tokens that were neither read from nor written to a cache.
    pub input: f64,
    /// Output tokens, reasoning included.
    pub output: f64,
    /// Cache reads.
    pub cache_read: f64,
    /// Cache writes (the 5-minute rate: stored rows do not keep the 1-hour split).
    pub cache_write: f64,
}

/// A model's list prices: standard rates, and the rates for a prompt (input, cache reads and
/// writes together) over `long_above` tokens when the model has them.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPrice {
    /// `messages.model_id` as stored.
    pub model_id: String,
    /// Rates for an ordinary response.
    pub standard: ListRates,
    /// Prompt size above which every token of the response takes `long`.
    pub long_above: Option<i64>,
    /// Long-context rates.
    pub long: ListRates,
}

/// The coding agent whose files a source reads (`app` in the record tables), from the source's
/// name (`source`): both OpenCode readers are `opencode`; every other source is named after its app.
pub fn app_of_source(source: &str) -> &str {
    match source {
        "opencode_json" | "opencode_sqlite" => "opencode",
        other => other,
    }
}

/// The kind of an OpenCode storage file, decided by its path relative to `storage/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// `project/<projectID>.json`
    Project,
    /// `session/<projectID>/<sessionID>.json`
    Session,
    /// `message/<sessionID>/<messageID>.json`
    Message,
    /// `part/<messageID>/<partID>.json`
    Part,
    /// `todo/<sessionID>.json`
    Todo,
    /// `session_diff/<sessionID>.json`
    SessionDiff,
}

impl FileKind {
    /// Every kind, in the order the store writes them.
    pub const ALL: [FileKind; 6] = [FileKind::Project, FileKind::Session, FileKind::Message, FileKind::Part, FileKind::Todo, FileKind::SessionDiff];

    /// The name stored in `file_index.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Project => "project",
            FileKind::Session => "session",
            FileKind::Message => "message",
            FileKind::Part => "part",
            FileKind::Todo => "todo",
            FileKind::SessionDiff => "session_diff",
        }
    }

    /// Parses the name stored in `file_index.kind`.
    pub fn parse(name: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Token usage as OpenCode reports it; `cache_*` come from `tokens.cache.read|write`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// `tokens.input` (excludes cached tokens).
    pub input: i64,
    /// `tokens.output`.
    pub output: i64,
    /// `tokens.reasoning`.
    pub reasoning: i64,
    /// `tokens.cache.read`.
    pub cache_read: i64,
    /// `tokens.cache.write`.
    pub cache_write: i64,
    /// `tokens.total` when the provider reported one (OpenCode ≥ 1.1.5x).
    pub total: Option<i64>,
}

/// A JSON document kept alongside the extracted columns so nothing is lost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawDocument {
    /// The document as JSON text; strings longer than the configured cap are shortened, so the
    /// text is always valid JSON.
    pub json: String,
    /// Size in bytes of the file as read from disk.
    pub size_bytes: i64,
    /// Whether any string in `json` was shortened to respect the cap.
    pub truncated: bool,
}

/// `project/<id>.json`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProjectRecord {
    /// Root-commit SHA or `global`.
    pub id: String,
    /// Absolute path of the main worktree.
    pub worktree: Option<String>,
    /// `git` or absent.
    pub vcs: Option<String>,
    /// User-set name.
    pub name: Option<String>,
    /// `time.created`.
    pub created_at: Option<i64>,
    /// `time.updated`.
    pub updated_at: Option<i64>,
    /// `time.initialized`.
    pub initialized_at: Option<i64>,
    /// The whole document.
    pub raw: RawDocument,
}

/// `session/<projectID>/<sessionID>.json`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionRecord {
    /// `ses_…`
    pub id: String,
    /// `projectID`, else the folder the file sits in.
    pub project_id: Option<String>,
    /// `parentID`: set for child sessions created by `task` or a subtask command.
    pub parent_id: Option<String>,
    /// `slug` (absent before ~1.1.2x).
    pub slug: Option<String>,
    /// `title`.
    pub title: Option<String>,
    /// `directory` (cwd at creation).
    pub directory: Option<String>,
    /// OpenCode version that created the session.
    pub version: Option<String>,
    /// `time.created`.
    pub created_at: Option<i64>,
    /// `time.updated`.
    pub updated_at: Option<i64>,
    /// `time.archived`.
    pub archived_at: Option<i64>,
    /// `summary.additions`.
    pub summary_additions: Option<i64>,
    /// `summary.deletions`.
    pub summary_deletions: Option<i64>,
    /// `summary.files`.
    pub summary_files: Option<i64>,
    /// `share.url`.
    pub share_url: Option<String>,
    /// The whole document.
    pub raw: RawDocument,
}

/// `message/<sessionID>/<messageID>.json` (user or assistant).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageRecord {
    /// `msg_…`
    pub id: String,
    /// `sessionID`.
    pub session_id: String,
    /// `user` or `assistant` (or whatever the file says).
    pub role: Option<String>,
    /// For assistant messages, the user message it answers.
    pub parent_id: Option<String>,
    /// `agent`, else the deprecated `mode`.
    pub agent: Option<String>,
    /// `mode` as written.
    pub mode: Option<String>,
    /// `providerID` (assistant) or `model.providerID` (user).
    pub provider_id: Option<String>,
    /// `modelID` (assistant) or `model.modelID` (user).
    pub model_id: Option<String>,
    /// USD, summed over the message's steps by OpenCode.
    pub cost: Option<f64>,
    /// Where `cost` comes from: [`COST_LOGGED`] or [`COST_COMPUTED`]; `None` when there is no cost.
    pub cost_source: Option<&'static str>,
    /// What the tokens cost at list prices, whatever the agent logged (a subscription logs 0);
    /// `None` until priced, and for models the price table does not know.
    pub list_cost: Option<f64>,
    /// The last step's usage (OpenCode overwrites it per step).
    pub tokens: Tokens,
    /// `finish`.
    pub finish_reason: Option<String>,
    /// `error.name`.
    pub error_name: Option<String>,
    /// `error.data.message`.
    pub error_message: Option<String>,
    /// `summary: true` on a compaction summary message.
    pub is_summary: bool,
    /// `time.created`.
    pub created_at: Option<i64>,
    /// `time.completed`.
    pub completed_at: Option<i64>,
    /// The whole document.
    pub raw: RawDocument,
}

/// `part/<messageID>/<partID>.json`: one of twelve part types.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartRecord {
    /// `prt_…`
    pub id: String,
    /// `sessionID`.
    pub session_id: String,
    /// `messageID`.
    pub message_id: String,
    /// `type`: text, reasoning, tool, step-start, step-finish, patch, file, agent, subtask,
    /// compaction, retry, snapshot — or anything newer, kept as written.
    pub part_type: String,
    /// `text` of text/reasoning parts, capped.
    pub text: Option<String>,
    /// `tool` of tool parts.
    pub tool_name: Option<String>,
    /// `state.status` of tool parts: pending, running, completed, error.
    pub tool_status: Option<String>,
    /// `callID` of tool parts.
    pub call_id: Option<String>,
    /// `state.title`.
    pub tool_title: Option<String>,
    /// `state.input` as JSON text, capped.
    pub tool_input: Option<String>,
    /// `state.output`, capped.
    pub tool_output: Option<String>,
    /// `state.error`.
    pub tool_error: Option<String>,
    /// `state.metadata.sessionId` of a `task` tool part: the child session it created.
    pub child_session_id: Option<String>,
    /// `state.input.subagent_type` of a `task` tool part (or `agent` of a subtask part).
    pub subagent_type: Option<String>,
    /// `state.time.start` or `time.start`.
    pub started_at: Option<i64>,
    /// `state.time.end` or `time.end`.
    pub ended_at: Option<i64>,
    /// Whether `text`, `tool_input` or `tool_output` was shortened to the cap.
    pub content_truncated: bool,
    /// The whole document.
    pub raw: RawDocument,
}

/// A `step-start` or `step-finish` part seen as a usage event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepEvent {
    /// The part id.
    pub id: String,
    /// `sessionID`.
    pub session_id: String,
    /// `messageID`.
    pub message_id: String,
    /// `start` or `finish`.
    pub event_type: &'static str,
    /// `reason` of a finish step.
    pub reason: Option<String>,
    /// `cost` of a finish step.
    pub cost: Option<f64>,
    /// Where `cost` comes from: [`COST_LOGGED`] or [`COST_COMPUTED`]; `None` when there is no cost.
    pub cost_source: Option<&'static str>,
    /// What the step's tokens cost at list prices (see [`MessageRecord::list_cost`]).
    pub list_cost: Option<f64>,
    /// `tokens` of a finish step (zero for start steps).
    pub tokens: Tokens,
    /// `snapshot` hash.
    pub snapshot: Option<String>,
}

/// A read, write or edit tool call seen as an operation on a file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileOperation {
    /// The tool part's id.
    pub id: String,
    /// `sessionID`.
    pub session_id: String,
    /// `messageID`.
    pub message_id: String,
    /// `read`, `write` or `edit`.
    pub operation: String,
    /// `state.input.filePath`.
    pub file_path: Option<String>,
    /// The tool state's status.
    pub status: Option<String>,
    /// `state.metadata.filediff.additions` for edits.
    pub additions: Option<i64>,
    /// `state.metadata.filediff.deletions` for edits.
    pub deletions: Option<i64>,
    /// `state.time.start`.
    pub started_at: Option<i64>,
}

/// One item of `todo/<sessionID>.json`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TodoRecord {
    /// The session the list belongs to.
    pub session_id: String,
    /// Position in the list, from 0.
    pub position: i64,
    /// The model-chosen `id`.
    pub todo_id: Option<String>,
    /// `content`.
    pub content: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `priority`.
    pub priority: Option<String>,
}

/// One item of `session_diff/<sessionID>.json`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileDiffRecord {
    /// The session the diff belongs to.
    pub session_id: String,
    /// Position in the list, from 0.
    pub position: i64,
    /// Path relative to the worktree.
    pub file: Option<String>,
    /// added, deleted or modified.
    pub status: Option<String>,
    /// Lines added.
    pub additions: Option<i64>,
    /// Lines deleted.
    pub deletions: Option<i64>,
    /// Size in bytes of `before` (the content itself is not stored).
    pub before_bytes: Option<i64>,
    /// Size in bytes of `after`.
    pub after_bytes: Option<i64>,
}

/// Everything one source file contributes to the database.
// Parts dominate (~80% of files), so boxing the largest variant would add an allocation to the
// common case to save space in the rare ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Records {
    /// A project file.
    Project(ProjectRecord),
    /// A session file.
    Session(SessionRecord),
    /// A message file.
    Message(MessageRecord),
    /// A part file, with the step event and file operation derived from it.
    Part {
        /// The part itself.
        part: PartRecord,
        /// Set for step-start and step-finish parts.
        step: Option<StepEvent>,
        /// Set for read, write and edit tool parts.
        file_operation: Option<FileOperation>,
    },
    /// A todo list: the whole list replaces the session's previous one.
    Todos {
        /// The session the list belongs to (from the file name).
        session_id: String,
        /// The items, in order.
        items: Vec<TodoRecord>,
    },
    /// A session diff: the whole list replaces the session's previous one.
    FileDiffs {
        /// The session the diff belongs to (from the file name).
        session_id: String,
        /// The items, in order.
        items: Vec<FileDiffRecord>,
    },
}

impl Records {
    /// The id that keys this file's records: the record id, or the session id for lists.
    pub fn record_id(&self) -> &str {
        match self {
            Records::Project(project) => &project.id,
            Records::Session(session) => &session.id,
            Records::Message(message) => &message.id,
            Records::Part { part, .. } => &part.id,
            Records::Todos { session_id, .. } | Records::FileDiffs { session_id, .. } => session_id,
        }
    }

    /// The session these records belong to, if any (projects belong to none).
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Records::Project(_) => None,
            Records::Session(session) => Some(&session.id),
            Records::Message(message) => Some(&message.session_id),
            Records::Part { part, .. } => Some(&part.session_id),
            Records::Todos { session_id, .. } | Records::FileDiffs { session_id, .. } => Some(session_id),
        }
    }

    /// The kind of file these records come from.
    pub fn kind(&self) -> FileKind {
        match self {
            Records::Project(_) => FileKind::Project,
            Records::Session(_) => FileKind::Session,
            Records::Message(_) => FileKind::Message,
            Records::Part { .. } => FileKind::Part,
            Records::Todos { .. } => FileKind::Todo,
            Records::FileDiffs { .. } => FileKind::SessionDiff,
        }
    }
}

/// A record read from a database source (one row, or one session's todo list), with the time
/// it was last written there: when the same record is in two sources, the newer version wins.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedRecords {
    /// The record.
    pub records: Records,
    /// When the source last wrote it, Unix epoch milliseconds.
    pub version_ms: i64,
}

/// A record a database source no longer holds (OpenCode deleted the row).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemovedRecord {
    /// What it was.
    pub kind: FileKind,
    /// Its id; the session id for a todo list.
    pub id: String,
}

/// A database row that could not be decoded: kept out of the record tables and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// What it would have been.
    pub kind: FileKind,
    /// Its id.
    pub id: String,
    /// Why, for `file_index.error_message`.
    pub reason: String,
}

/// A record the store holds from a database source, as that source's reader needs to know it
/// after a restart (what was delivered, and when it was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// What it is.
    pub kind: FileKind,
    /// Its id (the session id for a todo list).
    pub id: String,
    /// Its session, for messages and parts.
    pub session_id: Option<String>,
    /// Its version when delivered.
    pub version_ms: Option<i64>,
}

/// One OpenTelemetry span from a span Parquet file. Times are Unix epoch **nanoseconds** (UTC);
/// ids are lowercase hex; `span_kind` and `status_code` are the raw OTLP enum values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Span {
    /// 32 hex chars.
    pub trace_id: String,
    /// 16 hex chars.
    pub span_id: String,
    /// `None` for a root span (an empty string in the file counts as none).
    pub parent_span_id: Option<String>,
    /// Resource attribute `service.name` (`""` or `"unknown"` when the writer had none).
    pub service_name: String,
    /// Span name.
    pub name: String,
    /// 0 UNSPECIFIED, 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER.
    pub span_kind: i32,
    /// Start, ns since the epoch.
    pub start_ns: i64,
    /// End, ns since the epoch.
    pub end_ns: i64,
    /// `end − start` as the file states it.
    pub duration_ns: i64,
    /// 0 UNSET, 1 OK, 2 ERROR.
    pub status_code: i32,
    /// Status message, if any.
    pub status_message: Option<String>,
    /// JSON object text.
    pub attributes: Option<String>,
    /// JSON array text.
    pub events: Option<String>,
    /// JSON object text.
    pub resource_attributes: Option<String>,
    /// JSON array text (later schema only).
    pub links: Option<String>,
    /// W3C trace flags (later schema only).
    pub trace_flags: Option<i64>,
    /// W3C trace state (later schema only).
    pub trace_state: Option<String>,
}

/// What reading one span Parquet file produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SpanFileOutcome {
    /// Its spans, in file order.
    Decoded(Vec<Span>),
    /// It could not be read but changed recently: probably still being written; retried.
    NotReady(String),
    /// It could not be read; retried when it changes.
    Failed(String),
}

/// One span file's reading, ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Its stamp when read.
    pub stamp: FileStamp,
    /// What reading produced.
    pub outcome: SpanFileOutcome,
}

/// The UTC calendar date `(year, month, day)` of a day number (days since 1970-01-01), in the
/// proleptic Gregorian calendar (Howard Hinnant's civil-from-days). Shared by every place that
/// prints or lays out dates, so none needs a date crate.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Where a file stood on disk when it was looked at; the pair decides "unchanged".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileStamp {
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Size in bytes.
    pub size: i64,
}

/// What decoding one file produced.
#[allow(clippy::large_enum_variant)] // see `Records`
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    /// The file decoded; these are its records.
    Decoded(Records),
    /// The file could not be decoded but may still be being written (recently modified, empty,
    /// truncated): try again once it has settled.
    NotReady(String),
    /// The file could not be decoded and is taken as it is; the message says why.
    Failed(String),
}

/// One file's decoding result, ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFile {
    /// Absolute path of the file.
    pub path: PathBuf,
    /// Its kind, from the path.
    pub kind: FileKind,
    /// Its stamp when it was read.
    pub stamp: FileStamp,
    /// The id the file's name claims (its stem), used when decoding failed.
    pub path_record_id: String,
    /// What decoding produced.
    pub outcome: FileOutcome,
}

/// Per-file indexing status stored in `file_index.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileStatus {
    /// Records are in the database.
    Indexed,
    /// The file could not be decoded; `error_message` says why.
    Error,
    /// Seen but not yet decodable; will be retried.
    Pending,
}

impl FileStatus {
    /// The name stored in `file_index.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Indexed => "indexed",
            FileStatus::Error => "error",
            FileStatus::Pending => "pending",
        }
    }

    /// Parses the name stored in `file_index.status`.
    pub fn parse(name: &str) -> Option<FileStatus> {
        match name {
            "indexed" => Some(FileStatus::Indexed),
            "error" => Some(FileStatus::Error),
            "pending" => Some(FileStatus::Pending),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_378), (2025, 10, 17));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in FileKind::ALL {
            assert_eq!(FileKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(FileKind::parse("share"), None);
    }

    #[test]
    fn status_names_round_trip() {
        for status in [FileStatus::Indexed, FileStatus::Error, FileStatus::Pending] {
            assert_eq!(FileStatus::parse(status.as_str()), Some(status));
        }
    }
}
