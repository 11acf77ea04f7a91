//! The node's client of the coordination server: it connects out (never listens), logs in with
//! its API key, and re-logs in when its token expires. Everything the server says is a request;
//! nothing here decides anything.
//!
//! [`RunClient`] acts with a server-issued run token, for the proxy (subtasks and their
//! results); the algorithm never sees that token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::RwLock;
use warden_api as api;
use zeroize::Zeroizing;

/// Largest answer read from the server (inputs and results included).
const MAX_JSON_BYTES: usize = 128 << 20;
/// Per-request timeout (connect + whole answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed exchange with the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the server at {url} is unreachable: {message}; the node retries with backoff")]
    Unreachable { url: String, message: String },
    #[error("the server answered {status} to {what}: {message}")]
    Status {
        what: String,
        status: u16,
        code: Option<api::ErrorCode>,
        message: String,
    },
    #[error("the server's answer to {what} is not valid: {message}")]
    Decode { what: String, message: String },
    #[error("cannot build the http client: {0}")]
    Client(String),
}

impl ServerError {
    /// Whether retrying later may succeed (server down, restarting, overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            ServerError::Unreachable { .. } => true,
            ServerError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ServerError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

type Result<T, E = ServerError> = std::result::Result<T, E>;

/// Who this node is, as the server says after login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: i64,
    pub organization_id: i64,
    pub collaboration_id: i64,
}

#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base: String,
    contact: Arc<std::sync::Mutex<Contact>>,
}

/// What the node knows of its last exchanges with the server, for `warden node status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// The last exchange got an answer that was not a server error (5xx), throttling, or the
    /// refusal of the node's API key.
    pub connected: bool,
    /// Unix seconds of the last such answer.
    pub last_ok: Option<i64>,
    /// Unix seconds and Warden's words (never the server's text) of the last failure.
    pub last_error: Option<(i64, String)>,
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Http {
    fn new(base: &str) -> Result<Http> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ServerError::Client(e.to_string()))?;
        Ok(Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
            contact: Arc::new(std::sync::Mutex::new(Contact::default())),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answered(&self) {
        let mut c = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        c.connected = true;
        c.last_ok = Some(unix_now());
    }

    /// Records a failed exchange; `why` is Warden's own words.
    fn failed(&self, why: String) {
        let mut c = self.contact.lock().unwrap_or_else(|p| p.into_inner());
        c.connected = false;
        c.last_error = Some((unix_now(), why));
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> Result<Vec<u8>> {
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "no answer in time"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "the exchange failed"
            };
            self.failed(format!("{what}: {why}"));
            ServerError::Unreachable {
                url: self.base.clone(),
                message: e.to_string(),
            }
        })?;
        let status = resp.status().as_u16();
        let body = read_capped(resp, MAX_JSON_BYTES).await.map_err(|message| {
            self.failed(format!("{what}: the answer could not be read in full"));
            ServerError::Unreachable {
                url: self.base.clone(),
                message,
            }
        })?;
        if status >= 500 || status == 429 {
            self.failed(format!("{what}: the server answered {status}"));
        } else if token.is_none() && matches!(status, 401 | 403) {
            // Only the login goes without a token: the server refuses the node's API key (revoked,
            // rotated or wrong), which the node cannot recover from by itself.
            self.failed(format!(
                "{what}: the server refused the node's API key ({status})"
            ));
        } else {
            self.answered();
        }
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let (code, message) = match serde_json::from_slice::<api::ErrorBody>(&body) {
            Ok(b) => (Some(b.error.code), b.error.message),
            Err(_) => (
                None,
                String::from_utf8_lossy(&body).chars().take(200).collect(),
            ),
        };
        Err(ServerError::Status {
            what: what.to_owned(),
            status,
            code,
            message,
        })
    }
}

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > cap {
            return Err(format!("the answer is larger than {cap} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| ServerError::Decode {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

/// The node's own session at the server.
#[derive(Clone)]
pub struct ServerClient {
    http: Http,
    api_key: Arc<Zeroizing<String>>,
    token: Arc<RwLock<Option<String>>>,
}

impl fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerClient")
            .field("base", &self.http.base)
            .finish_non_exhaustive()
    }
}

impl ServerClient {
    pub fn new(base: &str, api_key: Zeroizing<String>) -> Result<ServerClient> {
        Ok(ServerClient {
            http: Http::new(base)?,
            api_key: Arc::new(api_key),
            token: Arc::new(RwLock::new(None)),
        })
    }

    pub fn base(&self) -> &str {
        &self.http.base
    }

    /// The last exchanges with the server (any request of this node or its runs' proxies).
    pub fn contact(&self) -> Contact {
        self.http
            .contact
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Exchanges the API key for a token and asks who this node is.
    pub async fn login(&self) -> Result<NodeIdentity> {
        let body = serde_json::to_vec(&api::NodeLoginRequest {
            api_key: self.api_key.as_str().to_owned(),
        })
        .map_err(|e| ServerError::Client(e.to_string()))?;
        let req = self
            .http
            .client
            .post(self.http.url("/api/auth/node"))
            .header("content-type", "application/json")
            .body(body);
        let answer = self.http.send("node login", req, None).await?;
        let token: api::TokenResponse = decode("node login", &answer)?;
        let req = self.http.client.get(self.http.url("/api/auth/whoami"));
        let answer = self
            .http
            .send("whoami", req, Some(&token.access_token))
            .await?;
        let who: api::WhoAmI = decode("whoami", &answer)?;
        *self.token.write().await = Some(token.access_token.clone());
        match who {
            api::WhoAmI::Node {
                id,
                organization_id,
                collaboration_id,
            } => Ok(NodeIdentity {
                node_id: id,
                organization_id,
                collaboration_id,
            }),
            other => Err(ServerError::Decode {
                what: "whoami".into(),
                message: format!("the API key does not belong to a node: {other:?}"),
            }),
        }
    }

    /// The current token, logging in when there is none.
    pub async fn token(&self) -> Result<String> {
        if let Some(t) = self.token.read().await.clone() {
            return Ok(t);
        }
        self.login().await?;
        self.token
            .read()
            .await
            .clone()
            .ok_or_else(|| ServerError::Client("login gave no token".into()))
    }

    /// Sends with the node token; on 401 logs in again once and retries.
    async fn call(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>> {
        let token = self.token().await?;
        match self
            .http
            .send(what, build(&self.http.client), Some(&token))
            .await
        {
            Err(ServerError::Status { status: 401, .. }) => {
                *self.token.write().await = None;
                let token = self.token().await?;
                self.http
                    .send(what, build(&self.http.client), Some(&token))
                    .await
            }
            other => other,
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T> {
        let url = self.http.url(path);
        let body = self.call(what, |c| c.get(&url)).await?;
        decode(what, &body)
    }

    async fn send_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = self.http.url(path);
        let bytes = serde_json::to_vec(body).map_err(|e| ServerError::Client(e.to_string()))?;
        let answer = self
            .call(what, |c| {
                c.request(method.clone(), &url)
                    .header("content-type", "application/json")
                    .body(bytes.clone())
            })
            .await?;
        decode(what, &answer)
    }

    /// Events after `after`, oldest first (the poll fallback).
    pub async fn events(&self, after: i64) -> Result<Vec<api::Event>> {
        self.get_json(
            "event poll",
            &format!("/api/events?after={after}&limit=100"),
        )
        .await
    }

    /// Ids of every run of this node that the server holds as pending, oldest first.
    pub async fn pending_runs(&self) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        let mut after: Option<i64> = None;
        loop {
            let path = match after {
                Some(a) => format!("/api/runs?state=pending&limit=500&after={a}"),
                None => "/api/runs?state=pending&limit=500".to_owned(),
            };
            let page: api::Page<api::Run> = self.get_json("pending runs", &path).await?;
            out.extend(page.items.iter().map(|r| r.id));
            match page.next {
                Some(n) if out.len() < 100_000 => after = Some(n),
                _ => break,
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The WebSocket URL of the event push, and the token to present.
    pub async fn event_socket(&self, after: i64) -> Result<(String, String)> {
        let token = self.token().await?;
        let base = if let Some(rest) = self.http.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.http.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.http.base.clone()
        };
        Ok((format!("{base}/api/events/ws?after={after}"), token))
    }

    /// Forget the token (after the push session was refused).
    pub async fn forget_token(&self) {
        *self.token.write().await = None;
    }

    pub async fn run(&self, id: i64) -> Result<api::Run> {
        self.get_json("run", &format!("/api/runs/{id}")).await
    }

    pub async fn task(&self, id: i64) -> Result<api::TaskDetail> {
        self.get_json("task", &format!("/api/tasks/{id}")).await
    }

    pub async fn collaboration(&self, id: i64) -> Result<api::Collaboration> {
        self.get_json("collaboration", &format!("/api/collaborations/{id}"))
            .await
    }

    pub async fn organization(&self, id: i64) -> Result<api::Organization> {
        self.get_json("organization", &format!("/api/organizations/{id}"))
            .await
    }

    /// The run's (sealed) input bytes.
    pub async fn input(&self, run_id: i64) -> Result<Vec<u8>> {
        let url = self.http.url(&format!("/api/runs/{run_id}/input"));
        self.call("run input", |c| c.get(&url)).await
    }

    pub async fn ack(&self, run_id: i64) -> Result<api::Run> {
        self.send_json(
            "ack",
            reqwest::Method::POST,
            &format!("/api/runs/{run_id}/ack"),
            &serde_json::json!({}),
        )
        .await
    }

    pub async fn update(&self, run_id: i64, update: &api::UpdateRun) -> Result<api::Run> {
        self.send_json(
            "run update",
            reqwest::Method::PATCH,
            &format!("/api/runs/{run_id}"),
            update,
        )
        .await
    }

    /// Uploads the (sealed) result; allowed while the run is running.
    pub async fn put_result(&self, run_id: i64, data: &[u8]) -> Result<()> {
        let url = self.http.url(&format!("/api/runs/{run_id}/result"));
        let data = data.to_vec();
        self.call("result upload", |c| {
            c.put(&url)
                .header("content-type", "application/octet-stream")
                .body(data.clone())
        })
        .await
        .map(|_| ())
    }

    /// Uploads the run's logs, sealed for the requester; allowed while the run is running or
    /// awaiting release, like a result.
    pub async fn put_logs(&self, run_id: i64, sealed: &[u8]) -> Result<()> {
        let url = self.http.url(&format!("/api/runs/{run_id}/logs"));
        let data = sealed.to_vec();
        self.call("logs upload", |c| {
            c.put(&url)
                .header("content-type", "application/octet-stream")
                .body(data.clone())
        })
        .await
        .map(|_| ())
    }

    /// Reports the latest checkpoint of an algorithm store this node verified (split views).
    pub async fn put_store_checkpoint(&self, report: &api::store::RelayedCheckpoint) -> Result<()> {
        let url = self.http.url("/api/store-checkpoints");
        let bytes = serde_json::to_vec(report).map_err(|e| ServerError::Client(e.to_string()))?;
        self.call("store checkpoint report", |c| {
            c.put(&url)
                .header("content-type", "application/json")
                .body(bytes.clone())
        })
        .await
        .map(|_| ())
    }

    /// The store checkpoints the nodes reported, as the server relays them (unverified: each
    /// is checked under the key this node pins).
    pub async fn store_checkpoints(&self) -> Result<api::store::RelayedCheckpoints> {
        self.get_json("store checkpoints", "/api/store-checkpoints")
            .await
    }

    /// A run token for the proxy (the run must be running).
    pub async fn run_token(&self, run_id: i64) -> Result<RunClient> {
        let token: api::RunToken = self
            .send_json(
                "run token",
                reqwest::Method::POST,
                &format!("/api/runs/{run_id}/token"),
                &serde_json::json!({}),
            )
            .await?;
        Ok(RunClient {
            http: self.http.clone(),
            token: Arc::new(Zeroizing::new(token.token)),
        })
    }
}

/// Acts at the server with one run's token: create subtasks, read them and their results.
#[derive(Clone)]
pub struct RunClient {
    http: Http,
    token: Arc<Zeroizing<String>>,
}

impl fmt::Debug for RunClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunClient(<redacted>)")
    }
}

impl RunClient {
    pub async fn create_task(&self, task: &api::CreateTask) -> Result<api::TaskDetail> {
        let bytes = serde_json::to_vec(task).map_err(|e| ServerError::Client(e.to_string()))?;
        let req = self
            .http
            .client
            .post(self.http.url("/api/tasks"))
            .header("content-type", "application/json")
            .body(bytes);
        let answer = self
            .http
            .send("subtask creation", req, Some(&self.token))
            .await?;
        decode("subtask creation", &answer)
    }

    pub async fn task(&self, id: i64) -> Result<api::TaskDetail> {
        let req = self
            .http
            .client
            .get(self.http.url(&format!("/api/tasks/{id}")));
        let answer = self.http.send("subtask", req, Some(&self.token)).await?;
        decode("subtask", &answer)
    }

    pub async fn result(&self, run_id: i64) -> Result<Vec<u8>> {
        let req = self
            .http
            .client
            .get(self.http.url(&format!("/api/runs/{run_id}/result")));
        self.http
            .send("subtask result", req, Some(&self.token))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that refuses every request with `status`; its base URL.
    async fn refusing(status: u16) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let code = axum::http::StatusCode::from_u16(status).unwrap();
        let app = axum::Router::new().fallback(move || async move {
            (
                code,
                [("content-type", "application/json")],
                r#"{"error":{"code":"unauthenticated","message":"\u001b[31mno"}}"#,
            )
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    #[tokio::test]
    async fn a_refused_api_key_is_a_lost_contact_in_wardens_words() {
        let client = ServerClient::new(&refusing(401).await, Zeroizing::new("k".into())).unwrap();
        assert!(client.login().await.is_err());
        let c = client.contact();
        assert!(!c.connected, "{c:?}");
        let (_, why) = c.last_error.expect("a last error");
        assert_eq!(
            why,
            "node login: the server refused the node's API key (401)"
        );
    }

    #[tokio::test]
    async fn a_client_error_that_is_not_the_login_keeps_the_contact() {
        let http = Http::new(&refusing(404).await).unwrap();
        let req = http.client.get(http.url("/api/runs/1"));
        assert!(http.send("run", req, Some("token")).await.is_err());
        let c = http.contact.lock().unwrap().clone();
        assert!(c.connected, "{c:?}");
        assert_eq!(c.last_error, None);
    }
}
