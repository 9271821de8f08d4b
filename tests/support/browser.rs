//! Where the browser tests and the page bench find Debian's Chromium and playwright-core, the
//! two things `.ci/run` installs for them, and how they run their Node.js drivers. Included by `#[path]` from `tests/e2e/dashboard.rs`
//! and `benches/page.rs`; a missing one fails with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Chromium: `$DUCKTAIL_CHROMIUM`, else Debian's.
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("DUCKTAIL_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(path.is_file(), "{} is missing: install Debian's chromium (`apt-get install chromium`; .ci/run does), or set DUCKTAIL_CHROMIUM", path.display());
    path
}

/// playwright-core: `$DUCKTAIL_PLAYWRIGHT`, else where .ci/run installs it.
pub fn playwright() -> PathBuf {
    let path = std::env::var_os("DUCKTAIL_PLAYWRIGHT")
        .map_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ducktail/node/node_modules/playwright-core"), PathBuf::from);
    assert!(
        path.join("package.json").is_file(),
        "{} is missing: `npm install --prefix ~/.cache/ducktail/node playwright-core@1` (.ci/run does), or set DUCKTAIL_PLAYWRIGHT",
        path.display()
    );
    path
}

/// What a Node.js driver under `tests/` or `benches/` reported: it is given `settings` as its one
/// argument and prints its report as the last JSON line; also whether it exited 0, and its stderr.
pub fn run_driver(driver: &Path, settings: &serde_json::Value) -> (serde_json::Value, bool, String) {
    let output = Command::new("node")
        .arg(driver)
        .arg(settings.to_string())
        .output()
        .unwrap_or_else(|error| panic!("cannot run node ({error}): the browser tests and the page bench need Node.js"));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr).into_owned());
    let report = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("{} printed no report:\n{stdout}\n{stderr}", driver.display()));
    (report, output.status.success(), stderr)
}
