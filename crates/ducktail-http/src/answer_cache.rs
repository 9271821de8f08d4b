//! Answers of the read API reused while they are fresh enough: the daemon is the database's only
//! writer, so an answer computed at data version `v` (see [`crate::revalidation`]) is exact for as
//! long as the version stays `v`. Many clients polling the same views (dashboards, Grafana,
//! scripts) then cost one computation per view per commit, not one per request.
//!
//! Under a steady stream of commits (a thousand files a second commit every few tens of
//! milliseconds) that is still a computation per view per commit, each one reading the whole
//! database. So an answer is also served for `http.max_staleness` (250 ms) after its computation
//! began, whatever was committed since: a view then costs at most one computation per
//! `max_staleness`, and an answer is never older than that. A request that needs the newest
//! commit says so the HTTP way, `Cache-Control: no-cache` or `max-age=0` (browsers' `fetch` with
//! `cache: 'no-store'` sends it, and so does the dashboard); `max-age=N` allows `N` seconds.
//!
//! Single flight: while one request computes an answer, others that would accept it wait for it
//! instead of running the same queries beside it.
//!
//! Correctness rests on reading the version and the clock *before* computing, as the ETag does: a
//! commit landing during a computation can only make the answer's recorded version and age older
//! than its content, never newer. Only `200` answers are kept; a computation that fails or whose
//! client went away releases its waiters, who then compute for themselves.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bytes::Bytes;
use ducktail_pipeline::status::StatusBoard;
use futures_util::future::LocalBoxFuture;
use tokio::sync::watch;

/// A kept HTTP answer: its body and content type, and the body gzipped, made the first time a
/// client that accepts gzip asks (so a kept answer is compressed once, not per request).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    pub gzipped: Arc<std::sync::OnceLock<Bytes>>,
}

impl Answer {
    pub(crate) fn new(body: Bytes, content_type: Option<HeaderValue>) -> Answer {
        Answer { body, content_type, gzipped: Arc::default() }
    }

    /// The body gzipped.
    fn gzipped(&self) -> &Bytes {
        self.gzipped.get_or_init(|| {
            use std::io::Write as _;
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(self.body.len() / 4), flate2::Compression::fast());
            // Writing to a Vec cannot fail.
            let _ = encoder.write_all(&self.body);
            Bytes::from(encoder.finish().unwrap_or_default())
        })
    }
}

/// Bodies smaller than this go out as they are: gzip would save less than its own overhead.
const GZIP_FROM_BYTES: usize = 1024;

/// Whether `Accept-Encoding` accepts gzip: named, or `*`, with a non-zero `q` (`gzip;q=0`
/// refuses it whatever `*` says).
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let codings: Vec<(String, bool)> = headers
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default().to_ascii_lowercase();
            let refused = parts.any(|parameter| {
                parameter.split_once('=').is_some_and(|(key, q)| key.trim().eq_ignore_ascii_case("q") && q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            (name, !refused)
        })
        .collect();
    match codings.iter().find(|(name, _)| name == "gzip") {
        Some((_, accepted)) => *accepted,
        None => codings.iter().any(|(name, accepted)| name == "*" && *accepted),
    }
}

/// How many bytes a kept answer holds, for the cache's byte bound.
pub(crate) trait Weigh {
    fn bytes(&self) -> usize;
}

impl Weigh for Answer {
    fn bytes(&self) -> usize {
        self.body.len()
    }
}

/// What a request accepts, fixed when it arrives: an answer of the version current then (or a
/// newer one), or one whose computation began less than `tolerance` before it arrived. Fixed, so
/// that a request that waited for a computation takes its answer even if a commit landed
/// meanwhile (looking again with the new version would send every waiter to compute anew).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Freshness {
    pub current: u64,
    pub tolerance: Duration,
    pub now: Instant,
}

impl Freshness {
    fn accepts(&self, version: u64, started: Instant) -> bool {
        version >= self.current || self.now.saturating_duration_since(started) < self.tolerance
    }
}

/// An answer computed from the data at `version`, its computation begun at `started`.
struct Kept<A> {
    version: u64,
    started: Instant,
    answer: A,
}

/// A computation under way.
struct Computing {
    ticket: u64,
    version: u64,
    started: Instant,
    done: watch::Receiver<bool>,
}

/// One URL's newest kept answer and the computation under way, if any.
struct Slot<A> {
    ready: Option<Kept<A>>,
    computing: Option<Computing>,
}

/// What a request should do.
pub(crate) enum Lookup<A> {
    /// Serve this answer, computed at this version.
    Hit(A, u64),
    /// Another request computes an answer this one accepts: wait for this, then look again.
    Wait(watch::Receiver<bool>),
    /// Compute it; report through the ticket.
    Compute(Ticket),
}

/// The right to compute one answer; dropping it unused (a failed request, a client that went
/// away) releases the requests waiting for it.
pub(crate) struct Ticket {
    key: String,
    id: u64,
    version: u64,
    started: Instant,
    done: watch::Sender<bool>,
}

/// The kept answers, shared by every HTTP worker.
pub(crate) struct AnswerCache<A> {
    slots: Mutex<Slots<A>>,
    capacity: usize,
    tickets: AtomicU64,
}

/// The slots and the bytes their answers hold.
struct Slots<A> {
    by_key: HashMap<String, Slot<A>>,
    bytes: usize,
}

/// Most bytes the kept answers may hold (a long session's timeline is megabytes): beyond, the
/// kept answers are dropped, as beyond the number of URLs.
const MAX_KEPT_BYTES: usize = 64 << 20;

impl<A: Clone + Weigh> AnswerCache<A> {
    /// At most `capacity` distinct URLs are kept; beyond that, the kept answers are dropped. With
    /// 0, nothing is kept and nobody waits: every request computes its answer.
    pub(crate) fn new(capacity: usize) -> AnswerCache<A> {
        AnswerCache { slots: Mutex::new(Slots { by_key: HashMap::new(), bytes: 0 }), capacity, tickets: AtomicU64::new(0) }
    }

    /// What to do for `key` (the path and query) for a request that accepts `freshness`.
    pub(crate) fn lookup(&self, key: &str, freshness: Freshness) -> Lookup<A> {
        let id = self.tickets.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = watch::channel(false);
        let ticket = Ticket { key: key.to_owned(), id, version: freshness.current, started: freshness.now, done: sender };
        if self.capacity == 0 {
            return Lookup::Compute(ticket);
        }
        let mut guard = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slots = &mut *guard;
        if let Some(slot) = slots.by_key.get_mut(key) {
            if let Some(kept) = slot.ready.as_ref().filter(|kept| freshness.accepts(kept.version, kept.started)) {
                return Lookup::Hit(kept.answer.clone(), kept.version);
            }
            if let Some(computing) = slot.computing.as_ref().filter(|computing| !*computing.done.borrow()) {
                if freshness.accepts(computing.version, computing.started) {
                    return Lookup::Wait(computing.done.clone());
                }
            }
            slot.computing = Some(Computing { ticket: id, version: freshness.current, started: freshness.now, done: receiver });
            return Lookup::Compute(ticket);
        }
        if slots.by_key.len() >= self.capacity || slots.bytes > MAX_KEPT_BYTES {
            // Only computations under way stay; a failed one (a 404, a 400) leaves nothing behind.
            slots.by_key.retain(|_, slot| {
                slot.ready = None;
                slot.computing.as_ref().is_some_and(|computing| !*computing.done.borrow())
            });
            slots.bytes = 0;
        }
        let computing = Computing { ticket: id, version: freshness.current, started: freshness.now, done: receiver };
        slots.by_key.insert(key.to_owned(), Slot { ready: None, computing: Some(computing) });
        Lookup::Compute(ticket)
    }

    /// Keeps `answer` as the ticket's URL's answer, unless a newer one is already kept, and
    /// releases the waiters.
    pub(crate) fn store(&self, ticket: Ticket, answer: A) {
        let mut guard = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slots = &mut *guard;
        if let Some(slot) = slots.by_key.get_mut(&ticket.key) {
            if slot.computing.as_ref().is_some_and(|computing| computing.ticket == ticket.id) {
                slot.computing = None;
            }
            let newer_kept = slot.ready.as_ref().is_some_and(|kept| kept.version > ticket.version || kept.started > ticket.started);
            if !newer_kept {
                let added = answer.bytes();
                let replaced = slot.ready.replace(Kept { version: ticket.version, started: ticket.started, answer }).map_or(0, |kept| kept.answer.bytes());
                slots.bytes = (slots.bytes + added).saturating_sub(replaced);
            }
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

/// The tolerance a request states in `Cache-Control` (`no-cache` and `max-age=0` want the newest
/// commit, `max-age=N` accepts `N` seconds), or `default`.
pub(crate) fn tolerance_of(headers: &HeaderMap, default: Duration) -> Duration {
    // HTTP/1.0's way, when no Cache-Control says otherwise.
    let pragma_no_cache =
        headers.get(header::PRAGMA).and_then(|value| value.to_str().ok()).is_some_and(|value| value.to_ascii_lowercase().contains("no-cache"));
    if pragma_no_cache && !headers.contains_key(header::CACHE_CONTROL) {
        return Duration::ZERO;
    }
    let mut tolerance = default;
    for value in headers.get_all(header::CACHE_CONTROL).filter_map(|value| value.to_str().ok()) {
        for directive in value.split(',').map(str::trim) {
            if directive.eq_ignore_ascii_case("no-cache") {
                tolerance = Duration::ZERO;
            } else if let Some(seconds) = directive
                .split_once('=')
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("max-age"))
                .and_then(|(_, value)| value.trim().parse::<u64>().ok())
            {
                tolerance = tolerance.min(Duration::from_secs(seconds));
            }
        }
    }
    tolerance
}

/// Runs `compute` for `key` unless an answer `freshness` accepts is kept or being computed; at
/// most one computation per core runs at a time (`turns`). For answers that are not a whole HTTP
/// response (the database part of `/api/stats`).
pub(crate) async fn reuse_or_compute<A, E, F, Fut>(
    cache: &AnswerCache<A>,
    turns: &tokio::sync::Semaphore,
    key: &str,
    freshness: Freshness,
    compute: F,
) -> Result<A, E>
where
    A: Clone + Weigh,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<A, E>>,
{
    loop {
        match cache.lookup(key, freshness) {
            Lookup::Hit(answer, _) => return Ok(answer),
            Lookup::Wait(done) => wait(done).await,
            Lookup::Compute(ticket) => {
                let turn = turns.acquire().await.ok();
                let answer = compute().await?;
                drop(turn);
                cache.store(ticket, answer.clone());
                return Ok(answer);
            }
        }
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
    pub cache: Arc<AnswerCache<Answer>>,
    pub board: Arc<StatusBoard>,
    /// How old an answer may be served to a request that states no tolerance.
    pub max_staleness: Duration,
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
            max_staleness: self.max_staleness,
        }))
    }
}

/// [`ReuseAnswers`] around one worker's service.
pub(crate) struct ReuseAnswersService<S> {
    service: Rc<S>,
    cache: Arc<AnswerCache<Answer>>,
    board: Arc<StatusBoard>,
    computing: Arc<tokio::sync::Semaphore>,
    max_staleness: Duration,
}

/// `answer` as a `200` with its validator, gzipped when the client accepts it; revalidated by the
/// client on every use.
fn answer_response(answer: &Answer, tag: &str, gzip: bool) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    if let Some(content_type) = &answer.content_type {
        response.insert_header((header::CONTENT_TYPE, content_type.clone()));
    }
    if let Ok(tag) = HeaderValue::from_str(tag) {
        response.insert_header((header::ETAG, tag));
    }
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")));
    response.insert_header((header::VARY, HeaderValue::from_static("accept-encoding")));
    if gzip && answer.body.len() >= GZIP_FROM_BYTES {
        response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        return response.body(answer.gzipped().clone());
    }
    // Set, so that the compression of the other routes leaves it as it is.
    response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("identity"))).body(answer.body.clone())
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
        let tolerance = tolerance_of(request.headers(), self.max_staleness);
        let gzip = accepts_gzip(request.headers());
        Box::pin(async move {
            if !crate::revalidation::is_versioned(request.method(), request.path()) {
                return Ok(service.call(request).await?.map_into_boxed_body());
            }
            let key = request.uri().path_and_query().map_or_else(|| request.path().to_owned(), |path| path.as_str().to_owned());
            let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
            let unchanged =
                |request: ServiceRequest, tag: String| Ok(request.into_response(HttpResponse::NotModified().insert_header((header::ETAG, tag)).finish()));
            let freshness = Freshness { current: crate::revalidation::version_for(&board, request.path()), tolerance, now: Instant::now() };
            let current_tag = crate::revalidation::tag_of(freshness.current);
            if crate::revalidation::not_modified(if_none_match.as_ref(), &current_tag) {
                return unchanged(request, current_tag);
            }
            loop {
                match cache.lookup(&key, freshness) {
                    Lookup::Hit(answer, version) => {
                        // The tag names the version the answer was computed at, so a client
                        // holding it is told 304 for as long as that answer is served.
                        let tag = crate::revalidation::tag_of(version);
                        if crate::revalidation::not_modified(if_none_match.as_ref(), &tag) {
                            return unchanged(request, tag);
                        }
                        board.metrics.api_answers_reused.inc();
                        return Ok(request.into_response(answer_response(&answer, &tag, gzip)));
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
                        let answer = Answer::new(body, content_type);
                        let response = answer_response(&answer, &current_tag, gzip);
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
        Answer::new(Bytes::from_static(text.as_bytes()), None)
    }

    /// A request at `current` wanting the newest commit, at `now`.
    fn exact(current: u64, now: Instant) -> Freshness {
        Freshness { current, tolerance: Duration::ZERO, now }
    }

    #[test]
    fn an_exact_request_is_answered_at_its_version_only() {
        let cache = AnswerCache::new(8);
        let now = Instant::now();
        let Lookup::Compute(ticket) = cache.lookup("/api/usage", exact(3, now)) else { panic!("the first request computes") };
        assert!(matches!(cache.lookup("/api/usage", exact(3, now)), Lookup::Wait(_)), "the same request at the same version waits");
        cache.store(ticket, answer("three"));
        assert!(matches!(cache.lookup("/api/usage", exact(3, now)), Lookup::Hit(found, 3) if found.body == "three"));
        assert!(matches!(cache.lookup("/api/usage", exact(4, now)), Lookup::Compute(_)), "a commit makes it stale");
        assert!(matches!(cache.lookup("/api/usage?by=day", exact(3, now)), Lookup::Compute(_)), "another query is another answer");
    }

    #[test]
    fn within_the_tolerance_an_older_answer_is_served_and_past_it_one_request_computes() {
        let cache = AnswerCache::new(8);
        let begun = Instant::now();
        let Lookup::Compute(ticket) = cache.lookup("/api/sessions", exact(1, begun)) else { panic!() };
        cache.store(ticket, answer("one"));
        let tolerant = |current, after_ms| Freshness { current, tolerance: Duration::from_millis(250), now: begun + Duration::from_millis(after_ms) };
        assert!(matches!(cache.lookup("/api/sessions", tolerant(5, 200)), Lookup::Hit(found, 1) if found.body == "one"), "four commits later, 200 ms on");
        assert!(
            matches!(cache.lookup("/api/sessions", exact(5, begun + Duration::from_millis(200))), Lookup::Compute(_)),
            "unless the request wants the newest"
        );
        let Lookup::Compute(refresh) = cache.lookup("/api/sessions", tolerant(6, 300)) else { panic!("past the tolerance, computed anew") };
        assert!(matches!(cache.lookup("/api/sessions", tolerant(7, 310)), Lookup::Wait(_)), "a computation begun 10 ms ago is fresh enough to wait for");
        cache.store(refresh, answer("six"));
        assert!(matches!(cache.lookup("/api/sessions", tolerant(7, 320)), Lookup::Hit(found, 6) if found.body == "six"));
    }

    #[test]
    fn an_older_computation_never_replaces_a_newer_answer_and_an_abandoned_one_releases_its_waiters() {
        let cache = AnswerCache::new(8);
        let now = Instant::now();
        let Lookup::Compute(old) = cache.lookup("/api/sessions", exact(1, now)) else { panic!() };
        let Lookup::Compute(new) = cache.lookup("/api/sessions", exact(2, now)) else { panic!() };
        assert!(matches!(cache.lookup("/api/sessions", exact(1, now)), Lookup::Wait(_)), "a late request waits for the newer one");
        cache.store(new, answer("new"));
        cache.store(old, answer("old"));
        assert!(matches!(cache.lookup("/api/sessions", exact(2, now)), Lookup::Hit(found, 2) if found.body == "new"), "the older answer did not replace it");
        let Lookup::Compute(abandoned) = cache.lookup("/api/sessions", exact(3, now)) else { panic!() };
        let Lookup::Wait(mut waiting) = cache.lookup("/api/sessions", exact(3, now)) else { panic!("version 3 is being computed") };
        drop(abandoned);
        assert!(*waiting.borrow_and_update(), "dropping the ticket releases the waiters");
        assert!(matches!(cache.lookup("/api/sessions", exact(3, now)), Lookup::Compute(_)), "and the next one computes");
    }

    #[test]
    fn with_no_room_every_request_computes() {
        let cache = AnswerCache::new(0);
        let now = Instant::now();
        let Lookup::Compute(ticket) = cache.lookup("/api/usage", exact(1, now)) else { panic!() };
        assert!(matches!(cache.lookup("/api/usage", exact(1, now)), Lookup::Compute(_)), "nobody waits");
        cache.store(ticket, answer("x"));
        assert!(matches!(cache.lookup("/api/usage", exact(1, now)), Lookup::Compute(_)), "nothing is kept");
    }

    #[test]
    fn the_number_of_kept_answers_is_bounded() {
        let now = Instant::now();
        let cache = AnswerCache::new(2);
        for key in ["/a", "/b", "/c"] {
            let Lookup::Compute(ticket) = cache.lookup(key, exact(1, now)) else { panic!() };
            cache.store(ticket, answer("x"));
        }
        assert!(cache.slots.lock().unwrap().by_key.len() <= 2);
        let big = AnswerCache::new(8);
        for key in ["/x", "/y"] {
            let Lookup::Compute(ticket) = big.lookup(key, exact(1, now)) else { panic!() };
            big.store(ticket, Answer::new(Bytes::from(vec![0u8; MAX_KEPT_BYTES / 2 + 1]), None));
        }
        let Lookup::Compute(_) = big.lookup("/z", exact(1, now)) else { panic!() };
        assert!(big.slots.lock().unwrap().bytes == 0, "over the byte bound, the kept answers go");
    }

    #[test]
    fn gzip_is_offered_to_clients_that_accept_it_and_made_once_per_answer() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br, zstd") && with("*") && with("br;q=1.0, gzip;q=0.5"));
        assert!(!with("br") && !with("gzip;q=0") && !with("identity") && !accepts_gzip(&HeaderMap::new()));
        assert!(!with("*, gzip;q=0"), "named and refused, whatever * says");
        let answer = Answer::new(Bytes::from("{\"x\":1}".repeat(400)), None);
        let copy = answer.clone();
        let gzipped = answer.gzipped().clone();
        assert!(gzipped.len() < answer.body.len() / 10);
        assert!(std::ptr::eq(copy.gzipped().as_ptr(), gzipped.as_ptr()), "a clone of a kept answer shares its gzipped body");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut text).unwrap();
        assert_eq!(text.as_bytes(), &answer.body[..]);
    }

    #[test]
    fn a_request_states_its_tolerance_in_cache_control() {
        let default = Duration::from_millis(250);
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
            tolerance_of(&headers, default)
        };
        assert_eq!(tolerance_of(&HeaderMap::new(), default), default);
        assert_eq!(with("no-cache"), Duration::ZERO);
        assert_eq!(with("max-age=0"), Duration::ZERO);
        assert_eq!(with("Max-Age=60"), default, "a longer allowance than the daemon's changes nothing");
        assert_eq!(with("no-store, max-age=0"), Duration::ZERO);
        assert_eq!(with("max-stale"), default);
        let mut pragma = HeaderMap::new();
        pragma.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert_eq!(tolerance_of(&pragma, default), Duration::ZERO, "HTTP/1.0's Pragma, without Cache-Control");
    }
}
