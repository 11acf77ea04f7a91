//! Reconciliation after a node crash, the isolation self-check at start-up, and the proxy
//! socket as the one channel out, against the real engine.

// Test support code (helpers outside #[test] functions) may unwrap and panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::World;
use warden_runtime::{
    ContainerInfo, ContainerSpec, ContainerState, DockerEngine, Engine, EngineError, FailureReason,
    ImageInfo, IsolationError, LABEL_NODE, Limits, Outcome, PROXY_SOCKET, import_probe, reconcile,
    run_pinned, self_check,
};

/// Where a simulated crash happens.
#[derive(Clone, Copy, PartialEq)]
enum Crash {
    BeforeStart,
    BeforeRemove,
}

/// The real engine, except that one call never returns: the node "crashes" there (the test
/// aborts the run's task), leaving the container behind as a real crash would.
struct Crashing {
    inner: DockerEngine,
    at: Crash,
}

#[async_trait]
impl Engine for Crashing {
    async fn pull(&self, r: &str) -> Result<(), EngineError> {
        self.inner.pull(r).await
    }
    async fn inspect_image(&self, r: &str) -> Result<ImageInfo, EngineError> {
        self.inner.inspect_image(r).await
    }
    async fn import_image(&self, t: Vec<u8>, r: &str, c: &[String]) -> Result<String, EngineError> {
        self.inner.import_image(t, r, c).await
    }
    async fn load_image(&self, archive: &std::path::Path) -> Result<(), EngineError> {
        self.inner.load_image(archive).await
    }
    async fn create_container(&self, s: &ContainerSpec) -> Result<String, EngineError> {
        self.inner.create_container(s).await
    }
    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, EngineError> {
        self.inner.inspect_container(id).await
    }
    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        if self.at == Crash::BeforeStart {
            std::future::pending::<()>().await;
        }
        self.inner.start_container(id).await
    }
    async fn wait_container(&self, id: &str) -> Result<(), EngineError> {
        self.inner.wait_container(id).await
    }
    async fn kill_container(&self, id: &str) -> Result<(), EngineError> {
        self.inner.kill_container(id).await
    }
    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        if self.at == Crash::BeforeRemove {
            std::future::pending::<()>().await;
        }
        self.inner.remove_container(id).await
    }
    async fn logs_tail(&self, id: &str, max: usize) -> Result<Vec<u8>, EngineError> {
        self.inner.logs_tail(id, max).await
    }
    async fn list_containers(&self, k: &str, v: &str) -> Result<Vec<String>, EngineError> {
        self.inner.list_containers(k, v).await
    }
}

/// Waits until the node has a container of `run_id` in `state`.
async fn wait_for_state(engine: &DockerEngine, node: &str, run_id: &str, state: ContainerState) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in engine.list_containers(LABEL_NODE, node).await.unwrap() {
            // A container listed a moment ago may be gone by now (removed by the run itself).
            let Ok(info) = engine.inspect_container(&id).await else {
                continue;
            };
            if info.labels.get("org.warden.run").map(String::as_str) == Some(run_id)
                && info.state == state
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{run_id} never reached {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reconcile_settles_every_container_a_crashed_node_left() {
    let mut w = World::new().await;
    let whoami = w.pinned_program("whoami", &[], &[]).await;
    let sleeper = w.pinned_program("sleeper", &[], &[]).await;

    // 1. finished, but the node crashed before collecting and removing it
    let engine = Arc::new(Crashing {
        inner: w.engine.clone(),
        at: Crash::BeforeRemove,
    });
    let (image, spec) = (whoami.clone(), w.spec("finished"));
    let finished = tokio::spawn(async move { run_pinned(engine.as_ref(), &image, &spec).await });
    wait_for_state(&w.engine, &w.node, "finished", ContainerState::Exited).await;
    // 2. still running when the node crashed
    let engine = w.engine.clone();
    let (image, spec) = (sleeper.clone(), w.spec("running"));
    let running = tokio::spawn(async move { run_pinned(&engine, &image, &spec).await });
    wait_for_state(&w.engine, &w.node, "running", ContainerState::Running).await;
    // 3. created, never started
    let engine = Arc::new(Crashing {
        inner: w.engine.clone(),
        at: Crash::BeforeStart,
    });
    let (image, spec) = (whoami.clone(), w.spec("created"));
    let created = tokio::spawn(async move { run_pinned(engine.as_ref(), &image, &spec).await });
    wait_for_state(&w.engine, &w.node, "created", ContainerState::Created).await;
    // small settle time so the crashing tasks are parked in their pending call
    tokio::time::sleep(Duration::from_millis(200)).await;
    for task in [finished, running, created] {
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
    assert_eq!(
        w.engine
            .list_containers(LABEL_NODE, &w.node)
            .await
            .unwrap()
            .len(),
        3
    );

    let mut reports = reconcile(&w.engine, &w.node, 4096).await.unwrap();
    reports.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let summary: Vec<(&str, Option<String>, bool)> = reports
        .iter()
        .map(|r| {
            (
                r.run_id.as_str(),
                r.reason().map(ToString::to_string),
                r.removed,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "created",
                Some("node restarted before the run started".into()),
                true
            ),
            ("finished", None, true),
            (
                "running",
                Some("node restarted while the run was executing".into()),
                true
            ),
        ]
    );
    assert_eq!(
        reports[1].outcome,
        Outcome::Completed {
            output: b"uid=65534 gid=65534 euid=65534 groups=65534 capeff=0000000000000000\n"
                .to_vec()
        }
    );
    assert_eq!(reports[2].reason(), Some(&FailureReason::NodeRestarted));
    w.assert_no_containers_left().await;
    // A second pass finds nothing.
    assert!(
        reconcile(&w.engine, &w.node, 4096)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_isolation_self_check_passes_hardened_and_the_probe_catches_a_loose_container() {
    let mut w = World::new().await;
    let binary = std::fs::read(common::compile("probe", w.tmp.path())).unwrap();
    let probe = import_probe(&w.engine, &binary).await.unwrap();
    w.cleanup.images.push(probe.image_id().to_string());

    let work = w.dir("selfcheck");
    self_check(&w.engine, &probe, &w.node, &work, &Limits::default())
        .await
        .unwrap();
    w.assert_no_containers_left().await;

    // The same probe in a container without the hardening reports what is wrong, the limits
    // the node would ask for among it.
    let limits = Limits::default();
    let out = Command::new("docker")
        .args(["run", "--rm"])
        .args(
            [
                ("WARDEN_PROBE_PIDS", limits.pids),
                ("WARDEN_PROBE_MEMORY", limits.memory_bytes),
                ("WARDEN_PROBE_MILLICPUS", limits.nano_cpus / 1_000_000),
                ("WARDEN_PROBE_SCRATCH", limits.scratch_bytes),
                ("WARDEN_PROBE_FSIZE", limits.output_bytes + 1),
            ]
            .iter()
            .flat_map(|(k, v)| ["-e".to_owned(), format!("{k}={v}")]),
        )
        .arg(probe.image_id().as_str())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for failed in [
        "FAIL non-root user",
        "FAIL only the loopback interface",
        "FAIL no ipv4 routes",
        "FAIL read-only root filesystem",
        "FAIL no effective capabilities",
        "FAIL no-new-privileges",
        "FAIL pids limit",
        "FAIL memory limit",
        "FAIL cpu limit",
        "FAIL scratch /tmp size",
        "FAIL file size limit",
    ] {
        assert!(text.contains(failed), "{failed} missing in {text}");
    }
}

#[tokio::test]
async fn the_self_check_refuses_a_probe_that_cannot_run() {
    let mut w = World::new().await;
    // An "image" whose entrypoint is not an executable: the check must fail, not pass.
    let probe = import_probe(&w.engine, b"#!/nonexistent\n").await.unwrap();
    w.cleanup.images.push(probe.image_id().to_string());
    let work = w.dir("selfcheck");
    let err = self_check(&w.engine, &probe, &w.node, &work, &Limits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, IsolationError::ProbeFailed(_)), "{err}");
    w.assert_no_containers_left().await;
}

#[tokio::test]
async fn the_proxy_socket_is_the_one_channel_out() {
    let mut w = World::new().await;
    let pinned = w.pinned_program("proxy_client", &[], &[]).await;
    let proxy_dir = w.dir("proxy");
    let socket = proxy_dir.join(PROXY_SOCKET);
    let listener = UnixListener::bind(&socket).unwrap();
    // The node's proxy must let the run's user connect.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).unwrap();
        conn.write_all(b"hello from the node\n").unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let mut spec = w.spec("proxy");
    spec.proxy_socket_dir = Some(proxy_dir.clone());
    let report = run_pinned(&w.engine, &pinned, &spec).await;
    let logs = report.logs_text();
    assert_eq!(
        report.outcome,
        Outcome::Completed {
            output: b"hello from the node\n".to_vec()
        },
        "{logs}"
    );
    assert_eq!(server.join().unwrap(), "hello from the algorithm\n");
    assert!(
        logs.contains("blocked /mnt/proxy/planted: Read-only file system"),
        "{logs}"
    );
    assert_eq!(std::fs::read_dir(&proxy_dir).unwrap().count(), 1);
    w.assert_no_containers_left().await;
}

/// A sidecar runs as hardened as an algorithm, with no network and only the proxy directory
/// mounted read-only; one a crashed node left is removed by reconciliation and never reported
/// as a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_is_hardened_and_reconciliation_removes_it_without_a_run_report() {
    let mut w = World::new().await;
    let bin = common::compile("sleeper", &w.dir("bin"));
    let image = warden_runtime::import_sidecar(&w.engine, "test", &std::fs::read(bin).unwrap())
        .await
        .unwrap();
    w.cleanup.images.push(image.image_id().to_string());
    let proxy = w.dir("proxy");
    let sidecar = warden_runtime::Sidecar::start(&w.engine, &image, &w.node, "run-9", &proxy)
        .await
        .unwrap();
    let inspected = common::sh(&[
        "docker",
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.Config.User}} \
         {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{len .Mounts}} \
         {{range .Mounts}}{{.Destination}}:{{.RW}}{{end}} {{.Config.Labels}}",
        sidecar.id(),
    ]);
    assert!(
        inspected.starts_with(
            "none true 65534:65534 [ALL] [no-new-privileges:true] 1 /mnt/proxy:false "
        ) && inspected.contains("org.warden.sidecar:test"),
        "{inspected}"
    );
    // The node "crashed": reconciliation removes the sidecar and reports no run.
    let reports = reconcile(&w.engine, &w.node, 1024).await.unwrap();
    assert!(reports.is_empty(), "{reports:?}");
    w.assert_no_containers_left().await;
}
