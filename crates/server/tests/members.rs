//! Removing an organization from a collaboration (`DELETE /api/collaborations/{id}/members/{org}`)
//! against the real server: refused while its runs there have not ended, then the membership is
//! marked removed (its runs keep it), its users and node lose the collaboration, and adding it
//! again works. On SQLite, and on PostgreSQL when `WARDEN_TEST_DATABASE_URL` names one.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use kit::{Kit, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("<none>")
}

async fn remove(kit: &Kit, token: &str, collab: i64, org: i64) -> (StatusCode, Value) {
    kit.call(
        Method::DELETE,
        Some(token),
        &format!("/api/collaborations/{collab}/members/{org}"),
        None,
    )
    .await
}

fn task_to(collab: i64, orgs: &[i64]) -> Value {
    let inputs: Vec<Value> = orgs
        .iter()
        .map(|o| json!({"organization_id": o, "input": "aGVsbG8="}))
        .collect();
    json!({"collaboration_id": collab, "image": "registry.example.org/team/avg:1.0", "inputs": inputs})
}

#[tokio::test]
async fn root_removes_an_organization_once_its_runs_ended_and_it_loses_the_collaboration() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let researcher2 = kit.user("res2", "researcher", w.org2).await;
    // Organization two's node key in c12, to log in with after the removal.
    let (s, nodes) = kit
        .get(
            &kit.admin,
            &format!("/api/nodes?collaboration_id={}", w.c12),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{nodes}");
    let node2_id = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["organization_id"] == json!(w.org2))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (s, rotated) = kit
        .post(
            &kit.admin,
            &format!("/api/nodes/{node2_id}/key"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let node2_key = rotated["api_key"].as_str().unwrap().to_owned();
    let node2 = kit.node_token(&node2_key).await;

    // A task runs at both; organization two's run has not ended: the removal is refused,
    // naming the run and its task, and nothing changes.
    let task = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    let task_id = task["task"]["id"].as_i64().unwrap();
    let run2 = task["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["organization_id"] == json!(w.org2))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (s, v) = remove(&kit, &kit.admin, w.c12, w.org2).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    let m = message(&v);
    assert!(
        m.contains(&format!("run {run2} of task {task_id}")) && m.contains("cancel"),
        "{v}"
    );
    let (_, c) = kit
        .get(&kit.admin, &format!("/api/collaborations/{}", w.c12))
        .await;
    assert_eq!(c["organizations"], json!([w.org1, w.org2]), "{c}");

    // Organization two's node ends its run (rejected); the removal goes through.
    let (s, v) = kit
        .patch(
            &node2,
            &format!("/api/runs/{run2}"),
            json!({"state": "rejected", "reason": "not for us"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, c) = remove(&kit, &kit.admin, w.c12, w.org2).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["organizations"], json!([w.org1]), "{c}");

    // Gone from the collaboration and from every list.
    let (_, c) = kit
        .get(&kit.admin, &format!("/api/collaborations/{}", w.c12))
        .await;
    assert_eq!(c["organizations"], json!([w.org1]), "{c}");
    let (_, v) = kit
        .get(
            &kit.admin,
            &format!("/api/collaborations?organization_id={}", w.org2),
        )
        .await;
    let ids: Vec<i64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![w.c23], "{v}");
    let (_, v) = kit
        .get(
            &kit.admin,
            &format!("/api/nodes?collaboration_id={}", w.c12),
        )
        .await;
    let orgs: Vec<i64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["organization_id"].as_i64().unwrap())
        .collect();
    assert_eq!(orgs, vec![w.org1], "{v}");

    // Its users no longer see the collaboration; its other collaboration is untouched.
    let (s, v) = kit
        .get(&researcher2, &format!("/api/collaborations/{}", w.c12))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = kit
        .get(&researcher2, &format!("/api/collaborations/{}", w.c23))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // No task targets it there any more.
    let (s, v) = kit
        .post(&w.researcher1, "/api/tasks", task_to(w.c12, &[w.org2]))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert!(message(&v).contains("not a member"), "{v}");
    // Its node's token and key there stop working; its node in c23 keeps working.
    let (s, v) = kit.get(&node2, "/api/events").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/node",
            Some(json!({"api_key": node2_key})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = kit.get(&w.node2_in_c23, "/api/events").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Its key cannot be rotated back while it is removed, saying why.
    let (s, v) = kit
        .post(
            &kit.admin,
            &format!("/api/nodes/{node2_id}/key"),
            json!(null),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert!(message(&v).contains("removed"), "{v}");
    // The history stays: the task still shows organization two's run, as it ended.
    let (s, v) = kit
        .get(&w.researcher1, &format!("/api/tasks/{task_id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let states: Vec<(i64, String)> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["organization_id"].as_i64().unwrap(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(states.contains(&(w.org2, "rejected".into())), "{v}");

    // A second removal, a non-member, unknown ones and bad ids are refused, saying why.
    let (s, v) = remove(&kit, &kit.admin, w.c12, w.org2).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert!(message(&v).contains("already removed"), "{v}");
    let (s, v) = remove(&kit, &kit.admin, w.c12, w.org3).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert!(message(&v).contains("not a member"), "{v}");
    let (s, v) = remove(&kit, &kit.admin, w.c12, 9999).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{v}");
    let (s, v) = remove(&kit, &kit.admin, 9999, w.org2).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"), "{v}");
    for (path, field) in [
        (format!("/api/collaborations/{}/members/0", w.c12), "org"),
        (format!("/api/collaborations/{}/members/x", w.c12), "org"),
        (format!("/api/collaborations/-1/members/{}", w.org2), "id"),
    ] {
        let (s, v) = kit
            .call(Method::DELETE, Some(&kit.admin), &path, None)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["error"]["field"], field, "{path}: {v}");
    }

    // Adding it again works: members, its users, and its node once root rotates its key.
    let (s, c) = kit
        .post(
            &kit.admin,
            &format!("/api/collaborations/{}/members", w.c12),
            json!({"organization_id": w.org2}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["organizations"], json!([w.org1, w.org2]), "{c}");
    let (s, v) = kit
        .get(&researcher2, &format!("/api/collaborations/{}", w.c12))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The key revoked at the removal stays revoked; a rotation gives the node a new one.
    let (s, _) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/node",
            Some(json!({"api_key": node2_key})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, rotated) = kit
        .post(
            &kit.admin,
            &format!("/api/nodes/{node2_id}/key"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let node2 = kit.node_token(rotated["api_key"].as_str().unwrap()).await;
    let again = kit.task(&w.researcher1, w.c12, &[w.org2]).await;
    let (s, events) = kit.get(&node2, "/api/events").await;
    assert_eq!(s, StatusCode::OK, "{events}");
    let runs: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["run_id"].as_i64().unwrap())
        .collect();
    assert!(
        runs.contains(&again["runs"][0]["id"].as_i64().unwrap()),
        "{events}"
    );
    kit.stop().await;
}

#[tokio::test]
async fn only_root_removes_an_organization_and_the_refusal_says_why() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let admin1 = kit.user("adm1", "org_admin", w.org1).await;
    let viewer2 = kit.user("view2", "viewer", w.org2).await;
    for (token, why) in [
        (&w.researcher1, "only root"),
        (&admin1, "only root"),
        (&viewer2, "only root"),
        (&w.node1, "a node may not"),
    ] {
        let (s, v) = remove(&kit, token, w.c12, w.org2).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
        assert!(message(&v).contains(why), "{v}");
    }
    let (s, v) = kit
        .call(
            Method::DELETE,
            None,
            &format!("/api/collaborations/{}/members/{}", w.c12, w.org2),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (_, c) = kit
        .get(&kit.admin, &format!("/api/collaborations/{}", w.c12))
        .await;
    assert_eq!(c["organizations"], json!([w.org1, w.org2]), "{c}");
    // In the OpenAPI document, with its answers.
    let (_, doc) = kit.get(&kit.admin, "/api/openapi.json").await;
    let op = &doc["paths"]["/api/collaborations/{id}/members/{org}"]["delete"];
    for status in ["200", "400", "401", "403", "404", "409"] {
        assert!(op["responses"][status].is_object(), "{status}: {op}");
    }
    kit.stop().await;
}

/// The runs that block a removal end when their task is cancelled (root may): then the removal
/// goes through.
#[tokio::test]
async fn cancelling_the_blocking_task_lets_the_removal_through() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let task = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    let task_id = task["task"]["id"].as_i64().unwrap();
    let (s, v) = remove(&kit, &kit.admin, w.c12, w.org2).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert!(message(&v).contains("warden task cancel"), "{v}");
    let (s, v) = kit
        .post(
            &kit.admin,
            &format!("/api/tasks/{task_id}/cancel"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, c) = remove(&kit, &kit.admin, w.c12, w.org2).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["organizations"], json!([w.org1]), "{c}");
    kit.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(kit: &Kit, token: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}/api/events/ws?after=0", kit.server.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// The server closes the socket (waited for well below the 20 s ping that re-checks tokens
/// anyway, so the close comes from the removal itself).
async fn closed_soon(ws: &mut Socket) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("the session was not closed within 5 s"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// The removed organization's node had its event stream open in that collaboration: the
/// removal closes it at once; its stream in another collaboration stays open.
#[tokio::test]
async fn the_removed_organizations_open_event_stream_closes_at_once() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let mut removed = connect(&kit, &w.node2).await;
    let mut other = connect(&kit, &w.node2_in_c23).await;
    let (s, c) = remove(&kit, &kit.admin, w.c12, w.org2).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    closed_soon(&mut removed).await;
    // The other one still gets its events: a new task in c23 for organization two arrives.
    let researcher3 = kit.user("res3", "researcher", w.org3).await;
    let task = kit.task(&researcher3, w.c23, &[w.org2]).await;
    let run = task["runs"][0]["id"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        match tokio::time::timeout_at(deadline, other.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let e: Value = serde_json::from_str(&t).unwrap();
                if e["run_id"] == json!(run) {
                    break;
                }
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("the c23 stream ended or stayed silent: {other:?}"),
        }
    }
    kit.stop().await;
}
