//! Hostile files under a live daemon: FIFOs, symlinks (to a file outside the tree, in a loop),
//! a directory named like a file, odd and non-UTF-8 names, deep nesting, a 60 MB document, NUL
//! and truncated files, a file removed right after it appeared. The daemon must not block, crash
//! or lose a neighbour; each case ends as an `error` row, a skip by rule, or a correct row; and
//! the result equals what a fresh `index` of the same tree produces.

use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const MESSAGE: &str = "msg_hostile0000000000000000001";

fn part(id: &str, text: &str) -> String {
    format!(r#"{{"id":"{id}","sessionID":"ses_hostile","messageID":"{MESSAGE}","type":"text","text":"{text}"}}"#)
}

/// Peak resident memory of a process, in MiB (from /proc).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|line| line.starts_with("VmHWM:")).and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0) / 1024
}

fn write_hostile_files(dir: &Path, outside: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("mkfifo").arg(dir.join("prt_fifo.json")).status().expect("mkfifo");
    assert!(status.success());
    std::os::unix::fs::symlink(outside, dir.join("prt_symlink_out.json")).unwrap();
    std::os::unix::fs::symlink(dir.join("prt_loop.json"), dir.join("prt_loop.json")).unwrap();
    std::fs::create_dir_all(dir.join("prt_directory.json")).unwrap();
    std::fs::write(dir.join("prt_nul.json"), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join("prt_truncated.json"), &part("prt_truncated", "cut")[..30]).unwrap();
    std::fs::write(dir.join("prt_not_json.json"), "this is not JSON").unwrap();
    std::fs::write(dir.join("prt_wrong_types.json"), r#"{"id":42,"messageID":[],"type":"text"}"#).unwrap();
    std::fs::write(dir.join("prt_nested.json"), "[".repeat(100_000) + &"]".repeat(100_000)).unwrap();
    std::fs::write(dir.join("prt_huge.json"), part("prt_huge", &"x".repeat(60 * 1024 * 1024))).unwrap();
    // Invalid UTF-8 inside the text string (decoded lossily), not after the document.
    let with_marker = part("prt_bad_utf8", "ok MARK");
    let (before, after) = with_marker.split_once("MARK").unwrap();
    std::fs::write(dir.join("prt_bad_utf8.json"), [before.as_bytes(), &[0xff, 0xfe], after.as_bytes()].concat()).unwrap();
    std::fs::write(dir.join("prt with space 'quote\".json"), part("prt with space 'quote\\\"", "odd name")).unwrap();
    std::fs::write(dir.join("prt_new\nline.json"), part("prt_new\\nline", "newline in the name")).unwrap();
    let non_utf8 = std::ffi::OsString::from_vec([b"prt_".as_slice(), &[0xff], b".json"].concat());
    std::fs::write(dir.join(non_utf8), part("prt_non_utf8", "skipped")).unwrap();
    let fleeting = dir.join("prt_fleeting.json");
    std::fs::write(&fleeting, part("prt_fleeting", "gone at once")).unwrap();
    std::fs::remove_file(&fleeting).unwrap();
    for index in 0..20 {
        let id = format!("prt_neighbour_{index:02}");
        std::fs::write(dir.join(format!("{id}.json")), part(&id, "fine")).unwrap();
    }
}

#[test]
fn hostile_files_never_block_crash_or_cost_a_neighbour() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let generator = ducktail_generator::GeneratorConfig { seed: 41, target_files: 200, ..Default::default() };
    ducktail_generator::generate(&opencode, &generator).unwrap();
    let outside = dir.path().join("outside.json");
    std::fs::write(&outside, part("prt_outside", "must never be read")).unwrap();
    let db = dir.path().join("db.duckdb");
    let daemon = Daemon::start(&opencode, &db, &test_config(dir.path(), "[pipeline]\nsettle_ms = 200\n"));
    let hostile = opencode.join("storage/part").join(MESSAGE);
    write_hostile_files(&hostile, &outside);

    let huge_settled = || daemon.scalar("SELECT count(*) FROM parts WHERE id = 'prt_huge'") == 1;
    // Every valid file, whatever batch it lands in.
    wait_until("neighbours, odd names, bad UTF-8 and the huge part are indexed", Duration::from_secs(60), || {
        daemon.scalar("SELECT count(*) FROM parts WHERE id LIKE 'prt_neighbour_%'") == 20
            && daemon.scalar("SELECT count(*) FROM parts WHERE id = 'prt_bad_utf8' OR text IN ('odd name', 'newline in the name')") == 3
            && huge_settled()
    });
    let expected_errors = ["prt_nul.json", "prt_truncated.json", "prt_not_json.json", "prt_wrong_types.json", "prt_nested.json"];
    wait_until("bad files settle into errors", Duration::from_secs(60), || {
        daemon.scalar(&format!("SELECT count(*) FROM file_index WHERE status = 'error' AND file_path LIKE '%{MESSAGE}%'")) == expected_errors.len() as i64
    });
    let rows = daemon.sql(&format!("SELECT file_path, status FROM file_index WHERE file_path LIKE '%{MESSAGE}%' ORDER BY 1"));
    for name in expected_errors {
        assert!(rows.iter().any(|row| row[0].ends_with(name) && row[1] == "error"), "{name} is not an error row: {rows:?}");
    }
    // Skipped by rule: not regular files, or names that are not UTF-8; removed before read.
    for name in ["prt_fifo.json", "prt_symlink_out.json", "prt_loop.json", "prt_directory.json", "prt_fleeting.json", "prt_\u{fffd}.json"] {
        assert!(!rows.iter().any(|row| row[0].ends_with(name)), "{name} should have no file_index row: {rows:?}");
    }
    assert_eq!(daemon.scalar("SELECT count(*) FROM parts WHERE id = 'prt_outside'"), 0, "a symlink was followed");
    // Odd but valid names and invalid UTF-8 inside a string are indexed.
    assert_eq!(daemon.scalar("SELECT count(*) FROM parts WHERE text = 'odd name' OR text = 'newline in the name'"), 2);
    assert_eq!(daemon.scalar("SELECT count(*) FROM parts WHERE id = 'prt_bad_utf8'"), 1);
    // The 60 MB text is kept up to the cap and flagged.
    assert_eq!(daemon.sql("SELECT content_truncated FROM parts WHERE id = 'prt_huge'"), vec![vec!["true".to_owned()]]);
    let peak = peak_rss_mib(daemon.child.id());
    assert!(peak < 1_024, "the daemon's peak RSS reached {peak} MiB on a 60 MB file");
    // Still serving, and a new neighbour after all that is picked up.
    std::fs::write(hostile.join("prt_after.json"), part("prt_after", "later")).unwrap();
    wait_until("a later file", Duration::from_secs(30), || daemon.scalar("SELECT count(*) FROM parts WHERE id = 'prt_after'") == 1);
    assert!(daemon.terminate().success());

    // The FIFO must not block the one-shot indexer either, and both agree.
    let fresh = dir.path().join("fresh.duckdb");
    index(&opencode, &fresh);
    assert_same_snapshot(&snapshot(&db), &snapshot(&fresh));
}
