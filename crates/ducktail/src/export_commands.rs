//! `ducktail export otlp` and `ducktail export parquet`. With a daemon answering, the daemon
//! does the work (it holds the database); otherwise the command opens the database itself:
//! read-only for Parquet, as the writer for OTLP (it records what it sent).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ducktail_export::parquet::ParquetOptions;
use ducktail_pipeline::settings::Settings;
use ducktail_store::{Store, StoreError};
use serde_json::{json, Value};

use crate::cli::ReadTarget;
use crate::read_commands::Backend;

/// `ducktail export otlp`.
pub fn otlp(
    settings: &Settings,
    target: &ReadTarget,
    database: &Path,
    since: Option<&String>,
    overridden: bool,
    store_options: &ducktail_store::StoreOptions,
) -> Result<Value> {
    let since_us = since.map(|text| ducktail_http::parse_instant("--since", text).map_err(|error| anyhow!(error))).transpose()?;
    if let Some((base_url, token)) = Backend::daemon_answering(settings, target) {
        if overridden {
            bail!(
                "a ducktail daemon runs at {base_url} and holds the database: it exports with its own [export.otlp] settings; \
                 drop --endpoint and --capture-content, or stop the daemon"
            );
        }
        let body = json!({ "since": since });
        return Backend::post(&base_url, &token, "/api/export/otlp", body);
    }
    if !database.exists() {
        bail!("database {} does not exist; run `ducktail index` first (or pass --db)", database.display());
    }
    let otlp_target = ducktail_pipeline::export::otlp_target(settings).map_err(|error| anyhow!("invalid [export.otlp] configuration: {error}"))?;
    let mut store = match Store::open(database, store_options) {
        Ok(store) => store,
        Err(StoreError::Locked { .. }) => bail!(
            "database {} is held by a running ducktail that does not answer at {}; pass its address with --daemon ADDR (it then exports with its [export.otlp] settings)",
            database.display(),
            target.daemon.clone().unwrap_or_else(|| settings.http.listen.clone())
        ),
        Err(error) => return Err(error.into()),
    };
    let reader = store.reader()?;
    let sender = ducktail_export::otlp::OtlpSender::new(otlp_target.clone());
    let options = ducktail_pipeline::export::build_options(settings);
    let report = ducktail_export::otlp::export_all(&reader, since_us, &sender, &mut store, &options)
        .with_context(|| format!("exporting to {} (nothing sent is lost: run the command again once the backend answers)", otlp_target.traces_url))?;
    Ok(json!({
        "endpoint": otlp_target.traces_url,
        "roots": report.roots,
        "sent": report.sent,
        "already_sent": report.already_sent,
        "not_final": report.pending,
        "requests": report.requests,
        "rejected": report.rejected,
    }))
}

/// `ducktail export parquet`.
pub fn parquet(settings: &Settings, target: &ReadTarget, database: &Path, options: &ParquetOptions) -> Result<Value> {
    if let Some((base_url, token)) = Backend::daemon_answering(settings, target) {
        let body = json!({ "dir": options.dir, "since": options.since, "tables": options.tables, "machine": options.machine });
        return Backend::post(&base_url, &token, "/api/export/parquet", body);
    }
    let backend = Backend::connect(settings, target, database)?;
    let Backend::Database(reader) = backend else { unreachable!("no daemon answered a moment ago") };
    let report = ducktail_export::parquet::export_parquet(&reader, options)?;
    Ok(serde_json::to_value(&report)?)
}

/// Prints what an export did: JSON as is, else one line per table (Parquet) or a summary.
pub fn print(value: &Value, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        return;
    }
    if let Some(tables) = value["tables"].as_array() {
        println!("exported to {} as machine {:?}", value["dir"].as_str().unwrap_or(""), value["machine"].as_str().unwrap_or(""));
        for table in tables {
            println!(
                "  {:<13} {:>4} days written ({:>8} rows, {:>10} bytes), {:>4} unchanged, {:>3} removed",
                table["table"].as_str().unwrap_or(""),
                table["days_written"],
                table["rows_written"],
                table["bytes_written"],
                table["days_unchanged"],
                table["days_removed"]
            );
        }
    } else {
        println!(
            "sent {} spans to {} ({} root sessions; {} already sent, {} not final yet)",
            value["sent"],
            value["endpoint"].as_str().unwrap_or("the daemon's endpoint"),
            value["roots"],
            value["already_sent"],
            value["not_final"]
        );
    }
}
