//! Paths as people type them: the binary run from another working directory with relative
//! paths (dotted, slashed, through a symlink, with spaces and non-ASCII names, `~` in a config
//! file) gives the same database as absolute paths, for `index`, `rebuild`, `run`, `--spans`
//! and the read commands; and a command that fails on its sources leaves no file behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::*;

/// A scratch folder laid out as a user's: `data/oc dir ü/` (OpenCode's data folder, a fixture
/// tree), `data/spans/` (span files), `work/` (where commands run) with `work/link` a symlink
/// to `data/`.
struct Layout {
    _scratch: tempfile::TempDir,
    /// The scratch folder, resolved (no symlinks), as ducktail stores paths.
    base: PathBuf,
}

impl Layout {
    fn new() -> Layout {
        let scratch = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(scratch.path()).unwrap();
        copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &base.join("data/oc dir ü"));
        copy_tree(&shared_fixtures("otel-parquet"), &base.join("data/spans"));
        std::fs::create_dir_all(base.join("work")).unwrap();
        std::os::unix::fs::symlink(base.join("data"), base.join("work/link")).unwrap();
        Layout { _scratch: scratch, base }
    }

    fn opencode(&self) -> PathBuf {
        self.base.join("data/oc dir ü")
    }

    fn spans(&self) -> PathBuf {
        self.base.join("data/spans")
    }

    fn work(&self) -> PathBuf {
        self.base.join("work")
    }

    /// Runs `ducktail <arguments>` in `work/`, with `HOME` at the scratch folder and no config.
    fn ducktail_in_work(&self, arguments: &[&str]) -> Output {
        Command::new(binary())
            .current_dir(self.work())
            .args(arguments)
            .env_remove("RUST_LOG")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", &self.base)
            .envs(crate::support::ISOLATED_ENVIRONMENT)
            .output()
            .expect("run ducktail")
    }

    fn succeeds_in_work(&self, arguments: &[&str]) -> String {
        let output = self.ducktail_in_work(arguments);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "ducktail {arguments:?} failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        stdout
    }

    /// The database an absolute-path `index` of both sources makes: what every other form
    /// must equal.
    fn reference_database(&self) -> PathBuf {
        let db = self.base.join("absolute.duckdb");
        let output = ducktail(&["index", "--opencode", path_str(&self.opencode()), "--spans", path_str(&self.spans()), "--db", path_str(&db)], None);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        db
    }
}

/// Every contract table and the span tables, `file_index` paths included: equal snapshots mean
/// equal databases down to the paths stored.
fn full_snapshot(db: &Path) -> Vec<(String, Vec<String>)> {
    let mut tables: Vec<(String, Vec<String>)> = snapshot(db).into_iter().map(|(table, rows)| (table.to_owned(), rows)).collect();
    for (table, sql) in [
        ("spans", "SELECT * FROM spans"),
        ("traces", "SELECT * FROM traces"),
        ("services", "SELECT * FROM services"),
        ("parquet_files", "SELECT file_path, row_count, size_bytes FROM parquet_files"),
    ] {
        let mut lines: Vec<String> = rows(db, sql).into_iter().map(|row| row.join("|")).collect();
        lines.sort();
        tables.push((table.to_owned(), lines));
    }
    tables
}

fn assert_same_database(actual: &Path, expected: &Path, form: &str) {
    let (actual, expected) = (full_snapshot(actual), full_snapshot(expected));
    for ((table, actual_rows), (_, expected_rows)) in actual.iter().zip(&expected) {
        let must_hold_rows = ["sessions", "parts", "file_index", "spans"].contains(&table.as_str());
        assert!(!must_hold_rows || !expected_rows.is_empty(), "reference table {table} is empty: the test would prove nothing");
        assert_eq!(actual_rows, expected_rows, "{form}: table {table} differs from the absolute-path index");
    }
}

#[test]
fn index_with_relative_dotted_slashed_and_symlinked_paths_equals_the_absolute_index() {
    let layout = Layout::new();
    let reference = layout.reference_database();
    for (number, (opencode, spans)) in [
        ("../data/oc dir ü", "../data/spans"),
        ("../data/oc dir ü/", "../data/spans/"),
        ("./../data/./oc dir ü", "../work/../data/spans"),
        ("link/oc dir ü", "link/spans"),
    ]
    .into_iter()
    .enumerate()
    {
        let db = format!("relative-{number}.duckdb");
        let first = layout.succeeds_in_work(&["index", "--opencode", opencode, "--spans", spans, "--db", &db]);
        assert!(first.contains("removed 0"), "{opencode}: {first}");
        assert_same_database(&layout.work().join(&db), &reference, opencode);
        // The same database again, through another spelling: nothing changed, nothing removed.
        let again = layout.succeeds_in_work(&["index", "--opencode", "link/oc dir ü/", "--spans", "link/spans", "--db", &format!("./{db}")]);
        assert!(again.contains("indexed 0,") && again.contains("removed 0"), "{opencode} then link/: {again}");
    }
    // And the absolute database, updated through relative paths, is unchanged.
    let relative_db = Path::new("..").join("absolute.duckdb");
    let again = layout.succeeds_in_work(&["index", "--opencode", "../data/oc dir ü", "--spans", "../data/spans", "--db", path_str(&relative_db)]);
    assert!(again.contains("indexed 0,") && again.contains("removed 0"), "{again}");
}

#[test]
fn rebuild_and_the_read_commands_take_relative_paths() {
    let layout = Layout::new();
    let reference = layout.reference_database();
    layout.succeeds_in_work(&["rebuild", "--opencode", "../data/oc dir ü/", "--spans", "../data/spans", "--db", "rebuilt.duckdb"]);
    assert_same_database(&layout.work().join("rebuilt.duckdb"), &reference, "rebuild");
    // No daemon listens on port 9 (discard): the read commands open the file.
    let no_daemon = ["--daemon", "127.0.0.1:9", "--json"];
    let read = |db: &str, command: &[&str]| -> serde_json::Value {
        let arguments: Vec<&str> = command.iter().copied().chain(["--db", db]).chain(no_daemon).collect();
        serde_json::from_str(&layout.succeeds_in_work(&arguments)).unwrap_or_else(|error| panic!("{command:?}: {error}"))
    };
    let absolute = path_str(&reference).to_owned();
    let root = rows(&reference, "SELECT id FROM sessions WHERE parent_id IS NULL ORDER BY id LIMIT 1")[0][0].clone();
    let commands: [&[&str]; 6] = [
        &["sessions"],
        &["session", root.as_str()],
        &["trace", root.as_str()],
        &["usage", "--by", "model"],
        &["sql", "SELECT count(*) AS files FROM file_index"],
        &["otel", "services"],
    ];
    for command in commands {
        let relative = read("../absolute.duckdb", command);
        assert_eq!(relative, read(&absolute, command), "{command:?}");
        assert_ne!(relative, serde_json::json!([]), "{command:?} read nothing");
    }
    let status = layout.succeeds_in_work(&["status", "--db", "rebuilt.duckdb", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["files_by_status"]["indexed"].as_i64().unwrap() >= 98, "{status}");
}

#[test]
fn a_daemon_started_with_relative_paths_stores_absolute_ones_and_equals_a_fresh_index() {
    let layout = Layout::new();
    std::fs::write(layout.work().join("test.toml"), "[http]\nsql_enabled = true\n").unwrap();
    let daemon =
        Daemon::start_in(&layout.work(), &["--opencode", "../data/oc dir ü/", "--spans", "link/spans", "--db", "live.duckdb", "--config", "test.toml"]);
    let stats = daemon.get_json("/api/stats");
    assert_eq!(stats["files_by_status"].get("error"), None, "{stats}");
    // A file created after the start is followed under the same root.
    let part = layout.opencode().join("storage/part/msg_relative0000000000000001/prt_relative01.json");
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    std::fs::write(&part, r#"{"id":"prt_relative01","sessionID":"ses_relative","messageID":"msg_relative0000000000000001","type":"text","text":"typed"}"#)
        .unwrap();
    wait_until("the new part is indexed", Duration::from_secs(20), || {
        daemon.scalar(&format!("SELECT count(*) FROM file_index WHERE file_path = '{}'", path_str(&part))) == 1
    });
    let outside = daemon.scalar(&format!("SELECT count(*) FROM file_index WHERE file_path NOT LIKE '{}/%'", layout.base.join("data").display()));
    assert_eq!(outside, 0, "every stored path is absolute and below the resolved roots");
    let (_, health) = daemon.get_with_status("/health/detailed");
    assert!(health["system"]["disk_free_bytes"].as_u64().is_some(), "a relative --db still finds its volume: {health}");
    assert_eq!(health["database"]["path"], path_str(&layout.work().join("live.duckdb")), "{health}");
    assert!(daemon.terminate().success());
    let fresh = layout.base.join("fresh.duckdb");
    let output = ducktail(&["index", "--opencode", path_str(&layout.opencode()), "--spans", path_str(&layout.spans()), "--db", path_str(&fresh)], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_same_database(&layout.work().join("live.duckdb"), &fresh, "run");
}

#[test]
fn home_in_a_config_file_and_a_relative_config_path_are_resolved() {
    let layout = Layout::new();
    let reference = layout.reference_database();
    std::fs::write(
        layout.work().join("paths.toml"),
        "[sources.opencode]\npath = \"~/data/oc dir ü\"\n[sources.spans]\npath = \"$HOME/data/spans/\"\n[database]\npath = \"~/from-config/d.duckdb\"\n",
    )
    .unwrap();
    layout.succeeds_in_work(&["index", "--config", "paths.toml"]);
    assert_same_database(&layout.base.join("from-config/d.duckdb"), &reference, "config with ~");
    // Relative paths in a config file are taken against the working directory, like flags.
    std::fs::write(layout.work().join("relative.toml"), "[sources.opencode]\npath = \"link/oc dir ü\"\n[database]\npath = \"rel.duckdb\"\n").unwrap();
    layout.succeeds_in_work(&["index", "--config", "./relative.toml"]);
    assert!(layout.work().join("rel.duckdb").is_file());
}

#[test]
fn a_command_that_fails_on_its_sources_creates_nothing() {
    let layout = Layout::new();
    let before = walkdir::WalkDir::new(&layout.base).into_iter().count();
    for arguments in [
        &["index", "--opencode", "missing", "--db", "new/d.duckdb"][..],
        &["index", "--opencode", "link/oc dir ü", "--spans", "no-spans", "--db", "new/d.duckdb"],
        &["run", "--opencode", "missing", "--db", "new/d.duckdb", "--listen", "127.0.0.1:0"],
        &["rebuild", "--opencode", "missing", "--db", "new/d.duckdb"],
        // No flags: the default folders under $HOME, where OpenCode was never run.
        &["index"],
        &["run", "--listen", "127.0.0.1:0"],
    ] {
        let output = layout.ducktail_in_work(arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{arguments:?}: {stderr}");
        assert!(stderr.contains("does not exist") || stderr.contains("holds neither"), "{arguments:?} names the problem: {stderr}");
        assert!(stderr.contains(&layout.base.display().to_string()), "{arguments:?} names the absolute path: {stderr}");
        assert_eq!(walkdir::WalkDir::new(&layout.base).into_iter().count(), before, "{arguments:?} created a file");
    }
    // A rebuild with a mistyped source keeps the database it would have deleted.
    let kept = layout.work().join("kept.duckdb");
    layout.succeeds_in_work(&["index", "--opencode", "link/oc dir ü", "--db", "kept.duckdb"]);
    let output = layout.ducktail_in_work(&["rebuild", "--opencode", "link/oc-typo", "--db", "kept.duckdb"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(scalar(&kept, "SELECT count(*) FROM sessions") > 0, "rebuild deleted the database before checking its sources");
}
