//! The researcher's side of Warden: log in, find the collaboration and the target organizations,
//! check each organization's key from the server against the fingerprint the researcher pins,
//! resolve the image's digest, seal the input for each target with the researcher's own
//! certified key, bound to what it is for (task nonce, image and digest, function, target,
//! requester), create the task, wait for its runs, and open and check the results.
//!
//! The server is trusted to deliver ciphertext, not keys, and not its own word about what ran:
//! an organization whose key from the server differs from its pin, or that has no pin, is
//! refused before anything is sent; a created task must echo the nonce and the image; a result
//! must open with the researcher's key, be sealed by the pinned key of the organization whose
//! run it is, and be bound to the task's nonce, that run, that organization and the digest the
//! researcher resolved; and every run must report that digest.

#![forbid(unsafe_code)]

pub mod admin;
pub mod check;
pub mod keyfile;
pub mod profile;
pub mod record;
mod researcher;
pub mod store;
mod submit;
pub mod tasks;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use warden_api::{
    Collaboration, ErrorBody, LoginRequest, Organization, Page, RefreshRequest, Run, RunState,
    TaskDetail, TokenResponse, WhoAmI,
};
use warden_seal::{Fingerprint, PublicKey};

pub use check::{check_created, check_pin, check_run_digest, check_task, open_logs, open_result};
pub use keyfile::KeyFileError;
pub use profile::{CollaborationRef, Profile, RegistrySection};
pub use record::{RecordError, RecordStore, TaskRecord};
pub use researcher::Researcher;
pub use submit::{Submission, parse_input, resolve_digest};

/// Pause between two polls of a task's runs during the first [`FAST_FOR`] of a wait: a trivial
/// task ends within a second or two, and the wait should see it within this much.
pub const FAST_POLL: Duration = Duration::from_millis(50);
/// How long a wait polls every [`FAST_POLL`].
pub const FAST_FOR: Duration = Duration::from_secs(2);
/// The pause after the fast polls; it doubles up to [`MAX_POLL`].
pub const FIRST_POLL: Duration = Duration::from_millis(100);
/// Longest pause between two polls.
pub const MAX_POLL: Duration = Duration::from_millis(500);

/// The pauses between the polls of one wait, shared by `warden task wait` and the Python
/// client: every [`FAST_POLL`] for [`FAST_FOR`], then from [`FIRST_POLL`] doubling to
/// [`MAX_POLL`]. (The doubling alone, from 100 ms, left up to 400 ms between a trivial run's end
/// and the poll that saw it.)
#[derive(Debug, Clone)]
pub struct PollSchedule {
    started: Instant,
    slow: Duration,
}

impl PollSchedule {
    pub fn new() -> PollSchedule {
        PollSchedule::since(Instant::now())
    }

    /// A schedule for a wait that began at `started`.
    pub fn since(started: Instant) -> PollSchedule {
        PollSchedule {
            started,
            slow: FIRST_POLL,
        }
    }

    /// The pause before the next poll.
    pub fn next_pause(&mut self) -> Duration {
        if self.started.elapsed() < FAST_FOR {
            return FAST_POLL;
        }
        let p = self.slow;
        self.slow = (self.slow * 2).min(MAX_POLL);
        p
    }
}

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule::new()
    }
}

#[cfg(test)]
mod poll_tests {
    use super::*;

    #[test]
    fn a_wait_polls_fast_at_first_then_backs_off() {
        let mut young = PollSchedule::new();
        assert_eq!(young.next_pause(), FAST_POLL);
        assert_eq!(young.next_pause(), FAST_POLL);
        let mut old = PollSchedule::since(Instant::now() - FAST_FOR);
        let pauses: Vec<u128> = (0..5).map(|_| old.next_pause().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
    }
}
/// Time allowed for one HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong; every variant says what to do. Strings that came from the server appear as
/// the server sent them: escape them before they reach a terminal
/// (`warden_api::display::safe`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server at {url} while {what}: {source}; check [server] url")]
    Http {
        url: String,
        what: String,
        source: reqwest::Error,
    },
    #[error("login as `{username}` refused: {message}; check [server] username and the password")]
    Login { username: String, message: String },
    #[error("{what}: the server answered {status}: {message}")]
    Api {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "the account `{0}` belongs to no organization; a task is created by a researcher of one"
    )]
    NoOrganization(String),
    #[error(
        "no collaboration {0} is visible to this account; check [collaboration] in the profile"
    )]
    NoCollaboration(String),
    #[error(
        "organization `{0}` is not a member of collaboration `{1}`; name one of its members with --org"
    )]
    NotMember(String, String),
    #[error("organization `{0}` is named twice; name each target once")]
    Duplicate(String),
    #[error("`{image}` is not an image reference: {message}")]
    Image { image: String, message: String },
    #[error("name at least one target organization with --org")]
    NoTargets,
    #[error(
        "organization `{name}` has no pinned key fingerprint in the profile {profile}; add it \
         under [organizations] after checking it with the organization"
    )]
    NotPinned { name: String, profile: String },
    #[error(
        "the server gives organization `{name}` (id {id}) a key with fingerprint {got}, but the \
         profile pins {pinned}; the key is refused and nothing was sent: confirm the change with \
         the organization and update the pin"
    )]
    Changed {
        id: i64,
        name: String,
        pinned: String,
        got: String,
    },
    #[error("the server gives organization {id} a malformed public key: {message}")]
    Malformed { id: i64, message: String },
    #[error("{what}: {source}")]
    KeyFile { what: String, source: KeyFileError },
    #[error(
        "the certificate {certificate} is for the key {certified}, but [researcher] key {key} is \
         the key {ours}; use the certificate your organization issued for this key, or have \
         this key certified"
    )]
    CertificateKey {
        certificate: String,
        key: String,
        certified: String,
        ours: String,
    },
    #[error(
        "the certificate is for {field} `{certified}`, but this account's {field} is \
         `{account}`; nodes would refuse every input: use the profile and certificate of this \
         account"
    )]
    CertificateAccount {
        field: &'static str,
        certified: String,
        account: String,
    },
    #[error(
        "the certificate of `{user}` of `{organization}` is not valid now: {why}; ask your \
         organization for a new one (`warden keys certify`)"
    )]
    CertificateTime {
        organization: String,
        user: String,
        why: String,
    },
    #[error(
        "the input is not accepted: {0}; an input is strict JSON {{\"function\": \"...\", \
         \"args\": ...}} and nothing was sent"
    )]
    Input(String),
    #[error(
        "cannot resolve `{image}` to a digest at its registry: {message}; check the image, \
         [registry] in the profile, or name the image by digest (REPO@sha256:...)"
    )]
    Resolve { image: String, message: String },
    #[error("cannot seal the input for `{name}`: {message}")]
    Seal { name: String, message: String },
    #[error(
        "task {task}: the server shows {what} `{got}`, but this client sent `{sent}`; the server \
         did not keep the task as it was created, so its results are not trusted"
    )]
    Echo {
        task: i64,
        what: &'static str,
        sent: String,
        got: String,
    },
    #[error(
        "task {task} shows no nonce, so its results cannot be tied to what was sent: it was not \
         created by this client (or the server dropped the nonce)"
    )]
    NoNonce { task: i64 },
    #[error(
        "the result of run {run} at `{organization}` does not open ({message}): it was not \
         sealed to this researcher's key by the pinned key of `{organization}`, or it was \
         altered; it is not shown"
    )]
    Open {
        run: i64,
        organization: String,
        message: String,
    },
    #[error(
        "the result of run {run} at `{organization}` is bound to {what} `{got}`, not `{expected}`; \
         it is not the result of this run (replayed or substituted) and is not shown"
    )]
    ResultMismatch {
        run: i64,
        organization: String,
        what: &'static str,
        expected: String,
        got: String,
    },
    #[error(
        "run {run} at `{organization}` reports the image digest {got}, but this task's image \
         resolved to {expected}; another image ran, so its result is not shown"
    )]
    RunDigest {
        run: i64,
        organization: String,
        expected: String,
        got: String,
    },
    #[error("the server answered something unexpected while {what}: {message}")]
    Unexpected { what: String, message: String },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(
        "task {task}: {pending} run(s) not final after {secs} s; wait again with `warden task wait`"
    )]
    Timeout {
        task: i64,
        pending: usize,
        secs: u64,
        /// The task as last seen.
        detail: Box<TaskDetail>,
    },
}

impl ClientError {
    /// Whether this says the server's task or a result did not verify (as opposed to bad input,
    /// a key problem or an unreachable server): the task exists, but what it shows is not what
    /// was asked for, and nothing of it may be used.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            ClientError::Echo { .. }
                | ClientError::NoNonce { .. }
                | ClientError::Open { .. }
                | ClientError::ResultMismatch { .. }
                | ClientError::RunDigest { .. }
        )
    }
}

/// A target organization whose key from the server matched its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: i64,
    pub name: String,
    pub key: PublicKey,
}

/// The normalised form of an image reference (as nodes' policies see it, and as the server
/// stores it), checked before anything is sent.
pub fn image_reference(image: &str) -> Result<String, ClientError> {
    warden_reference::Reference::parse(image)
        .map(|r| r.to_string())
        .map_err(|e| ClientError::Image {
            image: image.to_owned(),
            message: e.to_string(),
        })
}

/// One run of a task as the researcher sees it, its result opened and checked when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub run: Run,
    /// The organization's name (`organization-<id>` when the server does not show it).
    pub organization: String,
    /// The opened result of a completed run.
    pub result: Option<Vec<u8>>,
}

/// What [`Client::outcomes`] checks the runs of a task against.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// What was sent: every run's digest is checked against it.
    pub record: &'a TaskRecord,
    /// To open results: the researcher's key, and the pins of the organizations' keys (with
    /// where they come from, for errors). Without it no result is downloaded.
    pub open: Option<(&'a Researcher, &'a BTreeMap<String, Fingerprint>, &'a str)>,
}

/// Renew the access token when it has less than this left.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// The tokens of a logged-in session.
struct Session {
    access: String,
    refresh: Option<String>,
    expires: Instant,
    /// How long before `expires` the token is renewed: [`REFRESH_MARGIN`], or a quarter of the
    /// token's lifetime when that is shorter (a server with short-lived tokens is not asked for
    /// a new one before every request).
    margin: Duration,
}

/// A logged-in session at the server.
pub struct Client {
    http: reqwest::Client,
    base: String,
    session: std::sync::Mutex<Session>,
    username: String,
    organization_id: Option<i64>,
    /// The session file this client renews through ([`admin::Renewal::Kept`]): each renewal
    /// under its lock, from the file as it is then, written back at once.
    kept: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("username", &self.username)
            .field("organization_id", &self.organization_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The organization of the logged-in account, if it has one.
    pub fn organization_id(&self) -> Option<i64> {
        self.organization_id
    }

    /// The account's user name, as the server spells it.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Logs in at `base` (`http(s)://host[:port]`) with a user name and password.
    pub async fn login(base: &str, username: &str, password: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| ClientError::Http {
                url: base.to_owned(),
                what: "setting up HTTP".to_owned(),
                source,
            })?;
        let mut c = Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            session: std::sync::Mutex::new(Session {
                access: String::new(),
                refresh: None,
                expires: Instant::now(),
                margin: REFRESH_MARGIN,
            }),
            username: username.to_owned(),
            organization_id: None,
            kept: None,
        };
        let body = LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let req = c.http.post(c.url("/api/auth/login")).json(&body);
        let what = format!("logging in as `{username}`");
        let resp = c.send(req, &what).await;
        let resp = match resp {
            Err(ClientError::Api {
                status: 401,
                message,
                ..
            }) => {
                return Err(ClientError::Login {
                    username: username.to_owned(),
                    message,
                });
            }
            other => other?,
        };
        let tokens: TokenResponse = c.json(resp, &what).await?;
        c.store(tokens);
        let me: WhoAmI = c
            .get("/api/auth/whoami", "asking who this account is")
            .await?;
        if let WhoAmI::User {
            organization_id,
            username,
            ..
        } = me
        {
            // The server's spelling of the account: what it records as the task's creator.
            c.organization_id = organization_id;
            c.username = username;
        }
        Ok(c)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self, tokens: TokenResponse) {
        let mut s = self.session();
        s.access = tokens.access_token;
        if tokens.refresh_token.is_some() {
            s.refresh = tokens.refresh_token;
        }
        let lifetime = Duration::from_secs(tokens.expires_in);
        s.expires = Instant::now() + lifetime;
        s.margin = REFRESH_MARGIN.min(lifetime / 4);
    }

    /// The access token for the next request: renewed with the refresh token when it expires
    /// within its margin ([`REFRESH_MARGIN`] at most), so that a long wait outlives the access token's lifetime.
    async fn bearer(&self) -> Result<String, ClientError> {
        let (access, refresh) = {
            let s = self.session();
            if Instant::now() + s.margin < s.expires {
                return Ok(s.access.clone());
            }
            (s.access.clone(), s.refresh.clone())
        };
        if let Some(path) = &self.kept {
            return self.renew_kept(path).await;
        }
        let Some(refresh_token) = refresh else {
            return Ok(access);
        };
        self.refresh_with(refresh_token).await
    }

    /// Renews the access token with the refresh token (`POST /api/auth/refresh`) and keeps the
    /// new tokens in memory.
    pub(crate) async fn refresh_with(&self, refresh_token: String) -> Result<String, ClientError> {
        let what = "renewing the session";
        let req = self
            .http
            .post(self.url("/api/auth/refresh"))
            .json(&RefreshRequest { refresh_token });
        let resp = self.send(req, what).await?;
        let tokens: TokenResponse = self.json(resp, what).await?;
        let access = tokens.access_token.clone();
        self.store(tokens);
        Ok(access)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|source| ClientError::Http {
            url: self.base.clone(),
            what: what.to_owned(),
            source,
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        let message = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => format!(
                "{} ({})",
                e.error.message,
                serde_json::to_value(e.error.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            Err(_) => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        };
        Err(ClientError::Api {
            what: what.to_owned(),
            status: status.as_u16(),
            message,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> Result<T, ClientError> {
        let bytes = resp.bytes().await.map_err(|source| ClientError::Http {
            url: self.base.clone(),
            what: what.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
            what: what.to_owned(),
            message: e.to_string(),
        })
    }

    /// The server's URL, as given to [`Client::login`] (without a trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path` (e.g. `/api/tasks?parent_task_id=3`) as this account, its JSON answer parsed;
    /// `what` names the request in errors.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, ClientError> {
        let req = self
            .http
            .get(self.url(path))
            .bearer_auth(self.bearer().await?);
        let resp = self.send(req, what).await?;
        self.json(resp, what).await
    }

    /// `POST path` with the JSON `body` as this account, its JSON answer parsed; `what` names
    /// the request in errors.
    pub async fn post<B: serde::Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<T, ClientError> {
        let req = self
            .http
            .post(self.url(path))
            .bearer_auth(self.bearer().await?)
            .json(body);
        let resp = self.send(req, what).await?;
        self.json(resp, what).await
    }

    /// The collaboration a profile names, as the server shows it to this account.
    pub async fn collaboration(
        &self,
        which: &CollaborationRef,
    ) -> Result<Collaboration, ClientError> {
        match which {
            CollaborationRef::Id(id) => {
                match self
                    .get(
                        &format!("/api/collaborations/{id}"),
                        "reading the collaboration",
                    )
                    .await
                {
                    Err(ClientError::Api { status: 404, .. }) => {
                        Err(ClientError::NoCollaboration(id.to_string()))
                    }
                    other => other,
                }
            }
            CollaborationRef::Name(name) => {
                let req = self
                    .http
                    .get(self.url("/api/collaborations"))
                    .query(&[("name", name.as_str())])
                    .bearer_auth(self.bearer().await?);
                let what = "finding the collaboration";
                let resp = self.send(req, what).await?;
                let page: Page<Collaboration> = self.json(resp, what).await?;
                page.items
                    .into_iter()
                    .find(|c| c.name == *name)
                    .ok_or_else(|| ClientError::NoCollaboration(format!("`{name}`")))
            }
        }
    }

    /// An organization by id.
    pub async fn organization(&self, id: i64) -> Result<Organization, ClientError> {
        let o: Organization = self
            .get(
                &format!("/api/organizations/{id}"),
                &format!("reading organization {id}"),
            )
            .await?;
        if o.id != id {
            return Err(ClientError::Unexpected {
                what: format!("reading organization {id}"),
                message: format!("the server answered organization {}", o.id),
            });
        }
        Ok(o)
    }

    /// The target organizations `names` of `collab`, each with a key that matches its pin.
    /// Nothing is sent to any organization until every target has passed.
    pub async fn targets(
        &self,
        collab: &Collaboration,
        names: &[String],
        profile: &Profile,
    ) -> Result<Vec<Target>, ClientError> {
        let shown = profile.path.display().to_string();
        self.pinned_targets(collab, names, &profile.pins, &shown)
            .await
    }

    /// [`Client::targets`] with the pins given directly; `pins_from` names where they come from
    /// in errors.
    pub async fn pinned_targets(
        &self,
        collab: &Collaboration,
        names: &[String],
        pins: &BTreeMap<String, Fingerprint>,
        pins_from: &str,
    ) -> Result<Vec<Target>, ClientError> {
        if names.is_empty() {
            return Err(ClientError::NoTargets);
        }
        let mut members = BTreeMap::new();
        for id in &collab.organizations {
            let o = self.organization(*id).await?;
            members.insert(o.name.clone(), o);
        }
        let mut out: Vec<Target> = Vec::new();
        for name in names {
            if out.iter().any(|t| t.name == *name) {
                return Err(ClientError::Duplicate(name.clone()));
            }
            let Some(org) = members.get(name) else {
                return Err(ClientError::NotMember(name.clone(), collab.name.clone()));
            };
            out.push(check_pin(org, pins, pins_from)?);
        }
        Ok(out)
    }

    /// Checks the researcher against this account: the certificate must be for this account's
    /// organization (by the server's name for it) and user name, and valid now. Returns the
    /// account's organization.
    pub async fn check_researcher(
        &self,
        researcher: &Researcher,
    ) -> Result<Organization, ClientError> {
        let id = self
            .organization_id
            .ok_or_else(|| ClientError::NoOrganization(self.username.clone()))?;
        let org = self.organization(id).await?;
        researcher.check_account(&org.name, &self.username)?;
        researcher.check_valid_at(submit::now_unix())?;
        Ok(org)
    }

    /// A task and its runs.
    pub async fn task(&self, id: i64) -> Result<TaskDetail, ClientError> {
        self.get(&format!("/api/tasks/{id}"), &format!("reading task {id}"))
            .await
    }

    /// Cancels a task (`POST /api/tasks/{id}/cancel`): its runs that have not ended become
    /// `cancelled` and their nodes stop them; final runs keep their state. Cancelling a
    /// cancelled task again answers it unchanged; a task whose runs had all ended is refused
    /// (409) with the server's reason.
    pub async fn cancel_task(&self, id: i64) -> Result<TaskDetail, ClientError> {
        self.post(
            &format!("/api/tasks/{id}/cancel"),
            &serde_json::Value::Null,
            &format!("cancelling task {id}"),
        )
        .await
    }

    /// Polls the task (on a [`PollSchedule`]) until every run is final, or `timeout` has
    /// passed.
    /// A run waiting at its node (`awaiting_approval`, `awaiting_release`) is not final: the
    /// wait goes on until the data owner decides (or the node's own time limit refuses it).
    pub async fn wait(&self, id: i64, timeout: Duration) -> Result<TaskDetail, ClientError> {
        self.wait_watching(id, timeout, |_| {}).await
    }

    /// [`Client::wait`], calling `seen` with the task after every poll (e.g. to show the runs'
    /// states while they change).
    pub async fn wait_watching(
        &self,
        id: i64,
        timeout: Duration,
        mut seen: impl FnMut(&TaskDetail),
    ) -> Result<TaskDetail, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut schedule = PollSchedule::new();
        loop {
            let t = self.task(id).await?;
            seen(&t);
            let pending = t.runs.iter().filter(|r| !r.state.is_final()).count();
            if pending == 0 {
                return Ok(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout {
                    task: id,
                    pending,
                    secs: timeout.as_secs(),
                    detail: Box::new(t),
                });
            }
            tokio::time::sleep(schedule.next_pause().min(deadline - now)).await;
        }
    }

    /// Downloads the sealed result of `run`, whose organization is `producer` (its key checked
    /// against the pin), and opens and checks it (see [`check::open_result`]).
    pub async fn result(
        &self,
        run: &Run,
        producer: &Target,
        researcher: &Researcher,
        record: &TaskRecord,
    ) -> Result<Vec<u8>, ClientError> {
        let what = format!("downloading the result of run {}", run.id);
        let req = self
            .http
            .get(self.url(&format!("/api/runs/{}/result", run.id)))
            .bearer_auth(self.bearer().await?);
        let resp = self.send(req, &what).await?;
        let sealed = resp.bytes().await.map_err(|source| ClientError::Http {
            url: self.base.clone(),
            what,
            source,
        })?;
        open_result(&sealed, researcher, producer, run, record)
    }

    /// Downloads the released logs of `run`, whose organization is `producer`, and opens and
    /// checks them (see [`check::open_logs`]); `None` when its node released none (its policy
    /// withholds them, or the run has not ended).
    pub async fn logs(
        &self,
        run: &Run,
        producer: &Target,
        researcher: &Researcher,
        record: &TaskRecord,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let what = format!("downloading the logs of run {}", run.id);
        let req = self
            .http
            .get(self.url(&format!("/api/runs/{}/logs", run.id)))
            .bearer_auth(self.bearer().await?);
        let resp = match self.send(req, &what).await {
            Ok(r) => r,
            Err(ClientError::Api { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let sealed = resp.bytes().await.map_err(|source| ClientError::Http {
            url: self.base.clone(),
            what,
            source,
        })?;
        open_logs(&sealed, researcher, producer, run, record).map(Some)
    }

    /// Each run of `task` with its organization's name. With `expect`, every run's digest is
    /// checked against the record, and with `expect.open` every completed run's result is
    /// downloaded, opened and checked; the first failure is the answer (nothing is returned).
    pub async fn outcomes(
        &self,
        task: &TaskDetail,
        expect: Option<Expect<'_>>,
    ) -> Result<Vec<RunOutcome>, ClientError> {
        let mut orgs: BTreeMap<i64, Option<Organization>> = BTreeMap::new();
        let mut out = Vec::with_capacity(task.runs.len());
        for run in &task.runs {
            check::check_run(task, run)?;
            let org = match orgs.get(&run.organization_id) {
                Some(o) => o.clone(),
                None => {
                    let o = match self.organization(run.organization_id).await {
                        Ok(o) => Some(o),
                        Err(ClientError::Api {
                            status: 403 | 404, ..
                        }) => None,
                        Err(e) => return Err(e),
                    };
                    orgs.insert(run.organization_id, o.clone());
                    o
                }
            };
            let organization = org
                .as_ref()
                .map(|o| o.name.clone())
                .unwrap_or_else(|| format!("organization-{}", run.organization_id));
            let mut result = None;
            if let Some(e) = expect {
                check_run_digest(run, &organization, e.record)?;
                if let Some((researcher, pins, pins_from)) = e.open {
                    if run.state == RunState::Completed && run.has_result {
                        let Some(org) = &org else {
                            return Err(ClientError::Unexpected {
                                what: format!("opening the result of run {}", run.id),
                                message: format!(
                                    "the server does not show organization {}, so its pinned \
                                     key cannot be found",
                                    run.organization_id
                                ),
                            });
                        };
                        let producer = check_pin(org, pins, pins_from)?;
                        result = Some(self.result(run, &producer, researcher, e.record).await?);
                    }
                }
            }
            out.push(RunOutcome {
                run: run.clone(),
                organization,
                result,
            });
        }
        Ok(out)
    }
}
