//! Node overhead against real parts, printed as figures (run: `cargo bench -p warden-node`):
//! - from receiving a run to creating its container, with the image already present
//!   (admission: server reads, resolution, signatures, decision; pin; spool; proxy start);
//! - task submission to result available (and opened) at the researcher, against the raw
//!   `docker run` of the same image with the same mounts.
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

use std::process::Command;
use std::time::{Duration, Instant};

use common::World;
use serde_json::json;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn line(name: &str, v: &mut [Duration]) {
    println!(
        "{name:<44} p50 {:>8.1} ms   p90 {:>8.1} ms   max {:>8.1} ms   (n={})",
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
    let (repo, digest) = w.push_program("echo", "bench", "v1");
    w.sign(&repo, &digest).await;
    let config = w.node_config(&w.a, &w.signed_policy(&repo), "");
    let node = w.start_node(&config).await;
    let image = format!("{repo}:v1");
    let input = json!({"function": "hello", "args": {"x": 1}});

    // Warm up: the first run pulls the image.
    for _ in 0..2 {
        let t = w.create_task(&image, &input, &[&w.a]).await;
        w.wait_final(t.runs[0].id, Duration::from_secs(120)).await;
    }
    let warm = node.node.timings().len();

    let mut total = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let t = w.create_task(&image, &input, &[&w.a]).await;
        let id = t.runs[0].id;
        loop {
            let r = w.run(id).await;
            if r.state.is_final() {
                assert_eq!(r.state, warden_api::RunState::Completed, "{:?}", r.reason);
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let out = w.result(id).await;
        total.push(started.elapsed());
        assert!(out.starts_with(b"env-ok echo:"));
    }
    let timings: Vec<_> = node.node.timings().into_iter().skip(warm).collect();
    let mut to_container: Vec<Duration> = timings.iter().map(|t| t.to_container).collect();
    let mut admission: Vec<Duration> = timings.iter().map(|t| t.admission).collect();
    let mut pin: Vec<Duration> = timings.iter().map(|t| t.pin).collect();

    // The same image run directly, with the same kind of mounts.
    let dir = w.dir.path().join("raw");
    let (input_dir, output_dir) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&input_dir).unwrap();
    std::fs::create_dir_all(&output_dir).unwrap();
    std::fs::write(input_dir.join("input"), serde_json::to_vec(&input).unwrap()).unwrap();
    Command::new("chmod")
        .arg("777")
        .arg(&output_dir)
        .status()
        .unwrap();
    let pinned = format!("{repo}@{digest}");
    let mut raw = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--read-only",
                "--user",
                "65534:65534",
            ])
            .arg("-v")
            .arg(format!("{}:/mnt/input:ro", input_dir.display()))
            .arg("-v")
            .arg(format!("{}:/mnt/output", output_dir.display()))
            .args(["-e", "WARDEN_OUTPUT=/mnt/output/output", &pinned])
            .output()
            .unwrap();
        raw.push(started.elapsed());
        assert!(status.status.success());
    }

    println!("node overhead, image present, {runs} runs:");
    line("received -> container create", &mut to_container);
    line("  of which admission (steps 2-6)", &mut admission);
    line("  of which pin (pull by digest, inspect)", &mut pin);
    line("submission -> result opened at researcher", &mut total);
    line("raw `docker run` of the same image", &mut raw);
    let extra = pct(&mut total, 0.5) - pct(&mut raw, 0.5);
    println!("submission -> result minus raw docker run (p50): {extra:.1} ms");
    node.stop().await;
}
