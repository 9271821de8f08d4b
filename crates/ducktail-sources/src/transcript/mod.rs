//! Append-only JSON Lines transcripts — Claude Code's and Codex CLI's session files — read from
//! where the last read stopped.
//!
//! This is the seam every line-based source goes through. A source is one module implementing
//! [`TranscriptFormat`]: where its files live and which paths are transcripts, and a
//! [`LineDecoder`] that turns one parsed line into records. Everything else is shared and knows
//! no agent: [`list_transcripts`] walks the folders, [`read_stretch`] decides where to start
//! (the cursor, or the start of a file that was truncated or replaced), reads whole lines up to a
//! byte budget, parses each as a JSON object, skips and records the ones that are not, and hands
//! the rest to the decoder; the pipeline commits the stretch with its cursor; the store merges
//! the records by key. See `docs/ARCHITECTURE.md`, "Adding a source".

pub mod claude;
pub mod codex;
mod read;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ducktail_model::transcript::TranscriptLine;
use ducktail_model::{PartRecord, RawDocument, Records, SessionRecord, StepEvent, Tokens, COST_COMPUTED};
use serde_json::{Map, Value};

use crate::opencode::decode::raw_document;
use crate::opencode::DecodeLimits;
use crate::pricing::{PriceTable, TokenCounts};

pub use read::{fnv1a, list_transcripts, read_stretch, StretchLimits, TranscriptListing};

/// One kind of append-only transcript.
pub trait TranscriptFormat: Send + Sync {
    /// `source` of its rows and `file_index` rows; also its `app` (e.g. `claude_code`).
    fn source(&self) -> &'static str;
    /// The folders under the configured root that hold its transcripts, walked recursively; the
    /// ones that do not exist are skipped.
    fn folders(&self, root: &Path) -> Vec<PathBuf>;
    /// Whether `path` (found under one of the folders) is a transcript.
    fn is_transcript(&self, path: &Path) -> bool;
    /// A decoder for the transcript at `path`, carrying on from `state` (what an earlier
    /// decoder's [`LineDecoder::state`] said at the cursor) or from the start when `None`.
    fn decoder(&self, path: &Path, state: Option<&str>, context: &DecodeContext) -> Box<dyn LineDecoder>;
}

/// Turns a transcript's lines into records, in file order.
pub trait LineDecoder {
    /// Decodes one line (a JSON object) found at byte `offset`; `text` is the line as written.
    fn line(&mut self, line: &Map<String, Value>, text: &str, offset: u64, out: &mut StretchOutput);
    /// The session the file belongs to, once known.
    fn session_id(&self) -> Option<String>;
    /// What a later decoder needs to carry on after the last line (kept with the cursor), if
    /// anything.
    fn state(&self) -> Option<String>;
}

/// What every decoder may use.
#[derive(Clone)]
pub struct DecodeContext {
    /// Caps on kept text.
    pub limits: DecodeLimits,
    /// List prices, for agents that log tokens and no cost.
    pub prices: Arc<PriceTable>,
}

/// What decoders write into while a stretch is read: records in order, with at most one session
/// record per session (lines update it in place), and lines kept raw.
#[derive(Default)]
pub struct StretchOutput {
    sessions: Vec<SessionRecord>,
    records: Vec<Records>,
    lines: Vec<TranscriptLine>,
    max_text_bytes: usize,
}

impl StretchOutput {
    pub(crate) fn new(max_text_bytes: usize) -> StretchOutput {
        StretchOutput { max_text_bytes, ..StretchOutput::default() }
    }

    /// The session record `id` of this stretch, created empty the first time.
    pub fn session(&mut self, id: &str) -> &mut SessionRecord {
        match self.sessions.iter().position(|session| session.id == id) {
            Some(index) => &mut self.sessions[index],
            None => {
                self.sessions.push(SessionRecord { id: id.to_owned(), ..SessionRecord::default() });
                self.sessions.last_mut().expect("just pushed")
            }
        }
    }

    /// Adds records; later copies of a key merge over earlier ones in the store.
    pub fn push(&mut self, records: Records) {
        self.records.push(records);
    }

    /// Keeps `text` as a raw line of `session_id`.
    pub fn keep_line(&mut self, session_id: &str, line_type: Option<String>, at_ms: Option<i64>, text: &str) {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let raw = raw_document(text.into(), &value, text.len(), self.max_text_bytes);
        self.lines.push(TranscriptLine { session_id: session_id.to_owned(), line_hash: fnv1a(text.as_bytes()) as i64, line_type, at_ms, raw });
    }

    /// The longest text kept in a column.
    pub fn max_text_bytes(&self) -> usize {
        self.max_text_bytes
    }

    pub(crate) fn finish(self) -> (Vec<Records>, Vec<TranscriptLine>) {
        let mut records: Vec<Records> = self.sessions.into_iter().map(Records::Session).collect();
        records.extend(self.records);
        (records, self.lines)
    }
}

// ---------------------------------------------------------------------------------------------
// Field access shared by the decoders: a field of the wrong type reads as absent.

pub(crate) fn text<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
    object.get(key).and_then(Value::as_str)
}

pub(crate) fn owned(object: &Map<String, Value>, key: &str) -> Option<String> {
    text(object, key).map(str::to_owned)
}

pub(crate) fn object<'v>(object: &'v Map<String, Value>, key: &str) -> Option<&'v Map<String, Value>> {
    object.get(key).and_then(Value::as_object)
}

pub(crate) fn integer(object: &Map<String, Value>, key: &str) -> Option<i64> {
    object.get(key).and_then(Value::as_i64)
}

/// An RFC 3339 timestamp as Unix epoch milliseconds.
pub(crate) fn epoch_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// `key` as an RFC 3339 timestamp, in epoch milliseconds.
pub(crate) fn timestamp(object: &Map<String, Value>, key: &str) -> Option<i64> {
    text(object, key).and_then(epoch_ms)
}

/// A line (or any JSON text) as a raw document, strings longer than `cap` cut.
pub(crate) fn raw_line(text: &str, cap: usize) -> RawDocument {
    if text.len() <= cap {
        return RawDocument { json: text.to_owned(), size_bytes: text.len() as i64, truncated: false };
    }
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    raw_document(text.into(), &value, text.len(), cap)
}

/// The list-price cost of a response, and where it comes from: `None` for a model the table
/// does not know (a wrong price is worse than none).
pub(crate) fn priced(prices: &PriceTable, model: Option<&str>, tokens: &Tokens, cache_write_1h: i64) -> (Option<f64>, Option<&'static str>) {
    let Some(price) = model.and_then(|model| prices.lookup(model)) else {
        return (None, None);
    };
    let count = |value: i64| u64::try_from(value).unwrap_or(0);
    // Counts come from a file: a negative one is nonsense, never a panic.
    let cache_write_1h = cache_write_1h.clamp(0, tokens.cache_write.max(0));
    let usage = TokenCounts {
        input: count(tokens.input),
        output: count(tokens.output),
        cache_read: count(tokens.cache_read),
        cache_write_5m: count(tokens.cache_write.saturating_sub(cache_write_1h)),
        cache_write_1h: count(cache_write_1h),
    };
    (Some(price.cost(&usage)), Some(COST_COMPUTED))
}

/// A response's usage as OpenCode shapes a step: a `step-finish` part and its finish step event,
/// both `<message_id>/usage`, so usage sums, timelines and rollups read every agent alike.
pub(crate) fn usage_step(
    session_id: &str,
    message_id: &str,
    reason: Option<String>,
    cost: Option<f64>,
    cost_source: Option<&'static str>,
    tokens: Tokens,
    at: Option<i64>,
) -> Records {
    let id = format!("{message_id}/usage");
    Records::Part {
        part: PartRecord {
            id: id.clone(),
            session_id: session_id.to_owned(),
            message_id: message_id.to_owned(),
            part_type: "step-finish".to_owned(),
            started_at: at,
            ended_at: at,
            raw: raw_line("{}", usize::MAX),
            ..PartRecord::default()
        },
        step: Some(StepEvent {
            id,
            session_id: session_id.to_owned(),
            message_id: message_id.to_owned(),
            event_type: "finish",
            reason,
            cost,
            cost_source,
            list_cost: cost,
            tokens,
            snapshot: None,
        }),
        file_operation: None,
    }
}

/// A value as JSON text (strings as themselves), cut to `cap` bytes.
pub(crate) fn json_text(value: &Value, cap: usize, truncated: &mut bool) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    crate::opencode::decode::capped(text, cap, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_counts_from_a_file_price_without_panicking() {
        let tokens = Tokens { input: 10, output: 5, cache_write: -1, ..Tokens::default() };
        let (cost, source) = priced(&PriceTable::embedded(), Some("claude-sonnet-4-5"), &tokens, 7);
        assert!(cost.is_some_and(f64::is_finite));
        assert_eq!(source, Some(COST_COMPUTED));
        assert_eq!(priced(&PriceTable::embedded(), Some("no-such-model"), &tokens, 0), (None, None));
    }

    #[test]
    fn timestamps_parse_with_and_without_fractions() {
        assert_eq!(epoch_ms("1970-01-01T00:00:01Z"), Some(1_000));
        assert_eq!(epoch_ms("2026-12-07T11:46:47.635Z"), Some(1_796_644_007_635));
        assert_eq!(epoch_ms("yesterday"), None);
    }
}
