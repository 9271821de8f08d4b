//! The daemon's HTTP server: health probes, the read API served from reader connections, and
//! the web dashboard that is a client of that API.
//!
//! # Layout
//! - [`serve`] builds the actix-web server on a bound listener.
//! - `wire` holds every request and response type; `routes` the probes, stats, SQL and
//!   metrics; `read_routes` sessions, projects, timelines, traces and usage; `events` the
//!   server-sent event stream; `health` the detailed health verdict; `auth` bearer tokens and
//!   the dashboard's token cookie; `dashboard` the embedded page, its assets and the login;
//!   `revalidation` the ETags and `304`s of the answers that only a commit can change;
//!   `answer_cache` the answers kept, gzipped once, and served again while fresh enough;
//!   [`ApiError`] maps failures to a status code and a JSON body.
//!
//! It only reads: every query runs on a reader connection on the blocking pool, never on the
//! writer's connection and never on the async executor. It names no DuckDB type. Its workers
//! run below the pipeline's scheduling priority: it must never slow a commit.

mod answer_cache;
mod auth;
mod dashboard;
mod events;
mod export_routes;
mod health;
mod read_routes;
mod revalidation;
mod routes;
mod wire;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use ducktail_pipeline::settings::HttpSettings;
use ducktail_pipeline::status::StatusBoard;
use ducktail_store::ReaderPool;

pub use wire::{ApiError, BuildInfo};

/// Parses an RFC 3339 instant or a `YYYY-MM-DD` day (midnight UTC) into Unix microseconds, the
/// way the API parses `since` and `until`; the error names `name`.
pub fn parse_instant(name: &str, text: &str) -> Result<i64, String> {
    read_routes::parse_instant(name, text).map_err(|error| error.to_string())
}

/// The `next_cursor` text `/api/sessions` gives for `cursor` under `sort` and order, so the
/// CLI's own reads answer in the API's shape.
pub fn session_cursor(cursor: &(i64, String), sort: ducktail_store::SessionSort, ascending: bool) -> String {
    read_routes::encode_cursor(cursor, sort, ascending)
}

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// Reader connections.
    pub readers: ReaderPool,
    /// Pipeline counters and readiness.
    pub board: Arc<StatusBoard>,
    /// `[http]` settings.
    pub settings: HttpSettings,
    /// `[health]` thresholds.
    pub health: ducktail_pipeline::settings::HealthSettings,
    /// What the serving binary is (version, commit, DuckDB), reported by stats and health.
    pub build: BuildInfo,
    /// The live OTLP exporter, when `[export.otlp]` is enabled (backfills go through it).
    pub otlp_exporter: Option<actix::Addr<ducktail_pipeline::export::OtlpExporter>>,
    /// The `machine` of Parquet exports asked without one.
    pub export_machine: String,
}

/// Lowers the calling thread's scheduling priority by `increment` (Linux keeps a nice value per
/// thread). The HTTP workers run this way so that a flood of requests takes the cores the
/// pipeline leaves idle, not the Writer's: readers never fight the writer. Failure only logs.
fn lower_this_threads_priority(increment: i32) {
    if increment == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let thread = Some(rustix::thread::gettid());
        let lowered =
            rustix::process::getpriority_process(thread).and_then(|current| rustix::process::setpriority_process(thread, (current + increment).min(19)));
        if let Err(error) = lowered {
            tracing::warn!(increment, %error, "could not lower an HTTP worker's priority; requests then compete with commits for the cores");
        }
    }
}

/// Builds the server on `listener`. The caller runs it and stops it at shutdown; signals are
/// left to the caller.
pub fn serve(listener: TcpListener, state: HttpState) -> std::io::Result<actix_web::dev::Server> {
    let workers = state.settings.worker_count();
    let build = &state.build;
    state.board.metrics.build_info.with_label_values(&[&build.version, &build.commit, &build.duckdb_version]).set(1);
    let data = web::Data::new(state);
    // One for every worker: a view polled through any of them is computed once per commit.
    let answers = std::sync::Arc::new(answer_cache::AnswerCache::new(data.settings.reused_answers));
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    let computing = std::sync::Arc::new(tokio::sync::Semaphore::new(cores));
    let live = web::Data::new(routes::LiveFigures::new(data.settings.reused_answers, computing.clone()));
    let max_staleness = data.settings.max_staleness;
    let worker_nice = data.settings.worker_nice;
    let server = HttpServer::new(move || {
        // Called once on each worker's thread: its queries' blocking threads, spawned from it,
        // inherit the priority.
        lower_this_threads_priority(worker_nice);
        let board = data.board.clone();
        let token = data.settings.token.clone();
        App::new()
            // Innermost, so only authorized requests are answered, even with a 304 or a reused answer.
            .wrap(answer_cache::ReuseAnswers { cache: answers.clone(), board: data.board.clone(), computing: computing.clone(), max_staleness })
            // Outside the reuse (a later `wrap` is an outer one): kept answers arrive gzipped
            // already or marked identity, and pass as they are; every other answer is compressed
            // here for the clients that accept it.
            .wrap(actix_web::middleware::Compress::default())
            .wrap_fn(move |request, service| {
                let headers = request.headers();
                let authorized = token.is_empty()
                    || matches!(request.path(), "/livez" | "/readyz")
                    || dashboard::is_public(request.path())
                    || auth::bearer_matches(headers.get(actix_web::http::header::AUTHORIZATION), &token)
                    || auth::cookie_matches(headers.get(actix_web::http::header::COOKIE), &token);
                let response: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> = if authorized {
                    let response = actix_web::dev::Service::call(service, request);
                    Box::pin(async move { Ok(response.await?.map_into_boxed_body()) })
                } else {
                    let refused = request.into_response(actix_web::ResponseError::error_response(&ApiError::unauthorized(
                        "this server requires Authorization: Bearer <http.token> (browsers: POST /api/login)",
                    )));
                    Box::pin(std::future::ready(Ok(refused)))
                };
                response
            })
            .wrap_fn(move |request, service| {
                // Labels by route pattern, not raw path, so ids do not explode the label set.
                let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
                let started = std::time::Instant::now();
                let response = actix_web::dev::Service::call(service, request);
                let metrics = board.clone();
                async move {
                    let response = response.await?;
                    let metrics = &metrics.metrics;
                    metrics.api_requests.with_label_values(&[route.as_str(), response.status().as_str()]).inc();
                    metrics.api_seconds.with_label_values(&[route.as_str()]).observe(started.elapsed().as_secs_f64());
                    Ok(response)
                }
            })
            .app_data(data.clone())
            .app_data(live.clone())
            .app_data(web::JsonConfig::default().limit(1 << 20).error_handler(|error, _| ApiError::bad_request(error.to_string()).into()))
            .configure(routes::configure)
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(server)
}
