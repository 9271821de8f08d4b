//! `GET /api/events`: server-sent events, one per committed batch, so a dashboard refreshes on
//! change instead of polling.
//!
//! Each subscriber reads its own broadcast receiver; the writer never waits for it. A subscriber
//! that falls more than the feed's capacity behind gets a `lagged` event with how many notices it
//! missed (it should refresh everything), then continues with the newest.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use bytes::Bytes;
use ducktail_pipeline::status::CommitNotice;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use crate::HttpState;

/// A comment line this often keeps proxies and idle-timeouts from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One SSE frame.
fn frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The next frame for a subscriber, or `None` when the feed is gone (shutdown).
async fn next_frame(receiver: &mut Receiver<CommitNotice>) -> Option<Bytes> {
    match tokio::time::timeout(KEEP_ALIVE, receiver.recv()).await {
        Err(_) => Some(Bytes::from_static(b": keep-alive\n\n")),
        Ok(Ok(notice)) => {
            let data = serde_json::to_string(&notice).unwrap_or_else(|_| "{}".to_owned());
            Some(frame(if notice.derived { "derived" } else { "commit" }, &data))
        }
        Ok(Err(RecvError::Lagged(missed))) => Some(frame("lagged", &format!("{{\"missed\":{missed}}}"))),
        Ok(Err(RecvError::Closed)) => None,
    }
}

#[get("/api/events")]
pub(crate) async fn events(state: web::Data<HttpState>) -> HttpResponse {
    let receiver = state.board.commits.subscribe();
    // The first frame tells the client it is subscribed: anything committed after it arrives.
    let hello = futures_util::stream::once(async { Ok::<_, Infallible>(frame("ready", "{}")) });
    let notices =
        futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { next_frame(&mut receiver).await.map(|bytes| (Ok::<_, Infallible>(bytes), receiver)) },
        );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Never compressed: a compressor holds frames back until its block fills.
        .insert_header(("Content-Encoding", "identity"))
        .streaming(futures_util::StreamExt::chain(hello, notices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[tokio::test]
    async fn notices_become_commit_frames_and_overflow_becomes_lagged() {
        let (sender, mut receiver) = tokio::sync::broadcast::channel(2);
        let notice = |batch_id| CommitNotice { batch_id, files: 1, sessions: BTreeSet::from(["ses_a".to_owned()]), committed_unix_ms: 5, derived: false };
        sender.send(notice(1)).unwrap();
        let first = next_frame(&mut receiver).await.unwrap();
        assert_eq!(first, Bytes::from("event: commit\ndata: {\"batch_id\":1,\"files\":1,\"sessions\":[\"ses_a\"],\"committed_unix_ms\":5}\n\n"));
        for batch_id in 2..=5 {
            sender.send(notice(batch_id)).unwrap();
        }
        assert_eq!(next_frame(&mut receiver).await.unwrap(), Bytes::from("event: lagged\ndata: {\"missed\":2}\n\n"));
        drop(sender);
        assert!(next_frame(&mut receiver).await.is_some(), "buffered notices still arrive");
        assert!(next_frame(&mut receiver).await.is_some());
        assert!(next_frame(&mut receiver).await.is_none(), "a closed feed ends the stream");
    }

    #[tokio::test]
    async fn derived_rows_are_their_own_event() {
        let (sender, mut receiver) = tokio::sync::broadcast::channel(2);
        sender.send(CommitNotice { batch_id: 0, files: 0, sessions: BTreeSet::from(["ses_a".to_owned()]), committed_unix_ms: 5, derived: true }).unwrap();
        let frame = next_frame(&mut receiver).await.unwrap();
        assert_eq!(frame, Bytes::from("event: derived\ndata: {\"batch_id\":0,\"files\":0,\"sessions\":[\"ses_a\"],\"committed_unix_ms\":5}\n\n"));
    }
}
