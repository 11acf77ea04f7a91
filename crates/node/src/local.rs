//! The node's local socket: HTTP/1.1 JSON over a Unix socket (`[local] socket`, default
//! `<spool>/local.sock`), the only way into a running node, for its owner's
//! `warden node status|pending|show|release|refuse|approve|refuse-digest`. There is no network
//! listener. The wire types are `warden_api::local`.
//!
//! Who asks is known from the socket's peer credentials (`SO_PEERCRED`: uid and gid), never
//! from anything the client says. Two locks keep strangers out: the socket file is 0600 owned
//! by the node's user (0660 with `[local] group`), and every connection's peer must be the
//! node's own uid, root, or a member of that group (by its gid or by `/etc/group`), else it is
//! refused (403) and the attempt is audited. Every view, release, refusal and approval is an
//! audit record naming the user (`Record::by`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use warden_api::local as wire;
use warden_api::{ErrorBody, ErrorCode};
use warden_audit::{Event as AuditEvent, LocalUser};

use crate::node::Node;

/// Largest request body: a reason and a digest.
const MAX_BODY_BYTES: usize = 16 << 10;

/// Why the local socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LocalStartError {
    #[error("cannot open the local socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    #[error(
        "local.group `{0}` is not a group of this machine (/etc/group); create it or fix the name"
    )]
    NoSuchGroup(String),
}

/// A local group: its id and its listed members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The user name of `uid` in `/etc/passwd`'s text (`name:x:uid:gid:...`).
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let id: u32 = f.next()?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// The group `name` in `/etc/group`'s text (`name:x:gid:member,member`).
pub fn group(group_file: &str, name: &str) -> Option<Group> {
    group_file.lines().find_map(|line| {
        let mut f = line.split(':');
        let n = f.next()?;
        if n != name {
            return None;
        }
        let _password = f.next()?;
        let gid: u32 = f.next()?.parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Group {
            name: n.to_owned(),
            gid,
            members,
        })
    })
}

/// Whether `peer` may use the socket: the node's own uid, root, or a member of `group` (its
/// gid is the group's, or `/etc/group` lists its user name). The reason says who may.
pub fn allowed(peer: &LocalUser, node_uid: u32, group: Option<&Group>) -> Result<(), String> {
    if peer.uid == node_uid || peer.uid == 0 {
        return Ok(());
    }
    if let Some(g) = group {
        let listed = peer
            .name
            .as_ref()
            .is_some_and(|n| g.members.iter().any(|m| m == n));
        if peer.gid == g.gid || listed {
            return Ok(());
        }
        return Err(format!(
            "{peer} may not use this node's local socket: only the node's user (uid \
             {node_uid}), root and members of group `{}` may; ask the node's administrator to \
             add you to it",
            g.name
        ));
    }
    Err(format!(
        "{peer} may not use this node's local socket: only the node's user (uid {node_uid}) \
         and root may (the node has no [local] group)"
    ))
}

/// An error answer of the local API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalError {
    pub status: StatusCode,
    pub message: String,
}

impl LocalError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        LocalError {
            status,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        LocalError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn bad(message: impl Into<String>) -> Self {
        LocalError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        LocalError::new(StatusCode::CONFLICT, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        LocalError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for LocalError {
    fn into_response(self) -> Response {
        let code = match self.status {
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::BAD_REQUEST => ErrorCode::InvalidRequest,
            StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        (self.status, Json(ErrorBody::new(code, self.message))).into_response()
    }
}

/// Who is on the other end of a connection, from the kernel.
#[derive(Debug, Clone)]
struct PeerInfo(Option<(u32, u32)>);

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for PeerInfo
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        PeerInfo(stream.io().peer_cred().ok().map(|c| (c.uid(), c.gid())))
    }
}

struct Desk {
    node: Node,
    node_uid: u32,
    group: Option<Group>,
}

/// The running local socket; dropping it does not stop it (the node runs until its process
/// ends); [`LocalSocket::path`] says where it is.
#[derive(Debug)]
pub struct LocalSocket {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl LocalSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving and removes the socket file.
    pub fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn socket_err(path: &Path) -> impl FnOnce(std::io::Error) -> LocalStartError + '_ {
    move |e| LocalStartError::Socket {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Binds the socket (replacing a stale socket file, never another kind of file), sets its mode
/// and group, and serves the node's airlock on it.
pub fn start(
    node: Node,
    path: &Path,
    group_name: Option<&str>,
) -> Result<LocalSocket, LocalStartError> {
    use std::os::unix::fs::FileTypeExt as _;
    use std::os::unix::fs::MetadataExt as _;
    let group = match group_name {
        Some(name) => {
            let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
            Some(group(&text, name).ok_or_else(|| LocalStartError::NoSuchGroup(name.into()))?)
        }
        None => None,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(socket_err(path))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(socket_err(path))?;
        }
        Ok(_) => {
            return Err(LocalStartError::Socket {
                path: path.to_path_buf(),
                message: "a file that is not a socket is in the way; move it or choose another \
                          local.socket"
                    .into(),
            });
        }
        Err(_) => {}
    }
    let listener = crate::unix::bind(path).map_err(socket_err(path))?;
    // Private before anything else: the bind made the file with the umask's mode.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_err(path))?;
    if let Some(g) = &group {
        std::os::unix::fs::chown(path, None, Some(g.gid)).map_err(socket_err(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(socket_err(path))?;
    }
    // The socket file is the node's: its owner is the node's uid.
    let node_uid = std::fs::symlink_metadata(path)
        .map_err(socket_err(path))?
        .uid();
    let desk = Arc::new(Desk {
        node,
        node_uid,
        group,
    });
    let app = axum::Router::new()
        .route(wire::PENDING_PATH, get(pending))
        .route(wire::STATUS_PATH, get(status))
        .route(wire::POLICY_PATH, get(policy))
        .route(wire::AUDIT_PATH, get(audit))
        .route(wire::AUDIT_VERIFY_PATH, get(audit_verify))
        .route(&format!("{}/{{run}}", wire::RUNS_PATH), get(show))
        .route(
            &format!("{}/{{run}}/release", wire::RUNS_PATH),
            post(release),
        )
        .route(&format!("{}/{{run}}/refuse", wire::RUNS_PATH), post(refuse))
        .route(wire::APPROVE_PATH, post(approve))
        .route(wire::REFUSE_DIGEST_PATH, post(refuse_digest))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // The import streams its body to a file under its own cap (wire::MAX_IMPORT_BYTES).
        .route(wire::IMPORT_PATH, post(import))
        .with_state(desk);
    let task = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the local socket stopped");
        }
    });
    tracing::info!(socket = %path.display(), group = group_name.unwrap_or(""), "local socket open");
    Ok(LocalSocket {
        path: path.to_path_buf(),
        task,
    })
}

type Answer<T> = Result<Json<T>, LocalError>;

impl Desk {
    /// The peer, named from `/etc/passwd`, if the socket may be used by it; a refusal is
    /// audited as `event` denied.
    fn who(
        &self,
        peer: &PeerInfo,
        event: AuditEvent,
        run: Option<i64>,
    ) -> Result<LocalUser, LocalError> {
        let Some((uid, gid)) = peer.0 else {
            return Err(LocalError::new(
                StatusCode::FORBIDDEN,
                "the node cannot tell who is asking (no peer credentials on the socket)",
            ));
        };
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let who = LocalUser {
            uid,
            gid,
            name: user_name(&passwd, uid),
        };
        if let Err(reason) = allowed(&who, self.node_uid, self.group.as_ref()) {
            tracing::warn!(%who, %reason, "local socket: refused a peer");
            let _ = self
                .node
                .audit_local(&who, event, run, None, false, Some(reason.clone()));
            return Err(LocalError::new(StatusCode::FORBIDDEN, reason));
        }
        Ok(who)
    }
}

async fn pending(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
) -> Answer<wire::Pending> {
    desk.who(&peer, AuditEvent::View, None)?;
    desk.node.local_pending().map(Json)
}

/// The node's health and what it holds; like `pending`, shows no result and is not recorded.
async fn status(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
) -> Answer<wire::Status> {
    desk.who(&peer, AuditEvent::View, None)?;
    desk.node.local_status().map(Json)
}

/// The policy in force as the node parsed it; not recorded, like `status`.
async fn policy(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
) -> Answer<wire::PolicyView> {
    desk.who(&peer, AuditEvent::View, None)?;
    Ok(Json(desk.node.local_policy()))
}

/// Runs a read of the audit log off the async threads.
async fn reading<T: Send + 'static>(
    desk: Arc<Desk>,
    f: impl FnOnce(&Node) -> Result<T, LocalError> + Send + 'static,
) -> Answer<T> {
    tokio::task::spawn_blocking(move || f(&desk.node))
        .await
        .map_err(|e| {
            LocalError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the audit log did not finish: {e}"),
            )
        })?
        .map(Json)
}

/// A page of audit records, newest first; a query it does not know is refused (400), so that
/// a misspelt filter never shows more than was asked for. Not recorded.
async fn audit(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    uri: axum::http::Uri,
) -> Answer<wire::AuditPage> {
    desk.who(&peer, AuditEvent::View, None)?;
    let query = axum::extract::Query::<crate::inspect::AuditQuery>::try_from_uri(&uri)
        .map_err(|e| {
            LocalError::bad(format!(
                "{}; the audit query takes kind, run, outcome, after, before, since, until and                  limit",
                e.body_text()
            ))
        })?;
    let filter = crate::inspect::AuditFilter::new(&query.0)?;
    reading(desk, move |node| node.local_audit(&filter)).await
}

/// The audit log verified with the node's key, as `warden audit verify` does. Not recorded.
async fn audit_verify(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    uri: axum::http::Uri,
) -> Answer<wire::AuditVerification> {
    desk.who(&peer, AuditEvent::View, None)?;
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return Err(LocalError::bad("the audit verification takes no query"));
    }
    reading(desk, Node::local_verify).await
}

fn run_id(raw: &str) -> Result<i64, LocalError> {
    raw.parse::<i64>().ok().filter(|r| *r > 0).ok_or_else(|| {
        LocalError::bad(format!(
            "`{}` is not a run id (a positive integer)",
            raw.escape_debug()
        ))
    })
}

async fn show(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    UrlPath(run): UrlPath<String>,
) -> Answer<wire::HeldResult> {
    let run = run_id(&run)?;
    let who = desk.who(&peer, AuditEvent::View, Some(run))?;
    desk.node.local_show(&who, run).map(Json)
}

async fn release(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    UrlPath(run): UrlPath<String>,
) -> Answer<wire::Answer> {
    let run = run_id(&run)?;
    let who = desk.who(&peer, AuditEvent::Release, Some(run))?;
    desk.node.local_release(&who, run).await.map(Json)
}

/// A JSON body, or a clear refusal.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, LocalError> {
    serde_json::from_slice(bytes)
        .map_err(|e| LocalError::bad(format!("the body is not {what}: {e}")))
}

async fn refuse(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    UrlPath(run): UrlPath<String>,
    bytes: axum::body::Bytes,
) -> Answer<wire::Answer> {
    let run = run_id(&run)?;
    let who = desk.who(&peer, AuditEvent::Refuse, Some(run))?;
    let r: wire::Refusal = body(&bytes, "a refusal ({\"reason\": \"...\"})")?;
    let reason = owner_reason(&r.reason)?;
    desk.node.local_refuse(&who, run, &reason).await.map(Json)
}

async fn approve(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    bytes: axum::body::Bytes,
) -> Answer<wire::Answer> {
    let who = desk.who(&peer, AuditEvent::Approve, None)?;
    let d: wire::DigestDecision = body(&bytes, "a digest decision ({\"digest\": \"sha256:...\"})")?;
    if d.reason.is_some() {
        return Err(LocalError::bad("an approval takes no reason"));
    }
    let digest = digest(&d.digest)?;
    desk.node.local_approve(&who, &digest).await.map(Json)
}

async fn refuse_digest(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    bytes: axum::body::Bytes,
) -> Answer<wire::Answer> {
    let who = desk.who(&peer, AuditEvent::RefuseDigest, None)?;
    let d: wire::DigestDecision = body(
        &bytes,
        "a digest decision ({\"digest\": \"sha256:...\", \"reason\": \"...\"})",
    )?;
    let digest = digest(&d.digest)?;
    let reason = owner_reason(d.reason.as_deref().unwrap_or(""))?;
    desk.node
        .local_refuse_digest(&who, &digest, &reason)
        .await
        .map(Json)
}

/// The requester an import decides for (each optional), as `warden image verify` takes it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    organization: Option<String>,
    user: Option<String>,
    collaboration: Option<String>,
    function: Option<String>,
}

async fn import(
    State(desk): State<Arc<Desk>>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    uri: axum::http::Uri,
    body: axum::body::Body,
) -> Answer<wire::Imported> {
    let who = desk.who(&peer, AuditEvent::Import, None)?;
    let query = axum::extract::Query::<ImportQuery>::try_from_uri(&uri).map_err(|e| {
        LocalError::bad(format!(
            "{}; an import takes organization, user, collaboration and function",
            e.body_text()
        ))
    })?;
    let q = query.0;
    let requester = warden_policy::Requester {
        organization: q.organization,
        user: q.user,
        collaboration: q.collaboration,
        function: q.function,
    };
    desk.node
        .local_import(&who, requester, body)
        .await
        .map(Json)
}

/// A digest as the node records them (`sha256:<64 lower-case hex>`).
pub fn digest(raw: &str) -> Result<String, LocalError> {
    warden_reference::Digest::parse(raw)
        .map(|d| d.to_string())
        .map_err(|e| {
            LocalError::bad(format!(
                "`{}` is not an image digest: {e}",
                raw.escape_debug()
            ))
        })
}

/// The data owner's reason, made fit to send: control characters become spaces, whitespace is
/// trimmed, it must not be empty and is at most [`wire::MAX_REASON_CHARS`] characters.
pub fn owner_reason(raw: &str) -> Result<String, LocalError> {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_control() || is_format_control(c) {
                ' '
            } else {
                c
            }
        })
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        return Err(LocalError::bad(
            "give a reason (--reason TEXT): the researcher is told it",
        ));
    }
    let n = clean.chars().count();
    if n > wire::MAX_REASON_CHARS {
        return Err(LocalError::bad(format!(
            "the reason is {n} characters; at most {} are sent, shorten it",
            wire::MAX_REASON_CHARS
        )));
    }
    Ok(clean.to_owned())
}

/// Bidirectional and other invisible format controls a terminal could be fooled by.
fn is_format_control(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// The client side, for `warden node pending|show|release|...`: one request per call.
#[derive(Debug, Clone)]
pub struct LocalClient {
    http: warden_sdk::http::Client,
}

/// How long a request to the local socket may take (a release seals and delivers first).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an import may take: unpacking, verifying and loading a large image.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(900);

impl LocalClient {
    pub fn new(socket: impl Into<PathBuf>) -> LocalClient {
        LocalClient {
            http: warden_sdk::http::Client::new(socket).with_max_body_bytes(256 << 20),
        }
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<T, String> {
        self.call_with(method, path, body, "application/json", CLIENT_TIMEOUT)
    }

    fn call_with<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
        timeout: Duration,
    ) -> Result<T, String> {
        let with_body = [("content-type", content_type)];
        let headers: &[(&str, &str)] = if body.is_some() { &with_body } else { &[] };
        let answer = self.http.send(
            &warden_sdk::http::Request {
                method,
                path,
                headers,
                body,
            },
            timeout,
        );
        self.answer(answer)
    }

    /// The document of a 2xx answer, or the node's refusal (or the socket's failure) as text.
    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        answer: Result<warden_sdk::http::Response, warden_sdk::http::HttpError>,
    ) -> Result<T, String> {
        let socket = self.http.socket().display().to_string();
        let answer = answer.map_err(|e| match e {
            warden_sdk::http::HttpError::Connect { source, .. } => format!(
                "cannot reach the node's local socket {socket}: {source}; is the node \
                     running, is this the socket of its configuration, and may you use it \
                     (its user, root or [local] group)?"
            ),
            other => format!("the node's local socket {socket}: {other}"),
        })?;
        if answer.status / 100 == 2 {
            return serde_json::from_slice(&answer.body)
                .map_err(|e| format!("the node's answer is not what was expected: {e}"));
        }
        let message = serde_json::from_slice::<ErrorBody>(&answer.body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&answer.body).into_owned());
        Err(format!(
            "the node refused ({}): {}",
            answer.status,
            warden_api::display::safe(&message)
        ))
    }

    /// Sends an image archive to an offline node (`query`: the requester, URL-encoded),
    /// streamed from the file: an image of gigabytes is never held in memory.
    pub fn import(&self, archive: &Path, query: &str) -> Result<wire::Imported, String> {
        let path = if query.is_empty() {
            wire::IMPORT_PATH.to_owned()
        } else {
            format!("{}?{query}", wire::IMPORT_PATH)
        };
        let mut file = std::fs::File::open(archive)
            .map_err(|e| format!("cannot read {}: {e}", archive.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", archive.display()))?
            .len();
        let answer = self.http.send_streamed(
            &warden_sdk::http::Request {
                method: "POST",
                path: &path,
                headers: &[("content-type", "application/x-tar")],
                body: None,
            },
            &mut file,
            len,
            IMPORT_TIMEOUT,
        );
        self.answer(answer)
    }

    pub fn pending(&self) -> Result<wire::Pending, String> {
        self.call("GET", wire::PENDING_PATH, None)
    }

    pub fn status(&self) -> Result<wire::Status, String> {
        self.call("GET", wire::STATUS_PATH, None)
    }

    pub fn policy(&self) -> Result<wire::PolicyView, String> {
        self.call("GET", wire::POLICY_PATH, None)
    }

    /// A page of audit records; `query` is sent as it is (`kind=decision&limit=20`, or empty).
    pub fn audit(&self, query: &str) -> Result<wire::AuditPage, String> {
        if query.is_empty() {
            self.call("GET", wire::AUDIT_PATH, None)
        } else {
            self.call("GET", &format!("{}?{query}", wire::AUDIT_PATH), None)
        }
    }

    pub fn verify_audit(&self) -> Result<wire::AuditVerification, String> {
        self.call("GET", wire::AUDIT_VERIFY_PATH, None)
    }

    pub fn show(&self, run: i64) -> Result<wire::HeldResult, String> {
        self.call("GET", &format!("{}/{run}", wire::RUNS_PATH), None)
    }

    /// The bytes of a shown result.
    pub fn result_bytes(h: &wire::HeldResult) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(&h.result_base64)
            .map_err(|e| format!("the node's answer holds no readable result: {e}"))
    }

    pub fn release(&self, run: i64) -> Result<wire::Answer, String> {
        self.call(
            "POST",
            &format!("{}/{run}/release", wire::RUNS_PATH),
            Some(b"{}"),
        )
    }

    pub fn refuse(&self, run: i64, reason: &str) -> Result<wire::Answer, String> {
        let body = serde_json::to_vec(&wire::Refusal {
            reason: reason.to_owned(),
        })
        .map_err(|e| e.to_string())?;
        self.call(
            "POST",
            &format!("{}/{run}/refuse", wire::RUNS_PATH),
            Some(&body),
        )
    }

    pub fn approve(&self, digest: &str) -> Result<wire::Answer, String> {
        let body = serde_json::to_vec(&wire::DigestDecision {
            digest: digest.to_owned(),
            reason: None,
        })
        .map_err(|e| e.to_string())?;
        self.call("POST", wire::APPROVE_PATH, Some(&body))
    }

    pub fn refuse_digest(&self, digest: &str, reason: &str) -> Result<wire::Answer, String> {
        let body = serde_json::to_vec(&wire::DigestDecision {
            digest: digest.to_owned(),
            reason: Some(reason.to_owned()),
        })
        .map_err(|e| e.to_string())?;
        self.call("POST", wire::REFUSE_DIGEST_PATH, Some(&body))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n\
                          broken line\nbob:x:1001:1001::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nchecker:x:2000:alice, carol\nbob:x:1001:\n";

    fn peer(uid: u32, gid: u32) -> LocalUser {
        LocalUser {
            uid,
            gid,
            name: user_name(PASSWD, uid),
        }
    }

    #[test]
    fn users_and_groups_are_read_from_the_system_files() {
        assert_eq!(user_name(PASSWD, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(PASSWD, 1001).as_deref(), Some("bob"));
        assert_eq!(user_name(PASSWD, 4242), None);
        let g = group(GROUP, "checker").unwrap();
        assert_eq!(
            (g.gid, g.members.clone()),
            (2000, vec!["alice".to_owned(), "carol".to_owned()])
        );
        assert_eq!(group(GROUP, "check"), None);
        assert_eq!(group(GROUP, "bob").unwrap().members, Vec::<String>::new());
    }

    #[test]
    fn only_the_node_user_root_and_the_group_may_use_the_socket() {
        let g = group(GROUP, "checker").unwrap();
        // The node's user and root always.
        assert!(allowed(&peer(500, 500), 500, None).is_ok());
        assert!(allowed(&peer(0, 0), 500, None).is_ok());
        // Without a group nobody else.
        let e = allowed(&peer(1000, 1000), 500, None).unwrap_err();
        assert!(
            e.contains("alice (uid 1000)") && e.contains("no [local] group"),
            "{e}"
        );
        // A member by /etc/group, or by the peer's gid.
        assert!(allowed(&peer(1000, 1000), 500, Some(&g)).is_ok());
        assert!(allowed(&peer(1001, 2000), 500, Some(&g)).is_ok());
        // Bob is neither: refused, naming the group.
        let e = allowed(&peer(1001, 1001), 500, Some(&g)).unwrap_err();
        assert!(
            e.contains("bob (uid 1001)") && e.contains("`checker`"),
            "{e}"
        );
        // A uid without a name is not a member by name.
        assert!(allowed(&peer(4242, 4242), 500, Some(&g)).is_err());
    }

    #[test]
    fn a_data_owners_reason_is_cleaned_and_bounded() {
        assert_eq!(
            owner_reason("  too\u{1b}[31m detailed\n").unwrap(),
            "too [31m detailed"
        );
        assert_eq!(owner_reason("a\u{202e}b").unwrap(), "a b");
        assert!(
            owner_reason(" \n ")
                .unwrap_err()
                .message
                .contains("give a reason")
        );
        let long = "x".repeat(wire::MAX_REASON_CHARS + 1);
        assert!(owner_reason(&long).unwrap_err().message.contains("shorten"));
        assert!(digest("sha256:abc").is_err());
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(digest(&d).unwrap(), d);
    }
}
