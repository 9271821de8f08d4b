//! Model-based test of the watch/reconcile core: random create / modify / delete / move
//! sequences, with watcher events randomly lost, run through the accumulator's batching rules
//! and a simulated writer whose batches stay in flight (read at the cut, committed later) while
//! files change and scans run; after a scan run while batches are in flight and quiescence, every
//! file on disk must be indexed as it is, and after one more scan the index must equal the disk.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ducktail_model::{FileKind, FileStamp, FileStatus};
use ducktail_sources::opencode::ScannedFile;
use proptest::prelude::*;

use crate::accumulator::{AccumulatorCore, BatchRules};
use crate::files::{diff, IndexedState};
use crate::messages::{CommittedFile, FullScan, ObservedPath, Origin};

#[derive(Debug, Clone)]
enum Operation {
    Create(u8),
    Modify(u8),
    Delete(u8),
    Move(u8, u8),
    /// Let the pipeline cut and commit whatever it would now.
    Pump,
    /// Cut batches and read their files, without committing them yet.
    Cut,
    /// Commit the oldest batch in flight.
    Commit,
    /// A scan while whatever is in flight stays in flight, then quiescence.
    Reconcile,
    /// Let time pass (windows and throttles expire).
    Wait(u16),
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (0u8..12).prop_map(Operation::Create),
        (0u8..12).prop_map(Operation::Modify),
        (0u8..12).prop_map(Operation::Delete),
        (0u8..12, 0u8..12).prop_map(|(from, to)| Operation::Move(from, to)),
        Just(Operation::Pump),
        Just(Operation::Cut),
        Just(Operation::Commit),
        Just(Operation::Reconcile),
        (1u16..400).prop_map(Operation::Wait),
    ]
}

fn path(index: u8) -> PathBuf {
    // Sessions live under project folders; a "move" is a session changing folders.
    PathBuf::from(format!("/s/session/p{}/ses_{}.json", index % 3, index / 3))
}

/// A path as a decoder read it: its stamp, or `None` when it was gone.
type ReadPath = (PathBuf, Option<FileStamp>);

struct Simulation {
    disk: BTreeMap<PathBuf, FileStamp>,
    index: crate::files::IndexView,
    accumulator: AccumulatorCore,
    now: Instant,
    version: i64,
    scan_mark: u32,
    /// Batches cut and read, oldest first.
    in_flight: VecDeque<(u64, Vec<ReadPath>)>,
}

impl Simulation {
    fn new() -> Simulation {
        let rules = BatchRules {
            max_files: 3,
            backlog_batch_files: 5,
            window: Duration::from_millis(200),
            adaptive: true,
            max_in_flight: 2,
            max_pending: 6,
            min_rewrite_interval: Duration::from_millis(250),
            retry_base: Duration::from_millis(100),
            write_grace: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
        };
        Simulation {
            disk: BTreeMap::new(),
            index: crate::files::IndexView::new(std::path::Path::new("/s")),
            accumulator: AccumulatorCore::new(rules),
            now: Instant::now(),
            version: 0,
            scan_mark: 0,
            in_flight: VecDeque::new(),
        }
    }

    fn touch(&mut self, path: PathBuf) {
        self.version += 1;
        self.disk.insert(path, FileStamp { mtime_ns: self.version, size: 10 });
    }

    fn observe(&mut self, paths: Vec<PathBuf>, delivered: bool) {
        if delivered {
            let observed = paths.into_iter().map(|path| ObservedPath::new(path, FileKind::Session, self.now)).collect();
            self.accumulator.offer(observed, Origin::Watcher, self.now);
        }
    }

    /// Cuts every batch the rules allow and reads its files as the decoders would: each path is
    /// looked at on disk *now*.
    fn cut(&mut self) {
        while let Some(batch) = self.accumulator.next_batch(self.now, false) {
            let read = batch.paths.into_iter().map(|observed| {
                let stamp = self.disk.get(&observed.path).copied();
                (observed.path, stamp)
            });
            self.in_flight.push_back((batch.batch_id, read.collect()));
        }
    }

    /// Commits the oldest batch in flight as the writer would: what was read, not what is on disk.
    fn commit_oldest(&mut self) {
        let Some((batch_id, read)) = self.in_flight.pop_front() else { return };
        let mut files = Vec::new();
        for (path, stamp) in read {
            match stamp {
                Some(stamp) => {
                    self.index.insert(&path, IndexedState { kind: FileKind::Session, stamp, status: FileStatus::Indexed, seen_in_scan: 0 });
                }
                None => {
                    self.index.remove(&path);
                }
            }
            files.push(CommittedFile { path, kind: FileKind::Session, state: stamp.map(|stamp| (stamp, FileStatus::Indexed)) });
        }
        self.accumulator.committed(batch_id, &files, Vec::new(), self.now);
    }

    /// Commits what is in flight and cuts and commits every batch the rules allow.
    fn pump(&mut self) {
        loop {
            while !self.in_flight.is_empty() {
                self.commit_oldest();
            }
            self.cut();
            if self.in_flight.is_empty() {
                return;
            }
        }
    }

    fn reconcile(&mut self) {
        self.accumulator.full_scan(FullScan::Started);
        self.scan_mark += 1;
        let on_disk: Vec<ScannedFile> =
            self.disk.iter().map(|(path, stamp)| ScannedFile { path: path.clone(), kind: FileKind::Session, stamp: *stamp }).collect();
        let differences = diff(on_disk, &mut self.index, self.scan_mark);
        self.accumulator.full_scan(FullScan::Ended);
        let mut paths: Vec<ObservedPath> = differences
            .changed
            .into_iter()
            .map(|file| ObservedPath { path: file.path, kind: file.kind, observed_at: self.now, scanned_stamp: Some(file.stamp) })
            .collect();
        paths.extend(differences.removed.into_iter().map(|(path, kind)| ObservedPath::new(path, kind, self.now)));
        // The reconciler sends in chunks and waits for capacity between them; the first chunk
        // arrives while the batches in flight are still in flight.
        for chunk in paths.chunks(2) {
            self.accumulator.offer(chunk.to_vec(), Origin::Reconciler, self.now);
            self.settle();
        }
        // Paths refused for lack of room are found by the rescan the accumulator asks for.
        if self.accumulator.take_refused() {
            self.reconcile();
        }
    }

    /// Files on disk the index does not hold as they are.
    fn not_indexed_as_on_disk(&self) -> Vec<&PathBuf> {
        self.disk.iter().filter(|(path, stamp)| self.index.get(path).map(|state| state.stamp) != Some(**stamp)).map(|(path, _)| path).collect()
    }

    fn settle(&mut self) {
        for _ in 0..100 {
            self.pump();
            if self.accumulator.status().pending == 0 {
                return;
            }
            self.now += Duration::from_millis(100);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn index_converges_to_disk_whatever_the_watcher_drops(
        steps in proptest::collection::vec((operation(), any::<bool>()), 1..60)
    ) {
        let mut simulation = Simulation::new();
        for (operation, delivered) in steps {
            match operation {
                Operation::Create(index) | Operation::Modify(index) => {
                    simulation.touch(path(index));
                    simulation.observe(vec![path(index)], delivered);
                }
                Operation::Delete(index) => {
                    simulation.disk.remove(&path(index));
                    simulation.observe(vec![path(index)], delivered);
                }
                Operation::Move(from, to) => {
                    if let Some(stamp) = simulation.disk.remove(&path(from)) {
                        simulation.disk.insert(path(to), stamp);
                        simulation.observe(vec![path(from), path(to)], delivered);
                    }
                }
                Operation::Pump => simulation.pump(),
                Operation::Cut => simulation.cut(),
                Operation::Commit => simulation.commit_oldest(),
                Operation::Reconcile => {
                    // Every file on disk ends indexed as it is (a scan's report of a file in flight
                    // is dropped only when its batch commits the version the scan saw).
                    simulation.reconcile();
                    simulation.settle();
                    prop_assert!(simulation.not_indexed_as_on_disk().is_empty(), "after a scan: {:?}", simulation.not_indexed_as_on_disk());
                }
                Operation::Wait(millis) => simulation.now += Duration::from_millis(u64::from(millis)),
            }
        }
        // A scan with whatever the steps left in flight still in flight, then quiescence.
        simulation.reconcile();
        simulation.settle();
        prop_assert!(simulation.not_indexed_as_on_disk().is_empty(), "after the last scan: {:?}", simulation.not_indexed_as_on_disk());
        // A file deleted after its batch read it, with the event lost, stays indexed until the
        // next scan: one more, with nothing in flight.
        simulation.reconcile();
        simulation.settle();
        let indexed: BTreeMap<PathBuf, FileStamp> = simulation.index.iter().map(|(path, state)| (path, state.stamp)).collect();
        prop_assert_eq!(indexed, simulation.disk.clone());
        prop_assert!(simulation.accumulator.is_drained());
    }
}
