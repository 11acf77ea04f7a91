//! `warden ui` with 10,000 tasks stored (issue 12's figures): the real server in this process
//! (SQLite) holding 10,000 tasks of 2 runs each, written with sqlite3 as the operator could, and
//! the real `warden ui` process logged in as the researcher. Each page is timed over HTTP on
//! loopback, so the figure is the console's whole answer: its calls to the server, the checks
//! and the rendering. The console's resident memory (VmRSS) is read from /proc, idle after its
//! login and again after the pages. `cargo bench -p warden-cli --bench console`; the figures are
//! in BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/researcher/mod.rs"]
mod researcher;

use std::process::Stdio;

use criterion::{Criterion, criterion_group, criterion_main};
use researcher::{BIN, PASSWORD, World};
use tokio::io::AsyncBufReadExt as _;

const TASKS: usize = 10_000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = rt.block_on(World::new());
    let rita = w.query("SELECT id FROM users WHERE username = 'rita'")[0].clone();
    w.tamper(&format!(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {TASKS}) \
         INSERT INTO tasks (collaboration_id, name, image, organization_id, creator_user_id, \
         created_at, requester_user_id, requester_username, nonce) \
         SELECT {c}, 'cohort mean ' || x, 'registry.example.org/warden/mean:1.0', {a}, {rita}, \
         1700000000 + x, {rita}, 'rita', 'nonce-' || x FROM n; \
         INSERT INTO runs (task_id, collaboration_id, organization_id, state, reason, created_at) \
         SELECT id, {c}, {a}, 'rejected', 'denied by policy: no allow rule names it', created_at \
         FROM tasks; \
         INSERT INTO runs (task_id, collaboration_id, organization_id, state, created_at) \
         SELECT id, {c}, {b}, 'running', created_at FROM tasks;",
        c = w.collab,
        a = w.a.id,
        b = w.b.id,
    ));
    assert_eq!(w.task_count(), TASKS);
    let profile = w.profile(&w.dir.path().join("p"), &[&w.a, &w.b], PASSWORD);
    let (mut child, url) = rt.block_on(async {
        let mut child = tokio::process::Command::new(BIN)
            .arg("ui")
            .arg("--profile-file")
            .arg(&profile)
            .env_remove("WARDEN_PASSWORD")
            .env("XDG_STATE_HOME", w.state_home())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines.next_line().await.unwrap().unwrap();
        (child, url)
    });
    let pid = child.id().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let idle = rss_kib(pid);
    let base = url.split("/login?").next().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = rt.block_on(async {
        let r = http.get(&url).send().await.unwrap();
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        set.split(';').next().unwrap().to_owned()
    });
    let last = TASKS as i64 - 100;
    let middle = TASKS as i64 / 2;
    let mut g = c.benchmark_group("console_10000_tasks");
    g.sample_size(30);
    for (name, path) in [
        ("tasks_first_page", "/tasks".to_owned()),
        ("tasks_last_page", format!("/tasks?after={last}")),
        ("task_with_2_runs", format!("/tasks/{middle}")),
        ("collaborations", "/collaborations".to_owned()),
    ] {
        let page = format!("{base}{path}");
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let r = http
                        .get(&page)
                        .header("cookie", &cookie)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{page}");
                    r.bytes().await.unwrap().len()
                })
            })
        });
    }
    g.finish();
    let after = rss_kib(pid);
    eprintln!("warden ui VmRSS: {idle} KiB idle after its login, {after} KiB after the pages");
    rt.block_on(async {
        let _ = child.kill().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
