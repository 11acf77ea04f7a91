//! `OutputRules::check_result` on a 64 KiB JSON result with a schema and a `min_count` rule
//! (target: at most 1 ms). Run: `cargo bench -p warden-policy --bench output`.
//!
//! Before criterion's wall-clock figures it prints the on-CPU time per check (read from
//! /proc/thread-self/schedstat on Linux), which other load on a shared machine inflates far less.

// Bench setup is test code: a broken fixture should stop the bench.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use warden_policy::{FileLoadError, KeyLoadError, Policy};
use warden_trust::PublicKey;

const POLICY: &str = r#"version = 1
[[allow]]
repository = "registry.example.org/warden/mean"
[allow.output]
max_bytes = 65536
schema = "schemas/mean.json"
min_count = { paths = ["n", "counts.*", "groups.*.n"], k = 5 }
"#;

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["n", "mean", "counts", "groups"],
  "additionalProperties": false,
  "properties": {
    "n": { "type": "integer", "minimum": 0 },
    "mean": { "type": "number" },
    "counts": { "type": "array", "items": { "type": "integer", "minimum": 0 } },
    "groups": {
      "type": "object",
      "additionalProperties": {
        "type": "object",
        "required": ["n", "mean"],
        "properties": { "n": { "type": "integer" }, "mean": { "type": "number" } }
      }
    }
  }
}"#;

fn no_keys(_: &str) -> Result<PublicKey, KeyLoadError> {
    Err(KeyLoadError("no keys in this bench".into()))
}

/// A result just under 64 KiB: half an array of counts, half an object of groups.
fn result() -> Vec<u8> {
    let mut counts = Vec::new();
    let mut groups = serde_json::Map::new();
    let mut i = 0u64;
    loop {
        counts.push(serde_json::json!(5 + i % 1000));
        groups.insert(
            format!("group-{i}"),
            serde_json::json!({"n": 5 + i % 200, "mean": 0.5 + i as f64 / 7.0}),
        );
        let value =
            serde_json::json!({"n": 123_456, "mean": 41.25, "counts": counts, "groups": groups});
        let bytes = serde_json::to_vec(&value).expect("serialises");
        if bytes.len() > 64 * 1024 - 64 {
            return bytes;
        }
        i += 1;
    }
}

/// The thread's on-CPU nanoseconds so far, if the kernel tells.
fn on_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
}

fn cpu_time(label: &str, n: u32, mut f: impl FnMut()) {
    f();
    let (Some(cpu0), wall0) = (on_cpu_ns(), std::time::Instant::now()) else {
        return;
    };
    for _ in 0..n {
        f();
    }
    if let Some(cpu1) = on_cpu_ns() {
        eprintln!(
            "{label}: {:.1} µs on CPU, {:.1} µs wall (mean of {n})",
            (cpu1 - cpu0) as f64 / f64::from(n) / 1e3,
            wall0.elapsed().as_nanos() as f64 / f64::from(n) / 1e3
        );
    }
}

fn benches(c: &mut Criterion) {
    let policy = Policy::from_toml_str_with_files(POLICY, "bench.toml", no_keys, |file| {
        if file == "schemas/mean.json" {
            Ok(SCHEMA.to_owned())
        } else {
            Err(FileLoadError(format!("no file {file}")))
        }
    })
    .expect("bench policy loads");
    let rules = &policy.allow_rules()[0].output;
    let bytes = result();
    assert!(bytes.len() <= 64 * 1024, "{}", bytes.len());
    assert_eq!(rules.check_result(&bytes), Ok(()));
    let mut no_schema = rules.clone();
    no_schema.schemas.clear();
    cpu_time("check_result, 64 KiB, schema + min_count", 2000, || {
        let _ = black_box(rules.check_result(black_box(&bytes)));
    });
    cpu_time("serde_json parse alone", 2000, || {
        let _ = black_box(serde_json::from_slice::<serde_json::Value>(black_box(
            &bytes,
        )));
    });
    cpu_time("check_result, min_count alone", 2000, || {
        let _ = black_box(no_schema.check_result(black_box(&bytes)));
    });
    let mut group = c.benchmark_group("output");
    group.throughput(criterion::Throughput::Bytes(bytes.len() as u64));
    group.bench_function("check_result_64KiB_schema_min_count", |b| {
        b.iter(|| rules.check_result(black_box(&bytes)))
    });
    // The parts, to see where the time goes: parsing alone, and the checks without the schema.
    group.bench_function("parse_only_64KiB", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&bytes)))
    });
    group.bench_function("check_result_64KiB_min_count_only", |b| {
        b.iter(|| no_schema.check_result(black_box(&bytes)))
    });
    group.finish();
}

criterion_group!(output, benches);
criterion_main!(output);
