//! Walking an OpenCode storage root and listing its record files with their stamps.
//!
//! The walk only enters the six known top-level folders and only to the depth their layout has
//! (see [`layout::LAYOUTS`]), so plugin folders, `quarantine/`, `snapshot/`-sized git trees and
//! stray deep folders cost nothing. It never follows symbolic links, skips hidden folders and
//! files, and takes each file's stamp from a `statx` relative to its open folder. Listing and
//! stat-ing run on one thread per core.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ducktail_model::{FileKind, FileStamp};

use super::layout::{self, LAYOUTS};

/// One record file found by [`scan_storage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// The file's path: the storage root joined with its relative path.
    pub path: PathBuf,
    /// Its kind, from its place in the tree.
    pub kind: FileKind,
    /// Its modification time and size when it was listed.
    pub stamp: FileStamp,
}

impl ScannedFile {
    /// The id its name claims (the file stem). Derived, not stored: a listing of 1M files
    /// holding each id as well kept about 70 MB more.
    pub fn record_id(&self) -> String {
        self.path.file_name().and_then(layout::record_id_of_file_name).unwrap_or_default()
    }
}

/// Why part of a scan failed. Each error names the path; the scan goes on after it.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The storage root does not exist.
    #[error("OpenCode storage folder {} does not exist; check the configured OpenCode data directory", path.display())]
    MissingRoot {
        /// The storage root that was asked for.
        path: PathBuf,
    },
    /// The storage root exists but is not a folder.
    #[error("OpenCode storage folder {} is not a directory", path.display())]
    NotADirectory {
        /// The storage root that was asked for.
        path: PathBuf,
    },
    /// A folder could not be listed or a file could not be stat'ed.
    #[error("could not read {}: {source}", path.display())]
    Io {
        /// The folder or file that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ScanError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ScanError::MissingRoot { path } | ScanError::NotADirectory { path } | ScanError::Io { path, .. } => path,
        }
    }
}

/// `<opencode data dir>/storage`: the root of the JSON tree (the data dir is
/// `$XDG_DATA_HOME/opencode`, by default `~/.local/share/opencode`).
pub fn storage_root(opencode_dir: &Path) -> PathBuf {
    opencode_dir.join("storage")
}

/// A file's stamp from its metadata: modification time in nanoseconds since the epoch, and size.
pub fn stamp_of(metadata: &Metadata) -> FileStamp {
    let mtime_ns = metadata.mtime().saturating_mul(1_000_000_000).saturating_add(metadata.mtime_nsec());
    FileStamp { mtime_ns, size: i64::try_from(metadata.len()).unwrap_or(i64::MAX) }
}

/// Lists every record file below `storage_root`, folder by folder (project, session, message,
/// part, todo, session_diff), on one thread per core; within a folder, in name order.
///
/// Only regular files at their layout's exact depth whose names are `<id>.json` are listed;
/// symbolic links (to files or folders), FIFOs, sockets, hidden names and `*.tmp` files are
/// skipped silently, as are files and folders that vanish during the walk. A missing or
/// non-folder storage root is the single error yielded; other errors name their path and the
/// walk goes on.
///
/// Entry types come from the directory listing itself and a file's stamp from a `statx`
/// relative to its open folder, so no file costs a lookup of its full path. Listing and
/// stat-ing is kernel work that two threads do in about half the time of one: it is what a
/// scan of unchanged files costs.
pub fn scan_storage(storage_root: &Path) -> StorageScan {
    scan_storage_on(storage_root, scan_threads())
}

/// Threads a scan lists and stats on by default: one per core, at most eight.
pub fn scan_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get()).clamp(1, 8)
}

/// Top-level entries a scan thread lists per turn (see [`scan_storage_streaming`]).
const ENTRIES_PER_BLOCK: usize = 16;

/// [`scan_storage`] on `threads` threads.
pub fn scan_storage_on(storage_root: &Path, threads: usize) -> StorageScan {
    let mut found = Vec::new();
    scan_storage_streaming(storage_root, threads, &mut |item| {
        found.push(item);
        true
    });
    StorageScan { found: found.into_iter() }
}

/// [`scan_storage_on`], handing each file (or error) to `sink` as the walk finds it, in the
/// order [`scan_storage`] lists them, instead of collecting the listing: a consumer that keeps
/// only what it needs holds a few folders' worth at a time, not the listing of 1M files. The
/// walk stops early once `sink` returns false. `sink` runs on the calling thread; the threads
/// that list and stat hand it their folders through a bounded channel, so a slow sink slows the
/// walk rather than letting it pile up.
pub fn scan_storage_streaming(storage_root: &Path, threads: usize, sink: &mut dyn FnMut(Result<ScannedFile, ScanError>) -> bool) {
    let root_error = match std::fs::metadata(storage_root) {
        Ok(metadata) if metadata.is_dir() => None,
        Ok(_) => Some(ScanError::NotADirectory { path: storage_root.to_path_buf() }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Some(ScanError::MissingRoot { path: storage_root.to_path_buf() }),
        Err(source) => Some(ScanError::Io { path: storage_root.to_path_buf(), source }),
    };
    if let Some(error) = root_error {
        sink(Err(error));
        return;
    }
    let stopped = std::sync::atomic::AtomicBool::new(false);
    for (folder_name, kind, depth) in LAYOUTS {
        if stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let folder = storage_root.join(folder_name);
        match std::fs::symlink_metadata(&folder) {
            // A symbolic link in place of a folder is not followed, like every other link.
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                if !sink(Err(ScanError::Io { path: folder, source })) {
                    return;
                }
                continue;
            }
        }
        let listing = match read_folder(&folder) {
            Some(Ok(listing)) => listing,
            None => continue,
            Some(Err(error)) => {
                if !sink(Err(error)) {
                    return;
                }
                continue;
            }
        };
        // The threads take the top-level entries one at a time: a file (two-level layouts) or an
        // id folder they list in full (three-level layouts). Entries go in name order, and what
        // they hold comes back in that order: OpenCode's message and part ids grow with time,
        // so a bulk load then stores rows in time order, a session's rows close together, and
        // DuckDB's per-block min/max skips most of a table when a batch looks up recent ids.
        let listing = sorted_by_name(listing);
        let next_entry = std::sync::atomic::AtomicUsize::new(0);
        let files_at_top = depth == 2;
        std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<(usize, Vec<Result<ScannedFile, ScanError>>)>(threads * 4);
            for _ in 0..threads {
                let sender = sender.clone();
                let (listing, next_entry, folder, stopped) = (&listing, &next_entry, &folder, &stopped);
                scope.spawn(move || loop {
                    if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    // A block of entries at a time: one message per entry cost an unchanged
                    // 100k-file scan a fifth more time in hand-offs.
                    let first = next_entry.fetch_add(ENTRIES_PER_BLOCK, std::sync::atomic::Ordering::Relaxed);
                    if first >= listing.len() {
                        break;
                    }
                    let mut found = Vec::new();
                    for entry in &listing[first..(first + ENTRIES_PER_BLOCK).min(listing.len())] {
                        match list_entry(folder, entry, kind, files_at_top) {
                            Ok(Listed::File(file)) => found.push(Ok(file)),
                            Ok(Listed::Folder(id_folder)) => list_id_folder(id_folder, kind, &mut found),
                            Ok(Listed::Skip) | Err(None) => {}
                            Err(Some(error)) => found.push(Err(error)),
                        }
                    }
                    // Every block is sent, empty or not, so the receiver can hand them on in order.
                    if sender.send((first / ENTRIES_PER_BLOCK, found)).is_err() {
                        break;
                    }
                });
            }
            drop(sender);
            // Entries finish out of order; they are handed on in order.
            let mut waiting = std::collections::BTreeMap::new();
            let mut next = 0;
            for (index, found) in receiver.iter() {
                waiting.insert(index, found);
                while let Some(found) = waiting.remove(&next) {
                    next += 1;
                    for item in found {
                        if !stopped.load(std::sync::atomic::Ordering::Relaxed) && !sink(item) {
                            stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        });
    }
}

/// Lists the record files under `folder`, a folder inside the storage root (a new directory the
/// watcher saw), by [`scan_storage`]'s rules and code: the same layouts, depths and skips, each
/// stat relative to its open folder (a path walk per file from the root cost a new directory's
/// scan most of its time). A folder that holds no record files by those rules (too deep, hidden,
/// outside the six layouts, a symbolic link, vanished) lists nothing.
pub fn scan_folder(storage_root: &Path, folder: &Path) -> Vec<Result<ScannedFile, ScanError>> {
    let mut found = Vec::new();
    let Ok(relative) = folder.strip_prefix(storage_root) else { return found };
    let mut names = Vec::with_capacity(2);
    for component in relative.components() {
        match component {
            std::path::Component::Normal(name) => names.push(name),
            _ => return found,
        }
    }
    let Some(&(_, kind, depth)) = names.first().and_then(|top| LAYOUTS.iter().find(|(name, _, _)| std::ffi::OsStr::new(name) == *top)) else {
        return found;
    };
    // Like the full scan, links in place of folders are not followed: neither the folder nor
    // the layout's folder above it may be one.
    let layout_folder = storage_root.join(names[0]);
    let checked_folders = if names.len() == 1 { &[folder][..] } else { &[layout_folder.as_path(), folder][..] };
    for &checked in checked_folders {
        match std::fs::symlink_metadata(checked) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return found,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return found,
            Err(source) => {
                found.push(Err(ScanError::Io { path: checked.to_path_buf(), source }));
                return found;
            }
        }
    }
    match (names.len(), depth) {
        // A two-level layout's folder holds its files, as an id folder does.
        (1, 2) => list_id_folder(folder.to_path_buf(), kind, &mut found),
        (1, _) => match read_folder(folder) {
            Some(Ok(listing)) => {
                for entry in &sorted_by_name(listing) {
                    match list_entry(folder, entry, kind, false) {
                        Ok(Listed::Folder(id_folder)) => list_id_folder(id_folder, kind, &mut found),
                        Ok(_) | Err(None) => {}
                        Err(Some(error)) => found.push(Err(error)),
                    }
                }
            }
            Some(Err(error)) => found.push(Err(error)),
            None => {}
        },
        (2, 3) if layout::is_id_folder_name(names[1]) => list_id_folder(folder.to_path_buf(), kind, &mut found),
        _ => {}
    }
    found
}

/// What [`scan_storage`] found: files and errors naming their paths.
#[derive(Debug)]
pub struct StorageScan {
    found: std::vec::IntoIter<Result<ScannedFile, ScanError>>,
}

impl Iterator for StorageScan {
    type Item = Result<ScannedFile, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.found.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.found.size_hint()
    }
}

/// Lists the record files of one id folder (a three-level layout's middle level).
fn list_id_folder(folder: PathBuf, kind: FileKind, found: &mut Vec<Result<ScannedFile, ScanError>>) {
    let listing = match read_folder(&folder) {
        Some(Ok(listing)) => listing,
        None => return,
        Some(Err(error)) => {
            found.push(Err(error));
            return;
        }
    };
    for entry in &sorted_by_name(listing) {
        match list_entry(&folder, entry, kind, true) {
            Ok(Listed::File(file)) => found.push(Ok(file)),
            Ok(_) | Err(None) => {}
            Err(Some(error)) => found.push(Err(error)),
        }
    }
}

/// Opens `folder`'s listing: `None` when it vanished (a removal mid-scan is not an error), an
/// error naming it when it cannot be read.
fn read_folder(folder: &Path) -> Option<Result<std::fs::ReadDir, ScanError>> {
    match std::fs::read_dir(folder) {
        Ok(listing) => Some(Ok(listing)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(source) => Some(Err(ScanError::Io { path: folder.to_path_buf(), source })),
    }
}

/// A folder's entries in name order; entries that failed to read come first.
fn sorted_by_name(listing: std::fs::ReadDir) -> Vec<io::Result<std::fs::DirEntry>> {
    let mut entries: Vec<_> = listing.collect();
    entries.sort_by_cached_key(|entry| entry.as_ref().ok().map(std::fs::DirEntry::file_name));
    entries
}

/// What one directory entry turned out to be.
enum Listed {
    File(ScannedFile),
    Folder(PathBuf),
    Skip,
}

/// Classifies one entry of `folder`: a record file (when `files_here`), an id folder to enter
/// (otherwise), or something skipped by rule. `Err(None)` is an entry that vanished.
fn list_entry(folder: &Path, entry: &io::Result<std::fs::DirEntry>, kind: FileKind, files_here: bool) -> Result<Listed, Option<ScanError>> {
    let vanished_or = |path: PathBuf, source: io::Error| if source.kind() == io::ErrorKind::NotFound { None } else { Some(ScanError::Io { path, source }) };
    let entry = match entry {
        Ok(entry) => entry,
        Err(error) => return Err(vanished_or(folder.to_path_buf(), io::Error::new(error.kind(), error.to_string()))),
    };
    // From the listing (lstat semantics): links, FIFOs and sockets are never followed or listed.
    let file_type = entry.file_type().map_err(|source| vanished_or(entry.path(), source))?;
    if !files_here {
        // The middle folder of a three-level layout is an id; hidden ones are temp folders.
        let is_id_folder = file_type.is_dir() && layout::is_id_folder_name(&entry.file_name());
        return Ok(if is_id_folder { Listed::Folder(entry.path()) } else { Listed::Skip });
    }
    if !file_type.is_file() {
        return Ok(Listed::Skip);
    }
    if layout::record_id_of_file_name(&entry.file_name()).is_none() {
        return Ok(Listed::Skip);
    }
    let metadata = entry.metadata().map_err(|source| vanished_or(entry.path(), source))?;
    if !metadata.file_type().is_file() {
        return Ok(Listed::Skip);
    }
    Ok(Listed::File(ScannedFile { stamp: stamp_of(&metadata), path: entry.path(), kind }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    fn write(root: &Path, relative: &str, contents: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn scanned(root: &Path) -> BTreeSet<(FileKind, String, String)> {
        scan_storage(root)
            .map(|file| {
                let file = file.unwrap();
                let relative = file.path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let record_id = file.record_id();
                (file.kind, relative, record_id)
            })
            .collect()
    }

    #[test]
    fn a_streamed_scan_hands_on_the_listing_in_order_and_stops_when_told() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        for message in 0..40 {
            for part in 0..(message % 7) {
                write(root, &format!("part/msg_{message:03}/prt_{part}.json"), "{}");
            }
            write(root, &format!("message/ses_1/msg_{message:03}.json"), "{}");
        }
        let collected: Vec<PathBuf> = scan_storage_on(root, 1).map(|file| file.unwrap().path).collect();
        assert_eq!(collected.len(), 40 + (0..40).map(|message| message % 7).sum::<usize>());
        let mut sorted = collected.clone();
        sorted.sort();
        for threads in [1, 2, 4] {
            let mut streamed = Vec::new();
            scan_storage_streaming(root, threads, &mut |item| {
                streamed.push(item.unwrap().path);
                true
            });
            assert_eq!(streamed, collected, "{threads} threads");
            let mut first = Vec::new();
            scan_storage_streaming(root, threads, &mut |item| {
                first.push(item.unwrap().path);
                first.len() < 5
            });
            assert_eq!(first, collected[..5], "{threads} threads");
        }
        // Folder by folder in name order, each folder's files in name order.
        let layout_order = |path: &PathBuf| LAYOUTS.iter().position(|(folder, _, _)| path.strip_prefix(root).unwrap().starts_with(folder));
        let mut expected = sorted;
        expected.sort_by_key(|path| layout_order(path));
        assert_eq!(collected, expected);
    }

    /// The six layouts with odd names, beside everything a scan must skip: returns what it must
    /// list. `outside` receives a folder the tree links to.
    fn write_layouts_and_noise(root: &Path, outside: &Path) -> BTreeSet<(FileKind, String, String)> {
        let wanted = [
            (FileKind::Project, "project/global.json", "global"),
            (FileKind::Session, "session/global/ses_1.json", "ses_1"),
            (FileKind::Session, "session/my proj/ses \"q\" 'x'.json", "ses \"q\" 'x'"),
            (FileKind::Message, "message/ses_1/msg_1.json", "msg_1"),
            (FileKind::Part, "part/msg_1/prt_1.json", "prt_1"),
            (FileKind::Part, "part/msg_1/prt 2.json", "prt 2"),
            (FileKind::Todo, "todo/ses_1.json", "ses_1"),
            (FileKind::SessionDiff, "session_diff/ses_1.json", "ses_1"),
        ];
        for (_, relative, _) in wanted {
            write(root, relative, "{}");
        }
        for noise in [
            "migration",
            "project/global.json.tmp",
            "project/.oc-global.json.1.2.tmp",
            "project/deep/global.json",
            "session/ses_top.json",
            "session/global/deeper/ses_2.json",
            "session/.hidden/ses_3.json",
            "message/ses_1/msg_1.txt",
            "part/msg_1/prt_3.json.tmp",
            "quarantine/1700000000/part/msg_1/prt_1.json",
            "session_share/ses_1.json",
            "agent-usage-reminder/ses_1.json",
            "todo/ses_1/nested.json",
        ] {
            write(root, noise, "{}");
        }
        // A folder where a file belongs, links to a file and to a folder, and a FIFO.
        fs::create_dir_all(root.join("todo/folder.json")).unwrap();
        symlink(root.join("todo/ses_1.json"), root.join("todo/link.json")).unwrap();
        symlink(root.join("part/msg_1"), root.join("part/msg_link")).unwrap();
        write(outside, "msg_x/prt_x.json", "{}");
        symlink(outside, root.join("message_alias")).unwrap();
        let fifo = root.join("part/msg_1/fifo.json");
        let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
        wanted.iter().map(|(kind, relative, id)| (*kind, relative.to_string(), id.to_string())).collect()
    }

    #[test]
    fn scan_lists_the_six_layouts_and_nothing_else() {
        let (temp, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let expected = write_layouts_and_noise(temp.path(), outside.path());
        assert_eq!(scanned(temp.path()), expected);
    }

    #[test]
    fn a_folder_lists_what_the_full_scan_lists_under_it() {
        let (temp, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root = temp.path();
        write_layouts_and_noise(root, outside.path());
        let everything = scanned(root);
        let mut folders: Vec<PathBuf> = walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .map(Result::unwrap)
            .filter(|entry| entry.file_type().is_dir())
            .map(walkdir::DirEntry::into_path)
            .collect();
        // Links to folders, a folder outside the root and one that does not exist.
        folders.extend([root.join("part/msg_link"), root.join("message_alias"), outside.path().join("msg_x"), root.join("part/msg_gone")]);
        assert!(folders.len() > 15, "{folders:?}");
        for folder in folders {
            let listed: BTreeSet<_> = scan_folder(root, &folder)
                .into_iter()
                .map(|file| {
                    let file = file.unwrap();
                    let record_id = file.record_id();
                    (file.kind, file.path.strip_prefix(root).unwrap().to_string_lossy().into_owned(), record_id)
                })
                .collect();
            let under: BTreeSet<_> = everything.iter().filter(|(_, relative, _)| root.join(relative).starts_with(&folder)).cloned().collect();
            assert_eq!(listed, under, "{}", folder.display());
        }
    }

    #[test]
    fn a_symlinked_top_level_folder_is_not_followed() {
        let temp = tempfile::tempdir().unwrap();
        let real = tempfile::tempdir().unwrap();
        write(real.path(), "msg_1/prt_1.json", "{}");
        symlink(real.path(), temp.path().join("part")).unwrap();
        assert!(scanned(temp.path()).is_empty());
        // Nor by a new folder's scan, at either depth.
        for folder in [temp.path().join("part"), temp.path().join("part/msg_1")] {
            assert!(scan_folder(temp.path(), &folder).is_empty(), "{}", folder.display());
        }
    }

    #[test]
    fn stamps_match_lstat() {
        let temp = tempfile::tempdir().unwrap();
        write(temp.path(), "todo/ses_1.json", "[1,2,3]");
        let file = scan_storage(temp.path()).next().unwrap().unwrap();
        let metadata = fs::symlink_metadata(&file.path).unwrap();
        assert_eq!(file.stamp.size, 7);
        assert_eq!(file.stamp.mtime_ns, metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec());
        assert!(file.stamp.mtime_ns > 1_500_000_000_000_000_000);
    }

    #[test]
    fn a_missing_root_is_one_error_naming_the_path() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("nope/storage");
        let results: Vec<_> = scan_storage(&missing).collect();
        assert_eq!(results.len(), 1);
        let error = results.into_iter().next().unwrap().unwrap_err();
        assert!(matches!(error, ScanError::MissingRoot { .. }));
        assert_eq!(error.path(), missing);
        assert!(error.to_string().contains(&missing.display().to_string()), "{error}");
    }

    #[test]
    fn a_file_as_root_is_an_error() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("storage");
        fs::write(&file, "x").unwrap();
        let results: Vec<_> = scan_storage(&file).collect();
        assert!(matches!(results.as_slice(), [Err(ScanError::NotADirectory { .. })]));
    }

    #[test]
    fn an_empty_root_yields_nothing() {
        let temp = tempfile::tempdir().unwrap();
        assert_eq!(scan_storage(temp.path()).count(), 0);
    }

    #[test]
    fn an_unreadable_folder_is_reported_and_the_scan_goes_on() {
        use std::os::unix::fs::PermissionsExt;
        // Permission bits do not apply to root.
        if running_as_root() {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        write(temp.path(), "message/ses_1/msg_1.json", "{}");
        write(temp.path(), "todo/ses_1.json", "[]");
        let locked = temp.path().join("message/ses_1");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let results: Vec<_> = scan_storage(temp.path()).collect();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        let errors: Vec<_> = results.iter().filter_map(|result| result.as_ref().err()).collect();
        assert_eq!(errors.len(), 1, "{results:?}");
        assert_eq!(errors[0].path(), locked);
        assert!(results.iter().any(|result| matches!(result, Ok(file) if file.kind == FileKind::Todo)));
    }

    fn running_as_root() -> bool {
        Command::new("id").arg("-u").output().map(|output| output.stdout.starts_with(b"0\n")).unwrap_or(false)
    }

    #[test]
    fn storage_root_is_below_the_data_dir() {
        assert_eq!(storage_root(Path::new("/home/u/.local/share/opencode")), PathBuf::from("/home/u/.local/share/opencode/storage"));
    }
}
