//! What the exports read: the contract tables cut into days (Parquet), and the records an agent
//! trace is made of (OTLP). Reads only; what was exported is recorded by [`crate::Store`].
//!
//! A day is the UTC date of the session a row belongs to (its creation), so one session's rows
//! sit in one partition of every table and a session that changes rewrites one day; rows without
//! a session (projects, spans) take their own time.

use arrow_array::RecordBatch;
use duckdb::types::Value;

use crate::{Reader, Result};

/// A table the Parquet export writes, with what puts its rows in a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportTable {
    /// The table's name, in the database and in the export.
    pub name: &'static str,
    /// What joins and selects the row's time: `from` follows `FROM {name} t`, `time` is an
    /// expression over `t` (and `s`, the row's session, when `from` joins it).
    from: &'static str,
    time: &'static str,
}

/// Rows of a session: their day is the session's.
const BY_SESSION: &str = "LEFT JOIN sessions s ON s.id = t.session_id";

/// Every table the export knows, in the order it writes them: the OpenCode and agent records,
/// the derived traces, the spans. Bookkeeping (`file_index`, `parquet_files`, …) stays home.
pub const EXPORT_TABLES: [ExportTable; 12] = [
    ExportTable { name: "projects", from: "", time: "coalesce(t.created_at, t.updated_at)" },
    ExportTable { name: "sessions", from: "", time: "coalesce(t.created_at, t.updated_at)" },
    ExportTable { name: "messages", from: BY_SESSION, time: "coalesce(s.created_at, t.created_at)" },
    ExportTable { name: "parts", from: BY_SESSION, time: "coalesce(s.created_at, t.started_at)" },
    ExportTable { name: "step_events", from: BY_SESSION, time: "s.created_at" },
    ExportTable { name: "todos", from: BY_SESSION, time: "s.created_at" },
    ExportTable { name: "file_diffs", from: BY_SESSION, time: "s.created_at" },
    ExportTable { name: "delegations", from: BY_SESSION, time: "coalesce(s.created_at, t.created_at)" },
    ExportTable { name: "agent_traces", from: BY_SESSION, time: "coalesce(s.created_at, t.started_at)" },
    ExportTable { name: "spans", from: "", time: "t.start_time" },
    ExportTable { name: "traces", from: "", time: "t.start_time" },
    ExportTable { name: "services", from: "", time: "t.first_seen" },
];

/// The day a row without any time is filed under.
pub const UNDATED_DAY: &str = "1970-01-01";

impl ExportTable {
    /// The table called `name`, if the export knows it.
    pub fn named(name: &str) -> Option<ExportTable> {
        EXPORT_TABLES.iter().copied().find(|table| table.name == name)
    }

    /// The row's day as `YYYY-MM-DD` (UTC). The cast to TIMESTAMP is UTC without the ICU
    /// extension, which ducktail's DuckDB is built without.
    fn day(&self) -> String {
        format!("coalesce(CAST(CAST(CAST({} AS TIMESTAMP) AS DATE) AS VARCHAR), '{UNDATED_DAY}')", self.time)
    }
}

/// One day of one table, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Rows.
    pub rows: i64,
    /// Changes whenever any row of the day changes, is added or removed (count and the sum of
    /// every row's hash): what tells an incremental export which days to write again.
    pub fingerprint: String,
}

impl Reader {
    /// The days `table` has rows in, at or after `since` (`YYYY-MM-DD`) when given, with their
    /// fingerprints. Reads the whole table (the hashes), once per export.
    pub fn export_days(&self, table: ExportTable, since: Option<&str>) -> Result<Vec<ExportDay>> {
        let sql = format!(
            "SELECT day, count(*), CAST(sum(hash(t)::HUGEINT) AS VARCHAR)
             FROM (SELECT t, {day} AS day FROM {name} t {from})
             WHERE $1::VARCHAR IS NULL OR day >= $1::VARCHAR
             GROUP BY day ORDER BY day",
            day = table.day(),
            name = table.name,
            from = table.from,
        );
        let since = since.map_or(Value::Null, |since| Value::Text(since.to_owned()));
        let rows = self.query_values_with(&sql, &[since], 3, "reading the days to export")?;
        Ok(rows
            .into_iter()
            .filter_map(|row| match (&row[0], &row[1], &row[2]) {
                (Value::Text(date), Value::BigInt(rows), Value::Text(sum)) => {
                    Some(ExportDay { date: date.clone(), rows: *rows, fingerprint: format!("{rows}:{sum}") })
                }
                _ => None,
            })
            .collect())
    }

    /// Every row of `table` whose day is one of `dates`, without the raw source text, with
    /// `machine` as a last column, in one pass over the table, sorted by day (then by the first
    /// column): `each` gets the rows as Arrow batches of one day each, a day's batches one after
    /// another, so a caller can write one file per day with bounded memory.
    pub fn export_rows_by_day<E: From<crate::StoreError>>(
        &self,
        table: ExportTable,
        dates: &[String],
        machine: &str,
        mut each: impl FnMut(&str, RecordBatch) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let columns = self.query_values_with(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND column_name <> 'raw' ORDER BY ordinal_position",
            &[Value::Text(table.name.to_owned())],
            1,
            "reading a table's columns",
        )?;
        let columns: Vec<String> = columns
            .into_iter()
            .filter_map(|row| match &row[0] {
                Value::Text(name) => Some(format!("t.\"{name}\"")),
                _ => None,
            })
            .collect();
        let sql = format!(
            "SELECT * FROM (SELECT {columns}, $2::VARCHAR AS machine, {day} AS export_day FROM {name} t {from})
             WHERE list_contains($1::VARCHAR[], export_day) ORDER BY export_day, {first}",
            columns = columns.join(", "),
            name = table.name,
            from = table.from,
            day = table.day(),
            first = columns.first().map_or("1", |column| column.trim_start_matches("t.")),
        );
        let failed = |source| self.query_error("exporting a table", source);
        let mut statement = self.connection.prepare(&sql).map_err(failed)?;
        let dates = Value::List(dates.iter().map(|date| Value::Text(date.clone())).collect());
        for batch in statement.query_arrow(duckdb::params![dates, machine]).map_err(failed)? {
            let day_column = batch.num_columns() - 1;
            let kept: Vec<usize> = (0..day_column).collect();
            let days = day_strings(batch.column(day_column));
            let mut start = 0;
            while start < batch.num_rows() {
                let end = (start..batch.num_rows()).find(|&row| days[row] != days[start]).unwrap_or(batch.num_rows());
                let rows = batch.slice(start, end - start).project(&kept).expect("the columns before the day exist");
                each(&days[start], rows)?;
                start = end;
            }
        }
        Ok(())
    }
}

/// The day column of a batch, as text per row (DuckDB hands VARCHAR out as Utf8 or Utf8View).
fn day_strings(column: &arrow_array::ArrayRef) -> Vec<String> {
    use arrow_array::Array;
    if let Some(strings) = column.as_any().downcast_ref::<arrow_array::StringArray>() {
        return (0..strings.len()).map(|row| strings.value(row).to_owned()).collect();
    }
    if let Some(strings) = column.as_any().downcast_ref::<arrow_array::StringViewArray>() {
        return (0..strings.len()).map(|row| strings.value(row).to_owned()).collect();
    }
    panic!("the export's day column is text, not {:?}", column.data_type());
}

/// A session of an agent trace: the tree under a root session, as the OTLP export reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSession {
    /// `sessions.id`.
    pub id: String,
    /// `sessions.parent_id`: the session whose tool call created this one.
    pub parent_id: Option<String>,
    /// `sessions.title`.
    pub title: Option<String>,
    /// `sessions.app`.
    pub app: Option<String>,
    /// Newest time of any of its records (µs): how long it has been idle.
    pub last_activity_us: Option<i64>,
}

/// A message of a trace session (user turns and model responses alike).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceMessage {
    /// `messages.id`.
    pub id: String,
    /// `messages.session_id`.
    pub session_id: String,
    /// `user` or `assistant`.
    pub role: String,
    /// `messages.agent`.
    pub agent: Option<String>,
    /// `messages.provider_id`.
    pub provider_id: Option<String>,
    /// `messages.model_id`.
    pub model_id: Option<String>,
    /// Its cost (USD): the sum of its finish steps' (what usage totals count), else
    /// `messages.cost`.
    pub cost: Option<f64>,
    /// `messages.cost_source`.
    pub cost_source: Option<String>,
    /// Tokens: input (cache excluded), output, reasoning, cache read, cache write; summed over
    /// its finish steps (an OpenCode message of several steps keeps only the last on the
    /// message itself), else the message's.
    pub tokens: [i64; 5],
    /// `messages.finish_reason`.
    pub finish_reason: Option<String>,
    /// `messages.error_name`.
    pub error_name: Option<String>,
    /// `messages.created_at` (µs).
    pub created_us: Option<i64>,
    /// `messages.completed_at` (µs).
    pub completed_us: Option<i64>,
    /// The text of its text parts, joined (only when content was asked for).
    pub text: Option<String>,
}

/// A tool call (a `parts` row of type `tool`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceToolCall {
    /// `parts.id`.
    pub id: String,
    /// `parts.session_id`.
    pub session_id: String,
    /// `parts.message_id`: the response that called it.
    pub message_id: String,
    /// `parts.tool_name`.
    pub tool_name: Option<String>,
    /// `parts.tool_status`: `pending`, `running`, `completed` or `error`.
    pub status: Option<String>,
    /// `parts.call_id`.
    pub call_id: Option<String>,
    /// `parts.child_session_id`: the session a delegation created.
    pub child_session_id: Option<String>,
    /// `parts.tool_error`.
    pub error: Option<String>,
    /// `parts.started_at` (µs).
    pub started_us: Option<i64>,
    /// `parts.ended_at` (µs).
    pub ended_us: Option<i64>,
    /// `parts.tool_input` (only when content was asked for).
    pub input: Option<String>,
    /// `parts.tool_output` (only when content was asked for).
    pub output: Option<String>,
}

/// Everything the OTLP export needs of some session trees, and which of their spans were sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceRecords {
    /// Every session of the trees, roots first.
    pub sessions: Vec<TraceSession>,
    /// Their messages, by session and time.
    pub messages: Vec<TraceMessage>,
    /// Their tool calls, by session and start.
    pub tool_calls: Vec<TraceToolCall>,
    /// Span ids (hex) already acknowledged by the backend.
    pub sent: std::collections::HashSet<String>,
}

/// A span a backend acknowledged, as [`crate::Store::record_sent_spans`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSpan {
    /// Span id, lowercase hex.
    pub span_id: String,
    /// Trace id, lowercase hex.
    pub trace_id: String,
    /// The span's own session.
    pub session_id: String,
}

/// `$1` holds the root ids; `tree` is every session under them (sessions whose parent is in the
/// tree, at any depth).
const TREE: &str = "WITH RECURSIVE tree(id, depth) AS (
        SELECT id, 0 FROM sessions WHERE list_contains($1::VARCHAR[], id)
        UNION ALL
        SELECT s.id, tree.depth + 1 FROM sessions s JOIN tree ON s.parent_id = tree.id WHERE tree.depth < 64)";

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Text(text) => Some(text.clone()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::BigInt(number) => Some(*number),
        Value::Int(number) => Some(i64::from(*number)),
        Value::HugeInt(number) => i64::try_from(*number).ok(),
        _ => None,
    }
}

fn real(value: &Value) -> Option<f64> {
    match value {
        Value::Double(number) => Some(*number),
        Value::Float(number) => Some(f64::from(*number)),
        _ => None,
    }
}

fn id_list(ids: &[String]) -> Value {
    Value::List(ids.iter().map(|id| Value::Text(id.clone())).collect())
}

impl Reader {
    /// Root sessions (no parent) created at or after `since_us`, oldest first, after `after`
    /// (a root id; the page's last), at most `limit`.
    pub fn trace_roots(&self, since_us: Option<i64>, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let rows = self.query_values_with(
            "SELECT id FROM sessions
             WHERE parent_id IS NULL
               AND ($1::BIGINT IS NULL OR epoch_us(CAST(coalesce(created_at, updated_at) AS TIMESTAMP)) >= $1::BIGINT)
               AND ($2::VARCHAR IS NULL OR id > $2::VARCHAR)
             ORDER BY id LIMIT $3",
            &[since_us.map_or(Value::Null, Value::BigInt), after.map_or(Value::Null, |id| Value::Text(id.to_owned())), Value::BigInt(limit as i64)],
            1,
            "listing the sessions to export",
        )?;
        Ok(rows.iter().filter_map(|row| text(&row[0])).collect())
    }

    /// The root sessions of `sessions` (each one's topmost ancestor that is present, following
    /// `parent_id`); a session whose parent is not in the database yet has no root, and is left
    /// out until it has.
    pub fn trace_roots_of(&self, sessions: &[String]) -> Result<Vec<String>> {
        let rows = self.query_values_with(
            "WITH RECURSIVE up(id, parent_id, depth) AS (
                 SELECT id, parent_id, 0 FROM sessions WHERE list_contains($1::VARCHAR[], id)
                 UNION ALL
                 SELECT s.id, s.parent_id, up.depth + 1 FROM sessions s JOIN up ON s.id = up.parent_id WHERE up.depth < 64)
             SELECT DISTINCT id FROM up WHERE parent_id IS NULL ORDER BY id",
            &[id_list(sessions)],
            1,
            "finding the root sessions to export",
        )?;
        Ok(rows.iter().filter_map(|row| text(&row[0])).collect())
    }

    /// Every ancestor of `sessions` (their parents, the parents' parents, …) that is present:
    /// the sessions whose answers show figures of theirs (a summary's children, a trace tree).
    pub fn session_ancestors(&self, sessions: &[String]) -> Result<Vec<String>> {
        let rows = self.query_values_with(
            "WITH RECURSIVE up(id, depth) AS (
                 SELECT parent_id, 0 FROM sessions WHERE list_contains($1::VARCHAR[], id) AND parent_id IS NOT NULL
                 UNION
                 -- A session whose row is gone (its file removed) is still named by the call that
                 -- created it, until the derived rows are replaced.
                 SELECT session_id, 0 FROM delegations WHERE list_contains($1::VARCHAR[], child_session_id)
                 UNION ALL
                 SELECT s.parent_id, up.depth + 1 FROM sessions s JOIN up ON s.id = up.id WHERE s.parent_id IS NOT NULL AND up.depth < 64)
             SELECT DISTINCT id FROM up ORDER BY id",
            &[id_list(sessions)],
            1,
            "finding the sessions' ancestors",
        )?;
        Ok(rows.iter().filter_map(|row| text(&row[0])).collect())
    }

    /// The records of the session trees under `roots`; texts, tool inputs and outputs only when
    /// `with_content`.
    pub fn trace_records(&self, roots: &[String], with_content: bool) -> Result<TraceRecords> {
        let ids = id_list(roots);
        let sessions = self.query_values_with(
            &format!(
                "{TREE} SELECT s.id, s.parent_id, s.title, s.app,
                        epoch_us(CAST(greatest(s.updated_at, (SELECT max(coalesce(m.completed_at, m.created_at)) FROM messages m WHERE m.session_id = s.id)) AS TIMESTAMP))
                 FROM sessions s JOIN (SELECT id, min(depth) AS depth FROM tree GROUP BY id) t ON t.id = s.id ORDER BY t.depth, s.id"
            ),
            std::slice::from_ref(&ids),
            5,
            "reading the sessions to export",
        )?;
        let sessions: Vec<TraceSession> = sessions
            .iter()
            .filter_map(|row| {
                Some(TraceSession {
                    id: text(&row[0])?,
                    parent_id: text(&row[1]),
                    title: text(&row[2]),
                    app: text(&row[3]),
                    last_activity_us: integer(&row[4]),
                })
            })
            .collect();
        let tree = id_list(&sessions.iter().map(|session| session.id.clone()).collect::<Vec<_>>());
        let texts = if with_content {
            "(SELECT string_agg(p.text, '\n' ORDER BY p.id) FROM parts p WHERE p.session_id = m.session_id AND p.message_id = m.id AND p.part_type = 'text')"
        } else {
            "NULL::VARCHAR"
        };
        let messages = self.query_values_with(
            &format!(
                "WITH steps AS (
                     SELECT message_id, sum(cost) AS cost, sum(tokens_input) AS input, sum(tokens_output) AS output,
                            sum(tokens_reasoning) AS reasoning, sum(tokens_cache_read) AS cache_read, sum(tokens_cache_write) AS cache_write
                     FROM step_events WHERE list_contains($1::VARCHAR[], session_id) AND event_type = 'finish' GROUP BY message_id)
                 SELECT m.id, m.session_id, m.role, m.agent, m.provider_id, m.model_id, coalesce(st.cost, m.cost), m.cost_source,
                        coalesce(st.input, m.tokens_input), coalesce(st.output, m.tokens_output), coalesce(st.reasoning, m.tokens_reasoning),
                        coalesce(st.cache_read, m.tokens_cache_read), coalesce(st.cache_write, m.tokens_cache_write),
                        m.finish_reason, m.error_name,
                        epoch_us(CAST(m.created_at AS TIMESTAMP)), epoch_us(CAST(m.completed_at AS TIMESTAMP)), {texts}
                 FROM messages m LEFT JOIN steps st ON st.message_id = m.id
                 WHERE list_contains($1::VARCHAR[], m.session_id)
                 ORDER BY m.session_id, m.created_at NULLS LAST, m.id"
            ),
            std::slice::from_ref(&tree),
            18,
            "reading the messages to export",
        )?;
        let messages = messages
            .iter()
            .filter_map(|row| {
                Some(TraceMessage {
                    id: text(&row[0])?,
                    session_id: text(&row[1])?,
                    role: text(&row[2]).unwrap_or_default(),
                    agent: text(&row[3]),
                    provider_id: text(&row[4]),
                    model_id: text(&row[5]),
                    cost: real(&row[6]),
                    cost_source: text(&row[7]),
                    tokens: [8, 9, 10, 11, 12].map(|index| integer(&row[index]).unwrap_or(0)),
                    finish_reason: text(&row[13]),
                    error_name: text(&row[14]),
                    created_us: integer(&row[15]),
                    completed_us: integer(&row[16]),
                    text: text(&row[17]),
                })
            })
            .collect();
        let content = if with_content { "p.tool_input, p.tool_output" } else { "NULL::VARCHAR, NULL::VARCHAR" };
        let tool_calls = self.query_values_with(
            &format!(
                "SELECT p.id, p.session_id, p.message_id, p.tool_name, p.tool_status, p.call_id, p.child_session_id, p.tool_error,
                        epoch_us(CAST(p.started_at AS TIMESTAMP)), epoch_us(CAST(p.ended_at AS TIMESTAMP)), {content}
                 FROM parts p WHERE list_contains($1::VARCHAR[], p.session_id) AND p.part_type = 'tool'
                 ORDER BY p.session_id, p.started_at NULLS LAST, p.id"
            ),
            std::slice::from_ref(&tree),
            12,
            "reading the tool calls to export",
        )?;
        let tool_calls = tool_calls
            .iter()
            .filter_map(|row| {
                Some(TraceToolCall {
                    id: text(&row[0])?,
                    session_id: text(&row[1])?,
                    message_id: text(&row[2])?,
                    tool_name: text(&row[3]),
                    status: text(&row[4]),
                    call_id: text(&row[5]),
                    child_session_id: text(&row[6]),
                    error: text(&row[7]),
                    started_us: integer(&row[8]),
                    ended_us: integer(&row[9]),
                    input: text(&row[10]),
                    output: text(&row[11]),
                })
            })
            .collect();
        let sent =
            self.query_values_with("SELECT span_id FROM otlp_sent WHERE list_contains($1::VARCHAR[], session_id)", &[tree], 1, "reading the spans sent")?;
        let sent = sent.iter().filter_map(|row| text(&row[0])).collect();
        Ok(TraceRecords { sessions, messages, tool_calls, sent })
    }

    /// How many spans are recorded as sent.
    pub fn sent_span_count(&self) -> Result<i64> {
        let rows = self.query_values_with("SELECT count(*) FROM otlp_sent", &[], 1, "counting the spans sent")?;
        Ok(rows.first().and_then(|row| integer(&row[0])).unwrap_or(0))
    }
}

impl crate::Store {
    /// Records spans a backend acknowledged, in one transaction. A span already recorded stays
    /// as it was (a resend after a crash is not an error).
    pub fn record_sent_spans(&mut self, spans: &[SentSpan]) -> Result<()> {
        if spans.is_empty() {
            return Ok(());
        }
        // One statement per batch: a prepared INSERT per span cost ~0.5 ms each.
        let column = |pick: fn(&SentSpan) -> &str| Value::List(spans.iter().map(|span| Value::Text(pick(span).to_owned())).collect());
        let mut statement = self
            .connection
            .prepare_cached(
                "INSERT INTO otlp_sent SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[]), unnest($3::VARCHAR[]), now() ON CONFLICT (span_id) DO NOTHING",
            )
            .map_err(|source| crate::StoreError::Query { path: self.path.clone(), context: "recording the spans sent", error: source })?;
        statement
            .execute(duckdb::params![column(|span| &span.span_id), column(|span| &span.trace_id), column(|span| &span.session_id)])
            .map_err(|source| crate::StoreError::Query { path: self.path.clone(), context: "recording the spans sent", error: source })?;
        Ok(())
    }
}
