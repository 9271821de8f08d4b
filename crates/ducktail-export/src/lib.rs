//! ducktail's exports: the stored rows in the formats other systems already read.
//!
//! - [`parquet`] writes the contract tables as Parquet files partitioned by day, with a
//!   `machine` column, incrementally: a day is written again only when one of its rows changed,
//!   and its file is replaced by a rename, so a reader never sees half a file.
//! - [`otlp`] turns agent sessions into OpenTelemetry GenAI traces and sends them over
//!   OTLP/HTTP; the attribute names it uses live in [`otlp::conventions`] alone.
//!
//! This crate reads the database through a [`ducktail_store::Reader`] and never writes it: what
//! was sent is recorded by whoever owns the writer (the daemon's Writer actor, or the CLI when no
//! daemon runs) through [`otlp::SentLedger`]. It never reads an agent's source files.

pub mod otlp;
pub mod parquet;

/// The name a machine's rows carry in an export unless configured: `user@host`.
pub fn default_machine_name() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_default();
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|host| !host.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    if user.is_empty() {
        host
    } else {
        format!("{user}@{host}")
    }
}
