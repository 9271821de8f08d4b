//! Tidy checks over the source tree: every Rust file opens with a `//!` doc saying what it is.

use std::path::Path;

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut missing = Vec::new();
    let mut checked = 0;
    for top in ["crates", "tests", "benches"] {
        for entry in walkdir::WalkDir::new(root.join(top)).into_iter().filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_none_or(|extension| extension != "rs") || path.components().any(|part| part.as_os_str() == "target") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            checked += 1;
            if !text.trim_start().starts_with("//!") {
                missing.push(path.strip_prefix(&root).unwrap_or(path).display().to_string());
            }
        }
    }
    assert!(checked > 20, "found only {checked} source files");
    assert!(missing.is_empty(), "these files lack a leading `//!` doc: {missing:#?}");
}

#[test]
fn the_project_speaks_of_itself_not_of_how_it_was_built() {
    // Assembled, so that this file does not match itself.
    let stop = ["st", "op"].concat();
    let phrases = [format!("this {stop}"), format!("previous {stop}"), format!("last {stop}")];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = Vec::new();
    let files = ["README.md", "CHANGELOG.md"].into_iter().map(|file| root.join(file)).chain(
        ["docs", "crates", "tests", "benches", "config"]
            .into_iter()
            .flat_map(|top| walkdir::WalkDir::new(root.join(top)).into_iter().filter_map(Result::ok).map(|entry| entry.into_path()))
            .filter(|path| path.extension().is_some_and(|extension| extension == "rs" || extension == "md" || extension == "toml" || extension == "sh")),
    );
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for (number, line) in text.to_lowercase().lines().enumerate() {
            let numbered = line.match_indices(&format!("{stop} ")).any(|(at, _)| {
                let before_is_word = line[..at].chars().next_back().is_some_and(char::is_alphanumeric);
                !before_is_word && line[at + stop.len() + 1..].starts_with(|next: char| next.is_ascii_digit())
            });
            if numbered || phrases.iter().any(|phrase| line.contains(phrase.as_str())) {
                found.push(format!("{}:{}: {}", path.strip_prefix(&root).unwrap_or(&path).display(), number + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "docs and code speak of the project, not of its work history: {found:#?}");
}
