//! Records the git commit the binary is built from, for `ducktail --version`, `/api/stats` and
//! `/health/detailed`. Outside a git checkout (a source tarball) the commit is `unknown`.

use std::path::Path;
use std::process::Command;

fn git(arguments: &[&str]) -> Option<String> {
    let output = Command::new("git").args(arguments).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()).filter(|text| !text.is_empty())
}

fn main() {
    let commit = match git(&["rev-parse", "--short=10", "HEAD"]) {
        Some(commit) => {
            // Tracked files changed since the commit: the binary is not that commit.
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        None => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=DUCKTAIL_GIT_COMMIT={commit}");
    // Run again when HEAD moves (a commit, a checkout) or a tracked source changes (dirtiness);
    // a change under crates/ recompiles this crate anyway.
    // Only files that exist: cargo takes a missing one as changed and would rerun this script,
    // and rebuild the binary, on every build.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = Path::new(&git_dir);
        let reference = git(&["symbolic-ref", "-q", "HEAD"]);
        let watched = ["HEAD", "index", "packed-refs"].into_iter().map(|file| git_dir.join(file)).chain(reference.map(|reference| git_dir.join(reference)));
        for file in watched.filter(|file| file.exists()) {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    println!("cargo:rerun-if-changed=../../crates");
}
