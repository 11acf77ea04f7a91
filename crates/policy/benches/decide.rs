//! One decision against a 1,000-rule policy (mixed exact and regex rules), and loading that
//! policy. Run: `cargo bench -p warden-policy -- --warm-up-time 1 --measurement-time 3`.

// Bench setup is test code: a broken fixture should stop the bench.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use warden_policy::{Policy, Request, Requester, decide, precheck};
use warden_reference::{Digest, Reference};

#[path = "common/mod.rs"]
mod common;

use common::{DIGEST, no_keys, policy_text};

fn benches(c: &mut Criterion) {
    let text = policy_text();
    let policy = Policy::from_toml_str(&text, "bench.toml", no_keys).expect("bench policy loads");
    assert_eq!(policy.allow_rules().len() + policy.deny_rules().len(), 1000);
    let requester = Requester::default()
        .organization("hospital-a")
        .collaboration("cardio")
        .function("partial_mean");
    let signers = BTreeSet::new();
    let digest = Digest::parse(DIGEST).expect("digest");

    let cases = [
        ("regex_permit", "registry.example.org/project250/tool:1.0"),
        ("exact_permit", "registry3.example.org/team598/average:1.0"),
        ("no_rule", "docker.io/library/ubuntu:22.04"),
        ("deny_rule", "registry.example.org/project7/revoked"),
    ];
    for (name, image) in cases {
        let reference = Reference::parse(image).expect("reference");
        let request = Request {
            reference: &reference,
            digest: Some(&digest),
            signers: &signers,
            requester: &requester,
        };
        c.bench_function(&format!("decide_1000_rules/{name}"), |b| {
            b.iter(|| decide(black_box(&policy), black_box(&request)))
        });
    }
    let reference = Reference::parse("registry.example.org/project250/tool").expect("reference");
    c.bench_function("precheck_1000_rules", |b| {
        b.iter(|| {
            precheck(
                black_box(&policy),
                black_box(&reference),
                black_box(&requester),
            )
        })
    });
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("from_toml_str_1000_rules", |b| {
        b.iter(|| Policy::from_toml_str(black_box(&text), "bench.toml", no_keys))
    });
    group.finish();
}

criterion_group!(policy_benches, benches);
criterion_main!(policy_benches);
