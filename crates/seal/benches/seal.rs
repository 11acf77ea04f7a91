//! Cost of sealing and opening: version 1 (HPKE base mode, no binding) against version 2 (auth
//! mode, bound and authenticated), for a 1 KiB input and a 1 MiB result. Version 2's input side
//! also proves the researcher's certificate, as a node does for every run.
//!
//! Run: `cargo bench -p warden-seal --bench seal -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)] // bench setup on constant inputs

mod fixture;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warden_seal::{Kind, open, open_input, open_result, seal, seal_input, seal_result};

const CONTEXT: &[u8] = b"warden/input/v1|collab=3|org=7";

fn bench(c: &mut Criterion) {
    let fixture::Fixture {
        node,
        researcher,
        sender,
        trusted,
        input: ib,
        result: rb,
    } = fixture::fixture();
    let mut group = c.benchmark_group("seal+open");
    for (name, size) in [("1 KiB", 1024usize), ("1 MiB", 1024 * 1024)] {
        let plaintext = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("v1", name), &plaintext, |b, p| {
            b.iter(|| {
                let sealed = seal(&node.public_key(), CONTEXT, std::hint::black_box(p)).unwrap();
                open(&node, CONTEXT, &sealed).unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("v2 input", name), &plaintext, |b, p| {
            b.iter(|| {
                let sealed = seal_input(
                    &researcher,
                    &sender,
                    &node.public_key(),
                    &ib,
                    std::hint::black_box(p),
                )
                .unwrap();
                let opened = open_input(&node, &sealed).unwrap();
                opened.prove(&trusted, 100).unwrap();
                opened
            })
        });
        group.bench_with_input(BenchmarkId::new("v2 result", name), &plaintext, |b, p| {
            b.iter(|| {
                let sealed = seal_result(
                    &node,
                    Kind::Result,
                    &researcher.public_key(),
                    &rb,
                    std::hint::black_box(p),
                )
                .unwrap();
                open_result(&researcher, &node.public_key(), Kind::Result, &sealed).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
