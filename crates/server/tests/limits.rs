//! Per-address login throttling (429 with the error body and `Retry-After`) and the caps on
//! open event WebSockets, against the real server on loopback.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kit::{Kit, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use warden_server::config::{AuthConfig, LimitsConfig};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

/// Send a login; status, `Retry-After` and body.
async fn attempt(kit: &Kit, path: &str, body: Value) -> (StatusCode, Option<u64>, Value) {
    let r = kit
        .client
        .post(kit.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|h| h.to_str().unwrap().parse().unwrap());
    let v = r.json().await.unwrap_or(Value::Null);
    (status, retry, v)
}

/// User logins: 4 at once, then one a minute (so that the time the setup's hashes take
/// cannot refill a token during the test); node logins: 3 at once, then one a second.
fn strict() -> AuthConfig {
    AuthConfig {
        login_rate_per_minute: 1,
        login_burst: 4,
        node_login_rate_per_minute: 60,
        node_login_burst: 3,
        ..AuthConfig::default()
    }
}

#[tokio::test]
async fn password_spraying_from_one_address_is_throttled_with_retry_after() {
    let kit = Kit::start_with(strict(), LimitsConfig::default()).await;
    // The kit's own admin login took one of the 4 tokens; World logs in once more.
    let _world = World::build(&kit).await;
    // Spraying: one wrong password per account, each a full argon2id hash, until the bucket
    // of this address is empty.
    for user in ["admin", "res1"] {
        let (s, _, v) = attempt(
            &kit,
            "/api/auth/login",
            json!({"username": user, "password": "wrong password, sprayed"}),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{user}: {v}");
    }
    let started = Instant::now();
    for (user, password) in [
        ("nobody", "wrong password, sprayed"),
        ("admin", kit::ADMIN_PASSWORD),
    ] {
        let (s, retry, v) = attempt(
            &kit,
            "/api/auth/login",
            json!({"username": user, "password": password}),
        )
        .await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{user}: {v}");
        assert_eq!(code(&v), "too_many_requests", "{v}");
        let retry = retry.expect("a Retry-After header");
        assert!((50..=60).contains(&retry), "one login a minute: {retry}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("retry after {retry} s")),
            "{v}"
        );
    }
    // Refused before any hashing: two refusals take far less than one argon2id hash each.
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // Other routes are not throttled.
    for _ in 0..20 {
        assert_eq!(
            kit.get(&kit.admin, "/api/auth/whoami").await.0,
            StatusCode::OK
        );
    }
    kit.stop().await;
}

#[tokio::test]
async fn a_throttled_address_logs_in_again_after_retry_after() {
    let auth = AuthConfig {
        login_rate_per_minute: 60,
        login_burst: 1,
        ..AuthConfig::default()
    };
    let kit = Kit::start_with(auth, LimitsConfig::default()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let login = json!({"username": "admin", "password": kit::ADMIN_PASSWORD});
    let (s, _, v) = attempt(&kit, "/api/auth/login", login.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, retry, v) = attempt(&kit, "/api/auth/login", login.clone()).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(retry, Some(1));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // One second later a token is back.
    let (s, _, v) = attempt(&kit, "/api/auth/login", login).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    kit.stop().await;
}

#[tokio::test]
async fn node_logins_from_one_address_are_throttled_on_their_own_bucket() {
    let kit = Kit::start_with(strict(), LimitsConfig::default()).await;
    let org = kit.org("one").await;
    let collab = kit.collab("c", &[org]).await;
    let (_, key) = kit.node(org, collab).await;
    // Guessing keys: 3 answers, then 429, even for the right key.
    for n in 0..3 {
        let (s, _, v) = attempt(
            &kit,
            "/api/auth/node",
            json!({"api_key": format!("wdn_1_guess{n}")}),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    }
    let (s, retry, v) = attempt(&kit, "/api/auth/node", json!({"api_key": key})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(code(&v), "too_many_requests", "{v}");
    assert_eq!(retry, Some(1));
    // The user login bucket is another one: the admin still logs in.
    kit.login("admin", kit::ADMIN_PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    kit.node_token(&key).await;
    kit.stop().await;
}

#[tokio::test]
async fn exempt_addresses_are_not_throttled() {
    let auth = AuthConfig {
        login_burst: 1,
        node_login_burst: 1,
        rate_limit_exempt: vec!["127.0.0.1".parse().unwrap()],
        ..strict()
    };
    let kit = Kit::start_with(auth, LimitsConfig::default()).await;
    let org = kit.org("one").await;
    let collab = kit.collab("c", &[org]).await;
    let (_, key) = kit.node(org, collab).await;
    for _ in 0..5 {
        kit.login("admin", kit::ADMIN_PASSWORD).await;
        kit.node_token(&key).await;
    }
    kit.stop().await;
}

/// Open an event WebSocket; `Err((status, body))` when the handshake is refused.
async fn open(kit: &Kit, token: &str) -> Result<Socket, (u16, Value)> {
    let url = format!("ws://{}/api/events/ws?after=0", kit.server.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).unwrap())
                .unwrap_or(Value::Null);
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn event_sessions_are_capped_per_node_and_in_total() {
    let limits = LimitsConfig {
        max_event_sessions_per_node: 2,
        max_event_sessions: 3,
        ..LimitsConfig::default()
    };
    let kit = Kit::start_with(AuthConfig::default(), limits).await;
    let w = World::build(&kit).await;
    let mut first = open(&kit, &w.node1).await.unwrap();
    let _second = open(&kit, &w.node1).await.unwrap();
    let (status, v) = open(&kit, &w.node1).await.err().unwrap();
    assert_eq!(status, 429, "{v}");
    assert_eq!(code(&v), "too_many_requests", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("this node already has 2 event sessions open"),
        "{v}"
    );
    // Another node still has room, up to the total.
    let _other = open(&kit, &w.node2).await.unwrap();
    let (status, v) = open(&kit, &w.node2_in_c23).await.err().unwrap();
    assert_eq!(status, 429, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the server already holds 3 event sessions"),
        "{v}"
    );
    // The poll fallback is not capped.
    assert_eq!(
        kit.get(&w.node2_in_c23, "/api/events").await.0,
        StatusCode::OK
    );
    // Closing a session gives its slot back.
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    let deadline = Instant::now() + Duration::from_secs(5);
    let _again = loop {
        match open(&kit, &w.node2_in_c23).await {
            Ok(ws) => break ws,
            Err((429, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the closed session's slot did not come back: {e:?}"),
        }
    };
    assert_eq!(kit.server.service.session_slots().open(), 3);
    // An unauthenticated or refused handshake takes no slot.
    let (status, _) = open(&kit, "wat_not_a_token").await.err().unwrap();
    assert_eq!(status, 401);
    assert_eq!(kit.server.service.session_slots().open(), 3);
    let (s, _) = kit.call(Method::GET, None, "/api/health", None).await;
    assert_eq!(s, StatusCode::OK);
    kit.stop().await;
}

/// A chain of subtasks stops at `[limits] max_subtask_depth` (a root task is at depth 0),
/// whatever a node allows.
#[tokio::test]
async fn subtasks_deeper_than_max_subtask_depth_are_refused() {
    let limits = LimitsConfig {
        max_subtask_depth: 2,
        ..LimitsConfig::default()
    };
    let kit = Kit::start_with(AuthConfig::default(), limits).await;
    let w = World::build(&kit).await;
    let body = |parent: Option<i64>| {
        let mut b = json!({"collaboration_id": w.c12, "image": "a/b:1",
                           "inputs": [{"organization_id": w.org2, "input": ""}]});
        if let Some(p) = parent {
            b["parent_task_id"] = json!(p);
        }
        b
    };
    let mut parent = None;
    for depth in 0..=2 {
        let (s, v) = kit.post(&w.researcher1, "/api/tasks", body(parent)).await;
        assert_eq!(s, StatusCode::CREATED, "depth {depth}: {v}");
        parent = v["task"]["id"].as_i64();
    }
    let (s, v) = kit.post(&w.researcher1, "/api/tasks", body(parent)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_subtask_depth"),
        "{v}"
    );
}
