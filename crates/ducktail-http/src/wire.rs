//! Request and response types of the HTTP API, and the JSON error type.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

/// An API failure: a status code and a message, sent as `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }
    /// 401: a bearer token is required and was missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::UNAUTHORIZED, message: message.into() }
    }
    /// 404: no such record.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, message: message.into() }
    }
    /// 403: the feature is turned off.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::FORBIDDEN, message: message.into() }
    }
    /// 500: the server failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: message.into() }
    }
    /// 504: the query ran out of time.
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::GATEWAY_TIMEOUT, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody { error: &self.message })
    }
}

/// Body of every error response.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    /// What went wrong and, where there is one, the fix.
    pub error: &'a str,
}

/// `GET /livez`, `GET /readyz`.
#[derive(Serialize)]
pub struct Probe {
    /// `ok`, or `starting` while the catch-up runs.
    pub status: &'static str,
}

/// What the serving binary is; in `/api/stats` and `/health/detailed`, and what `ducktail
/// --version` prints.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// ducktail's version (semver).
    pub version: String,
    /// The git commit it was built from, `-dirty` when tracked files differed; `unknown`
    /// outside a git checkout.
    pub commit: String,
    /// The DuckDB library compiled in, as DuckDB reports it (`v1.4.1`).
    pub duckdb_version: String,
}

/// `GET /api/stats`.
#[derive(Serialize)]
pub struct Stats {
    /// The serving binary.
    pub build: BuildInfo,
    /// Rows per table.
    pub tables: std::collections::BTreeMap<&'static str, i64>,
    /// Files per `file_index.status`.
    pub files_by_status: std::collections::BTreeMap<String, i64>,
    /// Newest `file_index.indexed_at`.
    pub last_indexed_at: Option<String>,
    /// Unix milliseconds of the daemon's last commit, if any.
    pub last_commit_unix_ms: Option<u64>,
    /// Whether the startup catch-up has committed.
    pub ready: bool,
    /// Paths waiting to be batched.
    pub pending_files: usize,
    /// Batches being decoded or written.
    pub batches_in_flight: usize,
    /// Event→commit latency percentiles over recent files, in milliseconds.
    pub latency_ms: LatencyMs,
    /// Actor restarts since start.
    pub actor_restarts: u64,
    /// Following OpenCode's `opencode.db`.
    pub opencode_db: OpencodeDbStatus,
    /// Why file events are incomplete (the inotify watch limit), if they are.
    pub watch_problem: Option<String>,
    /// Why commits are failing (retried with backoff), while they are.
    pub commit_failure: Option<String>,
    /// The newest files (and database rows, transcript lines) recorded as errors, newest first,
    /// at most 10: path, reason, when.
    pub recent_errors: Vec<ducktail_store::RecentError>,
}

/// Where following `opencode.db` stands.
#[derive(Serialize, Debug, Clone)]
pub struct OpencodeDbStatus {
    /// `off`, `waiting` (no file yet), `starting`, `following` or `failing`.
    pub state: &'static str,
    /// Records held from it, while following.
    pub records: Option<usize>,
    /// The last error, while failing.
    pub error: Option<String>,
}

impl From<ducktail_pipeline::status::DatabaseState> for OpencodeDbStatus {
    fn from(state: ducktail_pipeline::status::DatabaseState) -> Self {
        use ducktail_pipeline::status::DatabaseState;
        let name = state.name();
        match state {
            DatabaseState::Following { records } => OpencodeDbStatus { state: name, records: Some(records), error: None },
            DatabaseState::Failing { error } => OpencodeDbStatus { state: name, records: None, error: Some(error) },
            _ => OpencodeDbStatus { state: name, records: None, error: None },
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Serialize)]
pub struct LatencyMs {
    /// Samples.
    pub samples: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// `POST /api/sql` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT / WITH / VALUES / DESCRIBE / SHOW / SUMMARIZE statement.
    pub sql: String,
    /// Row cap (at most `http.sql_max_rows`).
    pub max_rows: Option<usize>,
}

/// `POST /api/sql` response.
#[derive(Serialize)]
pub struct SqlResponse {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Whether rows beyond the cap were left out.
    pub truncated: bool,
}

// ---- GET /health/detailed -------------------------------------------------------------------

/// `GET /health/detailed`: 200 when healthy, 503 when any `[health]` threshold is crossed.
#[derive(Serialize)]
pub struct HealthDetailed {
    /// `healthy` or `degraded`.
    pub status: &'static str,
    /// The serving binary.
    pub build: BuildInfo,
    /// Each crossed threshold: what, its value and its limit.
    pub problems: Vec<String>,
    /// The machine and this process.
    pub system: SystemHealth,
    /// The database file.
    pub database: DatabaseHealth,
    /// The live pipeline.
    pub pipeline: PipelineHealth,
    /// The exports: OTLP (live) and Parquet (scheduled or asked for).
    pub export: ExportHealth,
}

/// Where the exports stand.
#[derive(Serialize)]
pub struct ExportHealth {
    /// The OTLP export.
    pub otlp: ducktail_pipeline::status::OtlpExportState,
    /// The Parquet export.
    pub parquet: ducktail_pipeline::status::ParquetExportState,
}

/// Machine and process figures.
#[derive(Serialize)]
pub struct SystemHealth {
    /// Whole-machine CPU use since the previous health request, in percent.
    pub cpu_percent: f32,
    /// This process's CPU use since the previous health request, in percent of one core.
    pub process_cpu_percent: f32,
    /// Installed memory.
    pub memory_total_bytes: u64,
    /// Memory available to new work.
    pub memory_available_bytes: u64,
    /// This process's resident memory.
    pub process_memory_bytes: u64,
    /// Free space on the database's volume (when the volume is found).
    pub disk_free_bytes: Option<u64>,
    /// Size of the database's volume.
    pub disk_total_bytes: Option<u64>,
}

/// Database file figures.
#[derive(Serialize)]
pub struct DatabaseHealth {
    /// The DuckDB file.
    pub path: String,
    /// Its size.
    pub size_bytes: u64,
    /// Its write-ahead log's size (folded in at each checkpoint).
    pub wal_bytes: u64,
    /// Unix milliseconds of the last checkpoint since start, if any.
    pub last_checkpoint_unix_ms: Option<u64>,
}

/// Pipeline figures.
#[derive(Serialize)]
pub struct PipelineHealth {
    /// Whether the startup catch-up has committed.
    pub ready: bool,
    /// Paths waiting to be batched.
    pub pending_files: usize,
    /// Batches being decoded or written.
    pub batches_in_flight: usize,
    /// Milliseconds since the last commit, if any.
    pub last_commit_age_ms: Option<u64>,
    /// Event→commit p95 over commits of the last minute, if any.
    pub latency_p95_ms_last_minute: Option<f64>,
    /// Files recorded as errors in the last hour.
    pub errors_last_hour: i64,
    /// Actor restarts since start.
    pub actor_restarts: u64,
    /// Following OpenCode's `opencode.db`.
    pub opencode_db: OpencodeDbStatus,
    /// Why file events are incomplete (the inotify watch limit), if they are.
    pub watch_problem: Option<String>,
    /// Why commits are failing (retried with backoff), while they are.
    pub commit_failure: Option<String>,
}

// ---- Span API ----------------------------------------------------------------------------------

/// `GET /api/otel/services`.
#[derive(Serialize)]
pub struct OtelServices {
    /// Every service, by name.
    pub services: Vec<ducktail_store::OtelService>,
}

/// Query of `GET /api/otel/traces`.
#[derive(Debug, Deserialize)]
pub struct OtelTracesQuery {
    /// Only traces with a span of this service.
    pub service: Option<String>,
    /// Only traces that have a root span.
    #[serde(default)]
    pub root_only: bool,
    /// Started at or after: RFC 3339 or `YYYY-MM-DD` (UTC).
    pub since: Option<String>,
    /// At most this many (1–10,000; default 100).
    pub limit: Option<usize>,
}

/// `GET /api/otel/traces`.
#[derive(Serialize)]
pub struct OtelTraces {
    /// Newest first.
    pub traces: Vec<ducktail_store::OtelTraceSummary>,
}

// ---- Read API: sessions, traces, usage ------------------------------------------------------

/// Query of `GET /api/sessions`.
#[derive(Debug, Deserialize)]
pub struct SessionsQuery {
    /// Created at or after: RFC 3339 or `YYYY-MM-DD` (UTC).
    pub since: Option<String>,
    /// Created before: RFC 3339 or `YYYY-MM-DD` (UTC).
    pub until: Option<String>,
    /// Only this project id.
    pub project: Option<String>,
    /// Only sessions without a parent.
    #[serde(default)]
    pub root_only: bool,
    /// Case-insensitive substring of the title.
    pub q: Option<String>,
    /// Only sessions of this coding agent: `opencode`, `claude_code` or `codex`.
    pub app: Option<String>,
    /// Only sessions with a finish step of this model (`provider/model`, a key of usage by model).
    pub model: Option<String>,
    /// Only sessions with a finish step of this agent (a key of usage by agent).
    pub agent: Option<String>,
    /// `created` (default), `updated`, `cost` or `tokens`.
    pub sort: Option<String>,
    /// `desc` (default: newest, largest first) or `asc`.
    pub order: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /api/projects`.
#[derive(Serialize)]
pub struct ProjectsPage {
    /// By id.
    pub projects: Vec<ducktail_store::ProjectItem>,
}

/// `GET /api/sessions`.
#[derive(Serialize)]
pub struct SessionsPage {
    /// In the asked order (newest first by default).
    pub sessions: Vec<ducktail_store::SessionListItem>,
    /// Pass as `cursor`, with the same filters, sort and order, for the next page; absent on the
    /// last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/sessions/{id}/timeline`.
#[derive(Debug, Deserialize)]
pub struct TimelineQuery {
    /// Longest text, tool input or output returned per part, in characters (default 2000).
    pub max_chars: Option<usize>,
}

/// `GET /api/sessions/{id}/timeline`.
#[derive(Serialize)]
pub struct Timeline {
    /// The session.
    pub session_id: String,
    /// Messages in order, each with its parts in order.
    pub messages: Vec<ducktail_store::TimelineMessage>,
}

/// Query of `GET /api/usage`.
#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    /// `day`, `model`, `agent` or `project`.
    pub group_by: Option<String>,
    /// Messages created at or after (RFC 3339 or `YYYY-MM-DD`).
    pub since: Option<String>,
    /// Messages created before.
    pub until: Option<String>,
}

/// `GET /api/usage`.
#[derive(Serialize)]
pub struct UsageResponse {
    /// The grouping used (`day`, or two comma-separated: `day,model`).
    pub group_by: String,
    /// One row per group, ordered by key.
    pub rows: Vec<ducktail_store::UsageRow>,
    /// The rows summed (sessions are left out: one session can count in several groups).
    pub total: ducktail_store::UsageTotal,
}

/// `POST /api/login`.
#[derive(Deserialize)]
pub struct LoginRequest {
    /// The daemon's `http.token`.
    pub token: String,
}
