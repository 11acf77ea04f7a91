//! A tiny HTTP/1.1 server on a Unix socket for the SDK's tests: std threads, one handler call per
//! connection, the handler writes whatever raw bytes it wants (valid or not).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub method: String,
    pub target: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Server {
    _dir: tempfile::TempDir,
    path: PathBuf,
    thread: Option<JoinHandle<Vec<Seen>>>,
}

impl Server {
    /// Serves exactly `connections` connections with `handler`, then stops.
    pub fn start(
        connections: usize,
        mut handler: impl FnMut(&Seen, &mut UnixStream) + Send + 'static,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..connections {
                let (mut stream, _) = listener.accept().unwrap();
                let request = read_request(&mut stream);
                handler(&request, &mut stream);
                seen.push(request);
            }
            seen
        });
        Server {
            _dir: dir,
            path,
            thread: Some(thread),
        }
    }

    /// Answers every connection with the same raw bytes.
    pub fn raw(connections: usize, answer: impl Into<Vec<u8>>) -> Server {
        let answer = answer.into();
        Server::start(connections, move |_, s| {
            use std::io::Write;
            let _ = s.write_all(&answer);
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the server to have served all its connections; returns what it received.
    pub fn finish(mut self) -> Vec<Seen> {
        self.thread.take().unwrap().join().unwrap()
    }
}

/// A JSON answer with `Content-Length`.
pub(crate) fn json_answer(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn read_request(stream: &mut UnixStream) -> Seen {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    assert_eq!(parts.next(), Some("HTTP/1.1"), "request line {line:?}");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        assert!(h.ends_with("\r\n"), "header line {h:?} must end in CRLF");
        let h = h.trim_end_matches("\r\n");
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':').unwrap();
        headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    Seen {
        method,
        target,
        headers,
        body,
    }
}
