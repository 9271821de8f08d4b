//! Turning a path into what the writer needs: decoded records, "not ready yet", or a removal.
//!
//! Both the one-shot indexer and the live decoders go through [`resolve_path`], so the rules for
//! files being written (settle delay) and files that vanished are the same everywhere.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foldhash::HashMap;

use ducktail_model::{DecodedFile, FileKind, FileOutcome, FileStamp, FileStatus};
use ducktail_sources::opencode::{decode_file, DecodeLimits, ScannedFile};
use ducktail_store::{FileIndexEntry, RemovedFile};

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
    if !matches!(decoded.outcome, FileOutcome::Decoded(_))
        && std::fs::symlink_metadata(path).map_or(true, |metadata| !metadata.file_type().is_file())
    {
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

/// Path → indexed state: the in-memory view of `file_index` for one source. Keyed by the path's
/// bytes: `Path`'s own hash walks its components, which was an eighth of an unchanged scan of
/// 1M files. Paths come from one construction (root joined with names), so bytes are identity.
/// Hashed with foldhash: SipHash was a fifth of the daemon's new-directory rescans in a burst.
pub type IndexView = HashMap<OsString, IndexedState>;

/// Builds the in-memory view of `file_index` of one source.
pub fn index_view(entries: Vec<FileIndexEntry>) -> IndexView {
    entries
        .into_iter()
        .map(|entry| (OsString::from(entry.path), IndexedState { kind: entry.kind, stamp: entry.stamp, status: entry.status, seen_in_scan: 0 }))
        .collect()
}

/// Compares what is on disk under `scope` (the storage root) with what is indexed there. A
/// file is unchanged when its (mtime, size) equal the indexed ones and it is not pending; errors
/// are retried only when the file changes. `scan_mark` must differ from the previous call's.
///
/// The whole-listing form of [`Comparison`], which the reconciler and `index` feed as their scans
/// stream in; the tests state the comparison's rules through it.
#[cfg(test)]
pub fn diff(
    mut on_disk: Vec<ScannedFile>,
    indexed: &mut IndexView,
    scope: &Path,
    scan_mark: u32,
) -> Differences {
    let mut comparison = Comparison::new(indexed, scan_mark);
    // In place: a cold index of 1M files would otherwise hold the listing twice.
    comparison.keep_changed(&mut on_disk);
    on_disk.shrink_to_fit();
    let unchanged = comparison.unchanged;
    Differences { changed: on_disk, removed: comparison.removed(scope), unchanged }
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
        files.retain(|file| match self.indexed.get_mut(file.path.as_os_str()) {
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

    /// Indexed paths under `scope` that no listed file matched, with their kinds: the removals a
    /// scan of all of `scope` finds. It visits the whole view, so it is for whole-tree scans
    /// (paths of another root, from an earlier configuration, are left alone).
    pub fn removed(self, scope: &Path) -> Vec<(PathBuf, FileKind)> {
        // On bytes: `Path::starts_with` walks components.
        let scope = scope.as_os_str().as_bytes();
        let mut removed = Vec::new();
        for (path, state) in self.indexed.iter() {
            if state.seen_in_scan != self.scan_mark && is_within(path.as_bytes(), scope) {
                removed.push((PathBuf::from(path), state.kind));
            }
        }
        removed
    }
}

/// Whether `path` is `scope` or lies under it, as `Path::starts_with` decides for the paths a
/// scan builds (absolute, no `.` or doubled separators).
fn is_within(path: &[u8], scope: &[u8]) -> bool {
    let scope = match scope {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        _ => scope,
    };
    path.starts_with(scope) && (path.len() == scope.len() || path[scope.len()] == b'/' || scope == b"/")
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

    /// A view of indexed parts, all at mtime 1.
    fn view(paths: &[(&str, FileStatus)]) -> HashMap<OsString, IndexedState> {
        paths.iter().map(|(path, status)| (OsString::from(path), state(1, *status))).collect()
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
        let differences = diff(disk, &mut indexed, Path::new("/s"), 1);
        let mut changed: Vec<_> = differences.changed.iter().map(|file| file.path.to_str().unwrap()).collect();
        changed.sort();
        assert_eq!(changed, ["/s/b", "/s/c", "/s/new"]);
        assert_eq!(differences.unchanged, 2);
        assert_eq!(differences.removed, vec![(PathBuf::from("/s/gone"), FileKind::Part)]);
    }

    #[test]
    fn within_a_scope_means_what_path_starts_with_means() {
        let cases = [
            ("/s/part/m1/a.json", "/s/part/m1"),
            ("/s/part/m1/a.json", "/s/part/m1/"),
            ("/s/part/m10/a.json", "/s/part/m1"),
            ("/s/part/m1", "/s/part/m1"),
            ("/s/part", "/s/part/m1"),
            ("/s/part/m1/a.json", "/"),
            ("/s/part/m1/a.json", "/s"),
            ("/sx/a.json", "/s"),
        ];
        for (path, scope) in cases {
            assert_eq!(is_within(path.as_bytes(), scope.as_bytes()), Path::new(path).starts_with(scope), "{path} within {scope}");
        }
    }
}
