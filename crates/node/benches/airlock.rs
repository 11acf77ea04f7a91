//! The airlock's release, against real parts (server in-process, registry, Docker, the node's
//! local socket), printed as figures (run: `cargo bench -p warden-node --bench airlock`): from
//! the data owner's release request on the local socket (`release = "manual"`) to the result
//! downloaded from the server and opened at the researcher, who polls the run every 1 ms.
//! The release request alone (seal, spool, audit, upload, report, answer) is shown beside it.
//!
//! `WARDEN_BENCH_RUNS` sets the number of measured runs (default 20).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::World;
use serde_json::json;
use warden_node::local::LocalClient;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn line(name: &str, v: &mut [Duration]) {
    println!(
        "{name:<52} p50 {:>8.1} ms   p90 {:>8.1} ms   max {:>8.1} ms   (n={})",
        pct(v, 0.5),
        pct(v, 0.9),
        pct(v, 1.0),
        v.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs: usize = std::env::var("WARDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "bench-airlock", "v1");
    w.sign(&repo, &digest).await;
    let policy = format!(
        "{}[allow.output]\nrelease = \"manual\"\n",
        w.signed_policy(&repo)
    );
    let config = w.node_config(&w.a, &policy, "");
    let node = w.start_node(&config).await;
    let socket = node.node.local_socket().unwrap();
    let image = format!("{repo}:v1");
    let input = json!({"function": "hello", "args": {"x": 1}});

    let mut total = Vec::new();
    let mut request = Vec::new();
    // The first run pulls the image; it is not measured.
    for i in 0..=runs {
        let t = w.create_task(&image, &input, &[&w.a]).await;
        let id = t.runs[0].id;
        w.wait_state(
            id,
            warden_api::RunState::AwaitingRelease,
            Duration::from_secs(120),
        )
        .await;
        let client = LocalClient::new(socket.clone());
        let started = Instant::now();
        let answer = tokio::task::spawn_blocking(move || client.release(id))
            .await
            .unwrap()
            .unwrap();
        let answered = started.elapsed();
        assert!(answer.done, "{}", answer.message);
        loop {
            let r = w.run(id).await;
            if r.state.is_final() {
                assert_eq!(r.state, warden_api::RunState::Completed, "{:?}", r.reason);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let out = w.result(id).await;
        let elapsed = started.elapsed();
        assert!(out.starts_with(b"env-ok echo:"));
        if i > 0 {
            total.push(elapsed);
            request.push(answered);
        }
    }
    println!("airlock release, {runs} runs (echo image, result sealed to the researcher)");
    line("release request answered (local socket)", &mut request);
    line("release -> result opened at the researcher", &mut total);
    node.stop().await;
}
