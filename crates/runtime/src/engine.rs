//! The container engine behind a narrow trait, in Warden's own types.
//!
//! The runtime's logic (pin checks, hardening, timeouts, output collection, reconciliation) talks
//! only to [`Engine`]. [`crate::DockerEngine`] is the real implementation; a Kubernetes one can
//! follow. An implementation must apply every control listed on [`ContainerSpec`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use async_trait::async_trait;

/// A failed call to the container engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the container engine refused `{op}`: {message}")]
    Refused { op: &'static str, message: String },
    #[error("`{op}`: no such {what} `{id}` in the container engine")]
    NotFound {
        op: &'static str,
        what: &'static str,
        id: String,
    },
    #[error(
        "the container engine is unreachable during `{op}`: {message}; check that dockerd is \
         running and that this user may use its socket"
    )]
    Unreachable { op: &'static str, message: String },
    #[error(
        "the container engine answered `{op}` without {field}; is it Docker API 1.41 or newer?"
    )]
    Incomplete {
        op: &'static str,
        field: &'static str,
    },
}

/// A local image ID, `sha256:<64 hex>`: the content-addressed ID of an image configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageId(String);

impl ImageId {
    /// Accepts only `sha256:` followed by 64 lower-case hex digits.
    pub fn parse(id: &str) -> Option<ImageId> {
        let hex = id.strip_prefix("sha256:")?;
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| ImageId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the engine says about a local image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image ID exactly as the engine reports it (checked by the caller).
    pub id: String,
    /// `name@sha256:...` entries, in the engine's (possibly familiar) spelling.
    pub repo_digests: Vec<String>,
}

/// The state of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    /// paused, restarting, removing, dead, or anything newer.
    Other(String),
}

/// What the engine says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    /// The image ID the container was created from.
    pub image: String,
    pub state: ContainerState,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub labels: BTreeMap<String, String>,
    /// Bind mounts: host source and container destination.
    pub mounts: Vec<(PathBuf, String)>,
}

/// A host directory bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// Everything needed to create one hardened algorithm container. Built only by this crate
/// (from a pinned image ID and a validated [`crate::RunSpec`]).
///
/// An [`Engine`] must apply all of it, and in addition these fixed controls:
/// no network at all (Docker: `--network none`), read-only root filesystem, every capability
/// dropped, `no-new-privileges`, not privileged, no devices, the engine's default seccomp
/// profile, no restart, no automatic removal (the runtime removes after collecting), and no
/// host path other than [`ContainerSpec::mounts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub(crate) name: String,
    pub(crate) image: ImageId,
    pub(crate) user: String,
    pub(crate) env: Vec<String>,
    pub(crate) args: Option<Vec<String>>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) mounts: Vec<BindMount>,
    pub(crate) tmpfs_target: &'static str,
    pub(crate) tmpfs_bytes: u64,
    pub(crate) memory_bytes: u64,
    pub(crate) nano_cpus: u64,
    pub(crate) pids: u64,
    pub(crate) file_size_bytes: u64,
    pub(crate) log_file_bytes: u64,
    /// The container (an ID the runtime created: a sidecar) whose network namespace this one
    /// joins instead of a namespace of its own with no network; `None` for `--network none`.
    pub(crate) network_of: Option<String>,
}

impl ContainerSpec {
    /// Container name, unique per node and run.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The only image reference an engine may create the container from.
    pub fn image(&self) -> &ImageId {
        &self.image
    }
    /// `uid:gid`, never root.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// `NAME=value` entries.
    pub fn env(&self) -> &[String] {
        &self.env
    }
    /// Arguments replacing the image's `CMD`, if any (the image's `ENTRYPOINT` stays).
    pub fn args(&self) -> Option<&[String]> {
        self.args.as_deref()
    }
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    /// The only host paths the container sees.
    pub fn mounts(&self) -> &[BindMount] {
        &self.mounts
    }
    /// Scratch tmpfs: where, and its size cap in bytes (mounted `nosuid,nodev,noexec`).
    pub fn tmpfs(&self) -> (&'static str, u64) {
        (self.tmpfs_target, self.tmpfs_bytes)
    }
    /// Memory limit; swap is limited to the same value (no swap).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
    /// CPU limit in billionths of a CPU.
    pub fn nano_cpus(&self) -> u64 {
        self.nano_cpus
    }
    /// Most processes and threads at once.
    pub fn pids(&self) -> u64 {
        self.pids
    }
    /// Largest file any process may write (`RLIMIT_FSIZE`).
    pub fn file_size_bytes(&self) -> u64 {
        self.file_size_bytes
    }
    /// Cap on the engine's stored log of the container.
    pub fn log_file_bytes(&self) -> u64 {
        self.log_file_bytes
    }
    pub fn network_of(&self) -> Option<&str> {
        self.network_of.as_deref()
    }
}

/// The container engine, narrowed to what the runtime needs.
#[async_trait]
pub trait Engine: Send + Sync {
    /// Pulls `name@digest` (or any reference) into the local image store.
    async fn pull(&self, reference: &str) -> Result<(), EngineError>;
    /// Inspects a local image by reference or ID.
    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo, EngineError>;
    /// Imports a root filesystem tar as a new image (`docker import`), applying Dockerfile
    /// `changes` such as `ENTRYPOINT ["/probe"]`; returns the image ID.
    async fn import_image(
        &self,
        rootfs_tar: Vec<u8>,
        repository: &str,
        changes: &[String],
    ) -> Result<String, EngineError>;
    /// Loads a docker-archive tar (`docker load`: `manifest.json`, the config and the layers);
    /// the engine checks every layer against the config's `diff_ids`.
    async fn load_image(&self, archive: &std::path::Path) -> Result<(), EngineError>;
    /// Creates (does not start) a container; returns its ID.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError>;
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, EngineError>;
    async fn start_container(&self, id: &str) -> Result<(), EngineError>;
    /// Returns once the container is no longer running.
    async fn wait_container(&self, id: &str) -> Result<(), EngineError>;
    /// SIGKILL. A container that is not running is not an error.
    async fn kill_container(&self, id: &str) -> Result<(), EngineError>;
    /// Removes the container (forcibly, with its anonymous volumes). Gone already is not an
    /// error.
    async fn remove_container(&self, id: &str) -> Result<(), EngineError>;
    /// The last `max_bytes` of the container's stdout and stderr, interleaved.
    async fn logs_tail(&self, id: &str, max_bytes: usize) -> Result<Vec<u8>, EngineError>;
    /// IDs of all containers, in any state, that carry label `key=value`.
    async fn list_containers(&self, key: &str, value: &str) -> Result<Vec<String>, EngineError>;
}
