//! A small HTTP/1.1 client over a Unix socket: one request per connection (`Connection: close`),
//! a deadline for the whole exchange, and caps on the size of everything it reads.
//!
//! It speaks just enough HTTP for the node's proxy: a request line, `Host`, optional extra headers
//! (`Authorization`), `Content-Length` bodies; answers framed by `Content-Length`, `chunked`
//! transfer coding, or the end of the connection. Anything else is a [`HttpError::Malformed`].

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Default deadline of one request and its answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on an answer's body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;
/// Cap on the status line and headers together, and on each chunk-size or trailer line.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// Cap on the number of header lines of an answer.
pub const MAX_HEADERS: usize = 64;

const READ_BUF: usize = 8 << 10;

/// What can go wrong talking HTTP over the socket.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "cannot connect to the proxy socket {path}: {source}; run the algorithm through a warden node \
         (it mounts the socket) or set WARDEN_PROXY_SOCKET"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no complete answer from the proxy within {0:?}; retry or raise the timeout")]
    Timeout(Duration),
    #[error("i/o error talking to the proxy: {0}")]
    Io(#[source] std::io::Error),
    #[error("the proxy closed the connection before its answer was complete")]
    Truncated,
    #[error("malformed answer from the proxy: {0}")]
    Malformed(String),
    #[error("the proxy's answer is larger than {limit} bytes; ask for less or raise the cap")]
    TooLarge { limit: usize },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// A request to send. `path` is the request target (`/v1/organizations?x=1`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Extra headers; `Host`, `Connection` and `Content-Length` are set by the client.
    pub headers: &'a [(&'a str, &'a str)],
    /// Sent with `Content-Length`; `None` sends no body (and no `Content-Length` for GET).
    pub body: Option<&'a [u8]>,
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client for one Unix socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    max_body_bytes: usize,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Sets the cap on an answer's body; a larger answer is [`HttpError::TooLarge`].
    pub fn with_max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Sends `request` on a new connection and reads the whole answer, all within `timeout`.
    pub fn send(&self, request: &Request<'_>, timeout: Duration) -> Result<Response, HttpError> {
        let head = encode_head(request, request.body.map(|b| b.len() as u64))?;
        let body = request.body.map(Body::Bytes);
        self.exchange(&head, body, timeout)
    }

    /// Sends `request` with a body of `len` bytes read from `body` as it is written (a file
    /// of any size, never held in memory), and reads the whole answer, all within `timeout`.
    /// `request.body` must be `None`. A reader that ends before `len` bytes, or has more, is
    /// [`HttpError::InvalidRequest`] (a file that changed while it was sent).
    pub fn send_streamed(
        &self,
        request: &Request<'_>,
        body: &mut dyn Read,
        len: u64,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        if request.body.is_some() {
            return Err(HttpError::InvalidRequest(
                "a streamed request has no body of its own".into(),
            ));
        }
        let head = encode_head(request, Some(len))?;
        self.exchange(&head, Some(Body::Reader(body, len)), timeout)
    }

    fn exchange(
        &self,
        head: &[u8],
        body: Option<Body<'_>>,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let deadline = Deadline::new(timeout);
        let stream = UnixStream::connect(&self.socket).map_err(|source| HttpError::Connect {
            path: self.socket.clone(),
            source,
        })?;
        exchange(stream, head, body, deadline, self.max_body_bytes)
    }
}

/// A request's body: in memory, or read as it is sent (`len` bytes exactly).
enum Body<'a> {
    Bytes(&'a [u8]),
    Reader(&'a mut dyn Read, u64),
}

/// Bytes of a streamed body read and written at a time.
const STREAM_PIECE: usize = 256 << 10;

/// Writes `len` bytes of `body` on the stream, failing when it has fewer or more.
fn write_streamed(
    deadline: &Deadline,
    stream: &mut UnixStream,
    body: &mut dyn Read,
    len: u64,
) -> Result<(), HttpError> {
    let mut piece = vec![0u8; STREAM_PIECE];
    let mut left = len;
    while left > 0 {
        let want = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match body.read(&mut piece[..want]) {
            Ok(0) => {
                return Err(HttpError::InvalidRequest(format!(
                    "the body ended after {} of its {len} bytes (did the file change?)",
                    len - left
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(HttpError::Io(e)),
        };
        deadline.write_all(stream, &piece[..n])?;
        left -= n as u64;
    }
    match body.read(&mut piece[..1]) {
        Ok(0) => Ok(()),
        Ok(_) => Err(HttpError::InvalidRequest(format!(
            "the body is longer than its {len} bytes (did the file change?)"
        ))),
        Err(e) => Err(HttpError::Io(e)),
    }
}

/// Writes the request on a connected stream and reads the answer.
fn exchange(
    mut stream: UnixStream,
    head: &[u8],
    body: Option<Body<'_>>,
    deadline: Deadline,
    max_body: usize,
) -> Result<Response, HttpError> {
    deadline.write_all(&mut stream, head)?;
    // A server may answer before it has read the whole body (a refusal) and close: its answer
    // is then the one to report, not the broken pipe of the rest of the body.
    let written = match body {
        Some(Body::Bytes(body)) => deadline.write_all(&mut stream, body),
        Some(Body::Reader(body, len)) => write_streamed(&deadline, &mut stream, body, len),
        None => Ok(()),
    };
    // A body that did not match its length is the caller's error, whatever the server said.
    if let Err(e @ HttpError::InvalidRequest(_)) = written {
        return Err(e);
    }
    let mut reader = Reader {
        stream,
        buf: Vec::with_capacity(READ_BUF),
        pos: 0,
        eof: false,
        deadline,
    };
    match written {
        Ok(()) => read_response(&mut reader, max_body),
        Err(e) => read_response(&mut reader, max_body).map_err(|_| e),
    }
}

/// Reads an answer held in memory, handed to the reader `piece` bytes at a time (at least one),
/// exactly as [`Client::send`] reads it from the socket. For the fuzz target in `fuzz/`: not
/// part of the SDK's API.
#[doc(hidden)]
pub fn parse_response(answer: &[u8], piece: usize, max_body: usize) -> Result<Response, HttpError> {
    let mut reader = Reader {
        stream: Pieces {
            data: answer,
            piece: piece.max(1),
        },
        buf: Vec::with_capacity(READ_BUF),
        pos: 0,
        eof: false,
        deadline: Deadline::new(DEFAULT_TIMEOUT),
    };
    read_response(&mut reader, max_body)
}

/// Serialises the request line and headers.
fn encode_head(request: &Request<'_>, body_len: Option<u64>) -> Result<Vec<u8>, HttpError> {
    if request.method.is_empty() || !request.method.bytes().all(is_token_byte) {
        return Err(HttpError::InvalidRequest(format!(
            "method {:?} is not an HTTP token",
            request.method
        )));
    }
    if !request.path.starts_with('/') || !request.path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::InvalidRequest(format!(
            "request target {:?} must start with / and hold only visible ASCII",
            request.path
        )));
    }
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n",
        request.method, request.path
    );
    for (name, value) in request.headers {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HttpError::InvalidRequest(format!(
                "header name {name:?} is not an HTTP token"
            )));
        }
        let reserved = ["host", "connection", "content-length", "transfer-encoding"];
        if reserved.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            return Err(HttpError::InvalidRequest(format!(
                "header {name} is set by the client"
            )));
        }
        if !value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(HttpError::InvalidRequest(format!(
                "the value of header {name} holds a control or non-ASCII character"
            )));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match body_len {
        Some(len) => head.push_str(&format!("Content-Length: {len}\r\n")),
        None if request.method != "GET" && request.method != "HEAD" => {
            head.push_str("Content-Length: 0\r\n")
        }
        None => {}
    }
    head.push_str("\r\n");
    Ok(head.into_bytes())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    fn new(timeout: Duration) -> Self {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    /// Time left, or the timeout error once it is gone.
    fn remaining(&self) -> Result<Duration, HttpError> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(HttpError::Timeout(self.timeout))
        } else {
            Ok(left)
        }
    }

    fn map_io(&self, e: std::io::Error) -> HttpError {
        match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => HttpError::Timeout(self.timeout),
            _ => HttpError::Io(e),
        }
    }

    fn write_all(&self, stream: &mut UnixStream, mut data: &[u8]) -> Result<(), HttpError> {
        while !data.is_empty() {
            stream
                .set_write_timeout(Some(self.remaining()?))
                .map_err(HttpError::Io)?;
            match stream.write(data) {
                Ok(0) => return Err(HttpError::Io(ErrorKind::WriteZero.into())),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.map_io(e)),
            }
        }
        Ok(())
    }
}

/// Where a [`Reader`] gets its bytes: the socket, or memory for the fuzz target.
trait Source: Read {
    /// Prepares the next read to end by the deadline.
    fn before_read(&mut self, deadline: &Deadline) -> Result<(), HttpError>;
}

impl Source for UnixStream {
    fn before_read(&mut self, deadline: &Deadline) -> Result<(), HttpError> {
        self.set_read_timeout(Some(deadline.remaining()?))
            .map_err(HttpError::Io)
    }
}

/// Bytes in memory, at most `piece` per read.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.piece).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Source for Pieces<'_> {
    fn before_read(&mut self, _deadline: &Deadline) -> Result<(), HttpError> {
        Ok(())
    }
}

/// Buffered reads under the deadline.
struct Reader<S> {
    stream: S,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
    deadline: Deadline,
}

impl<S: Source> Reader<S> {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more bytes into the buffer; returns false at the end of the stream.
    fn fill(&mut self) -> Result<bool, HttpError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; READ_BUF];
        loop {
            self.stream.before_read(&self.deadline)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A peer that closes without reading our whole request resets the connection;
                // what it sent before that is still the answer, so treat it as the end.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Ok(false);
                }
                Err(e) => return Err(self.deadline.map_io(e)),
            }
        }
    }

    /// One CRLF-terminated line (without the CRLF), at most `limit` bytes.
    fn line(&mut self, limit: usize, what: &str) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(i) = self.buffered().windows(2).position(|w| w == b"\r\n") {
                if i > limit {
                    return Err(HttpError::Malformed(format!(
                        "{what} is longer than {limit} bytes"
                    )));
                }
                let line = self.buffered()[..i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.buffered().len() > limit + 1 {
                return Err(HttpError::Malformed(format!(
                    "{what} is longer than {limit} bytes"
                )));
            }
            if !self.fill()? {
                return Err(HttpError::Truncated);
            }
        }
    }

    /// Exactly `n` bytes appended to `out`.
    fn exact(&mut self, mut n: usize, out: &mut Vec<u8>) -> Result<(), HttpError> {
        while n > 0 {
            if self.buffered().is_empty() && !self.fill()? {
                return Err(HttpError::Truncated);
            }
            let take = n.min(self.buffered().len());
            out.extend_from_slice(&self.buffered()[..take]);
            self.pos += take;
            n -= take;
        }
        Ok(())
    }

    /// Everything to the end of the stream, at most `limit` bytes.
    fn read_to_end(&mut self, limit: usize, out: &mut Vec<u8>) -> Result<(), HttpError> {
        loop {
            if out.len() + self.buffered().len() > limit {
                return Err(HttpError::TooLarge { limit });
            }
            out.extend_from_slice(self.buffered());
            self.pos = self.buf.len();
            if !self.fill()? {
                return Ok(());
            }
        }
    }
}

fn read_response<S: Source>(r: &mut Reader<S>, max_body: usize) -> Result<Response, HttpError> {
    loop {
        let (status, headers) = read_head(r)?;
        // Interim answers (100 Continue, 103 Early Hints) precede the real one.
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        if status == 101 {
            return Err(HttpError::Malformed(
                "the proxy switched protocols, which this client does not speak".into(),
            ));
        }
        let body = read_body(r, status, &headers, max_body)?;
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

type Headers = Vec<(String, String)>;

fn read_head<S: Source>(r: &mut Reader<S>) -> Result<(u16, Headers), HttpError> {
    let mut budget = MAX_HEAD_BYTES;
    let line = r.line(budget, "the status line")?;
    budget = budget.saturating_sub(line.len() + 2);
    let status = parse_status_line(&line)?;
    let mut headers = Vec::new();
    loop {
        let line = r.line(budget, "the answer's head")?;
        budget = budget.saturating_sub(line.len() + 2);
        if line.is_empty() {
            return Ok((status, headers));
        }
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::Malformed(format!(
                "more than {MAX_HEADERS} header lines"
            )));
        }
        headers.push(parse_header(&line)?);
        if budget == 0 {
            return Err(HttpError::Malformed(format!(
                "the answer's head is longer than {MAX_HEAD_BYTES} bytes"
            )));
        }
    }
}

fn parse_status_line(line: &[u8]) -> Result<u16, HttpError> {
    let bad = || {
        HttpError::Malformed(format!(
            "bad status line {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .ok_or_else(bad)?;
    let code = rest.get(..3).ok_or_else(bad)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
        return Err(bad());
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&status) {
        return Err(bad());
    }
    Ok(status)
}

fn parse_header(line: &[u8]) -> Result<(String, String), HttpError> {
    let bad = |why: &str| {
        HttpError::Malformed(format!(
            "bad header line {:?}: {why}",
            String::from_utf8_lossy(line)
        ))
    };
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad("no colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().copied().all(is_token_byte) {
        return Err(bad(
            "the name is not an HTTP token (folded lines are refused)",
        ));
    }
    if value.iter().any(|&b| b != b'\t' && b.is_ascii_control()) {
        return Err(bad("control character in the value"));
    }
    let value = String::from_utf8_lossy(value).trim().to_owned();
    Ok((String::from_utf8_lossy(name).to_ascii_lowercase(), value))
}

fn read_body<S: Source>(
    r: &mut Reader<S>,
    status: u16,
    headers: &Headers,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    let te: Vec<&str> = values(headers, "transfer-encoding");
    let lengths: Vec<&str> = values(headers, "content-length");
    if status == 204 || status == 304 {
        return Ok(Vec::new());
    }
    let mut body = Vec::new();
    if !te.is_empty() {
        if !lengths.is_empty() {
            return Err(HttpError::Malformed(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        if codings != ["chunked"] {
            return Err(HttpError::Malformed(format!(
                "unsupported transfer coding {}",
                te.join(", ")
            )));
        }
        read_chunked(r, max_body, &mut body)?;
        return Ok(body);
    }
    if let Some(first) = lengths.first() {
        if lengths.iter().any(|l| l != first) {
            return Err(HttpError::Malformed(
                "conflicting Content-Length headers".into(),
            ));
        }
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::Malformed(format!(
                "bad Content-Length {first:?}"
            )));
        }
        let n: usize = first
            .parse()
            .map_err(|_| HttpError::TooLarge { limit: max_body })?;
        if n > max_body {
            return Err(HttpError::TooLarge { limit: max_body });
        }
        body.reserve(n);
        r.exact(n, &mut body)?;
        return Ok(body);
    }
    r.read_to_end(max_body, &mut body)?;
    Ok(body)
}

fn values<'a>(headers: &'a Headers, name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn read_chunked<S: Source>(
    r: &mut Reader<S>,
    max_body: usize,
    body: &mut Vec<u8>,
) -> Result<(), HttpError> {
    loop {
        let line = r.line(MAX_HEAD_BYTES, "a chunk-size line")?;
        let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_text = String::from_utf8_lossy(size_part);
        let size_text = size_text.trim();
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HttpError::Malformed(format!(
                "bad chunk size {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::TooLarge { limit: max_body })?;
        if size == 0 {
            // Trailer fields, then the empty line.
            let mut budget = MAX_HEAD_BYTES;
            loop {
                let trailer = r.line(budget, "the trailer")?;
                if trailer.is_empty() {
                    return Ok(());
                }
                budget = budget.saturating_sub(trailer.len() + 2);
                if budget == 0 {
                    return Err(HttpError::Malformed(format!(
                        "the trailer is longer than {MAX_HEAD_BYTES} bytes"
                    )));
                }
            }
        }
        if body.len().saturating_add(size) > max_body {
            return Err(HttpError::TooLarge { limit: max_body });
        }
        r.exact(size, body)?;
        let end = r.line(0, "the end of a chunk")?;
        if !end.is_empty() {
            return Err(HttpError::Malformed(
                "chunk data longer than its size".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
