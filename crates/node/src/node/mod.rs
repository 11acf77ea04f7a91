//! The node itself: start-up checks, intake of runs from the server, the trust chain, the run,
//! sealing, delivery with a spool, reconciliation after a crash, and the audit trail.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite;
use warden_api::{self as api, RunState};
use warden_audit::{AuditLog, Event as AuditEvent, Outcome as AuditOutcome, Record};
use warden_policy::Requester;
use warden_registry::{Client as RegistryClient, ClientOptions, DockerConfig, Platform};
use warden_runtime::{DockerEngine, FailureReason, Outcome, RunSpec};
use zeroize::Zeroizing;

use crate::admission::{Admitted, Gate, GateError, Rejection};
use crate::config::Config;
use crate::orgs::{self, OrgKeys};
use crate::proxy::{Proxy, ProxyDeps, ProxyLimits, RunScope};
use crate::server::{NodeIdentity, ServerClient, ServerError};
use crate::slots::RunSlot;
use crate::spool::{Final, Phase, RunRecord, Spool, SpoolError};

/// Longest reason sent to the server (its limit is 2000 characters).
const MAX_REASON_CHARS: usize = 1900;
/// How much of an algorithm's log goes into a failure reason.
const REASON_LOG_LINES: usize = 5;
/// Delivery retry period while results wait in the spool.
const DELIVERY_EVERY: Duration = Duration::from_secs(2);
/// How often a shutting-down node looks whether its runs have finished.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// Why the node refused to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error("cannot read {what} {path}: {message}")]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the audit log cannot be opened: {0}")]
    Audit(#[from] warden_audit::AuditError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("the container engine is not usable: {0}")]
    Engine(#[from] warden_runtime::EngineError),
    #[error("isolation self-check failed, the node will not run algorithms: {0}")]
    Isolation(#[from] warden_runtime::IsolationError),
    #[error("registry client: {0}")]
    Registry(#[from] warden_registry::RegistryError),
    #[error("the server refused this node: {0}; check server.api_key_file")]
    Login(ServerError),
    #[error("{0}")]
    Config(String),
}

/// Where the time went between receiving a run and starting its container (for benches and
/// operators; see [`Node::timings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTiming {
    pub run_id: i64,
    /// From the event to the call that creates the container.
    pub to_container: Duration,
    /// Steps 2 to 6: pre-check, resolution, signatures, decision.
    pub admission: Duration,
    /// Step 7: pull by digest and pin.
    pub pin: Duration,
}

/// How many timings are kept.
const MAX_TIMINGS: usize = 1000;

/// What the node knows about its collaboration (re-read for every run).
#[derive(Debug, Clone)]
struct Collab {
    name: String,
    encrypted: bool,
    members: Vec<i64>,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("identity", &self.inner.me)
            .field("label", &self.inner.label)
            .finish_non_exhaustive()
    }
}

struct Shared {
    config: Config,
    server: ServerClient,
    me: NodeIdentity,
    label: String,
    gate: Gate,
    registry: RegistryClient,
    engine: DockerEngine,
    keys: Arc<OrgKeys>,
    secret: Arc<warden_seal::SecretKey>,
    spool: Spool,
    audit: Mutex<AuditLog>,
    audit_path: PathBuf,
    slots: Arc<Semaphore>,
    active: Mutex<HashSet<i64>>,
    /// Set at shutdown: no run starts any more.
    draining: std::sync::atomic::AtomicBool,
    timings: Mutex<std::collections::VecDeque<RunTiming>>,
}

fn read_file(what: &'static str, path: &Path, cap: u64) -> Result<Zeroizing<Vec<u8>>, StartError> {
    use std::io::Read as _;
    let err = |message: String| StartError::File {
        what,
        path: path.to_path_buf(),
        message,
    };
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut out = Zeroizing::new(Vec::new());
    f.take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| err(e.to_string()))?;
    if out.len() as u64 > cap {
        return Err(err(format!(
            "larger than {cap} bytes; is it the right file?"
        )));
    }
    Ok(out)
}

fn trim_secret(bytes: &[u8]) -> &[u8] {
    let mut b = bytes;
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

/// The container label of a node: the configured name, or one derived from the spool path.
fn node_label(config: &Config, spool: &Spool) -> String {
    config.node.name.clone().unwrap_or_else(|| {
        let h = Sha256::digest(spool.root().as_os_str().as_encoded_bytes());
        format!("node-{}", &hex::encode(h)[..16])
    })
}

fn sanitize(reason: &str) -> String {
    let clean: String = reason
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let clean = clean.trim();
    let clean = if clean.is_empty() {
        "no reason given"
    } else {
        clean
    };
    clean.chars().take(MAX_REASON_CHARS).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn registry_options(config: &Config) -> Result<ClientOptions, StartError> {
    let credentials = match &config.registry.docker_config {
        Some(p) => DockerConfig::load(p)?,
        None => DockerConfig::anonymous(),
    };
    let platform = match config.registry.platform.as_deref() {
        None => Platform::default(),
        Some(p) => {
            let mut parts = p.split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => {
                    Platform {
                        os: os.to_owned(),
                        architecture: arch.to_owned(),
                        variant: variant.map(str::to_owned),
                    }
                }
                _ => {
                    return Err(StartError::Config(format!(
                        "registry.platform `{p}` is not `os/arch[/variant]`, e.g. linux/amd64"
                    )));
                }
            }
        }
    };
    Ok(ClientOptions {
        credentials,
        insecure_registries: config.registry.insecure.clone(),
        platform,
        ..ClientOptions::default()
    })
}

impl Node {
    /// Everything the node checks before it takes any run: the policy (refused when bad), the
    /// keys, the audit log, the spool, the engine and isolation (the probe), the registry
    /// client, and the login at the server (retried with backoff while the server is down).
    pub async fn start(config: Config) -> Result<Node, StartError> {
        let gate = Gate::load(&config.node.policy)?;
        let secret_pem = read_file(
            "the organization secret key",
            &config.node.secret_key,
            64 << 10,
        )?;
        let secret = std::str::from_utf8(&secret_pem)
            .map_err(|_| StartError::File {
                what: "the organization secret key",
                path: config.node.secret_key.clone(),
                message: "not PEM text".into(),
            })
            .and_then(|pem| {
                warden_seal::SecretKey::from_pem(pem).map_err(|e| StartError::File {
                    what: "the organization secret key",
                    path: config.node.secret_key.clone(),
                    message: e.to_string(),
                })
            })?;
        let api_key = match (&config.server.api_key, &config.server.api_key_file) {
            (Some(k), _) => Zeroizing::new(k.clone()),
            (None, Some(p)) => {
                let raw = read_file("the API key file", p, 4096)?;
                Zeroizing::new(String::from_utf8_lossy(trim_secret(&raw)).into_owned())
            }
            (None, None) => {
                return Err(StartError::Config("no API key configured".into()));
            }
        };
        let signing_pem = read_file("the audit signing key", &config.audit.signing_key, 64 << 10)?;
        let password = read_file("the audit key password", &config.audit.password_file, 4096)?;
        let signing_pem = std::str::from_utf8(&signing_pem).map_err(|_| StartError::File {
            what: "the audit signing key",
            path: config.audit.signing_key.clone(),
            message: "not PEM text".into(),
        })?;
        let signer =
            warden_trust::SigningKey::from_encrypted_pem(signing_pem, trim_secret(&password))
                .map_err(|e| StartError::File {
                    what: "the audit signing key",
                    path: config.audit.signing_key.clone(),
                    message: format!("{e}; check audit.password_file"),
                })?;
        std::fs::create_dir_all(&config.audit.dir).map_err(|e| StartError::File {
            what: "the audit directory",
            path: config.audit.dir.clone(),
            message: e.to_string(),
        })?;
        let audit_path = config.audit.dir.join("audit.log");
        let audit = AuditLog::open(&audit_path, signer, config.audit.checkpoint_every)?;
        tracing::info!(path = %audit_path.display(), entries = audit.entries(), "audit log open");

        let spool = Spool::open(&config.node.spool_dir)?;
        let label = node_label(&config, &spool);

        let engine = DockerEngine::connect().await?;
        let probe_bin = read_file("the isolation probe", &config.node.probe, 64 << 20)?;
        let probe = warden_runtime::import_probe(&engine, &probe_bin).await?;
        let probe_dir = spool.root().join("probe");
        std::fs::create_dir_all(&probe_dir).map_err(|e| StartError::File {
            what: "the probe directory",
            path: probe_dir.clone(),
            message: e.to_string(),
        })?;
        std::fs::set_permissions(&probe_dir, std::fs::Permissions::from_mode(0o755)).ok();
        warden_runtime::self_check(
            &engine,
            &probe,
            &format!("{label}-probe"),
            &probe_dir,
            &config.limits.runtime(),
        )
        .await?;

        let registry = RegistryClient::new(registry_options(&config)?)?;
        let server = ServerClient::new(&config.server.url, api_key).map_err(StartError::Login)?;
        let me = login_with_backoff(&server, config.server.max_backoff_secs).await?;
        tracing::info!(node = me.node_id, organization = me.organization_id, collaboration = me.collaboration_id, %label, "node logged in");
        let concurrent = config.limits.concurrent_runs as usize;
        Ok(Node {
            inner: Arc::new(Shared {
                keys: Arc::new(OrgKeys::new(config.organizations.clone())),
                config,
                server,
                me,
                label,
                gate,
                registry,
                engine,
                secret: Arc::new(secret),
                spool,
                audit: Mutex::new(audit),
                audit_path,
                slots: Arc::new(Semaphore::new(concurrent)),
                active: Mutex::new(HashSet::new()),
                draining: std::sync::atomic::AtomicBool::new(false),
                timings: Mutex::new(std::collections::VecDeque::new()),
            }),
        })
    }

    pub fn identity(&self) -> NodeIdentity {
        self.inner.me
    }

    /// The path of the node's audit log.
    pub fn audit_path(&self) -> &Path {
        &self.inner.audit_path
    }

    /// The most recent runs' timings, oldest first.
    pub fn timings(&self) -> Vec<RunTiming> {
        let t = self.inner.timings.lock().unwrap_or_else(|p| p.into_inner());
        t.iter().copied().collect()
    }

    /// The label value on this node's containers.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Serves until `shutdown` resolves: recovers what a previous process left, then takes
    /// runs from the server's event push (with a poll fallback), reconnecting with backoff.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        self.recover().await;
        let deliverer = {
            let node = self.clone();
            tokio::spawn(async move {
                let sweep_every = Duration::from_secs(node.inner.config.server.poll_secs);
                let mut last_sweep = Instant::now();
                loop {
                    tokio::time::sleep(DELIVERY_EVERY).await;
                    node.deliver_pending().await;
                    // Runs postponed by a passing failure are taken again even while the push
                    // session stays up.
                    if last_sweep.elapsed() >= sweep_every {
                        last_sweep = Instant::now();
                        match node.inner.server.pending_runs().await {
                            Ok(runs) => runs.into_iter().for_each(|r| node.on_event(r, None)),
                            Err(e) => tracing::debug!(error = %e, "pending-run sweep failed"),
                        }
                    }
                }
            })
        };
        tokio::select! {
            _ = shutdown => {}
            _ = self.intake() => {}
        }
        self.drain(self.inner.config.node.shutdown_grace()).await;
        deliverer.abort();
        self.deliver_pending().await;
        // Sign what was appended since the last checkpoint, so the whole log is covered.
        let mut log = self.inner.audit.lock().unwrap_or_else(|p| p.into_inner());
        if log.uncovered() > 0 {
            if let Err(e) = log.checkpoint() {
                tracing::error!(error = %e, "cannot write the closing audit checkpoint");
            }
        }
    }

    /// Lets the runs in flight finish, and their outcomes be delivered, for up to `grace`; no run
    /// starts meanwhile (queued ones stay pending at the server for the next start). What is
    /// still running after `grace` is settled by [`Node::recover`] at the next start.
    async fn drain(&self, grace: Duration) {
        use std::sync::atomic::Ordering;
        self.inner.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        let in_flight = || {
            self.inner
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
        };
        let n = in_flight();
        if n > 0 {
            tracing::info!(
                runs = n,
                grace_secs = grace.as_secs(),
                "shutting down: waiting for the runs in flight"
            );
        }
        loop {
            let n = in_flight();
            if n == 0 {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    runs = n,
                    "shutting down with runs in flight; they are settled at the next start"
                );
                return;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// After a restart: settle leftover containers (collect finished outputs, fail the rest),
    /// finish or fail every run the spool knows, remove leftover working directories, deliver.
    pub async fn recover(&self) {
        let s = &self.inner;
        let reports = match warden_runtime::reconcile(
            &s.engine,
            &s.label,
            warden_runtime::DEFAULT_LOG_TAIL_BYTES,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot list this node's containers to reconcile");
                Vec::new()
            }
        };
        let mut by_run: BTreeMap<i64, warden_runtime::RunReport> = BTreeMap::new();
        for r in reports {
            if let Some(id) = r.run_id.strip_prefix("run-").and_then(|i| i.parse().ok()) {
                by_run.insert(id, r);
            }
        }
        let records = match s.spool.records() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool");
                Vec::new()
            }
        };
        for mut record in records {
            match record.phase {
                Phase::Finished => {}
                Phase::Running => {
                    let outcome = match by_run.remove(&record.run_id) {
                        Some(report) => report_outcome(&report),
                        None => Err("node restarted while the run was executing".to_owned()),
                    };
                    self.finish(&mut record, outcome, None).await;
                }
                Phase::Received | Phase::Admitted => {
                    self.finish(
                        &mut record,
                        Err("node restarted before the run started".to_owned()),
                        None,
                    )
                    .await;
                }
            }
        }
        for (run, report) in by_run {
            tracing::warn!(run, outcome = ?report.reason().map(ToString::to_string), "a container without a spool record was removed");
        }
        for run in s.spool.work_runs() {
            s.spool.remove_work(run);
        }
        self.deliver_pending().await;
    }

    /// Takes events from the server until the process ends.
    async fn intake(&self) {
        let s = &self.inner;
        let max = Duration::from_secs(s.config.server.max_backoff_secs);
        let mut backoff = Duration::from_millis(250);
        let mut after = s.spool.cursor().unwrap_or(0);
        loop {
            // Catch up: every pending run of this node, whatever the cursor says.
            match self.catch_up(&mut after).await {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(e) => tracing::warn!(error = %e, "cannot reach the server"),
            }
            match self.push_session(&mut after).await {
                Ok(()) => backoff = Duration::from_millis(250),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "event push unavailable");
                    let poll = Duration::from_secs(s.config.server.poll_secs);
                    tokio::time::sleep(backoff.min(poll)).await;
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    }

    /// Polls the events after the cursor and lists pending runs, handling each.
    async fn catch_up(&self, after: &mut i64) -> Result<(), ServerError> {
        let s = &self.inner;
        loop {
            let events = s.server.events(*after).await?;
            let n = events.len();
            for e in events {
                self.on_event(e.run_id, Some(e.image.clone()));
                *after = e.id;
            }
            if n < 100 {
                break;
            }
        }
        if let Err(e) = s.spool.set_cursor(*after) {
            tracing::error!(error = %e, "cannot save the event cursor");
        }
        for run in s.server.pending_runs().await? {
            self.on_event(run, None);
        }
        Ok(())
    }

    /// One WebSocket session: returns when it ends.
    async fn push_session(&self, after: &mut i64) -> Result<(), String> {
        let s = &self.inner;
        let (url, token) = s
            .server
            .event_socket(*after)
            .await
            .map_err(|e| e.to_string())?;
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
            .map_err(|e| e.to_string())?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token is not a valid header".to_owned())?;
        req.headers_mut().insert("authorization", value);
        let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(ok) => ok,
            Err(tungstenite::Error::Http(resp)) if resp.status().as_u16() == 401 => {
                s.server.forget_token().await;
                return Err("the server refused the node token; logging in again".into());
            }
            Err(e) => return Err(e.to_string()),
        };
        tracing::info!("event push connected");
        while let Some(msg) = ws.next().await {
            match msg.map_err(|e| e.to_string())? {
                tungstenite::Message::Text(text) => {
                    let event: api::Event = serde_json::from_str(text.as_str())
                        .map_err(|e| format!("malformed event: {e}"))?;
                    self.on_event(event.run_id, Some(event.image.clone()));
                    *after = event.id;
                    if let Err(e) = s.spool.set_cursor(*after) {
                        tracing::error!(error = %e, "cannot save the event cursor");
                    }
                }
                tungstenite::Message::Close(_) => break,
                _ => {}
            }
        }
        Err("the server closed the event push".into())
    }

    /// Starts handling a run unless it is being handled or already known.
    fn on_event(&self, run_id: i64, event_image: Option<String>) {
        let s = &self.inner;
        if s.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        {
            let mut active = s.active.lock().unwrap_or_else(|p| p.into_inner());
            if active.contains(&run_id) || s.spool.has(run_id) {
                return;
            }
            active.insert(run_id);
        }
        let node = self.clone();
        let received = Instant::now();
        tokio::spawn(async move {
            let slot = RunSlot::acquire(&node.inner.slots).await;
            // A run that got its slot only after shutdown began stays pending for the next start.
            if !node
                .inner
                .draining
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                node.handle(run_id, event_image, received, slot).await;
            }
            node.inner
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&run_id);
        });
    }

    fn audit(&self, record: Record) {
        let mut log = self.inner.audit.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.append(record) {
            tracing::error!(error = %e, "cannot append to the audit log");
        }
    }

    async fn collaboration(&self) -> Result<Collab, ServerError> {
        let c = self
            .inner
            .server
            .collaboration(self.inner.me.collaboration_id)
            .await?;
        Ok(Collab {
            name: c.name,
            encrypted: c.encrypted,
            members: c.organizations,
        })
    }

    /// One run, from the event to the spooled outcome.
    async fn handle(
        &self,
        run_id: i64,
        event_image: Option<String>,
        received: Instant,
        slot: RunSlot,
    ) {
        let s = &self.inner;
        let run = match s.server.run(run_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(run = run_id, error = %e, "cannot read the run; it is retried on the next catch-up");
                return;
            }
        };
        if run.state != RunState::Pending {
            return;
        }
        if run.organization_id != s.me.organization_id
            || run.collaboration_id != s.me.collaboration_id
        {
            tracing::warn!(
                run = run_id,
                "the server sent a run of another organization; ignored"
            );
            return;
        }
        // Acknowledge delivery without waiting: the run's state is what matters.
        let server = s.server.clone();
        tokio::spawn(async move {
            if let Err(e) = server.ack(run_id).await {
                tracing::debug!(run = run_id, error = %e, "ack failed");
            }
        });
        let task = match s.server.task(run.task_id).await {
            Ok(t) => t.task,
            Err(e) => {
                tracing::warn!(run = run_id, error = %e, "cannot read the task");
                return;
            }
        };
        let mut record = RunRecord::received(
            run_id,
            task.id,
            run.collaboration_id,
            task.organization_id,
            &task.image,
        );
        if let Err(e) = s.spool.save(&record) {
            tracing::error!(run = run_id, error = %e, "cannot record the run; not taking it");
            return;
        }
        let mut audit = Record {
            time: OffsetDateTime::now_utc(),
            event: AuditEvent::Decision,
            run_id: Some(run_id),
            task_id: Some(task.id),
            organization: None,
            // The requesting user's name as the server states it (for a subtask: the root
            // task's creator); the id only when an older server sends no name.
            user: task
                .creator_username
                .clone()
                .or_else(|| task.creator_user_id.map(|u| format!("user:{u}"))),
            collaboration: None,
            function: None,
            image: task.image.clone(),
            digest: None,
            rule: None,
            signers: Vec::new(),
            input_sha256: None,
            output_sha256: None,
            outcome: AuditOutcome::Rejected,
            reason: None,
        };
        let admission_started = Instant::now();
        let admitted = self
            .admit(&mut record, &mut audit, event_image.as_deref(), &task)
            .await;
        let mut timing = RunTiming {
            run_id,
            to_container: Duration::ZERO,
            admission: admission_started.elapsed(),
            pin: Duration::ZERO,
        };
        match admitted {
            Ok((admitted, input, collab)) => {
                let run = Admission {
                    admitted,
                    input,
                    collab,
                    received,
                    slot,
                };
                self.execute(record, audit, run, &mut timing).await;
            }
            Err(Refused::Rejected(reason)) => {
                audit.reason = Some(reason.clone());
                self.audit(audit);
                tracing::info!(run = run_id, %reason, "run rejected");
                record.phase = Phase::Finished;
                record.outcome = Some(Final::Rejected {
                    reason: sanitize(&reason),
                });
                self.save_and_deliver(record).await;
            }
            Err(Refused::Transient(why)) => {
                // Nothing was decided; forget the run so that the next catch-up retries it.
                tracing::warn!(run = run_id, %why, "run postponed");
                let _ = s.spool.remove(run_id);
            }
        }
    }

    /// Steps 1 to 6 of the trust chain for one run; the server's word is only a request.
    async fn admit(
        &self,
        record: &mut RunRecord,
        audit: &mut Record,
        event_image: Option<&str>,
        task: &api::Task,
    ) -> Result<(Admitted, Vec<u8>, Collab), Refused> {
        let s = &self.inner;
        consistent_image(event_image, &task.image).map_err(Refused::Rejected)?;
        // The three reads are independent: make them at once.
        let (collab, requester_org, sealed) = tokio::join!(
            self.collaboration(),
            s.keys.get(&s.server, task.organization_id),
            s.server.input(record.run_id),
        );
        let collab = collab.map_err(Refused::server)?;
        audit.collaboration = Some(collab.name.clone());
        let requester_org = requester_org.map_err(|e| {
            if e.is_transient() {
                Refused::Transient(e.to_string())
            } else {
                Refused::Rejected(format!(
                    "the requesting organization cannot receive a result: {e}"
                ))
            }
        })?;
        audit.organization = Some(requester_org.name.clone());
        record.result_key = collab.encrypted.then(|| requester_org.key.to_base64());
        let sealed = sealed.map_err(Refused::server)?;
        audit.input_sha256 = Some(sha256_hex(&sealed));
        let input = if collab.encrypted {
            warden_seal::open(
                &s.secret,
                &orgs::input_context(record.collaboration_id, s.me.organization_id),
                &sealed,
            )
            .map_err(|e| {
                Refused::Rejected(format!(
                    "the input does not open with this organization's key: {e}"
                ))
            })?
        } else {
            sealed
        };
        let function = serde_json::from_slice::<serde_json::Value>(&input)
            .ok()
            .and_then(|v| {
                v.get("function")
                    .and_then(|f| f.as_str())
                    .map(str::to_owned)
            });
        audit.function = function.clone();
        let requester = Requester {
            organization: Some(requester_org.name.clone()),
            user: task.creator_username.clone(),
            collaboration: Some(collab.name.clone()),
            function,
        };
        let checked = s
            .gate
            .precheck(&task.image, &requester)
            .map_err(|r| rejected(audit, r))?;
        audit.image = checked.reference().to_string();
        let admitted = s
            .gate
            .admit(&s.registry, checked)
            .await
            .map_err(|r| rejected(audit, r))?;
        audit.digest = Some(admitted.digest().to_string());
        audit.rule = Some(admitted.rule().name());
        audit.signers = admitted
            .evidence()
            .signers
            .iter()
            .map(ToString::to_string)
            .collect();
        audit.outcome = AuditOutcome::Admitted;
        audit.reason = None;
        self.audit(audit.clone());
        tracing::info!(run = record.run_id, digest = %admitted.digest(), rule = %admitted.rule().name(), "run admitted");
        record.digest = Some(admitted.digest().to_string());
        record.phase = Phase::Admitted;
        let _ = s.spool.save(record);
        Ok((admitted, input, collab))
    }

    /// Steps 7 and 8: report, pin, run with the proxy, seal, spool.
    async fn execute(
        &self,
        mut record: RunRecord,
        audit: Record,
        run: Admission,
        timing: &mut RunTiming,
    ) {
        let Admission {
            admitted,
            input,
            collab,
            received,
            slot,
        } = run;
        let s = &self.inner;
        let run_id = record.run_id;
        let mut run_audit = audit;
        run_audit.event = AuditEvent::Run;
        run_audit.time = OffsetDateTime::now_utc();
        let update = api::UpdateRun {
            state: RunState::Admitted,
            reason: None,
            digest: Some(admitted.digest().to_string()),
        };
        // Report the admission while pulling: both must succeed before the run starts.
        let pin_started = Instant::now();
        let (reported, pinned) = tokio::join!(s.server.update(run_id, &update), async {
            let p = crate::admission::pin(&s.engine, &admitted).await;
            (p, pin_started.elapsed())
        });
        let (pinned, pin_time) = pinned;
        timing.pin = pin_time;
        if let Err(e) = reported {
            tracing::warn!(run = run_id, error = %e, "cannot report admitted");
            let outcome = Err(format!("cannot report the admission to the server: {e}"));
            return self.finish_audited(&mut record, outcome, run_audit).await;
        }
        let pinned = match pinned {
            Ok(p) => p,
            Err(e) => {
                let outcome = Err(format!("the admitted image could not be pinned: {e}"));
                return self.finish_audited(&mut record, outcome, run_audit).await;
            }
        };
        // Recorded before it is reported: after a crash, reconciliation looks for the container.
        record.phase = Phase::Running;
        let _ = s.spool.save(&record);
        let outcome = self
            .run_container(
                &record,
                &admitted,
                &pinned,
                &input,
                &collab,
                (received, timing, &slot),
            )
            .await;
        self.finish_audited(&mut record, outcome, run_audit).await;
    }

    async fn run_container(
        &self,
        record: &RunRecord,
        admitted: &Admitted,
        pinned: &warden_runtime::PinnedImage,
        input: &[u8],
        collab: &Collab,
        (received, timing, slot): (Instant, &mut RunTiming, &RunSlot),
    ) -> Result<Vec<u8>, String> {
        let s = &self.inner;
        let run_id = record.run_id;
        let running = api::UpdateRun {
            state: RunState::Running,
            reason: None,
            digest: None,
        };
        // Report the start while the directories and the proxy are prepared.
        let (reported, prepared) = tokio::join!(
            s.server.update(run_id, &running),
            self.prepare(record, admitted, input, collab, slot)
        );
        let (proxy, spec) = match prepared {
            Ok(p) => p,
            Err(e) => {
                s.spool.remove_work(run_id);
                return Err(e);
            }
        };
        if let Err(e) = reported {
            proxy.stop().await;
            s.spool.remove_work(run_id);
            return Err(format!("cannot report the start to the server: {e}"));
        }
        timing.to_container = received.elapsed();
        {
            let mut t = s.timings.lock().unwrap_or_else(|p| p.into_inner());
            if t.len() == MAX_TIMINGS {
                t.pop_front();
            }
            t.push_back(*timing);
        }
        tracing::info!(
            run = run_id,
            to_container_ms = timing.to_container.as_secs_f64() * 1e3,
            admission_ms = timing.admission.as_secs_f64() * 1e3,
            pin_ms = timing.pin.as_secs_f64() * 1e3,
            "starting the container"
        );
        let report = warden_runtime::run_pinned(&s.engine, pinned, &spec).await;
        proxy.stop().await;
        s.spool.remove_work(run_id);
        report_outcome(&report)
    }

    /// The run's directories, input file, proxy and container spec.
    async fn prepare(
        &self,
        record: &RunRecord,
        admitted: &Admitted,
        input: &[u8],
        collab: &Collab,
        slot: &RunSlot,
    ) -> Result<(Proxy, RunSpec), String> {
        let s = &self.inner;
        let run_id = record.run_id;
        let work = s
            .spool
            .work(run_id)
            .map_err(|e| format!("cannot prepare the run's directories: {e}"))?;
        let input_file = work.input.join("input");
        std::fs::write(&input_file, input)
            .and_then(|()| {
                std::fs::set_permissions(&input_file, std::fs::Permissions::from_mode(0o644))
            })
            .map_err(|e| format!("cannot write the input: {e}"))?;
        let limits = &s.config.limits;
        let scope = RunScope {
            run_id,
            task_id: record.task_id,
            collaboration_id: record.collaboration_id,
            organization_id: s.me.organization_id,
            encrypted: collab.encrypted,
            pinned_image: admitted.pinned_reference(),
            members: collab.members.clone(),
        };
        let deps = ProxyDeps {
            server: s.server.clone(),
            run: Arc::new(tokio::sync::OnceCell::new()),
            keys: s.keys.clone(),
            secret: s.secret.clone(),
            limits: ProxyLimits {
                request_bytes: limits.proxy_request_bytes,
                result_bytes: limits.proxy_result_bytes,
                requests_per_second: limits.proxy_requests_per_second,
                max_subtasks: limits.max_subtasks,
            },
            slot: slot.clone(),
        };
        let proxy = Proxy::start(&work.proxy, scope, deps)
            .await
            .map_err(|e| e.to_string())?;
        let mut spec = RunSpec::new(
            format!("run-{run_id}"),
            s.label.clone(),
            &work.input,
            &work.output,
        );
        spec.proxy_socket_dir = Some(work.proxy.clone());
        spec.limits = limits.runtime();
        spec.timeout = limits.timeout();
        spec.data_sources = s
            .config
            .data
            .iter()
            .map(|(name, path)| (name.clone(), path.clone()))
            .collect();
        spec.env = BTreeMap::from([
            ("WARDEN_TOKEN".to_owned(), proxy.token().to_owned()),
            ("WARDEN_RUN_ID".to_owned(), run_id.to_string()),
            ("WARDEN_TASK_ID".to_owned(), record.task_id.to_string()),
            (
                "WARDEN_ORGANIZATION_ID".to_owned(),
                s.me.organization_id.to_string(),
            ),
            (
                "WARDEN_COLLABORATION_ID".to_owned(),
                record.collaboration_id.to_string(),
            ),
        ]);
        Ok((proxy, spec))
    }

    async fn finish_audited(
        &self,
        record: &mut RunRecord,
        outcome: Result<Vec<u8>, String>,
        mut audit: Record,
    ) {
        self.finish(record, outcome, Some(&mut audit)).await;
        audit.time = OffsetDateTime::now_utc();
        self.audit(audit);
    }

    /// Seals a completed output for the task's organization, spools the outcome, delivers.
    async fn finish(
        &self,
        record: &mut RunRecord,
        outcome: Result<Vec<u8>, String>,
        audit: Option<&mut Record>,
    ) {
        let s = &self.inner;
        let (final_, output_hash) = match outcome {
            Ok(output) => match self.seal_result(record, &output).await {
                Ok(sealed) => {
                    let hash = sha256_hex(&sealed);
                    match s.spool.put_result(record.run_id, &sealed) {
                        Ok(()) => (Final::Completed, Some(hash)),
                        Err(e) => (
                            Final::Failed {
                                reason: format!("cannot spool the result: {e}"),
                            },
                            None,
                        ),
                    }
                }
                Err(reason) => (Final::Failed { reason }, None),
            },
            Err(reason) => (
                Final::Failed {
                    reason: sanitize(&reason),
                },
                None,
            ),
        };
        if let Some(a) = audit {
            a.output_sha256 = output_hash;
            match &final_ {
                Final::Completed => {
                    a.outcome = AuditOutcome::Completed;
                    a.reason = None;
                }
                Final::Failed { reason } | Final::Rejected { reason } => {
                    a.outcome = AuditOutcome::Failed;
                    a.reason = Some(reason.clone());
                }
            }
        }
        tracing::info!(run = record.run_id, outcome = ?final_, "run finished");
        record.phase = Phase::Finished;
        record.outcome = Some(final_);
        self.save_and_deliver(record.clone()).await;
    }

    /// Seals for the key recorded (and pin-checked) at admission: no server needed.
    async fn seal_result(&self, record: &RunRecord, output: &[u8]) -> Result<Vec<u8>, String> {
        let s = &self.inner;
        let Some(key) = &record.result_key else {
            return Ok(output.to_vec());
        };
        let key = warden_seal::PublicKey::from_base64(key)
            .map_err(|e| format!("cannot seal the result: the recorded key is malformed: {e}"))?;
        if !s.keys.is_pinned(&key) {
            return Err(
                "cannot seal the result: the requesting organization's key is no longer pinned in this node's configuration"
                    .into(),
            );
        }
        warden_seal::seal(
            &key,
            &orgs::result_context(record.collaboration_id, record.run_id),
            output,
        )
        .map_err(|e| format!("cannot seal the result: {e}"))
    }

    async fn save_and_deliver(&self, record: RunRecord) {
        if let Err(e) = self.inner.spool.save(&record) {
            tracing::error!(run = record.run_id, error = %e, "cannot spool the outcome");
        }
        if let Err(e) = self.deliver(&record).await {
            tracing::warn!(run = record.run_id, error = %e, "delivery postponed; the outcome stays in the spool");
        }
    }

    /// Delivers every finished run in the spool that is not being handled now.
    pub async fn deliver_pending(&self) {
        let s = &self.inner;
        let Ok(records) = s.spool.records() else {
            return;
        };
        for r in records {
            if r.phase != Phase::Finished {
                continue;
            }
            let busy = s
                .active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&r.run_id);
            if busy {
                continue;
            }
            if let Err(e) = self.deliver(&r).await {
                tracing::debug!(run = r.run_id, error = %e, "delivery postponed");
                if e.is_transient() {
                    return;
                }
            }
        }
    }

    /// Reports a finished run to the server (idempotent), then forgets it.
    async fn deliver(&self, record: &RunRecord) -> Result<(), ServerError> {
        let s = &self.inner;
        let Some(outcome) = &record.outcome else {
            return Ok(());
        };
        let run = s.server.run(record.run_id).await?;
        if run.state.is_final() {
            if !matches!(
                (outcome, run.state),
                (Final::Completed, RunState::Completed)
                    | (Final::Failed { .. }, RunState::Failed)
                    | (Final::Rejected { .. }, RunState::Rejected)
            ) {
                tracing::warn!(run = record.run_id, server_state = %run.state, ?outcome, "the server already holds another final state");
            }
            let _ = s.spool.remove(record.run_id);
            return Ok(());
        }
        let update = match outcome {
            Final::Completed => {
                if run.state != RunState::Running {
                    api::UpdateRun {
                        state: RunState::Failed,
                        reason: Some(
                            "the run completed but the server did not record it as running".into(),
                        ),
                        digest: None,
                    }
                } else {
                    if !run.has_result {
                        let sealed = s.spool.result(record.run_id).map_err(|e| {
                            ServerError::Client(format!("the spooled result is unreadable: {e}"))
                        })?;
                        s.server.put_result(record.run_id, &sealed).await?;
                    }
                    api::UpdateRun {
                        state: RunState::Completed,
                        reason: None,
                        digest: None,
                    }
                }
            }
            Final::Failed { reason } => api::UpdateRun {
                state: RunState::Failed,
                reason: Some(reason.clone()),
                digest: None,
            },
            Final::Rejected { reason } => {
                let state = if run.state.can_become(RunState::Rejected) {
                    RunState::Rejected
                } else {
                    RunState::Failed
                };
                api::UpdateRun {
                    state,
                    reason: Some(reason.clone()),
                    digest: None,
                }
            }
        };
        s.server.update(record.run_id, &update).await?;
        tracing::info!(run = record.run_id, state = %update.state, "outcome delivered");
        let _ = s.spool.remove(record.run_id);
        Ok(())
    }
}

/// An admitted run on its way to the container.
struct Admission {
    admitted: Admitted,
    input: Vec<u8>,
    collab: Collab,
    received: Instant,
    slot: RunSlot,
}

/// Why a run was not admitted.
enum Refused {
    /// A final decision: report `rejected` with this reason.
    Rejected(String),
    /// The server could not be reached; try again later.
    Transient(String),
}

impl Refused {
    fn server(e: ServerError) -> Refused {
        if e.is_transient() {
            Refused::Transient(e.to_string())
        } else {
            Refused::Rejected(format!("the server could not provide the run: {e}"))
        }
    }
}

fn rejected(audit: &mut Record, r: Rejection) -> Refused {
    audit.digest = r.evidence.digest.as_ref().map(ToString::to_string);
    audit.rule = r.rule.map(|id| id.name());
    audit.signers = r.evidence.signers.iter().map(ToString::to_string).collect();
    Refused::Rejected(format!("{} ({})", r.reason, r.stage.as_str()))
}

/// The server must name one image for a run: the event's and the task's must agree.
fn consistent_image(event_image: Option<&str>, task_image: &str) -> Result<(), String> {
    match event_image {
        Some(img) if img != task_image => Err(format!(
            "the server announced image `{img}` but the task names `{task_image}`; refusing an inconsistent request"
        )),
        _ => Ok(()),
    }
}

/// The outcome of a runtime report: the output, or a reason naming the cause (with the last
/// lines the algorithm logged for a non-zero exit).
fn report_outcome(report: &warden_runtime::RunReport) -> Result<Vec<u8>, String> {
    match &report.outcome {
        Outcome::Completed { output } => Ok(output.clone()),
        Outcome::Failed { reason } => {
            let mut text = reason.to_string();
            if matches!(reason, FailureReason::NonZeroExit(_)) {
                let logs = report.logs_text();
                let tail: Vec<&str> = logs.lines().rev().take(REASON_LOG_LINES).collect();
                if !tail.is_empty() {
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    text.push_str("; last log lines:\n");
                    text.push_str(&tail.join("\n"));
                }
            }
            Err(text)
        }
    }
}

async fn login_with_backoff(
    server: &ServerClient,
    max_secs: u64,
) -> Result<NodeIdentity, StartError> {
    let max = Duration::from_secs(max_secs);
    let mut backoff = Duration::from_millis(250);
    loop {
        match server.login().await {
            Ok(me) => return Ok(me),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "server unavailable at start");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max);
            }
            Err(e) => return Err(StartError::Login(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_and_the_task_must_name_the_same_image() {
        assert!(consistent_image(None, "r/a:1").is_ok());
        assert!(consistent_image(Some("r/a:1"), "r/a:1").is_ok());
        let e = consistent_image(Some("r/a:1"), "r/evil:1").unwrap_err();
        assert!(e.contains("r/evil:1") && e.contains("inconsistent"), "{e}");
    }

    #[test]
    fn reasons_are_clean_and_bounded() {
        assert_eq!(sanitize("  "), "no reason given");
        assert_eq!(sanitize("a\u{1b}[31mb\nc"), "a [31mb\nc");
        assert_eq!(
            sanitize(&"x".repeat(5000)).chars().count(),
            MAX_REASON_CHARS
        );
    }

    #[test]
    fn a_failed_exit_names_the_last_log_lines() {
        let report = warden_runtime::RunReport {
            run_id: "run-1".into(),
            outcome: Outcome::Failed {
                reason: FailureReason::NonZeroExit(3),
            },
            exit_code: Some(3),
            logs: b"one\ntwo\nthree\nfour\nfive\nsix\n".to_vec(),
            removed: true,
        };
        let reason = report_outcome(&report).unwrap_err();
        assert!(
            reason.starts_with("the algorithm exited with code 3"),
            "{reason}"
        );
        assert!(reason.ends_with("two\nthree\nfour\nfive\nsix"), "{reason}");
        assert!(!reason.contains("one"), "{reason}");
    }
}
