//! Verifying one signed provenance attestation (DSSE, P-256) as the node's `reproduced_by` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use warden_build::compile::{Kind, Toolchain};
use warden_build::image::{File, ImageSpec, assemble};
use warden_build::{Build, provenance};
use warden_reference::Repository;
use warden_trust::SigningKey;

fn bench(c: &mut Criterion) {
    let spec = ImageSpec {
        files: vec![File {
            path: "mean".into(),
            bytes: vec![7; 4096],
            mode: 0o755,
        }],
        entrypoint: vec!["/mean".into()],
        epoch: 1_700_000_000,
        source_uri: "https://git.example/warden".into(),
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        path: "algorithms/mean".into(),
    };
    let build = Build {
        image: assemble(&spec),
        commit: spec.revision.clone(),
        epoch: spec.epoch,
        source_uri: spec.source_uri.clone(),
        path: spec.path.clone(),
        kind: Kind::Rust {
            package: "warden-algorithm-mean".into(),
            bin: "mean".into(),
        },
        toolchain: Toolchain {
            rustc: Some("rustc 1.95.0".into()),
            cargo: Some("cargo 1.95.0".into()),
            cc: "cc (Debian 14.2.0) 14.2.0".into(),
            libc: "glibc 2.41".into(),
        },
        lock_digest: None,
        flags: vec![],
    };
    let key = SigningKey::generate(warden_trust::KeyAlgorithm::EcdsaP256).unwrap();
    let repo = Repository::parse("registry.example/warden/mean").unwrap();
    let envelope = provenance::sign(&build, &repo, "https://builder.example", &key);
    let pinned = [key.public_key()];
    c.bench_function("provenance_verify_one_p256", |b| {
        b.iter(|| provenance::verify(&envelope, &pinned, &build.image.digest).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
