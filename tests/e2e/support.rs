//! Shared helpers: running the real binary, temp trees, waiting on conditions, reading results.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ducktail_store::Reader;

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ducktail")
}

/// `../shared/fixtures/opencode-json`, beside the project root.
pub fn shared_opencode_fixtures() -> PathBuf {
    shared_fixtures("opencode-json")
}

/// A folder of `../shared/fixtures`, beside the project root, as the absolute path ducktail
/// stores (the binary resolves `..` and symlinks in the paths it is given).
pub fn shared_fixtures(folder: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures").join(folder);
    std::fs::canonicalize(&path).unwrap_or_else(|error| panic!("{}: {error}; the tests need the shared fixtures folder beside the clone", path.display()))
}

/// Variables every test run of the binary gets, so the machine's own config and agent folders
/// (`~/.claude` on a developer's machine) never leak into a test: each points nowhere.
pub const ISOLATED_ENVIRONMENT: [(&str, &str); 3] = [
    ("XDG_CONFIG_HOME", "/nonexistent-ducktail-test-config"),
    ("CLAUDE_CONFIG_DIR", "/nonexistent-ducktail-test-claude"),
    ("CODEX_HOME", "/nonexistent-ducktail-test-codex"),
];

/// Applies [`ISOLATED_ENVIRONMENT`] to `command`.
pub fn isolate(command: &mut Command) {
    command.envs(ISOLATED_ENVIRONMENT);
}

/// Runs `ducktail` with `args` and returns its output (never inheriting the user's config).
pub fn ducktail(args: &[&str], config: Option<&Path>) -> Output {
    let mut command = Command::new(binary());
    command.args(args).env_remove("RUST_LOG");
    isolate(&mut command);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.output().expect("run ducktail")
}

/// Runs `ducktail index` and asserts it succeeded.
pub fn index(opencode: &Path, db: &Path) -> String {
    let output = ducktail(&["index", "--opencode", path_str(opencode), "--db", path_str(db)], None);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "index failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// A path as &str (test paths are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Polls `condition` until it holds or `deadline` passes (then panics with `what`).
pub fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    while !condition() {
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for: {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Query results as text rows (NULL for nulls), through a read-only connection.
pub fn rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let reader = Reader::open_read_only(db).unwrap_or_else(|error| panic!("open {}: {error}", db.display()));
    let result = reader.query_json(sql, 10_000_000).unwrap_or_else(|error| panic!("{sql}: {error}"));
    result.rows.into_iter().map(|row| row.into_iter().map(json_text).collect()).collect()
}

/// One integer from a query.
pub fn scalar(db: &Path, sql: &str) -> i64 {
    rows(db, sql)[0][0].parse().unwrap_or_else(|_| panic!("not an integer: {sql}"))
}

/// Renders a JSON cell as text.
pub fn json_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "NULL".to_owned(),
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    }
}

/// Every contract table's rows as sorted text (volatile bookkeeping columns left out), for
/// comparing a database with a fresh index of the same tree.
pub fn snapshot(db: &Path) -> BTreeMap<&'static str, Vec<String>> {
    const TABLES: [(&str, &str); 14] = [
        ("projects", "SELECT * FROM projects"),
        ("sessions", "SELECT * FROM sessions"),
        ("messages", "SELECT * FROM messages"),
        ("parts", "SELECT * FROM parts"),
        ("step_events", "SELECT * FROM step_events"),
        ("file_operations", "SELECT * FROM file_operations"),
        ("todos", "SELECT * FROM todos"),
        ("file_diffs", "SELECT * FROM file_diffs"),
        ("delegations", "SELECT * FROM delegations"),
        ("agent_traces", "SELECT * FROM agent_traces"),
        ("session_stats", "SELECT * FROM session_stats"),
        ("session_usage", "SELECT * FROM session_usage"),
        ("session_tools", "SELECT * FROM session_tools"),
        ("file_index", "SELECT file_path, source, kind, mtime_ns, size, record_id, status FROM file_index"),
    ];
    let reader = Reader::open_read_only(db).unwrap_or_else(|error| panic!("open {}: {error}", db.display()));
    TABLES
        .into_iter()
        .map(|(table, sql)| {
            let result = reader.query_json(sql, 10_000_000).unwrap();
            let mut lines: Vec<String> = result.rows.into_iter().map(|row| serde_json::Value::Array(row).to_string()).collect();
            lines.sort();
            (table, lines)
        })
        .collect()
}

/// Asserts two snapshots are equal, table by table, showing the first difference.
pub fn assert_same_snapshot(actual: &BTreeMap<&'static str, Vec<String>>, expected: &BTreeMap<&'static str, Vec<String>>) {
    for (table, expected_rows) in expected {
        let actual_rows = &actual[table];
        if actual_rows != expected_rows {
            let missing: Vec<_> = expected_rows.iter().filter(|row| !actual_rows.contains(row)).take(3).collect();
            let extra: Vec<_> = actual_rows.iter().filter(|row| !expected_rows.contains(row)).take(3).collect();
            panic!("table {table} differs: {} rows vs {} expected\nmissing: {missing:#?}\nextra: {extra:#?}", actual_rows.len(), expected_rows.len());
        }
    }
}

/// After the daemon stopped: its database must equal a fresh index of the same sources.
pub fn assert_equals_fresh_index(opencode: &Path, db: &Path, scratch: &Path) {
    let fresh = scratch.join(format!("fresh-{}.duckdb", std::process::id()));
    let _ = std::fs::remove_file(&fresh);
    index(opencode, &fresh);
    assert_same_snapshot(&snapshot(db), &snapshot(&fresh));
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A running `ducktail run` with its HTTP address.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
}

/// Writes a test config enabling the SQL API, with extra TOML appended.
pub fn test_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join(format!("config-{}.toml", std::process::id()));
    std::fs::write(&path, format!("[http]\nsql_enabled = true\n{extra}\n")).unwrap();
    path
}

impl Daemon {
    /// Starts `ducktail run` on port 0 and waits for its address (first log line) and readiness.
    pub fn start(opencode: &Path, db: &Path, config: &Path) -> Daemon {
        Daemon::start_in(Path::new("."), &["--opencode", path_str(opencode), "--db", path_str(db), "--config", path_str(config)])
    }

    /// Starts `ducktail run --listen 127.0.0.1:0 <arguments>` in `working_dir`, as a user would
    /// from there, and waits for its address and readiness.
    pub fn start_in(working_dir: &Path, arguments: &[&str]) -> Daemon {
        let mut child = Command::new(binary())
            .current_dir(working_dir)
            .args(["run", "--listen", "127.0.0.1:0"])
            .args(arguments)
            .env("RUST_LOG", std::env::var("DUCKTAIL_TEST_RUST_LOG").unwrap_or_else(|_| "info".to_owned()))
            .envs(ISOLATED_ENVIRONMENT)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ducktail run");
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        // The log's last lines, for the message of a daemon that never gets ready.
        let tail = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::<String>::new()));
        let kept = tail.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                {
                    let mut kept = kept.lock().unwrap();
                    if kept.len() == 40 {
                        kept.pop_front();
                    }
                    kept.push_back(line.clone());
                }
                if !sent {
                    if let Some(start) = line.find("http://") {
                        let address: String = line[start..].chars().take_while(|c| !c.is_whitespace()).collect();
                        let _ = sender.send(address);
                        sent = true;
                    }
                }
                if std::env::var_os("DUCKTAIL_TEST_ECHO").is_some() {
                    eprintln!("[daemon] {line}");
                }
            }
        });
        let base_url = receiver.recv_timeout(Duration::from_secs(30)).expect("daemon printed its address");
        let mut daemon = Daemon { child, base_url };
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        while daemon.get_status("/readyz") != Some(200) {
            let exited = daemon.child.try_wait().ok().flatten();
            if exited.is_some() || started.elapsed() > Duration::from_secs(120) {
                let log = tail.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n");
                let health = daemon.get_status("/health/detailed").map(|_| daemon.get_with_status("/health/detailed").1);
                panic!(
                    "the daemon did not get ready within {:?} (exited: {exited:?}); /health/detailed: {health:?}\nits last log lines:\n{log}",
                    started.elapsed()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        daemon
    }

    /// Status code of a GET, or None when the server is unreachable.
    pub fn get_status(&self, path: &str) -> Option<u16> {
        match ureq::get(&format!("{}{path}", self.base_url)).timeout(Duration::from_secs(5)).call() {
            Ok(response) => Some(response.status()),
            Err(ureq::Error::Status(code, _)) => Some(code),
            Err(_) => None,
        }
    }

    /// `GET /metrics`, as text.
    pub fn metrics_text(&self) -> String {
        ureq::get(&format!("{}/metrics", self.base_url)).timeout(Duration::from_secs(10)).call().unwrap().into_string().unwrap()
    }

    /// GET returning JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        ureq::get(&format!("{}{path}", self.base_url)).timeout(Duration::from_secs(10)).call().unwrap().into_json().unwrap()
    }

    /// GET returning its status and JSON body, whatever the status (health answers 503 with a body).
    pub fn get_with_status(&self, path: &str) -> (u16, serde_json::Value) {
        match ureq::get(&format!("{}{path}", self.base_url)).timeout(Duration::from_secs(10)).call() {
            Ok(response) => (response.status(), response.into_json().unwrap()),
            Err(ureq::Error::Status(code, response)) => (code, response.into_json().unwrap()),
            Err(error) => panic!("GET {path}: {error}"),
        }
    }

    /// Rows of a read-only query through `POST /api/sql`.
    pub fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        let response: serde_json::Value = ureq::post(&format!("{}/api/sql", self.base_url))
            .timeout(Duration::from_secs(30))
            .send_json(serde_json::json!({ "sql": sql }))
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .into_json()
            .unwrap();
        response["rows"].as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().cloned().map(json_text).collect()).collect()
    }

    /// One integer through the SQL API.
    pub fn scalar(&self, sql: &str) -> i64 {
        self.sql(sql)[0][0].parse().unwrap()
    }

    /// Sends SIGTERM and waits for the exit status (with a deadline).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY-free: kill(2) through libc with a plain pid.
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "daemon did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
