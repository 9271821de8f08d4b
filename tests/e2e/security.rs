//! The HTTP server's safety rules end to end: read-only SQL that cannot write, attach, copy or
//! read files; the SQL API off by default; bearer tokens; no unauthenticated non-loopback bind.

use std::time::Duration;

use crate::support::*;

/// POSTs SQL and returns the status code and the body.
fn post_sql(base_url: &str, sql: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = ureq::post(&format!("{base_url}/api/sql")).timeout(Duration::from_secs(30));
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    match request.send_json(serde_json::json!({ "sql": sql })) {
        Ok(response) => (response.status(), response.into_json().unwrap()),
        Err(ureq::Error::Status(code, response)) => (code, response.into_json().unwrap_or(serde_json::Value::Null)),
        Err(error) => panic!("POST /api/sql: {error}"),
    }
}

#[test]
fn the_sql_api_reads_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    let generator = ducktail_generator::GeneratorConfig { seed: 31, target_files: 150, ..Default::default() };
    ducktail_generator::generate(&opencode, &generator).unwrap();
    let db = dir.path().join("db.duckdb");
    let daemon = Daemon::start(&opencode, &db, &test_config(dir.path(), ""));
    let sessions = daemon.scalar("SELECT count(*) FROM sessions");
    assert!(sessions > 0);
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, "secret").unwrap();
    let outside = outside.display().to_string();
    let refused = [
        "INSERT INTO sessions (id) VALUES ('ses_injected')".to_owned(),
        "DELETE FROM sessions".to_owned(),
        "UPDATE sessions SET title = 'x'".to_owned(),
        "DROP TABLE sessions".to_owned(),
        "CREATE TABLE stolen AS SELECT * FROM sessions".to_owned(),
        format!("ATTACH '{}' AS other", dir.path().join("other.duckdb").display()),
        format!("COPY sessions TO '{}'", dir.path().join("copy.csv").display()),
        format!("SELECT * FROM read_text('{outside}')"),
        format!("SELECT * FROM read_csv('{outside}')"),
        format!("SELECT * FROM read_json('{outside}')"),
        "SELECT 1; DROP TABLE sessions".to_owned(),
        "SELECT * FROM sessions) AS x; DELETE FROM sessions; SELECT (1".to_owned(),
        "SET enable_external_access = true".to_owned(),
        "PRAGMA enable_profiling".to_owned(),
        "INSTALL httpfs".to_owned(),
        "LOAD httpfs".to_owned(),
        "CALL checkpoint()".to_owned(),
    ];
    for sql in &refused {
        let (code, body) = post_sql(&daemon.base_url, sql, None);
        assert!((400..500).contains(&code), "{sql} was not refused: {code} {body}");
        assert!(body["error"].as_str().is_some_and(|error| !error.is_empty()), "{sql}: no error message in {body}");
        assert!(!body.to_string().contains("secret\""), "{sql} leaked the file's content: {body}");
    }
    assert_eq!(daemon.scalar("SELECT count(*) FROM sessions"), sessions, "nothing was written");
    assert_eq!(daemon.scalar("SELECT count(*) FROM sessions WHERE id = 'ses_injected'"), 0);
    assert!(!dir.path().join("copy.csv").exists() && !dir.path().join("other.duckdb").exists());
    // What is allowed still works, with its row cap.
    let (code, body) = post_sql(&daemon.base_url, "WITH t AS (SELECT id FROM sessions) SELECT count(*) FROM t", None);
    assert_eq!((code, body["rows"][0][0].as_i64()), (200, Some(sessions)));
    assert!(daemon.terminate().success());
}

#[test]
fn the_sql_api_is_off_by_default_and_tokens_guard_every_route_but_probes() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    std::fs::create_dir_all(opencode.join("storage")).unwrap();
    let config = dir.path().join("token.toml");
    std::fs::write(&config, "[http]\ntoken = \"s3cret-token\"\n").unwrap();
    let daemon = Daemon::start(&opencode, &dir.path().join("db.duckdb"), &config);
    assert_eq!(daemon.get_status("/livez"), Some(200));
    assert_eq!(daemon.get_status("/readyz"), Some(200));
    for route in ["/api/stats", "/metrics", "/health/detailed"] {
        assert_eq!(daemon.get_status(route), Some(401), "{route} without a token");
        let with_wrong = ureq::get(&format!("{}{route}", daemon.base_url)).set("Authorization", "Bearer wrong").call();
        assert!(matches!(with_wrong, Err(ureq::Error::Status(401, _))), "{route} with a wrong token");
        let with_token = ureq::get(&format!("{}{route}", daemon.base_url)).set("Authorization", "Bearer s3cret-token").call();
        assert!(with_token.is_ok(), "{route} with the token: {with_token:?}");
    }
    let (code, body) = post_sql(&daemon.base_url, "SELECT 1", Some("s3cret-token"));
    assert_eq!(code, 403, "the SQL API is off unless http.sql_enabled: {body}");
    assert!(body["error"].as_str().unwrap().contains("http.sql_enabled"));
    assert!(daemon.terminate().success());
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    std::fs::create_dir_all(opencode.join("storage")).unwrap();
    let db = dir.path().join("db.duckdb");
    let output = ducktail(&["run", "--opencode", path_str(&opencode), "--db", path_str(&db), "--listen", "0.0.0.0:0"], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("http.token") && stderr.contains("127.0.0.1"), "{stderr}");
}
