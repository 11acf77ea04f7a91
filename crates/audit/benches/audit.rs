//! Audit log costs: one append (with and without `fdatasync`, a checkpoint every 100 entries
//! amortised in), and verifying a log of 100,000 entries (plus 1,000 checkpoints).
//!
//! Run: `cargo bench -p warden-audit --bench audit -- --warm-up-time 1 --measurement-time 5`

#![allow(clippy::unwrap_used)] // bench setup on constant inputs

use std::io::Write as _;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use warden_audit::{AuditLog, Chain, Event, Options, Outcome, Record, verify};
use warden_trust::keys::{KeyAlgorithm, SigningKey};

fn record(run: i64) -> Record {
    Record {
        time: OffsetDateTime::now_utc(),
        event: Event::Run,
        run_id: Some(run),
        task_id: Some(run / 3),
        organization: Some("org-a".into()),
        user: Some("alice@example.org".into()),
        collaboration: Some("collab-1".into()),
        function: Some("mean".into()),
        image: "registry.example.org:5000/team/mean:1.0".into(),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
        rule: Some("reviewed-by-store".into()),
        signers: vec![format!("sha256:{}", "cd".repeat(32))],
        input_sha256: Some(format!("sha256:{}", "01".repeat(32))),
        output_sha256: Some(format!("sha256:{}", "02".repeat(32))),
        outcome: Outcome::Completed,
        reason: None,
        by: None,
        approvals: Vec::new(),
    }
}

fn key() -> SigningKey {
    SigningKey::generate(KeyAlgorithm::Ed25519).unwrap()
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    for fsync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open_with(
            &dir.path().join("audit.log"),
            key(),
            Options {
                checkpoint_every: 100,
                fsync,
            },
        )
        .unwrap();
        let rec = record(1);
        let name = if fsync { "with fsync" } else { "without fsync" };
        group.bench_function(name, |b| b.iter(|| log.append(rec.clone()).unwrap()));
    }
    group.finish();
}

fn bench_verify(c: &mut Criterion) {
    const ENTRIES: i64 = 100_000;
    let k = key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut chain = Chain::new();
    for run in 1..=ENTRIES {
        let (line, hash) = chain.entry_line(&record(run)).unwrap();
        out.write_all(&line).unwrap();
        chain.commit(hash, false);
        if run % 100 == 0 {
            let (line, hash) = chain
                .checkpoint_line(&k, OffsetDateTime::now_utc())
                .unwrap();
            out.write_all(&line).unwrap();
            chain.commit(hash, true);
        }
    }
    out.flush().unwrap();
    drop(out);
    let size = std::fs::metadata(&path).unwrap().len();
    let public = k.public_key();
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(size));
    group.bench_function("100k entries + 1k checkpoints", |b| {
        b.iter(|| {
            let r = verify(&path, &public).unwrap();
            assert_eq!(r.entries, ENTRIES as u64);
            assert!(r.is_intact());
            r
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_verify);
criterion_main!(benches);
