//! What this binary is: its version, the commit it was built from and the DuckDB inside it.

use ducktail_http::BuildInfo;

/// The version and commit, known at compile time.
pub fn short_version() -> String {
    format!("{} (commit {})", env!("CARGO_PKG_VERSION"), env!("DUCKTAIL_GIT_COMMIT"))
}

/// Version, commit and DuckDB version. Asking DuckDB opens an in-memory database, so this is
/// computed once per process, where it is needed.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: env!("DUCKTAIL_GIT_COMMIT").to_owned(),
        duckdb_version: ducktail_store::duckdb_version(),
    }
}

/// What `ducktail --version` prints after the program's name.
pub fn long_version(info: &BuildInfo) -> String {
    format!("{} (commit {}, DuckDB {})", info.version, info.commit, info.duckdb_version)
}
