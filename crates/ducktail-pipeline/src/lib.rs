//! The live pipeline and the one-shot indexer: how files on disk become committed rows.
//!
//! # Layout
//! - [`index::index_once`]: the synchronous `ducktail index` run.
//! - [`daemon::Daemon`]: the supervised actor tree behind `ducktail run` — [`watcher::Watcher`],
//!   [`reconciler::Reconciler`], [`accumulator::Accumulator`], the [`decoder::Decoder`] pool, the
//!   [`writer::Writer`] and the [`trace_builder::TraceBuilder`] — exchanging the typed messages of
//!   [`messages`] — plus the [`database::DatabaseFollower`], which reads OpenCode's `opencode.db`,
//!   the [`spans::SpanFollower`], which reads OpenTelemetry span Parquet files, and one
//!   [`transcripts::TranscriptFollower`] per agent with append-only transcripts (Claude Code,
//!   Codex CLI); all hand their changes to the same Writer. Each actor is a thin shell; logic
//!   that can be tested without actix lives in plain structs and functions
//!   ([`accumulator::AccumulatorCore`], [`files::diff`], [`watcher::translate`],
//!   [`transcripts::sync_transcripts`]).
//! - [`pricing`]: list prices applied to stored rows (`list_cost`, computed costs).
//! - [`settings`]: the typed configuration; [`status`]: the counters health reads and the commit
//!   feed behind server-sent events; [`metrics`]: the Prometheus registry.
//!
//! This crate never names duckdb (the store does the SQL) nor HTTP (the http crate serves). Blocking
//! work — DuckDB calls, file reads, directory walks — never runs on the async executor: the writer,
//! decoders and trace builder are sync actors on their own threads, and scans run on the blocking
//! pool.

pub mod accumulator;
pub mod daemon;
pub mod database;
pub mod decoder;
pub mod export;
pub mod files;
pub mod index;
pub mod messages;
pub mod metrics;
pub mod pricing;
pub mod reconciler;
pub mod settings;
pub mod spans;
pub mod status;
pub mod supervision;
pub mod trace_builder;
pub mod transcripts;
pub mod trigger;
pub mod watcher;
pub mod writer;

#[cfg(test)]
mod model_test;

use std::sync::OnceLock;

use actix::Addr;

/// The actors' addresses, filled once by the daemon after every actor exists. Actors that
/// restart keep reaching each other through it, because supervised addresses stay valid.
#[derive(Default)]
pub struct Links {
    accumulator: OnceLock<Addr<accumulator::Accumulator>>,
    decoders: OnceLock<Addr<decoder::Decoder>>,
    writer: OnceLock<Addr<writer::Writer>>,
    reconciler: OnceLock<Addr<reconciler::Reconciler>>,
    trace_builder: OnceLock<Addr<trace_builder::TraceBuilder>>,
    /// Set only when `opencode.db` is followed.
    database: OnceLock<Addr<database::DatabaseFollower>>,
    /// Set only when a span folder is configured.
    spans: OnceLock<Addr<spans::SpanFollower>>,
    /// Set only when `[export.otlp]` is enabled.
    pub(crate) otlp_exporter: OnceLock<Addr<export::OtlpExporter>>,
}

macro_rules! link_getter {
    ($name:ident, $ty:ty) => {
        /// The address; the daemon sets every link before any message flows.
        pub fn $name(&self) -> &Addr<$ty> {
            self.$name.get().expect(concat!(stringify!($name), " link used before the daemon wired it"))
        }
    };
}

impl Links {
    /// Whether the daemon has set every link.
    pub fn is_wired(&self) -> bool {
        self.accumulator.get().is_some()
            && self.decoders.get().is_some()
            && self.writer.get().is_some()
            && self.reconciler.get().is_some()
            && self.trace_builder.get().is_some()
    }

    link_getter!(accumulator, accumulator::Accumulator);
    link_getter!(decoders, decoder::Decoder);
    link_getter!(writer, writer::Writer);
    link_getter!(reconciler, reconciler::Reconciler);
    link_getter!(trace_builder, trace_builder::TraceBuilder);

    /// The database follower, when `opencode.db` is followed.
    pub fn database(&self) -> Option<&Addr<database::DatabaseFollower>> {
        self.database.get()
    }

    /// The span follower, when a span folder is configured.
    pub fn spans(&self) -> Option<&Addr<spans::SpanFollower>> {
        self.spans.get()
    }

    /// The OTLP exporter, when `[export.otlp]` is enabled.
    pub fn otlp_exporter(&self) -> Option<&Addr<export::OtlpExporter>> {
        self.otlp_exporter.get()
    }
}
