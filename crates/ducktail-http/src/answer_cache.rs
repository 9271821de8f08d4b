//! Answers of the read API reused until the next commit: the daemon is the database's only
//! writer, so an answer computed at data version `v` (see [`crate::revalidation`]) is the answer
//! for as long as the version stays `v`. Many clients polling the same views (dashboards, Grafana,
//! scripts) then cost one computation per view per commit, not one per request.
//!
//! Single flight: while one request computes an answer for version `v`, others asking the same
//! URL at `v` wait for it instead of running the same queries beside it. A request that finds an
//! answer or a computation of an older version computes anew (the older one is never served).
//!
//! Correctness rests on reading the version *before* computing, as the ETag does: a commit landing
//! during a computation makes the version move on, so the stored answer (filed under the version
//! read before) is never served again. Only `200` answers are kept; a computation that fails or
//! whose client went away releases its waiters, who then compute for themselves.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bytes::Bytes;
use ducktail_pipeline::status::StatusBoard;
use futures_util::future::LocalBoxFuture;
use tokio::sync::watch;

/// A kept answer: its body and content type.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
}

enum Slot {
    Ready { version: u64, answer: Answer },
    Computing { version: u64, done: watch::Receiver<bool> },
}

/// What a request should do.
pub(crate) enum Lookup {
    /// Serve this answer.
    Hit(Answer),
    /// Another request computes it: wait for this, then look again.
    Wait(watch::Receiver<bool>),
    /// Compute it; report through the ticket.
    Compute(Ticket),
}

/// The right to compute one answer; dropping it unused (a failed request, a client that went
/// away) releases the requests waiting for it.
pub(crate) struct Ticket {
    key: String,
    version: u64,
    done: watch::Sender<bool>,
}

/// The kept answers, shared by every HTTP worker.
pub(crate) struct AnswerCache {
    slots: Mutex<Slots>,
    capacity: usize,
}

/// The slots and the bytes their answers hold.
#[derive(Default)]
struct Slots {
    by_key: HashMap<String, Slot>,
    bytes: usize,
}

/// Most bytes the kept answers may hold (a long session's timeline is megabytes): beyond, the
/// kept answers are dropped, as beyond the number of URLs.
const MAX_KEPT_BYTES: usize = 64 << 20;

impl AnswerCache {
    /// At most `capacity` distinct URLs are kept; beyond that, the kept answers are dropped. With
    /// 0, nothing is kept and nobody waits: every request computes its answer.
    pub(crate) fn new(capacity: usize) -> AnswerCache {
        AnswerCache { slots: Mutex::new(Slots::default()), capacity }
    }

    /// What to do for `key` (the path and query) at `version`.
    pub(crate) fn lookup(&self, key: &str, version: u64) -> Lookup {
        let (sender, receiver) = watch::channel(false);
        if self.capacity == 0 {
            return Lookup::Compute(Ticket { key: key.to_owned(), version, done: sender });
        }
        let mut guard = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slots = &mut *guard;
        match slots.by_key.get(key) {
            Some(Slot::Ready { version: kept, answer }) if *kept == version => return Lookup::Hit(answer.clone()),
            Some(Slot::Computing { version: computing, done }) if *computing == version && !*done.borrow() => return Lookup::Wait(done.clone()),
            // A request that read the version before a commit that a newer one already saw:
            // it computes for itself and leaves the slot to the newer version.
            Some(Slot::Ready { version: newer, .. } | Slot::Computing { version: newer, .. }) if *newer > version => {
                return Lookup::Compute(Ticket { key: key.to_owned(), version, done: sender });
            }
            _ => {}
        }
        if slots.by_key.len() >= self.capacity || slots.bytes > MAX_KEPT_BYTES {
            slots.by_key.retain(|_, slot| matches!(slot, Slot::Computing { .. }));
            slots.bytes = 0;
        }
        if let Some(Slot::Ready { answer, .. }) = slots.by_key.insert(key.to_owned(), Slot::Computing { version, done: receiver }) {
            slots.bytes = slots.bytes.saturating_sub(answer.body.len());
        }
        Lookup::Compute(Ticket { key: key.to_owned(), version, done: sender })
    }

    /// Keeps `answer` as the answer at the ticket's version (unless a newer computation took the
    /// slot meanwhile) and releases the waiters.
    pub(crate) fn store(&self, ticket: Ticket, answer: Answer) {
        let mut guard = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slots = &mut *guard;
        if matches!(slots.by_key.get(&ticket.key), Some(Slot::Computing { version, .. }) if *version == ticket.version) {
            slots.bytes += answer.body.len();
            slots.by_key.insert(ticket.key.clone(), Slot::Ready { version: ticket.version, answer });
        }
        drop(guard);
        drop(ticket);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Stored or not, the waiters look again: they find the answer, or compute it themselves.
        let _ = self.done.send(true);
    }
}

/// Waits until the computation behind `done` ended.
pub(crate) async fn wait(mut done: watch::Receiver<bool>) {
    // An error means the ticket is gone: the computation ended either way.
    let _ = done.wait_for(|finished| *finished).await;
}

/// The middleware: conditional GETs (`304` while the version holds) and reused answers for the
/// versioned routes of [`crate::revalidation`]; everything else passes through.
pub(crate) struct ReuseAnswers {
    pub cache: Arc<AnswerCache>,
    pub board: Arc<StatusBoard>,
    /// Read answers computed at once, at most: one per core. Fifty clients at once otherwise run
    /// fifty sets of queries beside the Writer, and on two cores the commits waited seconds.
    pub computing: Arc<tokio::sync::Semaphore>,
}

impl<S, B> Transform<S, ServiceRequest> for ReuseAnswers
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = ReuseAnswersService<S>;
    type InitError = ();
    type Future = std::future::Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        std::future::ready(Ok(ReuseAnswersService {
            service: Rc::new(service),
            cache: self.cache.clone(),
            board: self.board.clone(),
            computing: self.computing.clone(),
        }))
    }
}

/// [`ReuseAnswers`] around one worker's service.
pub(crate) struct ReuseAnswersService<S> {
    service: Rc<S>,
    cache: Arc<AnswerCache>,
    board: Arc<StatusBoard>,
    computing: Arc<tokio::sync::Semaphore>,
}

/// `answer` as a `200` with its validator; revalidated by the client on every use.
fn answer_response(answer: &Answer, tag: &str) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    if let Some(content_type) = &answer.content_type {
        response.insert_header((header::CONTENT_TYPE, content_type.clone()));
    }
    if let Ok(tag) = HeaderValue::from_str(tag) {
        response.insert_header((header::ETAG, tag));
    }
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))).body(answer.body.clone())
}

impl<S, B> Service<ServiceRequest> for ReuseAnswersService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let (service, cache, board, computing) = (self.service.clone(), self.cache.clone(), self.board.clone(), self.computing.clone());
        Box::pin(async move {
            if !crate::revalidation::is_versioned(request.method(), request.path()) {
                // The live figures are computed per request, in turn with the other reads.
                let _turn = if request.path() == "/api/stats" { computing.acquire().await.ok() } else { None };
                return Ok(service.call(request).await?.map_into_boxed_body());
            }
            let key = request.uri().path_and_query().map_or_else(|| request.path().to_owned(), |path| path.as_str().to_owned());
            loop {
                let version = crate::revalidation::version_for(&board, request.path());
                let tag = crate::revalidation::tag_of(version);
                if crate::revalidation::not_modified(request.headers().get(header::IF_NONE_MATCH), &tag) {
                    let unchanged = HttpResponse::NotModified().insert_header((header::ETAG, tag)).finish();
                    return Ok(request.into_response(unchanged));
                }
                match cache.lookup(&key, version) {
                    Lookup::Hit(answer) => {
                        board.metrics.api_answers_reused.inc();
                        return Ok(request.into_response(answer_response(&answer, &tag)));
                    }
                    Lookup::Wait(done) => wait(done).await,
                    Lookup::Compute(ticket) => {
                        let turn = computing.acquire().await.ok();
                        let response = service.call(request).await?;
                        if response.status() != StatusCode::OK {
                            return Ok(response.map_into_boxed_body());
                        }
                        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
                        let (request, response) = response.into_parts();
                        let body = actix_web::body::to_bytes(response.into_body()).await.map_err(|error| {
                            let error: Box<dyn std::error::Error> = error.into();
                            actix_web::error::ErrorInternalServerError(error.to_string())
                        })?;
                        drop(turn);
                        let answer = Answer { body, content_type };
                        let response = answer_response(&answer, &tag);
                        cache.store(ticket, answer);
                        return Ok(ServiceResponse::new(request, response));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &'static str) -> Answer {
        Answer { body: Bytes::from_static(text.as_bytes()), content_type: None }
    }

    #[test]
    fn an_answer_is_reused_at_its_version_only() {
        let cache = AnswerCache::new(8);
        let Lookup::Compute(ticket) = cache.lookup("/api/usage", 3) else { panic!("the first request computes") };
        assert!(matches!(cache.lookup("/api/usage", 3), Lookup::Wait(_)), "the same request at the same version waits");
        cache.store(ticket, answer("three"));
        assert!(matches!(cache.lookup("/api/usage", 3), Lookup::Hit(found) if found.body == "three"));
        assert!(matches!(cache.lookup("/api/usage", 4), Lookup::Compute(_)), "a commit makes it stale");
        assert!(matches!(cache.lookup("/api/usage?by=day", 3), Lookup::Compute(_)), "another query is another answer");
    }

    #[test]
    fn a_computation_overtaken_by_a_commit_is_not_kept_and_an_abandoned_one_releases_its_waiters() {
        let cache = AnswerCache::new(8);
        let Lookup::Compute(old) = cache.lookup("/api/sessions", 1) else { panic!() };
        let Lookup::Compute(new) = cache.lookup("/api/sessions", 2) else { panic!() };
        cache.store(old, answer("old"));
        assert!(matches!(cache.lookup("/api/sessions", 1), Lookup::Compute(_)), "the old answer was not kept");
        assert!(matches!(cache.lookup("/api/sessions", 2), Lookup::Wait(_)), "nor did the late request take the newer one's slot");
        let Lookup::Wait(mut waiting) = cache.lookup("/api/sessions", 2) else { panic!("version 2 is being computed") };
        drop(new);
        assert!(*waiting.borrow_and_update(), "dropping the ticket releases the waiters");
    }

    #[test]
    fn with_no_room_every_request_computes() {
        let cache = AnswerCache::new(0);
        let Lookup::Compute(ticket) = cache.lookup("/api/usage", 1) else { panic!() };
        assert!(matches!(cache.lookup("/api/usage", 1), Lookup::Compute(_)), "nobody waits");
        cache.store(ticket, answer("x"));
        assert!(matches!(cache.lookup("/api/usage", 1), Lookup::Compute(_)), "nothing is kept");
    }

    #[test]
    fn the_number_of_kept_answers_is_bounded() {
        let cache = AnswerCache::new(2);
        for key in ["/a", "/b", "/c"] {
            let Lookup::Compute(ticket) = cache.lookup(key, 1) else { panic!() };
            cache.store(ticket, answer("x"));
        }
        assert!(cache.slots.lock().unwrap().by_key.len() <= 2);
        let big = AnswerCache::new(8);
        for key in ["/x", "/y"] {
            let Lookup::Compute(ticket) = big.lookup(key, 1) else { panic!() };
            big.store(ticket, Answer { body: Bytes::from(vec![0u8; MAX_KEPT_BYTES / 2 + 1]), content_type: None });
        }
        let Lookup::Compute(_) = big.lookup("/z", 1) else { panic!() };
        assert!(big.slots.lock().unwrap().bytes == 0, "over the byte bound, the kept answers go");
    }
}
