//! An in-memory [`Engine`] for the runtime's own logic, where the real engine cannot be made to
//! misbehave (a container created from another image, a wait that never returns). The real
//! engine is tested in tests/.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::docker::docker_config;
use crate::engine::{
    ContainerInfo, ContainerSpec, ContainerState, Engine, EngineError, ImageId, ImageInfo,
};
use crate::pinned::{PinError, pull_pinned};
use crate::run::{
    FailureReason, LABEL_NODE, LABEL_OUTPUT_CAP, LABEL_RUN, OUTPUT_FILE, OUTPUT_MOUNT, RunSpec,
    container_spec, run_image,
};

const IMAGE: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

#[derive(Debug, Default)]
struct Fake {
    repo_digests: Vec<String>,
    /// The image a created container reports (default: the one asked for).
    created_image: Option<String>,
    exit_code: i64,
    hang: bool,
    logs: Option<Vec<u8>>,
    containers: BTreeMap<String, ContainerInfo>,
    calls: Vec<String>,
}

#[derive(Debug, Default)]
struct FakeEngine(Mutex<Fake>);

impl FakeEngine {
    fn with<R>(&self, f: impl FnOnce(&mut Fake) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
    fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }
}

#[async_trait]
impl Engine for FakeEngine {
    async fn pull(&self, reference: &str) -> Result<(), EngineError> {
        self.with(|s| s.calls.push(format!("pull {reference}")));
        Ok(())
    }
    async fn inspect_image(&self, _: &str) -> Result<ImageInfo, EngineError> {
        Ok(self.with(|s| ImageInfo {
            id: IMAGE.into(),
            repo_digests: s.repo_digests.clone(),
        }))
    }
    async fn import_image(&self, _: Vec<u8>, _: &str, _: &[String]) -> Result<String, EngineError> {
        Ok(IMAGE.into())
    }
    async fn load_image(&self, archive: &std::path::Path) -> Result<(), EngineError> {
        self.with(|s| s.calls.push(format!("load {}", archive.display())));
        Ok(())
    }
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        self.with(|s| {
            s.calls.push(format!("create {}", spec.image()));
            let info = ContainerInfo {
                id: "c1".into(),
                image: s
                    .created_image
                    .clone()
                    .unwrap_or_else(|| spec.image().to_string()),
                state: ContainerState::Created,
                exit_code: None,
                oom_killed: false,
                labels: spec.labels().clone(),
                mounts: spec
                    .mounts()
                    .iter()
                    .map(|m| (m.source.clone(), m.target.to_owned()))
                    .collect(),
            };
            s.containers.insert("c1".into(), info);
            Ok("c1".into())
        })
    }
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, EngineError> {
        self.with(|s| s.containers.get(id).cloned())
            .ok_or(EngineError::NotFound {
                op: "inspect",
                what: "container",
                id: id.into(),
            })
    }
    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        self.with(|s| {
            s.calls.push(format!("start {id}"));
            let code = s.exit_code;
            let hang = s.hang;
            if let Some(c) = s.containers.get_mut(id) {
                if hang {
                    c.state = ContainerState::Running;
                } else {
                    c.state = ContainerState::Exited;
                    c.exit_code = Some(code);
                }
            }
        });
        Ok(())
    }
    async fn wait_container(&self, id: &str) -> Result<(), EngineError> {
        loop {
            let running = self.with(|s| {
                s.containers
                    .get(id)
                    .is_some_and(|c| c.state == ContainerState::Running)
            });
            if !running {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    async fn kill_container(&self, id: &str) -> Result<(), EngineError> {
        self.with(|s| {
            s.calls.push(format!("kill {id}"));
            if let Some(c) = s.containers.get_mut(id) {
                c.state = ContainerState::Exited;
                c.exit_code = Some(137);
            }
        });
        Ok(())
    }
    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.with(|s| {
            s.calls.push(format!("remove {id}"));
            s.containers.remove(id);
        });
        Ok(())
    }
    async fn logs_tail(&self, _: &str, _: usize) -> Result<Vec<u8>, EngineError> {
        Ok(self
            .with(|s| s.logs.clone())
            .unwrap_or_else(|| b"log line\n".to_vec()))
    }
    async fn list_containers(&self, key: &str, value: &str) -> Result<Vec<String>, EngineError> {
        Ok(self.with(|s| {
            s.containers
                .values()
                .filter(|c| c.labels.get(key).map(String::as_str) == Some(value))
                .map(|c| c.id.clone())
                .collect()
        }))
    }
}

fn image() -> ImageId {
    ImageId::parse(IMAGE).unwrap()
}

fn dirs() -> (tempfile::TempDir, RunSpec) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("in")).unwrap();
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    let spec = RunSpec::new(
        "run-1",
        "node-1",
        tmp.path().join("in"),
        tmp.path().join("out"),
    );
    (tmp, spec)
}

#[tokio::test]
async fn pinning_refuses_an_image_whose_repo_digests_lack_the_digest() {
    let engine = FakeEngine::default();
    engine.with(|s| {
        s.repo_digests = vec![format!(
            "127.0.0.1:5000/algo@{}",
            OTHER.replace("bbbb", "2222")
        )]
    });
    let repo = warden_reference::Repository::parse("127.0.0.1:5000/algo").unwrap();
    let digest = warden_reference::Digest::parse(DIGEST).unwrap();
    let err = pull_pinned(&engine, &repo, &digest).await.unwrap_err();
    assert!(matches!(err, PinError::DigestNotListed { .. }), "{err}");
    assert_eq!(
        engine.calls(),
        vec![format!("pull 127.0.0.1:5000/algo@{DIGEST}")]
    );

    engine.with(|s| s.repo_digests.push(format!("127.0.0.1:5000/algo@{DIGEST}")));
    let pinned = pull_pinned(&engine, &repo, &digest).await.unwrap();
    assert_eq!(pinned.image_id().as_str(), IMAGE);
}

#[tokio::test]
async fn a_container_from_another_image_is_removed_and_never_started() {
    let engine = FakeEngine::default();
    engine.with(|s| s.created_image = Some(OTHER.into()));
    let (_tmp, spec) = dirs();
    let report = run_image(&engine, &image(), &spec).await;
    assert!(
        matches!(report.reason(), Some(FailureReason::ImageMismatch { found, .. }) if found == OTHER),
        "{report:?}"
    );
    assert_eq!(
        engine.calls(),
        vec![format!("create {IMAGE}"), "remove c1".into()]
    );
    assert!(report.removed);
}

#[tokio::test]
async fn a_run_past_its_timeout_is_killed_and_removed() {
    let engine = FakeEngine::default();
    engine.with(|s| s.hang = true);
    let (_tmp, mut spec) = dirs();
    spec.timeout = Duration::from_millis(50);
    let report = run_image(&engine, &image(), &spec).await;
    assert_eq!(report.reason().unwrap().to_string(), "timed out after 0s");
    assert_eq!(
        report.reason(),
        Some(&FailureReason::TimedOut(spec.timeout))
    );
    let calls = engine.calls();
    assert!(
        calls.contains(&"kill c1".to_owned()) && calls.last().unwrap() == "remove c1",
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_stale_output_is_never_taken_and_nonzero_exits_fail() {
    let engine = FakeEngine::default();
    let (_tmp, spec) = dirs();
    // The fake "algorithm" writes its output when the container exits.
    std::fs::write(spec.output_dir.join(OUTPUT_FILE), b"stale").unwrap();
    let report = run_image(&engine, &image(), &spec).await;
    // A stale output from before the run is never taken for this run's output: the run wrote
    // none, which is an empty result.
    assert!(
        matches!(&report.outcome, crate::run::Outcome::Completed { output } if output.is_empty()),
        "{:?}",
        report.outcome
    );

    engine.with(|s| s.exit_code = 3);
    let report = run_image(&engine, &image(), &spec).await;
    assert_eq!(report.reason(), Some(&FailureReason::NonZeroExit(3)));
    assert_eq!(report.logs, b"log line\n");
}

#[tokio::test]
async fn invalid_specs_are_refused_before_the_engine_is_called() {
    let engine = FakeEngine::default();
    let (_tmp, spec) = dirs();
    type Mutate = Box<dyn Fn(&mut RunSpec)>;
    let cases: Vec<(&str, Mutate)> = vec![
        ("root uid", Box::new(|s| s.uid = 0)),
        ("root gid", Box::new(|s| s.gid = 0)),
        ("bad run id", Box::new(|s| s.run_id = "a/b".into())),
        ("empty node id", Box::new(|s| s.node_id = String::new())),
        (
            "relative input",
            Box::new(|s| s.input_dir = PathBuf::from("in")),
        ),
        (
            "missing output",
            Box::new(|s| s.output_dir = PathBuf::from("/nonexistent/out")),
        ),
        (
            "root as data",
            Box::new(|s| s.data_dir = Some(PathBuf::from("/"))),
        ),
        (
            "run dir as proxy dir",
            Box::new(|s| s.proxy_socket_dir = Some(PathBuf::from("/var/run"))),
        ),
        (
            "reserved env",
            Box::new(|s| {
                s.env.insert("WARDEN_OUTPUT".into(), "/etc/passwd".into());
            }),
        ),
        (
            "bad env name",
            Box::new(|s| {
                s.env.insert("A=B".into(), "x".into());
            }),
        ),
        ("zero timeout", Box::new(|s| s.timeout = Duration::ZERO)),
        ("tiny memory", Box::new(|s| s.limits.memory_bytes = 1024)),
    ];
    for (name, mutate) in cases {
        let mut s = spec.clone();
        mutate(&mut s);
        let report = run_image(&engine, &image(), &s).await;
        assert!(
            matches!(report.reason(), Some(FailureReason::InvalidSpec(_))),
            "{name}: {report:?}"
        );
    }
    assert!(engine.calls().is_empty(), "{:?}", engine.calls());
}

#[tokio::test]
async fn reconcile_kills_running_containers_and_removes_all() {
    let engine = FakeEngine::default();
    let (_tmp, spec) = dirs();
    let cs = container_spec(&image(), &spec).unwrap();
    engine.create_container(&cs).await.unwrap();
    engine.with(|s| s.containers.get_mut("c1").unwrap().state = ContainerState::Running);
    let reports = crate::reconcile(&engine, "node-1", 100).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].run_id, "run-1");
    assert_eq!(
        reports[0].reason().unwrap().to_string(),
        "node restarted while the run was executing"
    );
    assert!(engine.calls().contains(&"kill c1".to_owned()));
    assert!(engine.with(|s| s.containers.is_empty()));
    // another node's containers are not touched
    assert!(
        crate::reconcile(&engine, "node-2", 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_docker_config_carries_every_control() {
    let (_tmp, mut spec) = dirs();
    spec.limits.memory_bytes = 64 << 20;
    spec.limits.output_bytes = 1000;
    let c = docker_config(&container_spec(&image(), &spec).unwrap());
    let h = c.host_config.unwrap();
    assert_eq!(c.image.as_deref(), Some(IMAGE));
    assert_eq!(c.user.as_deref(), Some("65534:65534"));
    assert_eq!(h.network_mode.as_deref(), Some("none"));
    assert_eq!(c.network_disabled, Some(true));
    assert_eq!(h.readonly_rootfs, Some(true));
    assert_eq!(h.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(h.cap_add, None);
    assert_eq!(h.privileged, Some(false));
    assert_eq!(
        h.security_opt,
        Some(vec!["no-new-privileges:true".to_owned()])
    );
    assert_eq!(h.memory, Some(64 << 20));
    assert_eq!(h.memory_swap, Some(64 << 20));
    assert_eq!(h.pids_limit, Some(crate::DEFAULT_PIDS as i64));
    assert_eq!(h.nano_cpus, Some(crate::DEFAULT_NANO_CPUS as i64));
    assert_eq!(h.auto_remove, Some(false));
    assert_eq!(h.ipc_mode.as_deref(), Some("private"));
    assert_eq!(
        h.cgroupns_mode,
        Some(bollard::models::HostConfigCgroupnsModeEnum::PRIVATE)
    );
    assert_eq!(h.oom_score_adj, Some(1000));
    assert!(h.devices.is_none() && h.mounts.is_none() && h.volumes_from.is_none());
    let fsize = h
        .ulimits
        .unwrap()
        .into_iter()
        .find(|u| u.name.as_deref() == Some("fsize"))
        .unwrap();
    assert_eq!(fsize.hard, Some(1001));
    let tmpfs = h.tmpfs.unwrap();
    assert!(tmpfs["/tmp"].contains("size=67108864") && tmpfs["/tmp"].contains("noexec"));
    let binds = h.binds.unwrap();
    assert_eq!(binds.len(), 2, "{binds:?}");
    assert!(
        binds[0].ends_with(":/mnt/input:ro") && binds[1].ends_with(":/mnt/output:rw"),
        "{binds:?}"
    );
    let labels = c.labels.unwrap();
    assert_eq!(labels[LABEL_RUN], "run-1");
    assert_eq!(labels[LABEL_NODE], "node-1");
    assert_eq!(labels[LABEL_OUTPUT_CAP], "1000");
    assert!(
        c.env
            .unwrap()
            .contains(&format!("WARDEN_OUTPUT={OUTPUT_MOUNT}/{OUTPUT_FILE}"))
    );
}

#[tokio::test]
async fn the_self_check_names_the_failed_checks() {
    let engine = FakeEngine::default();
    let probe = crate::import_probe(&engine, b"probe").await.unwrap();
    let work = tempfile::tempdir().unwrap();
    engine.with(|s| {
        s.exit_code = 1;
        s.logs = Some(
            b"ok non-root user\nFAIL only the loopback interface: lo eth0 \nok no ipv4 routes\n"
                .to_vec(),
        );
    });
    let err = crate::self_check(
        &engine,
        &probe,
        "node-1",
        work.path(),
        &crate::Limits::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        crate::IsolationError::NotIsolated {
            failed: "FAIL only the loopback interface: lo eth0 ".into()
        }
    );
    assert!(err.to_string().contains("must not run algorithms"), "{err}");

    engine.with(|s| {
        s.exit_code = 0;
        s.logs = Some(b"ok non-root user\n".to_vec());
    });
    crate::self_check(
        &engine,
        &probe,
        "node-1",
        work.path(),
        &crate::Limits::default(),
    )
    .await
    .unwrap();
    assert!(engine.with(|s| s.containers.is_empty()));
}
