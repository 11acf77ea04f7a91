use std::io::Write;
use std::time::{Duration, Instant};

use super::*;
use crate::testing::{Server, json_answer};

const T: Duration = Duration::from_secs(5);

fn get(path: &str) -> Request<'_> {
    Request {
        method: "GET",
        path,
        headers: &[],
        body: None,
    }
}

/// Sends a GET to a server that answers `answer` raw, with a body cap of `cap`.
fn exchange(answer: &[u8], cap: usize) -> Result<Response, HttpError> {
    let server = Server::raw(1, answer.to_vec());
    let out = Client::new(server.path())
        .with_max_body_bytes(cap)
        .send(&get("/x"), T);
    server.finish();
    out
}

#[track_caller]
fn check_malformed(answer: &str, needle: &str) {
    match exchange(answer.as_bytes(), 1024) {
        Err(HttpError::Malformed(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("{answer:?}: expected Malformed({needle}), got {other:?}"),
    }
}

#[track_caller]
fn check_too_large(answer: &[u8], cap: usize) {
    match exchange(answer, cap) {
        Err(HttpError::TooLarge { limit }) => assert_eq!(limit, cap),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[track_caller]
fn check_truncated(answer: &str) {
    match exchange(answer.as_bytes(), 1024) {
        Err(HttpError::Truncated) => {}
        other => panic!("{answer:?}: expected Truncated, got {other:?}"),
    }
}

#[test]
fn get_sends_a_well_formed_request_and_reads_a_content_length_answer() {
    let server = Server::raw(1, json_answer(200, r#"{"ok":true}"#));
    let response = Client::new(server.path())
        .send(
            &Request {
                method: "GET",
                path: "/v1/organizations?x=1",
                headers: &[("Authorization", "Bearer s3cret")],
                body: None,
            },
            T,
        )
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"ok":true}"#);
    assert_eq!(response.header("CONTENT-TYPE"), Some("application/json"));
    let seen = server.finish();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].target, "/v1/organizations?x=1");
    assert_eq!(seen[0].header("host"), Some("localhost"));
    assert_eq!(seen[0].header("connection"), Some("close"));
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cret"));
    assert_eq!(seen[0].header("content-length"), None);
}

#[test]
fn post_sends_its_body_with_content_length() {
    let server = Server::raw(1, json_answer(201, r#"{"task_id":3}"#));
    let body = br#"{"function":"f"}"#;
    let response = Client::new(server.path())
        .send(
            &Request {
                method: "POST",
                path: "/v1/subtasks",
                headers: &[("Content-Type", "application/json")],
                body: Some(body),
            },
            T,
        )
        .unwrap();
    assert_eq!(response.status, 201);
    let seen = server.finish();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, body);
    assert_eq!(seen[0].header("content-length"), Some("16"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
}

fn post(path: &str) -> Request<'_> {
    Request {
        method: "POST",
        path,
        headers: &[("Content-Type", "application/x-tar")],
        body: None,
    }
}

#[test]
fn a_streamed_body_is_sent_whole_with_its_length_in_pieces() {
    // Longer than one piece and not a multiple of it, from a reader that hands out a few
    // bytes at a time.
    let body: Vec<u8> = (0..(STREAM_PIECE * 2 + 12_345))
        .map(|i| (i % 251) as u8)
        .collect();
    struct Dribble<'a>(&'a [u8]);
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(40_000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let server = Server::raw(1, json_answer(200, "{}"));
    let response = Client::new(server.path())
        .send_streamed(
            &post("/v1/images/import"),
            &mut Dribble(&body),
            body.len() as u64,
            T,
        )
        .unwrap();
    assert_eq!(response.status, 200);
    let seen = server.finish();
    assert_eq!(
        seen[0].header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(seen[0].header("content-type"), Some("application/x-tar"));
    assert!(seen[0].body == body, "the body arrived altered");
}

#[test]
fn a_streamed_body_shorter_or_longer_than_said_is_refused() {
    for (have, said) in [(10usize, 11u64), (12, 11)] {
        // A peer that takes whatever comes until the client closes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all);
        });
        let bytes = vec![7u8; have];
        let err = Client::new(&path)
            .send_streamed(&post("/x"), &mut bytes.as_slice(), said, T)
            .unwrap_err();
        assert!(
            matches!(&err, HttpError::InvalidRequest(m) if m.contains("did the file change")),
            "{have} bytes said {said}: {err}"
        );
        peer.join().unwrap();
    }
    // and a streamed request with a body of its own is a mistake, refused before connecting
    let mut with_body = post("/x");
    with_body.body = Some(b"x");
    assert!(matches!(
        Client::new("/nonexistent/warden.sock").send_streamed(
            &with_body,
            &mut b"y".as_slice(),
            1,
            T
        ),
        Err(HttpError::InvalidRequest(_))
    ));
}

#[test]
fn post_without_body_says_content_length_zero() {
    let server = Server::raw(1, json_answer(200, "{}"));
    let r = Request {
        method: "POST",
        path: "/p",
        headers: &[],
        body: None,
    };
    Client::new(server.path()).send(&r, T).unwrap();
    assert_eq!(server.finish()[0].header("content-length"), Some("0"));
}

#[test]
fn chunked_answers_with_extensions_and_trailers_are_reassembled() {
    let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\n1\r\n \r\nB\r\nfrom chunks\r\n0\r\nX-Trailer: y\r\n\r\n";
    let r = exchange(answer.as_bytes(), 1024).unwrap();
    assert_eq!(r.body, b"hello from chunks");
}

#[test]
fn answers_written_one_byte_at_a_time_are_read_whole() {
    let answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let server = Server::start(1, move |_, s| {
        for b in answer.as_bytes() {
            s.write_all(&[*b]).unwrap();
            s.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let r = Client::new(server.path()).send(&get("/"), T).unwrap();
    server.finish();
    assert_eq!(r.body, b"abc");
}

#[test]
fn an_answer_without_length_ends_with_the_connection() {
    let r = exchange(b"HTTP/1.0 404 Not Found\r\n\r\nno such thing", 1024).unwrap();
    assert_eq!((r.status, r.body.as_slice()), (404, &b"no such thing"[..]));
}

#[test]
fn no_content_has_no_body_and_interim_answers_are_skipped() {
    let r = exchange(b"HTTP/1.1 204 No Content\r\n\r\n", 1024).unwrap();
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = exchange(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        1024,
    )
    .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
}

#[test]
fn a_status_line_without_reason_phrase_is_accepted() {
    let r = exchange(b"HTTP/1.1 403\r\nContent-Length: 0\r\n\r\n", 1024).unwrap();
    assert_eq!(r.status, 403);
}

#[test]
fn malformed_answers_are_refused_with_a_reason() {
    check_malformed("HTTP/2 200 OK\r\n\r\n", "bad status line");
    check_malformed("garbage\r\n\r\n", "bad status line");
    check_malformed("HTTP/1.1 2000 OK\r\n\r\n", "bad status line");
    check_malformed("HTTP/1.1 099 OK\r\n\r\n", "bad status line");
    check_malformed("HTTP/1.1 6xx OK\r\n\r\n", "bad status line");
    check_malformed("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "no colon");
    check_malformed(
        "HTTP/1.1 200 OK\r\nA: b\r\n folded: c\r\n\r\n",
        "not an HTTP token",
    );
    check_malformed("HTTP/1.1 200 OK\r\nA: b\x01c\r\n\r\n", "control character");
    check_malformed(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
        "both Transfer-Encoding and Content-Length",
    );
    check_malformed(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "unsupported transfer coding",
    );
    check_malformed(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        "conflicting Content-Length",
    );
    check_malformed(
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "bad Content-Length",
    );
    check_malformed(
        "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
        "bad Content-Length",
    );
    check_malformed(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "bad chunk size",
    );
    check_malformed(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        "end of a chunk",
    );
    check_malformed(
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "switched protocols",
    );
    let huge_header = format!(
        "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES + 10)
    );
    check_malformed(&huge_header, "longer than");
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        "X: y\r\n".repeat(MAX_HEADERS + 1)
    );
    check_malformed(&many, "header lines");
    let endless_trailer = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n{}",
        "T: x\r\n".repeat(MAX_HEAD_BYTES / 6 + 10)
    );
    check_malformed(&endless_trailer, "trailer");
}

#[test]
fn oversize_answers_are_refused_at_the_cap() {
    // Announced too large: refused before reading the body.
    check_too_large(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 10);
    check_too_large(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
        10,
    );
    // Chunks adding up past the cap, and chunk sizes that overflow.
    check_too_large(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n",
        10,
    );
    check_too_large(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\n",
        10,
    );
    // Read to the end of the connection past the cap.
    let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    answer.extend(std::iter::repeat_n(b'x', 100_000));
    check_too_large(&answer, 1000);
    // Exactly at the cap is fine.
    let r = exchange(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
        10,
    )
    .unwrap();
    assert_eq!(r.body.len(), 10);
}

#[test]
fn an_endless_answer_is_cut_at_the_cap_not_read_forever() {
    let server = Server::start(1, |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
        let block = [b'y'; 8192];
        // Stops when the client hangs up.
        while s.write_all(&block).is_ok() {}
    });
    let r = Client::new(server.path())
        .with_max_body_bytes(1 << 20)
        .send(&get("/"), T);
    assert!(
        matches!(r, Err(HttpError::TooLarge { limit }) if limit == 1 << 20),
        "{r:?}"
    );
    server.finish();
}

#[test]
fn answers_cut_short_are_truncated() {
    check_truncated("");
    check_truncated("HTTP/1.1 200 OK\r\nContent-Len");
    check_truncated("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
    check_truncated("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    check_truncated("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n");
}

#[test]
fn a_silent_proxy_times_out() {
    let server = Server::start(1, |_, _| std::thread::sleep(Duration::from_millis(1500)));
    let timeout = Duration::from_millis(200);
    let r = Client::new(server.path()).send(&get("/"), timeout);
    assert!(
        matches!(r, Err(HttpError::Timeout(t)) if t == timeout),
        "{r:?}"
    );
    server.finish();
}

#[test]
fn a_proxy_that_drips_bytes_times_out_on_the_whole_exchange() {
    // Every read succeeds quickly, but the answer never completes: the deadline covers it all.
    let server = Server::start(1, |_, s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        for _ in 0..60 {
            if s.write_all(b"z").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    });
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let r = Client::new(server.path()).send(&get("/"), timeout);
    assert!(matches!(r, Err(HttpError::Timeout(_))), "{r:?}");
    // Not a timing assertion on performance: it proves the deadline is per exchange, not per
    // read (per-read timeouts would wait for all 60 bytes, 1.5 s).
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    server.finish();
}

#[test]
fn a_missing_socket_is_a_connect_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let e = Client::new(&path).send(&get("/"), T).unwrap_err();
    assert!(matches!(e, HttpError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("absent.sock"), "{e}");
}

#[test]
fn requests_that_could_smuggle_are_refused_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(dir.path().join("never-used.sock"));
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case; 6] = [
        ("GET", "/a b", &[]),
        ("GET", "/a\r\nX: y", &[]),
        ("GET", "relative", &[]),
        ("G ET", "/", &[]),
        ("GET", "/", &[("Authorization", "Bearer x\r\nEvil: 1")]),
        ("GET", "/", &[("Content-Length", "5")]),
    ];
    for (method, path, headers) in cases {
        let r = client.send(
            &Request {
                method,
                path,
                headers,
                body: None,
            },
            T,
        );
        assert!(
            matches!(r, Err(HttpError::InvalidRequest(_))),
            "{method} {path:?} {headers:?}: {r:?}"
        );
    }
}

mod props {
    use std::io::Read;
    use std::net::Shutdown;

    use proptest::prelude::*;

    use super::*;

    /// Feeds `answer` to the parser over a socket pair, as a peer that then hangs up.
    fn parse(answer: Vec<u8>, cap: usize) -> Result<Response, HttpError> {
        let (client, mut server) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            let _ = server.write_all(&answer);
            let _ = server.shutdown(Shutdown::Write);
            let _ = server.read_to_end(&mut Vec::new());
        });
        let out = crate::http::exchange(
            client,
            b"GET / HTTP/1.1\r\n\r\n",
            None,
            Deadline::new(T),
            cap,
        );
        peer.join().unwrap();
        out
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut rest = body;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_answers_never_panic(answer in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(answer, 1024);
        }

        #[test]
        fn arbitrary_tails_after_a_valid_status_line_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
            answer.extend(tail);
            let _ = parse(answer, 1024);
        }

        #[test]
        fn chunked_bodies_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..4096),
            sizes in proptest::collection::vec(1usize..700, 1..8),
        ) {
            let r = parse(chunked(&body, &sizes), 4096).unwrap();
            prop_assert_eq!(r.body, body);
        }

        #[test]
        fn content_length_bodies_round_trip_up_to_the_cap(
            body in proptest::collection::vec(any::<u8>(), 0..4096),
            cap in 0usize..4096,
        ) {
            let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            answer.extend_from_slice(&body);
            match parse(answer, cap) {
                Ok(r) => {
                    prop_assert!(body.len() <= cap);
                    prop_assert_eq!(r.body, body);
                }
                Err(HttpError::TooLarge { limit }) => {
                    prop_assert!(body.len() > cap);
                    prop_assert_eq!(limit, cap);
                }
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }
    }
}

#[test]
fn answers_parsed_from_memory_match_the_socket_whatever_the_read_size() {
    let answers: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX: y\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 404 Not Found\r\n\r\nno such thing",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
    ];
    for answer in answers {
        let socket = exchange(answer, 1024).map_err(|e| e.to_string());
        for piece in [1, 2, 7, usize::MAX] {
            let memory = parse_response(answer, piece, 1024).map_err(|e| e.to_string());
            assert_eq!(memory, socket, "{piece}-byte reads of {answer:?}");
        }
    }
}
