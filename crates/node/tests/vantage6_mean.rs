//! A vantage6 4.x algorithm run unchanged through two real Warden nodes (issue 13):
//! algorithms/mean-v6 (Python, written against the published vantage6-algorithm-tools 4.15.2,
//! `@algorithm_client` central creating `@data(1)` partial subtasks at both organizations) on a
//! base image from `warden algorithm base python`, admitted with `contract = "vantage6"`, gives
//! the answer algorithms/mean (Rust, Warden's contract) gives through the same nodes.
//!
//! Needs the `warden` binary (`$WARDEN_BIN`, else `$CARGO_TARGET_DIR/debug/warden`: build it
//! with `cargo build -p warden-cli`) to build the base image (root, debootstrap, the Debian
//! mirror and PyPI; reused by its content key once built), the Docker engine and a registry.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{World, containers};
use serde_json::{Value, json};
use warden_api::RunState;
use warden_reference::{Digest, Repository};

const BASE_TAG: &str = "warden-test/python-base:vantage6-4.15.2";
/// vantage6-algorithm-tools 4.15.2 and what its import path needs, as binary wheels for the
/// base's Python 3.11 (`--no-deps`: its declared dependencies do not all have one).
pub const WHEELS: &[&str] = &[
    "vantage6-algorithm-tools==4.15.2",
    "vantage6-common==4.15.2",
    "pandas==2.2.3",
    "numpy==1.26.4",
    "python-dateutil==2.9.0.post0",
    "six==1.16.0",
    "pytz==2024.2",
    "tzdata==2024.2",
    "requests==2.32.3",
    "urllib3==2.2.3",
    "idna==3.10",
    "certifi==2024.8.30",
    "charset-normalizer==3.4.0",
    "PyJWT==2.9.0",
    "click==8.1.3",
    "appdirs==1.4.4",
    "colorama==0.4.6",
    "cryptography==43.0.3",
    "cffi==1.17.1",
    "pycparser==2.22",
    "SQLAlchemy==1.4.46",
    "greenlet==3.1.1",
    "SPARQLWrapper==2.0.0",
    "rdflib==7.1.1",
    "isodate==0.7.2",
    "pyparsing==3.2.0",
    "qrcode==7.4.2",
    "typing_extensions==4.12.2",
    "pypng==0.20220715.0",
];

fn warden_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARDEN_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("debug/warden")
}

fn base_image() {
    let bin = warden_bin();
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p warden-cli` (or set WARDEN_BIN)",
        bin.display()
    );
    let mut cmd = Command::new(&bin);
    cmd.args([
        "algorithm",
        "base",
        "python",
        "--tag",
        BASE_TAG,
        "--no-deps",
    ]);
    cmd.args(["--cache-dir", "/var/cache/warden/debootstrap", "--json"]);
    for w in WHEELS {
        cmd.args(["--wheel", w]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "warden algorithm base python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds algorithms/mean-v6's Dockerfile on the base as `<registry>/node/mean-v6:4`, pushes it
/// and removes the local copy.
fn push_mean_v6(w: &mut World) -> (Repository, Digest) {
    base_image();
    let reference = format!("{}/node/mean-v6:4", w.registry.host());
    let ctx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../algorithms/mean-v6");
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args([
            "build",
            "-q",
            "--build-arg",
            &format!("BASE={BASE_TAG}"),
            "-t",
        ])
        .arg(&reference)
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = warden_testkit::push(&reference).unwrap();
    warden_testkit::remove_images(&[&reference]);
    let repository = Repository::parse(&format!("{}/node/mean-v6", w.registry.host())).unwrap();
    w.images.push(format!("{repository}@{digest}"));
    (repository, Digest::parse(&digest).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vantage6_mean_gives_the_warden_mean_through_two_nodes() {
    let mut w = World::new().await;
    let (v6, v6_digest) = push_mean_v6(&mut w);
    w.sign(&v6, &v6_digest).await;
    let bin = warden_testkit::build_static_binary("warden-algorithm-mean", "mean").unwrap();
    let (rust, rust_digest) = w.push_binary(&bin, "mean", "mean", "v1", &[]);
    w.sign(&rust, &rust_digest).await;
    let shim = warden_testkit::build_static_binary("warden-v6shim", "warden-v6-shim").unwrap();
    let policy = format!(
        "{}contract = \"vantage6\"\n\n{}",
        w.signed_policy(&v6),
        w.signed_policy(&rust)
    );
    let data_a = w.dir.path().join("a.csv");
    let data_b = w.dir.path().join("b.csv");
    std::fs::write(&data_a, "id,age\n1,30\n2, 50 \n3,\n4,unknown\n5,41.5\n").unwrap();
    std::fs::write(&data_b, "id,age\n1,47\n2,60\n3,inf\n").unwrap();
    let mut configs = Vec::new();
    for (org, data) in [(&w.a, &data_a), (&w.b, &data_b)] {
        let config = w.node_config(
            org,
            &policy,
            &format!(
                "timeout_secs = 300\nmemory_bytes = 536870912\n\n[data]\nrecords = \"{}\"\n",
                data.display()
            ),
        );
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace(
                "probe = \"probe\"\n",
                &format!(
                    "probe = \"probe\"\nvantage6_shim = \"{}\"\n",
                    shim.display()
                ),
            )
            .replace("timeout_secs = 60\nmemory_bytes = 67108864\n", "");
        std::fs::write(&config, text).unwrap();
        configs.push(config);
    }
    let mut nodes = Vec::new();
    for config in &configs {
        nodes.push(w.start_node(config).await);
    }

    // The vantage6 way: central(column="age") at A, partials at A and B.
    let task = w
        .create_task(
            &format!("{v6}:4"),
            &json!({"function": "central", "args": {"kwargs": {"column": "age"}}}),
            &[&w.a],
        )
        .await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(600))
        .await;
    assert_eq!(
        run.state,
        RunState::Completed,
        "{:?}\n{}",
        run.reason,
        std::fs::read_dir(w.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path().display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let v6_answer: Value = serde_json::from_slice(&w.result(run.id).await).unwrap();

    // Warden's way, the same nodes and data.
    let ids = [w.a.id, w.b.id];
    let task = w
        .create_task(
            &format!("{rust}:v1"),
            &json!({"function": "central_mean", "args": {"column": "age", "data": "records", "organizations": ids}}),
            &[&w.a],
        )
        .await;
    let run = w
        .wait_final(task.runs[0].id, Duration::from_secs(300))
        .await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    let rust_answer: Value = serde_json::from_slice(&w.result(run.id).await).unwrap();

    // A: 30, 50, 41.5 (a blank and `unknown` skipped); B: 47, 60 (inf skipped).
    let expected =
        json!({"mean": (30.0 + 50.0 + 41.5 + 47.0 + 60.0) / 5.0, "count": 5, "organizations": 2});
    assert_eq!(rust_answer, expected);
    assert_eq!(v6_answer, rust_answer);
    for n in &nodes {
        assert!(containers(&n.label).is_empty());
    }
}
