//! An OTLP/HTTP receiver for benchmarks: decodes each request with the official protobuf types
//! and counts spans and bytes, answering at once. Shared by the benches through `#[path]`.

// Each bench uses the part it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// What the sink received.
#[derive(Debug, Default)]
pub struct Received {
    /// Spans.
    pub spans: AtomicU64,
    /// Request bodies, bytes.
    pub bytes: AtomicU64,
    /// Requests.
    pub requests: AtomicU64,
}

/// A running sink: its URL and counters.
pub struct OtlpSink {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The counters.
    pub received: Arc<Received>,
}

impl OtlpSink {
    /// Listens on a free loopback port.
    pub fn start() -> OtlpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Received::default());
        let counters = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let counters = counters.clone();
                std::thread::spawn(move || serve(stream, &counters));
            }
        });
        OtlpSink { url, received }
    }

    /// Spans received so far.
    pub fn spans(&self) -> u64 {
        self.received.spans.load(Ordering::Relaxed)
    }
}

fn serve(stream: TcpStream, received: &Received) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("a valid OTLP request");
        let spans: usize = request.resource_spans.iter().flat_map(|resource| &resource.scope_spans).map(|scope| scope.spans.len()).sum();
        received.spans.fetch_add(spans as u64, Ordering::Relaxed);
        received.bytes.fetch_add(length as u64, Ordering::Relaxed);
        received.requests.fetch_add(1, Ordering::Relaxed);
        if writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}
