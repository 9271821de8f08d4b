//! The `ducktail` binary: argument parsing, configuration layering, logging, and wiring of the
//! library crates into commands. Glue only — no indexing logic lives here.
//!
//! Exit codes: 0 success (also when some files were bad: they are recorded and counted);
//! 1 the command could not complete (missing directory, locked or unwritable database …);
//! 2 bad arguments or configuration.

mod build_info;
mod cli;
mod export_commands;
mod paths;
mod read_commands;
mod settings_loader;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches};
use ducktail_pipeline::index::{index_once, IndexSummary};
use ducktail_pipeline::settings::{LogFormat, Settings};
use ducktail_store::{Reader, Store, StoreOptions};

use crate::cli::{Cli, Command, ExportCommand, OtelCommand};
use crate::paths::PathResolver;

/// Every allocation of the process goes to mimalloc: Rust's through this global allocator, and
/// DuckDB's C++ ones through malloc/free, which the `override` feature of the workspace's
/// mimalloc replaces. Two reasons, both measured: DuckDB calls `malloc_trim(0)` whenever it has
/// freed a sixteenth of its memory limit, and that walks the whole glibc heap (with the listing
/// of 1M files in it, a live batch that met a trim took 40 ms instead of 7); and glibc's
/// malloc/free were 13 % of the daemon's CPU at 1,000 files/s. With both on mimalloc a one-file
/// live batch costs 5.1 ms instead of 6.8 (`benches/batch.rs`, 100k database).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A failure that is the user's input (exit code 2) rather than the run's (exit code 1).
#[derive(Debug)]
struct UsageError(anyhow::Error);

impl std::fmt::Display for UsageError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:#}", self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = parse_arguments();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Parses the arguments; `--version` also names the commit and the DuckDB inside.
fn parse_arguments() -> Cli {
    // Asking DuckDB its version opens an in-memory database: only done when it is asked for.
    let asks_version = std::env::args_os().skip(1).any(|argument| argument == "--version" || argument == "-V");
    let version = if asks_version { build_info::long_version(&build_info::build_info()) } else { build_info::short_version() };
    // clap keeps a version as `&'static str`; one string per process.
    let command = Cli::command().version(&*Box::leak(version.into_boxed_str()));
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|error| error.exit())
}

fn run(mut cli: Cli) -> Result<()> {
    // Every path a user gave is made absolute here, once; nothing below sees a relative one.
    let paths = PathResolver::from_environment().context("cannot read the working directory; run ducktail from an existing folder")?;
    cli.resolve_paths(&paths);
    let settings = settings_loader::load(cli.config.as_deref(), &paths).map_err(|error| anyhow::Error::new(UsageError(error)))?;
    init_logging(&settings);
    let mut settings = settings;
    if let Command::Index { locations } | Command::Rebuild { locations } | Command::Run { locations, .. } = &cli.command {
        if let Some(spans) = &locations.spans {
            settings.sources.spans.path = spans.clone();
        }
        settings_loader::transcript_folders(&mut settings, &locations.claude, &locations.codex, &paths);
    }
    match cli.command {
        Command::Index { locations } => {
            let opencode = settings_loader::opencode_dir(locations.opencode.as_deref(), &settings, &paths);
            let database = settings_loader::database_file(locations.db.as_deref(), &settings, &paths);
            let summary = index(&settings, &opencode, &database)?;
            print_summary(&summary, &database);
            database_read_outcome(&summary)
        }
        Command::Rebuild { locations } => {
            let opencode = settings_loader::opencode_dir(locations.opencode.as_deref(), &settings, &paths);
            let database = settings_loader::database_file(locations.db.as_deref(), &settings, &paths);
            // Checked before the old database is deleted: a mistyped folder must not cost it.
            check_sources(&opencode, &settings)?;
            for path in [database.clone(), PathBuf::from(format!("{}.wal", database.display()))] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error).with_context(|| format!("cannot remove {}; is a daemon still running?", path.display())),
                }
            }
            let summary = index(&settings, &opencode, &database)?;
            print_summary(&summary, &database);
            database_read_outcome(&summary)
        }
        Command::Run { locations, listen } => {
            let opencode = settings_loader::opencode_dir(locations.opencode.as_deref(), &settings, &paths);
            let database = settings_loader::database_file(locations.db.as_deref(), &settings, &paths);
            ducktail_pipeline::daemon::check_sources_to_follow(&opencode, &settings)?;
            if settings.export.otlp.enabled {
                ducktail_pipeline::export::otlp_target(&settings)
                    .map_err(|error| anyhow::Error::new(UsageError(anyhow::anyhow!("invalid [export.otlp] configuration: {error}"))))?;
            }
            let listen = match listen {
                Some(address) => address.to_string(),
                None => settings.http.listen.clone(),
            };
            run_daemon(settings, &opencode, &database, &listen)
        }
        Command::Status { database, json, errors } => {
            let database = settings_loader::database_file(database.db.as_deref(), &settings, &paths);
            status(&database, json, errors)
        }
        Command::Sessions { target, limit, root_only, q, since, until, project, app, model, agent, sort, ascending } => {
            let backend = read_backend(&settings, &target, &paths)?;
            let args = read_commands::SessionsArgs { limit, root_only, q, since, until, project, app, model, agent, sort, ascending };
            read_commands::print(&read_commands::sessions(&backend, &args)?, target.json, read_commands::render_sessions)
        }
        Command::Session { id, target } => {
            let backend = read_backend(&settings, &target, &paths)?;
            read_commands::print(&read_commands::session(&backend, &id)?, target.json, read_commands::render_session)
        }
        Command::Trace { id, target } => {
            let backend = read_backend(&settings, &target, &paths)?;
            read_commands::print(&read_commands::trace(&backend, &id)?, target.json, read_commands::render_trace)
        }
        Command::Usage { by, since, until, target } => {
            let backend = read_backend(&settings, &target, &paths)?;
            read_commands::print(&read_commands::usage(&backend, &by, since.as_ref(), until.as_ref())?, target.json, read_commands::render_usage)
        }
        Command::Otel { command } => match command {
            OtelCommand::Services { target } => {
                let backend = read_backend(&settings, &target, &paths)?;
                read_commands::print(&read_commands::otel_services(&backend)?, target.json, read_commands::render_otel_services)
            }
            OtelCommand::Traces { service, root_only, since, limit, target } => {
                let backend = read_backend(&settings, &target, &paths)?;
                let traces = read_commands::otel_traces(&backend, service.as_ref(), root_only, since.as_ref(), limit)?;
                read_commands::print(&traces, target.json, read_commands::render_otel_traces)
            }
            OtelCommand::Trace { id, target } => {
                let backend = read_backend(&settings, &target, &paths)?;
                read_commands::print(&read_commands::otel_trace(&backend, &id)?, target.json, read_commands::render_otel_trace)
            }
        },
        Command::Sql { sql, target } => {
            let backend = read_backend(&settings, &target, &paths)?;
            read_commands::print(&read_commands::sql(&backend, &sql)?, target.json, read_commands::render_sql)
        }
        Command::Export { command } => match command {
            ExportCommand::Otlp { since, endpoint, capture_content, target } => {
                let mut settings = settings;
                let overridden = endpoint.is_some() || capture_content;
                if let Some(endpoint) = endpoint {
                    settings.export.otlp.endpoint = endpoint;
                }
                settings.export.otlp.capture_content |= capture_content;
                let database = settings_loader::database_file(target.db.as_deref(), &settings, &paths);
                let report = export_commands::otlp(&settings, &target, &database, since.as_ref(), overridden, &store_options(&settings))?;
                export_commands::print(&report, target.json);
                Ok(())
            }
            ExportCommand::Parquet { dir, since, tables, machine, target } => {
                let database = settings_loader::database_file(target.db.as_deref(), &settings, &paths);
                let options = ducktail_export::parquet::ParquetOptions {
                    dir,
                    since,
                    tables,
                    machine: machine.unwrap_or_else(|| ducktail_pipeline::export::machine_name(&settings)),
                };
                let report = export_commands::parquet(&settings, &target, &database, &options)?;
                export_commands::print(&report, target.json);
                Ok(())
            }
        },
        Command::Demo { files, dir } => demo(&settings, files, dir),
        Command::Generate { out, files, seed, bad_files } => {
            let config = ducktail_generator::GeneratorConfig { seed, target_files: files, bad_files, ..Default::default() };
            let tree = ducktail_generator::generate(&out, &config).with_context(|| format!("cannot write the tree under {}", out.display()))?;
            println!("wrote {} files under {}", tree.total_files, out.join("storage").display());
            for (kind, count) in &tree.files_by_kind {
                println!("  {kind:<13} {count}");
            }
            Ok(())
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn store_options(settings: &Settings) -> StoreOptions {
    StoreOptions {
        memory_limit: Some(settings.database.memory_limit.clone()).filter(|limit| !limit.is_empty()),
        threads: Some(settings.database.threads).filter(|threads| *threads > 0),
        bulk_load: false,
        wal_autocheckpoint: Some(settings.database.wal_autocheckpoint.clone()).filter(|threshold| !threshold.is_empty()),
    }
}

/// What `index` and `rebuild` read exists; checked before the database is created or removed.
fn check_sources(opencode: &Path, settings: &Settings) -> Result<()> {
    Ok(ducktail_pipeline::index::check_sources(opencode, settings)?)
}

fn index(settings: &Settings, opencode: &Path, database: &Path) -> Result<IndexSummary> {
    // Inputs first: a command that fails on its sources leaves no new file behind.
    check_sources(opencode, settings)?;
    let opening = Instant::now();
    // `database.wal_autocheckpoint` is the daemon's: a bulk load checkpoints once, at the end.
    let mut store = Store::open(database, &StoreOptions { bulk_load: true, wal_autocheckpoint: None, ..store_options(settings) })?;
    tracing::debug!(took = ?opening.elapsed(), "index: database opened");
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} indexing [{bar:40}] {pos}/{len} files ({per_sec}, eta {eta})")
                .expect("static progress template")
                .progress_chars("=> "),
        );
        bar
    });
    let progress = |done: usize, total: usize| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let summary = index_once(&mut store, opencode, settings, &progress)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let closing = Instant::now();
    store.checkpoint()?;
    drop(store);
    tracing::debug!(took = ?closing.elapsed(), "index: checkpointed and closed");
    Ok(summary)
}

/// An unreadable `opencode.db` fails the command (after the JSON tree was indexed), so scripts
/// notice.
fn database_read_outcome(summary: &IndexSummary) -> Result<()> {
    match &summary.database_error {
        Some(error) => Err(anyhow::anyhow!("{error}")),
        None => Ok(()),
    }
}

fn print_summary(summary: &IndexSummary, database: &Path) {
    let kinds: Vec<String> = summary.files_by_kind.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
    println!("indexed into {}", database.display());
    // Without an OpenCode tree the JSON-tree lines would only say zero; the line below says why.
    if summary.opencode_absent.is_none() || summary.scanned + summary.removed > 0 {
        println!("  files on disk: {} ({})", summary.scanned, kinds.join(", "));
        println!(
            "  indexed {}, unchanged {}, errors {}, removed {} in {:.2} s ({:.0} files/s)",
            summary.indexed,
            summary.unchanged,
            summary.errors,
            summary.removed,
            summary.duration.as_secs_f64(),
            summary.files_per_second()
        );
    } else {
        println!("  in {:.2} s", summary.duration.as_secs_f64());
    }
    for error in summary.scan_errors.iter().take(10) {
        println!("  could not read: {error}");
    }
    if summary.database_records + summary.database_removed + summary.database_rejected > 0 {
        println!(
            "  opencode.db: {} records written, {} removed, {} rows rejected",
            summary.database_records, summary.database_removed, summary.database_rejected
        );
    }
    if let Some(error) = &summary.database_error {
        println!("  opencode.db not read: {error}");
    }
    if let Some(spans) = &summary.spans {
        println!(
            "  spans: {} files on disk, {} read ({} spans, {} duplicates kept once), {} errors, {} pending, {} removed",
            spans.files, spans.indexed, spans.spans, spans.duplicates, spans.errors, spans.pending, spans.removed
        );
    }
    for (source, synced) in &summary.transcripts {
        println!(
            "  {source}: {} transcripts on disk, {} read ({} MB, {} records), {} lines skipped, {} errors, {} gone (rows kept)",
            synced.files,
            synced.stretches,
            synced.bytes / 1_000_000,
            synced.records,
            synced.skipped_lines,
            synced.errors,
            synced.removed
        );
    }
    if let Some(folder) = &summary.opencode_absent {
        println!("  opencode: nothing at {} (no storage/ nor opencode.db)", folder.display());
    }
    for (source, folders) in &summary.absent_sources {
        let folders: Vec<String> = folders.iter().map(|folder| folder.display().to_string()).collect();
        println!("  {source}: not found (looked in {})", folders.join(", "));
    }
    if summary.errors + summary.database_rejected > 0 {
        println!("  `ducktail status --db {}` lists the files that failed and why", database.display());
    }
}

fn status(database: &Path, json: bool, errors: usize) -> Result<()> {
    let reader = Reader::open_read_only(database)?;
    let status = reader.status(errors)?;
    if json {
        let body = serde_json::json!({
            "tables": status.tables.iter().map(|count| (count.table, count.rows)).collect::<std::collections::BTreeMap<_, _>>(),
            "files_by_status": status.files_by_status.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "last_indexed_at": status.last_indexed_at,
            "recent_errors": status.recent_errors.iter().map(|error| serde_json::json!({"path": error.path, "message": error.message, "at": error.at})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!("database {}", database.display());
    for count in &status.tables {
        println!("  {:<18} {:>10}", count.table, count.rows);
    }
    let by_status: Vec<String> = status.files_by_status.iter().map(|(name, count)| format!("{name} {count}")).collect();
    println!("files: {}", if by_status.is_empty() { "none".to_owned() } else { by_status.join(", ") });
    println!("last indexed: {}", status.last_indexed_at.as_deref().unwrap_or("never"));
    if !status.recent_errors.is_empty() {
        println!("newest errors:");
        for error in &status.recent_errors {
            println!("  {}  {}\n      {}", error.at, error.path, error.message);
        }
    }
    Ok(())
}

/// The daemon's API if one answers, else the database file read-only.
fn read_backend(settings: &Settings, target: &cli::ReadTarget, paths: &PathResolver) -> Result<read_commands::Backend> {
    let database = settings_loader::database_file(target.db.as_deref(), settings, paths);
    read_commands::Backend::connect(settings, target, &database)
}

/// Example questions `demo` answers, with their SQL.
const DEMO_QUERIES: [(&str, &str); 4] = [
    (
        "Cost and tokens per day (from finish steps: the real totals)",
        "SELECT CAST(date_trunc('day', m.created_at::TIMESTAMP) AS DATE) AS day, count(DISTINCT m.session_id) AS sessions, \
         sum(s.tokens_input) AS input, sum(s.tokens_output) AS output, sum(s.tokens_cache_read) AS cache_read, \
         round(sum(s.cost), 4) AS cost_usd \
         FROM step_events s JOIN messages m ON m.id = s.message_id WHERE s.event_type = 'finish' \
         GROUP BY ALL ORDER BY day LIMIT 5",
    ),
    (
        "Tool calls and error rate per tool",
        "SELECT tool_name, count(*) AS calls, count(*) FILTER (WHERE tool_status = 'error') AS errors \
         FROM parts WHERE part_type = 'tool' GROUP BY ALL ORDER BY calls DESC LIMIT 8",
    ),
    (
        "Most expensive root sessions, with their sub-agent delegations",
        "SELECT s.id, left(s.title, 40) AS title, round(r.cost, 4) AS own_cost_usd, \
         (SELECT count(*) FROM delegations d WHERE d.session_id = s.id) AS delegations \
         FROM sessions s JOIN agent_traces r ON r.trace_id = 'root_' || s.id \
         ORDER BY r.cost DESC LIMIT 5",
    ),
    (
        "Delegation depth: traces by how far below a root they run",
        "WITH RECURSIVE tree AS (SELECT trace_id, 0 AS depth FROM agent_traces WHERE parent_trace_id IS NULL \
         UNION ALL SELECT t.trace_id, tree.depth + 1 FROM agent_traces t JOIN tree ON t.parent_trace_id = tree.trace_id) \
         SELECT depth, count(*) AS traces FROM tree GROUP BY depth ORDER BY depth",
    ),
];

fn demo(settings: &Settings, files: usize, dir: Option<PathBuf>) -> Result<()> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("ducktail-demo-{}", std::process::id())));
    let opencode = dir.join("opencode");
    let database = dir.join("ducktail.duckdb");
    let config = ducktail_generator::GeneratorConfig { target_files: files, ..Default::default() };
    let tree = ducktail_generator::generate(&opencode, &config).with_context(|| format!("cannot write the demo tree under {}", opencode.display()))?;
    println!("generated a realistic OpenCode tree: {} files ({} sessions) under {}", tree.total_files, tree.sessions, opencode.display());
    let summary = index(settings, &opencode, &database)?;
    print_summary(&summary, &database);
    let reader = Reader::open_read_only(&database)?;
    for (question, sql) in DEMO_QUERIES {
        println!("\n## {question}\n{sql}\n");
        let rows = reader.query_json(sql, 20)?;
        println!("{}", rows.columns.join(" | "));
        for row in rows.rows {
            let cells: Vec<String> = row
                .into_iter()
                .map(|value| match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                })
                .collect();
            println!("{}", cells.join(" | "));
        }
    }
    println!(
        "\nAsk your own questions:\n  ducktail sql --db {} \"SELECT * FROM agent_traces LIMIT 10\"\n  ducktail sessions --db {}",
        database.display(),
        database.display()
    );
    println!(
        "Follow it live, with the dashboard at http://{}/ :\n  ducktail run --opencode {} --db {}",
        settings.http.listen,
        opencode.display(),
        database.display()
    );
    Ok(())
}

fn run_daemon(settings: Settings, opencode: &Path, database: &Path, listen: &str) -> Result<()> {
    // Bind first so the first log line can state the address (port 0 picks a free one).
    let listener = std::net::TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}; pass another --listen"))?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() && settings.http.token.is_empty() {
        return Err(anyhow::Error::new(UsageError(anyhow::anyhow!(
            "http.listen {address} is reachable from other machines: set http.token (clients then send \
             `Authorization: Bearer <token>`) or listen on 127.0.0.1"
        ))));
    }
    let build = build_info::build_info();
    tracing::info!(%address, version = %build.version, commit = %build.commit, duckdb = %build.duckdb_version, "ducktail listening on http://{address}");
    if !settings.http.token.is_empty() {
        tracing::info!("every route but /livez and /readyz requires Authorization: Bearer <http.token>");
    }
    let store = Store::open(database, &store_options(&settings))?;
    let system = actix::System::new();
    let result: Result<()> = system.block_on(async move {
        let daemon = ducktail_pipeline::daemon::Daemon::start(&settings, opencode, store)?;
        let state = ducktail_http::HttpState {
            readers: daemon.readers.clone(),
            board: daemon.board.clone(),
            settings: settings.http.clone(),
            health: settings.health.clone(),
            build: build.clone(),
            otlp_exporter: daemon.otlp_exporter(),
            export_machine: ducktail_pipeline::export::machine_name(&settings),
        };
        let server = ducktail_http::serve(listener, state)?;
        let server_handle = server.handle();
        actix_rt::spawn(server);
        wait_for_shutdown_signal().await;
        tracing::info!("shutting down: flushing pending files");
        server_handle.stop(true).await;
        daemon.shutdown(Duration::from_secs(10)).await;
        tracing::info!("stopped cleanly");
        Ok(())
    });
    result
}

async fn wait_for_shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the daemon");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
