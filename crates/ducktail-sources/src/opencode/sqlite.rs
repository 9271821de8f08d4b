//! OpenCode ≥ 1.2's `opencode.db` (SQLite, WAL mode): reading it incrementally without ever
//! getting in OpenCode's way. See `shared/opencode-sqlite.md` for what the rules below rest on.
//!
//! - The database is opened **read-only** (`SQLITE_OPEN_READ_ONLY`, `PRAGMA query_only`): a WAL
//!   reader never blocks OpenCode's writer, never writes the file and never checkpoints the WAL.
//!   Each read is one short read transaction, so it sees one consistent commit and does not hold
//!   checkpoints back between reads.
//! - Columns are selected by name (fresh and upgraded databases order them differently); unknown
//!   tables and columns are ignored, missing optional tables are tolerated.
//! - What was already delivered is remembered in a [`Mirror`]: per row its `time_updated` (messages,
//!   parts) or a fingerprint of its columns (sessions, projects, todo lists). A read compares the
//!   database with the mirror and reports new and changed rows as [`VersionedRecords`] and vanished
//!   ones as [`RemovedRecord`]s. The caller applies a chunk's [`MirrorUpdate`]s once the chunk is
//!   committed, so a failed commit is simply found again by the next read.
//! - [`ReadMode::Incremental`] looks only at rows written in the last [`WATERMARK_OVERLAP_MS`]
//!   before the newest one delivered, and looks for deleted messages and parts only in sessions
//!   whose event log recorded a removal. [`ReadMode::Full`] compares every `(id, time_updated)`:
//!   it catches rows written without events (imports, todos), clock skew between OpenCode
//!   processes, and deletes done by migrations.
//!
//! Message and part documents are decoded by the same code as the JSON tree
//! ([`super::decode::decode_document`]), so both sources produce identical records.

use std::collections::{hash_map::DefaultHasher, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ducktail_model::{
    FileKind, FileOutcome, ProjectRecord, RawDocument, Records, RejectedRow, RemovedRecord, SessionRecord, StoredRecord, TodoRecord, VersionedRecords,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, Row};
use serde_json::{Map, Value};

use super::decode::{decode_document, DecodeLimits};

/// `file_index.source` and the records' `source` for rows of `opencode.db`.
pub const OPENCODE_SQLITE_SOURCE: &str = "opencode_sqlite";

/// How far behind the newest delivered `time_updated` an incremental read looks again. OpenCode's
/// processes stamp rows with their own wall clocks at millisecond resolution, so a row committed
/// later can carry an earlier time; the overlap (and the periodic full read) catches it.
pub const WATERMARK_OVERLAP_MS: i64 = 10_000;

/// Rows decoded per [`Chunk`] handed to the caller (one database transaction each).
pub const ROWS_PER_CHUNK: usize = 2_000;

/// `<opencode data dir>/opencode.db`, the database of OpenCode's release channels.
pub fn database_path(opencode_dir: &Path) -> PathBuf {
    opencode_dir.join("opencode.db")
}

/// Whether a file name is the database or its WAL: the files whose changes mean new data.
pub fn is_database_file_name(name: &str) -> bool {
    name == "opencode.db" || name == "opencode.db-wal"
}

/// Why the database could not be read. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The file does not exist (yet).
    #[error("OpenCode database {path} does not exist yet; it is read as soon as OpenCode creates it")]
    Missing {
        /// The database file.
        path: PathBuf,
    },
    /// A writer held a lock longer than the busy timeout.
    #[error("OpenCode database {path} is locked ({detail}); retrying with backoff")]
    Busy {
        /// The database file.
        path: PathBuf,
        /// SQLite's message.
        detail: String,
    },
    /// The file is not a SQLite database, or is damaged.
    #[error("OpenCode database {path} is not a readable SQLite database ({detail}); ducktail retries when it changes; if OpenCode cannot open it either, restore it from a backup")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's message.
        detail: String,
    },
    /// Any other failure to open or query.
    #[error("cannot read OpenCode database {path} ({context}): {detail}; check that the user running ducktail can read the file and its folder")]
    Read {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// SQLite's message.
        detail: String,
    },
}

impl DatabaseError {
    fn from_sqlite(path: &Path, context: &'static str, error: rusqlite::Error) -> DatabaseError {
        let detail = error.to_string();
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DatabaseError::Busy { path: path.to_owned(), detail },
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => DatabaseError::Corrupt { path: path.to_owned(), detail },
            _ => DatabaseError::Read { path: path.to_owned(), context, detail },
        }
    }
}

/// What a read compares: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Rows written recently, deletes where the event log shows them.
    Incremental,
    /// Every row.
    Full,
}

/// What the caller has delivered so far, per record. Fingerprints of sessions, projects and todo
/// lists are in-memory hashes: a mirror rebuilt from the store has none, so those (small) tables
/// are delivered once more after a restart.
#[derive(Debug, Default, Clone)]
pub struct Mirror {
    sessions: HashMap<String, u64>,
    projects: HashMap<String, u64>,
    todos: HashMap<String, u64>,
    messages: HashMap<String, RowStamp>,
    parts: HashMap<String, RowStamp>,
    /// Last `event_sequence.seq` seen per session.
    event_seq: HashMap<String, i64>,
    message_watermark: i64,
    part_watermark: i64,
    /// `PRAGMA data_version` after the last complete read (per connection).
    data_version: Option<i64>,
}

/// Where a message or part stood when it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowStamp {
    session_id: String,
    updated_ms: i64,
}

/// A change to the [`Mirror`], applied once the chunk that carries it is committed.
#[derive(Debug, Clone)]
pub enum MirrorUpdate {
    /// A session, project or todo list was delivered with this fingerprint.
    Fingerprint(FileKind, String, u64),
    /// A message or part was delivered.
    Row(FileKind, String, String, i64),
    /// A record was removed.
    Removed(FileKind, String),
    /// A session's event log position.
    EventSeq(String, i64),
    /// Every row was compared: forget event positions of sessions no longer logged.
    EventSeqsComplete(HashSet<String>),
    /// The read finished at this `data_version`.
    DataVersion(i64),
}

impl Mirror {
    /// A mirror of what the store holds from this source.
    pub fn from_stored(rows: impl IntoIterator<Item = StoredRecord>) -> Mirror {
        let mut mirror = Mirror::default();
        for row in rows {
            match row.kind {
                FileKind::Session => {
                    mirror.sessions.insert(row.id, 0);
                }
                FileKind::Project => {
                    mirror.projects.insert(row.id, 0);
                }
                FileKind::Todo => {
                    mirror.todos.insert(row.id, 0);
                }
                FileKind::Message | FileKind::Part => {
                    let stamp = RowStamp { session_id: row.session_id.unwrap_or_default(), updated_ms: row.version_ms.unwrap_or(i64::MIN) };
                    mirror.rows_mut(row.kind).insert(row.id, stamp);
                }
                FileKind::SessionDiff => {}
            }
        }
        mirror.message_watermark = mirror.messages.values().map(|stamp| stamp.updated_ms).max().unwrap_or(0);
        mirror.part_watermark = mirror.parts.values().map(|stamp| stamp.updated_ms).max().unwrap_or(0);
        mirror
    }

    /// Records delivered per kind (sessions, messages, parts), for status output.
    pub fn len(&self) -> usize {
        self.sessions.len() + self.messages.len() + self.parts.len() + self.projects.len() + self.todos.len()
    }

    /// Whether nothing was delivered yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the data version, so the next incremental read looks even if nothing committed
    /// (after a failed commit, or with a new connection).
    pub fn forget_data_version(&mut self) {
        self.data_version = None;
    }

    /// Applies the updates of a committed chunk.
    pub fn apply(&mut self, updates: &[MirrorUpdate]) {
        for update in updates {
            match update {
                MirrorUpdate::Fingerprint(kind, id, fingerprint) => {
                    if let Some(map) = self.fingerprints_mut(*kind) {
                        map.insert(id.clone(), *fingerprint);
                    }
                }
                MirrorUpdate::Row(kind, id, session_id, updated_ms) => {
                    let watermark = if *kind == FileKind::Message { &mut self.message_watermark } else { &mut self.part_watermark };
                    *watermark = (*watermark).max(*updated_ms);
                    self.rows_mut(*kind).insert(id.clone(), RowStamp { session_id: session_id.clone(), updated_ms: *updated_ms });
                }
                MirrorUpdate::Removed(kind, id) => match kind {
                    FileKind::Message | FileKind::Part => {
                        self.rows_mut(*kind).remove(id);
                    }
                    _ => {
                        if let Some(map) = self.fingerprints_mut(*kind) {
                            map.remove(id);
                        }
                        if *kind == FileKind::Session {
                            self.event_seq.remove(id);
                        }
                    }
                },
                MirrorUpdate::EventSeq(session_id, seq) => {
                    self.event_seq.insert(session_id.clone(), *seq);
                }
                MirrorUpdate::EventSeqsComplete(present) => self.event_seq.retain(|id, _| present.contains(id)),
                MirrorUpdate::DataVersion(version) => self.data_version = Some(*version),
            }
        }
    }

    /// Everything delivered, as removals: what the store must forget when the database file is
    /// gone (a fresh index of the data folder would hold none of it).
    pub fn removal_of_everything(&self) -> Chunk {
        let mut chunk = Chunk::default();
        let fingerprinted = [(FileKind::Project, &self.projects), (FileKind::Session, &self.sessions), (FileKind::Todo, &self.todos)];
        let rows = [(FileKind::Message, &self.messages), (FileKind::Part, &self.parts)];
        let ids = fingerprinted
            .iter()
            .flat_map(|(kind, map)| map.keys().map(move |id| (*kind, id)))
            .chain(rows.iter().flat_map(|(kind, map)| map.keys().map(move |id| (*kind, id))));
        for (kind, id) in ids {
            chunk.removed.push(RemovedRecord { kind, id: id.clone() });
            chunk.updates.push(MirrorUpdate::Removed(kind, id.clone()));
        }
        chunk
    }

    fn fingerprints_mut(&mut self, kind: FileKind) -> Option<&mut HashMap<String, u64>> {
        match kind {
            FileKind::Session => Some(&mut self.sessions),
            FileKind::Project => Some(&mut self.projects),
            FileKind::Todo => Some(&mut self.todos),
            _ => None,
        }
    }

    fn rows_mut(&mut self, kind: FileKind) -> &mut HashMap<String, RowStamp> {
        if kind == FileKind::Message {
            &mut self.messages
        } else {
            &mut self.parts
        }
    }

    fn rows(&self, kind: FileKind) -> &HashMap<String, RowStamp> {
        if kind == FileKind::Message {
            &self.messages
        } else {
            &self.parts
        }
    }
}

/// One unit of delivery: commit these together, then [`Mirror::apply`] the updates.
#[derive(Debug, Default, Clone)]
pub struct Chunk {
    /// New and changed records.
    pub upserts: Vec<VersionedRecords>,
    /// Records gone from the database.
    pub removed: Vec<RemovedRecord>,
    /// Rows that did not decode.
    pub rejected: Vec<RejectedRow>,
    /// What the mirror learns once this chunk is committed.
    pub updates: Vec<MirrorUpdate>,
}

impl Chunk {
    /// Whether the chunk changes nothing in the store.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removed.is_empty() && self.rejected.is_empty()
    }
}

/// What one read found, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadSummary {
    /// Records delivered as new or changed.
    pub upserted: usize,
    /// Records delivered as removed.
    pub removed: usize,
    /// Rows that did not decode.
    pub rejected: usize,
    /// Whether the read was skipped because nothing committed since the last one.
    pub unchanged: bool,
}

/// Which optional tables this database has (older and newer schemas differ).
#[derive(Debug, Clone, Copy, Default)]
struct Tables {
    session: bool,
    project: bool,
    message: bool,
    part: bool,
    todo: bool,
    event: bool,
}

/// A read-only connection to one `opencode.db`.
pub struct OpencodeDatabase {
    connection: Connection,
    path: PathBuf,
    tables: Tables,
    /// (device, inode) of the file when opened: a connection keeps reading the file it opened,
    /// so a replaced or deleted database must be noticed by path.
    identity: Option<(u64, u64)>,
}

impl OpencodeDatabase {
    /// Opens `path` read-only. A database in a folder ducktail cannot write, with no `-wal` file,
    /// is opened as immutable (SQLite needs to create the `-shm` index otherwise); such a
    /// database cannot be being written by anyone.
    pub fn open(path: &Path) -> Result<OpencodeDatabase, DatabaseError> {
        if !path.is_file() {
            return Err(DatabaseError::Missing { path: path.to_owned() });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let opened = Connection::open_with_flags(path, flags).and_then(|connection| {
            connection.busy_timeout(Duration::from_secs(2))?;
            connection.pragma_update(None, "query_only", true)?;
            // The first real read is where a missing `-shm` in a read-only folder shows up.
            connection.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get::<_, i64>(0))?;
            Ok(connection)
        });
        let connection = match opened {
            Ok(connection) => connection,
            Err(error) if error.sqlite_error_code() == Some(ErrorCode::CannotOpen) && !wal_path(path).exists() => {
                let uri = format!("file:{}?immutable=1", uri_escape(path));
                let connection = Connection::open_with_flags(&uri, flags | OpenFlags::SQLITE_OPEN_URI)
                    .map_err(|error| DatabaseError::from_sqlite(path, "opening read-only", error))?;
                connection
                    .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get::<_, i64>(0))
                    .map_err(|error| DatabaseError::from_sqlite(path, "opening read-only", error))?;
                connection
            }
            Err(error) => return Err(DatabaseError::from_sqlite(path, "opening read-only", error)),
        };
        let identity = file_identity(path);
        let mut database = OpencodeDatabase { connection, path: path.to_owned(), tables: Tables::default(), identity };
        database.refresh_tables()?;
        Ok(database)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at the path is no longer the one this connection reads (replaced by a
    /// rename, or deleted): reopen to follow the new one.
    pub fn is_replaced(&self) -> bool {
        file_identity(&self.path) != self.identity
    }

    fn refresh_tables(&mut self) -> Result<(), DatabaseError> {
        let list_tables = |connection: &Connection| -> rusqlite::Result<HashSet<String>> {
            let mut statement = connection.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
            let names = statement.query_map([], |row| row.get::<_, String>(0))?.collect();
            names
        };
        let names = list_tables(&self.connection).map_err(|error| DatabaseError::from_sqlite(&self.path, "listing tables", error))?;
        let tables = Tables {
            session: names.contains("session"),
            project: names.contains("project"),
            message: names.contains("message"),
            part: names.contains("part"),
            todo: names.contains("todo"),
            event: names.contains("event") && names.contains("event_sequence"),
        };
        if !tables.session && !names.is_empty() {
            tracing::warn!(path = %self.path.display(), "database has no `session` table: not an OpenCode database (yet); nothing to read");
        } else if tables.session && !tables.event {
            tracing::info!(path = %self.path.display(), "database has no event log (OpenCode < 1.3); deletes are found by the periodic full comparison");
        }
        self.tables = tables;
        Ok(())
    }

    /// Whether another connection committed since `mirror`'s last complete read (always true
    /// when the mirror has no read on this connection yet).
    pub fn changed_since(&self, mirror: &Mirror) -> Result<bool, DatabaseError> {
        Ok(mirror.data_version != Some(self.data_version()?))
    }

    /// `PRAGMA data_version`: changes whenever another connection commits.
    pub fn data_version(&self) -> Result<i64, DatabaseError> {
        self.connection
            .pragma_query_value(None, "data_version", |row| row.get(0))
            .map_err(|error| DatabaseError::from_sqlite(&self.path, "reading data_version", error))
    }

    /// Compares the database with `mirror` in one read transaction and hands the differences to
    /// `deliver` in chunks. `deliver` returns `false` to stop (a commit failed); the read then
    /// ends early and the next read finds the rest. The mirror is not changed here.
    pub fn read(
        &mut self,
        mirror: &Mirror,
        mode: ReadMode,
        limits: &DecodeLimits,
        deliver: &mut dyn FnMut(Chunk) -> bool,
    ) -> Result<ReadSummary, DatabaseError> {
        let data_version = self.data_version()?;
        if mode == ReadMode::Incremental && mirror.data_version == Some(data_version) {
            return Ok(ReadSummary { unchanged: true, ..ReadSummary::default() });
        }
        // A migration may have added or dropped tables since the last read.
        self.refresh_tables()?;
        let path = self.path.clone();
        self.connection.execute_batch("BEGIN DEFERRED").map_err(|error| DatabaseError::from_sqlite(&path, "beginning a read transaction", error))?;
        let reader = SnapshotReader { connection: &self.connection, tables: self.tables, mirror, limits };
        let result = reader.read(mode, data_version, deliver);
        // Ending the read transaction promptly lets OpenCode checkpoint its WAL.
        let _ = self.connection.execute_batch("COMMIT");
        result.map_err(|error| DatabaseError::from_sqlite(&path, "reading changes", error))
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|metadata| (metadata.dev(), metadata.ino()))
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Escapes the characters that end or change a SQLite URI path.
fn uri_escape(path: &Path) -> String {
    let mut escaped = String::new();
    for character in path.to_string_lossy().chars() {
        match character {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3f"),
            '#' => escaped.push_str("%23"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// One read transaction's work.
struct SnapshotReader<'a> {
    connection: &'a Connection,
    tables: Tables,
    mirror: &'a Mirror,
    limits: &'a DecodeLimits,
}

/// Collects deliveries into chunks of [`ROWS_PER_CHUNK`].
struct Deliveries<'d> {
    chunk: Chunk,
    /// Updates that may only be learnt once every chunk is committed (event log positions: a
    /// session's removals are delivered after its position is read).
    last: Vec<MirrorUpdate>,
    summary: ReadSummary,
    deliver: &'d mut dyn FnMut(Chunk) -> bool,
    stopped: bool,
}

impl Deliveries<'_> {
    fn upsert(&mut self, records: VersionedRecords, update: MirrorUpdate) {
        self.summary.upserted += 1;
        self.chunk.upserts.push(records);
        self.chunk.updates.push(update);
        self.maybe_flush();
    }

    fn remove(&mut self, kind: FileKind, id: String) {
        self.summary.removed += 1;
        self.chunk.updates.push(MirrorUpdate::Removed(kind, id.clone()));
        self.chunk.removed.push(RemovedRecord { kind, id });
        self.maybe_flush();
    }

    fn reject(&mut self, kind: FileKind, id: String, reason: String, update: MirrorUpdate) {
        self.summary.rejected += 1;
        self.chunk.rejected.push(RejectedRow { kind, id, reason });
        self.chunk.updates.push(update);
        self.maybe_flush();
    }

    fn maybe_flush(&mut self) {
        if self.chunk.upserts.len() + self.chunk.removed.len() + self.chunk.rejected.len() >= ROWS_PER_CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.stopped {
            self.chunk = Chunk::default();
            return;
        }
        let chunk = std::mem::take(&mut self.chunk);
        if !(self.deliver)(chunk) {
            self.stopped = true;
        }
    }
}

impl SnapshotReader<'_> {
    fn read(&self, mode: ReadMode, data_version: i64, deliver: &mut dyn FnMut(Chunk) -> bool) -> rusqlite::Result<ReadSummary> {
        let mut out = Deliveries { chunk: Chunk::default(), last: Vec::new(), summary: ReadSummary::default(), deliver, stopped: false };
        if !self.tables.session {
            return Ok(out.summary);
        }
        if self.tables.project {
            self.read_projects(&mut out)?;
        }
        let sessions_now = self.read_sessions(&mut out)?;
        if self.tables.todo {
            self.read_todos(&mut out)?;
        }
        // Sessions whose messages or parts may have been deleted.
        let mut check_deletes: HashSet<String> = HashSet::new();
        if self.tables.event {
            self.read_event_log(&mut out, mode, &mut check_deletes)?;
        }
        for kind in [FileKind::Message, FileKind::Part] {
            let present = match kind {
                FileKind::Message => self.tables.message,
                _ => self.tables.part,
            };
            if present {
                self.read_rows(kind, mode, &sessions_now, &check_deletes, &mut out)?;
            }
        }
        if out.stopped {
            return Ok(out.summary);
        }
        let last = std::mem::take(&mut out.last);
        out.chunk.updates.extend(last);
        out.chunk.updates.push(MirrorUpdate::DataVersion(data_version));
        out.flush();
        Ok(out.summary)
    }

    fn read_projects(&self, out: &mut Deliveries<'_>) -> rusqlite::Result<()> {
        let mut statement = self.connection.prepare("SELECT * FROM project")?;
        let columns = column_names(&statement);
        let mut rows = statement.query([])?;
        let mut seen = HashSet::new();
        while let Some(row) = rows.next()? {
            let document = row_document(row, &columns, &["sandboxes", "commands"])?;
            let Some(id) = document.get("id").and_then(Value::as_str).map(str::to_owned) else { continue };
            seen.insert(id.clone());
            let fingerprint = fingerprint(&document);
            if self.mirror.projects.get(&id) == Some(&fingerprint) {
                continue;
            }
            let version_ms = integer_column(&document, "time_updated").unwrap_or(0);
            let record = ProjectRecord {
                id: id.clone(),
                worktree: string_column(&document, "worktree"),
                vcs: string_column(&document, "vcs"),
                name: string_column(&document, "name"),
                created_at: integer_column(&document, "time_created"),
                updated_at: integer_column(&document, "time_updated"),
                initialized_at: integer_column(&document, "time_initialized"),
                raw: raw_of(&document),
            };
            out.upsert(VersionedRecords { records: Records::Project(record), version_ms }, MirrorUpdate::Fingerprint(FileKind::Project, id, fingerprint));
        }
        for id in self.mirror.projects.keys().filter(|id| !seen.contains(*id)) {
            out.remove(FileKind::Project, id.clone());
        }
        Ok(())
    }

    /// Reads every session (the table is small, and `time_updated` is not bumped by title or
    /// usage changes, so no watermark would do). Returns the ids present.
    fn read_sessions(&self, out: &mut Deliveries<'_>) -> rusqlite::Result<HashSet<String>> {
        let mut statement = self.connection.prepare("SELECT * FROM session")?;
        let columns = column_names(&statement);
        let mut rows = statement.query([])?;
        let mut seen = HashSet::new();
        while let Some(row) = rows.next()? {
            let document = row_document(row, &columns, &["permission", "revert", "summary_diffs", "model", "metadata"])?;
            let Some(id) = document.get("id").and_then(Value::as_str).map(str::to_owned) else { continue };
            seen.insert(id.clone());
            let fingerprint = fingerprint(&document);
            if self.mirror.sessions.get(&id) == Some(&fingerprint) {
                continue;
            }
            let version_ms = integer_column(&document, "time_updated").unwrap_or(0);
            let record = SessionRecord {
                id: id.clone(),
                project_id: string_column(&document, "project_id"),
                parent_id: string_column(&document, "parent_id"),
                slug: string_column(&document, "slug"),
                title: string_column(&document, "title"),
                directory: string_column(&document, "directory"),
                version: string_column(&document, "version"),
                created_at: integer_column(&document, "time_created"),
                updated_at: integer_column(&document, "time_updated"),
                archived_at: integer_column(&document, "time_archived"),
                summary_additions: integer_column(&document, "summary_additions"),
                summary_deletions: integer_column(&document, "summary_deletions"),
                summary_files: integer_column(&document, "summary_files"),
                share_url: string_column(&document, "share_url"),
                raw: raw_of(&document),
            };
            out.upsert(VersionedRecords { records: Records::Session(record), version_ms }, MirrorUpdate::Fingerprint(FileKind::Session, id, fingerprint));
        }
        // A deleted session takes its messages, parts and todos with it (ON DELETE CASCADE).
        for id in self.mirror.sessions.keys().filter(|id| !seen.contains(*id)) {
            out.remove(FileKind::Session, id.clone());
        }
        Ok(seen)
    }

    /// Todo lists are rewritten whole (delete + insert) and leave no events: compare each
    /// session's (count, newest `time_updated`).
    fn read_todos(&self, out: &mut Deliveries<'_>) -> rusqlite::Result<()> {
        let mut statement = self.connection.prepare("SELECT session_id, count(*), max(time_updated) FROM todo GROUP BY session_id")?;
        let lists: Vec<(String, i64, i64)> =
            statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get::<_, Option<i64>>(2)?.unwrap_or(0))))?.collect::<rusqlite::Result<_>>()?;
        let mut items_of = self.connection.prepare("SELECT content, status, priority, position FROM todo WHERE session_id = ? ORDER BY position")?;
        let mut seen = HashSet::new();
        for (session_id, count, newest) in lists {
            seen.insert(session_id.clone());
            let fingerprint = fingerprint(&(count, newest));
            if self.mirror.todos.get(&session_id) == Some(&fingerprint) {
                continue;
            }
            let items = items_of
                .query_map([&session_id], |row| {
                    Ok(TodoRecord {
                        session_id: session_id.clone(),
                        position: row.get(3)?,
                        todo_id: None,
                        content: row.get(0)?,
                        status: row.get(1)?,
                        priority: row.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.upsert(
                VersionedRecords { records: Records::Todos { session_id: session_id.clone(), items }, version_ms: newest },
                MirrorUpdate::Fingerprint(FileKind::Todo, session_id, fingerprint),
            );
        }
        for id in self.mirror.todos.keys().filter(|id| !seen.contains(*id)) {
            out.remove(FileKind::Todo, id.clone());
        }
        Ok(())
    }

    /// Finds sessions whose event log recorded a removal (or restarted) since the last read.
    fn read_event_log(&self, out: &mut Deliveries<'_>, mode: ReadMode, check_deletes: &mut HashSet<String>) -> rusqlite::Result<()> {
        let mut statement = self.connection.prepare("SELECT aggregate_id, seq FROM event_sequence")?;
        let sequences: Vec<(String, i64)> = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        let mut removals = self.connection.prepare("SELECT count(*) FROM event WHERE aggregate_id = ? AND seq > ? AND type LIKE '%removed%'")?;
        let mut present = HashSet::with_capacity(sequences.len());
        for (session_id, seq) in sequences {
            present.insert(session_id.clone());
            match self.mirror.event_seq.get(&session_id) {
                Some(known) if *known == seq => continue,
                Some(known) if seq > *known => {
                    let removed: i64 = removals.query_row(rusqlite::params![session_id, known], |row| row.get(0))?;
                    if removed > 0 {
                        check_deletes.insert(session_id.clone());
                    }
                }
                // The log restarted (a migration wiped it) or the session is new to us.
                _ => {
                    check_deletes.insert(session_id.clone());
                }
            }
            out.last.push(MirrorUpdate::EventSeq(session_id, seq));
        }
        if mode == ReadMode::Full {
            out.last.push(MirrorUpdate::EventSeqsComplete(present));
        }
        Ok(())
    }

    /// Messages or parts: compares `(id, time_updated)` with the mirror, fetches and decodes the
    /// documents of new and changed rows, and reports vanished ones.
    fn read_rows(
        &self,
        kind: FileKind,
        mode: ReadMode,
        sessions_now: &HashSet<String>,
        check_deletes: &HashSet<String>,
        out: &mut Deliveries<'_>,
    ) -> rusqlite::Result<()> {
        let table = if kind == FileKind::Message { "message" } else { "part" };
        let known = self.mirror.rows(kind);
        // Stamps of the rows to compare: all of them, or the recent ones.
        let mut stamps: Vec<(String, String, i64)> = Vec::new();
        let mut collect = |sql: &str, parameter: Option<&dyn rusqlite::ToSql>| -> rusqlite::Result<()> {
            let mut statement = self.connection.prepare_cached(sql)?;
            let mapped = |row: &Row<'_>| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?));
            let rows = match parameter {
                Some(parameter) => statement.query_map([parameter], mapped)?.collect::<rusqlite::Result<Vec<_>>>()?,
                None => statement.query_map([], mapped)?.collect::<rusqlite::Result<Vec<_>>>()?,
            };
            stamps.extend(rows);
            Ok(())
        };
        let watermark = if kind == FileKind::Message { self.mirror.message_watermark } else { self.mirror.part_watermark };
        let full = mode == ReadMode::Full;
        if full {
            collect(&format!("SELECT id, session_id, time_updated FROM {table}"), None)?;
        } else {
            let since = watermark.saturating_sub(WATERMARK_OVERLAP_MS);
            collect(&format!("SELECT id, session_id, time_updated FROM {table} WHERE time_updated >= ?"), Some(&since))?;
        }
        // Ids present in the database, where deletes are looked for.
        let mut present: HashSet<String> = HashSet::new();
        if full {
            present.extend(stamps.iter().map(|(id, _, _)| id.clone()));
        } else {
            let mut ids_of = self.connection.prepare_cached(&format!("SELECT id FROM {table} WHERE session_id = ?"))?;
            for session_id in check_deletes {
                let ids = ids_of.query_map([session_id], |row| row.get::<_, String>(0))?;
                for id in ids {
                    present.insert(id?);
                }
            }
        }
        // Parts carry their message id in a column, messages have none to add.
        let message_id_column = if kind == FileKind::Part { "message_id" } else { "NULL" };
        let mut document_of = self.connection.prepare_cached(&format!("SELECT data, {message_id_column} FROM {table} WHERE id = ?"))?;
        for (id, session_id, updated_ms) in stamps {
            if known.get(&id).is_some_and(|stamp| stamp.updated_ms == updated_ms && stamp.session_id == session_id) {
                continue;
            }
            let update = MirrorUpdate::Row(kind, id.clone(), session_id.clone(), updated_ms);
            let fetched = document_of.query_row([&id], |row| Ok((text_lossy(row, 0)?, row.get::<_, Option<String>>(1)?))).map(Some).or_else(no_row_is_none)?;
            // Listed and fetched in the same snapshot, so the row is there; tolerate it anyway.
            let Some((data, message_id)) = fetched else { continue };
            let mut ids: Vec<(&str, &str)> = vec![("id", &id), ("sessionID", &session_id)];
            if let Some(message_id) = &message_id {
                ids.push(("messageID", message_id));
            }
            match decode_document(kind, &ids, &data, self.limits) {
                FileOutcome::Decoded(records) => out.upsert(VersionedRecords { records, version_ms: updated_ms }, update),
                FileOutcome::NotReady(reason) | FileOutcome::Failed(reason) => out.reject(kind, id, reason, update),
            }
        }
        // Vanished rows: in the mirror, in a session that was checked (or anywhere, when every
        // row was listed), and not in the database.
        let vanished: Vec<String> = known
            .iter()
            .filter(|(id, stamp)| {
                let checked = full || check_deletes.contains(&stamp.session_id) || !sessions_now.contains(&stamp.session_id);
                checked && !present.contains(*id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in vanished {
            out.remove(kind, id);
        }
        Ok(())
    }
}

fn no_row_is_none<T>(error: rusqlite::Error) -> rusqlite::Result<Option<T>> {
    match error {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        other => Err(other),
    }
}

/// A text column as a string, whatever bytes it holds (invalid UTF-8 becomes U+FFFD).
fn text_lossy(row: &Row<'_>, index: usize) -> rusqlite::Result<String> {
    Ok(match row.get_ref(index)? {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        ValueRef::Null => String::new(),
        ValueRef::Integer(integer) => integer.to_string(),
        ValueRef::Real(real) => real.to_string(),
    })
}

fn column_names(statement: &rusqlite::Statement<'_>) -> Vec<String> {
    statement.column_names().into_iter().map(str::to_owned).collect()
}

/// A row as a JSON object keyed by column name; `json_columns` holding valid JSON text are
/// embedded as JSON. Secrets never reach here: only project and session rows are read this way.
fn row_document(row: &Row<'_>, columns: &[String], json_columns: &[&str]) -> rusqlite::Result<Map<String, Value>> {
    let mut document = Map::with_capacity(columns.len());
    for (index, name) in columns.iter().enumerate() {
        let value = match row.get_ref(index)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(integer) => Value::from(integer),
            ValueRef::Real(real) => serde_json::Number::from_f64(real).map_or(Value::Null, Value::Number),
            ValueRef::Text(bytes) => {
                let text = String::from_utf8_lossy(bytes);
                if json_columns.contains(&name.as_str()) {
                    serde_json::from_str(&text).unwrap_or(Value::String(text.into_owned()))
                } else {
                    Value::String(text.into_owned())
                }
            }
            ValueRef::Blob(bytes) => Value::String(format!("<{} bytes>", bytes.len())),
        };
        document.insert(name.clone(), value);
    }
    Ok(document)
}

fn string_column(document: &Map<String, Value>, name: &str) -> Option<String> {
    document.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn integer_column(document: &Map<String, Value>, name: &str) -> Option<i64> {
    document.get(name).and_then(Value::as_i64)
}

fn raw_of(document: &Map<String, Value>) -> RawDocument {
    let json = serde_json::to_string(document).unwrap_or_default();
    RawDocument { size_bytes: json.len() as i64, json, truncated: false }
}

fn fingerprint(value: &impl HashAsJson) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash_as_json(&mut hasher);
    hasher.finish()
}

/// Hashing of what decides whether a row changed.
trait HashAsJson {
    fn hash_as_json(&self, hasher: &mut DefaultHasher);
}

impl HashAsJson for Map<String, Value> {
    fn hash_as_json(&self, hasher: &mut DefaultHasher) {
        serde_json::to_string(self).unwrap_or_default().hash(hasher);
    }
}

impl HashAsJson for (i64, i64) {
    fn hash_as_json(&self, hasher: &mut DefaultHasher) {
        self.hash(hasher);
    }
}

#[cfg(test)]
mod tests;
