//! The server as a real process (`warden server start`): a task creation the server
//! acknowledged (201) survives the process being killed with SIGKILL while other creations
//! are in flight, on SQLite with the default durability and, when `WARDEN_TEST_DATABASE_URL`
//! names one, on PostgreSQL.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_warden");
const ADMIN_PASSWORD: &str = "admin password for the crash test";
const PASSWORD: &str = "a long enough password";
const PUBLIC_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Clients creating tasks at the same time (on SQLite they share group commits).
const CLIENTS: usize = 8;
/// Acknowledged creations after which the server is killed.
const KILL_AFTER: usize = 150;

struct Server {
    child: Child,
    log: PathBuf,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Write `server.toml` for `database_url` and start `warden server start` on a free port.
async fn start(dir: &Path, database_url: &str) -> Server {
    let port = free_port();
    std::fs::write(dir.join("admin.pw"), format!("{ADMIN_PASSWORD}\n")).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"{database_url}\"\n[bootstrap]\nadmin_password_file = \"admin.pw\"\n"
        ),
    )
    .unwrap();
    let log = dir.join("server.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = Command::new(BIN)
        .args(["server", "start", "--config", config.to_str().unwrap()])
        .env("WARDEN_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        log,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/api/health", server.base)).await {
            if r.status().is_success() {
                return server;
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "the server exited with {status}: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    let bytes = r.bytes().await.unwrap();
    (s, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> String {
    let (s, v) = call(
        http,
        base,
        None,
        reqwest::Method::POST,
        "/api/auth/login",
        Some(json!({"username": user, "password": password})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

/// Creates tasks from [`CLIENTS`] clients, kills the server with SIGKILL once [`KILL_AFTER`]
/// were acknowledged (others still in flight), restarts it on the same database and checks
/// that every acknowledged task is there with its runs and its nodes' events.
async fn acknowledged_tasks_survive_sigkill(dir: &Path, database_url: &str) {
    let http = reqwest::Client::new();
    let mut server = start(dir, database_url).await;
    let base = server.base.clone();
    let admin = login(&http, &base, "admin", ADMIN_PASSWORD).await;
    let post = |token: &str, path: &str, body: Value| {
        let (http, base, token, path) = (
            http.clone(),
            base.clone(),
            token.to_owned(),
            path.to_owned(),
        );
        async move {
            call(
                &http,
                &base,
                Some(&token),
                reqwest::Method::POST,
                &path,
                Some(body),
            )
            .await
        }
    };
    let (_, a) = post(
        &admin,
        "/api/organizations",
        json!({"name": "a", "public_key": PUBLIC_KEY}),
    )
    .await;
    let (_, b) = post(
        &admin,
        "/api/organizations",
        json!({"name": "b", "public_key": PUBLIC_KEY}),
    )
    .await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let (s, c) = post(
        &admin,
        "/api/collaborations",
        json!({"name": "c", "organizations": [a, b]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let collab = c["id"].as_i64().unwrap();
    let (s, v) = post(&admin, "/api/users", json!({"username": "rita", "password": PASSWORD, "role": "researcher", "organization_id": a})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, node) = post(
        &admin,
        "/api/nodes",
        json!({"organization_id": b, "collaboration_id": collab}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{node}");
    let node_key = node["api_key"].as_str().unwrap().to_owned();
    let rita = login(&http, &base, "rita", PASSWORD).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<(i64, Vec<i64>)>();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (http, base, rita, stop, acks) = (
            http.clone(),
            base.clone(),
            rita.clone(),
            stop.clone(),
            acks.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = json!({"collaboration_id": collab, "name": format!("c{i}-{n}"),
                    "image": "registry.example.org/team/avg:1.0",
                    "inputs": [{"organization_id": a, "input": "aGVsbG8="}, {"organization_id": b, "input": "d29ybGQ="}]});
                let sent = http.post(format!("{base}/api/tasks")).bearer_auth(&rita).json(&body).send().await;
                // A connection error or a cut-off body: not acknowledged, so no promise.
                let Ok(resp) = sent else { return };
                let status = resp.status();
                let Ok(v) = resp.json::<Value>().await else { return };
                assert_eq!(status, StatusCode::CREATED, "{v}");
                let runs = v["runs"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
                if acks.send((v["task"]["id"].as_i64().unwrap(), runs)).is_err() {
                    return;
                }
            }
        }));
    }
    drop(acks);
    let mut got = Vec::new();
    while got.len() < KILL_AFTER {
        got.push(
            acked
                .recv()
                .await
                .expect("the clients stopped before the kill"),
        );
    }
    // SIGKILL: no shutdown path runs, nothing is flushed by the server on its way out.
    server.child.kill().unwrap();
    let status = server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    // Responses that reached a client before the process died were sent after their commit.
    while let Ok(a) = acked.try_recv() {
        got.push(a);
    }
    assert!(!status.success(), "{status}");
    drop(server);

    let server = start(dir, database_url).await;
    let base = server.base.clone();
    let rita = login(&http, &base, "rita", PASSWORD).await;
    for (task, runs) in &got {
        let (s, v) = call(
            &http,
            &base,
            Some(&rita),
            reqwest::Method::GET,
            &format!("/api/tasks/{task}"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "acknowledged task {task} is lost: {v}");
        let stored: Vec<i64> = v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(&stored, runs, "task {task}");
    }
    // The node of b gets an event for each acknowledged task's run, and its input.
    let (s, v) = call(
        &http,
        &base,
        None,
        reqwest::Method::POST,
        "/api/auth/node",
        Some(json!({"api_key": node_key})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let node_token = v["access_token"].as_str().unwrap().to_owned();
    let mut event_runs = std::collections::BTreeSet::new();
    let mut after = 0;
    loop {
        let (s, v) = call(
            &http,
            &base,
            Some(&node_token),
            reqwest::Method::GET,
            &format!("/api/events?after={after}&limit=500"),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let page = v.as_array().unwrap();
        if page.is_empty() {
            break;
        }
        for e in page {
            event_runs.insert(e["run_id"].as_i64().unwrap());
            after = e["id"].as_i64().unwrap();
        }
    }
    for (task, runs) in &got {
        let run_b = runs[1];
        assert!(
            event_runs.contains(&run_b),
            "no event for run {run_b} of task {task}"
        );
        let r = http
            .get(format!("{base}/api/runs/{run_b}/input"))
            .bearer_auth(&node_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(&r.bytes().await.unwrap()[..], b"world");
    }
    eprintln!("{} acknowledged task creations survived SIGKILL", got.len());
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_task_creations_survive_sigkill_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    // The default durability (`full`): no sqlite_durability key in the configuration.
    let url = format!("sqlite://{}", dir.path().join("server.db").display());
    acknowledged_tasks_survive_sigkill(dir.path(), &url).await;
}

/// PostgreSQL, named by `WARDEN_TEST_DATABASE_URL` (a fresh schema, dropped at the end with
/// `psql`). `scripts/test` runs the `_on_postgres` tests in its PostgreSQL pass only; run
/// anywhere else without that variable, this test fails rather than pass having tested nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_task_creations_survive_sigkill_on_postgres() {
    let url = std::env::var("WARDEN_TEST_DATABASE_URL").expect(
        "WARDEN_TEST_DATABASE_URL must name a PostgreSQL database for this test (scripts/test sets it)",
    );
    assert!(
        url.starts_with("postgres"),
        "WARDEN_TEST_DATABASE_URL is not a PostgreSQL URL: {url}"
    );
    let schema = format!("crash_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql is needed to create the test schema");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    psql(&format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
    ));
    let sep = if url.contains('?') { '&' } else { '?' };
    let server_url = format!("{url}{sep}options[search_path]={schema}");
    let dir = tempfile::tempdir().unwrap();
    acknowledged_tasks_survive_sigkill(dir.path(), &server_url).await;
    psql(&format!("DROP SCHEMA \"{schema}\" CASCADE"));
}
