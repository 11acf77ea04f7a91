//! The node as a real process (`warden node start`), killed with SIGKILL and restarted, and the
//! server as a real process (`warden server start`) that goes down and comes back: no run and
//! no result is lost, and no container is left behind.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../node/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use common::{World, containers, spawn_node, spawn_server};
use serde_json::json;
use warden_api::RunState;

const BIN: &str = env!("CARGO_BIN_EXE_warden");

/// The node binary: this build's, or `WARDEN_NODE_BIN` (e.g. a release build, to measure).
fn node_bin() -> std::path::PathBuf {
    std::env::var_os("WARDEN_NODE_BIN")
        .map(Into::into)
        .unwrap_or_else(|| BIN.into())
}

fn work_dirs(config: &Path) -> usize {
    std::fs::read_dir(config.parent().unwrap().join("spool/work"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn spooled_runs(config: &Path) -> Vec<String> {
    std::fs::read_dir(config.parent().unwrap().join("spool/runs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the node's container is running.
async fn wait_container(label: &str) {
    for _ in 0..600 {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=org.warden.node={label}"),
            ])
            .args(["--filter", "status=running"])
            .output()
            .unwrap();
        if !out.stdout.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no container of {label} appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_run_reconciles_on_restart() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("slow", "slow", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let label = World::label_of(&config);
    w.labels.push(label.clone());
    let image = format!("{repo}:v1");

    // 1. The container finishes while the node is dead: its output is collected on restart.
    let mut node = spawn_node(Path::new(BIN), &config);
    let task = w
        .create_task(
            &image,
            &json!({"function": "f", "args": {"sleep": 3}}),
            &[&w.a],
        )
        .await;
    let run = task.runs[0].id;
    let r = w
        .wait_state(run, RunState::Running, Duration::from_secs(120))
        .await;
    assert_eq!(r.state, RunState::Running, "{:?}\n{}", r.reason, node.log());
    wait_container(&label).await;
    node.kill9();
    assert_eq!(
        containers(&label).len(),
        1,
        "the container outlives the node"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut node = spawn_node(Path::new(BIN), &config);
    let r = w.wait_final(run, Duration::from_secs(60)).await;
    assert_eq!(
        r.state,
        RunState::Completed,
        "{:?}\n{}",
        r.reason,
        node.log()
    );
    let out = String::from_utf8(w.result(run).await).unwrap();
    assert!(out.starts_with("slept 3:"), "{out}");
    assert!(containers(&label).is_empty());

    // 2. The container still runs when the node comes back: it is killed and the run failed.
    let task = w
        .create_task(
            &image,
            &json!({"function": "f", "args": {"sleep": 120}}),
            &[&w.a],
        )
        .await;
    let run = task.runs[0].id;
    let r = w
        .wait_state(run, RunState::Running, Duration::from_secs(60))
        .await;
    assert_eq!(r.state, RunState::Running, "{:?}", r.reason);
    wait_container(&label).await;
    node.kill9();
    let node = spawn_node(Path::new(BIN), &config);
    let r = w.wait_final(run, Duration::from_secs(60)).await;
    assert_eq!(r.state, RunState::Failed, "{}", node.log());
    let reason = r.reason.unwrap();
    assert!(
        reason.contains("node restarted while the run was executing"),
        "{reason}"
    );
    assert!(containers(&label).is_empty(), "no orphan container");
    assert_eq!(work_dirs(&config), 0, "no orphan mount source");
    assert!(node.log().contains("audit log"), "{}", node.log());
}

/// SIGTERM lets the run in flight finish and be delivered, takes no new run, and exits; a run
/// longer than the grace is left to the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_node_finishes_its_runs_within_the_grace_and_exits() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("slow", "slow", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "concurrent_runs = 1\n");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[node]\n", "[node]\nshutdown_grace_secs = 30\n"),
    )
    .unwrap();
    let label = World::label_of(&config);
    w.labels.push(label.clone());
    let image = format!("{repo}:v1");

    let mut node = spawn_node(Path::new(BIN), &config);
    let first = w
        .create_task(
            &image,
            &json!({"function": "f", "args": {"sleep": 3}}),
            &[&w.a],
        )
        .await;
    let run = first.runs[0].id;
    let r = w
        .wait_state(run, RunState::Running, Duration::from_secs(120))
        .await;
    assert_eq!(r.state, RunState::Running, "{:?}\n{}", r.reason, node.log());
    // Queued behind the one slot: it must not start once shutdown has begun.
    let second = w
        .create_task(
            &image,
            &json!({"function": "f", "args": {"sleep": 1}}),
            &[&w.a],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = node.terminate(Duration::from_secs(30)).await;
    assert_eq!(
        status.map(|s| s.success()),
        Some(true),
        "the node exits by itself, cleanly\n{}",
        node.log()
    );
    let r = w.run(run).await;
    assert_eq!(
        r.state,
        RunState::Completed,
        "{:?}\n{}",
        r.reason,
        node.log()
    );
    let out = String::from_utf8(w.result(run).await).unwrap();
    assert!(out.starts_with("slept 3:"), "{out}");
    assert_eq!(w.run(second.runs[0].id).await.state, RunState::Pending);
    assert!(containers(&label).is_empty());
    assert!(
        node.log().contains("waiting for the runs in flight"),
        "{}",
        node.log()
    );

    // The queued run is taken at the next start.
    let _node = spawn_node(Path::new(BIN), &config);
    let r = w
        .wait_final(second.runs[0].id, Duration::from_secs(60))
        .await;
    assert_eq!(r.state, RunState::Completed, "{:?}", r.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_finished_while_the_server_is_down_is_delivered_once_it_is_back() {
    let mut w = World::with_server_process(Path::new(BIN)).await;
    let (repo, digest) = w.push_program("slow", "slow", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let label = World::label_of(&config);
    w.labels.push(label.clone());
    let image = format!("{repo}:v1");
    let node = spawn_node(&node_bin(), &config);
    // The idle node's resident memory, for the report (not asserted: figures come from here
    // and the bench, never from timed assertions).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?");
    eprintln!("idle node ({}): {rss}", node_bin().display());

    let task = w
        .create_task(
            &image,
            &json!({"function": "f", "args": {"sleep": 3}}),
            &[&w.a],
        )
        .await;
    let run = task.runs[0].id;
    let r = w
        .wait_state(run, RunState::Running, Duration::from_secs(120))
        .await;
    assert_eq!(r.state, RunState::Running, "{:?}\n{}", r.reason, node.log());
    wait_container(&label).await;

    // The server dies (SIGKILL); the run finishes meanwhile and its result waits in the spool.
    w.server_process.as_mut().unwrap().kill9();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let spooled = config
        .parent()
        .unwrap()
        .join(format!("spool/runs/{run}/result.sealed"));
    assert!(spooled.exists(), "the result is spooled: {}", node.log());

    // The server comes back on the same database and port: the result is delivered.
    w.server_process = Some(spawn_server(Path::new(BIN), w.dir.path(), w.server_port).await);
    let r = w.wait_final(run, Duration::from_secs(60)).await;
    assert_eq!(
        r.state,
        RunState::Completed,
        "{:?}\n{}",
        r.reason,
        node.log()
    );
    let out = String::from_utf8(w.result(run).await).unwrap();
    assert!(out.starts_with("slept 3:"), "{out}");
    for _ in 0..100 {
        if spooled_runs(&config).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        spooled_runs(&config).is_empty(),
        "delivered runs leave the spool"
    );

    // The node reconnected: a new run goes through.
    let task = w
        .create_task(
            &image,
            &json!({"function": "f", "args": {"sleep": 0}}),
            &[&w.a],
        )
        .await;
    let r = w.wait_final(task.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(
        r.state,
        RunState::Completed,
        "{:?}\n{}",
        r.reason,
        node.log()
    );
}

#[test]
fn a_bad_configuration_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[server]\nurl = \"http://127.0.0.1:1\"\napi_key = \"wdn_1_x\"\n[node]\npolicy = \"p\"\nsecret_key = \"k\"\nspool_dir = \"s\"\nprobe = \"probe\"\n[audit]\ndir = \"a\"\nsigning_key = \"k\"\npassword_file = \"p\"\n[limits]\npids = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["node", "start", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:14:", config.display())) && err.contains("key `limits.pids`"),
        "{err}"
    );
}
