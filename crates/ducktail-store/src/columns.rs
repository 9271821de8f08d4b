//! Records as Arrow batches in their tables' column order: what the writer appends, what the
//! transcript writer merges row by row, and what the storage-ceiling bench appends. One builder
//! per table, so a column added by a migration is added in one place (a unit test holds each
//! builder to its table). This module only converts: it never touches a connection.

use arrow_array::RecordBatch;
use ducktail_model::{FileDiffRecord, FileOperation, MessageRecord, PartRecord, ProjectRecord, SessionRecord, StepEvent, TodoRecord};

use crate::arrow_rows::ArrowRows;

/// `projects` rows (a record with the version it is written at).
pub fn project_columns(rows: &[(&ProjectRecord, i64)], source: &str) -> RecordBatch {
    ArrowRows::new(rows)
        .text("id", |(project, _)| Some(&project.id))
        .text("worktree", |(project, _)| project.worktree.as_deref())
        .text("vcs", |(project, _)| project.vcs.as_deref())
        .text("name", |(project, _)| project.name.as_deref())
        .timestamp_ms("created_at", |(project, _)| project.created_at)
        .timestamp_ms("updated_at", |(project, _)| project.updated_at)
        .timestamp_ms("initialized_at", |(project, _)| project.initialized_at)
        .text("source", |_| Some(source))
        .text("raw", |(project, _)| Some(&project.raw.json))
        .int64("raw_size", |(project, _)| Some(project.raw.size_bytes))
        .boolean("raw_truncated", |(project, _)| Some(project.raw.truncated))
        .int64("version_ms", |(_, version)| Some(*version))
        .finish()
}

/// `sessions` rows (a record with the version it is written at), in the table's column order.
pub fn session_columns(rows: &[(&SessionRecord, i64)], source: &str, app: &str) -> RecordBatch {
    ArrowRows::new(rows)
        .text("id", |(session, _)| Some(&session.id))
        .text("project_id", |(session, _)| session.project_id.as_deref())
        .text("parent_id", |(session, _)| session.parent_id.as_deref())
        .text("slug", |(session, _)| session.slug.as_deref())
        .text("title", |(session, _)| session.title.as_deref())
        .text("directory", |(session, _)| session.directory.as_deref())
        .text("version", |(session, _)| session.version.as_deref())
        .timestamp_ms("created_at", |(session, _)| session.created_at)
        .timestamp_ms("updated_at", |(session, _)| session.updated_at)
        .timestamp_ms("archived_at", |(session, _)| session.archived_at)
        .int64("summary_additions", |(session, _)| session.summary_additions)
        .int64("summary_deletions", |(session, _)| session.summary_deletions)
        .int64("summary_files", |(session, _)| session.summary_files)
        .text("share_url", |(session, _)| session.share_url.as_deref())
        .text("source", |_| Some(source))
        .text("raw", |(session, _)| Some(&session.raw.json))
        .int64("raw_size", |(session, _)| Some(session.raw.size_bytes))
        .boolean("raw_truncated", |(session, _)| Some(session.raw.truncated))
        .int64("version_ms", |(_, version)| Some(*version))
        .text("app", |_| Some(app))
        .finish()
}

/// `messages` rows, in the table's column order.
pub fn message_columns(rows: &[(&MessageRecord, i64)], source: &str, app: &str) -> RecordBatch {
    ArrowRows::new(rows)
        .text("id", |(message, _)| Some(&message.id))
        .text("session_id", |(message, _)| Some(&message.session_id))
        .text("role", |(message, _)| message.role.as_deref())
        .text("parent_id", |(message, _)| message.parent_id.as_deref())
        .text("agent", |(message, _)| message.agent.as_deref())
        .text("mode", |(message, _)| message.mode.as_deref())
        .text("provider_id", |(message, _)| message.provider_id.as_deref())
        .text("model_id", |(message, _)| message.model_id.as_deref())
        .float64("cost", |(message, _)| message.cost)
        .int64("tokens_input", |(message, _)| Some(message.tokens.input))
        .int64("tokens_output", |(message, _)| Some(message.tokens.output))
        .int64("tokens_reasoning", |(message, _)| Some(message.tokens.reasoning))
        .int64("tokens_cache_read", |(message, _)| Some(message.tokens.cache_read))
        .int64("tokens_cache_write", |(message, _)| Some(message.tokens.cache_write))
        .int64("tokens_total", |(message, _)| message.tokens.total)
        .text("finish_reason", |(message, _)| message.finish_reason.as_deref())
        .text("error_name", |(message, _)| message.error_name.as_deref())
        .text("error_message", |(message, _)| message.error_message.as_deref())
        .boolean("is_summary", |(message, _)| Some(message.is_summary))
        .timestamp_ms("created_at", |(message, _)| message.created_at)
        .timestamp_ms("completed_at", |(message, _)| message.completed_at)
        .text("source", |_| Some(source))
        .text("raw", |(message, _)| Some(&message.raw.json))
        .int64("raw_size", |(message, _)| Some(message.raw.size_bytes))
        .boolean("raw_truncated", |(message, _)| Some(message.raw.truncated))
        .int64("version_ms", |(_, version)| Some(*version))
        .text("app", |_| Some(app))
        .text("cost_source", |(message, _)| message.cost_source)
        .float64("list_cost", |(message, _)| message.list_cost)
        .finish()
}

/// `parts` rows, in the table's column order.
pub fn part_columns(rows: &[(&PartRecord, i64)], source: &str, app: &str) -> RecordBatch {
    ArrowRows::new(rows)
        .text("id", |(part, _)| Some(&part.id))
        .text("session_id", |(part, _)| Some(&part.session_id))
        .text("message_id", |(part, _)| Some(&part.message_id))
        .text("part_type", |(part, _)| Some(&part.part_type))
        .text("text", |(part, _)| part.text.as_deref())
        .text("tool_name", |(part, _)| part.tool_name.as_deref())
        .text("tool_status", |(part, _)| part.tool_status.as_deref())
        .text("call_id", |(part, _)| part.call_id.as_deref())
        .text("tool_title", |(part, _)| part.tool_title.as_deref())
        .text("tool_input", |(part, _)| part.tool_input.as_deref())
        .text("tool_output", |(part, _)| part.tool_output.as_deref())
        .text("tool_error", |(part, _)| part.tool_error.as_deref())
        .text("child_session_id", |(part, _)| part.child_session_id.as_deref())
        .text("subagent_type", |(part, _)| part.subagent_type.as_deref())
        .timestamp_ms("started_at", |(part, _)| part.started_at)
        .timestamp_ms("ended_at", |(part, _)| part.ended_at)
        .boolean("content_truncated", |(part, _)| Some(part.content_truncated))
        .text("source", |_| Some(source))
        .text("raw", |(part, _)| Some(&part.raw.json))
        .int64("raw_size", |(part, _)| Some(part.raw.size_bytes))
        .boolean("raw_truncated", |(part, _)| Some(part.raw.truncated))
        .int64("version_ms", |(_, version)| Some(*version))
        .text("app", |_| Some(app))
        .finish()
}

/// `step_events` rows (a step takes its part's version), in the table's column order.
pub fn step_columns(rows: &[(&StepEvent, i64)], app: &str) -> RecordBatch {
    ArrowRows::new(rows)
        .text("id", |(step, _)| Some(&step.id))
        .text("session_id", |(step, _)| Some(&step.session_id))
        .text("message_id", |(step, _)| Some(&step.message_id))
        .text("event_type", |(step, _)| Some(step.event_type))
        .text("reason", |(step, _)| step.reason.as_deref())
        .float64("cost", |(step, _)| step.cost)
        .int64("tokens_input", |(step, _)| Some(step.tokens.input))
        .int64("tokens_output", |(step, _)| Some(step.tokens.output))
        .int64("tokens_reasoning", |(step, _)| Some(step.tokens.reasoning))
        .int64("tokens_cache_read", |(step, _)| Some(step.tokens.cache_read))
        .int64("tokens_cache_write", |(step, _)| Some(step.tokens.cache_write))
        .int64("tokens_total", |(step, _)| step.tokens.total)
        .text("snapshot", |(step, _)| step.snapshot.as_deref())
        .text("app", |_| Some(app))
        .text("cost_source", |(step, _)| step.cost_source)
        .float64("list_cost", |(step, _)| step.list_cost)
        .int64("version_ms", |(_, version)| Some(*version))
        .finish()
}

/// `file_operations` rows.
pub fn operation_columns(rows: &[&FileOperation]) -> RecordBatch {
    ArrowRows::new(rows)
        .text("id", |operation| Some(&operation.id))
        .text("session_id", |operation| Some(&operation.session_id))
        .text("message_id", |operation| Some(&operation.message_id))
        .text("operation", |operation| Some(&operation.operation))
        .text("file_path", |operation| operation.file_path.as_deref())
        .text("status", |operation| operation.status.as_deref())
        .int64("additions", |operation| operation.additions)
        .int64("deletions", |operation| operation.deletions)
        .timestamp_ms("started_at", |operation| operation.started_at)
        .finish()
}

/// `todos` rows, each item with its list's version.
pub fn todo_columns(rows: &[(&TodoRecord, i64)], source: &str) -> RecordBatch {
    ArrowRows::new(rows)
        .text("session_id", |(item, _)| Some(&item.session_id))
        // INTEGER: a position past it fails the batch, as the cast of a bound value would.
        .int32("position", |(item, _)| i32::try_from(item.position).ok())
        .text("todo_id", |(item, _)| item.todo_id.as_deref())
        .text("content", |(item, _)| item.content.as_deref())
        .text("status", |(item, _)| item.status.as_deref())
        .text("priority", |(item, _)| item.priority.as_deref())
        .text("source", |_| Some(source))
        .int64("version_ms", |(_, version)| Some(*version))
        .finish()
}

/// `file_diffs` rows.
pub fn diff_columns(rows: &[&FileDiffRecord], source: &str) -> RecordBatch {
    ArrowRows::new(rows)
        .text("session_id", |item| Some(&item.session_id))
        .int32("position", |item| i32::try_from(item.position).ok())
        .text("file", |item| item.file.as_deref())
        .text("status", |item| item.status.as_deref())
        .int64("additions", |item| item.additions)
        .int64("deletions", |item| item.deletions)
        .int64("before_bytes", |item| item.before_bytes)
        .int64("after_bytes", |item| item.after_bytes)
        .text("source", |_| Some(source))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};

    #[test]
    fn each_builder_makes_its_tables_columns_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.duckdb"), &StoreOptions::default()).unwrap();
        let builders = [
            ("projects", project_columns(&[], "")),
            ("sessions", session_columns(&[], "", "")),
            ("messages", message_columns(&[], "", "")),
            ("parts", part_columns(&[], "", "")),
            ("step_events", step_columns(&[], "")),
            ("file_operations", operation_columns(&[])),
            ("todos", todo_columns(&[], "")),
            ("file_diffs", diff_columns(&[], "")),
        ];
        for (table, batch) in builders {
            let built: Vec<String> = batch.schema().fields().iter().map(|field| field.name().clone()).collect();
            let mut statement = store
                .connection
                .prepare("SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' AND table_name = $1 ORDER BY column_index")
                .unwrap();
            let stored: Vec<String> = statement.query_map([table], |row| row.get(0)).unwrap().collect::<duckdb::Result<_>>().unwrap();
            assert_eq!(built, stored, "{table}: a migration added a column its builder does not make");
        }
    }
}
