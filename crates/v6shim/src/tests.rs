// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;

use super::*;

#[test]
fn only_the_vantage6_subset_is_allowed() {
    for (m, t) in [
        ("GET", "/api/organization"),
        ("GET", "/api/organization?collaboration_id=1&page=1"),
        ("GET", "/api/organization/12"),
        ("GET", "/api/blobstream/status"),
        ("GET", "/api/task/7"),
        ("GET", "/api/task/7/status"),
        ("GET", "/api/result?task_id=7&page=1"),
        ("POST", "/api/task"),
    ] {
        assert_eq!(allowed(m, t), Ok(()), "{m} {t}");
    }
    for (m, t, status) in [
        ("GET", "/api/user", 404),
        ("GET", "/api/token/container", 404),
        ("GET", "/v1/organizations", 404),
        ("GET", "/api/organization/x", 404),
        ("GET", "/api/task/7/../../user", 404),
        ("GET", "/api//task/7", 404),
        ("GET", "/api/task", 405),
        ("DELETE", "/api/task/7", 405),
        ("POST", "/api/result", 405),
        ("PATCH", "/api/organization/1", 405),
        ("GET", "/api/result?task_id=1%0d%0a", 400),
        ("GET", "http://evil.example/api/task/1", 404),
    ] {
        assert_eq!(allowed(m, t).unwrap_err().status, status, "{m} {t}");
    }
}

#[test]
fn the_head_is_made_one_request_and_checked() {
    let (head, n) = rewrite(
        b"POST /api/task HTTP/1.1\r\nHost: 127.0.0.1:7601\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nContent-Length: 2\r\nAuthorization: Bearer t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(n, 2);
    let head = String::from_utf8(head).unwrap();
    assert_eq!(
        head,
        "POST /api/task HTTP/1.1\r\nHost: 127.0.0.1:7601\r\nContent-Length: 2\r\nAuthorization: Bearer t\r\nConnection: close\r\n\r\n"
    );
    for (bad, status) in [
        (
            &b"POST /api/task HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            411,
        ),
        (
            b"GET /api/task/1 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            400,
        ),
        (
            b"POST /api/task HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (
            b"POST /api/task HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
            413,
        ),
        (b"GET /api/task/1 HTTP/2\r\n\r\n", 505),
        (b"GET /api/task/1 HTTP/1.1 x\r\n\r\n", 400),
        (b"GET /api/task/1 HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"GET /api/user HTTP/1.1\r\n\r\n", 404),
    ] {
        assert_eq!(
            rewrite(bad).unwrap_err().status,
            status,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// A shim on a free loopback port in front of a fake proxy on a Unix socket that records each
/// request it gets and answers 200.
fn start() -> (String, mpsc::Receiver<Vec<u8>>, tempfile_dir::Dir) {
    let dir = tempfile_dir::Dir::new();
    let sock = dir.0.join("proxy.sock");
    let proxy = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in proxy.incoming() {
            let mut c = conn.unwrap();
            // The head, then its Content-Length's bytes (the shim keeps its side open).
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while !got.ends_with(b"\r\n\r\n") {
                c.read_exact(&mut byte).unwrap();
                got.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&got).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            let mut body = vec![0u8; length];
            c.read_exact(&mut body).unwrap();
            got.extend_from_slice(&body);
            tx.send(got).unwrap();
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .unwrap();
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || serve_on(listener, &sock));
    (addr, rx, dir)
}

fn exchange(addr: &str, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(request).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn an_allowed_request_reaches_the_proxy_and_nothing_else_does() {
    let (addr, rx, _dir) = start();
    let answer = exchange(
        &addr,
        b"POST /api/task HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n{}{}",
    );
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer}"
    );
    let got = String::from_utf8(rx.recv().unwrap()).unwrap();
    assert_eq!(
        got,
        "POST /api/task HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n{}{}"
    );
    // A second request on the same connection is not forwarded: only the first one's body.
    let answer = exchange(
        &addr,
        b"GET /api/task/1 HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /api/user HTTP/1.1\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Refusals are answered by the shim, as JSON with msg.
    for (request, status) in [
        (&b"GET /api/user HTTP/1.1\r\n\r\n"[..], "404"),
        (b"DELETE /api/task/1 HTTP/1.1\r\n\r\n", "405"),
        (b"CONNECT evil.example:443 HTTP/1.1\r\n\r\n", "404"),
    ] {
        let answer = exchange(&addr, request);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")) && answer.contains("{\"msg\":"),
            "{answer}"
        );
    }
    assert!(
        rx.try_recv().is_err(),
        "no refused request reached the proxy"
    );
}

/// A private temporary directory removed on drop (std only).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "v6shim-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
