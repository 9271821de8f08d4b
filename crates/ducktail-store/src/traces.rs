//! Derived data: `agent_traces` and `delegations`, and the per-session rollups (`session_stats`,
//! `session_usage`, `session_tools`) the read API answers from, computed for a scope of sessions.
//!
//! Computation reads (through a [`Reader`]) and replacement writes (through the [`Store`]), so the
//! live pipeline can compute off the writer's thread and hand rows to the one writer.
//!
//! A trace row depends on its own session's task parts and messages, on the usage of the session it
//! created, and on which trace created its session. So when sessions `T` change, the rows to
//! recompute are those whose `session_id` or `child_session_id` lies in `T` plus the children of
//! `T` (their parent trace may have just appeared). That expansion is [`TraceScope`]'s job.
//!
//! A rollup row depends only on its own session's records, so recomputing the expanded scope
//! covers it too.
//!
//! The queries reach a scope's rows through the session indexes (see [`rows_by_key`]), so a
//! recompute costs what the scope's sessions hold, and look a part's or step's message up in its
//! own session, so a scoped and a full recompute agree by construction. Delegations come out of
//! the trace query's rows.

use std::collections::BTreeSet;

use duckdb::types::Value;

use crate::{Reader, Result, Store};

/// Which sessions' derived rows to recompute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceScope {
    /// Everything (after a one-shot index, or a rebuild).
    All,
    /// Sessions whose records changed; their children are added when computing.
    Sessions(BTreeSet<String>),
}

/// Rows computed for a scope, ready to replace the old ones.
#[derive(Debug, Clone, Default)]
pub struct DerivedRows {
    /// The expanded scope: rows whose `session_id` or `child_session_id` (traces) or `session_id`
    /// (delegations) is in it are replaced. `None` means every row.
    pub scope: Option<Vec<String>>,
    /// Ancestors of the scope's sessions, filled by whoever computed the rows when it needs
    /// them: readers of the ancestors' answers (children's figures, trace trees) are told too.
    pub ancestors: Vec<String>,
    /// `agent_traces` rows, in table column order.
    pub traces: Vec<Vec<Value>>,
    /// `delegations` rows, in table column order.
    pub delegations: Vec<Vec<Value>>,
    /// `session_stats` rows, in table column order.
    pub stats: Vec<Vec<Value>>,
    /// `session_usage` rows, in table column order.
    pub usage: Vec<Vec<Value>>,
    /// `session_tools` rows, in table column order.
    pub tools: Vec<Vec<Value>>,
}

/// The columns of an `agent_traces` row.
const TRACE_COLUMNS: usize = 15;

/// The rollup tables, with their column counts, in the order [`DerivedRows`] holds them.
const ROLLUP_TABLES: [(&str, usize); 3] = [("session_stats", 13), ("session_usage", 15), ("session_tools", 6)];

/// `table`'s `columns` for the rows whose `key` satisfies `predicate` (`IN (…)` or `IS NOT NULL`).
///
/// A scoped recompute must cost what its sessions hold, not what the database holds, so
/// messages, step events and sessions are reached through their `session_id` (or `id`) index.
/// DuckDB 2.0 scans an index only when the key's filter is the scan's only filter, so the other
/// conditions stay outside: `OFFSET 0` keeps the optimizer from pushing them down into this scan.
/// DuckDB scans the whole table instead when the scope has more than 50 sessions
/// (`dynamic_or_filter_threshold`) or more than 2,048 rows match (`index_scan_max_count`); the
/// result is the same. Not for `parts`: a part's row fetched by index cost about 50 µs on the 1M
/// database (545 rows, 28 ms), more than a scan filtered as it runs.
fn rows_by_key(columns: &str, table: &str, key: &str, predicate: &str) -> String {
    format!("(SELECT {columns} FROM {table} WHERE {key} {predicate} OFFSET 0)")
}

/// The expanded scope of an `input(session_id)` relation (see the module doc), as one query.
fn expansion_sql(input: &str) -> String {
    format!(
        "WITH input AS ({input})
    SELECT session_id FROM input
    UNION SELECT id FROM sessions WHERE parent_id IN (SELECT session_id FROM input)
    UNION SELECT child_session_id FROM parts WHERE {IS_TASK} AND session_id IN (SELECT session_id FROM input)"
    )
}

/// The columns of a task part the trace queries read.
const TASK_COLUMNS: &str = "id, session_id, child_session_id, message_id, subagent_type, tool_status, started_at, ended_at";

/// The condition that makes a part a delegation: a tool call that created a session. The tool's
/// name is the agent's own (OpenCode `task`, Claude Code `Agent`/`Task`, Codex `spawn_agent`);
/// decoders set `child_session_id` only on such calls, so the trace queries name no agent.
const IS_TASK: &str = "part_type = 'tool' AND child_session_id IS NOT NULL";

/// `agent_traces` rows for the expanded scope, given as a `scope(session_id)` relation, each led by
/// a flag: whether it is also a `delegations` row. A delegation is a task call made in the scope
/// (delegations are replaced by the session the call ran in) and carries a subset of its trace's
/// columns, so one query computes both (see [`split_delegations`]).
///
/// The task calls whose traces are replaced are `own_task`, those made in the scope's sessions,
/// and `creating_task`, those that created a session of the scope, wherever they were made. Both
/// read `parts` filtered as the scan runs (see [`rows_by_key`] for why not through its index); no
/// index reaches a part by the session it created.
fn traces_sql(scope: &str) -> String {
    let in_the_scope = "IN (SELECT session_id FROM scope)";
    let scope_sessions = rows_by_key("id, parent_id, created_at, updated_at", "sessions", "id", in_the_scope);
    let in_task_sessions = "IN (SELECT session_id FROM scoped_task)";
    let in_usage_sessions = "IN (SELECT child_session_id FROM scoped_task UNION SELECT id FROM roots)";
    format!(
        "WITH scope AS ({scope}),
own_task AS (SELECT {TASK_COLUMNS} FROM parts WHERE {IS_TASK} AND session_id {in_the_scope}),
creating_task AS (SELECT {TASK_COLUMNS} FROM parts WHERE {IS_TASK} AND child_session_id {in_the_scope}),
scoped_task AS (SELECT * FROM own_task UNION SELECT * FROM creating_task),
roots AS (SELECT id, created_at, updated_at FROM {scope_sessions} WHERE parent_id IS NULL),
-- The task call that created each session a scoped task ran in. Such a session is in the scope
-- or ran a `creating_task` call, so only those sessions' creators are read.
creator AS (
    SELECT child_session_id, first(id ORDER BY started_at NULLS LAST, id) AS trace_id
    FROM parts
    WHERE {IS_TASK}
      AND child_session_id IN (SELECT session_id FROM scope UNION SELECT session_id FROM creating_task)
    GROUP BY child_session_id
),
usage AS (
    SELECT session_id,
           sum(tokens_input) AS tokens_input, sum(tokens_output) AS tokens_output,
           sum(tokens_reasoning) AS tokens_reasoning, sum(tokens_cache_read) AS tokens_cache_read,
           sum(tokens_cache_write) AS tokens_cache_write,
           -- Ordered so the floating-point total does not depend on the order rows were written.
           sum(cost ORDER BY id) AS cost
    FROM {steps}
    WHERE event_type = 'finish'
    GROUP BY session_id
),
root_state AS (
    SELECT session_id,
           arg_max(CASE WHEN error_name IS NOT NULL THEN 'error'
                        WHEN completed_at IS NULL THEN 'running'
                        ELSE 'completed' END, created_at) AS status,
           first(agent ORDER BY created_at NULLS LAST, id) AS first_agent,
           max(completed_at) AS last_completed
    FROM {root_messages}
    WHERE role = 'assistant'
    GROUP BY session_id
),
traces AS (
    SELECT t.session_id {in_the_scope} AS delegation, t.id AS trace_id, t.session_id,
           coalesce(c.trace_id, CASE WHEN ps.id IS NOT NULL AND ps.parent_id IS NULL THEN 'root_' || t.session_id END)
               AS parent_trace_id,
           t.child_session_id, m.agent AS parent_agent, t.subagent_type, t.tool_status AS status,
           t.started_at, t.ended_at
    FROM scoped_task t
    LEFT JOIN {task_messages} m ON m.id = t.message_id AND m.session_id = t.session_id
    LEFT JOIN creator c ON c.child_session_id = t.session_id AND c.trace_id <> t.id
    LEFT JOIN {task_session_rows} ps ON ps.id = t.session_id
    UNION ALL
    SELECT false, 'root_' || r.id, r.id, NULL, r.id, NULL, rs.first_agent, rs.status,
           r.created_at, coalesce(rs.last_completed, r.updated_at)
    FROM roots r
    LEFT JOIN root_state rs ON rs.session_id = r.id
)
SELECT tr.delegation, tr.trace_id, tr.session_id, tr.parent_trace_id, tr.child_session_id, tr.parent_agent,
       tr.subagent_type, tr.status, tr.started_at, tr.ended_at,
       coalesce(u.tokens_input, 0), coalesce(u.tokens_output, 0), coalesce(u.tokens_reasoning, 0),
       coalesce(u.tokens_cache_read, 0), coalesce(u.tokens_cache_write, 0), coalesce(u.cost, 0)
FROM traces tr LEFT JOIN usage u ON u.session_id = tr.child_session_id
ORDER BY tr.trace_id",
        steps = rows_by_key(STEP_COLUMNS, "step_events", "session_id", in_usage_sessions),
        root_messages = rows_by_key("id, session_id, role, error_name, completed_at, created_at, agent", "messages", "session_id", "IN (SELECT id FROM roots)"),
        task_messages = rows_by_key("id, session_id, agent", "messages", "session_id", in_task_sessions),
        task_session_rows = rows_by_key("id, parent_id", "sessions", "id", in_task_sessions),
    )
}

/// The `step_events` columns the finish-step sums read.
const STEP_COLUMNS: &str = "id, session_id, event_type, tokens_input, tokens_output, tokens_reasoning, tokens_cache_read, tokens_cache_write, cost";

/// Finish-step sums, named as the rollup tables' columns. Cost is summed in id order so the
/// floating-point total does not depend on the order rows were written.
const STEP_SUMS: &str = "count(*) AS steps,
    coalesce(sum(e.tokens_input), 0) AS tokens_input, coalesce(sum(e.tokens_output), 0) AS tokens_output,
    coalesce(sum(e.tokens_reasoning), 0) AS tokens_reasoning, coalesce(sum(e.tokens_cache_read), 0) AS tokens_cache_read,
    coalesce(sum(e.tokens_cache_write), 0) AS tokens_cache_write, coalesce(sum(e.cost ORDER BY e.id), 0) AS cost";

/// Finish steps without a cost (a model no price covers): the rollups' last column, so a sum of
/// their `cost` can say what it leaves out.
const UNPRICED_STEPS: &str = "count(*) FILTER (WHERE e.cost IS NULL) AS unpriced_steps";

/// The rollups read only their own session's rows, so they take the already expanded scope as
/// `{in_scope}`, a predicate on `session_id` (`IN (…)`, or `IS NOT NULL` for every session), instead
/// of expanding it again.
///
/// `session_stats`: counts and finish-step totals of each session in scope that has any record.
fn session_stats_sql(in_scope: &str) -> String {
    format!(
        "WITH steps AS (
    SELECT e.session_id, {STEP_SUMS}, {UNPRICED_STEPS} FROM {steps} e
    WHERE e.event_type = 'finish' GROUP BY e.session_id
),
msgs AS (
    SELECT session_id, count(*) AS messages, count(error_name) AS errors FROM messages
    WHERE session_id {in_scope} GROUP BY session_id
),
tools AS (
    SELECT session_id, count(*) AS calls, count(*) FILTER (WHERE tool_status = 'error') AS errors FROM parts
    WHERE part_type = 'tool' AND session_id {in_scope} GROUP BY session_id
),
ids AS (SELECT session_id FROM steps UNION SELECT session_id FROM msgs UNION SELECT session_id FROM tools)
SELECT i.session_id, coalesce(m.messages, 0), coalesce(m.errors, 0), coalesce(t.calls, 0), coalesce(t.errors, 0),
       coalesce(s.steps, 0), coalesce(s.tokens_input, 0), coalesce(s.tokens_output, 0), coalesce(s.tokens_reasoning, 0),
       coalesce(s.tokens_cache_read, 0), coalesce(s.tokens_cache_write, 0), coalesce(s.cost, 0), coalesce(s.unpriced_steps, 0)
FROM ids i LEFT JOIN steps s ON s.session_id = i.session_id LEFT JOIN msgs m ON m.session_id = i.session_id
LEFT JOIN tools t ON t.session_id = i.session_id
ORDER BY i.session_id",
        steps = rows_by_key(STEP_COLUMNS, "step_events", "session_id", in_scope),
    )
}

/// `session_usage`: finish-step totals per session, UTC day of the step's message, model and agent,
/// with the session's project (a session record's change recomputes its rows, so it stays true).
fn session_usage_sql(in_scope: &str) -> String {
    format!(
        "SELECT e.session_id, s.project_id, CAST(m.created_at::TIMESTAMP AS DATE) AS day, m.provider_id, m.model_id, m.agent, {STEP_SUMS},
       coalesce(s.app, 'opencode') AS app, {UNPRICED_STEPS}
FROM {steps} e
LEFT JOIN {messages} m ON m.id = e.message_id AND m.session_id = e.session_id
LEFT JOIN {sessions} s ON s.id = e.session_id
WHERE e.event_type = 'finish'
GROUP BY ALL ORDER BY ALL",
        steps = rows_by_key(&format!("{STEP_COLUMNS}, message_id"), "step_events", "session_id", in_scope),
        messages = rows_by_key("id, session_id, created_at, provider_id, model_id, agent", "messages", "session_id", in_scope),
        sessions = rows_by_key("id, project_id, app", "sessions", "id", in_scope),
    )
}

/// `session_tools`: calls, errors and duration percentiles per session and tool.
fn session_tools_sql(in_scope: &str) -> String {
    format!(
        "SELECT session_id, coalesce(tool_name, 'unknown'), count(*), count(*) FILTER (WHERE tool_status = 'error'),
       quantile_cont(epoch_ms(ended_at::TIMESTAMP) - epoch_ms(started_at::TIMESTAMP), 0.5),
       quantile_cont(epoch_ms(ended_at::TIMESTAMP) - epoch_ms(started_at::TIMESTAMP), 0.95)
FROM parts WHERE part_type = 'tool' AND session_id {in_scope}
GROUP BY 1, 2 ORDER BY 1, 2"
    )
}

fn scope_sql(input: &str) -> String {
    format!("SELECT session_id FROM ({}) WHERE session_id IS NOT NULL ORDER BY 1", expansion_sql(input))
}

/// A scope of sessions passed as one parameter, `$1`: a JSON array of ids. The query text stays
/// the same whatever the sessions, so each query is planned once per connection (planning cost
/// as much as running on a small database).
const SESSIONS_PARAMETER: &str = "SELECT unnest(from_json($1::VARCHAR, '[\"VARCHAR\"]')) AS session_id";

impl Reader {
    /// Computes the derived rows for `scope` from committed data.
    pub fn compute_derived(&self, scope: &TraceScope) -> Result<DerivedRows> {
        // The expanded scope as a relation for the trace queries, and as a predicate on
        // `session_id` for the rollups, with the parameters both take.
        let started = std::time::Instant::now();
        let (relation, in_scope, parameters, expanded) = match scope {
            TraceScope::All => {
                let all = expansion_sql("SELECT id AS session_id FROM sessions UNION SELECT session_id FROM parts");
                (all, "IS NOT NULL".to_owned(), Vec::new(), None)
            }
            TraceScope::Sessions(sessions) => {
                let as_json = |ids: Vec<&String>| Value::Text(serde_json::Value::from(ids.into_iter().map(String::as_str).collect::<Vec<_>>()).to_string());
                let expanded = match sessions.is_empty() {
                    true => Vec::new(),
                    false => self
                        .query_values_with(&scope_sql(SESSIONS_PARAMETER), &[as_json(sessions.iter().collect())], 1, "expanding the trace scope")?
                        .into_iter()
                        .filter_map(|row| match row.into_iter().next() {
                            Some(Value::Text(id)) => Some(id),
                            _ => None,
                        })
                        .collect::<Vec<String>>(),
                };
                if expanded.is_empty() {
                    return Ok(DerivedRows { scope: Some(Vec::new()), ..Default::default() });
                }
                let parameters = vec![as_json(expanded.iter().collect())];
                (SESSIONS_PARAMETER.to_owned(), format!("IN ({SESSIONS_PARAMETER})"), parameters, Some(expanded))
            }
        };
        // Timed per query, logged at `trace`: the recompute competes with batches for the cores.
        let mut spent: Vec<String> = expanded.is_some().then(|| format!("expansion={:.2}", started.elapsed().as_secs_f64() * 1e3)).into_iter().collect();
        let mut timed = |sql: String, columns: usize, context: &'static str| {
            let started = std::time::Instant::now();
            let rows = self.query_values_with(&sql, &parameters, columns, context);
            spent.push(format!("{}={:.2}", context.trim_start_matches("computing ").replace(' ', "_"), started.elapsed().as_secs_f64() * 1e3));
            rows
        };
        let (traces, delegations) = split_delegations(timed(traces_sql(&relation), 1 + TRACE_COLUMNS, "computing agent traces and delegations")?);
        let rows = DerivedRows {
            traces,
            delegations,
            stats: timed(session_stats_sql(&in_scope), ROLLUP_TABLES[0].1, "computing session stats")?,
            usage: timed(session_usage_sql(&in_scope), ROLLUP_TABLES[1].1, "computing session usage")?,
            tools: timed(session_tools_sql(&in_scope), ROLLUP_TABLES[2].1, "computing session tools")?,
            scope: expanded,
            ancestors: Vec::new(),
        };
        tracing::trace!(sessions = rows.scope.as_ref().map(Vec::len), queries_ms = %spent.join(" "), "derived rows computed");
        Ok(rows)
    }
}

/// The `agent_traces` and `delegations` rows of [`traces_sql`]'s flagged rows.
fn split_delegations(flagged: Vec<Vec<Value>>) -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
    // The trace columns a delegation holds, in `delegations`' order: id, session_id,
    // child_session_id, parent_agent, child_agent (subagent_type), created_at (started_at).
    const DELEGATION_COLUMNS: [usize; 6] = [0, 1, 3, 4, 5, 7];
    let (mut traces, mut delegations) = (Vec::with_capacity(flagged.len()), Vec::new());
    for mut row in flagged {
        if row.remove(0) == Value::Boolean(true) {
            delegations.push(DELEGATION_COLUMNS.iter().map(|&column| row[column].clone()).collect());
        }
        traces.push(row);
    }
    (traces, delegations)
}

impl Store {
    /// Replaces the derived rows of `rows.scope` with `rows`, in one transaction.
    pub fn replace_derived(&mut self, rows: &DerivedRows) -> Result<()> {
        self.connection.execute_batch("BEGIN TRANSACTION").map_err(|source| self.query_error("beginning a trace update", source))?;
        let result = self.replace_derived_in_transaction(rows);
        match result {
            Ok(()) => self.connection.execute_batch("COMMIT").map_err(|source| self.query_error("committing a trace update", source)),
            Err(error) => {
                let _ = self.connection.execute_batch("ROLLBACK");
                Err(error)
            }
        }
    }

    fn replace_derived_in_transaction(&mut self, rows: &DerivedRows) -> Result<()> {
        let connection = &self.connection;
        let path = self.path.clone();
        let fail = |context: &'static str| {
            let path = path.clone();
            move |source| crate::StoreError::Query { path, context, error: source }
        };
        match &rows.scope {
            None => connection
                .execute_batch(
                    "DELETE FROM agent_traces; DELETE FROM delegations;
                     DELETE FROM session_stats; DELETE FROM session_usage; DELETE FROM session_tools;",
                )
                .map_err(fail("clearing traces"))?,
            Some(sessions) => {
                connection
                    .execute_batch("CREATE TEMP TABLE IF NOT EXISTS stage_trace_scope (session_id VARCHAR); DELETE FROM temp.stage_trace_scope;")
                    .map_err(fail("staging the trace scope"))?;
                let mut appender = connection.appender_to_catalog_and_db("stage_trace_scope", "temp", "main").map_err(fail("staging the trace scope"))?;
                for session in sessions {
                    appender.append_row(duckdb::params![session]).map_err(fail("staging the trace scope"))?;
                }
                appender.flush().map_err(fail("staging the trace scope"))?;
                drop(appender);
                connection
                    .execute_batch(
                        "DELETE FROM agent_traces WHERE session_id IN (SELECT session_id FROM temp.stage_trace_scope)
                            OR child_session_id IN (SELECT session_id FROM temp.stage_trace_scope);
                         DELETE FROM delegations WHERE session_id IN (SELECT session_id FROM temp.stage_trace_scope);
                         DELETE FROM session_stats WHERE session_id IN (SELECT session_id FROM temp.stage_trace_scope);
                         DELETE FROM session_usage WHERE session_id IN (SELECT session_id FROM temp.stage_trace_scope);
                         DELETE FROM session_tools WHERE session_id IN (SELECT session_id FROM temp.stage_trace_scope);",
                    )
                    .map_err(fail("deleting replaced traces"))?;
            }
        }
        let mut traces = connection.appender("agent_traces").map_err(fail("appending traces"))?;
        for row in &rows.traces {
            traces.append_row(duckdb::appender_params_from_iter(row)).map_err(fail("appending traces"))?;
        }
        traces.flush().map_err(fail("appending traces"))?;
        let mut delegations = connection.appender("delegations").map_err(fail("appending delegations"))?;
        for row in &rows.delegations {
            delegations.append_row(duckdb::appender_params_from_iter(row)).map_err(fail("appending delegations"))?;
        }
        delegations.flush().map_err(fail("appending delegations"))?;
        drop(delegations);
        for ((table, _), table_rows) in ROLLUP_TABLES.iter().zip([&rows.stats, &rows.usage, &rows.tools]) {
            let mut appender = connection.appender(table).map_err(fail("appending session rollups"))?;
            for row in table_rows {
                appender.append_row(duckdb::appender_params_from_iter(row)).map_err(fail("appending session rollups"))?;
            }
            appender.flush().map_err(fail("appending session rollups"))?;
        }
        Ok(())
    }

    /// Records that the derived tables match the records (a clean stop after the last trace
    /// flush, or the end of a one-shot index), so the next start can skip its full recompute.
    /// Nothing to write when the mark taken at the start is still there (no records written).
    pub fn mark_derived_complete(&mut self) -> Result<()> {
        if self.derived_mark_to_clear {
            return Ok(());
        }
        self.connection
            .execute_batch("INSERT OR REPLACE INTO pipeline_state VALUES ('derived_complete', 'true')")
            .map_err(|source| self.query_error("marking the derived tables complete", source))
    }

    /// Whether the last run left the derived tables complete. The mark is removed in the
    /// transaction of this connection's next write of records, so a run that writes and then
    /// stops without marking again (a crash) leaves the next start to recompute everything, and
    /// a run that writes nothing (an unchanged tree) spends no commit on it.
    pub fn take_derived_complete_mark(&mut self) -> Result<bool> {
        let found = self
            .connection
            .query_row("SELECT count(*) FROM pipeline_state WHERE key = 'derived_complete'", [], |row| row.get::<_, i64>(0))
            .map_err(|source| self.query_error("reading the derived-complete mark", source))?;
        self.derived_mark_to_clear = found > 0;
        Ok(found > 0)
    }

    /// Inside a transaction that writes records: removes the derived-complete mark if it is still
    /// there (see [`Store::take_derived_complete_mark`]). The caller forgets it once it commits.
    pub(crate) fn clear_derived_mark_in_transaction(&self) -> Result<()> {
        if self.derived_mark_to_clear {
            self.connection
                .execute_batch("DELETE FROM pipeline_state WHERE key = 'derived_complete'")
                .map_err(|source| self.query_error("clearing the derived-complete mark", source))?;
        }
        Ok(())
    }

    /// Starts collecting the sessions every later batch touches (see [`Store::take_touched_sessions`]).
    pub fn track_touched_sessions(&mut self) {
        self.touched = Some(BTreeSet::new());
    }

    /// The sessions touched since [`Store::track_touched_sessions`]; tracking stops.
    pub fn take_touched_sessions(&mut self) -> BTreeSet<String> {
        self.touched.take().unwrap_or_default()
    }

    /// Recomputes the derived rows of `scope` through a fresh reader and writes them.
    pub fn refresh_derived(&mut self, scope: &TraceScope) -> Result<DerivedRows> {
        let rows = self.reader()?.compute_derived(scope)?;
        self.replace_derived(&rows)?;
        Ok(rows)
    }
}
