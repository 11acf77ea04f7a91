//! Cost of sealing and opening one message of 1 KiB and 1 MiB (HPKE base mode, X25519,
//! HKDF-SHA256, ChaCha20-Poly1305).
//!
//! Run: `cargo bench -p warden-seal --bench seal -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)] // bench setup on constant inputs

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warden_seal::{SecretKey, open, seal};

const CONTEXT: &[u8] = b"warden/input/v1|collab=3|org=7";

fn bench(c: &mut Criterion) {
    let sk = SecretKey::generate();
    let pk = sk.public_key();
    let mut group = c.benchmark_group("seal+open");
    for (name, size) in [("1 KiB", 1024usize), ("1 MiB", 1024 * 1024)] {
        let plaintext = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &plaintext, |b, p| {
            b.iter(|| {
                let sealed = seal(&pk, CONTEXT, std::hint::black_box(p)).unwrap();
                let opened = open(&sk, CONTEXT, &sealed).unwrap();
                assert_eq!(opened.len(), p.len());
                opened
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
