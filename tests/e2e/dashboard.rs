//! The web dashboard in a real browser: Debian's Chromium, headless, driven through
//! playwright-core (`tests/e2e/browser/dashboard.cjs`) against a real `ducktail run` with
//! `http.token` set, reading OpenCode, Claude Code and Codex sessions. The page asks for the token
//! and keeps it in an HttpOnly cookie; its figures equal the API's; each session row names its
//! agent app, and the app filter and the usage by app show what the API answers; a session's
//! waterfall totals equal `/api/traces/{id}`; a hostile title is text; files copied into the
//! watched tree show within 5 s without a reload; no console error and no request to another
//! origin. A missing browser or driver fails the test with the fix.

use std::path::Path;

use crate::support::*;

const HOSTILE_TITLE: &str = "<img src=x onerror=alert(1)>";

#[path = "../support/browser.rs"]
mod browser;
use browser::{chromium, playwright};

/// A session file whose title is markup, beside the fixture's sessions.
fn write_hostile_session(storage: &Path) {
    let folder = std::fs::read_dir(storage.join("session")).unwrap().next().unwrap().unwrap().path();
    let project = folder.file_name().unwrap().to_str().unwrap().to_owned();
    let id = "ses_dfe700000ffeHostileTitle00";
    let session = serde_json::json!({
        "id": id, "slug": "hostile", "version": "1.1.65", "projectID": project, "directory": "/home/dev/work",
        "title": HOSTILE_TITLE, "time": { "created": 1795322242117u64, "updated": 1795322242596u64 }
    });
    std::fs::write(folder.join(format!("{id}.json")), session.to_string()).unwrap();
}

#[test]
fn the_dashboard_shows_the_apis_figures_live_in_a_real_browser() {
    let (chromium, playwright) = (chromium(), playwright());
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    copy_tree(&shared_opencode_fixtures().join("generated-opencode-1.1.65"), &opencode);
    write_hostile_session(&opencode.join("storage"));
    let token = "dashboard-test-token";
    let config = dir.path().join("dashboard.toml");
    std::fs::write(&config, format!("[http]\nsql_enabled = true\ntoken = \"{token}\"\n")).unwrap();
    let spans = shared_fixtures("otel-parquet");
    // The test environment points CLAUDE_CONFIG_DIR and CODEX_HOME nowhere: only these flags bring
    // the other two agents' sessions in.
    let (claude, codex) = (shared_fixtures("claude-code/dot-claude"), shared_fixtures("codex/dot-codex"));
    let daemon = Daemon::start_in(
        Path::new("."),
        &[
            "--opencode",
            path_str(&opencode),
            "--claude",
            path_str(&claude),
            "--codex",
            path_str(&codex),
            "--db",
            path_str(&dir.path().join("db.duckdb")),
            "--config",
            path_str(&config),
            "--spans",
            path_str(&spans),
        ],
    );
    let sql = "SELECT t.session_id FROM agent_traces t WHERE t.parent_trace_id IS NULL \
               AND EXISTS (SELECT 1 FROM agent_traces c WHERE c.parent_trace_id = t.trace_id) ORDER BY 1 LIMIT 1";
    let answer: serde_json::Value = ureq::post(&format!("{}/api/sql", daemon.base_url))
        .set("Authorization", &format!("Bearer {token}"))
        .send_json(serde_json::json!({ "sql": sql }))
        .expect("the SQL API answers")
        .into_json()
        .unwrap();
    let root_session = answer["rows"][0][0].as_str().unwrap_or_else(|| panic!("a root session with sub-agents: {answer}")).to_owned();
    let screenshots = std::env::var("DUCKTAIL_SCREENSHOTS").unwrap_or_default();
    let settings = serde_json::json!({
        "base_url": daemon.base_url,
        "token": token,
        "chromium": chromium,
        "playwright": playwright,
        "storage": opencode.join("storage"),
        "live_source": shared_opencode_fixtures().join("Anshgrag__amazon-tools-dashboard/storage"),
        "root_session": root_session,
        "hostile_title": HOSTILE_TITLE,
        "screenshots": screenshots,
    });
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/browser/dashboard.cjs");
    let (report, exited_0, stderr) = browser::run_driver(&driver, &settings);
    let failures = report["failures"].as_array().unwrap();
    assert!(failures.is_empty() && exited_0, "dashboard checks failed: {failures:#?}\nstderr: {stderr}");
    assert!(report["checks"].as_array().unwrap().len() >= 20, "too few checks ran: {report}");
    assert!(daemon.terminate().success());
}
