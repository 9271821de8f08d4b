//! The read API's queries: session lists and summaries, delegation trees and usage, as plain
//! serialisable structs. Every user-supplied value is a bound parameter; the only SQL chosen from
//! input is a grouping expression picked from a fixed list ([`UsageGroup`]).
//!
//! Token and cost totals always come from `step_events` with `event_type = 'finish'` (a message's
//! own `tokens_*` hold only its last step).
//!
//! Per-session counts, totals and tool statistics are read from the rollup tables the
//! TraceBuilder keeps (`session_stats`, `session_usage`, `session_tools`), not aggregated per
//! request: a request then costs a lookup whatever the session's size. Like `agent_traces`, they
//! trail a commit by one trace recompute.

use std::collections::{BTreeMap, HashMap, HashSet};

use duckdb::types::Value;
use serde::Serialize;

use crate::reader::rfc3339_from_micros;
use crate::{Reader, Result};

/// Token totals by kind, and cost in USD.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Reasoning tokens.
    pub reasoning: i64,
    /// Tokens read from the provider's cache.
    pub cache_read: i64,
    /// Tokens written to the provider's cache.
    pub cache_write: i64,
    /// Cost in USD.
    pub cost: f64,
}

impl Usage {
    fn add(&mut self, other: &Usage) {
        self.input += other.input;
        self.output += other.output;
        self.reasoning += other.reasoning;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.cost += other.cost;
    }
}

/// Filters of `GET /api/sessions`. Times are Unix microseconds.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Created at or after.
    pub since_us: Option<i64>,
    /// Created before.
    pub until_us: Option<i64>,
    /// Only this project.
    pub project: Option<String>,
    /// Only sessions without a parent.
    pub root_only: bool,
    /// Case-insensitive substring of the title.
    pub title_contains: Option<String>,
    /// Only sessions of this coding agent (`opencode`, `claude_code`, `codex`).
    pub app: Option<String>,
    /// Only sessions with a finish step of this model (`provider/model`, as usage by model names it).
    pub model: Option<String>,
    /// Only sessions with a finish step of this agent (`build`, `plan`, a sub-agent's type…).
    pub agent: Option<String>,
    /// What the page is ordered by.
    pub sort: SessionSort,
    /// Smallest first instead of largest (newest) first.
    pub ascending: bool,
    /// Rows per page.
    pub limit: usize,
    /// Continue after this (sort key, id), from [`SessionPage::next_cursor`] of the same sort.
    pub after: Option<(i64, String)>,
}

/// What a page of sessions is ordered by; ties go by id, in the same direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionSort {
    /// Creation time.
    #[default]
    Created,
    /// Last update.
    Updated,
    /// The session's own cost (its finish steps).
    Cost,
    /// The session's own tokens, every kind added.
    Tokens,
}

impl SessionSort {
    /// `created`, `updated`, `cost` or `tokens`.
    pub fn parse(name: &str) -> Option<SessionSort> {
        match name {
            "created" => Some(SessionSort::Created),
            "updated" => Some(SessionSort::Updated),
            "cost" => Some(SessionSort::Cost),
            "tokens" => Some(SessionSort::Tokens),
            _ => None,
        }
    }

    /// The key as a BIGINT over `sessions s` and its `session_stats` row `o` (cost in
    /// nano-dollars, so that a cursor holds it exactly).
    fn key_sql(self) -> &'static str {
        match self {
            SessionSort::Created => "coalesce(epoch_us(s.created_at::TIMESTAMP), 0)",
            SessionSort::Updated => "coalesce(epoch_us(s.updated_at::TIMESTAMP), epoch_us(s.created_at::TIMESTAMP), 0)",
            SessionSort::Cost => "CAST(round(coalesce(o.cost, 0) * 1e9) AS BIGINT)",
            SessionSort::Tokens => {
                "coalesce(o.tokens_input, 0) + coalesce(o.tokens_output, 0) + coalesce(o.tokens_reasoning, 0) + coalesce(o.tokens_cache_read, 0) + coalesce(o.tokens_cache_write, 0)"
            }
        }
    }
}

/// A project: one a session names, or one OpenCode's project files list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectItem {
    /// As sessions name it: OpenCode's root-commit SHA (or `global`), the working directory of
    /// Claude Code's and Codex's sessions.
    pub id: String,
    /// OpenCode's `name`, when set.
    pub name: Option<String>,
    /// OpenCode's `worktree`.
    pub worktree: Option<String>,
    /// What to call it: the name, else the last folder of the worktree or of an id that is a
    /// path, else the id.
    pub label: String,
    /// Sessions in it.
    pub sessions: i64,
}

/// [`ProjectItem::label`].
fn project_label(id: &str, name: Option<&str>, worktree: Option<&str>) -> String {
    let last_folder = |path: &str| path.trim_end_matches('/').rsplit('/').next().filter(|folder| !folder.is_empty()).map(str::to_owned);
    name.filter(|name| !name.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| worktree.and_then(last_folder))
        .or_else(|| id.contains('/').then(|| last_folder(id)).flatten())
        .unwrap_or_else(|| id.to_owned())
}

/// One session in a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionListItem {
    /// `ses_…`.
    pub id: String,
    /// Project folder.
    pub project_id: Option<String>,
    /// Parent session of a sub-agent session.
    pub parent_id: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Creation time, RFC 3339 UTC.
    pub created_at: Option<String>,
    /// Last update, RFC 3339 UTC.
    pub updated_at: Option<String>,
    /// Finish-step totals.
    pub usage: Usage,
    /// Messages.
    pub messages: i64,
    /// Tool calls.
    pub tool_calls: i64,
    /// Tool calls in error plus messages with an error.
    pub errors: i64,
    /// Direct child sessions.
    pub children: i64,
    /// The coding agent that wrote it: `opencode`, `claude_code` or `codex`.
    pub app: String,
    /// Its finish steps without a cost (a model no price covers): `usage.cost` leaves them out.
    pub unpriced_steps: i64,
}

/// A page of sessions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionPage {
    /// The sessions.
    pub sessions: Vec<SessionListItem>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<(i64, String)>,
}

/// Usage of one model or agent within a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageBy {
    /// The model (`provider/model`) or agent.
    pub key: String,
    /// Finish steps counted.
    pub steps: i64,
    /// Their totals.
    pub usage: Usage,
}

/// One tool's calls within a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolStats {
    /// Tool name.
    pub tool: String,
    /// Calls.
    pub calls: i64,
    /// Calls that ended in error.
    pub errors: i64,
    /// Median duration of calls with both times, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile duration, in milliseconds.
    pub p95_ms: Option<f64>,
}

/// A todo item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TodoItem {
    /// Text.
    pub content: Option<String>,
    /// pending, in_progress, completed, cancelled.
    pub status: Option<String>,
    /// high, medium, low.
    pub priority: Option<String>,
}

/// `session_diff` totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DiffStats {
    /// Files in the diff.
    pub files: i64,
    /// Lines added.
    pub additions: i64,
    /// Lines deleted.
    pub deletions: i64,
}

/// `GET /api/sessions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    /// The session's own fields and counts.
    pub session: SessionListItem,
    /// Finish-step totals per model.
    pub by_model: Vec<UsageBy>,
    /// Finish-step totals per agent.
    pub by_agent: Vec<UsageBy>,
    /// Per tool.
    pub tools: Vec<ToolStats>,
    /// Distinct files per operation (`read`, `write`, `edit`).
    pub files: BTreeMap<String, Vec<String>>,
    /// The current todo list.
    pub todos: Vec<TodoItem>,
    /// The session diff.
    pub diff: DiffStats,
    /// Direct child sessions.
    pub children: Vec<String>,
}

/// A node of a delegation tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceNode {
    /// `root_<session>` or the task part id.
    pub trace_id: String,
    /// The session this trace's work ran in (its own session).
    pub session_id: String,
    /// Agent that delegated (none for a root).
    pub parent_agent: Option<String>,
    /// Agent that ran.
    pub agent: Option<String>,
    /// completed, error, running …
    pub status: Option<String>,
    /// Start, RFC 3339 UTC.
    pub started_at: Option<String>,
    /// End, RFC 3339 UTC.
    pub ended_at: Option<String>,
    /// End minus start, in milliseconds.
    pub duration_ms: Option<i64>,
    /// This trace's own session's finish-step totals.
    pub own: Usage,
    /// Own plus every descendant's.
    pub cumulative: Usage,
    /// Traces this one started.
    pub children: Vec<TraceNode>,
}

/// A text cut to the requested length, with its full length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clipped {
    /// The first `max_chars` characters.
    pub text: String,
    /// Characters in the stored text.
    pub chars: i64,
    /// Whether `text` is shorter than what is stored (or the store itself capped it).
    pub truncated: bool,
}

/// A tool call within a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineTool {
    /// Tool name.
    pub name: Option<String>,
    /// pending, running, completed, error.
    pub status: Option<String>,
    /// The tool's own title.
    pub title: Option<String>,
    /// End minus start, in milliseconds.
    pub duration_ms: Option<i64>,
    /// Input as JSON text.
    pub input: Option<Clipped>,
    /// Output, or the error when it failed.
    pub output: Option<Clipped>,
}

/// A step boundary within a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineStep {
    /// `start` or `finish`.
    pub event: String,
    /// Why the step finished.
    pub reason: Option<String>,
    /// Tokens and cost of a finish step.
    pub usage: Usage,
}

/// One part within a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePart {
    /// `prt_…`.
    pub id: String,
    /// text, reasoning, tool, step-start, step-finish, patch, …
    pub part_type: Option<String>,
    /// Text or reasoning.
    pub text: Option<Clipped>,
    /// For tool parts.
    pub tool: Option<TimelineTool>,
    /// For step parts.
    pub step: Option<TimelineStep>,
    /// Start, RFC 3339 UTC.
    pub started_at: Option<String>,
}

/// One message within a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineMessage {
    /// `msg_…`.
    pub id: String,
    /// user or assistant.
    pub role: Option<String>,
    /// Agent.
    pub agent: Option<String>,
    /// `provider/model`.
    pub model: Option<String>,
    /// Creation, RFC 3339 UTC.
    pub created_at: Option<String>,
    /// Completion, RFC 3339 UTC.
    pub completed_at: Option<String>,
    /// The message's cost.
    pub cost: Option<f64>,
    /// Error name, if it failed.
    pub error: Option<String>,
    /// Its parts, in order.
    pub parts: Vec<TimelinePart>,
}

/// Grouping of `GET /api/usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// UTC calendar day of the message.
    Day,
    /// `provider/model`.
    Model,
    /// Agent of the message (`build`, `plan` … for OpenCode; `claude_code/main`,
    /// `codex/main`, `claude_code/<sub-agent type>` for the other apps).
    Agent,
    /// Project of the session.
    Project,
    /// The coding agent that wrote the session (`opencode`, `claude_code`, `codex`).
    App,
}

impl UsageGroup {
    /// Parses `day`, `model`, `agent` or `project`.
    pub fn parse(text: &str) -> Option<UsageGroup> {
        match text {
            "day" => Some(UsageGroup::Day),
            "model" => Some(UsageGroup::Model),
            "agent" => Some(UsageGroup::Agent),
            "project" => Some(UsageGroup::Project),
            "app" => Some(UsageGroup::App),
            _ => None,
        }
    }

    /// The group key over raw rows: steps joined to their messages `m` and sessions `s`.
    fn key_sql(self) -> &'static str {
        match self {
            // No ICU: calendar functions need a plain TIMESTAMP (the value is UTC).
            UsageGroup::Day => "coalesce(strftime(m.created_at::TIMESTAMP, '%Y-%m-%d'), 'unknown')",
            UsageGroup::Model => "coalesce(m.provider_id || '/', '') || coalesce(m.model_id, 'unknown')",
            // Another app's agent is named with its app: "main" is a role in both Claude Code and
            // Codex, and OpenCode's agents keep the names they always had.
            UsageGroup::Agent => {
                "CASE WHEN coalesce(s.app, 'opencode') = 'opencode' THEN coalesce(m.agent, 'unknown') ELSE s.app || '/' || coalesce(m.agent, 'unknown') END"
            }
            UsageGroup::Project => "coalesce(s.project_id, 'unknown')",
            UsageGroup::App => "coalesce(s.app, 'opencode')",
        }
    }

    /// The same key over `session_usage r` rollup rows.
    fn rollup_key_sql(self) -> &'static str {
        match self {
            UsageGroup::Day => "coalesce(strftime(r.day, '%Y-%m-%d'), 'unknown')",
            UsageGroup::Model => "coalesce(r.provider_id || '/', '') || coalesce(r.model_id, 'unknown')",
            UsageGroup::Agent => {
                "CASE WHEN coalesce(r.app, 'opencode') = 'opencode' THEN coalesce(r.agent, 'unknown') ELSE r.app || '/' || coalesce(r.agent, 'unknown') END"
            }
            UsageGroup::Project => "coalesce(r.project_id, 'unknown')",
            UsageGroup::App => "coalesce(r.app, 'opencode')",
        }
    }

    /// What to group `session_usage r` rows by, and the key of the group held in column `alias`:
    /// a day is grouped as a date and formatted once per group (formatting every row cost more
    /// than the grouping).
    fn rollup_group_sql(self, alias: &str) -> (&'static str, String) {
        match self {
            UsageGroup::Day => ("r.day", format!("coalesce(strftime({alias}, '%Y-%m-%d'), 'unknown')")),
            other => (other.rollup_key_sql(), alias.to_owned()),
        }
    }

    /// The name `parse` reads.
    pub fn name(self) -> &'static str {
        match self {
            UsageGroup::Day => "day",
            UsageGroup::Model => "model",
            UsageGroup::Agent => "agent",
            UsageGroup::Project => "project",
            UsageGroup::App => "app",
        }
    }

    /// One grouping or two, comma-separated (`day,model`: cost per day and model), distinct.
    pub fn parse_list(text: &str) -> Option<Vec<UsageGroup>> {
        let groups: Vec<UsageGroup> = text.split(',').map(|name| UsageGroup::parse(name.trim())).collect::<Option<_>>()?;
        (matches!(groups.len(), 1 | 2) && groups.first() != groups.get(1)).then_some(groups)
    }
}

/// One group of `GET /api/usage`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// The day, model, agent, project or app; for two groupings, both joined by " · ".
    pub key: String,
    /// The key of each grouping, in the order asked.
    pub keys: Vec<String>,
    /// Sessions with usage in the group.
    pub sessions: i64,
    /// Finish steps.
    pub steps: i64,
    /// Finish steps without a cost (a model no price covers): `usage.cost` leaves them out.
    pub unpriced_steps: i64,
    /// Totals.
    pub usage: Usage,
}

/// The sum of usage rows: what `GET /api/usage` and `ducktail usage --json` answer as `total`.
/// Sessions are left out: one session can count in several groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageTotal {
    /// Finish steps.
    pub steps: i64,
    /// Finish steps without a cost (a model no price covers): `usage.cost` leaves them out.
    pub unpriced_steps: i64,
    /// Tokens and cost.
    pub usage: Usage,
    /// Every token counted once: input + output + cache reads + cache writes (reasoning is
    /// inside output for the agents that report it apart, see `docs/schema.md`).
    pub tokens: i64,
    /// Cache reads ÷ (input + cache reads + cache writes): the share of the prompt served from
    /// the cache; `None` without any prompt token.
    pub cache_hit_rate: Option<f64>,
}

/// `rows` summed; cost with Neumaier's compensated summation, so the total does not depend on the
/// rows' order (the rows' own costs are compensated sums too).
pub fn usage_total(rows: &[UsageRow]) -> UsageTotal {
    let mut total = UsageTotal::default();
    let mut compensation = 0.0;
    for row in rows {
        total.steps += row.steps;
        total.unpriced_steps += row.unpriced_steps;
        let (sum, added) = (&mut total.usage, &row.usage);
        sum.input += added.input;
        sum.output += added.output;
        sum.reasoning += added.reasoning;
        sum.cache_read += added.cache_read;
        sum.cache_write += added.cache_write;
        let next = sum.cost + added.cost;
        compensation += if sum.cost.abs() >= added.cost.abs() { (sum.cost - next) + added.cost } else { (added.cost - next) + sum.cost };
        sum.cost = next;
    }
    total.usage.cost += compensation;
    let usage = &total.usage;
    total.tokens = usage.input + usage.output + usage.cache_read + usage.cache_write;
    let prompt = usage.input + usage.cache_read + usage.cache_write;
    total.cache_hit_rate = (prompt > 0).then(|| usage.cache_read as f64 / prompt as f64);
    total
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Text(text) => Some(text.clone()),
        Value::Null => None,
        other => Some(format!("{other:?}")),
    }
}

fn int(value: &Value) -> i64 {
    match value {
        Value::BigInt(number) => *number,
        Value::Int(number) => (*number).into(),
        Value::HugeInt(number) => *number as i64,
        Value::UBigInt(number) => *number as i64,
        Value::Double(number) => *number as i64,
        _ => 0,
    }
}

fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Double(number) => Some(*number),
        Value::Float(number) => Some((*number).into()),
        Value::Null => None,
        other => Some(int(other) as f64),
    }
}

fn micros(value: &Value) -> Option<i64> {
    match value {
        Value::Null => None,
        other => Some(int(other)),
    }
}

fn usage_at(row: &[Value], at: usize) -> Usage {
    Usage {
        input: int(&row[at]),
        output: int(&row[at + 1]),
        reasoning: int(&row[at + 2]),
        cache_read: int(&row[at + 3]),
        cache_write: int(&row[at + 4]),
        cost: float(&row[at + 5]).unwrap_or(0.0),
    }
}

/// The finish-step sums over raw `step_events e`, in [`usage_at`] order.
const USAGE_SUMS: &str = "coalesce(sum(e.tokens_input), 0), coalesce(sum(e.tokens_output), 0), \
     coalesce(sum(e.tokens_reasoning), 0), coalesce(sum(e.tokens_cache_read), 0), \
     coalesce(sum(e.tokens_cache_write), 0), coalesce(sum(e.cost ORDER BY e.id), 0)";

/// The finish-step sums over `session_usage r` rollup rows of many sessions, in [`usage_at`]
/// order. Ordering the cost sum over every rollup row cost more than the rest of the query, so it
/// is a compensated sum (`fsum`): accurate to the last bits whatever the order, instead of
/// bit-for-bit repeatable.
const ROLLUP_SUMS_ACROSS_SESSIONS: &str = "coalesce(sum(r.tokens_input), 0), coalesce(sum(r.tokens_output), 0), \
     coalesce(sum(r.tokens_reasoning), 0), coalesce(sum(r.tokens_cache_read), 0), \
     coalesce(sum(r.tokens_cache_write), 0), coalesce(fsum(r.cost), 0)";

/// Sessions with their counts; `{filter}` narrows `sessions s`, `{tail}` orders and cuts the page.
fn session_list_sql(filter: &str, tail: &str, sort: SessionSort, ascending: bool) -> String {
    session_counts_sql(filter, tail, "IN (SELECT id FROM page)", sort, ascending)
}

/// [`session_list_sql`] with the child count narrowed by `{in_page}`: a page's semi-join, or
/// `= $1::VARCHAR` for one session. Counts and totals come from the `session_stats` rollup (the
/// TraceBuilder keeps it), so a page costs two small-table scans whatever the sessions' sizes.
fn session_counts_sql(filter: &str, tail: &str, in_page: &str, sort: SessionSort, ascending: bool) -> String {
    let key = sort.key_sql();
    let direction = if ascending { "ASC" } else { "DESC" };
    // Only a sort by the session's figures reads their rollup row before paging.
    let figures = if matches!(sort, SessionSort::Cost | SessionSort::Tokens) { "LEFT JOIN session_stats o ON o.session_id = s.id" } else { "" };
    format!(
        "WITH page AS (
            SELECT s.id, s.project_id, s.parent_id, s.title, coalesce(s.app, 'opencode') AS app,
                   epoch_us(s.created_at::TIMESTAMP) AS created_us, epoch_us(s.updated_at::TIMESTAMP) AS updated_us,
                   {key} AS sort_key
            FROM sessions s {figures} WHERE {filter}
            {tail}
        ),
        kids AS (
            SELECT parent_id, count(*) AS children FROM sessions WHERE parent_id {in_page} GROUP BY parent_id
        ),
        st AS (SELECT * FROM session_stats WHERE session_id {in_page})
        SELECT p.id, p.project_id, p.parent_id, p.title, p.created_us, p.updated_us, p.sort_key,
               coalesce(st.tokens_input, 0), coalesce(st.tokens_output, 0), coalesce(st.tokens_reasoning, 0),
               coalesce(st.tokens_cache_read, 0), coalesce(st.tokens_cache_write, 0), coalesce(st.cost, 0),
               coalesce(st.messages, 0), coalesce(st.tool_calls, 0), coalesce(st.tool_errors, 0) + coalesce(st.message_errors, 0),
               coalesce(k.children, 0), p.app, coalesce(st.unpriced_steps, 0)
        FROM page p
        LEFT JOIN st ON st.session_id = p.id
        LEFT JOIN kids k ON k.parent_id = p.id
        ORDER BY p.sort_key {direction}, p.id {direction}"
    )
}

fn list_item(row: &[Value]) -> (SessionListItem, i64) {
    let item = SessionListItem {
        id: text(&row[0]).unwrap_or_default(),
        project_id: text(&row[1]),
        parent_id: text(&row[2]),
        title: text(&row[3]),
        created_at: micros(&row[4]).map(rfc3339_from_micros),
        updated_at: micros(&row[5]).map(rfc3339_from_micros),
        usage: usage_at(row, 7),
        messages: int(&row[13]),
        tool_calls: int(&row[14]),
        errors: int(&row[15]),
        children: int(&row[16]),
        app: text(&row[17]).unwrap_or_default(),
        unpriced_steps: int(&row[18]),
    };
    (item, int(&row[6]))
}

/// A session's parts with their step events, in message then part order (part ids sort in
/// creation order); texts are cut in SQL so a huge output never leaves DuckDB. Parameters: the
/// session id and the most characters of a text; `ranged` adds the lowest and highest message
/// id, which let both scans skip blocks (see [`Reader::timeline_parts`]).
fn timeline_parts_sql(ranged: bool) -> String {
    let range = if ranged { " AND message_id BETWEEN $3::VARCHAR AND $4::VARCHAR" } else { "" };
    format!(
        "WITH e AS MATERIALIZED (SELECT * EXCLUDE (session_id, message_id) FROM step_events WHERE session_id = $1::VARCHAR{range})
         SELECT p.id, p.message_id, p.part_type,
                left(p.text, $2::BIGINT), length(p.text), p.tool_name, p.tool_status, p.tool_title,
                epoch_ms(p.ended_at::TIMESTAMP) - epoch_ms(p.started_at::TIMESTAMP),
                left(p.tool_input, $2::BIGINT), length(p.tool_input),
                left(coalesce(p.tool_output, p.tool_error), $2::BIGINT), length(coalesce(p.tool_output, p.tool_error)),
                e.event_type, e.reason, e.tokens_input, e.tokens_output, e.tokens_reasoning, e.tokens_cache_read,
                e.tokens_cache_write, e.cost, epoch_us(p.started_at::TIMESTAMP), p.content_truncated
         FROM (SELECT * FROM parts WHERE session_id = $1::VARCHAR{range}) p LEFT JOIN e ON e.id = p.id
         ORDER BY p.message_id, p.id"
    )
}

impl Reader {
    /// Runs `sql` with bound `parameters` and returns every row as values.
    fn rows(&self, sql: &str, parameters: &[Value], context: &'static str) -> Result<Vec<Vec<Value>>> {
        let fail = |source| self.query_error(context, source);
        let started = std::time::Instant::now();
        // Cached per connection: pooled readers plan each endpoint's queries once.
        let mut statement = self.connection.prepare_cached(sql).map_err(fail)?;
        let prepared = started.elapsed();
        let mut rows = statement.query(duckdb::params_from_iter(parameters.iter())).map_err(fail)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(fail)? {
            let columns = row.as_ref().column_count();
            out.push((0..columns).map(|index| row.get::<_, Value>(index)).collect::<duckdb::Result<Vec<Value>>>().map_err(fail)?);
        }
        tracing::trace!(context, prepare_ms = prepared.as_secs_f64() * 1e3, total_ms = started.elapsed().as_secs_f64() * 1e3, rows = out.len(), "read query");
        Ok(out)
    }

    /// Runs `read` inside one read transaction, so its queries see one snapshot.
    fn in_snapshot<T>(&self, read: impl FnOnce() -> Result<T>) -> Result<T> {
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(|source| self.query_error("starting a read transaction", source))?;
        let result = read();
        let _ = self.connection.execute_batch("ROLLBACK");
        result
    }

    /// The rows of a session's parts for its timeline (see [`timeline_parts_sql`]).
    ///
    /// The `session_id` index finds a session's parts, but fetching a hundred-odd wide rows one
    /// by one through it cost 8 ms p50 and 17 ms p95 on the 1M database. Rows are stored in
    /// about time order (the bulk load lists folders in name order, live batches append as
    /// files arrive) and message ids grow with time, so the range of the session's message ids
    /// narrows a plain scan to a few blocks by their min/max: 2.7 ms for the same 171 rows. A
    /// part whose message is not indexed can lie outside that range, so the scan's rows are
    /// checked against the index's count of the session's parts (1.3 ms, no rows fetched), and
    /// the index is read when they differ.
    fn timeline_parts(&self, id: &str, max_chars: usize, messages: &[TimelineMessage]) -> Result<Vec<Vec<Value>>> {
        let session = Value::Text(id.to_owned());
        let max_chars = Value::BigInt(max_chars as i64);
        let ids = messages.iter().map(|message| message.id.as_str()).filter(|id| !id.is_empty());
        if let (Some(low), Some(high)) = (ids.clone().min(), ids.max()) {
            let parameters = [session.clone(), max_chars.clone(), Value::Text(low.to_owned()), Value::Text(high.to_owned())];
            let rows = self.rows(&timeline_parts_sql(true), &parameters, "reading a session's parts in its messages' range")?;
            let counted =
                self.rows("SELECT count(*) FROM parts WHERE session_id = $1::VARCHAR", std::slice::from_ref(&session), "counting a session's parts")?;
            if counted.first().and_then(|row| row.first()).map(int) == Some(rows.len() as i64) {
                return Ok(rows);
            }
        }
        self.rows(&timeline_parts_sql(false), &[session, max_chars], "reading a session's parts")
    }

    /// A page of sessions in `filter.sort` order (newest first by default; ties by id), after
    /// `filter.after`.
    pub fn sessions(&self, filter: &SessionFilter) -> Result<SessionPage> {
        let limit = filter.limit.clamp(1, 500);
        let optional_int = |value: Option<i64>| value.map_or(Value::Null, Value::BigInt);
        let optional_text = |value: Option<&String>| value.map_or(Value::Null, |text| Value::Text(text.clone()));
        let (after_key, after_id) = match &filter.after {
            Some((key, id)) => (Value::BigInt(*key), Value::Text(id.clone())),
            None => (Value::Null, Value::Null),
        };
        let (key, direction, beyond) = (filter.sort.key_sql(), if filter.ascending { "ASC" } else { "DESC" }, if filter.ascending { ">" } else { "<" });
        // The keys usage by model and by agent name, so a key from there finds its sessions.
        let (model_key, agent_key) = (UsageGroup::Model.rollup_key_sql(), UsageGroup::Agent.rollup_key_sql());
        let where_clause = format!(
            "($1::BIGINT IS NULL OR epoch_us(s.created_at::TIMESTAMP) >= $1::BIGINT)
            AND ($2::BIGINT IS NULL OR epoch_us(s.created_at::TIMESTAMP) < $2::BIGINT)
            AND ($3::VARCHAR IS NULL OR s.project_id = $3::VARCHAR)
            AND (NOT $4::BOOLEAN OR s.parent_id IS NULL)
            AND ($5::VARCHAR IS NULL OR contains(lower(coalesce(s.title, '')), lower($5::VARCHAR)))
            AND ($8::VARCHAR IS NULL OR coalesce(s.app, 'opencode') = $8::VARCHAR)
            AND ($9::VARCHAR IS NULL OR s.id IN (SELECT r.session_id FROM session_usage r WHERE {model_key} = $9::VARCHAR))
            AND ($10::VARCHAR IS NULL OR s.id IN (SELECT r.session_id FROM session_usage r WHERE {agent_key} = $10::VARCHAR))
            AND ($6::BIGINT IS NULL OR {key} {beyond} $6::BIGINT OR ({key} = $6::BIGINT AND s.id {beyond} $7::VARCHAR))"
        );
        let tail = format!("ORDER BY sort_key {direction}, s.id {direction} LIMIT {}", limit + 1);
        let parameters = [
            optional_int(filter.since_us),
            optional_int(filter.until_us),
            optional_text(filter.project.as_ref()),
            Value::Boolean(filter.root_only),
            optional_text(filter.title_contains.as_ref()),
            after_key,
            after_id,
            optional_text(filter.app.as_ref()),
            optional_text(filter.model.as_ref()),
            optional_text(filter.agent.as_ref()),
        ];
        let rows = self.rows(&session_list_sql(&where_clause, &tail, filter.sort, filter.ascending), &parameters, "listing sessions")?;
        let mut sessions: Vec<(SessionListItem, i64)> = rows.iter().map(|row| list_item(row)).collect();
        let more = sessions.len() > limit;
        sessions.truncate(limit);
        let next_cursor = if more { sessions.last().map(|(item, key)| (*key, item.id.clone())) } else { None };
        Ok(SessionPage { sessions: sessions.into_iter().map(|(item, _)| item).collect(), next_cursor })
    }

    /// Every project, by id, with what to call it and its sessions.
    pub fn projects(&self) -> Result<Vec<ProjectItem>> {
        let rows = self.rows(
            "WITH used AS (SELECT project_id AS id, count(*) AS sessions FROM sessions WHERE project_id IS NOT NULL GROUP BY project_id)
             SELECT coalesce(u.id, p.id), p.name, p.worktree, coalesce(u.sessions, 0)
             FROM used u FULL JOIN projects p ON p.id = u.id ORDER BY 1",
            &[],
            "listing projects",
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                let (id, name, worktree) = (text(&row[0]).unwrap_or_default(), text(&row[1]), text(&row[2]));
                ProjectItem { label: project_label(&id, name.as_deref(), worktree.as_deref()), id, name, worktree, sessions: int(&row[3]) }
            })
            .collect())
    }

    /// Everything about one session, or `None` when it is unknown.
    pub fn session_summary(&self, id: &str) -> Result<Option<SessionSummary>> {
        let id_value = [Value::Text(id.to_owned())];
        let rows = self.rows(&session_counts_sql("s.id = $1::VARCHAR", "", "= $1::VARCHAR", SessionSort::Created, false), &id_value, "reading a session")?;
        let Some(row) = rows.first() else { return Ok(None) };
        let (session, _) = list_item(row);
        // Per model and per agent from the session's few rollup rows, summed here in one fixed
        // order (grouping sets with an ordered cost sum cost 5 ms in DuckDB for a handful of rows).
        let (mut by_model, mut by_agent): (BTreeMap<String, UsageBy>, BTreeMap<String, UsageBy>) = (BTreeMap::new(), BTreeMap::new());
        for row in self.rows(
            "SELECT coalesce(provider_id || '/', '') || coalesce(model_id, 'unknown'), coalesce(agent, 'unknown'), steps,
                    tokens_input, tokens_output, tokens_reasoning, tokens_cache_read, tokens_cache_write, cost
             FROM session_usage WHERE session_id = $1::VARCHAR ORDER BY day, provider_id, model_id, agent",
            &id_value,
            "summing usage per model and agent",
        )? {
            let (steps, usage) = (int(&row[2]), usage_at(&row, 3));
            for (groups, key) in [(&mut by_model, &row[0]), (&mut by_agent, &row[1])] {
                let key = text(key).unwrap_or_default();
                let group = groups.entry(key.clone()).or_insert_with(|| UsageBy { key, steps: 0, usage: Usage::default() });
                group.steps += steps;
                group.usage.add(&usage);
            }
        }
        let (by_model, by_agent) = (by_model.into_values().collect(), by_agent.into_values().collect());
        let tools = self
            .rows(
                "SELECT tool_name, calls, errors, p50_ms, p95_ms FROM session_tools WHERE session_id = $1::VARCHAR
                 ORDER BY calls DESC, tool_name",
                &id_value,
                "summing tool calls",
            )?
            .iter()
            .map(|row| ToolStats {
                tool: text(&row[0]).unwrap_or_default(),
                calls: int(&row[1]),
                errors: int(&row[2]),
                p50_ms: float(&row[3]),
                p95_ms: float(&row[4]),
            })
            .collect();
        let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in self.rows(
            "WITH f AS MATERIALIZED (SELECT operation, file_path FROM file_operations WHERE session_id = $1::VARCHAR)
             SELECT DISTINCT operation, file_path FROM f WHERE file_path IS NOT NULL ORDER BY 1, 2",
            &id_value,
            "listing file operations",
        )? {
            files.entry(text(&row[0]).unwrap_or_default()).or_default().push(text(&row[1]).unwrap_or_default());
        }
        let todos = self
            .rows("SELECT content, status, priority FROM todos WHERE session_id = $1::VARCHAR ORDER BY position", &id_value, "reading todos")?
            .iter()
            .map(|row| TodoItem { content: text(&row[0]), status: text(&row[1]), priority: text(&row[2]) })
            .collect();
        let diff = self
            .rows(
                "SELECT count(*), coalesce(sum(additions), 0), coalesce(sum(deletions), 0) FROM file_diffs WHERE session_id = $1::VARCHAR",
                &id_value,
                "summing the session diff",
            )?
            .first()
            .map(|row| DiffStats { files: int(&row[0]), additions: int(&row[1]), deletions: int(&row[2]) })
            .unwrap_or_default();
        let children = self
            .rows("SELECT id FROM sessions WHERE parent_id = $1::VARCHAR ORDER BY created_at, id", &id_value, "listing child sessions")?
            .iter()
            .filter_map(|row| text(&row[0]))
            .collect();
        Ok(Some(SessionSummary { session, by_model, by_agent, tools, files, todos, diff, children }))
    }

    /// The delegation tree under a session: rooted at its root trace (a root session) or at the
    /// trace that created it (a child session). `None` when no trace knows the session.
    pub fn trace_tree(&self, session_id: &str) -> Result<Option<TraceNode>> {
        // A root session has its own root trace; a child session starts at the earliest trace
        // that created it. Two lookups, each answered by an index (an OR of both is a scan).
        let root_trace = format!("root_{session_id}");
        let mut start = self.rows("SELECT trace_id FROM agent_traces WHERE trace_id = $1::VARCHAR", &[Value::Text(root_trace)], "finding a session's trace")?;
        if start.is_empty() {
            start = self.rows(
                "SELECT trace_id FROM agent_traces WHERE child_session_id = $1::VARCHAR ORDER BY started_at NULLS LAST, trace_id LIMIT 1",
                &[Value::Text(session_id.to_owned())],
                "finding a session's trace",
            )?;
        }
        let Some(start) = start.first().and_then(|row| text(&row[0])) else { return Ok(None) };
        // Walked level by level, each level one lookup by the parent index, so the cost follows
        // the tree's size and depth, not the number of traces (a recursive CTE cost 8-10 ms on a
        // 1M-file database). A trace met twice (a cycle) is not read again.
        let columns = "trace_id, session_id, parent_trace_id, child_session_id, parent_agent, subagent_type, status,
                       epoch_us(started_at::TIMESTAMP), epoch_us(ended_at::TIMESTAMP),
                       tokens_input, tokens_output, tokens_reasoning, tokens_cache_read, tokens_cache_write, cost";
        let mut rows =
            self.rows(&format!("SELECT {columns} FROM agent_traces WHERE trace_id = $1::VARCHAR"), &[Value::Text(start.clone())], "reading traces")?;
        let mut seen: HashSet<String> = rows.iter().filter_map(|row| text(&row[0])).collect();
        let mut level: Vec<String> = seen.iter().cloned().collect();
        while !level.is_empty() {
            let placeholders: Vec<String> = (1..=level.len()).map(|at| format!("${at}::VARCHAR")).collect();
            let sql = format!("SELECT {columns} FROM agent_traces WHERE parent_trace_id IN ({})", placeholders.join(", "));
            let parameters: Vec<Value> = level.drain(..).map(Value::Text).collect();
            for row in self.rows(&sql, &parameters, "reading traces")? {
                if let Some(id) = text(&row[0]).filter(|id| seen.insert(id.clone())) {
                    level.push(id);
                    rows.push(row);
                }
            }
        }
        // Siblings in start order, as before: by start time, then id.
        rows.sort_by_cached_key(|row| (micros(&row[7]).is_none(), micros(&row[7]), text(&row[0])));
        let mut children_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, row) in rows.iter().enumerate() {
            if let Some(parent) = text(&row[2]) {
                children_of.entry(parent).or_default().push(index);
            }
        }
        let Some(root) = rows.iter().position(|row| text(&row[0]).as_deref() == Some(start.as_str())) else { return Ok(None) };
        let mut visiting = HashSet::new();
        Ok(Some(build_node(&rows, &children_of, root, &mut visiting)))
    }

    /// A session's messages and their parts in order, texts cut to `max_chars`. `None` when the
    /// session is unknown. Read in one snapshot: the parts are checked against a count.
    pub fn session_timeline(&self, id: &str, max_chars: usize) -> Result<Option<Vec<TimelineMessage>>> {
        self.in_snapshot(|| self.session_timeline_now(id, max_chars))
    }

    fn session_timeline_now(&self, id: &str, max_chars: usize) -> Result<Option<Vec<TimelineMessage>>> {
        let id_value = [Value::Text(id.to_owned())];
        if self.rows("SELECT 1 FROM sessions WHERE id = $1::VARCHAR", &id_value, "finding a session")?.is_empty() {
            return Ok(None);
        }
        let mut messages: Vec<TimelineMessage> = self
            .rows(
                "SELECT id, role, agent, coalesce(provider_id || '/', '') || model_id, epoch_us(created_at::TIMESTAMP),
                        epoch_us(completed_at::TIMESTAMP), cost, error_name
                 FROM messages WHERE session_id = $1::VARCHAR ORDER BY created_at NULLS LAST, id",
                &id_value,
                "reading a session's messages",
            )?
            .iter()
            .map(|row| TimelineMessage {
                id: text(&row[0]).unwrap_or_default(),
                role: text(&row[1]),
                agent: text(&row[2]),
                model: text(&row[3]),
                created_at: micros(&row[4]).map(rfc3339_from_micros),
                completed_at: micros(&row[5]).map(rfc3339_from_micros),
                cost: float(&row[6]),
                error: text(&row[7]),
                parts: Vec::new(),
            })
            .collect();
        let mut position: HashMap<String, usize> = messages.iter().enumerate().map(|(index, message)| (message.id.clone(), index)).collect();
        let rows = self.timeline_parts(id, max_chars, &messages)?;
        let stored_cap = |row: &[Value]| matches!(row[22], Value::Boolean(true));
        let clip = |row: &[Value], at: usize| -> Option<Clipped> {
            let text = text(&row[at])?;
            let chars = int(&row[at + 1]);
            Some(Clipped { truncated: (text.chars().count() as i64) < chars || stored_cap(row), text, chars })
        };
        for row in &rows {
            let part_type = text(&row[2]);
            let tool = (part_type.as_deref() == Some("tool")).then(|| TimelineTool {
                name: text(&row[5]),
                status: text(&row[6]),
                title: text(&row[7]),
                duration_ms: micros(&row[8]),
                input: clip(row, 9),
                output: clip(row, 11),
            });
            let step = text(&row[13]).map(|event| TimelineStep { event, reason: text(&row[14]), usage: usage_at(row, 15) });
            let part = TimelinePart {
                id: text(&row[0]).unwrap_or_default(),
                text: if tool.is_none() { clip(row, 3) } else { None },
                part_type,
                tool,
                step,
                started_at: micros(&row[21]).map(rfc3339_from_micros),
            };
            // A part whose message file is missing still shows, under a placeholder message.
            let message_id = text(&row[1]).unwrap_or_default();
            let index = match position.get(&message_id) {
                Some(index) => *index,
                None => {
                    position.insert(message_id.clone(), messages.len());
                    messages.push(TimelineMessage {
                        id: message_id,
                        role: None,
                        agent: None,
                        model: None,
                        created_at: None,
                        completed_at: None,
                        cost: None,
                        error: None,
                        parts: Vec::new(),
                    });
                    messages.len() - 1
                }
            };
            messages[index].parts.push(part);
        }
        Ok(Some(messages))
    }

    /// Finish-step usage grouped by day, model, agent, project or app, for messages created in
    /// `[since, until)` (µs). Bounds on UTC midnights (or none) are answered from the per-day
    /// `session_usage` rollup; other bounds cut through a day and are summed from the steps.
    pub fn usage(&self, group: UsageGroup, since_us: Option<i64>, until_us: Option<i64>) -> Result<Vec<UsageRow>> {
        self.usage_by(&[group], since_us, until_us)
    }

    /// [`Reader::usage`] grouped by one or two groupings at once (`day` and `model`: cost per
    /// day and model), ordered by the keys in that order.
    pub fn usage_by(&self, groups: &[UsageGroup], since_us: Option<i64>, until_us: Option<i64>) -> Result<Vec<UsageRow>> {
        const DAY_US: i64 = 86_400_000_000;
        let on_midnight = |bound: Option<i64>| bound.is_none_or(|us| us.rem_euclid(DAY_US) == 0);
        let positions: Vec<String> = (1..=groups.len()).map(|position| position.to_string()).collect();
        let order = positions.join(", ");
        let sql = if on_midnight(since_us) && on_midnight(until_us) {
            let aliases: Vec<String> = (0..groups.len()).map(|index| format!("g{index}")).collect();
            let parts: Vec<(&str, String)> = groups.iter().zip(&aliases).map(|(group, alias)| group.rollup_group_sql(alias)).collect();
            let keys = parts.iter().map(|(_, key)| key.as_str()).collect::<Vec<_>>().join(", ");
            let group_by = parts.iter().zip(&aliases).map(|((expression, _), alias)| format!("{expression} AS {alias}")).collect::<Vec<_>>().join(", ");
            format!(
                "SELECT {keys}, * EXCLUDE ({aliases}) FROM (
                     SELECT {group_by}, count(DISTINCT r.session_id), sum(r.steps), {ROLLUP_SUMS_ACROSS_SESSIONS}, coalesce(sum(r.unpriced_steps), 0)
                     FROM session_usage r
                     WHERE ($1::BIGINT IS NULL OR epoch_us(r.day::TIMESTAMP) >= $1::BIGINT)
                       AND ($2::BIGINT IS NULL OR epoch_us(r.day::TIMESTAMP) < $2::BIGINT)
                     GROUP BY {order})
                 ORDER BY {order}",
                aliases = aliases.join(", ")
            )
        } else {
            format!(
                "SELECT {keys}, count(DISTINCT e.session_id), count(*), {USAGE_SUMS}, count(*) FILTER (WHERE e.cost IS NULL)
                 FROM step_events e LEFT JOIN messages m ON m.id = e.message_id LEFT JOIN sessions s ON s.id = e.session_id
                 WHERE e.event_type = 'finish'
                   AND ($1::BIGINT IS NULL OR epoch_us(m.created_at::TIMESTAMP) >= $1::BIGINT)
                   AND ($2::BIGINT IS NULL OR epoch_us(m.created_at::TIMESTAMP) < $2::BIGINT)
                 GROUP BY {order} ORDER BY {order}",
                keys = groups.iter().map(|group| group.key_sql()).collect::<Vec<_>>().join(", ")
            )
        };
        let parameters = [since_us.map_or(Value::Null, Value::BigInt), until_us.map_or(Value::Null, Value::BigInt)];
        let width = groups.len();
        Ok(self
            .rows(&sql, &parameters, "summing usage")?
            .iter()
            .map(|row| {
                let keys: Vec<String> = row[..width].iter().map(|key| text(key).unwrap_or_default()).collect();
                UsageRow {
                    key: keys.join(" · "),
                    keys,
                    sessions: int(&row[width]),
                    steps: int(&row[width + 1]),
                    usage: usage_at(row, width + 2),
                    unpriced_steps: int(&row[width + 8]),
                }
            })
            .collect())
    }
}

fn build_node(rows: &[Vec<Value>], children_of: &HashMap<String, Vec<usize>>, index: usize, visiting: &mut HashSet<usize>) -> TraceNode {
    let row = &rows[index];
    visiting.insert(index);
    let trace_id = text(&row[0]).unwrap_or_default();
    let own = usage_at(row, 9);
    let mut cumulative = own.clone();
    let mut children = Vec::new();
    for &child in children_of.get(&trace_id).map(Vec::as_slice).unwrap_or_default() {
        // A cycle cannot come from OpenCode data, but a hand-edited tree must not hang us.
        if visiting.contains(&child) {
            continue;
        }
        let node = build_node(rows, children_of, child, visiting);
        cumulative.add(&node.cumulative);
        children.push(node);
    }
    let (started, ended) = (micros(&row[7]), micros(&row[8]));
    TraceNode {
        trace_id,
        session_id: text(&row[3]).unwrap_or_default(),
        parent_agent: text(&row[4]),
        agent: text(&row[5]),
        status: text(&row[6]),
        started_at: started.map(rfc3339_from_micros),
        ended_at: ended.map(rfc3339_from_micros),
        duration_ms: started.zip(ended).map(|(start, end)| (end - start) / 1_000),
        own,
        cumulative,
        children,
    }
}

#[cfg(test)]
mod usage_total_tests {
    use super::*;

    #[test]
    fn a_project_is_called_by_its_name_else_its_folder() {
        assert_eq!(project_label("0090546a", Some("Ingest"), Some("/home/dev/work")), "Ingest");
        assert_eq!(project_label("0090546a", Some(" "), Some("/home/dev/work/")), "work");
        assert_eq!(project_label("/home/dev/code/todo-api", None, None), "todo-api", "Claude Code and Codex name a project by its folder");
        assert_eq!(project_label("global", None, Some("/")), "global");
        assert_eq!(project_label("0090546a", None, None), "0090546a");
    }

    #[test]
    fn the_usage_total_sums_every_field_and_compensates_the_cost() {
        let row = |steps, input, cost| UsageRow {
            key: String::new(),
            keys: Vec::new(),
            sessions: 1,
            steps,
            unpriced_steps: steps - 1,
            usage: Usage { input, output: 2, reasoning: 3, cache_read: 4, cache_write: 5, cost },
        };
        let total = usage_total(&[row(1, 10, 1e16), row(2, 20, 1.0), row(3, 30, -1e16)]);
        assert_eq!((total.steps, total.unpriced_steps, total.usage.input, total.usage.output, total.usage.cache_write), (6, 3, 60, 6, 15));
        assert_eq!(total.usage.cost, 1.0, "a naive sum gives 0");
        assert_eq!((total.tokens, total.cache_hit_rate), (60 + 6 + 12 + 15, Some(12.0 / 87.0)));
        assert_eq!(usage_total(&[]), UsageTotal::default());
    }
}
