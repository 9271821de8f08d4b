//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::paths::PathResolver;

/// ducktail keeps a DuckDB database in step, in real time, with the session files AI coding
/// agents (OpenCode) write, and serves it over HTTP.
#[derive(Debug, Parser)]
#[command(name = "ducktail", about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML). Default: ~/.config/ducktail/config.toml when it exists.
    #[arg(long, global = true, env = "DUCKTAIL_CONFIG")]
    pub config: Option<PathBuf>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the data comes from and goes to.
#[derive(Debug, Clone, Args)]
pub struct Locations {
    /// OpenCode data directory (the folder holding `storage/`). Default: ~/.local/share/opencode.
    #[arg(long, value_name = "DIR")]
    pub opencode: Option<PathBuf>,
    /// DuckDB database file. Default: ~/.local/share/ducktail/ducktail.duckdb.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// OpenTelemetry span Parquet folder (`year=YYYY/month=MM/day=DD/*.parquet`) to index too.
    /// Default: `sources.spans.path` (empty: none).
    #[arg(long, value_name = "DIR")]
    pub spans: Option<PathBuf>,
    /// Claude Code folder (holding `projects/`); repeat for several. Default:
    /// `$CLAUDE_CONFIG_DIR`, else ~/.claude and ~/.config/claude, those that exist.
    #[arg(long, value_name = "DIR")]
    pub claude: Vec<PathBuf>,
    /// Codex CLI folder (holding `sessions/`); repeat for several. Default: `$CODEX_HOME`, else
    /// ~/.codex, if it exists.
    #[arg(long, value_name = "DIR")]
    pub codex: Vec<PathBuf>,
}

/// The database to read.
#[derive(Debug, Clone, Args)]
pub struct DatabaseOnly {
    /// DuckDB database file. Default: ~/.local/share/ducktail/ducktail.duckdb.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}

/// Where read commands get their answers: a running daemon's API when one answers, else the
/// database file opened read-only.
#[derive(Debug, Clone, Args)]
pub struct ReadTarget {
    /// DuckDB database file, read directly when no daemon answers.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Address of a running daemon. Default: http.listen (127.0.0.1:7337).
    #[arg(long, value_name = "ADDR")]
    pub daemon: Option<String>,
    /// Print JSON (the API's shape) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index the OpenCode tree once (catch up) and exit.
    Index {
        /// Source and database.
        #[command(flatten)]
        locations: Locations,
    },
    /// Run the daemon: catch up, then follow changes live and serve the HTTP API.
    Run {
        /// Source and database.
        #[command(flatten)]
        locations: Locations,
        /// Address to listen on (port 0 picks a free port). Default: 127.0.0.1:7337.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Show row counts, file statuses and the newest errors.
    Status {
        /// The database.
        #[command(flatten)]
        database: DatabaseOnly,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// How many recent errors to list.
        #[arg(long, default_value_t = 10)]
        errors: usize,
    },
    /// Sessions, newest first, with tokens, cost, messages, tool calls and errors.
    Sessions {
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only sessions without a parent (no sub-agent sessions).
        #[arg(long)]
        root_only: bool,
        /// Only titles containing this (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        q: Option<String>,
        /// Created at or after (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Created before (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        until: Option<String>,
        /// Only this project id.
        #[arg(long)]
        project: Option<String>,
        /// Only this coding agent's sessions: opencode, claude_code or codex.
        #[arg(long)]
        app: Option<String>,
        /// Only sessions that used this model (`provider/model`, as `usage --by model` names it).
        #[arg(long)]
        model: Option<String>,
        /// Only sessions that ran this agent (as `usage --by agent` names it).
        #[arg(long)]
        agent: Option<String>,
        /// Order by created, updated, cost or tokens (largest, newest first).
        #[arg(long, value_parser = ["created", "updated", "cost", "tokens"], default_value = "created")]
        sort: String,
        /// Smallest, oldest first.
        #[arg(long)]
        ascending: bool,
    },
    /// One session: usage per model and agent, tools, files, todos, diff, children.
    Session {
        /// Session id (`ses_…`).
        id: String,
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
    /// The delegation tree under a session, as an indented tree.
    Trace {
        /// Session id (`ses_…`).
        id: String,
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
    /// Tokens and cost grouped by day, model, agent, project or app.
    Usage {
        /// day, model, agent, project or app.
        #[arg(long, default_value = "day")]
        by: String,
        /// Messages created at or after (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Messages created before.
        #[arg(long)]
        until: Option<String>,
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
    /// OpenTelemetry spans: services, traces and one trace as a span tree.
    Otel {
        /// What to show.
        #[command(subcommand)]
        command: OtelCommand,
    },
    /// Run one read-only SQL query (SELECT) and print the rows.
    #[command(alias = "query")]
    Sql {
        /// The query.
        sql: String,
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
    /// Export to the systems a team already runs: OTLP traces, Parquet tables (docs/export.md).
    Export {
        /// What to export.
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Delete the database and index everything again from the sources.
    Rebuild {
        /// Source and database.
        #[command(flatten)]
        locations: Locations,
    },
    /// Generate a realistic OpenCode tree, index it, and show what you can ask.
    Demo {
        /// Approximate number of files to generate.
        #[arg(long, default_value_t = 3_000)]
        files: usize,
        /// Where to put the tree and database. Default: a new folder under the temp directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write a seeded, realistic OpenCode tree (for tests and benchmarks).
    Generate {
        /// Output OpenCode data directory (gets a `storage/` folder).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Approximate number of files.
        #[arg(long, default_value_t = 10_000)]
        files: usize,
        /// Random seed; the same seed gives the same tree.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Deliberately bad files to include.
        #[arg(long, default_value_t = 0)]
        bad_files: usize,
    },
}

/// `ducktail otel …`.
#[derive(Debug, Subcommand)]
pub enum OtelCommand {
    /// Services seen in any span, with span and trace counts.
    Services {
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
    /// Traces, newest first.
    Traces {
        /// Only traces with a span of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only traces that have a root span.
        #[arg(long)]
        root_only: bool,
        /// Started at or after (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// At most this many (1–10000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
    /// One trace as a span tree (orphans flagged).
    Trace {
        /// Trace id (32 hex chars).
        id: String,
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
}

impl Cli {
    /// Makes every path argument absolute (see [`PathResolver`]), once, before any is used.
    pub fn resolve_paths(&mut self, resolver: &PathResolver) {
        let resolve = |path: &mut Option<PathBuf>| {
            if let Some(path) = path {
                resolver.resolve_in_place(path);
            }
        };
        resolve(&mut self.config);
        match &mut self.command {
            Command::Index { locations } | Command::Run { locations, .. } | Command::Rebuild { locations } => {
                resolve(&mut locations.opencode);
                resolve(&mut locations.db);
                resolve(&mut locations.spans);
                locations.claude.iter_mut().chain(locations.codex.iter_mut()).for_each(|path| resolver.resolve_in_place(path));
            }
            Command::Status { database, .. } => resolve(&mut database.db),
            Command::Sessions { target, .. }
            | Command::Session { target, .. }
            | Command::Trace { target, .. }
            | Command::Usage { target, .. }
            | Command::Sql { target, .. }
            | Command::Otel { command: OtelCommand::Services { target } | OtelCommand::Traces { target, .. } | OtelCommand::Trace { target, .. } } => {
                resolve(&mut target.db);
            }
            Command::Export { command: ExportCommand::Otlp { target, .. } } => resolve(&mut target.db),
            Command::Export { command: ExportCommand::Parquet { target, dir, .. } } => {
                resolve(&mut target.db);
                resolver.resolve_in_place(dir);
            }
            Command::Demo { dir, .. } => resolve(dir),
            Command::Generate { out, .. } => resolver.resolve_in_place(out),
        }
    }
}

/// `ducktail export …`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Send agent sessions as OpenTelemetry GenAI traces to an OTLP/HTTP backend, each span
    /// once (what was sent is recorded in the database). `run` does this live when
    /// `[export.otlp] enabled`; this backfills. With a daemon running, the daemon sends.
    Otlp {
        /// Only sessions created at or after (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// The OTLP/HTTP endpoint (`/v1/traces` is appended). Default: `export.otlp.endpoint`,
        /// then `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as is), then `OTEL_EXPORTER_OTLP_ENDPOINT`,
        /// then http://localhost:4318.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Send prompts, tool arguments and results, and titles too.
        #[arg(long)]
        capture_content: bool,
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
    /// Write the tables as Parquet files, `DIR/<table>/date=YYYY-MM-DD/<machine>.parquet`;
    /// a second run writes only the days that changed.
    Parquet {
        /// The export folder (created if missing; a bucket mounted as a folder works).
        dir: PathBuf,
        /// Only days at or after this date (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Only these tables (comma-separated). Default: all.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// The `machine` column and file name. Default: `export.machine`, else user@host.
        #[arg(long)]
        machine: Option<String>,
        /// Daemon or database, and output format.
        #[command(flatten)]
        target: ReadTarget,
    },
}
