//! The proxy against a tiny axum upstream that records what reached it.

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use serde_json::json;

use super::*;

/// What reached the upstream: method, path, query, authorization, body.
type Seen = (String, String, Option<String>, Option<String>, Vec<u8>);
/// An exchange summed up: method, path, query, upstream status, status.
type Summary<'a> = (&'a str, &'a str, Option<&'a str>, Option<u16>, u16);

struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    sockets: Arc<AtomicUsize>,
}

impl Upstream {
    fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }
}

/// `GET /api/tasks/{id}`: a task document; `GET /api/runs/{id}/input`: bytes;
/// `POST /api/tasks`: 201 echoing the body, the query and the credential; `/api/events/ws`: a
/// real WebSocket endpoint; anything else 404 JSON.
async fn upstream() -> Upstream {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sockets = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let fallback = move |req: Request| {
        let seen = s.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
            let auth = parts
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().map(str::to_owned);
            lock(&seen).push((
                parts.method.to_string(),
                path.clone(),
                query.clone(),
                auth.clone(),
                body.clone(),
            ));
            let segments: Vec<&str> = path.split('/').collect();
            let (status, content_type, out): (u16, &str, Vec<u8>) = match (
                parts.method.as_str(),
                segments.as_slice(),
            ) {
                ("GET", ["", "api", "tasks", id]) => (
                    200,
                    "application/json",
                    json!({"task": {"id": id.parse::<i64>().unwrap(), "nonce": "n".repeat(32)}})
                        .to_string()
                        .into_bytes(),
                ),
                ("GET", ["", "api", "runs", id, "input"]) => (
                    200,
                    "application/octet-stream",
                    format!("sealed input {id}").into_bytes(),
                ),
                ("POST", ["", "api", "tasks"]) => (
                    201,
                    "application/json",
                    json!({
                        "received": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
                        "query": query,
                        "authorization": auth,
                    })
                    .to_string()
                    .into_bytes(),
                ),
                _ => (
                    404,
                    "application/json",
                    br#"{"error":{"code":"not_found","message":"no such endpoint"}}"#.to_vec(),
                ),
            };
            let mut resp = Response::new(Body::from(out));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            resp.headers_mut()
                .insert("x-upstream", HeaderValue::from_static("yes"));
            resp
        }
    };
    let n = sockets.clone();
    let ws = move |ws: WebSocketUpgrade| {
        let n = n.clone();
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            ws.on_upgrade(|_socket| async {})
        }
    };
    let app = axum::Router::new()
        .route("/api/events/ws", get(ws))
        .fallback(fallback);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Upstream { url, seen, sockets }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_json(url: String) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get_bytes(url: String) -> (u16, Vec<u8>) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn forwards_method_path_query_headers_and_body_and_records_the_exchange() {
    let up = upstream().await;
    let proxy = LyingProxy::start(&format!("{}/", up.url)).await.unwrap();
    assert_eq!(proxy.upstream(), up.url);
    let resp = client()
        .post(format!("{}/api/tasks?dry=1&x=%20y", proxy.url()))
        .bearer_auth("tok-123")
        .json(&json!({"collaboration_id": 1, "nonce": "abc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["received"],
        json!({"collaboration_id": 1, "nonce": "abc"})
    );
    assert_eq!(v["query"], "dry=1&x=%20y");
    assert_eq!(v["authorization"], "Bearer tok-123");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("POST", "/api/tasks")
    );

    // Errors and binary bodies pass as they are.
    let (s, v) = get_json(format!("{}/api/nothing", proxy.url())).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, b) = get_bytes(format!("{}/api/runs/7/input", proxy.url())).await;
    assert_eq!((s, b.as_slice()), (200, b"sealed input 7".as_slice()));

    let log = proxy.exchanges();
    let summary: Vec<Summary<'_>> = log
        .iter()
        .map(|e| {
            (
                e.method.as_str(),
                e.path.as_str(),
                e.query.as_deref(),
                e.upstream_status,
                e.status,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST", "/api/tasks", Some("dry=1&x=%20y"), Some(201), 201),
            ("GET", "/api/nothing", None, Some(404), 404),
            ("GET", "/api/runs/7/input", None, Some(200), 200),
        ]
    );
    assert_eq!(log[2].body, b"sealed input 7");
    assert_eq!(
        serde_json::from_slice::<Value>(&log[0].request_body).unwrap()["nonce"],
        "abc"
    );
    assert_eq!(proxy.count("GET", "/api/runs/*/input"), 1);
    assert_eq!(proxy.count("get", "/api/runs/*"), 0, "a pattern is whole");
    proxy.clear_exchanges();
    assert!(proxy.exchanges().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn a_json_rule_edits_answers_and_an_answer_rule_changes_the_status() {
    let up = upstream().await;
    let proxy = LyingProxy::start(&up.url).await.unwrap();
    let forged = "f".repeat(32);
    let f = forged.clone();
    proxy.rewrite_json(move |req, v| {
        if req.is("GET", "/api/tasks/*") && req.id() == Some(3) {
            v["task"]["nonce"] = json!(f);
        }
    });
    let (s, v) = get_json(format!("{}/api/tasks/3", proxy.url())).await;
    assert_eq!(s, 200);
    assert_eq!(v["task"], json!({"id": 3, "nonce": forged}));
    // Other tasks, and answers that are not JSON, are untouched.
    let (_, v) = get_json(format!("{}/api/tasks/4", proxy.url())).await;
    assert_eq!(v["task"]["nonce"], "n".repeat(32));
    let (_, b) = get_bytes(format!("{}/api/runs/4/input", proxy.url())).await;
    assert_eq!(b, b"sealed input 4");

    // A status and a whole document, made up.
    proxy.rewrite(|req, answer| {
        if req.is("GET", "/api/tasks/4") {
            answer.status = 409;
            answer.set_json(&json!({"error": {"code": "conflict", "message": "lie"}}));
        }
    });
    let (s, v) = get_json(format!("{}/api/tasks/4", proxy.url())).await;
    assert_eq!((s, v["error"]["message"].as_str()), (409, Some("lie")));
    let last = proxy.exchanges().pop().unwrap();
    assert_eq!((last.upstream_status, last.status), (Some(200), 409));
}

#[tokio::test]
async fn binary_bodies_are_swapped() {
    let up = upstream().await;
    let proxy = LyingProxy::start(&up.url).await.unwrap();
    // What run 2's node would get if the server served run 1's sealed input instead.
    let (_, one) = get_bytes(format!("{}/api/runs/1/input", proxy.url())).await;
    proxy.swap_body("GET", "/api/runs/2/input", one.clone());
    let (s, two) = get_bytes(format!("{}/api/runs/2/input", proxy.url())).await;
    assert_eq!((s, &two), (200, &one));
    // The answer is well-formed for its new length (a longer body, too).
    proxy.clear();
    proxy.rewrite(|req, answer| {
        if req.is("GET", "/api/runs/*/input") {
            answer.body = vec![0xff; 100_000];
        }
    });
    let resp = client()
        .get(format!("{}/api/runs/2/input", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], "100000");
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), [0xff; 100_000]);
}

#[tokio::test]
async fn request_rules_edit_what_goes_upstream_or_answer_locally() {
    let up = upstream().await;
    let proxy = LyingProxy::start(&up.url).await.unwrap();
    proxy.rewrite_request_json(|req, v| {
        if req.is("POST", "/api/tasks") {
            v["nonce"] = json!("replaced");
            v["inputs"] = json!([]);
        }
    });
    let resp = client()
        .post(format!("{}/api/tasks", proxy.url()))
        .bearer_auth("t")
        .json(&json!({"collaboration_id": 1, "nonce": "mine", "inputs": [1]}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["received"],
        json!({"collaboration_id": 1, "nonce": "replaced", "inputs": []})
    );
    assert_eq!(v["authorization"], "Bearer t");
    let recorded = proxy.exchanges().pop().unwrap().request_body;
    assert_eq!(
        serde_json::from_slice::<Value>(&recorded).unwrap()["nonce"],
        "replaced"
    );

    // Another path and credential, and an upload the server pretends to keep.
    proxy.clear();
    proxy.rewrite_request(|req, out| {
        if req.is("GET", "/api/tasks/*") {
            out.path = "/api/tasks/9".into();
            out.set_header("authorization", "Bearer stolen");
        }
        if req.is("PUT", "/api/runs/*/result") {
            out.respond(Answer::new(204, Vec::new()));
        }
    });
    let (_, v) = get_json(format!("{}/api/tasks/1", proxy.url())).await;
    assert_eq!(v["task"]["id"], 9);
    let before = up.seen().len();
    let resp = client()
        .put(format!("{}/api/runs/5/result", proxy.url()))
        .body(b"sealed result".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(up.seen().len(), before, "the upstream never saw the upload");
    let seen = up.seen();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.1.as_str(), last.3.as_deref()),
        ("/api/tasks/9", Some("Bearer stolen"))
    );
    let e = proxy.exchanges().pop().unwrap();
    assert_eq!((e.upstream_status, e.status), (None, 204));
    assert_eq!(e.request_body, b"sealed result");
}

#[tokio::test]
async fn rules_are_added_removed_and_cleared_while_it_runs() {
    let up = upstream().await;
    let proxy = Arc::new(LyingProxy::start(&up.url).await.unwrap());
    let nonce = |proxy: Arc<LyingProxy>| async move {
        get_json(format!("{}/api/tasks/1", proxy.url())).await.1["task"]["nonce"].clone()
    };
    let honest = json!("n".repeat(32));
    assert_eq!(nonce(proxy.clone()).await, honest);
    let a = proxy.rewrite_json(|_, v| v["task"]["nonce"] = json!("a"));
    assert_eq!(nonce(proxy.clone()).await, "a");
    // Rules run in the order installed: the later one has the last word.
    let b = proxy.rewrite_json(|_, v| v["task"]["nonce"] = json!("b"));
    assert_eq!(nonce(proxy.clone()).await, "b");
    assert!(proxy.remove(b));
    assert!(!proxy.remove(b), "already removed");
    assert_eq!(nonce(proxy.clone()).await, "a");
    proxy.clear();
    assert_eq!(nonce(proxy.clone()).await, honest);
    assert!(!proxy.remove(a));

    // A rule with state that removes itself: lies once, then tells the truth.
    let p = proxy.clone();
    let id: Arc<Mutex<Option<RuleId>>> = Arc::default();
    let me = id.clone();
    let times = Arc::new(AtomicUsize::new(0));
    let t = times.clone();
    let rule = proxy.rewrite_json(move |_, v| {
        t.fetch_add(1, Ordering::SeqCst);
        v["task"]["nonce"] = json!("once");
        if let Some(id) = *lock(&me) {
            p.remove(id);
        }
    });
    *lock(&id) = Some(rule);
    assert_eq!(nonce(proxy.clone()).await, "once");
    assert_eq!(nonce(proxy.clone()).await, honest);
    assert_eq!(times.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn websocket_upgrades_are_refused_with_503_and_never_forwarded() {
    use tokio_tungstenite::tungstenite;

    let up = upstream().await;
    let proxy = LyingProxy::start(&up.url).await.unwrap();
    // The upstream really serves the socket...
    let direct = format!(
        "{}/api/events/ws?after=0",
        up.url.replace("http://", "ws://")
    );
    let (ws, _) = tokio_tungstenite::connect_async(direct.as_str())
        .await
        .unwrap();
    drop(ws);
    assert_eq!(up.sockets.load(Ordering::SeqCst), 1);
    // ...but through the proxy the handshake fails the way a node sees it, with the body.
    let via = format!(
        "{}/api/events/ws?after=0",
        proxy.url().replace("http://", "ws://")
    );
    match tokio_tungstenite::connect_async(via.as_str()).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "unavailable");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("poll GET /api/events"),
                "{body}"
            );
        }
        other => panic!("the upgrade went through: {other:?}"),
    }
    assert_eq!(up.sockets.load(Ordering::SeqCst), 1, "never forwarded");
    assert_eq!(up.seen().len(), 0);
    let e = proxy.exchanges().pop().unwrap();
    assert_eq!(
        (
            e.path.as_str(),
            e.query.as_deref(),
            e.upstream_status,
            e.status
        ),
        ("/api/events/ws", Some("after=0"), None, 503)
    );
    // A plain GET of the same path is forwarded like any request.
    let r = client()
        .get(format!("{}/api/events/ws", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "axum refuses a GET that is not an upgrade");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_with_the_error_body() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let proxy = LyingProxy::start(&dead).await.unwrap();
    let (s, v) = get_json(format!("{}/api/health", proxy.url())).await;
    assert_eq!(s, 502);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the upstream"),
        "{v}"
    );
    assert!(LyingProxy::start("127.0.0.1:7600").await.is_err());
}

#[tokio::test]
async fn sqlite_files_are_edited_and_read_directly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.db");
    let missing = sqlite_exec(&path, "SELECT 1").await.unwrap_err();
    assert!(
        missing.contains("is not a SQLite database file"),
        "{missing}"
    );
    std::fs::File::create(&path).unwrap();
    sqlite_exec(
        &path,
        "PRAGMA journal_mode = WAL; \
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, image TEXT, nonce TEXT, score REAL, input BLOB); \
         INSERT INTO tasks (id, image, nonce, score, input) VALUES (1, 'a/b:1', NULL, 0.5, x'00ff')",
    )
    .await
    .unwrap();
    let changed = sqlite_exec(&path, "UPDATE tasks SET image = 'evil/b:1' WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let rows = sqlite_query(&path, "SELECT id, image, nonce, score, input FROM tasks")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![
            SqlValue::Integer(1),
            SqlValue::Text("evil/b:1".into()),
            SqlValue::Null,
            SqlValue::Real(0.5),
            SqlValue::Blob(vec![0, 255]),
        ]]
    );
    let bad = sqlite_exec(&path, "UPDATE missing_table SET x = 1")
        .await
        .unwrap_err();
    assert!(bad.contains("no such table"), "{bad}");
}

/// The real server behind the proxy, its SQLite file edited while it runs: what a node or a
/// client would be told by a server whose storage lies.
#[tokio::test]
async fn in_front_of_the_real_server_with_its_database_edited_underneath() {
    use warden_server::config::{AuthConfig, LimitsConfig};
    use warden_server::storage::ConnectOptions;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let url = format!("sqlite://{}", db.display());
    let service = warden_server::open(
        &url,
        dir.path(),
        &ConnectOptions::default(),
        AuthConfig::default(),
        LimitsConfig::default(),
    )
    .await
    .unwrap();
    let pw = dir.path().join("admin.pw");
    std::fs::write(&pw, "admin password for tests\n").unwrap();
    warden_server::bootstrap(&service, Some(&pw)).await.unwrap();
    let server = warden_server::serve("127.0.0.1:0".parse().unwrap(), service)
        .await
        .unwrap();
    let proxy = LyingProxy::start(&format!("http://{}", server.addr))
        .await
        .unwrap();
    let http = client();
    let login: Value = http
        .post(format!("{}/api/auth/login", proxy.url()))
        .json(&json!({"username": "admin", "password": "admin password for tests"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let resp = http
        .post(format!("{}/api/organizations", proxy.url()))
        .bearer_auth(&token)
        .json(&json!({"name": "hospital-a", "public_key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    // Storage that lies: another key under the same name, while the server runs.
    let other = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let n = sqlite_exec(
        &db,
        &format!("UPDATE organizations SET public_key = '{other}' WHERE id = {id}"),
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let org = |proxy_url: String, token: String| async move {
        client()
            .get(format!("{proxy_url}/api/organizations/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(org(proxy.url(), token.clone()).await["public_key"], other);
    // And the proxy on top of it, with the credential forwarded.
    proxy.rewrite_json(|req, v| {
        if req.is("GET", "/api/organizations/*") {
            v["name"] = json!("hospital-b");
        }
    });
    let v = org(proxy.url(), token.clone()).await;
    assert_eq!(
        (v["name"].as_str(), v["public_key"].as_str()),
        (Some("hospital-b"), Some(other))
    );
    let rows = sqlite_query(&db, "SELECT name FROM organizations")
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![SqlValue::Text("hospital-a".into())]]);
    assert_eq!(proxy.count("GET", "/api/organizations/*"), 2);
    proxy.stop().await;
    server.stop().await.unwrap();
}
