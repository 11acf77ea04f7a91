//! Node event delivery: WebSocket push with resume, poll fallback, at-least-once.

// Test helpers outside #[test] functions: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod kit;

use std::time::Duration;

use futures_util::StreamExt;
use kit::{Kit, World};
use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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

async fn no_event(ws: &mut Socket) {
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        panic!("unexpected event {t}");
    }
}

#[tokio::test]
async fn nodes_receive_their_runs_by_push_and_resume_after_a_reconnect() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let mut ws1 = connect(&kit, &w.node1, 0).await;
    let mut ws_other = connect(&kit, &w.node2_in_c23, 0).await;

    let d = kit.task(&w.researcher1, w.c12, &[w.org1, w.org2]).await;
    let run1 = d["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["organization_id"] == w.org1)
        .unwrap()["id"]
        .clone();
    let e1 = next_event(&mut ws1).await;
    assert_eq!(e1["kind"], "run_created");
    assert_eq!(e1["run_id"], run1);
    assert_eq!(e1["task_id"], d["task"]["id"]);
    assert_eq!(e1["image"], "registry.example.org/team/avg:1.0");
    // The node of org2 in another collaboration hears nothing.
    no_event(&mut ws_other).await;
    // Nor does org1's node hear of org2's run in the same task.
    no_event(&mut ws1).await;

    // Disconnect; two tasks are created meanwhile; reconnect from the last seen id.
    drop(ws1);
    let d2 = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let d3 = kit.task(&w.researcher1, w.c12, &[w.org1]).await;
    let mut ws1 = connect(&kit, &w.node1, e1["id"].as_i64().unwrap()).await;
    let e2 = next_event(&mut ws1).await;
    let e3 = next_event(&mut ws1).await;
    assert_eq!(e2["run_id"], d2["runs"][0]["id"]);
    assert_eq!(e3["run_id"], d3["runs"][0]["id"]);
    assert!(e2["id"].as_i64() < e3["id"].as_i64());
    no_event(&mut ws1).await;

    // Resuming from 0 replays everything: delivery is at least once.
    let mut again = connect(&kit, &w.node1, 0).await;
    assert_eq!(next_event(&mut again).await["id"], e1["id"]);

    // The poll fallback agrees with the push.
    let (s, v) = kit
        .get(&w.node1, &format!("/api/events?after={}", e1["id"]))
        .await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&Value> = v.as_array().unwrap().iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, vec![&e2["id"], &e3["id"]]);
    kit.stop().await;
}

#[tokio::test]
async fn only_nodes_may_open_the_event_stream() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let url = format!("ws://{}/api/events/ws", kit.server.addr);
    for token in [
        None,
        Some(w.researcher1.as_str()),
        Some(kit.admin.as_str()),
        Some("wat_forged"),
    ] {
        let mut req = url.as_str().into_client_request().unwrap();
        if let Some(t) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
        let status = match err {
            tokio_tungstenite::tungstenite::Error::Http(r) => r.status().as_u16(),
            e => panic!("unexpected {e}"),
        };
        assert_eq!(
            status,
            if token.is_none() || token == Some("wat_forged") {
                401
            } else {
                403
            }
        );
    }
    let (s, _) = kit.get(&w.node1, "/api/events?after=-1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    kit.stop().await;
}
