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

/// Every event of the node, as the poll fallback reads it from the database.
async fn polled(kit: &Kit, token: &str) -> Vec<Value> {
    let (s, v) = kit.get(token, "/api/events?after=0&limit=500").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

/// The counter `name` of the server's metrics.
async fn counter(kit: &Kit, name: &str) -> u64 {
    let text = kit
        .client
        .get(kit.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap()
        .parse()
        .unwrap()
}

/// `warden_events_pushed_total`: events sent as their commit handed them over.
async fn pushed(kit: &Kit) -> u64 {
    counter(kit, "warden_events_pushed_total").await
}

/// `warden_event_reads_total`: the sessions' database reads.
async fn reads(kit: &Kit) -> u64 {
    counter(kit, "warden_event_reads_total").await
}

/// Two replicas over one PostgreSQL database: a run created at the first reaches its node's
/// session at the second through LISTEN/NOTIFY, and the notification names the node, so the
/// second replica wakes that session only, not every session it holds.
#[tokio::test]
async fn a_commit_at_one_replica_wakes_only_its_nodes_sessions_at_another_on_postgres() {
    let one = Kit::start().await;
    assert!(
        one.pg.is_some(),
        "WARDEN_TEST_DATABASE_URL must name a PostgreSQL database for this test (scripts/test sets it)"
    );
    let two = one.replica().await;
    let w = World::build(&one).await;
    let mut target = connect(&two, &w.node1, 0).await;
    let mut others = Vec::new();
    for token in [&w.node2, &w.node2, &w.node2_in_c23, &w.node2_in_c23] {
        others.push(connect(&two, token, 0).await);
    }
    // Every session's first read done (nothing to send yet).
    no_event(&mut target).await;
    for ws in &mut others {
        no_event(ws).await;
    }
    let before = reads(&two).await;
    assert!(
        before >= 5,
        "each session reads once when it opens: {before}"
    );

    let d = one.task(&w.researcher1, w.c12, &[w.org1]).await;
    let e = next_event(&mut target).await;
    assert_eq!(e["run_id"], d["runs"][0]["id"]);
    for ws in &mut others {
        no_event(ws).await;
    }
    // One read: the target's. Woken for everyone, the four other sessions would have read too.
    assert_eq!(reads(&two).await - before, 1);
    two.stop().await;
    one.stop().await;
}

#[tokio::test]
async fn pushed_events_are_the_read_ones_each_once_in_order_whatever_else_commits() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    let mut ws1 = connect(&kit, &w.node1, 0).await;
    let before = pushed(&kit).await;

    // Tasks created together (group-committed several per transaction), some for both
    // nodes, and cancellations in between (their events are read, not pushed).
    let mut tasks = Vec::new();
    let mut got = Vec::new();
    for round in 0..3 {
        let created = futures_util::future::join_all((0..12).map(|i| {
            let orgs = if i % 3 == 0 {
                vec![w.org1, w.org2]
            } else {
                vec![w.org1]
            };
            let (kit, token) = (&kit, &w.researcher1);
            async move { kit.task(token, w.c12, &orgs).await }
        }))
        .await;
        tasks.extend(created.iter().map(|d| d["task"]["id"].as_i64().unwrap()));
        let cancel = format!("/api/tasks/{}/cancel", tasks[round * 12 + 1]);
        let (s, v) = kit.post(&w.researcher1, &cancel, Value::Null).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // The node has everything so far, and nothing twice, before anything else commits.
        let so_far = polled(&kit, &w.node1).await.len();
        while got.len() < so_far {
            got.push(next_event(&mut ws1).await);
        }
        no_event(&mut ws1).await;
        if round == 1 && kit.pg.is_none() {
            // An event that another writer commits behind the server's back (another
            // process on the SQLite file): never announced, so what follows must not be
            // pushed past it, and the session still sends it.
            let run = created[0]["runs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["organization_id"] == w.org1)
                .unwrap()["id"]
                .as_i64()
                .unwrap();
            let pool = sqlx::SqlitePool::connect(&format!(
                "sqlite://{}",
                kit.dir.path().join("server.db").display()
            ))
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO events (collaboration_id, organization_id, kind, run_id, created_at) \
                 VALUES ($1, $2, 'run_created', $3, 0)",
            )
            .bind(w.c12)
            .bind(w.org1)
            .bind(run)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
            // The next task alone, so that its announcement is the one after the hole: the
            // session sends the hidden event first, then the task's.
            kit.task(&w.researcher1, w.c12, &[w.org1]).await;
            let so_far = polled(&kit, &w.node1).await.len();
            while got.len() < so_far {
                got.push(next_event(&mut ws1).await);
            }
        }
    }
    // One more task alone, after everything settled.
    kit.task(&w.researcher1, w.c12, &[w.org1]).await;

    let expected = polled(&kit, &w.node1).await;
    // 37 tasks for org1, 3 cancellations, and on SQLite the event written behind the
    // server's back and the task after it.
    let extra = 2 * usize::from(kit.pg.is_none());
    assert_eq!(expected.len(), 37 + 3 + extra);
    while got.len() < expected.len() {
        got.push(next_event(&mut ws1).await);
    }
    no_event(&mut ws1).await;
    // The same events, field for field, in the order of their ids.
    assert_eq!(got, expected);
    assert!(
        got.windows(2)
            .all(|p| p[0]["id"].as_i64() < p[1]["id"].as_i64())
    );
    if kit.pg.is_none() {
        // On SQLite most of them came straight from their commit, with no read.
        assert!(pushed(&kit).await > before, "nothing was pushed");
    }
    kit.stop().await;
}

#[tokio::test]
async fn a_burst_of_more_events_than_a_mailbox_holds_arrives_once_and_in_order() {
    let kit = Kit::start().await;
    let w = World::build(&kit).await;
    // The socket is not read while the events are committed, fifty tasks at a time.
    let mut ws1 = connect(&kit, &w.node1, 0).await;
    let n = warden_server::events::MAILBOX_EVENTS + 50;
    let org1 = [w.org1];
    for chunk in 0..n.div_ceil(50) {
        let left = (n - chunk * 50).min(50);
        futures_util::future::join_all((0..left).map(|_| kit.task(&w.researcher1, w.c12, &org1)))
            .await;
    }
    let expected = polled_all(&kit, &w.node1).await;
    assert_eq!(expected.len(), n);
    let mut got = Vec::new();
    while got.len() < n {
        got.push(next_event(&mut ws1).await);
    }
    no_event(&mut ws1).await;
    assert_eq!(got, expected);
    kit.stop().await;
}

/// Every event of the node through the poll fallback, page by page.
async fn polled_all(kit: &Kit, token: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |e| e["id"].as_i64().unwrap());
        let (s, v) = kit
            .get(token, &format!("/api/events?after={after}&limit=500"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let page = v.as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}
