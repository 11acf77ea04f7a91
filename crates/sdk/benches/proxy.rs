//! Cost of one proxy request over the Unix socket (connect, request, answer, JSON) with the SDK's
//! own HTTP/1.1 client, against a std-thread server that answers at once: a small
//! `GET /v1/organizations`, and a results answer carrying a 1 MiB result (base64, chunked).
//!
//! Run: `cargo bench -p warden-sdk --bench proxy -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)] // bench setup on constant inputs

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use warden_sdk::{Proxy, TaskId};

fn serve(listener: UnixListener, organizations: Vec<u8>, results: Vec<u8>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            reader.read_exact(&mut vec![0; len]).unwrap();
            let answer = if line.contains("/results") {
                &results
            } else {
                &organizations
            };
            let _ = stream.write_all(answer);
        }
    });
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let orgs =
        r#"{"organizations": [{"id": 1, "name": "hospital-a"}, {"id": 2, "name": "hospital-b"}]}"#;
    let organizations = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{orgs}",
        orgs.len()
    )
    .into_bytes();
    let b64 = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1 << 20]);
    let body = format!(
        r#"{{"complete": true, "runs": [{{"organization_id": 1, "state": "completed", "result": "{b64}"}}]}}"#
    );
    let mut results = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.as_bytes().chunks(16 << 10) {
        results.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        results.extend_from_slice(chunk);
        results.extend_from_slice(b"\r\n");
    }
    results.extend_from_slice(b"0\r\n\r\n");
    serve(listener, organizations, results);

    let proxy = Proxy::new(&path, "bench-token").unwrap();
    let mut group = c.benchmark_group("proxy request");
    group.bench_function("organizations", |b| {
        b.iter(|| {
            let orgs = proxy.organizations().unwrap();
            assert_eq!(orgs.len(), 2);
            orgs
        })
    });
    group.bench_function("results with 1 MiB", |b| {
        b.iter(|| {
            let r = proxy.results(TaskId(1), Duration::ZERO).unwrap();
            assert_eq!(r.runs[0].result.as_ref().unwrap().len(), 1 << 20);
            r
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
