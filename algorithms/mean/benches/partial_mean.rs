//! Throughput of `partial_mean`'s CSV scan and of `count`, on an in-memory table of 100,000 rows
//! (three columns, one cell in ten not numeric).
//!
//! Run: `cargo bench -p warden-algorithm-mean --bench partial_mean -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)] // bench setup on constant inputs

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_algorithm_mean::table::{column_stats, count_rows};

const ROWS: usize = 100_000;

fn table() -> Vec<u8> {
    let mut out = String::from("id,name,age\n");
    for i in 0..ROWS {
        let age = if i % 10 == 0 {
            "n/a".to_owned()
        } else {
            format!("{}.{}", 18 + i % 70, i % 10)
        };
        out.push_str(&format!("{i},\"person {i}\",{age}\n"));
    }
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let csv = table();
    let mut group = c.benchmark_group("csv 100k rows");
    group.throughput(Throughput::Bytes(csv.len() as u64));
    group.bench_function("partial_mean", |b| {
        b.iter(|| {
            let s = column_stats(std::hint::black_box(&csv[..]), Path::new("t"), "age").unwrap();
            assert_eq!(s.count + s.skipped, ROWS as u64);
            s
        })
    });
    group.bench_function("count", |b| {
        b.iter(|| count_rows(std::hint::black_box(&csv[..]), Path::new("t")).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
