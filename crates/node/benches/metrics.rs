//! What one scrape of `[metrics] listen` costs the node: the text rendered from the counters and
//! the histogram, the spool's size walked and its run records read (as `Node::render_metrics`
//! does), over a spool of 1,000 finished runs each with a record and a 4 KiB sealed result.
//! `cargo bench -p warden-node --bench metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use warden_node::metrics::{Gauges, Metrics, dir_bytes};
use warden_node::spool::{Phase, RunRecord, Spool};

const RUNS: i64 = 1_000;

fn scrape(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("spool")).unwrap();
    for run in 1..=RUNS {
        let mut record = RunRecord::received(run, run, 1, 2, "registry.example/team/mean:v1");
        record.phase = Phase::Finished;
        spool.save(&record).unwrap();
        spool.put_result(run, &[7u8; 4096]).unwrap();
    }
    let metrics = Metrics::default();
    for ms in 0..10_000u64 {
        metrics.observe_admission(Duration::from_micros(ms * 137));
    }
    let mut group = c.benchmark_group("metrics");
    group.bench_function("render", |b| {
        b.iter(|| {
            black_box(metrics.render(Gauges {
                queued: 3,
                in_flight: 2,
                spool_bytes: 1 << 20,
                spool_runs: 1_000,
            }))
        })
    });
    group.sample_size(20);
    group.bench_function("scrape_1000_runs", |b| {
        b.iter(|| {
            let bytes = dir_bytes(spool.root());
            let runs = spool.records().unwrap().len() as u64;
            black_box(metrics.render(Gauges {
                queued: 0,
                in_flight: 0,
                spool_bytes: bytes,
                spool_runs: runs,
            }))
        })
    });
    group.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
