//! Where the browser tests and the page bench find Debian's Chromium and playwright-core, the
//! two things `.ci/run` installs for them. Included by `#[path]` from `tests/e2e/dashboard.rs`
//! and `benches/page.rs`; a missing one fails with the command that installs it.

use std::path::PathBuf;

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
