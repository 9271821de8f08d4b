//! What a release says about itself: `ducktail --version` names the version, the commit and the
//! DuckDB inside, and the daemon's `/api/stats` and `/health/detailed` say the same.

use std::process::Command;

use crate::support::*;

#[test]
fn version_names_the_commit_and_duckdb_and_the_api_says_the_same() {
    let output = ducktail(&["--version"], None);
    assert!(output.status.success());
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let prefix = format!("ducktail {} (commit ", env!("CARGO_PKG_VERSION"));
    let rest = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let (commit, rest) = rest.split_once(", DuckDB ").unwrap_or_else(|| panic!("{line:?} names no DuckDB version"));
    let duckdb_version = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line:?}"));
    assert!(duckdb_version.starts_with('v') && duckdb_version[1..].split('.').count() == 3, "{duckdb_version:?} is DuckDB's vX.Y.Z");
    let head = Command::new("git").args(["rev-parse", "--short=10", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    match head {
        Ok(head) if head.status.success() => {
            let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
            assert!(commit == head || commit == format!("{head}-dirty"), "commit {commit:?}, HEAD {head}");
        }
        _ => assert_eq!(commit, "unknown"),
    }
    // -V is the same line.
    assert_eq!(String::from_utf8_lossy(&ducktail(&["-V"], None).stdout).trim(), line);

    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    std::fs::create_dir_all(opencode.join("storage")).unwrap();
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &test_config(dir.path(), ""));
    let expected = serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "commit": commit, "duckdb_version": duckdb_version });
    assert_eq!(daemon.get_json("/api/stats")["build"], expected);
    assert_eq!(daemon.get_with_status("/health/detailed").1["build"], expected);
}
