//! `ducktail index` run as a child process, timed, with its peak RSS sampled from /proc. Shared
//! by the benches through `#[path]`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `ducktail index` and returns its wall time and peak RSS in KiB (sampled from /proc).
pub fn run_index(opencode: &Path, db: &Path) -> (Duration, u64) {
    // The previous step's writes (a baseline's database, the cold index's) are still being
    // written back by the kernel; flushed first so that I/O is not timed as this run's.
    let _ = Command::new("sync").status();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ducktail"))
        .args(["index", "--opencode"])
        .arg(opencode)
        .arg("--db")
        .arg(db)
        .env("XDG_CONFIG_HOME", "/nonexistent-ducktail-bench-config")
        .env("CLAUDE_CONFIG_DIR", "/nonexistent-ducktail-bench-claude")
        .env("CODEX_HOME", "/nonexistent-ducktail-bench-codex")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run ducktail index");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(line) = status.lines().find(|line| line.starts_with("VmHWM:")) {
                let kib: u64 = line.split_whitespace().nth(1).and_then(|value| value.parse().ok()).unwrap_or(0);
                peak_kib = peak_kib.max(kib);
            }
        }
        if let Some(status) = child.try_wait().expect("wait for index") {
            assert!(status.success(), "ducktail index failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (started.elapsed(), peak_kib)
}
