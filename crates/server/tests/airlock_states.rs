//! The node's waits (issue 9's airlock): `awaiting_approval` and `awaiting_release`, on the
//! real server over HTTP, SQLite or PostgreSQL (`WARDEN_TEST_DATABASE_URL`).

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use kit::{Kit, World};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Two runs of a fresh task: (org1's run, org2's run).
async fn two_runs(kit: &Kit, w: &World) -> (i64, i64) {
    let detail = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    let runs = detail["runs"].as_array().unwrap();
    let id = |org: i64| {
        runs.iter().find(|r| r["organization_id"] == org).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    (id(w.org1), id(w.org2))
}

async fn to(kit: &Kit, node: &str, run: i64, body: Value) -> (StatusCode, Value) {
    kit.patch(node, &format!("/api/runs/{run}"), body).await
}

async fn state_of(kit: &Kit, w: &World, run: i64) -> Value {
    let (s, v) = kit.get(&w.researcher1, &format!("/api/runs/{run}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

#[tokio::test]
async fn a_run_waits_for_approval_then_for_release_and_completes() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let (run, _) = two_runs(&kit, &w).await;
    // Not from pending: the node admits first.
    let (s, v) = to(&kit, &w.node1, run, json!({"state": "awaiting_approval"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = to(
        &kit,
        &w.node1,
        run,
        json!({"state": "admitted", "digest": DIGEST}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A wait carries no reason and no digest.
    let (s, v) = to(
        &kit,
        &w.node1,
        run,
        json!({"state": "awaiting_approval", "reason": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = to(&kit, &w.node1, run, json!({"state": "awaiting_approval"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "awaiting_approval");
    // Reported twice: harmless.
    let (s, _) = to(&kit, &w.node1, run, json!({"state": "awaiting_approval"})).await;
    assert_eq!(s, StatusCode::OK);
    // The researcher sees it, and it is not final: no result, no run token meanwhile.
    let r = state_of(&kit, &w, run).await;
    assert_eq!(r["state"], "awaiting_approval");
    assert!(r["finished_at"].is_null(), "{r}");
    let (s, _) = kit
        .post(&w.node1, &format!("/api/runs/{run}/token"), json!(null))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let s = kit
        .put_bytes(&w.node1, &format!("/api/runs/{run}/result"), b"c".to_vec())
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "no result before the container ran"
    );
    // Nothing but running or failed follows.
    for bad in ["completed", "awaiting_release"] {
        let (s, v) = to(&kit, &w.node1, run, json!({"state": bad})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{bad}: {v}");
    }
    let (s, v) = to(
        &kit,
        &w.node1,
        run,
        json!({"state": "rejected", "reason": "r"}),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = to(&kit, &w.node1, run, json!({"state": "running"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Running -> awaiting_release; the result is uploaded once released, then completed.
    let (s, v) = to(&kit, &w.node1, run, json!({"state": "awaiting_release"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "awaiting_release");
    assert!(v["finished_at"].is_null(), "{v}");
    assert_eq!(state_of(&kit, &w, run).await["state"], "awaiting_release");
    for bad in ["running", "awaiting_approval"] {
        let (s, v) = to(&kit, &w.node1, run, json!({"state": bad})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{bad}: {v}");
    }
    let (s, v) = to(&kit, &w.node1, run, json!({"state": "completed"})).await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "completed needs the result first: {v}"
    );
    let s = kit
        .put_bytes(
            &w.node1,
            &format!("/api/runs/{run}/result"),
            b"sealed".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Another organization's node cannot move it.
    let (s, _) = to(&kit, &w.node2, run, json!({"state": "completed"})).await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s}"
    );
    let (s, v) = to(&kit, &w.node1, run, json!({"state": "completed"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["finished_at"].is_string());
    let (s, bytes) = kit
        .get_bytes(&w.researcher1, &format!("/api/runs/{run}/result"))
        .await;
    assert_eq!((s, bytes.as_slice()), (StatusCode::OK, &b"sealed"[..]));
    // A researcher cannot move a run through the waits.
    let (_, other) = two_runs(&kit, &w).await;
    let (s, _) = to(
        &kit,
        &w.researcher1,
        other,
        json!({"state": "awaiting_release"}),
    )
    .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s}"
    );
    kit.stop().await;
}

#[tokio::test]
async fn a_refused_wait_ends_failed_with_the_reason() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let (run1, run2) = two_runs(&kit, &w).await;
    // Awaiting approval, refused: failed with the data owner's reason.
    for b in [
        json!({"state": "admitted", "digest": DIGEST}),
        json!({"state": "awaiting_approval"}),
    ] {
        let (s, v) = to(&kit, &w.node1, run1, b).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, v) = to(&kit, &w.node1, run1, json!({"state": "failed"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "failed needs a reason: {v}");
    let reason = "the data owner refused this image digest: not reviewed";
    let (s, v) = to(
        &kit,
        &w.node1,
        run1,
        json!({"state": "failed", "reason": reason}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = state_of(&kit, &w, run1).await;
    assert_eq!(
        (&r["state"], &r["reason"]),
        (&json!("failed"), &json!(reason))
    );
    // Awaiting release, refused.
    for b in [
        json!({"state": "admitted", "digest": DIGEST}),
        json!({"state": "running"}),
        json!({"state": "awaiting_release"}),
    ] {
        let (s, v) = to(&kit, &w.node2, run2, b).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let reason = "refused by the data owner: too detailed";
    let (s, v) = to(
        &kit,
        &w.node2,
        run2,
        json!({"state": "failed", "reason": reason}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = state_of(&kit, &w, run2).await;
    assert_eq!(
        (&r["state"], &r["reason"]),
        (&json!("failed"), &json!(reason))
    );
    assert!(r["finished_at"].is_string());
    // Final: no way back into a wait.
    let (s, _) = to(&kit, &w.node2, run2, json!({"state": "awaiting_release"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // The list filter knows the new states.
    let (s, v) = kit
        .get(&w.researcher1, "/api/runs?state=awaiting_release")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 0, "{v}");
    kit.stop().await;
}

/// A database an older server left (migrations up to 5) keeps its runs when the runs table is
/// rebuilt for the new states, and those runs take them.
#[tokio::test]
async fn an_older_database_keeps_its_runs_and_takes_the_new_states() {
    use warden_server::auth::{hash_password, token_hash};
    let admin_hash = hash_password(kit::ADMIN_PASSWORD.into()).await.unwrap();
    let node_token = "wat_legacy_node_airlock";
    let far = 4_102_444_800_000_000_i64; // 2100-01-01 in microseconds
    let seed: Vec<String> = vec![
        "INSERT INTO organizations (id, name, public_key, created_at) VALUES (1, 'one', 'k', 1)"
            .into(),
        "INSERT INTO collaborations (id, name, encrypted, created_at) VALUES (1, 'c', TRUE, 1)"
            .into(),
        "INSERT INTO collaboration_members (collaboration_id, organization_id) VALUES (1, 1)"
            .into(),
        format!(
            "INSERT INTO users (id, username, organization_id, role, password_hash, created_at) VALUES (1, 'admin', NULL, 'root', '{admin_hash}', 1)"
        ),
        format!(
            "INSERT INTO nodes (id, organization_id, collaboration_id, api_key_hash, created_at) VALUES (1, 1, 1, '{}', 1)",
            token_hash("legacy-node-secret")
        ),
        format!(
            "INSERT INTO tokens (hash, kind, node_id, expires_at) VALUES ('{}', 'node', 1, {far})",
            token_hash(node_token)
        ),
        "INSERT INTO tasks (id, collaboration_id, name, image, organization_id, created_at) \
         VALUES (1, 1, 't', 'registry.example.org/a:1', 1, 1)"
            .into(),
        "INSERT INTO runs (id, task_id, collaboration_id, organization_id, state, digest, created_at) \
         VALUES (41, 1, 1, 1, 'running', 'sha256:ab', 1)"
            .into(),
        "INSERT INTO tasks (id, collaboration_id, name, image, organization_id, created_at) \
         VALUES (2, 1, 't2', 'registry.example.org/a:1', 1, 1)"
            .into(),
        "INSERT INTO runs (id, task_id, collaboration_id, organization_id, state, reason, created_at, finished_at) \
         VALUES (40, 2, 1, 1, 'failed', 'old reason', 1, 2)"
            .into(),
        // Children of the runs, which must keep their parents through the rebuild.
        "INSERT INTO results (run_id, data, created_at) VALUES (41, 'sealed', 1)".into(),
        "INSERT INTO events (collaboration_id, organization_id, kind, run_id, created_at) \
         VALUES (1, 1, 'run_created', 41, 1)"
            .into(),
    ];
    let seed: Vec<&str> = seed.iter().map(String::as_str).collect();
    let kit = Kit::start_on_old_database(5, &seed).await;
    let (s, v) = kit.get(&kit.admin, "/api/runs/40").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["state"], &v["reason"]),
        (&json!("failed"), &json!("old reason"))
    );
    let (s, v) = kit.get(&kit.admin, "/api/runs/41").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["state"], &v["digest"]),
        (&json!("running"), &json!("sha256:ab"))
    );
    let (s, v) = to(&kit, node_token, 41, json!({"state": "awaiting_release"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = to(
        &kit,
        node_token,
        41,
        json!({"state": "failed", "reason": "refused"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The database itself refuses a state it does not know.
    let (s, v) = to(&kit, node_token, 41, json!({"state": "awaiting_nothing"})).await;
    assert!(s.is_client_error(), "{s} {v}");
    kit.stop().await;
}
