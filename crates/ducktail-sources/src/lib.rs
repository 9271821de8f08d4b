//! Reading the outside world, synchronously: ducktail's sources of records.
//!
//! This crate owns everything that turns bytes on disk into [`ducktail_model`] records:
//!
//! - [`opencode`] — OpenCode's JSON storage tree (`~/.local/share/opencode/storage/`): which file
//!   is what ([`classify`]), walking the tree ([`scan_storage`], yielding [`ScannedFile`]s with
//!   their [`FileStamp`](ducktail_model::FileStamp)), and decoding one file into
//!   [`Records`](ducktail_model::Records) ([`decode_file`], [`decode_bytes`]).
//! - [`opencode::sqlite`] — OpenCode ≥ 1.2's `opencode.db`, opened read-only and compared with a
//!   [`Mirror`](opencode::sqlite::Mirror) of what was delivered, so each read reports only new,
//!   changed and deleted rows.
//! - [`spans`] — OpenTelemetry span files in Parquet: listing `*.parquet` under a root and reading
//!   one into [`Span`](ducktail_model::Span)s, tolerant of column widths and schema generations.
//! - [`pricing`] — list prices per token for Anthropic and OpenAI models, bundled from a LiteLLM
//!   snapshot and optionally overridden by a user file: a [`PriceTable`](pricing::PriceTable)
//!   costs responses whose logs count tokens but not dollars.
//!
//! Every function here is synchronous and cheap to call from a worker thread; the pipeline decides
//! when and how often to call them.
//!
//! Invariants:
//! - This crate never writes, renames or deletes anything it reads: OpenCode owns its files. The
//!   SQLite database is opened read-only and never checkpointed; read transactions are short.
//! - A bad file is an outcome, never a panic or an abort: decoding returns
//!   [`FileOutcome::NotReady`](ducktail_model::FileOutcome::NotReady) for files that may still be
//!   being written and [`FileOutcome::Failed`](ducktail_model::FileOutcome::Failed) with a reason
//!   for the rest; scanning reports a per-path [`ScanError`] and goes on.
//! - Symbolic links, FIFOs and other non-regular files are never opened for reading.
//! - It knows nothing about the database or the HTTP server: it names neither duckdb nor actix.

pub mod opencode;
pub mod pricing;
pub mod spans;
pub mod transcript;

pub use opencode::decode::{decode_bytes, decode_file, DecodeLimits};
pub use opencode::layout::classify;
pub use opencode::scan::{scan_storage, stamp_of, storage_root, ScanError, ScannedFile, StorageScan};
