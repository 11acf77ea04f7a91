//! The hardened run of one algorithm: spec, limits, outcome, and the run itself.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::{BindMount, ContainerSpec, Engine, EngineError, ImageId};
use crate::output::{OutputProblem, collect_output, prepare_output_dir};
use crate::pinned::PinnedImage;

/// Where the input directory appears in the container (read-only).
pub const INPUT_MOUNT: &str = "/mnt/input";
/// Where the data directory appears in the container (read-only).
pub const DATA_MOUNT: &str = "/mnt/data";
/// Where the output directory appears in the container (writable).
pub const OUTPUT_MOUNT: &str = "/mnt/output";
/// Where the proxy socket's directory appears in the container (read-only).
pub const PROXY_MOUNT: &str = "/mnt/proxy";
/// The output file's name inside the output directory.
pub const OUTPUT_FILE: &str = "output";
/// The proxy socket's name inside the proxy socket directory.
pub const PROXY_SOCKET: &str = "proxy.sock";
/// Scratch space: a size-capped tmpfs, the only writable path besides the output directory.
pub const SCRATCH_MOUNT: &str = "/tmp";

/// Environment variables the runtime sets; a [`RunSpec`] may not set them.
pub const ENV_INPUT_DIR: &str = "WARDEN_INPUT_DIR";
pub const ENV_DATA_DIR: &str = "WARDEN_DATA_DIR";
pub const ENV_OUTPUT: &str = "WARDEN_OUTPUT";
pub const ENV_PROXY_SOCKET: &str = "WARDEN_PROXY_SOCKET";

/// Label keys put on every container, for reconciliation.
pub const LABEL_RUN: &str = "org.warden.run";
pub const LABEL_NODE: &str = "org.warden.node";
/// The output cap the run was started with, so reconciliation applies the same one.
pub const LABEL_OUTPUT_CAP: &str = "org.warden.output-max-bytes";

/// Defaults of [`Limits`].
pub const DEFAULT_MEMORY_BYTES: u64 = 1 << 30;
pub const DEFAULT_NANO_CPUS: u64 = 1_000_000_000;
pub const DEFAULT_PIDS: u64 = 128;
pub const DEFAULT_SCRATCH_BYTES: u64 = 64 << 20;
pub const DEFAULT_OUTPUT_BYTES: u64 = 64 << 20;
pub const DEFAULT_LOG_TAIL_BYTES: usize = 16 << 10;
pub const DEFAULT_LOG_FILE_BYTES: u64 = 1 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// `nobody:nogroup`.
pub const DEFAULT_UID: u32 = 65534;
pub const DEFAULT_GID: u32 = 65534;

/// Longest run or node ID (they go into container names and labels).
pub const ID_MAX_LEN: usize = 64;

/// Resource limits of one run. Readable from a node's configuration (every key optional,
/// unknown keys refused), e.g. `[limits]` `memory_bytes = 536870912`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Memory, swap included (swap is not allowed beyond it).
    pub memory_bytes: u64,
    /// CPU in billionths of a CPU (1_000_000_000 = one CPU).
    pub nano_cpus: u64,
    /// Processes and threads.
    pub pids: u64,
    /// Size of the `/tmp` tmpfs.
    pub scratch_bytes: u64,
    /// Largest accepted output file; also the per-file write limit (`RLIMIT_FSIZE` = cap + 1).
    pub output_bytes: u64,
    /// How much of the end of the log is kept in the report.
    pub log_tail_bytes: usize,
    /// Cap on the engine's stored log of the container.
    pub log_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            nano_cpus: DEFAULT_NANO_CPUS,
            pids: DEFAULT_PIDS,
            scratch_bytes: DEFAULT_SCRATCH_BYTES,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            log_tail_bytes: DEFAULT_LOG_TAIL_BYTES,
            log_file_bytes: DEFAULT_LOG_FILE_BYTES,
        }
    }
}

/// One run of an algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// `[A-Za-z0-9_.-]`, at most [`ID_MAX_LEN`].
    pub run_id: String,
    /// `[A-Za-z0-9_.-]`, at most [`ID_MAX_LEN`].
    pub node_id: String,
    /// Existing host directory, mounted read-only at [`INPUT_MOUNT`].
    pub input_dir: PathBuf,
    /// Existing host directory, mounted read-only at [`DATA_MOUNT`].
    pub data_dir: Option<PathBuf>,
    /// Named data sources (an existing file or directory each), mounted read-only at
    /// `DATA_MOUNT/<name>`; names are `[A-Za-z0-9_.-]`, not starting with a dot. Exclusive
    /// with [`RunSpec::data_dir`].
    pub data_sources: Vec<(String, PathBuf)>,
    /// Existing host directory, mounted writable at [`OUTPUT_MOUNT`]; the runtime makes it
    /// writable for the run's user and reads [`OUTPUT_FILE`] from it afterwards.
    pub output_dir: PathBuf,
    /// Existing host directory holding the proxy's Unix socket, mounted read-only at
    /// [`PROXY_MOUNT`].
    pub proxy_socket_dir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// Arguments replacing the image's `CMD` (the `ENTRYPOINT` stays).
    pub args: Option<Vec<String>>,
    /// Never 0.
    pub uid: u32,
    /// Never 0.
    pub gid: u32,
    pub limits: Limits,
    /// Wall-clock limit from start to exit.
    pub timeout: Duration,
    /// Join the network namespace of this sidecar ([`crate::Sidecar::id`], itself without
    /// network) instead of `--network none`.
    pub network_of: Option<String>,
}

impl RunSpec {
    /// A spec with default limits, user and timeout, no data, no proxy, no extra environment.
    pub fn new(
        run_id: impl Into<String>,
        node_id: impl Into<String>,
        input_dir: impl Into<PathBuf>,
        output_dir: impl Into<PathBuf>,
    ) -> RunSpec {
        RunSpec {
            run_id: run_id.into(),
            node_id: node_id.into(),
            input_dir: input_dir.into(),
            data_dir: None,
            data_sources: Vec::new(),
            output_dir: output_dir.into(),
            proxy_socket_dir: None,
            env: BTreeMap::new(),
            args: None,
            uid: DEFAULT_UID,
            gid: DEFAULT_GID,
            limits: Limits::default(),
            timeout: DEFAULT_TIMEOUT,
            network_of: None,
        }
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    InvalidSpec(String),
    /// The created container's image is not the pinned image ID.
    ImageMismatch {
        expected: String,
        found: String,
    },
    NonZeroExit(i64),
    OutOfMemory,
    TimedOut(Duration),
    OutputTooLarge {
        cap: u64,
    },
    /// The output directory held more than this many entries.
    OutputTooManyEntries {
        cap: u64,
    },
    OutputUnreadable(String),
    /// Found running by [`crate::reconcile`] after a node restart.
    NodeRestarted,
    /// Found created but never started by [`crate::reconcile`].
    NeverStarted,
    Engine(String),
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::InvalidSpec(why) => write!(f, "invalid run: {why}"),
            FailureReason::ImageMismatch { expected, found } => write!(
                f,
                "the container was created from image {found}, not the pinned {expected}"
            ),
            FailureReason::NonZeroExit(code) => write!(f, "the algorithm exited with code {code}"),
            FailureReason::OutOfMemory => {
                write!(f, "the algorithm ran out of memory and was killed")
            }
            FailureReason::TimedOut(t) => write!(f, "timed out after {}s", t.as_secs()),
            FailureReason::OutputTooLarge { cap } => {
                write!(f, "the output is larger than the cap of {cap} bytes")
            }
            FailureReason::OutputTooManyEntries { cap } => write!(
                f,
                "the output directory holds more than the cap of {cap} entries"
            ),
            FailureReason::OutputUnreadable(why) => write!(f, "the output is unreadable: {why}"),
            FailureReason::NodeRestarted => {
                write!(f, "node restarted while the run was executing")
            }
            FailureReason::NeverStarted => write!(f, "node restarted before the run started"),
            FailureReason::Engine(e) => write!(f, "container engine error: {e}"),
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed { output: Vec<u8> },
    Failed { reason: FailureReason },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed { output } => {
                write!(f, "completed with {} bytes of output", output.len())
            }
            Outcome::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// A run's outcome with what was observed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub run_id: String,
    pub outcome: Outcome,
    pub exit_code: Option<i64>,
    /// The end of stdout and stderr, at most `limits.log_tail_bytes`.
    pub logs: Vec<u8>,
    /// Whether the container was removed afterwards.
    pub removed: bool,
}

impl RunReport {
    fn failed(run_id: &str, reason: FailureReason) -> RunReport {
        RunReport {
            run_id: run_id.to_owned(),
            outcome: Outcome::Failed { reason },
            exit_code: None,
            logs: Vec::new(),
            removed: true,
        }
    }

    /// The failure reason, if the run failed.
    pub fn reason(&self) -> Option<&FailureReason> {
        match &self.outcome {
            Outcome::Failed { reason } => Some(reason),
            Outcome::Completed { .. } => None,
        }
    }

    /// The log tail as text (lossy).
    pub fn logs_text(&self) -> String {
        String::from_utf8_lossy(&self.logs).into_owned()
    }
}

/// Runs a pinned image hardened (see [`ContainerSpec`]) and always removes the container.
///
/// If the future is dropped mid-run the container stays behind, labelled; [`crate::reconcile`]
/// finds and removes it.
pub async fn run_pinned<E: Engine + ?Sized>(
    engine: &E,
    image: &PinnedImage,
    spec: &RunSpec,
) -> RunReport {
    run_image(engine, image.image_id(), spec).await
}

/// Runs `image` hardened. Crate-private: callers outside hold a [`PinnedImage`] or a
/// [`crate::ProbeImage`].
pub(crate) async fn run_image<E: Engine + ?Sized>(
    engine: &E,
    image: &ImageId,
    spec: &RunSpec,
) -> RunReport {
    let started = Instant::now();
    let container_spec = match validate(spec).and_then(|()| container_spec(image, spec)) {
        Ok(s) => s,
        Err(why) => {
            tracing::warn!(run = %spec.run_id, %why, "run refused");
            return RunReport::failed(&spec.run_id, FailureReason::InvalidSpec(why));
        }
    };
    if let Err(why) = prepare_output_dir(&spec.output_dir, spec.uid, spec.gid) {
        return RunReport::failed(&spec.run_id, FailureReason::InvalidSpec(why));
    }
    let id = match engine.create_container(&container_spec).await {
        Ok(id) => id,
        Err(e) => return RunReport::failed(&spec.run_id, FailureReason::Engine(e.to_string())),
    };
    let mut report = run_created(engine, image, spec, &id).await;
    report.removed = remove(engine, &id).await;
    if let Outcome::Completed { .. } = report.outcome {
        // Only a completed run's output is read, and only after the container is gone.
        report.outcome = match collect_output(&spec.output_dir, spec.limits.output_bytes) {
            Ok(output) => Outcome::Completed { output },
            Err(problem) => Outcome::Failed {
                reason: problem.into(),
            },
        };
    }
    match report.outcome {
        // The output was read into the report; keep the file, drop anything else.
        Outcome::Completed { .. } => crate::output::remove_extra_entries(&spec.output_dir),
        // Nothing of a failed run is kept.
        Outcome::Failed { .. } => crate::output::remove_all_entries(&spec.output_dir),
    }
    tracing::info!(
        run = %spec.run_id,
        image = %image,
        outcome = %report.outcome,
        exit_code = ?report.exit_code,
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "run finished"
    );
    report
}

/// The part of a run between create and remove.
async fn run_created<E: Engine + ?Sized>(
    engine: &E,
    image: &ImageId,
    spec: &RunSpec,
    id: &str,
) -> RunReport {
    let fail = |reason| RunReport::failed(&spec.run_id, reason);
    let engine_fail =
        |e: EngineError| RunReport::failed(&spec.run_id, FailureReason::Engine(e.to_string()));
    match engine.inspect_container(id).await {
        Ok(info) if info.image == image.as_str() => {}
        Ok(info) => {
            tracing::error!(run = %spec.run_id, expected = %image, found = %info.image, "container image mismatch");
            return fail(FailureReason::ImageMismatch {
                expected: image.to_string(),
                found: info.image,
            });
        }
        Err(e) => return engine_fail(e),
    }
    if let Err(e) = engine.start_container(id).await {
        return engine_fail(e);
    }
    // The output directory is the host's disk: it is measured while the algorithm runs, and
    // an algorithm that floods it is stopped then, not after it has filled the disk.
    let watch = crate::output::watch(spec.output_dir.clone(), spec.limits.output_bytes);
    let ended = tokio::select! {
        waited = tokio::time::timeout(spec.timeout, engine.wait_container(id)) => match waited {
            Ok(Ok(())) => Ended::Exited,
            Ok(Err(e)) => {
                let _ = engine.kill_container(id).await;
                return engine_fail(e);
            }
            Err(_) => Ended::TimedOut,
        },
        problem = watch => Ended::Overflowed(problem.into()),
    };
    if !matches!(ended, Ended::Exited) {
        match engine.kill_container(id).await {
            Ok(()) => {}
            // It flooded its output and then exited by itself before the kill: the flood is
            // still the reason.
            Err(e) if matches!(ended, Ended::Overflowed(_)) => {
                tracing::debug!(run = %spec.run_id, error = %e, "kill after an output overflow failed");
            }
            Err(e) => return engine_fail(e),
        }
        // Wait for the kill to land so that logs and state are final.
        let _ = tokio::time::timeout(KILL_GRACE, engine.wait_container(id)).await;
    }
    finished(engine, spec, id, ended).await
}

/// How a started container came to stop.
pub(crate) enum Ended {
    Exited,
    TimedOut,
    /// Killed for flooding its output directory.
    Overflowed(FailureReason),
}

/// After a kill, how long to wait for the container to stop.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// How long a SIGKILLed container's `OOMKilled` flag may take to be set after its exit. Half a
/// second was seen too short on a loaded machine (two cores, load 4): the run was then reported
/// as "exited with code 137" instead of out of memory. Only a container killed by someone else
/// than the node waits this long.
const OOM_SETTLE: Duration = Duration::from_secs(3);

/// Reads the state, the logs and judges the outcome of a container that is no longer running
/// (before its output is read).
pub(crate) async fn finished<E: Engine + ?Sized>(
    engine: &E,
    spec: &RunSpec,
    id: &str,
    ended: Ended,
) -> RunReport {
    let mut info = match engine.inspect_container(id).await {
        Ok(info) => info,
        Err(e) => return RunReport::failed(&spec.run_id, FailureReason::Engine(e.to_string())),
    };
    // Docker records `OOMKilled` from containerd's OOM event, which can arrive after the exit
    // event: a container killed by SIGKILL (137) that the node did not kill is looked at again
    // for a moment before its kill is called anything but out of memory.
    if matches!(ended, Ended::Exited) && info.exit_code == Some(137) && !info.oom_killed {
        let deadline = Instant::now() + OOM_SETTLE;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match engine.inspect_container(id).await {
                Ok(again) if again.oom_killed => {
                    info = again;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    let logs = engine
        .logs_tail(id, spec.limits.log_tail_bytes)
        .await
        .unwrap_or_else(|e| format!("(logs unavailable: {e})").into_bytes());
    let reason = match ended {
        Ended::TimedOut => Some(FailureReason::TimedOut(spec.timeout)),
        Ended::Overflowed(reason) => Some(reason),
        Ended::Exited => judge(
            info.oom_killed,
            crate::output::overflow(&spec.output_dir, spec.limits.output_bytes),
            info.exit_code,
        ),
    };
    RunReport {
        run_id: spec.run_id.clone(),
        outcome: match reason {
            Some(reason) => Outcome::Failed { reason },
            // the output is read after removal
            None => Outcome::Completed { output: Vec::new() },
        },
        exit_code: info.exit_code,
        logs,
        removed: false,
    }
}

/// The failure of a container that exited by itself, if any, in order of precedence: out of
/// memory, output directory over its caps (the file-size limit kills a writer with SIGXFSZ, so
/// this goes before the exit code), nonzero exit.
pub(crate) fn judge(
    oom_killed: bool,
    output_overflow: Option<OutputProblem>,
    exit_code: Option<i64>,
) -> Option<FailureReason> {
    if oom_killed {
        return Some(FailureReason::OutOfMemory);
    }
    if let Some(problem) = output_overflow {
        return Some(problem.into());
    }
    match exit_code {
        Some(0) => None,
        Some(code) => Some(FailureReason::NonZeroExit(code)),
        None => Some(FailureReason::Engine(
            "the engine reported no exit code".into(),
        )),
    }
}

/// Removes the container, retrying once; returns whether it is gone.
pub(crate) async fn remove<E: Engine + ?Sized>(engine: &E, id: &str) -> bool {
    for attempt in 0..2 {
        match engine.remove_container(id).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(container = %id, attempt, error = %e, "removing the container failed")
            }
        }
    }
    false
}

impl From<OutputProblem> for FailureReason {
    fn from(p: OutputProblem) -> Self {
        match p {
            OutputProblem::TooLarge { cap } => FailureReason::OutputTooLarge { cap },
            OutputProblem::TooManyEntries { cap } => FailureReason::OutputTooManyEntries { cap },
            OutputProblem::Unreadable(why) => FailureReason::OutputUnreadable(why),
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= ID_MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Host paths that must never be mounted: the root and anything that holds the engine's socket.
const FORBIDDEN_SOURCES: &[&str] = &[
    "/",
    "/run",
    "/var",
    "/var/run",
    "/run/docker",
    "/proc",
    "/sys",
    "/dev",
];

pub(crate) fn check_dir(what: &str, dir: &Path) -> Result<PathBuf, String> {
    if !dir.is_absolute() {
        return Err(format!(
            "the {what} directory {} must be an absolute path",
            dir.display()
        ));
    }
    let canonical = dir
        .canonicalize()
        .map_err(|e| format!("the {what} directory {} is not usable: {e}", dir.display()))?;
    if !canonical.is_dir() {
        return Err(format!(
            "the {what} path {} is not a directory",
            dir.display()
        ));
    }
    let s = canonical.to_string_lossy();
    if FORBIDDEN_SOURCES.contains(&s.as_ref())
        || s.contains("docker.sock")
        || s.contains(',')
        || s.contains(':')
    {
        return Err(format!(
            "the {what} directory {} may not be mounted into an algorithm",
            dir.display()
        ));
    }
    Ok(canonical)
}

/// Like [`check_dir`], for a data source that may also be a regular file.
fn check_source(name: &str, path: &Path) -> Result<PathBuf, String> {
    if !valid_id(name) || name.starts_with('.') {
        return Err(format!(
            "data source name `{name}` must be 1 to {ID_MAX_LEN} of [A-Za-z0-9_.-], not starting with a dot"
        ));
    }
    let what = format!("data source `{name}`");
    if path.is_file() || path.canonicalize().is_ok_and(|c| c.is_file()) {
        let canonical = path
            .canonicalize()
            .map_err(|e| format!("the {what} {} is not usable: {e}", path.display()))?;
        let s = canonical.to_string_lossy();
        if !path.is_absolute() || s.contains("docker.sock") || s.contains(',') || s.contains(':') {
            return Err(format!(
                "the {what} {} may not be mounted into an algorithm",
                path.display()
            ));
        }
        return Ok(canonical);
    }
    check_dir(&what, path)
}

fn validate(spec: &RunSpec) -> Result<(), String> {
    if spec.data_dir.is_some() && !spec.data_sources.is_empty() {
        return Err("give data_dir or data_sources, not both".into());
    }
    if !valid_id(&spec.run_id) {
        return Err(format!(
            "run id `{}` must be 1 to {ID_MAX_LEN} of [A-Za-z0-9_.-]",
            spec.run_id
        ));
    }
    if !valid_id(&spec.node_id) {
        return Err(format!(
            "node id `{}` must be 1 to {ID_MAX_LEN} of [A-Za-z0-9_.-]",
            spec.node_id
        ));
    }
    if spec.uid == 0 || spec.gid == 0 {
        return Err("algorithms never run as root: pick a uid and gid other than 0".into());
    }
    if let Some(id) = &spec.network_of
        && !(id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    {
        return Err(format!("`{id}` is not a container ID to join"));
    }
    for name in spec.env.keys() {
        let ok = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(format!(
                "environment variable name `{name}` must be [A-Za-z_][A-Za-z0-9_]*"
            ));
        }
        if [ENV_INPUT_DIR, ENV_DATA_DIR, ENV_OUTPUT, ENV_PROXY_SOCKET].contains(&name.as_str()) {
            return Err(format!(
                "environment variable `{name}` is set by the runtime"
            ));
        }
    }
    let l = &spec.limits;
    if l.memory_bytes < (6 << 20)
        || l.nano_cpus == 0
        || l.pids == 0
        || l.scratch_bytes == 0
        || l.log_file_bytes == 0
    {
        return Err(
            "limits must be positive, and memory at least 6 MiB (the engine's minimum)".into(),
        );
    }
    if spec.timeout.is_zero() {
        return Err("the timeout must be positive".into());
    }
    Ok(())
}

/// Builds the hardened container spec of a validated run.
pub(crate) fn container_spec(image: &ImageId, spec: &RunSpec) -> Result<ContainerSpec, String> {
    let mut mounts = vec![
        BindMount {
            source: check_dir("input", &spec.input_dir)?,
            target: INPUT_MOUNT.to_owned(),
            read_only: true,
        },
        BindMount {
            source: check_dir("output", &spec.output_dir)?,
            target: OUTPUT_MOUNT.to_owned(),
            read_only: false,
        },
    ];
    let mut env = vec![
        format!("{ENV_INPUT_DIR}={INPUT_MOUNT}"),
        format!("{ENV_OUTPUT}={OUTPUT_MOUNT}/{OUTPUT_FILE}"),
    ];
    if let Some(data) = &spec.data_dir {
        mounts.push(BindMount {
            source: check_dir("data", data)?,
            target: DATA_MOUNT.to_owned(),
            read_only: true,
        });
        env.push(format!("{ENV_DATA_DIR}={DATA_MOUNT}"));
    }
    for (name, path) in &spec.data_sources {
        mounts.push(BindMount {
            source: check_source(name, path)?,
            target: format!("{DATA_MOUNT}/{name}"),
            read_only: true,
        });
    }
    if !spec.data_sources.is_empty() {
        env.push(format!("{ENV_DATA_DIR}={DATA_MOUNT}"));
    }
    if let Some(proxy) = &spec.proxy_socket_dir {
        mounts.push(BindMount {
            source: check_dir("proxy socket", proxy)?,
            target: PROXY_MOUNT.to_owned(),
            read_only: true,
        });
        env.push(format!("{ENV_PROXY_SOCKET}={PROXY_MOUNT}/{PROXY_SOCKET}"));
    }
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    let labels = BTreeMap::from([
        (LABEL_RUN.to_owned(), spec.run_id.clone()),
        (LABEL_NODE.to_owned(), spec.node_id.clone()),
        (
            LABEL_OUTPUT_CAP.to_owned(),
            spec.limits.output_bytes.to_string(),
        ),
    ]);
    Ok(ContainerSpec {
        name: container_name(&spec.node_id, &spec.run_id),
        image: image.clone(),
        user: format!("{}:{}", spec.uid, spec.gid),
        env,
        args: spec.args.clone(),
        labels,
        mounts,
        tmpfs_target: SCRATCH_MOUNT,
        tmpfs_bytes: spec.limits.scratch_bytes,
        memory_bytes: spec.limits.memory_bytes,
        nano_cpus: spec.limits.nano_cpus,
        pids: spec.limits.pids,
        file_size_bytes: spec.limits.output_bytes.saturating_add(1),
        log_file_bytes: spec.limits.log_file_bytes,
        network_of: spec.network_of.clone(),
    })
}

/// `warden-<node>-<run>`.
pub fn container_name(node_id: &str, run_id: &str) -> String {
    format!("warden-{node_id}-{run_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_from_configuration_default_missing_keys_and_refuse_unknown_ones() {
        let limits: Limits = toml::from_str("memory_bytes = 1048576\npids = 16").unwrap();
        assert_eq!(
            limits,
            Limits {
                memory_bytes: 1 << 20,
                pids: 16,
                ..Limits::default()
            }
        );
        let err = toml::from_str::<Limits>("memory = 1").unwrap_err();
        assert!(err.to_string().contains("unknown field `memory`"), "{err}");
    }

    #[test]
    fn named_data_sources_are_mounted_read_only_under_the_data_mount() {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = dir.path().join(n);
            std::fs::create_dir_all(&p).unwrap();
            p
        };
        let file = dir.path().join("records.csv");
        std::fs::write(&file, "age\n1\n").unwrap();
        let mut spec = RunSpec::new("r1", "n1", d("in"), d("out"));
        spec.data_sources = vec![
            ("records".into(), file.clone()),
            ("images".into(), d("img")),
        ];
        let image = ImageId::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let cs = container_spec(&image, &spec).unwrap();
        let data: Vec<(&str, bool)> = cs
            .mounts()
            .iter()
            .filter(|m| m.target.starts_with(DATA_MOUNT))
            .map(|m| (m.target.as_str(), m.read_only))
            .collect();
        assert_eq!(
            data,
            [("/mnt/data/records", true), ("/mnt/data/images", true)]
        );
        assert!(cs.env().contains(&format!("{ENV_DATA_DIR}={DATA_MOUNT}")));

        spec.data_sources = vec![("../x".into(), file.clone())];
        assert!(container_spec(&image, &spec).is_err());
        spec.data_sources = vec![("x".into(), dir.path().join("missing"))];
        assert!(container_spec(&image, &spec).is_err());
        spec.data_sources = vec![("x".into(), file)];
        spec.data_dir = Some(d("data"));
        assert!(validate(&spec).is_err());
    }
}
