//! Turning a path into what the writer needs: decoded records, "not ready yet", or a removal.
//!
//! Both the one-shot indexer and the live decoders go through [`resolve_path`], so the rules for
//! files being written (settle delay) and files that vanished are the same everywhere.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foldhash::HashMap;

use ducktail_model::{DecodedFile, FileKind, FileOutcome, FileStamp, FileStatus};
use ducktail_sources::opencode::{decode_file, DecodeLimits, ScannedFile};
use ducktail_store::{Reader, RemovedFile, StoreError};

/// `file_index.source` of the OpenCode JSON tree.
pub const OPENCODE_JSON_SOURCE: &str = "opencode_json";

/// What a path turned out to be when it was looked at.
#[derive(Debug)]
// Moved once, from a decoder to the writer: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Resolved {
    /// The file exists; here is what decoding it produced.
    Present(DecodedFile),
    /// The file is gone — or is no longer a regular file (a symlink, FIFO or directory now has
    /// its name), which the scan skips by rule, so the index must not hold it either.
    Gone(RemovedFile),
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos() as i64)
}

/// Reads and decodes `path`, applying the settle rule: a failure of a file changed less than
/// `settle` ago is `NotReady` (it is probably being written); a "not ready" file that has been
/// quiet for `settle` is a real error.
pub fn resolve_path(storage_root: &Path, path: &Path, kind: FileKind, limits: &DecodeLimits, settle: Duration) -> Resolved {
    let mut decoded = decode_file(storage_root, path, kind, limits);
    // Same rule as the scan: only regular files are indexed; symlinks are never followed. A file
    // that decoded was opened with O_NOFOLLOW and fstat'ed as regular, so only a failure costs
    // the look at what the path is now: gone, or no longer a regular file, is a removal.
    if !matches!(decoded.outcome, FileOutcome::Decoded(_)) && std::fs::symlink_metadata(path).map_or(true, |metadata| !metadata.file_type().is_file()) {
        return Resolved::Gone(RemovedFile { path: path.to_string_lossy().into_owned() });
    }
    let age_ns = now_ns().saturating_sub(decoded.stamp.mtime_ns);
    let fresh = age_ns < settle.as_nanos() as i64;
    decoded.outcome = match decoded.outcome {
        FileOutcome::Failed(message) if fresh => FileOutcome::NotReady(message),
        FileOutcome::NotReady(message) if !fresh => FileOutcome::Failed(message),
        other => other,
    };
    Resolved::Present(decoded)
}

/// What a scan found compared with the index.
#[derive(Debug, Default)]
pub struct Differences {
    /// Files that are new, changed, or were left pending.
    pub changed: Vec<ScannedFile>,
    /// Indexed paths no longer on disk, with the kind they were indexed as.
    pub removed: Vec<(PathBuf, FileKind)>,
    /// Files whose stamp matches the index: nothing to do.
    pub unchanged: usize,
}

/// The reconciler's view of one indexed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedState {
    /// The file's kind.
    pub kind: FileKind,
    /// mtime and size when last processed.
    pub stamp: ducktail_model::FileStamp,
    /// The outcome then.
    pub status: FileStatus,
    /// Mark of the last scan that saw the file on disk (mark-and-sweep finds removals without a
    /// second set of every path).
    pub seen_in_scan: u32,
}

/// Path → indexed state: the in-memory view of `file_index` for the JSON tree under one storage
/// root, which the daemon's reconciler keeps all day and `index` builds once.
///
/// Keyed by the bytes of the path below the root (about 70 bytes on the generated trees, against
/// 100 or more for the absolute path), and loaded row by row into a map sized once: a daemon on
/// the 1M-file tree held 483 MB 15 s after it was ready with absolute keys loaded through a
/// `Vec` of rows, 390 MB now. Bytes rather than `Path`, because `Path`'s own hash walks its components
/// (an eighth of an unchanged scan of 1M files). Paths come from one construction (root joined
/// with names), so bytes are identity. Hashed with foldhash: SipHash was a fifth of the daemon's
/// new-directory rescans in a burst.
///
/// Rows of paths outside the root (an earlier configuration's) are not held: no scan of this
/// root lists them, and a scan removes only what lies below its root.
pub struct IndexView {
    /// The root's bytes ending in one `/`: every key is what follows it in a path.
    prefix: Vec<u8>,
    states: HashMap<Box<[u8]>, IndexedState>,
}

impl IndexView {
    /// An empty view of the files below `storage_root`.
    pub fn new(storage_root: &Path) -> IndexView {
        let mut prefix = storage_root.as_os_str().as_bytes().to_vec();
        while prefix.len() > 1 && prefix.ends_with(b"/") {
            prefix.pop();
        }
        if !prefix.ends_with(b"/") {
            prefix.push(b'/');
        }
        IndexView { prefix, states: HashMap::default() }
    }

    /// The view of what `file_index` holds of the JSON tree below `storage_root`, built as the
    /// rows stream in (see [`Reader::for_each_file_index_row`]).
    pub fn load(storage_root: &Path, reader: &Reader) -> Result<IndexView, StoreError> {
        let mut view = IndexView::new(storage_root);
        let IndexView { prefix, states } = &mut view;
        // A hint (a commit may come between the two statements), so the map is sized once.
        states.reserve(reader.file_index_rows_of_source(OPENCODE_JSON_SOURCE)?);
        reader.for_each_file_index_row(OPENCODE_JSON_SOURCE, |row| {
            if let Some(key) = key_below(prefix, Path::new(row.path)) {
                states.insert(key.into(), IndexedState { kind: row.kind, stamp: row.stamp, status: row.status, seen_in_scan: 0 });
            }
        })?;
        Ok(view)
    }

    fn key<'path>(&self, path: &'path Path) -> Option<&'path [u8]> {
        key_below(&self.prefix, path)
    }

    /// What the index holds of `path`.
    pub fn get(&self, path: &Path) -> Option<&IndexedState> {
        self.states.get(self.key(path)?)
    }

    fn get_mut(&mut self, path: &Path) -> Option<&mut IndexedState> {
        let key = self.key(path)?;
        self.states.get_mut(key)
    }

    /// Records that the index holds `path` in `state` (a path outside the root is not held).
    pub fn insert(&mut self, path: &Path, state: IndexedState) {
        if let Some(key) = self.key(path) {
            self.states.insert(key.into(), state);
        }
    }

    /// Records that the index no longer holds `path`.
    pub fn remove(&mut self, path: &Path) {
        if let Some(key) = self.key(path) {
            self.states.remove(key);
        }
    }

    /// Files held.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no file is held: a cold index.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The path a key stands for.
    fn path_of(&self, key: &[u8]) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&[self.prefix.as_slice(), key].concat()))
    }

    /// Every file held, with its state.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (PathBuf, &IndexedState)> + '_ {
        self.states.iter().map(|(key, state)| (self.path_of(key), state))
    }
}

/// The key of `path` in a view whose root's bytes with a trailing `/` are `prefix`, or `None`
/// when it is not below that root.
fn key_below<'path>(prefix: &[u8], path: &'path Path) -> Option<&'path [u8]> {
    path.as_os_str().as_bytes().strip_prefix(prefix).filter(|key| !key.is_empty())
}

/// Compares what is on disk (a listing of the whole root) with what is indexed there. A file is
/// unchanged when its (mtime, size) equal the indexed ones and it is not pending; errors are
/// retried only when the file changes. `scan_mark` must differ from the previous call's.
///
/// The whole-listing form of [`Comparison`], which the reconciler and `index` feed as their scans
/// stream in; the tests state the comparison's rules through it.
#[cfg(test)]
pub fn diff(mut on_disk: Vec<ScannedFile>, indexed: &mut IndexView, scan_mark: u32) -> Differences {
    let mut comparison = Comparison::new(indexed, scan_mark);
    // In place: a cold index of 1M files would otherwise hold the listing twice.
    comparison.keep_changed(&mut on_disk);
    on_disk.shrink_to_fit();
    let unchanged = comparison.unchanged;
    Differences { changed: on_disk, removed: comparison.removed(), unchanged }
}

/// The comparison of a listing with the index view (see `diff` for the rules), fed piece by piece
/// as a streamed scan produces it.
pub struct Comparison<'view> {
    indexed: &'view mut IndexView,
    scan_mark: u32,
    /// Files listed so far whose stamp matches the index.
    pub unchanged: usize,
}

impl IndexedState {
    /// Whether the index holds this version of the file for good: the same stamp, and not a
    /// read that found it incomplete (those are retried).
    pub fn holds(&self, stamp: FileStamp) -> bool {
        self.stamp == stamp && self.status != FileStatus::Pending
    }
}

impl<'view> Comparison<'view> {
    /// A comparison against `indexed`; `scan_mark` must differ from the previous scan's.
    pub fn new(indexed: &'view mut IndexView, scan_mark: u32) -> Comparison<'view> {
        Comparison { indexed, scan_mark, unchanged: 0 }
    }

    /// Keeps in `files` the new, changed and pending ones, and marks every one as seen.
    pub fn keep_changed(&mut self, files: &mut Vec<ScannedFile>) {
        let scan_mark = self.scan_mark;
        let mut unchanged = 0;
        files.retain(|file| match self.indexed.get_mut(&file.path) {
            Some(state) => {
                state.seen_in_scan = scan_mark;
                let is_unchanged = state.holds(file.stamp);
                unchanged += usize::from(is_unchanged);
                !is_unchanged
            }
            None => true,
        });
        self.unchanged += unchanged;
    }

    /// Indexed paths that no listed file matched, with their kinds: the removals a scan of the
    /// whole root finds. It visits the whole view, so it is for whole-tree scans.
    pub fn removed(self) -> Vec<(PathBuf, FileKind)> {
        let mut removed = Vec::new();
        for (key, state) in self.indexed.states.iter() {
            if state.seen_in_scan != self.scan_mark {
                removed.push((self.indexed.path_of(key), state.kind));
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ducktail_model::FileStamp;

    fn scanned(path: &str, mtime_ns: i64) -> ScannedFile {
        ScannedFile { path: PathBuf::from(path), kind: FileKind::Part, stamp: FileStamp { mtime_ns, size: 1 } }
    }

    fn state(mtime_ns: i64, status: FileStatus) -> IndexedState {
        IndexedState { kind: FileKind::Part, stamp: FileStamp { mtime_ns, size: 1 }, status, seen_in_scan: 0 }
    }

    /// A view of indexed parts below `/s`, all at mtime 1.
    fn view(paths: &[(&str, FileStatus)]) -> IndexView {
        let mut view = IndexView::new(Path::new("/s"));
        for (path, status) in paths {
            view.insert(Path::new(path), state(1, *status));
        }
        view
    }

    #[test]
    fn diff_finds_new_changed_pending_removed_and_skips_unchanged_and_errors() {
        let mut indexed = view(&[
            ("/s/a", FileStatus::Indexed),
            ("/s/b", FileStatus::Indexed),
            ("/s/c", FileStatus::Pending),
            ("/s/d", FileStatus::Error),
            ("/s/gone", FileStatus::Indexed),
            ("/elsewhere/x", FileStatus::Indexed),
        ]);
        let disk = vec![scanned("/s/a", 1), scanned("/s/b", 2), scanned("/s/c", 1), scanned("/s/d", 1), scanned("/s/new", 1)];
        let differences = diff(disk, &mut indexed, 1);
        let mut changed: Vec<_> = differences.changed.iter().map(|file| file.path.to_str().unwrap()).collect();
        changed.sort();
        assert_eq!(changed, ["/s/b", "/s/c", "/s/new"]);
        assert_eq!(differences.unchanged, 2);
        assert_eq!(differences.removed, vec![(PathBuf::from("/s/gone"), FileKind::Part)]);
    }

    #[test]
    fn the_view_holds_exactly_the_paths_below_its_root_whatever_the_roots_spelling() {
        let below = ["/s/part/m1/a.json", "/s/a"];
        let elsewhere = ["/sx/a.json", "/s", "/s/", "/elsewhere/s/a", "s/a"];
        for root in ["/s", "/s/", "/s//"] {
            let mut view = IndexView::new(Path::new(root));
            for path in below.iter().chain(&elsewhere) {
                view.insert(Path::new(path), state(1, FileStatus::Indexed));
            }
            let mut held: Vec<PathBuf> = view.iter().map(|(path, _)| path).collect();
            held.sort();
            assert_eq!(held, [PathBuf::from("/s/a"), PathBuf::from("/s/part/m1/a.json")], "root {root}");
            assert!(view.get(Path::new("/s/part/m1/a.json")).is_some());
            assert!(view.get(Path::new("/sx/a.json")).is_none());
            view.remove(Path::new("/s/a"));
            assert_eq!(view.len(), 1);
        }
        let mut everything = IndexView::new(Path::new("/"));
        everything.insert(Path::new("/s/a"), state(1, FileStatus::Indexed));
        assert_eq!(everything.iter().map(|(path, _)| path).collect::<Vec<_>>(), [PathBuf::from("/s/a")]);
    }
}
