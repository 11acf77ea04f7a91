//! Taking access away, end to end over HTTP: disabled users, password changes and resets, node
//! key rotation. Every claim is attacked with the credential that should have died.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use std::time::Duration;

use futures_util::StreamExt;
use kit::{Kit, PASSWORD, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const NEW_PASSWORD: &str = "a brand new password";

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("<none>")
}

/// A login answer: (access token, refresh token).
async fn session(kit: &Kit, username: &str, password: &str) -> (String, String) {
    let (s, v) = try_login(kit, username, password).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (
        v["access_token"].as_str().unwrap().to_owned(),
        v["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn try_login(kit: &Kit, username: &str, password: &str) -> (StatusCode, Value) {
    kit.call(
        Method::POST,
        None,
        "/api/auth/login",
        Some(json!({"username": username, "password": password})),
    )
    .await
}

async fn refresh(kit: &Kit, refresh_token: &str) -> (StatusCode, Value) {
    kit.call(
        Method::POST,
        None,
        "/api/auth/refresh",
        Some(json!({"refresh_token": refresh_token})),
    )
    .await
}

async fn whoami(kit: &Kit, token: &str) -> StatusCode {
    kit.get(token, "/api/auth/whoami").await.0
}

/// Create a user as root; returns its id.
async fn create_user(kit: &Kit, name: &str, role: &str, org: Option<i64>) -> i64 {
    let mut body = json!({"username": name, "password": PASSWORD, "role": role});
    if let Some(o) = org {
        body["organization_id"] = json!(o);
    }
    let (s, v) = kit.post(&kit.admin, "/api/users", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

async fn set_disabled(kit: &Kit, token: &str, user: i64, disabled: bool) -> (StatusCode, Value) {
    kit.patch(
        token,
        &format!("/api/users/{user}"),
        json!({"disabled": disabled}),
    )
    .await
}

async fn reset(kit: &Kit, token: &str, user: i64, password: &str) -> (StatusCode, Value) {
    kit.post(
        token,
        &format!("/api/users/{user}/password"),
        json!({"password": password}),
    )
    .await
}

async fn change_own(kit: &Kit, token: &str, current: &str, new: &str) -> (StatusCode, Value) {
    kit.post(
        token,
        "/api/users/me/password",
        json!({"current_password": current, "new_password": new}),
    )
    .await
}

/// The password hash stored for a user, read from the server's own database.
async fn stored_hash(kit: &Kit, user: i64) -> String {
    let mut tx = kit.server.service.db().read().await.unwrap();
    tx.user(user).await.unwrap().unwrap().password_hash
}

/// What user creation stores: argon2id, m = 19 MiB, t = 2, p = 1.
const ARGON2ID: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

async fn admin_id(kit: &Kit) -> i64 {
    let (_, v) = kit.get(&kit.admin, "/api/auth/whoami").await;
    v["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_disabled_user_loses_every_token_at_once_and_cannot_log_in() {
    let kit = Kit::start().await;
    let org = kit.org("one").await;
    let alice = create_user(&kit, "alice", "researcher", Some(org)).await;
    let (a1, r1) = session(&kit, "alice", PASSWORD).await;
    let (a2, r2) = session(&kit, "alice", PASSWORD).await;
    assert_eq!(whoami(&kit, &a1).await, StatusCode::OK);

    let (s, v) = set_disabled(&kit, &kit.admin, alice, true).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["disabled"], true);
    assert_eq!(v["username"], "alice");

    // Every access and refresh token of every session dies now, not at expiry.
    for a in [&a1, &a2] {
        let (s, v) = kit.get(a, "/api/auth/whoami").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert_eq!(code(&v), "unauthenticated");
        assert_eq!(kit.get(a, "/api/tasks").await.0, StatusCode::UNAUTHORIZED);
    }
    for r in [&r1, &r2] {
        assert_eq!(refresh(&kit, r).await.0, StatusCode::UNAUTHORIZED);
    }
    // Login with the right password says why; a wrong one gets the generic answer.
    let (s, v) = try_login(&kit, "alice", PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("disabled"), "{v}");
    let (s, v) = try_login(&kit, "alice", "a wrong password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(message(&v), "invalid user name or password");

    // Administrators see the state; disabling again changes nothing.
    let (s, v) = kit.get(&kit.admin, &format!("/api/users/{alice}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["disabled"], true);
    let (s, v) = kit
        .get(&kit.admin, &format!("/api/users?organization_id={org}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"][0]["disabled"], true);
    let (s, v) = set_disabled(&kit, &kit.admin, alice, true).await;
    assert_eq!((s, &v["disabled"]), (StatusCode::OK, &json!(true)));

    // Enabled again: a new login works, the old tokens stay dead.
    let (s, v) = set_disabled(&kit, &kit.admin, alice, false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["disabled"], false);
    let (a3, r3) = session(&kit, "alice", PASSWORD).await;
    assert_eq!(whoami(&kit, &a3).await, StatusCode::OK);
    assert_eq!(refresh(&kit, &r3).await.0, StatusCode::OK);
    assert_eq!(whoami(&kit, &a1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&kit, &r1).await.0, StatusCode::UNAUTHORIZED);
    // Other users were not touched.
    assert_eq!(whoami(&kit, &kit.admin).await, StatusCode::OK);
    kit.stop().await;
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_revokes_every_session() {
    let auth = warden_server::config::AuthConfig {
        lockout_threshold: 3,
        ..Default::default()
    };
    let kit = Kit::start_with(auth, Default::default()).await;
    let org = kit.org("one").await;
    create_user(&kit, "alice", "researcher", Some(org)).await;
    let (a1, r1) = session(&kit, "alice", PASSWORD).await;
    let (a2, r2) = session(&kit, "alice", PASSWORD).await;

    // Refused bodies write nothing: both sessions and the old password still work.
    for (body, field) in [
        (
            json!({"current_password": PASSWORD, "new_password": "short"}),
            Some("new_password"),
        ),
        (
            json!({"current_password": PASSWORD, "new_password": "x".repeat(257)}),
            Some("new_password"),
        ),
        (
            json!({"current_password": PASSWORD, "new_password": PASSWORD}),
            Some("new_password"),
        ),
        (json!({"current_password": PASSWORD}), None),
        (json!({"new_password": NEW_PASSWORD}), None),
        (
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD, "username": "bob"}),
            None,
        ),
        (json!([PASSWORD, NEW_PASSWORD]), None),
    ] {
        let (s, v) = kit.post(&a1, "/api/users/me/password", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(code(&v), "invalid_request");
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f, "{v}");
        }
    }
    assert_eq!(whoami(&kit, &a1).await, StatusCode::OK);
    assert_eq!(whoami(&kit, &a2).await, StatusCode::OK);

    // A wrong current password is refused and counts like a failed login.
    let (s, v) = change_own(&kit, &a1, "not my password", NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("current_password is wrong"), "{v}");
    assert_eq!(
        try_login(&kit, "alice", "wrong again").await.0,
        StatusCode::UNAUTHORIZED
    );
    // The third failure in a row (threshold 3) locks the account: login and change refuse.
    let (s, _) = change_own(&kit, &a1, "still not it", NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        try_login(&kit, "alice", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED,
        "locked"
    );
    let (s, v) = change_own(&kit, &a1, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(message(&v).contains("locked"), "{v}");

    // An administrator's reset clears the lockout; then alice changes her password herself.
    let (_, list) = kit
        .get(&kit.admin, &format!("/api/users?organization_id={org}"))
        .await;
    let alice = list["items"][0]["id"].as_i64().unwrap();
    let (s, v) = reset(&kit, &kit.admin, alice, PASSWORD).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (a1, r1b) = session(&kit, "alice", PASSWORD).await;
    let (a2b, _) = session(&kit, "alice", PASSWORD).await;
    // The reset killed the sessions from before it.
    assert_eq!(whoami(&kit, &a2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&kit, &r1).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&kit, &r2).await.0, StatusCode::UNAUTHORIZED);

    let before = stored_hash(&kit, alice).await;
    let (s, v) = change_own(&kit, &a1, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let after = stored_hash(&kit, alice).await;
    assert_ne!(before, after);
    assert!(after.starts_with(ARGON2ID), "{after}");
    let fresh = v["access_token"].as_str().unwrap().to_owned();
    let fresh_refresh = v["refresh_token"].as_str().unwrap().to_owned();
    // Every earlier token, the presenting one included, is dead at once.
    assert_eq!(whoami(&kit, &a1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(whoami(&kit, &a2b).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&kit, &r1b).await.0, StatusCode::UNAUTHORIZED);
    // The new session works; the old password does not, the new one does.
    assert_eq!(whoami(&kit, &fresh).await, StatusCode::OK);
    assert_eq!(refresh(&kit, &fresh_refresh).await.0, StatusCode::OK);
    assert_eq!(
        try_login(&kit, "alice", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    session(&kit, "alice", NEW_PASSWORD).await;
    // Without a token there is nobody to change.
    let (s, _) = kit
        .call(
            Method::POST,
            None,
            "/api/users/me/password",
            Some(json!({"current_password": NEW_PASSWORD, "new_password": PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    kit.stop().await;
}

#[tokio::test]
async fn nodes_and_algorithms_have_no_password_to_change() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let (s, v) = change_own(&kit, &w.node1, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // A run token neither.
    let detail = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let run = detail["runs"][0]["id"].as_i64().unwrap();
    let path = format!("/api/runs/{run}");
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    kit.patch(
        &w.node1,
        &path,
        json!({"state": "admitted", "digest": digest}),
    )
    .await;
    kit.patch(&w.node1, &path, json!({"state": "running"}))
        .await;
    let (_, v) = kit
        .post(&w.node1, &format!("{path}/token"), json!(null))
        .await;
    let rt = v["token"].as_str().unwrap();
    let (s, v) = change_own(&kit, rt, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // And nodes and run tokens administer nobody.
    let (_, list) = kit.get(&kit.admin, "/api/users").await;
    let res1 = list["items"][0]["id"].as_i64().unwrap();
    for t in [w.node1.as_str(), rt] {
        assert_eq!(
            set_disabled(&kit, t, res1, true).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            reset(&kit, t, res1, NEW_PASSWORD).await.0,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(whoami(&kit, &w.researcher1).await, StatusCode::OK);
    kit.stop().await;
}

#[tokio::test]
async fn administrators_manage_accounts_of_their_own_organization_only() {
    let kit = Kit::start().await;
    let org1 = kit.org("one").await;
    let org2 = kit.org("two").await;
    let root = admin_id(&kit).await;
    let admin1 = create_user(&kit, "admin1", "org_admin", Some(org1)).await;
    let admin2 = create_user(&kit, "admin2", "org_admin", Some(org2)).await;
    let alice = create_user(&kit, "alice", "researcher", Some(org1)).await;
    create_user(&kit, "bob", "researcher", Some(org1)).await;
    create_user(&kit, "vera", "viewer", Some(org1)).await;
    let t_admin1 = kit.login("admin1", PASSWORD).await;
    let t_admin2 = kit.login("admin2", PASSWORD).await;
    let t_bob = kit.login("bob", PASSWORD).await;
    let t_vera = kit.login("vera", PASSWORD).await;
    let (t_alice, r_alice) = session(&kit, "alice", PASSWORD).await;

    // Another organization's admin, a researcher and a viewer are refused everything, and
    // nothing changes.
    for t in [&t_admin2, &t_bob, &t_vera] {
        for (s, v) in [
            set_disabled(&kit, t, alice, true).await,
            set_disabled(&kit, t, alice, false).await,
            reset(&kit, t, alice, NEW_PASSWORD).await,
        ] {
            assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
            assert_eq!(code(&v), "forbidden");
        }
    }
    assert_eq!(whoami(&kit, &t_alice).await, StatusCode::OK);
    session(&kit, "alice", PASSWORD).await;
    // An organization admin cannot touch root, nor reset its own password without the
    // current one.
    assert_eq!(
        set_disabled(&kit, &t_admin1, root, true).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        reset(&kit, &t_admin1, root, NEW_PASSWORD).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, v) = reset(&kit, &t_admin1, admin1, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(message(&v).contains("/api/users/me/password"), "{v}");
    let (s, v) = reset(&kit, &kit.admin, root, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "root neither: {v}");
    session(&kit, "admin", kit::ADMIN_PASSWORD).await;
    session(&kit, "admin1", PASSWORD).await;

    // The own organization's admin resets alice: her sessions die, the new password works,
    // hashed like at creation.
    let before = stored_hash(&kit, alice).await;
    let (s, v) = reset(&kit, &t_admin1, alice, NEW_PASSWORD).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let after = stored_hash(&kit, alice).await;
    assert_ne!(before, after);
    assert!(after.starts_with(ARGON2ID), "{after}");
    assert_eq!(whoami(&kit, &t_alice).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&kit, &r_alice).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        try_login(&kit, "alice", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    session(&kit, "alice", NEW_PASSWORD).await;
    // ... and disables and enables her.
    assert_eq!(
        set_disabled(&kit, &t_admin1, alice, true).await.0,
        StatusCode::OK
    );
    assert_eq!(
        try_login(&kit, "alice", NEW_PASSWORD).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        set_disabled(&kit, &t_admin1, alice, false).await.0,
        StatusCode::OK
    );
    session(&kit, "alice", NEW_PASSWORD).await;
    // Root manages anyone: the other organization's admin included.
    assert_eq!(
        reset(&kit, &kit.admin, admin2, NEW_PASSWORD).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(whoami(&kit, &t_admin2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        set_disabled(&kit, &kit.admin, admin2, true).await.0,
        StatusCode::OK
    );
    assert_eq!(
        try_login(&kit, "admin2", NEW_PASSWORD).await.0,
        StatusCode::FORBIDDEN
    );
    // Weak passwords are refused like at creation, and nothing is written.
    let (s, v) = reset(&kit, &kit.admin, alice, "too short").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["field"], "password");
    assert_eq!(stored_hash(&kit, alice).await, after);
    session(&kit, "alice", NEW_PASSWORD).await;
    // Unknown and malformed ids.
    assert_eq!(
        reset(&kit, &kit.admin, 9999, NEW_PASSWORD).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        set_disabled(&kit, &kit.admin, 9999, true).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = kit
        .patch(&kit.admin, "/api/users/abc", json!({"disabled": true}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = kit
        .post(
            &kit.admin,
            "/api/users/0/password",
            json!({"password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    kit.stop().await;
}

#[tokio::test]
async fn bad_account_bodies_are_refused_without_writes() {
    let kit = Kit::start().await;
    let org = kit.org("one").await;
    let alice = create_user(&kit, "alice", "researcher", Some(org)).await;
    let t_alice = kit.login("alice", PASSWORD).await;
    let path = format!("/api/users/{alice}");
    for body in [
        json!({}),
        json!({"disabled": null}),
        json!({"disabled": "yes"}),
        json!({"disabled": 1}),
        json!({"disabled": true, "role": "root"}),
        json!({"disabled": true, "password": NEW_PASSWORD}),
        json!([true]),
    ] {
        let (s, v) = kit.patch(&kit.admin, &path, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(code(&v), "invalid_request");
    }
    let (s, v) = kit.patch(&kit.admin, &path, json!({})).await;
    assert_eq!(
        (s, &v["error"]["field"]),
        (StatusCode::BAD_REQUEST, &json!("disabled"))
    );
    let pw = format!("{path}/password");
    for body in [
        json!({}),
        json!({"password": "short"}),
        json!({"password": "x".repeat(257)}),
        json!({"password": NEW_PASSWORD, "disabled": false}),
        json!({"new_password": NEW_PASSWORD}),
    ] {
        let (s, v) = kit.post(&kit.admin, &pw, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    // A body that is not JSON at all.
    let r = kit
        .client
        .patch(kit.url(&path))
        .bearer_auth(&kit.admin)
        .body("disabled=true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Nothing was written: alice is enabled, her token and password still work.
    let (_, v) = kit.get(&kit.admin, &path).await;
    assert_eq!(v["disabled"], false);
    assert_eq!(whoami(&kit, &t_alice).await, StatusCode::OK);
    session(&kit, "alice", PASSWORD).await;
    kit.stop().await;
}

#[tokio::test]
async fn nobody_disables_themselves_or_the_last_enabled_root() {
    let mut kit = Kit::start().await;
    let org = kit.org("one").await;
    let root = admin_id(&kit).await;
    let (s, v) = set_disabled(&kit, &kit.admin, root, true).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("your own account"), "{v}");
    let admin1 = create_user(&kit, "admin1", "org_admin", Some(org)).await;
    let t_admin1 = kit.login("admin1", PASSWORD).await;
    let (s, v) = set_disabled(&kit, &t_admin1, admin1, true).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(whoami(&kit, &t_admin1).await, StatusCode::OK);
    assert_eq!(whoami(&kit, &kit.admin).await, StatusCode::OK);

    // Two roots who disable each other at the same moment: exactly one succeeds and one
    // enabled root remains (the loser's token died with its account). Repeated, since a race
    // needs chances to happen.
    for round in 0..5 {
        let a = format!("root-a{round}");
        let b = format!("root-b{round}");
        let id_a = create_user(&kit, &a, "root", None).await;
        let id_b = create_user(&kit, &b, "root", None).await;
        let t_a = kit.login(&a, PASSWORD).await;
        let t_b = kit.login(&b, PASSWORD).await;
        // Leave only these two enabled.
        let (_, list) = kit.get(&kit.admin, "/api/users?limit=500").await;
        let others: Vec<i64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["role"] == "root" && u["disabled"] == false)
            .map(|u| u["id"].as_i64().unwrap())
            .filter(|id| *id != id_a && *id != id_b)
            .collect();
        for id in others {
            let (s, v) = set_disabled(&kit, &t_a, id, true).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        let (ra, rb) = tokio::join!(
            set_disabled(&kit, &t_a, id_b, true),
            set_disabled(&kit, &t_b, id_a, true)
        );
        let ok = [ra.0, rb.0]
            .iter()
            .filter(|s| **s == StatusCode::OK)
            .count();
        assert_eq!(ok, 1, "round {round}: {ra:?} {rb:?}");
        let (winner, loser, winner_id) = if ra.0 == StatusCode::OK {
            (&t_a, &t_b, id_a)
        } else {
            (&t_b, &t_a, id_b)
        };
        assert_eq!(whoami(&kit, winner).await, StatusCode::OK);
        assert_eq!(whoami(&kit, loser).await, StatusCode::UNAUTHORIZED);
        // The winner is the only enabled root now, and cannot disable itself.
        let (s, _) = set_disabled(&kit, winner, winner_id, true).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // It enables the bootstrap administrator again for the next round.
        let (s, v) = set_disabled(&kit, winner, root, false).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        kit.admin = kit.login("admin", kit::ADMIN_PASSWORD).await;
    }
    kit.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(kit: &Kit, token: &str) -> Socket {
    let url = format!("ws://{}/api/events/ws?after=0", kit.server.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Wait (well below the 20 s ping) for the server to close the socket.
async fn closed_soon(ws: &mut Socket) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("the session was not closed within 5 s"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test]
async fn a_rotated_node_key_and_every_token_issued_under_it_fail_at_once() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let (_, v) = kit
        .get(
            &kit.admin,
            &format!("/api/nodes?collaboration_id={}", w.c12),
        )
        .await;
    let node1 = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["organization_id"] == w.org1)
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    // A fresh key we know, and two node tokens issued under it.
    let (s, v) = kit
        .post(&kit.admin, &format!("/api/nodes/{node1}/key"), json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let old_key = v["api_key"].as_str().unwrap().to_owned();
    assert!(old_key.starts_with(&format!("wdn_{node1}_")), "{old_key}");
    assert_eq!(v["node"]["id"], node1);
    assert_eq!(
        whoami(&kit, &w.node1).await,
        StatusCode::UNAUTHORIZED,
        "the World's token died"
    );
    let t1 = kit.node_token(&old_key).await;
    let t2 = kit.node_token(&old_key).await;
    let mut ws = connect(&kit, &t1).await;
    // A run token the node was given under the old key.
    let detail = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let run = detail["runs"][0]["id"].as_i64().unwrap();
    let run_path = format!("/api/runs/{run}");
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    kit.patch(
        &t1,
        &run_path,
        json!({"state": "admitted", "digest": digest}),
    )
    .await;
    kit.patch(&t1, &run_path, json!({"state": "running"})).await;
    let (s, v) = kit
        .post(&t1, &format!("{run_path}/token"), json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let run_token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&kit, &run_token).await, StatusCode::OK);

    // The organization's admin rotates it.
    let t_admin1 = {
        create_user(&kit, "admin1", "org_admin", Some(w.org1)).await;
        kit.login("admin1", PASSWORD).await
    };
    let (s, v) = kit
        .post(&t_admin1, &format!("/api/nodes/{node1}/key"), json!(null))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new_key = v["api_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    assert!(new_key.starts_with(&format!("wdn_{node1}_")));

    // The old key and its tokens are refused at once; the open session closes.
    let (s, _) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/node",
            Some(json!({"api_key": old_key})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for t in [&t1, &t2] {
        assert_eq!(whoami(&kit, t).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            kit.get(t, "/api/events?after=0").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        whoami(&kit, &run_token).await,
        StatusCode::UNAUTHORIZED,
        "the run token the node got under the old key dies with it"
    );
    closed_soon(&mut ws).await;
    // The new key works, for the same node.
    let t3 = kit.node_token(&new_key).await;
    let (s, v) = kit.get(&t3, "/api/auth/whoami").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], node1);
    assert_eq!(kit.get(&t3, "/api/events?after=0").await.0, StatusCode::OK);
    // Other nodes were not touched.
    assert_eq!(whoami(&kit, &w.node2).await, StatusCode::OK);

    // Who may not rotate: another organization's admin, a researcher, the node itself, a
    // run token; the key stays the same.
    create_user(&kit, "admin2", "org_admin", Some(w.org2)).await;
    let t_admin2 = kit.login("admin2", PASSWORD).await;
    for t in [&t_admin2, &w.researcher1, &t3, &w.node2] {
        let (s, v) = kit
            .post(t, &format!("/api/nodes/{node1}/key"), json!(null))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    }
    assert_eq!(whoami(&kit, &t3).await, StatusCode::OK);
    kit.node_token(&new_key).await;
    let (s, _) = kit
        .post(&kit.admin, "/api/nodes/9999/key", json!(null))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = kit.post(&kit.admin, "/api/nodes/x/key", json!(null)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    kit.stop().await;
}

/// A database that the previous server version (migrations 0001 and 0002) left, with a live
/// user session, a node key and a node token: after the upgrade they all still work, and
/// the new revocations kill them.
#[tokio::test]
async fn sessions_from_before_the_upgrade_keep_working_and_can_be_revoked() {
    use warden_server::auth::{hash_password, token_hash};

    let admin_hash = hash_password(kit::ADMIN_PASSWORD.into()).await.unwrap();
    let rita_hash = hash_password(PASSWORD.into()).await.unwrap();
    let (access, refresh_token, node_token) =
        ("wat_legacy_rita", "wrt_legacy_rita", "wat_legacy_node");
    let node_secret = "legacy-node-secret";
    let node_key = format!("wdn_1_{node_secret}");
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
            "INSERT INTO users (id, username, organization_id, role, password_hash, created_at) VALUES (2, 'rita', 1, 'researcher', '{rita_hash}', 1)"
        ),
        format!(
            "INSERT INTO nodes (id, organization_id, collaboration_id, api_key_hash, created_at) VALUES (1, 1, 1, '{}', 1)",
            token_hash(node_secret)
        ),
        format!(
            "INSERT INTO tokens (hash, kind, user_id, family, expires_at) VALUES ('{}', 'access', 2, 'fam', {far})",
            token_hash(access)
        ),
        format!(
            "INSERT INTO tokens (hash, kind, user_id, family, expires_at) VALUES ('{}', 'refresh', 2, 'fam', {far})",
            token_hash(refresh_token)
        ),
        format!(
            "INSERT INTO tokens (hash, kind, node_id, expires_at) VALUES ('{}', 'node', 1, {far})",
            token_hash(node_token)
        ),
    ];
    let seed: Vec<&str> = seed.iter().map(String::as_str).collect();
    let kit = Kit::start_on_old_database(2, &seed).await;

    // Everything issued before the upgrade still works.
    let (s, v) = kit.get(access, "/api/auth/whoami").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["username"], "rita");
    let (s, v) = kit.get(&kit.admin, "/api/users/2").await;
    assert_eq!((s, &v["disabled"]), (StatusCode::OK, &json!(false)));
    let (s, v) = refresh(&kit, refresh_token).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rotated = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&kit, node_token).await, StatusCode::OK);
    kit.node_token(&node_key).await;

    // And the new revocations reach them.
    assert_eq!(
        set_disabled(&kit, &kit.admin, 2, true).await.0,
        StatusCode::OK
    );
    assert_eq!(whoami(&kit, access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(whoami(&kit, &rotated).await, StatusCode::UNAUTHORIZED);
    let (s, _) = kit.post(&kit.admin, "/api/nodes/1/key", json!(null)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(whoami(&kit, node_token).await, StatusCode::UNAUTHORIZED);
    let (s, _) = kit
        .call(
            Method::POST,
            None,
            "/api/auth/node",
            Some(json!({"api_key": node_key})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    kit.stop().await;
}
