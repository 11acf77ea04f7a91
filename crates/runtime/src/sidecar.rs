//! A run's sidecar: a container from a static one-file image (imported, like the probe), as
//! hardened as an algorithm's and with no network, whose network namespace (only `lo`) the
//! algorithm's container joins ([`crate::RunSpec::network_of`]). The vantage6 contract's
//! loopback shim runs in one (docs/vantage6.md). Its only mount is the run's proxy socket
//! directory, read-only. It carries the node's labels and [`LABEL_SIDECAR`], so
//! [`crate::reconcile`] removes one a crashed node left without reporting it as a run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine::{BindMount, ContainerSpec, ContainerState, Engine, ImageId};
use crate::probe::single_file_tar;
use crate::run::{
    DEFAULT_GID, DEFAULT_UID, LABEL_NODE, LABEL_RUN, PROXY_MOUNT, SCRATCH_MOUNT, check_dir,
    container_name, remove,
};

/// Repository name given to an imported sidecar image.
pub const SIDECAR_REPOSITORY: &str = "warden-sidecar";
/// Label on every sidecar container (its value: the sidecar's name).
pub const LABEL_SIDECAR: &str = "org.warden.sidecar";
const SIDECAR_PATH: &str = "sidecar";
/// A sidecar's limits: small, fixed.
const MEMORY_BYTES: u64 = 32 << 20;
const NANO_CPUS: u64 = 250_000_000;
const PIDS: u64 = 48;
const SCRATCH_BYTES: u64 = 1 << 20;
const LOG_BYTES: u64 = 64 << 10;
/// How long a created sidecar may take to be running.
const START_WAIT: Duration = Duration::from_secs(10);

/// An imported sidecar image: its ID from the engine's import answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarImage {
    id: ImageId,
    name: String,
}

impl SidecarImage {
    pub fn image_id(&self) -> &ImageId {
        &self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Wraps a static binary into a one-file image (`/sidecar`, its entry point) named `name`
/// (`[a-z0-9-]`).
pub async fn import_sidecar<E: Engine + ?Sized>(
    engine: &E,
    name: &str,
    binary: &[u8],
) -> Result<SidecarImage, String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    {
        return Err(format!("sidecar name `{name}` must be [a-z0-9-]"));
    }
    let tar = single_file_tar(SIDECAR_PATH, binary, 0o755);
    let changes = vec![format!("ENTRYPOINT [\"/{SIDECAR_PATH}\"]")];
    let id = engine
        .import_image(tar, &format!("{SIDECAR_REPOSITORY}-{name}"), &changes)
        .await
        .map_err(|e| format!("importing the {name} sidecar image failed: {e}"))?;
    let id = ImageId::parse(&id)
        .ok_or_else(|| format!("the engine gave a malformed image ID `{id}`"))?;
    Ok(SidecarImage {
        id,
        name: name.to_owned(),
    })
}

/// A running sidecar of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    id: String,
}

impl Sidecar {
    /// Creates and starts the sidecar of run `run_id` hardened (read-only root, uid 65534, no
    /// capabilities, no new privileges, no network, small limits), with `proxy_dir` mounted
    /// read-only at `/mnt/proxy`, and waits until it runs. On any failure nothing is left.
    pub async fn start<E: Engine + ?Sized>(
        engine: &E,
        image: &SidecarImage,
        node_id: &str,
        run_id: &str,
        proxy_dir: &Path,
    ) -> Result<Sidecar, String> {
        let run_label = format!("{run_id}-{}", image.name);
        let spec = ContainerSpec {
            name: container_name(node_id, &run_label),
            image: image.id.clone(),
            user: format!("{DEFAULT_UID}:{DEFAULT_GID}"),
            env: Vec::new(),
            args: None,
            labels: BTreeMap::from([
                (LABEL_RUN.to_owned(), run_label),
                (LABEL_NODE.to_owned(), node_id.to_owned()),
                (LABEL_SIDECAR.to_owned(), image.name.clone()),
            ]),
            mounts: vec![BindMount {
                source: check_dir("proxy socket", proxy_dir)?,
                target: PROXY_MOUNT.to_owned(),
                read_only: true,
            }],
            tmpfs_target: SCRATCH_MOUNT,
            tmpfs_bytes: SCRATCH_BYTES,
            memory_bytes: MEMORY_BYTES,
            nano_cpus: NANO_CPUS,
            pids: PIDS,
            file_size_bytes: 1,
            log_file_bytes: LOG_BYTES,
            network_of: None,
        };
        let id = engine
            .create_container(&spec)
            .await
            .map_err(|e| format!("cannot create the {} sidecar: {e}", image.name))?;
        let sidecar = Sidecar { id };
        match sidecar.started(engine, image).await {
            Ok(()) => Ok(sidecar),
            Err(e) => {
                sidecar.remove(engine).await;
                Err(e)
            }
        }
    }

    async fn started<E: Engine + ?Sized>(
        &self,
        engine: &E,
        image: &SidecarImage,
    ) -> Result<(), String> {
        let name = &image.name;
        let info = engine
            .inspect_container(&self.id)
            .await
            .map_err(|e| format!("cannot inspect the {name} sidecar: {e}"))?;
        if info.image != image.id.as_str() {
            return Err(format!(
                "the {name} sidecar was created from image {}, not {}",
                info.image, image.id
            ));
        }
        engine
            .start_container(&self.id)
            .await
            .map_err(|e| format!("cannot start the {name} sidecar: {e}"))?;
        let deadline = Instant::now() + START_WAIT;
        loop {
            let info = engine
                .inspect_container(&self.id)
                .await
                .map_err(|e| format!("cannot inspect the {name} sidecar: {e}"))?;
            match info.state {
                ContainerState::Running => return Ok(()),
                ContainerState::Exited => {
                    return Err(format!(
                        "the {name} sidecar exited at once (code {:?})",
                        info.exit_code
                    ));
                }
                _ if Instant::now() > deadline => {
                    return Err(format!(
                        "the {name} sidecar did not start within {START_WAIT:?}"
                    ));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The container ID, for [`crate::RunSpec::network_of`].
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Kills and removes it; whether it is gone.
    pub async fn remove<E: Engine + ?Sized>(&self, engine: &E) -> bool {
        let _ = engine.kill_container(&self.id).await;
        remove(engine, &self.id).await
    }
}
