//! The Parquet export: `DIR/<table>/date=YYYY-MM-DD/<machine>.parquet`, one file per table, day
//! and machine, so several machines' exports share one folder or bucket without overwriting each
//! other, and any engine reads them with hive partitioning (`date` comes from the path).
//!
//! Incremental: `DIR/_ducktail/<machine>.json` holds each written day's fingerprint (row count
//! and the sum of the rows' hashes, see [`ducktail_store::ExportDay`]). A run writes the days
//! whose fingerprint differs, removes the files of days that no longer have rows, and leaves the
//! rest alone. A day's file is written beside its final name and renamed over it, and the
//! manifest is written last the same way: a run that is killed midway leaves whole files, and the
//! next run writes again what the manifest does not yet say was written.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ducktail_store::{ExportDay, ExportTable, Reader, EXPORT_TABLES};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

/// What to export.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// The export's root folder (created if missing).
    pub dir: PathBuf,
    /// Only days at or after this `YYYY-MM-DD`.
    pub since: Option<String>,
    /// Only these tables (all of [`EXPORT_TABLES`] when empty).
    pub tables: Vec<String>,
    /// The `machine` column's value and the files' name.
    pub machine: String,
}

/// What one table's export did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// The table.
    pub table: String,
    /// Days written (new or changed).
    pub days_written: usize,
    /// Days left as they were.
    pub days_unchanged: usize,
    /// Days whose rows are gone, their files removed.
    pub days_removed: usize,
    /// Rows in the days written.
    pub rows_written: i64,
    /// Bytes of the files written.
    pub bytes_written: u64,
}

/// What an export did, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ParquetReport {
    /// The folder.
    pub dir: String,
    /// The machine name used.
    pub machine: String,
    /// One entry per table exported.
    pub tables: Vec<TableReport>,
}

impl ParquetReport {
    /// Rows written over every table.
    pub fn rows_written(&self) -> i64 {
        self.tables.iter().map(|table| table.rows_written).sum()
    }
}

/// Why an export failed; each names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// An unknown `--tables` entry.
    #[error("unknown table {name:?} for the Parquet export; the tables are: {known}")]
    UnknownTable {
        /// What was asked.
        name: String,
        /// What exists.
        known: String,
    },
    /// `--since` is not a date.
    #[error("since {0:?} is not a date; give YYYY-MM-DD")]
    BadSince(String),
    /// A file or folder could not be written.
    #[error("cannot write {path}: {source}; check that the folder is writable and the disk has room")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Parquet encoding failed.
    #[error("cannot write the Parquet file {path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        source: parquet::errors::ParquetError,
    },
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] ducktail_store::StoreError),
}

/// The manifest: per table, per day, the fingerprint of what was written.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Per table, per day.
    tables: BTreeMap<String, BTreeMap<String, String>>,
}

/// `machine` made safe as a file name: anything but letters, digits, `.`, `_`, `-` and `@`
/// becomes `_`.
pub fn file_stem(machine: &str) -> String {
    let stem: String = machine.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@') { c } else { '_' }).collect();
    match stem.trim_start_matches('.') {
        "" => "machine".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ParquetError + '_ {
    move |source| ParquetError::Io { path: path.to_owned(), source }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
fn replace_file(path: &Path, write: impl FnOnce(&mut fs::File) -> Result<(), ParquetError>) -> Result<u64, ParquetError> {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("export");
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = create_exclusive(&temporary)?;
    write(&mut file)?;
    file.sync_all().map_err(io(&temporary))?;
    let bytes = file.metadata().map_err(io(&temporary))?.len();
    drop(file);
    fs::rename(&temporary, path).map_err(io(path))?;
    Ok(bytes)
}

/// Days read per query: DuckDB's driver holds a query's whole result, so a first export of a
/// large `parts` table reads it a few days at a time rather than all at once.
const DAYS_PER_QUERY: usize = 8;

/// One day's file being written: beside its final name, renamed over it when finished.
struct DayFile {
    date: String,
    temporary: PathBuf,
    path: PathBuf,
    writer: ArrowWriter<fs::File>,
}

impl DayFile {
    fn create(folder: &Path, stem: &str, date: &str, schema: arrow_schema::SchemaRef, properties: &WriterProperties) -> Result<DayFile, ParquetError> {
        fs::create_dir_all(folder).map_err(io(folder))?;
        let path = folder.join(format!("{stem}.parquet"));
        let temporary = folder.join(format!(".{stem}.parquet.{}.tmp", std::process::id()));
        let file = create_exclusive(&temporary)?;
        let writer = ArrowWriter::try_new(file, schema, Some(properties.clone())).map_err(|source| ParquetError::Parquet { path: path.clone(), source })?;
        Ok(DayFile { date: date.to_owned(), temporary, path, writer })
    }

    fn write(&mut self, rows: &arrow_array::RecordBatch) -> Result<(), ParquetError> {
        self.writer.write(rows).map_err(|source| ParquetError::Parquet { path: self.path.clone(), source })
    }

    /// Closes, syncs and renames the file over the day's old one; its size.
    fn finish(self) -> Result<u64, ParquetError> {
        let file = self.writer.into_inner().map_err(|source| ParquetError::Parquet { path: self.path.clone(), source })?;
        file.sync_all().map_err(io(&self.temporary))?;
        let bytes = file.metadata().map_err(io(&self.temporary))?.len();
        drop(file);
        fs::rename(&self.temporary, &self.path).map_err(io(&self.path))?;
        Ok(bytes)
    }
}

/// A new file at `path`, never an existing one and never through a symbolic link: the export
/// folder may be shared with other people. A leftover of this process (a killed run) goes first.
fn create_exclusive(path: &Path) -> Result<fs::File, ParquetError> {
    use std::os::unix::fs::OpenOptionsExt;
    if fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_file()) {
        let _ = fs::remove_file(path);
    }
    fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(path).map_err(io(path))
}

/// The tables `options` asks for.
fn chosen_tables(options: &ParquetOptions) -> Result<Vec<ExportTable>, ParquetError> {
    if options.tables.is_empty() {
        return Ok(EXPORT_TABLES.to_vec());
    }
    options
        .tables
        .iter()
        .map(|name| {
            ExportTable::named(name.trim()).ok_or_else(|| ParquetError::UnknownTable {
                name: name.clone(),
                known: EXPORT_TABLES.iter().map(|table| table.name).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

/// Exports what changed since the last export into `options.dir` (see the module doc).
pub fn export_parquet(reader: &Reader, options: &ParquetOptions) -> Result<ParquetReport, ParquetError> {
    if let Some(since) = &options.since {
        let valid = since.len() == 10 && since.chars().enumerate().all(|(index, c)| if index == 4 || index == 7 { c == '-' } else { c.is_ascii_digit() });
        if !valid {
            return Err(ParquetError::BadSince(since.clone()));
        }
    }
    let tables = chosen_tables(options)?;
    let stem = file_stem(&options.machine);
    let state_dir = options.dir.join("_ducktail");
    fs::create_dir_all(&state_dir).map_err(io(&state_dir))?;
    let manifest_path = state_dir.join(format!("{stem}.json"));
    // A manifest that cannot be read means nothing is known to be written: everything is again.
    let mut manifest: Manifest = fs::read(&manifest_path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
    let properties = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut report = ParquetReport { dir: options.dir.display().to_string(), machine: options.machine.clone(), tables: Vec::new() };
    for table in tables {
        let mut table_report = TableReport { table: table.name.to_owned(), ..TableReport::default() };
        let days = reader.export_days(table, options.since.as_deref())?;
        let written = manifest.tables.entry(table.name.to_owned()).or_default();
        let changed: Vec<&ExportDay> = days.iter().filter(|day| written.get(&day.date) != Some(&day.fingerprint)).collect();
        table_report.days_unchanged = days.len() - changed.len();
        if !changed.is_empty() {
            let dates: Vec<String> = changed.iter().map(|day| day.date.clone()).collect();
            // One pass over the table per few days (the driver holds a query's whole result), one
            // file open at a time: the rows come sorted by day.
            let mut open: Option<DayFile> = None;
            for some_days in dates.chunks(DAYS_PER_QUERY) {
                reader.export_rows_by_day(table, some_days, &options.machine, |date, rows| {
                    if open.as_ref().is_some_and(|file| file.date != date) {
                        let finished = open.take().expect("checked just above");
                        table_report.bytes_written += finished.finish()?;
                    }
                    if open.is_none() {
                        let folder = options.dir.join(table.name).join(format!("date={date}"));
                        open = Some(DayFile::create(&folder, &stem, date, rows.schema(), &properties)?);
                    }
                    open.as_mut().expect("opened just above").write(&rows)
                })?;
            }
            if let Some(finished) = open.take() {
                table_report.bytes_written += finished.finish()?;
            }
            // A changed day is recorded once written; one whose rows vanished meanwhile is not,
            // and the next run looks at it again.
            for day in changed {
                if options.dir.join(table.name).join(format!("date={}", day.date)).join(format!("{stem}.parquet")).is_file() {
                    written.insert(day.date.clone(), day.fingerprint.clone());
                    table_report.days_written += 1;
                    table_report.rows_written += day.rows;
                }
            }
        }
        // Days the manifest has that the table no longer has (within `since`): their rows are gone.
        let present: std::collections::BTreeSet<&str> = days.iter().map(|day| day.date.as_str()).collect();
        let gone: Vec<String> = written
            .keys()
            .filter(|date| !present.contains(date.as_str()) && options.since.as_deref().is_none_or(|since| date.as_str() >= since))
            .cloned()
            .collect();
        for date in gone {
            let folder = options.dir.join(table.name).join(format!("date={date}"));
            let path = folder.join(format!("{stem}.parquet"));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(ParquetError::Io { path, source: error }),
            }
            // Other machines' files may share the folder: it goes only when empty.
            let _ = fs::remove_dir(&folder);
            written.remove(&date);
            table_report.days_removed += 1;
        }
        report.tables.push(table_report);
    }
    replace_file(&manifest_path, |file| {
        serde_json::to_writer_pretty(&mut *file, &manifest).map_err(|error| ParquetError::Io { path: manifest_path.clone(), source: error.into() })
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_become_safe_file_names() {
        assert_eq!(file_stem("ana@laptop.local"), "ana@laptop.local");
        assert_eq!(file_stem("ana/../x"), "ana_.._x");
        assert_eq!(file_stem("..hidden"), "hidden");
        assert_eq!(file_stem(""), "machine");
    }
}
