//! CPU time (not wall time) per cosign signature verification, for machines shared with other
//! work where criterion's wall-clock figures are inflated by waiting for a core. Reads the
//! thread's on-CPU nanoseconds from /proc/thread-self/schedstat (Linux).
//!
//! Run: `cargo run --release -p warden-trust --example verify_cpu`

#![allow(clippy::unwrap_used, clippy::print_stdout)] // bench binary on constant inputs

use warden_reference::{Digest, Repository};
use warden_trust::cosign::{self, SignatureCandidate};
use warden_trust::{KeyAlgorithm, SigningKey};

fn on_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

fn main() {
    let repository = Repository::parse("registry.example.org:5000/team/average").unwrap();
    let digest = Digest::sha256_of(b"manifest");
    const N: u64 = 2000;
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let key = SigningKey::generate(alg).unwrap();
        let signed = cosign::sign(&key, &repository, &digest, None);
        let candidates = [SignatureCandidate {
            payload: signed.payload,
            signature_b64: signed.signature_b64,
            origin: "bench".into(),
        }];
        let pinned = [key.public_key()];
        let wall0 = std::time::Instant::now();
        assert_eq!(
            cosign::verify(&candidates, &pinned, &repository, &digest)
                .verified
                .len(),
            1
        );
        println!(
            "first {alg} verification in the process, with a newly read key: {:.1} µs wall",
            wall0.elapsed().as_nanos() as f64 / 1e3
        );
        for _ in 0..100 {
            std::hint::black_box(cosign::verify(&candidates, &pinned, &repository, &digest));
        }
        let (cpu0, wall0) = (on_cpu_ns(), std::time::Instant::now());
        for _ in 0..N {
            let v = cosign::verify(
                std::hint::black_box(&candidates),
                &pinned,
                &repository,
                &digest,
            );
            assert_eq!(v.verified.len(), 1);
        }
        let cpu = (on_cpu_ns() - cpu0) / N;
        let wall = wall0.elapsed().as_nanos() as u64 / N;
        println!(
            "verify one {alg} cosign signature: {:.1} µs on CPU, {:.1} µs wall",
            cpu as f64 / 1e3,
            wall as f64 / 1e3
        );
    }
}
