//! The researcher's side of Warden: log in, find the collaboration and the target organizations,
//! check each organization's key from the server against the fingerprint the researcher pins,
//! seal the input for each target, create the task, wait for its runs, and open the results with
//! the researcher's organization's secret key.
//!
//! The server is trusted to deliver ciphertext, not keys: an organization whose key from the
//! server differs from its pin, or that has no pin, is refused before anything is sent.

#![forbid(unsafe_code)]

pub mod profile;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use warden_api::{
    Collaboration, CreateTask, ErrorBody, LoginRequest, Organization, Page, RefreshRequest, Run,
    RunState, TaskDetail, TaskInput, TokenResponse, WhoAmI,
};
use warden_seal::{Fingerprint, PublicKey, SecretKey};

pub use profile::{CollaborationRef, Profile};

/// First pause between two polls of a task's runs; it doubles up to [`MAX_POLL`].
pub const FIRST_POLL: Duration = Duration::from_millis(100);
/// Longest pause between two polls.
pub const MAX_POLL: Duration = Duration::from_millis(500);
/// Time allowed for one HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong; every variant says what to do.
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
    #[error(
        "the server gives this account's organization `{name}` (id {id}) the key {got}, but \
         [organization] secret_key is the key {ours}; results would not open: use the \
         organization's key file, or have its key corrected"
    )]
    OwnKey {
        id: i64,
        name: String,
        got: String,
        ours: String,
    },
    #[error("the server gives organization {id} a malformed public key: {message}")]
    Malformed { id: i64, message: String },
    #[error("cannot seal the input for `{name}`: {message}")]
    Seal { name: String, message: String },
    #[error(
        "the result of run {run} does not open with [organization] secret_key ({message}); it \
         was not sealed for this organization's key, or was altered"
    )]
    Open { run: i64, message: String },
    #[error("the server answered something unexpected while {what}: {message}")]
    Unexpected { what: String, message: String },
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

/// A target organization whose key from the server matched its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: i64,
    pub name: String,
    pub key: PublicKey,
}

/// Checks an organization as the server describes it against the pins.
pub fn check_pin(
    org: &Organization,
    pins: &BTreeMap<String, Fingerprint>,
    profile: &str,
) -> Result<Target, ClientError> {
    let key = PublicKey::from_base64(&org.public_key).map_err(|e| ClientError::Malformed {
        id: org.id,
        message: e.to_string(),
    })?;
    let Some(pinned) = pins.get(&org.name) else {
        return Err(ClientError::NotPinned {
            name: org.name.clone(),
            profile: profile.to_owned(),
        });
    };
    let got = key.fingerprint();
    if got != *pinned {
        return Err(ClientError::Changed {
            id: org.id,
            name: org.name.clone(),
            pinned: pinned.to_string(),
            got: got.to_string(),
        });
    }
    Ok(Target {
        id: org.id,
        name: org.name.clone(),
        key,
    })
}

/// The normalised form of an image reference (as nodes' policies see it), checked before
/// anything is sent.
pub fn image_reference(image: &str) -> Result<String, ClientError> {
    warden_reference::Reference::parse(image)
        .map(|r| r.to_string())
        .map_err(|e| ClientError::Image {
            image: image.to_owned(),
            message: e.to_string(),
        })
}

/// A run listed under `task` must belong to it, and to its collaboration (the result context
/// is built from them).
fn check_run(task: &TaskDetail, run: &Run) -> Result<(), ClientError> {
    if run.task_id != task.task.id || run.collaboration_id != task.task.collaboration_id {
        return Err(ClientError::Unexpected {
            what: format!("reading task {}", task.task.id),
            message: format!(
                "run {} belongs to task {} in collaboration {}, not to task {} in collaboration {}",
                run.id, run.task_id, run.collaboration_id, task.task.id, task.task.collaboration_id
            ),
        });
    }
    Ok(())
}

/// The task the server created must have exactly one run per target, in the collaboration.
fn check_created(
    task: &TaskDetail,
    collab: &Collaboration,
    targets: &[Target],
) -> Result<(), ClientError> {
    let mut got: Vec<i64> = task.runs.iter().map(|r| r.organization_id).collect();
    let mut want: Vec<i64> = targets.iter().map(|t| t.id).collect();
    got.sort_unstable();
    want.sort_unstable();
    if task.task.collaboration_id != collab.id || got != want {
        return Err(ClientError::Unexpected {
            what: "creating the task".to_owned(),
            message: format!(
                "task {} has runs at organizations {got:?} in collaboration {}, asked for \
                 {want:?} in collaboration {}",
                task.task.id, task.task.collaboration_id, collab.id
            ),
        });
    }
    task.runs.iter().try_for_each(|r| check_run(task, r))
}

/// One run of a task as the researcher sees it, its result opened when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub run: Run,
    /// The organization's name (its id when the server does not show it).
    pub organization: String,
    /// The opened result of a completed run.
    pub result: Option<Vec<u8>>,
}

/// Renew the access token when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// The tokens of a logged-in session.
struct Session {
    access: String,
    refresh: Option<String>,
    expires: Instant,
}

/// A logged-in session at the server.
pub struct Client {
    http: reqwest::Client,
    base: String,
    session: std::sync::Mutex<Session>,
    username: String,
    organization_id: Option<i64>,
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
            }),
            username: username.to_owned(),
            organization_id: None,
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
        c.organization_id = match me {
            WhoAmI::User {
                organization_id, ..
            } => organization_id,
            _ => None,
        };
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
        s.expires = Instant::now() + Duration::from_secs(tokens.expires_in);
    }

    /// The access token for the next request: renewed with the refresh token when it expires
    /// within [`REFRESH_MARGIN`], so that a long wait outlives the access token's lifetime.
    async fn bearer(&self) -> Result<String, ClientError> {
        let (access, refresh) = {
            let s = self.session();
            if Instant::now() + REFRESH_MARGIN < s.expires {
                return Ok(s.access.clone());
            }
            (s.access.clone(), s.refresh.clone())
        };
        let Some(refresh_token) = refresh else {
            return Ok(access);
        };
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

    /// Checks that the server gives this account's organization the key of `secret`, so that
    /// the nodes seal results to a key this researcher can open.
    pub async fn check_own_key(&self, secret: &SecretKey) -> Result<Organization, ClientError> {
        let id = self
            .organization_id
            .ok_or_else(|| ClientError::NoOrganization(self.username.clone()))?;
        let org = self.organization(id).await?;
        let ours = secret.public_key();
        if org.public_key != ours.to_base64() {
            let got = PublicKey::from_base64(&org.public_key)
                .map(|k| k.fingerprint().to_string())
                .unwrap_or_else(|_| "(malformed)".to_owned());
            return Err(ClientError::OwnKey {
                id,
                name: org.name.clone(),
                got,
                ours: ours.fingerprint().to_string(),
            });
        }
        Ok(org)
    }

    /// Creates a task running `image` at each target, `input` sealed for each under
    /// [`warden_seal::input_context`].
    pub async fn create_task(
        &self,
        collab: &Collaboration,
        targets: &[Target],
        name: &str,
        image: &str,
        input: &[u8],
    ) -> Result<TaskDetail, ClientError> {
        let mut inputs = Vec::with_capacity(targets.len());
        for t in targets {
            let sealed =
                warden_seal::seal(&t.key, &warden_seal::input_context(collab.id, t.id), input)
                    .map_err(|e| ClientError::Seal {
                        name: t.name.clone(),
                        message: e.to_string(),
                    })?;
            inputs.push(TaskInput {
                organization_id: t.id,
                input: STANDARD.encode(sealed),
            });
        }
        let body = CreateTask {
            collaboration_id: collab.id,
            name: name.to_owned(),
            image: image.to_owned(),
            inputs,
            parent_task_id: None,
        };
        let what = "creating the task";
        let req = self
            .http
            .post(self.url("/api/tasks"))
            .bearer_auth(self.bearer().await?)
            .json(&body);
        let resp = self.send(req, what).await?;
        let task: TaskDetail = self.json(resp, what).await?;
        check_created(&task, collab, targets)?;
        Ok(task)
    }

    /// A task and its runs.
    pub async fn task(&self, id: i64) -> Result<TaskDetail, ClientError> {
        self.get(&format!("/api/tasks/{id}"), &format!("reading task {id}"))
            .await
    }

    /// Polls the task (backing off from [`FIRST_POLL`] to [`MAX_POLL`]) until every run is
    /// final, or `timeout` has passed.
    pub async fn wait(&self, id: i64, timeout: Duration) -> Result<TaskDetail, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut pause = FIRST_POLL;
        loop {
            let t = self.task(id).await?;
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
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Downloads the sealed result of `run` and opens it under
    /// [`warden_seal::result_context`].
    pub async fn result(&self, run: &Run, secret: &SecretKey) -> Result<Vec<u8>, ClientError> {
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
        warden_seal::open(
            secret,
            &warden_seal::result_context(run.collaboration_id, run.id),
            &sealed,
        )
        .map_err(|e| ClientError::Open {
            run: run.id,
            message: e.to_string(),
        })
    }

    /// Each run of `task` with its organization's name and, when `secret` is given and the run
    /// completed with a result, the opened result.
    pub async fn outcomes(
        &self,
        task: &TaskDetail,
        secret: Option<&SecretKey>,
    ) -> Result<Vec<RunOutcome>, ClientError> {
        let mut names: BTreeMap<i64, String> = BTreeMap::new();
        let mut out = Vec::with_capacity(task.runs.len());
        for run in &task.runs {
            check_run(task, run)?;
            let organization = match names.get(&run.organization_id) {
                Some(n) => n.clone(),
                None => {
                    let n = match self.organization(run.organization_id).await {
                        Ok(o) => o.name,
                        Err(ClientError::Api {
                            status: 403 | 404, ..
                        }) => format!("organization-{}", run.organization_id),
                        Err(e) => return Err(e),
                    };
                    names.insert(run.organization_id, n.clone());
                    n
                }
            };
            let result = match secret {
                Some(s) if run.state == RunState::Completed && run.has_result => {
                    Some(self.result(run, s).await?)
                }
                _ => None,
            };
            out.push(RunOutcome {
                run: run.clone(),
                organization,
                result,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(id: i64, name: &str, key: &str) -> Organization {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "public_key": key, "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_key_is_used_only_when_it_matches_its_pin() {
        let a = SecretKey::generate().public_key();
        let other = SecretKey::generate().public_key();
        let pins: BTreeMap<String, Fingerprint> =
            [("hospital-a".to_owned(), a.fingerprint())].into();
        let t = check_pin(&org(1, "hospital-a", &a.to_base64()), &pins, "p.toml").unwrap();
        assert_eq!((t.id, t.name.as_str(), t.key), (1, "hospital-a", a));

        let e = check_pin(&org(1, "hospital-a", &other.to_base64()), &pins, "p.toml");
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains(&other.fingerprint().to_string())
                && e.contains(&a.fingerprint().to_string())
                && e.contains("nothing was sent"),
            "{e}"
        );
        // The pin is by name: the pinned key under another name is not trusted.
        let e = check_pin(&org(2, "hospital-b", &a.to_base64()), &pins, "p.toml");
        let e = e.unwrap_err().to_string();
        assert!(e.contains("no pinned key") && e.contains("p.toml"), "{e}");
        let e = check_pin(&org(1, "hospital-a", "AAAA"), &pins, "p.toml");
        assert!(
            matches!(e, Err(ClientError::Malformed { id: 1, .. })),
            "{e:?}"
        );
    }

    fn detail(task: i64, collab: i64, runs: &[(i64, i64, i64, i64)]) -> TaskDetail {
        let runs: Vec<serde_json::Value> = runs
            .iter()
            .map(|(id, task_id, collab, org)| {
                serde_json::json!({
                    "id": id, "task_id": task_id, "collaboration_id": collab,
                    "organization_id": org, "state": "pending", "has_result": false,
                    "created_at": "2026-01-01T00:00:00Z", "admitted_at": null,
                    "started_at": null, "finished_at": null, "acked_at": null
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "task": {"id": task, "collaboration_id": collab, "name": "", "image": "x",
                     "organization_id": 1, "created_at": "2026-01-01T00:00:00Z"},
            "runs": runs
        }))
        .unwrap()
    }

    #[test]
    fn runs_that_do_not_belong_to_the_task_are_refused() {
        let collab: Collaboration = serde_json::from_value(serde_json::json!({
            "id": 3, "name": "study", "encrypted": true, "organizations": [1, 2],
            "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        let key = SecretKey::generate().public_key();
        let target = |id: i64| Target {
            id,
            name: format!("o{id}"),
            key,
        };
        let both = [target(1), target(2)];
        let ok = detail(7, 3, &[(10, 7, 3, 2), (11, 7, 3, 1)]);
        assert!(check_created(&ok, &collab, &both).is_ok());
        for bad in [
            // a target is missing
            detail(7, 3, &[(10, 7, 3, 1)]),
            // another organization
            detail(7, 3, &[(10, 7, 3, 1), (11, 7, 3, 9)]),
            // another collaboration
            detail(7, 4, &[(10, 7, 4, 1), (11, 7, 4, 2)]),
            // a run of another task
            detail(7, 3, &[(10, 7, 3, 1), (11, 8, 3, 2)]),
            // a run of another collaboration
            detail(7, 3, &[(10, 7, 3, 1), (11, 7, 5, 2)]),
        ] {
            let e = check_created(&bad, &collab, &both);
            assert!(matches!(e, Err(ClientError::Unexpected { .. })), "{bad:?}");
        }
    }
}
