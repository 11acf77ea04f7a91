//! `warden._native`: the researcher's side of Warden (`warden-client`) for Python. The Python
//! package `warden` (python/warden) wraps it; this module is its one implementation of
//! profiles, logins and sessions, pins, sealing and the checks of tasks and results. There is
//! no second implementation of any of it in Python.
//!
//! Every call that talks to the server releases the GIL while it waits and checks for signals
//! every [`SIGNAL_CHECK`], so Ctrl-C stops a wait with `KeyboardInterrupt`. Errors are raised as
//! the classes of `warden.errors` (chosen by [`class_of`]); every string that came from the
//! server is escaped (`warden_api::display::safe`) before it is put in a message.
//!
//! Data crosses the boundary as JSON text (the server's wire types, serialised here) and result
//! bytes; the Python layer turns them into objects.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use warden_api::display::safe;
use warden_api::{TaskDetail, strict};
use warden_client::tasks::TaskFilter;
use warden_client::{
    Client, ClientError, CollaborationRef, Expect, Profile, RecordStore, RegistrySection,
    Researcher, Submission, TaskRecord,
};
use warden_seal::Fingerprint;

/// How often a call that waits looks for a pending signal (Ctrl-C).
pub const SIGNAL_CHECK: Duration = Duration::from_millis(50);
/// Environment variable with the password when neither the call nor the profile gives one.
const PASSWORD_ENV: &str = "WARDEN_PASSWORD";

/// Why a call failed: the client's error, or a Python exception (a signal, a progress
/// callback that raised).
enum Fail {
    Client(ClientError),
    Py(PyErr),
    /// Anything else, already worded: (class in `warden.errors`, message).
    Other(&'static str, String),
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        Fail::Client(e)
    }
}

impl From<PyErr> for Fail {
    fn from(e: PyErr) -> Self {
        Fail::Py(e)
    }
}

/// The `warden.errors` class for a client error.
pub fn class_of(e: &ClientError) -> &'static str {
    use ClientError as E;
    if e.is_verification_failure() {
        return "VerificationError";
    }
    match e {
        E::Changed { .. } | E::NotPinned { .. } => "PinMismatch",
        E::Login { .. } | E::Api { status: 401, .. } | E::Api { status: 403, .. } => "AuthError",
        E::Api { .. } | E::Http { .. } | E::Unexpected { .. } | E::Malformed { .. } => {
            "ServerError"
        }
        E::Timeout { .. } => "WaitTimeout",
        E::Input(_)
        | E::Image { .. }
        | E::NoTargets
        | E::Duplicate(_)
        | E::NotMember(..)
        | E::Resolve { .. } => "InputError",
        E::NoOrganization(_)
        | E::NoCollaboration(_)
        | E::KeyFile { .. }
        | E::CertificateKey { .. }
        | E::CertificateAccount { .. }
        | E::CertificateTime { .. }
        | E::Record(_)
        | E::Seal { .. } => "ConfigError",
        _ => "WardenError",
    }
}

/// An instance of `warden.errors.<class>(message)` with `attrs` set on it, as a `PyErr`.
fn raise(py: Python<'_>, class: &str, message: &str, attrs: Vec<(&str, Py<PyAny>)>) -> PyErr {
    let made = py
        .import("warden.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((safe(message).into_owned(),)));
    match made {
        Ok(instance) => {
            for (k, v) in attrs {
                if let Err(e) = instance.setattr(k, v) {
                    return e;
                }
            }
            PyErr::from_value(instance)
        }
        Err(e) => e,
    }
}

fn to_py(py: Python<'_>, f: Fail) -> PyErr {
    match f {
        Fail::Py(e) => e,
        Fail::Other(class, message) => raise(py, class, &message, Vec::new()),
        Fail::Client(e) => {
            let mut attrs: Vec<(&str, Py<PyAny>)> = Vec::new();
            let text = |s: &str| -> Py<PyAny> {
                safe(s)
                    .into_owned()
                    .into_pyobject(py)
                    .map(|o| o.into_any().unbind())
                    .unwrap_or_else(|_| py.None())
            };
            let int = |i: i64| -> Py<PyAny> {
                i.into_pyobject(py)
                    .map(|o| o.into_any().unbind())
                    .unwrap_or_else(|_| py.None())
            };
            match &e {
                ClientError::Changed {
                    id,
                    name,
                    pinned,
                    got,
                } => {
                    attrs.push(("organization", text(name)));
                    attrs.push(("organization_id", int(*id)));
                    attrs.push(("pinned", text(pinned)));
                    attrs.push(("got", text(got)));
                }
                ClientError::NotPinned { name, .. } => {
                    attrs.push(("organization", text(name)));
                    attrs.push(("pinned", py.None()));
                }
                ClientError::Api { status, .. } => attrs.push(("status", int(i64::from(*status)))),
                ClientError::Open { run, .. }
                | ClientError::ResultMismatch { run, .. }
                | ClientError::RunDigest { run, .. } => attrs.push(("run_id", int(*run))),
                ClientError::Echo { task, .. }
                | ClientError::NoNonce { task }
                | ClientError::Timeout { task, .. } => attrs.push(("task_id", int(*task))),
                _ => {}
            }
            raise(py, class_of(&e), &e.to_string(), attrs)
        }
    }
}

/// Waits until a signal is pending, then returns Python's exception for it.
async fn interrupted() -> PyErr {
    loop {
        tokio::time::sleep(SIGNAL_CHECK).await;
        if let Err(e) = Python::attach(|py| py.check_signals()) {
            return e;
        }
    }
}

/// A logged-in session, the researcher's key and certificate, the pins and what was sent.
#[pyclass(module = "warden._native", frozen)]
struct Native {
    runtime: tokio::runtime::Runtime,
    client: Client,
    researcher: Researcher,
    collaboration: CollaborationRef,
    pins: BTreeMap<String, Fingerprint>,
    /// Where the pins come from, for errors.
    pins_from: String,
    registry: RegistrySection,
    store: RecordStore,
    /// Records of the tasks created by this session, by task id.
    records: Mutex<HashMap<i64, TaskRecord>>,
    /// Organization names by id, as the server showed them.
    names: Mutex<HashMap<i64, String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Fail::Other(
                "WardenError",
                format!("cannot start the async runtime: {e}"),
            )
        })
}

/// Runs `fut` on `rt` with the GIL released, stopping at a pending signal.
fn block<T, F>(py: Python<'_>, rt: &tokio::runtime::Runtime, fut: F) -> Result<T, Fail>
where
    T: Send,
    F: Future<Output = Result<T, Fail>> + Send,
{
    py.detach(|| {
        rt.block_on(async {
            tokio::select! {
                r = fut => r,
                e = interrupted() => Err(Fail::Py(e)),
            }
        })
    })
}

/// The password: given, else the profile's `password_file`, else `WARDEN_PASSWORD`.
fn password(
    given: Option<String>,
    file: Option<&std::path::Path>,
    who: &str,
) -> Result<String, Fail> {
    if let Some(p) = given {
        if p.is_empty() {
            return Err(Fail::Other(
                "ConfigError",
                "refusing an empty password".to_owned(),
            ));
        }
        return Ok(p);
    }
    let p = match file {
        Some(path) => {
            let bytes = warden_client::keyfile::read_small(path)
                .map_err(|e| Fail::Other("ConfigError", format!("the password file: {e}")))?;
            let mut s = String::from_utf8(bytes.to_vec()).map_err(|_| {
                Fail::Other(
                    "ConfigError",
                    format!("the password file {} is not UTF-8 text", path.display()),
                )
            })?;
            if s.ends_with("\r\n") {
                s.truncate(s.len() - 2);
            } else if s.ends_with('\n') {
                s.truncate(s.len() - 1);
            }
            s
        }
        None => std::env::var(PASSWORD_ENV).map_err(|_| {
            Fail::Other(
                "ConfigError",
                format!(
                    "no password for `{who}`: pass password=..., set [server] password_file in \
                     the profile or the environment variable {PASSWORD_ENV}"
                ),
            )
        })?,
    };
    if p.is_empty() {
        return Err(Fail::Other(
            "ConfigError",
            format!("refusing an empty password for `{who}`"),
        ));
    }
    Ok(p)
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String, Fail> {
    serde_json::to_string(v)
        .map_err(|e| Fail::Other("WardenError", format!("cannot serialise an answer: {e}")))
}

/// Everything [`Native`] is made from, before the login.
struct Setup {
    url: String,
    username: String,
    password: String,
    researcher: Researcher,
    collaboration: CollaborationRef,
    pins: BTreeMap<String, Fingerprint>,
    pins_from: String,
    registry: RegistrySection,
    store: RecordStore,
}

fn start(py: Python<'_>, s: Setup) -> Result<Native, Fail> {
    let rt = runtime()?;
    let client = block(py, &rt, async {
        let client = Client::login(&s.url, &s.username, &s.password).await?;
        // The certificate must be for this account, else every node would refuse the inputs.
        client.check_researcher(&s.researcher).await?;
        Ok(client)
    })?;
    Ok(Native {
        runtime: rt,
        client,
        researcher: s.researcher,
        collaboration: s.collaboration,
        pins: s.pins,
        pins_from: s.pins_from,
        registry: s.registry,
        store: s.store,
        records: Mutex::new(HashMap::new()),
        names: Mutex::new(HashMap::new()),
    })
}

fn store(records_dir: Option<PathBuf>) -> Result<RecordStore, Fail> {
    match records_dir {
        Some(d) => Ok(RecordStore::new(d)),
        None => RecordStore::default_location().map_err(|e| Fail::Client(e.into())),
    }
}

/// The outcome of one run, as handed to Python: the run (JSON), its organization's name and
/// its opened, checked result.
type Outcome = (String, String, Option<Vec<u8>>);
/// What `wait` returns to Python: the task (JSON), each run's outcome, warnings.
type Waited = (
    String,
    Vec<(String, String, Option<Py<PyBytes>>)>,
    Vec<String>,
);

impl Native {
    async fn record(&self, task_id: i64, warnings: &mut Vec<String>) -> Result<TaskRecord, Fail> {
        if let Some(r) = lock(&self.records).get(&task_id) {
            return Ok(r.clone());
        }
        if let Some(r) = self
            .store
            .load(self.client.base(), task_id)
            .map_err(ClientError::from)?
        {
            return Ok(r);
        }
        warnings.push(format!(
            "no local record of task {task_id} in {} (a task created on this machine has one); \
             checking against the nonce and image the server shows instead",
            self.store.dir().display()
        ));
        let task = self.client.task(task_id).await?;
        let t = &task.task;
        let Some(nonce) = t.nonce.clone() else {
            return Err(ClientError::NoNonce { task: t.id }.into());
        };
        let image = warden_client::image_reference(&t.image)?;
        let digest = warden_client::resolve_digest(&image, &self.registry).await?;
        Ok(TaskRecord {
            server: self.client.base().to_owned(),
            task_id: t.id,
            nonce,
            image,
            digest,
        })
    }

    /// The names of the organizations of `task`'s runs (fetched once per id).
    async fn names(&self, task: &TaskDetail) -> BTreeMap<i64, String> {
        let mut out = BTreeMap::new();
        for r in &task.runs {
            let id = r.organization_id;
            if out.contains_key(&id) {
                continue;
            }
            let known = lock(&self.names).get(&id).cloned();
            let name = match known {
                Some(n) => n,
                None => match self.client.organization(id).await {
                    Ok(o) => {
                        lock(&self.names).insert(id, o.name.clone());
                        o.name
                    }
                    Err(_) => format!("organization-{id}"),
                },
            };
            out.insert(id, name);
        }
        out
    }

    /// Polls until every run of `task_id` is final (or `timeout`), calling `progress` with the
    /// runs after each poll.
    async fn wait_final(
        &self,
        task_id: i64,
        timeout: Duration,
        progress: Option<&Py<PyAny>>,
    ) -> Result<TaskDetail, Fail> {
        let deadline = Instant::now() + timeout;
        // the same pauses as `warden task wait` (warden_client::Client::wait_watching)
        let mut schedule = warden_client::PollSchedule::new();
        let mut names = None;
        loop {
            let t = self.client.task(task_id).await?;
            let pending = t.runs.iter().filter(|r| !r.state.is_final()).count();
            if let Some(cb) = progress {
                if names.is_none() {
                    names = Some(self.names(&t).await);
                }
                let runs: Vec<serde_json::Value> = t
                    .runs
                    .iter()
                    .map(|r| {
                        let org = names
                            .as_ref()
                            .and_then(|n| n.get(&r.organization_id).cloned())
                            .unwrap_or_else(|| format!("organization-{}", r.organization_id));
                        serde_json::json!({
                            "run_id": r.id,
                            "organization_id": r.organization_id,
                            "organization": safe(&org),
                            "state": r.state.as_str(),
                            "final": r.state.is_final(),
                        })
                    })
                    .collect();
                let text = json_text(&runs)?;
                Python::attach(|py| cb.call1(py, (text,)).map(|_| ()))?;
            }
            if pending == 0 {
                return Ok(t);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout {
                    task: task_id,
                    pending,
                    secs: timeout.as_secs(),
                    detail: Box::new(t),
                }
                .into());
            }
            tokio::time::sleep(schedule.next_pause().min(deadline - now)).await;
        }
    }
}

#[pymethods]
impl Native {
    /// Logs in with the profile at `path` (a file already resolved from a name by Python).
    #[staticmethod]
    #[pyo3(signature = (path, password=None, records_dir=None))]
    fn from_profile(
        py: Python<'_>,
        path: PathBuf,
        password: Option<String>,
        records_dir: Option<PathBuf>,
    ) -> PyResult<Native> {
        let made = (|| {
            let profile =
                Profile::load(&path).map_err(|e| Fail::Other("ConfigError", e.to_string()))?;
            let pw = self::password(
                password,
                profile.server.password_file.as_deref(),
                &profile.server.username,
            )?;
            let researcher =
                Researcher::load(&profile.researcher.key, &profile.researcher.certificate)?;
            start(
                py,
                Setup {
                    url: profile.server.url.clone(),
                    username: profile.server.username.clone(),
                    password: pw,
                    researcher,
                    collaboration: profile.collaboration.clone(),
                    pins: profile.pins.clone(),
                    pins_from: profile.path.display().to_string(),
                    registry: profile.registry.clone(),
                    store: store(records_dir)?,
                },
            )
        })();
        made.map_err(|f| to_py(py, f))
    }

    /// The name of the profile a name means (`$XDG_CONFIG_HOME/warden/NAME.toml`).
    #[staticmethod]
    fn profile_path(name: &str) -> PyResult<PathBuf> {
        warden_client::profile::path_of(name).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Logs in with everything given directly (no profile file).
    #[staticmethod]
    #[pyo3(signature = (url, username, password, key, certificate, collaboration, pins, insecure=Vec::new(), docker_config=None, records_dir=None))]
    #[allow(clippy::too_many_arguments)]
    fn login(
        py: Python<'_>,
        url: String,
        username: String,
        password: Option<String>,
        key: PathBuf,
        certificate: PathBuf,
        collaboration: &Bound<'_, PyAny>,
        pins: BTreeMap<String, String>,
        insecure: Vec<String>,
        docker_config: Option<PathBuf>,
        records_dir: Option<PathBuf>,
    ) -> PyResult<Native> {
        let collaboration = if let Ok(id) = collaboration.extract::<i64>() {
            CollaborationRef::Id(id)
        } else if let Ok(name) = collaboration.extract::<String>() {
            CollaborationRef::Name(name)
        } else {
            return Err(PyValueError::new_err(
                "collaboration must be a name (str) or an id (int)",
            ));
        };
        let made = (|| {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Fail::Other(
                    "ConfigError",
                    format!("the server URL `{url}` must start with http:// or https://"),
                ));
            }
            let mut parsed = BTreeMap::new();
            for (name, fp) in pins {
                let f = fp.parse::<Fingerprint>().map_err(|_| {
                    Fail::Other(
                        "ConfigError",
                        format!(
                            "the pin of organization `{name}` is `{fp}`, not a fingerprint \
                             sha256:<64 lower-case hex>; ask the organization for its key's \
                             fingerprint (`warden keys fingerprint`)"
                        ),
                    )
                })?;
                parsed.insert(name, f);
            }
            let pw = self::password(password, None, &username)?;
            let researcher = Researcher::load(&key, &certificate)?;
            start(
                py,
                Setup {
                    url,
                    username,
                    password: pw,
                    researcher,
                    collaboration,
                    pins: parsed,
                    pins_from: "the organizations= pins".to_owned(),
                    registry: RegistrySection {
                        insecure,
                        docker_config,
                    },
                    store: store(records_dir)?,
                },
            )
        })();
        made.map_err(|f| to_py(py, f))
    }

    #[getter]
    fn url(&self) -> String {
        self.client.base().to_owned()
    }

    #[getter]
    fn username(&self) -> String {
        self.client.username().to_owned()
    }

    /// Creates a task (see `warden_client::Client::create_task`): returns the created task
    /// (JSON) and warnings.
    #[pyo3(signature = (image, organizations, input, name=String::new()))]
    fn create(
        &self,
        py: Python<'_>,
        image: String,
        organizations: Vec<String>,
        input: Vec<u8>,
        name: String,
    ) -> PyResult<(String, Vec<String>)> {
        let run = || -> Result<(String, Vec<String>), Fail> {
            let input: strict::Input = warden_client::parse_input(&input)?;
            let image = warden_client::image_reference(&image)?;
            self.researcher
                .check_valid_at(time_now())
                .map_err(Fail::Client)?;
            let (task, record) = block(py, &self.runtime, async {
                let collab = self.client.collaboration(&self.collaboration).await?;
                let targets = self
                    .client
                    .pinned_targets(&collab, &organizations, &self.pins, &self.pins_from)
                    .await?;
                for t in &targets {
                    lock(&self.names).insert(t.id, t.name.clone());
                }
                let digest = warden_client::resolve_digest(&image, &self.registry).await?;
                let s = Submission {
                    collaboration: &collab,
                    targets: &targets,
                    name: &name,
                    image: &image,
                    digest: &digest,
                    input: &input,
                };
                Ok(self.client.create_task(&self.researcher, &s).await?)
            })?;
            let mut warnings = Vec::new();
            if let Err(e) = self.store.save(&record) {
                warnings.push(format!(
                    "task {} was created, but {e}; waiting for it from another process falls \
                     back to the server's echo",
                    task.task.id
                ));
            }
            lock(&self.records).insert(task.task.id, record);
            Ok((json_text(&task)?, warnings))
        };
        run().map_err(|f| to_py(py, f))
    }

    /// A task and its runs as they are now (JSON), checked against its record when there is
    /// one; no result is downloaded.
    fn task(&self, py: Python<'_>, task_id: i64) -> PyResult<String> {
        let run = || -> Result<String, Fail> {
            let task = block(py, &self.runtime, async {
                let task = self.client.task(task_id).await?;
                let record = lock(&self.records).get(&task_id).cloned();
                let record = match record {
                    Some(r) => Some(r),
                    None => self
                        .store
                        .load(self.client.base(), task_id)
                        .map_err(ClientError::from)?,
                };
                if let Some(r) = &record {
                    warden_client::check_task(&task, r)?;
                    let expect = Expect {
                        record: r,
                        open: None,
                    };
                    self.client.outcomes(&task, Some(expect)).await?;
                }
                let names = self.names(&task).await;
                Ok((task, names))
            })?;
            let (task, names) = task;
            let mut v = serde_json::to_value(&task)
                .map_err(|e| Fail::Other("WardenError", e.to_string()))?;
            if let Some(runs) = v.get_mut("runs").and_then(|r| r.as_array_mut()) {
                for r in runs {
                    let id = r.get("organization_id").and_then(serde_json::Value::as_i64);
                    if let (Some(id), Some(obj)) = (id, r.as_object_mut()) {
                        let name = names
                            .get(&id)
                            .cloned()
                            .unwrap_or_else(|| format!("organization-{id}"));
                        obj.insert("organization".to_owned(), name.into());
                    }
                }
            }
            json_text(&v)
        };
        run().map_err(|f| to_py(py, f))
    }

    /// Cancels the task through `Client::cancel_task` (the server stops its runs that have not
    /// ended; its nodes kill their containers); returns the task and its runs (JSON), each run
    /// with its organization's name.
    fn cancel(&self, py: Python<'_>, task_id: i64) -> PyResult<String> {
        let run = || -> Result<String, Fail> {
            let (task, names) = block(py, &self.runtime, async {
                let task = self.client.cancel_task(task_id).await?;
                let names = self.names(&task).await;
                Ok((task, names))
            })?;
            let mut v = serde_json::to_value(&task)
                .map_err(|e| Fail::Other("WardenError", e.to_string()))?;
            if let Some(runs) = v.get_mut("runs").and_then(|r| r.as_array_mut()) {
                for r in runs {
                    let id = r.get("organization_id").and_then(serde_json::Value::as_i64);
                    if let (Some(id), Some(obj)) = (id, r.as_object_mut()) {
                        let name = names
                            .get(&id)
                            .cloned()
                            .unwrap_or_else(|| format!("organization-{id}"));
                        obj.insert("organization".to_owned(), name.into());
                    }
                }
            }
            json_text(&v)
        };
        run().map_err(|f| to_py(py, f))
    }

    /// The tasks of the collaboration (every page), or every task the account may see.
    #[pyo3(signature = (all_collaborations=false, mine=false))]
    fn tasks(&self, py: Python<'_>, all_collaborations: bool, mine: bool) -> PyResult<String> {
        let run = || -> Result<String, Fail> {
            let tasks = block(py, &self.runtime, async {
                let mut filter = TaskFilter::default();
                if !all_collaborations {
                    filter.collaboration_id =
                        Some(self.client.collaboration(&self.collaboration).await?.id);
                }
                if mine {
                    let me: warden_api::WhoAmI = self
                        .client
                        .get("/api/auth/whoami", "asking who this account is")
                        .await?;
                    if let warden_api::WhoAmI::User { id, .. } = me {
                        filter.creator_user_id = Some(id);
                    }
                }
                Ok(self.client.tasks(&filter).await?)
            })?;
            json_text(&tasks)
        };
        run().map_err(|f| to_py(py, f))
    }

    /// Waits until every run of `task_id` is final (at most `timeout` seconds), calling
    /// `progress(runs_json)` after each poll; then opens and checks every completed run's
    /// result. Returns the task (JSON), each run's outcome and warnings.
    #[pyo3(signature = (task_id, timeout=600.0, progress=None))]
    fn wait(
        &self,
        py: Python<'_>,
        task_id: i64,
        timeout: f64,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Waited> {
        if !(timeout.is_finite() && timeout >= 0.0) {
            return Err(PyValueError::new_err(
                "timeout must be a number of seconds, 0 or more",
            ));
        }
        let timeout = Duration::from_secs_f64(timeout.min(1e9));
        let run = || -> Result<(String, Vec<Outcome>, Vec<String>), Fail> {
            block(py, &self.runtime, async {
                let mut warnings = Vec::new();
                let record = self.record(task_id, &mut warnings).await?;
                let task = self.wait_final(task_id, timeout, progress.as_ref()).await?;
                warden_client::check_task(&task, &record)?;
                let expect = Expect {
                    record: &record,
                    open: Some((&self.researcher, &self.pins, &self.pins_from)),
                };
                let outcomes = self.client.outcomes(&task, Some(expect)).await?;
                let mut out = Vec::with_capacity(outcomes.len());
                for o in outcomes {
                    out.push((json_text(&o.run)?, o.organization, o.result));
                }
                Ok((json_text(&task)?, out, warnings))
            })
        };
        let (task, outcomes, warnings) = run().map_err(|f| to_py(py, f))?;
        let outcomes = outcomes
            .into_iter()
            .map(|(run, org, result)| {
                let bytes = result.map(|b| PyBytes::new(py, &b).unbind());
                (run, safe(&org).into_owned(), bytes)
            })
            .collect();
        Ok((task, outcomes, warnings))
    }
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The names of every class `warden.errors` must define (the classes [`class_of`] picks and
/// the others this module raises).
pub const ERROR_CLASSES: [&str; 9] = [
    "WardenError",
    "AuthError",
    "PinMismatch",
    "Rejected",
    "ServerError",
    "VerificationError",
    "WaitTimeout",
    "InputError",
    "ConfigError",
];

/// `text` made safe to show in a terminal (`warden_api::display::safe`): control characters,
/// line breaks, escape sequences and bidirectional controls escaped.
#[pyfunction]
fn safe_text(text: &str) -> String {
    safe(text).into_owned()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Native>()?;
    m.add_function(wrap_pyfunction!(safe_text, m)?)?;
    m.add("ERROR_CLASSES", ERROR_CLASSES.to_vec())?;
    m.add("SIGNAL_CHECK_SECS", SIGNAL_CHECK.as_secs_f64())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            what: "w".into(),
            status,
            message: "m".into(),
        }
    }

    #[test]
    fn each_client_error_maps_to_its_python_class() {
        let changed = ClientError::Changed {
            id: 1,
            name: "a".into(),
            pinned: "p".into(),
            got: "g".into(),
        };
        let open = ClientError::Open {
            run: 1,
            organization: "a".into(),
            message: "m".into(),
        };
        let cases = [
            (changed, "PinMismatch"),
            (
                ClientError::NotPinned {
                    name: "a".into(),
                    profile: "p".into(),
                },
                "PinMismatch",
            ),
            (
                ClientError::Login {
                    username: "u".into(),
                    message: "m".into(),
                },
                "AuthError",
            ),
            (api(401), "AuthError"),
            (api(403), "AuthError"),
            (api(404), "ServerError"),
            (api(500), "ServerError"),
            (open, "VerificationError"),
            (ClientError::NoNonce { task: 1 }, "VerificationError"),
            (ClientError::NoTargets, "InputError"),
            (ClientError::Duplicate("a".into()), "InputError"),
            (ClientError::Input("x".into()), "InputError"),
            (ClientError::NoCollaboration("c".into()), "ConfigError"),
        ];
        for (e, class) in cases {
            assert_eq!(class_of(&e), class, "{e}");
            assert!(ERROR_CLASSES.contains(&class));
        }
    }

    /// The Python package defines every class this module raises, each a WardenError.
    #[test]
    fn warden_errors_defines_every_class() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../python/warden/errors.py");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        assert!(text.contains("class WardenError(Exception):"), "{path}");
        for class in &ERROR_CLASSES[1..] {
            let defined = text
                .lines()
                .any(|l| l.starts_with(&format!("class {class}(WardenError")));
            assert!(defined, "{class} is not a WardenError in {path}");
        }
    }
}
