//! CPU time (not wall time) per decision and per policy load with 1,000 rules, for machines shared
//! with other work where wall-clock benches are inflated. Reads the thread's on-CPU nanoseconds
//! from /proc/thread-self/schedstat (Linux).
//!
//! Run: `cargo run --release -p warden-policy --example policy_cpu`

#![allow(clippy::print_stdout, clippy::expect_used)]

#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::hint::black_box;

use common::{DIGEST, no_keys, policy_text};
use warden_policy::{Policy, Request, Requester, decide};
use warden_reference::{Digest, Reference};

fn on_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat is readable")
}

fn measure(label: &str, n: u64, mut f: impl FnMut()) {
    f();
    let (cpu0, wall0) = (on_cpu_ns(), std::time::Instant::now());
    for _ in 0..n {
        f();
    }
    let cpu = (on_cpu_ns() - cpu0) as f64 / n as f64;
    let wall = wall0.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "{label}: {:.2} µs on CPU, {:.2} µs wall",
        cpu / 1e3,
        wall / 1e3
    );
}

fn main() {
    let text = policy_text();
    let policy = Policy::from_toml_str(&text, "bench.toml", no_keys).expect("policy loads");
    let requester = Requester::default()
        .organization("hospital-a")
        .collaboration("cardio")
        .function("partial_mean");
    let signers = BTreeSet::new();
    let digest = Digest::parse(DIGEST).expect("digest");
    for (name, image) in [
        ("regex_permit", "registry.example.org/project250/tool:1.0"),
        ("exact_permit", "registry3.example.org/team598/average:1.0"),
        ("no_rule", "docker.io/library/ubuntu:22.04"),
        ("deny_rule", "registry.example.org/project7/revoked"),
    ] {
        let reference = Reference::parse(image).expect("reference");
        let request = Request {
            reference: &reference,
            digest: Some(&digest),
            signers: &signers,
            requester: &requester,
        };
        measure(&format!("decide, 1000 rules, {name}"), 100_000, || {
            black_box(decide(black_box(&policy), black_box(&request)));
        });
    }
    measure("load and compile 1000 rules", 20, || {
        black_box(Policy::from_toml_str(black_box(&text), "bench.toml", no_keys).expect("loads"));
    });
}
