//! The trust chain against a moving registry and a lying server: the node runs what it resolved
//! and verified itself, never what the server or a moved tag says, and seals results to the key
//! the input proved, never to one the server hands out. (crates/node/tests/lying.rs attacks
//! the input's binding.)

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{World, containers, image_present};
use serde_json::json;
use warden_api::RunState;
use warden_node::admission::{Gate, pin};
use warden_policy::Requester;
use warden_registry::{Client, ClientOptions};
use warden_runtime::{DockerEngine, Outcome, RunSpec, run_pinned};

/// Runs SQL against the server's SQLite file, as a compromised server (or its operator) would.
fn tamper(w: &World, sql: &str) {
    let db = w.dir.path().join("server.db");
    let out = Command::new("sqlite3").arg(&db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_after_resolution_changes_nothing() {
    let mut w = World::new().await;
    let (repo, first) = w.push_program_with("identify", "moving", "v1", &[("/id.txt", b"first")]);
    w.sign(&repo, &first).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let gate = Gate::load(&config.parent().unwrap().join("policy.toml")).unwrap();
    let registry = Client::new(ClientOptions::default()).unwrap();

    let admitted = gate
        .check(&registry, &format!("{repo}:v1"), &Requester::default())
        .await
        .unwrap();
    assert_eq!(admitted.digest(), &first);

    // The tag moves to another (also signed) image after resolution.
    let (_, second) = w.push_program_with("identify", "moving", "v1", &[("/id.txt", b"second")]);
    w.sign(&repo, &second).await;
    assert_ne!(first, second);

    let engine = DockerEngine::connect().await.unwrap();
    let pinned = pin(&engine, &admitted).await.unwrap();
    assert_eq!(pinned.digest(), &first);
    let dir = w.dir.path().join("moved");
    let (input, output) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&output).unwrap();
    let label = format!("moved-{}", std::process::id());
    w.labels.push(label.clone());
    let spec = RunSpec::new("moved", &label, &input, &output);
    let report = run_pinned(&engine, &pinned, &spec).await;
    match report.outcome {
        Outcome::Completed { output } => assert_eq!(output, b"first"),
        other => panic!("{other:?}"),
    }
    assert!(
        !image_present(&format!("{repo}@{second}")),
        "the moved tag was never pulled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_swaps_the_image_or_a_key_is_caught_by_the_node() {
    let mut w = World::new().await;
    let (repo, signed) = w.push_program("echo", "echo", "v1");
    w.sign(&repo, &signed).await;
    // Another image in the same repository, never signed.
    let (_, unsigned) = w.push_program("echo", "echo", "evil");
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");

    // 1. The server rewrites the task's image to the unsigned digest (tag kept, digest pinned):
    // the input is bound to the image the researcher chose, so the node refuses before it asks
    // the registry anything; nothing pulled.
    let input = json!({"function": "hello", "args": null});
    let task = w.create_task(&format!("{repo}:v1"), &input, &[&w.a]).await;
    tamper(
        &w,
        &format!(
            "UPDATE tasks SET image = '{repo}:v1@{unsigned}' WHERE id = {}",
            task.task.id
        ),
    );
    let node = w.start_node(&config).await;
    let run = w.wait_final(task.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Rejected);
    let reason = run.reason.unwrap();
    assert_eq!(
        reason,
        format!(
            "the input is bound to image `{repo}:v1`, but the server's task names \
             `{repo}:v1@{unsigned}`: refusing a swapped image"
        )
    );
    assert!(!image_present(&format!("{repo}@{unsigned}")));
    assert!(containers(&node.label).is_empty());
    node.stop().await;

    // 2. The server hands out another key for the requesting organization: the node does not
    // even ask for it. The result is sealed to the researcher's certified key the input proved,
    // and opens at the researcher.
    let attacker = warden_seal::SecretKey::generate().public_key();
    tamper(
        &w,
        &format!(
            "UPDATE organizations SET public_key = '{}' WHERE id = {}",
            attacker.to_base64(),
            w.a.id
        ),
    );
    let node = w.start_node(&config).await;
    let task = w.create_task(&format!("{repo}:v1"), &input, &[&w.a]).await;
    let run = w.wait_final(task.runs[0].id, Duration::from_secs(60)).await;
    assert_eq!(run.state, RunState::Completed, "{:?}", run.reason);
    assert_eq!(run.digest.as_deref(), Some(signed.to_string().as_str()));
    let text = String::from_utf8(w.result(run.id).await).unwrap();
    assert!(text.contains("\"function\":\"hello\""), "{text}");
    node.stop().await;
}
