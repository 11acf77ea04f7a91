//! Released logs (issue 9): a run's own node uploads them sealed, while the run is running or
//! awaiting release, within the result's size cap; whoever may read the run's result reads them,
//! nobody else. On the real server over HTTP, SQLite or PostgreSQL (`WARDEN_TEST_DATABASE_URL`).

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use kit::{Kit, World};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn only_the_runs_node_uploads_logs_and_only_result_readers_read_them() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let viewer1 = kit.user("view1", "viewer", w.org1).await;
    let researcher2 = kit.user("res2", "researcher", w.org2).await;
    let d = kit.task(&w.researcher1, w.c12, &[w.org2]).await;
    let run = d["runs"][0]["id"].as_i64().unwrap();
    let p = format!("/api/runs/{run}");
    // Not before the run runs: there are no logs of a run that did not start.
    assert_eq!(
        kit.put_bytes(&w.node2, &format!("{p}/logs"), b"sealed".to_vec())
            .await,
        StatusCode::CONFLICT
    );
    kit.patch(&w.node2, &p, json!({"state": "admitted", "digest": DIGEST}))
        .await;
    kit.patch(&w.node2, &p, json!({"state": "running"})).await;
    // None yet: a 404 that says why.
    let (s, body) = kit.get_bytes(&w.researcher1, &format!("{p}/logs")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("released no logs"),
        "{v}"
    );
    // Another node (another organization, or the same organization in another
    // collaboration), a researcher: never.
    for (who, token) in [
        ("another organization's node", &w.node1),
        ("the same organization's node elsewhere", &w.node2_in_c23),
        ("the researcher", &w.researcher1),
    ] {
        assert_eq!(
            kit.put_bytes(token, &format!("{p}/logs"), b"forged".to_vec())
                .await,
            StatusCode::FORBIDDEN,
            "{who}"
        );
    }
    // Empty logs are refused.
    assert_eq!(
        kit.put_bytes(&w.node2, &format!("{p}/logs"), Vec::new())
            .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        kit.put_bytes(&w.node2, &format!("{p}/logs"), b"sealed-1".to_vec())
            .await,
        StatusCode::NO_CONTENT
    );
    // Uploading again (a retried delivery) replaces them.
    assert_eq!(
        kit.put_bytes(&w.node2, &format!("{p}/logs"), b"sealed-2".to_vec())
            .await,
        StatusCode::NO_CONTENT
    );
    let (s, body) = kit.get_bytes(&w.researcher1, &format!("{p}/logs")).await;
    assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"sealed-2"[..]));
    // The same readers as the result: not a viewer, not another organization's researcher,
    // not a node.
    for (who, token) in [
        ("viewer", &viewer1),
        ("another organization's researcher", &researcher2),
        ("the run's node", &w.node2),
        ("another node", &w.node1),
    ] {
        assert_eq!(
            kit.get_bytes(token, &format!("{p}/logs")).await.0,
            StatusCode::FORBIDDEN,
            "{who}"
        );
    }
    // Once the run is final, no more uploads.
    let (s, v) = kit
        .patch(&w.node2, &p, json!({"state": "failed", "reason": "x"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        kit.put_bytes(&w.node2, &format!("{p}/logs"), b"late".to_vec())
            .await,
        StatusCode::CONFLICT
    );
    let (s, body) = kit.get_bytes(&w.researcher1, &format!("{p}/logs")).await;
    assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"sealed-2"[..]));
    let (s, v) = kit.get(&w.researcher1, "/api/runs/999999/logs").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(code(&v), "not_found", "{v}");
    kit.stop().await;
}

#[tokio::test]
async fn logs_are_capped_like_a_result() {
    let limits = warden_server::config::LimitsConfig {
        max_result_bytes: 8192,
        ..Default::default()
    };
    let kit = Kit::start_with(Default::default(), limits).await;
    let w = World::build(&kit).await;
    let d = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let run = d["runs"][0]["id"].as_i64().unwrap();
    let p = format!("/api/runs/{run}");
    kit.patch(&w.node1, &p, json!({"state": "admitted", "digest": DIGEST}))
        .await;
    kit.patch(&w.node1, &p, json!({"state": "running"})).await;
    assert_eq!(
        kit.put_bytes(&w.node1, &format!("{p}/logs"), vec![1; 8000])
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        kit.put_bytes(&w.node1, &format!("{p}/logs"), vec![1; 9000])
            .await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    kit.stop().await;
}
