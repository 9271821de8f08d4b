//! Model-based test of the watch/reconcile core: random create / modify / delete / move
//! sequences, with watcher events randomly lost, run through the accumulator's batching rules
//! and a simulated writer; after a reconcile and quiescence the index must equal the disk.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ducktail_model::{FileKind, FileStamp, FileStatus};
use ducktail_sources::opencode::ScannedFile;
use proptest::prelude::*;

use crate::accumulator::{AccumulatorCore, BatchRules};
use crate::files::{diff, IndexedState};
use crate::messages::{ObservedPath, Origin};

#[derive(Debug, Clone)]
enum Operation {
    Create(u8),
    Modify(u8),
    Delete(u8),
    Move(u8, u8),
    /// Let the pipeline cut and commit whatever it would now.
    Pump,
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
        (1u16..400).prop_map(Operation::Wait),
    ]
}

fn path(index: u8) -> PathBuf {
    // Sessions live under project folders; a "move" is a session changing folders.
    PathBuf::from(format!("/s/session/p{}/ses_{}.json", index % 3, index / 3))
}

struct Simulation {
    disk: BTreeMap<PathBuf, FileStamp>,
    index: crate::files::IndexView,
    accumulator: AccumulatorCore,
    now: Instant,
    version: i64,
    scan_mark: u32,
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
        Simulation { disk: BTreeMap::new(), index: HashMap::new(), accumulator: AccumulatorCore::new(rules), now: Instant::now(), version: 0, scan_mark: 0 }
    }

    fn touch(&mut self, path: PathBuf) {
        self.version += 1;
        self.disk.insert(path, FileStamp { mtime_ns: self.version, size: 10 });
    }

    fn observe(&mut self, paths: Vec<PathBuf>, delivered: bool) {
        if delivered {
            let observed = paths.into_iter().map(|path| ObservedPath { path, kind: FileKind::Session, observed_at: self.now }).collect();
            self.accumulator.offer(observed, Origin::Watcher, self.now);
        }
    }

    /// Cuts every batch the rules allow and commits it as the decoder and writer would:
    /// each path is looked at on disk *now*.
    fn pump(&mut self) {
        while let Some(batch) = self.accumulator.next_batch(self.now, false) {
            for observed in &batch.paths {
                match self.disk.get(&observed.path) {
                    Some(stamp) => {
                        self.index.insert(
                            observed.path.clone().into_os_string(),
                            IndexedState { kind: FileKind::Session, stamp: *stamp, status: FileStatus::Indexed, seen_in_scan: 0 },
                        );
                    }
                    None => {
                        self.index.remove(observed.path.as_os_str());
                    }
                }
            }
            self.accumulator.committed(batch.batch_id, Vec::new(), self.now);
        }
    }

    fn reconcile(&mut self) {
        self.scan_mark += 1;
        let on_disk: Vec<ScannedFile> = self
            .disk
            .iter()
            .map(|(path, stamp)| ScannedFile { path: path.clone(), kind: FileKind::Session, stamp: *stamp })
            .collect();
        let differences = diff(on_disk, &mut self.index, &[PathBuf::from("/s")], self.scan_mark);
        let mut paths: Vec<ObservedPath> =
            differences.changed.into_iter().map(|file| ObservedPath { path: file.path, kind: file.kind, observed_at: self.now }).collect();
        paths.extend(differences.removed.into_iter().map(|(path, kind)| ObservedPath { path, kind, observed_at: self.now }));
        // The reconciler sends in chunks and waits for capacity between them.
        for chunk in paths.chunks(2) {
            self.accumulator.offer(chunk.to_vec(), Origin::Reconciler, self.now);
            self.settle();
        }
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
                Operation::Wait(millis) => simulation.now += Duration::from_millis(u64::from(millis)),
            }
        }
        // One reconcile interval later, with the pipeline quiescent:
        simulation.settle();
        simulation.reconcile();
        simulation.settle();
        let indexed: BTreeMap<PathBuf, FileStamp> = simulation.index.iter().map(|(path, state)| (PathBuf::from(path), state.stamp)).collect();
        prop_assert_eq!(indexed, simulation.disk.clone());
        prop_assert!(simulation.accumulator.is_drained());
    }
}
