//! The exports, read back by systems that share no code with ducktail: Parquet files through
//! DuckDB's `read_parquet` and pyarrow (Python), OTLP traces through a real Arize Phoenix and
//! through a receiver that decodes the protobuf with the official OpenTelemetry types.
//!
//! The Python tools live in virtualenvs outside the clone (`.ci/run` makes them):
//! `$DUCKTAIL_PY_VENV` (default `~/.cache/ducktail/py-venv`: duckdb, pyarrow) and
//! `$DUCKTAIL_PHOENIX_VENV` (default `~/.cache/ducktail/phoenix-venv`: arize-phoenix). A missing
//! one fails the test with the command that makes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

use crate::support::{copy_tree, ducktail, isolate, path_str, rows, scalar, shared_fixtures, test_config, wait_until, Daemon, ISOLATED_ENVIRONMENT};

/// The interpreter of a test virtualenv, or a failure saying how to make it.
fn venv_python(variable: &str, default: &str, packages: &str) -> PathBuf {
    let venv = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").expect("HOME is set");
        Path::new(&home).join(".cache/ducktail").join(default)
    });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: these tests need it (`.ci/run` makes it; by hand: python3 -m venv {0} && {0}/bin/pip install {packages})",
        venv.display()
    );
    python
}

fn run_ok(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(output.status.success(), "{command:?} failed:\n{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ducktail ARGS` run from `working_dir`, as a user would, asserting success.
fn ducktail_in(working_dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new(crate::support::binary());
    command.current_dir(working_dir).args(args).env_remove("RUST_LOG");
    isolate(&mut command);
    run_ok(&mut command)
}

/// The export's files with their (inode, modification time): what a rewrite changes.
fn file_stamps(root: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|entry| entry.file_type().is_file() && entry.path().extension().is_some_and(|extension| extension == "parquet"))
        .map(|entry| {
            let metadata = entry.metadata().unwrap();
            (entry.path().strip_prefix(root).unwrap().to_owned(), (metadata.ino(), metadata.modified().unwrap()))
        })
        .collect()
}

const CHECKED_TABLES: [&str; 9] = ["projects", "sessions", "messages", "parts", "step_events", "file_diffs", "delegations", "agent_traces", "spans"];

/// What the Python readers see in the export, checked against the database.
fn assert_export_equals_tables(out: &Path, db: &Path) -> Value {
    let python = venv_python("DUCKTAIL_PY_VENV", "py-venv", "duckdb pyarrow");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/parquet_check.py");
    let seen: Value = serde_json::from_str(&run_ok(Command::new(python).arg(script).arg(out).args(CHECKED_TABLES))).unwrap();
    for table in CHECKED_TABLES {
        assert_eq!(seen["duckdb"]["rows"][table].as_i64().unwrap(), scalar(db, &format!("SELECT count(*) FROM {table}")), "rows of {table}");
    }
    let sessions = rows(db, "SELECT session_id, sum(tokens_input), sum(tokens_output), round(sum(cost), 9) FROM messages GROUP BY session_id");
    assert!(!sessions.is_empty());
    for row in &sessions {
        let exported = &seen["duckdb"]["sessions"][&row[0]];
        let number = |text: &str| text.parse::<f64>().unwrap_or(0.0);
        assert_eq!(exported[0].as_f64().unwrap(), number(&row[1]), "tokens_input of {}", row[0]);
        assert_eq!(exported[1].as_f64().unwrap(), number(&row[2]), "tokens_output of {}", row[0]);
        assert!((exported[2].as_f64().unwrap() - number(&row[3])).abs() < 1e-6, "cost of {}: {exported} vs {row:?}", row[0]);
    }
    seen
}

#[test]
fn parquet_export_reads_back_as_the_tables_and_a_second_run_rewrites_only_touched_days() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let opencode = shared_fixtures("opencode-json").join("generated-opencode-1.1.65");
    let claude = shared_fixtures("claude-code").join("dot-claude");
    let spans = shared_fixtures("otel-parquet");
    ducktail_in(work, &["index", "--opencode", path_str(&opencode), "--spans", path_str(&spans), "--db", "agents.duckdb"]);
    // A relative folder, from the user's working directory.
    ducktail_in(work, &["export", "parquet", "team-bucket", "--db", "agents.duckdb", "--machine", "ana@laptop"]);
    let out = work.join("team-bucket");
    let db = work.join("agents.duckdb");
    let seen = assert_export_equals_tables(&out, &db);
    assert_eq!(seen["duckdb"]["machines"], serde_json::json!(["ana@laptop"]));
    assert!(out.join("_ducktail/ana@laptop.json").is_file(), "the manifest sits beside the data");
    let before = file_stamps(&out);

    // Nothing changed: nothing is written.
    let again: Value =
        serde_json::from_str(&ducktail_in(work, &["export", "parquet", "team-bucket", "--db", "agents.duckdb", "--machine", "ana@laptop", "--json"])).unwrap();
    assert!(again["tables"].as_array().unwrap().iter().all(|table| table["days_written"] == 0), "{again}");
    assert_eq!(file_stamps(&out), before);

    // New sessions on a new day: only that day's partitions are written; the others keep their files.
    ducktail_in(work, &["index", "--opencode", path_str(&opencode), "--spans", path_str(&spans), "--claude", path_str(&claude), "--db", "agents.duckdb"]);
    let new_days: BTreeSet<String> =
        rows(&db, "SELECT DISTINCT CAST(CAST(CAST(created_at AS TIMESTAMP) AS DATE) AS VARCHAR) FROM sessions WHERE app = 'claude_code'")
            .into_iter()
            .map(|row| row[0].clone())
            .collect();
    let old_days: BTreeSet<String> =
        rows(&db, "SELECT DISTINCT CAST(CAST(CAST(created_at AS TIMESTAMP) AS DATE) AS VARCHAR) FROM sessions WHERE app = 'opencode'")
            .into_iter()
            .map(|row| row[0].clone())
            .collect();
    assert!(new_days.is_disjoint(&old_days), "the fixtures' days differ: {new_days:?} {old_days:?}");
    let report: Value =
        serde_json::from_str(&ducktail_in(work, &["export", "parquet", "team-bucket", "--db", "agents.duckdb", "--machine", "ana@laptop", "--json"])).unwrap();
    let messages = report["tables"].as_array().unwrap().iter().find(|table| table["table"] == "messages").unwrap();
    assert_eq!(messages["days_written"].as_u64().unwrap() as usize, new_days.len(), "{report}");
    let after = file_stamps(&out);
    for (path, stamp) in &before {
        assert_eq!(after.get(path), Some(stamp), "{} was rewritten though its day did not change", path.display());
    }
    let written: BTreeSet<&PathBuf> = after.keys().filter(|path| !before.contains_key(*path)).collect();
    assert!(!written.is_empty());
    for path in written {
        let day = path.components().nth(1).unwrap().as_os_str().to_string_lossy().trim_start_matches("date=").to_owned();
        assert!(new_days.contains(&day), "{} is not of a new day", path.display());
    }
    assert_export_equals_tables(&out, &db);
}

#[test]
fn parquet_export_names_a_bad_table_and_date() {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("d.duckdb");
    crate::support::index(&shared_fixtures("opencode-json").join("generated-opencode-1.1.65"), &db);
    let output = ducktail(&["export", "parquet", path_str(&scratch.path().join("out")), "--db", path_str(&db), "--tables", "mesages"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("unknown table \"mesages\"") && stderr.contains("messages"), "{stderr}");
    let output = ducktail(&["export", "parquet", path_str(&scratch.path().join("out")), "--db", path_str(&db), "--since", "7 days"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("YYYY-MM-DD"), "{stderr}");
}

/// A generated OpenCode tree with delegations two deep, plus the shared fixtures of every agent,
/// indexed into `work/agents.duckdb`.
fn index_every_agent(work: &Path) -> PathBuf {
    let tree = work.join("opencode");
    let output = ducktail(&["generate", "--out", path_str(&tree), "--files", "1500", "--seed", "11"], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    copy_tree(&shared_fixtures("opencode-json").join("generated-opencode-1.1.65/storage"), &tree.join("storage"));
    let claude = shared_fixtures("claude-code").join("dot-claude");
    let codex = shared_fixtures("codex").join("dot-codex");
    let db = work.join("agents.duckdb");
    ducktail_in(work, &["index", "--opencode", path_str(&tree), "--claude", path_str(&claude), "--codex", path_str(&codex), "--db", path_str(&db)]);
    let grandchildren = scalar(&db, "SELECT count(*) FROM sessions s JOIN sessions p ON s.parent_id = p.id WHERE p.parent_id IS NOT NULL");
    assert!(grandchildren > 0, "the generated tree has a delegation two deep");
    db
}

/// An Arize Phoenix server on loopback, with a throw-away working folder; stopped on drop.
struct Phoenix {
    child: Child,
    base_url: String,
    _home: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Phoenix {
    fn start() -> Phoenix {
        let python = venv_python("DUCKTAIL_PHOENIX_VENV", "phoenix-venv", "arize-phoenix==20.26.1");
        let home = tempfile::tempdir().unwrap();
        let (port, grpc_port) = (free_port(), free_port());
        let log = std::fs::File::create(home.path().join("phoenix.log")).unwrap();
        let child = Command::new(python)
            .args(["-m", "phoenix.server.main", "serve"])
            .current_dir(home.path())
            .env("PHOENIX_WORKING_DIR", home.path())
            .env("PHOENIX_SQL_DATABASE_URL", format!("sqlite:///{}/phoenix.db", home.path().display()))
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", port.to_string())
            .env("PHOENIX_GRPC_PORT", grpc_port.to_string())
            .env("PHOENIX_TELEMETRY_ENABLED", "false")
            .env("PHOENIX_ALLOW_EXTERNAL_RESOURCES", "false")
            .env("PHOENIX_DISABLE_AGENT_ASSISTANT", "true")
            .env("PHOENIX_ENABLE_MCP_SERVER", "false")
            .env("PHOENIX_LOG_MIGRATIONS", "false")
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start Phoenix");
        let phoenix = Phoenix { child, base_url: format!("http://127.0.0.1:{port}"), _home: home };
        wait_until("Phoenix answers /healthz", Duration::from_secs(120), || {
            ureq::get(&format!("{}/healthz", phoenix.base_url)).timeout(Duration::from_secs(2)).call().is_ok()
        });
        phoenix
    }

    /// Every span of the `default` project, as Phoenix's REST API returns them.
    fn spans(&self) -> Vec<Value> {
        let mut spans = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut request = ureq::get(&format!("{}/v1/projects/default/spans", self.base_url)).query("limit", "1000").timeout(Duration::from_secs(30));
            if let Some(cursor) = &cursor {
                request = request.query("cursor", cursor);
            }
            let page: Value = match request.call() {
                Ok(response) => response.into_json().unwrap(),
                Err(ureq::Error::Status(404, _)) => return spans,
                Err(error) => panic!("Phoenix spans: {error}"),
            };
            spans.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return spans,
            }
        }
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        // The whole process group (Phoenix starts workers of its own): politely, then not.
        let group = format!("-{}", self.child.id());
        for signal in ["TERM", "KILL"] {
            let _ = Command::new("kill").args(["-s", signal, "--", &group]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// How many tool calls lie between `span` and its trace's root.
fn delegation_depth<'a>(by_id: &HashMap<&str, &'a Value>, mut span: &'a Value) -> usize {
    let mut delegations = 0;
    while let Some(parent) = span["parent_id"].as_str() {
        span = by_id[parent];
        if span["attributes"]["gen_ai.operation.name"] == "execute_tool" {
            delegations += 1;
        }
    }
    delegations
}

fn attribute_i64(span: &Value, key: &str) -> i64 {
    span["attributes"][key].as_i64().unwrap_or(0)
}

#[test]
fn otlp_export_to_phoenix_follows_the_genai_conventions_and_sends_each_span_once() {
    let phoenix = Phoenix::start();
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let db = index_every_agent(work);
    let report: Value =
        serde_json::from_str(&ducktail_in(work, &["export", "otlp", "--endpoint", &phoenix.base_url, "--db", "agents.duckdb", "--json"])).unwrap();
    let sent = report["sent"].as_u64().unwrap() as usize;
    assert!(sent > 100 && report["not_final"] == 0, "{report}");
    assert_eq!(scalar(&db, "SELECT count(*) FROM otlp_sent") as usize, sent);
    // Phoenix inserts in the background.
    let mut spans = Vec::new();
    wait_until("Phoenix holds every span", Duration::from_secs(120), || {
        spans = phoenix.spans();
        spans.len() >= sent
    });
    assert_eq!(spans.len(), sent);

    // Names and kinds.
    let by_id: HashMap<&str, &Value> = spans.iter().map(|span| (span["context"]["span_id"].as_str().unwrap(), span)).collect();
    for span in &spans {
        let name = span["name"].as_str().unwrap();
        let operation = span["attributes"]["gen_ai.operation.name"].as_str().unwrap();
        assert!(name.starts_with(operation), "{name} is not named after {operation}");
        let kind = match operation {
            "invoke_agent" => "AGENT",
            "chat" => "LLM",
            "execute_tool" => "TOOL",
            other => panic!("unexpected operation {other}"),
        };
        assert_eq!(span["span_kind"], kind, "{span}");
        assert!(span["attributes"]["gen_ai.conversation.id"].is_string());
        // Parents: every parent was sent too, and the operations nest as the conventions say.
        match span["parent_id"].as_str() {
            None => assert_eq!(operation, "invoke_agent", "only agent turns are roots: {span}"),
            Some(parent) => {
                let parent = by_id.get(parent).unwrap_or_else(|| panic!("parent of {name} was not sent"));
                let parent_operation = parent["attributes"]["gen_ai.operation.name"].as_str().unwrap();
                let expected = match operation {
                    "chat" => "invoke_agent",
                    "execute_tool" => "chat",
                    _ => "execute_tool",
                };
                assert_eq!(parent_operation, expected, "{name} under {}", parent["name"]);
                assert_eq!(parent["context"]["trace_id"], span["context"]["trace_id"]);
            }
        }
        // Content stays home by default.
        assert!(span["attributes"].get("gen_ai.tool.call.arguments").is_none() && span["attributes"].get("gen_ai.input.messages").is_none());
    }
    // A delegation two deep: an agent turn three tool calls down from its trace's root.
    assert!(spans.iter().any(|span| delegation_depth(&by_id, span) >= 2), "a depth-2 delegation nests under its tool calls");

    // Tokens per session equal the database's.
    let mut exported: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    for span in spans.iter().filter(|span| span["attributes"]["gen_ai.operation.name"] == "chat") {
        let totals = exported.entry(span["attributes"]["gen_ai.conversation.id"].as_str().unwrap().to_owned()).or_default();
        let (cache_read, cache_write) =
            (attribute_i64(span, "gen_ai.usage.cache_read.input_tokens"), attribute_i64(span, "gen_ai.usage.cache_creation.input_tokens"));
        totals[0] += attribute_i64(span, "gen_ai.usage.input_tokens") - cache_read - cache_write;
        totals[1] += attribute_i64(span, "gen_ai.usage.output_tokens");
        totals[2] += cache_read;
        totals[3] += cache_write;
    }
    // The usage totals: finish steps (an OpenCode response of several steps has one per step).
    let stored: BTreeMap<String, [i64; 4]> = rows(
        &db,
        "SELECT session_id, sum(coalesce(tokens_input, 0)), sum(coalesce(tokens_output, 0)), sum(coalesce(tokens_cache_read, 0)), sum(coalesce(tokens_cache_write, 0))
         FROM step_events WHERE event_type = 'finish' GROUP BY session_id",
    )
    .into_iter()
    .map(|row| (row[0].clone(), [1, 2, 3, 4].map(|index| row[index].parse().unwrap())))
    .collect();
    assert_eq!(exported, stored, "per-session tokens in Phoenix equal the database's");
    let apps: BTreeSet<&str> = spans.iter().filter_map(|span| span["attributes"]["ducktail.app"].as_str()).collect();
    assert_eq!(apps, BTreeSet::from(["claude_code", "codex", "opencode"]));

    // A second export sends nothing.
    let again: Value =
        serde_json::from_str(&ducktail_in(work, &["export", "otlp", "--endpoint", &phoenix.base_url, "--db", "agents.duckdb", "--json"])).unwrap();
    assert_eq!((again["sent"].as_u64(), again["requests"].as_u64(), again["already_sent"].as_u64()), (Some(0), Some(0), Some(sent as u64)), "{again}");
}

/// An OTLP/HTTP receiver on loopback that decodes each request with the official protobuf types
/// and keeps every span id it was sent, duplicates included. It answers slowly enough
/// (`delay` per request) for a test to kill a sender mid-export.
struct Receiver {
    received: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(listener: TcpListener, delay: Duration) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || serve(stream, &sink, delay));
            }
        });
        Receiver { received }
    }

    fn span_ids(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// Answers the requests of one connection (keep-alive) until it closes.
fn serve(stream: TcpStream, sink: &Mutex<Vec<String>>, delay: Duration) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("a valid OTLP protobuf request");
        std::thread::sleep(delay);
        let ids: Vec<String> = request
            .resource_spans
            .iter()
            .flat_map(|resource| resource.scope_spans.iter())
            .flat_map(|scope| scope.spans.iter())
            .map(|span| span.span_id.iter().map(|byte| format!("{byte:02x}")).collect())
            .collect();
        sink.lock().unwrap().extend(ids);
        if writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

#[test]
fn live_otlp_export_rides_out_a_backend_outage_and_a_kill_9_and_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let tree = work.join("opencode");
    let output = ducktail(&["generate", "--out", path_str(&tree), "--files", "3000", "--seed", "5"], None);
    assert!(output.status.success());
    let db = work.join("live.duckdb");
    // The backend's port, with nothing listening yet: the backend is down.
    let port = free_port();
    let max_batch = 25;
    let config = test_config(
        work,
        &format!(
            "[export.otlp]\nenabled = true\nendpoint = \"http://127.0.0.1:{port}\"\ninterval = \"50ms\"\nmax_backoff = \"200ms\"\nmax_batch = {max_batch}\ntimeout = \"2s\"\n"
        ),
    );
    let daemon = Daemon::start(&tree, &db, &config);
    wait_until("the outage shows in health and metrics", Duration::from_secs(60), || {
        let (_, health) = daemon.get_with_status("/health/detailed");
        health["export"]["otlp"]["last_error"].is_string() && daemon.metrics_text().contains("ducktail_otlp_backend_failing 1")
    });
    let (status, health) = daemon.get_with_status("/health/detailed");
    assert_eq!(status, 503, "a failing backend degrades health: {health}");
    assert!(health["problems"].as_array().unwrap().iter().any(|problem| problem.as_str().unwrap().contains("OTLP backend")), "{health}");
    assert_eq!(daemon.get_status("/readyz"), Some(200), "indexing goes on meanwhile");

    // The backend comes up, slowly; the daemon is killed mid-export.
    let receiver = Receiver::start(TcpListener::bind(("127.0.0.1", port)).unwrap(), Duration::from_millis(20));
    wait_until("some spans arrived", Duration::from_secs(60), || receiver.span_ids().len() >= 4 * max_batch);
    let recorded_before_kill = daemon.scalar("SELECT count(*) FROM otlp_sent");
    daemon.kill();
    let received_at_kill = receiver.span_ids().len();
    assert!(recorded_before_kill > 0, "the kill fell mid-export");

    // Restarted, it resumes where it stopped.
    let daemon = Daemon::start(&tree, &db, &config);
    let expected = daemon.scalar(
        "SELECT (SELECT count(*) FROM messages WHERE role = 'assistant')
              + (SELECT count(*) FROM parts WHERE part_type = 'tool')
              + (SELECT count(*) FROM messages WHERE role = 'user')",
    ) as usize;
    wait_until("every span was recorded as sent", Duration::from_secs(180), || daemon.scalar("SELECT count(*) FROM otlp_sent") as usize == expected);
    let health = daemon.get_json("/health/detailed");
    assert_eq!(health["export"]["otlp"]["caught_up"], true, "{health}");
    daemon.terminate();

    let received = receiver.span_ids();
    let distinct: BTreeSet<&String> = received.iter().collect();
    let recorded: BTreeSet<String> = rows(&db, "SELECT span_id FROM otlp_sent").into_iter().map(|row| row[0].clone()).collect();
    assert_eq!(distinct.len(), expected, "every span arrived");
    assert!(recorded.iter().all(|id| distinct.contains(id)), "everything recorded was received");
    // Only what was acknowledged but not yet recorded when the process died is sent again.
    let duplicates = received.len() - distinct.len();
    assert!(duplicates <= max_batch, "{duplicates} spans sent twice (received {received_at_kill} before the kill)");
}

#[test]
fn an_otlp_config_that_cannot_work_is_refused_with_the_fix() {
    let scratch = tempfile::tempdir().unwrap();
    let config = test_config(scratch.path(), "[export.otlp]\nenabled = true\nprotocol = \"grpc\"\n");
    let db = scratch.path().join("d.duckdb");
    let opencode = shared_fixtures("opencode-json").join("generated-opencode-1.1.65");
    let mut command = Command::new(crate::support::binary());
    command.args(["run", "--listen", "127.0.0.1:0", "--opencode", path_str(&opencode), "--db", path_str(&db), "--config", path_str(&config)]);
    command.envs(ISOLATED_ENVIRONMENT);
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("http/protobuf") && stderr.contains("4318"), "{stderr}");
}
