//! `sessions`, `session`, `trace`, `usage`, `otel …` and `sql`: answered by a running daemon's HTTP API when
//! one answers (the database file is locked while it runs), else by the database opened
//! read-only. Both paths produce the API's JSON, so `--json` output is the same either way; the
//! default is a table for terminals.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use ducktail_pipeline::settings::Settings;
use ducktail_store::{Reader, SessionFilter, SessionSort, StoreError, UsageGroup};
use serde_json::{json, Value};

use crate::cli::ReadTarget;

/// How long to wait for a daemon's `/readyz` (reads) or `/livez` (exports) before using the
/// file instead.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a read asked of the daemon may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an export asked of the daemon may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3_600);

/// Where the answers come from.
pub enum Backend {
    /// A running daemon at this base URL, with the bearer token from the config (if any).
    Daemon { base_url: String, token: String },
    /// The database, opened read-only.
    Database(Reader),
}

impl Backend {
    /// Prefers the daemon at `--daemon` (else `http.listen`); falls back to the file.
    pub fn connect(settings: &Settings, target: &ReadTarget, database: &Path) -> Result<Backend> {
        let address = target.daemon.clone().unwrap_or_else(|| settings.http.listen.clone());
        let base_url = if address.starts_with("http://") || address.starts_with("https://") { address.clone() } else { format!("http://{address}") };
        if ureq::get(&format!("{base_url}/readyz")).timeout(PROBE_TIMEOUT).call().is_ok() {
            return Ok(Backend::Daemon { base_url, token: settings.http.token.clone() });
        }
        match Reader::open_read_only(database) {
            Ok(reader) => Ok(Backend::Database(reader)),
            Err(StoreError::Locked { .. }) => bail!(
                "database {} is locked by a running ducktail that does not answer at {address}; \
                 pass its address with --daemon ADDR",
                database.display()
            ),
            Err(error) => Err(error.into()),
        }
    }

    /// The daemon's base URL and token, if one is alive at `--daemon` (else `http.listen`),
    /// catching up or not: it holds the database either way.
    pub fn daemon_answering(settings: &Settings, target: &ReadTarget) -> Option<(String, String)> {
        let address = target.daemon.clone().unwrap_or_else(|| settings.http.listen.clone());
        let base_url = if address.starts_with("http://") || address.starts_with("https://") { address } else { format!("http://{address}") };
        ureq::get(&format!("{base_url}/livez")).timeout(PROBE_TIMEOUT).call().is_ok().then(|| (base_url, settings.http.token.clone()))
    }

    /// POST `body` to `path` of the daemon, as JSON; API errors become their message.
    pub fn post(base_url: &str, token: &str, path: &str, body: Value) -> Result<Value> {
        // An export of a large database takes minutes; the daemon answers when it is done.
        Backend::send(ureq::post(&format!("{base_url}{path}")).timeout(EXPORT_TIMEOUT), token, Some(body), base_url)
    }

    /// GET `path` with `query` from the daemon, as JSON; API errors become their message.
    fn get(base_url: &str, token: &str, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let mut request = ureq::get(&format!("{base_url}{path}"));
        for (key, value) in query {
            request = request.query(key, value);
        }
        Backend::send(request.timeout(READ_TIMEOUT), token, None, base_url)
    }

    /// Sends `request` (with `body` as JSON, if any) with the bearer token; API errors become
    /// their message.
    fn send(request: ureq::Request, token: &str, body: Option<Value>, base_url: &str) -> Result<Value> {
        let mut request = request;
        if !token.is_empty() {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        match response {
            Ok(response) => response.into_json().context("the daemon's answer is not JSON"),
            Err(ureq::Error::Status(code, response)) => {
                let body: Value = response.into_json().unwrap_or(Value::Null);
                Err(anyhow!("{} (HTTP {code})", body["error"].as_str().unwrap_or("the daemon refused the request")))
            }
            Err(error) => Err(anyhow!("cannot reach the daemon at {base_url}: {error}")),
        }
    }
}

fn instant(name: &str, text: Option<&String>) -> Result<Option<i64>> {
    text.map(|text| ducktail_http::parse_instant(name, text).map_err(|error| anyhow!(error))).transpose()
}

/// Arguments of `ducktail sessions`.
pub struct SessionsArgs {
    pub limit: usize,
    pub root_only: bool,
    pub q: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub project: Option<String>,
    pub app: Option<String>,
    pub model: Option<String>,
    pub agent: Option<String>,
    /// `created`, `updated`, `cost` or `tokens`.
    pub sort: String,
    pub ascending: bool,
}

/// `GET /api/sessions`, or the same from the file.
pub fn sessions(backend: &Backend, args: &SessionsArgs) -> Result<Value> {
    if !(1..=500).contains(&args.limit) {
        bail!("--limit must be between 1 and 500, got {}", args.limit);
    }
    match backend {
        Backend::Daemon { base_url, token } => {
            let order = if args.ascending { "asc" } else { "desc" };
            let mut query =
                vec![("limit", args.limit.to_string()), ("root_only", args.root_only.to_string()), ("sort", args.sort.clone()), ("order", order.to_owned())];
            let filters = [
                ("q", &args.q),
                ("since", &args.since),
                ("until", &args.until),
                ("project", &args.project),
                ("app", &args.app),
                ("model", &args.model),
                ("agent", &args.agent),
            ];
            for (key, value) in filters {
                if let Some(value) = value {
                    query.push((key, value.clone()));
                }
            }
            Backend::get(base_url, token, "/api/sessions", &query)
        }
        Backend::Database(reader) => {
            let filter = SessionFilter {
                since_us: instant("--since", args.since.as_ref())?,
                until_us: instant("--until", args.until.as_ref())?,
                project: args.project.clone(),
                root_only: args.root_only,
                title_contains: args.q.clone(),
                app: args.app.clone(),
                model: args.model.clone(),
                agent: args.agent.clone(),
                sort: SessionSort::parse(&args.sort).ok_or_else(|| anyhow!("--sort must be created, updated, cost or tokens, got {:?}", args.sort))?,
                ascending: args.ascending,
                limit: args.limit,
                after: None,
            };
            let page = reader.sessions(&filter)?;
            let next_cursor = page.next_cursor.map(|cursor| ducktail_http::session_cursor(&cursor, filter.sort, filter.ascending));
            Ok(json!({ "sessions": page.sessions, "next_cursor": next_cursor }))
        }
    }
}

/// `GET /api/sessions/{id}`, or the same from the file.
pub fn session(backend: &Backend, id: &str) -> Result<Value> {
    match backend {
        Backend::Daemon { base_url, token } => Backend::get(base_url, token, &format!("/api/sessions/{id}"), &[]),
        Backend::Database(reader) => Ok(serde_json::to_value(reader.session_summary(id)?.ok_or_else(|| anyhow!("no session {id:?}"))?)?),
    }
}

/// `GET /api/traces/{id}`, or the same from the file.
pub fn trace(backend: &Backend, id: &str) -> Result<Value> {
    match backend {
        Backend::Daemon { base_url, token } => Backend::get(base_url, token, &format!("/api/traces/{id}"), &[]),
        Backend::Database(reader) => Ok(serde_json::to_value(reader.trace_tree(id)?.ok_or_else(|| anyhow!("no trace for session {id:?}"))?)?),
    }
}

/// `GET /api/otel/services`, or the same from the file.
pub fn otel_services(backend: &Backend) -> Result<Value> {
    match backend {
        Backend::Daemon { base_url, token } => Backend::get(base_url, token, "/api/otel/services", &[]),
        Backend::Database(reader) => Ok(json!({ "services": reader.otel_services()? })),
    }
}

/// `GET /api/otel/traces`, or the same from the file.
pub fn otel_traces(backend: &Backend, service: Option<&String>, root_only: bool, since: Option<&String>, limit: usize) -> Result<Value> {
    if !(1..=10_000).contains(&limit) {
        bail!("--limit must be between 1 and 10000, got {limit}");
    }
    match backend {
        Backend::Daemon { base_url, token } => {
            let mut query = vec![("limit", limit.to_string()), ("root_only", root_only.to_string())];
            query.extend(service.map(|service| ("service", service.clone())));
            query.extend(since.map(|since| ("since", since.clone())));
            Backend::get(base_url, token, "/api/otel/traces", &query)
        }
        Backend::Database(reader) => {
            let filter = ducktail_store::OtelTraceFilter { service: service.cloned(), root_only, since_us: instant("--since", since)?, limit };
            Ok(json!({ "traces": reader.otel_traces(&filter)? }))
        }
    }
}

/// `GET /api/otel/traces/{id}`, or the same from the file.
pub fn otel_trace(backend: &Backend, id: &str) -> Result<Value> {
    match backend {
        Backend::Daemon { base_url, token } => Backend::get(base_url, token, &format!("/api/otel/traces/{id}"), &[]),
        Backend::Database(reader) => Ok(serde_json::to_value(reader.otel_trace(id)?.ok_or_else(|| anyhow!("no trace {id:?}"))?)?),
    }
}

/// `GET /api/usage`, or the same from the file.
pub fn usage(backend: &Backend, by: &str, since: Option<&String>, until: Option<&String>) -> Result<Value> {
    let groups = UsageGroup::parse_list(by)
        .ok_or_else(|| anyhow!("--by must be one or two of day, model, agent, project, app, comma-separated (day,model), got {by:?}"))?;
    match backend {
        Backend::Daemon { base_url, token } => {
            let mut query = vec![("group_by", by.to_owned())];
            query.extend(since.map(|since| ("since", since.clone())));
            query.extend(until.map(|until| ("until", until.clone())));
            Backend::get(base_url, token, "/api/usage", &query)
        }
        Backend::Database(reader) => {
            let rows = reader.usage_by(&groups, instant("--since", since)?, instant("--until", until)?)?;
            let total = ducktail_store::usage_total(&rows);
            Ok(json!({ "group_by": by, "rows": rows, "total": total }))
        }
    }
}

/// `POST /api/sql`, or the same from the file.
pub fn sql(backend: &Backend, sql: &str) -> Result<Value> {
    match backend {
        Backend::Daemon { base_url, token } => {
            Backend::send(ureq::post(&format!("{base_url}/api/sql")).timeout(READ_TIMEOUT), token, Some(json!({ "sql": sql })), base_url)
        }
        Backend::Database(reader) => {
            let rows = reader.query_json(sql, 1_000_000)?;
            Ok(json!({ "columns": rows.columns, "rows": rows.rows, "truncated": rows.truncated }))
        }
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn cost(value: &Value) -> String {
    format!("{:.4}", value.as_f64().unwrap_or(0.0))
}

/// A cost that leaves out `unpriced` responses (models without a price): a lower bound, or
/// "unpriced" when nothing was priced, as the dashboard shows it.
fn cost_leaving_out(value: &Value, unpriced: &Value) -> String {
    match (value.as_f64().unwrap_or(0.0), unpriced.as_i64().unwrap_or(0)) {
        (_, 0) => cost(value),
        (0.0, _) => "unpriced".to_owned(),
        (_, _) => format!(">= {}", cost(value)),
    }
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(header.to_vec());
    table
}

fn short(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(width - 1).collect::<String>())
    }
}

/// Prints `value` as JSON or as `render` draws it.
pub fn print(value: &Value, as_json: bool, render: fn(&Value) -> String) -> Result<()> {
    use std::io::Write;
    let text = if as_json { serde_json::to_string_pretty(value)? } else { render(value) };
    match writeln!(std::io::stdout(), "{text}") {
        // The reader went away (`| head`): that is not an error of ours.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Sessions as a table.
pub fn render_sessions(value: &Value) -> String {
    let mut out = table(&["session", "created", "title", "msgs", "tools", "errors", "input", "output", "cache read", "cost $"]);
    for session in value["sessions"].as_array().into_iter().flatten() {
        let usage = &session["usage"];
        out.add_row(vec![
            cell(&session["id"]),
            cell(&session["created_at"]).replace('T', " ").chars().take(19).collect(),
            short(&cell(&session["title"]), 40),
            cell(&session["messages"]),
            cell(&session["tool_calls"]),
            cell(&session["errors"]),
            cell(&usage["input"]),
            cell(&usage["output"]),
            cell(&usage["cache_read"]),
            cost_leaving_out(&usage["cost"], &session["unpriced_steps"]),
        ]);
    }
    out.to_string()
}

/// A session summary as a few tables.
pub fn render_session(value: &Value) -> String {
    let session = &value["session"];
    let usage = &session["usage"];
    let mut text = format!(
        "{}  {}\ncreated {}  messages {}  tool calls {}  errors {}\ntokens: input {}  output {}  reasoning {}  cache read {}  cache write {}  cost ${}\n",
        cell(&session["id"]),
        cell(&session["title"]),
        cell(&session["created_at"]),
        cell(&session["messages"]),
        cell(&session["tool_calls"]),
        cell(&session["errors"]),
        cell(&usage["input"]),
        cell(&usage["output"]),
        cell(&usage["reasoning"]),
        cell(&usage["cache_read"]),
        cell(&usage["cache_write"]),
        cost(&usage["cost"]),
    );
    for (title, key) in [("model", "by_model"), ("agent", "by_agent")] {
        let mut out = table(&[title, "steps", "input", "output", "cache read", "cost $"]);
        for row in value[key].as_array().into_iter().flatten() {
            let usage = &row["usage"];
            out.add_row(vec![
                cell(&row["key"]),
                cell(&row["steps"]),
                cell(&usage["input"]),
                cell(&usage["output"]),
                cell(&usage["cache_read"]),
                cost(&usage["cost"]),
            ]);
        }
        text.push_str(&format!("{out}\n"));
    }
    let mut tools = table(&["tool", "calls", "errors", "p50 ms", "p95 ms"]);
    for row in value["tools"].as_array().into_iter().flatten() {
        tools.add_row(vec![cell(&row["tool"]), cell(&row["calls"]), cell(&row["errors"]), cell(&row["p50_ms"]), cell(&row["p95_ms"])]);
    }
    text.push_str(&format!("{tools}\n"));
    for (operation, files) in value["files"].as_object().into_iter().flatten() {
        text.push_str(&format!("{operation}: {} file(s)\n", files.as_array().map_or(0, Vec::len)));
    }
    let diff = &value["diff"];
    text.push_str(&format!("diff: {} file(s) +{} -{}\n", cell(&diff["files"]), cell(&diff["additions"]), cell(&diff["deletions"])));
    let children: Vec<String> = value["children"].as_array().into_iter().flatten().map(cell).collect();
    text.push_str(&format!("children: {}", if children.is_empty() { "none".to_owned() } else { children.join(", ") }));
    text
}

/// A trace tree, indented.
pub fn render_trace(value: &Value) -> String {
    fn walk(node: &Value, depth: usize, out: &mut String) {
        let seconds = node["duration_ms"].as_i64().map_or_else(String::new, |ms| format!(", {:.1} s", ms as f64 / 1_000.0));
        out.push_str(&format!(
            "{}{} [{}{}] {}  own {} in / {} out ${}  total {} in / {} out ${}\n",
            "  ".repeat(depth),
            cell(&node["agent"]),
            cell(&node["status"]),
            seconds,
            cell(&node["session_id"]),
            cell(&node["own"]["input"]),
            cell(&node["own"]["output"]),
            cost(&node["own"]["cost"]),
            cell(&node["cumulative"]["input"]),
            cell(&node["cumulative"]["output"]),
            cost(&node["cumulative"]["cost"]),
        ));
        for child in node["children"].as_array().into_iter().flatten() {
            walk(child, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(value, 0, &mut out);
    out.trim_end().to_owned()
}

/// Services as a table.
pub fn render_otel_services(value: &Value) -> String {
    let mut out = table(&["service", "spans", "traces", "errors", "first seen", "last seen"]);
    for service in value["services"].as_array().into_iter().flatten() {
        out.add_row(["service_name", "span_count", "trace_count", "error_count", "first_seen", "last_seen"].map(|key| cell(&service[key])));
    }
    out.to_string()
}

/// Traces as a table.
pub fn render_otel_traces(value: &Value) -> String {
    let mut out = table(&["trace", "start", "root service", "root span", "spans", "errors", "services", "orphans", "ms"]);
    for trace in value["traces"].as_array().into_iter().flatten() {
        let millis = trace["duration_ns"].as_i64().map_or_else(String::new, |ns| format!("{:.1}", ns as f64 / 1e6));
        out.add_row(vec![
            cell(&trace["trace_id"]),
            cell(&trace["start_time"]),
            cell(&trace["root_service"]),
            short(&cell(&trace["root_name"]), 40),
            cell(&trace["span_count"]),
            cell(&trace["error_count"]),
            cell(&trace["service_count"]),
            cell(&trace["orphan_count"]),
            millis,
        ]);
    }
    out.to_string()
}

/// One trace as an indented span tree.
pub fn render_otel_trace(value: &Value) -> String {
    fn walk(node: &Value, depth: usize, out: &mut String) {
        let millis = node["duration_ns"].as_i64().map_or(0.0, |ns| ns as f64 / 1e6);
        let orphan = if node["orphan"] == Value::Bool(true) { "  (orphan: parent not indexed)" } else { "" };
        out.push_str(&format!(
            "{}{} {} [{} {}] {:.1} ms{}\n",
            "  ".repeat(depth),
            cell(&node["service_name"]),
            cell(&node["name"]),
            cell(&node["kind"]),
            cell(&node["status"]),
            millis,
            orphan
        ));
        for child in node["children"].as_array().into_iter().flatten() {
            walk(child, depth + 1, out);
        }
    }
    let trace = &value["trace"];
    let mut out = format!(
        "trace {}  {} spans, {} errors, {} services, {} orphans\n",
        cell(&trace["trace_id"]),
        cell(&trace["span_count"]),
        cell(&trace["error_count"]),
        cell(&trace["service_count"]),
        cell(&trace["orphan_count"])
    );
    for node in value["spans"].as_array().into_iter().flatten() {
        walk(node, 0, &mut out);
    }
    out.trim_end().to_owned()
}

/// Usage rows as a table.
pub fn render_usage(value: &Value) -> String {
    let mut out = table(&[value["group_by"].as_str().unwrap_or("key"), "sessions", "steps", "input", "output", "reasoning", "cache read", "cost $"]);
    for row in value["rows"].as_array().into_iter().flatten() {
        let usage = &row["usage"];
        out.add_row(vec![
            cell(&row["key"]),
            cell(&row["sessions"]),
            cell(&row["steps"]),
            cell(&usage["input"]),
            cell(&usage["output"]),
            cell(&usage["reasoning"]),
            cell(&usage["cache_read"]),
            cost_leaving_out(&usage["cost"], &row["unpriced_steps"]),
        ]);
    }
    out.to_string()
}

/// SQL rows as a table.
pub fn render_sql(value: &Value) -> String {
    let columns: Vec<&str> = value["columns"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let mut out = table(&columns);
    for row in value["rows"].as_array().into_iter().flatten() {
        out.add_row(row.as_array().into_iter().flatten().map(cell).collect::<Vec<_>>());
    }
    let mut text = out.to_string();
    if value["truncated"] == Value::Bool(true) {
        text.push_str("\n(more rows exist; add LIMIT or narrow the query)");
    }
    text
}
