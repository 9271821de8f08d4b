//! Paths from users made absolute once, here at the edge, so the library crates only ever see
//! absolute, normalised paths.
//!
//! Why it matters: `file_index` keys files by their full path and the reconciler compares a scan
//! with it by those bytes, so a root given as `oc`, `./oc/` or `/home/me/oc` must become the same
//! path, or a run finds "every file removed" and a daemon reads `oc/storage/oc/storage/…`.
//!
//! The rules, for flags, config values and environment values alike:
//! - `~` and `~/…`, `$HOME` and `${HOME}` at the start are the home directory (config files write
//!   their defaults that way, and shells leave `--db=~/x` unexpanded);
//! - a relative path is taken against the working directory of the command;
//! - the longest part of the path that exists is resolved by the operating system (symlinks,
//!   `..` through a symlink), the rest lexically (`.` dropped, `..` pops, trailing `/` gone), so a
//!   database file that does not exist yet still gets a stable name.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// Turns paths as users type them into the absolute paths the program works on.
#[derive(Debug, Clone)]
pub struct PathResolver {
    /// What relative paths are relative to.
    working_dir: PathBuf,
    /// What `~` and `$HOME` stand for; `None` leaves them as typed (then relative to
    /// `working_dir`), which only happens without a `HOME`.
    home: Option<PathBuf>,
}

impl PathResolver {
    /// The process's working directory and `$HOME`.
    pub fn from_environment() -> std::io::Result<Self> {
        let working_dir = std::env::current_dir()?;
        let home = std::env::var_os("HOME").filter(|home| !home.is_empty()).map(PathBuf::from);
        Ok(Self::new(working_dir, home))
    }

    /// A resolver for an explicit working directory and home (tests).
    pub fn new(working_dir: PathBuf, home: Option<PathBuf>) -> Self {
        let home = home.map(|home| if home.is_absolute() { home } else { working_dir.join(home) });
        Self { working_dir, home }
    }

    /// The absolute form of `path`; an empty path stays empty (it means "not set" in settings).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.as_os_str().is_empty() {
            return PathBuf::new();
        }
        let expanded = self.expand_home(path);
        let absolute = if expanded.is_absolute() { expanded } else { self.working_dir.join(expanded) };
        resolve_existing_prefix(&absolute)
    }

    /// Resolves `path` in place; see [`PathResolver::resolve`].
    pub fn resolve_in_place(&self, path: &mut PathBuf) {
        *path = self.resolve(path);
    }

    fn expand_home(&self, path: &Path) -> PathBuf {
        let Some(home) = &self.home else { return path.to_owned() };
        let mut components = path.components();
        let Some(Component::Normal(first)) = components.next() else { return path.to_owned() };
        if [OsStr::new("~"), OsStr::new("$HOME"), OsStr::new("${HOME}")].contains(&first) {
            home.join(components.as_path())
        } else {
            path.to_owned()
        }
    }
}

/// Lets the operating system resolve the longest existing ancestor of `absolute` (symlinks,
/// `..`), and normalises the part below it lexically: nothing there exists, so no symlink can
/// change what `..` means.
fn resolve_existing_prefix(absolute: &Path) -> PathBuf {
    for ancestor in absolute.ancestors() {
        if let Ok(resolved) = std::fs::canonicalize(ancestor) {
            let rest = absolute.strip_prefix(ancestor).unwrap_or(Path::new(""));
            return normalise_lexically(&resolved.join(rest));
        }
    }
    normalise_lexically(absolute)
}

fn normalise_lexically(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver_in(dir: &Path) -> PathResolver {
        PathResolver::new(dir.to_owned(), Some(dir.join("home")))
    }

    #[test]
    fn relative_absolute_dotted_and_slashed_forms_give_one_path() {
        let scratch = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(scratch.path()).unwrap();
        std::fs::create_dir_all(base.join("work/oc/storage")).unwrap();
        let resolver = resolver_in(&base.join("work"));
        let expected = base.join("work/oc");
        for typed in ["oc", "oc/", "./oc", "./oc/", "oc/.", "oc/storage/..", "../work/oc"] {
            assert_eq!(resolver.resolve(Path::new(typed)), expected, "typed {typed:?}");
        }
        assert_eq!(resolver.resolve(&expected), expected);
        let dot = resolver.resolve(Path::new("."));
        assert_eq!(dot, base.join("work"));
    }

    #[test]
    fn a_file_that_does_not_exist_yet_gets_the_name_it_will_have() {
        let scratch = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(scratch.path()).unwrap();
        let resolver = resolver_in(&base);
        assert_eq!(resolver.resolve(Path::new("d.duckdb")), base.join("d.duckdb"));
        assert_eq!(resolver.resolve(Path::new("new/./sub/../d.duckdb")), base.join("new/d.duckdb"));
    }

    #[test]
    fn home_is_expanded_in_its_three_spellings_and_nowhere_else() {
        let scratch = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(scratch.path()).unwrap();
        let resolver = resolver_in(&base);
        for typed in ["~/oc", "$HOME/oc", "${HOME}/oc"] {
            assert_eq!(resolver.resolve(Path::new(typed)), base.join("home/oc"), "typed {typed:?}");
        }
        assert_eq!(resolver.resolve(Path::new("~")), base.join("home"));
        assert_eq!(resolver.resolve(Path::new("a/~/b")), base.join("a/~/b"));
        assert_eq!(resolver.resolve(Path::new("~other/b")), base.join("~other/b"));
        let without_home = PathResolver::new(base.clone(), None);
        assert_eq!(without_home.resolve(Path::new("~/oc")), base.join("~/oc"));
    }

    #[test]
    fn symlinked_roots_resolve_to_their_target() {
        let scratch = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(scratch.path()).unwrap();
        std::fs::create_dir_all(base.join("real/oc")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        let resolver = resolver_in(&base);
        assert_eq!(resolver.resolve(Path::new("link/oc")), base.join("real/oc"));
        assert_eq!(resolver.resolve(Path::new("link/oc/new.duckdb")), base.join("real/oc/new.duckdb"));
    }

    #[test]
    fn spaces_and_non_ascii_names_pass_through() {
        let scratch = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(scratch.path()).unwrap();
        std::fs::create_dir_all(base.join("mes données/oc ü")).unwrap();
        let resolver = resolver_in(&base);
        assert_eq!(resolver.resolve(Path::new("mes données/oc ü/")), base.join("mes données/oc ü"));
    }

    #[test]
    fn empty_means_unset_and_stays_empty() {
        let resolver = PathResolver::new(PathBuf::from("/tmp"), None);
        assert_eq!(resolver.resolve(Path::new("")), PathBuf::new());
    }
}
