//! The database schema as an append-only list of versioned migrations, applied at open.

/// One schema step. Migrations are append-only: never edit one that has shipped, add a new one.
pub(crate) struct Migration {
    /// Strictly increasing from 1; stored in `schema_migrations.version`.
    pub version: i32,
    /// A short name for logs and `schema_migrations.name`.
    pub name: &'static str,
    /// The statements, run in one transaction with the bookkeeping row.
    pub sql: &'static str,
}

/// The migration that added the per-session rollups (a test upgrades from before it).
#[cfg(test)]
pub(crate) const FIRST_WITH_ROLLUPS: i32 = 5;

/// The last migration that changed what the rollup tables hold: a database upgraded from before
/// it has them recomputed when it is opened for writing.
pub(crate) const ROLLUPS_LAST_CHANGED: i32 = 9;

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "opencode records, derived traces and the file index",
        sql: r#"
CREATE TABLE projects (
    id              VARCHAR NOT NULL,
    worktree        VARCHAR,
    vcs             VARCHAR,
    name            VARCHAR,
    created_at      TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ,
    initialized_at  TIMESTAMPTZ,
    source          VARCHAR NOT NULL,
    raw             VARCHAR,
    raw_size        BIGINT,
    raw_truncated   BOOLEAN
);
CREATE TABLE sessions (
    id                 VARCHAR NOT NULL,
    project_id         VARCHAR,
    parent_id          VARCHAR,
    slug               VARCHAR,
    title              VARCHAR,
    directory          VARCHAR,
    version            VARCHAR,
    created_at         TIMESTAMPTZ,
    updated_at         TIMESTAMPTZ,
    archived_at        TIMESTAMPTZ,
    summary_additions  BIGINT,
    summary_deletions  BIGINT,
    summary_files      BIGINT,
    share_url          VARCHAR,
    source             VARCHAR NOT NULL,
    raw                VARCHAR,
    raw_size           BIGINT,
    raw_truncated      BOOLEAN
);
CREATE TABLE messages (
    id                  VARCHAR NOT NULL,
    session_id          VARCHAR NOT NULL,
    role                VARCHAR,
    parent_id           VARCHAR,
    agent               VARCHAR,
    mode                VARCHAR,
    provider_id         VARCHAR,
    model_id            VARCHAR,
    cost                DOUBLE,
    tokens_input        BIGINT,
    tokens_output       BIGINT,
    tokens_reasoning    BIGINT,
    tokens_cache_read   BIGINT,
    tokens_cache_write  BIGINT,
    tokens_total        BIGINT,
    finish_reason       VARCHAR,
    error_name          VARCHAR,
    error_message       VARCHAR,
    is_summary          BOOLEAN,
    created_at          TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ,
    source              VARCHAR NOT NULL,
    raw                 VARCHAR,
    raw_size            BIGINT,
    raw_truncated       BOOLEAN
);
CREATE TABLE parts (
    id                 VARCHAR NOT NULL,
    session_id         VARCHAR NOT NULL,
    message_id         VARCHAR NOT NULL,
    part_type          VARCHAR NOT NULL,
    text               VARCHAR,
    tool_name          VARCHAR,
    tool_status        VARCHAR,
    call_id            VARCHAR,
    tool_title         VARCHAR,
    tool_input         VARCHAR,
    tool_output        VARCHAR,
    tool_error         VARCHAR,
    child_session_id   VARCHAR,
    subagent_type      VARCHAR,
    started_at         TIMESTAMPTZ,
    ended_at           TIMESTAMPTZ,
    content_truncated  BOOLEAN,
    source             VARCHAR NOT NULL,
    raw                VARCHAR,
    raw_size           BIGINT,
    raw_truncated      BOOLEAN
);
CREATE TABLE step_events (
    id                  VARCHAR NOT NULL,
    session_id          VARCHAR NOT NULL,
    message_id          VARCHAR NOT NULL,
    event_type          VARCHAR NOT NULL,
    reason              VARCHAR,
    cost                DOUBLE,
    tokens_input        BIGINT,
    tokens_output       BIGINT,
    tokens_reasoning    BIGINT,
    tokens_cache_read   BIGINT,
    tokens_cache_write  BIGINT,
    tokens_total        BIGINT,
    snapshot            VARCHAR
);
CREATE TABLE file_operations (
    id          VARCHAR NOT NULL,
    session_id  VARCHAR NOT NULL,
    message_id  VARCHAR NOT NULL,
    operation   VARCHAR NOT NULL,
    file_path   VARCHAR,
    status      VARCHAR,
    additions   BIGINT,
    deletions   BIGINT,
    started_at  TIMESTAMPTZ
);
CREATE TABLE todos (
    session_id  VARCHAR NOT NULL,
    position    INTEGER NOT NULL,
    todo_id     VARCHAR,
    content     VARCHAR,
    status      VARCHAR,
    priority    VARCHAR
);
CREATE TABLE file_diffs (
    session_id    VARCHAR NOT NULL,
    position      INTEGER NOT NULL,
    file          VARCHAR,
    status        VARCHAR,
    additions     BIGINT,
    deletions     BIGINT,
    before_bytes  BIGINT,
    after_bytes   BIGINT
);
CREATE TABLE delegations (
    id                VARCHAR NOT NULL,
    session_id        VARCHAR NOT NULL,
    child_session_id  VARCHAR NOT NULL,
    parent_agent      VARCHAR,
    child_agent       VARCHAR,
    created_at        TIMESTAMPTZ
);
CREATE TABLE agent_traces (
    trace_id            VARCHAR NOT NULL,
    session_id          VARCHAR NOT NULL,
    parent_trace_id     VARCHAR,
    child_session_id    VARCHAR NOT NULL,
    parent_agent        VARCHAR,
    subagent_type       VARCHAR,
    status              VARCHAR,
    started_at          TIMESTAMPTZ,
    ended_at            TIMESTAMPTZ,
    tokens_input        BIGINT,
    tokens_output       BIGINT,
    tokens_reasoning    BIGINT,
    tokens_cache_read   BIGINT,
    tokens_cache_write  BIGINT,
    cost                DOUBLE
);
CREATE TABLE file_index (
    file_path      VARCHAR PRIMARY KEY,
    source         VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    mtime          TIMESTAMPTZ,
    mtime_ns       BIGINT NOT NULL,
    size           BIGINT NOT NULL,
    record_id      VARCHAR,
    status         VARCHAR NOT NULL,
    error_message  VARCHAR,
    attempts       INTEGER NOT NULL,
    indexed_at     TIMESTAMPTZ NOT NULL
);
CREATE TABLE pipeline_state (
    key    VARCHAR PRIMARY KEY,
    value  VARCHAR
);
"#,
    },
    Migration {
        version: 2,
        name: "record versions and sources, for records present in two sources",
        // `version_ms` is when the source last wrote the record (a JSON file's mtime, a database
        // row's time_updated): of two sources holding one id, the newer version wins. Existing rows
        // take their file's mtime.
        sql: r#"
ALTER TABLE projects ADD COLUMN version_ms BIGINT;
ALTER TABLE sessions ADD COLUMN version_ms BIGINT;
ALTER TABLE messages ADD COLUMN version_ms BIGINT;
ALTER TABLE parts ADD COLUMN version_ms BIGINT;
ALTER TABLE todos ADD COLUMN source VARCHAR;
ALTER TABLE todos ADD COLUMN version_ms BIGINT;
ALTER TABLE file_diffs ADD COLUMN source VARCHAR;
UPDATE todos SET source = 'opencode_json';
UPDATE file_diffs SET source = 'opencode_json';
UPDATE projects SET version_ms = f.mtime_ns // 1000000
    FROM (SELECT record_id, max(mtime_ns) AS mtime_ns FROM file_index WHERE kind = 'project' GROUP BY record_id) f
    WHERE f.record_id = projects.id;
UPDATE sessions SET version_ms = f.mtime_ns // 1000000
    FROM (SELECT record_id, max(mtime_ns) AS mtime_ns FROM file_index WHERE kind = 'session' GROUP BY record_id) f
    WHERE f.record_id = sessions.id;
UPDATE messages SET version_ms = f.mtime_ns // 1000000
    FROM (SELECT record_id, max(mtime_ns) AS mtime_ns FROM file_index WHERE kind = 'message' GROUP BY record_id) f
    WHERE f.record_id = messages.id;
UPDATE parts SET version_ms = f.mtime_ns // 1000000
    FROM (SELECT record_id, max(mtime_ns) AS mtime_ns FROM file_index WHERE kind = 'part' GROUP BY record_id) f
    WHERE f.record_id = parts.id;
UPDATE todos SET version_ms = f.mtime_ns // 1000000
    FROM (SELECT record_id, max(mtime_ns) AS mtime_ns FROM file_index WHERE kind = 'todo' GROUP BY record_id) f
    WHERE f.record_id = todos.session_id;
"#,
    },
    Migration {
        version: 3,
        name: "OpenTelemetry spans from Parquet files, with per-trace and per-service summaries",
        // No key constraints: a span is identified by (trace_id, span_id) and the writer keeps one
        // row per key itself, so a duplicate span never fails its file.
        sql: r#"
CREATE TABLE parquet_files (
    file_path   VARCHAR NOT NULL,
    row_count   BIGINT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    min_time    TIMESTAMPTZ,
    max_time    TIMESTAMPTZ,
    indexed_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE spans (
    trace_id             VARCHAR NOT NULL,
    span_id              VARCHAR NOT NULL,
    parent_span_id       VARCHAR,
    service_name         VARCHAR NOT NULL,
    name                 VARCHAR NOT NULL,
    span_kind            INTEGER NOT NULL,
    start_time           TIMESTAMPTZ NOT NULL,
    end_time             TIMESTAMPTZ NOT NULL,
    start_ns             BIGINT NOT NULL,
    end_ns               BIGINT NOT NULL,
    duration_ns          BIGINT NOT NULL,
    status_code          INTEGER NOT NULL,
    status_message       VARCHAR,
    attributes           VARCHAR,
    events               VARCHAR,
    resource_attributes  VARCHAR,
    links                VARCHAR,
    trace_flags          BIGINT,
    trace_state          VARCHAR,
    file_path            VARCHAR NOT NULL
);
CREATE TABLE traces (
    trace_id       VARCHAR NOT NULL,
    root_span_id   VARCHAR,
    root_service   VARCHAR,
    root_name      VARCHAR,
    has_root       BOOLEAN NOT NULL,
    start_time     TIMESTAMPTZ NOT NULL,
    end_time       TIMESTAMPTZ NOT NULL,
    duration_ns    BIGINT NOT NULL,
    span_count     BIGINT NOT NULL,
    error_count    BIGINT NOT NULL,
    service_count  BIGINT NOT NULL,
    orphan_count   BIGINT NOT NULL
);
CREATE TABLE services (
    service_name  VARCHAR NOT NULL,
    span_count    BIGINT NOT NULL,
    trace_count   BIGINT NOT NULL,
    error_count   BIGINT NOT NULL,
    first_seen    TIMESTAMPTZ NOT NULL,
    last_seen     TIMESTAMPTZ NOT NULL
);
"#,
    },
    Migration {
        version: 4,
        name: "per-session lookups by index",
        // The session endpoints filter the large tables by session_id; without an index each
        // request scanned every row (164 ms p95 on a 1M-file database). Small tables (todos,
        // file_diffs, sessions) are scanned faster than an index is kept.
        sql: r#"
CREATE INDEX parts_by_session ON parts (session_id);
CREATE INDEX messages_by_session ON messages (session_id);
CREATE INDEX step_events_by_session ON step_events (session_id);
CREATE INDEX file_operations_by_session ON file_operations (session_id);
"#,
    },
    Migration {
        version: 5,
        name: "per-session rollups kept by the TraceBuilder",
        // The session list, the session summary and usage used to aggregate step_events, messages and
        // parts on every request (34, 60 and 126 ms p95 on a 1M-file database). These tables hold
        // the same aggregates per session; they are derived like agent_traces and recomputed with
        // them for the sessions each batch touches. Filled at open right after this migration.
        // The indexes serve the one-session lookups of the read API (a scan of 18k sessions cost
        // 1.2 ms, an index lookup 0.5 ms) and the trace tree's walk by parent.
        sql: r#"
CREATE TABLE session_stats (
    session_id          VARCHAR NOT NULL,
    messages            BIGINT NOT NULL,
    message_errors      BIGINT NOT NULL,
    tool_calls          BIGINT NOT NULL,
    tool_errors         BIGINT NOT NULL,
    steps               BIGINT NOT NULL,
    tokens_input        BIGINT NOT NULL,
    tokens_output       BIGINT NOT NULL,
    tokens_reasoning    BIGINT NOT NULL,
    tokens_cache_read   BIGINT NOT NULL,
    tokens_cache_write  BIGINT NOT NULL,
    cost                DOUBLE NOT NULL
);
CREATE TABLE session_usage (
    session_id          VARCHAR NOT NULL,
    project_id          VARCHAR,
    day                 DATE,
    provider_id         VARCHAR,
    model_id            VARCHAR,
    agent               VARCHAR,
    steps               BIGINT NOT NULL,
    tokens_input        BIGINT NOT NULL,
    tokens_output       BIGINT NOT NULL,
    tokens_reasoning    BIGINT NOT NULL,
    tokens_cache_read   BIGINT NOT NULL,
    tokens_cache_write  BIGINT NOT NULL,
    cost                DOUBLE NOT NULL
);
CREATE TABLE session_tools (
    session_id  VARCHAR NOT NULL,
    tool_name   VARCHAR NOT NULL,
    calls       BIGINT NOT NULL,
    errors      BIGINT NOT NULL,
    p50_ms      DOUBLE,
    p95_ms      DOUBLE
);
CREATE INDEX session_stats_by_session ON session_stats (session_id);
CREATE INDEX session_usage_by_session ON session_usage (session_id);
CREATE INDEX session_tools_by_session ON session_tools (session_id);
CREATE INDEX sessions_by_id ON sessions (id);
CREATE INDEX sessions_by_parent ON sessions (parent_id);
CREATE INDEX agent_traces_by_id ON agent_traces (trace_id);
CREATE INDEX agent_traces_by_parent ON agent_traces (parent_trace_id);
CREATE INDEX agent_traces_by_child_session ON agent_traces (child_session_id);
"#,
    },
    Migration {
        version: 6,
        name: "transcript sources: the app that wrote each row, logged or computed cost, read offsets",
        // Claude Code and Codex CLI transcripts are append-only JSON Lines read from an offset: a
        // file's identity (device, inode), the offset read up to and a fingerprint of its first
        // bytes decide between "read what was appended" and "read again from the start"; they sit
        // beside the file's `file_index` row (same path) in `transcript_files`, with what the
        // decoder needs to carry on mid-file (the session, the current model). `app`
        // says which coding agent wrote a row (the record tables' `source` says which reader);
        // `cost_source` says whether `cost` was logged by the agent or computed from list prices.
        // Lines no typed table holds are kept in `transcript_lines`, one row per distinct line.
        sql: r#"
ALTER TABLE sessions ADD COLUMN app VARCHAR;
ALTER TABLE messages ADD COLUMN app VARCHAR;
ALTER TABLE messages ADD COLUMN cost_source VARCHAR;
ALTER TABLE parts ADD COLUMN app VARCHAR;
ALTER TABLE step_events ADD COLUMN app VARCHAR;
ALTER TABLE step_events ADD COLUMN cost_source VARCHAR;
ALTER TABLE session_usage ADD COLUMN app VARCHAR;
UPDATE sessions SET app = 'opencode';
UPDATE messages SET app = 'opencode', cost_source = CASE WHEN cost IS NOT NULL THEN 'logged' END;
UPDATE parts SET app = 'opencode';
UPDATE step_events SET app = 'opencode', cost_source = CASE WHEN cost IS NOT NULL THEN 'logged' END;
UPDATE session_usage SET app = 'opencode';
CREATE TABLE transcript_files (
    file_path      VARCHAR PRIMARY KEY,
    device         UBIGINT NOT NULL,
    inode          UBIGINT NOT NULL,
    read_offset    UBIGINT NOT NULL,
    fingerprint    UBIGINT NOT NULL,
    decoder_state  VARCHAR
);
CREATE TABLE transcript_lines (
    session_id  VARCHAR NOT NULL,
    line_hash   BIGINT NOT NULL,
    app         VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,
    line_type   VARCHAR,
    written_at  TIMESTAMPTZ,
    raw         VARCHAR,
    raw_size    BIGINT,
    raw_truncated BOOLEAN,
    PRIMARY KEY (session_id, line_hash)
);
"#,
    },
    Migration {
        version: 7,
        name: "list-price cost beside the logged one",
        // A subscription logs cost 0; `list_cost` is what the same tokens cost at list prices,
        // filled by the store from the price table for every model it knows (NULL otherwise).
        // `pipeline_state.list_prices` remembers which table priced the rows, so a new table
        // re-prices them without reading any file again. `step_events.version_ms` is its part's,
        // which lets a transcript merge skip older row groups of this table too.
        sql: r#"
ALTER TABLE messages ADD COLUMN list_cost DOUBLE;
ALTER TABLE step_events ADD COLUMN list_cost DOUBLE;
ALTER TABLE step_events ADD COLUMN version_ms BIGINT;
UPDATE step_events SET version_ms = p.version_ms FROM parts p WHERE p.id = step_events.id;
UPDATE messages SET list_cost = cost WHERE cost_source = 'computed';
UPDATE step_events SET list_cost = cost WHERE cost_source = 'computed';
"#,
    },
    Migration {
        version: 8,
        name: "spans sent over OTLP",
        // One row per span an OTLP backend acknowledged (ids as lowercase hex, derived from the
        // records' ids, so they are the same on every export). `session_id` is the span's own
        // session: an export looks up what a session tree already sent by it.
        sql: r#"
CREATE TABLE otlp_sent (
    span_id     VARCHAR NOT NULL PRIMARY KEY,
    trace_id    VARCHAR NOT NULL,
    session_id  VARCHAR NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX otlp_sent_session ON otlp_sent (session_id);
"#,
    },
    Migration {
        version: 9,
        name: "finish steps without a price, per rollup row",
        // Finish steps whose cost is NULL (a model the price table does not know), so a total
        // can say how much it leaves out instead of reading as $0.00. Filled by the recompute
        // that follows the upgrade (`ROLLUPS_LAST_CHANGED`); the mark that derived rows are
        // complete goes with the migration, so a recompute cut short is done again by the daemon.
        sql: r#"
ALTER TABLE session_stats ADD COLUMN unpriced_steps BIGINT DEFAULT 0;
ALTER TABLE session_usage ADD COLUMN unpriced_steps BIGINT DEFAULT 0;
DELETE FROM pipeline_state WHERE key = 'derived_complete';
"#,
    },
];
