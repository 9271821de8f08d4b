//! Typed configuration of the whole program; `config/default.toml` documents every key.
//!
//! The binary layers defaults < file < environment < flags into [`Settings`]; every section
//! denies unknown keys so a typo is an error naming the key, never a silently ignored setting.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything ducktail can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[sources]`: where the data comes from.
    pub sources: SourcesSettings,
    /// `[database]`: the DuckDB file and its tuning.
    pub database: DatabaseSettings,
    /// `[decode]`: limits on what is read and stored.
    pub decode: DecodeSettings,
    /// `[pipeline]`: batching and back-pressure of the live pipeline.
    pub pipeline: PipelineSettings,
    /// `[index]`: the one-shot indexer.
    pub index: IndexSettings,
    /// `[reconcile]`: the periodic full comparison of disk and index.
    pub reconcile: ReconcileSettings,
    /// `[http]`: the daemon's HTTP server.
    pub http: HttpSettings,
    /// `[health]`: when `GET /health/detailed` reports "degraded".
    pub health: HealthSettings,
    /// `[retention]`: purging old sessions (off by default).
    pub retention: RetentionSettings,
    /// `[pricing]`: list prices for agents that log tokens and no cost.
    pub pricing: PricingSettings,
    /// `[export]`: OTLP traces and Parquet tables for other systems (off by default).
    pub export: ExportSettings,
    /// `[log]`: logging.
    pub log: LogSettings,
    /// `[faults]`: fault injection for tests; all off by default.
    pub faults: FaultSettings,
}

/// `[sources]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesSettings {
    /// `[sources.opencode]`.
    pub opencode: OpenCodeSettings,
    /// `[sources.spans]`.
    pub spans: SpanSettings,
    /// `[sources.claude_code]`: Claude Code's transcripts.
    pub claude_code: TranscriptSettings,
    /// `[sources.codex]`: Codex CLI's rollouts.
    pub codex: TranscriptSettings,
}

/// `[pricing]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PricingSettings {
    /// A price file (the shape of the shipped snapshot) whose models replace or add to the
    /// shipped prices. Empty: the shipped snapshot alone.
    pub file: PathBuf,
}

/// `[export]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSettings {
    /// The `machine` column of Parquet exports and `host.name` of OTLP spans. Empty: `user@host`.
    pub machine: String,
    /// `[export.otlp]`.
    pub otlp: OtlpSettings,
    /// `[export.parquet]`.
    pub parquet: ParquetSettings,
}

/// `[export.otlp]`: agent sessions as OpenTelemetry GenAI traces (see `docs/export.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpSettings {
    /// `ducktail run` exports live.
    pub enabled: bool,
    /// The OTLP/HTTP endpoint (`/v1/traces` is appended). Empty: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, else `http://localhost:4318`.
    pub endpoint: String,
    /// Only `http/protobuf`. Empty: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`.
    pub protocol: String,
    /// Request headers (added to `OTEL_EXPORTER_OTLP_HEADERS`), e.g. an API key or Phoenix's
    /// `x-project-name`.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Per-request timeout. Zero: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, then
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (ms), else 10 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// `service.name` of the spans' resource.
    pub service_name: String,
    /// Send prompts, tool arguments and results, and titles (off: they stay on this machine).
    pub capture_content: bool,
    /// Each captured text is cut to this many bytes.
    pub max_content_bytes: usize,
    /// Most spans per request.
    pub max_batch: usize,
    /// How often the live export looks for spans that became final.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A session idle this long is final as it stands (its unfinished calls are sent as
    /// interrupted).
    #[serde(with = "humantime_serde")]
    pub idle_final: Duration,
    /// Longest wait between retries while the backend is down.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        OtlpSettings {
            enabled: false,
            endpoint: String::new(),
            protocol: String::new(),
            headers: std::collections::BTreeMap::new(),
            timeout: Duration::ZERO,
            service_name: "ducktail".to_owned(),
            capture_content: false,
            max_content_bytes: 4096,
            max_batch: 512,
            interval: Duration::from_secs(1),
            idle_final: Duration::from_secs(600),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// `[export.parquet]`: the contract tables as Parquet, on a schedule from `ducktail run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetSettings {
    /// The export folder. Empty: no scheduled export (`ducktail export parquet DIR` still works).
    pub dir: PathBuf,
    /// How often `run` exports what changed.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Only these tables; empty: every exported table.
    pub tables: Vec<String>,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        ParquetSettings { dir: PathBuf::new(), interval: Duration::from_secs(900), tables: Vec::new() }
    }
}

/// `[sources.claude_code]` and `[sources.codex]`: an agent's append-only transcripts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptSettings {
    /// Read this agent's transcripts at all.
    pub enabled: bool,
    /// The agent's folders. Empty means its defaults: Claude Code `$CLAUDE_CONFIG_DIR` (a
    /// comma-separated list) else `~/.claude` and `~/.config/claude`; Codex `$CODEX_HOME` else
    /// `~/.codex`. A default folder that does not exist is reported and skipped; a configured
    /// one is an error.
    pub paths: Vec<PathBuf>,
    /// How often the folders are looked at besides their file events.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most bytes of transcript read into one transaction (a large file commits in pieces).
    pub stretch_bytes: u64,
    /// Longer lines are skipped and recorded in `file_index`.
    pub max_line_bytes: u64,
    /// What a transcript that disappears does to its session's rows: `keep` (the default: the
    /// agents delete old transcripts, and history must outlive that) or `remove`.
    pub on_delete: OnDeleteSetting,
    /// Whether `paths` came from a flag or the config file (set by the binary, not read from
    /// the file): then a missing folder is an error, not a note.
    #[serde(skip)]
    pub explicit: bool,
}

impl Default for TranscriptSettings {
    fn default() -> Self {
        TranscriptSettings {
            enabled: true,
            paths: Vec::new(),
            poll_interval: Duration::from_secs(2),
            stretch_bytes: 16 * 1024 * 1024,
            max_line_bytes: 64 * 1024 * 1024,
            on_delete: OnDeleteSetting::Keep,
            explicit: false,
        }
    }
}

/// `[sources.spans]`: OpenTelemetry span Parquet files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpanSettings {
    /// Root of the span tree (`year=YYYY/month=MM/day=DD/*.parquet`). Empty: no span source.
    pub path: PathBuf,
    /// How often the tree is looked at besides its file events (retries files not ready yet).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Most files per transaction.
    pub batch_files: usize,
}

impl Default for SpanSettings {
    fn default() -> Self {
        SpanSettings { path: PathBuf::new(), poll_interval: Duration::from_secs(1), batch_files: 16 }
    }
}

/// `[sources.opencode]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenCodeSettings {
    /// The OpenCode data directory (the folder holding `storage/` and, since OpenCode 1.2,
    /// `opencode.db`). Empty means `$XDG_DATA_HOME/opencode` (`~/.local/share/opencode`).
    pub path: PathBuf,
    /// Read `<path>/opencode.db` too, whenever it exists (it may appear later).
    pub follow_database: bool,
    /// How often the database is asked whether anything committed, behind the file-change
    /// events of `opencode.db-wal` (a cheap `PRAGMA data_version`).
    #[serde(with = "humantime_serde")]
    pub database_poll_interval: Duration,
}

impl Default for OpenCodeSettings {
    fn default() -> Self {
        OpenCodeSettings { path: PathBuf::new(), follow_database: true, database_poll_interval: Duration::from_secs(1) }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// The DuckDB file. Empty means `$XDG_DATA_HOME/ducktail/ducktail.duckdb`.
    pub path: PathBuf,
    /// DuckDB `memory_limit` (e.g. "1GB"): its buffer pool, beyond which it spills to disk;
    /// empty keeps DuckDB's default (80% of RAM).
    pub memory_limit: String,
    /// DuckDB worker threads; 0: half the cores, at least one (one for `index` and `rebuild`).
    pub threads: u32,
    /// Time between CHECKPOINTs while `run` is up (folds the WAL into the database file).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// DuckDB `wal_autocheckpoint` while `run` is up: a commit that grows the WAL past this
    /// checkpoints inline (that batch waits for it). Empty keeps DuckDB's 16MB.
    pub wal_autocheckpoint: String,
    /// While `run` is up: once nothing has been written for half a second, a WAL larger than this
    /// many bytes is checkpointed then, between batches instead of inside one. 0 turns it off.
    pub idle_checkpoint_wal_bytes: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            path: PathBuf::new(),
            memory_limit: "256MB".to_owned(),
            threads: 0,
            checkpoint_interval: Duration::from_secs(300),
            wal_autocheckpoint: "64MB".to_owned(),
            idle_checkpoint_wal_bytes: 4 << 20,
        }
    }
}

/// `[decode]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeSettings {
    /// Longest text, tool input or tool output stored per part, in bytes; longer is cut and
    /// flagged in `parts.content_truncated`.
    pub max_text_bytes: usize,
    /// Largest file read at all, in bytes; larger files are recorded as errors.
    pub max_file_bytes: u64,
    /// Decoder threads; 0 means one per core.
    pub threads: usize,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        DecodeSettings { max_text_bytes: 1 << 20, max_file_bytes: 256 << 20, threads: 0 }
    }
}

impl DecodeSettings {
    /// Decoder threads to run, resolving 0 to the number of cores.
    pub fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(2, |cores| cores.get())
        }
    }
}

/// What happens to the records of a deleted file.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnDeleteSetting {
    /// Remove them.
    #[default]
    Remove,
    /// Keep them as history.
    Keep,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSettings {
    /// A batch is cut as soon as it holds this many files.
    pub max_files: usize,
    /// A batch is cut at the latest this long after its first file arrived.
    pub window_ms: u64,
    /// Cut a batch at once when the writer is idle, so a lone file is not held for the window.
    pub adaptive: bool,
    /// Batches decoded or being written at the same time; bounds memory and latency.
    pub max_in_flight: usize,
    /// Distinct paths waiting to be batched before new arrivals are refused (back-pressure).
    pub max_pending: usize,
    /// A file that fails to decode within this long of its last change is "not ready yet".
    pub settle_ms: u64,
    /// A file committed less than this long ago waits before it is committed again, so a file
    /// rewritten on every streamed token is committed a few times a second (its final content
    /// always lands).
    pub min_rewrite_interval_ms: u64,
    /// Longest wait between retries of a file that is not ready.
    pub retry_backoff_max_ms: u64,
    /// `remove` or `keep` the records of deleted files.
    pub on_delete: OnDeleteSetting,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            max_files: 100,
            window_ms: 200,
            adaptive: true,
            max_in_flight: 2,
            max_pending: 100_000,
            settle_ms: 500,
            min_rewrite_interval_ms: 100,
            retry_backoff_max_ms: 5_000,
            on_delete: OnDeleteSetting::Remove,
        }
    }
}

impl PipelineSettings {
    /// `settle_ms` as a duration.
    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }
}

/// `[index]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IndexSettings {
    /// Files per transaction during a one-shot index or a large catch-up.
    pub batch_files: usize,
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings { batch_files: 5_000 }
    }
}

/// `[reconcile]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    /// Time between full comparisons of disk and index, e.g. "30s".
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings { interval: Duration::from_secs(30) }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Sessions inactive for longer than this many days are purged; 0 keeps everything.
    pub max_age_days: u64,
    /// Time between purges while `run` is up (the first runs once the catch-up is done).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings { max_age_days: 0, interval: Duration::from_secs(3_600) }
    }
}

/// `[health]`: thresholds past which `GET /health/detailed` answers 503 "degraded".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Most files waiting to be committed.
    pub max_pending_files: usize,
    /// Highest event→commit p95 over the last minute, in milliseconds.
    pub max_latency_p95_ms: u64,
    /// Longest time without a commit while files are waiting, e.g. "60s".
    #[serde(with = "humantime_serde")]
    pub max_stalled: Duration,
    /// Least free space on the database's volume, in MiB.
    pub min_free_disk_mb: u64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings { max_pending_files: 50_000, max_latency_p95_ms: 5_000, max_stalled: Duration::from_secs(60), min_free_disk_mb: 512 }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address the daemon listens on; port 0 picks a free port.
    pub listen: String,
    /// Enables `POST /api/sql` (read-only SQL for power users).
    pub sql_enabled: bool,
    /// Most rows `POST /api/sql` returns.
    pub sql_max_rows: usize,
    /// Bearer token every request but `/livez` and `/readyz` must carry
    /// (`Authorization: Bearer …`). Required to listen on a non-loopback address.
    pub token: String,
    /// HTTP worker threads; 0 means one per core (at least 2).
    pub workers: usize,
    /// Distinct read URLs whose answers are kept and served again (see `max_staleness`); 0 turns
    /// the reuse off (every request runs its queries; conditional GETs still answer 304).
    pub reused_answers: usize,
    /// How long after its computation began a kept answer is still served to a request that does
    /// not ask for the newest commit (`Cache-Control: no-cache` does); 0 serves only answers of
    /// the newest commit.
    #[serde(with = "humantime_serde")]
    pub max_staleness: Duration,
    /// How much lower than the pipeline's the HTTP workers' scheduling priority is (a `nice`
    /// increment, 0–19): under a flood of requests the commits keep their pace and the readers
    /// wait instead.
    pub worker_nice: i32,
}

impl HttpSettings {
    /// Worker threads to start.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, |cores| cores.get()).max(2),
            workers => workers,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:7337".to_owned(),
            sql_enabled: false,
            sql_max_rows: 10_000,
            token: String::new(),
            workers: 0,
            reused_answers: 1_024,
            max_staleness: Duration::from_millis(250),
            worker_nice: 10,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A tracing filter, e.g. "info" or "ducktail_pipeline=debug"; `RUST_LOG` overrides it.
    pub level: String,
    /// `human` or `json`.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".to_owned(), format: LogFormat::Human }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `[faults]`: test seams. Never enable them in production.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Name of an actor (watcher, reconciler, accumulator, decoder, writer, trace_builder,
    /// database_follower, transcript_follower, otlp_exporter) that panics once, while handling
    /// its first message after startup catch-up.
    pub panic_actor: String,
    /// The watcher drops every filesystem event (only the reconciler finds changes).
    pub drop_watch_events: bool,
    /// Watching the tree fails as if the inotify watch limit were reached.
    pub watch_limit: bool,
}

impl Settings {
    /// Checks values that parse but make no sense; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("pipeline.max_files", self.pipeline.max_files),
            ("pipeline.max_in_flight", self.pipeline.max_in_flight),
            ("pipeline.max_pending", self.pipeline.max_pending),
            ("index.batch_files", self.index.batch_files),
            ("sources.spans.batch_files", self.sources.spans.batch_files),
            ("decode.max_text_bytes", self.decode.max_text_bytes),
            ("http.sql_max_rows", self.http.sql_max_rows),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key} must be at least 1 (got 0)"));
            }
        }
        if self.health.max_pending_files == 0 || self.health.max_latency_p95_ms == 0 {
            return Err("health.max_pending_files and health.max_latency_p95_ms must be at least 1".to_owned());
        }
        if !(0..=19).contains(&self.http.worker_nice) {
            return Err(format!("http.worker_nice must be between 0 and 19 (got {})", self.http.worker_nice));
        }
        if self.http.max_staleness > Duration::from_secs(60) {
            return Err(format!("http.max_staleness must be at most 60s (got {:?}); answers older than that look broken", self.http.max_staleness));
        }
        if self.retention.interval < Duration::from_secs(1) {
            return Err(format!("retention.interval must be at least 1s (got {:?})", self.retention.interval));
        }
        if self.database.checkpoint_interval < Duration::from_secs(1) {
            return Err(format!("database.checkpoint_interval must be at least 1s (got {:?})", self.database.checkpoint_interval));
        }
        if self.sources.spans.poll_interval < Duration::from_millis(10) {
            return Err(format!("sources.spans.poll_interval must be at least 10ms (got {:?})", self.sources.spans.poll_interval));
        }
        for (name, source) in [("claude_code", &self.sources.claude_code), ("codex", &self.sources.codex)] {
            if source.poll_interval < Duration::from_millis(10) {
                return Err(format!("sources.{name}.poll_interval must be at least 10ms (got {:?})", source.poll_interval));
            }
            if source.stretch_bytes < 4096 || source.max_line_bytes < 4096 {
                return Err(format!(
                    "sources.{name}.stretch_bytes and sources.{name}.max_line_bytes must be at least 4096 (got {} and {})",
                    source.stretch_bytes, source.max_line_bytes
                ));
            }
        }
        if self.sources.opencode.database_poll_interval < Duration::from_millis(10) {
            return Err(format!("sources.opencode.database_poll_interval must be at least 10ms (got {:?})", self.sources.opencode.database_poll_interval));
        }
        let otlp = &self.export.otlp;
        if otlp.max_batch == 0 || otlp.max_content_bytes == 0 {
            return Err(format!(
                "export.otlp.max_batch and export.otlp.max_content_bytes must be at least 1 (got {} and {})",
                otlp.max_batch, otlp.max_content_bytes
            ));
        }
        if otlp.interval < Duration::from_millis(10) || otlp.max_backoff < otlp.interval {
            return Err(format!(
                "export.otlp.interval must be at least 10ms and export.otlp.max_backoff at least the interval (got {:?} and {:?})",
                otlp.interval, otlp.max_backoff
            ));
        }
        if let Some(unknown) = self.export.parquet.tables.iter().find(|name| ducktail_store::ExportTable::named(name).is_none()) {
            let known: Vec<&str> = ducktail_store::EXPORT_TABLES.iter().map(|table| table.name).collect();
            return Err(format!("export.parquet.tables: unknown table {unknown:?}; the tables are: {}", known.join(", ")));
        }
        if self.export.parquet.interval < Duration::from_secs(1) {
            return Err(format!("export.parquet.interval must be at least 1s (got {:?})", self.export.parquet.interval));
        }
        if self.reconcile.interval < Duration::from_millis(100) {
            return Err(format!("reconcile.interval must be at least 100ms (got {:?})", self.reconcile.interval));
        }
        const ACTORS: [&str; 10] =
            ["", "watcher", "reconciler", "accumulator", "decoder", "writer", "trace_builder", "database_follower", "transcript_follower", "otlp_exporter"];
        if !ACTORS.contains(&self.faults.panic_actor.as_str()) {
            return Err(format!(
                "faults.panic_actor must be one of watcher, reconciler, accumulator, decoder, writer, trace_builder, database_follower, transcript_follower, otlp_exporter (got {:?})",
                self.faults.panic_actor
            ));
        }
        Ok(())
    }
}
