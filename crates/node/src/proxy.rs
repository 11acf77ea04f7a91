//! The algorithm's only channel out: HTTP/1.1 over a Unix socket, one socket per run in a
//! per-run directory that is bind-mounted read-only into the container at `/mnt/proxy`.
//!
//! It offers exactly what docs/algorithm-contract.md lists: the collaboration's organizations,
//! subtasks of this run's task (same image digest, same collaboration, organizations of the
//! collaboration, input sealed by the node for each organization, bound to a fresh nonce per
//! subtask, to the admitted digest and to this run as `via`), and the results of the subtasks
//! this run created (opened by the node against the pinned key of the organization that ran
//! each, and refused unless bound to that subtask's nonce, that run, that organization and the
//! admitted digest). Every request needs the run's proxy token
//! (`WARDEN_TOKEN`, random, made by the node, dead when the run ends); requests are rate
//! limited and bodies and results capped. The node acts at the server with the server-issued
//! run token, which the algorithm never sees. Every refusal is an error body with a reason; the
//! node stays up.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, oneshot};
use warden_api::proxy as wire;
use warden_api::{self as api, ErrorBody, ErrorCode};

use crate::binding::quote;
use crate::orgs::OrgKeys;
use crate::server::{RunClient, ServerClient, ServerError};
use crate::slots::RunSlot;

use warden_api::proxy::MAX_WAIT_SECS;

pub mod vantage6;
/// How often a waiting request looks at its subtasks.
const WAIT_POLL: Duration = Duration::from_millis(200);
/// Longest function name in a subtask request.
const MAX_FUNCTION_LEN: usize = 128;
const MAX_NAME_LEN: usize = 200;
/// How long the proxy waits for a request body to arrive in full: a body shorter than its
/// declared `Content-Length` is answered with 408 after this, not waited for until the run ends.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot create the proxy socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Caps of the proxy, from the node configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyLimits {
    pub request_bytes: u64,
    pub result_bytes: u64,
    pub requests_per_second: u32,
    pub max_subtasks: u32,
    /// The output rules (`allow[N]`, or `default` for the node's `[output]` section) whose
    /// `max_subtasks` is `max_subtasks`, when it is smaller than the node's `[limits]`.
    pub max_subtasks_rule: Option<String>,
    /// A run whose task has this many parent tasks creates no subtask.
    pub max_subtask_depth: u32,
}

/// The run the proxy serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunScope {
    pub run_id: i64,
    pub task_id: i64,
    pub collaboration_id: i64,
    pub organization_id: i64,
    /// This node's organization name (its own pin).
    pub organization: String,
    /// The collaboration's name.
    pub collaboration: String,
    /// Whether subtask inputs and results are sealed: the node's decision for this run
    /// (`[encryption]`), never the server's flag alone.
    pub sealed: bool,
    /// The run's proven requester, on whose behalf its subtasks run (`None` in plaintext
    /// mode).
    pub requester: Option<warden_seal::Requester>,
    /// `registry/path@sha256:...`: the admitted image; subtasks use exactly this.
    pub pinned_image: String,
    /// The admitted digest `sha256:<hex>`.
    pub digest: String,
    /// Member organizations of the collaboration (as the node read them at the run's start).
    pub members: Vec<i64>,
    /// The parent task the run's sealed input proves (`via`), when it is a subtask.
    pub parent_task_id: Option<i64>,
    /// The run speaks the vantage6 contract: the proxy also serves the vantage6 4.x server-API
    /// subset its tools use ([`vantage6`]), translated onto the same operations.
    pub vantage6: bool,
}

/// A subtask this run created: its nonce and the organizations its inputs were sealed for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subtask {
    nonce: String,
    /// Organization id -> name (pinned) of each target.
    targets: BTreeMap<i64, String>,
}

/// Everything a proxy needs besides its scope.
#[derive(Clone)]
pub struct ProxyDeps {
    pub server: ServerClient,
    /// The server-issued run token, fetched on first use (a run does not wait for the server).
    pub run: Arc<tokio::sync::OnceCell<RunClient>>,
    pub keys: Arc<OrgKeys>,
    pub secret: Arc<warden_seal::SecretKey>,
    pub limits: ProxyLimits,
    /// The run's slot, lent back while the run waits for its subtasks.
    pub slot: RunSlot,
}

impl std::fmt::Debug for ProxyDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyDeps")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub(crate) struct Inner {
    pub(crate) scope: RunScope,
    pub(crate) deps: ProxyDeps,
    token_hash: [u8; 32],
    alive: AtomicBool,
    subtasks: Mutex<BTreeMap<i64, Subtask>>,
    bucket: std::sync::Mutex<Bucket>,
    /// The run's task's depth (parent tasks up the chain), capped; read once.
    depth: tokio::sync::OnceCell<u32>,
}

/// A running proxy of one run. [`Proxy::stop`] kills its token and removes its socket.
pub struct Proxy {
    inner: Arc<Inner>,
    socket: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    token: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// A fresh random token: 32 bytes, hex.
pub fn new_token() -> zeroize::Zeroizing<String> {
    use rand_core::RngCore as _;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::OsRng.fill_bytes(bytes.as_mut());
    zeroize::Zeroizing::new(hex::encode(bytes.as_ref()))
}

impl Proxy {
    /// Binds `dir/proxy.sock` (the directory must exist and be private to the node until it is
    /// mounted) and serves the run.
    pub async fn start(dir: &Path, scope: RunScope, deps: ProxyDeps) -> Result<Proxy, ProxyError> {
        Proxy::start_with_token(dir, scope, deps, new_token()).await
    }

    /// [`Proxy::start`] accepting exactly `token` (fresh and random, made by the node: e.g.
    /// the vantage6 contract's JWT-shaped token around [`new_token`]).
    pub async fn start_with_token(
        dir: &Path,
        scope: RunScope,
        deps: ProxyDeps,
        token: zeroize::Zeroizing<String>,
    ) -> Result<Proxy, ProxyError> {
        let socket = dir.join(warden_runtime::PROXY_SOCKET);
        let sock_err = |source| ProxyError::Socket {
            path: socket.clone(),
            source,
        };
        let _ = std::fs::remove_file(&socket);
        let listener = crate::unix::bind(&socket).map_err(sock_err)?;
        // The algorithm runs as another user: it must be able to connect.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
            .map_err(sock_err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(sock_err)?;
        let rate = f64::from(deps.limits.requests_per_second);
        let inner = Arc::new(Inner {
            scope,
            token_hash: Sha256::digest(token.as_bytes()).into(),
            alive: AtomicBool::new(true),
            subtasks: Mutex::new(BTreeMap::new()),
            depth: tokio::sync::OnceCell::new(),
            bucket: std::sync::Mutex::new(Bucket {
                tokens: rate,
                last: Instant::now(),
            }),
            deps,
        });
        let body_limit = usize::try_from(inner.deps.limits.request_bytes).unwrap_or(usize::MAX);
        let mut app = Router::new();
        if inner.scope.vantage6 {
            app = vantage6::routes(app);
        }
        let app = app
            .route(wire::ORGANIZATIONS_PATH, get(organizations))
            .route(wire::SUBTASKS_PATH, post(create_subtask))
            .route(
                &format!("{}/{{task_id}}/results", wire::SUBTASKS_PATH),
                get(results),
            )
            .fallback(not_offered)
            .method_not_allowed_fallback(not_offered)
            .layer(DefaultBodyLimit::max(body_limit))
            .layer(middleware::from_fn_with_state(inner.clone(), guard))
            .with_state(inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let run_id = inner.scope.run_id;
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(run = run_id, error = %e, "proxy stopped with an error");
            }
        });
        Ok(Proxy {
            inner,
            socket,
            shutdown: Some(tx),
            task,
            token,
        })
    }

    /// The token to give the algorithm as `WARDEN_TOKEN`.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Subtasks this run created.
    pub async fn subtasks(&self) -> Vec<i64> {
        self.inner.subtasks.lock().await.keys().copied().collect()
    }

    /// Kills the token, stops serving and removes the socket.
    pub async fn stop(mut self) {
        self.inner.alive.store(false, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // In-flight waits end at their own deadline; do not let one hold the run.
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.alive.store(false, Ordering::SeqCst);
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Inner {
    /// The run client, obtaining the run token from the server on first use.
    async fn run_client(&self) -> Result<&RunClient, Refusal> {
        self.deps
            .run
            .get_or_try_init(|| self.deps.server.run_token(self.scope.run_id))
            .await
            .map_err(|e| upstream("obtaining the run token", e))
    }
}

/// A refusal: status and `{"error": {...}}`.
#[derive(Debug)]
pub(crate) struct Refusal(pub(crate) StatusCode, pub(crate) ErrorBody);

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Refusal(status, ErrorBody::new(code, message))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn upstream(what: &str, e: ServerError) -> Refusal {
    tracing::warn!(error = %e, "proxy: {what} failed at the server");
    match e.status() {
        Some(403) => Refusal::new(
            ErrorCode::Forbidden,
            format!("the server refused {what}: {e}"),
        ),
        Some(404) => Refusal::new(ErrorCode::NotFound, format!("{what}: {e}")),
        Some(400) | Some(409) => Refusal::new(
            ErrorCode::InvalidRequest,
            format!("the server refused {what}: {e}"),
        ),
        _ => Refusal::new(
            ErrorCode::Unavailable,
            format!("{what} failed at the server; retry later"),
        ),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Rate limit, then token check, for every request.
async fn guard(State(inner): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let run = inner.scope.run_id;
    {
        let mut b = inner.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let rate = f64::from(inner.deps.limits.requests_per_second);
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens < 1.0 {
            drop(b);
            return Refusal::new(
                ErrorCode::TooManyRequests,
                "too many proxy requests; slow down",
            )
            .into_response();
        }
        b.tokens -= 1.0;
    }
    let presented: Option<[u8; 32]> =
        bearer(req.headers()).map(|t| Sha256::digest(t.as_bytes()).into());
    // Compare hashes: the comparison time says nothing about the token.
    let ok = presented.is_some_and(|h| h == inner.token_hash);
    if !ok {
        tracing::warn!(run, path = %req.uri().path(), "proxy: request without this run's token refused");
        return Refusal::new(
            ErrorCode::Unauthenticated,
            "missing or wrong token: send Authorization: Bearer $WARDEN_TOKEN of this run",
        )
        .into_response();
    }
    if !inner.alive.load(Ordering::SeqCst) {
        return Refusal::new(
            ErrorCode::Unauthenticated,
            "the run has ended; its token is dead",
        )
        .into_response();
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    tracing::info!(run, %method, %path, status = resp.status().as_u16(), "proxy request");
    resp
}

async fn not_offered() -> Refusal {
    Refusal::new(
        ErrorCode::NotFound,
        "the proxy offers only GET /v1/organizations, POST /v1/subtasks and GET /v1/subtasks/{id}/results",
    )
}

async fn organizations(
    State(inner): State<Arc<Inner>>,
) -> Result<Json<wire::Organizations>, Refusal> {
    Ok(Json(wire::Organizations {
        organizations: organization_list(&inner).await?,
    }))
}

/// The collaboration's organizations (as the node read its members at the run's start).
pub(crate) async fn organization_list(inner: &Inner) -> Result<Vec<wire::Organization>, Refusal> {
    let mut out = Vec::with_capacity(inner.scope.members.len());
    for id in &inner.scope.members {
        let org = inner
            .deps
            .server
            .organization(*id)
            .await
            .map_err(|e| upstream("reading the organizations", e))?;
        out.push(wire::Organization {
            id: org.id,
            name: org.name,
        });
    }
    Ok(out)
}

async fn create_subtask(
    State(inner): State<Arc<Inner>>,
    request: Request,
) -> Result<Json<wire::SubtaskCreated>, Refusal> {
    let body = read_body(request, inner.deps.limits.request_bytes).await?;
    // serde would also take a struct from a JSON array (its fields in order): only an object is
    // a subtask request, as at the server.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Refusal::new(
            ErrorCode::InvalidRequest,
            "the subtask request must be a JSON object: {\"function\", \"args\", \"organizations\"[, \"name\"]}",
        ));
    }
    let req: wire::NewSubtask = serde_json::from_slice(&body).map_err(|e| {
        Refusal::new(
            ErrorCode::InvalidRequest,
            format!("the subtask request is not valid: {e}; give function, args, organizations and optionally name"),
        )
    })?;
    let task_id = new_subtask(&inner, req).await?;
    Ok(Json(wire::SubtaskCreated { task_id }))
}

/// Creates a subtask of this run's task (every check of `POST /v1/subtasks`); its task id.
pub(crate) async fn new_subtask(inner: &Inner, req: wire::NewSubtask) -> Result<i64, Refusal> {
    let scope = &inner.scope;
    if req.function.is_empty() || req.function.len() > MAX_FUNCTION_LEN {
        return Err(Refusal::new(
            ErrorCode::InvalidRequest,
            format!("function must be 1 to {MAX_FUNCTION_LEN} bytes"),
        ));
    }
    if req.name.as_ref().is_some_and(|n| n.len() > MAX_NAME_LEN) {
        return Err(Refusal::new(
            ErrorCode::InvalidRequest,
            format!("name must be at most {MAX_NAME_LEN} bytes"),
        ));
    }
    if req.organizations.is_empty() {
        return Err(Refusal::new(
            ErrorCode::InvalidRequest,
            "organizations must list at least one organization id",
        ));
    }
    let mut seen = BTreeSet::new();
    for o in &req.organizations {
        if !seen.insert(*o) {
            return Err(Refusal::new(
                ErrorCode::InvalidRequest,
                format!("organization {o} is listed twice"),
            ));
        }
        if !scope.members.contains(o) {
            tracing::warn!(
                run = scope.run_id,
                organization = o,
                "proxy: subtask outside the collaboration refused"
            );
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("organization {o} is not a member of this run's collaboration"),
            ));
        }
    }
    let cap = inner.deps.limits.max_subtask_depth;
    let depth = task_depth(inner).await?;
    if depth >= cap {
        tracing::warn!(
            run = scope.run_id,
            depth,
            "proxy: subtask beyond the depth cap refused"
        );
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "this run's task is at subtask depth {depth}, the node's limit of \
                 {cap} (limits.max_subtask_depth): it may create no further subtask"
            ),
        ));
    }
    let mut created = inner.subtasks.lock().await;
    let limits = &inner.deps.limits;
    if created.len() >= limits.max_subtasks as usize {
        let whose = match &limits.max_subtasks_rule {
            Some(n) => format!("the limit of {n} (max_subtasks = {})", limits.max_subtasks),
            None => "the node's limit".to_owned(),
        };
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "this run already created {} subtasks, {whose}",
                created.len()
            ),
        ));
    }
    let plain = serde_json::to_vec(&serde_json::json!({
        "function": req.function,
        "args": req.args,
    }))
    .map_err(|e| Refusal::new(ErrorCode::InvalidRequest, e.to_string()))?;
    // The same strict form a researcher's input has: what the target's node parses.
    let input = warden_api::strict::parse_input(&plain)
        .map_err(|e| Refusal::new(ErrorCode::InvalidRequest, e))?;
    let nonce = warden_seal::new_nonce();
    let mut targets = BTreeMap::new();
    let mut inputs = Vec::with_capacity(req.organizations.len());
    for o in &req.organizations {
        let bytes = if scope.sealed {
            let org = inner
                .deps
                .keys
                .get(&inner.deps.server, *o)
                .await
                .map_err(|e| {
                    tracing::warn!(run = scope.run_id, organization = o, error = %e, "proxy: no usable key");
                    Refusal::new(ErrorCode::Forbidden, e.to_string())
                })?;
            let sealed = seal_subtask_input(inner, &org, &nonce, &input)?;
            targets.insert(*o, org.name);
            sealed
        } else {
            targets.insert(*o, String::new());
            input.canonical.clone()
        };
        inputs.push(api::TaskInput {
            organization_id: *o,
            input: base64::engine::general_purpose::STANDARD.encode(bytes),
        });
    }
    let task = api::CreateTask {
        collaboration_id: scope.collaboration_id,
        name: req
            .name
            .unwrap_or_else(|| format!("{} (subtask of run {})", req.function, scope.run_id)),
        image: scope.pinned_image.clone(),
        inputs,
        parent_task_id: Some(scope.task_id),
        nonce: Some(nonce.clone()),
    };
    let detail = inner
        .run_client()
        .await?
        .create_task(&task)
        .await
        .map_err(|e| upstream("creating the subtask", e))?;
    created.insert(detail.task.id, Subtask { nonce, targets });
    tracing::info!(run = scope.run_id, subtask = detail.task.id, organizations = ?req.organizations, "proxy: subtask created");
    Ok(detail.task.id)
}

/// Reads a request body in full within [`BODY_TIMEOUT`] and at most `cap` bytes.
pub(crate) async fn read_body(request: Request, cap: u64) -> Result<Vec<u8>, Refusal> {
    use futures_util::StreamExt as _;
    let too_large = || {
        Refusal::new(
            ErrorCode::PayloadTooLarge,
            format!("the request is larger than the node's cap of {cap} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut stream = request.into_body().into_data_stream();
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                return Err(Refusal(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorBody::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            "the request body did not arrive within {} s (got {} bytes{}); \
                             send the whole body its Content-Length announces",
                            BODY_TIMEOUT.as_secs(),
                            out.len(),
                            declared.map(|n| format!(" of {n}")).unwrap_or_default()
                        ),
                    ),
                ));
            }
            Ok(None) => return Ok(out),
            Ok(Some(Err(_))) => {
                return Err(Refusal::new(
                    ErrorCode::InvalidRequest,
                    "cannot read the request body",
                ));
            }
            Ok(Some(Ok(chunk))) => {
                if (out.len() + chunk.len()) as u64 > cap {
                    return Err(too_large());
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
}

/// The depth of this run's task: how many parent tasks it has, counted up to the cap (the walk
/// stops there). The first parent is the one the sealed input proves (`via`), when there is
/// one; further up the node reads the chain from the server, which can hide ancestors (each
/// node on the chain applies its own cap) or invent some (which only makes this node stricter).
async fn task_depth(inner: &Inner) -> Result<u32, Refusal> {
    let cap = inner.deps.limits.max_subtask_depth;
    let depth = inner
        .depth
        .get_or_try_init(|| async {
            let mut depth = 0;
            let mut task = inner.scope.task_id;
            let mut proven = inner.scope.parent_task_id;
            while depth < cap {
                let parent = match proven.take() {
                    Some(p) => Some(p),
                    None => {
                        inner
                            .deps
                            .server
                            .task(task)
                            .await
                            .map_err(|e| upstream("reading the task's parent chain", e))?
                            .task
                            .parent_task_id
                    }
                };
                let Some(parent) = parent else { break };
                depth += 1;
                task = parent;
            }
            Ok::<u32, Refusal>(depth)
        })
        .await?;
    Ok(*depth)
}

/// Seals a subtask's input for `org` as this organization's node, bound to the subtask's nonce,
/// the admitted image and digest, the run's requester and this run (`via`); results come back
/// sealed to this organization's key.
fn seal_subtask_input(
    inner: &Inner,
    org: &crate::orgs::Org,
    nonce: &str,
    input: &warden_api::strict::Input,
) -> Result<Vec<u8>, Refusal> {
    let scope = &inner.scope;
    let Some(requester) = scope.requester.clone() else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "this run's requester is not proven, so its subtasks cannot be sealed",
        ));
    };
    let own = inner.deps.secret.public_key();
    let binding = warden_seal::InputBinding {
        nonce: nonce.to_owned(),
        issued_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        collaboration: scope.collaboration.clone(),
        image: scope.pinned_image.clone(),
        digest: scope.digest.clone(),
        function: input.function.clone(),
        target: org.name.clone(),
        requester,
        reply_key: own.to_base64(),
        via: Some(warden_seal::Via {
            organization: scope.organization.clone(),
            run_id: scope.run_id,
            task_id: scope.task_id,
        }),
    };
    warden_seal::seal_input(
        &inner.deps.secret,
        &warden_seal::Sender::Organization(own),
        &org.key,
        &binding,
        &input.canonical,
    )
    .map_err(|e| Refusal::new(ErrorCode::InvalidRequest, e.to_string()))
}

/// Opens a subtask run's result as this organization, sealed by the pinned key of the
/// organization that ran it, and checks what it is bound to.
fn open_subtask_result(
    inner: &Inner,
    subtask: &Subtask,
    task_id: i64,
    run: &api::Run,
    producer: &crate::orgs::Org,
    sealed: &[u8],
) -> Result<Vec<u8>, String> {
    let expected = subtask.targets.get(&run.organization_id).ok_or_else(|| {
        format!(
            "run {} of subtask {task_id} is at organization {}, for which this node sealed no input",
            run.id, run.organization_id
        )
    })?;
    let (binding, body) = warden_seal::open_result(
        &inner.deps.secret,
        &producer.key,
        warden_seal::Kind::Result,
        sealed,
    )
    .map_err(|e| {
        format!(
            "the result of run {} does not open as {}'s: {e}",
            run.id,
            quote(expected)
        )
    })?;
    let refuse = |what: String| {
        Err(format!(
            "the result of run {} (subtask {task_id}) is bound to {what}: refusing a forged, \
             replayed or moved result",
            run.id
        ))
    };
    if binding.nonce != subtask.nonce {
        return refuse(format!(
            "nonce {}, but this node sent the subtask with nonce {}",
            quote(&binding.nonce),
            quote(&subtask.nonce)
        ));
    }
    if binding.run_id != run.id {
        return refuse(format!("run {}, not run {}", binding.run_id, run.id));
    }
    if binding.organization != *expected || producer.name != *expected {
        return refuse(format!(
            "organization {}, but it is the run of {}",
            quote(&binding.organization),
            quote(expected)
        ));
    }
    if binding.digest != inner.scope.digest {
        return refuse(format!(
            "image digest {}, but this run admitted {}",
            quote(&binding.digest),
            inner.scope.digest
        ));
    }
    Ok(body)
}

fn parse_wait(query: Option<&str>) -> Result<u64, Refusal> {
    let mut wait = 0;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("wait", v)) => {
                wait = v.parse::<u64>().map_err(|_| {
                    Refusal::new(
                        ErrorCode::InvalidRequest,
                        "wait must be a number of seconds",
                    )
                })?;
                if wait > MAX_WAIT_SECS {
                    return Err(Refusal::new(
                        ErrorCode::InvalidRequest,
                        format!("wait must be at most {MAX_WAIT_SECS} seconds"),
                    ));
                }
            }
            _ => {
                return Err(Refusal::new(
                    ErrorCode::InvalidRequest,
                    "the only query parameter is wait",
                ));
            }
        }
    }
    Ok(wait)
}

async fn results(
    State(inner): State<Arc<Inner>>,
    UrlPath(task_id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<wire::SubtaskResults>, Refusal> {
    let wait = parse_wait(query.as_deref())?;
    let task_id: i64 = task_id
        .parse()
        .map_err(|_| Refusal::new(ErrorCode::InvalidRequest, "the task id must be a number"))?;
    Ok(Json(subtask_results(&inner, task_id, wait).await?))
}

/// The runs of a subtask this run created, results opened and checked, waiting up to `wait`
/// seconds for all of them to end (every check of `GET /v1/subtasks/{id}/results`).
pub(crate) async fn subtask_results(
    inner: &Inner,
    task_id: i64,
    wait: u64,
) -> Result<wire::SubtaskResults, Refusal> {
    let Some(subtask) = inner.subtasks.lock().await.get(&task_id).cloned() else {
        tracing::warn!(
            run = inner.scope.run_id,
            task = task_id,
            "proxy: results of a task this run did not create refused"
        );
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("task {task_id} is not a subtask created by this run"),
        ));
    };
    let deadline = Instant::now() + Duration::from_secs(wait);
    // While it waits, the run lends its slot: a subtask at this node may need it.
    let lent = (wait > 0).then(|| inner.deps.slot.lend());
    let detail = loop {
        let detail = inner
            .run_client()
            .await?
            .task(task_id)
            .await
            .map_err(|e| upstream("reading the subtask", e))?;
        let complete = detail.runs.iter().all(|r| r.state.is_final());
        if complete || Instant::now() >= deadline || !inner.alive.load(Ordering::SeqCst) {
            break detail;
        }
        tokio::time::sleep(WAIT_POLL).await;
    };
    if let Some(lent) = lent {
        if inner.alive.load(Ordering::SeqCst) {
            lent.reclaim().await;
        } else {
            lent.forget();
        }
    }
    let complete = detail.runs.iter().all(|r| r.state.is_final());
    let mut runs = Vec::with_capacity(detail.runs.len());
    for r in &detail.runs {
        let result = if r.state == api::RunState::Completed && r.has_result {
            let sealed = inner
                .run_client()
                .await?
                .result(r.id)
                .await
                .map_err(|e| upstream("reading a subtask result", e))?;
            let plain = if inner.scope.sealed {
                let producer = inner
                    .deps
                    .keys
                    .get(&inner.deps.server, r.organization_id)
                    .await
                    .map_err(|e| {
                        tracing::warn!(run = inner.scope.run_id, subtask_run = r.id, error = %e, "proxy: no pinned key for a subtask's organization");
                        Refusal::new(ErrorCode::Forbidden, e.to_string())
                    })?;
                open_subtask_result(inner, &subtask, task_id, r, &producer, &sealed).map_err(
                    |reason| {
                        tracing::warn!(run = inner.scope.run_id, subtask_run = r.id, %reason, "proxy: a subtask result is refused");
                        Refusal::new(ErrorCode::Forbidden, reason)
                    },
                )?
            } else {
                sealed
            };
            if plain.len() as u64 > inner.deps.limits.result_bytes {
                return Err(Refusal::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the result of run {} is larger than the node's cap of {} bytes",
                        r.id, inner.deps.limits.result_bytes
                    ),
                ));
            }
            Some(base64::engine::general_purpose::STANDARD.encode(&plain[..]))
        } else {
            None
        };
        runs.push(wire::SubtaskRun {
            organization_id: r.organization_id,
            state: r.state,
            result,
            reason: r.reason.clone(),
        });
    }
    Ok(wire::SubtaskResults { complete, runs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_bounded_and_alone() {
        assert_eq!(parse_wait(None).unwrap(), 0);
        assert_eq!(parse_wait(Some("wait=60")).unwrap(), 60);
        assert!(parse_wait(Some("wait=61")).is_err());
        assert!(parse_wait(Some("wait=-1")).is_err());
        assert!(parse_wait(Some("wait=1&other=2")).is_err());
    }

    #[test]
    fn tokens_are_random_and_long() {
        let a = new_token();
        let b = new_token();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 64);
    }
}
