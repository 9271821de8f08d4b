//! The Watcher: turns notify's filesystem events into [`PathsChanged`] for the accumulator, and
//! asks the reconciler to rescan where events may have been lost (new directories, queue
//! overflow, watcher errors).
//!
//! Finished and announced changes: the kernel is asked only for the events that say something
//! (`WATCHED_KINDS`: no opens, no read-only closes, and on Linux no data modifications). A close
//! after writing, a rename into place and a removal are finished changes ([`Origin::Watcher`]); a
//! creation only announces a write ([`Origin::Writing`]), because reading between the two would
//! find the file partial.
//!
//! The storage folder itself removed (or renamed away) takes its watch with it: the files removed
//! with it are delivered first, then the watcher attaches again when the folder returns and asks
//! for a rescan of everything. Reaching the inotify watch limit is named on the status board
//! (health turns degraded) with the `sysctl` fix; the periodic reconcile carries the changes
//! meanwhile, attaching is retried with backoff, and the whole tree is rescanned once it holds.
//!
//! New directories: notify reports a directory's creation *before* it adds the inotify watch on
//! it, so a scan started on that event can run before the watch exists and miss files written in
//! between. notify's thread adds that watch right after it hands over the run of events the
//! creation is in, before it serves any request; so the watcher first makes a round trip to that
//! thread (see [`wait_for_new_directory_watches`]) and only then asks for the rescan: every file
//! is either seen by the scan or produces an event.
//!
//! Back-pressure: notify's thread hands events over a bounded channel; when the accumulator's
//! backlog is high the watcher stops reading, the channel fills, notify's thread blocks, and the
//! kernel queue overflows into a rescan request — memory stays bounded and nothing is lost.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use ducktail_sources::opencode::classify;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use crate::messages::*;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::Links;

/// Events buffered between notify's thread and the watcher actor.
const EVENT_CHANNEL_CAPACITY: usize = 4_096;
/// Most events folded into one [`PathsChanged`].
const EVENTS_PER_MESSAGE: usize = 4_096;
/// Longest wait between attempts to watch while the inotify limit is reached.
const MAX_LIMIT_BACKOFF: Duration = Duration::from_secs(300);

/// The events asked of the kernel. Opens and read-only closes never: every folder the daemon's
/// own scan opens would be an event, and on a large tree they overflowed the kernel's queue (a
/// full rescan per start). A close after writing is the one access that matters.
///
/// On Linux, data modifications are not asked for either: OpenCode writes each file whole and
/// closes it, so the close says everything a modify would, and a new file's create announces its
/// write (a file modified and never closed waits for the next scan). A modify was one event in
/// three of a burst of new files, each a trip through notify's thread, this loop and the
/// accumulator. Elsewhere (macOS's FSEvents sends no closes) a modify is how a rewrite shows.
#[cfg(target_os = "linux")]
const WATCHED_KINDS: notify::EventKindMask = notify::EventKindMask::CREATE
    .union(notify::EventKindMask::REMOVE)
    .union(notify::EventKindMask::MODIFY_NAME)
    .union(notify::EventKindMask::MODIFY_META)
    .union(notify::EventKindMask::ACCESS_CLOSE);
#[cfg(not(target_os = "linux"))]
const WATCHED_KINDS: notify::EventKindMask = notify::EventKindMask::CORE.union(notify::EventKindMask::ACCESS_CLOSE);

/// What a run of events asks for.
#[derive(Debug, Default)]
pub struct Translated {
    /// Files to look at: closed after writing, renamed into place, or removed.
    pub paths: Vec<ObservedPath>,
    /// Files being written (created, or modified where the backend reports it; not closed yet in
    /// this run of events).
    pub writing: Vec<ObservedPath>,
    /// Directories to rescan (events inside them may have been lost).
    pub rescans: Vec<PathBuf>,
    /// The storage folder itself was removed (or renamed away): its watch is gone with it.
    pub root_removed: bool,
    /// notify could not watch a new directory because the inotify watch limit is reached.
    pub watch_limit_reached: bool,
}

/// Maps notify events onto OpenCode files and rescan requests.
pub fn translate(storage_root: &Path, events: Vec<notify::Result<notify::Event>>, now: Instant) -> Translated {
    let mut translated = Translated::default();
    for event in events {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                translated.watch_limit_reached |= is_watch_limit(&error);
                tracing::warn!(%error, "filesystem watcher error; rescanning");
                translated.rescans.push(storage_root.to_owned());
                continue;
            }
        };
        if event.need_rescan() {
            translated.rescans.push(storage_root.to_owned());
            continue;
        }
        // Of the accesses, only a close after writing matters: the file is complete.
        let closed_after_write = matches!(event.kind, EventKind::Access(AccessKind::Close(AccessMode::Write)));
        if matches!(event.kind, EventKind::Access(_)) && !closed_after_write {
            continue;
        }
        // Reading a file between its creation and its close would find it partial: a create
        // (or a modify, from a backend that sends one) only announces the close to come.
        let write_in_progress = matches!(event.kind, EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any));
        let removal = matches!(event.kind, EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_)));
        // Even if the folder is already back, its watch went with the old one: attach again.
        if removal && event.paths.iter().any(|path| path == storage_root) {
            translated.root_removed = true;
            continue;
        }
        for path in event.paths {
            if let Some((kind, _)) = classify(storage_root, &path) {
                let observed = ObservedPath::new(path, kind, now);
                if write_in_progress {
                    translated.writing.push(observed);
                } else {
                    translated.paths.push(observed);
                }
            } else if matches!(event.kind, EventKind::Create(notify::event::CreateKind::Folder)) || path.is_dir() {
                // A new (or renamed) directory: files written into it before the watch was
                // added produced no events.
                if path.starts_with(storage_root) {
                    translated.rescans.push(path);
                }
            }
        }
    }
    translated.rescans.sort();
    translated.rescans.dedup();
    // Written and closed within this run: complete now.
    let complete: foldhash::HashSet<&std::ffi::OsStr> = translated.paths.iter().map(|observed| observed.path.as_os_str()).collect();
    let writing = std::mem::take(&mut translated.writing);
    translated.writing = writing.into_iter().filter(|observed| !complete.contains(observed.path.as_os_str())).collect();
    translated
}

/// Returns once notify's thread has added the watches of the directories created in the events
/// received so far (see the module doc): a request it answers in its loop, after the run of
/// events it was handling. `configure` is that request doing nothing else (inotify supports no
/// runtime option). It replaced a second, explicit recursive `watch` of each new directory, which
/// did the same work as notify's own (a walk of the directory, and a pass over every watch it
/// holds): in a burst of new directories that doubled notify's thread's share of the daemon's
/// time (18 % of all samples, three quarters of it adding watches).
fn wait_for_new_directory_watches(watcher: &Weak<Mutex<notify::RecommendedWatcher>>) {
    let Some(watcher) = watcher.upgrade() else { return };
    let mut watcher = watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Err(error) = watcher.configure(notify::Config::default()) {
        tracing::debug!(%error, "notify's thread did not answer; the new directory is scanned anyway");
    }
}

/// Whether notify failed because the kernel's inotify watch (or instance) limit is reached.
pub fn is_watch_limit(error: &notify::Error) -> bool {
    match &error.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        // ENOSPC from inotify_add_watch means the watch limit, not a full disk.
        notify::ErrorKind::Io(io) => io.raw_os_error() == Some(28),
        _ => false,
    }
}

/// What to tell the user when the watch limit is reached: the limit, the consequence, the fix.
fn watch_limit_reason() -> String {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches").map(|text| text.trim().to_owned()).unwrap_or_else(|_| "?".to_owned());
    format!(
        "the inotify watch limit is reached (fs.inotify.max_user_watches = {limit}): live file events are incomplete and changes \
         are found by the periodic reconcile (reconcile.interval) instead; raise the limit, e.g. \
         `sudo sysctl fs.inotify.max_user_watches=524288`, then ducktail attaches again on its own"
    )
}

/// Why the event loop ended.
enum LoopEnd {
    /// Translating events panicked: the actor stops and its supervisor restarts it.
    Panicked,
    /// notify's channel closed.
    Closed,
    /// The storage folder was removed; its watch went with it.
    RootRemoved,
}

/// Daemon → Watcher, ask. Stop watching (shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopWatching;

/// The watcher actor.
pub struct Watcher {
    /// `<opencode>/storage`.
    storage_root: PathBuf,
    /// The live notify watcher; dropping it ends the event stream. Shared (weakly) with the
    /// threads that add watches on new directories.
    notify: Option<Arc<Mutex<notify::RecommendedWatcher>>>,
    /// How long to wait before retrying to attach when the tree is missing.
    retry_interval: Duration,
    /// Set at shutdown: never attach again.
    stopped: bool,
    /// Whether the "cannot watch yet" warning was logged (once: OpenCode ≥ 1.2 may never
    /// create `storage/`).
    warned_unwatchable: bool,
    /// The storage folder was removed (or the watch limit hit): once it is watched again,
    /// everything is rescanned.
    reattaching: bool,
    /// Wait before the next attempt while the watch limit is reached (doubles up to 5 min).
    limit_backoff: Duration,
    /// Accumulator and reconciler.
    links: Arc<Links>,
    /// Shared counters.
    board: Arc<StatusBoard>,
    /// Test seams.
    faults: Arc<Faults>,
}

impl Watcher {
    /// A watcher of the tree under `storage_root`.
    pub fn new(storage_root: PathBuf, retry_interval: Duration, links: Arc<Links>, board: Arc<StatusBoard>, faults: Arc<Faults>) -> Watcher {
        Watcher {
            storage_root,
            notify: None,
            retry_interval,
            stopped: false,
            warned_unwatchable: false,
            reattaching: false,
            limit_backoff: Duration::ZERO,
            links,
            board,
            faults,
        }
    }

    fn attach(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        let (sender, receiver) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let handler = move |event| {
            // Blocks notify's thread when the actor is behind: that is the back-pressure.
            let _ = sender.blocking_send(event);
        };
        let watcher = notify::RecommendedWatcher::new(handler, notify::Config::default().with_event_kinds(WATCHED_KINDS));
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::error!(%error, "cannot create a filesystem watcher; relying on periodic reconcile");
                return;
            }
        };
        let attached = if self.faults.watch_limit {
            Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch))
        } else {
            watcher.watch(&self.storage_root, RecursiveMode::Recursive)
        };
        if let Err(error) = attached {
            if is_watch_limit(&error) {
                let reason = watch_limit_reason();
                if self.board.set_watch_problem(Some(reason.clone())) {
                    tracing::error!(path = %self.storage_root.display(), "{reason}");
                }
                // Events were (and will be) missed: rescan once the watch holds again.
                self.reattaching = true;
                self.limit_backoff = (self.limit_backoff * 2).clamp(self.retry_interval, MAX_LIMIT_BACKOFF);
                ctx.run_later(self.limit_backoff, |act, ctx| act.attach(ctx));
                return;
            }
            if std::mem::replace(&mut self.warned_unwatchable, true) {
                tracing::debug!(path = %self.storage_root.display(), %error, "cannot watch the OpenCode storage folder yet; retrying");
            } else {
                tracing::warn!(path = %self.storage_root.display(), %error, "cannot watch the OpenCode storage folder yet; retrying quietly");
            }
            ctx.run_later(self.retry_interval, |act, ctx| act.attach(ctx));
            return;
        }
        tracing::debug!(path = %self.storage_root.display(), "watching");
        if self.board.set_watch_problem(None) {
            tracing::info!(path = %self.storage_root.display(), "file events are complete again");
        }
        self.limit_backoff = Duration::ZERO;
        if std::mem::take(&mut self.reattaching) {
            tracing::info!(path = %self.storage_root.display(), "watching again; rescanning for what events missed");
            self.links.reconciler().do_send(Rescan { scope: self.storage_root.clone(), reason: "watch attached again" });
        }
        let watcher = Arc::new(Mutex::new(watcher));
        let handle = Arc::downgrade(&watcher);
        self.notify = Some(watcher);
        self.spawn_event_loop(receiver, handle, ctx);
    }

    fn spawn_event_loop(
        &mut self,
        mut receiver: mpsc::Receiver<notify::Result<notify::Event>>,
        watcher: Weak<Mutex<notify::RecommendedWatcher>>,
        ctx: &mut Context<Self>,
    ) {
        let storage_root = self.storage_root.clone();
        let accumulator = self.links.accumulator().clone();
        let reconciler = self.links.reconciler().clone();
        let (board, faults) = (self.board.clone(), self.faults.clone());
        let event_loop = async move {
            while let Some(first) = receiver.recv().await {
                let mut events = vec![first];
                while events.len() < EVENTS_PER_MESSAGE {
                    match receiver.try_recv() {
                        Ok(event) => events.push(event),
                        Err(_) => break,
                    }
                }
                if faults.drop_watch_events {
                    continue;
                }
                let now = Instant::now();
                let translated = catch_panic("watcher", &board, || {
                    faults.maybe_panic("watcher", &board);
                    translate(&storage_root, events, now)
                });
                let Some(translated) = translated else { return LoopEnd::Panicked };
                if translated.root_removed {
                    // The files removed with the folder may share this run of events with it, and
                    // no scan can find them once the folder is gone: deliver them before leaving.
                    if !translated.paths.is_empty() {
                        let _ = accumulator.send(PathsChanged { paths: translated.paths, origin: Origin::Watcher }).await;
                    }
                    return LoopEnd::RootRemoved;
                }
                if translated.watch_limit_reached {
                    let reason = watch_limit_reason();
                    if board.set_watch_problem(Some(reason.clone())) {
                        tracing::error!(path = %storage_root.display(), "{reason}");
                    }
                }
                let (whole_tree, new_directories): (Vec<_>, Vec<_>) = translated.rescans.into_iter().partition(|scope| *scope == storage_root);
                if let Some(scope) = whole_tree.into_iter().next() {
                    reconciler.do_send(Rescan { scope, reason: "lost watch events" });
                }
                if !new_directories.is_empty() {
                    // Off this loop: the round trip waits for notify's thread, which may itself be
                    // waiting for this loop to take its events.
                    let (watcher, reconciler) = (watcher.clone(), reconciler.clone());
                    actix_rt::task::spawn_blocking(move || {
                        wait_for_new_directory_watches(&watcher);
                        for scope in new_directories {
                            reconciler.do_send(Rescan { scope, reason: "new directory" });
                        }
                    });
                }
                if !translated.writing.is_empty() {
                    accumulator.do_send(PathsChanged { paths: translated.writing, origin: Origin::Writing });
                }
                if translated.paths.is_empty() {
                    continue;
                }
                match accumulator.send(PathsChanged { paths: translated.paths, origin: Origin::Watcher }).await {
                    Ok(backlog) if backlog.over_high_water => {
                        let _ = accumulator.send(WaitForCapacity).await;
                    }
                    Ok(_) => {}
                    Err(_) => reconciler.do_send(Rescan { scope: storage_root.clone(), reason: "accumulator unavailable" }),
                }
            }
            LoopEnd::Closed
        };
        ctx.spawn(actix::fut::wrap_future(event_loop).map(|end, act: &mut Watcher, ctx: &mut Context<Self>| match end {
            LoopEnd::Panicked => ctx.stop(),
            LoopEnd::RootRemoved if !act.stopped => {
                tracing::warn!(path = %act.storage_root.display(), "the OpenCode storage folder was removed; watching for it to return");
                act.notify = None;
                act.reattaching = true;
                act.warned_unwatchable = true;
                act.attach(ctx);
            }
            // The channel closed under a live watcher: start over.
            LoopEnd::Closed if act.notify.is_some() && !act.stopped => {
                act.notify = None;
                act.attach(ctx);
            }
            _ => {}
        }));
    }
}

impl Actor for Watcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.attach(ctx);
    }
}

impl Supervised for Watcher {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.notify = None;
        // Events between the panic and the new watch are lost: rescan everything.
        self.links.reconciler().do_send(Rescan { scope: self.storage_root.clone(), reason: "the watcher restarted" });
    }
}

impl Handler<StopWatching> for Watcher {
    type Result = ();
    fn handle(&mut self, _message: StopWatching, _ctx: &mut Self::Context) {
        self.stopped = true;
        self.notify = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_map_to_files_and_new_directories_to_rescans() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("storage");
        std::fs::create_dir_all(root.join("part/msg_a")).unwrap();
        let part = root.join("part/msg_a/prt_b.json");
        let events = vec![
            Ok(notify::Event::new(EventKind::Modify(ModifyKind::Any)).add_path(part.clone())),
            Ok(notify::Event::new(EventKind::Create(CreateKind::Folder)).add_path(root.join("part/msg_a"))),
            Ok(notify::Event::new(EventKind::Modify(ModifyKind::Any)).add_path(root.join("part/msg_a/prt_b.json.tmp"))),
        ];
        let translated = translate(&root, events, Instant::now());
        assert!(translated.paths.is_empty(), "a modified file not yet closed is not complete");
        assert_eq!(translated.writing.len(), 1);
        assert_eq!(translated.writing[0].path, part);
        assert_eq!(translated.rescans, vec![root.join("part/msg_a")]);
    }

    #[test]
    fn a_file_is_complete_when_closed_after_writing_or_renamed_into_place() {
        let root = PathBuf::from("/data/storage");
        let part = root.join("part/msg_a/prt_b.json");
        let event = |kind: EventKind| Ok(notify::Event::new(kind).add_path(part.clone()));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let written = translate(
            &root,
            vec![event(EventKind::Create(CreateKind::File)), event(EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any))), event(closed)],
            Instant::now(),
        );
        assert_eq!((written.paths.len(), written.writing.len()), (1, 0), "created, written and closed in one run");
        let created = translate(&root, vec![event(EventKind::Create(CreateKind::File))], Instant::now());
        assert_eq!((created.paths.len(), created.writing.len()), (0, 1), "created, still open");
        let renamed = translate(&root, vec![event(EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::To)))], Instant::now());
        assert_eq!((renamed.paths.len(), renamed.writing.len()), (1, 0), "renamed into place");
        let read = translate(&root, vec![event(EventKind::Access(AccessKind::Close(AccessMode::Read)))], Instant::now());
        assert_eq!((read.paths.len(), read.writing.len()), (0, 0), "a read changes nothing");
    }

    #[test]
    fn removing_the_storage_folder_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("storage");
        let removed = notify::Event::new(EventKind::Remove(notify::event::RemoveKind::Folder)).add_path(root.clone());
        let translated = translate(&root, vec![Ok(removed)], Instant::now());
        assert!(translated.root_removed);
        let inner = notify::Event::new(EventKind::Remove(notify::event::RemoveKind::Folder)).add_path(root.join("part"));
        assert!(!translate(&root, vec![Ok(inner)], Instant::now()).root_removed, "only the folder itself");
    }

    #[test]
    fn an_overflow_asks_for_a_full_rescan() {
        let root = PathBuf::from("/nonexistent/storage");
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        let translated = translate(&root, vec![Ok(overflow)], Instant::now());
        assert_eq!(translated.rescans, vec![root]);
    }

    #[test]
    fn a_new_directory_notify_could_not_watch_for_the_limit_is_named_and_rescanned() {
        let root = PathBuf::from("/nonexistent/storage");
        let limit = translate(&root, vec![Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch))], Instant::now());
        assert!(limit.watch_limit_reached);
        assert_eq!(limit.rescans, vec![root.clone()]);
        let other = translate(&root, vec![Err(notify::Error::generic("something else"))], Instant::now());
        assert!(!other.watch_limit_reached, "only the limit is named as the limit");
        assert_eq!(other.rescans, vec![root]);
    }
}
