//! [`Engine`] on the local Docker engine, through bollard with a negotiated API version.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::engine::{ContainerInfo, ContainerSpec, ContainerState, Engine, EngineError, ImageInfo};

/// The local Docker engine.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: Docker,
}

impl DockerEngine {
    /// Connects to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`) and negotiates the
    /// API version down to what the engine speaks (Docker 20.10 speaks 1.41).
    pub async fn connect() -> Result<DockerEngine, EngineError> {
        let docker =
            Docker::connect_with_local_defaults().map_err(|e| unreachable("connect", e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable("negotiate version", e))?;
        Ok(DockerEngine { docker })
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let v = self.docker.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }
}

fn unreachable(op: &'static str, e: BollardError) -> EngineError {
    EngineError::Unreachable {
        op,
        message: e.to_string(),
    }
}

fn engine_error(op: &'static str, what: &'static str, id: &str, e: BollardError) -> EngineError {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => EngineError::NotFound {
            op,
            what,
            id: id.to_owned(),
        },
        BollardError::DockerResponseServerError { message, .. } => {
            EngineError::Refused { op, message }
        }
        BollardError::DockerStreamError { error } => EngineError::Refused { op, message: error },
        other => unreachable(op, other),
    }
}

fn is_status(e: &BollardError, codes: &[u16]) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if codes.contains(status_code))
}

/// The Docker form of a hardened [`ContainerSpec`]: every fixed control is set here.
pub(crate) fn docker_config(spec: &ContainerSpec) -> ContainerCreateBody {
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let binds = spec
        .mounts
        .iter()
        .map(|m| {
            format!(
                "{}:{}:{}",
                m.source.display(),
                m.target,
                if m.read_only { "ro" } else { "rw" }
            )
        })
        .collect();
    let (tmpfs_target, tmpfs_bytes) = spec.tmpfs();
    let tmpfs = HashMap::from([(
        tmpfs_target.to_owned(),
        format!("rw,nosuid,nodev,noexec,size={tmpfs_bytes},mode=1777"),
    )]);
    let ulimit = |name: &str, value: i64| ResourcesUlimits {
        name: Some(name.to_owned()),
        soft: Some(value),
        hard: Some(value),
    };
    let host_config = HostConfig {
        // No network; or the namespace of a sidecar that has none either (only `lo`).
        network_mode: Some(match &spec.network_of {
            None => "none".into(),
            Some(id) => format!("container:{id}"),
        }),
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".into()]),
        cap_add: None,
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        privileged: Some(false),
        binds: Some(binds),
        tmpfs: Some(tmpfs),
        // /dev/shm is a second writable tmpfs; keep it tiny (it also counts against memory).
        shm_size: Some(SHM_BYTES),
        memory: Some(to_i64(spec.memory_bytes)),
        memory_swap: Some(to_i64(spec.memory_bytes)),
        memory_swappiness: None,
        oom_kill_disable: Some(false),
        nano_cpus: Some(to_i64(spec.nano_cpus)),
        pids_limit: Some(to_i64(spec.pids)),
        ulimits: Some(vec![
            ulimit("fsize", to_i64(spec.file_size_bytes)),
            ulimit("core", 0),
            ulimit("nofile", NOFILE),
        ]),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".into(), spec.log_file_bytes.to_string()),
                ("max-file".into(), "1".into()),
            ])),
        }),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        auto_remove: Some(false),
        ipc_mode: Some("private".into()),
        cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
        // Under host memory pressure the algorithm is killed before anything else.
        oom_score_adj: Some(1000),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.as_str().to_owned()),
        user: Some(spec.user.clone()),
        env: Some(spec.env.clone()),
        cmd: spec.args.clone(),
        labels: Some(spec.labels.clone().into_iter().collect()),
        // The engine refuses a hostname for a container that joins another's namespaces.
        hostname: spec.network_of.is_none().then(|| "algorithm".into()),
        working_dir: Some("/".into()),
        network_disabled: spec.network_of.is_none().then_some(true),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Size of `/dev/shm`.
const SHM_BYTES: i64 = 1 << 20;
/// Open files per process.
const NOFILE: i64 = 1024;

#[async_trait]
impl Engine for DockerEngine {
    async fn pull(&self, reference: &str) -> Result<(), EngineError> {
        let options = CreateImageOptions {
            from_image: Some(reference.to_owned()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| engine_error("pull", "image", reference, e))?;
        }
        Ok(())
    }

    async fn inspect_image(&self, reference: &str) -> Result<ImageInfo, EngineError> {
        let op = "inspect image";
        let image = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(|e| engine_error(op, "image", reference, e))?;
        Ok(ImageInfo {
            id: image
                .id
                .ok_or(EngineError::Incomplete { op, field: "Id" })?,
            repo_digests: image.repo_digests.unwrap_or_default(),
        })
    }

    async fn import_image(
        &self,
        rootfs_tar: Vec<u8>,
        repository: &str,
        changes: &[String],
    ) -> Result<String, EngineError> {
        let op = "import image";
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repository.to_owned()),
            changes: changes.to_vec(),
            ..Default::default()
        };
        let body = bollard::body_full(rootfs_tar.into());
        let mut stream = self.docker.create_image(Some(options), Some(body), None);
        // The engine's last status message is the new image's ID; reading it (rather than
        // inspecting the repository name afterwards) is safe against a concurrent import.
        let mut id = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| engine_error(op, "image", repository, e))?;
            if let Some(status) = info.status.filter(|s| s.starts_with("sha256:")) {
                id = Some(status);
            }
        }
        id.ok_or(EngineError::Incomplete {
            op,
            field: "the new image ID",
        })
    }

    async fn load_image(&self, archive: &std::path::Path) -> Result<(), EngineError> {
        use tokio::io::AsyncReadExt as _;
        let op = "load image";
        let options = bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build();
        let file = tokio::fs::File::open(archive)
            .await
            .map_err(|e| EngineError::Refused {
                op,
                message: format!("cannot read the archive {}: {e}", archive.display()),
            })?;
        // Streamed from the file: an image is never held in memory whole.
        let chunks = futures_util::stream::unfold(file, |mut f| async move {
            let mut buf = vec![0u8; 256 << 10];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let body = bollard::body_try_stream(chunks);
        let mut stream = self.docker.import_image(options, body, None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| engine_error(op, "image", "the archive", e))?;
        }
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let op = "create container";
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), docker_config(spec))
            .await
            .map_err(|e| engine_error(op, "image", spec.image.as_str(), e))?;
        Ok(created.id)
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, EngineError> {
        let op = "inspect container";
        let c = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| engine_error(op, "container", id, e))?;
        let state = c.state.unwrap_or_default();
        let status = match state.status {
            Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
            Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
            Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
            Some(other) => ContainerState::Other(other.to_string()),
            None => {
                return Err(EngineError::Incomplete {
                    op,
                    field: "State.Status",
                });
            }
        };
        let labels: BTreeMap<String, String> = c
            .config
            .and_then(|cfg| cfg.labels)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mounts = c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| Some((PathBuf::from(m.source?), m.destination?)))
            .collect();
        Ok(ContainerInfo {
            id: c.id.ok_or(EngineError::Incomplete { op, field: "Id" })?,
            image: c
                .image
                .ok_or(EngineError::Incomplete { op, field: "Image" })?,
            state: status,
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            labels,
            mounts,
        })
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| engine_error("start container", "container", id, e))
    }

    async fn wait_container(&self, id: &str) -> Result<(), EngineError> {
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        'request: loop {
            let mut stream = self.docker.wait_container(id, Some(options.clone()));
            while let Some(item) = stream.next().await {
                match item {
                    Ok(_) => {}
                    // bollard reports a nonzero exit code as an error; the exit code is read by
                    // inspecting the container afterwards.
                    Err(BollardError::DockerContainerWaitError { .. }) => {}
                    // The client timeout bounds the wait for response headers; API >= 1.30
                    // sends them at once, but ask again rather than fail a long run.
                    Err(BollardError::RequestTimeoutError) => continue 'request,
                    Err(e) => return Err(engine_error("wait container", "container", id, e)),
                }
            }
            return Ok(());
        }
    }

    async fn kill_container(&self, id: &str) -> Result<(), EngineError> {
        let options = KillContainerOptions {
            signal: "SIGKILL".into(),
        };
        match self.docker.kill_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 409: not running; 404: gone.
            Err(e) if is_status(&e, &[404, 409]) => Ok(()),
            Err(e) => Err(engine_error("kill container", "container", id, e)),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(engine_error("remove container", "container", id, e)),
        }
    }

    async fn logs_tail(&self, id: &str, max_bytes: usize) -> Result<Vec<u8>, EngineError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: "all".into(),
            ..Default::default()
        };
        let mut tail: Vec<u8> = Vec::new();
        let mut stream = self.docker.logs(id, Some(options));
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|e| engine_error("container logs", "container", id, e))?;
            tail.extend_from_slice(&chunk.into_bytes());
            if tail.len() > max_bytes.saturating_mul(2) {
                tail.drain(..tail.len() - max_bytes);
            }
        }
        if tail.len() > max_bytes {
            tail.drain(..tail.len() - max_bytes);
        }
        Ok(tail)
    }

    async fn list_containers(&self, key: &str, value: &str) -> Result<Vec<String>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{key}={value}")],
            )])),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| engine_error("list containers", "label", key, e))?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }
}
