//! `GET /health/detailed`: machine, database and pipeline figures, and a verdict — `healthy`
//! (200) or `degraded` (503) — against the `[health]` thresholds, so a supervisor or load
//! balancer can act on one status code while a human reads why.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{get, web, HttpResponse};
use ducktail_pipeline::settings::HealthSettings;
use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::wire::*;
use crate::HttpState;

/// Whether a figure crossed its threshold, worded for the `problems` list.
pub(crate) fn problems(settings: &HealthSettings, pipeline: &PipelineHealth, disk_free_bytes: Option<u64>) -> Vec<String> {
    let mut problems = Vec::new();
    if pipeline.pending_files > settings.max_pending_files {
        problems.push(format!("{} files pending (health.max_pending_files = {})", pipeline.pending_files, settings.max_pending_files));
    }
    if let Some(p95) = pipeline.latency_p95_ms_last_minute {
        if p95 > settings.max_latency_p95_ms as f64 {
            problems.push(format!("event→commit p95 {p95:.0} ms over the last minute (health.max_latency_p95_ms = {})", settings.max_latency_p95_ms));
        }
    }
    let stalled_ms = settings.max_stalled.as_millis() as u64;
    if pipeline.pending_files > 0 && pipeline.last_commit_age_ms.is_some_and(|age| age > stalled_ms) {
        problems.push(format!(
            "{} files wait but nothing was committed for {} ms (health.max_stalled = {} ms)",
            pipeline.pending_files,
            pipeline.last_commit_age_ms.unwrap_or_default(),
            stalled_ms
        ));
    }
    if let Some(error) = &pipeline.opencode_db.error {
        problems.push(format!("opencode.db cannot be read: {error}"));
    }
    if let Some(problem) = &pipeline.watch_problem {
        problems.push(format!("file events: {problem}"));
    }
    if let Some(failure) = &pipeline.commit_failure {
        problems.push(format!("commits are failing and retried with backoff (nothing is lost; check free space and permissions of the database): {failure}"));
    }
    if let Some(free) = disk_free_bytes {
        let floor = settings.min_free_disk_mb.saturating_mul(1024 * 1024);
        if free < floor {
            problems.push(format!("{} MiB free on the database's volume (health.min_free_disk_mb = {})", free / (1024 * 1024), settings.min_free_disk_mb));
        }
    }
    problems
}

/// CPU use is measured between two refreshes, so one `System` lives across requests.
fn system() -> &'static Mutex<System> {
    static SYSTEM: OnceLock<Mutex<System>> = OnceLock::new();
    SYSTEM.get_or_init(|| Mutex::new(System::new()))
}

fn system_health(database: &Path) -> SystemHealth {
    let mut system = system().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    system.refresh_cpu_usage();
    system.refresh_memory();
    let pid = Pid::from_u32(std::process::id());
    system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, ProcessRefreshKind::nothing().with_cpu().with_memory());
    let process = system.process(pid);
    // The volume is the disk whose mount point is the longest prefix of the database's path.
    let absolute = std::fs::canonicalize(database.parent().unwrap_or(database)).unwrap_or_else(|_| database.to_owned());
    let disks = Disks::new_with_refreshed_list();
    let disk = disks.list().iter().filter(|disk| absolute.starts_with(disk.mount_point())).max_by_key(|disk| disk.mount_point().as_os_str().len());
    SystemHealth {
        cpu_percent: system.global_cpu_usage(),
        process_cpu_percent: process.map_or(0.0, |process| process.cpu_usage()),
        memory_total_bytes: system.total_memory(),
        memory_available_bytes: system.available_memory(),
        process_memory_bytes: process.map_or(0, |process| process.memory()),
        disk_free_bytes: disk.map(|disk| disk.available_space()),
        disk_total_bytes: disk.map(|disk| disk.total_space()),
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[get("/health/detailed")]
pub(crate) async fn health_detailed(state: web::Data<HttpState>) -> HttpResponse {
    let board = &state.board;
    let status = state.board.pipeline_status();
    let readers = state.readers.clone();
    let errors_last_hour = web::block(move || {
        let reader = readers.reader().ok()?;
        let result = reader
            // Without the ICU extension TIMESTAMPTZ has no interval arithmetic; as TIMESTAMP it is UTC.
            .query_json("SELECT count(*) FROM file_index WHERE status = 'error' AND indexed_at::TIMESTAMP >= now()::TIMESTAMP - INTERVAL 1 HOUR", 1)
            .ok()?;
        result.rows.first()?.first()?.as_i64()
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(0);
    let last_commit = board.last_commit_unix_ms.load(Ordering::Relaxed);
    let last_checkpoint = board.last_checkpoint_unix_ms.load(Ordering::Relaxed);
    let minute = board.latency_summary_since(Some(Duration::from_secs(60)));
    let pipeline = PipelineHealth {
        ready: board.is_ready(),
        pending_files: status.pending,
        batches_in_flight: status.in_flight,
        last_commit_age_ms: (last_commit > 0).then(|| unix_ms_now().saturating_sub(last_commit)),
        latency_p95_ms_last_minute: (minute.samples > 0).then_some(minute.p95.as_secs_f64() * 1_000.0),
        errors_last_hour,
        actor_restarts: board.actor_restarts.load(Ordering::Relaxed),
        opencode_db: board.database_state().into(),
        watch_problem: board.watch_problem(),
        commit_failure: board.commit_failure(),
    };
    let path = state.readers.database_path().to_owned();
    let wal = PathBuf::from(format!("{}.wal", path.display()));
    let system = {
        let path = path.clone();
        web::block(move || system_health(&path)).await
    };
    let system = match system {
        Ok(system) => system,
        Err(error) => return actix_web::ResponseError::error_response(&crate::ApiError::internal(error.to_string())),
    };
    let mut problems = problems(&state.health, &pipeline, system.disk_free_bytes);
    let export = ExportHealth { otlp: board.otlp(), parquet: board.parquet() };
    if let Some(error) = &export.otlp.last_error {
        problems.push(format!("the OTLP export fails and is retried with backoff (spans wait in the database, nothing is lost): {error}"));
    }
    if let Some(error) = &export.parquet.last_error {
        problems.push(format!("the Parquet export failed (the next run retries): {error}"));
    }
    let body = HealthDetailed {
        status: if problems.is_empty() { "healthy" } else { "degraded" },
        build: state.build.clone(),
        problems,
        database: DatabaseHealth {
            path: path.display().to_string(),
            size_bytes: file_size(&path),
            wal_bytes: file_size(&wal),
            last_checkpoint_unix_ms: (last_checkpoint > 0).then_some(last_checkpoint),
        },
        system,
        pipeline,
        export,
    };
    if body.status == "healthy" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(pending_files: usize, last_commit_age_ms: Option<u64>, p95: Option<f64>) -> PipelineHealth {
        PipelineHealth {
            ready: true,
            pending_files,
            batches_in_flight: 0,
            last_commit_age_ms,
            latency_p95_ms_last_minute: p95,
            errors_last_hour: 0,
            actor_restarts: 0,
            opencode_db: ducktail_pipeline::status::DatabaseState::Off.into(),
            watch_problem: None,
            commit_failure: None,
        }
    }

    #[test]
    fn an_unreadable_opencode_db_degrades_health_with_its_reason() {
        let mut health = pipeline(0, None, None);
        health.opencode_db = ducktail_pipeline::status::DatabaseState::Failing { error: "/x/opencode.db is locked".into() }.into();
        let found = problems(&HealthSettings::default(), &health, None);
        assert_eq!(found, vec!["opencode.db cannot be read: /x/opencode.db is locked".to_owned()]);
    }

    #[test]
    fn each_threshold_is_named_when_crossed_and_only_then() {
        let settings = HealthSettings::default();
        assert!(problems(&settings, &pipeline(10, Some(1_000), Some(50.0)), Some(10 << 30)).is_empty());
        let crossed = problems(&settings, &pipeline(60_000, Some(120_000), Some(9_000.0)), Some(1 << 20));
        assert_eq!(crossed.len(), 4, "{crossed:?}");
        for key in ["max_pending_files", "max_latency_p95_ms", "max_stalled", "min_free_disk_mb"] {
            assert!(crossed.iter().any(|problem| problem.contains(key)), "{key} missing from {crossed:?}");
        }
        // An idle pipeline is not stalled, however old its last commit.
        assert!(problems(&settings, &pipeline(0, Some(86_400_000), None), None).is_empty());
    }
}
