//! Append-only transcript sources (Claude Code, Codex CLI): where a file was read up to, and what
//! one stretch of it yields.
//!
//! A transcript only grows, so a file is read from the offset the last read stopped at, up to the
//! end of its last whole line. [`TranscriptCursor`] is what `file_index` keeps per file to decide
//! between "read what was appended" and "read it again from the start" (the file was truncated or
//! replaced); [`TranscriptStretch`] is what one read produced.

use std::path::PathBuf;

use crate::{FileStamp, RawDocument, Records};

/// Bytes at the start of a transcript that [`TranscriptCursor::fingerprint`] hashes: enough to
/// tell two files apart (their first line holds a session id and a timestamp), cheap to re-read.
pub const FINGERPRINT_BYTES: usize = 1024;

/// Where a transcript was read up to, and which file that was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TranscriptCursor {
    /// `st_dev` of the file read.
    pub device: u64,
    /// `st_ino` of the file read.
    pub inode: u64,
    /// Bytes read and decoded: the end of the last whole line.
    pub offset: u64,
    /// Hash of the first `min(offset, FINGERPRINT_BYTES)` bytes: a file rewritten in place keeps
    /// its inode but not its first line.
    pub fingerprint: u64,
}

/// A line that could not be decoded (not JSON, not an object, longer than the limit): skipped,
/// and recorded in `file_index` under `<path>#byte=<offset>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// Byte offset of the line's start in the file.
    pub offset: u64,
    /// Why it was skipped.
    pub reason: String,
}

/// A line kept as written because no typed table holds it (bookkeeping lines, line types newer
/// than the decoder). Keyed by the session and a hash of the line, so reading a file twice, or a
/// copy of it, keeps one row per distinct line.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptLine {
    /// The session the line belongs to.
    pub session_id: String,
    /// Hash of the line's bytes.
    pub line_hash: i64,
    /// The line's `type` (and subtype, e.g. `event_msg/token_count`).
    pub line_type: Option<String>,
    /// The line's timestamp, Unix epoch milliseconds.
    pub at_ms: Option<i64>,
    /// The line, capped like every raw document.
    pub raw: RawDocument,
}

/// What reading one transcript from a cursor produced, committed together with the new cursor so
/// a crash never loses a line nor counts one twice.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptStretch {
    /// Absolute path.
    pub path: PathBuf,
    /// mtime and size when read.
    pub stamp: FileStamp,
    /// Where this read started: 0 when the file was read from its start (new, truncated or
    /// replaced), which replaces what earlier reads of it recorded.
    pub start_offset: u64,
    /// Where the next read starts.
    pub cursor: TranscriptCursor,
    /// What the decoder needs to carry on from the cursor (kept in `transcript_files`).
    pub decoder_state: Option<String>,
    /// The session the file belongs to (for `file_index.record_id`), once known.
    pub session_id: Option<String>,
    /// Records, merged by key within the stretch: a later line's fields win over an earlier one's
    /// except where the store keeps the first (see `docs/schema.md`).
    pub records: Vec<Records>,
    /// Lines kept raw.
    pub lines: Vec<TranscriptLine>,
    /// Lines skipped.
    pub skipped: Vec<SkippedLine>,
    /// When the file could not be read at all: the reason (the cursor is then unchanged).
    pub failure: Option<String>,
}
