//! The node itself: start-up checks (here), intake of runs from the server (`intake`), the
//! trust chain with the input's binding (`admit`), the run and the sealing of its result
//! (`execute`), delivery with a spool and reconciliation after a crash (`deliver`), and the
//! audit trail.

mod admit;
mod airlock;
mod cancel;
mod deliver;
mod execute;
mod import;
mod inspect;
mod intake;
mod logs;
mod relay;
mod status;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use warden_audit::{AuditLog, Record};
use warden_registry::{Client as RegistryClient, ClientOptions, DockerConfig, Platform};
use warden_runtime::DockerEngine;
use zeroize::Zeroizing;

use crate::admission::{Gate, GateError};
use crate::airlock::Airlock;
use crate::approvals::ApprovedDigests;
use crate::budget::RunBudget;
use crate::config::Config;
use crate::orgs::OrgKeys;
use crate::replay::ReplayCache;
use crate::server::{NodeIdentity, ServerClient, ServerError};
use crate::spool::{Spool, SpoolError};

/// Longest reason sent to the server (its limit is 2000 characters).
const MAX_REASON_CHARS: usize = 1900;
/// Delivery retry period while results wait in the spool.
const DELIVERY_EVERY: Duration = Duration::from_secs(2);
/// How often a shutting-down node looks whether its runs have finished.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// The reason of a run failed because its audit record could not be written (Warden's own
/// words: the path and the error stay in the node's log).
pub const AUDIT_UNAVAILABLE: &str = "audit log unavailable";

/// An audit record could not be written; the node's log says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuditUnavailable;

/// The audit log and whether its last write failed (then it is reopened, which repairs a torn
/// tail, before the next append).
struct AuditState {
    log: Option<AuditLog>,
    failed: bool,
}

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
    #[error(
        "isolation self-check with the probe {} that `[node] probe` names failed, the node will \
         not run algorithms: {source}; fix that binary or remove `[node] probe` to run the probe \
         built into the node",
        path.display()
    )]
    ProbeOverride {
        path: PathBuf,
        source: warden_runtime::IsolationError,
    },
    #[error("registry client: {0}")]
    Registry(#[from] warden_registry::RegistryError),
    #[error("the server refused this node: {0}; check server.api_key_file")]
    Login(ServerError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Local(#[from] crate::local::LocalStartError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsStartError),
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
    /// An air-gapped node's imported images (`[registry] offline`), its only image source.
    images: Option<Arc<crate::images::Images>>,
    engine: DockerEngine,
    /// The vantage6 contract's loopback shim image (`[node] vantage6_shim`).
    vantage6_shim: Option<warden_runtime::SidecarImage>,
    keys: Arc<OrgKeys>,
    secret: Arc<warden_seal::SecretKey>,
    /// This organization's name: where `[organizations]` pins its own key.
    organization: String,
    /// What an input's sender is proven with.
    trusted: warden_seal::TrustedKeys,
    replay: ReplayCache,
    /// Runs counted against the allow rules' `runs_per_day`.
    budget: RunBudget,
    /// Results held for release (`release = "manual"`).
    airlock: Airlock,
    /// Digests the node's owner approved (`first_run = "approve"`).
    approved: ApprovedDigests,
    /// One release, refusal or approval at a time (and the sweep's refusals).
    airlock_lock: tokio::sync::Mutex<()>,
    /// The local socket, until shutdown.
    local: Mutex<Option<crate::local::LocalSocket>>,
    spool: Spool,
    audit: Mutex<AuditState>,
    audit_path: PathBuf,
    /// The audit signing key (PKCS#8 DER), to reopen the log after a failed write.
    audit_signer: Zeroizing<Vec<u8>>,
    slots: Arc<Semaphore>,
    /// Containers alive (`[limits] max_containers`): computing or waiting for subtasks.
    containers: Arc<Semaphore>,
    /// The memory budget (`[limits] memory_budget_bytes`) in KiB, when set.
    memory: Option<Arc<Semaphore>>,
    active: Mutex<HashSet<i64>>,
    /// Of `active`, the runs still waiting for a run slot.
    queued: Mutex<HashSet<i64>>,
    /// Runs the server cancelled while this process handles them.
    cancels: cancel::Cancels,
    /// The WebSocket event push is connected.
    push_connected: std::sync::atomic::AtomicBool,
    /// Unix seconds: when this process started, and when its isolation self-check passed.
    started_at: i64,
    self_check_at: i64,
    /// Set at shutdown: no run starts any more.
    draining: std::sync::atomic::AtomicBool,
    timings: Mutex<std::collections::VecDeque<RunTiming>>,
    /// The figures `[metrics] listen` serves.
    pub(crate) metrics: crate::metrics::Metrics,
    /// The metrics listener (its bound address and task), until shutdown.
    metrics_listener: Mutex<Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>>,
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
        let started_at = OffsetDateTime::now_utc().unix_timestamp();
        let gate = Gate::load(&config.node.policy)?
            .with_stores(
                crate::stores::Stores::load(&config.stores, &config.node.spool_dir.join("stores"))
                    .map_err(StartError::Config)?,
            )
            .map_err(StartError::Config)?
            .offline(config.registry.offline);
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
        let audit_signer = signer.to_pkcs8_der().map_err(|e| StartError::File {
            what: "the audit signing key",
            path: config.audit.signing_key.clone(),
            message: e.to_string(),
        })?;
        let audit = AuditLog::open(&audit_path, signer, config.audit.checkpoint_every)?;
        tracing::info!(path = %audit_path.display(), entries = audit.entries(), "audit log open");

        let organization = config
            .organization_named_for(&secret.public_key())
            .map(str::to_owned)
            .ok_or_else(|| {
                StartError::Config(format!(
                    "the organization's own key (fingerprint {}, {}) is not pinned under \
                     [organizations]; add `<your organization's name> = \"{}\"`: the node \
                     takes its organization's name from there",
                    secret.public_key().fingerprint(),
                    config.node.secret_key.display(),
                    secret.public_key().fingerprint()
                ))
            })?;
        let trusted = config.trusted_keys().map_err(StartError::Config)?;
        if !config.encryption.require {
            tracing::warn!(
                "[encryption] require = false: runs take plaintext inputs whenever the server says \
                 their collaboration does not encrypt; the server's word decides"
            );
        }
        if trusted.certifiers.is_empty() {
            tracing::warn!(
                "no [certifiers] pinned: no researcher's sealed input can be proven, only \
                 subtasks sealed by pinned organizations' nodes"
            );
        }

        let spool = Spool::open(&config.node.spool_dir)?;
        let label = node_label(&config, &spool);
        let replay = ReplayCache::open(
            spool.root(),
            config.encryption.max_input_age_secs,
            OffsetDateTime::now_utc().unix_timestamp(),
        )?;
        let budget = RunBudget::open(spool.root(), OffsetDateTime::now_utc().unix_timestamp())?;
        let airlock = Airlock::open(spool.root())?;
        let approved = ApprovedDigests::open(spool.root())?;

        let engine = DockerEngine::connect().await?;
        let probe_bin = match &config.node.probe {
            Some(path) => std::borrow::Cow::Owned(
                read_file("the isolation probe ([node] probe)", path, 64 << 20)?.to_vec(),
            ),
            None => std::borrow::Cow::Borrowed(crate::EMBEDDED_PROBE),
        };
        let probe_failed = |source| match &config.node.probe {
            Some(path) => StartError::ProbeOverride {
                path: path.clone(),
                source,
            },
            None => StartError::Isolation(source),
        };
        let probe = warden_runtime::import_probe(&engine, &probe_bin)
            .await
            .map_err(probe_failed)?;
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
        .await
        .map_err(probe_failed)?;

        // The vantage6 contract's shim, imported once; without it such runs fail closed.
        let vantage6_shim = match &config.node.vantage6_shim {
            None => None,
            Some(path) => {
                let bin = read_file("the vantage6 shim ([node] vantage6_shim)", path, 64 << 20)?;
                Some(
                    warden_runtime::import_sidecar(&engine, "v6shim", &bin)
                        .await
                        .map_err(|message| StartError::File {
                            what: "the vantage6 shim ([node] vantage6_shim)",
                            path: path.clone(),
                            message,
                        })?,
                )
            }
        };

        let self_check_at = OffsetDateTime::now_utc().unix_timestamp();
        let registry = RegistryClient::new(registry_options(&config)?)?;
        let images = if config.registry.offline {
            let dir = config.node.spool_dir.join("images");
            let images = crate::images::Images::open(&dir, registry_options(&config)?)?;
            tracing::info!(images = %dir.display(), "offline: only imported images are admitted");
            Some(Arc::new(images))
        } else {
            None
        };
        let server = ServerClient::new(&config.server.url, api_key).map_err(StartError::Login)?;
        let me = login_with_backoff(&server, config.server.max_backoff_secs).await?;
        tracing::info!(node = me.node_id, organization = me.organization_id, collaboration = me.collaboration_id, %label, "node logged in");
        match server.organization(me.organization_id).await {
            Ok(o) if o.name != organization => tracing::warn!(
                pinned = %organization,
                server = %warden_api::display::safe(&o.name),
                "the server names this node's organization differently from the [organizations] \
                 pin of its key; inputs bound to the server's name are refused"
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read this node's organization"),
        }
        let concurrent = config.limits.concurrent_runs as usize;
        let max_containers = config.limits.max_containers() as usize;
        let memory = config
            .limits
            .memory_budget_bytes
            .map(|b| Arc::new(Semaphore::new(execute::memory_units(b) as usize)));
        let socket = config.local.socket_path(spool.root());
        let group = config.local.group.clone();
        let node = Node {
            inner: Arc::new(Shared {
                keys: Arc::new(OrgKeys::new(config.organizations.clone())),
                config,
                server,
                me,
                label,
                gate,
                registry,
                images,
                engine,
                vantage6_shim,
                secret: Arc::new(secret),
                organization,
                trusted,
                replay,
                budget,
                airlock,
                approved,
                airlock_lock: tokio::sync::Mutex::new(()),
                local: Mutex::new(None),
                spool,
                audit: Mutex::new(AuditState {
                    log: Some(audit),
                    failed: false,
                }),
                audit_path,
                audit_signer,
                slots: Arc::new(Semaphore::new(concurrent)),
                containers: Arc::new(Semaphore::new(max_containers)),
                memory,
                active: Mutex::new(HashSet::new()),
                queued: Mutex::new(HashSet::new()),
                cancels: cancel::Cancels::default(),
                push_connected: std::sync::atomic::AtomicBool::new(false),
                started_at,
                self_check_at,
                draining: std::sync::atomic::AtomicBool::new(false),
                timings: Mutex::new(std::collections::VecDeque::new()),
                metrics: crate::metrics::Metrics::default(),
                metrics_listener: Mutex::new(None),
            }),
        };
        // The data owner's way in: the local socket, open before any run is taken.
        let local = crate::local::start(node.clone(), &socket, group.as_deref())?;
        *node.inner.local.lock().unwrap_or_else(|p| p.into_inner()) = Some(local);
        if let Some(addr) = node.inner.config.metrics.listen {
            let weak = Arc::downgrade(&node.inner);
            let listener = crate::metrics::serve(addr, move || match weak.upgrade() {
                Some(inner) => Node { inner }.render_metrics(),
                None => String::new(),
            })
            .await?;
            *node
                .inner
                .metrics_listener
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(listener);
        }
        Ok(node)
    }

    /// Where the node's local socket is.
    pub fn local_socket(&self) -> Option<PathBuf> {
        self.inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| l.path().to_path_buf())
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

    /// One round of the split-view relay (as the node runs it every `poll_secs`): reports this
    /// node's store checkpoints and checks the relayed ones, with nothing remembered.
    pub async fn relay_round(&self) {
        self.relay_checkpoints(&mut relay::RelayState::default())
            .await;
    }

    /// Where `[metrics] listen` is served (the bound address), when it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner
            .metrics_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(addr, _)| *addr)
    }

    /// The metrics text, with the queue, the runs in flight and the spool read now.
    fn render_metrics(&self) -> String {
        let s = &self.inner;
        let lock = |m: &Mutex<HashSet<i64>>| m.lock().unwrap_or_else(|p| p.into_inner()).len();
        let queued = lock(&s.queued) as u64;
        let active = lock(&s.active) as u64;
        s.metrics.render(crate::metrics::Gauges {
            queued,
            in_flight: active.saturating_sub(queued),
            spool_bytes: crate::metrics::dir_bytes(s.spool.root()),
            spool_runs: s.spool.records().map_or(0, |r| r.len() as u64),
        })
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
                    node.sweep_airlock().await;
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
        // Split views: this node's store checkpoints out, the other nodes' in.
        let relayer = {
            let node = self.clone();
            tokio::spawn(async move {
                let every = Duration::from_secs(node.inner.config.server.poll_secs.max(1));
                let mut state = relay::RelayState::default();
                loop {
                    node.relay_checkpoints(&mut state).await;
                    tokio::time::sleep(every).await;
                }
            })
        };
        tokio::select! {
            _ = shutdown => {}
            _ = self.intake() => {}
        }
        self.drain(self.inner.config.node.shutdown_grace()).await;
        deliverer.abort();
        relayer.abort();
        let local = self
            .inner
            .local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(local) = local {
            local.stop();
        }
        let metrics = self
            .inner
            .metrics_listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((_, task)) = metrics {
            task.abort();
        }
        self.deliver_pending().await;
        // Sign what was appended since the last checkpoint, so the whole log is covered.
        let mut state = self.inner.audit.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = state.log.as_mut().filter(|l| l.uncovered() > 0) {
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

    /// Appends one record, synced to disk. The log fails closed: after a failed write it is
    /// reopened (which cuts a torn line) before this append, and an `Err` means the record is
    /// not known to be on disk, so the caller must neither start nor deliver the run.
    fn audit(&self, record: Record) -> Result<(), AuditUnavailable> {
        let s = &self.inner;
        let mut state = s.audit.lock().unwrap_or_else(|p| p.into_inner());
        if state.failed || state.log.is_none() {
            // The lock of the old handle must go before the file is opened again.
            drop(state.log.take());
            let reopened = warden_trust::SigningKey::from_pkcs8_der(&s.audit_signer)
                .map_err(|e| e.to_string())
                .and_then(|signer| {
                    AuditLog::open(&s.audit_path, signer, s.config.audit.checkpoint_every)
                        .map_err(|e| e.to_string())
                });
            match reopened {
                Ok(log) => {
                    tracing::info!(path = %s.audit_path.display(), "audit log reopened");
                    state.log = Some(log);
                    state.failed = false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the audit log is unavailable; no run starts or is delivered until it can be written");
                    return Err(AuditUnavailable);
                }
            }
        }
        let Some(log) = state.log.as_mut() else {
            return Err(AuditUnavailable);
        };
        match log.append(record) {
            Ok(_) => {
                crate::metrics::Metrics::inc(&s.metrics.audit_appends);
                Ok(())
            }
            Err(e) => {
                crate::metrics::Metrics::inc(&s.metrics.audit_append_failures);
                state.failed = true;
                tracing::error!(error = %e, "cannot append to the audit log; no run starts or is delivered until it can be written");
                Err(AuditUnavailable)
            }
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
    fn reasons_are_clean_and_bounded() {
        assert_eq!(sanitize("  "), "no reason given");
        assert_eq!(sanitize("a\u{1b}[31mb\nc"), "a [31mb\nc");
        assert_eq!(
            sanitize(&"x".repeat(5000)).chars().count(),
            MAX_REASON_CHARS
        );
    }
}
