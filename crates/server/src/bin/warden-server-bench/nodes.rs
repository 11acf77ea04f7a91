//! `warden-server-bench nodes --nodes N`: N nodes connected to one server, delivery latency of
//! runs to each of them, and what holding them costs the server (RSS, descriptors, CPU).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream::{self, TryStreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Api, PASSWORD, percentile, summary, task_body};

/// Requests in flight while the world is built and the sessions are opened.
const SETUP_CONCURRENCY: usize = 64;

pub async fn bench(args: &[String]) -> Result<()> {
    let mut n = 1000usize;
    let mut tasks = 30usize;
    let mut targets = None;
    let mut database = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--nodes" => n = num("--nodes")?,
            "--tasks" => tasks = num("--tasks")?,
            "--targets" => targets = Some(num("--targets")?),
            "--database" => database = it.next().cloned(),
            other => bail!(
                "unknown argument {other}; use --nodes N, --tasks T, --targets K, --database URL"
            ),
        }
    }
    if n == 0 || tasks == 0 {
        bail!("--nodes and --tasks need numbers above 0");
    }
    let k = targets.unwrap_or(n.min(1000)).min(n);

    // This process holds N sockets, and so does the server (a child: it inherits the limit
    // and raises its own soft limit as `warden server start` does).
    let (soft, hard) = warden_server::raise_open_file_limit();
    println!("open-file limit of the bench: soft {soft:?}, hard {hard:?}");
    if soft.is_some_and(|s| s < n as u64 + 256) {
        bail!(
            "{n} nodes need more than {} open files in this process; raise the hard limit (ulimit -Hn, LimitNOFILE)",
            soft.unwrap_or(0)
        );
    }

    let dir = tempfile::tempdir()?;
    let (url, schema) = match &database {
        Some(u) if u.starts_with("postgres") => (
            u.clone(),
            Some(format!("bench_nodes_{}", std::process::id())),
        ),
        Some(u) => (u.clone(), None),
        None => (
            format!("sqlite://{}", dir.path().join("server.db").display()),
            None,
        ),
    };
    // The child allows N sessions in all (the default allows 10,000).
    let server = super::spawn_server_env(
        &url,
        schema.as_deref(),
        dir.path(),
        &[("WARDEN_BENCH_SESSIONS", n.to_string())],
    )?;
    let pid = server.child.id();
    println!(
        "database: {}; {n} nodes; {tasks} tasks of {k} targets",
        if schema.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    let api = Arc::new(Api {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(SETUP_CONCURRENCY)
            .build()?,
    });
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
    let admin = Arc::new(admin);

    // The world: N organizations, one collaboration of all of them, a node for each. Through
    // the API, 64 requests at a time (a node's key is checked with a fast keyed hash, so the
    // logins are cheap; nothing is weakened for the bench).
    let t = Instant::now();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let orgs: Vec<i64> = stream::iter(0..n)
        .map(|i| {
            let (api, admin) = (api.clone(), admin.clone());
            async move {
                api.post(
                    Some(&admin),
                    "/api/organizations",
                    &json!({"name": format!("org-{i}"), "public_key": key}),
                )
                .await?["id"]
                    .as_i64()
                    .context("id")
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let c = api
        .post(
            Some(&admin),
            "/api/collaborations",
            &json!({"name": "scale", "organizations": orgs}),
        )
        .await?["id"]
        .as_i64()
        .context("id")?;
    let keys: Vec<String> = stream::iter(orgs.clone())
        .map(|o| {
            let (api, admin) = (api.clone(), admin.clone());
            async move {
                Ok::<_, anyhow::Error>(
                    api.post(
                        Some(&admin),
                        "/api/nodes",
                        &json!({"organization_id": o, "collaboration_id": c}),
                    )
                    .await?["api_key"]
                        .as_str()
                        .context("key")?
                        .to_owned(),
                )
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    println!(
        "created {n} organizations, the collaboration and {n} nodes in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    api.post(Some(&admin), "/api/users", &json!({"username": "res", "password": PASSWORD, "role": "researcher", "organization_id": orgs[0]})).await?;
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

    // Log every node in and open its event WebSocket; each session reports (run, arrival).
    let t = Instant::now();
    let tokens: Vec<String> = stream::iter(keys)
        .map(|key| {
            let api = api.clone();
            async move {
                Ok::<_, anyhow::Error>(
                    api.post(None, "/api/auth/node", &json!({"api_key": key}))
                        .await?["access_token"]
                        .as_str()
                        .context("token")?
                        .to_owned(),
                )
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let logins = t.elapsed();
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let addr = server.addr.clone();
    let t = Instant::now();
    let sockets: Vec<_> = stream::iter(tokens)
        .map(|token| {
            let addr = addr.clone();
            async move {
                let mut req =
                    tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                        format!("ws://{addr}/api/events/ws?after=0"),
                    )?;
                req.headers_mut()
                    .insert("authorization", format!("Bearer {token}").parse()?);
                let (ws, _) = tokio_tungstenite::connect_async(req).await?;
                Ok::<_, anyhow::Error>(ws)
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    for mut ws in sockets {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                    let at = Instant::now();
                    if let Ok(v) = serde_json::from_str::<Value>(&t) {
                        if let Some(r) = v["run_id"].as_i64() {
                            let _ = tx.send((r, at));
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    println!(
        "{n} node logins in {:.1} s; {n} event sessions open in {:.1} s",
        logins.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = Usage::of(pid)?;
    println!("server with {n} sessions open, idle: {idle}");

    // Tasks of K targets: consecutive slices of the organizations, so that over T tasks the
    // targets go round all N nodes. One at a time, 100 ms apart, so that each task's fan-out
    // is measured on its own.
    let mut sent: HashMap<i64, (usize, Instant)> = HashMap::new();
    let mut creates = Vec::new();
    for i in 0..tasks {
        let slice: Vec<i64> = (0..k).map(|j| orgs[(i * k + j) % n]).collect();
        let body = task_body(c, &slice);
        let t0 = Instant::now();
        let v = api.post(Some(&res), "/api/tasks", &body).await?;
        creates.push(t0.elapsed());
        for r in v["runs"].as_array().context("runs")? {
            sent.insert(r["id"].as_i64().context("id")?, (i, t0));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut lat = Vec::with_capacity(sent.len());
    let mut last_of_task = vec![Duration::ZERO; tasks];
    let mut seen = 0usize;
    while seen < sent.len() {
        let Ok(Some((run, at))) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await
        else {
            bail!(
                "only {seen} of {} runs arrived within 30 s of the last",
                sent.len()
            );
        };
        if let Some((i, t0)) = sent.get(&run) {
            let d = at.saturating_duration_since(*t0);
            lat.push(d);
            last_of_task[*i] = last_of_task[*i].max(d);
            seen += 1;
        }
    }
    let after = Usage::of(pid)?;
    summary("create-task request (K targets)", creates);
    lat.sort();
    println!(
        "delivery, create request -> node receives its run: n={} p50={:?} p99={:?} max={:?}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );
    summary(
        "create request -> last of the task's K nodes has it",
        last_of_task,
    );
    println!("server after the tasks: {after}");
    println!(
        "server CPU during the tasks: {:.2} s for {} deliveries",
        after.cpu_secs - idle.cpu_secs,
        lat.len()
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

/// The server process's resident memory, open descriptors and CPU time so far.
struct Usage {
    rss_kib: u64,
    fds: usize,
    cpu_secs: f64,
}

impl Usage {
    fn of(pid: u32) -> Result<Usage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS")?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let rest = stat.rsplit_once(')').context("stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat(5) (utime, stime), counted after the command's ')'.
        let ticks: u64 = f.get(11).context("utime")?.parse::<u64>()?
            + f.get(12).context("stime")?.parse::<u64>()?;
        let hz = rustix::param::clock_ticks_per_second();
        Ok(Usage {
            rss_kib,
            fds,
            cpu_secs: ticks as f64 / hz as f64,
        })
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MB, {} open descriptors, {:.2} s CPU since start",
            self.rss_kib as f64 * 1024.0 / 1e6,
            self.fds,
            self.cpu_secs
        )
    }
}
