//! A `ducktail run` for benchmarks: started on port 0 with a given config, ready when returned,
//! stopped with SIGTERM. Shared by the benches through `#[path]`.

use std::io::{BufRead, BufReader};
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
        std::fs::write(&config, config_toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ducktail"))
            .arg("run")
            .arg("--opencode")
            .arg(opencode)
            .arg("--db")
            .arg(db)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("XDG_CONFIG_HOME", "/nonexistent-ducktail-bench-config")
            .env("RUST_LOG", "warn,ducktail=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ducktail run");
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let (false, Some(start)) = (sent, line.find("http://")) {
                    let address: String = line[start..].chars().take_while(|c| !c.is_whitespace()).collect();
                    sent = sender.send(address).is_ok();
                }
            }
        });
        let base_url = receiver.recv_timeout(Duration::from_secs(60)).expect("the daemon printed its address");
        let daemon = BenchDaemon { child, base_url };
        let deadline = Instant::now() + ready_within;
        while ureq::get(&format!("{}/readyz", daemon.base_url)).call().is_err() {
            assert!(Instant::now() < deadline, "the daemon did not become ready within {ready_within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}
