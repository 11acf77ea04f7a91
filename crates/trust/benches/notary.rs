//! Verification cost of one Notary Project signature (JWS envelope, ES256 or PS256) with a
//! two-certificate chain (P-256 leaf under a P-384 or a P-256 root; RSA): envelope and header checks, the signature,
//! the payload, both certificates' requirements and signatures, then the trust store and
//! identity match, by the full verification and by the node's path (`TrustStore::verify_envelope`,
//! a pinned root's self-signature skipped). The envelope is made by the independent Python peer
//! (tests/notary_peer.py).
//!
//! Run: `cargo bench -p warden-trust --bench notary -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)] // bench setup on constant inputs

use criterion::{Criterion, criterion_group, criterion_main};
use warden_trust::notary::{self, Identity, TargetDescriptor, TrustStore};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/notary_peer.py");
    let ok = std::process::Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let text = std::fs::read_to_string(dir.path().join("cases.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let target = TargetDescriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
        size: 1234,
    };
    let identity = Identity::parse("x509.subject: CN=Reviewers, O=Hospital A").unwrap();
    for (name, label) in [
        (
            "es256-two",
            "ES256, two-certificate chain (P-256 leaf, P-384 root)",
        ),
        (
            "es256-two-p256",
            "ES256, two-certificate chain (P-256 leaf, P-256 root)",
        ),
        (
            "ps256-two",
            "PS256, two-certificate chain (RSA 2048 leaf, RSA 3072 root)",
        ),
    ] {
        let case = cases.iter().find(|c| c["name"] == name).unwrap();
        let envelope = case["envelope"].as_str().unwrap().as_bytes().to_vec();
        let store = TrustStore::from_pem(case["trust_store"].as_str().unwrap()).unwrap();
        let now = time::OffsetDateTime::now_utc();
        // Every certificate's signature checked (`notary::verify_envelope`).
        c.bench_function(&format!("verify one Notary signature, {label}"), |b| {
            b.iter(|| {
                let v =
                    notary::verify_envelope(std::hint::black_box(&envelope), &target, now).unwrap();
                assert!(store.anchors(&v));
                std::hint::black_box(identity.matches(&v.subject))
            })
        });
        // The node's path: the pinned root's self-signature skipped, pinned P-256 keys with
        // tables (built by the first iteration, as a node builds them on first use).
        c.bench_function(
            &format!("verify one Notary signature, pinned root, {label}"),
            |b| {
                b.iter(|| {
                    let v = store
                        .verify_envelope(std::hint::black_box(&envelope), &target, now)
                        .unwrap();
                    assert!(store.anchors(&v));
                    std::hint::black_box(identity.matches(&v.subject))
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
