//! Derived delegation data: `agent_traces` and `delegations`, computed for a scope of sessions.
//!
//! Computation reads (through a [`Reader`]) and replacement writes (through the [`Store`]), so the
//! live pipeline can compute off the writer's thread and hand rows to the one writer.
//!
//! A trace row depends on its own session's task parts and messages, on the usage of the session it
//! created, and on which trace created its session. So when sessions `T` change, the rows to
//! recompute are those whose `session_id` or `child_session_id` lies in `T` plus the children of
//! `T` (their parent trace may have just appeared). That expansion is [`TraceScope`]'s job.

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
    /// `agent_traces` rows, in table column order.
    pub traces: Vec<Vec<Value>>,
    /// `delegations` rows, in table column order.
    pub delegations: Vec<Vec<Value>>,
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The scope expansion and shared CTEs, given an `input(session_id)` relation.
fn scoped_ctes(input: &str) -> String {
    format!(
        "WITH input AS ({input}),
scope AS (
    SELECT session_id FROM input
    UNION SELECT s.id FROM sessions s JOIN input i ON s.parent_id = i.session_id
    UNION SELECT p.child_session_id FROM parts p JOIN input i ON p.session_id = i.session_id
        WHERE p.tool_name = 'task' AND p.child_session_id IS NOT NULL
),
task AS (
    SELECT id, session_id, child_session_id, message_id, subagent_type, tool_status, started_at, ended_at
    FROM parts WHERE part_type = 'tool' AND tool_name = 'task' AND child_session_id IS NOT NULL
)"
    )
}

fn traces_sql(input: &str) -> String {
    format!(
        "{ctes},
scoped_task AS (
    SELECT * FROM task
    WHERE session_id IN (SELECT session_id FROM scope) OR child_session_id IN (SELECT session_id FROM scope)
),
roots AS (
    SELECT id FROM sessions WHERE parent_id IS NULL AND id IN (SELECT session_id FROM scope)
),
creator AS (
    SELECT child_session_id, first(id ORDER BY started_at NULLS LAST, id) AS trace_id
    FROM task GROUP BY child_session_id
),
usage AS (
    SELECT session_id,
           sum(tokens_input) AS tokens_input, sum(tokens_output) AS tokens_output,
           sum(tokens_reasoning) AS tokens_reasoning, sum(tokens_cache_read) AS tokens_cache_read,
           sum(tokens_cache_write) AS tokens_cache_write,
           -- Ordered so the floating-point total does not depend on the order rows were written.
           sum(cost ORDER BY id) AS cost
    FROM step_events
    WHERE event_type = 'finish'
      AND session_id IN (SELECT child_session_id FROM scoped_task UNION SELECT id FROM roots)
    GROUP BY session_id
),
root_state AS (
    SELECT session_id,
           arg_max(CASE WHEN error_name IS NOT NULL THEN 'error'
                        WHEN completed_at IS NULL THEN 'running'
                        ELSE 'completed' END, created_at) AS status,
           first(agent ORDER BY created_at NULLS LAST, id) AS first_agent,
           max(completed_at) AS last_completed
    FROM messages
    WHERE role = 'assistant' AND session_id IN (SELECT id FROM roots)
    GROUP BY session_id
),
traces AS (
    SELECT t.id AS trace_id, t.session_id,
           coalesce(c.trace_id, CASE WHEN ps.id IS NOT NULL AND ps.parent_id IS NULL THEN 'root_' || t.session_id END)
               AS parent_trace_id,
           t.child_session_id, m.agent AS parent_agent, t.subagent_type, t.tool_status AS status,
           t.started_at, t.ended_at
    FROM scoped_task t
    LEFT JOIN messages m ON m.id = t.message_id
    LEFT JOIN creator c ON c.child_session_id = t.session_id AND c.trace_id <> t.id
    LEFT JOIN sessions ps ON ps.id = t.session_id
    UNION ALL
    SELECT 'root_' || s.id, s.id, NULL, s.id, NULL, rs.first_agent, rs.status,
           s.created_at, coalesce(rs.last_completed, s.updated_at)
    FROM sessions s JOIN roots r ON r.id = s.id
    LEFT JOIN root_state rs ON rs.session_id = s.id
)
SELECT tr.trace_id, tr.session_id, tr.parent_trace_id, tr.child_session_id, tr.parent_agent,
       tr.subagent_type, tr.status, tr.started_at, tr.ended_at,
       coalesce(u.tokens_input, 0), coalesce(u.tokens_output, 0), coalesce(u.tokens_reasoning, 0),
       coalesce(u.tokens_cache_read, 0), coalesce(u.tokens_cache_write, 0), coalesce(u.cost, 0)
FROM traces tr LEFT JOIN usage u ON u.session_id = tr.child_session_id
ORDER BY tr.trace_id",
        ctes = scoped_ctes(input)
    )
}

fn delegations_sql(input: &str) -> String {
    format!(
        "{ctes}
SELECT t.id, t.session_id, t.child_session_id, m.agent, t.subagent_type, t.started_at
FROM task t LEFT JOIN messages m ON m.id = t.message_id
WHERE t.session_id IN (SELECT session_id FROM scope)
ORDER BY t.id",
        ctes = scoped_ctes(input)
    )
}

fn scope_sql(input: &str) -> String {
    format!("{ctes} SELECT session_id FROM scope WHERE session_id IS NOT NULL ORDER BY 1", ctes = scoped_ctes(input))
}

impl Reader {
    /// Computes the derived rows for `scope` from committed data.
    pub fn compute_derived(&self, scope: &TraceScope) -> Result<DerivedRows> {
        let input = match scope {
            TraceScope::All => "SELECT id AS session_id FROM sessions UNION SELECT session_id FROM parts".to_owned(),
            TraceScope::Sessions(sessions) if sessions.is_empty() => return Ok(DerivedRows { scope: Some(Vec::new()), ..Default::default() }),
            TraceScope::Sessions(sessions) => {
                let values: Vec<String> = sessions.iter().map(|id| format!("({})", sql_string(id))).collect();
                format!("SELECT * FROM (VALUES {}) AS v(session_id)", values.join(", "))
            }
        };
        let expanded = match scope {
            TraceScope::All => None,
            TraceScope::Sessions(_) => Some(self.query_strings(&scope_sql(&input), "expanding the trace scope")?),
        };
        Ok(DerivedRows {
            scope: expanded,
            traces: self.query_values(&traces_sql(&input), 15, "computing agent traces")?,
            delegations: self.query_values(&delegations_sql(&input), 6, "computing delegations")?,
        })
    }
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
            move |source| crate::StoreError::Query { path, context, source }
        };
        match &rows.scope {
            None => connection.execute_batch("DELETE FROM agent_traces; DELETE FROM delegations;").map_err(fail("clearing traces"))?,
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
                         DELETE FROM delegations WHERE session_id IN (SELECT session_id FROM temp.stage_trace_scope);",
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
        Ok(())
    }

    /// Recomputes the derived rows of `scope` through a fresh reader and writes them.
    pub fn refresh_derived(&mut self, scope: &TraceScope) -> Result<DerivedRows> {
        let rows = self.reader()?.compute_derived(scope)?;
        self.replace_derived(&rows)?;
        Ok(rows)
    }
}
