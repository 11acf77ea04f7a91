//! Benchmark of the coordination server, against a server running in a child process on
//! loopback (real HTTP, real database).
//!
//! ```text
//! cargo run --release -p warden-server --bin warden-server-bench -- [--database URL] [--tasks N] [--replicas R]
//! ```
//!
//! Without `--database`, a fresh SQLite file in a temporary directory is used. With a
//! `postgres://` URL, a fresh schema in that database is used (and dropped at the end).
//! Figures printed: create-task throughput (8 clients) and sequential latency, list latency with
//! N stored tasks, push latency to a connected node, node and user login rates, start-up time on
//! the existing database, and idle RSS of the server process. Also the token check that every
//! authenticated request makes (sequential `GET /api/auth/whoami` with a user's and a node's
//! token); `--token-check-only` prints only that figure. `--replicas R` (PostgreSQL only) starts
//! R server processes over the same schema and spreads the 8 create-task clients over them
//! (client i talks to replica i mod R); the other figures use the first. The server's RSS is
//! printed after each load, including bursts of user logins from 8 and 32 clients.
//!
//! ```text
//! warden-server-bench nodes --nodes N [--database URL] [--tasks T] [--targets K]
//! ```
//!
//! Scale: N organizations in one collaboration, a node for each, all N logged in with their
//! event WebSockets open against one server; then T tasks (default 30) of K targets each
//! (default min(N, the server's 1,000)), consecutive slices of the nodes, one after the other.
//! Prints the delivery latency from each create request to each node's receipt of its run
//! (p50/p99/max), the time until the last node of a task has it, and the server's RSS, open
//! file descriptors and CPU time idle with N sessions and after the tasks (module [`nodes`]).

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};
use warden_server::config::{AuthConfig, LimitsConfig};
use warden_server::storage::{ConnectOptions, Db, Durability, NewTask};

#[path = "warden-server-bench/nodes.rs"]
mod nodes;

const CLIENTS: usize = 8;
const PASSWORD: &str = "bench password 0123456789";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve_child(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("nodes") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(nodes::bench(&args[2..]));
    }
    let mut database = None;
    let mut tasks = 100_000usize;
    let mut token_check_only = false;
    let mut replicas = 1usize;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--database" => database = it.next().cloned(),
            "--token-check-only" => token_check_only = true,
            "--replicas" => {
                replicas = it
                    .next()
                    .context("--replicas needs a number")?
                    .parse()
                    .context("--replicas needs a number")?;
                if replicas == 0 {
                    bail!("--replicas needs a number above 0");
                }
            }
            "--tasks" => {
                tasks = it
                    .next()
                    .context("--tasks needs a number")?
                    .parse()
                    .context("--tasks needs a number")?
            }
            other => bail!(
                "unknown argument {other}; use --database URL, --tasks N, --replicas R and --token-check-only"
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(database, tasks, replicas, token_check_only))
}

/// Child mode: `serve URL SCHEMA|- DIR` starts the server on a free port, prints
/// `listening <addr> <startup micros>` and serves until stdin closes.
fn serve_child(args: &[String]) -> Result<()> {
    let t0 = Instant::now();
    let [url, schema, dir] = args else {
        bail!("usage: serve URL SCHEMA|- DIR");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let options = ConnectOptions {
            max_connections: 16,
            sqlite_durability: match std::env::var("WARDEN_BENCH_SQLITE_DURABILITY").as_deref() {
                Ok("normal") => Durability::Normal,
                _ => Durability::Full,
            },
            pg_schema: (schema != "-").then(|| schema.clone()),
            ..ConnectOptions::default()
        };
        let dir = PathBuf::from(dir);
        let service = warden_server::open(
            url,
            &dir,
            &options,
            // Every bench client is on 127.0.0.1, so the per-address login buckets are raised
            // far above what the bench reaches (not exempted: the bucket check still runs on
            // every login, so its cost is in the figures). WARDEN_BENCH_LOGIN_EXEMPT=1
            // exempts 127.0.0.1 instead, which skips the buckets: the comparison is their cost.
            AuthConfig {
                login_rate_per_minute: 6_000_000,
                login_burst: 1_000_000,
                node_login_rate_per_minute: 6_000_000,
                node_login_burst: 1_000_000,
                rate_limit_exempt: match std::env::var("WARDEN_BENCH_LOGIN_EXEMPT").as_deref() {
                    Ok("1") => vec![std::net::IpAddr::from([127, 0, 0, 1])],
                    _ => Vec::new(),
                },
                ..AuthConfig::default()
            },
            // `nodes --nodes N` holds N sessions: the total is raised to N when above the default.
            LimitsConfig {
                max_event_sessions: std::env::var("WARDEN_BENCH_SESSIONS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .map_or(LimitsConfig::default().max_event_sessions, |n: u32| {
                        n.max(LimitsConfig::default().max_event_sessions)
                    }),
                ..LimitsConfig::default()
            },
        )
        .await?;
        let pw = dir.join("admin.pw");
        if !pw.exists() {
            std::fs::write(&pw, PASSWORD)?;
        }
        warden_server::bootstrap(&service, Some(&pw)).await?;
        let server = warden_server::serve("127.0.0.1:0".parse()?, service).await?;
        println!("listening {} {}", server.addr, t0.elapsed().as_micros());
        // Serve until the parent closes our stdin.
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        });
        server
            .wait(async {
                let _ = stdin_closed.await;
            })
            .await?;
        Ok(())
    })
}

struct ChildServer {
    child: Child,
    addr: String,
    startup: Duration,
    spawned: Instant,
}

fn spawn_server(url: &str, schema: Option<&str>, dir: &Path) -> Result<ChildServer> {
    spawn_server_env(url, schema, dir, &[])
}

/// [`spawn_server`] with these variables in the child's environment.
fn spawn_server_env(
    url: &str,
    schema: Option<&str>,
    dir: &Path,
    env: &[(&str, String)],
) -> Result<ChildServer> {
    let exe = std::env::current_exe()?;
    let spawned = Instant::now();
    let mut child = Command::new(exe)
        .args(["serve", url, schema.unwrap_or("-")])
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    if parts.next() != Some("listening") {
        bail!("the server did not start: {line}");
    }
    let addr = parts.next().context("address")?.to_owned();
    let micros: u64 = parts.next().context("startup")?.parse()?;
    Ok(ChildServer {
        child,
        addr,
        startup: Duration::from_micros(micros),
        spawned,
    })
}

impl ChildServer {
    fn stop(mut self) -> Result<()> {
        drop(self.child.stdin.take());
        self.child.wait()?;
        Ok(())
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS"))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or_default()
    );
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn post(&self, token: Option<&str>, path: &str, body: &Value) -> Result<Value> {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    async fn get(&self, token: &str, path: &str) -> Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {v}");
        }
        Ok(v)
    }
}

fn task_body(collab: i64, orgs: &[i64]) -> Value {
    let inputs: Vec<Value> = orgs
        .iter()
        .map(|o| json!({"organization_id": o, "input": "c2VhbGVkIGlucHV0IGZvciB0aGUgb3JnYW5pemF0aW9uOiAzMiBieXRlcyBvciBzbw=="}))
        .collect();
    json!({"collaboration_id": collab, "name": "bench", "image": "registry.example.org/team/avg:1.0", "inputs": inputs})
}

async fn bench(
    database: Option<String>,
    target_tasks: usize,
    replicas: usize,
    token_check_only: bool,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, schema) = match &database {
        Some(u) if u.starts_with("postgres") => {
            (u.clone(), Some(format!("bench_{}", std::process::id())))
        }
        Some(u) => (u.clone(), None),
        None => (
            format!("sqlite://{}", dir.path().join("server.db").display()),
            None,
        ),
    };
    println!(
        "database: {}",
        if schema.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    if replicas > 1 && schema.is_none() {
        bail!("--replicas needs a postgres:// --database (SQLite has one server)");
    }
    let server = spawn_server(&url, schema.as_deref(), dir.path())?;
    let api = Api {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?,
    };

    // World: two organizations in one collaboration, a researcher, a node per organization.
    let admin = api
        .post(
            None,
            "/api/auth/login",
            &json!({"username": "admin", "password": PASSWORD}),
        )
        .await?["access_token"]
        .as_str()
        .context("token")?
        .to_owned();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let o1 = api
        .post(
            Some(&admin),
            "/api/organizations",
            &json!({"name": "one", "public_key": key}),
        )
        .await?["id"]
        .as_i64()
        .context("id")?;
    let o2 = api
        .post(
            Some(&admin),
            "/api/organizations",
            &json!({"name": "two", "public_key": key}),
        )
        .await?["id"]
        .as_i64()
        .context("id")?;
    let c = api
        .post(
            Some(&admin),
            "/api/collaborations",
            &json!({"name": "c", "organizations": [o1, o2]}),
        )
        .await?["id"]
        .as_i64()
        .context("id")?;
    api.post(Some(&admin), "/api/users", &json!({"username": "res", "password": PASSWORD, "role": "researcher", "organization_id": o1})).await?;
    let res = api
        .post(
            None,
            "/api/auth/login",
            &json!({"username": "res", "password": PASSWORD}),
        )
        .await?["access_token"]
        .as_str()
        .context("token")?
        .to_owned();
    let n1 = api
        .post(
            Some(&admin),
            "/api/nodes",
            &json!({"organization_id": o1, "collaboration_id": c}),
        )
        .await?;
    let node_key = n1["api_key"].as_str().context("key")?.to_owned();
    let body = task_body(c, &[o1, o2]);

    // 0. the token check of every authenticated request: token row, then the owner's row
    // (user: disabled flag and token generation; node: key generation), sequential.
    let node_token = api
        .post(None, "/api/auth/node", &json!({"api_key": node_key}))
        .await?["access_token"]
        .as_str()
        .context("token")?
        .to_owned();
    for (who, token) in [("user", &res), ("node", &node_token)] {
        for _ in 0..200 {
            api.get(token, "/api/auth/whoami").await?;
        }
        let mut lat = Vec::with_capacity(3000);
        for _ in 0..3000 {
            let t = Instant::now();
            api.get(token, "/api/auth/whoami").await?;
            lat.push(t.elapsed());
        }
        summary(&format!("whoami with a {who} token, sequential"), lat);
    }
    if token_check_only {
        server.stop()?;
        if let Some(s) = schema {
            let pool = sqlx::PgPool::connect(&url).await?;
            sqlx::query(&format!("DROP SCHEMA \"{s}\" CASCADE"))
                .execute(&pool)
                .await?;
        }
        return Ok(());
    }

    // Further replicas over the same schema (the first one migrated it).
    let mut others = Vec::new();
    for _ in 1..replicas {
        others.push(spawn_server(&url, schema.as_deref(), dir.path())?);
    }
    let bases: Vec<String> = std::iter::once(api.base.clone())
        .chain(others.iter().map(|s| format!("http://{}", s.addr)))
        .collect();

    // 1. create-task, sequential latency.
    for _ in 0..100 {
        api.post(Some(&res), "/api/tasks", &body).await?;
    }
    let mut lat = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        api.post(Some(&res), "/api/tasks", &body).await?;
        lat.push(t.elapsed());
    }
    summary("create-task sequential (2 targets)", lat);

    // 2. create-task throughput with 8 clients.
    let per_client = 1500;
    let t = Instant::now();
    let mut handles = Vec::new();
    for i in 0..CLIENTS {
        let http = api.http.clone();
        let base = bases[i % bases.len()].clone();
        let res = res.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let s = Instant::now();
                let r = http
                    .post(format!("{base}/api/tasks"))
                    .bearer_auth(&res)
                    .json(&body)
                    .send()
                    .await?;
                if r.status() != reqwest::StatusCode::CREATED {
                    bail!("create-task: {}", r.status());
                }
                let _ = r.bytes().await?;
                lat.push(s.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "create-task throughput ({CLIENTS} clients, {replicas} replica(s)): {:.0}/s ({} tasks in {:.2} s)",
        all.len() as f64 / secs,
        all.len(),
        secs
    );
    summary("create-task latency under load", all);
    for s in others {
        s.stop()?;
    }
    println!("RSS after the create-task load: {} KiB", server.rss_kib()?);

    // 3. Fill up to the target number of tasks directly through storage, then list.
    let db = Db::connect(
        &url,
        dir.path(),
        &ConnectOptions {
            max_connections: 2,
            pg_schema: schema.clone(),
            ..Default::default()
        },
    )
    .await?;
    let existing = 100 + 1000 + CLIENTS * per_client;
    // Seeded tasks belong to the researcher, so that listing joins a real user name per row.
    let seed_user = db.read().await?.user_by_name("res").await?.map(|u| u.id);
    let t = Instant::now();
    let mut left = target_tasks.saturating_sub(existing);
    while left > 0 {
        let batch = left.min(5000);
        let mut tx = db.write().await?;
        for _ in 0..batch {
            let id = tx
                .insert_task(&NewTask {
                    collaboration_id: c,
                    name: "seed",
                    image: "registry.example.org/team/avg:1.0",
                    organization_id: o1,
                    creator_user_id: seed_user,
                    requester_user_id: seed_user,
                    requester_username: Some("res"),
                    creator_run_id: None,
                    parent_task_id: None,
                    nonce: None,
                    created_at: 0,
                })
                .await?;
            let runs = tx
                .insert_runs(id, c, &[(o1, b"x".to_vec()), (o2, b"x".to_vec())], 0)
                .await?;
            let (r1, r2) = (runs[0], runs[1]);
            tx.insert_run_events(&[(r1, c, o1), (r2, c, o2)], 0).await?;
        }
        tx.commit().await?;
        left -= batch;
    }
    println!(
        "seeded to {target_tasks} tasks in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for (who, token) in [("researcher", &res), ("root", &admin)] {
        let mut lat = Vec::new();
        for i in 0..1100 {
            let t = Instant::now();
            let v = api.get(token, "/api/tasks?limit=50").await?;
            if i >= 100 {
                lat.push(t.elapsed());
            }
            if v["items"].as_array().map(Vec::len) != Some(50) {
                bail!("list returned {v}");
            }
        }
        summary(
            &format!("list 50 newest tasks of {target_tasks} ({who})"),
            lat,
        );
    }
    let mut lat = Vec::new();
    // 500 pages of 50; with fewer tasks stored the walk starts again at the first page when it
    // reaches the last (whose `next` is null), so that any --tasks works.
    let first = api.get(&res, "/api/tasks?limit=50").await?;
    let start = first["next"].as_i64();
    let mut cursor = start;
    for _ in 0..500 {
        let path = match cursor {
            Some(c) => format!("/api/tasks?limit=50&after={c}"),
            None => "/api/tasks?limit=50".to_owned(),
        };
        let t = Instant::now();
        let v = api.get(&res, &path).await?;
        lat.push(t.elapsed());
        cursor = v["next"].as_i64().or(start);
    }
    summary("list next pages (keyset)", lat);

    // 4. push latency to a connected node.
    let node_token = api
        .post(None, "/api/auth/node", &json!({"api_key": node_key}))
        .await?["access_token"]
        .as_str()
        .context("token")?
        .to_owned();
    let last = db.read().await?.last_event_id().await?;
    let ws_url = format!("ws://{}/api/events/ws?after={last}", server.addr);
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url)?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {node_token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let (tx_arrival, mut rx_arrival) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    if let Some(r) = v["run_id"].as_i64() {
                        let _ = tx_arrival.send((r, Instant::now()));
                    }
                }
            }
        }
    });
    let mut sent: HashMap<i64, (Instant, Instant)> = HashMap::new();
    for _ in 0..300 {
        let t0 = Instant::now();
        let v = api.post(Some(&res), "/api/tasks", &body).await?;
        let t1 = Instant::now();
        for r in v["runs"].as_array().context("runs")? {
            if r["organization_id"] == o1 {
                sent.insert(r["id"].as_i64().context("id")?, (t0, t1));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut from_request = Vec::new();
    let mut from_commit = Vec::new();
    while from_request.len() < sent.len() {
        let (run, at) = tokio::time::timeout(Duration::from_secs(5), rx_arrival.recv())
            .await?
            .context("socket closed")?;
        if let Some((t0, t1)) = sent.get(&run) {
            from_request.push(at.saturating_duration_since(*t0));
            from_commit.push(at.saturating_duration_since(*t1));
        }
    }
    summary(
        "push: event arrival after create request sent",
        from_request,
    );
    summary("push: event arrival after create response", from_commit);

    // 5. node logins (8 clients).
    let n = 2000;
    let t = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..CLIENTS {
        let http = api.http.clone();
        let base = api.base.clone();
        let key = node_key.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..n / CLIENTS {
                let r = http
                    .post(format!("{base}/api/auth/node"))
                    .json(&json!({"api_key": key}))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("node login: {}", r.status());
                }
                let _ = r.bytes().await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    println!(
        "node login ({CLIENTS} clients): {:.0}/s",
        n as f64 / t.elapsed().as_secs_f64()
    );

    println!("RSS after the node logins: {} KiB", server.rss_kib()?);

    // 6. user logins (8 clients, argon2id m=19 MiB), then a burst from 32 clients.
    for clients in [CLIENTS, 32] {
        user_logins(&api, clients, 20 * clients).await?;
        println!(
            "RSS after {clients} clients' user logins: {} KiB",
            server.rss_kib()?
        );
    }

    // 7. start-up on the existing database, and idle RSS.
    println!(
        "first start (empty database, migrations, admin hash): {:?}",
        server.startup
    );
    let loaded_rss = server.rss_kib()?;
    server.stop()?;
    db.close().await;
    let server = spawn_server(&url, schema.as_deref(), dir.path())?;
    let ready = server.spawned.elapsed();
    println!(
        "start-up on the existing database: {:?} in-process (open + migrate check + listen), {:?} from exec to listening",
        server.startup, ready
    );
    let api = Api {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::new(),
    };
    api.http
        .get(format!("{}/api/health", api.base))
        .send()
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "idle RSS: {} KiB after restart (was {} KiB after the load above)",
        server.rss_kib()?,
        loaded_rss
    );
    server.stop()?;
    if let Some(s) = schema {
        let pool = sqlx::PgPool::connect(&url).await?;
        sqlx::query(&format!("DROP SCHEMA \"{s}\" CASCADE"))
            .execute(&pool)
            .await?;
    }
    Ok(())
}

/// `n` user logins (argon2id m = 19 MiB) from `clients` concurrent clients; prints the rate.
async fn user_logins(api: &Api, clients: usize, n: usize) -> Result<()> {
    let t = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let http = api.http.clone();
        let base = api.base.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..n / clients {
                let r = http
                    .post(format!("{base}/api/auth/login"))
                    .json(&json!({"username": "res", "password": PASSWORD}))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("user login: {}", r.status());
                }
                let _ = r.bytes().await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    println!(
        "user login ({clients} clients, argon2id m=19 MiB): {:.1}/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
