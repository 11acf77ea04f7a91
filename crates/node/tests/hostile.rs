//! Hostile algorithms through a running node (the runtime's own tests attack each control
//! directly): each run ends `failed` with Warden's reason at the server (what the algorithm
//! printed stays in the run's log at the node), nothing is left behind, and the node goes on to
//! run the next algorithm.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{World, containers};
use serde_json::json;
use warden_api::RunState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_algorithms_fail_with_their_reason_and_the_node_stays_up() {
    let mut w = World::new().await;
    // (program, the run's reason at the server, what its log at the node says)
    let attacks = [
        (
            "memory_bomb",
            "the algorithm ran out of memory and was killed",
            "",
        ),
        // the pids limit held
        (
            "fork_bomb",
            "the algorithm exited with code 1",
            "fork refused after",
        ),
        (
            "big_output",
            "the output is larger than the cap of 1048576 bytes",
            "",
        ),
        (
            "flood_output",
            "the output is larger than the cap of 1048576 bytes",
            "",
        ),
        // exit 1: every write outside /tmp was refused, and /tmp filled up to its cap
        (
            "write_fs",
            "the algorithm exited with code 1",
            "scratch full after",
        ),
    ];
    let mut images = Vec::new();
    let mut repository = None;
    for (program, _, _) in attacks {
        let (repo, digest) = w.push_program(program, "hostile", program);
        w.sign(&repo, &digest).await;
        images.push(format!("{repo}:{program}"));
        repository = Some(repo);
    }
    let (repo, digest) = w.push_program("echo", "hostile", "echo");
    w.sign(&repo, &digest).await;
    let policy = w.signed_policy(&repository.unwrap());
    let config = w.node_config(
        &w.a,
        &policy,
        "output_bytes = 1048576\npids = 64\nscratch_bytes = 8388608\n",
    );
    let node = w.start_node(&config).await;

    let mut runs = Vec::new();
    for image in &images {
        let task = w
            .create_task(image, &json!({"function": "attack"}), &[&w.a])
            .await;
        runs.push(task.runs[0].id);
    }
    let logs = config.parent().unwrap().join("spool/logs");
    for ((program, expected, logged), run) in attacks.iter().zip(runs) {
        let r = w.wait_final(run, Duration::from_secs(120)).await;
        assert_eq!(r.state, RunState::Failed, "{program}: {:?}", r.reason);
        assert_eq!(r.reason.as_deref(), Some(*expected), "{program}");
        let log = std::fs::read_to_string(logs.join(format!("run-{run}.log"))).unwrap();
        assert!(log.contains(logged), "{program}: {log}");
    }

    // The node is still up and runs the next algorithm.
    let task = w
        .create_task(
            &format!("{repo}:echo"),
            &json!({"function": "after"}),
            &[&w.a],
        )
        .await;
    let r = w
        .wait_final(task.runs[0].id, Duration::from_secs(120))
        .await;
    assert_eq!(r.state, RunState::Completed, "{:?}", r.reason);
    assert!(containers(&node.label).is_empty(), "no container left");
    node.stop().await;
}
