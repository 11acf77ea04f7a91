//! A lying server: a reverse proxy in front of a real Warden server, for tests that prove that
//! nodes and clients do not trust what the server tells them.
//!
//! [`LyingProxy::start`] listens on `127.0.0.1:0` and forwards every HTTP request (method, path
//! and query, headers with `Authorization`, body) to the upstream base URL, and returns its
//! answer. Tests install rules while it runs, and remove them again:
//!
//! - answer rules ([`LyingProxy::rewrite`], [`LyingProxy::rewrite_json`],
//!   [`LyingProxy::swap_body`]) edit what comes back: the status, the headers, a JSON document,
//!   or the bytes of a binary body (the sealed input a node downloads, the sealed result a
//!   researcher downloads);
//! - request rules ([`LyingProxy::rewrite_request`], [`LyingProxy::rewrite_request_json`]) edit
//!   what goes upstream (a `CreateTask` body, a path), or answer without asking the upstream
//!   at all ([`Outgoing::respond`]).
//!
//! Request rules run in the order they were installed, then the upstream is asked, then answer
//! rules run in order (on the upstream's answer or the local one). Rules may keep state (they
//! are `FnMut`), for instance to keep the first sealed input they saw and serve it again later.
//! A rule may install or clear rules itself; those apply from the next request on.
//!
//! Every exchange is recorded ([`LyingProxy::exchanges`]): method, path, query, the upstream's
//! status and the status returned, and both bodies as they were sent.
//!
//! WebSocket upgrades (the node's `/api/events/ws` push) are refused with 503, so a node behind
//! the proxy falls back to polling `GET /api/events` (and its list of pending runs) through it:
//! after a failed push the node sleeps `min(backoff, poll_secs)` and polls again, so give nodes
//! behind the proxy a small `[server] poll_secs` (1) or they see new runs only after the
//! default interval.
//!
//! ```no_run
//! # async fn demo(server_url: &str) -> warden_testkit::Result<()> {
//! use warden_testkit::lying::LyingProxy;
//!
//! let proxy = LyingProxy::start(server_url).await?;
//! // Point the node's and the client's `[server] url` at `proxy.url()`, then lie:
//! let rule = proxy.rewrite_json(|req, v| {
//!     if req.is("GET", "/api/tasks/*") {
//!         v["task"]["nonce"] = serde_json::json!("0".repeat(32));
//!     }
//! });
//! proxy.swap_body("GET", "/api/runs/*/input", b"other sealed bytes".to_vec());
//! // ... run the node; assert it rejected the run ...
//! assert!(proxy.count("GET", "/api/runs/*/input") > 0);
//! proxy.remove(rule);
//! proxy.clear();
//! # Ok(()) }
//! ```
//!
//! The module also edits a SQLite server database directly ([`sqlite_exec`],
//! [`sqlite_query`]), for tests in which the server's storage is what lies.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Result;

/// Largest request or answer body the proxy buffers.
const MAX_BODY: usize = 512 * 1024 * 1024;
/// Headers of one hop only, never forwarded (`content-length` is recomputed after rewrites).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The request as the client sent it; rules match on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Upper case, e.g. `GET`.
    pub method: String,
    /// e.g. `/api/runs/7/input`.
    pub path: String,
    /// Without the `?`; `None` when the URL has none.
    pub query: Option<String>,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl RequestInfo {
    /// Whether the method is `method` (any case) and the path matches `pattern`, segment by
    /// segment, where `*` matches any one segment: `req.is("GET", "/api/runs/*/input")`.
    pub fn is(&self, method: &str, pattern: &str) -> bool {
        self.method.eq_ignore_ascii_case(method) && path_matches(pattern, &self.path)
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The first path segment that is a number: the id in `/api/runs/7/input` or
    /// `/api/tasks/3`.
    pub fn id(&self) -> Option<i64> {
        self.path.split('/').find_map(|s| s.parse().ok())
    }
}

/// An answer on its way back to the client; answer rules edit it in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Header names in lower case; `content-length` is set from the body when sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// An answer with `status` and `body` and no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, value: &Value) -> Answer {
        let mut a = Answer::new(status, Vec::new());
        a.set_json(value);
        a
    }

    /// The body as JSON, when it is JSON.
    pub fn parse_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Replace the body with `value` serialised, typed `application/json`.
    pub fn set_json(&mut self, value: &Value) {
        self.body = value.to_string().into_bytes();
        set_header_in(&mut self.headers, "content-type", "application/json");
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// Set header `name` (replacing every earlier value).
    pub fn set_header(&mut self, name: &str, value: &str) {
        set_header_in(&mut self.headers, name, value);
    }
}

/// A request on its way to the upstream; request rules edit it in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case (`authorization` included).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When set, the upstream is not asked and this is the answer (answer rules still run).
    pub local: Option<Answer>,
}

impl Outgoing {
    /// The body as JSON, when it is JSON.
    pub fn parse_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Replace the body with `value` serialised, typed `application/json`.
    pub fn set_json(&mut self, value: &Value) {
        self.body = value.to_string().into_bytes();
        set_header_in(&mut self.headers, "content-type", "application/json");
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        set_header_in(&mut self.headers, name, value);
    }

    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Answer the client with `answer` instead of asking the upstream (a server that claims
    /// to have stored an upload it dropped, or that serves a made-up document).
    pub fn respond(&mut self, answer: Answer) {
        self.local = Some(answer);
    }
}

/// One request through the proxy and its answer, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// As the client sent them (before request rules).
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// What the upstream answered; `None` when it was not asked (a refused WebSocket, a local
    /// answer) or could not be reached.
    pub upstream_status: Option<u16>,
    /// What the client got (after answer rules).
    pub status: u16,
    /// The request body as sent upstream (after request rules).
    pub request_body: Vec<u8>,
    /// The answer body as the client got it (after answer rules).
    pub body: Vec<u8>,
}

impl Exchange {
    /// Whether the method is `method` and the path matches `pattern` (see [`RequestInfo::is`]).
    pub fn is(&self, method: &str, pattern: &str) -> bool {
        self.method.eq_ignore_ascii_case(method) && path_matches(pattern, &self.path)
    }
}

/// Names an installed rule, for [`LyingProxy::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

type RequestHook = dyn FnMut(&RequestInfo, &mut Outgoing) + Send;
type AnswerHook = dyn FnMut(&RequestInfo, &mut Answer) + Send;

#[derive(Clone)]
enum Rule {
    Request(Arc<Mutex<Box<RequestHook>>>),
    Answer(Arc<Mutex<Box<AnswerHook>>>),
}

#[derive(Default)]
struct Shared {
    rules: Mutex<(u64, Vec<(RuleId, Rule)>)>,
    log: Mutex<Vec<Exchange>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("rules", &lock(&self.rules).1.len())
            .field("exchanges", &lock(&self.log).len())
            .finish()
    }
}

/// A rule that panicked (a failed assertion inside it) must not take the proxy down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    shared: Arc<Shared>,
}

/// A reverse proxy on 127.0.0.1 in front of a real server; stopped on drop.
#[derive(Debug)]
pub struct LyingProxy {
    addr: SocketAddr,
    upstream: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl LyingProxy {
    /// Start a proxy in front of `upstream` (a base URL such as `http://127.0.0.1:7600`) on a
    /// free loopback port. Runs on the calling tokio runtime.
    pub async fn start(upstream: &str) -> Result<LyingProxy> {
        let upstream = upstream.trim_end_matches('/').to_owned();
        if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
            return Err(format!(
                "the upstream `{upstream}` is not an http(s) base URL; give the server's URL, \
                 e.g. http://127.0.0.1:7600"
            ));
        }
        // Never an environment proxy, never a redirect followed on the client's behalf.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the proxy's HTTP client: {e}"))?;
        let shared = Arc::new(Shared::default());
        let proxy = Arc::new(Proxy {
            upstream: upstream.clone(),
            client,
            shared: shared.clone(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("the lying proxy cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("the lying proxy has no local address: {e}"))?;
        let app = axum::Router::new().fallback(handle).with_state(proxy);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("lying proxy stopped: {e}");
            }
        });
        Ok(LyingProxy {
            addr,
            upstream,
            shared,
            shutdown: Some(tx),
            task,
        })
    }

    /// The proxy's base URL, `http://127.0.0.1:PORT`: give it to nodes and clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL the proxy forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    fn install(&self, rule: Rule) -> RuleId {
        let mut rules = lock(&self.shared.rules);
        rules.0 += 1;
        let id = RuleId(rules.0);
        rules.1.push((id, rule));
        id
    }

    /// An answer rule: `f` sees every answer and may change its status, headers and body.
    pub fn rewrite<F>(&self, f: F) -> RuleId
    where
        F: FnMut(&RequestInfo, &mut Answer) + Send + 'static,
    {
        self.install(Rule::Answer(Arc::new(Mutex::new(Box::new(f)))))
    }

    /// An answer rule for JSON answers: `f` edits the parsed document, which is sent back
    /// serialised (the bytes stay as they were when `f` changes nothing). Answers that are not
    /// JSON pass untouched.
    pub fn rewrite_json<F>(&self, mut f: F) -> RuleId
    where
        F: FnMut(&RequestInfo, &mut Value) + Send + 'static,
    {
        self.rewrite(move |req, answer| {
            if let Some(mut v) = answer.parse_json() {
                let before = v.clone();
                f(req, &mut v);
                if v != before {
                    answer.set_json(&v);
                }
            }
        })
    }

    /// An answer rule: answers to `method` `pattern` (see [`RequestInfo::is`]) get `body`
    /// instead of theirs, status and headers unchanged.
    pub fn swap_body(&self, method: &str, pattern: &str, body: Vec<u8>) -> RuleId {
        let (method, pattern) = (method.to_owned(), pattern.to_owned());
        self.rewrite(move |req, answer| {
            if req.is(&method, &pattern) {
                answer.body = body.clone();
            }
        })
    }

    /// A request rule: `f` sees every request before it goes upstream and may change its
    /// path, query, headers and body, or answer it locally ([`Outgoing::respond`]).
    pub fn rewrite_request<F>(&self, f: F) -> RuleId
    where
        F: FnMut(&RequestInfo, &mut Outgoing) + Send + 'static,
    {
        self.install(Rule::Request(Arc::new(Mutex::new(Box::new(f)))))
    }

    /// A request rule for JSON bodies (a `CreateTask`, a run update): `f` edits the parsed
    /// document, which goes upstream serialised. Other bodies pass untouched.
    pub fn rewrite_request_json<F>(&self, mut f: F) -> RuleId
    where
        F: FnMut(&RequestInfo, &mut Value) + Send + 'static,
    {
        self.rewrite_request(move |req, out| {
            if let Some(mut v) = out.parse_json() {
                let before = v.clone();
                f(req, &mut v);
                if v != before {
                    out.set_json(&v);
                }
            }
        })
    }

    /// Remove one rule; false when it was already gone.
    pub fn remove(&self, id: RuleId) -> bool {
        let mut rules = lock(&self.shared.rules);
        let before = rules.1.len();
        rules.1.retain(|(i, _)| *i != id);
        rules.1.len() != before
    }

    /// Remove every rule: from the next request on the proxy tells the truth.
    pub fn clear(&self) {
        lock(&self.shared.rules).1.clear();
    }

    /// Every exchange so far, oldest first.
    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.shared.log).clone()
    }

    /// How many recorded requests were `method` `pattern` (see [`RequestInfo::is`]).
    pub fn count(&self, method: &str, pattern: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|e| e.is(method, pattern))
            .count()
    }

    /// Forget the recorded exchanges.
    pub fn clear_exchanges(&self) {
        lock(&self.shared.log).clear();
    }

    /// Stop accepting and wait for the proxy to finish its in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for LyingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn set_header_in(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_ascii_lowercase(), value.to_owned()));
}

fn header_list(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str()))
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn header_map(list: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in list {
        if HOP_BY_HOP.contains(&n.to_ascii_lowercase().as_str()) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.append(n, v);
        }
    }
    map
}

/// The server's error body, so that clients print the proxy's own answers like the server's.
fn error_answer(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
}

async fn handle(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let info = RequestInfo {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: header_list(&parts.headers),
    };
    let record = |upstream_status, request_body: Vec<u8>, answer: &Answer| {
        lock(&proxy.shared.log).push(Exchange {
            method: info.method.clone(),
            path: info.path.clone(),
            query: info.query.clone(),
            upstream_status,
            status: answer.status,
            request_body,
            body: answer.body.clone(),
        });
    };
    if is_upgrade(&parts.headers) {
        let answer = error_answer(
            503,
            "unavailable",
            "the lying proxy refuses WebSocket upgrades; poll GET /api/events instead",
        );
        record(None, Vec::new(), &answer);
        return respond(answer);
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            let answer = error_answer(
                400,
                "invalid_request",
                &format!("the lying proxy could not read the request body: {e}"),
            );
            record(None, Vec::new(), &answer);
            return respond(answer);
        }
    };
    let mut out = Outgoing {
        method: info.method.clone(),
        path: info.path.clone(),
        query: info.query.clone(),
        headers: info.headers.clone(),
        body,
        local: None,
    };
    // A snapshot, so that a rule may install or clear rules without a deadlock.
    let rules: Vec<Rule> = lock(&proxy.shared.rules)
        .1
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    for rule in &rules {
        if let Rule::Request(f) = rule {
            (lock(f))(&info, &mut out);
        }
    }
    let (upstream_status, mut answer) = match out.local.take() {
        Some(a) => (None, a),
        None => match forward(&proxy, &out).await {
            Ok(a) => (Some(a.status), a),
            Err(e) => (None, error_answer(502, "unavailable", &e)),
        },
    };
    for rule in &rules {
        if let Rule::Answer(f) = rule {
            (lock(f))(&info, &mut answer);
        }
    }
    record(upstream_status, out.body, &answer);
    respond(answer)
}

async fn forward(proxy: &Proxy, out: &Outgoing) -> std::result::Result<Answer, String> {
    let mut url = format!("{}{}", proxy.upstream, out.path);
    if let Some(q) = &out.query {
        url.push('?');
        url.push_str(q);
    }
    let method = reqwest::Method::from_bytes(out.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", out.method))?;
    let resp = proxy
        .client
        .request(method, &url)
        .headers(header_map(&out.headers))
        .body(out.body.clone())
        .send()
        .await
        .map_err(|e| format!("the lying proxy cannot reach the upstream {url}: {e}"))?;
    let status = resp.status().as_u16();
    let headers = header_list(resp.headers());
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("the upstream's answer to {url} broke off: {e}"))?
        .to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn respond(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = Response::new(Body::from(answer.body));
    *resp.status_mut() = status;
    *resp.headers_mut() = header_map(&answer.headers);
    resp
}

/// A value read by [`sqlite_query`], in SQLite's own storage classes.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

async fn sqlite_connect(db_path: &Path) -> Result<sqlx::SqliteConnection> {
    use sqlx::ConnectOptions as _;

    if !db_path.is_file() {
        return Err(format!(
            "{} is not a SQLite database file; give the server's database path (its \
             `database.url` without `sqlite://`)",
            db_path.display()
        ));
    }
    // The journal mode is the file's (the server's WAL); a busy server is waited for.
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db_path)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("cannot open the SQLite database {}: {e}", db_path.display()))
}

/// Run `sql` (one or more `;`-separated statements) on the SQLite database at `db_path`, e.g.
/// the file of a running server: what a server whose storage was tampered with would serve.
/// Returns the number of rows changed.
pub async fn sqlite_exec(db_path: &Path, sql: &str) -> Result<u64> {
    use sqlx::Connection as _;

    let mut conn = sqlite_connect(db_path).await?;
    let done = sqlx::raw_sql(sql)
        .execute(&mut conn)
        .await
        .map_err(|e| format!("`{sql}` failed on {}: {e}", db_path.display()));
    let _ = conn.close().await;
    Ok(done?.rows_affected())
}

/// Run one query on the SQLite database at `db_path` and return its rows.
pub async fn sqlite_query(db_path: &Path, sql: &str) -> Result<Vec<Vec<SqlValue>>> {
    use sqlx::{Connection as _, Row as _, TypeInfo as _, ValueRef as _};

    let mut conn = sqlite_connect(db_path).await?;
    let rows = sqlx::query(sql)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| format!("`{sql}` failed on {}: {e}", db_path.display()));
    let _ = conn.close().await;
    let mut out = Vec::new();
    for row in rows? {
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            let raw = row
                .try_get_raw(i)
                .map_err(|e| format!("column {i} of `{sql}`: {e}"))?;
            // (A null's type info is the column's declared type.)
            let class = if raw.is_null() {
                "NULL".to_owned()
            } else {
                raw.type_info().name().to_owned()
            };
            let bad = |e: sqlx::Error| format!("column {i} of `{sql}`: {e}");
            values.push(match class.as_str() {
                "NULL" => SqlValue::Null,
                "INTEGER" => SqlValue::Integer(row.try_get_unchecked(i).map_err(bad)?),
                "REAL" => SqlValue::Real(row.try_get_unchecked(i).map_err(bad)?),
                "TEXT" => SqlValue::Text(row.try_get_unchecked(i).map_err(bad)?),
                _ => SqlValue::Blob(row.try_get_unchecked(i).map_err(bad)?),
            });
        }
        out.push(values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
