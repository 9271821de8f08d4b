//! The OTLP trace export: agent sessions as OpenTelemetry GenAI traces, sent over OTLP/HTTP
//! (protobuf), each span once.
//!
//! One code path for live export and backfill: [`export_roots`] reads the session trees under
//! some root sessions, builds their final spans ([`spans::build_spans`]), drops those the
//! database records as sent, sends the rest in batches, and records each batch through a
//! [`SentLedger`] once the backend acknowledged it. A crash between the acknowledgement and the
//! record re-sends that one batch, with the same ids (a backend that deduplicates by span id,
//! as Phoenix does, keeps one copy).

pub mod conventions;
pub mod spans;

use std::time::Duration;

use ducktail_store::{Reader, SentSpan};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

pub use spans::{build_spans, AgentSpan, BuildOptions, BuiltSpans};

/// Where and how spans are sent.
#[derive(Debug, Clone)]
pub struct OtlpTarget {
    /// The full URL spans are POSTed to (`…/v1/traces`).
    pub traces_url: String,
    /// Extra request headers (authentication, a backend's project).
    pub headers: Vec<(String, String)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// `service.name` of the resource.
    pub service_name: String,
    /// `host.name` of the resource.
    pub machine: String,
    /// Most spans per request.
    pub max_batch: usize,
}

/// The environment variables the target honours, as the OpenTelemetry specification names them.
pub mod environment {
    /// Base endpoint; `/v1/traces` is appended.
    pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// The traces URL, used as is.
    pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    /// `key=value,key=value` headers.
    pub const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    /// Traces-only headers, added after the general ones.
    pub const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    /// Timeout in milliseconds.
    pub const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    /// Traces-only timeout in milliseconds.
    pub const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    /// Protocol; only `http/protobuf` is spoken.
    pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// Traces-only protocol.
    pub const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
}

/// The OTLP/HTTP default endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// Why a configuration or a send failed.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// A protocol other than OTLP/HTTP with protobuf.
    #[error("OTLP protocol {0:?} is not supported; set protocol = \"http/protobuf\" (or OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf) and point the endpoint at the backend's OTLP/HTTP port (usually 4318)")]
    Protocol(String),
    /// A header entry that is not `key=value`.
    #[error("OTLP header {0:?} is not key=value")]
    Header(String),
    /// The backend could not be reached or refused the spans.
    #[error("OTLP backend {url}: {detail}")]
    Send {
        /// The URL.
        url: String,
        /// The HTTP status, when the backend answered.
        status: Option<u16>,
        /// What happened.
        detail: String,
    },
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] ducktail_store::StoreError),
    /// What was sent could not be recorded.
    #[error("recording the spans sent: {0}")]
    Ledger(String),
}

/// Parses `key=value,key=value` (values percent-decoded, as the specification says).
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, OtlpError> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (key, value) = entry.split_once('=').ok_or_else(|| OtlpError::Header(entry.to_owned()))?;
            Ok((key.trim().to_owned(), percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy().into_owned()))
        })
        .collect()
}

/// The traces URL from a configured endpoint (empty: the environment, then the default).
pub fn traces_url(configured: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    if !configured.is_empty() {
        return with_traces_path(configured);
    }
    if let Some(url) = lookup(environment::TRACES_ENDPOINT).filter(|url| !url.is_empty()) {
        return url;
    }
    with_traces_path(&lookup(environment::ENDPOINT).filter(|url| !url.is_empty()).unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()))
}

/// `endpoint` with `/v1/traces` appended, unless it already ends so.
fn with_traces_path(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// Checks the protocol: configured, else the environment's; only `http/protobuf`.
pub fn check_protocol(configured: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<(), OtlpError> {
    let protocol = if configured.is_empty() {
        lookup(environment::TRACES_PROTOCOL).or_else(|| lookup(environment::PROTOCOL)).unwrap_or_default()
    } else {
        configured.to_owned()
    };
    match protocol.as_str() {
        "" | "http/protobuf" => Ok(()),
        other => Err(OtlpError::Protocol(other.to_owned())),
    }
}

fn text_value(value: &spans::AttributeValue) -> AnyValue {
    use spans::AttributeValue::*;
    let value = match value {
        Text(text) => any_value::Value::StringValue(text.clone()),
        Int(number) => any_value::Value::IntValue(*number),
        Double(number) => any_value::Value::DoubleValue(*number),
        TextList(list) => any_value::Value::ArrayValue(ArrayValue {
            values: list.iter().map(|text| AnyValue { value: Some(any_value::Value::StringValue(text.clone())) }).collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

fn key_value(key: &str, value: &spans::AttributeValue) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(text_value(value)), ..Default::default() }
}

/// The protobuf request for `spans`.
pub fn encode_request(target: &OtlpTarget, spans: &[AgentSpan]) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![
            key_value(conventions::SERVICE_NAME, &spans::AttributeValue::Text(target.service_name.clone())),
            key_value(conventions::HOST_NAME, &spans::AttributeValue::Text(target.machine.clone())),
        ],
        ..Default::default()
    };
    let spans = spans
        .iter()
        .map(|agent_span| Span {
            trace_id: agent_span.trace_id.to_vec(),
            span_id: agent_span.span_id.to_vec(),
            parent_span_id: agent_span.parent_span_id.map(|parent| parent.to_vec()).unwrap_or_default(),
            name: agent_span.name.clone(),
            kind: match agent_span.kind {
                spans::Kind::Internal => span::SpanKind::Internal as i32,
                spans::Kind::Client => span::SpanKind::Client as i32,
            },
            start_time_unix_nano: agent_span.start_ns,
            end_time_unix_nano: agent_span.end_ns,
            attributes: agent_span.attributes.iter().map(|(key, value)| key_value(key, value)).collect(),
            status: Some(match &agent_span.error {
                Some(message) => Status { code: status::StatusCode::Error as i32, message: message.clone() },
                None => Status::default(),
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "ducktail".to_owned(), version: env!("CARGO_PKG_VERSION").to_owned(), ..Default::default() }),
                spans,
                schema_url: conventions::SCHEMA_URL.to_owned(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Sends requests to one backend.
pub struct OtlpSender {
    target: OtlpTarget,
    agent: ureq::Agent,
}

impl OtlpSender {
    /// A sender for `target`.
    pub fn new(target: OtlpTarget) -> OtlpSender {
        let agent = ureq::AgentBuilder::new().timeout(target.timeout).build();
        OtlpSender { target, agent }
    }

    /// The target.
    pub fn target(&self) -> &OtlpTarget {
        &self.target
    }

    /// POSTs `spans`; `Ok` once the backend acknowledged them (spans it says it rejected are
    /// logged: sending them again would not change its mind).
    pub fn send(&self, spans: &[AgentSpan]) -> Result<(), OtlpError> {
        let body = encode_request(&self.target, spans).encode_to_vec();
        let url = &self.target.traces_url;
        let mut request = self.agent.post(url).set("Content-Type", "application/x-protobuf");
        for (key, value) in &self.target.headers {
            request = request.set(key, value);
        }
        match request.send_bytes(&body) {
            Ok(response) => {
                let mut reply = Vec::new();
                let _ = std::io::Read::read_to_end(&mut response.into_reader(), &mut reply);
                if let Ok(reply) = ExportTraceServiceResponse::decode(reply.as_slice()) {
                    if let Some(partial) = reply.partial_success.filter(|partial| partial.rejected_spans > 0) {
                        tracing::warn!(url, rejected = partial.rejected_spans, message = %partial.error_message, "the OTLP backend rejected some spans");
                    }
                }
                Ok(())
            }
            Err(ureq::Error::Status(code, response)) => {
                let text = response.into_string().unwrap_or_default();
                Err(OtlpError::Send { url: url.clone(), status: Some(code), detail: format!("HTTP {code}: {}", text.chars().take(300).collect::<String>()) })
            }
            Err(error) => Err(OtlpError::Send { url: url.clone(), status: None, detail: error.to_string() }),
        }
    }
}

/// Records spans the backend acknowledged, in the database (whoever owns its writer).
pub trait SentLedger {
    /// Records `spans` as sent.
    fn record(&mut self, spans: &[SentSpan]) -> Result<(), String>;
}

impl SentLedger for ducktail_store::Store {
    fn record(&mut self, spans: &[SentSpan]) -> Result<(), String> {
        self.record_sent_spans(spans).map_err(|error| error.to_string())
    }
}

/// What an export pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// Root sessions looked at.
    pub roots: usize,
    /// Spans sent now.
    pub sent: usize,
    /// Final spans already sent before.
    pub already_sent: usize,
    /// Spans not final yet.
    pub pending: usize,
    /// Requests made.
    pub requests: usize,
    /// Spans the backend refused for good (`400`, `413`): recorded as sent, with a warning, so
    /// one bad span cannot stop the export.
    pub rejected: usize,
    /// Roots with spans not final yet: a live export looks at them again.
    #[serde(skip)]
    pub pending_roots: Vec<String>,
}

impl PassReport {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: PassReport) {
        self.roots += other.roots;
        self.sent += other.sent;
        self.already_sent += other.already_sent;
        self.pending += other.pending;
        self.requests += other.requests;
        self.rejected += other.rejected;
        self.pending_roots.extend(other.pending_roots);
    }
}

/// Root sessions read per query: their trees' records are held in memory at once.
const ROOTS_PER_READ: usize = 64;

/// Exports the final, not yet sent spans of the trees under `roots` (see the module doc).
/// Stops at the first failed request, with what was sent before it recorded.
pub fn export_roots(
    reader: &Reader,
    roots: &[String],
    sender: &OtlpSender,
    ledger: &mut dyn SentLedger,
    options: &BuildOptions,
) -> Result<PassReport, OtlpError> {
    let mut report = PassReport::default();
    for chunk in roots.chunks(ROOTS_PER_READ) {
        let records = reader.trace_records(chunk, options.capture_content)?;
        let built = build_spans(&records, options);
        report.roots += chunk.len();
        report.pending += built.pending;
        if built.pending > 0 {
            // A tree's records sit under one root; which root is not needed to look again, only
            // that it is one of these.
            report.pending_roots.extend(chunk.iter().cloned());
        }
        let (sent, fresh): (Vec<AgentSpan>, Vec<AgentSpan>) = built.spans.into_iter().partition(|span| records.sent.contains(&span.span_hex()));
        report.already_sent += sent.len();
        for batch in fresh.chunks(sender.target().max_batch.max(1)) {
            send_or_split(batch, sender, ledger, &mut report)?;
        }
    }
    report.pending_roots.dedup();
    Ok(report)
}

/// Sends `batch` and records it. A batch the backend refuses for good (`400`, `413`: retrying
/// it unchanged cannot succeed) is halved until the refused spans stand alone; those are
/// recorded as sent with a warning, so one span cannot hold every later one back.
fn send_or_split(batch: &[AgentSpan], sender: &OtlpSender, ledger: &mut dyn SentLedger, report: &mut PassReport) -> Result<(), OtlpError> {
    let outcome = sender.send(batch);
    report.requests += 1;
    match outcome {
        Ok(()) => report.sent += batch.len(),
        Err(OtlpError::Send { status: Some(400 | 413), .. }) if batch.len() > 1 => {
            let (first, second) = batch.split_at(batch.len() / 2);
            send_or_split(first, sender, ledger, report)?;
            return send_or_split(second, sender, ledger, report);
        }
        Err(OtlpError::Send { status: Some(400 | 413), detail, .. }) => {
            tracing::warn!(span = %batch[0].span_hex(), name = %batch[0].name, %detail, "the OTLP backend refuses this span; it is skipped");
            report.rejected += 1;
        }
        Err(error) => return Err(error),
    }
    let recorded: Vec<SentSpan> =
        batch.iter().map(|span| SentSpan { span_id: span.span_hex(), trace_id: span.trace_hex(), session_id: span.session_id.clone() }).collect();
    ledger.record(&recorded).map_err(OtlpError::Ledger)
}

/// Backfill: every root session created at or after `since_us`, page by page.
pub fn export_all(
    reader: &Reader,
    since_us: Option<i64>,
    sender: &OtlpSender,
    ledger: &mut dyn SentLedger,
    options: &BuildOptions,
) -> Result<PassReport, OtlpError> {
    let mut report = PassReport::default();
    let mut after: Option<String> = None;
    loop {
        let page = reader.trace_roots(since_us, after.as_deref(), 1_000)?;
        let Some(last) = page.last().cloned() else { break };
        report.add(export_roots(reader, &page, sender, ledger, options)?);
        after = Some(last);
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
