//! Runs an algorithm exactly as verified, isolated, on the local container engine.
//!
//! - [`pull_pinned`] pulls `repository@digest`, inspects it and checks `RepoDigests`; the
//!   resulting [`PinnedImage`] is the only way to [`run_pinned`], and containers are created from
//!   its image ID only, then inspected to confirm that ID.
//! - [`run_pinned`] runs it hardened: no network, non-root, read-only root, no capabilities,
//!   `no-new-privileges`, memory/CPU/pids/file-size limits, capped scratch tmpfs, wall-clock
//!   timeout, only the input, data, output and proxy-socket mounts; the output directory is
//!   measured while the container runs and the run stopped once it passes its cap in bytes or
//!   [`OUTPUT_MAX_ENTRIES`]. It always removes the container and returns an [`Outcome`].
//! - [`reconcile`] settles a node's leftover containers after a crash.
//! - [`self_check`] proves isolation at node start-up with a probe image.
//!
//! The engine is the [`Engine`] trait; [`DockerEngine`] is the Docker implementation.
//! docs/isolation.md lists each control and the test that attacks it.

#![forbid(unsafe_code)]

mod docker;
mod engine;
mod output;
mod pinned;
mod probe;
mod reconcile;
mod run;
mod sidecar;

pub use docker::DockerEngine;
pub use engine::{
    BindMount, ContainerInfo, ContainerSpec, ContainerState, Engine, EngineError, ImageId,
    ImageInfo,
};
pub use output::OUTPUT_MAX_ENTRIES;
pub use pinned::{PinError, PinnedImage, load_pinned, pull_pinned};
pub use probe::{IsolationError, PROBE_REPOSITORY, ProbeImage, import_probe, self_check};
pub use reconcile::reconcile;
pub use run::{
    DATA_MOUNT, DEFAULT_GID, DEFAULT_LOG_FILE_BYTES, DEFAULT_LOG_TAIL_BYTES, DEFAULT_MEMORY_BYTES,
    DEFAULT_NANO_CPUS, DEFAULT_OUTPUT_BYTES, DEFAULT_PIDS, DEFAULT_SCRATCH_BYTES, DEFAULT_TIMEOUT,
    DEFAULT_UID, ENV_DATA_DIR, ENV_INPUT_DIR, ENV_OUTPUT, ENV_PROXY_SOCKET, FailureReason,
    ID_MAX_LEN, INPUT_MOUNT, LABEL_NODE, LABEL_OUTPUT_CAP, LABEL_RUN, Limits, OUTPUT_FILE,
    OUTPUT_MOUNT, Outcome, PROXY_MOUNT, PROXY_SOCKET, RunReport, RunSpec, SCRATCH_MOUNT,
    container_name, run_pinned,
};
pub use sidecar::{LABEL_SIDECAR, SIDECAR_REPOSITORY, Sidecar, SidecarImage, import_sidecar};

#[cfg(test)]
mod fake;
