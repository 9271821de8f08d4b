//! Conditional GETs of the read API: answers that are a function of the database alone carry an
//! ETag made of the process and the board's `data_version`, and a client that sends it back
//! while no commit happened gets `304 Not Modified` without a query being run. The same version
//! keys the answers kept for reuse ([`crate::answer_cache`]). A session's own answers (summary,
//! timeline, trace tree) take that session's version instead: they move only with notices naming
//! it (its records, or derived rows of it, of a descendant or of its parent), so a dashboard on one
//! session keeps its answers while other sessions are written.
//!
//! The version is read before the answer is computed: a commit landing meanwhile can only make
//! the tag older than the answer, so the next revalidation fetches again; never the reverse.

use std::sync::OnceLock;

use actix_web::http::header::HeaderValue;
use ducktail_pipeline::status::StatusBoard;

/// Routes whose answer depends on nothing but the database's content. `/api/stats` and the
/// health routes also report backlog, latency and the machine, which change without a commit.
pub(crate) fn is_versioned(method: &actix_web::http::Method, path: &str) -> bool {
    method == actix_web::http::Method::GET
        && (path.starts_with("/api/sessions")
            || path.starts_with("/api/traces/")
            || path == "/api/usage"
            || path == "/api/projects"
            || path.starts_with("/api/otel/"))
}

/// The data version every versioned answer depends on, right now.
pub(crate) fn current_version(board: &StatusBoard) -> u64 {
    board.data_version.load(std::sync::atomic::Ordering::Acquire)
}

/// The session an answer at `path` is about, when every change to that answer comes with a
/// notice naming the session: its summary and timeline (its own records; its children's figures
/// come from derived rows, whose notices name every ancestor of what changed) and its trace tree
/// (derived rows of it, of its descendants, whose notices name it as their ancestor, and of the
/// call that created it, recomputed with its parent, whose notices name the parent's children).
/// Lists and usage span every session: `None`.
fn own_session(path: &str) -> Option<String> {
    let id = match path.strip_prefix("/api/sessions/") {
        Some(rest) => rest.strip_suffix("/timeline").unwrap_or(rest),
        None => path.strip_prefix("/api/traces/")?,
    };
    // The path is as sent: a Claude Code sub-agent's id (`<session>/agent-<id>`) arrives as
    // `%2F`, and the notices name the id itself.
    (!id.is_empty() && !id.contains('/')).then(|| percent_encoding::percent_decode_str(id).decode_utf8_lossy().into_owned())
}

/// The data version the answer at `path` depends on: a session's own answers move only with
/// notices naming that session, everything else with every notice.
pub(crate) fn version_for(board: &StatusBoard, path: &str) -> u64 {
    match own_session(path) {
        Some(session) => board.session_version(&session),
        None => current_version(board),
    }
}

/// The validator of the answers computed at `version`. The process part keeps a tag from before
/// a restart (whose counter started again at 0) from matching.
pub(crate) fn tag_of(version: u64) -> String {
    static PROCESS: OnceLock<u128> = OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
        started ^ u128::from(std::process::id())
    });
    format!("W/\"{process:x}-{version}\"")
}

/// The validator of every versioned answer right now.
#[cfg(test)]
pub(crate) fn current_tag(board: &StatusBoard) -> String {
    tag_of(current_version(board))
}

/// Whether `If-None-Match` names `tag` (or `*`).
pub(crate) fn not_modified(if_none_match: Option<&HeaderValue>, tag: &str) -> bool {
    if_none_match.and_then(|value| value.to_str().ok()).is_some_and(|tags| tags.split(',').map(str::trim).any(|candidate| candidate == tag || candidate == "*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_database_answers_are_versioned_and_a_commit_changes_the_tag() {
        use actix_web::http::Method;
        assert!(is_versioned(&Method::GET, "/api/sessions") && is_versioned(&Method::GET, "/api/sessions/ses_a/timeline"));
        assert!(is_versioned(&Method::GET, "/api/usage") && is_versioned(&Method::GET, "/api/traces/ses_a"));
        assert!(!is_versioned(&Method::GET, "/api/stats") && !is_versioned(&Method::GET, "/health/detailed") && !is_versioned(&Method::POST, "/api/sessions"));
        let board = StatusBoard::default();
        let before = current_tag(&board);
        assert!(not_modified(Some(&HeaderValue::from_str(&before).unwrap()), &before));
        board.record_derived(Default::default());
        let after = current_tag(&board);
        assert_ne!(before, after);
        assert!(!not_modified(Some(&HeaderValue::from_str(&before).unwrap()), &after));
        assert!(!not_modified(None, &after));
    }

    #[test]
    fn a_sessions_own_answers_move_only_with_notices_naming_it() {
        let board = StatusBoard::default();
        let (summary, timeline, list) = ("/api/sessions/ses_a", "/api/sessions/ses_a/timeline", "/api/sessions");
        let before = [version_for(&board, summary), version_for(&board, timeline), version_for(&board, list)];
        board.record_commit(1, 1, &std::collections::BTreeSet::from(["ses_b".to_owned()]), &[]);
        assert_eq!(version_for(&board, summary), before[0], "another session's commit");
        assert_eq!(version_for(&board, timeline), before[1]);
        assert_ne!(version_for(&board, list), before[2], "the list shows every session");
        board.record_derived(std::collections::BTreeSet::from(["ses_a".to_owned()]));
        assert_ne!(version_for(&board, summary), before[0], "a derived notice naming it (as a child's ancestor, say)");
        let named = version_for(&board, summary);
        board.record_derived(Default::default());
        assert_ne!(version_for(&board, summary), named, "a notice naming every session");
        assert_eq!(own_session("/api/traces/ses_a").as_deref(), Some("ses_a"));
        assert_eq!(own_session("/api/sessions/f8ad%2Fagent-ac9f/timeline").as_deref(), Some("f8ad/agent-ac9f"), "a sub-agent's id, as sent");
        assert_eq!(own_session("/api/sessions/"), None);
        assert_eq!(own_session("/api/otel/traces/abc"), None);
    }
}
