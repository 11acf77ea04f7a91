//! `warden-store-bench`: the store's throughput, measured over real HTTP on loopback and on the
//! real database (SQLite with `synchronous = FULL` by default, or the PostgreSQL URL given with
//! `--database`).
//!
//! 1. submit and approve: `--versions N` submissions by digest, then N approvals (each a DSSE
//!    envelope signed by the reviewer in this process and verified by the store), `--clients C`
//!    at a time; every one is a committed transaction with its log leaf;
//! 2. log append: 1 KiB leaves written with their hashes through the store's storage layer,
//!    in transactions of 1 and of `--batch` leaves (each commit durable), then added to the
//!    in-memory tree.
//!
//! `cargo run --release -p warden-store --features bench --bin warden-store-bench`

#![allow(clippy::print_stdout)] // the report is the output

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use time::OffsetDateTime;
use warden_store::config::{AuthConfig, ReviewConfig};
use warden_store::service::{Resolver, Service};
use warden_store::storage::{ConnectOptions, Db, NewLeaf};
use warden_trust::review::{Decision, Review, ReviewPredicate};
use warden_trust::{KeyAlgorithm, SigningKey};

const PW: &str = "a long enough password";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[derive(Debug)]
struct NoRegistry;

#[async_trait::async_trait]
impl Resolver for NoRegistry {
    async fn resolve(
        &self,
        _: &warden_reference::Reference,
    ) -> Result<warden_reference::Digest, String> {
        Err("the bench submits by digest".into())
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Result<Value> {
    let mut r = http.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await?;
    let st = resp.status();
    let v: Value = resp.json().await?;
    anyhow::ensure!(st.is_success(), "{path}: {st} {v}");
    Ok(v)
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = arg("--versions", "1000").parse()?;
    let clients: usize = arg("--clients", "8").parse()?;
    let batch: usize = arg("--batch", "64").parse()?;
    let leaves: usize = arg("--leaves", "5000").parse()?;
    let dir = tempfile::tempdir()?;
    let url = arg(
        "--database",
        &format!("sqlite://{}", dir.path().join("bench.db").display()),
    );
    let opts = ConnectOptions {
        pg_schema: url
            .starts_with("postgres")
            .then(|| format!("bench_{}", std::process::id())),
        ..ConnectOptions::default()
    };
    let db = Db::connect(&url, dir.path(), &opts).await?;
    let key = SigningKey::generate(KeyAlgorithm::Ed25519)?;
    let rules = ReviewConfig {
        min_approvals: 1,
        min_organizations: 1,
        ..ReviewConfig::default()
    };
    let auth = AuthConfig {
        rate_limit_exempt: vec!["127.0.0.1".parse()?],
        ..AuthConfig::default()
    };
    let service = Service::new(db.clone(), "bench", key, rules, auth, Box::new(NoRegistry)).await?;
    warden_store::bootstrap(&service, Some(&dir.path().join("admin.pw"))).await?;
    let running = warden_store::serve("127.0.0.1:0".parse()?, service, 1 << 20).await?;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let admin_pw = std::fs::read_to_string(dir.path().join("admin.pw"))?;
    let admin = call(
        &http,
        &base,
        "/api/auth/login",
        None,
        json!({"username": "admin", "password": admin_pw.trim()}),
    )
    .await?;
    let admin = admin["access_token"].as_str().context("token")?.to_owned();
    for org in ["a", "b"] {
        call(
            &http,
            &base,
            "/api/organizations",
            Some(&admin),
            json!({"name": org}),
        )
        .await?;
    }
    call(
        &http,
        &base,
        "/api/accounts",
        Some(&admin),
        json!({"username": "dev", "password": PW, "organization": "a", "roles": ["developer"]}),
    )
    .await?;
    call(
        &http,
        &base,
        "/api/accounts",
        Some(&admin),
        json!({"username": "rev", "password": PW, "organization": "b", "roles": ["reviewer"]}),
    )
    .await?;
    let dev = call(
        &http,
        &base,
        "/api/auth/login",
        None,
        json!({"username": "dev", "password": PW}),
    )
    .await?["access_token"]
        .as_str()
        .context("t")?
        .to_owned();
    let rev = call(
        &http,
        &base,
        "/api/auth/login",
        None,
        json!({"username": "rev", "password": PW}),
    )
    .await?["access_token"]
        .as_str()
        .context("t")?
        .to_owned();
    let rkey = Arc::new(SigningKey::generate(KeyAlgorithm::Ed25519)?);
    http.put(format!("{base}/api/me/key"))
        .bearer_auth(&rev)
        .json(&json!({"public_key": rkey.public_key().to_pem()}))
        .send()
        .await?
        .error_for_status()?;

    // 1. Submissions, C at a time.
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(clients) {
        let mut tasks = Vec::new();
        for i in chunk {
            let (http, base, dev) = (http.clone(), base.clone(), dev.clone());
            let i = *i;
            tasks.push(tokio::spawn(async move {
                let d = format!("sha256:{:064x}", i + 1);
                call(&http, &base, "/api/versions", Some(&dev), json!({
                    "algorithm": format!("alg{i}"), "source": "https://git.example/bench", "commit": COMMIT,
                    "image": format!("registry.example/bench/alg@{d}"),
                    "functions": [{"name": "central", "kind": "central"}, {"name": "partial", "kind": "partial"}]})).await
            }));
        }
        for t in tasks {
            ids.push(t.await??);
        }
    }
    let submit = t0.elapsed();
    // Assignment is not measured (it is not a logged decision).
    for v in &ids {
        let id = v["id"].as_i64().context("id")?;
        call(
            &http,
            &base,
            &format!("/api/versions/{id}/assign"),
            Some(&admin),
            json!({"reviewer": "rev"}),
        )
        .await?;
    }
    let t1 = Instant::now();
    for chunk in ids.chunks(clients) {
        let mut tasks = Vec::new();
        for v in chunk {
            let (http, base, rev, rkey, v) = (
                http.clone(),
                base.clone(),
                rev.clone(),
                rkey.clone(),
                v.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let now = OffsetDateTime::now_utc().replace_nanosecond(0)?;
                let review = Review {
                    repository: v["repository"].as_str().context("r")?.parse()?,
                    digest: v["digest"].as_str().context("d")?.parse()?,
                    predicate: ReviewPredicate {
                        store: "bench".into(),
                        algorithm: v["algorithm"].as_str().context("a")?.into(),
                        version: v["version"].as_str().context("v")?.into(),
                        decision: Decision::Approve,
                        reviewer: "rev".into(),
                        organization: "b".into(),
                        source_repository: "https://git.example/bench".into(),
                        source_commit: COMMIT.into(),
                        functions: vec!["central".into(), "partial".into()],
                        time: now,
                        comment: None,
                        rebuilt: None,
                    },
                };
                let env = review.sign(&rkey)?.to_json();
                let id = v["id"].as_i64().context("id")?;
                let out = call(
                    &http,
                    &base,
                    &format!("/api/versions/{id}/reviews"),
                    Some(&rev),
                    json!({"envelope": STANDARD.encode(env)}),
                )
                .await?;
                anyhow::ensure!(out["state"] == "approved", "not approved: {out}");
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
    }
    let approve = t1.elapsed();
    running.stop().await?;
    println!(
        "database: {}",
        if url.starts_with("postgres") {
            "postgresql"
        } else {
            "sqlite (synchronous = FULL)"
        }
    );
    println!(
        "submit:  {n} versions over HTTP, {clients} clients: {:.0} per second ({:.2} ms each)",
        n as f64 / submit.as_secs_f64(),
        submit.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "approve: {n} signed approvals over HTTP, {clients} clients: {:.0} per second ({:.2} ms each)",
        n as f64 / approve.as_secs_f64(),
        approve.as_secs_f64() * 1000.0 / n as f64
    );

    // 2. Log append through the storage layer: 1 KiB leaves, durable commits.
    let db = Db::connect(&url, dir.path(), &opts).await?;
    let mut tx = db.read().await?;
    let mut next = tx.log_size().await?;
    drop(tx);
    let leaf = vec![b'x'; 1024];
    let mut tree = warden_tlog::MemoryTree::new();
    for b in [1usize, batch] {
        let t = Instant::now();
        let mut done = 0;
        while done < leaves {
            let mut tx = db.write().await?;
            let mut hashes = Vec::with_capacity(b);
            for _ in 0..b.min(leaves - done) {
                let h = warden_tlog::leaf_hash(&leaf);
                tx.append_leaf(&NewLeaf {
                    idx: next,
                    kind: "submission",
                    version_id: 1,
                    digest: "sha256:00",
                    leaf: &leaf,
                    leaf_hash: &h,
                    now: 0,
                })
                .await?;
                hashes.push(h);
                next += 1;
                done += 1;
            }
            tx.commit().await?;
            for h in hashes {
                tree.append_leaf_hash(h);
            }
        }
        let e = t.elapsed();
        println!(
            "log append: {leaves} leaves of 1 KiB, {b} per durable commit: {:.0} per second",
            leaves as f64 / e.as_secs_f64()
        );
    }
    db.close().await;
    Ok(())
}
