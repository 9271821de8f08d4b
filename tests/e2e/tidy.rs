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
