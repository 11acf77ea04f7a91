//! End-to-end tests of the HTTP API against the real server on loopback.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use kit::{Kit, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const OTHER_DIGEST: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn health_openapi_metrics_and_unknown_routes() {
    let kit = Kit::start().await;
    let (s, v) = kit.call(Method::GET, None, "/api/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    let (s, v) = kit.call(Method::GET, None, "/api/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["openapi"], "3.1.0");
    assert!(v["paths"]["/api/tasks"]["post"].is_object());
    // Taking access away: every route and its body schema.
    for (path, method, schema) in [
        ("/api/users/{id}", "patch", Some("UpdateUser")),
        ("/api/users/{id}/password", "post", Some("ResetPassword")),
        ("/api/users/me/password", "post", Some("ChangePassword")),
        ("/api/nodes/{id}/key", "post", None),
    ] {
        let o = &v["paths"][path][method];
        assert!(o.is_object(), "{method} {path} is missing");
        if let Some(schema) = schema {
            assert_eq!(
                o["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{schema}")
            );
            let s = &v["components"]["schemas"][schema];
            assert_eq!(s["additionalProperties"], false, "{schema}");
        }
    }
    assert_eq!(
        v["paths"]["/api/users/me/password"]["post"]["responses"]["429"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    let (s, v) = kit.call(Method::GET, None, "/api/nothing", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(code(&v), "not_found");
    let r = kit.client.get(kit.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("warden_user_logins_total{outcome=\"success\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("warden_http_responses_total{class=\"4xx\"}"),
        "{text}"
    );
    kit.stop().await;
}

#[tokio::test]
async fn login_failures_are_generic_and_lock_the_account() {
    let kit = Kit::start().await;
    let org = kit.org("one").await;
    kit.user("alice", "researcher", org).await;
    let attempt = |u: &'static str, p: &'static str| {
        let kit = &kit;
        async move {
            kit.call(
                Method::POST,
                None,
                "/api/auth/login",
                Some(json!({"username": u, "password": p})),
            )
            .await
        }
    };
    let (s1, v1) = attempt("alice", "wrong password 1").await;
    let (s2, v2) = attempt("nobody", "wrong password 1").await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    assert_eq!(v1, v2, "unknown users and wrong passwords look the same");
    assert_eq!(v1["error"]["message"], "invalid user name or password");
    // Four more failures reach the default threshold of five.
    for _ in 0..4 {
        assert_eq!(
            attempt("alice", "wrong password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, v) = attempt("alice", kit::PASSWORD).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "locked account refuses the right password"
    );
    assert_eq!(v, v1);
    // An over-long password is refused without hashing, with the same answer.
    let long = "x".repeat(10_000);
    let (s, v) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/login",
            Some(json!({"username": "admin", "password": long})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v, v1);
    // Unknown fields in the login body are refused.
    let (s, v) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/login",
            Some(json!({"username": "admin", "password": "x", "otp": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(code(&v), "invalid_request");
    kit.stop().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_session() {
    let kit = Kit::start().await;
    let (s, first) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/login",
            Some(json!({"username": "admin", "password": kit::ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r1 = first["refresh_token"].as_str().unwrap();
    let (s, second) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/refresh",
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{second}");
    let a2 = second["access_token"].as_str().unwrap();
    assert_ne!(a2, first["access_token"].as_str().unwrap());
    assert_eq!(kit.get(a2, "/api/auth/whoami").await.0, StatusCode::OK);
    // A refresh token is not an access token.
    let (s, _) = kit
        .get(
            second["refresh_token"].as_str().unwrap(),
            "/api/auth/whoami",
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Replaying the used refresh token revokes every token of the session.
    let (s, _) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/refresh",
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        kit.get(a2, "/api/auth/whoami").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        kit.get(first["access_token"].as_str().unwrap(), "/api/auth/whoami")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Logout revokes the session of a fresh login; other sessions stay.
    let t = kit.login("admin", kit::ADMIN_PASSWORD).await;
    let (s, _) = kit
        .call(Method::POST, Some(&t), "/api/auth/logout", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        kit.get(&t, "/api/auth/whoami").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        kit.get(&kit.admin, "/api/auth/whoami").await.0,
        StatusCode::OK
    );
    kit.stop().await;
}

#[tokio::test]
async fn short_lived_access_tokens_expire() {
    let auth = warden_server::config::AuthConfig {
        access_token_ttl_secs: 1,
        ..Default::default()
    };
    let kit = Kit::start_with(auth, Default::default()).await;
    assert_eq!(
        kit.get(&kit.admin, "/api/auth/whoami").await.0,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, v) = kit.get(&kit.admin, "/api/auth/whoami").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&v), "unauthenticated");
    kit.stop().await;
}

#[tokio::test]
async fn node_keys_log_in_once_checked() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let (s, v) = kit.get(&w.node1, "/api/auth/whoami").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["kind"], "node");
    assert_eq!(v["organization_id"], w.org1);
    for bad in ["", "wdn_1_wrong", "wdn_999_abc", "garbage"] {
        let (s, v) = kit
            .call(
                Method::POST,
                None,
                "/api/auth/node",
                Some(json!({"api_key": bad})),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}: {v}");
    }
    // One node per organization per collaboration.
    let (s, v) = kit
        .post(
            &kit.admin,
            "/api/nodes",
            json!({"organization_id": w.org1, "collaboration_id": w.c12}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Only members get a node.
    let (s, v) = kit
        .post(
            &kit.admin,
            "/api/nodes",
            json!({"organization_id": w.org1, "collaboration_id": w.c23}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a member"),
        "{v}"
    );
    kit.stop().await;
}

#[tokio::test]
async fn a_run_goes_through_its_states_with_timestamps() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let detail = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    assert_eq!(detail["task"]["image"], "registry.example.org/team/avg:1.0");
    let runs = detail["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r["state"] == "pending"));
    let run1 = runs
        .iter()
        .find(|r| r["organization_id"] == w.org1)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let run2 = runs
        .iter()
        .find(|r| r["organization_id"] == w.org2)
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // The node sees the run by poll and acknowledges it twice harmlessly.
    let (s, events) = kit.get(&w.node1, "/api/events?after=0").await;
    assert_eq!(s, StatusCode::OK);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["run_id"], run1);
    let (s, a1) = kit
        .post(&w.node1, &format!("/api/runs/{run1}/ack"), json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{a1}");
    let (s, a2) = kit
        .post(&w.node1, &format!("/api/runs/{run1}/ack"), json!(null))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a1["acked_at"], a2["acked_at"]);
    let (s, input) = kit
        .get_bytes(&w.node1, &format!("/api/runs/{run1}/input"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(input, b"hello");

    let path = format!("/api/runs/{run1}");
    // Illegal transitions are conflicts; the digest is required for admitted.
    let (s, v) = kit
        .patch(&w.node1, &path, json!({"state": "running"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = kit
        .patch(&w.node1, &path, json!({"state": "admitted"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "digest");
    let (s, v) = kit
        .patch(
            &w.node1,
            &path,
            json!({"state": "admitted", "digest": DIGEST}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "admitted");
    assert!(v["admitted_at"].is_string());
    // Reporting the same transition again is harmless; a different digest is not.
    let (s, _) = kit
        .patch(
            &w.node1,
            &path,
            json!({"state": "admitted", "digest": DIGEST}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = kit
        .patch(
            &w.node1,
            &path,
            json!({"state": "admitted", "digest": OTHER_DIGEST}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // A token for the algorithm is only issued while running.
    let (s, _) = kit
        .post(&w.node1, &format!("/api/runs/{run1}/token"), json!(null))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = kit
        .patch(&w.node1, &path, json!({"state": "running"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["started_at"].is_string());
    // Completed needs a result first.
    let (s, _) = kit
        .patch(&w.node1, &path, json!({"state": "completed"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let s = kit
        .put_bytes(
            &w.node1,
            &format!("/api/runs/{run1}/result"),
            b"ciphertext".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = kit
        .patch(&w.node1, &path, json!({"state": "completed"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["has_result"], true);
    assert!(v["finished_at"].is_string());
    let (s, v) = kit
        .patch(
            &w.node1,
            &path,
            json!({"state": "failed", "reason": "late"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "final states never change: {v}");
    // The researcher reads the result.
    let (s, bytes) = kit
        .get_bytes(&w.researcher1, &format!("/api/runs/{run1}/result"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bytes, b"ciphertext");

    // The other organization's node rejects with a reason.
    let (s, v) = kit
        .patch(
            &w.node2,
            &format!("/api/runs/{run2}"),
            json!({"state": "rejected"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a rejection needs a reason: {v}"
    );
    let (s, v) = kit
        .patch(
            &w.node2,
            &format!("/api/runs/{run2}"),
            json!({"state": "rejected", "reason": "rule deny-unsigned: no signature"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = kit
        .get(
            &w.researcher1,
            &format!("/api/tasks/{}", detail["task"]["id"]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let r2 = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run2)
        .unwrap()
        .clone();
    assert_eq!(r2["state"], "rejected");
    assert_eq!(r2["reason"], "rule deny-unsigned: no signature");
    // A rejected run has no result for anyone.
    let (s, _) = kit
        .get_bytes(&w.researcher1, &format!("/api/runs/{run2}/result"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    kit.stop().await;
}

#[tokio::test]
async fn a_run_token_allows_only_same_repository_and_digest_subtasks_and_their_results() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let detail = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let task = detail["task"]["id"].as_i64().unwrap();
    let run = detail["runs"][0]["id"].as_i64().unwrap();
    let path = format!("/api/runs/{run}");
    kit.patch(
        &w.node1,
        &path,
        json!({"state": "admitted", "digest": DIGEST}),
    )
    .await;
    kit.patch(&w.node1, &path, json!({"state": "running"}))
        .await;
    let (s, v) = kit
        .post(&w.node1, &format!("/api/runs/{run}/token"), json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rt = v["token"].as_str().unwrap().to_owned();

    let sub = |image: String, collab: i64, orgs: Vec<i64>| {
        let inputs: Vec<Value> = orgs
            .iter()
            .map(|o| json!({"organization_id": o, "input": ""}))
            .collect();
        json!({"collaboration_id": collab, "image": image, "inputs": inputs})
    };
    let pinned = format!("registry.example.org/team/avg@{DIGEST}");
    let (s, v) = kit
        .post(
            &rt,
            "/api/tasks",
            sub(pinned.clone(), w.c12, vec![w.org1, w.org2]),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["task"]["parent_task_id"], task);
    assert_eq!(v["task"]["creator_run_id"], run);
    let subrun = v["runs"][0]["id"].as_i64().unwrap();
    // Another digest, an unpinned tag, or another collaboration is refused.
    let (s, v) = kit
        .post(
            &rt,
            "/api/tasks",
            sub(
                format!("registry.example.org/team/avg@{OTHER_DIGEST}"),
                w.c12,
                vec![w.org1],
            ),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = kit
        .post(
            &rt,
            "/api/tasks",
            sub(
                "registry.example.org/team/avg:1.0".into(),
                w.c12,
                vec![w.org1],
            ),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = kit
        .post(&rt, "/api/tasks", sub(pinned.clone(), w.c23, vec![w.org2]))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The same digest in another repository is refused too: whoever can push there could
    // otherwise send the run's nodes an image that only claims the digest.
    for other in [
        format!("registry.example.org/team/other@{DIGEST}"),
        format!("registry.example.org/team/avg/x@{DIGEST}"),
        format!("evil.example.org/team/avg@{DIGEST}"),
        format!("avg@{DIGEST}"),
    ] {
        let (s, v) = kit
            .post(&rt, "/api/tasks", sub(other.clone(), w.c12, vec![w.org1]))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{other}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("repository"),
            "{other}: {v}"
        );
    }
    // It sees its subtasks only.
    let (s, v) = kit.get(&rt, "/api/tasks").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    // The same repository written differently (normalised) and with a tag is the same image.
    let (s, v) = kit
        .post(
            &rt,
            "/api/tasks",
            sub(
                format!("Registry.Example.org/team/avg:1.0@{DIGEST}"),
                w.c12,
                vec![w.org2],
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        kit.get(&rt, &format!("/api/tasks/{task}")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(kit.get(&rt, "/api/users").await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        kit.get(&rt, &format!("/api/runs/{run}/input")).await.0,
        StatusCode::FORBIDDEN
    );
    // It reads its subtask's result once the subtask's node produced one.
    let sp = format!("/api/runs/{subrun}");
    kit.patch(
        &w.node1,
        &sp,
        json!({"state": "admitted", "digest": DIGEST}),
    )
    .await;
    kit.patch(&w.node1, &sp, json!({"state": "running"})).await;
    assert_eq!(
        kit.put_bytes(&w.node1, &format!("{sp}/result"), b"partial".to_vec())
            .await,
        StatusCode::NO_CONTENT
    );
    let (s, bytes) = kit.get_bytes(&rt, &format!("{sp}/result")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(bytes, b"partial");
    // The token dies with the run.
    kit.put_bytes(&w.node1, &format!("{path}/result"), b"r".to_vec())
        .await;
    let (s, _) = kit
        .patch(&w.node1, &path, json!({"state": "completed"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = kit.get(&rt, "/api/tasks").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    kit.stop().await;
}

#[tokio::test]
async fn unauthenticated_is_401_and_forbidden_is_403() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let (s, v) = kit.call(Method::GET, None, "/api/tasks", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&v), "unauthenticated");
    let (s, _) = kit.get("wat_not-a-real-token", "/api/tasks").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = kit
        .post(
            &w.researcher1,
            "/api/organizations",
            json!({"name": "x", "public_key": kit::PUBLIC_KEY}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(code(&v), "forbidden");
    kit.stop().await;
}

/// Every resource, read and written across organizations and collaborations.
#[tokio::test]
async fn cross_organization_and_cross_collaboration_access_is_denied() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let admin3 = kit.user("admin3", "org_admin", w.org3).await;
    let researcher3 = kit.user("res3", "researcher", w.org3).await;
    let viewer1 = kit.user("view1", "viewer", w.org1).await;
    let admin1 = kit.user("admin1", "org_admin", w.org1).await;
    let t12 = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    let task12 = t12["task"]["id"].as_i64().unwrap();
    let run_org1 = t12["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["organization_id"] == w.org1)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let run_org2 = t12["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["organization_id"] == w.org2)
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    // Organizations: org3 shares nothing with org1.
    assert_eq!(
        kit.get(&researcher3, &format!("/api/organizations/{}", w.org1))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&researcher3, &format!("/api/organizations/{}", w.org3))
            .await
            .0,
        StatusCode::OK
    );
    let (_, v) = kit.get(&researcher3, "/api/organizations").await;
    let ids: Vec<i64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert!(!ids.contains(&w.org1), "{ids:?}");
    // Collaborations.
    assert_eq!(
        kit.get(&researcher3, &format!("/api/collaborations/{}", w.c12))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&w.node2_in_c23, &format!("/api/collaborations/{}", w.c12))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, v) = kit.get(&researcher3, "/api/collaborations").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    // Users: an org admin creates and reads users of its own organization only.
    let (s, _) = kit
        .post(&admin3, "/api/users", json!({"username": "intruder", "password": kit::PASSWORD, "role": "researcher", "organization_id": w.org1}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = kit
        .post(
            &admin1,
            "/api/users",
            json!({"username": "newroot", "password": kit::PASSWORD, "role": "root"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = kit
        .post(&admin1, "/api/users", json!({"username": "colleague", "password": kit::PASSWORD, "role": "viewer", "organization_id": w.org1}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let colleague = v["id"].as_i64().unwrap();
    assert_eq!(
        kit.get(&admin3, &format!("/api/users/{colleague}")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&admin3, &format!("/api/users?organization_id={}", w.org1))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, v) = kit.get(&admin3, "/api/users").await;
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["organization_id"] == w.org3),
        "{v}"
    );
    assert_eq!(
        kit.get(&w.researcher1, &format!("/api/users/{colleague}"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.patch(
            &admin3,
            &format!("/api/users/{colleague}"),
            json!({"disabled": true})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.post(
            &admin3,
            &format!("/api/users/{colleague}/password"),
            json!({"password": "a new password of admin3's choosing"})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // Only root creates organizations and collaborations.
    for token in [&admin1, &admin3, &w.researcher1, &w.node1] {
        let (s, v) = kit
            .post(
                token,
                "/api/organizations",
                json!({"name": "rogue", "public_key": kit::PUBLIC_KEY}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = kit
            .post(
                token,
                "/api/collaborations",
                json!({"name": "rogue", "organizations": [w.org1, w.org3]}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    // Nodes.
    let (s, _) = kit
        .post(
            &admin3,
            "/api/nodes",
            json!({"organization_id": w.org1, "collaboration_id": w.c12}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, v) = kit.get(&admin3, "/api/nodes").await;
    assert!(v["items"].as_array().unwrap().is_empty(), "{v}");
    let (_, v) = kit.get(&admin1, "/api/nodes").await;
    let node1_id = v["items"][0]["id"].as_i64().unwrap();
    assert_eq!(
        kit.get(&admin3, &format!("/api/nodes/{node1_id}")).await.0,
        StatusCode::FORBIDDEN
    );
    for token in [&admin3, &w.researcher1, &w.node1, &w.node2] {
        let (s, v) = kit
            .post(token, &format!("/api/nodes/{node1_id}/key"), json!(null))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    assert_eq!(
        kit.get(&w.node2, &format!("/api/nodes/{node1_id}")).await.0,
        StatusCode::FORBIDDEN
    );
    // Tasks: no creation or reading outside one's collaborations; viewers cannot create.
    let (s, _) = kit
        .post(&researcher3, "/api/tasks", json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": [{"organization_id": w.org2, "input": ""}]}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = kit
        .post(&viewer1, "/api/tasks", json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": [{"organization_id": w.org2, "input": ""}]}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        kit.get(&researcher3, &format!("/api/tasks/{task12}"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&w.node2_in_c23, &format!("/api/tasks/{task12}"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&viewer1, &format!("/api/tasks/{task12}")).await.0,
        StatusCode::OK
    );
    let (_, v) = kit.get(&researcher3, "/api/tasks").await;
    assert!(v["items"].as_array().unwrap().is_empty());
    let (_, v) = kit
        .get(
            &researcher3,
            &format!("/api/tasks?collaboration_id={}", w.c12),
        )
        .await;
    assert!(v["items"].as_array().unwrap().is_empty());
    // Runs: a node sees and operates only its own organization's runs in its collaboration.
    assert_eq!(
        kit.get(&w.node1, &format!("/api/runs/{run_org2}")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&w.node2_in_c23, &format!("/api/runs/{run_org2}"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.post(&w.node1, &format!("/api/runs/{run_org2}/ack"), json!(null))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get_bytes(&w.node1, &format!("/api/runs/{run_org2}/input"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.patch(
            &w.node2_in_c23,
            &format!("/api/runs/{run_org2}"),
            json!({"state": "rejected", "reason": "x"})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.put_bytes(&w.node1, &format!("/api/runs/{run_org2}/result"), vec![1])
            .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&researcher3, &format!("/api/runs/{run_org1}"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, v) = kit.get(&w.node1, "/api/runs").await;
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["organization_id"] == w.org1)
    );
    assert_eq!(
        kit.get(&w.node1, &format!("/api/runs?organization_id={}", w.org2))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (_, v) = kit.get(&w.node2_in_c23, "/api/runs").await;
    assert!(v["items"].as_array().unwrap().is_empty());
    let (_, v) = kit
        .get(
            &researcher3,
            &format!("/api/runs?collaboration_id={}", w.c12),
        )
        .await;
    assert!(v["items"].as_array().unwrap().is_empty(), "{v}");
    // Users may not act as nodes.
    assert_eq!(
        kit.post(
            &w.researcher1,
            &format!("/api/runs/{run_org1}/ack"),
            json!(null)
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.post(
            &kit.admin,
            &format!("/api/runs/{run_org1}/ack"),
            json!(null)
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&w.researcher1, "/api/events").await.0,
        StatusCode::FORBIDDEN
    );
    // Results: only the creating organization (not viewers, not other members, not nodes).
    let p = format!("/api/runs/{run_org2}");
    kit.patch(&w.node2, &p, json!({"state": "admitted", "digest": DIGEST}))
        .await;
    kit.patch(&w.node2, &p, json!({"state": "running"})).await;
    // A run token for the algorithm: only the run's own node gets one, even while it runs.
    for (who, token) in [
        ("node of another organization, same collaboration", &w.node1),
        (
            "node of the same organization, other collaboration",
            &w.node2_in_c23,
        ),
        ("researcher of the task's organization", &w.researcher1),
        ("org admin", &admin1),
        ("root", &kit.admin),
    ] {
        let (s, v) = kit.post(token, &format!("{p}/token"), json!(null)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{who}: {v}");
        assert_eq!(code(&v), "forbidden", "{who}: {v}");
    }
    let (s, v) = kit.post(&w.node2, &format!("{p}/token"), json!(null)).await;
    assert_eq!(s, StatusCode::OK, "the run's own node: {v}");
    let run2_token = v["token"].as_str().unwrap().to_owned();
    // The run token of org2's run reaches nothing of org1's run or outside its collaboration.
    assert_eq!(
        kit.get(&run2_token, &format!("/api/runs/{run_org1}"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&run2_token, &format!("/api/tasks/{task12}"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get_bytes(&run2_token, &format!("/api/runs/{run_org1}/result"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&run2_token, &format!("/api/collaborations/{}", w.c23))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get(&run2_token, &format!("/api/organizations/{}", w.org3))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    for (path, body) in [
        (format!("/api/runs/{run_org1}/ack"), json!(null)),
        (format!("/api/runs/{run_org2}/token"), json!(null)),
        (
            "/api/tasks".to_owned(),
            json!({"collaboration_id": w.c23, "image": format!("a/b@{DIGEST}"), "inputs": [{"organization_id": w.org3, "input": ""}]}),
        ),
    ] {
        let (s, v) = kit.post(&run2_token, &path, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
    }
    assert_eq!(
        kit.get(&run2_token, "/api/events").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.patch(
            &w.node1,
            &format!("/api/runs/{run_org2}"),
            json!({"state": "failed", "reason": "x"})
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.put_bytes(&w.node2, &format!("{p}/result"), b"sealed".to_vec())
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        kit.get_bytes(&w.researcher1, &format!("{p}/result"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        kit.get_bytes(&viewer1, &format!("{p}/result")).await.0,
        StatusCode::FORBIDDEN
    );
    let res2 = kit.user("res2", "researcher", w.org2).await;
    assert_eq!(
        kit.get_bytes(&res2, &format!("{p}/result")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get_bytes(&researcher3, &format!("{p}/result")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        kit.get_bytes(&w.node2, &format!("{p}/result")).await.0,
        StatusCode::FORBIDDEN
    );
    // Events: a node only sees events for itself.
    let (_, v) = kit.get(&w.node2_in_c23, "/api/events").await;
    assert!(v.as_array().unwrap().is_empty());
    kit.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_without_partial_writes() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let post = |body: Value| {
        let kit = &kit;
        let t = w.researcher1.clone();
        async move { kit.post(&t, "/api/tasks", body).await }
    };
    let ok_inputs = json!([{"organization_id": w.org1, "input": ""}]);
    let cases = [
        (
            json!({"collaboration_id": w.c12, "image": "spaces are not allowed:1", "inputs": ok_inputs}),
            "image",
        ),
        (
            json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": []}),
            "inputs",
        ),
        (
            json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": [{"organization_id": w.org1, "input": "***"}]}),
            "inputs",
        ),
        (
            json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": ok_inputs, "name": "x".repeat(300)}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let (s, v) = post(body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    // What JSON Schema cannot say (an organization twice, a target that is not a member) is
    // a conflict; a parent that does not exist is not found, naming the field.
    for (body, status, field) in [
        (
            json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": [{"organization_id": w.org1, "input": ""}, {"organization_id": w.org1, "input": ""}]}),
            StatusCode::CONFLICT,
            Value::Null,
        ),
        (
            json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": [{"organization_id": w.org1, "input": ""}, {"organization_id": w.org3, "input": ""}]}),
            StatusCode::CONFLICT,
            Value::Null,
        ),
        (
            json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": ok_inputs, "parent_task_id": 999}),
            StatusCode::NOT_FOUND,
            json!("parent_task_id"),
        ),
    ] {
        let (s, v) = post(body.clone()).await;
        assert_eq!(s, status, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    for body in [
        json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": ok_inputs, "priority": 1}),
        json!({"collaboration_id": "one", "image": "a/b:1", "inputs": ok_inputs}),
        json!({"image": "a/b:1", "inputs": ok_inputs}),
    ] {
        let (s, v) = post(body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(code(&v), "invalid_request");
    }
    let r = kit
        .client
        .post(kit.url("/api/tasks"))
        .bearer_auth(&w.researcher1)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Nothing was written by any of the refused requests.
    let (_, v) = kit.get(&w.researcher1, "/api/tasks").await;
    assert!(v["items"].as_array().unwrap().is_empty(), "{v}");
    let (_, v) = kit.get(&w.node1, "/api/events").await;
    assert!(v.as_array().unwrap().is_empty());
    // Query strings and ids are validated too.
    assert_eq!(
        kit.get(&w.researcher1, "/api/tasks?limit=0").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        kit.get(&w.researcher1, "/api/tasks?limit=501").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        kit.get(&w.researcher1, "/api/tasks?colour=red").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        kit.get(&w.researcher1, "/api/runs?state=done").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        kit.get(&w.researcher1, "/api/tasks/abc").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        kit.get(&w.researcher1, "/api/tasks/-3").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        kit.get(&w.researcher1, "/api/tasks/12345").await.0,
        StatusCode::NOT_FOUND
    );
    // Other bodies.
    let (s, v) = kit
        .post(
            &kit.admin,
            "/api/organizations",
            json!({"name": "x", "public_key": "c2hvcnQ="}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("public_key"))
    );
    let (s, _) = kit
        .post(
            &kit.admin,
            "/api/organizations",
            json!({"name": "one", "public_key": kit::PUBLIC_KEY}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = kit
        .post(
            &kit.admin,
            "/api/collaborations",
            json!({"name": "c", "organizations": [w.org1, 999]}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v) = kit.get(&kit.admin, "/api/collaborations").await;
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        2,
        "no half-made collaboration: {v}"
    );
    let (s, v) = kit
        .post(&kit.admin, "/api/users", json!({"username": "Bad Name", "password": kit::PASSWORD, "role": "viewer", "organization_id": w.org1}))
        .await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("username"))
    );
    let (s, v) = kit
        .post(&kit.admin, "/api/users", json!({"username": "shorty", "password": "short", "role": "viewer", "organization_id": w.org1}))
        .await;
    assert_eq!(
        (s, v["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("password"))
    );
    let (s, _) = kit
        .post(&kit.admin, "/api/users", json!({"username": "res1", "password": kit::PASSWORD, "role": "viewer", "organization_id": w.org1}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    kit.stop().await;
}

#[tokio::test]
async fn request_bodies_are_size_limited() {
    let limits = warden_server::config::LimitsConfig {
        max_body_bytes: 4096,
        max_result_bytes: 8192,
        max_targets: 2,
        ..Default::default()
    };
    let kit = Kit::start_with(Default::default(), limits).await;
    let w = World::build(&kit).await;
    let big = "A".repeat(8000);
    let (s, v) = kit
        .post(&w.researcher1, "/api/tasks", json!({"collaboration_id": w.c12, "image": "a/b:1", "inputs": [{"organization_id": w.org1, "input": big}]}))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(code(&v), "payload_too_large");
    let d = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let run = d["runs"][0]["id"].as_i64().unwrap();
    let p = format!("/api/runs/{run}");
    kit.patch(&w.node1, &p, json!({"state": "admitted", "digest": DIGEST}))
        .await;
    kit.patch(&w.node1, &p, json!({"state": "running"})).await;
    assert_eq!(
        kit.put_bytes(&w.node1, &format!("{p}/result"), vec![0; 8000])
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        kit.put_bytes(&w.node1, &format!("{p}/result"), vec![0; 9000])
            .await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    kit.stop().await;
}

#[tokio::test]
async fn lists_are_keyset_paginated_and_filtered() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(
            kit.task(&w.researcher1, w.c12, &[w.org1]).await["task"]["id"]
                .as_i64()
                .unwrap(),
        );
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/api/tasks?limit=3".to_owned();
    loop {
        let (s, v) = kit.get(&w.researcher1, &path).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        seen.extend(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap()),
        );
        match v["next"].as_i64() {
            Some(n) => path = format!("/api/tasks?limit=3&after={n}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "newest first, no gaps or repeats");
    let (_, v) = kit
        .get(
            &w.researcher1,
            &format!(
                "/api/runs?state=pending&organization_id={}&limit=500",
                w.org1
            ),
        )
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 7);
    let (_, v) = kit.get(&w.researcher1, "/api/runs?state=completed").await;
    assert!(v["items"].as_array().unwrap().is_empty());
    let (_, v) = kit
        .get(&w.researcher1, &format!("/api/runs?task_id={}", ids[0]))
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    kit.stop().await;
}

/// Concurrent creations (group-committed on SQLite): each request succeeds or fails on its own.
#[tokio::test]
async fn concurrent_task_creations_succeed_or_fail_independently() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let researcher3 = kit.user("res3", "researcher", w.org3).await;
    let mut handles = Vec::new();
    for i in 0..40 {
        let (token, target) = match i % 4 {
            0 => (w.researcher1.clone(), w.org3), // not a member: 409
            1 => (researcher3.clone(), w.org2),   // other collaboration: 403
            _ => (w.researcher1.clone(), w.org2), // fine
        };
        let client = kit.client.clone();
        let url = kit.url("/api/tasks");
        let c12 = w.c12;
        let org1 = w.org1;
        handles.push(tokio::spawn(async move {
            let body = json!({"collaboration_id": c12, "image": "a/b:1", "inputs": [
                {"organization_id": org1, "input": ""}, {"organization_id": target, "input": ""}]});
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    for (i, s) in statuses.iter().enumerate() {
        let want = match i % 4 {
            0 => StatusCode::CONFLICT,
            1 => StatusCode::FORBIDDEN,
            _ => StatusCode::CREATED,
        };
        assert_eq!(*s, want, "request {i}");
    }
    let (_, v) = kit.get(&w.researcher1, "/api/tasks?limit=500").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 20);
    let (_, v) = kit.get(&w.node1, "/api/events?limit=500").await;
    assert_eq!(v.as_array().unwrap().len(), 20);
    kit.stop().await;
}

/// Admit and start `run` at node `node`, then hand back a run token for it.
#[tokio::test]
async fn tasks_name_the_requesting_user_and_subtasks_name_the_root_tasks_creator() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let other = kit.user("rita", "researcher", w.org2).await;
    let detail = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    assert_eq!(detail["task"]["creator_username"], "res1", "{detail}");
    let task = detail["task"]["id"].as_i64().unwrap();
    let run = detail["runs"][0]["id"].as_i64().unwrap();
    let rita_task = kit.task(&other, w.c12, &[w.org1]).await;
    assert_eq!(rita_task["task"]["creator_username"], "rita");
    let rita_task = rita_task["task"]["id"].as_i64().unwrap();

    // The node reads the name with the task (it may not read users).
    let (s, v) = kit.get(&w.node1, &format!("/api/tasks/{task}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["creator_username"], "res1");
    assert!(v["task"]["creator_user_id"].as_i64().is_some());
    let (s, v) = kit.get(&w.node1, &format!("/api/tasks/{rita_task}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["creator_username"], "rita");

    // A subtask created by a run carries the root task's creator, and so does a subtask of it.
    let rt = kit.run_token(&w.node1, run, DIGEST).await;
    let pinned = format!("registry.example.org/team/avg@{DIGEST}");
    let body = json!({"collaboration_id": w.c12, "image": pinned,
        "inputs": [{"organization_id": w.org1, "input": ""}]});
    let (s, sub) = kit.post(&rt, "/api/tasks", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["task"]["creator_user_id"], Value::Null);
    assert_eq!(sub["task"]["creator_username"], "res1");
    let sub_id = sub["task"]["id"].as_i64().unwrap();
    let subrun = sub["runs"][0]["id"].as_i64().unwrap();
    let rt2 = kit.run_token(&w.node1, subrun, DIGEST).await;
    let (s, subsub) = kit.post(&rt2, "/api/tasks", body).await;
    assert_eq!(s, StatusCode::CREATED, "{subsub}");
    assert_eq!(subsub["task"]["parent_task_id"], sub_id);
    assert_eq!(subsub["task"]["creator_username"], "res1");
    let subsub_id = subsub["task"]["id"].as_i64().unwrap();
    for id in [sub_id, subsub_id] {
        let (s, v) = kit.get(&w.node1, &format!("/api/tasks/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["task"]["creator_user_id"], Value::Null);
        assert_eq!(v["task"]["creator_username"], "res1", "{v}");
    }

    // Lists carry it too, on every row and across pages.
    let (s, v) = kit.get(&w.researcher1, "/api/tasks?limit=2").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let page1 = v["items"].as_array().unwrap().clone();
    let next = v["next"].as_i64().unwrap();
    let (s, v) = kit
        .get(&w.researcher1, &format!("/api/tasks?limit=2&after={next}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let names: Vec<(i64, String)> = page1
        .iter()
        .chain(v["items"].as_array().unwrap())
        .map(|t| {
            (
                t["id"].as_i64().unwrap(),
                t["creator_username"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (subsub_id, "res1".to_owned()),
            (sub_id, "res1".to_owned()),
            (rita_task, "rita".to_owned()),
            (task, "res1".to_owned()),
        ]
    );
    // The run's own list (its subtasks only) names the root creator as well.
    let (s, v) = kit.get(&rt2, "/api/tasks").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"][0]["creator_username"], "res1");
    kit.stop().await;
}

/// Ids of a list answer, in order.
fn ids_of(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {v}"))
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

async fn create_task_with(
    kit: &Kit,
    token: &str,
    collab: i64,
    org: i64,
    image: &str,
    parent: Option<i64>,
) -> i64 {
    let (s, v) = kit
        .post(
            token,
            "/api/tasks",
            json!({"collaboration_id": collab, "image": image, "parent_task_id": parent,
                   "inputs": [{"organization_id": org, "input": "aGVsbG8="}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["task"]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn every_list_filter_selects_exactly_its_rows() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let res2 = kit.user("res2", "researcher", w.org2).await;
    let (_, me1) = kit.get(&w.researcher1, "/api/auth/whoami").await;
    let (_, me2) = kit.get(&res2, "/api/auth/whoami").await;
    let (res1_id, res2_id) = (me1["id"].as_i64().unwrap(), me2["id"].as_i64().unwrap());

    // Organizations: exact name, within what the caller may see.
    let get = |t: &str, p: String| {
        let t = t.to_owned();
        let kit = &kit;
        async move {
            let (s, v) = kit.get(&t, &p).await;
            assert_eq!(s, StatusCode::OK, "{p}: {v}");
            ids_of(&v)
        }
    };
    assert_eq!(
        get(&kit.admin, "/api/organizations?name=two".into()).await,
        [w.org2]
    );
    assert_eq!(
        get(&kit.admin, "/api/organizations?name=tw".into()).await,
        [0i64; 0]
    );
    assert_eq!(
        get(&kit.admin, "/api/organizations?name=TWO".into()).await,
        [0i64; 0]
    );
    assert_eq!(
        get(&w.researcher1, "/api/organizations?name=two".into()).await,
        [w.org2]
    );
    // org3 shares no collaboration with org1: the name does not reveal it.
    assert_eq!(
        get(&w.researcher1, "/api/organizations?name=three".into()).await,
        [0i64; 0]
    );
    assert_eq!(
        get(&kit.admin, "/api/organizations?limit=500".into()).await,
        [w.org3, w.org2, w.org1]
    );

    // Collaborations: exact name and member organization, within the visible set.
    assert_eq!(
        get(&kit.admin, "/api/collaborations?name=c23".into()).await,
        [w.c23]
    );
    assert_eq!(
        get(
            &kit.admin,
            format!("/api/collaborations?organization_id={}", w.org2)
        )
        .await,
        [w.c23, w.c12]
    );
    assert_eq!(
        get(
            &kit.admin,
            format!("/api/collaborations?organization_id={}", w.org3)
        )
        .await,
        [w.c23]
    );
    assert_eq!(
        get(
            &kit.admin,
            format!("/api/collaborations?organization_id={}&name=c12", w.org3)
        )
        .await,
        [0i64; 0]
    );
    assert_eq!(
        get(
            &kit.admin,
            format!("/api/collaborations?organization_id={}&limit=1", w.org2)
        )
        .await,
        [w.c23]
    );
    assert_eq!(
        get(
            &kit.admin,
            format!(
                "/api/collaborations?organization_id={}&after={}",
                w.org2, w.c23
            )
        )
        .await,
        [w.c12]
    );
    assert_eq!(
        get(
            &w.researcher1,
            format!("/api/collaborations?organization_id={}", w.org3)
        )
        .await,
        [0i64; 0]
    );
    assert_eq!(
        get(&w.researcher1, "/api/collaborations?name=c23".into()).await,
        [0i64; 0]
    );

    // Tasks.
    let avg = "registry.example.org/team/avg:1.0";
    let t1 = create_task_with(&kit, &w.researcher1, w.c12, w.org1, avg, None).await;
    let sub = create_task_with(&kit, &w.researcher1, w.c12, w.org2, avg, Some(t1)).await;
    let t2 = create_task_with(
        &kit,
        &res2,
        w.c12,
        w.org1,
        "registry.example.org/team/other:2",
        None,
    )
    .await;
    let t3 = create_task_with(&kit, &res2, w.c23, w.org3, "mean:1.0", None).await;
    let t4 = create_task_with(&kit, &res2, w.c23, w.org3, "mean:1.0", Some(t3)).await;
    let all = |q: String| get(&kit.admin, format!("/api/tasks?{q}"));
    assert_eq!(
        all(format!("collaboration_id={}", w.c12)).await,
        [t2, sub, t1]
    );
    assert_eq!(all(format!("collaboration_id={}", w.c23)).await, [t4, t3]);
    assert_eq!(all(format!("parent_task_id={t1}")).await, [sub]);
    assert_eq!(all(format!("parent_task_id={t3}")).await, [t4]);
    assert_eq!(all(format!("parent_task_id={t2}")).await, [0i64; 0]);
    assert_eq!(all(format!("creator_user_id={res1_id}")).await, [sub, t1]);
    assert_eq!(
        all(format!("creator_user_id={res2_id}")).await,
        [t4, t3, t2]
    );
    assert_eq!(all(format!("organization_id={}", w.org1)).await, [sub, t1]);
    assert_eq!(
        all(format!("organization_id={}", w.org2)).await,
        [t4, t3, t2]
    );
    assert_eq!(all(format!("organization_id={}", w.org3)).await, [0i64; 0]);
    assert_eq!(all(format!("image={avg}")).await, [sub, t1]);
    // The filter is normalised like the stored reference.
    assert_eq!(all("image=mean:1.0".into()).await, [t4, t3]);
    assert_eq!(
        all("image=docker.io/library/mean:1.0".into()).await,
        [t4, t3]
    );
    assert_eq!(all("image=mean:1.1".into()).await, [0i64; 0]);
    // Filters combine, and keyset pagination runs through a filtered list.
    assert_eq!(
        all(format!(
            "creator_user_id={res2_id}&collaboration_id={}",
            w.c12
        ))
        .await,
        [t2]
    );
    assert_eq!(
        all(format!("creator_user_id={res2_id}&limit=2")).await,
        [t4, t3]
    );
    assert_eq!(
        all(format!("creator_user_id={res2_id}&limit=2&after={t3}")).await,
        [t2]
    );
    assert_eq!(
        all(format!(
            "organization_id={}&image=mean:1.0&after={t4}",
            w.org2
        ))
        .await,
        [t3]
    );
    // A member of org1 sees only c12's tasks, whatever the filter asks.
    assert_eq!(
        get(
            &w.researcher1,
            format!("/api/tasks?creator_user_id={res2_id}")
        )
        .await,
        [t2]
    );
    assert_eq!(
        get(
            &w.researcher1,
            format!("/api/tasks?organization_id={}", w.org2)
        )
        .await,
        [t2]
    );
    // An image filter that is no reference matches no task (every string is a valid filter).
    let (s, v) = kit
        .get(&kit.admin, "/api/tasks?image=Not%20A%20Reference")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"], json!([]), "{v}");
    // Bad filter values are refused with their field.
    for bad in [
        "/api/organizations?organization_id=1",
        "/api/collaborations?organization_id=x",
        "/api/tasks?state=pending",
    ] {
        let (s, v) = kit.get(&kit.admin, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    kit.stop().await;
}

/// A task body for `collab` targeting `org`, with `nonce` when given.
fn task_body(collab: i64, org: i64, image: &str, nonce: Option<&str>) -> Value {
    let mut body = json!({"collaboration_id": collab, "image": image,
        "inputs": [{"organization_id": org, "input": "aGVsbG8="}]});
    if let Some(n) = nonce {
        body["nonce"] = json!(n);
    }
    body
}

#[tokio::test]
async fn names_refuse_every_control_character_and_reasons_keep_their_rule() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let bad_names = [
        ("line\nbreak", "U+000A"),
        ("tab\there", "U+0009"),
        ("esc\u{1b}[2K", "U+001B"),
        ("carriage\rreturn", "U+000D"),
        ("next\u{85}line", "U+0085"),
        ("line\u{2028}separator", "U+2028"),
        ("right\u{202e}to left", "U+202E"),
    ];
    for (name, shown) in bad_names {
        for (path, body) in [
            (
                "/api/organizations",
                json!({"name": name, "public_key": kit::PUBLIC_KEY}),
            ),
            (
                "/api/collaborations",
                json!({"name": name, "organizations": [w.org1]}),
            ),
        ] {
            let (s, v) = kit.post(&kit.admin, path, body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {name:?}: {v}");
            assert_eq!(code(&v), "invalid_request", "{v}");
            assert_eq!(v["error"]["field"], "name", "{v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with("name contains the character")
                    && message.contains(shown)
                    && message.contains("line breaks, tabs"),
                "{path} {name:?}: {message}"
            );
        }
        let mut body = task_body(w.c12, w.org1, "a/b:1", None);
        body["name"] = json!(name);
        let (s, v) = kit.post(&w.researcher1, "/api/tasks", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "task {name:?}: {v}");
        assert_eq!(v["error"]["field"], "name", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(shown),
            "{v}"
        );
    }
    // Nothing of it was written.
    let (_, v) = kit.get(&kit.admin, "/api/organizations").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 3, "{v}");
    let (_, v) = kit.get(&kit.admin, "/api/collaborations").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");
    let (_, v) = kit.get(&w.researcher1, "/api/tasks").await;
    assert!(v["items"].as_array().unwrap().is_empty(), "{v}");

    // Printable Unicode stays allowed, and so does an empty task name.
    let (s, v) = kit
        .post(
            &kit.admin,
            "/api/organizations",
            json!({"name": "Hôpital Saint-Éloi (Zürich)", "public_key": kit::PUBLIC_KEY}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut body = task_body(w.c12, w.org1, "a/b:1", None);
    body["name"] = json!("");
    let (s, v) = kit.post(&w.researcher1, "/api/tasks", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // A reason is free text: line breaks and tabs stay allowed, other controls do not.
    let run = v["runs"][0]["id"].as_i64().unwrap();
    let path = format!("/api/runs/{run}");
    let (s, v) = kit
        .patch(
            &w.node1,
            &path,
            json!({"state": "rejected", "reason": "bad \u{1b}[31m"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "reason", "{v}");
    let reason = "policy refused:\n\tthe image is not allowed";
    let (s, v) = kit
        .patch(
            &w.node1,
            &path,
            json!({"state": "rejected", "reason": reason}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["reason"], reason);
    kit.stop().await;
}

#[tokio::test]
async fn task_nonces_are_well_formed_unique_per_collaboration_and_echoed() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let researcher2 = kit.user("res2", "researcher", w.org2).await;
    let image = "registry.example.org/team/avg:1.0";

    // Bad forms: 400 naming the field, nothing written.
    for bad in [
        "a".repeat(31),
        "a".repeat(129),
        format!("{}!", "a".repeat(40)),
        format!("{}\n", "a".repeat(40)),
        format!("{} ", "a".repeat(40)),
        format!("{}é", "a".repeat(40)),
        String::new(),
    ] {
        let (s, v) = kit
            .post(
                &w.researcher1,
                "/api/tasks",
                task_body(w.c12, w.org1, image, Some(&bad)),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {v}");
        assert_eq!(v["error"]["field"], "nonce", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("32 to 128 characters"),
            "{v}"
        );
    }
    let (s, v) = kit
        .post(
            &w.researcher1,
            "/api/tasks",
            json!({"collaboration_id": w.c12, "image": image, "nonce": 7,
                   "inputs": [{"organization_id": w.org1, "input": ""}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = kit.get(&w.researcher1, "/api/tasks").await;
    assert!(v["items"].as_array().unwrap().is_empty(), "{v}");

    // The edges of the form are accepted, and the nonce is echoed at creation.
    let n32 = "0123456789abcdefABCDEF_-ghijklmn".to_owned();
    assert_eq!(n32.len(), 32);
    let n128 = "Z".repeat(128);
    let mut ids = Vec::new();
    for n in [&n32, &n128] {
        let (s, v) = kit
            .post(
                &w.researcher1,
                "/api/tasks",
                task_body(w.c12, w.org1, image, Some(n)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["task"]["nonce"], json!(n), "{v}");
        ids.push(v["task"]["id"].as_i64().unwrap());
    }
    // Without a nonce the task has none, any number of times.
    let mut plain = Vec::new();
    for _ in 0..2 {
        let (s, v) = kit
            .post(
                &w.researcher1,
                "/api/tasks",
                task_body(w.c12, w.org1, image, None),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["task"]["nonce"], Value::Null, "{v}");
        plain.push(v["task"]["id"].as_i64().unwrap());
    }

    // Reuse in the same collaboration is a conflict, whoever asks; nothing is written.
    for token in [&w.researcher1, &researcher2] {
        let (s, v) = kit
            .post(
                token,
                "/api/tasks",
                task_body(w.c12, w.org2, image, Some(&n32)),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(code(&v), "conflict", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("nonce is already used by another task in this collaboration"),
            "{message}"
        );
    }
    let (_, events) = kit.get(&w.node2, "/api/events").await;
    assert!(events.as_array().unwrap().is_empty(), "{events}");
    // In another collaboration the same nonce is fine.
    let (s, v) = kit
        .post(
            &researcher2,
            "/api/tasks",
            task_body(w.c23, w.org3, image, Some(&n32)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["task"]["nonce"], json!(n32));
    let other = v["task"]["id"].as_i64().unwrap();

    // Echoed on the task detail (to the researcher and to the node) and in lists.
    for token in [&w.researcher1, &w.node1] {
        let (s, v) = kit.get(token, &format!("/api/tasks/{}", ids[0])).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["task"]["nonce"], json!(n32), "{v}");
        let (s, v) = kit.get(token, &format!("/api/tasks/{}", plain[0])).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["task"]["nonce"], Value::Null, "{v}");
    }
    let (s, v) = kit.get(&researcher2, &format!("/api/tasks/{other}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["nonce"], json!(n32), "{v}");
    let (s, v) = kit
        .get(
            &w.researcher1,
            &format!("/api/tasks?collaboration_id={}", w.c12),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let listed: Vec<(i64, Value)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_i64().unwrap(), t["nonce"].clone()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (plain[1], Value::Null),
            (plain[0], Value::Null),
            (ids[1], json!(n128)),
            (ids[0], json!(n32)),
        ]
    );

    // A subtask created by a run carries its own nonce by the same rules.
    let run = {
        let (_, v) = kit.get(&w.node1, &format!("/api/tasks/{}", ids[0])).await;
        v["runs"][0]["id"].as_i64().unwrap()
    };
    let rt = kit.run_token(&w.node1, run, DIGEST).await;
    let pinned = format!("registry.example.org/team/avg@{DIGEST}");
    let sub_nonce = "s".repeat(40);
    let (s, v) = kit
        .post(
            &rt,
            "/api/tasks",
            task_body(w.c12, w.org2, &pinned, Some("short")),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "nonce", "{v}");
    let (s, v) = kit
        .post(
            &rt,
            "/api/tasks",
            task_body(w.c12, w.org2, &pinned, Some(&n32)),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "the parent's nonce: {v}");
    let (s, v) = kit
        .post(
            &rt,
            "/api/tasks",
            task_body(w.c12, w.org2, &pinned, Some(&sub_nonce)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["task"]["nonce"], json!(sub_nonce), "{v}");
    assert_eq!(v["task"]["parent_task_id"], ids[0], "{v}");
    let sub = v["task"]["id"].as_i64().unwrap();
    let (s, v) = kit.get(&rt, "/api/tasks").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["items"][0]["id"], sub, "{v}");
    assert_eq!(v["items"][0]["nonce"], json!(sub_nonce), "{v}");
    for token in [&w.node2, &rt] {
        let (s, v) = kit.get(token, &format!("/api/tasks/{sub}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["task"]["nonce"], json!(sub_nonce), "{v}");
    }
    kit.stop().await;
}

/// Racing creations with one nonce: exactly one wins, the others are conflicts, and only the
/// winner's run reaches a node (SQLite: inside one group commit; PostgreSQL: on the index).
#[tokio::test]
async fn concurrent_creations_with_one_nonce_create_one_task() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let nonce = "r".repeat(64);
    let mut handles = Vec::new();
    for i in 0..16 {
        let client = kit.client.clone();
        let url = kit.url("/api/tasks");
        let token = w.researcher1.clone();
        // Half of them without a nonce: those all succeed.
        let body = task_body(
            w.c12,
            w.org2,
            "a/b:1",
            (i % 2 == 0).then_some(nonce.as_str()),
        );
        handles.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT if i % 2 == 0 => conflicts += 1,
            s => panic!("request {i}: {s}"),
        }
    }
    assert_eq!((created, conflicts), (9, 7));
    let (_, v) = kit.get(&w.researcher1, "/api/tasks?limit=500").await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 9, "{v}");
    assert_eq!(
        items.iter().filter(|t| t["nonce"] == json!(nonce)).count(),
        1
    );
    let (_, v) = kit.get(&w.node2, "/api/events?limit=500").await;
    assert_eq!(v.as_array().unwrap().len(), 9, "{v}");
    kit.stop().await;
}

#[tokio::test]
async fn root_adds_an_organization_to_a_collaboration_and_no_one_else_may() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let add = format!("/api/collaborations/{}/members", w.c12);
    let org3 = json!({"organization_id": w.org3});

    // Only root: a researcher, an organization administrator and a node are refused, saying why.
    let admin1 = kit.user("adm1", "org_admin", w.org1).await;
    for (token, why) in [
        (&w.researcher1, "only root"),
        (&admin1, "only root"),
        (&w.node1, "a node may not"),
    ] {
        let (s, v) = kit.post(token, &add, org3.clone()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{v}");
    }
    let (_, c) = kit
        .get(&kit.admin, &format!("/api/collaborations/{}", w.c12))
        .await;
    assert_eq!(c["organizations"], json!([w.org1, w.org2]), "{c}");
    // Before: organization three's users do not see the collaboration, nor may a task target it.
    let researcher3 = kit.user("res3", "researcher", w.org3).await;
    let (s, v) = kit
        .get(&researcher3, &format!("/api/collaborations/{}", w.c12))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let to_three = json!({"collaboration_id": w.c12, "image": "registry.example.org/team/avg:1.0",
                          "inputs": [{"organization_id": w.org3, "input": "aGVsbG8="}]});
    let (s, v) = kit
        .post(&w.researcher1, "/api/tasks", to_three.clone())
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // Root adds organization three; twice is a conflict; bad input is refused, saying why.
    let (s, c) = kit.post(&kit.admin, &add, org3.clone()).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["organizations"], json!([w.org1, w.org2, w.org3]), "{c}");
    let (s, v) = kit.post(&kit.admin, &add, org3.clone()).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already a member"),
        "{v}"
    );
    for (bad, status) in [
        (json!({"organization_id": 9999}), StatusCode::NOT_FOUND),
        (json!({"organization_id": -1}), StatusCode::BAD_REQUEST),
    ] {
        let (s, v) = kit.post(&kit.admin, &add, bad).await;
        assert_eq!(s, status, "{v}");
        assert_eq!(v["error"]["field"], "organization_id", "{v}");
    }
    let (s, v) = kit
        .post(&kit.admin, &add, json!({"organization_id": w.org3, "x": 1}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = kit
        .post(&kit.admin, "/api/collaborations/9999/members", org3.clone())
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // After: its users see the collaboration, a node can be made for it, and tasks target it.
    let (s, v) = kit
        .get(&researcher3, &format!("/api/collaborations/{}", w.c12))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    kit.node(w.org3, w.c12).await;
    let (s, v) = kit.post(&w.researcher1, "/api/tasks", to_three).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // It is in the OpenAPI document.
    let (_, doc) = kit.get(&kit.admin, "/api/openapi.json").await;
    let post = &doc["paths"]["/api/collaborations/{id}/members"]["post"];
    assert!(post["responses"]["409"].is_object(), "{post}");
    kit.stop().await;
}
