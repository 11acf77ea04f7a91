//! Cancellation (`POST /api/tasks/{id}/cancel`): who may, what it changes, the event the nodes
//! get, and that nothing of a cancelled run is stored afterwards. Run on SQLite, and on
//! PostgreSQL with `WARDEN_TEST_DATABASE_URL`.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use std::time::Duration;

use futures_util::StreamExt;
use kit::{Kit, World};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("<none>")
}

async fn connect(kit: &Kit, token: &str, after: i64) -> Socket {
    let url = format!("ws://{}/api/events/ws?after={after}", kit.server.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

async fn next_event(ws: &mut Socket) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an event within 10 s")
            .expect("the socket stays open")
            .unwrap();
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

fn run_of(task: &Value, org: i64) -> i64 {
    task["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["organization_id"] == org)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn the_requester_cancels_a_task_its_nodes_are_told_and_nothing_of_it_is_stored() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let task = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    let task_id = task["task"]["id"].as_i64().unwrap();
    let (run1, run2) = (run_of(&task, w.org1), run_of(&task, w.org2));
    // Node one is running its run; node two has not touched its own.
    let p1 = format!("/api/runs/{run1}");
    let (s, v) = kit
        .patch(
            &w.node1,
            &p1,
            json!({"state": "admitted", "digest": DIGEST}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = kit.patch(&w.node1, &p1, json!({"state": "running"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, token) = kit
        .post(&w.node1, &format!("{p1}/token"), json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{token}");
    let run_token = token["token"].as_str().unwrap().to_owned();
    let mut ws1 = connect(&kit, &w.node1, 0).await;
    let mut ws2 = connect(&kit, &w.node2, 0).await;
    let created1 = next_event(&mut ws1).await;
    assert_eq!(created1["kind"], "run_created", "{created1}");
    assert!(created1.get("cancelled_by").is_none(), "{created1}");
    let created2 = next_event(&mut ws2).await;

    let cancel = format!("/api/tasks/{task_id}/cancel");
    let (s, v) = kit.post(&w.researcher1, &cancel, json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["cancelled_by"], "res1", "{v}");
    assert!(v["task"]["cancelled_at"].is_string(), "{v}");
    for r in v["runs"].as_array().unwrap() {
        assert_eq!(r["state"], "cancelled", "{v}");
        assert!(r["finished_at"].is_string(), "{v}");
    }
    // Each node gets its own run's cancellation, naming who cancelled.
    for (ws, run) in [(&mut ws1, run1), (&mut ws2, run2)] {
        let e = next_event(ws).await;
        assert_eq!(
            (&e["kind"], &e["run_id"], &e["cancelled_by"]),
            (&json!("run_cancelled"), &json!(run), &json!("res1")),
            "{e}"
        );
    }
    // The poll sees the same events after the creation.
    let (s, polled) = kit
        .get(&w.node2, &format!("/api/events?after={}", created2["id"]))
        .await;
    assert_eq!(s, StatusCode::OK, "{polled}");
    assert_eq!(polled.as_array().unwrap().len(), 1, "{polled}");
    assert_eq!(polled[0]["kind"], "run_cancelled", "{polled}");

    // Nothing of a cancelled run is taken from its node: result, logs, a state, a token.
    let s = kit
        .put_bytes(&w.node1, &format!("{p1}/result"), b"sealed".to_vec())
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let s = kit
        .put_bytes(&w.node1, &format!("{p1}/logs"), b"sealed logs".to_vec())
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = kit
        .patch(&w.node1, &p1, json!({"state": "completed"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains("cancelled"), "{v}");
    let (s, v) = kit
        .patch(
            &w.node1,
            &p1,
            json!({"state": "failed", "reason": "killed"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = kit
        .post(&w.node1, &format!("{p1}/token"), json!(null))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = kit.get(&run_token, "/api/auth/whoami").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // A node cannot report a cancellation itself.
    let (s, v) = kit
        .patch(
            &w.node2,
            &format!("/api/runs/{run2}"),
            json!({"state": "cancelled"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "state", "{v}");
    let (s, v) = kit.get_bytes(&w.researcher1, &format!("{p1}/result")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v:?}");
    let (s, v) = kit.get(&w.researcher1, &p1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["state"], &v["has_result"]),
        (&json!("cancelled"), &json!(false))
    );

    // Again: the same answer, no new event.
    let (s, again) = kit.post(&w.researcher1, &cancel, json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(
        again["task"]["cancelled_at"],
        v_task_time(&kit, task_id).await
    );
    let (_, polled) = kit
        .get(&w.node2, &format!("/api/events?after={}", created2["id"]))
        .await;
    assert_eq!(polled.as_array().unwrap().len(), 1, "{polled}");
    // The task shows it too.
    let (_, t) = kit
        .get(&w.researcher1, &format!("/api/tasks/{task_id}"))
        .await;
    assert_eq!(t["task"]["cancelled_by"], "res1", "{t}");
    kit.stop().await;
}

async fn v_task_time(kit: &Kit, id: i64) -> Value {
    let (_, t) = kit.get(&kit.admin, &format!("/api/tasks/{id}")).await;
    t["task"]["cancelled_at"].clone()
}

#[tokio::test]
async fn final_runs_keep_their_state_and_an_ended_task_is_a_conflict() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let task = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    let task_id = task["task"]["id"].as_i64().unwrap();
    let (run1, run2) = (run_of(&task, w.org1), run_of(&task, w.org2));
    let (s, v) = kit
        .patch(
            &w.node1,
            &format!("/api/runs/{run1}"),
            json!({"state": "rejected", "reason": "policy"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cancel = format!("/api/tasks/{task_id}/cancel");
    let (s, v) = kit.post(&w.researcher1, &cancel, json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let state = |id: i64| {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(
        (state(run1), state(run2)),
        (json!("rejected"), json!("cancelled")),
        "{v}"
    );
    // Only node two was told.
    let (_, e1) = kit.get(&w.node1, "/api/events?after=0").await;
    assert!(
        e1.as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "run_created"),
        "{e1}"
    );

    // A task whose runs had all ended before is a conflict that says so.
    let ended = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let ended_id = ended["task"]["id"].as_i64().unwrap();
    let r = run_of(&ended, w.org1);
    kit.patch(
        &w.node1,
        &format!("/api/runs/{r}"),
        json!({"state": "rejected", "reason": "no"}),
    )
    .await;
    let (s, v) = kit
        .post(
            &w.researcher1,
            &format!("/api/tasks/{ended_id}/cancel"),
            json!(null),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert!(message(&v).contains("nothing to cancel"), "{v}");
    assert!(message(&v).contains("rejected"), "{v}");
    kit.stop().await;
}

#[tokio::test]
async fn only_the_requester_an_admin_of_its_organization_or_root_may_cancel() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let other_researcher = kit.user("res1b", "researcher", w.org1).await;
    let viewer = kit.user("view1", "viewer", w.org1).await;
    let admin2 = kit.user("adm2", "org_admin", w.org2).await;
    let researcher2 = kit.user("res2", "researcher", w.org2).await;
    let outsider = kit.user("res3", "researcher", w.org3).await;
    let task = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    let cancel = format!("/api/tasks/{}/cancel", task["task"]["id"]);
    for (token, why) in [
        (&other_researcher, "requester"),
        (&viewer, "role"),
        (&admin2, "organization that created"),
        (&researcher2, "organization that created"),
        (&outsider, "not a member"),
        (&w.node1, ""),
    ] {
        let (s, v) = kit.post(token, &cancel, json!(null)).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
        assert!(message(&v).contains(why), "{v}");
    }
    let (s, v) = kit.call(reqwest::Method::POST, None, &cancel, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = kit
        .post(&w.researcher1, "/api/tasks/999999/cancel", json!(null))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{v}");
    // Nothing changed so far.
    let (_, t) = kit
        .get(&kit.admin, &format!("/api/tasks/{}", task["task"]["id"]))
        .await;
    assert!(t["task"]["cancelled_at"].is_null(), "{t}");
    // An administrator of the task's organization may; root may (on another task).
    let admin1 = kit.user("adm1", "org_admin", w.org1).await;
    let (s, v) = kit.post(&admin1, &cancel, json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["cancelled_by"], "adm1", "{v}");
    let task = kit.task(&w.researcher1, w.c12, &[w.org2]).await;
    let (s, v) = kit
        .post(
            &kit.admin,
            &format!("/api/tasks/{}/cancel", task["task"]["id"]),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["cancelled_by"], "admin", "{v}");

    // In the OpenAPI document, with its answers.
    let (_, doc) = kit.get(&kit.admin, "/api/openapi.json").await;
    let post = &doc["paths"]["/api/tasks/{id}/cancel"]["post"];
    for status in ["200", "400", "401", "403", "404", "409"] {
        assert!(post["responses"][status].is_object(), "{status}: {post}");
    }
    kit.stop().await;
}

/// A database an older server left (migrations up to 8) keeps its runs through migration
/// 0009's rebuild of the runs table, and they can be cancelled.
#[tokio::test]
async fn an_older_database_keeps_its_runs_and_they_can_be_cancelled() {
    use warden_server::auth::hash_password;
    let admin_hash = hash_password(kit::ADMIN_PASSWORD.into()).await.unwrap();
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
        "INSERT INTO tasks (id, collaboration_id, name, image, organization_id, created_at) \
         VALUES (1, 1, 't', 'registry.example.org/a:1', 1, 1)"
            .into(),
        "INSERT INTO runs (id, task_id, collaboration_id, organization_id, state, digest, has_result, created_at) \
         VALUES (41, 1, 1, 1, 'running', 'sha256:ab', TRUE, 1)"
            .into(),
        "INSERT INTO results (run_id, data, created_at) VALUES (41, 'sealed', 1)".into(),
        "INSERT INTO run_logs (run_id, data, created_at) VALUES (41, 'sealed', 1)".into(),
        "INSERT INTO events (collaboration_id, organization_id, kind, run_id, created_at) \
         VALUES (1, 1, 'run_created', 41, 1)"
            .into(),
    ];
    let seed: Vec<&str> = seed.iter().map(String::as_str).collect();
    let kit = Kit::start_on_old_database(8, &seed).await;
    let (s, v) = kit.get(&kit.admin, "/api/runs/41").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["state"], &v["has_result"]),
        (&json!("running"), &json!(true))
    );
    let (s, v) = kit
        .post(&kit.admin, "/api/tasks/1/cancel", json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["runs"][0]["state"], "cancelled", "{v}");
    // A result uploaded before the run was cancelled (not yet reported completed) is dropped.
    assert_eq!(v["runs"][0]["has_result"], false, "{v}");
    let (s, _) = kit.get_bytes(&kit.admin, "/api/runs/41/result").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = kit.get_bytes(&kit.admin, "/api/runs/41/logs").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    kit.stop().await;
}

#[tokio::test]
async fn cancelling_a_task_cancels_its_subtasks_and_theirs_and_nothing_else() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let task = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let task_id = task["task"]["id"].as_i64().unwrap();
    let central = run_of(&task, w.org1);
    let other = kit.task(&w.researcher1, w.c12, &[w.org2]).await;
    let other_id = other["task"]["id"].as_i64().unwrap();

    // The central run asks both organizations for a partial; one partial asks again.
    let rt = kit.run_token(&w.node1, central, DIGEST).await;
    let pinned = format!("registry.example.org/team/avg@{DIGEST}");
    let body = |orgs: &[i64]| {
        let inputs: Vec<Value> = orgs
            .iter()
            .map(|o| json!({"organization_id": o, "input": ""}))
            .collect();
        json!({"collaboration_id": w.c12, "image": pinned, "inputs": inputs})
    };
    let (s, sub) = kit.post(&rt, "/api/tasks", body(&[w.org1, w.org2])).await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    let sub_id = sub["task"]["id"].as_i64().unwrap();
    let partial1 = run_of(&sub, w.org1);
    let rt2 = kit.run_token(&w.node1, partial1, DIGEST).await;
    let (s, subsub) = kit.post(&rt2, "/api/tasks", body(&[w.org2])).await;
    assert_eq!(s, StatusCode::CREATED, "{subsub}");
    let subsub_id = subsub["task"]["id"].as_i64().unwrap();
    let mut ws2 = connect(&kit, &w.node2, 0).await;
    // Node two has the other task's run, its partial and the sub-subtask's run waiting.
    let mut created = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut ws2).await;
        assert_eq!(e["kind"], "run_created", "{e}");
        created.push(e["run_id"].as_i64().unwrap());
    }

    let (s, v) = kit
        .post(
            &w.researcher1,
            &format!("/api/tasks/{task_id}/cancel"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for id in [task_id, sub_id, subsub_id] {
        let (s, v) = kit.get(&w.researcher1, &format!("/api/tasks/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["task"]["cancelled_by"], "res1", "task {id}: {v}");
        for r in v["runs"].as_array().unwrap() {
            assert_eq!(r["state"], "cancelled", "task {id}: {v}");
        }
    }
    // Node two is told of its two runs of the cancelled tree, naming who cancelled.
    let mut told = Vec::new();
    for _ in 0..2 {
        let e = next_event(&mut ws2).await;
        assert_eq!(
            (&e["kind"], &e["cancelled_by"]),
            (&json!("run_cancelled"), &json!("res1")),
            "{e}"
        );
        told.push(e["run_id"].as_i64().unwrap());
    }
    told.sort_unstable();
    let mut expected = vec![run_of(&sub, w.org2), run_of(&subsub, w.org2)];
    expected.sort_unstable();
    assert_eq!(told, expected);
    // The researcher's other task is untouched.
    let (s, v) = kit
        .get(&w.researcher1, &format!("/api/tasks/{other_id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["task"]["cancelled_at"].is_null(), "{v}");
    assert_eq!(v["runs"][0]["state"], "pending", "{v}");
    assert!(created.contains(&run_of(&other, w.org2)));
}
