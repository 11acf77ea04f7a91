//! The store over real HTTP (axum on a loopback port), on SQLite or, when
//! `WARDEN_TEST_DATABASE_URL` names one, on PostgreSQL (a fresh schema per test): the state
//! machine and the review rules, self-review, forged envelopes, permissions over HTTP, and the
//! log (every decision a leaf, proofs that verify, the leaf of each decision in the database).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use warden_api::store as wire;
use warden_reference::{Digest, Repository};
use warden_store::config::{AuthConfig, Config, ReviewConfig};
use warden_store::service::{Resolver, Service};
use warden_store::storage::{ConnectOptions, Db};
use warden_tlog::{Checkpoint, NoteVerifier, leaf_hash, open_checkpoint};
use warden_trust::review::{Decision, Review, ReviewPredicate};
use warden_trust::{KeyAlgorithm, SigningKey};

const PW: &str = "a long enough password";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const SOURCE: &str = "https://git.example/team/mean";
const REPO: &str = "registry.example/team/mean";

fn digest(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

#[derive(Debug)]
struct NoRegistry;

#[async_trait::async_trait]
impl Resolver for NoRegistry {
    async fn resolve(&self, r: &warden_reference::Reference) -> Result<Digest, String> {
        Err(format!("this test has no registry for {r}"))
    }
}

struct Store {
    base: String,
    http: reqwest::Client,
    key: SigningKey,
    _dir: TempDir,
    db_path: std::path::PathBuf,
    running: Option<warden_store::RunningStore>,
}

async fn db_for(dir: &TempDir) -> (String, ConnectOptions) {
    match std::env::var("WARDEN_TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let schema = format!("s_{}", uuid_like());
            (
                url,
                ConnectOptions {
                    max_connections: 8,
                    pg_schema: Some(schema),
                    ..Default::default()
                },
            )
        }
        _ => (
            format!("sqlite://{}", dir.path().join("store.db").display()),
            ConnectOptions::default(),
        ),
    }
}

fn uuid_like() -> String {
    warden_accounts::token::random_secret()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect::<String>()
        .to_lowercase()
}

async fn start(rules: ReviewConfig) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let (url, opts) = db_for(&dir).await;
    let db = Db::connect(&url, dir.path(), &opts).await.unwrap();
    let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let key2 = SigningKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
    let auth = AuthConfig {
        rate_limit_exempt: vec!["127.0.0.1".parse().unwrap()],
        ..AuthConfig::default()
    };
    let service = Service::new(db, "community", key2, rules, auth, Box::new(NoRegistry))
        .await
        .unwrap();
    warden_store::bootstrap(&service, Some(&dir.path().join("admin.pw")))
        .await
        .unwrap();
    let running = warden_store::serve("127.0.0.1:0".parse().unwrap(), service, 1 << 20)
        .await
        .unwrap();
    let _ = Config::parse; // the configuration is tested in config.rs and the CLI tests
    Store {
        base: format!("http://{}", running.addr),
        http: reqwest::Client::new(),
        key,
        db_path: dir.path().join("store.db"),
        _dir: dir,
        running: Some(running),
    }
}

struct User {
    token: String,
    name: String,
    org: String,
    key: SigningKey,
}

impl Store {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let mut r = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url),
            _ => self.http.post(url),
        };
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (s, v) = self.call(method, path, token, body).await;
        assert!(s.is_success(), "{method} {path}: {s} {v}");
        v
    }

    async fn admin(&self) -> String {
        let pw = std::fs::read_to_string(self._dir.path().join("admin.pw")).unwrap();
        let v = self
            .ok(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"username": "admin", "password": pw.trim()})),
            )
            .await;
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// Create (if needed) the organization, the account with `roles`, log it in, register a key.
    async fn user(&self, admin: &str, name: &str, org: &str, roles: &[&str]) -> User {
        let _ = self
            .call(
                "POST",
                "/api/organizations",
                Some(admin),
                Some(json!({"name": org})),
            )
            .await;
        self.ok(
            "POST",
            "/api/accounts",
            Some(admin),
            Some(json!({"username": name, "password": PW, "organization": org, "roles": roles})),
        )
        .await;
        let v = self
            .ok(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"username": name, "password": PW})),
            )
            .await;
        let token = v["access_token"].as_str().unwrap().to_owned();
        let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        self.ok(
            "PUT",
            "/api/me/key",
            Some(&token),
            Some(json!({"public_key": key.public_key().to_pem()})),
        )
        .await;
        User {
            token,
            name: name.into(),
            org: org.into(),
            key,
        }
    }

    async fn submit(&self, dev: &User, algorithm: &str, d: &str) -> Value {
        self.ok(
            "POST",
            "/api/versions",
            Some(&dev.token),
            Some(json!({
                "algorithm": algorithm, "source": SOURCE, "image": format!("{REPO}@{d}"),
                "commit": COMMIT,
                "functions": [{"name": "central_mean", "kind": "central", "arguments": [{"name": "column", "type": "string", "required": true}]},
                              {"name": "partial_mean", "kind": "partial"}],
            })),
        )
        .await
    }

    async fn assign(&self, admin: &str, id: i64, reviewer: &str) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/api/versions/{id}/assign"),
            Some(admin),
            Some(json!({"reviewer": reviewer})),
        )
        .await
    }

    async fn review(&self, who: &User, env: &[u8], id: i64) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/api/versions/{id}/reviews"),
            Some(&who.token),
            Some(json!({"envelope": STANDARD.encode(env)})),
        )
        .await
    }

    async fn checkpoint(&self) -> Checkpoint {
        let text = self
            .http
            .get(format!("{}/api/log/checkpoint", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let info = self.ok("GET", "/api/store", None, None).await;
        let v = NoteVerifier::parse(info["note_key"].as_str().unwrap()).unwrap();
        open_checkpoint(text.as_bytes(), &v).unwrap()
    }
}

/// The review `who` signs of version `v` (as the store shows it), with edits.
fn signed(who: &User, v: &Value, decision: Decision, edit: impl FnOnce(&mut Review)) -> Vec<u8> {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let functions = if decision == Decision::Approve {
        v["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    } else {
        vec![]
    };
    let mut r = Review {
        repository: v["repository"]
            .as_str()
            .unwrap()
            .parse::<Repository>()
            .unwrap(),
        digest: v["digest"].as_str().unwrap().parse().unwrap(),
        predicate: ReviewPredicate {
            store: "community".into(),
            algorithm: v["algorithm"].as_str().unwrap().into(),
            version: v["version"].as_str().unwrap().into(),
            decision,
            reviewer: who.name.clone(),
            organization: who.org.clone(),
            source_repository: v["source"].as_str().unwrap().into(),
            source_commit: v["commit"].as_str().unwrap().into(),
            functions,
            time: now,
            comment: None,
            rebuilt: None,
        },
    };
    edit(&mut r);
    r.sign(&who.key).unwrap().to_json()
}

fn two_rules() -> ReviewConfig {
    ReviewConfig::default()
}

#[tokio::test]
async fn approval_needs_two_reviewers_of_two_other_organizations_and_each_decision_is_a_leaf() {
    let s = start(two_rules()).await;
    let admin = s.admin().await;
    let dev = s.user(&admin, "dev", "org-a", &["developer"]).await;
    let r1 = s.user(&admin, "rev1", "org-b", &["reviewer"]).await;
    let r1b = s.user(&admin, "rev1b", "org-b", &["reviewer"]).await;
    let r2 = s.user(&admin, "rev2", "org-c", &["reviewer"]).await;
    let same = s.user(&admin, "rev-a", "org-a", &["reviewer"]).await;

    let v = s.submit(&dev, "mean", &digest(1)).await;
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["state"], "submitted");
    assert_eq!(v["version"], "1");
    assert_eq!(v["leaf_index"], 0);

    // A reviewer of the maintainer's organization cannot be assigned.
    let (st, e) = s.assign(&admin, id, "rev-a").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("other than the algorithm's maintainer")
    );
    let _ = same;
    // A reviewer takes it itself; an administrator assigns the others.
    let (st, v) = s
        .call(
            "POST",
            &format!("/api/versions/{id}/assign"),
            Some(&r1.token),
            Some(json!({"reviewer": "rev1"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "under_review");
    // ... but does not assign another.
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/versions/{id}/assign"),
            Some(&r1.token),
            Some(json!({"reviewer": "rev2"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(s.assign(&admin, id, "rev1b").await.0, StatusCode::OK);
    assert_eq!(s.assign(&admin, id, "rev2").await.0, StatusCode::OK);

    // Two approvals from one organization: still under review (one organization short).
    let (st, v) = s
        .review(&r1, &signed(&r1, &v, Decision::Approve, |_| {}), id)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "under_review");
    let (st, v) = s
        .review(&r1b, &signed(&r1b, &v, Decision::Approve, |_| {}), id)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v["state"], "under_review",
        "two approvals of one organization do not approve"
    );
    // A reviewer reviews once.
    let (st, _) = s
        .review(&r1, &signed(&r1, &v, Decision::Approve, |_| {}), id)
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    // The second organization approves it.
    let (st, v) = s
        .review(&r2, &signed(&r2, &v, Decision::Approve, |_| {}), id)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "approved");

    // Approved is immutable: no more assignments or reviews.
    let r3 = s.user(&admin, "rev3", "org-d", &["reviewer"]).await;
    assert_eq!(s.assign(&admin, id, "rev3").await.0, StatusCode::CONFLICT);
    let (st, _) = s
        .review(&r3, &signed(&r3, &v, Decision::Reject, |_| {}), id)
        .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "an approved version takes no review"
    );

    // The log: submission + 3 approvals, each leaf the exact envelope, proofs verify.
    let cp = s.checkpoint().await;
    assert_eq!(cp.size, 4);
    let entries = s
        .ok("GET", "/api/log/entries?start=0&end=10", None, None)
        .await;
    let kinds: Vec<&str> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["submission", "approval", "approval", "approval"]);
    let mut tree = warden_tlog::MemoryTree::new();
    for e in entries["entries"].as_array().unwrap() {
        tree.append(&STANDARD.decode(e["leaf"].as_str().unwrap()).unwrap());
    }
    assert_eq!(tree.root(), cp.root);
    for i in 0..4u64 {
        let p = s
            .ok(
                "GET",
                &format!("/api/log/proof/inclusion?index={i}&size=4"),
                None,
                None,
            )
            .await;
        let hashes: Vec<[u8; 32]> = p["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        let leaf: [u8; 32] = hex::decode(p["leaf_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        warden_tlog::verify_inclusion(&leaf, i, 4, &hashes, &cp.root).unwrap();
    }
    // Evidence for the digest: the three approvals with inclusion proofs at the checkpoint.
    let ev = s
        .ok("GET", &format!("/api/evidence/{}", digest(1)), None, None)
        .await;
    let info = s.ok("GET", "/api/store", None, None).await;
    let verifier = NoteVerifier::parse(info["note_key"].as_str().unwrap()).unwrap();
    let ecp = open_checkpoint(ev["checkpoint"].as_str().unwrap().as_bytes(), &verifier).unwrap();
    assert_eq!(ev["entries"].as_array().unwrap().len(), 3);
    for e in ev["entries"].as_array().unwrap() {
        let leaf = STANDARD.decode(e["leaf"].as_str().unwrap()).unwrap();
        let hashes: Vec<[u8; 32]> = e["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        warden_tlog::verify_inclusion(
            &leaf_hash(&leaf),
            e["index"].as_u64().unwrap(),
            ecp.size,
            &hashes,
            &ecp.root,
        )
        .unwrap();
        // Each approval verifies against the reviewer's own key, not the store's.
        let name = warden_trust::review::parse_review_envelope(&leaf)
            .unwrap()
            .1
            .predicate
            .reviewer;
        let k = match name.as_str() {
            "rev1" => &r1.key,
            "rev1b" => &r1b.key,
            _ => &r2.key,
        };
        warden_trust::review::verify_review(&leaf, &[k.public_key()]).unwrap();
        assert!(warden_trust::review::verify_review(&leaf, &[s.key.public_key()]).is_err());
    }
    // The database holds each leaf with its hash.
    let _ = &s.db_path;
    let (st, _) = s
        .call("GET", "/api/log/proof/consistency?from=1&to=4", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call("GET", "/api/log/proof/inclusion?index=9&size=4", None, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn one_rejection_rejects_and_self_review_is_refused() {
    let s = start(two_rules()).await;
    let admin = s.admin().await;
    let dev = s
        .user(&admin, "dev", "org-a", &["developer", "reviewer"])
        .await;
    let r1 = s.user(&admin, "rev1", "org-b", &["reviewer"]).await;
    let r2 = s.user(&admin, "rev2", "org-c", &["reviewer"]).await;
    let v = s.submit(&dev, "mean", &digest(2)).await;
    let id = v["id"].as_i64().unwrap();
    // The submitter cannot be assigned, nor take it.
    let (st, e) = s.assign(&admin, id, "dev").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submitted"),
        "{e}"
    );
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/versions/{id}/assign"),
            Some(&dev.token),
            Some(json!({"reviewer": "dev"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    s.assign(&admin, id, "rev1").await;
    s.assign(&admin, id, "rev2").await;
    let v = s
        .ok("GET", &format!("/api/versions/{id}"), None, None)
        .await;
    // The submitter's own signed approval is refused.
    let (st, e) = s
        .review(&dev, &signed(&dev, &v, Decision::Approve, |_| {}), id)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    let (_, v) = s
        .review(&r1, &signed(&r1, &v, Decision::Approve, |_| {}), id)
        .await;
    let (st, v) = s
        .review(
            &r2,
            &signed(&r2, &v, Decision::Reject, |r| {
                r.predicate.comment = Some("reads the network".into())
            }),
            id,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "rejected");
    assert_eq!(s.checkpoint().await.size, 3);
    let kinds: Vec<String> = s
        .ok("GET", "/api/log/entries?start=0&end=3", None, None)
        .await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["submission", "approval", "rejection"]);
    s.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn forged_envelopes_are_refused_and_leave_no_leaf() {
    let s = start(ReviewConfig {
        min_approvals: 1,
        min_organizations: 1,
        ..two_rules()
    })
    .await;
    let admin = s.admin().await;
    let dev = s.user(&admin, "dev", "org-a", &["developer"]).await;
    let r1 = s.user(&admin, "rev1", "org-b", &["reviewer"]).await;
    let v = s.submit(&dev, "mean", &digest(3)).await;
    let id = v["id"].as_i64().unwrap();
    s.assign(&admin, id, "rev1").await;
    let v = s
        .ok("GET", &format!("/api/versions/{id}"), None, None)
        .await;
    let unregistered = User {
        token: r1.token.clone(),
        name: r1.name.clone(),
        org: r1.org.clone(),
        key: SigningKey::generate(KeyAlgorithm::Ed25519).unwrap(),
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "signed by an unregistered key",
            signed(&unregistered, &v, Decision::Approve, |_| {}),
        ),
        (
            "another digest",
            signed(&r1, &v, Decision::Approve, |r| {
                r.digest = digest(9).parse().unwrap()
            }),
        ),
        (
            "another store",
            signed(&r1, &v, Decision::Approve, |r| {
                r.predicate.store = "other".into()
            }),
        ),
        (
            "another repository",
            signed(&r1, &v, Decision::Approve, |r| {
                r.repository = "registry.example/evil/mean".parse().unwrap()
            }),
        ),
        (
            "another reviewer named",
            signed(&r1, &v, Decision::Approve, |r| {
                r.predicate.reviewer = "rev9".into()
            }),
        ),
        (
            "another version",
            signed(&r1, &v, Decision::Approve, |r| {
                r.predicate.version = "7".into()
            }),
        ),
        (
            "another commit",
            signed(&r1, &v, Decision::Approve, |r| {
                r.predicate.source_commit = "f".repeat(40)
            }),
        ),
        (
            "fewer functions",
            signed(&r1, &v, Decision::Approve, |r| {
                r.predicate.functions.truncate(1)
            }),
        ),
        ("a revocation", signed(&r1, &v, Decision::Revoke, |_| {})),
    ];
    for (what, env) in cases {
        let (st, e) = s.review(&r1, &env, id).await;
        assert!(
            st == StatusCode::FORBIDDEN || st == StatusCode::BAD_REQUEST,
            "{what}: {st} {e}"
        );
    }
    // A tampered payload (signature over other bytes).
    let mut env: Value =
        serde_json::from_slice(&signed(&r1, &v, Decision::Approve, |_| {})).unwrap();
    let payload = STANDARD.decode(env["payload"].as_str().unwrap()).unwrap();
    let tampered = String::from_utf8(payload)
        .unwrap()
        .replace("central_mean", "central_meaN");
    env["payload"] = json!(STANDARD.encode(tampered));
    let (st, _) = s.review(&r1, &serde_json::to_vec(&env).unwrap(), id).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Nothing was logged; the version is still under review; then a true approval approves.
    assert_eq!(s.checkpoint().await.size, 1);
    assert_eq!(
        s.ok("GET", &format!("/api/versions/{id}"), None, None)
            .await["state"],
        "under_review"
    );
    let (st, v) = s
        .review(&r1, &signed(&r1, &v, Decision::Approve, |_| {}), id)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "approved");
    let m = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Eight forgeries and the tampered payload were refused at verification; the revocation
    // sent as a review was refused as misdirected input before it.
    assert!(m.contains("warden_store_refused_envelopes_total 9"), "{m}");
    s.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn revoke_replace_and_reinstate() {
    let s = start(ReviewConfig {
        min_approvals: 1,
        min_organizations: 1,
        ..two_rules()
    })
    .await;
    let admin = s.admin().await;
    let dev = s.user(&admin, "dev", "org-a", &["developer"]).await;
    let other_dev = s.user(&admin, "dev-b", "org-b", &["developer"]).await;
    let r1 = s.user(&admin, "rev1", "org-b", &["reviewer"]).await;
    let approve = |v: Value| {
        let s = &s;
        let r1 = &r1;
        let admin = admin.clone();
        async move {
            let id = v["id"].as_i64().unwrap();
            s.assign(&admin, id, "rev1").await;
            let v = s
                .ok("GET", &format!("/api/versions/{id}"), None, None)
                .await;
            let (st, v) = s
                .review(r1, &signed(r1, &v, Decision::Approve, |_| {}), id)
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v
        }
    };
    let v1 = approve(s.submit(&dev, "mean", &digest(4)).await).await;
    assert_eq!(v1["state"], "approved");
    // Another organization cannot submit versions of this algorithm.
    let (st, _) = s.call("POST", "/api/versions", Some(&other_dev.token), Some(json!({
        "algorithm": "mean", "source": SOURCE, "image": format!("{REPO}@{}", digest(5)), "commit": COMMIT,
        "functions": [{"name": "f", "kind": "central"}]}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let v2 = approve(s.submit(&dev, "mean", &digest(5)).await).await;
    assert_eq!(v2["version"], "2");
    let id1 = v1["id"].as_i64().unwrap();
    let id2 = v2["id"].as_i64().unwrap();
    let v1 = s
        .ok("GET", &format!("/api/versions/{id1}"), None, None)
        .await;
    assert_eq!(v1["state"], "replaced");
    // Reinstate: administrator only, logged.
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/versions/{id1}/reinstate"),
            Some(&r1.token),
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let v1 = s
        .ok(
            "POST",
            &format!("/api/versions/{id1}/reinstate"),
            Some(&admin),
            Some(json!({"reason": "v2 breaks old clients"})),
        )
        .await;
    assert_eq!(v1["state"], "approved");
    // Revoke v2 by the reviewer's signed envelope; v1 by the administrator (store-signed).
    let v2 = s
        .ok("GET", &format!("/api/versions/{id2}"), None, None)
        .await;
    let env = signed(&r1, &v2, Decision::Revoke, |r| {
        r.predicate.comment = Some("found a leak".into())
    });
    let v2 = s
        .ok(
            "POST",
            &format!("/api/versions/{id2}/revoke"),
            Some(&r1.token),
            Some(json!({"reason": "found a leak", "envelope": STANDARD.encode(&env)})),
        )
        .await;
    assert_eq!(v2["state"], "revoked");
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/versions/{id1}/revoke"),
            Some(&dev.token),
            Some(json!({"reason": "mine"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a developer does not revoke");
    let v1 = s
        .ok(
            "POST",
            &format!("/api/versions/{id1}/revoke"),
            Some(&admin),
            Some(json!({"reason": "retired"})),
        )
        .await;
    assert_eq!(v1["state"], "revoked");
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/versions/{id1}/revoke"),
            Some(&admin),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let kinds: Vec<String> = s
        .ok("GET", "/api/log/entries?start=0&end=100", None, None)
        .await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "submission",
            "approval",
            "submission",
            "approval",
            "reinstatement",
            "revocation",
            "revocation"
        ]
    );
    // The store's revocation verifies against the store's key.
    let ev = s
        .ok("GET", &format!("/api/evidence/{}", digest(4)), None, None)
        .await;
    let last = ev["entries"].as_array().unwrap().last().unwrap();
    assert_eq!(last["kind"], "revocation");
    let leaf = STANDARD.decode(last["leaf"].as_str().unwrap()).unwrap();
    let r = warden_trust::review::verify_review(&leaf, &[s.key.public_key()]).unwrap();
    assert_eq!(r.review.predicate.decision, Decision::Revoke);
    s.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn replaced_versions_are_revoked_when_configured_so() {
    let s = start(ReviewConfig {
        min_approvals: 1,
        min_organizations: 1,
        replaced_remain_valid: false,
        ..two_rules()
    })
    .await;
    let admin = s.admin().await;
    let dev = s.user(&admin, "dev", "org-a", &["developer"]).await;
    let r1 = s.user(&admin, "rev1", "org-b", &["reviewer"]).await;
    let mut ids = vec![];
    for n in [6u8, 7] {
        let v = s.submit(&dev, "mean", &digest(n)).await;
        let id = v["id"].as_i64().unwrap();
        s.assign(&admin, id, "rev1").await;
        let v = s
            .ok("GET", &format!("/api/versions/{id}"), None, None)
            .await;
        s.review(&r1, &signed(&r1, &v, Decision::Approve, |_| {}), id)
            .await;
        ids.push(id);
    }
    let v1 = s
        .ok("GET", &format!("/api/versions/{}", ids[0]), None, None)
        .await;
    assert_eq!(v1["state"], "revoked");
    assert_eq!(v1["reason"], "replaced by version 2");
    let ev = s
        .ok("GET", &format!("/api/evidence/{}", digest(6)), None, None)
        .await;
    assert_eq!(
        ev["entries"].as_array().unwrap().last().unwrap()["kind"],
        "revocation"
    );
    s.running.unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn permissions_over_http_and_bad_input() {
    let s = start(two_rules()).await;
    let admin = s.admin().await;
    let dev = s.user(&admin, "dev", "org-a", &["developer"]).await;
    let rev = s.user(&admin, "rev", "org-b", &["reviewer"]).await;
    // Only an administrator creates accounts and organizations.
    for t in [&dev.token, &rev.token] {
        let (st, _) = s
            .call(
                "POST",
                "/api/organizations",
                Some(t),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, _) = s.call("POST", "/api/accounts", Some(t), Some(json!({"username": "x", "password": PW, "organization": "org-a", "roles": ["administrator"]}))).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    // A reviewer does not submit; nobody unauthenticated does.
    let body = json!({"algorithm": "m", "source": SOURCE, "image": format!("{REPO}@{}", digest(8)), "commit": COMMIT, "functions": [{"name": "f", "kind": "central"}]});
    assert_eq!(
        s.call(
            "POST",
            "/api/versions",
            Some(&rev.token),
            Some(body.clone())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("POST", "/api/versions", None, Some(body.clone()))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Bad input: short commit, unknown field, bad kind, tag without a registry.
    let mut b = body.clone();
    b["commit"] = json!("abc");
    assert_eq!(
        s.call("POST", "/api/versions", Some(&dev.token), Some(b))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let mut b = body.clone();
    b["extra"] = json!(1);
    assert_eq!(
        s.call("POST", "/api/versions", Some(&dev.token), Some(b))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let mut b = body.clone();
    b["functions"] = json!([{"name": "f", "kind": "sideways"}]);
    assert_eq!(
        s.call("POST", "/api/versions", Some(&dev.token), Some(b))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A key is registered once.
    let (st, _) = s.call("PUT", "/api/me/key", Some(&rev.token), Some(json!({"public_key": SigningKey::generate(KeyAlgorithm::Ed25519).unwrap().public_key().to_pem()}))).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Wrong password: the generic answer; the OpenAPI document and health answer.
    let (st, _) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "dev", "password": "wrong password!"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(
        s.ok("GET", "/api/openapi.json", None, None).await["paths"]["/api/evidence/{digest}"]
            .is_object()
    );
    assert_eq!(s.ok("GET", "/api/health", None, None).await["status"], "ok");
    // Refresh: spent once.
    let sess = s
        .ok(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "dev", "password": PW})),
        )
        .await;
    let rt = sess["refresh_token"].as_str().unwrap();
    s.ok(
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": rt})),
    )
    .await;
    assert_eq!(
        s.call(
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": rt}))
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let _ = wire::MAX_LOG_ENTRIES_PAGE;
    s.running.unwrap().stop().await.unwrap();
}

/// Group commit: many decisions at once are committed together, each in its own savepoint. The
/// ones that fail (a version number taken) are undone alone, every one that succeeded is a leaf,
/// the leaves are contiguous and the tree over them is the checkpoint's, and the store goes on
/// deciding afterwards.
#[tokio::test]
async fn concurrent_decisions_commit_together_and_a_failing_one_is_undone_alone() {
    let s = start(two_rules()).await;
    let admin = s.admin().await;
    let dev = s.user(&admin, "dev", "org-dev", &["developer"]).await;
    let mut set = tokio::task::JoinSet::new();
    for n in 0..48u8 {
        let (http, base, token) = (s.http.clone(), s.base.clone(), dev.token.clone());
        // every fourth one asks for version "1" of algorithm `dup`: one of them wins
        let (algorithm, version) = if n % 4 == 0 {
            ("dup".to_owned(), "1".to_owned())
        } else {
            (format!("alg{n}"), "1".to_owned())
        };
        set.spawn(async move {
            let r = http
                .post(format!("{base}/api/versions"))
                .bearer_auth(token)
                .json(&json!({
                    "algorithm": algorithm, "version": version, "source": SOURCE,
                    "image": format!("{REPO}@{}", digest(n)), "commit": COMMIT,
                    "functions": [{"name": "partial_mean", "kind": "partial"}],
                }))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (n, status, r.json::<Value>().await.unwrap())
        });
    }
    let mut leaves = Vec::new();
    let mut conflicts = 0;
    while let Some(done) = set.join_next().await {
        let (n, status, v) = done.unwrap();
        match status {
            StatusCode::CREATED | StatusCode::OK => leaves.push(v["leaf_index"].as_u64().unwrap()),
            StatusCode::CONFLICT => {
                assert_eq!(n % 4, 0, "{v}");
                assert!(
                    v["error"]["message"].as_str().unwrap().contains("already"),
                    "{v}"
                );
                conflicts += 1;
            }
            other => panic!("{n}: {other} {v}"),
        }
    }
    assert_eq!((leaves.len(), conflicts), (37, 11));
    leaves.sort_unstable();
    assert_eq!(
        leaves,
        (0..37).collect::<Vec<u64>>(),
        "contiguous, one per success"
    );
    let cp = s.checkpoint().await;
    assert_eq!(cp.size, 37);
    let entries = s
        .ok("GET", "/api/log/entries?start=0&end=100", None, None)
        .await;
    let mut tree = warden_tlog::MemoryTree::new();
    for e in entries["entries"].as_array().unwrap() {
        assert_eq!(e["kind"], "submission");
        tree.append(&STANDARD.decode(e["leaf"].as_str().unwrap()).unwrap());
    }
    assert_eq!(tree.size(), 37);
    assert_eq!(tree.root(), cp.root);
    let versions = s.ok("GET", "/api/versions", None, None).await;
    assert_eq!(
        versions.as_array().unwrap().len(),
        37,
        "no row of a failed decision is left"
    );
    // and on it goes
    let v = s.submit(&dev, "after", &digest(200)).await;
    assert_eq!(v["leaf_index"], 37);
}
