//! The example federated mean algorithm (algorithms/mean, built static with warden-sdk) through
//! two real nodes: the central function runs at organization A, creates `partial_mean` subtasks
//! at A and B through A's proxy, and combines their results. A runs one container at a time: two
//! central runs waiting on subtasks at their own node must not starve them.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{World, containers};
use serde_json::{Value, json};
use warden_api::RunState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federated_mean_runs_across_two_nodes() {
    let mut w = World::new().await;
    let bin = warden_testkit::build_static_binary("warden-algorithm-mean", "mean").unwrap();
    let (repo, digest) = w.push_binary(&bin, "mean", "mean", "v1", &[]);
    w.sign(&repo, &digest).await;
    let policy = w.signed_policy(&repo);
    let data_a = w.dir.path().join("a.csv");
    let data_b = w.dir.path().join("b.csv");
    std::fs::write(&data_a, "id,age\n1,30\n2,50\n").unwrap();
    std::fs::write(&data_b, "id,age\n3,70\n4,\n5,90\n").unwrap();
    let config_a = w.node_config(
        &w.a,
        &policy,
        &format!(
            "concurrent_runs = 1\n\n[data]\nrecords = \"{}\"\n",
            data_a.display()
        ),
    );
    let config_b = w.node_config(
        &w.b,
        &policy,
        &format!("\n[data]\nrecords = \"{}\"\n", data_b.display()),
    );
    let node_a = w.start_node(&config_a).await;
    let node_b = w.start_node(&config_b).await;

    let input = json!({"function": "central_mean", "args": {"column": "age", "data": "records"}});
    let image = format!("{repo}:v1");
    let first = w.create_task(&image, &input, &[&w.a]).await;
    let second = w.create_task(&image, &input, &[&w.a]).await;
    for task in [first, second] {
        let run = w
            .wait_final(task.runs[0].id, Duration::from_secs(180))
            .await;
        assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
        let out: Value = serde_json::from_slice(&w.result(run.id).await).unwrap();
        assert_eq!(out["count"], 4, "{out}");
        assert_eq!(out["mean"], 60.0, "{out}");
        assert_eq!(out["organizations"], 2, "{out}");
    }
    assert!(containers(&node_a.label).is_empty());
    assert!(containers(&node_b.label).is_empty());
    node_a.stop().await;
    node_b.stop().await;
}
