//! A `ducktail run` for benchmarks: started on port 0 with a given config, ready when returned,
//! stopped with SIGTERM. Shared by the benches through `#[path]`.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running daemon and its base URL.
pub struct BenchDaemon {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
}

impl BenchDaemon {
    /// Starts `ducktail run` on `opencode` and `db` with `config_toml`, and waits until it is ready
    /// (its startup catch-up committed), for at most `ready_within`.
    pub fn start(opencode: &Path, db: &Path, scratch: &Path, config_toml: &str, ready_within: Duration) -> BenchDaemon {
        let config = scratch.join("bench.toml");
        // DUCKTAIL_BENCH_CONFIG: extra TOML appended to the bench's config, to try a setting.
        let extra = std::env::var("DUCKTAIL_BENCH_CONFIG").unwrap_or_default().replace("\\n", "\n");
        std::fs::write(&config, format!("{config_toml}\n{extra}\n")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ducktail"))
            .arg("run")
            .arg("--opencode")
            .arg(opencode)
            .arg("--db")
            .arg(db)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("XDG_CONFIG_HOME", "/nonexistent-ducktail-bench-config")
            .env("CLAUDE_CONFIG_DIR", "/nonexistent-ducktail-bench-claude")
            .env("CODEX_HOME", "/nonexistent-ducktail-bench-codex")
            // DUCKTAIL_BENCH_RUST_LOG / DUCKTAIL_BENCH_DAEMON_LOG: the daemon's log filter and a
            // file to copy its log to, for looking inside a bench run (e.g. commit timings).
            .env("RUST_LOG", std::env::var("DUCKTAIL_BENCH_RUST_LOG").unwrap_or_else(|_| "warn,ducktail=info".to_owned()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ducktail run");
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let mut log_copy = std::env::var_os("DUCKTAIL_BENCH_DAEMON_LOG")
            .map(|path| std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("DUCKTAIL_BENCH_DAEMON_LOG is writable"));
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(copy) = log_copy.as_mut() {
                    let _ = writeln!(copy, "{line}");
                }
                if let (false, Some(start)) = (sent, line.find("http://")) {
                    let address: String = line[start..].chars().take_while(|c| !c.is_whitespace()).collect();
                    sent = sender.send(address).is_ok();
                }
            }
        });
        // Owned before anything can panic, so a failed start does not leave the daemon running.
        let mut daemon = BenchDaemon { child, base_url: String::new() };
        daemon.base_url = receiver.recv_timeout(Duration::from_secs(60)).expect("the daemon printed its address");
        wait_until("the daemon to become ready", ready_within, Duration::from_millis(20), || ureq::get(&format!("{}/readyz", daemon.base_url)).call().is_ok());
        daemon
    }

    /// The daemon's process id.
    #[allow(dead_code)] // Only the live bench's soak samples the daemon's memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        // A bench that panics must not leave its daemon running, skewing every later run.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `done` every `interval` until it holds; panics naming `what` after `within`.
pub fn wait_until(what: &str, within: Duration, interval: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(interval);
    }
}
