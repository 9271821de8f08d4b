//! `POST /api/export/otlp` and `POST /api/export/parquet`: the backfills `ducktail export`
//! asks a running daemon for (the daemon holds the database). Both write outside ducktail (a
//! backend, a folder), so with `http.token` set they need it like every other route.

use actix_web::{post, web, HttpResponse};
use serde::Deserialize;

use crate::wire::ApiError;
use crate::HttpState;

/// The body of `POST /api/export/otlp`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtlpBackfill {
    /// Only sessions created at or after (RFC 3339 or YYYY-MM-DD).
    since: Option<String>,
}

#[post("/api/export/otlp")]
pub(crate) async fn export_otlp(state: web::Data<HttpState>, body: web::Json<OtlpBackfill>) -> Result<HttpResponse, ApiError> {
    let Some(exporter) = &state.otlp_exporter else {
        return Err(ApiError::forbidden(
            "this daemon does not export OTLP: set [export.otlp] enabled = true in its config and restart it, or stop it and run `ducktail export otlp` alone",
        ));
    };
    let since_us = body.since.as_deref().map(|text| crate::read_routes::parse_instant("since", text)).transpose()?;
    let report = exporter
        .send(ducktail_pipeline::export::Backfill { since_us })
        .await
        .map_err(|error| ApiError::internal(format!("the OTLP exporter is not running: {error}")))?
        .map_err(|error| ApiError::internal(format!("exporting failed (nothing sent is lost; try again once the backend answers): {error}")))?;
    let otlp = state.board.otlp();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "endpoint": otlp.endpoint,
        "roots": report.roots,
        "sent": report.sent,
        "already_sent": report.already_sent,
        "not_final": report.pending,
        "requests": report.requests,
        "rejected": report.rejected,
    })))
}

/// The body of `POST /api/export/parquet`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParquetRequest {
    /// The export folder: an absolute path on the daemon's machine.
    dir: std::path::PathBuf,
    since: Option<String>,
    #[serde(default)]
    tables: Vec<String>,
    machine: Option<String>,
}

#[post("/api/export/parquet")]
pub(crate) async fn export_parquet(state: web::Data<HttpState>, body: web::Json<ParquetRequest>) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !body.dir.is_absolute() {
        return Err(ApiError::bad_request(format!("dir {} must be an absolute path (the daemon's working directory is not yours)", body.dir.display())));
    }
    let options = ducktail_export::parquet::ParquetOptions {
        dir: body.dir,
        since: body.since,
        tables: body.tables,
        machine: body.machine.unwrap_or_else(|| state.export_machine.clone()),
    };
    let (readers, board) = (state.readers.clone(), state.board.clone());
    let report = web::block(move || ducktail_pipeline::export::export_parquet_now(&readers, &options, &board, false))
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?
        .map_err(|error| match error {
            ducktail_export::parquet::ParquetError::UnknownTable { .. } | ducktail_export::parquet::ParquetError::BadSince(_) => {
                ApiError::bad_request(error.to_string())
            }
            other => ApiError::internal(other.to_string()),
        })?;
    Ok(HttpResponse::Ok().json(report))
}
