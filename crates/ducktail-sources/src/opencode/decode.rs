//! Decoding one OpenCode storage file into records, tolerating partial writes and old formats.
//!
//! OpenCode rewrites its files in place (truncate, then write) on every streamed token, so a
//! reader regularly sees empty or half-written files; those are [`FileOutcome::NotReady`]. Files
//! that are complete but wrong are [`FileOutcome::Failed`] with a reason a user can act on. Only
//! the ids are strict: every other field is optional, and a field of an unexpected type is read
//! as absent, because five format generations (0.1 → 1.1.65) live side by side on real disks.
//!
//! Each file is parsed once into a [`serde_json::Value`]; the raw document is produced from the
//! file text (or, for big files, from the parsed value with long strings cut) *before* the fields
//! are moved out of the value, so no large string is copied twice.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use ducktail_model::{
    DecodedFile, FileDiffRecord, FileKind, FileOperation, FileOutcome, FileStamp, MessageRecord, PartRecord, ProjectRecord, RawDocument, Records,
    SessionRecord, StepEvent, TodoRecord, Tokens, COST_LOGGED,
};
use serde_json::error::Category;
use serde_json::{Map, Value};

use super::layout;
use super::scan::stamp_of;

/// Size limits applied while decoding (config section `decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest `text`, `tool_input`, `tool_output` or `tool_error` kept, in bytes; longer ones
    /// are cut on a character boundary and the part is marked `content_truncated`. Also the
    /// longest string kept inside a raw document, and the file size up to which the raw document
    /// is the file text itself (`decode.max_text_bytes`).
    pub max_text_bytes: usize,
    /// Files larger than this are not read at all and fail with a message naming this limit
    /// (`decode.max_file_bytes`).
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_text_bytes: 1024 * 1024, max_file_bytes: 256 * 1024 * 1024 }
    }
}

/// Reads and decodes one storage file.
///
/// `path` may be absolute or relative to `storage_root`; the returned [`DecodedFile::path`] is
/// `storage_root.join(path)`. The file is opened with `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`, so a
/// symbolic link is refused and a FIFO never blocks, and everything else is decided on the opened
/// descriptor: its type (only regular files are read), its size (against
/// [`DecodeLimits::max_file_bytes`]) and its stamp. The stamp is taken before reading, so if the
/// file changes while it is read, the next look sees a newer stamp and reads it again.
///
/// Never panics and never fails: problems are in [`DecodedFile::outcome`].
pub fn decode_file(storage_root: &Path, path: &Path, kind: FileKind, limits: &DecodeLimits) -> DecodedFile {
    let path = storage_root.join(path);
    let path_record_id = layout::file_stem(&path).unwrap_or_default();
    let (stamp, outcome) = match read_regular_file(&path, limits) {
        Ok((stamp, bytes)) => {
            let size_bytes = bytes.len();
            let text = match String::from_utf8(bytes) {
                Ok(text) => Cow::Owned(text),
                Err(error) => Cow::Owned(String::from_utf8_lossy(error.as_bytes()).into_owned()),
            };
            (stamp, decode_text(kind, &path, text, size_bytes, limits))
        }
        Err((stamp, reason)) => (stamp, FileOutcome::Failed(reason)),
    };
    DecodedFile { path, kind, stamp, path_record_id, outcome }
}

/// Decodes the bytes of one storage file of `kind`. Nothing is read from `path`: its folder name
/// is a session's project id and stands in for a missing `sessionID` (messages) or `messageID`
/// (parts), and its stem is the session id of todo and session_diff lists.
///
/// - empty, NUL-only or truncated JSON → [`FileOutcome::NotReady`] (OpenCode may be mid-write);
/// - not JSON, wrong top-level type, a missing or non-string id → [`FileOutcome::Failed`];
/// - invalid UTF-8 is replaced by U+FFFD, lone UTF-16 surrogate escapes by `\ufffd`.
///
/// Never panics, whatever the bytes.
pub fn decode_bytes(kind: FileKind, path: &Path, bytes: &[u8], limits: &DecodeLimits) -> FileOutcome {
    decode_text(kind, path, String::from_utf8_lossy(bytes), bytes.len(), limits)
}

/// Decodes a JSON document stored in a database row (`message.data`, `part.data` of
/// `opencode.db`): the same document as the JSON file minus its ids, which the row's columns
/// carry and `ids` puts back (`("id", …)`, `("sessionID", …)`, `("messageID", …)`). The raw
/// document is the completed document, so a row and its JSON file look alike in `raw`.
///
/// A row is committed whole by SQLite, so nothing here is "not ready": any problem is
/// [`FileOutcome::Failed`]. Never panics, whatever the text.
pub fn decode_document(kind: FileKind, ids: &[(&str, &str)], data: &str, limits: &DecodeLimits) -> FileOutcome {
    if data.len() as u64 > limits.max_file_bytes {
        return FileOutcome::Failed(too_large_reason(data.len() as u64, limits));
    }
    let value = match serde_json::from_str::<Value>(data) {
        Ok(value) => value,
        Err(error) => match parse_error_outcome(data, error) {
            Ok((_, value)) => value,
            Err(ParseFailure::Truncated(reason) | ParseFailure::Invalid(reason)) => return FileOutcome::Failed(reason),
        },
    };
    let Value::Object(mut object) = value else {
        return wrong_top_level("object", &value);
    };
    for (key, id) in ids {
        object.insert((*key).to_owned(), Value::String((*id).to_owned()));
    }
    let document = Value::Object(object);
    let text = Cow::Owned(document.to_string());
    let raw = raw_document(text, &document, data.len(), limits.max_text_bytes);
    let Value::Object(object) = document else {
        return wrong_top_level("object", &document);
    };
    let no_folder = Path::new("");
    let result = match kind {
        FileKind::Message => message(object, no_folder, raw),
        FileKind::Part => part(object, no_folder, raw, limits.max_text_bytes),
        FileKind::Project => project(object, raw),
        FileKind::Session => session(object, no_folder, raw),
        FileKind::Todo | FileKind::SessionDiff => return FileOutcome::Failed(format!("{} rows are not JSON documents", kind.as_str())),
    };
    match result {
        Ok(records) => FileOutcome::Decoded(records),
        Err(reason) => FileOutcome::Failed(reason),
    }
}

/// Opens `path` without following links or blocking, checks it is a regular file within the size
/// limit, and reads it. Errors carry the stamp known so far and a reason for the user.
fn read_regular_file(path: &Path, limits: &DecodeLimits) -> Result<(FileStamp, Vec<u8>), (FileStamp, String)> {
    let mut file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path).map_err(|error| {
        let stamp = std::fs::symlink_metadata(path).map(|metadata| stamp_of(&metadata)).unwrap_or_default();
        (stamp, open_error_reason(path, &error))
    })?;
    let metadata = file.metadata().map_err(|error| (FileStamp::default(), format!("could not stat the opened file: {error}")))?;
    let stamp = stamp_of(&metadata);
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let what = if file_type.is_fifo() {
            "a FIFO"
        } else if file_type.is_socket() {
            "a socket"
        } else if file_type.is_dir() {
            "a directory"
        } else if file_type.is_char_device() {
            "a character device"
        } else if file_type.is_block_device() {
            "a block device"
        } else {
            "an unknown file type"
        };
        return Err((stamp, format!("not a regular file ({what}); only regular files are read")));
    }
    if metadata.len() > limits.max_file_bytes {
        return Err((stamp, too_large_reason(metadata.len(), limits)));
    }
    let bytes = read_capped(&mut file, metadata.len(), limits.max_file_bytes).map_err(|error| (stamp, format!("could not read the file: {error}")))?;
    if bytes.len() as u64 > limits.max_file_bytes {
        // The file grew past the limit while it was being read.
        return Err((stamp, too_large_reason(bytes.len() as u64, limits)));
    }
    Ok((stamp, bytes))
}

fn read_capped(file: &mut File, expected_len: u64, max_len: u64) -> io::Result<Vec<u8>> {
    // One byte more than the expected size lets read_to_end detect the end without regrowing.
    let capacity = usize::try_from(expected_len.saturating_add(1)).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(max_len.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn too_large_reason(size: u64, limits: &DecodeLimits) -> String {
    format!("file is {size} bytes, more than decode.max_file_bytes ({}); raise decode.max_file_bytes to index it", limits.max_file_bytes)
}

fn open_error_reason(path: &Path, error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
            return "file disappeared before it could be read".to_owned();
        }
        Some(libc::ELOOP) => {
            return "refusing to follow a symbolic link (files are opened with O_NOFOLLOW)".to_owned();
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            return format!("permission denied: give the user running ducktail read access to {} (and search access to its folders)", path.display());
        }
        _ => {}
    }
    format!("could not open the file: {error}")
}

/// The decoding core shared by [`decode_file`] and [`decode_bytes`]. `size_bytes` is the file's
/// length as read, before lossy UTF-8 replacement.
fn decode_text(kind: FileKind, path: &Path, text: Cow<'_, str>, size_bytes: usize, limits: &DecodeLimits) -> FileOutcome {
    if text.is_empty() {
        return FileOutcome::NotReady("empty file (0 bytes)".to_owned());
    }
    if text.bytes().all(|byte| byte == 0) {
        return FileOutcome::NotReady(format!("file holds only NUL bytes ({size_bytes} bytes)"));
    }
    let (text, value) = match serde_json::from_str::<Value>(&text) {
        Ok(value) => (text, value),
        Err(error) => match parse_error_outcome(&text, error) {
            Ok((repaired, value)) => (Cow::Owned(repaired), value),
            Err(ParseFailure::Truncated(reason)) => return FileOutcome::NotReady(reason),
            Err(ParseFailure::Invalid(reason)) => return FileOutcome::Failed(reason),
        },
    };
    match kind {
        FileKind::Todo | FileKind::SessionDiff => {
            let Value::Array(items) = value else {
                return wrong_top_level("array", &value);
            };
            let session_id = layout::file_stem(path).unwrap_or_default();
            let records = if kind == FileKind::Todo { todos(session_id, items) } else { file_diffs(session_id, items) };
            FileOutcome::Decoded(records)
        }
        FileKind::Project | FileKind::Session | FileKind::Message | FileKind::Part => {
            if !value.is_object() {
                return wrong_top_level("object", &value);
            }
            let raw = raw_document(text, &value, size_bytes, limits.max_text_bytes);
            let Value::Object(object) = value else {
                return wrong_top_level("object", &value);
            };
            let result = match kind {
                FileKind::Project => project(object, raw),
                FileKind::Session => session(object, path, raw),
                FileKind::Message => message(object, path, raw),
                _ => part(object, path, raw, limits.max_text_bytes),
            };
            match result {
                Ok(records) => FileOutcome::Decoded(records),
                Err(reason) => FileOutcome::Failed(reason),
            }
        }
    }
}

/// Turns a parse error into an outcome, except for lone UTF-16 surrogate escapes (which
/// JavaScript's `JSON.stringify` can write and serde_json rejects): those are replaced by
/// `\ufffd` and the text is parsed again.
fn parse_error_outcome(text: &str, error: serde_json::Error) -> Result<(String, Value), ParseFailure> {
    if error.classify() == Category::Eof {
        return Err(ParseFailure::Truncated(format!("truncated JSON: {error}")));
    }
    if error.classify() == Category::Syntax {
        if let Some(repaired) = replace_lone_surrogate_escapes(text) {
            if let Ok(value) = serde_json::from_str::<Value>(&repaired) {
                return Ok((repaired, value));
            }
        }
    }
    Err(ParseFailure::Invalid(format!("not valid JSON: {error}")))
}

/// Why a file's text did not parse.
enum ParseFailure {
    /// The JSON ends early: OpenCode may be mid-write.
    Truncated(String),
    /// The text is not JSON and will not become JSON by waiting.
    Invalid(String),
}

/// Rewrites every `\uXXXX` escape that is a UTF-16 surrogate without its partner as `\ufffd`.
/// Returns `None` when there is nothing to replace.
fn replace_lone_surrogate_escapes(text: &str) -> Option<String> {
    fn escape_at(bytes: &[u8], at: usize) -> Option<u16> {
        if bytes.get(at) != Some(&b'\\') || bytes.get(at + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }
    let bytes = text.as_bytes();
    let mut lone_escapes = Vec::new();
    let mut index = 0;
    while let Some(offset) = memchr::memchr(b'\\', &bytes[index..]) {
        let at = index + offset;
        match escape_at(bytes, at) {
            Some(0xD800..=0xDBFF) => {
                if matches!(escape_at(bytes, at + 6), Some(0xDC00..=0xDFFF)) {
                    index = at + 12;
                } else {
                    lone_escapes.push(at);
                    index = at + 6;
                }
            }
            Some(0xDC00..=0xDFFF) => {
                lone_escapes.push(at);
                index = at + 6;
            }
            Some(_) => index = at + 6,
            // Any other escape (`\\`, `\"`, …) is two bytes; skipping both keeps an escaped
            // backslash from being read as the start of a `\u`.
            None => index = at + 2,
        }
        if index >= bytes.len() {
            break;
        }
    }
    if lone_escapes.is_empty() {
        return None;
    }
    let mut repaired = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    for at in lone_escapes {
        repaired.push_str(&text[copied_up_to..at]);
        repaired.push_str("\\ufffd");
        copied_up_to = at + 6;
    }
    repaired.push_str(&text[copied_up_to..]);
    Some(repaired)
}

fn wrong_top_level(expected: &str, value: &Value) -> FileOutcome {
    FileOutcome::Failed(format!("wrong shape: expected a JSON {expected}, found {}", type_name(value)))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------------------------
// Raw documents and caps

/// The raw document: the file text itself when the file is small, else the parsed value written
/// back compactly with every string longer than `max_text_bytes` cut, so it is always valid JSON.
pub(crate) fn raw_document(text: Cow<'_, str>, value: &Value, size_bytes: usize, max_text_bytes: usize) -> RawDocument {
    let size_bytes = i64::try_from(size_bytes).unwrap_or(i64::MAX);
    if text.len() <= max_text_bytes {
        return RawDocument { json: text.into_owned(), size_bytes, truncated: false };
    }
    drop(text);
    let mut out = String::new();
    let mut truncated = false;
    write_capped(value, max_text_bytes, &mut out, &mut truncated);
    RawDocument { json: out, size_bytes, truncated }
}

fn write_capped(value: &Value, cap: usize, out: &mut String, truncated: &mut bool) {
    match value {
        Value::String(text) => write_capped_str(text, cap, out, truncated),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_capped(item, cap, out, truncated);
            }
            out.push(']');
        }
        Value::Object(object) => {
            out.push('{');
            for (index, (key, item)) in object.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                // Keys are kept whole: they are short field names, and cutting them could make
                // two keys equal.
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_capped(item, cap, out, truncated);
            }
            out.push('}');
        }
        // Null, booleans and numbers print as JSON through Display.
        leaf => out.push_str(&leaf.to_string()),
    }
}

fn write_capped_str(text: &str, cap: usize, out: &mut String, truncated: &mut bool) {
    if text.len() <= cap {
        out.push_str(&Value::from(text).to_string());
        return;
    }
    *truncated = true;
    let cut = floor_char_boundary(text, cap);
    let shown = format!("{}…[truncated {} bytes]", &text[..cut], text.len() - cut);
    out.push_str(&Value::String(shown).to_string());
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    if at >= text.len() {
        return text.len();
    }
    let mut cut = at;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Cuts `text` to at most `cap` bytes on a character boundary; the flag says whether it was cut.
pub(crate) fn capped(mut text: String, cap: usize, truncated: &mut bool) -> String {
    if text.len() > cap {
        let cut = floor_char_boundary(&text, cap);
        text.truncate(cut);
        text.shrink_to_fit();
        *truncated = true;
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Tolerant field access: a field of the wrong type is read as absent.

type Object = Map<String, Value>;

fn take_string(object: &mut Object, key: &str) -> Option<String> {
    match object.get_mut(key) {
        Some(Value::String(text)) => Some(std::mem::take(text)),
        _ => None,
    }
}

fn object_mut<'a>(object: &'a mut Object, key: &str) -> Option<&'a mut Object> {
    object.get_mut(key)?.as_object_mut()
}

fn integer(object: &Object, key: &str) -> Option<i64> {
    as_integer(object.get(key)?)
}

/// Integers as written, or floats rounded (OpenCode's numbers are JavaScript doubles).
fn as_integer(value: &Value) -> Option<i64> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(integer) = number.as_i64() {
        return Some(integer);
    }
    if number.as_u64().is_some() {
        return Some(i64::MAX);
    }
    let float = number.as_f64()?;
    // `as` saturates at the i64 bounds; JSON numbers are never NaN.
    float.is_finite().then(|| float.round() as i64)
}

fn float(object: &Object, key: &str) -> Option<f64> {
    object.get(key)?.as_f64()
}

fn nested_integer(object: &mut Object, outer: &str, key: &str) -> Option<i64> {
    integer(object_mut(object, outer)?, key)
}

fn nested_string(object: &mut Object, outer: &str, key: &str) -> Option<String> {
    take_string(object_mut(object, outer)?, key)
}

/// An id field: absent is `Ok(None)`, a non-empty string is taken, anything else is a shape error.
fn id_field(object: &mut Object, key: &str) -> Result<Option<String>, String> {
    match object.get_mut(key) {
        None => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Err(format!("wrong shape: `{key}` is empty")),
        Some(Value::String(text)) => Ok(Some(std::mem::take(text))),
        Some(other) => Err(format!("wrong shape: `{key}` must be a string, found {}", type_name(other))),
    }
}

fn required_id(object: &mut Object, key: &str) -> Result<String, String> {
    id_field(object, key)?.ok_or_else(|| format!("wrong shape: missing `{key}`"))
}

fn tokens(object: &mut Object) -> Tokens {
    let Some(tokens) = object_mut(object, "tokens") else {
        return Tokens::default();
    };
    Tokens {
        input: integer(tokens, "input").unwrap_or(0),
        output: integer(tokens, "output").unwrap_or(0),
        reasoning: integer(tokens, "reasoning").unwrap_or(0),
        cache_read: nested_integer(tokens, "cache", "read").unwrap_or(0),
        cache_write: nested_integer(tokens, "cache", "write").unwrap_or(0),
        total: integer(tokens, "total"),
    }
}

// ---------------------------------------------------------------------------------------------
// One function per kind

fn project(mut object: Object, raw: RawDocument) -> Result<Records, String> {
    let id = required_id(&mut object, "id")?;
    Ok(Records::Project(ProjectRecord {
        id,
        worktree: take_string(&mut object, "worktree"),
        vcs: take_string(&mut object, "vcs"),
        name: take_string(&mut object, "name"),
        created_at: nested_integer(&mut object, "time", "created"),
        updated_at: nested_integer(&mut object, "time", "updated"),
        initialized_at: nested_integer(&mut object, "time", "initialized"),
        raw,
    }))
}

fn session(mut object: Object, path: &Path, raw: RawDocument) -> Result<Records, String> {
    let id = required_id(&mut object, "id")?;
    // OpenCode's own JSON→SQLite importer trusts the folder, not `projectID` (sessions move from
    // `global/` to a project folder when the directory becomes a git repository); the field
    // stays in the raw document.
    let project_id = layout::parent_folder_name(path);
    let time = object_mut(&mut object, "time").map(|time| (integer(time, "created"), integer(time, "updated"), integer(time, "archived")));
    let (created_at, updated_at, archived_at) = time.unwrap_or_default();
    let summary = object_mut(&mut object, "summary").map(|summary| (integer(summary, "additions"), integer(summary, "deletions"), integer(summary, "files")));
    let (summary_additions, summary_deletions, summary_files) = summary.unwrap_or_default();
    Ok(Records::Session(SessionRecord {
        id,
        project_id,
        parent_id: take_string(&mut object, "parentID"),
        slug: take_string(&mut object, "slug"),
        title: take_string(&mut object, "title"),
        directory: take_string(&mut object, "directory"),
        version: take_string(&mut object, "version"),
        created_at,
        updated_at,
        archived_at,
        summary_additions,
        summary_deletions,
        summary_files,
        share_url: nested_string(&mut object, "share", "url"),
        raw,
    }))
}

fn message(mut object: Object, path: &Path, raw: RawDocument) -> Result<Records, String> {
    let id = required_id(&mut object, "id")?;
    let session_id = match id_field(&mut object, "sessionID")? {
        Some(session_id) => session_id,
        None => layout::parent_folder_name(path).ok_or_else(|| "wrong shape: missing `sessionID` and no folder to take it from".to_owned())?,
    };
    let mode = take_string(&mut object, "mode");
    let agent = take_string(&mut object, "agent").or_else(|| mode.clone());
    // Assistant messages carry the model at the top level, user messages (≥ 1.0) in `model`.
    let mut provider_id = take_string(&mut object, "providerID");
    let mut model_id = take_string(&mut object, "modelID");
    if let Some(model) = object_mut(&mut object, "model") {
        provider_id = provider_id.or_else(|| take_string(model, "providerID"));
        model_id = model_id.or_else(|| take_string(model, "modelID"));
    }
    let (error_name, error_message) = match object_mut(&mut object, "error") {
        Some(error) => (take_string(error, "name"), nested_string(error, "data", "message")),
        None => (None, None),
    };
    Ok(Records::Message(MessageRecord {
        id,
        session_id,
        role: take_string(&mut object, "role"),
        parent_id: take_string(&mut object, "parentID"),
        agent,
        mode,
        provider_id,
        model_id,
        cost: float(&object, "cost"),
        cost_source: float(&object, "cost").map(|_| COST_LOGGED),
        // Priced later, by the store, from the stored tokens (see `ListPrice`).
        list_cost: None,
        tokens: tokens(&mut object),
        finish_reason: take_string(&mut object, "finish"),
        error_name,
        error_message,
        // Only an assistant's boolean counts: a user message's `summary` is an object.
        is_summary: object.get("summary") == Some(&Value::Bool(true)),
        created_at: nested_integer(&mut object, "time", "created"),
        completed_at: nested_integer(&mut object, "time", "completed"),
        raw,
    }))
}

fn part(mut object: Object, path: &Path, raw: RawDocument, cap: usize) -> Result<Records, String> {
    let id = required_id(&mut object, "id")?;
    let message_id = match id_field(&mut object, "messageID")? {
        Some(message_id) => message_id,
        None => layout::parent_folder_name(path).ok_or_else(|| "wrong shape: missing `messageID` and no folder to take it from".to_owned())?,
    };
    let session_id = required_id(&mut object, "sessionID")?;
    let part_type = take_string(&mut object, "type").unwrap_or_else(|| "unknown".to_owned());
    let mut part = PartRecord { id, session_id, message_id, part_type, raw, ..PartRecord::default() };
    let mut step = None;
    let mut file_operation = None;
    match part.part_type.as_str() {
        "tool" => file_operation = tool_fields(&mut part, &mut object, cap),
        "step-start" | "step-finish" => {
            let finish = part.part_type == "step-finish";
            step = Some(StepEvent {
                id: part.id.clone(),
                session_id: part.session_id.clone(),
                message_id: part.message_id.clone(),
                event_type: if finish { "finish" } else { "start" },
                reason: take_string(&mut object, "reason"),
                cost: float(&object, "cost"),
                cost_source: float(&object, "cost").map(|_| COST_LOGGED),
                list_cost: None,
                tokens: if finish { tokens(&mut object) } else { Tokens::default() },
                snapshot: take_string(&mut object, "snapshot"),
            });
        }
        other => {
            if matches!(other, "text" | "reasoning") {
                part.text = take_string(&mut object, "text").map(|text| capped(text, cap, &mut part.content_truncated));
            }
            if other == "subtask" {
                part.subagent_type = take_string(&mut object, "agent");
            }
        }
    }
    if part.part_type != "tool" {
        part.started_at = nested_integer(&mut object, "time", "start");
        part.ended_at = nested_integer(&mut object, "time", "end");
    }
    Ok(Records::Part { part, step, file_operation })
}

/// Fills the tool columns of `part` from `callID`, `tool` and `state`; returns the file operation
/// of read, write and edit calls.
fn tool_fields(part: &mut PartRecord, object: &mut Object, cap: usize) -> Option<FileOperation> {
    part.tool_name = take_string(object, "tool");
    part.call_id = take_string(object, "callID");
    let state = object_mut(object, "state")?;
    part.tool_status = take_string(state, "status");
    part.tool_title = take_string(state, "title");
    part.tool_output = take_string(state, "output").map(|text| capped(text, cap, &mut part.content_truncated));
    part.tool_error = take_string(state, "error").map(|text| capped(text, cap, &mut part.content_truncated));
    if let Some(time) = object_mut(state, "time") {
        part.started_at = integer(time, "start");
        part.ended_at = integer(time, "end");
    }
    if let Some(input) = state.get("input") {
        part.tool_input = Some(capped(input.to_string(), cap, &mut part.content_truncated));
    }
    let tool_name = part.tool_name.as_deref().unwrap_or_default();
    if tool_name == "task" {
        part.child_session_id = object_mut(state, "metadata").and_then(|metadata| take_string(metadata, "sessionId"));
        part.subagent_type = object_mut(state, "input").and_then(|input| take_string(input, "subagent_type"));
        return None;
    }
    if !matches!(tool_name, "read" | "write" | "edit") {
        return None;
    }
    let (additions, deletions) = match object_mut(state, "metadata").and_then(|metadata| object_mut(metadata, "filediff")) {
        Some(filediff) if tool_name == "edit" => (integer(filediff, "additions"), integer(filediff, "deletions")),
        _ => (None, None),
    };
    Some(FileOperation {
        id: part.id.clone(),
        session_id: part.session_id.clone(),
        message_id: part.message_id.clone(),
        operation: tool_name.to_owned(),
        file_path: object_mut(state, "input").and_then(|input| take_string(input, "filePath")),
        status: part.tool_status.clone(),
        additions,
        deletions,
        started_at: part.started_at,
    })
}

fn todos(session_id: String, items: Vec<Value>) -> Records {
    let items = items
        .into_iter()
        .enumerate()
        .filter_map(|(position, item)| {
            let Value::Object(mut item) = item else {
                return None;
            };
            let todo_id = match item.get_mut("id") {
                Some(Value::String(text)) => Some(std::mem::take(text)),
                Some(Value::Number(number)) => Some(number.to_string()),
                _ => None,
            };
            Some(TodoRecord {
                session_id: session_id.clone(),
                position: position as i64,
                todo_id,
                content: take_string(&mut item, "content"),
                status: take_string(&mut item, "status"),
                priority: take_string(&mut item, "priority"),
            })
        })
        .collect();
    Records::Todos { session_id, items }
}

fn file_diffs(session_id: String, items: Vec<Value>) -> Records {
    let byte_length = |item: &Object, key: &str| match item.get(key) {
        Some(Value::String(text)) => Some(text.len() as i64),
        _ => None,
    };
    let items = items
        .into_iter()
        .enumerate()
        .filter_map(|(position, item)| {
            let Value::Object(mut item) = item else {
                return None;
            };
            Some(FileDiffRecord {
                session_id: session_id.clone(),
                position: position as i64,
                file: take_string(&mut item, "file"),
                status: take_string(&mut item, "status"),
                additions: integer(&item, "additions"),
                deletions: integer(&item, "deletions"),
                before_bytes: byte_length(&item, "before"),
                after_bytes: byte_length(&item, "after"),
            })
        })
        .collect();
    Records::FileDiffs { session_id, items }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    /// Found by the fuzzer: with serde_json's `raw_value` feature, an object whose first key is
    /// serde_json's private raw-value token printed fine but did not parse back. The feature is off
    /// now; this keeps it so (every raw document must read back as JSON).
    #[test]
    fn a_raw_document_always_reads_back_as_json() {
        let ids = [("id", "prt_x"), ("sessionID", "ses_x"), ("messageID", "msg_x")];
        let data = r#"{"type":"text","$serde_json::private::RawValue":23}"#;
        let FileOutcome::Decoded(Records::Part { part, .. }) = decode_document(FileKind::Part, &ids, data, &DecodeLimits::default()) else {
            panic!("decodes");
        };
        let reparsed: Value = serde_json::from_str(&part.raw.json).expect("the raw document reads back");
        assert_eq!(reparsed["$serde_json::private::RawValue"], 23);
    }
    use std::fs;
    use std::path::PathBuf;
    use std::sync::mpsc;
    use std::time::Duration;

    const PART_PATH: &str = "/s/part/msg_folder/prt_1.json";
    const MESSAGE_PATH: &str = "/s/message/ses_folder/msg_1.json";

    fn decode(kind: FileKind, path: &str, text: &str) -> FileOutcome {
        decode_bytes(kind, Path::new(path), text.as_bytes(), &DecodeLimits::default())
    }

    fn decoded_part(text: &str) -> (PartRecord, Option<StepEvent>, Option<FileOperation>) {
        match decode(FileKind::Part, PART_PATH, text) {
            FileOutcome::Decoded(Records::Part { part, step, file_operation }) => (part, step, file_operation),
            other => panic!("expected a part, got {other:?}"),
        }
    }

    fn decoded_message(text: &str) -> MessageRecord {
        match decode(FileKind::Message, MESSAGE_PATH, text) {
            FileOutcome::Decoded(Records::Message(message)) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn failed(outcome: FileOutcome) -> String {
        match outcome {
            FileOutcome::Failed(reason) => reason,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    fn not_ready(outcome: FileOutcome) -> String {
        match outcome {
            FileOutcome::NotReady(reason) => reason,
            other => panic!("expected NotReady, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_nul_files_are_not_ready() {
        for kind in FileKind::ALL {
            assert_eq!(not_ready(decode(kind, PART_PATH, "")), "empty file (0 bytes)");
            let nuls = vec![0u8; 413];
            let outcome = decode_bytes(kind, Path::new(PART_PATH), &nuls, &DecodeLimits::default());
            assert_eq!(not_ready(outcome), "file holds only NUL bytes (413 bytes)");
        }
    }

    #[test]
    fn truncated_json_is_not_ready_and_says_where() {
        let reason = not_ready(decode(FileKind::Part, PART_PATH, "{\n  \"id\": \"prt_1\",\n  \"text\": \"hal"));
        assert!(reason.starts_with("truncated JSON: EOF while parsing"), "{reason}");
        assert!(reason.contains("at line 3 column"), "{reason}");
        let whitespace = not_ready(decode(FileKind::Todo, "/s/todo/ses_1.json", "  \n"));
        assert!(whitespace.starts_with("truncated JSON"), "{whitespace}");
    }

    #[test]
    fn syntax_errors_fail_and_say_where() {
        let reason = failed(decode(FileKind::Session, "/s/session/p/ses_1.json", "{\"id\": nope}"));
        assert!(reason.starts_with("not valid JSON: expected"), "{reason}");
        assert!(reason.ends_with("at line 1 column 9"), "{reason}");
        let reason = failed(decode(FileKind::Project, "/s/project/p.json", "{\"id\":\"p\"} trailing"));
        assert!(reason.starts_with("not valid JSON: trailing characters"), "{reason}");
        assert!(!reason.ends_with('.'));
    }

    #[test]
    fn wrong_top_level_types_fail() {
        assert_eq!(failed(decode(FileKind::Message, MESSAGE_PATH, "[1]")), "wrong shape: expected a JSON object, found array");
        assert_eq!(failed(decode(FileKind::Part, PART_PATH, "\"text\"")), "wrong shape: expected a JSON object, found string");
        assert_eq!(failed(decode(FileKind::Todo, "/s/todo/ses_1.json", "{}")), "wrong shape: expected a JSON array, found object");
        assert_eq!(failed(decode(FileKind::SessionDiff, "/s/session_diff/ses_1.json", "null")), "wrong shape: expected a JSON array, found null");
    }

    #[test]
    fn ids_are_strict() {
        assert_eq!(failed(decode(FileKind::Project, "/s/project/p.json", r#"{"id": 42}"#)), "wrong shape: `id` must be a string, found number");
        assert_eq!(failed(decode(FileKind::Session, "/s/session/p/s.json", r#"{"title": "x"}"#)), "wrong shape: missing `id`");
        assert_eq!(failed(decode(FileKind::Session, "/s/session/p/s.json", r#"{"id": ""}"#)), "wrong shape: `id` is empty");
        assert_eq!(
            failed(decode(FileKind::Message, MESSAGE_PATH, r#"{"id": "msg_1", "sessionID": ["x"]}"#)),
            "wrong shape: `sessionID` must be a string, found array"
        );
        assert_eq!(
            failed(decode(FileKind::Part, PART_PATH, r#"{"id": "prt_1", "sessionID": "s", "messageID": true}"#)),
            "wrong shape: `messageID` must be a string, found boolean"
        );
        assert_eq!(failed(decode(FileKind::Part, PART_PATH, r#"{"id": "prt_1", "messageID": "m", "type": "text"}"#)), "wrong shape: missing `sessionID`");
    }

    #[test]
    fn missing_parent_ids_fall_back_to_the_folder() {
        let message = decoded_message(r#"{"id": "msg_1", "role": "user"}"#);
        assert_eq!(message.session_id, "ses_folder");
        let (part, _, _) = decoded_part(r#"{"id": "prt_1", "sessionID": "ses_1", "type": "text", "text": "hi"}"#);
        assert_eq!(part.message_id, "msg_folder");
        assert_eq!(part.session_id, "ses_1");
    }

    #[test]
    fn session_project_id_is_the_folder_and_fields_are_read() {
        let text = r#"{"id": "ses_1", "projectID": "stale", "parentID": "ses_0", "slug": "quick-planet",
            "title": "t", "directory": "/w", "version": "1.1.65",
            "time": {"created": 1.0e12, "updated": 1000000000001, "archived": 1000000000002.4},
            "summary": {"additions": 3, "deletions": "four", "files": 2}, "share": {"url": "https://x"}}"#;
        let FileOutcome::Decoded(Records::Session(session)) = decode(FileKind::Session, "/s/session/0090abc/ses_1.json", text) else { panic!("not a session") };
        assert_eq!(session.project_id.as_deref(), Some("0090abc"));
        assert_eq!(session.parent_id.as_deref(), Some("ses_0"));
        assert_eq!(session.slug.as_deref(), Some("quick-planet"));
        assert_eq!(session.created_at, Some(1_000_000_000_000));
        assert_eq!(session.archived_at, Some(1_000_000_000_002));
        assert_eq!(session.summary_additions, Some(3));
        assert_eq!(session.summary_deletions, None, "a string is read as absent");
        assert_eq!(session.summary_files, Some(2));
        assert_eq!(session.share_url.as_deref(), Some("https://x"));
        assert_eq!(session.raw.json, text, "small files keep their text as is");
        assert!(session.raw.json.contains("\"stale\""));
        assert_eq!(session.raw.size_bytes, text.len() as i64);
        assert!(!session.raw.truncated);
    }

    #[test]
    fn project_fields_are_read() {
        let text = r#"{"id": "abc", "worktree": "/w", "vcs": "git", "name": "n",
            "time": {"created": 1, "updated": 2, "initialized": 3}}"#;
        let FileOutcome::Decoded(Records::Project(project)) = decode(FileKind::Project, "/s/project/abc.json", text) else { panic!("not a project") };
        assert_eq!(project.worktree.as_deref(), Some("/w"));
        assert_eq!(project.vcs.as_deref(), Some("git"));
        assert_eq!(project.name.as_deref(), Some("n"));
        assert_eq!((project.created_at, project.updated_at, project.initialized_at), (Some(1), Some(2), Some(3)));
    }

    #[test]
    fn user_message_model_and_summary_object() {
        let message = decoded_message(
            r#"{"id": "msg_1", "sessionID": "ses_1", "role": "user", "agent": "build",
                "model": {"providerID": "anthropic", "modelID": "claude"},
                "summary": {"title": "t", "diffs": []}, "time": {"created": 5}}"#,
        );
        assert_eq!(message.provider_id.as_deref(), Some("anthropic"));
        assert_eq!(message.model_id.as_deref(), Some("claude"));
        assert_eq!(message.agent.as_deref(), Some("build"));
        assert_eq!(message.mode, None);
        assert!(!message.is_summary);
        assert_eq!(message.created_at, Some(5));
        assert_eq!(message.completed_at, None);
    }

    #[test]
    fn assistant_message_fields_tolerate_odd_types() {
        let message = decoded_message(
            r#"{"id": "msg_1", "sessionID": "ses_1", "role": "assistant", "mode": "plan",
                "providerID": "openai", "modelID": "gpt", "cost": 0.5,
                "tokens": {"input": 10.6, "output": "many", "reasoning": 2, "cache": {"write": 4}},
                "finish": 7, "summary": "yes", "error": {"name": "APIError", "data": "oops"}}"#,
        );
        assert_eq!(message.agent.as_deref(), Some("plan"), "agent falls back to mode");
        assert_eq!(message.mode.as_deref(), Some("plan"));
        assert_eq!(message.cost, Some(0.5));
        assert_eq!(message.tokens, Tokens { input: 11, output: 0, reasoning: 2, cache_read: 0, cache_write: 4, total: None });
        assert_eq!(message.finish_reason, None);
        assert!(!message.is_summary);
        assert_eq!(message.error_name.as_deref(), Some("APIError"));
        assert_eq!(message.error_message, None);
    }

    #[test]
    fn tool_parts_fill_tool_columns_and_file_operations() {
        let (part, step, operation) = decoded_part(
            r#"{"id": "prt_1", "sessionID": "ses_1", "messageID": "msg_1", "type": "tool",
                "callID": "call_1", "tool": "edit",
                "state": {"status": "completed", "title": "a.rs", "output": "ok",
                  "input": {"filePath": "/w/a.rs", "oldString": "a", "newString": "b"},
                  "metadata": {"filediff": {"file": "/w/a.rs", "additions": 3, "deletions": 1}},
                  "time": {"start": 10, "end": 20}},
                "time": {"start": 1, "end": 2}}"#,
        );
        assert!(step.is_none());
        assert_eq!(part.tool_name.as_deref(), Some("edit"));
        assert_eq!(part.call_id.as_deref(), Some("call_1"));
        assert_eq!(part.tool_status.as_deref(), Some("completed"));
        assert_eq!(part.tool_title.as_deref(), Some("a.rs"));
        assert_eq!(part.tool_output.as_deref(), Some("ok"));
        let input: Value = serde_json::from_str(part.tool_input.as_deref().unwrap()).unwrap();
        assert_eq!(input["filePath"], "/w/a.rs");
        assert_eq!((part.started_at, part.ended_at), (Some(10), Some(20)), "tool times come from state.time");
        assert!(!part.content_truncated);
        let operation = operation.unwrap();
        assert_eq!(operation.operation, "edit");
        assert_eq!(operation.file_path.as_deref(), Some("/w/a.rs"));
        assert_eq!(operation.status.as_deref(), Some("completed"));
        assert_eq!((operation.additions, operation.deletions), (Some(3), Some(1)));
        assert_eq!(operation.started_at, Some(10));
        assert_eq!((operation.id.as_str(), operation.session_id.as_str(), operation.message_id.as_str()), ("prt_1", "ses_1", "msg_1"));
    }

    #[test]
    fn tool_parts_without_state_or_with_pending_state_decode() {
        let (part, _, operation) = decoded_part(r#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "tool", "tool": "read", "state": "pending"}"#);
        assert_eq!(part.tool_name.as_deref(), Some("read"));
        assert_eq!(part.tool_status, None);
        assert!(operation.is_none(), "no state, no operation");
        let (part, _, operation) = decoded_part(
            r#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "tool", "tool": "write",
                "state": {"status": "pending", "input": {}, "raw": "{\"filePa"}}"#,
        );
        assert_eq!(part.tool_input.as_deref(), Some("{}"));
        let operation = operation.unwrap();
        assert_eq!(operation.file_path, None);
        assert_eq!(operation.additions, None);
    }

    #[test]
    fn subtask_parts_carry_the_agent() {
        let (part, _, _) = decoded_part(r#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "subtask", "agent": "general", "prompt": "p"}"#);
        assert_eq!(part.subagent_type.as_deref(), Some("general"));
        assert_eq!(part.text, None);
    }

    #[test]
    fn step_parts_become_step_events() {
        let (part, step, _) = decoded_part(r#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "step-start", "snapshot": "abc"}"#);
        assert_eq!(part.part_type, "step-start");
        let step = step.unwrap();
        assert_eq!(step.event_type, "start");
        assert_eq!(step.snapshot.as_deref(), Some("abc"));
        assert_eq!(step.tokens, Tokens::default());
        let (_, step, _) = decoded_part(
            r#"{"id": "prt_2", "sessionID": "s", "messageID": "m", "type": "step-finish", "reason": "stop",
                "cost": 0, "tokens": {"total": 9, "input": 1, "output": 2, "reasoning": 3, "cache": {"read": 4, "write": 5}}}"#,
        );
        let step = step.unwrap();
        assert_eq!(step.event_type, "finish");
        assert_eq!(step.reason.as_deref(), Some("stop"));
        assert_eq!(step.cost, Some(0.0));
        assert_eq!(step.tokens, Tokens { input: 1, output: 2, reasoning: 3, cache_read: 4, cache_write: 5, total: Some(9) });
        assert_eq!((step.id.as_str(), step.session_id.as_str(), step.message_id.as_str()), ("prt_2", "s", "m"));
    }

    #[test]
    fn unknown_part_types_are_kept_and_a_missing_type_is_unknown() {
        let (part, step, operation) = decoded_part(r#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "hologram", "time": {"start": 1}}"#);
        assert_eq!(part.part_type, "hologram");
        assert_eq!(part.started_at, Some(1));
        assert!(step.is_none() && operation.is_none());
        let (part, _, _) = decoded_part(r#"{"id": "prt_1", "sessionID": "s", "messageID": "m"}"#);
        assert_eq!(part.part_type, "unknown");
    }

    #[test]
    fn todos_keep_positions_and_stringify_ids() {
        let outcome = decode(
            FileKind::Todo,
            "/s/todo/ses_1.json",
            r#"[{"id": "a", "content": "c", "status": "pending", "priority": "high"}, 3, {"id": 7}, {"id": 1.5, "content": null}]"#,
        );
        let FileOutcome::Decoded(Records::Todos { session_id, items }) = outcome else { panic!("not todos") };
        assert_eq!(session_id, "ses_1");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].todo_id.as_deref(), Some("a"));
        assert_eq!(items[0].content.as_deref(), Some("c"));
        assert_eq!(items[0].priority.as_deref(), Some("high"));
        assert_eq!((items[1].position, items[1].todo_id.as_deref()), (2, Some("7")));
        assert_eq!((items[2].position, items[2].todo_id.as_deref()), (3, Some("1.5")));
        assert_eq!(items[2].content, None);
        assert!(items.iter().all(|item| item.session_id == "ses_1"));
    }

    #[test]
    fn file_diffs_measure_contents_without_keeping_them() {
        let outcome = decode(
            FileKind::SessionDiff,
            "/s/session_diff/ses_1.json",
            r#"[{"file": "a", "before": "", "after": "héllo", "additions": 1, "deletions": 0, "status": "added"}, "x", {}]"#,
        );
        let FileOutcome::Decoded(Records::FileDiffs { session_id, items }) = outcome else { panic!("not diffs") };
        assert_eq!(session_id, "ses_1");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].file.as_deref(), Some("a"));
        assert_eq!(items[0].status.as_deref(), Some("added"));
        assert_eq!((items[0].before_bytes, items[0].after_bytes), (Some(0), Some(6)));
        assert_eq!((items[0].additions, items[0].deletions), (Some(1), Some(0)));
        assert_eq!(items[1].position, 2);
        assert_eq!(items[1].before_bytes, None);
        let empty = decode(FileKind::SessionDiff, "/s/session_diff/ses_2.json", "[]");
        assert_eq!(empty, FileOutcome::Decoded(Records::FileDiffs { session_id: "ses_2".into(), items: vec![] }));
    }

    #[test]
    fn invalid_utf8_inside_a_string_decodes_with_replacement_characters() {
        let mut bytes = br#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "text", "text": "a"#.to_vec();
        bytes.extend_from_slice(b"\xff\xfe b\xc3");
        bytes.extend_from_slice(br#""}"#);
        let FileOutcome::Decoded(Records::Part { part, .. }) = decode_bytes(FileKind::Part, Path::new(PART_PATH), &bytes, &DecodeLimits::default()) else {
            panic!("did not decode")
        };
        assert_eq!(part.text.as_deref(), Some("a\u{fffd}\u{fffd} b\u{fffd}"));
        assert!(part.raw.json.contains('\u{fffd}'));
        assert_eq!(part.raw.size_bytes, bytes.len() as i64);
        serde_json::from_str::<Value>(&part.raw.json).unwrap();
    }

    #[test]
    fn lone_surrogate_escapes_are_replaced() {
        let text = r#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "text", "text": "a\ud800b\udc00c \\ud800 \ud83d\ude00"}"#;
        let (part, _, _) = decoded_part(text);
        assert_eq!(part.text.as_deref(), Some("a\u{fffd}b\u{fffd}c \\ud800 \u{1f600}"));
        serde_json::from_str::<Value>(&part.raw.json).unwrap();
        assert_eq!(replace_lone_surrogate_escapes(r#"{"a": "\\ud800"}"#), None);
        assert_eq!(replace_lone_surrogate_escapes("\\"), None);
        assert_eq!(replace_lone_surrogate_escapes("\"\\ud800").as_deref(), Some("\"\\ufffd"));
    }

    #[test]
    fn deep_nesting_fails_without_crashing() {
        let depth = 100_000;
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let reason = failed(decode(FileKind::Part, PART_PATH, &arrays));
        assert!(reason.starts_with("not valid JSON: recursion limit exceeded"), "{reason}");
        let nested = format!(r#"{{"id": "prt_1", "sessionID": "s", "messageID": "m", "state": {}1{}}}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth));
        let reason = failed(decode(FileKind::Part, PART_PATH, &nested));
        assert!(reason.starts_with("not valid JSON: recursion limit exceeded"), "{reason}");
        let truncated = "[".repeat(depth);
        let reason = failed(decode(FileKind::Todo, "/s/todo/ses_1.json", &truncated));
        assert!(reason.contains("recursion limit exceeded"), "{reason}");
    }

    #[test]
    fn a_60_mb_tool_output_is_capped_and_raw_stays_valid_json() {
        let output = "é".repeat(30 * 1024 * 1024); // 60 MiB of two-byte characters
        let text = format!(
            r#"{{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "tool", "tool": "bash", "callID": "c",
                "state": {{"status": "completed", "input": {{"command": "yes"}}, "output": "{output}",
                "metadata": {{"output": "{output}"}}}}}}"#
        );
        drop(output);
        let limits = DecodeLimits::default();
        let FileOutcome::Decoded(Records::Part { part, .. }) = decode_bytes(FileKind::Part, Path::new(PART_PATH), text.as_bytes(), &limits) else {
            panic!("did not decode")
        };
        let tool_output = part.tool_output.as_deref().unwrap();
        assert!(tool_output.len() <= limits.max_text_bytes);
        assert!(tool_output.len() >= limits.max_text_bytes - 1);
        assert!(tool_output.chars().all(|character| character == 'é'));
        assert!(part.content_truncated);
        assert_eq!(part.tool_input.as_deref(), Some(r#"{"command":"yes"}"#));
        assert!(part.raw.truncated);
        assert_eq!(part.raw.size_bytes, text.len() as i64);
        assert!(part.raw.json.len() < 3 * limits.max_text_bytes, "{}", part.raw.json.len());
        let raw: Value = serde_json::from_str(&part.raw.json).unwrap();
        let raw_output = raw["state"]["output"].as_str().unwrap();
        assert!(raw_output.ends_with(&format!("…[truncated {} bytes]", 60 * 1024 * 1024 - limits.max_text_bytes)));
        assert_eq!(raw["state"]["input"]["command"], "yes");
        assert_eq!(raw["id"], "prt_1");
    }

    #[test]
    fn big_files_without_long_strings_are_reserialized_untruncated() {
        let limits = DecodeLimits { max_text_bytes: 64, max_file_bytes: 1 << 20 };
        let text = r#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "text", "text": "short", "n": [1, 2.5, true, null]}"#;
        let FileOutcome::Decoded(Records::Part { part, .. }) = decode_bytes(FileKind::Part, Path::new(PART_PATH), text.as_bytes(), &limits) else {
            panic!("did not decode")
        };
        assert!(!part.raw.truncated);
        let original: Value = serde_json::from_str(text).unwrap();
        let raw: Value = serde_json::from_str(&part.raw.json).unwrap();
        assert_eq!(raw, original);
    }

    #[test]
    fn caps_cut_on_character_boundaries() {
        let limits = DecodeLimits { max_text_bytes: 4, max_file_bytes: 1 << 20 };
        let text = r#"{"id": "prt_1", "sessionID": "s", "messageID": "m", "type": "reasoning", "text": "aé€b"}"#;
        let FileOutcome::Decoded(Records::Part { part, .. }) = decode_bytes(FileKind::Part, Path::new(PART_PATH), text.as_bytes(), &limits) else {
            panic!("did not decode")
        };
        assert_eq!(part.text.as_deref(), Some("aé"));
        assert!(part.content_truncated);
        let raw: Value = serde_json::from_str(&part.raw.json).unwrap();
        assert_eq!(raw["text"], "aé…[truncated 4 bytes]");
        assert_eq!(raw["sessionID"], "s");
    }

    #[test]
    fn error_reasons_name_the_fix() {
        let path = Path::new("/s/part/m/p.json");
        let denied = open_error_reason(path, &io::Error::from_raw_os_error(libc::EACCES));
        assert!(denied.starts_with("permission denied: give the user running ducktail read access to /s/part/m/p.json"), "{denied}");
        assert_eq!(open_error_reason(path, &io::Error::from_raw_os_error(libc::ENOENT)), "file disappeared before it could be read");
        let large = too_large_reason(300, &DecodeLimits { max_text_bytes: 1, max_file_bytes: 200 });
        assert_eq!(large, "file is 300 bytes, more than decode.max_file_bytes (200); raise decode.max_file_bytes to index it");
    }

    fn storage_with(relative: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        (temp, path)
    }

    #[test]
    fn decode_file_reads_and_stamps_a_regular_file() {
        let contents = br#"{"id": "ses_1", "title": "t"}"#;
        let (temp, path) = storage_with("session/global/ses 'one' \"1\".json", contents);
        let decoded = decode_file(temp.path(), Path::new("session/global/ses 'one' \"1\".json"), FileKind::Session, &DecodeLimits::default());
        assert_eq!(decoded.path, path);
        assert_eq!(decoded.kind, FileKind::Session);
        assert_eq!(decoded.path_record_id, "ses 'one' \"1\"");
        let metadata = fs::metadata(&path).unwrap();
        assert_eq!(decoded.stamp, stamp_of(&metadata));
        assert_eq!(decoded.stamp.size, contents.len() as i64);
        let FileOutcome::Decoded(Records::Session(session)) = decoded.outcome else { panic!("{:?}", decoded.outcome) };
        assert_eq!(session.id, "ses_1");
        assert_eq!(session.project_id.as_deref(), Some("global"));
        assert_eq!(session.raw.json.as_bytes(), contents);
    }

    #[test]
    fn decode_file_refuses_symlinks() {
        let (temp, target) = storage_with("project/real.json", br#"{"id": "real"}"#);
        let link = temp.path().join("project/link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let decoded = decode_file(temp.path(), &link, FileKind::Project, &DecodeLimits::default());
        assert_eq!(decoded.path_record_id, "link");
        assert!(failed(decoded.outcome).starts_with("refusing to follow a symbolic link"));
    }

    #[test]
    fn decode_file_fails_fast_on_a_fifo() {
        let temp = tempfile::tempdir().unwrap();
        let fifo = temp.path().join("part/msg_1/x.json");
        fs::create_dir_all(fifo.parent().unwrap()).unwrap();
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let (sender, receiver) = mpsc::channel();
        let root = temp.path().to_path_buf();
        std::thread::spawn(move || {
            let decoded = decode_file(&root, &fifo, FileKind::Part, &DecodeLimits::default());
            let _ = sender.send(decoded);
        });
        let decoded = receiver.recv_timeout(Duration::from_secs(10)).expect("decode_file blocked on a FIFO");
        assert_eq!(failed(decoded.outcome), "not a regular file (a FIFO); only regular files are read");
    }

    #[test]
    fn decode_file_fails_on_a_directory_a_missing_file_and_a_too_large_file() {
        let (temp, _) = storage_with("part/msg_1/prt_1.json", br#"{"id": "prt_1"}"#);
        fs::create_dir_all(temp.path().join("part/msg_1/dir.json")).unwrap();
        let limits = DecodeLimits::default();
        let directory = decode_file(temp.path(), Path::new("part/msg_1/dir.json"), FileKind::Part, &limits);
        assert!(failed(directory.outcome).starts_with("not a regular file (a directory)"));
        let missing = decode_file(temp.path(), Path::new("part/msg_1/gone.json"), FileKind::Part, &limits);
        assert_eq!(failed(missing.outcome), "file disappeared before it could be read");
        assert_eq!(missing.stamp, FileStamp::default());
        let small = DecodeLimits { max_text_bytes: 8, max_file_bytes: 4 };
        let large = decode_file(temp.path(), Path::new("part/msg_1/prt_1.json"), FileKind::Part, &small);
        assert_eq!(large.stamp.size, 15);
        assert_eq!(failed(large.outcome), "file is 15 bytes, more than decode.max_file_bytes (4); raise decode.max_file_bytes to index it");
    }

    #[test]
    fn decode_file_handles_empty_and_non_utf8_files() {
        let (temp, path) = storage_with("todo/ses_1.json", b"");
        let decoded = decode_file(temp.path(), &path, FileKind::Todo, &DecodeLimits::default());
        assert_eq!(not_ready(decoded.outcome), "empty file (0 bytes)");
        fs::write(&path, b"[{\"content\": \"x\xff\"}]").unwrap();
        let decoded = decode_file(temp.path(), &path, FileKind::Todo, &DecodeLimits::default());
        let FileOutcome::Decoded(Records::Todos { items, .. }) = decoded.outcome else { panic!("{:?}", decoded.outcome) };
        assert_eq!(items[0].content.as_deref(), Some("x\u{fffd}"));
    }

    proptest! {
        #[test]
        fn decode_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let limits = DecodeLimits { max_text_bytes: 16, max_file_bytes: 1 << 20 };
            for kind in FileKind::ALL {
                let _ = decode_bytes(kind, Path::new(PART_PATH), &bytes, &limits);
            }
        }

        #[test]
        fn decode_bytes_never_panics_on_near_json(
            prefix in prop::sample::select(vec![
                r#"{"id":"x","sessionID":"s","messageID":"m","type":"tool","tool":"task","state":"#,
                r#"{"id":"x","sessionID":"s","type":"step-finish","tokens":"#,
                r#"{"id":"x","role":"assistant","error":"#,
                r#"[{"id":"#,
                r#"{"id":"x","time":"#,
            ]),
            body in "[\\[\\]{}\":,0-9a-zA-Z\\\\ .eE+-]{0,64}",
        ) {
            let text = format!("{prefix}{body}");
            let limits = DecodeLimits { max_text_bytes: 4, max_file_bytes: 1 << 20 };
            for kind in FileKind::ALL {
                if let FileOutcome::Decoded(records) = decode_bytes(kind, Path::new(PART_PATH), text.as_bytes(), &limits) {
                    raw_is_valid_json(&records);
                }
            }
        }

        #[test]
        fn raw_documents_are_always_valid_json_and_capped(
            text in "\\PC{0,40}",
            cap in 1usize..12,
        ) {
            let document = serde_json::json!({
                "id": "prt_1", "sessionID": "s", "messageID": "m", "type": "text", "text": text,
                "nested": {"k": [text.clone(), 1, null]}, "k2": text.clone(),
            }).to_string();
            let limits = DecodeLimits { max_text_bytes: cap, max_file_bytes: 1 << 20 };
            let outcome = decode_bytes(FileKind::Part, Path::new(PART_PATH), document.as_bytes(), &limits);
            let FileOutcome::Decoded(records) = outcome else {
                panic!("{outcome:?}")
            };
            raw_is_valid_json(&records);
            let Records::Part { part, .. } = records else { panic!() };
            let kept = part.text.unwrap();
            prop_assert!(kept.len() <= cap);
            prop_assert!(text.starts_with(&kept));
            prop_assert_eq!(part.content_truncated, text.len() > cap);
        }
    }

    fn raw_is_valid_json(records: &Records) {
        let raw = match records {
            Records::Project(project) => &project.raw,
            Records::Session(session) => &session.raw,
            Records::Message(message) => &message.raw,
            Records::Part { part, .. } => &part.raw,
            Records::Todos { .. } | Records::FileDiffs { .. } => return,
        };
        serde_json::from_str::<Value>(&raw.json).unwrap();
    }
}
