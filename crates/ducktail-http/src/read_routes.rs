//! The read API: `GET /api/sessions`, `/api/sessions/{id}`, `/api/sessions/{id}/timeline`,
//! `/api/traces/{session_id}`, `/api/usage`, and the span API `/api/otel/services`,
//! `/api/otel/traces` and `/api/otel/traces/{trace_id}`. Each handler parses and checks its parameters
//! (a bad one is a 400 naming it), then runs one store query on a reader connection on the
//! blocking pool.

use actix_web::{get, web, HttpResponse};
use ducktail_store::{Reader, SessionFilter, SessionSort, UsageGroup};

use crate::wire::*;
use crate::HttpState;

/// Parses an RFC 3339 instant or a `YYYY-MM-DD` day (midnight UTC) into Unix microseconds.
pub(crate) fn parse_instant(name: &str, text: &str) -> Result<i64, ApiError> {
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    let instant =
        humantime::parse_rfc3339_weak(&full).map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 time or YYYY-MM-DD, got {text:?}")))?;
    let since_epoch =
        instant.duration_since(std::time::UNIX_EPOCH).map_err(|_| ApiError::bad_request(format!("{name} must be after 1970-01-01, got {text:?}")))?;
    Ok(since_epoch.as_micros() as i64)
}

fn optional_instant(name: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.filter(|text| !text.is_empty()).map(|text| parse_instant(name, text)).transpose()
}

/// The name of a sort and order in a cursor, `None` for the default (newest first), whose
/// cursors stay as they always were.
fn cursor_order(sort: SessionSort, ascending: bool) -> Option<String> {
    let name = match sort {
        SessionSort::Created => "created",
        SessionSort::Updated => "updated",
        SessionSort::Cost => "cost",
        SessionSort::Tokens => "tokens",
    };
    (sort != SessionSort::Created || ascending).then(|| format!("{name}:{}", if ascending { "asc" } else { "desc" }))
}

/// Cursor text: `[<sort>:<order>:]<sort key>.<session id>`; the sort and order are named unless
/// they are the default, so a cursor is never read under another order.
pub(crate) fn encode_cursor((key, id): &(i64, String), sort: SessionSort, ascending: bool) -> String {
    match cursor_order(sort, ascending) {
        Some(order) => format!("{order}:{key}.{id}"),
        None => format!("{key}.{id}"),
    }
}

fn decode_cursor(text: &str, sort: SessionSort, ascending: bool) -> Result<(i64, String), ApiError> {
    let invalid = || ApiError::bad_request(format!("cursor {text:?} is not a next_cursor this server returned"));
    let rest = match cursor_order(sort, ascending) {
        Some(order) => text.strip_prefix(&format!("{order}:")),
        // A default cursor starts with its key, a number.
        None => text.starts_with(|first: char| first.is_ascii_digit() || first == '-').then_some(text),
    }
    .ok_or_else(|| ApiError::bad_request(format!("cursor {text:?} belongs to another sort or order; pass the sort and order it came with")))?;
    let (key, id) = rest.split_once('.').ok_or_else(invalid)?;
    Ok((key.parse().map_err(|_| invalid())?, id.to_owned()))
}

/// Runs `query` on a pooled reader (its prepared statements reused) off the async executor.
async fn read<T: Send + 'static>(
    state: &web::Data<HttpState>,
    query: impl FnOnce(&Reader) -> ducktail_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let readers = state.readers.clone();
    web::block(move || readers.pooled().and_then(|reader| query(&reader)))
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?
        .map_err(|error| ApiError::internal(error.to_string()))
}

#[get("/api/sessions")]
pub(crate) async fn sessions(state: web::Data<HttpState>, query: web::Query<SessionsQuery>) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and 500, got {limit}")));
    }
    let sort = match query.sort.as_deref().filter(|sort| !sort.is_empty()) {
        None => SessionSort::Created,
        Some(name) => SessionSort::parse(name).ok_or_else(|| ApiError::bad_request(format!("sort must be created, updated, cost or tokens, got {name:?}")))?,
    };
    let ascending = match query.order.as_deref().filter(|order| !order.is_empty()) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => return Err(ApiError::bad_request(format!("order must be asc or desc, got {other:?}"))),
    };
    let filter = SessionFilter {
        since_us: optional_instant("since", query.since.as_deref())?,
        until_us: optional_instant("until", query.until.as_deref())?,
        project: query.project.filter(|project| !project.is_empty()),
        root_only: query.root_only,
        title_contains: query.q.filter(|q| !q.is_empty()),
        app: query.app.filter(|app| !app.is_empty()),
        model: query.model.filter(|model| !model.is_empty()),
        agent: query.agent.filter(|agent| !agent.is_empty()),
        sort,
        ascending,
        limit,
        after: query.cursor.as_deref().filter(|cursor| !cursor.is_empty()).map(|cursor| decode_cursor(cursor, sort, ascending)).transpose()?,
    };
    let page = read(&state, move |reader| reader.sessions(&filter)).await?;
    let next_cursor = page.next_cursor.as_ref().map(|cursor| encode_cursor(cursor, sort, ascending));
    Ok(HttpResponse::Ok().json(SessionsPage { next_cursor, sessions: page.sessions }))
}

#[get("/api/projects")]
pub(crate) async fn projects(state: web::Data<HttpState>) -> Result<HttpResponse, ApiError> {
    let projects = read(&state, |reader| reader.projects()).await?;
    Ok(HttpResponse::Ok().json(ProjectsPage { projects }))
}

#[get("/api/sessions/{id}")]
pub(crate) async fn session(state: web::Data<HttpState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let wanted = id.clone();
    match read(&state, move |reader| reader.session_summary(&wanted)).await? {
        Some(summary) => Ok(HttpResponse::Ok().json(summary)),
        None => Err(ApiError::not_found(format!("no session {id:?}"))),
    }
}

#[get("/api/sessions/{id}/timeline")]
pub(crate) async fn timeline(state: web::Data<HttpState>, id: web::Path<String>, query: web::Query<TimelineQuery>) -> Result<HttpResponse, ApiError> {
    let max_chars = query.max_chars.unwrap_or(2_000);
    if !(1..=1_000_000).contains(&max_chars) {
        return Err(ApiError::bad_request(format!("max_chars must be between 1 and 1000000, got {max_chars}")));
    }
    let id = id.into_inner();
    let wanted = id.clone();
    match read(&state, move |reader| reader.session_timeline(&wanted, max_chars)).await? {
        Some(messages) => Ok(HttpResponse::Ok().json(Timeline { session_id: id, messages })),
        None => Err(ApiError::not_found(format!("no session {id:?}"))),
    }
}

#[get("/api/traces/{session_id}")]
pub(crate) async fn trace(state: web::Data<HttpState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let wanted = id.clone();
    match read(&state, move |reader| reader.trace_tree(&wanted)).await? {
        Some(tree) => Ok(HttpResponse::Ok().json(tree)),
        None => Err(ApiError::not_found(format!("no trace for session {id:?}"))),
    }
}

#[get("/api/usage")]
pub(crate) async fn usage(state: web::Data<HttpState>, query: web::Query<UsageQuery>) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let name = query.group_by.as_deref().unwrap_or("day");
    let groups = UsageGroup::parse_list(name).ok_or_else(|| {
        ApiError::bad_request(format!("group_by must be one or two of day, model, agent, project, app, comma-separated (day,model), got {name:?}"))
    })?;
    let group_by = groups.iter().map(|group| group.name()).collect::<Vec<_>>().join(",");
    let since = optional_instant("since", query.since.as_deref())?;
    let until = optional_instant("until", query.until.as_deref())?;
    let rows = read(&state, move |reader| reader.usage_by(&groups, since, until)).await?;
    let total = ducktail_store::usage_total(&rows);
    Ok(HttpResponse::Ok().json(UsageResponse { group_by, rows, total }))
}

#[get("/api/otel/services")]
pub(crate) async fn otel_services(state: web::Data<HttpState>) -> Result<HttpResponse, ApiError> {
    let services = read(&state, |reader| reader.otel_services()).await?;
    Ok(HttpResponse::Ok().json(OtelServices { services }))
}

#[get("/api/otel/traces")]
pub(crate) async fn otel_traces(state: web::Data<HttpState>, query: web::Query<OtelTracesQuery>) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and 10000, got {limit}")));
    }
    let filter = ducktail_store::OtelTraceFilter {
        service: query.service.filter(|service| !service.is_empty()),
        root_only: query.root_only,
        since_us: optional_instant("since", query.since.as_deref())?,
        limit,
    };
    let traces = read(&state, move |reader| reader.otel_traces(&filter)).await?;
    Ok(HttpResponse::Ok().json(OtelTraces { traces }))
}

#[get("/api/otel/traces/{trace_id}")]
pub(crate) async fn otel_trace(state: web::Data<HttpState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let wanted = id.clone();
    match read(&state, move |reader| reader.otel_trace(&wanted)).await? {
        Some(found) => Ok(HttpResponse::Ok().json(found)),
        None => Err(ApiError::not_found(format!("no trace {id:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_as_days_or_rfc3339_and_errors_name_the_parameter() {
        assert_eq!(parse_instant("since", "1970-01-02").unwrap(), 86_400_000_000);
        assert_eq!(parse_instant("since", "1970-01-01T00:00:01Z").unwrap(), 1_000_000);
        let error = parse_instant("until", "yesterday").unwrap_err();
        assert!(error.to_string().contains("until"), "{error}");
    }

    #[test]
    fn cursors_round_trip_and_garbage_or_another_orders_cursor_is_refused() {
        let cursor = (1_767_603_600_000_000, "ses_abc".to_owned());
        let newest = encode_cursor(&cursor, SessionSort::Created, false);
        assert_eq!(newest, "1767603600000000.ses_abc", "the default's cursors are as they always were");
        assert_eq!(decode_cursor(&newest, SessionSort::Created, false).unwrap(), cursor);
        let by_cost = encode_cursor(&cursor, SessionSort::Cost, true);
        assert_eq!(decode_cursor(&by_cost, SessionSort::Cost, true).unwrap(), cursor);
        for (sort, ascending) in [(SessionSort::Cost, false), (SessionSort::Created, false), (SessionSort::Tokens, true)] {
            let error = decode_cursor(&by_cost, sort, ascending).unwrap_err().to_string();
            assert!(error.contains("another sort"), "{error}");
        }
        assert!(decode_cursor(&newest, SessionSort::Cost, true).is_err());
        assert!(decode_cursor("nonsense", SessionSort::Created, false).is_err());
    }
}
