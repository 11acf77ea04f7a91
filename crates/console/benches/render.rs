//! The console's server-side rendering (maud) of its largest page, the task list: one page of 100
//! tasks (what `/tasks` shows, whatever the number stored), and all 10,000 tasks in one page (what
//! a list without pages would cost); and a result's charts (plotters' SVG backend): an object of 40
//! numbers, an object of 8 arrays of 2,000 numbers, and 8 organizations side by side. The figures
//! are in BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use time::OffsetDateTime;
use warden_api::{Page, Task};
use warden_console::security::Gate;
use warden_console::{App, Sources, pages, researcher};

fn task(id: i64) -> Task {
    Task {
        id,
        collaboration_id: 1,
        name: format!("mean of cohort <{id}> & follow-up"),
        image: format!("registry.example.org/warden/mean@sha256:{:064x}", id),
        organization_id: 1,
        creator_user_id: Some(1),
        creator_username: Some("rita".to_owned()),
        creator_run_id: None,
        parent_task_id: None,
        nonce: Some("n".repeat(43)),
        created_at: OffsetDateTime::UNIX_EPOCH,
        cancelled_at: None,
        cancelled_by: None,
    }
}

fn bench(c: &mut Criterion) {
    let app = App {
        sources: Sources::default(),
        gate: Gate::new("127.0.0.1:4000".parse().unwrap(), "token"),
    };
    let all: Vec<Task> = (1..=10_000).map(task).collect();
    let page = Page {
        items: all[..100].to_vec(),
        next: Some(100),
    };
    let whole = Page {
        items: all.clone(),
        next: None,
    };
    let mut g = c.benchmark_group("console_render");
    g.bench_function("tasks_page_100_of_10000", |b| {
        b.iter(|| {
            let html = pages::frame(
                "Tasks",
                &app,
                None,
                researcher::tasks_body(black_box(&page), None),
            );
            black_box(html.into_string().len())
        })
    });
    g.sample_size(20);
    g.bench_function("tasks_all_10000", |b| {
        b.iter(|| {
            let html = pages::frame(
                "Tasks",
                &app,
                None,
                researcher::tasks_body(black_box(&whole), None),
            );
            black_box(html.into_string().len())
        })
    });
    g.sample_size(50);
    let forty: serde_json::Map<String, serde_json::Value> = (0..40)
        .map(|i| {
            (
                format!("key {i}"),
                serde_json::Value::from(f64::from(i) * 1.5),
            )
        })
        .collect();
    let forty = serde_json::to_vec(&forty).unwrap();
    g.bench_function("result_bars_40", |b| {
        b.iter(|| black_box(pages::result(black_box(&forty)).into_string().len()))
    });
    let lines: serde_json::Map<String, serde_json::Value> = (0..8)
        .map(|s| {
            let points: Vec<f64> = (0..2000).map(|x| f64::from(x * s).sin()).collect();
            (format!("series {s}"), serde_json::json!(points))
        })
        .collect();
    let lines = serde_json::to_vec(&lines).unwrap();
    g.bench_function("result_lines_8x2000", |b| {
        b.iter(|| black_box(pages::result(black_box(&lines)).into_string().len()))
    });
    let orgs: Vec<(String, Vec<u8>)> = (0..8)
        .map(|o| {
            let r = serde_json::json!({"mean": f64::from(o) + 0.5, "n": 100 + o, "sd": 1.5});
            (format!("org-{o}"), serde_json::to_vec(&r).unwrap())
        })
        .collect();
    let orgs: Vec<(&str, &[u8])> = orgs
        .iter()
        .map(|(o, r)| (o.as_str(), r.as_slice()))
        .collect();
    g.bench_function("by_organization_8x3", |b| {
        b.iter(|| black_box(pages::chart_by_organization(black_box(&orgs)).map(|s| s.len())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
