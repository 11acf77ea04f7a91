//! The algorithm side of the node's proxy protocol (docs/algorithm-contract.md): list the
//! collaboration's organizations, create subtasks, wait for their results.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
pub use warden_api::RunState;
use warden_api::proxy as wire;
pub use warden_api::proxy::{NewSubtask, Organization};

use crate::http::{self, Client, HttpError, Request};

/// Longest wait one results request may ask the proxy for (the contract's limit).
pub const MAX_WAIT_PER_REQUEST: Duration = Duration::from_secs(wire::MAX_WAIT_SECS);
/// Extra time granted to a results request beyond its `wait`.
const WAIT_SLACK: Duration = Duration::from_secs(10);
/// Least time between two polls of an incomplete subtask, so that a proxy that answers at once
/// (ignoring `wait`) is not hammered.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Longest pause between retries of a rate-limited or unavailable results request.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(8);
/// Longest error message kept from an answer that is not a JSON error body.
const MAX_ERROR_EXCERPT: usize = 200;

/// An organization's ID.
pub type OrganizationId = i64;

/// The ID of a subtask, as the proxy returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What can go wrong with a proxy request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the proxy refused {request} with status {status} ({code}): {message}")]
    Refused {
        request: String,
        status: u16,
        /// The error body's code, or `unknown` when the body was not a JSON error body.
        code: String,
        message: String,
    },
    #[error("unexpected answer from the proxy to {request}: {detail}")]
    BadAnswer { request: String, detail: String },
    #[error(
        "subtask {task_id} was not complete after {waited:?}: {pending} of {total} runs have not \
         finished; wait longer or look at the nodes that have not answered"
    )]
    Timeout {
        task_id: TaskId,
        waited: Duration,
        pending: usize,
        total: usize,
    },
    #[error("the proxy token is unusable: {0}")]
    Token(String),
}

impl ProxyError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One run of a subtask, its result decoded from base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskResult {
    pub organization_id: OrganizationId,
    pub state: RunState,
    /// The bytes the run wrote to its output (empty if it wrote none); `None` unless completed.
    pub result: Option<Vec<u8>>,
    /// Why the run failed or was rejected.
    pub reason: Option<String>,
}

/// A result that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error(
        "the run at organization {organization_id} ended {state}: {reason}; check that node's \
         policy and logs"
    )]
    NotCompleted {
        organization_id: OrganizationId,
        state: RunState,
        reason: String,
    },
    #[error(
        "the result of organization {organization_id} is not the JSON expected: {source}; do the \
         algorithm versions match?"
    )]
    Json {
        organization_id: OrganizationId,
        #[source]
        source: serde_json::Error,
    },
}

impl SubtaskResult {
    /// The result bytes of a completed run, or why there are none.
    pub fn bytes(&self) -> Result<&[u8], ResultError> {
        match (&self.result, self.state) {
            (Some(bytes), RunState::Completed) => Ok(bytes),
            (None, RunState::Completed) => Ok(&[]),
            _ => Err(ResultError::NotCompleted {
                organization_id: self.organization_id,
                state: self.state,
                reason: self
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".to_owned()),
            }),
        }
    }

    /// The result of a completed run parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ResultError> {
        serde_json::from_slice(self.bytes()?).map_err(|source| ResultError::Json {
            organization_id: self.organization_id,
            source,
        })
    }
}

/// One answer of the results endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubtaskResults {
    pub complete: bool,
    pub runs: Vec<SubtaskResult>,
}

/// A client of the node's proxy.
#[derive(Clone)]
pub struct Proxy {
    http: Client,
    authorization: String,
    timeout: Duration,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("Proxy")
            .field("socket", &self.http.socket())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A client of the proxy at `socket` that authenticates with `token` (`WARDEN_TOKEN`).
    pub fn new(socket: impl Into<PathBuf>, token: &str) -> Result<Proxy, ProxyError> {
        if token.is_empty() {
            return Err(ProxyError::Token(
                "it is empty; the node sets WARDEN_TOKEN for each run".into(),
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ProxyError::Token(
                "it holds spaces, control or non-ASCII characters; pass WARDEN_TOKEN unchanged"
                    .into(),
            ));
        }
        Ok(Proxy {
            http: Client::new(socket),
            authorization: format!("Bearer {token}"),
            timeout: http::DEFAULT_TIMEOUT,
        })
    }

    /// Sets the deadline of each request (a results request gets its `wait` on top).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the cap on an answer's size.
    pub fn with_max_answer_bytes(mut self, limit: usize) -> Self {
        self.http = self.http.with_max_body_bytes(limit);
        self
    }

    /// `GET /v1/organizations`: the collaboration's organizations.
    pub fn organizations(&self) -> Result<Vec<Organization>, ProxyError> {
        let body: wire::Organizations =
            self.call("GET", wire::ORGANIZATIONS_PATH, None, self.timeout)?;
        Ok(body.organizations)
    }

    /// `POST /v1/subtasks`: runs `function` with `args` at `organizations`, with this run's image.
    pub fn create_subtask(
        &self,
        function: &str,
        args: &serde_json::Value,
        organizations: &[OrganizationId],
    ) -> Result<TaskId, ProxyError> {
        self.create(&NewSubtask {
            function: function.to_owned(),
            args: args.clone(),
            organizations: organizations.to_vec(),
            name: None,
        })
    }

    /// `POST /v1/subtasks` with every field, including an optional name.
    pub fn create(&self, subtask: &NewSubtask) -> Result<TaskId, ProxyError> {
        let body = serde_json::to_vec(subtask).map_err(|e| ProxyError::BadAnswer {
            request: "POST /v1/subtasks".into(),
            detail: format!("cannot serialise the request: {e}"),
        })?;
        let created: wire::SubtaskCreated =
            self.call("POST", wire::SUBTASKS_PATH, Some(&body), self.timeout)?;
        Ok(TaskId(created.task_id))
    }

    /// One `GET /v1/subtasks/{id}/results?wait=...`; `wait` is rounded up to whole seconds and
    /// capped at [`MAX_WAIT_PER_REQUEST`].
    pub fn results(&self, task_id: TaskId, wait: Duration) -> Result<SubtaskResults, ProxyError> {
        let wait = wait.min(MAX_WAIT_PER_REQUEST);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let path = format!("{}/{task_id}/results?wait={secs}", wire::SUBTASKS_PATH);
        let timeout = self.timeout + Duration::from_secs(secs) + WAIT_SLACK;
        let body: wire::SubtaskResults = self.call("GET", &path, None, timeout)?;
        let mut runs = Vec::with_capacity(body.runs.len());
        for run in body.runs {
            let result = match (run.state, run.result) {
                (RunState::Completed, Some(b64)) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64.as_bytes())
                        .map_err(|e| ProxyError::BadAnswer {
                            request: format!("GET {path}"),
                            detail: format!(
                                "the result of organization {} is not base64: {e}",
                                run.organization_id
                            ),
                        })?,
                ),
                (RunState::Completed, None) => Some(Vec::new()),
                _ => None,
            };
            runs.push(SubtaskResult {
                organization_id: run.organization_id,
                state: run.state,
                result,
                reason: run.reason,
            });
        }
        if body.complete {
            if let Some(r) = runs.iter().find(|r| !r.state.is_final()) {
                return Err(ProxyError::BadAnswer {
                    request: format!("GET {path}"),
                    detail: format!(
                        "complete, yet the run of organization {} is {}",
                        r.organization_id, r.state
                    ),
                });
            }
        }
        Ok(SubtaskResults {
            complete: body.complete,
            runs,
        })
    }

    /// Waits until every run of `task_id` has finished, or `timeout` has passed
    /// ([`ProxyError::Timeout`]). Failed and rejected runs are returned, not errors: use
    /// [`SubtaskResult::bytes`] or [`SubtaskResult::json`] on each. Answers 429 (rate limited)
    /// and 503 (server unavailable) are retried with backoff until the deadline; a 429 or 503
    /// at the deadline is returned as it is.
    pub fn wait_results(
        &self,
        task_id: TaskId,
        timeout: Duration,
    ) -> Result<Vec<SubtaskResult>, ProxyError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut backoff = MIN_POLL_INTERVAL;
        loop {
            let poll_started = Instant::now();
            let left = deadline.saturating_duration_since(poll_started);
            let (pending, total) = match self.results(task_id, left) {
                Ok(answer) if answer.complete => return Ok(answer.runs),
                Ok(answer) => {
                    backoff = MIN_POLL_INTERVAL;
                    let pending = answer.runs.iter().filter(|r| !r.state.is_final()).count();
                    (pending, answer.runs.len())
                }
                // Rate limited, or the server behind the proxy is briefly away: retry until
                // the deadline, backing off.
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    let now = Instant::now();
                    std::thread::sleep(backoff.min(deadline - now));
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ProxyError::Timeout {
                    task_id,
                    waited: now - started,
                    pending,
                    total,
                });
            }
            let since = now - poll_started;
            if since < MIN_POLL_INTERVAL {
                std::thread::sleep((MIN_POLL_INTERVAL - since).min(deadline - now));
            }
        }
    }

    /// Sends one request and parses the JSON answer of a 2xx status; other statuses become
    /// [`ProxyError::Refused`] with the error body's code and message.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<T, ProxyError> {
        let mut headers = vec![
            ("Authorization", self.authorization.as_str()),
            ("Accept", "application/json"),
        ];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let response = self.http.send(
            &Request {
                method,
                path,
                headers: &headers,
                body,
            },
            timeout,
        )?;
        let request = format!("{method} {path}");
        // The contract names no exact success status: any 2xx carries the answer.
        if !(200..300).contains(&response.status) {
            let (code, message) =
                match serde_json::from_slice::<warden_api::ErrorBody>(&response.body) {
                    Ok(e) => (
                        serde_json::to_value(e.error.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| "unknown".to_owned()),
                        e.error.message,
                    ),
                    Err(_) => ("unknown".to_owned(), excerpt(&response.body)),
                };
            return Err(ProxyError::Refused {
                request,
                status: response.status,
                code,
                message,
            });
        }
        serde_json::from_slice(&response.body).map_err(|e| ProxyError::BadAnswer {
            request,
            detail: format!(
                "status {} with a body that is not the JSON expected: {e}",
                response.status
            ),
        })
    }
}

/// A refusal worth retrying: too many requests, or the server behind the proxy unavailable.
fn is_transient(e: &ProxyError) -> bool {
    matches!(
        e,
        ProxyError::Refused {
            status: 429 | 503,
            ..
        }
    )
}

/// The start of a body as printable text, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_EXCERPT)
        .collect();
    if out.is_empty() {
        out = "no error body".to_owned();
    } else if text.chars().count() > MAX_ERROR_EXCERPT {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests;
