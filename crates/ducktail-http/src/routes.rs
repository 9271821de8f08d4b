//! HTTP handlers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use ducktail_store::{IndexStatus, COUNTED_TABLES};

use crate::answer_cache::{AnswerCache, Freshness, Weigh};

use crate::wire::*;
use crate::HttpState;

/// Longest a `POST /api/sql` query may run.
const SQL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .service(livez)
        .service(readyz)
        .service(stats)
        .service(sql)
        .service(crate::events::events)
        .service(metrics)
        .service(crate::health::health_detailed)
        .service(crate::dashboard::index)
        .service(crate::dashboard::static_asset)
        .service(crate::dashboard::login)
        .service(crate::export_routes::export_otlp)
        .service(crate::export_routes::export_parquet);
    config
        .service(crate::read_routes::sessions)
        .service(crate::read_routes::projects)
        .service(crate::read_routes::session)
        .service(crate::read_routes::timeline)
        .service(crate::read_routes::trace)
        .service(crate::read_routes::usage)
        .service(crate::read_routes::otel_services)
        .service(crate::read_routes::otel_traces)
        .service(crate::read_routes::otel_trace);
}

#[get("/metrics")]
async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    let pipeline = state.board.pipeline_status();
    let metrics = &state.board.metrics;
    metrics.pending_files.set(pipeline.pending as i64);
    metrics.batches_in_flight.set(pipeline.in_flight as i64);
    metrics.database_bytes.set(database_bytes(state.readers.database_path()) as i64);
    let board = &state.board;
    metrics.ready.set(i64::from(board.is_ready()));
    metrics.commit_failing.set(i64::from(board.commit_failure().is_some()));
    metrics.watch_incomplete.set(i64::from(board.watch_problem().is_some()));
    metrics.opencode_db_failing.set(i64::from(matches!(board.database_state(), ducktail_pipeline::status::DatabaseState::Failing { .. })));
    metrics.last_commit_timestamp_seconds.set(board.last_commit_unix_ms.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1_000.0);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics.render())
}

/// The database file plus its write-ahead log, in bytes (0 for what does not exist).
fn database_bytes(path: &std::path::Path) -> u64 {
    let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |metadata| metadata.len());
    size(path) + size(&std::path::PathBuf::from(format!("{}.wal", path.display())))
}

#[get("/livez")]
async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(Probe { status: "ok" })
}

#[get("/readyz")]
async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    if state.board.is_ready() {
        HttpResponse::Ok().json(Probe { status: "ok" })
    } else {
        HttpResponse::ServiceUnavailable().json(Probe { status: "starting" })
    }
}

/// How many of the newest failed files `/api/stats` lists.
const RECENT_ERRORS: usize = 10;

/// What `/api/stats` shares between requests: its database part (row counts, files by status,
/// the newest errors) is reused under the read API's rules ([`crate::answer_cache`]); the
/// pipeline's live figures are read per request.
pub(crate) struct LiveFigures {
    database_part: AnswerCache<Arc<IndexStatus>>,
    turns: Arc<tokio::sync::Semaphore>,
}

impl LiveFigures {
    pub(crate) fn new(reused_answers: usize, turns: Arc<tokio::sync::Semaphore>) -> LiveFigures {
        LiveFigures { database_part: AnswerCache::new(reused_answers.min(1)), turns }
    }
}

impl Weigh for Arc<IndexStatus> {
    fn bytes(&self) -> usize {
        // Small and one of a kind: the byte bound is for the read API's answers.
        0
    }
}

#[get("/api/stats")]
async fn stats(request: HttpRequest, state: web::Data<HttpState>, live: web::Data<LiveFigures>) -> Result<HttpResponse, ApiError> {
    let tolerance = crate::answer_cache::tolerance_of(request.headers(), state.settings.max_staleness);
    let freshness = Freshness { current: crate::revalidation::current_version(&state.board), tolerance, now: Instant::now() };
    let status = crate::answer_cache::reuse_or_compute(&live.database_part, &live.turns, "status", freshness, || {
        let readers = state.readers.clone();
        async move {
            let status = web::block(move || readers.pooled().and_then(|reader| reader.status(RECENT_ERRORS)))
                .await
                .map_err(|error| ApiError::internal(error.to_string()))?
                .map_err(|error| ApiError::internal(error.to_string()))?;
            Ok::<_, ApiError>(Arc::new(status))
        }
    })
    .await?;
    let status = IndexStatus::clone(&status);
    let pipeline = state.board.pipeline_status();
    let latency = state.board.latency_summary();
    let millis = |duration: Duration| duration.as_secs_f64() * 1_000.0;
    let last_commit = state.board.last_commit_unix_ms.load(std::sync::atomic::Ordering::Relaxed);
    let body = Stats {
        build: state.build.clone(),
        tables: COUNTED_TABLES.iter().copied().zip(status.tables.iter().map(|count| count.rows)).collect(),
        files_by_status: status.files_by_status.into_iter().collect(),
        last_indexed_at: status.last_indexed_at,
        last_commit_unix_ms: (last_commit > 0).then_some(last_commit),
        ready: state.board.is_ready(),
        pending_files: pipeline.pending,
        batches_in_flight: pipeline.in_flight,
        latency_ms: LatencyMs { samples: latency.samples, p50: millis(latency.p50), p95: millis(latency.p95), p99: millis(latency.p99) },
        actor_restarts: state.board.actor_restarts.load(std::sync::atomic::Ordering::Relaxed),
        opencode_db: state.board.database_state().into(),
        watch_problem: state.board.watch_problem(),
        commit_failure: state.board.commit_failure(),
        recent_errors: status.recent_errors,
    };
    Ok(HttpResponse::Ok().json(body))
}

#[post("/api/sql")]
async fn sql(state: web::Data<HttpState>, request: web::Json<SqlRequest>) -> Result<HttpResponse, ApiError> {
    if !state.settings.sql_enabled {
        return Err(ApiError::forbidden("the SQL API is off; set http.sql_enabled = true in the config to enable it"));
    }
    // The store refuses anything but one SELECT statement (DuckDB's parser decides), runs it in a
    // rolled-back transaction, and file access is off database-wide.
    let request = request.into_inner();
    let max_rows = request.max_rows.unwrap_or(state.settings.sql_max_rows).min(state.settings.sql_max_rows);
    let reader = state.readers.reader().map_err(|error| ApiError::internal(error.to_string()))?;
    let canceller = reader.canceller();
    let query = web::block(move || reader.query_json(&request.sql, max_rows));
    let rows = match tokio::time::timeout(SQL_TIMEOUT, query).await {
        Ok(result) => result.map_err(|error| ApiError::internal(error.to_string()))?.map_err(|error| ApiError::bad_request(error.to_string()))?,
        Err(_) => {
            canceller.cancel();
            return Err(ApiError::timeout(format!("query ran longer than {} s and was cancelled", SQL_TIMEOUT.as_secs())));
        }
    };
    Ok(HttpResponse::Ok().json(SqlResponse { columns: rows.columns, rows: rows.rows, truncated: rows.truncated }))
}
