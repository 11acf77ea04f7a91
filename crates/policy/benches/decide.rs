//! One decision against a 1,000-rule policy (mixed exact and regex rules), and loading that
//! policy. Run: `cargo bench -p warden-policy -- --warm-up-time 1 --measurement-time 3`.

use std::collections::BTreeSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use warden_policy::{KeyLoadError, Policy, Request, Requester, decide, precheck};
use warden_reference::{Digest, Reference};
use warden_trust::PublicKey;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// 600 exact allow rules, 300 regex allow rules, 50 exact and 50 regex deny rules; a third of
/// the rules carry requester conditions and some carry digests.
fn policy_text() -> String {
    let mut s = String::from("version = 1\n");
    for i in 0..600 {
        s.push_str(&format!(
            "[[allow]]\nrepository = \"registry{}.example.org/team{i}/average\"\n",
            i % 7
        ));
        if i % 3 == 0 {
            s.push_str("organizations = [\"hospital-a\", \"hospital-b\"]\nfunctions = [\"partial_mean\"]\n");
        }
        if i % 5 == 0 {
            s.push_str(&format!("digests = [\"{DIGEST}\"]\n"));
        }
    }
    for i in 0..300 {
        s.push_str(&format!(
            "[[allow]]\nrepository_regex = 'registry\\.example\\.org/project{i}/[a-z0-9-]+(/[a-z0-9-]+)?'\n"
        ));
        if i % 3 == 0 {
            s.push_str("collaborations = [\"cardio\"]\n");
        }
    }
    for i in 0..50 {
        s.push_str(&format!(
            "[[deny]]\nrepository = \"registry.example.org/project{i}/revoked\"\n"
        ));
        s.push_str(&format!(
            "[[deny]]\nrepository_regex = '.+/experimental{i}/.+'\n"
        ));
    }
    s
}

fn no_keys(_: &str) -> Result<PublicKey, KeyLoadError> {
    Err(KeyLoadError("no keys in this bench".into()))
}

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
