//! The console's server-side rendering (maud) of its largest page, the task list: one page of 100
//! tasks (what `/tasks` shows, whatever the number stored), and all 10,000 tasks in one page (what
//! a list without pages would cost); and a result's charts (plotters' SVG backend): an object of 40
//! numbers, an object of 8 arrays of 2,000 numbers, and 8 organizations side by side; the
//! administrator's `/admin/algorithms` of a store listing 20 algorithms of 5 versions with 3
//! reviews each (comments holding HTML), and the login form of a console with a password. The
//! figures are in BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use time::OffsetDateTime;
use warden_api::store::{Algorithm, ReviewRecord, Version, VersionState};
use warden_api::{Page, Task};
use warden_console::security::Gate;
use warden_console::{App, Sources, pages, researcher, store};

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

fn algorithm(a: usize) -> Algorithm {
    let states = [
        VersionState::Approved,
        VersionState::Rejected,
        VersionState::Submitted,
        VersionState::UnderReview,
        VersionState::Replaced,
    ];
    Algorithm {
        name: format!("mean-{a}"),
        description: format!("The mean of a column <{a}> & its standard deviation."),
        source: format!("https://git.example.org/algorithms/mean-{a}"),
        organization: "hospital-a".to_owned(),
        versions: (0..5)
            .map(|v| Version {
                id: (a * 5 + v) as i64,
                algorithm: format!("mean-{a}"),
                version: format!("1.{v}"),
                repository: format!("registry.example.org/warden/mean-{a}"),
                digest: format!("sha256:{:064x}", a * 5 + v),
                tag: Some(format!("1.{v}")),
                commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
                source: format!("https://git.example.org/algorithms/mean-{a}"),
                functions: Vec::new(),
                state: states[v],
                submitter: "dev".to_owned(),
                organization: "hospital-a".to_owned(),
                assigned: vec!["rev-a".to_owned(), "rev-b".to_owned(), "rev-c".to_owned()],
                reviews: (0..3)
                    .map(|r| ReviewRecord {
                        reviewer: format!("rev-{r}"),
                        organization: format!("org-{r}"),
                        decision: if r == 1 { "reject" } else { "approve" }.to_owned(),
                        comment: Some(format!("<script>alert({r})</script> read line {v}")),
                        leaf_index: (a * 15 + v * 3 + r) as u64,
                    })
                    .collect(),
                reason: (v == 4).then(|| "replaced by 1.5".to_owned()),
                leaf_index: (a * 5 + v) as u64,
            })
            .collect(),
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
    let algorithms: Vec<Algorithm> = (0..20).map(algorithm).collect();
    g.bench_function("admin_algorithms_20x5", |b| {
        b.iter(|| {
            let html = pages::frame(
                "Algorithms",
                &app,
                None,
                store::body("community", black_box(&algorithms)),
            );
            black_box(html.into_string().len())
        })
    });
    g.bench_function("login_form", |b| {
        b.iter(|| {
            black_box(
                pages::password_form(black_box(&"ab".repeat(32)), Some("wrong password"))
                    .into_string()
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
