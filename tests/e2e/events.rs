//! `GET /api/events` end to end: while 20,000 files are ingested and another client polls the API
//! 20 times a second, every commit arrives as a server-sent event, no poll fails, and no poll ever
//! sees half a batch (a file indexed without its record, or a record without its file).

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::support::*;

/// One parsed SSE frame.
#[derive(Debug)]
struct Frame {
    event: String,
    data: serde_json::Value,
}

/// Reads frames from `/api/events` on a thread until the stream ends.
fn subscribe(base_url: &str) -> mpsc::Receiver<Frame> {
    let response = ureq::get(&format!("{base_url}/api/events")).call().expect("GET /api/events");
    assert_eq!(response.content_type(), "text/event-stream");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in BufReader::new(response.into_reader()).lines().map_while(Result::ok) {
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                let data = serde_json::from_str(data).expect("SSE data is JSON");
                if sender.send(Frame { event: std::mem::take(&mut event), data }).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

#[test]
fn every_commit_arrives_as_an_event_while_a_client_polls() {
    let dir = tempfile::tempdir().unwrap();
    let opencode = dir.path().join("opencode");
    std::fs::create_dir_all(opencode.join("storage")).unwrap();
    let db = dir.path().join("db.duckdb");
    let config = test_config(dir.path(), "[reconcile]\ninterval = \"1h\"\n");
    let daemon = Daemon::start(&opencode, &db, &config);

    let frames = subscribe(&daemon.base_url);
    let ready = frames.recv_timeout(Duration::from_secs(10)).expect("the ready frame");
    assert_eq!(ready.event, "ready");

    let stop = Arc::new(AtomicBool::new(false));
    let (polls, poll_errors, torn_reads) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // A record and the file_index row that says it is indexed commit together: a reader must
    // never see one without the other.
    const TORN: &str = "SELECT (SELECT count(*) FROM file_index f WHERE f.kind = 'part' AND f.status = 'indexed' \
                        AND NOT EXISTS (SELECT 1 FROM parts p WHERE p.id = f.record_id)) \
                        + (SELECT count(*) FROM parts p WHERE NOT EXISTS \
                        (SELECT 1 FROM file_index f WHERE f.kind = 'part' AND f.record_id = p.id))";
    let poller = {
        let (stop, polls, poll_errors, torn_reads, base_url) = (stop.clone(), polls.clone(), poll_errors.clone(), torn_reads.clone(), daemon.base_url.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let stats = ureq::get(&format!("{base_url}/api/stats")).timeout(Duration::from_secs(10)).call();
                let torn = ureq::post(&format!("{base_url}/api/sql"))
                    .timeout(Duration::from_secs(10))
                    .send_json(serde_json::json!({ "sql": TORN }))
                    .ok()
                    .and_then(|response| response.into_json::<serde_json::Value>().ok())
                    .and_then(|body| body["rows"][0][0].as_i64());
                polls.fetch_add(1, Ordering::Relaxed);
                match (stats.is_ok(), torn) {
                    (true, Some(0)) => {}
                    (true, Some(_)) => {
                        torn_reads.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        poll_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let generator = ducktail_generator::GeneratorConfig { seed: 21, target_files: 20_000, ..Default::default() };
    let tree = ducktail_generator::generate(&opencode, &generator).unwrap();
    wait_until("the burst is indexed", Duration::from_secs(180), || {
        daemon.scalar("SELECT count(*) FROM file_index WHERE status = 'indexed'") == tree.total_files as i64
    });
    let sessions_in_db: Vec<String> = daemon.sql("SELECT id FROM sessions").into_iter().map(|row| row[0].clone()).collect();
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();

    // Every file was committed at least once, so the notices' file counts reach the total; batch
    // ids must have no gaps (a gap is a lost event) and no `lagged` frame may appear. Two batches
    // can be decoded at once, so ids may arrive out of order.
    let mut files = 0usize;
    let mut batch_ids = Vec::new();
    let mut sessions = std::collections::BTreeSet::new();
    let mut derived_sessions = std::collections::BTreeSet::new();
    wait_until("every commit's event", Duration::from_secs(30), || {
        while let Ok(frame) = frames.try_recv() {
            if frame.event == "derived" {
                derived_sessions.extend(frame.data["sessions"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
                continue;
            }
            assert_eq!(frame.event, "commit", "unexpected frame {frame:?}");
            files += frame.data["files"].as_u64().unwrap() as usize;
            batch_ids.push(frame.data["batch_id"].as_u64().unwrap());
            sessions.extend(frame.data["sessions"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
        }
        files >= tree.total_files
    });
    batch_ids.sort_unstable();
    let first = batch_ids[0];
    let expected: Vec<u64> = (first..first + batch_ids.len() as u64).collect();
    assert_eq!(batch_ids, expected, "every commit's event arrives exactly once");
    for session in &sessions_in_db {
        assert!(sessions.contains(session), "session {session} never appeared in a commit event");
    }
    // The derived rows announce themselves after their commits, so readers of rollups refresh.
    wait_until("the derived rows' events", Duration::from_secs(30), || {
        while let Ok(frame) = frames.try_recv() {
            if frame.event == "derived" {
                derived_sessions.extend(frame.data["sessions"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()));
            }
        }
        sessions_in_db.iter().all(|session| derived_sessions.contains(session))
    });
    assert!(polls.load(Ordering::Relaxed) >= 3, "the poller ran during ingestion");
    assert_eq!(poll_errors.load(Ordering::Relaxed), 0, "no poll failed during ingestion");
    assert_eq!(torn_reads.load(Ordering::Relaxed), 0, "a reader saw a half-committed batch");
    assert!(daemon.terminate().success());
}
