//! The node's TOML configuration (`warden node start --config FILE`), validated while it is
//! parsed so that every error names the file, the line and the key. Relative paths are relative
//! to the config file. See docs/node.md for the reference.
//!
//! ```toml
//! [server]
//! url = "http://127.0.0.1:7600"
//! api_key_file = "node.key"            # or api_key = "wdn_..."
//!
//! [node]
//! policy = "policy.toml"
//! secret_key = "org.key"               # the organization's X25519 key (warden-seal PEM)
//! spool_dir = "spool"
//! # probe = "probe"                    # optional: another static isolation probe binary
//! # vantage6_shim = "warden-v6-shim"    # optional: runs contract = "vantage6" (docs/vantage6.md)
//!
//! [audit]
//! dir = "audit"
//! signing_key = "audit-signing.key"    # encrypted key file (cosign format)
//! password_file = "audit-signing.pw"
//!
//! [organizations]                      # pinned public-key fingerprints, by organization name
//! hospital-a = "sha256:..."            # this node's own organization must be among them
//!
//! [encryption]                         # optional; defaults shown
//! require = true                       # plaintext only for plaintext_collaborations
//! plaintext_collaborations = []        # ... and only when the server says encrypted = false
//! max_input_age_secs = 604800
//! revoked = []                         # certificate serials or "sha256:<researcher key>"
//!
//! [certifiers]                         # pinned certification key IDs, by organization name
//! hospital-a = "sha256:..."
//!
//! [data]
//! records = "/srv/data/records"        # mounted read-only at /mnt/data/records
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
pub use warden_config::ConfigError;
use warden_config::in_range;

/// Largest accepted config file.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The whole configuration, with every path resolved against the config file's folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub node: NodeSection,
    pub audit: AuditConfig,
    /// Organization name -> pinned fingerprint (`sha256:<hex>` of the raw X25519 key).
    #[serde(default)]
    pub organizations: BTreeMap<String, Fingerprint>,
    /// When inputs must be sealed, how old they may be, and what is revoked.
    #[serde(default)]
    pub encryption: EncryptionConfig,
    /// Organization name -> pinned certification key ID (`sha256:<hex>` of the key's DER
    /// SubjectPublicKeyInfo): the key that signs that organization's researcher certificates.
    #[serde(default)]
    pub certifiers: BTreeMap<String, CertifierPin>,
    /// Data source name -> host path, mounted read-only at `/mnt/data/<name>`.
    #[serde(default, deserialize_with = "data_sources")]
    pub data: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub registry: RegistryConfig,
    /// The local socket the data owner's `warden node pending|release|...` speak to.
    #[serde(default)]
    pub local: LocalConfig,
    /// How long the airlock holds a result or a run waiting for approval.
    #[serde(default)]
    pub airlock: AirlockConfig,
    /// The algorithm stores this node trusts (`[[stores]]`), for `approved_by` policy rules.
    #[serde(default)]
    pub stores: Vec<crate::stores::StoreConfig>,
    /// Prometheus metrics (`[metrics]`); off unless `listen` is set.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The `[output]` section as written; compiled into [`Config::output`] by [`Config::parse`].
    #[serde(default, rename = "output")]
    output_section: Option<toml::Table>,
    /// The node-wide default output rules (`[output]`, named `default`): every run's result is
    /// checked against `output.stricter(admitting rule's output rules)`.
    #[serde(skip)]
    pub output: warden_policy::OutputRules,
    /// Directory of the config file.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `http://` or `https://` base URL of the coordination server.
    #[serde(deserialize_with = "server_url")]
    pub url: String,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Seconds between event polls when the WebSocket is unavailable.
    #[serde(default = "d_poll", deserialize_with = "poll_secs")]
    pub poll_secs: u64,
    /// Longest wait between reconnection attempts, in seconds.
    #[serde(default = "d_backoff", deserialize_with = "backoff_secs")]
    pub max_backoff_secs: u64,
    /// Seconds the event push may stay silent (no event, ping or pong) before the node takes
    /// its connection as dead, ends it and reconnects; also the longest wait for its handshake.
    /// The node pings the server after half of it. A server whose process hangs, or a path that
    /// drops everything without a reset, otherwise holds the push open for ever while
    /// cancellations and new runs wait.
    #[serde(default = "d_push_timeout", deserialize_with = "push_timeout_secs")]
    pub push_timeout_secs: u64,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_file", &self.api_key_file)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The node policy file (warden-policy); the node refuses to start on a bad one.
    pub policy: PathBuf,
    /// The organization's X25519 secret key (PEM, warden-seal).
    pub secret_key: PathBuf,
    /// Where runs, results awaiting delivery and the event cursor are kept.
    pub spool_dir: PathBuf,
    /// A static isolation probe binary to run at start-up instead of the one built into the
    /// node ([`crate::EMBEDDED_PROBE`], algorithms/hostile/probe.c). Absent: the built-in one.
    #[serde(default)]
    pub probe: Option<PathBuf>,
    /// The vantage6 contract's loopback shim, a static binary (`warden-v6-shim`,
    /// crates/v6shim) run in a sidecar of each vantage6-contract run (docs/vantage6.md).
    /// Absent: runs admitted with `contract = "vantage6"` fail before any container.
    #[serde(default)]
    pub vantage6_shim: Option<PathBuf>,
    /// The label value put on this node's containers; `[A-Za-z0-9_.-]`, at most 40. Defaults to
    /// a name derived from the spool directory.
    #[serde(default, deserialize_with = "node_name")]
    pub name: Option<String>,
    /// On SIGTERM or SIGINT, how long runs in flight may take to finish and be delivered
    /// before the node exits anyway (they are then settled at the next start).
    #[serde(default = "d_grace", deserialize_with = "grace")]
    pub shutdown_grace_secs: u64,
}

impl NodeSection {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

fn d_grace() -> u64 {
    60
}

fn grace<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 0, 24 * 3600, "the shutdown grace in seconds")
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of the audit log (`audit.log` inside).
    pub dir: PathBuf,
    /// The node's signing key for checkpoints: an encrypted key file (cosign or Warden format).
    pub signing_key: PathBuf,
    /// File holding that key's password.
    pub password_file: PathBuf,
    /// A signed checkpoint every this many entries.
    #[serde(default = "d_checkpoint", deserialize_with = "checkpoint_every")]
    pub checkpoint_every: u64,
}

/// Resource limits of every run and of the proxy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "d_memory", deserialize_with = "memory")]
    pub memory_bytes: u64,
    #[serde(default = "d_cpus", deserialize_with = "cpus")]
    pub cpus: f64,
    #[serde(default = "d_pids", deserialize_with = "pids")]
    pub pids: u64,
    #[serde(default = "d_timeout", deserialize_with = "timeout")]
    pub timeout_secs: u64,
    #[serde(default = "d_output", deserialize_with = "size")]
    pub output_bytes: u64,
    #[serde(default = "d_scratch", deserialize_with = "size")]
    pub scratch_bytes: u64,
    /// Largest proxy request body.
    #[serde(default = "d_proxy_request", deserialize_with = "size")]
    pub proxy_request_bytes: u64,
    /// Largest subtask result the proxy returns (after decryption).
    #[serde(default = "d_output", deserialize_with = "size")]
    pub proxy_result_bytes: u64,
    /// Proxy requests per second per run (burst of the same size).
    #[serde(default = "d_rate", deserialize_with = "rate")]
    pub proxy_requests_per_second: u32,
    /// Subtasks one run may create.
    #[serde(default = "d_subtasks", deserialize_with = "subtasks")]
    pub max_subtasks: u32,
    /// Runs computing at once; a run waiting for its subtasks lends its slot (see `slots`).
    #[serde(default = "d_concurrent", deserialize_with = "concurrent")]
    pub concurrent_runs: u32,
    /// Containers alive at once, computing or waiting for subtasks (at least
    /// `concurrent_runs`); `None` is the default, [`LimitsConfig::max_containers`].
    #[serde(default, deserialize_with = "containers")]
    pub max_containers: Option<u32>,
    /// The sum of the memory limits (`memory_bytes`) of every container alive, computing or
    /// waiting for subtasks, may not exceed this; absent, only `max_containers` bounds it.
    #[serde(default, deserialize_with = "memory_budget")]
    pub memory_budget_bytes: Option<u64>,
    /// How long a run waits for room under `max_containers` (and the memory budget) before it
    /// fails.
    #[serde(default = "d_container_wait", deserialize_with = "container_wait")]
    pub container_wait_secs: u64,
    /// Deepest subtask chain: a run whose task has this many parent tasks creates no subtask.
    #[serde(default = "d_depth", deserialize_with = "depth")]
    pub max_subtask_depth: u32,
}

/// `[local]`: the node's local socket (HTTP over a Unix socket, no network listener).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The socket's path; default `<spool_dir>/local.sock` (reachable by the node's user only,
    /// since the spool is 0700). Required with `group`, outside the spool.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// A local group whose members may use the socket too (it is then 0660 with that group;
    /// else 0600, the node's user and root only).
    #[serde(default, deserialize_with = "group_name")]
    pub group: Option<String>,
}

impl LocalConfig {
    /// Where the socket is: the configured path, or `<spool_dir>/local.sock`.
    pub fn socket_path(&self, spool_dir: &Path) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| spool_dir.join("local.sock"))
    }
}

/// `[metrics]`: where the node serves `GET /metrics` (Prometheus text format). Off by default;
/// a non-loopback address needs `allow_remote = true`: the figures say how busy the node is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:port`, e.g. `127.0.0.1:9464`.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// Allow a `listen` address that is not loopback.
    #[serde(default)]
    pub allow_remote: bool,
}

/// `[airlock]`: the longest waits at the airlock, after which the node refuses by itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirlockConfig {
    /// A result held for release (`release = "manual"`) is refused after this many seconds.
    #[serde(default = "d_airlock_wait", deserialize_with = "airlock_wait")]
    pub release_timeout_secs: u64,
    /// A run waiting for its digest's approval (`first_run = "approve"`) fails after this.
    #[serde(default = "d_airlock_wait", deserialize_with = "airlock_wait")]
    pub approval_timeout_secs: u64,
}

impl Default for AirlockConfig {
    fn default() -> Self {
        AirlockConfig {
            release_timeout_secs: d_airlock_wait(),
            approval_timeout_secs: d_airlock_wait(),
        }
    }
}

/// Seven days.
fn d_airlock_wait() -> u64 {
    7 * 24 * 3600
}
fn airlock_wait<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, 366 * 24 * 3600, "the longest wait in seconds")
}
fn memory_budget<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    in_range(d, 6 << 20, 1 << 50, "the memory budget in bytes").map(Some)
}
fn group_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        return Err(serde::de::Error::custom(format!(
            "`{}` is not a group name ([A-Za-z0-9_.-], 1 to 32 characters)",
            name.escape_debug()
        )));
    }
    Ok(Some(name))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) that may be reached over plain http.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// A Docker `config.json` with registry credentials; none means anonymous.
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
    /// Platform picked from an image index, `os/arch[/variant]` (default linux/amd64).
    #[serde(default)]
    pub platform: Option<String>,
    /// An air-gapped node: no registry is asked; only images imported with `warden image
    /// import` (kept under `<spool>/images`, an OCI image layout) are admitted, each run
    /// verified again from what the archive carried.
    #[serde(default)]
    pub offline: bool,
}

/// `[encryption]`: the node, not the server, decides whether a run's input must be sealed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Sealed inputs are required except for [`EncryptionConfig::plaintext_collaborations`].
    /// `false`: plaintext whenever the server says the collaboration does not encrypt.
    #[serde(default = "d_require")]
    pub require: bool,
    /// Collaboration names whose inputs may be plaintext, when the server also says the
    /// collaboration does not encrypt.
    #[serde(default, deserialize_with = "collaboration_names")]
    pub plaintext_collaborations: Vec<String>,
    /// An input sealed longer ago than this is refused (and one more than
    /// [`MAX_FUTURE_SECS`] in the future); also how long nonces are remembered.
    #[serde(default = "d_input_age", deserialize_with = "input_age")]
    pub max_input_age_secs: u64,
    /// Revoked researcher certificates: serials (32 lower-case hex) or researcher key
    /// fingerprints (`sha256:<hex>`).
    #[serde(default, deserialize_with = "revocations")]
    pub revoked: Vec<String>,
}

/// How far in the future an input's `issued_at` may be (clock differences).
pub const MAX_FUTURE_SECS: u64 = 300;

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            require: d_require(),
            plaintext_collaborations: Vec::new(),
            max_input_age_secs: d_input_age(),
            revoked: Vec::new(),
        }
    }
}

impl EncryptionConfig {
    /// Whether a run of `collaboration` takes a plaintext input: only when the server says the
    /// collaboration does not encrypt and this node allows it. The server's flag can only make
    /// the node stricter.
    pub fn plaintext(&self, collaboration: &str, server_encrypted: bool) -> bool {
        !server_encrypted
            && (!self.require
                || self
                    .plaintext_collaborations
                    .iter()
                    .any(|c| c == collaboration))
    }
}

fn d_require() -> bool {
    true
}
fn d_input_age() -> u64 {
    7 * 24 * 3600
}
fn input_age<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 60, 400 * 24 * 3600, "the largest input age in seconds")
}

fn collaboration_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.len() > 200 || n.chars().any(char::is_control) {
            return Err(serde::de::Error::custom(format!(
                "collaboration name {} must be 1 to 200 bytes without control characters",
                i + 1
            )));
        }
        if names[..i].contains(n) {
            return Err(serde::de::Error::custom(format!(
                "collaboration `{n}` is listed twice"
            )));
        }
    }
    Ok(names)
}

fn revocations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let entries = Vec::<String>::deserialize(d)?;
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    for e in &entries {
        let ok = hex(e, 32) || e.strip_prefix("sha256:").is_some_and(|h| hex(h, 64));
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "`{}` is neither a certificate serial (32 lower-case hex digits) nor a researcher \
                 key fingerprint (`sha256:` and 64 lower-case hex digits)",
                e.escape_debug()
            )));
        }
    }
    Ok(entries)
}

/// A pinned certification key ID, `sha256:<64 lower-case hex>` (`warden keys show` prints it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertifierPin(pub warden_trust::KeyId);

impl<'de> Deserialize<'de> for CertifierPin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<warden_trust::KeyId>()
            .map(CertifierPin)
            .map_err(|_| {
                serde::de::Error::custom(
                    "a certification key ID is `sha256:` and 64 lower-case hex digits; \
                     `warden keys show` prints it for the organization's certification key",
                )
            })
    }
}

/// A pinned key fingerprint, `sha256:<64 lower-case hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fingerprint(pub String);

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if !ok {
            return Err(serde::de::Error::custom(
                "a fingerprint is `sha256:` and 64 lower-case hex digits; `warden keys` prints it",
            ));
        }
        Ok(Fingerprint(s))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn d_poll() -> u64 {
    5
}
fn d_backoff() -> u64 {
    30
}
/// The server pings every session every 20 s: a live one is never this silent.
fn d_push_timeout() -> u64 {
    30
}
fn d_checkpoint() -> u64 {
    100
}
fn d_memory() -> u64 {
    warden_runtime::DEFAULT_MEMORY_BYTES
}
fn d_cpus() -> f64 {
    1.0
}
fn d_pids() -> u64 {
    warden_runtime::DEFAULT_PIDS
}
fn d_timeout() -> u64 {
    warden_runtime::DEFAULT_TIMEOUT.as_secs()
}
fn d_output() -> u64 {
    warden_runtime::DEFAULT_OUTPUT_BYTES
}
fn d_scratch() -> u64 {
    warden_runtime::DEFAULT_SCRATCH_BYTES
}
fn d_proxy_request() -> u64 {
    1 << 20
}
fn d_rate() -> u32 {
    20
}
fn d_subtasks() -> u32 {
    100
}
fn d_concurrent() -> u32 {
    4
}
/// `max_containers` when absent (or `concurrent_runs`, when that is larger).
pub const DEFAULT_MAX_CONTAINERS: u32 = 8;
fn d_container_wait() -> u64 {
    60
}
fn d_depth() -> u32 {
    4
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_bytes: d_memory(),
            cpus: d_cpus(),
            pids: d_pids(),
            timeout_secs: d_timeout(),
            output_bytes: d_output(),
            scratch_bytes: d_scratch(),
            proxy_request_bytes: d_proxy_request(),
            proxy_result_bytes: d_output(),
            proxy_requests_per_second: d_rate(),
            max_subtasks: d_subtasks(),
            concurrent_runs: d_concurrent(),
            max_containers: None,
            memory_budget_bytes: None,
            container_wait_secs: d_container_wait(),
            max_subtask_depth: d_depth(),
        }
    }
}

impl LimitsConfig {
    /// The runtime's limits for one run.
    pub fn runtime(&self) -> warden_runtime::Limits {
        warden_runtime::Limits {
            memory_bytes: self.memory_bytes,
            nano_cpus: (self.cpus * 1e9) as u64,
            pids: self.pids,
            scratch_bytes: self.scratch_bytes,
            output_bytes: self.output_bytes,
            ..warden_runtime::Limits::default()
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The node-wide cap on containers alive: the configured value, or by default
    /// [`DEFAULT_MAX_CONTAINERS`] (`concurrent_runs` when that is larger).
    pub fn max_containers(&self) -> u32 {
        self.max_containers
            .unwrap_or(DEFAULT_MAX_CONTAINERS.max(self.concurrent_runs))
    }

    /// How long a run waits for room under [`LimitsConfig::max_containers`].
    pub fn container_wait(&self) -> Duration {
        Duration::from_secs(self.container_wait_secs)
    }
}

fn poll_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, 3600, "the poll interval in seconds")
}
fn backoff_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, 3600, "the longest backoff in seconds")
}
fn push_timeout_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 2, 3600, "the event push's silence limit in seconds")
}
fn checkpoint_every<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, 1_000_000, "the checkpoint interval in entries")
}
fn memory<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 6 << 20, 1 << 40, "the memory limit in bytes")
}
fn cpus<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    in_range(d, 0.01, 1024.0, "the CPU limit")
}
fn pids<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, 1_000_000, "the process limit")
}
fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, 7 * 24 * 3600, "the timeout in seconds")
}
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, 1 << 34, "a size in bytes")
}
fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 10_000, "the request rate per second")
}
fn subtasks<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 0, 100_000, "the subtask count")
}
fn concurrent<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 1, 1000, "the number of concurrent runs")
}

fn containers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    in_range(d, 1, 10_000, "the number of containers alive").map(Some)
}
fn container_wait<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, 1, 3600, "the wait for a container in seconds")
}
fn depth<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, 0, 1000, "the subtask depth")
}

fn server_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?;
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(['?', '#', ' ']) => {
            Ok(url.trim_end_matches('/').to_owned())
        }
        _ => Err(serde::de::Error::custom(
            "the server url must be http://HOST[:PORT] or https://HOST[:PORT]",
        )),
    }
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn node_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if !valid_name(&s, 40) {
        return Err(serde::de::Error::custom(
            "the node name must be 1 to 40 of [A-Za-z0-9_.-]",
        ));
    }
    Ok(Some(s))
}

fn data_sources<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, PathBuf>, D::Error> {
    let map = BTreeMap::<String, PathBuf>::deserialize(d)?;
    for name in map.keys() {
        if !valid_name(name, 64) || name.starts_with('.') {
            return Err(serde::de::Error::custom(format!(
                "data source name `{name}` must be 1 to 64 of [A-Za-z0-9_.-], not starting with a dot"
            )));
        }
    }
    Ok(map)
}

impl Config {
    /// The keys an input's sender is proven with: the pinned encryption keys, the pinned
    /// certification keys and the revocations.
    pub fn trusted_keys(&self) -> Result<warden_seal::TrustedKeys, String> {
        let mut encryption = BTreeMap::new();
        for (name, fp) in &self.organizations {
            let parsed =
                fp.0.parse::<warden_seal::Fingerprint>()
                    .map_err(|e| format!("organizations.{name}: {e}"))?;
            encryption.insert(name.clone(), parsed);
        }
        Ok(warden_seal::TrustedKeys {
            encryption,
            certifiers: self
                .certifiers
                .iter()
                .map(|(name, pin)| (name.clone(), pin.0))
                .collect(),
            revoked: self.encryption.revoked.iter().cloned().collect(),
        })
    }

    /// The name under which `[organizations]` pins `key` (this node's own organization's key).
    pub fn organization_named_for(&self, key: &warden_seal::PublicKey) -> Option<&str> {
        let fp = key.fingerprint().to_string();
        self.organizations
            .iter()
            .find(|(_, pin)| pin.0 == fp)
            .map(|(name, _)| name.as_str())
    }

    /// Reads, parses and validates the file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (text, base) = warden_config::read_file(path, MAX_CONFIG_BYTES)?;
        let base = base.canonicalize().unwrap_or(base);
        Config::parse(&text, path, &base)
    }

    /// Parses `text` (named `path` in errors) and resolves relative paths against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let invalid = |e: warden_config::Located| e.in_file(path);
        let located = |key: String, message: String, span: Option<std::ops::Range<usize>>| {
            invalid(warden_config::locate(text, key, message, span))
        };
        let mut config: Config = warden_config::from_toml(text).map_err(invalid)?;
        let at_key = |key: &str, message: &str| {
            let offset = text
                .find(&format!("\n{key} "))
                .or_else(|| text.find(&format!("\n{key}=")))
                .or_else(|| text.find(key).map(|o| o.saturating_sub(1)))
                .map(|o| o + 1..o + 1 + key.len());
            located(key.to_owned(), message.to_owned(), offset)
        };
        match (&config.server.api_key, &config.server.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(at_key(
                    "api_key",
                    "give either server.api_key or server.api_key_file, not both",
                ));
            }
            (None, None) => {
                return Err(at_key(
                    "[server]",
                    "the node needs server.api_key_file (or server.api_key): the key printed when the node was created",
                ));
            }
            _ => {}
        }
        if let Some(m) = config.limits.max_containers
            && m < config.limits.concurrent_runs
        {
            let offset = text
                .find("\nmax_containers")
                .map(|o| o + 1..o + 1 + "max_containers".len());
            return Err(located(
                "limits.max_containers".to_owned(),
                format!(
                    "max_containers ({m}) must be at least concurrent_runs ({}): every run that \
                     computes has a container",
                    config.limits.concurrent_runs
                ),
                offset,
            ));
        }
        if let Some(b) = config.limits.memory_budget_bytes
            && b < config.limits.memory_bytes
        {
            let offset = text
                .find("\nmemory_budget_bytes")
                .map(|o| o + 1..o + 1 + "memory_budget_bytes".len());
            return Err(located(
                "limits.memory_budget_bytes".to_owned(),
                format!(
                    "memory_budget_bytes ({b}) is below memory_bytes ({}), the limit of one \
                     container: no run could start; raise it or lower memory_bytes",
                    config.limits.memory_bytes
                ),
                offset,
            ));
        }
        if config.local.group.is_some() && config.local.socket.is_none() {
            return Err(at_key(
                "group",
                "local.group needs local.socket outside the spool directory (e.g. \
                 /run/warden/node.sock): the spool is 0700, so the group's members could not \
                 reach a socket inside it",
            ));
        }
        if let Some(addr) = config.metrics.listen
            && !addr.ip().is_loopback()
            && !config.metrics.allow_remote
        {
            return Err(at_key(
                "listen",
                &format!(
                    "metrics.listen {addr} is not a loopback address; the node's metrics say how \
                     busy it is: listen on 127.0.0.1, or set metrics.allow_remote = true"
                ),
            ));
        }
        if let Err((key, message)) = crate::stores::validate(&config.stores) {
            let offset = text.find("[[stores]]").map(|o| o..o + "[[stores]]".len());
            return Err(located(key, message, offset));
        }
        config.base_dir = base.to_path_buf();
        if let Some(table) = config.output_section.take() {
            config.output = output_rules(text, &table, path, base)?;
        }
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = config.server.api_key_file.as_mut() {
            resolve(p);
        }
        resolve(&mut config.node.policy);
        resolve(&mut config.node.secret_key);
        resolve(&mut config.node.spool_dir);
        if let Some(p) = config.node.probe.as_mut() {
            resolve(p);
        }
        if let Some(p) = config.node.vantage6_shim.as_mut() {
            resolve(p);
        }
        if let Some(p) = config.local.socket.as_mut() {
            resolve(p);
        }
        resolve(&mut config.audit.dir);
        resolve(&mut config.audit.signing_key);
        resolve(&mut config.audit.password_file);
        if let Some(p) = config.registry.docker_config.as_mut() {
            resolve(p);
        }
        for p in config.data.values_mut() {
            resolve(p);
        }
        for s in &mut config.stores {
            if let Some(p) = s.note_key_file.as_mut() {
                resolve(p);
            }
            for r in &mut s.reviewers {
                resolve(&mut r.key);
            }
        }
        Ok(config)
    }
}

/// Largest schema file the `[output]` section may name.
const MAX_SCHEMA_BYTES: u64 = 1 << 20;

/// Compiles the `[output]` section with the policy's reader (`warden_policy::OutputRules`), as
/// the rules named `default`; schema paths are relative to the config file's folder. The
/// section's lines are cut out of `text` in place (every other line blanked, `[output.x]`
/// headers renamed `[x]`) so that errors keep the config file's line numbers; when that cut
/// does not read back as the same table, the table is re-serialised and errors name the
/// section and key only.
fn output_rules(
    text: &str,
    table: &toml::Table,
    path: &Path,
    base: &Path,
) -> Result<warden_policy::OutputRules, ConfigError> {
    let load_file = |name: &str| {
        let file = base.join(name);
        match warden_config::read_file(&file, MAX_SCHEMA_BYTES) {
            Ok((text, _)) => Ok(text),
            Err(ConfigError::Read { source, .. }) => Err(warden_policy::FileLoadError(format!(
                "cannot read the schema file {}: {source}; check the path (relative to the \
                 node configuration)",
                file.display()
            ))),
            Err(e) => Err(warden_policy::FileLoadError(e.to_string())),
        }
    };
    let origin = path.display().to_string();
    let cut = output_lines(text);
    let exact = toml::from_str::<toml::Table>(&cut).is_ok_and(|t| t == *table);
    let (source, exact) = if exact {
        (cut, true)
    } else {
        (toml::to_string(table).unwrap_or_default(), false)
    };
    warden_policy::OutputRules::from_toml_str(&source, &origin, "default", load_file).map_err(|e| {
        match e {
            warden_policy::PolicyError::Invalid {
                line,
                column,
                key,
                message,
                ..
            } => ConfigError::Invalid {
                path: path.to_path_buf(),
                line: if exact { line } else { 0 },
                column: if exact { column } else { 0 },
                key: if key.is_empty() {
                    "output".to_owned()
                } else {
                    format!("output.{key}")
                },
                message,
            },
            other => ConfigError::Invalid {
                path: path.to_path_buf(),
                line: 0,
                column: 0,
                key: "output".to_owned(),
                message: other.to_string(),
            },
        }
    })
}

/// `text` with only the `[output]` section's lines kept, each on its own line number.
fn output_lines(text: &str) -> String {
    let mut inside = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let trimmed = line.trim_start();
        let kept = if trimmed.starts_with('[') {
            let double = trimmed.starts_with("[[");
            let open = if double { "[[" } else { "[" };
            let close = if double { "]]" } else { "]" };
            let name = trimmed
                .get(open.len()..)
                .and_then(|rest| rest.split_once(close))
                .map(|(name, _)| name.trim());
            match name {
                Some("output") => {
                    inside = true;
                    String::new()
                }
                Some(name) if name.starts_with("output.") => {
                    inside = true;
                    format!("{open}{}{close}", &name["output.".len()..])
                }
                Some(_) => {
                    inside = false;
                    String::new()
                }
                // Not a header (a line of a multi-line array): part of the section or not.
                None if inside => line.to_owned(),
                None => String::new(),
            }
        } else if inside {
            line.to_owned()
        } else {
            String::new()
        };
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn minimal() -> String {
        format!(
            r#"
[server]
url = "http://127.0.0.1:7600/"
api_key_file = "node.key"

[node]
policy = "policy.toml"
secret_key = "/etc/warden/org.key"
spool_dir = "spool"
probe = "probe"

[audit]
dir = "audit"
signing_key = "audit.key"
password_file = "audit.pw"

[organizations]
hospital-a = "{FP}"

[data]
records = "data/records"
"#
        )
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/cfg/node.toml"), Path::new("/cfg"))
    }

    fn error_of(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(ConfigError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_resolves_paths_against_the_file() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.server.url, "http://127.0.0.1:7600");
        assert_eq!(c.server.api_key_file, Some(PathBuf::from("/cfg/node.key")));
        assert_eq!(c.node.policy, PathBuf::from("/cfg/policy.toml"));
        assert_eq!(c.node.secret_key, PathBuf::from("/etc/warden/org.key"));
        assert_eq!(c.data["records"], PathBuf::from("/cfg/data/records"));
        assert_eq!(c.organizations["hospital-a"].0, FP);
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.audit.checkpoint_every, 100);
        assert_eq!(c.node.probe, Some(PathBuf::from("/cfg/probe")));
        // Without the key the node runs the probe built into it.
        let c = parse(&minimal().replace("probe = \"probe\"\n", "")).unwrap();
        assert_eq!(c.node.probe, None);
    }

    #[test]
    fn the_push_silence_limit_has_a_default_and_a_range() {
        assert_eq!(parse(&minimal()).unwrap().server.push_timeout_secs, 30);
        let with = |v: &str| {
            minimal().replace(
                "api_key_file = \"node.key\"\n",
                &format!("api_key_file = \"node.key\"\npush_timeout_secs = {v}\n"),
            )
        };
        assert_eq!(parse(&with("3")).unwrap().server.push_timeout_secs, 3);
        for bad in ["1", "3601"] {
            let (line, key, message) = error_of(&with(bad));
            assert_eq!(
                (line, key.as_str()),
                (5, "server.push_timeout_secs"),
                "{bad}: {message}"
            );
            assert!(message.contains("silence limit"), "{bad}: {message}");
        }
    }

    #[test]
    fn the_container_cap_is_at_least_concurrent_runs_and_the_depth_cap_has_a_default() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.limits.max_containers(), DEFAULT_MAX_CONTAINERS);
        assert_eq!(c.limits.max_subtask_depth, 4);
        assert_eq!(c.limits.container_wait_secs, 60);
        let c = parse(&(minimal() + "\n[limits]\nconcurrent_runs = 12\n")).unwrap();
        assert_eq!(c.limits.max_containers(), 12, "never below concurrent_runs");
        let c =
            parse(&(minimal() + "\n[limits]\nconcurrent_runs = 2\nmax_containers = 2\n")).unwrap();
        assert_eq!(c.limits.max_containers(), 2);

        let text = minimal() + "\n[limits]\nconcurrent_runs = 3\nmax_containers = 2\n";
        let (line, key, message) = error_of(&text);
        assert_eq!(
            (line, key.as_str()),
            (25, "limits.max_containers"),
            "{message}"
        );
        assert!(
            message.contains("at least concurrent_runs (3)"),
            "{message}"
        );
        let text = minimal() + "\n[limits]\nmax_containers = 0\n";
        let (line, key, _) = error_of(&text);
        assert_eq!((line, key.as_str()), (24, "limits.max_containers"));
        let text = minimal() + "\n[limits]\nmax_subtask_depth = -1\n";
        let (line, key, _) = error_of(&text);
        assert_eq!((line, key.as_str()), (24, "limits.max_subtask_depth"));
    }

    #[test]
    fn the_local_socket_airlock_and_memory_budget_are_read_and_checked() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(
            c.local.socket_path(&c.node.spool_dir),
            PathBuf::from("/cfg/spool/local.sock")
        );
        assert_eq!(c.local.group, None);
        assert_eq!(c.airlock, AirlockConfig::default());
        assert_eq!(c.airlock.release_timeout_secs, 7 * 24 * 3600);
        assert_eq!(c.limits.memory_budget_bytes, None);
        let c = parse(&format!(
            "{}
[local]
socket = \"run/node.sock\"
group = \"warden-checkers\"

[airlock]
             release_timeout_secs = 60
approval_timeout_secs = 120
",
            minimal()
        ))
        .unwrap();
        assert_eq!(c.local.socket, Some(PathBuf::from("/cfg/run/node.sock")));
        assert_eq!(c.local.group.as_deref(), Some("warden-checkers"));
        assert_eq!(
            (
                c.airlock.release_timeout_secs,
                c.airlock.approval_timeout_secs
            ),
            (60, 120)
        );
        // A group needs a socket outside the 0700 spool.
        let e = parse(&format!(
            "{}
[local]
group = \"checkers\"
",
            minimal()
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("local.group needs local.socket"), "{e}");
        for (body, says) in [
            (
                "[local]
group = \"a b\"
",
                "is not a group name",
            ),
            (
                "[local]
port = 1
",
                "unknown field",
            ),
            (
                "[airlock]
release_timeout_secs = 0
",
                "between 1 and",
            ),
            (
                "[limits]
memory_budget_bytes = 1
",
                "the memory budget in bytes",
            ),
        ] {
            let e = parse(&format!(
                "{}
{body}",
                minimal()
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(says), "{body}: {e}");
        }
        let e = parse(&format!(
            "{}
[limits]
memory_bytes = 67108864
memory_budget_bytes = 33554432
",
            minimal()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("limits.memory_budget_bytes") && e.contains("below memory_bytes"),
            "{e}"
        );
        let c = parse(&format!(
            "{}
[limits]
memory_bytes = 67108864
memory_budget_bytes = 134217728
",
            minimal()
        ))
        .unwrap();
        assert_eq!(c.limits.memory_budget_bytes, Some(134_217_728));
    }

    #[test]
    fn the_output_section_is_the_default_output_rules() {
        let c = parse(&format!(
            "{}\n[output]\nmax_bytes = 10\nruns_per_day = 3\nmax_subtasks = 2\n",
            minimal()
        ))
        .unwrap();
        let max = c.output.max_bytes.clone().unwrap();
        assert_eq!(max.value, 10);
        assert!(max.rules.contains("default"), "{max:?}");
        assert_eq!(c.output.runs_per_day, Some(3));
        assert_eq!(c.output.max_subtasks, Some(2));
        assert!(parse(&minimal()).unwrap().output.is_unrestricted());
        // A section after the [output] one is not part of it.
        let c = parse(&format!(
            "{}\n[output]\nmax_bytes = 10\n\n[limits]\nmax_subtasks = 4\n",
            minimal()
        ))
        .unwrap();
        assert_eq!(c.output.max_subtasks, None);
        assert_eq!(c.limits.max_subtasks, 4);
    }

    #[test]
    fn output_section_errors_name_the_config_file_line_and_key() {
        let line_of =
            |text: &str, start: &str| text.lines().position(|l| l.starts_with(start)).unwrap() + 1;
        for (body, at, says) in [
            ("max_bytes = 10\nbogus = 1\n", "bogus", "bogus"),
            ("max_bytes = -1\n", "max_bytes", "max_bytes"),
            ("release = \"sometimes\"\n", "release", "release"),
            (
                "schema = \"missing.schema.json\"\n",
                "schema",
                "missing.schema.json",
            ),
        ] {
            let text = format!("{}\n[output]\n{body}", minimal());
            let e = parse(&text).unwrap_err().to_string();
            let line = line_of(&text, at);
            assert!(
                e.starts_with(&format!("/cfg/node.toml:{line}:")),
                "{body}: {e}"
            );
            assert!(e.contains("key `output"), "{body}: {e}");
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn metrics_are_off_by_default_and_loopback_unless_allowed() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.metrics, MetricsConfig::default());
        let c = parse(&(minimal() + "\n[metrics]\nlisten = \"127.0.0.1:9464\"\n")).unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let text = minimal() + "\n[metrics]\nlisten = \"0.0.0.0:9464\"\n";
        let (line, key, message) = error_of(&text);
        let at = text
            .lines()
            .position(|l| l.starts_with("listen ="))
            .unwrap()
            + 1;
        assert_eq!((line, key.as_str()), (at, "listen"), "{message}");
        assert!(message.contains("not a loopback address"), "{message}");
        assert!(message.contains("allow_remote = true"), "{message}");
        let c = parse(&(text.clone() + "allow_remote = true\n")).unwrap();
        assert_eq!(c.metrics.listen, Some("0.0.0.0:9464".parse().unwrap()));
        let (_, _, message) = error_of(&(minimal() + "\n[metrics]\nlisten = \"localhost\"\n"));
        assert!(message.contains("invalid socket address"), "{message}");
    }

    #[test]
    fn errors_name_line_and_key() {
        let text = minimal().replace("probe = \"probe\"", "probe = \"probe\"\nprobes = 1");
        let (line, key, message) = error_of(&text);
        assert_eq!(line, 11, "{message}");
        assert!(message.contains("unknown field `probes`"), "{message}");
        assert!(key.is_empty() || key.starts_with("node"), "{key}");

        let text = minimal() + "\n[limits]\npids = 0\n";
        let (line, key, message) = error_of(&text);
        assert_eq!((line, key.as_str()), (24, "limits.pids"), "{message}");
        assert!(message.contains("between 1 and"), "{message}");

        let text = minimal().replace(FP, "sha256:XYZ");
        let (line, key, _) = error_of(&text);
        assert_eq!((line, key.as_str()), (18, "organizations.hospital-a"));

        let text = minimal().replace("http://127.0.0.1:7600/", "ftp://x");
        let (line, key, _) = error_of(&text);
        assert_eq!((line, key.as_str()), (3, "server.url"));

        let text = minimal().replace("records = ", "\"../x\" = ");
        let (_, key, message) = error_of(&text);
        assert_eq!(key, "data", "{message}");
    }

    #[test]
    fn the_api_key_must_be_given_once() {
        let text = minimal().replace("api_key_file = \"node.key\"", "");
        let (_, key, message) = error_of(&text);
        assert_eq!(key, "[server]");
        assert!(message.contains("api_key_file"), "{message}");
        let text = minimal().replace(
            "api_key_file = \"node.key\"",
            "api_key_file = \"node.key\"\napi_key = \"wdn_1_x\"",
        );
        let (line, key, _) = error_of(&text);
        assert_eq!((line, key.as_str()), (5, "api_key"));
    }

    const KEY_ID: &str = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    #[test]
    fn encryption_defaults_to_sealed_inputs_and_certifiers_to_none() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.encryption, EncryptionConfig::default());
        assert!(c.encryption.require);
        assert_eq!(c.encryption.max_input_age_secs, 604_800);
        assert!(c.certifiers.is_empty());
        // The server's flag alone never makes a run plaintext.
        assert!(!c.encryption.plaintext("study", false));
        assert!(!c.encryption.plaintext("study", true));
    }

    #[test]
    fn encryption_and_certifiers_are_read_and_checked() {
        let serial = "0123456789abcdef0123456789abcdef";
        let text = minimal()
            + &format!(
                "\n[encryption]\nplaintext_collaborations = [\"open-study\"]\n\
                 max_input_age_secs = 3600\nrevoked = [\"{serial}\", \"{FP}\"]\n\
                 \n[certifiers]\nhospital-a = \"{KEY_ID}\"\n"
            );
        let c = parse(&text).unwrap();
        assert!(c.encryption.plaintext("open-study", false));
        assert!(
            !c.encryption.plaintext("open-study", true),
            "the server says it encrypts"
        );
        assert!(!c.encryption.plaintext("study", false), "not listed");
        assert_eq!(c.encryption.max_input_age_secs, 3600);
        assert_eq!(c.certifiers["hospital-a"].0.to_string(), KEY_ID);
        let trusted = c.trusted_keys().unwrap();
        assert_eq!(trusted.certifiers["hospital-a"].to_string(), KEY_ID);
        assert_eq!(trusted.encryption["hospital-a"].to_string(), FP);
        assert!(trusted.revoked.contains(serial) && trusted.revoked.contains(FP));

        let lax = minimal() + "\n[encryption]\nrequire = false\n";
        let c = parse(&lax).unwrap();
        assert!(c.encryption.plaintext("anything", false));
        assert!(!c.encryption.plaintext("anything", true));
    }

    #[test]
    fn encryption_and_certifier_errors_name_line_and_key() {
        let base = minimal();
        let first = base.lines().count() + 2;
        let check = |tail: &str, line: usize, key: &str, says: &str| {
            let (l, k, message) = error_of(&(base.clone() + "\n" + tail));
            assert_eq!((l, k.as_str()), (line, key), "{tail}: {message}");
            assert!(message.contains(says), "{tail}: {message}");
        };
        check(
            "[certifiers]\nhospital-a = \"sha256:XYZ\"\n",
            first + 1,
            "certifiers.hospital-a",
            "certification key ID",
        );
        check(
            "[encryption]\nmax_input_age_secs = 10\n",
            first + 1,
            "encryption.max_input_age_secs",
            "between 60 and",
        );
        check(
            "[encryption]\nrevoked = [\"not-a-serial\"]\n",
            first + 1,
            "encryption.revoked",
            "neither a certificate serial",
        );
        check(
            "[encryption]\nplaintext_collaborations = [\"a\", \"a\"]\n",
            first + 1,
            "encryption.plaintext_collaborations",
            "listed twice",
        );
        check(
            "[encryption]\nrequired = true\n",
            first + 1,
            "encryption.required",
            "unknown field `required`",
        );
    }

    #[test]
    fn the_own_organization_is_found_by_its_key() {
        let key = warden_seal::SecretKey::generate().public_key();
        let text = minimal().replace(FP, &key.fingerprint().to_string());
        let c = parse(&text).unwrap();
        assert_eq!(c.organization_named_for(&key), Some("hospital-a"));
        let other = warden_seal::SecretKey::generate().public_key();
        assert_eq!(c.organization_named_for(&other), None);
    }

    #[test]
    fn the_api_key_is_not_printed() {
        let text = minimal().replace(
            "api_key_file = \"node.key\"",
            "api_key = \"wdn_1_supersecret\"",
        );
        let c = parse(&text).unwrap();
        assert!(!format!("{c:?}").contains("supersecret"));
    }
}
