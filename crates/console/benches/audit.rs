//! The data owner's audit pages over a real audit log of 10,000 entries (written by
//! `warden_audit::AuditLog`, checkpoints every 100): what the node does for one page (read the
//! file, find the newest matching records: `warden_node::inspect::audit_page`) plus the
//! console's rendering of the page (maud), for the first page unfiltered, a filter by event
//! kind, a filter that matches nothing (the whole log scanned), and the chain's verification
//! (`warden_node::inspect::verification`, `warden_audit::verify_bytes`). The local socket's
//! HTTP hop is not included. The figures are in BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use time::OffsetDateTime;
use warden_audit::{AuditLog, Event, Options, Outcome, Record};
use warden_console::records::{self, AuditForm};
use warden_console::security::Gate;
use warden_console::{App, Sources, pages};
use warden_node::inspect::{AuditFilter, AuditQuery, audit_page, verification};
use warden_trust::{KeyAlgorithm, SigningKey};

const ENTRIES: i64 = 10_000;

fn record(i: i64) -> Record {
    let (event, outcome, reason) = match i % 4 {
        0 => (Event::Decision, Outcome::Admitted, None),
        1 => (
            Event::Decision,
            Outcome::Rejected,
            Some("denied by policy: denied by deny[1] (line 8) (precheck)".to_owned()),
        ),
        2 => (
            Event::Logs,
            Outcome::Withheld,
            Some("logs = withhold".to_owned()),
        ),
        _ => (Event::Run, Outcome::Completed, None),
    };
    Record {
        time: OffsetDateTime::now_utc(),
        event,
        run_id: Some(i),
        task_id: Some(i),
        organization: Some("hospital-a".to_owned()),
        user: Some("rita".to_owned()),
        collaboration: Some("study".to_owned()),
        function: Some("mean".to_owned()),
        image: "registry.example.org/warden/mean:1.0".to_owned(),
        digest: Some(format!("sha256:{i:064x}")),
        rule: Some("allow[1]".to_owned()),
        signers: vec![format!("sha256:{:064x}", 7)],
        input_sha256: Some(format!("sha256:{i:064x}")),
        output_sha256: None,
        outcome,
        reason,
        by: None,
        approvals: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let signer = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let key = signer.public_key();
    let mut log = AuditLog::open_with(
        &path,
        signer,
        Options {
            checkpoint_every: 100,
            fsync: false,
        },
    )
    .unwrap();
    for i in 1..=ENTRIES {
        log.append(record(i)).unwrap();
    }
    log.close().unwrap();
    let app = App {
        sources: Sources::default(),
        gate: Gate::new("127.0.0.1:4000".parse().unwrap(), "token"),
    };
    let page = |q: AuditQuery, form: &AuditForm| {
        let bytes = std::fs::read(&path).unwrap();
        let p = audit_page(&bytes, &AuditFilter::new(&q).unwrap()).unwrap();
        pages::frame("Audit log", &app, None, records::audit_body(&p, form))
            .into_string()
            .len()
    };
    let mut g = c.benchmark_group("audit_page_10000_entries");
    g.bench_function("first_page", |b| {
        b.iter(|| black_box(page(AuditQuery::default(), &AuditForm::default())))
    });
    let kind = AuditQuery {
        kind: Some("decision".to_owned()),
        limit: Some(records::PAGE),
        ..AuditQuery::default()
    };
    g.bench_function("kind_decision", |b| {
        b.iter(|| black_box(page(kind.clone(), &AuditForm::default())))
    });
    let none = AuditQuery {
        kind: Some("refuse".to_owned()),
        ..AuditQuery::default()
    };
    g.bench_function("no_match_whole_log", |b| {
        b.iter(|| black_box(page(none.clone(), &AuditForm::default())))
    });
    g.sample_size(20);
    g.bench_function("verify", |b| {
        b.iter(|| {
            let bytes = std::fs::read(&path).unwrap();
            let v = verification("audit.log", &bytes, &key);
            assert_eq!(v.status, "intact");
            let html = pages::frame(
                "Audit log verification",
                &app,
                None,
                records::verify_body(&v),
            );
            black_box(html.into_string().len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
