//! Live benchmark of `ducktail run`: event→commit latency at paced write rates, and the sustained
//! rate when one process writes files as fast as it can. Prints rows of the suite's table (see
//! `benches/suite.sh`).
//!
//! ```text
//! cargo bench --workspace --bench live -- --rates 100,1000,10000 --seconds 10 --burst 20000
//! cargo bench --workspace --bench live -- --rates '' --burst 0 --soak-minutes 60 --soak-rate 100
//! cargo bench --workspace --bench live -- --rates '' --burst 0 --soak-minutes 60 --soak-rate 100 --soak-steady 20000
//! cargo bench --workspace --bench live -- --rates '' --burst 0 --new-folders 1000 --opencode TREE --db DB
//! ```
//!
//! Each row starts a fresh daemon on an empty tree (on a tmpfs when there is one, see
//! [`tree_dir`]; the database on disk), then writes generated OpenCode files (the
//! seeded generator's plan, in its natural order: messages before their parts, new directories
//! as OpenCode makes them). Latency is the daemon's own measure, from the watcher observing a
//! change to the commit of the batch holding it (`GET /api/stats`, `latency_ms`); inotify delivers
//! an event within microseconds of the write, so this is the write→visible time a reader sees.
//! The sustained rate is files / (first write → last file committed), and the backlog column is
//! the most files seen pending (sampled from `/metrics` every 20 ms) — it must stay bounded.
//! Beside it, the CPU each side spent per file (the daemon's process from `/proc/<pid>/stat`,
//! the writing thread's from `/proc/thread-self/stat`) and the rate those costs allow on this
//! machine's cores: what bounds the sustained rate when both share the machine.
//!
//! `--new-folders N` measures what a long history costs each new folder: on an indexed tree (the
//! suite's 1M-file tree, with a copy of its database), a daemon left idle after its start gets N
//! new message folders of one part each, 50 a second (an agent makes one per message, so each
//! one is its own watch, scan and commit), and the row is its CPU per folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    rates: Vec<u64>,
    seconds: u64,
    burst: usize,
    header: bool,
    soak_minutes: u64,
    soak_rate: u64,
    soak_steady: usize,
    new_folders: usize,
    opencode: Option<PathBuf>,
    db: Option<PathBuf>,
}

fn options() -> Options {
    let mut options = Options {
        rates: vec![100, 1_000, 10_000],
        seconds: 10,
        burst: 20_000,
        header: true,
        soak_minutes: 0,
        soak_rate: 100,
        soak_steady: 0,
        new_folders: 0,
        opencode: None,
        db: None,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_else(|| panic!("{argument} takes a value"));
        match argument.as_str() {
            "--rates" => {
                options.rates = value().split(',').filter(|rate| !rate.trim().is_empty()).map(|rate| rate.trim().parse().expect("a rate in files/s")).collect()
            }
            "--seconds" => options.seconds = value().parse().expect("seconds"),
            "--burst" => options.burst = value().parse().expect("a number of files"),
            "--no-header" => options.header = false,
            "--soak-minutes" => options.soak_minutes = value().parse().expect("minutes"),
            "--soak-rate" => options.soak_rate = value().parse().expect("files/s"),
            "--soak-steady" => options.soak_steady = value().parse().expect("a number of files"),
            "--new-folders" => options.new_folders = value().parse().expect("a number of folders"),
            "--opencode" => options.opencode = Some(PathBuf::from(value())),
            "--db" => options.db = Some(PathBuf::from(value())),
            // `cargo bench` passes --bench; ignore anything else it adds.
            _ => {}
        }
    }
    options
}

fn main() {
    let options = options();
    let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    if options.header {
        suite::print_header(&format!("{cores} cores; one writer process (this bench) and the daemon share them"));
    }
    for rate in &options.rates {
        let files = (*rate * options.seconds) as usize;
        let outcome = run(files, Some(*rate), false);
        let goal = match rate {
            1_000 => "p95 ≤ 50",
            10_000 => "p99 ≤ 250",
            _ => "",
        };
        let workload = format!("live: write → visible, {rate} files/s offered ({:.0} written/s)", outcome.files as f64 / outcome.write_seconds);
        suite::row_text(&workload, outcome.files, "latency ms p50 / p95 / p99", &outcome.latencies(), goal);
        let written = outcome.files as f64 / outcome.write_seconds;
        suite::row(&workload, outcome.files, "files/s committed", outcome.files as f64 / outcome.commit_seconds, "the writer's own rate", Some(written), "");
        suite::row(&workload, outcome.files, "most files waiting", outcome.max_backlog as f64, "", None, "bounded");
    }
    if options.burst > 0 {
        for (label, dashboard) in [("as fast as it can", false), ("as fast as it can, a dashboard polling 20/s", true)] {
            let outcome = run(options.burst, None, dashboard);
            let workload = format!("live: sustained, one process writing {label}");
            let committed = outcome.files as f64 / outcome.commit_seconds;
            let written = outcome.files as f64 / outcome.write_seconds;
            suite::row(
                &workload,
                outcome.files,
                "files/s committed",
                committed,
                "the writer's own rate",
                Some(written),
                if dashboard { "" } else { "≥ 30,000" },
            );
            suite::row_text(&workload, outcome.files, "latency ms p50 / p95 / p99", &outcome.latencies(), "");
            suite::row(&workload, outcome.files, "most files waiting", outcome.max_backlog as f64, "", None, "bounded");
            let (daemon_us, writer_us) = (outcome.daemon_cpu_us_per_file, outcome.writer_cpu_us_per_file);
            suite::row_text(&workload, outcome.files, "CPU µs per file: daemon / writing process", &format!("{daemon_us:.1} / {writer_us:.1}"), "");
            let allowed = cores as f64 * 1e6 / (daemon_us + writer_us);
            suite::row(&workload, outcome.files, "files/s these CPU costs allow on all cores", allowed, "", None, "");
        }
    }
    if options.soak_minutes > 0 {
        soak(options.soak_minutes, options.soak_rate, options.soak_steady);
    }
    if options.new_folders > 0 {
        let (opencode, db) = (options.opencode.as_deref().expect("--new-folders needs --opencode"), options.db.as_deref().expect("--new-folders needs --db"));
        new_folders_on_tree(opencode, db, options.new_folders);
    }
}

/// Removes the folders a bench adds to a tree it does not own when the bench ends, panics
/// included (a killed run's are removed by the next one, see [`new_folders_on_tree`]).
struct AddedFolders(Vec<PathBuf>);

impl Drop for AddedFolders {
    fn drop(&mut self) {
        for folder in &self.0 {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// A daemon on the indexed tree at `opencode` (on a copy of `db`, so the suite's database stays
/// as the tree is) gets `count` new message folders of one part each, 50 a second, once idle
/// after its start; the row is its CPU per folder. Every new folder costs a watch, a scan of the
/// folder and a commit, and the first two grow with the tree.
fn new_folders_on_tree(opencode: &Path, db: &Path, count: usize) {
    const FOLDER_PREFIX: &str = "msg_zzbenchfolder";
    const SCRATCH_PREFIX: &str = "new-folders-";
    let (part, beside_db) = (opencode.join("storage/part"), db.parent().expect("the database's folder"));
    // A killed run leaves its folders in the tree and its copy of the database beside it.
    for (folder, prefix) in [(part.as_path(), FOLDER_PREFIX), (beside_db, SCRATCH_PREFIX)] {
        for entry in std::fs::read_dir(folder).unwrap_or_else(|error| panic!("listing {}: {error}", folder.display())) {
            let path = entry.expect("a folder entry").path();
            if path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with(prefix)) {
                std::fs::remove_dir_all(&path).unwrap_or_else(|error| panic!("removing {}: {error}", path.display()));
            }
        }
    }
    let scratch = tempfile::Builder::new().prefix(SCRATCH_PREFIX).tempdir_in(beside_db).expect("a temp dir beside the database");
    let copy = scratch.path().join("bench.duckdb");
    std::fs::copy(db, &copy).unwrap_or_else(|error| panic!("copying {}: {error}", db.display()));
    // No periodic full scan inside the measured seconds: on this tree one costs as much CPU as
    // the folders themselves.
    let daemon = Daemon::start_with(opencode, &copy, scratch.path(), "[reconcile]\ninterval = \"1h\"\n");
    let watch_problem = get_json(&daemon.base_url, "/api/stats").expect("stats")["watch_problem"].clone();
    assert!(watch_problem.is_null(), "the tree is not fully watched, so the folders would wait for scans: {watch_problem}");
    let stat = format!("/proc/{}/stat", daemon.inner.pid());
    // Idle: the start's catch-up and trace work are done once the daemon's CPU stops moving
    // between two polls (20 ms of CPU a second at most).
    let mut last = cpu_seconds(&stat);
    wait_until("the daemon to settle after its start", Duration::from_secs(300), Duration::from_secs(1), || {
        let now = cpu_seconds(&stat);
        std::mem::replace(&mut last, now) + 0.02 > now
    });
    let tree_files = daemon.scalar("SELECT count(*) FROM file_index");
    let folders: Vec<ducktail_generator::GeneratedFile> = (0..count)
        .map(|index| {
            let message = format!("{FOLDER_PREFIX}{index:06}");
            let part_id = format!("prt_zzbenchfolder{index:06}");
            let record = serde_json::json!({"id": part_id, "sessionID": "ses_zzbenchfolder", "messageID": message, "type": "text", "text": "hello"});
            ducktail_generator::GeneratedFile {
                relative_path: PathBuf::from(format!("storage/part/{message}/{part_id}.json")),
                contents: record.to_string().into_bytes(),
                kind: "part",
            }
        })
        .collect();
    // Leftovers of earlier runs are gone, so every folder with the prefix is this run's.
    let _added = AddedFolders(folders.iter().filter_map(|file| Some(opencode.join(file.relative_path.parent()?))).collect());
    let before = cpu_seconds(&stat);
    paced::write_files(opencode, folders.iter(), Some(50), || {});
    // The count scans a million rows, so it is asked only once nothing is pending.
    wait_until("the new folders to be committed", Duration::from_secs(300), Duration::from_millis(20), || {
        pending_files(&daemon.base_url) == Some(0)
            && daemon.scalar(&format!("SELECT count(*) FROM file_index WHERE file_path LIKE '%{FOLDER_PREFIX}%'")) >= count as i64
    });
    let per_folder_ms = (cpu_seconds(&stat) - before) * 1e3 / count as f64;
    daemon.stop();
    suite::row(
        "live: new message folders of one part each, 50/s, on the indexed tree",
        tree_files as usize,
        "daemon CPU ms per new folder",
        per_folder_ms,
        "",
        None,
        "",
    );
}

/// Where the written tree goes: a tmpfs (`/dev/shm`) when there is one, so the rates measure the
/// daemon rather than the disk — on this VM's ext4, creating files in a folder where a run had
/// just deleted thousands made the writing process range from 1.5k to 10k files/s between runs of
/// the same command. `DUCKTAIL_BENCH_TREE_DIR` chooses another folder. The database stays on
/// disk, in the temp dir, so the daemon's commits are not flattered.
fn tree_dir() -> tempfile::TempDir {
    let parent = std::env::var_os("DUCKTAIL_BENCH_TREE_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::PathBuf::from("/dev/shm"));
    match tempfile::Builder::new().prefix("ducktail-live-").tempdir_in(&parent) {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir().expect("a temp dir"),
    }
}

/// The daemon's resident set (VmRSS) in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status.lines().find(|line| line.starts_with("VmRSS:")).and_then(|line| line.split_whitespace().nth(1)?.parse().ok()).unwrap_or(f64::NAN);
    kib / 1024.0
}

/// CPU seconds (user + system) from a `/proc/…/stat` file: fields 14 and 15, after the name.
fn cpu_seconds(stat_path: &str) -> f64 {
    static TICKS_PER_SECOND: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS_PER_SECOND.get_or_init(|| {
        let output = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("getconf CLK_TCK");
        String::from_utf8_lossy(&output.stdout).trim().parse().expect("CLK_TCK is a number")
    });
    let stat = std::fs::read_to_string(stat_path).unwrap_or_else(|error| panic!("reading {stat_path}: {error}"));
    // The name (field 2) may hold spaces; the fields after its closing parenthesis start at 3.
    let after_name: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 1..].split_whitespace().collect();
    let field = |number: usize| after_name[number - 3].parse::<f64>().expect("a tick count");
    (field(14) + field(15)) / ticks
}

/// A long run at a steady rate: is the daemon's memory flat? Samples its RSS every 10 s (logged
/// to stderr each minute) and prints it after the first minute (caches warm), at every tenth of
/// the run, at the end, and the most.
/// With `steady` > 0 the tree does not grow: the first `steady` files are written at once, then
/// rewritten in turn (same content, new mtime) for the whole run, so every batch replaces rows
/// and a leak would show as growth.
fn soak(minutes: u64, rate: u64, steady: usize) {
    let (scratch, trees) = (tempfile::tempdir().expect("a temp dir"), tree_dir());
    let opencode = trees.path().join("opencode");
    std::fs::create_dir_all(opencode.join("storage")).unwrap();
    let daemon = Daemon::start(&opencode, &scratch.path().join("bench.duckdb"), scratch.path());
    let files = (minutes * 60 * rate) as usize;
    let config = ducktail_generator::GeneratorConfig { seed: 11, target_files: if steady > 0 { steady } else { files }, ..Default::default() };
    let pid = daemon.inner.pid();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let steady_plan: Vec<_> = ducktail_generator::plan(&config).take(steady).collect();
    paced::write_files(&opencode, steady_plan.iter(), None, || {});
    let started = Instant::now();
    let mut next_sample = started;
    let sample = || {
        if Instant::now() >= next_sample {
            let (minute, rss) = (started.elapsed().as_secs_f64() / 60.0, rss_mib(pid));
            samples.push((minute, rss));
            if samples.len() % 6 == 1 {
                eprintln!("soak: {minute:.1} min, daemon RSS {rss:.0} MB");
            }
            next_sample += Duration::from_secs(10);
        }
    };
    if steady > 0 {
        paced::write_files(&opencode, steady_plan.iter().cycle().take(files), Some(rate), sample);
    } else {
        paced::write_files(&opencode, ducktail_generator::plan(&config).take(files), Some(rate), sample);
    }
    let latency = get_json(&daemon.base_url, "/api/stats").expect("stats")["latency_ms"].clone();
    daemon.stop();
    let at = |minute: f64| samples.iter().find(|(at, _)| *at >= minute).or(samples.last()).map_or(f64::NAN, |(_, rss)| *rss);
    let most = samples.iter().map(|(_, rss)| *rss).fold(0.0, f64::max);
    let workload = if steady > 0 {
        format!("live: soak, {steady} files rewritten in turn, {rate} files/s for {minutes} min")
    } else {
        format!("live: soak, {rate} files/s for {minutes} min")
    };
    let first = at(1.0);
    suite::row(&workload, files, "daemon RSS MB after 1 min", first, "", None, "");
    // The curve, not only its ends: a row every tenth of the run.
    for tenth in 1..10 {
        let minute = minutes as f64 * tenth as f64 / 10.0;
        let label = if minutes >= 10 { format!("{minute:.0}") } else { format!("{minute:.1}") };
        suite::row(&workload, files, &format!("daemon RSS MB after {label} min"), at(minute), "after 1 min", Some(first), "");
    }
    suite::row(
        &workload,
        files,
        &format!("daemon RSS MB after {minutes} min"),
        samples.last().map_or(f64::NAN, |(_, rss)| *rss),
        "after 1 min",
        Some(first),
        "flat",
    );
    suite::row(&workload, files, "daemon RSS MB, most", most, "", None, "");
    let ms = |key: &str| latency[key].as_f64().unwrap_or(f64::NAN);
    suite::row_text(&workload, files, "latency ms p50 / p95 / p99 (last 10,000 files)", &format!("{:.1} / {:.1} / {:.1}", ms("p50"), ms("p95"), ms("p99")), "");
}

struct Outcome {
    files: usize,
    write_seconds: f64,
    commit_seconds: f64,
    latency: serde_json::Value,
    max_backlog: u64,
    daemon_cpu_us_per_file: f64,
    writer_cpu_us_per_file: f64,
}

impl Outcome {
    fn latencies(&self) -> String {
        let ms = |key: &str| self.latency[key].as_f64().unwrap_or(f64::NAN);
        format!("{:.1} / {:.1} / {:.1}", ms("p50"), ms("p95"), ms("p99"))
    }
}

/// Writes `files` generated files at `rate` files/s (or unpaced) under a running daemon; with
/// `dashboard`, a client meanwhile asks for the session list and the newest session's summary
/// 20 times a second, as a dashboard would.
fn run(files: usize, rate: Option<u64>, dashboard: bool) -> Outcome {
    let (scratch, trees) = (tempfile::tempdir().expect("a temp dir"), tree_dir());
    let opencode = trees.path().join("opencode");
    std::fs::create_dir_all(opencode.join("storage")).unwrap();
    let daemon = Daemon::start(&opencode, &scratch.path().join("bench.duckdb"), scratch.path());

    let stop_sampling = Arc::new(AtomicBool::new(false));
    let max_backlog = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, max_backlog, base_url) = (stop_sampling.clone(), max_backlog.clone(), daemon.base_url.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(pending) = pending_files(&base_url) {
                    max_backlog.fetch_max(pending, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let poller = dashboard.then(|| {
        let (stop, base_url) = (stop_sampling.clone(), daemon.base_url.clone());
        std::thread::spawn(move || {
            let mut failures = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match get_json(&base_url, "/api/sessions?limit=20") {
                    Some(page) => {
                        if let Some(id) = page["sessions"][0]["id"].as_str() {
                            failures += u64::from(get_json(&base_url, &format!("/api/sessions/{id}")).is_none());
                        }
                    }
                    None => failures += 1,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(failures, 0, "dashboard requests failed during ingestion");
        })
    });
    let config = ducktail_generator::GeneratorConfig { seed: 7, target_files: files, ..Default::default() };
    let plan: Vec<_> = ducktail_generator::plan(&config).take(files).collect();
    let daemon_stat = format!("/proc/{}/stat", daemon.inner.pid());
    let (daemon_cpu_before, writer_cpu_before) = (cpu_seconds(&daemon_stat), cpu_seconds("/proc/thread-self/stat"));
    let started = Instant::now();
    paced::write_files(&opencode, plan.iter(), rate, || {});
    let write_seconds = started.elapsed().as_secs_f64();
    let writer_cpu = cpu_seconds("/proc/thread-self/stat") - writer_cpu_before;
    wait_until("every file to be indexed", Duration::from_secs(600), Duration::from_millis(20), || {
        daemon.scalar("SELECT count(*) FROM file_index") >= plan.len() as i64
    });
    let commit_seconds = started.elapsed().as_secs_f64();
    let daemon_cpu = cpu_seconds(&daemon_stat) - daemon_cpu_before;
    stop_sampling.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    if let Some(poller) = poller {
        poller.join().unwrap();
    }
    let latency = get_json(&daemon.base_url, "/api/stats").expect("stats")["latency_ms"].clone();
    daemon.stop();
    let per_file = |seconds: f64| seconds * 1e6 / plan.len() as f64;
    Outcome {
        files: plan.len(),
        write_seconds,
        commit_seconds,
        latency,
        max_backlog: max_backlog.load(Ordering::Relaxed),
        daemon_cpu_us_per_file: per_file(daemon_cpu),
        writer_cpu_us_per_file: per_file(writer_cpu),
    }
}

/// The accumulator's backlog, from `/metrics`: it touches no database, unlike `/api/stats`, whose
/// table counts at 50 requests a second took 18 % of the daemon's CPU in this bench.
fn pending_files(base_url: &str) -> Option<u64> {
    let text = ureq::get(&format!("{base_url}/metrics")).timeout(Duration::from_secs(10)).call().ok()?.into_string().ok()?;
    text.lines().find_map(|line| line.strip_prefix("ducktail_pending_files ")).and_then(|value| value.trim().parse().ok())
}

fn get_json(base_url: &str, path: &str) -> Option<serde_json::Value> {
    ureq::get(&format!("{base_url}{path}")).timeout(Duration::from_secs(10)).call().ok()?.into_json().ok()
}

#[path = "support/daemon.rs"]
mod daemon;
use daemon::wait_until;
#[path = "support/paced.rs"]
mod paced;
#[path = "support/suite.rs"]
mod suite;

/// `ducktail run` on port 0 with the SQL API on.
struct Daemon {
    inner: daemon::BenchDaemon,
    base_url: String,
}

impl Daemon {
    fn start(opencode: &Path, db: &Path, scratch: &Path) -> Daemon {
        Daemon::start_with(opencode, db, scratch, "")
    }

    /// [`Daemon::start`] with `extra_config` (TOML) after the SQL API's setting.
    fn start_with(opencode: &Path, db: &Path, scratch: &Path, extra_config: &str) -> Daemon {
        let config = format!("[http]\nsql_enabled = true\n{extra_config}");
        let inner = daemon::BenchDaemon::start(opencode, db, scratch, &config, Duration::from_secs(60));
        let base_url = inner.base_url.clone();
        Daemon { inner, base_url }
    }

    fn scalar(&self, sql: &str) -> i64 {
        let response: serde_json::Value = ureq::post(&format!("{}/api/sql", self.base_url))
            .timeout(Duration::from_secs(30))
            .send_json(serde_json::json!({ "sql": sql }))
            .expect("POST /api/sql")
            .into_json()
            .expect("a JSON answer");
        response["rows"][0][0].as_i64().unwrap_or_else(|| panic!("not an integer: {response}"))
    }

    fn stop(self) {
        self.inner.stop();
    }
}
