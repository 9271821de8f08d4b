//! Read queries over the span tables for `GET /api/otel/*` and `ducktail otel`: services, a
//! trace list (newest first), and one trace as a span tree with OTLP kinds and statuses named.
//!
//! Tree rule: children hang under their parent by `parent_span_id`, sorted by start; spans whose
//! parent is in no file of the trace are **orphans** — returned at the top level, flagged, never
//! dropped (a trace explorer that only walks down from the root loses them).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::reader::rfc3339_from_micros;
use crate::{Reader, Result};

/// OTLP `SpanKind` name of a raw value.
pub fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        0 => "UNSPECIFIED",
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNKNOWN",
    }
}

/// OTLP `Status.code` name of a raw value.
pub fn status_name(code: i32) -> &'static str {
    match code {
        0 => "UNSET",
        1 => "OK",
        2 => "ERROR",
        _ => "UNKNOWN",
    }
}

/// One row of `services`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtelService {
    /// Service name.
    pub service_name: String,
    /// Spans of the service.
    pub span_count: i64,
    /// Traces it appears in.
    pub trace_count: i64,
    /// Its spans with status ERROR.
    pub error_count: i64,
    /// Earliest span start (RFC 3339).
    pub first_seen: String,
    /// Latest span end (RFC 3339).
    pub last_seen: String,
}

/// One row of `traces`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtelTraceSummary {
    /// 32 hex chars.
    pub trace_id: String,
    /// The root span (else the earliest span) and its service and name.
    pub root_span_id: Option<String>,
    /// Service of the root span.
    pub root_service: Option<String>,
    /// Name of the root span.
    pub root_name: Option<String>,
    /// Whether a span without parent exists.
    pub has_root: bool,
    /// Earliest start (RFC 3339).
    pub start_time: String,
    /// Latest end (RFC 3339).
    pub end_time: String,
    /// Latest end − earliest start.
    pub duration_ns: i64,
    /// Spans.
    pub span_count: i64,
    /// Spans with status ERROR.
    pub error_count: i64,
    /// Distinct services.
    pub service_count: i64,
    /// Spans whose parent is missing.
    pub orphan_count: i64,
}

/// Filter of the trace list.
#[derive(Debug, Clone, Default)]
pub struct OtelTraceFilter {
    /// Only traces with a span of this service.
    pub service: Option<String>,
    /// Only traces that have a root span.
    pub root_only: bool,
    /// Only traces starting at or after this Unix time (µs).
    pub since_us: Option<i64>,
    /// At most this many (1–10,000).
    pub limit: usize,
}

/// One span in a trace tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtelSpanNode {
    /// 16 hex chars.
    pub span_id: String,
    /// Parent, or null for a root.
    pub parent_span_id: Option<String>,
    /// Service.
    pub service_name: String,
    /// Name.
    pub name: String,
    /// `INTERNAL`, `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER` or `UNSPECIFIED`.
    pub kind: &'static str,
    /// The raw OTLP value.
    pub span_kind: i32,
    /// `UNSET`, `OK` or `ERROR`.
    pub status: &'static str,
    /// The raw OTLP value.
    pub status_code: i32,
    /// Status message.
    pub status_message: Option<String>,
    /// Start (RFC 3339, µs).
    pub start_time: String,
    /// End (RFC 3339, µs).
    pub end_time: String,
    /// Exact duration.
    pub duration_ns: i64,
    /// Attributes (JSON object).
    pub attributes: serde_json::Value,
    /// Events (JSON array).
    pub events: serde_json::Value,
    /// Whether the parent is in no file of the trace.
    pub orphan: bool,
    /// Children, by start time.
    pub children: Vec<OtelSpanNode>,
}

/// One trace: its summary and its span tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtelTrace {
    /// The `traces` row.
    pub trace: OtelTraceSummary,
    /// Root spans first, then orphans, each with its children.
    pub spans: Vec<OtelSpanNode>,
}

const TRACE_COLUMNS: &str = "trace_id, root_span_id, root_service, root_name, has_root,
    epoch_us(start_time::TIMESTAMP), epoch_us(end_time::TIMESTAMP), duration_ns, span_count, error_count, service_count, orphan_count";

fn trace_summary(row: &duckdb::Row<'_>) -> duckdb::Result<OtelTraceSummary> {
    Ok(OtelTraceSummary {
        trace_id: row.get(0)?,
        root_span_id: row.get(1)?,
        root_service: row.get(2)?,
        root_name: row.get(3)?,
        has_root: row.get(4)?,
        start_time: rfc3339_from_micros(row.get(5)?),
        end_time: rfc3339_from_micros(row.get(6)?),
        duration_ns: row.get(7)?,
        span_count: row.get(8)?,
        error_count: row.get(9)?,
        service_count: row.get(10)?,
        orphan_count: row.get(11)?,
    })
}

fn json_or_text(text: Option<String>) -> serde_json::Value {
    match text {
        Some(text) => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        None => serde_json::Value::Null,
    }
}

impl Reader {
    /// Every service, by name.
    pub fn otel_services(&self) -> Result<Vec<OtelService>> {
        let context = "listing services";
        let mut statement = self
            .connection
            .prepare(
                "SELECT service_name, span_count, trace_count, error_count, epoch_us(first_seen::TIMESTAMP), epoch_us(last_seen::TIMESTAMP)
                 FROM services ORDER BY service_name",
            )
            .map_err(|source| self.query_error(context, source))?;
        let rows = statement
            .query_map([], |row| {
                Ok(OtelService {
                    service_name: row.get(0)?,
                    span_count: row.get(1)?,
                    trace_count: row.get(2)?,
                    error_count: row.get(3)?,
                    first_seen: rfc3339_from_micros(row.get(4)?),
                    last_seen: rfc3339_from_micros(row.get(5)?),
                })
            })
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error(context, source))?;
        Ok(rows)
    }

    /// Traces, newest first (by start), filtered.
    pub fn otel_traces(&self, filter: &OtelTraceFilter) -> Result<Vec<OtelTraceSummary>> {
        let context = "listing traces";
        let sql = format!(
            "SELECT {TRACE_COLUMNS} FROM traces
             WHERE ($1::VARCHAR IS NULL OR trace_id IN (SELECT trace_id FROM spans WHERE service_name = $1))
               AND (NOT $2 OR has_root)
               AND ($3::BIGINT IS NULL OR epoch_us(start_time::TIMESTAMP) >= $3)
             ORDER BY start_time DESC, trace_id LIMIT $4"
        );
        let mut statement = self.connection.prepare(&sql).map_err(|source| self.query_error(context, source))?;
        let limit = filter.limit.clamp(1, 10_000) as i64;
        let rows = statement
            .query_map(duckdb::params![filter.service, filter.root_only, filter.since_us, limit], trace_summary)
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error(context, source))?;
        Ok(rows)
    }

    /// One trace with its span tree, or `None` if no span has this trace id.
    pub fn otel_trace(&self, trace_id: &str) -> Result<Option<OtelTrace>> {
        let context = "reading a trace";
        let summary = {
            let mut statement = self
                .connection
                .prepare(&format!("SELECT {TRACE_COLUMNS} FROM traces WHERE trace_id = ?"))
                .map_err(|source| self.query_error(context, source))?;
            let mut rows = statement.query_map([trace_id], trace_summary).map_err(|source| self.query_error(context, source))?;
            match rows.next() {
                Some(row) => row.map_err(|source| self.query_error(context, source))?,
                None => return Ok(None),
            }
        };
        let mut statement = self
            .connection
            .prepare(
                "SELECT span_id, parent_span_id, service_name, name, span_kind, status_code, status_message,
                        start_ns, end_ns, duration_ns, attributes, events
                 FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id",
            )
            .map_err(|source| self.query_error(context, source))?;
        let spans = statement
            .query_map([trace_id], |row| {
                let (kind, status): (i32, i32) = (row.get(4)?, row.get(5)?);
                let (start_ns, end_ns): (i64, i64) = (row.get(7)?, row.get(8)?);
                Ok(OtelSpanNode {
                    span_id: row.get(0)?,
                    parent_span_id: row.get(1)?,
                    service_name: row.get(2)?,
                    name: row.get(3)?,
                    kind: span_kind_name(kind),
                    span_kind: kind,
                    status: status_name(status),
                    status_code: status,
                    status_message: row.get(6)?,
                    start_time: rfc3339_from_micros(start_ns.div_euclid(1_000)),
                    end_time: rfc3339_from_micros(end_ns.div_euclid(1_000)),
                    duration_ns: row.get(9)?,
                    attributes: json_or_text(row.get(10)?),
                    events: json_or_text(row.get(11)?),
                    orphan: false,
                    children: Vec::new(),
                })
            })
            .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
            .map_err(|source| self.query_error(context, source))?;
        Ok(Some(OtelTrace { trace: summary, spans: span_tree(spans) }))
    }
}

/// Builds the forest: roots (no parent) first, then orphans (parent missing), children by start.
fn span_tree(spans: Vec<OtelSpanNode>) -> Vec<OtelSpanNode> {
    let ids: HashSet<String> = spans.iter().map(|span| span.span_id.clone()).collect();
    let mut children_of: HashMap<String, Vec<OtelSpanNode>> = HashMap::new();
    let (mut roots, mut orphans) = (Vec::new(), Vec::new());
    for mut span in spans {
        match span.parent_span_id.clone() {
            None => roots.push(span),
            Some(parent) if ids.contains(&parent) && parent != span.span_id => children_of.entry(parent).or_default().push(span),
            Some(_) => {
                span.orphan = true;
                orphans.push(span);
            }
        }
    }
    fn attach(node: &mut OtelSpanNode, children_of: &mut HashMap<String, Vec<OtelSpanNode>>) {
        if let Some(mut children) = children_of.remove(&node.span_id) {
            for child in &mut children {
                attach(child, children_of);
            }
            node.children = children;
        }
    }
    roots.extend(orphans);
    for node in &mut roots {
        attach(node, &mut children_of);
    }
    // Spans caught in a parent cycle are reachable from no root: return them as orphans.
    for (_, leftovers) in children_of.drain() {
        roots.extend(leftovers.into_iter().map(|mut span| {
            span.orphan = true;
            span
        }));
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parent: Option<&str>) -> OtelSpanNode {
        OtelSpanNode {
            span_id: id.into(),
            parent_span_id: parent.map(Into::into),
            service_name: "s".into(),
            name: "n".into(),
            kind: "INTERNAL",
            span_kind: 1,
            status: "UNSET",
            status_code: 0,
            status_message: None,
            start_time: String::new(),
            end_time: String::new(),
            duration_ns: 0,
            attributes: serde_json::Value::Null,
            events: serde_json::Value::Null,
            orphan: false,
            children: Vec::new(),
        }
    }

    #[test]
    fn orphans_and_cycles_are_returned_flagged_never_dropped() {
        let tree =
            span_tree(vec![node("a", None), node("b", Some("a")), node("c", Some("gone")), node("d", Some("c")), node("x", Some("y")), node("y", Some("x"))]);
        let count = |nodes: &[OtelSpanNode]| -> usize {
            fn walk(nodes: &[OtelSpanNode]) -> usize {
                nodes.iter().map(|node| 1 + walk(&node.children)).sum()
            }
            walk(nodes)
        };
        assert_eq!(count(&tree), 6, "every span is in the tree");
        assert_eq!(tree[0].span_id, "a");
        assert_eq!(tree[0].children[0].span_id, "b");
        let orphan = tree.iter().find(|node| node.span_id == "c").unwrap();
        assert!(orphan.orphan && orphan.children[0].span_id == "d");
        assert_eq!(span_kind_name(1), "INTERNAL");
        assert_eq!(span_kind_name(2), "SERVER");
        assert_eq!(status_name(2), "ERROR");
    }
}
