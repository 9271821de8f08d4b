//! Claude Code transcripts: `ducktail index --claude` on generated transcripts, cold and again
//! with nothing changed, beside listing the tree and beside a report that re-reads everything;
//! and `ducktail run` following one large transcript, from the write of a line to its row being
//! visible. Prints rows of the suite's table (see `benches/suite.sh`).
//!
//! ```text
//! cargo bench --workspace --bench transcripts                                 # 10,000 transcripts, a 500 MB tail
//! DUCKTAIL_BENCH_SMOKE=1 cargo bench --workspace --bench transcripts          # small sizes, under a minute
//! ```
//!
//! Sizes come from the environment (`DUCKTAIL_BENCH_SMOKE=1` makes every default small):
//! `DUCKTAIL_BENCH_TRANSCRIPTS` transcripts (10,000; smoke 200), `DUCKTAIL_BENCH_TAIL_MB` the
//! followed transcript's size (500; smoke 8), `DUCKTAIL_BENCH_TAIL_RATE` lines appended a second
//! (1,000) for `DUCKTAIL_BENCH_TAIL_SECONDS` (10; smoke 3). Trees and databases go in a temp dir
//! under `$CARGO_TARGET_DIR/bench-trees/`, removed at the end.
//!
//! On the same seeded tree (`ducktail_generator::transcripts`, 1 to 120 responses a session,
//! log-uniform), side by side:
//! * a cold `ducktail index --claude DIR --opencode <missing> --db …`: wall time, transcripts,
//!   lines and MB a second, peak RSS; the database's tokens are checked against the generator's;
//! * the same command again with nothing changed, beside listing and stat-ing the tree in this
//!   process (walkdir): the goal is that a re-run costs no more than the listing; beside it, the
//!   command on an empty folder, what any run costs before it looks at a file;
//! * the baseline: a report that re-reads every file, parses every line with serde_json and
//!   adds up each response's usage once by `message.id`, on one thread, as report tools that keep
//!   no index do on every run;
//! * the tail: a daemon (`benches/support/daemon.rs`, SQL API on) follows one large transcript;
//!   once it has caught up and gone idle, single lines (each a whole response) are appended at a
//!   steady rate. A thread woken by every commit on `GET /api/events` asks `POST /api/sql` for
//!   the transcript's `read_offset` (committed in the same transaction as the rows, so a line is
//!   visible once the offset passes its end); a line's latency runs from the return of its
//!   `write` to the answer that first shows it — an upper bound, by one SQL round trip.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ducktail_generator::transcripts::{generate_claude_transcripts, TokenTotals, TranscriptConfig, TranscriptTotals};

#[path = "support/daemon.rs"]
mod daemon;
use daemon::wait_until;
#[path = "support/suite.rs"]
mod suite;

/// As in the `ducktail` binary, so the baseline runs on the allocator `index` has.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    transcripts: usize,
    tail_bytes: u64,
    tail_rate: u64,
    tail_seconds: u64,
    header: bool,
}

fn options() -> Options {
    let smoke = std::env::var("DUCKTAIL_BENCH_SMOKE").is_ok_and(|value| !value.is_empty() && value != "0");
    let number = |name: &str, default: u64, smoke_default: u64| -> u64 {
        match std::env::var(name) {
            Ok(value) => value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a whole number, not {value:?}")),
            Err(_) if smoke => smoke_default,
            Err(_) => default,
        }
    };
    Options {
        transcripts: number("DUCKTAIL_BENCH_TRANSCRIPTS", 10_000, 200) as usize,
        tail_bytes: number("DUCKTAIL_BENCH_TAIL_MB", 500, 8) * 1_000_000,
        tail_rate: number("DUCKTAIL_BENCH_TAIL_RATE", 1_000, 1_000),
        tail_seconds: number("DUCKTAIL_BENCH_TAIL_SECONDS", 10, 3),
        // `cargo bench` passes --bench; anything else but --no-header is ignored.
        header: !std::env::args().any(|argument| argument == "--no-header"),
    }
}

fn main() {
    let options = options();
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let parent = target.join("bench-trees");
    std::fs::create_dir_all(&parent).expect("create the bench-trees folder");
    let scratch = tempfile::Builder::new().prefix("transcripts-").tempdir_in(&parent).expect("a temp dir for the transcripts");
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());

    let claude = scratch.path().join("claude");
    let started = Instant::now();
    let config = TranscriptConfig { seed: 42, sessions: options.transcripts, ..TranscriptConfig::default() };
    let tree = generate_claude_transcripts(&claude, &config).expect("generate the transcripts").totals;
    eprintln!(
        "generated {} transcripts, {} lines, {:.0} MB, {} responses in {:.1} s",
        tree.transcripts,
        tree.lines,
        tree.bytes as f64 / 1e6,
        tree.responses,
        started.elapsed().as_secs_f64()
    );
    if options.header {
        suite::print_header(&format!(
            "{cores} cores; {} transcripts, {} lines, {:.0} MB, warm page cache; tail: one {:.0} MB transcript, the database on disk",
            tree.transcripts,
            tree.lines,
            tree.bytes as f64 / 1e6,
            options.tail_bytes as f64 / 1e6
        ));
    }
    index_rows(scratch.path(), &claude, &tree);
    tail_rows(scratch.path(), &options);
}

// ---------------------------------------------------------------------------------------------
// Indexing the tree

fn index_rows(scratch: &Path, claude: &Path, tree: &TranscriptTotals) {
    let files = list_files(claude);
    assert_eq!(files.len(), tree.transcripts, "the tree holds what was generated");
    // The first pass warms the page cache for everything after it.
    let _ = reread_report(&files);
    let (report, report_totals) = reread_report(&files);
    if report_totals != (tree.responses, tree.tokens) {
        eprintln!("warning: the re-read report counted {report_totals:?}, the generator wrote {} responses, {:?}", tree.responses, tree.tokens);
    }
    let listing = (0..3).map(|_| list_and_stat(claude)).min().expect("three listings");
    let relative_listing = (0..3).map(|_| list_and_stat_relative(claude)).min().expect("three listings");

    let missing_opencode = scratch.join("no-opencode");
    let db = scratch.join("transcripts.duckdb");
    let (cold, peak_kib, cold_summary) = run_index(claude, &missing_opencode, &db);
    eprintln!("cold index:\n{cold_summary}");
    check_database(&db, tree);
    let (unchanged, _, unchanged_summary) = run_index(claude, &missing_opencode, &db);
    eprintln!("unchanged index:\n{unchanged_summary}");
    // What any run costs before it looks at a file: the process, opening DuckDB, the checkpoint.
    let empty = scratch.join("empty-claude");
    std::fs::create_dir_all(empty.join("projects")).expect("an empty Claude Code folder");
    let empty_db = scratch.join("empty.duckdb");
    let _ = run_index(&empty, &missing_opencode, &empty_db);
    let (fixed, _, _) = run_index(&empty, &missing_opencode, &empty_db);

    let count = tree.transcripts;
    let cold_s = cold.as_secs_f64();
    let reread = "re-read report: read + serde_json every line, tokens once per message.id, 1 thread";
    let workload = "transcripts: cold `ducktail index --claude`";
    suite::row(workload, count, "wall s", cold_s, reread, Some(report.as_secs_f64()), "");
    suite::row(workload, count, "transcripts/s", count as f64 / cold_s, "", None, "");
    suite::row(workload, count, "lines/s", tree.lines as f64 / cold_s, "", None, "");
    suite::row(workload, count, "MB/s", tree.bytes as f64 / 1e6 / cold_s, "", None, "");
    suite::row(workload, count, "peak RSS MB", peak_kib as f64 / 1024.0, "", None, "");
    let workload = "transcripts: `ducktail index --claude`, nothing changed";
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    suite::row(workload, count, "wall ms", ms(unchanged), "list + stat the tree (walkdir, in this process)", Some(ms(listing)), "≤ 1×");
    suite::row(workload, count, "wall ms", ms(unchanged), "the same on an empty folder (process start, DuckDB open, checkpoint)", Some(ms(fixed)), "");
    suite::row(workload, count, "wall ms", ms(unchanged), reread, Some(ms(report)), "");
    let look = daemon_look(claude, &db);
    let workload = "transcripts: `ducktail run`'s periodic look, nothing changed (in this process)";
    suite::row(workload, count, "wall ms", ms(look), "list + stat the tree (walkdir, in this process)", Some(ms(listing)), "≤ 1×");
    suite::row(workload, count, "wall ms", ms(look), "list + stat the tree (std read_dir, stat by name in its folder)", Some(ms(relative_listing)), "");
}

/// The running daemon's periodic look at the unchanged tree: the follower's own algorithm
/// (`sync_transcripts`) with its view loaded from the database, in this process. Nothing is read
/// or written; the best of three.
fn daemon_look(claude: &Path, db: &Path) -> Duration {
    use ducktail_pipeline::transcripts::{decode_context, sync_transcripts, transcript_sources, transcript_view};
    let claude = std::fs::canonicalize(claude).expect("the Claude Code tree");
    let reader = ducktail_store::Reader::open_read_only(db).expect("open the database read-only");
    let states = reader.transcript_files("claude_code").expect("read positions");
    drop(reader);
    let mut settings = ducktail_pipeline::settings::Settings::default();
    settings.sources.claude_code.paths = vec![claude];
    settings.sources.claude_code.explicit = true;
    settings.sources.codex.enabled = false;
    let sources = transcript_sources(&settings).expect("the Claude Code folder");
    let context = decode_context(&settings).expect("the shipped prices");
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let mut view = transcript_view(states.clone());
        let started = Instant::now();
        let summary =
            sync_transcripts(&sources[0], &mut view, &context, None, &mut |_| Err("an unchanged tree writes nothing".to_owned())).expect("nothing to write");
        best = best.min(started.elapsed());
        assert_eq!((summary.stretches, summary.removed), (0, 0), "the tree is unchanged");
    }
    best
}

fn list_files(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root).into_iter().filter_map(Result::ok).filter(|entry| entry.file_type().is_file()).map(|entry| entry.into_path()).collect()
}

/// What the unchanged re-run must at least do: list the folders and stat every file, as walkdir
/// does it (each file stat-ed by its whole path).
fn list_and_stat(root: &Path) -> Duration {
    let started = Instant::now();
    let mut bytes = 0u64;
    for entry in walkdir::WalkDir::new(root).follow_links(false).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_file() {
            bytes += entry.metadata().map_or(0, |metadata| metadata.len());
        }
    }
    assert!(bytes > 0, "the tree is not empty");
    started.elapsed()
}

/// The same listing the cheapest way std offers: `read_dir`, each file stat-ed by its name in
/// the folder it has open.
fn list_and_stat_relative(root: &Path) -> Duration {
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a folder of the tree").filter_map(Result::ok) {
            let Ok(file_type) = entry.file_type() else { continue };
            if file_type.is_dir() {
                folders.push(entry.path());
            } else if file_type.is_file() {
                bytes += entry.metadata().map_or(0, |metadata| metadata.len());
            }
        }
    }
    assert!(bytes > 0, "the tree is not empty");
    started.elapsed()
}

/// The baseline: a usage report that keeps no index reads every transcript on every run, parses
/// every line and adds up each response's usage once (Claude Code repeats a response's usage on
/// the line of each of its content blocks). Returns its time, responses and tokens.
fn reread_report(files: &[PathBuf]) -> (Duration, (u64, TokenTotals)) {
    let started = Instant::now();
    let mut seen: HashSet<String> = HashSet::new();
    let mut tokens = TokenTotals::default();
    for path in files {
        let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        for line in bytes.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()) {
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            if value["type"] != "assistant" {
                continue;
            }
            let message = &value["message"];
            let Some(id) = message["id"].as_str() else { continue };
            if !seen.insert(id.to_owned()) {
                continue;
            }
            let usage = &message["usage"];
            let count = |key: &str| usage[key].as_u64().unwrap_or(0);
            tokens.input += count("input_tokens");
            tokens.cache_creation += count("cache_creation_input_tokens");
            tokens.cache_read += count("cache_read_input_tokens");
            tokens.output += count("output_tokens");
            tokens.thinking += usage["output_tokens_details"]["thinking_tokens"].as_u64().unwrap_or(0);
        }
    }
    (started.elapsed(), (seen.len() as u64, tokens))
}

/// Runs `ducktail index --claude … --opencode … --db …` (the agents' default folders pointed
/// nowhere) and returns its wall time, peak RSS in KiB (sampled from /proc) and its summary.
fn run_index(claude: &Path, opencode: &Path, db: &Path) -> (Duration, u64, String) {
    // The previous step's writes are still being written back; flushed first so that I/O is not
    // timed as this run's.
    let _ = Command::new("sync").status();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ducktail"))
        .arg("index")
        .arg("--claude")
        .arg(claude)
        .arg("--opencode")
        .arg(opencode)
        .arg("--db")
        .arg(db)
        .env("XDG_CONFIG_HOME", "/nonexistent-ducktail-bench-config")
        .env("CLAUDE_CONFIG_DIR", "/nonexistent-ducktail-bench-claude")
        .env("CODEX_HOME", "/nonexistent-ducktail-bench-codex")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ducktail index");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(line) = status.lines().find(|line| line.starts_with("VmHWM:")) {
                peak_kib = peak_kib.max(line.split_whitespace().nth(1).and_then(|value| value.parse().ok()).unwrap_or(0));
            }
        }
        if let Some(status) = child.try_wait().expect("wait for index") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let mut summary = String::new();
    child.stdout.take().expect("piped stdout").read_to_string(&mut summary).expect("read the summary");
    assert!(status.success(), "ducktail index failed:\n{summary}");
    (elapsed, peak_kib, summary)
}

/// The database holds one assistant message per generated response, with the same tokens.
fn check_database(db: &Path, tree: &TranscriptTotals) {
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).expect("a read-only config");
    let connection = duckdb::Connection::open_with_flags(db, config).expect("open the indexed database");
    let stored: [i64; 6] = connection
        .query_row(
            "SELECT count(*), coalesce(sum(tokens_input), 0)::BIGINT, coalesce(sum(tokens_cache_write), 0)::BIGINT,
                    coalesce(sum(tokens_cache_read), 0)::BIGINT, coalesce(sum(tokens_output), 0)::BIGINT,
                    coalesce(sum(tokens_reasoning), 0)::BIGINT
             FROM messages WHERE app = 'claude_code' AND role = 'assistant'",
            [],
            |row| Ok([row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?]),
        )
        .expect("sum the indexed tokens");
    let tokens = tree.tokens;
    let expected = [tree.responses, tokens.input, tokens.cache_creation, tokens.cache_read, tokens.output, tokens.thinking].map(|value| value as i64);
    if stored == expected {
        eprintln!("the database holds the generated responses and tokens: {stored:?}");
    } else {
        eprintln!("warning: responses, input, cache write, cache read, output, reasoning: database {stored:?}, generated {expected:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Following one large transcript

fn tail_rows(scratch: &Path, options: &Options) {
    let root = scratch.join("tail");
    let started = Instant::now();
    let config = TranscriptConfig { seed: 7, sessions: 1, grow_to_bytes: Some(options.tail_bytes), ..TranscriptConfig::default() };
    let mut generated = generate_claude_transcripts(&root, &config).expect("generate the large transcript");
    let mut transcript = generated.transcripts.pop().expect("one transcript");
    let path = transcript.path().to_owned();
    let size = std::fs::metadata(&path).expect("the transcript").len();
    eprintln!("generated a {:.0} MB transcript ({} lines) in {:.1} s", size as f64 / 1e6, transcript.totals().lines, started.elapsed().as_secs_f64());

    let daemon_config = format!("[http]\nsql_enabled = true\n\n[sources.claude_code]\npaths = [{}]\n", toml_string(&root));
    let started = Instant::now();
    let daemon = daemon::BenchDaemon::start(&scratch.join("no-opencode"), &scratch.join("tail.duckdb"), scratch, &daemon_config, Duration::from_secs(120));
    let base_url = daemon.base_url.clone();
    let offset_sql = format!("SELECT read_offset FROM transcript_files WHERE file_path = {}", sql_string(&path.display().to_string()));
    let read_offset = || sql_rows(&base_url, &offset_sql).first().and_then(|row| row[0].as_u64()).unwrap_or(0);
    wait_until("the daemon to read the whole transcript", Duration::from_secs(3_600), Duration::from_millis(50), || read_offset() >= size);
    let catch_up = started.elapsed();
    // The catch-up's derived work (traces, rollups) is done once the daemon's CPU stops moving,
    // and its write-ahead log folded in once the daemon's idle checkpoint ran (the WAL is then
    // under `database.idle_checkpoint_wal_bytes`, 4 MiB): otherwise the catch-up's WAL reaches
    // `database.wal_autocheckpoint` during the tail and a commit there carries its checkpoint
    // (260 ms on this transcript), a debt of the catch-up, not a cost of the lines appended.
    let stat = format!("/proc/{}/stat", daemon.pid());
    let wal = scratch.join("tail.duckdb.wal");
    let mut last = cpu_seconds(&stat);
    wait_until("the daemon to settle after the catch-up", Duration::from_secs(600), Duration::from_secs(1), || {
        let now = cpu_seconds(&stat);
        let settled = std::mem::replace(&mut last, now) + 0.02 > now;
        settled && std::fs::metadata(&wal).map_or(0, |metadata| metadata.len()) < 4 << 20
    });

    let commits = subscribe_commits(&base_url);
    let stop = Arc::new(AtomicBool::new(false));
    let observer = {
        let (stop, base_url, offset_sql) = (stop.clone(), base_url.clone(), offset_sql.clone());
        std::thread::spawn(move || observe_offsets(&base_url, &offset_sql, &commits, &stop))
    };
    let lines = (options.tail_rate * options.tail_seconds) as usize;
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("open the transcript for appending");
    let mut written: Vec<(Instant, u64)> = Vec::with_capacity(lines);
    let mut end = size;
    let mut line = Vec::with_capacity(4_096);
    let cpu_before = cpu_seconds(&stat);
    let commits_before = (metric(&base_url, "ducktail_batch_write_seconds_sum"), metric(&base_url, "ducktail_batch_write_seconds_count"));
    let writing = Instant::now();
    for index in 0..lines {
        line.clear();
        transcript.append_response_line(&mut line);
        // The pacing sleep is the workload, not synchronisation.
        let due = writing + Duration::from_secs_f64(index as f64 / options.tail_rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        file.write_all(&line).expect("append a line");
        end += line.len() as u64;
        written.push((Instant::now(), end));
    }
    let write_seconds = writing.elapsed().as_secs_f64();
    let final_size = end;
    let flushed = Instant::now();
    while read_offset() < final_size {
        assert!(flushed.elapsed() < Duration::from_secs(300), "the daemon did not read the appended lines within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let daemon_cpu = cpu_seconds(&stat) - cpu_before;
    let transaction_seconds = metric(&base_url, "ducktail_batch_write_seconds_sum") - commits_before.0;
    let transactions = metric(&base_url, "ducktail_batch_write_seconds_count") - commits_before.1;
    stop.store(true, Ordering::Relaxed);
    let observations = observer.join().expect("the observer thread");
    eprintln!("tail: {lines} lines appended in {write_seconds:.1} s, seen in {} steps of the read offset", observations.len().saturating_sub(1));

    let totals = transcript.totals();
    let stored = sql_rows(
        &base_url,
        &format!("SELECT count(*), sum(tokens_output)::BIGINT FROM messages WHERE role = 'assistant' AND session_id = {}", sql_string(transcript.session_id())),
    );
    let (messages, output) = (stored[0][0].as_u64().unwrap_or(0), stored[0][1].as_u64().unwrap_or(0));
    if (messages, output) != (totals.responses, totals.tokens.output) {
        eprintln!(
            "warning: the session has {messages} assistant messages with {output} output tokens; {} responses with {} were written",
            totals.responses, totals.tokens.output
        );
    }
    let own = get_json(&base_url, "/api/stats").map(|stats| stats["latency_ms"].clone()).unwrap_or_default();
    daemon.stop();

    let mut latencies: Vec<f64> = written
        .iter()
        .map(|(at, end)| {
            let seen = observations.iter().find(|(_, offset)| offset >= end).map(|(seen, _)| *seen).expect("every line was seen");
            seen.saturating_duration_since(*at).as_secs_f64() * 1e3
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |share: f64| latencies[((latencies.len() - 1) as f64 * share).round() as usize];
    let workload = format!(
        "transcripts: `ducktail run` following a {:.0} MB transcript, {} lines/s appended for {} s",
        size as f64 / 1e6,
        options.tail_rate,
        options.tail_seconds
    );
    suite::row_text(
        &workload,
        1,
        "write → row visible ms p50 / p95 / p99 / max",
        &format!("{:.1} / {:.1} / {:.1} / {:.1}", percentile(0.50), percentile(0.95), percentile(0.99), percentile(1.0)),
        "",
    );
    let ms = |key: &str| own[key].as_f64().unwrap_or(f64::NAN);
    suite::row_text(
        &workload,
        1,
        "the daemon's own event → commit ms p50 / p95 / p99 (`/api/stats`: its last 10,000 events, the catch-up's among them)",
        &format!("{:.1} / {:.1} / {:.1}", ms("p50"), ms("p95"), ms("p99")),
        "",
    );
    suite::row(&workload, 1, "lines/s written", lines as f64 / write_seconds, "", None, "");
    suite::row(&workload, 1, "daemon CPU µs per line", daemon_cpu * 1e6 / lines as f64, "", None, "");
    suite::row(&workload, 1, "commits", transactions, "", None, "");
    suite::row(&workload, 1, "ms per commit's transaction (mean)", transaction_seconds * 1e3 / transactions, "", None, "");
    suite::row(
        &format!("transcripts: `ducktail run` start on a {:.0} MB transcript until read", size as f64 / 1e6),
        1,
        "MB/s",
        size as f64 / 1e6 / catch_up.as_secs_f64(),
        "",
        None,
        "",
    );
}

/// The transcript's committed read offset, asked each time a commit is announced (and every
/// 100 ms besides, should a notice be missed), until `stop` is set; returns when each new
/// offset was first seen.
fn observe_offsets(base_url: &str, offset_sql: &str, commits: &mpsc::Receiver<()>, stop: &AtomicBool) -> Vec<(Instant, u64)> {
    let mut observations: Vec<(Instant, u64)> = Vec::new();
    let mut last = 0u64;
    loop {
        let announced = commits.recv_timeout(Duration::from_millis(100));
        // Notices that arrived meanwhile are answered by the same question.
        while commits.try_recv().is_ok() {}
        let offset = sql_rows(base_url, offset_sql).first().and_then(|row| row[0].as_u64()).unwrap_or(0);
        if offset > last {
            observations.push((Instant::now(), offset));
            last = offset;
        }
        if stop.load(Ordering::Relaxed) {
            return observations;
        }
        if matches!(announced, Err(mpsc::RecvTimeoutError::Disconnected)) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A signal for every `commit` or `derived` frame of `GET /api/events`, read on a thread until
/// the stream ends.
fn subscribe_commits(base_url: &str) -> mpsc::Receiver<()> {
    let response = ureq::get(&format!("{base_url}/api/events")).call().expect("GET /api/events");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(response.into_reader()).lines().map_while(Result::ok) {
            let announces = line == "event: commit" || line == "event: derived";
            if announces && sender.send(()).is_err() {
                return;
            }
        }
    });
    receiver
}

fn sql_rows(base_url: &str, sql: &str) -> Vec<Vec<serde_json::Value>> {
    let response: serde_json::Value = ureq::post(&format!("{base_url}/api/sql"))
        .timeout(Duration::from_secs(30))
        .send_json(serde_json::json!({ "sql": sql }))
        .unwrap_or_else(|error| panic!("POST /api/sql {sql}: {error}"))
        .into_json()
        .expect("a JSON answer");
    serde_json::from_value(response["rows"].clone()).unwrap_or_else(|_| panic!("no rows in {response}"))
}

fn get_json(base_url: &str, path: &str) -> Option<serde_json::Value> {
    ureq::get(&format!("{base_url}{path}")).timeout(Duration::from_secs(10)).call().ok()?.into_json().ok()
}

/// A counter or a histogram's sum or count from `/metrics` (0 when absent).
fn metric(base_url: &str, name: &str) -> f64 {
    let text = ureq::get(&format!("{base_url}/metrics"))
        .timeout(Duration::from_secs(10))
        .call()
        .ok()
        .and_then(|response| response.into_string().ok())
        .unwrap_or_default();
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn toml_string(path: &Path) -> String {
    serde_json::Value::from(path.display().to_string()).to_string()
}

/// CPU seconds (user + system) from a `/proc/…/stat` file: fields 14 and 15, after the name.
fn cpu_seconds(stat_path: &str) -> f64 {
    static TICKS_PER_SECOND: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS_PER_SECOND.get_or_init(|| {
        let output = Command::new("getconf").arg("CLK_TCK").output().expect("getconf CLK_TCK");
        String::from_utf8_lossy(&output.stdout).trim().parse().expect("CLK_TCK is a number")
    });
    let stat = std::fs::read_to_string(stat_path).unwrap_or_else(|error| panic!("reading {stat_path}: {error}"));
    // The name (field 2) may hold spaces; the fields after its closing parenthesis start at 3.
    let after_name: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 1..].split_whitespace().collect();
    let field = |number: usize| after_name[number - 3].parse::<f64>().expect("a tick count");
    (field(14) + field(15)) / ticks
}
