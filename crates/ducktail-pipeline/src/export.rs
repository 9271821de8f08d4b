//! The exports inside `ducktail run`: the OtlpExporter actor (live OTLP traces) and the
//! scheduled Parquet export. Both only read the database through their own reader; what was
//! sent over OTLP is recorded by the Writer ([`RecordSentSpans`]). Neither ever holds up the
//! indexing pipeline: they run on their own threads, keep no queue of their own (what waits is
//! in the database: final spans not in `otlp_sent`), and a backend that is down is retried with
//! a doubling backoff up to `export.otlp.max_backoff`.
//!
//! The OtlpExporter learns which sessions changed from the TraceBuilder (every commit's
//! touched sessions pass through it), maps them to their root sessions, and exports those trees
//! on its next tick; roots with spans not final yet are looked at again on later ticks (a turn
//! becomes final when the agent moves on or the session goes idle). Its first ticks walk every
//! root session, page by page: that is the catch-up after a restart or an outage.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use ducktail_export::otlp::{self, BuildOptions, OtlpError, OtlpSender, OtlpTarget, PassReport, SentLedger};
use ducktail_export::parquet::{ParquetError, ParquetOptions, ParquetReport};
use ducktail_store::{Reader, ReaderPool, SentSpan};

use crate::settings::Settings;
use crate::status::StatusBoard;
use crate::supervision::{catch_panic, Faults};
use crate::Links;

/// How long the exporter waits for the Writer to record a sent batch.
const RECORD_TIMEOUT: Duration = Duration::from_secs(60);
/// Root sessions per tick of the catch-up walk.
const CATCH_UP_PAGE: usize = 200;

fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn unix_us_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as i64)
}

/// The OTLP target from `[export]` and the `OTEL_EXPORTER_OTLP_*` environment; the error names
/// the key and the fix.
pub fn otlp_target(settings: &Settings) -> Result<OtlpTarget, String> {
    let config = &settings.export.otlp;
    let environment = |key: &str| std::env::var(key).ok();
    otlp::check_protocol(&config.protocol, environment).map_err(|error| error.to_string())?;
    let mut headers = Vec::new();
    for key in [otlp::environment::HEADERS, otlp::environment::TRACES_HEADERS] {
        if let Ok(text) = std::env::var(key) {
            headers.extend(otlp::parse_headers(&text).map_err(|error| format!("{key}: {error}"))?);
        }
    }
    headers.extend(config.headers.iter().map(|(key, value)| (key.clone(), value.clone())));
    let timeout = if config.timeout.is_zero() {
        [otlp::environment::TRACES_TIMEOUT, otlp::environment::TIMEOUT]
            .iter()
            .find_map(|key| std::env::var(key).ok()?.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis)
    } else {
        config.timeout
    };
    Ok(OtlpTarget {
        traces_url: otlp::traces_url(&config.endpoint, environment),
        headers,
        timeout,
        service_name: config.service_name.clone(),
        machine: machine_name(settings),
        max_batch: config.max_batch,
    })
}

/// `[export] machine`, else `user@host`.
pub fn machine_name(settings: &Settings) -> String {
    if settings.export.machine.is_empty() {
        ducktail_export::default_machine_name()
    } else {
        settings.export.machine.clone()
    }
}

/// What span building takes from `[export.otlp]`, at `now`.
pub fn build_options(settings: &Settings) -> BuildOptions {
    let config = &settings.export.otlp;
    BuildOptions {
        now_us: unix_us_now(),
        idle_final_us: config.idle_final.as_micros() as i64,
        capture_content: config.capture_content,
        max_content_bytes: config.max_content_bytes,
    }
}

/// OtlpExporter → Writer, tell with a reply channel. Record spans a backend acknowledged. The reply
/// goes through a channel because the exporter waits for it on its own thread.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordSentSpans {
    /// The spans.
    pub spans: Vec<SentSpan>,
    /// Where the outcome goes.
    pub reply: mpsc::Sender<Result<(), String>>,
}

/// The Writer as a [`SentLedger`]: each record is one message and one transaction.
struct WriterLedger {
    links: Arc<Links>,
}

impl SentLedger for WriterLedger {
    fn record(&mut self, spans: &[SentSpan]) -> Result<(), String> {
        let (reply, outcome) = mpsc::channel();
        self.links.writer().do_send(RecordSentSpans { spans: spans.to_vec(), reply });
        outcome.recv_timeout(RECORD_TIMEOUT).map_err(|_| "the writer did not answer".to_owned())?
    }
}

/// TraceBuilder → OtlpExporter, tell. Sessions whose records changed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SessionsChanged(pub BTreeSet<String>);

/// Timer → OtlpExporter, tell. Export what became final, if the backoff allows.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ExportTick;

/// HTTP API → OtlpExporter, ask. Backfill every root session created at or after `since_us`.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<PassReport, String>")]
pub struct Backfill {
    /// µs since the epoch; `None` for all.
    pub since_us: Option<i64>,
}

/// One sync actor on its own thread: building spans and HTTP requests block.
pub struct OtlpExporter {
    readers: ReaderPool,
    reader: Option<Reader>,
    sender: OtlpSender,
    settings: Settings,
    links: Arc<Links>,
    board: Arc<StatusBoard>,
    faults: Arc<Faults>,
    /// Sessions changed since the last successful pass.
    dirty: BTreeSet<String>,
    /// Roots whose trees had spans not final at their last pass.
    waiting: BTreeSet<String>,
    /// The catch-up walk's position: `Some(after)` while it runs (`Some(None)`: from the start).
    catch_up: Option<Option<String>>,
    /// No attempt before this (backoff after a failure).
    next_attempt: Instant,
    /// The current backoff; zero while the backend answers.
    backoff: Duration,
}

impl OtlpExporter {
    /// An exporter for `target`; every incarnation starts with the catch-up walk.
    pub fn new(settings: Settings, target: OtlpTarget, readers: ReaderPool, links: Arc<Links>, board: Arc<StatusBoard>, faults: Arc<Faults>) -> OtlpExporter {
        board.update_otlp(|state| {
            state.enabled = true;
            state.endpoint = target.traces_url.clone();
            state.caught_up = false;
        });
        OtlpExporter {
            readers,
            reader: None,
            sender: OtlpSender::new(target),
            settings,
            links,
            board,
            faults,
            dirty: BTreeSet::new(),
            waiting: BTreeSet::new(),
            catch_up: Some(None),
            next_attempt: Instant::now(),
            backoff: Duration::ZERO,
        }
    }

    fn reader(&mut self) -> Result<&Reader, OtlpError> {
        Ok(open_reader(&mut self.reader, &self.readers)?)
    }

    /// One pass over `roots`.
    fn export(&mut self, roots: &[String]) -> Result<PassReport, OtlpError> {
        let options = build_options(&self.settings);
        let mut ledger = WriterLedger { links: self.links.clone() };
        let reader = open_reader(&mut self.reader, &self.readers)?;
        otlp::export_roots(reader, roots, &self.sender, &mut ledger, &options)
    }

    /// Records a pass's outcome on the board and sets the backoff. Only a backend that does not
    /// answer (or refuses) counts as the backend failing; a database error is retried the same
    /// way but reported as what it is.
    fn note(&mut self, outcome: &Result<PassReport, OtlpError>) {
        let metrics = &self.board.metrics;
        match outcome {
            Ok(report) => {
                self.backoff = Duration::ZERO;
                self.next_attempt = Instant::now();
                metrics.otlp_spans_sent.inc_by(report.sent as u64);
                metrics.otlp_backend_failing.set(0);
                self.board.update_otlp(|state| {
                    state.spans_sent += report.sent as u64;
                    state.not_final = report.pending as u64;
                    state.last_error = None;
                    state.retry_in_ms = None;
                    if report.requests > 0 || state.last_success_unix_ms.is_none() {
                        state.last_success_unix_ms = Some(unix_ms_now());
                    }
                });
            }
            Err(error) => {
                let interval = self.settings.export.otlp.interval;
                self.backoff = (self.backoff * 2).clamp(interval, self.settings.export.otlp.max_backoff);
                self.next_attempt = Instant::now() + self.backoff;
                let backend = matches!(error, OtlpError::Send { .. });
                if backend {
                    metrics.otlp_requests_failed.inc();
                    metrics.otlp_backend_failing.set(1);
                }
                tracing::warn!(%error, retry_in = ?self.backoff, "OTLP export failed; the spans wait in the database and are sent on a later attempt");
                self.board.update_otlp(|state| {
                    if backend {
                        state.requests_failed += 1;
                    }
                    state.last_error = Some(error.to_string());
                    state.retry_in_ms = Some(self.backoff.as_millis() as u64);
                });
            }
        }
    }

    /// Changed trees first (what a user just did), then one page of the catch-up walk. `None`
    /// when the backoff says to wait.
    fn tick(&mut self) -> Option<Result<PassReport, OtlpError>> {
        if Instant::now() < self.next_attempt {
            return None;
        }
        if self.backoff > Duration::ZERO {
            self.board.metrics.otlp_retries.inc();
            self.board.update_otlp(|state| state.retries += 1);
        }
        Some(self.changed_then_catch_up())
    }

    fn changed_then_catch_up(&mut self) -> Result<PassReport, OtlpError> {
        let mut report = PassReport::default();
        if !self.dirty.is_empty() || !self.waiting.is_empty() {
            let dirty: Vec<String> = self.dirty.iter().cloned().collect();
            let mut roots: BTreeSet<String> = self.reader()?.trace_roots_of(&dirty)?.into_iter().collect();
            roots.extend(self.waiting.iter().cloned());
            let roots: Vec<String> = roots.into_iter().collect();
            let changed = self.export(&roots)?;
            self.dirty.clear();
            self.waiting = changed.pending_roots.iter().cloned().collect();
            report.add(changed);
        }
        if let Some(after) = self.catch_up.clone() {
            let page = self.reader()?.trace_roots(None, after.as_deref(), CATCH_UP_PAGE)?;
            let Some(last) = page.last().cloned() else {
                self.catch_up = None;
                self.board.update_otlp(|state| state.caught_up = true);
                return Ok(report);
            };
            let walked = self.export(&page)?;
            self.waiting.extend(walked.pending_roots.iter().cloned());
            self.catch_up = Some(Some(last));
            report.add(walked);
        }
        Ok(report)
    }
}

/// The exporter's reader, opened on first use (and again after a failure dropped it).
fn open_reader<'reader>(slot: &'reader mut Option<Reader>, readers: &ReaderPool) -> Result<&'reader Reader, ducktail_store::StoreError> {
    if slot.is_none() {
        *slot = Some(readers.reader()?);
    }
    Ok(slot.as_ref().expect("set just above"))
}

impl Actor for OtlpExporter {
    type Context = SyncContext<Self>;
}

impl Handler<SessionsChanged> for OtlpExporter {
    type Result = ();
    fn handle(&mut self, message: SessionsChanged, _ctx: &mut Self::Context) {
        self.dirty.extend(message.0);
    }
}

impl Handler<ExportTick> for OtlpExporter {
    type Result = ();
    fn handle(&mut self, _tick: ExportTick, ctx: &mut Self::Context) {
        let (board, faults) = (self.board.clone(), self.faults.clone());
        match catch_panic("otlp_exporter", &board, || {
            faults.maybe_panic("otlp_exporter", &board);
            self.tick()
        }) {
            Some(None) => {}
            Some(Some(outcome)) => {
                // A failed read drops the reader: the next attempt opens a new one.
                if outcome.is_err() {
                    self.reader = None;
                }
                self.note(&outcome);
            }
            // The SyncArbiter starts a fresh exporter, which walks every session again.
            None => ctx.stop(),
        }
    }
}

impl Handler<Backfill> for OtlpExporter {
    type Result = Result<PassReport, String>;
    fn handle(&mut self, backfill: Backfill, ctx: &mut Self::Context) -> Self::Result {
        let board = self.board.clone();
        let outcome = catch_panic("otlp_exporter", &board, || {
            let options = build_options(&self.settings);
            let mut ledger = WriterLedger { links: self.links.clone() };
            let reader = open_reader(&mut self.reader, &self.readers)?;
            let outcome = otlp::export_all(reader, backfill.since_us, &self.sender, &mut ledger, &options);
            self.note(&outcome);
            outcome
        });
        match outcome {
            Some(outcome) => outcome.map_err(|error| error.to_string()),
            None => {
                ctx.stop();
                Err("the OTLP exporter failed and restarts; nothing sent is lost, ask again".to_owned())
            }
        }
    }
}

/// One Parquet export at a time in this process: a scheduled run and one asked for over HTTP
/// would otherwise share temporary files and the manifest of the same folder.
static PARQUET_EXPORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the Parquet export on a pooled reader. A scheduled run's outcome goes on the board (a
/// failure degrades health until a run succeeds); one asked for answers its caller alone.
pub fn export_parquet_now(readers: &ReaderPool, options: &ParquetOptions, board: &StatusBoard, scheduled: bool) -> Result<ParquetReport, ParquetError> {
    let _one_at_a_time = PARQUET_EXPORTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let outcome = readers.reader().map_err(ParquetError::from).and_then(|reader| ducktail_export::parquet::export_parquet(&reader, options));
    board.update_parquet(|state| {
        state.dir = Some(options.dir.display().to_string());
        state.last_run_unix_ms = Some(unix_ms_now());
        state.last_run_ms = Some(started.elapsed().as_millis() as u64);
        match &outcome {
            Ok(report) => {
                state.runs += 1;
                state.rows_written += report.rows_written() as u64;
                if scheduled {
                    state.last_error = None;
                }
            }
            Err(error) if scheduled => state.last_error = Some(error.to_string()),
            Err(_) => {}
        }
    });
    match &outcome {
        Ok(report) => board.metrics.parquet_rows_written.inc_by(report.rows_written() as u64),
        Err(error) => {
            board.metrics.parquet_export_failures.inc();
            tracing::warn!(%error, dir = %options.dir.display(), "the Parquet export failed");
        }
    }
    outcome
}
