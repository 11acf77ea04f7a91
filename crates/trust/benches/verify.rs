//! Verification cost of one cosign signature: base64, signature check over the exact payload,
//! payload parse and the digest and repository checks.
//!
//! Run: `cargo bench -p warden-trust --bench verify -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)] // bench setup on constant inputs

use criterion::{Criterion, criterion_group, criterion_main};
use warden_reference::{Digest, Repository};
use warden_trust::cosign::{self, SignatureCandidate};
use warden_trust::{KeyAlgorithm, SigningKey};

fn bench(c: &mut Criterion) {
    let repository = Repository::parse("registry.example.org:5000/team/average").unwrap();
    let digest = Digest::sha256_of(b"manifest");
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = SigningKey::generate(alg).unwrap();
        let signed = cosign::sign(&key, &repository, &digest, None);
        let candidates = [SignatureCandidate {
            payload: signed.payload,
            signature_b64: signed.signature_b64,
            origin: "bench".into(),
        }];
        let pinned = [key.public_key()];
        let signature = key.sign(&candidates[0].payload);
        c.bench_function(&format!("{alg} signature check alone"), |b| {
            b.iter(|| {
                pinned[0]
                    .verify(std::hint::black_box(&candidates[0].payload), &signature)
                    .unwrap()
            })
        });
        c.bench_function(&format!("verify one {alg} cosign signature"), |b| {
            b.iter(|| {
                let v = cosign::verify(
                    std::hint::black_box(&candidates),
                    &pinned,
                    &repository,
                    &digest,
                );
                assert_eq!(v.verified.len(), 1);
                v
            })
        });
    }
}

/// The reference for Warden's table-based P-256 verifier: `p256`'s own, on the same input.
fn p256_reference(c: &mut Criterion) {
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let payload = b"{\"critical\":{}}";
    let signature: p256::ecdsa::Signature = key.sign(payload);
    let verifying = *key.verifying_key();
    c.bench_function(
        "ecdsa-p256 signature check by the p256 crate (reference)",
        |b| {
            b.iter(|| {
                verifying
                    .verify(std::hint::black_box(payload), &signature)
                    .unwrap()
            })
        },
    );
}

fn parse(c: &mut Criterion) {
    let repository = Repository::parse("registry.example.org:5000/team/average").unwrap();
    let payload = cosign::payload_for(&repository, &Digest::sha256_of(b"manifest"), None);
    c.bench_function("payload parse and checks alone", |b| {
        b.iter(|| cosign::parse_payload(std::hint::black_box(&payload)).unwrap())
    });
}

criterion_group!(benches, bench, p256_reference, parse);
criterion_main!(benches);
