//! The status board: counters and recent latencies every actor updates and health reads.
//!
//! This is observability only. No actor decides anything from another actor's numbers here; the
//! board exists so `/readyz`, health and benchmarks can see the pipeline without asking it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How many recent event→commit latencies are kept for percentiles.
const LATENCY_WINDOW: usize = 10_000;

/// Shared, lock-light pipeline counters.
#[derive(Debug, Default)]
pub struct StatusBoard {
    /// Set once the startup catch-up has committed.
    pub ready: AtomicBool,
    /// Batches committed since start.
    pub batches_committed: AtomicU64,
    /// Files committed since start (any status).
    pub files_committed: AtomicU64,
    /// Batches that failed and were re-queued.
    pub batches_failed: AtomicU64,
    /// Unix milliseconds of the last commit (0 = none yet).
    pub last_commit_unix_ms: AtomicU64,
    /// Actor restarts after a panic or stop, since start.
    pub actor_restarts: AtomicU64,
    /// Full or partial scans completed by the reconciler.
    pub scans_completed: AtomicU64,
    /// Recent event→commit latencies, newest last.
    latencies: Mutex<VecDeque<Duration>>,
}

/// Percentiles of recent event→commit latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    /// Samples in the window.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

impl StatusBoard {
    /// Records a committed batch.
    pub fn record_commit(&self, files: usize, latencies: &[Duration]) {
        self.batches_committed.fetch_add(1, Ordering::Relaxed);
        self.files_committed.fetch_add(files as u64, Ordering::Relaxed);
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64);
        self.last_commit_unix_ms.store(now_ms, Ordering::Relaxed);
        let mut window = self.latencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for latency in latencies {
            if window.len() == LATENCY_WINDOW {
                window.pop_front();
            }
            window.push_back(*latency);
        }
    }

    /// Percentiles over the recent window.
    pub fn latency_summary(&self) -> LatencySummary {
        let window = self.latencies.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut samples: Vec<Duration> = window.iter().copied().collect();
        drop(window);
        if samples.is_empty() {
            return LatencySummary::default();
        }
        samples.sort_unstable();
        let at = |quantile: f64| samples[((samples.len() - 1) as f64 * quantile).round() as usize];
        LatencySummary { samples: samples.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99) }
    }

    /// Whether the startup catch-up has committed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_window() {
        let board = StatusBoard::default();
        let latencies: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        board.record_commit(100, &latencies);
        let summary = board.latency_summary();
        assert_eq!(summary.samples, 100);
        assert_eq!(summary.p50, Duration::from_millis(51));
        assert_eq!(summary.p99, Duration::from_millis(99));
    }
}
