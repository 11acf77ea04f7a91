//! Shared test helpers: a small hostile HTTP/1.1 server on loopback, keys, and a client with
//! short timeouts.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_registry::{Client, ClientOptions, Limits};

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path with query string.
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How the fake server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A 200 with the given headers whose body never ends (64 KiB chunks, stops by itself after
    /// 256 MiB or when the client goes away).
    Endless { headers: Vec<(String, String)> },
    /// A 200 whose body arrives one byte every 200 ms (stops by itself after 60 s).
    Drip { headers: Vec<(String, String)> },
}

impl Reply {
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply::Full {
            status,
            headers: vec![],
            body: br#"{"errors":[{"code":"NOT_FOUND","message":"nothing here"}]}"#.to_vec(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        match &mut self {
            Reply::Full { headers, .. } | Reply::Endless { headers } | Reply::Drip { headers } => {
                headers.push((name.into(), value.into()))
            }
        }
        self
    }
}

pub type Handler = Arc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Wraps a synchronous handler.
pub fn sync_handler(f: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Handler {
    let f = Arc::new(f);
    Arc::new(move |req| {
        let f = f.clone();
        Box::pin(async move { f(&req) })
    })
}

/// A fake registry on 127.0.0.1; stops when dropped.
pub struct FakeServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(handler: Handler) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, handler).await;
                });
            }
        });
        FakeServer { addr, task }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(mut stream: TcpStream, handler: Handler) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        // Read one request head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 64 * 1024 {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let method = first.next().unwrap_or("").to_owned();
        let path = first.next().unwrap_or("").to_owned();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let body_len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        buf.drain(..head_end + 4);
        while buf.len() < body_len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..body_len);
        let head_only = method == "HEAD";
        let reply = handler(Req {
            method,
            path,
            headers,
        })
        .await;
        match reply {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\n");
                let mut has_len = false;
                for (k, v) in &headers {
                    has_len |= k.eq_ignore_ascii_case("content-length");
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                if !has_len {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                out.push_str("\r\n");
                stream.write_all(out.as_bytes()).await?;
                if !head_only {
                    stream.write_all(&body).await?;
                }
            }
            Reply::Endless { headers } => {
                let mut out = "HTTP/1.1 200 OK\r\nConnection: close\r\n".to_owned();
                for (k, v) in &headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                stream.write_all(out.as_bytes()).await?;
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..4096 {
                    stream.write_all(&chunk).await?;
                }
                return Ok(());
            }
            Reply::Drip { headers } => {
                let mut out = "HTTP/1.1 200 OK\r\nConnection: close\r\n".to_owned();
                for (k, v) in &headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                stream.write_all(out.as_bytes()).await?;
                for _ in 0..300 {
                    stream.write_all(b" ").await?;
                    stream.flush().await?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                return Ok(());
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Limits for tests: the default caps with short times.
pub fn test_limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        operation_timeout: Duration::from_secs(10),
        ..Limits::default()
    }
}

pub fn client() -> Client {
    Client::new(ClientOptions {
        limits: test_limits(),
        ..ClientOptions::default()
    })
    .unwrap()
}

pub fn client_with(opts: ClientOptions) -> Client {
    Client::new(opts).unwrap()
}

/// Converts fetched signatures to the trust crate's candidates.
pub fn candidates(set: &warden_registry::SignatureSet) -> Vec<warden_trust::SignatureCandidate> {
    set.candidates
        .iter()
        .map(|c| warden_trust::SignatureCandidate {
            payload: c.payload.clone(),
            signature_b64: c.signature_b64.clone(),
            origin: c.origin.clone(),
        })
        .collect()
}

pub fn new_key() -> warden_trust::SigningKey {
    warden_trust::SigningKey::generate(warden_trust::KeyAlgorithm::EcdsaP256).unwrap()
}
