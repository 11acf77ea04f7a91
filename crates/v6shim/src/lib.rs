//! The vantage6 contract's loopback shim (docs/vantage6.md). vantage6's `AlgorithmClient`
//! speaks HTTP to `HOST:PORT`; a Warden run has no network, so this program, in a sidecar
//! container whose network namespace (only `lo`) the algorithm's container joins, listens on
//! `127.0.0.1:7601` and forwards each request to the node's proxy socket mounted into it.
//!
//! It is dumb on purpose: the node's proxy checks the token and does every translation and
//! check. The shim only narrows what reaches the proxy: one request per connection (its
//! `Connection` header made `close`, so a kept-alive connection cannot smuggle a second
//! request past the check), the methods and paths of the vantage6 subset the proxy serves, a
//! `Content-Length` body of at most [`MAX_BODY`] (no chunked bodies, no upgrades), a head of at
//! most [`MAX_HEAD`], and at most [`MAX_CONNECTIONS`] at once. Anything else is answered by the
//! shim itself with a JSON `{"msg": ...}` and never reaches the proxy.

#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where the shim listens by default (the vantage6 contract's `HOST` and `PORT`).
pub const LISTEN: &str = "127.0.0.1:7601";
/// The node's proxy socket inside the sidecar.
pub const SOCKET: &str = "/mnt/proxy/proxy.sock";
/// Largest request head.
pub const MAX_HEAD: usize = 16 << 10;
/// Largest request body (the proxy applies its own, smaller or equal, cap).
pub const MAX_BODY: u64 = 8 << 20;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the shim answers a request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

fn numeric(s: &str) -> bool {
    !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `method target` is one of the vantage6 requests the proxy serves: exact paths
/// (with numeric ids where the path takes one), an optional query of `[A-Za-z0-9_=&]` only.
pub fn allowed(method: &str, target: &str) -> Result<(), Refused> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !query
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'=' | b'&'))
    {
        return Err(refused(400, "the query may hold only [A-Za-z0-9_=&]"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    let get = match parts.as_slice() {
        ["", "api", "organization"]
        | ["", "api", "blobstream", "status"]
        | ["", "api", "result"] => true,
        ["", "api", "organization", id] | ["", "api", "task", id] if numeric(id) => true,
        ["", "api", "task", id, "status"] if numeric(id) => true,
        ["", "api", "task"] => false,
        _ => {
            return Err(refused(
                404,
                "the shim forwards only the vantage6 requests this node serves: GET \
                 /api/organization[/{id}], /api/blobstream/status, /api/task/{id}[/status], \
                 /api/result and POST /api/task",
            ));
        }
    };
    match (get, method) {
        (true, "GET") | (false, "POST") => Ok(()),
        _ => Err(refused(405, format!("{method} {path} is not forwarded"))),
    }
}

/// Checks a request head (`\r\n\r\n` included) and rewrites it for the proxy: the
/// connection-management headers dropped and `Connection: close` added. Returns the head to
/// send and the body's length.
pub fn rewrite(head: &[u8]) -> Result<(Vec<u8>, u64), Refused> {
    let text = std::str::from_utf8(head).map_err(|_| refused(400, "the head is not UTF-8"))?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or_else(|| refused(400, "the head does not end with an empty line"))?;
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or("");
    let mut words = request.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(refused(
            400,
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(refused(505, "only HTTP/1.1 is forwarded"));
    }
    allowed(method, target)?;
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    let mut length: Option<u64> = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| refused(400, "a header line has no colon"))?;
        if name.is_empty() || name.bytes().any(|b| !(b.is_ascii_graphic() && b != b':')) {
            return Err(refused(400, "a header name is not a token"));
        }
        let value = value.trim();
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(refused(400, "a header value holds a control character"));
        }
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "transfer-encoding" => {
                return Err(refused(
                    411,
                    "only bodies with a Content-Length are forwarded",
                ));
            }
            "upgrade" => return Err(refused(400, "upgrades are not forwarded")),
            "content-length" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| refused(400, "Content-Length is not a number"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(refused(400, "two different Content-Lengths"));
                }
                if n > MAX_BODY {
                    return Err(refused(413, format!("the body is over {MAX_BODY} bytes")));
                }
                length = Some(n);
            }
            "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" => continue,
            _ => {}
        }
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    Ok((out.into_bytes(), length.unwrap_or(0)))
}

fn answer(client: &mut TcpStream, r: &Refused) {
    let body = format!(
        "{{\"msg\":{}}}",
        serde_like_string(&format!("warden-v6-shim: {}", r.message))
    );
    let reason = match r.status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    let _ = write!(
        client,
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        r.status,
        body.len()
    );
}

/// A JSON string literal of `s`.
fn serde_like_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads the head: up to and including the first `\r\n\r\n`, and whatever body bytes came
/// with it.
fn read_head(client: &mut TcpStream) -> Result<(Vec<u8>, Vec<u8>), Refused> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(refused(400, format!("the head is over {MAX_HEAD} bytes")));
        }
        let n = client
            .read(&mut chunk)
            .map_err(|_| refused(400, "the request did not arrive in time"))?;
        if n == 0 {
            return Err(refused(400, "the connection closed before the head ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Serves one connection: one request forwarded to `socket`, or refused.
pub fn handle(mut client: TcpStream, socket: &Path) {
    let _ = client.set_read_timeout(Some(READ_TIMEOUT));
    let result = (|| -> Result<(), Refused> {
        let (head, early) = read_head(&mut client)?;
        let (head, length) = rewrite(&head)?;
        if early.len() as u64 > length {
            return Err(refused(400, "more bytes than the Content-Length"));
        }
        let mut proxy = UnixStream::connect(socket)
            .map_err(|e| refused(503, format!("the node's proxy is not reachable: {e}")))?;
        let bad = |_| refused(502, "the node's proxy closed the connection");
        proxy.write_all(&head).map_err(bad)?;
        proxy.write_all(&early).map_err(bad)?;
        let mut body = (&mut client).take(length - early.len() as u64);
        let copied = io::copy(&mut body, &mut proxy).map_err(bad)?;
        if copied + (early.len() as u64) < length {
            return Err(refused(400, "the body is shorter than its Content-Length"));
        }
        // The proxy answers and closes (Connection: close): its answer goes back as it is. The
        // write side stays open: a server may take a half-closed connection for a client gone.
        let _ = io::copy(&mut proxy, &mut client);
        Ok(())
    })();
    if let Err(r) = result {
        answer(&mut client, &r);
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Listens on `listen` and serves every connection on its own thread, at most
/// [`MAX_CONNECTIONS`] at once (others are refused with 503).
pub fn serve(listen: &str, socket: &Path) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    serve_on(listener, socket)
}

/// [`serve`] on a bound listener.
pub fn serve_on(listener: TcpListener, socket: &Path) -> io::Result<()> {
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(mut client) = conn else { continue };
        if live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::SeqCst);
            answer(&mut client, &refused(503, "too many connections at once"));
            continue;
        }
        let socket = socket.to_path_buf();
        let mine = live.clone();
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                handle(client, &socket);
                mine.fetch_sub(1, Ordering::SeqCst);
            });
        // No thread: the client was dropped (closed) with the closure.
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
