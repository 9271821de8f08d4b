//! The OTLP export on records made up for each case: turns, finality, nesting, ids, attributes,
//! the request as the official protobuf types decode it, and the endpoint and header rules.

use ducktail_store::{TraceMessage, TraceRecords, TraceSession, TraceToolCall};
use prost::Message;

use super::spans::{hex, AttributeValue};
use super::*;

const MINUTE_US: i64 = 60_000_000;

fn options(now_us: i64) -> BuildOptions {
    BuildOptions { now_us, idle_final_us: 10 * MINUTE_US, capture_content: false, max_content_bytes: 16 }
}

fn message(id: &str, session: &str, role: &str, at: i64, completed: Option<i64>, finish: Option<&str>) -> TraceMessage {
    TraceMessage {
        id: id.to_owned(),
        session_id: session.to_owned(),
        role: role.to_owned(),
        agent: Some("build".to_owned()),
        provider_id: Some("anthropic".to_owned()),
        model_id: Some("claude-sonnet-4-5".to_owned()),
        cost: Some(0.5),
        tokens: [10, 20, 3, 100, 7],
        finish_reason: finish.map(str::to_owned),
        created_us: Some(at),
        completed_us: completed,
        ..TraceMessage::default()
    }
}

fn tool(id: &str, session: &str, message: &str, status: &str, child: Option<&str>) -> TraceToolCall {
    TraceToolCall {
        id: id.to_owned(),
        session_id: session.to_owned(),
        message_id: message.to_owned(),
        tool_name: Some(if child.is_some() { "task" } else { "bash" }.to_owned()),
        status: Some(status.to_owned()),
        call_id: Some(format!("call_{id}")),
        child_session_id: child.map(str::to_owned),
        error: Some("secret output".to_owned()),
        started_us: Some(2),
        ended_us: Some(3),
        ..TraceToolCall::default()
    }
}

fn session(id: &str, parent: Option<&str>, last: i64) -> TraceSession {
    TraceSession {
        id: id.to_owned(),
        parent_id: parent.map(str::to_owned),
        app: Some("opencode".to_owned()),
        last_activity_us: Some(last),
        ..TraceSession::default()
    }
}

/// A root session with one finished turn that delegates to a child, which delegates to a
/// grandchild (depth 2).
fn delegating_tree() -> TraceRecords {
    TraceRecords {
        sessions: vec![session("ses_root", None, 10), session("ses_child", Some("ses_root"), 10), session("ses_grand", Some("ses_child"), 10)],
        messages: vec![
            message("msg_u1", "ses_root", "user", 1, None, None),
            message("msg_a1", "ses_root", "assistant", 2, Some(5), Some("tool-calls")),
            message("msg_a2", "ses_root", "assistant", 6, Some(8), Some("stop")),
            message("msg_cu", "ses_child", "user", 2, None, None),
            message("msg_ca", "ses_child", "assistant", 3, Some(4), Some("stop")),
            message("msg_gu", "ses_grand", "user", 3, None, None),
            message("msg_ga", "ses_grand", "assistant", 3, Some(4), Some("stop")),
        ],
        tool_calls: vec![
            tool("prt_task", "ses_root", "msg_a1", "completed", Some("ses_child")),
            tool("prt_task2", "ses_child", "msg_ca", "completed", Some("ses_grand")),
        ],
        sent: Default::default(),
    }
}

fn by_name<'a>(built: &'a BuiltSpans, name: &str) -> Vec<&'a AgentSpan> {
    built.spans.iter().filter(|span| span.name == name).collect()
}

#[test]
fn a_turn_is_a_trace_and_delegations_nest_at_any_depth() {
    let built = build_spans(&delegating_tree(), &options(20));
    assert_eq!(built.pending, 0);
    let turns = by_name(&built, "invoke_agent build");
    assert_eq!(turns.len(), 3, "{:#?}", built.spans.iter().map(|span| &span.name).collect::<Vec<_>>());
    let root_turn = turns.iter().find(|span| span.session_id == "ses_root").unwrap();
    assert_eq!(root_turn.parent_span_id, None);
    assert!(built.spans.iter().all(|span| span.trace_id == root_turn.trace_id), "one trace for the turn and everything it delegated");
    let task = built.spans.iter().find(|span| span.span_id == spans::span_id("execute_tool", "prt_task")).unwrap();
    assert_eq!(task.parent_span_id, Some(spans::span_id("chat", "msg_a1")));
    let child_turn = turns.iter().find(|span| span.session_id == "ses_child").unwrap();
    assert_eq!(child_turn.parent_span_id, Some(task.span_id));
    let grand_turn = turns.iter().find(|span| span.session_id == "ses_grand").unwrap();
    assert_eq!(grand_turn.parent_span_id, Some(spans::span_id("execute_tool", "prt_task2")));
    assert_eq!(by_name(&built, "chat claude-sonnet-4-5").len(), 4);
}

#[test]
fn ids_are_the_same_on_every_build() {
    let first = build_spans(&delegating_tree(), &options(20));
    let second = build_spans(&delegating_tree(), &options(20));
    assert_eq!(first.spans, second.spans);
    let mut ids: Vec<[u8; 8]> = first.spans.iter().map(|span| span.span_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), first.spans.len(), "span ids are unique");
}

#[test]
fn only_final_spans_are_built() {
    let mut records = delegating_tree();
    // The last response still streams, a tool call still runs: neither they nor their turn are final.
    records.messages.push(message("msg_u2", "ses_root", "user", 9, None, None));
    records.messages.push(message("msg_a3", "ses_root", "assistant", 10, None, None));
    records.tool_calls.push(tool("prt_run", "ses_root", "msg_a2", "running", None));
    let built = build_spans(&records, &options(11));
    assert!(built.spans.iter().all(|span| span.span_id != spans::span_id("chat", "msg_a3")));
    assert!(built.spans.iter().all(|span| span.span_id != spans::span_id("execute_tool", "prt_run")));
    // The first turn waits for its running tool call; the second for its response.
    assert!(built.spans.iter().all(|span| span.span_id != spans::span_id("invoke_agent", "msg_u1")));
    assert_eq!(built.pending, 4);
    // Idle long enough, the session is final as it stands: the interrupted call is an error.
    let built = build_spans(&records, &options(11 + 10 * MINUTE_US));
    assert_eq!(built.pending, 0);
    let interrupted = built.spans.iter().find(|span| span.span_id == spans::span_id("execute_tool", "prt_run")).unwrap();
    assert_eq!(interrupted.error.as_deref(), Some("running"));
}

#[test]
fn a_transcript_response_is_final_once_a_later_line_follows_it() {
    let mut records = TraceRecords {
        sessions: vec![TraceSession { app: Some("claude_code".to_owned()), ..session("ses_c", None, 5) }],
        messages: vec![message("msg_u", "ses_c", "user", 1, None, None), message("msg_a", "ses_c", "assistant", 2, Some(2), Some("end_turn"))],
        ..TraceRecords::default()
    };
    let built = build_spans(&records, &options(6));
    assert!(built.spans.is_empty() && built.pending == 2, "its usage may still grow: {:?}", built.spans);
    records.messages.push(message("msg_u2", "ses_c", "user", 7, None, None));
    let built = build_spans(&records, &options(8));
    assert_eq!(built.spans.len(), 2, "response and turn are final; the new prompt waits");
    assert_eq!(built.pending, 1);
    let built = build_spans(&records, &options(8 + 10 * MINUTE_US));
    assert_eq!((built.spans.len(), built.pending), (2, 0), "an unanswered prompt of an idle session makes no span");
}

#[test]
fn a_turn_waiting_for_tools_is_not_final_until_the_model_ends_it() {
    let records = TraceRecords {
        sessions: vec![session("ses_a", None, 5)],
        messages: vec![message("msg_u", "ses_a", "user", 1, None, None), message("msg_a", "ses_a", "assistant", 2, Some(3), Some("tool-calls"))],
        ..TraceRecords::default()
    };
    let built = build_spans(&records, &options(6));
    assert_eq!(built.pending, 1, "the next step of the turn may still come");
    assert_eq!(by_name(&built, "chat claude-sonnet-4-5").len(), 1, "the finished response is sent already");
}

#[test]
fn usage_follows_the_conventions_and_content_stays_home_unless_asked() {
    let built = build_spans(&delegating_tree(), &options(20));
    let chat = built.spans.iter().find(|span| span.span_id == spans::span_id("chat", "msg_a2")).unwrap();
    let attribute = |key: &str| chat.attributes.iter().find(|(name, _)| *name == key).map(|(_, value)| value.clone());
    assert_eq!(attribute(conventions::USAGE_INPUT_TOKENS), Some(AttributeValue::Int(10 + 100 + 7)), "input includes cache reads and writes");
    assert_eq!(attribute(conventions::USAGE_CACHE_READ_INPUT_TOKENS), Some(AttributeValue::Int(100)));
    assert_eq!(attribute(conventions::USAGE_OUTPUT_TOKENS), Some(AttributeValue::Int(20)));
    assert_eq!(attribute(conventions::COST_USD), Some(AttributeValue::Double(0.5)));
    assert_eq!(attribute(conventions::PROVIDER_NAME), Some(AttributeValue::Text("anthropic".to_owned())));
    let mut records = delegating_tree();
    records.tool_calls[0].status = Some("error".to_owned());
    records.tool_calls[0].input = Some("{\"command\":\"cat ~/.ssh/id_rsa\"}".to_owned());
    let hidden = build_spans(&records, &options(20));
    let text = format!("{:?}", hidden.spans);
    assert!(!text.contains("id_rsa") && !text.contains("secret output"), "no content without capture_content");
    let shown = build_spans(&records, &BuildOptions { capture_content: true, ..options(20) });
    let call = shown.spans.iter().find(|span| span.span_id == spans::span_id("execute_tool", "prt_task")).unwrap();
    assert!(call
        .attributes
        .iter()
        .any(|(key, value)| *key == conventions::TOOL_CALL_ARGUMENTS && *value == AttributeValue::Text("{\"command\":\"cat …".to_owned())));
}

#[test]
fn the_request_decodes_with_the_official_types() {
    let built = build_spans(&delegating_tree(), &options(20));
    let target = OtlpTarget {
        traces_url: "http://127.0.0.1:1/v1/traces".to_owned(),
        headers: Vec::new(),
        timeout: std::time::Duration::from_secs(1),
        service_name: "ducktail".to_owned(),
        machine: "ana@laptop".to_owned(),
        max_batch: 100,
    };
    let bytes = encode_request(&target, &built.spans).encode_to_vec();
    let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    let spans = &decoded.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), built.spans.len());
    assert!(spans.iter().all(|span| span.trace_id.len() == 16 && span.span_id.len() == 8 && span.end_time_unix_nano >= span.start_time_unix_nano));
    let roots = spans.iter().filter(|span| span.parent_span_id.is_empty()).count();
    assert_eq!(roots, 1);
    assert_eq!(hex(&spans[0].trace_id), built.spans[0].trace_hex());
}

#[test]
fn endpoints_and_headers_follow_the_specification() {
    let none = |_: &str| None;
    assert_eq!(traces_url("", none), "http://localhost:4318/v1/traces");
    assert_eq!(traces_url("http://collector:4318/", none), "http://collector:4318/v1/traces");
    let environment = |key: &str| (key == environment::ENDPOINT).then(|| "http://phoenix:6006".to_owned());
    assert_eq!(traces_url("", environment), "http://phoenix:6006/v1/traces");
    let traces = |key: &str| (key == environment::TRACES_ENDPOINT).then(|| "http://x/custom".to_owned());
    assert_eq!(traces_url("", traces), "http://x/custom", "the traces endpoint is used as is");
    assert_eq!(
        parse_headers("api-key=a%3Db, x-project-name = ducktail").unwrap(),
        vec![("api-key".to_owned(), "a=b".to_owned()), ("x-project-name".to_owned(), "ducktail".to_owned())]
    );
    assert!(parse_headers("novalue").is_err());
    assert!(check_protocol("grpc", none).is_err());
    assert!(check_protocol("", |_| Some("http/protobuf".to_owned())).is_ok());
}

#[test]
fn https_endpoints_are_spoken() {
    let target = OtlpTarget {
        traces_url: "https://127.0.0.1:9/v1/traces".to_owned(),
        headers: Vec::new(),
        timeout: std::time::Duration::from_secs(2),
        service_name: "ducktail".to_owned(),
        machine: "m".to_owned(),
        max_batch: 1,
    };
    let error = OtlpSender::new(target).send(&[]).unwrap_err().to_string();
    // Nothing listens there: the connection fails, not the lack of a TLS client.
    assert!(!error.contains("TLS backend") && error.contains("127.0.0.1:9"), "{error}");
}

/// Records what [`export_roots`] would record.
#[derive(Default)]
struct Recorded(Vec<String>);

impl SentLedger for Recorded {
    fn record(&mut self, spans: &[ducktail_store::SentSpan]) -> Result<(), String> {
        self.0.extend(spans.iter().map(|span| span.span_id.clone()));
        Ok(())
    }
}

#[test]
fn a_span_the_backend_refuses_for_good_is_skipped_alone_and_the_rest_is_sent() {
    use std::io::{BufRead, BufReader, Read, Write};
    // A backend answering 400 to any request holding the span named "chat refused".
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            loop {
                let (mut line, mut length) = (String::new(), 0usize);
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                let refused = request.resource_spans[0].scope_spans[0].spans.iter().any(|span| span.name == "chat refused");
                let status = if refused { "400 Bad Request" } else { "200 OK" };
                let _ = writer.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
            }
        }
    });
    let target = OtlpTarget {
        traces_url: url,
        headers: Vec::new(),
        timeout: std::time::Duration::from_secs(5),
        service_name: "ducktail".to_owned(),
        machine: "m".to_owned(),
        max_batch: 8,
    };
    let mut spans = build_spans(&delegating_tree(), &options(20)).spans;
    let total = spans.len();
    spans[3].name = "chat refused".to_owned();
    let (sender, mut ledger, mut report) = (OtlpSender::new(target), Recorded::default(), PassReport::default());
    for batch in spans.chunks(8) {
        send_or_split(batch, &sender, &mut ledger, &mut report).unwrap();
    }
    assert_eq!((report.sent, report.rejected), (total - 1, 1), "{report:?}");
    assert_eq!(ledger.0.len(), total, "the refused span is recorded too: it is not sent again and again");
}
