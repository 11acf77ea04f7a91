//! What `warden login`, `warden admin` and `warden task list` need besides a researcher's
//! profile: a session kept between commands, the `[server]` section of a profile that has no
//! researcher sections yet, and the server's administration API (organizations,
//! collaborations, users, nodes), every list followed over all its pages.
//!
//! A session is kept beside its profile, `NAME.toml` -> `NAME.session` (JSON, mode 0600,
//! written atomically): the server, the account, the access token with its expiry and the
//! refresh token. The password is never written. The server rotates the refresh token on every
//! use and revokes the whole session when a spent one is presented again, so a refresh happens
//! under an exclusive lock of `NAME.session.lock`, re-reading the file first: two commands of
//! the same profile never spend the same refresh token.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use warden_api::{
    Collaboration, CreateCollaboration, CreateNode, CreateOrganization, CreateUser, CreatedNode,
    Node, Organization, Page, ResetPassword, Role, UpdateUser, User, WhoAmI,
};
use warden_config::ConfigError;

use crate::profile::{MAX_PROFILE_BYTES, ServerSection};
use crate::{Client, ClientError, Session};

/// A session whose access token has less than this left is renewed before a command starts.
pub const RENEW_AHEAD: Duration = Duration::from_secs(5 * 60);
/// Largest session file read.
const MAX_SESSION_BYTES: u64 = 64 * 1024;
/// Items asked for per page of a list.
const PAGE: u32 = 100;
/// At most this many pages are read, so a server that always answers `next` cannot keep the
/// client listing forever.
const MAX_PAGES: usize = 10_000;

/// The tokens of a session as kept on disk.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSession {
    /// The server's base URL, as in the profile.
    pub server: String,
    /// The account, as the server spells it.
    pub username: String,
    pub access_token: String,
    /// Unix seconds at which the access token expires.
    pub access_expires_at: i64,
    pub refresh_token: String,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

/// A session file that cannot be read, written or locked; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error(
        "the session in {} is for `{username}` at {server}, but the profile names `{want_user}` \
         at {want_server}; run `warden login` again for this profile",
        path.display()
    )]
    Mismatch {
        path: PathBuf,
        server: String,
        username: String,
        want_server: String,
        want_user: String,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The session file of the profile at `profile`: the same name with `.session`.
pub fn session_path(profile: &Path) -> PathBuf {
    profile.with_extension("session")
}

fn file_error(path: &Path, message: impl Into<String>) -> SessionError {
    SessionError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The session kept at `path`, `None` when there is none.
pub fn load_session(path: &Path) -> Result<Option<StoredSession>, SessionError> {
    let bytes = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, format!("cannot read it: {e}"))),
        Ok(m) if m.len() > MAX_SESSION_BYTES => {
            return Err(file_error(
                path,
                format!(
                    "{} bytes, larger than a session; remove it and run `warden login`",
                    m.len()
                ),
            ));
        }
        Ok(_) => {
            std::fs::read(path).map_err(|e| file_error(path, format!("cannot read it: {e}")))?
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        file_error(
            path,
            format!("not a session file ({e}); remove it and run `warden login`"),
        )
    })
}

/// Writes `session` to `path` atomically (a 0600 temporary file renamed over it), creating the
/// folder with mode 0700 when it is missing.
pub fn save_session(path: &Path, session: &StoredSession) -> Result<(), SessionError> {
    let bytes = serde_json::to_vec_pretty(session)
        .map_err(|e| file_error(path, format!("cannot encode the session: {e}")))?;
    write_private(path, &bytes).map_err(|e| file_error(path, format!("cannot write it: {e}")))
}

/// Removes the session at `path`; whether there was one.
pub fn forget_session(path: &Path) -> Result<bool, SessionError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(file_error(path, format!("cannot remove it: {e}"))),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file of mode 0600 in the same folder,
/// synced, then renamed over `path`. A missing folder is created with mode 0700.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Holds the exclusive lock of a session file while it lives.
struct SessionLock(std::fs::File);

impl SessionLock {
    fn take(session: &Path) -> Result<SessionLock, SessionError> {
        let path = session.with_extension("session.lock");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| file_error(&path, format!("cannot open the session lock: {e}")))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| file_error(&path, format!("cannot lock the session: {e}")))?;
        Ok(SessionLock(f))
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; this only makes it explicit.
        let _ = rustix::fs::flock(&self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// The `[server]` section of the profile at `path`; the other sections are not read, so that an
/// administrator's profile needs no researcher key.
pub fn load_server_section(path: &Path) -> Result<ServerSection, ConfigError> {
    #[derive(Deserialize)]
    struct Only {
        server: ServerSection,
    }
    let (text, base) = warden_config::read_file(path, MAX_PROFILE_BYTES)?;
    let only: Only = warden_config::from_toml(&text).map_err(|e| e.in_file(path))?;
    let mut server = only.server;
    server.password_file = server
        .password_file
        .map(|p| if p.is_relative() { base.join(p) } else { p });
    Ok(server)
}

/// `url` checked as a server's base URL (`http://` or `https://` with a host), without a
/// trailing `/`.
pub fn server_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("`{url}` is not a URL ({e}); write e.g. https://warden.example.org")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "`{url}` is not an http:// or https:// URL with a host"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// How a resumed session is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// When due at the start (under the lock), and in memory after that; the command writes it
    /// back with [`Client::keep_session`] when it ends. For short commands.
    Shared,
    /// Always at the start (under the lock, written back at once), never after: the access
    /// token then lives its full lifetime (`auth.access_token_ttl_secs`), and a command that
    /// runs longer gets 401 instead of spending a refresh token another command may hold.
    AtStartOnly,
    /// When due at the start, and whenever due after that, each time under the session's lock
    /// from the file as it is then (another command may have renewed it meanwhile: its tokens
    /// are taken, and no spent refresh token is presented), written back at once. For long
    /// waits (`warden task wait`, `task create --wait`) that outlive the access token.
    Kept,
}

impl Client {
    fn unauthenticated(base: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(crate::REQUEST_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Http {
                url: base.to_owned(),
                what: "setting up HTTP".to_owned(),
                source,
            })?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            session: std::sync::Mutex::new(Session {
                access: String::new(),
                refresh: None,
                expires: Instant::now(),
                margin: crate::REFRESH_MARGIN,
            }),
            username: String::new(),
            organization_id: None,
            kept: None,
        })
    }

    /// The session's tokens as they are now (after any renewal), to be kept on disk.
    pub fn stored_session(&self) -> Option<StoredSession> {
        let s = self.session();
        let refresh = s.refresh.clone()?;
        let left = s.expires.saturating_duration_since(Instant::now());
        Some(StoredSession {
            server: self.base.clone(),
            username: self.username.clone(),
            access_token: s.access.clone(),
            access_expires_at: unix_now()
                .saturating_add(i64::try_from(left.as_secs()).unwrap_or(i64::MAX)),
            refresh_token: refresh,
        })
    }

    /// Takes up the session kept at `path` for the profile's `server` section: its access token
    /// when it has more than [`RENEW_AHEAD`] left, else renewed with its refresh token (under
    /// the session's lock, and written back at once). `None` when no session is kept there.
    /// A session the server no longer accepts is an [`ClientError::Api`] 401.
    pub async fn resume(
        path: &Path,
        server: &ServerSection,
    ) -> Result<Option<Client>, SessionError> {
        Client::resume_as(path, server, Renewal::Shared).await
    }

    /// [`Client::resume`], renewing as `renewal` says.
    pub async fn resume_as(
        path: &Path,
        server: &ServerSection,
        renewal: Renewal,
    ) -> Result<Option<Client>, SessionError> {
        if load_session(path)?.is_none() {
            return Ok(None);
        }
        let lock = SessionLock::take(path)?;
        // Read again under the lock: another command may have renewed it meanwhile.
        let Some(stored) = load_session(path)? else {
            return Ok(None);
        };
        if stored.server != server.url || stored.username != server.username {
            return Err(SessionError::Mismatch {
                path: path.to_path_buf(),
                server: stored.server,
                username: stored.username,
                want_server: server.url.clone(),
                want_user: server.username.clone(),
            });
        }
        let mut c = Client::unauthenticated(&stored.server)?;
        let left = stored.access_expires_at.saturating_sub(unix_now());
        let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        {
            let mut s = c.session();
            s.access = stored.access_token.clone();
            s.refresh = Some(stored.refresh_token.clone());
            // Renew now, under the lock, when it would expire during the command.
            s.expires = if left > RENEW_AHEAD && renewal != Renewal::AtStartOnly {
                Instant::now() + left
            } else {
                Instant::now()
            };
        }
        let me: WhoAmI = c
            .get("/api/auth/whoami", "asking who this account is")
            .await?;
        let WhoAmI::User {
            organization_id,
            username,
            ..
        } = me
        else {
            return Err(ClientError::Unexpected {
                what: "resuming the session".to_owned(),
                message: "the session's token is not a user's".to_owned(),
            }
            .into());
        };
        c.organization_id = organization_id;
        c.username = username;
        if let Some(now) = c.stored_session() {
            if now != stored {
                save_session(path, &now)?;
            }
        }
        drop(lock);
        if renewal == Renewal::Kept {
            c.kept = Some(path.to_path_buf());
        }
        if renewal == Renewal::AtStartOnly {
            // This client never presents the kept refresh token again: another command of the
            // profile may have spent it by then, and the server would revoke the session.
            c.session().refresh = None;
        }
        Ok(Some(c))
    }

    /// A renewal of a [`Renewal::Kept`] session: under the lock of `path`, the file read again;
    /// its access token when another command renewed it and it is fresh, else its refresh
    /// token spent here and the new tokens written back before the lock is let go.
    pub(crate) async fn renew_kept(&self, path: &Path) -> Result<String, ClientError> {
        let what = "renewing the session";
        let failed = |e: SessionError| ClientError::Unexpected {
            what: what.to_owned(),
            message: e.to_string(),
        };
        let lock_path = path.to_path_buf();
        let lock = tokio::task::spawn_blocking(move || SessionLock::take(&lock_path))
            .await
            .map_err(|e| ClientError::Unexpected {
                what: what.to_owned(),
                message: e.to_string(),
            })?
            .map_err(failed)?;
        let stored = load_session(path).map_err(failed)?;
        let Some(stored) = stored.filter(|s| s.server == self.base && s.username == self.username)
        else {
            return Err(ClientError::Api {
                what: what.to_owned(),
                status: 401,
                message: format!(
                    "the session kept in {} was ended or replaced (logged out or logged in as \
                     another account)",
                    path.display()
                ),
            });
        };
        let left = stored.access_expires_at.saturating_sub(unix_now());
        let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        if left > crate::REFRESH_MARGIN {
            let mut s = self.session();
            s.access = stored.access_token.clone();
            s.refresh = Some(stored.refresh_token.clone());
            s.expires = Instant::now() + left;
            return Ok(stored.access_token);
        }
        let access = self.refresh_with(stored.refresh_token.clone()).await?;
        if let Some(now) = self.stored_session() {
            save_session(path, &now).map_err(failed)?;
        }
        drop(lock);
        Ok(access)
    }

    /// Writes the session back to `path` when it changed since `before` (a renewal during a
    /// long command), under the session's lock.
    pub fn keep_session(
        &self,
        path: &Path,
        before: Option<&StoredSession>,
    ) -> Result<(), SessionError> {
        let Some(now) = self.stored_session() else {
            return Ok(());
        };
        if before == Some(&now) {
            return Ok(());
        }
        let _lock = SessionLock::take(path)?;
        save_session(path, &now)
    }

    /// Who this session is, as the server says.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("/api/auth/whoami", "asking who this account is")
            .await
    }

    /// Ends the session at the server (`POST /api/auth/logout`): its access and refresh tokens
    /// stop working.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let what = "logging out";
        let req = self
            .http
            .post(self.url("/api/auth/logout"))
            .bearer_auth(self.bearer().await?);
        self.send(req, what).await.map(|_| ())
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
        what: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(self.bearer().await?);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req, what).await
    }

    async fn call_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
        what: &str,
    ) -> Result<T, ClientError> {
        let resp = self.call(method, path, body, what).await?;
        self.json(resp, what).await
    }

    /// Every item of a list (`path` with its query, without `limit` and `after`), following
    /// the server's pages; a page whose cursor does not move forward is an error.
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Vec<T>, ClientError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut after: Option<i64> = None;
        for _ in 0..MAX_PAGES {
            let mut q = format!("{path}{sep}limit={PAGE}");
            if let Some(a) = after {
                q.push_str(&format!("&after={a}"));
            }
            let page: Page<T> = self.get(&q, what).await?;
            out.extend(page.items);
            match page.next {
                None => return Ok(out),
                // Pages are newest first: each cursor is an id below the last one.
                Some(next) if after.is_some_and(|a| next >= a) => {
                    return Err(ClientError::Unexpected {
                        what: what.to_owned(),
                        message: format!("the page cursor went back from {after:?} to {next}"),
                    });
                }
                Some(next) => after = Some(next),
            }
        }
        Err(ClientError::Unexpected {
            what: what.to_owned(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }

    pub async fn create_organization(
        &self,
        req: &CreateOrganization,
    ) -> Result<Organization, ClientError> {
        let what = format!("creating organization `{}`", req.name);
        self.post("/api/organizations", req, &what).await
    }

    pub async fn organizations(&self) -> Result<Vec<Organization>, ClientError> {
        self.list_all("/api/organizations", "listing organizations")
            .await
    }

    /// The names of the organizations the account sees, by id (for tables).
    pub async fn organization_names(&self) -> Result<BTreeMap<i64, String>, ClientError> {
        Ok(self
            .organizations()
            .await?
            .into_iter()
            .map(|o| (o.id, o.name))
            .collect())
    }

    /// The names of the collaborations the account sees, by id (for tables).
    pub async fn collaboration_names(&self) -> Result<BTreeMap<i64, String>, ClientError> {
        Ok(self
            .collaborations(None)
            .await?
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect())
    }

    /// The organization named `name` (exactly), `None` when the account sees none.
    pub async fn organization_named(
        &self,
        name: &str,
    ) -> Result<Option<Organization>, ClientError> {
        let path = format!("/api/organizations?name={}", query_value(name));
        let found: Vec<Organization> = self.list_all(&path, "finding the organization").await?;
        Ok(found.into_iter().find(|o| o.name == name))
    }

    pub async fn create_collaboration(
        &self,
        req: &CreateCollaboration,
    ) -> Result<Collaboration, ClientError> {
        let what = format!("creating collaboration `{}`", req.name);
        self.post("/api/collaborations", req, &what).await
    }

    /// Adds organization `organization_id` to collaboration `id` (root); the collaboration as it
    /// is then.
    pub async fn add_collaboration_member(
        &self,
        id: i64,
        organization_id: i64,
    ) -> Result<Collaboration, ClientError> {
        let what = format!("adding organization {organization_id} to collaboration {id}");
        let body = warden_api::CollaborationMember { organization_id };
        self.post(&format!("/api/collaborations/{id}/members"), &body, &what)
            .await
    }

    /// Removes organization `organization_id` from collaboration `id` (root); the
    /// collaboration as it is then. The server refuses while the organization's runs there have
    /// not ended.
    pub async fn remove_collaboration_member(
        &self,
        id: i64,
        organization_id: i64,
    ) -> Result<Collaboration, ClientError> {
        let what = format!("removing organization {organization_id} from collaboration {id}");
        self.call_json::<(), _>(
            reqwest::Method::DELETE,
            &format!("/api/collaborations/{id}/members/{organization_id}"),
            None,
            &what,
        )
        .await
    }

    /// Every collaboration the account sees, or those `organization_id` is a member of.
    pub async fn collaborations(
        &self,
        organization_id: Option<i64>,
    ) -> Result<Vec<Collaboration>, ClientError> {
        let path = match organization_id {
            Some(o) => format!("/api/collaborations?organization_id={o}"),
            None => "/api/collaborations".to_owned(),
        };
        self.list_all(&path, "listing collaborations").await
    }

    pub async fn create_user(&self, req: &CreateUser) -> Result<User, ClientError> {
        let what = format!("creating user `{}`", req.username);
        self.post("/api/users", req, &what).await
    }

    /// Every user the account sees, or those of `organization_id`.
    pub async fn users(&self, organization_id: Option<i64>) -> Result<Vec<User>, ClientError> {
        let path = match organization_id {
            Some(o) => format!("/api/users?organization_id={o}"),
            None => "/api/users".to_owned(),
        };
        self.list_all(&path, "listing users").await
    }

    pub async fn user(&self, id: i64) -> Result<User, ClientError> {
        self.get(&format!("/api/users/{id}"), &format!("reading user {id}"))
            .await
    }

    /// Disables (`true`) or enables (`false`) a user.
    pub async fn set_user_disabled(&self, id: i64, disabled: bool) -> Result<User, ClientError> {
        let what = format!(
            "{} user {id}",
            if disabled { "disabling" } else { "enabling" }
        );
        let body = UpdateUser {
            disabled: Some(disabled),
        };
        self.call_json(
            reqwest::Method::PATCH,
            &format!("/api/users/{id}"),
            Some(&body),
            &what,
        )
        .await
    }

    /// Sets another user's password; every session of that user ends.
    pub async fn reset_password(&self, id: i64, password: &str) -> Result<(), ClientError> {
        let body = ResetPassword {
            password: password.to_owned(),
        };
        self.call(
            reqwest::Method::POST,
            &format!("/api/users/{id}/password"),
            Some(&body),
            &format!("resetting the password of user {id}"),
        )
        .await
        .map(|_| ())
    }

    pub async fn create_node(&self, req: &CreateNode) -> Result<CreatedNode, ClientError> {
        self.post("/api/nodes", req, "creating the node").await
    }

    /// Every node the account sees, or those of `collaboration_id`.
    pub async fn nodes(&self, collaboration_id: Option<i64>) -> Result<Vec<Node>, ClientError> {
        let path = match collaboration_id {
            Some(c) => format!("/api/nodes?collaboration_id={c}"),
            None => "/api/nodes".to_owned(),
        };
        self.list_all(&path, "listing nodes").await
    }

    pub async fn node(&self, id: i64) -> Result<Node, ClientError> {
        self.get(&format!("/api/nodes/{id}"), &format!("reading node {id}"))
            .await
    }

    /// A new API key for node `id`; the old one stops working at once.
    pub async fn rotate_node_key(&self, id: i64) -> Result<CreatedNode, ClientError> {
        self.call_json::<(), _>(
            reqwest::Method::POST,
            &format!("/api/nodes/{id}/key"),
            None,
            &format!("rotating the key of node {id}"),
        )
        .await
    }
}

/// `s` percent-encoded for a query string value.
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The fingerprint of an organization's X25519 key (what a researcher's profile pins), or
/// `(malformed key)`.
pub fn fingerprint(o: &Organization) -> String {
    warden_seal::PublicKey::from_base64(&o.public_key)
        .map(|k| k.fingerprint().to_string())
        .unwrap_or_else(|_| "(malformed key)".to_owned())
}

/// A role from its name (`root`, `org_admin`, `researcher`, `viewer`).
pub fn role(name: &str) -> Result<Role, String> {
    Role::ALL
        .into_iter()
        .find(|r| r.as_str() == name)
        .ok_or_else(|| {
            let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            format!("`{name}` is not a role; use one of {}", all.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn sample() -> StoredSession {
        StoredSession {
            server: "http://127.0.0.1:7600".into(),
            username: "rita".into(),
            access_token: "wat_secret".into(),
            access_expires_at: 1_900_000_000,
            refresh_token: "wrt_secret".into(),
        }
    }

    #[test]
    fn a_session_is_written_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("cfg/warden/rita.toml");
        let path = session_path(&profile);
        assert_eq!(path, dir.path().join("cfg/warden/rita.session"));
        assert_eq!(load_session(&path).unwrap(), None);
        save_session(&path, &sample()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("cfg/warden")), 0o700);
        assert_eq!(load_session(&path).unwrap(), Some(sample()));
        // No temporary file is left beside it.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        assert!(forget_session(&path).unwrap());
        assert!(!forget_session(&path).unwrap());
    }

    #[test]
    fn a_session_never_shows_its_tokens_in_debug() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_damaged_session_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.session");
        std::fs::write(&path, "{\"server\": 1}").unwrap();
        let e = load_session(&path).unwrap_err().to_string();
        assert!(e.contains("warden login") && e.contains("x.session"), "{e}");
        std::fs::write(&path, vec![b' '; MAX_SESSION_BYTES as usize + 1]).unwrap();
        let e = load_session(&path).unwrap_err().to_string();
        assert!(e.contains("larger than a session"), "{e}");
    }

    #[test]
    fn only_the_server_section_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.toml");
        std::fs::write(
            &path,
            "[server]\nurl = \"http://127.0.0.1:1/\"\nusername = \"admin\"\npassword_file = \"a.pw\"\n",
        )
        .unwrap();
        let s = load_server_section(&path).unwrap();
        assert_eq!(s.url, "http://127.0.0.1:1");
        assert_eq!(s.password_file, Some(dir.path().join("a.pw")));
        std::fs::write(&path, "[server]\nurl = \"ftp://x\"\nusername = \"admin\"\n").unwrap();
        let e = load_server_section(&path).unwrap_err().to_string();
        assert!(e.contains("admin.toml:2") && e.contains("http://"), "{e}");
    }

    #[test]
    fn urls_roles_and_query_values() {
        assert_eq!(
            server_url("https://w.example.org/").unwrap(),
            "https://w.example.org"
        );
        assert!(server_url("w.example.org").is_err());
        assert!(server_url("file:///etc").is_err());
        assert_eq!(role("org_admin").unwrap(), Role::OrgAdmin);
        let e = role("admin").unwrap_err();
        assert!(e.contains("root, org_admin, researcher, viewer"), "{e}");
        assert_eq!(query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
