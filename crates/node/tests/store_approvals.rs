//! `approved_by` against a real algorithm store over HTTP on loopback (warden_store in-process,
//! SQLite), the real registry (crates/testkit) and the real server's world: two nodes with their
//! own state check the store's approvals themselves. Attacks: one approval short, two approvals
//! from one organization by the node's own mapping (whatever the store says), an approval by a
//! key the node does not pin, a revocation, the store's database rewritten to drop the
//! revocation (the node that saw it refuses the store, and keeps refusing), the store down with
//! fresh and with stale cached evidence. End to end with containers: two nodes run an image
//! two reviewers of two organizations approved, each audit record naming the approvals, and a
//! revocation denies the next run at both with the reason.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::World;
use common::attack::{audit_records, refused};
use serde_json::{Value, json};
use tempfile::TempDir;
use time::OffsetDateTime;
use warden_api::RunState;
use warden_node::admission::Gate;
use warden_node::config::Config;
use warden_node::stores::Stores;
use warden_policy::Requester;
use warden_reference::{Digest, Repository};
use warden_registry::{Client, ClientOptions};
use warden_store::config::{AuthConfig, ReviewConfig};
use warden_store::service::{Resolver, Service};
use warden_store::storage::{ConnectOptions, Db};
use warden_trust::review::{Decision, Review, ReviewPredicate};
use warden_trust::{KeyAlgorithm, SigningKey};

const PW: &str = "a long enough password";

#[derive(Debug)]
struct NoRegistry;

#[async_trait::async_trait]
impl Resolver for NoRegistry {
    async fn resolve(&self, r: &warden_reference::Reference) -> Result<Digest, String> {
        Err(format!("this test submits by digest, not {r}"))
    }
}

struct Store {
    base: String,
    http: reqwest::Client,
    key: SigningKey,
    dir: TempDir,
    running: Option<warden_store::RunningStore>,
    min_approvals: u32,
}

struct User {
    token: String,
    name: String,
    org: String,
    key: SigningKey,
}

async fn serve(dir: &Path, key: &SigningKey, min_approvals: u32) -> warden_store::RunningStore {
    let url = format!("sqlite://{}", dir.join("store.db").display());
    let db = Db::connect(&url, dir, &ConnectOptions::default())
        .await
        .unwrap();
    let key = SigningKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
    let auth = AuthConfig {
        rate_limit_exempt: vec!["127.0.0.1".parse().unwrap()],
        ..AuthConfig::default()
    };
    let service = Service::new(
        db,
        "community",
        key,
        ReviewConfig {
            min_approvals,
            ..ReviewConfig::default()
        },
        auth,
        Box::new(NoRegistry),
    )
    .await
    .unwrap();
    warden_store::bootstrap(&service, Some(&dir.join("admin.pw")))
        .await
        .unwrap();
    warden_store::serve("127.0.0.1:0".parse().unwrap(), service, 1 << 20)
        .await
        .unwrap()
}

impl Store {
    /// A store where four approvals approve a version: every review of the tests is logged
    /// while the version is under review.
    async fn start() -> Store {
        Store::start_with(4).await
    }

    async fn start_with(min_approvals: u32) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let running = serve(dir.path(), &key, min_approvals).await;
        Store {
            base: format!("http://{}", running.addr),
            http: reqwest::Client::new(),
            key,
            dir,
            running: Some(running),
            min_approvals,
        }
    }

    async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        let running = serve(self.dir.path(), &self.key, self.min_approvals).await;
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    async fn ok(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
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
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    async fn login(&self, name: &str, pw: &str) -> String {
        let v = self
            .ok(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"username": name, "password": pw})),
            )
            .await;
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn admin(&self) -> String {
        let pw = std::fs::read_to_string(self.dir.path().join("admin.pw")).unwrap();
        self.login("admin", pw.trim()).await
    }

    async fn user(&self, admin: &str, name: &str, org: &str, role: &str) -> User {
        let url = format!("{}/api/organizations", self.base);
        let _ = self
            .http
            .post(url)
            .bearer_auth(admin)
            .json(&json!({"name": org}))
            .send()
            .await
            .unwrap();
        self.ok(
            "POST",
            "/api/accounts",
            Some(admin),
            Some(json!({"username": name, "password": PW, "organization": org, "roles": [role]})),
        )
        .await;
        let token = self.login(name, PW).await;
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

    /// `who` signs `decision` of version `v` on their own machine and sends it.
    async fn decide(&self, who: &User, v: &Value, decision: Decision) {
        let id = v["id"].as_i64().unwrap();
        let functions = if decision == Decision::Approve {
            vec!["hello".to_owned()]
        } else {
            vec![]
        };
        let review = Review {
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
                time: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
                comment: None,
                rebuilt: None,
            },
        };
        let env = STANDARD.encode(review.sign(&who.key).unwrap().to_json());
        match decision {
            Decision::Revoke => {
                self.ok(
                    "POST",
                    &format!("/api/versions/{id}/revoke"),
                    Some(&who.token),
                    Some(json!({"reason": "a data leak found", "envelope": env})),
                )
                .await;
            }
            _ => {
                self.ok(
                    "POST",
                    &format!("/api/versions/{id}/reviews"),
                    Some(&who.token),
                    Some(json!({"envelope": env})),
                )
                .await;
            }
        }
    }
}

fn sqlite(db: &Path, sql: &str) {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node's configuration with one `[[stores]]` table; `orgs` maps reviewer key files (written
/// beside the policy, under reviewers/) to the organization this node gives them.
fn node(
    w: &World,
    dir_name: &str,
    store: &Store,
    note_key: &str,
    reviewers: &[(&str, &User, &str)],
    max_age: u64,
) -> PathBuf {
    node_of(w, &w.a, dir_name, store, note_key, reviewers, max_age)
}

/// [`node`] for a node of organization `org` (with its API key).
fn node_of(
    w: &World,
    org: &common::Org,
    dir_name: &str,
    store: &Store,
    note_key: &str,
    reviewers: &[(&str, &User, &str)],
    max_age: u64,
) -> PathBuf {
    let d = w.dir.path().join(dir_name);
    std::fs::create_dir_all(d.join("reviewers")).unwrap();
    let mut tables = format!(
        "[[stores]]\nname = \"community\"\nurl = \"{}\"\nnote_key = \"{note_key}\"\nmax_evidence_age_secs = {max_age}\n",
        store.base
    );
    for (file, user, org) in reviewers {
        std::fs::write(
            d.join("reviewers").join(file),
            user.key.public_key().to_pem(),
        )
        .unwrap();
        tables.push_str(&format!(
            "[[stores.reviewers]]\nkey = \"reviewers/{file}\"\norganization = \"{org}\"\n"
        ));
    }
    w.node_config_in(
        org,
        &org.api_key,
        dir_name,
        "[[allow]]\nrepository_regex = '.+/node/approved'\napproved_by = { store = \"community\", reviewers = [\"reviewers/*.pub\"], min_approvals = 2, min_organizations = 2 }\n",
        &tables,
    )
}

/// The node's gate as `warden node start` builds it, from the configuration file.
fn gate(config: &Path, store_url: &str) -> Gate {
    let mut c = Config::load(config).unwrap();
    // the store moves to another port when it is restarted; the node's state stays
    for s in &mut c.stores {
        s.url = store_url.to_owned();
    }
    Gate::load(&c.node.policy)
        .unwrap()
        .with_stores(Stores::load(&c.stores, &c.node.spool_dir.join("stores")).unwrap())
        .unwrap()
}

async fn admit(gate: &Gate, image: &str) -> Result<warden_node::admission::Admitted, String> {
    let registry = Client::new(ClientOptions::default()).unwrap();
    gate.check(&registry, image, &Requester::default())
        .await
        .map_err(|r| r.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_check_store_approvals_themselves() {
    common::init_tracing();
    let mut w = World::new().await;
    let (repo, digest) = w.push_program_with("identify", "approved", "v1", &[("/id.txt", b"one")]);
    let image = format!("{repo}:v1");
    let mut store = Store::start().await;
    let admin = store.admin().await;
    let dev = store.user(&admin, "dev", "org-dev", "developer").await;
    let r1 = store.user(&admin, "rev1", "org-b", "reviewer").await;
    let r2 = store.user(&admin, "rev2", "org-c", "reviewer").await;
    // the store says org-d; both nodes pin rev3 as a reviewer of org-b
    let r3 = store.user(&admin, "rev3", "org-d", "reviewer").await;
    // a store account whose key no node pins
    let mallory = store.user(&admin, "mallory", "org-m", "reviewer").await;
    let info = store.ok("GET", "/api/store", None, None).await;
    let note_key = info["note_key"].as_str().unwrap().to_owned();
    let v = store
        .ok(
            "POST",
            "/api/versions",
            Some(&dev.token),
            Some(json!({
                "algorithm": "identify", "source": "https://git.example/team/identify",
                "image": format!("{repo}@{digest}"),
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "functions": [{"name": "hello", "kind": "partial"}],
            })),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    for r in ["rev1", "rev2", "rev3", "mallory"] {
        store
            .ok(
                "POST",
                &format!("/api/versions/{id}/assign"),
                Some(&admin),
                Some(json!({"reviewer": r})),
            )
            .await;
    }
    let pins = [
        ("rev1.pub", &r1, "org-b"),
        ("rev2.pub", &r2, "org-c"),
        ("rev3.pub", &r3, "org-b"),
    ];
    let config_a = node(&w, "node-store-a", &store, &note_key, &pins, 3600);
    let config_b = node(&w, "node-store-b", &store, &note_key, &pins, 3600);
    let a = gate(&config_a, &store.base);

    // nothing approved yet
    let e = admit(&a, &image).await.unwrap_err();
    assert!(e.contains("0 distinct pinned reviewer(s)"), "{e}");

    // one approval short
    store.decide(&r1, &v, Decision::Approve).await;
    let e = admit(&a, &image).await.unwrap_err();
    assert!(
        e.contains("1 distinct pinned reviewer(s) from 1 organization(s) approved this digest; the rule needs 2 from 2"),
        "{e}"
    );

    // two approvals, one organization by the node's mapping (the store says two)
    store.decide(&r3, &v, Decision::Approve).await;
    let e = admit(&a, &image).await.unwrap_err();
    assert!(
        e.contains("2 distinct pinned reviewer(s) from 1 organization(s)"),
        "{e}"
    );

    // an approval signed by a key the node does not pin counts for nothing
    store.decide(&mallory, &v, Decision::Approve).await;
    let e = admit(&a, &image).await.unwrap_err();
    assert!(
        e.contains("2 distinct pinned reviewer(s) from 1 organization(s)"),
        "{e}"
    );

    // a second organization: both nodes admit, each by its own check
    store.decide(&r2, &v, Decision::Approve).await;
    let admitted = admit(&a, &image).await.unwrap();
    assert_eq!(admitted.digest(), &digest);
    let approvals = admitted.evidence().approvals();
    assert_eq!(approvals.len(), 3, "{approvals:?}");
    assert!(
        approvals.iter().any(|l| l.contains("(org-c)")),
        "{approvals:?}"
    );
    // what the run's audit records name: the approvals that counted for the admitting rule,
    // with the node's organization for each key and its log index
    let named = a.admitting_approvals(&admitted);
    let mut want: Vec<(String, String)> = [(&r1, "org-b"), (&r2, "org-c"), (&r3, "org-b")]
        .iter()
        .map(|(u, o)| (u.key.public_key().id().to_string(), (*o).to_owned()))
        .collect();
    want.sort();
    let mut got: Vec<(String, String)> = named
        .iter()
        .map(|n| (n.key_id.clone(), n.organization.clone()))
        .collect();
    got.sort();
    assert_eq!(got, want, "{named:?}");
    let checked = &admitted.evidence().stores[0];
    for n in &named {
        assert_eq!(n.store, "community");
        let entry = checked.entries.iter().find(|e| e.index == n.index).unwrap();
        assert!(entry.counted && entry.kind == "approval", "{entry:?}");
        assert_eq!(entry.key_id.as_deref(), Some(n.key_id.as_str()));
    }
    let not_pinned = checked
        .entries
        .iter()
        .find(|e| e.reviewer.as_deref() == Some("mallory"))
        .unwrap();
    assert!(!not_pinned.counted && not_pinned.included);
    assert!(
        not_pinned.why.contains("does not pin"),
        "{}",
        not_pinned.why
    );
    let b = gate(&config_b, &store.base);
    admit(&b, &image).await.unwrap();

    // revoked: the next run is denied
    store.decide(&r2, &v, Decision::Revoke).await;
    let e = admit(&a, &image).await.unwrap_err();
    assert!(e.contains("store `community` revoked it"), "{e}");
    assert!(e.contains("by reviewer `rev2`"), "{e}");

    // the store's database is rewritten to drop the revocation, and the log grows again to
    // the same size: node A, which saw the revocation, refuses the store
    store.stop().await;
    let db = store.dir.path().join("store.db");
    sqlite(
        &db,
        &format!(
            "DELETE FROM log_entries WHERE kind = 'revocation'; UPDATE versions SET state = 'approved', reason = NULL WHERE id = {id};"
        ),
    );
    store.restart().await;
    store
        .ok(
            "POST",
            "/api/versions",
            Some(&dev.token_after_restart(&store).await),
            Some(json!({
                "algorithm": "other", "source": "https://git.example/team/other",
                "image": format!("{repo}@{}", Digest::sha256_of(b"other")),
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "functions": [{"name": "hello", "kind": "partial"}],
            })),
        )
        .await;
    let a = gate(&config_a, &store.base);
    let e = admit(&a, &image).await.unwrap_err();
    assert!(
        e.contains("not consistent with the checkpoint this node verified before"),
        "{e}"
    );
    let marker = config_a
        .parent()
        .unwrap()
        .join("spool/stores/community/refused");
    assert!(marker.exists(), "the refusal is kept on disk");
    // still refused on the next run, until the data owner acts
    let e = admit(&a, &image).await.unwrap_err();
    assert!(e.contains("was refused before"), "{e}");
    assert!(e.contains("delete"), "{e}");

    // node B last saw the log before the revocation: the rewritten log extends what it saw,
    // so B alone cannot tell (the split-view exchange through the server is what would)
    let b = gate(&config_b, &store.base);
    admit(&b, &image).await.unwrap();

    // the store is down: B reuses its fresh cached evidence; with max_evidence_age_secs = 0
    // the same cache is stale and the run is denied
    let url = store.base.clone();
    store.stop().await;
    let b = gate(&config_b, &url);
    let admitted = admit(&b, &image).await.unwrap();
    assert!(
        admitted.evidence().stores[0]
            .cached
            .as_deref()
            .unwrap()
            .contains("cannot be reached"),
        "{:?}",
        admitted.evidence().stores[0]
    );
    let text = std::fs::read_to_string(&config_b)
        .unwrap()
        .replace("max_evidence_age_secs = 3600", "max_evidence_age_secs = 0");
    std::fs::write(&config_b, text).unwrap();
    let b = gate(&config_b, &url);
    let e = admit(&b, &image).await.unwrap_err();
    assert!(
        e.contains("not within max_evidence_age_secs = 0; fail closed"),
        "{e}"
    );
}

impl User {
    /// Sessions are kept in the store's database, which the restart kept: log in again anyway.
    async fn token_after_restart(&self, store: &Store) -> String {
        store.login(&self.name, PW).await
    }
}

/// Two store instances with the same key and different logs (a store showing two nodes two
/// histories): a node that is handed the other instance's checkpoint (as the server would
/// relay it) detects the fork and refuses the store; an honest checkpoint of its own history
/// is consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_from_a_forked_history_is_detected() {
    common::init_tracing();
    let w = World::new().await;
    let one = Store::start().await;
    // the second instance signs with the same key over its own database
    let other_dir = tempfile::tempdir().unwrap();
    let other = serve(other_dir.path(), &one.key, 4).await;
    let other_base = format!("http://{}", other.addr);
    let info = one.ok("GET", "/api/store", None, None).await;
    let note_key = info["note_key"].as_str().unwrap().to_owned();
    let admin = one.admin().await;
    let dev = one.user(&admin, "dev", "org-dev", "developer").await;
    let r1 = one.user(&admin, "rev1", "org-b", "reviewer").await;
    let submit = |store: &Store, token: String, n: u8| {
        let body = json!({
            "algorithm": format!("alg{n}"), "source": "https://git.example/team/x",
            "image": format!("registry.example/team/x@{}", Digest::sha256_of(&[n])),
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "functions": [{"name": "hello", "kind": "partial"}],
        });
        let base = store.base.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/api/versions"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        }
    };
    submit(&one, dev.token.clone(), 1).await;
    submit(&one, dev.token.clone(), 2).await;
    // the other instance: its own accounts, a different log of the same size
    let other_store = Store {
        base: other_base.clone(),
        http: reqwest::Client::new(),
        key: SigningKey::from_pkcs8_der(&one.key.to_pkcs8_der().unwrap()).unwrap(),
        dir: other_dir,
        running: Some(other),
        min_approvals: 4,
    };
    let admin2 = other_store.admin().await;
    let dev2 = other_store
        .user(&admin2, "dev", "org-dev", "developer")
        .await;
    submit(&other_store, dev2.token.clone(), 3).await;
    submit(&other_store, dev2.token.clone(), 4).await;

    let config = node(
        &w,
        "node-fork",
        &one,
        &note_key,
        &[("rev1.pub", &r1, "org-b")],
        3600,
    );
    let c = Config::load(&config).unwrap();
    let stores = Stores::load(&c.stores, &c.node.spool_dir.join("stores")).unwrap();
    // the node verifies store one's log once (an admission would), saving its checkpoint
    let image_digest = Digest::sha256_of(&[1]);
    let repo: Repository = "registry.example/team/x".parse().unwrap();
    let checked = stores
        .check(&["community".to_owned()].into(), &repo, &image_digest)
        .await;
    assert!(checked[0].facts.unavailable.is_none(), "{:?}", checked[0]);
    // an honest peer checkpoint of the same history
    let own = reqwest::get(format!("{}/api/log/checkpoint", one.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        stores
            .check_peer_checkpoint("community", &own)
            .await
            .unwrap()
    );
    // the other instance's checkpoint: same key, same size, another root
    let forked = reqwest::get(format!("{other_base}/api/log/checkpoint"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let e = stores
        .check_peer_checkpoint("community", &forked)
        .await
        .unwrap_err();
    assert!(e.is_inconsistent(), "{e}");
    assert!(e.to_string().contains("forks from this node's"), "{e}");
    // and the store stays refused for admissions
    let checked = stores
        .check(&["community".to_owned()].into(), &repo, &image_digest)
        .await;
    assert!(
        checked[0]
            .facts
            .unavailable
            .as_deref()
            .unwrap()
            .contains("was refused before"),
        "{:?}",
        checked[0]
    );
    // a checkpoint signed by another key is refused, not taken as a fork
    let stranger = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let SigningKey::Ed25519(k) = &stranger else {
        panic!()
    };
    let signer = warden_tlog::NoteSigner::new("warden-store/community", k.clone()).unwrap();
    let fake = warden_tlog::Checkpoint::new("warden-store/community", 1, [0; 32])
        .sign(&signer)
        .unwrap();
    let e = stores
        .check_peer_checkpoint("community", std::str::from_utf8(&fake).unwrap())
        .await
        .unwrap_err();
    assert!(!e.is_inconsistent(), "{e}");
}

/// The whole way with containers: a real store, the real server, the real registry, two nodes
/// (organizations A and B) and Docker. Approved by two reviewers of two organizations: the run
/// completes at both nodes, and each node's audit records name the approvals that admitted it.
/// Revoked by one reviewer: the next task is rejected at both nodes with the reason, before
/// anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_runs_complete_at_two_nodes_and_a_revocation_denies_the_next() {
    common::init_tracing();
    let mut w = World::new().await;
    let (repo, digest) = w.push_program("echo", "approved", "v1");
    let image = format!("{repo}:v1");
    // two approvals of two organizations approve a version (and it can be revoked)
    let store = Store::start_with(2).await;
    let admin = store.admin().await;
    let dev = store.user(&admin, "dev", "org-dev", "developer").await;
    let r1 = store.user(&admin, "rev1", "org-b", "reviewer").await;
    let r2 = store.user(&admin, "rev2", "org-c", "reviewer").await;
    let info = store.ok("GET", "/api/store", None, None).await;
    let note_key = info["note_key"].as_str().unwrap().to_owned();
    let v = store
        .ok(
            "POST",
            "/api/versions",
            Some(&dev.token),
            Some(json!({
                "algorithm": "echo", "source": "https://git.example/team/echo",
                "image": format!("{repo}@{digest}"),
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "functions": [{"name": "hello", "kind": "partial"}],
            })),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    for r in ["rev1", "rev2"] {
        store
            .ok(
                "POST",
                &format!("/api/versions/{id}/assign"),
                Some(&admin),
                Some(json!({"reviewer": r})),
            )
            .await;
    }
    store.decide(&r1, &v, Decision::Approve).await;
    store.decide(&r2, &v, Decision::Approve).await;
    let pins = [("rev1.pub", &r1, "org-b"), ("rev2.pub", &r2, "org-c")];
    let config_a = node_of(&w, &w.a, "run-a", &store, &note_key, &pins, 3600);
    let config_b = node_of(&w, &w.b, "run-b", &store, &note_key, &pins, 3600);
    let node_a = w.start_node(&config_a).await;
    let node_b = w.start_node(&config_b).await;

    let input = json!({"function": "hello", "args": null});
    let task = w.create_task(&image, &input, &[&w.a, &w.b]).await;
    let want: Vec<(String, String)> = [(&r1, "org-b"), (&r2, "org-c")]
        .iter()
        .map(|(u, o)| (u.key.public_key().id().to_string(), (*o).to_owned()))
        .collect();
    for (run, config) in task.runs.iter().zip([&config_a, &config_b]) {
        let r = w.wait_final(run.id, Duration::from_secs(120)).await;
        assert_eq!(r.state, RunState::Completed, "{:?}", r.reason);
        assert_eq!(r.digest.as_deref(), Some(digest.to_string().as_str()));
        let text = String::from_utf8(w.result(run.id).await).unwrap();
        assert!(text.contains("\"function\":\"hello\""), "{text}");
        // the decision and the run (other records, such as what became of the logs, are not
        // about admission)
        let records: Vec<Value> = audit_records(config, run.id)
            .into_iter()
            .filter(|r| r["event"] == "decision" || r["event"] == "run")
            .collect();
        let events: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r["event"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
            .collect();
        assert_eq!(
            events,
            [("decision", "admitted"), ("run", "completed")],
            "{records:?}"
        );
        for rec in &records {
            let approvals = rec["approvals"].as_array().unwrap();
            let mut got: Vec<(String, String)> = approvals
                .iter()
                .map(|a| {
                    assert_eq!(a["store"], "community", "{a}");
                    assert!(a["index"].as_u64().unwrap() >= 1, "{a}");
                    (
                        a["key_id"].as_str().unwrap().to_owned(),
                        a["organization"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            got.sort();
            let mut want = want.clone();
            want.sort();
            assert_eq!(got, want, "{rec}");
        }
    }

    // the server relays a checkpoint that is not the store's (signed by another key under the
    // store's name, claiming a larger log): each node ignores it, refuses nothing and keeps
    // its own saved checkpoint
    let saved: Vec<String> = [&config_a, &config_b]
        .iter()
        .map(|c| {
            std::fs::read_to_string(
                c.parent()
                    .unwrap()
                    .join("spool/stores/community/checkpoint"),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(
        warden_tlog::NoteVerifier::parse(&note_key)
            .unwrap()
            .to_string(),
        note_key,
        "the relayed key is compared in this form"
    );
    let stranger = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let SigningKey::Ed25519(k) = &stranger else {
        panic!()
    };
    let signer = warden_tlog::NoteSigner::new("warden-store/community", k.clone()).unwrap();
    let forged = warden_tlog::Checkpoint::new("warden-store/community", 100, [7; 32])
        .sign(&signer)
        .unwrap();
    // (any node can report, from any collaboration; so can the server itself)
    let elsewhere = w.collaboration("elsewhere", true).await;
    let intruder = w.node_key_in(w.a.id, elsewhere).await;
    let (st, body) = w
        .call(
            reqwest::Method::POST,
            "",
            "/api/auth/node",
            Some(json!({"api_key": intruder})),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (st, body) = w
        .call(
            reqwest::Method::PUT,
            &token,
            "/api/store-checkpoints",
            Some(json!({"store": "community", "key": note_key, "checkpoint": String::from_utf8(forged).unwrap()})),
        )
        .await;
    assert_eq!(st, 204, "{body}");
    for (node, (config, saved)) in [&node_a, &node_b]
        .iter()
        .zip([&config_a, &config_b].iter().zip(&saved))
    {
        node.node.relay_round().await;
        let dir = config.parent().unwrap().join("spool/stores/community");
        assert!(
            !dir.join("refused").exists(),
            "a forgery is no evidence of a fork"
        );
        assert_eq!(
            &std::fs::read_to_string(dir.join("checkpoint")).unwrap(),
            saved
        );
    }

    // revoked by a reviewer: the next task is rejected at both nodes, nothing runs
    store.decide(&r2, &v, Decision::Revoke).await;
    let task = w.create_task(&image, &input, &[&w.a, &w.b]).await;
    for (run, config) in task.runs.iter().zip([&config_a, &config_b]) {
        let reason = refused(&w, config, run.id, "store `community` revoked it", None).await;
        assert!(reason.contains("by reviewer `rev2`"), "{reason}");
        assert!(audit_records(config, run.id)[0].get("approvals").is_none());
    }
    node_a.stop().await;
    node_b.stop().await;
}

/// Split views through the relay, with real nodes: a store shows node A one history and node B
/// another (two instances with the same key and different logs of the same size). Each node
/// verifies its own view when it admits a run, reports its checkpoint to the real server, and
/// checks the one the other node reported: both find the fork, refuse the store (the marker on
/// disk, an audit record) and reject the next run with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_shown_different_histories_find_the_fork_through_the_relay() {
    common::init_tracing();
    let mut w = World::new().await;
    let (repo, _) = w.push_program("echo", "approved", "v1");
    let image = format!("{repo}:v1");
    let one = Store::start_with(2).await;
    let other_dir = tempfile::tempdir().unwrap();
    let other_running = serve(other_dir.path(), &one.key, 2).await;
    let other = Store {
        base: format!("http://{}", other_running.addr),
        http: reqwest::Client::new(),
        key: SigningKey::from_pkcs8_der(&one.key.to_pkcs8_der().unwrap()).unwrap(),
        dir: other_dir,
        running: Some(other_running),
        min_approvals: 2,
    };
    let info = one.ok("GET", "/api/store", None, None).await;
    let note_key = info["note_key"].as_str().unwrap().to_owned();
    let admin = one.admin().await;
    let r1 = one.user(&admin, "rev1", "org-b", "reviewer").await;
    let r2 = one.user(&admin, "rev2", "org-c", "reviewer").await;
    // two histories of the same size
    for (store, tag) in [(&one, "one"), (&other, "other")] {
        let admin = store.admin().await;
        let dev = store.user(&admin, "dev", "org-dev", "developer").await;
        for n in 0..2u8 {
            store
                .ok(
                    "POST",
                    "/api/versions",
                    Some(&dev.token),
                    Some(json!({
                        "algorithm": format!("{tag}{n}"), "source": "https://git.example/team/x",
                        "image": format!("registry.example/team/x@{}", Digest::sha256_of(&[n])),
                        "commit": "0123456789abcdef0123456789abcdef01234567",
                        "functions": [{"name": "hello", "kind": "partial"}],
                    })),
                )
                .await;
        }
    }
    let pins = [("rev1.pub", &r1, "org-b"), ("rev2.pub", &r2, "org-c")];
    let config_a = node_of(&w, &w.a, "fork-a", &one, &note_key, &pins, 3600);
    let config_b = node_of(&w, &w.b, "fork-b", &other, &note_key, &pins, 3600);
    let node_a = w.start_node(&config_a).await;
    let node_b = w.start_node(&config_b).await;

    // each node verifies its own view of the store at admission (nothing is approved)
    let input = json!({"function": "hello", "args": null});
    let task = w.create_task(&image, &input, &[&w.a, &w.b]).await;
    for run in &task.runs {
        let r = w.wait_final(run.id, Duration::from_secs(60)).await;
        assert_eq!(r.state, RunState::Rejected, "{:?}", r.reason);
        assert!(
            r.reason
                .as_deref()
                .unwrap()
                .contains("0 distinct pinned reviewer(s)"),
            "{:?}",
            r.reason
        );
    }

    // through the server each node gets the other's checkpoint: a fork, found at both
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for config in [&config_a, &config_b] {
        let marker = config
            .parent()
            .unwrap()
            .join("spool/stores/community/refused");
        while !marker.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not find the fork",
                config.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let why = std::fs::read_to_string(&marker).unwrap();
        assert!(why.contains("forks from this node's"), "{why}");
        let log =
            std::fs::read_to_string(config.parent().unwrap().join("audit/audit.log")).unwrap();
        let refusal = log
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter_map(|l| l.get("record").cloned())
            .find(|r| r["event"] == "store_refused")
            .unwrap_or_else(|| panic!("no store_refused record in {log}"));
        assert_eq!(refusal["outcome"], "rejected");
        let reason = refusal["reason"].as_str().unwrap();
        assert!(
            reason.contains("store `community` is refused") && reason.contains("forks"),
            "{reason}"
        );
    }

    // the next run is rejected at both nodes with the reason, before anything runs
    let task = w.create_task(&image, &input, &[&w.a, &w.b]).await;
    for (run, config) in task.runs.iter().zip([&config_a, &config_b]) {
        refused(&w, config, run.id, "was refused before", None).await;
    }
    node_a.stop().await;
    node_b.stop().await;
}

/// An image archive as `warden image export` writes it (crates/cli/src/image_archive.rs), as a
/// layout folder: the image from the registry and the store's evidence for its digest, with a
/// consistency proof from `since`; `alter` changes the evidence before it is carried.
async fn exported(
    dir: &Path,
    image: &str,
    store: &Store,
    since: Option<u64>,
    alter: impl FnOnce(&mut warden_api::store::ExportedEvidence),
) -> Client {
    use warden_registry::layout::{self, LayoutWriter, OciLayout, STORE_EVIDENCE_ARTIFACT};
    let reference = warden_reference::Reference::parse(image).unwrap();
    let registry = Client::new(ClientOptions::default()).unwrap();
    let mut w = LayoutWriter::create(dir).unwrap();
    let out = layout::export(&registry, &reference, &mut w).await.unwrap();
    let evidence: warden_api::store::Evidence = serde_json::from_value(
        store
            .ok("GET", &format!("/api/evidence/{}", out.digest), None, None)
            .await,
    )
    .unwrap();
    let mut consistency = Vec::new();
    if let Some(from) = since.filter(|f| *f != evidence.size) {
        let p = store
            .ok(
                "GET",
                &format!(
                    "/api/log/proof/consistency?from={from}&to={}",
                    evidence.size
                ),
                None,
                None,
            )
            .await;
        consistency.push(serde_json::from_value(p).unwrap());
    }
    let mut carried = warden_api::store::ExportedEvidence {
        evidence,
        consistency,
    };
    alter(&mut carried);
    w.add_referrer(
        reference.repository(),
        &out.descriptor,
        STORE_EVIDENCE_ARTIFACT,
        &serde_json::to_vec(&carried).unwrap(),
        Default::default(),
    )
    .unwrap();
    let dir = w.finish().unwrap();
    Client::layout(OciLayout::open(&dir).unwrap(), ClientOptions::default()).unwrap()
}

fn saved_size(config: &Path) -> u64 {
    let note = std::fs::read_to_string(
        config
            .parent()
            .unwrap()
            .join("spool/stores/community/checkpoint"),
    )
    .unwrap();
    note.lines().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_node_verifies_the_store_evidence_an_archive_carries() {
    let mut w = World::new().await;
    let (repo, digest) = w.push_program_with("identify", "approved", "v1", &[("/id.txt", b"air")]);
    let image = format!("{repo}:v1");
    let store = Store::start_with(2).await;
    let admin = store.admin().await;
    let dev = store.user(&admin, "dev", "org-dev", "developer").await;
    let r1 = store.user(&admin, "rev1", "org-b", "reviewer").await;
    let r2 = store.user(&admin, "rev2", "org-c", "reviewer").await;
    let info = store.ok("GET", "/api/store", None, None).await;
    let note_key = info["note_key"].as_str().unwrap().to_owned();
    let v = store
        .ok(
            "POST",
            "/api/versions",
            Some(&dev.token),
            Some(json!({
                "algorithm": "identify", "source": "https://git.example/team/identify",
                "image": format!("{repo}@{digest}"),
                "commit": "0123456789abcdef0123456789abcdef01234567",
                "functions": [{"name": "hello", "kind": "partial"}],
            })),
        )
        .await;
    let id = v["id"].as_i64().unwrap();
    for r in ["rev1", "rev2"] {
        store
            .ok(
                "POST",
                &format!("/api/versions/{id}/assign"),
                Some(&admin),
                Some(json!({"reviewer": r})),
            )
            .await;
    }
    store.decide(&r1, &v, Decision::Approve).await;
    store.decide(&r2, &v, Decision::Approve).await;
    let pins = [("rev1.pub", &r1, "org-b"), ("rev2.pub", &r2, "org-c")];
    // The node's store URL leads nowhere: an offline node never asks the store.
    let config = node(&w, "node-offline-store", &store, &note_key, &pins, 3600);
    let gate = gate(&config, "http://127.0.0.1:9").offline(true);
    let dir = w.dir.path().to_owned();
    let import = |c: Client| {
        let gate = &gate;
        let image = image.clone();
        async move {
            let checked = gate.precheck(&image, &Requester::default()).unwrap();
            gate.admit_import(&c, checked).await.map_err(|r| r.reason)
        }
    };

    // An archive whose checkpoint was altered (the root of another log): refused.
    let forged = exported(&dir.join("forged"), &image, &store, None, |e| {
        e.evidence.checkpoint = e.evidence.checkpoint.replacen('\n', "\n\n", 1);
    })
    .await;
    let e = import(forged).await.unwrap_err();
    assert!(e.contains("checkpoint is refused"), "{e}");
    // An approval's leaf changed: its inclusion proof fails, it counts for nothing.
    let changed = exported(&dir.join("changed"), &image, &store, None, |e| {
        let entry = e
            .evidence
            .entries
            .iter_mut()
            .find(|x| x.kind.as_str() == "approval")
            .unwrap();
        let mut leaf = STANDARD.decode(&entry.leaf).unwrap();
        let last = leaf.len() - 2;
        leaf[last] ^= 1;
        entry.leaf = STANDARD.encode(leaf);
    })
    .await;
    let e = import(changed).await.unwrap_err();
    assert!(e.contains("1 distinct pinned reviewer(s)"), "{e}");

    // The archive as exported: both approvals verify at the node, which saves the checkpoint.
    let first = exported(&dir.join("first"), &image, &store, None, |_| {}).await;
    let admitted = import(first).await.unwrap();
    assert_eq!(admitted.digest(), &digest);
    assert_eq!(admitted.evidence().approvals().len(), 2);
    let size = saved_size(&config);
    // A run decides again from the same evidence, without a store.
    let again = exported(&dir.join("again"), &image, &store, None, |_| {}).await;
    let checked = gate.precheck(&image, &Requester::default()).unwrap();
    gate.admit(&again, checked).await.unwrap();

    // The store's log grows (a revocation): an archive without a proof from the size the node
    // saved is refused, and says what to export.
    store.decide(&r2, &v, Decision::Revoke).await;
    let unproven = exported(&dir.join("unproven"), &image, &store, None, |_| {}).await;
    let e = import(unproven).await.unwrap_err();
    assert!(
        e.contains(&format!("--store-since community={size}")),
        "{e}"
    );
    // A proof that does not hold: the store is refused as a forked history.
    let bogus = exported(&dir.join("bogus"), &image, &store, Some(size), |e| {
        for p in &mut e.consistency {
            for h in &mut p.hashes {
                *h = "00".repeat(32);
            }
        }
    })
    .await;
    let e = import(bogus).await.unwrap_err();
    assert!(e.contains("refused"), "{e}");
    let marker = config
        .parent()
        .unwrap()
        .join("spool/stores/community/refused");
    assert!(marker.exists());
    std::fs::remove_file(&marker).unwrap();
    // With the proof: the revocation reaches the offline node, which denies the image.
    let proven = exported(&dir.join("proven"), &image, &store, Some(size), |_| {}).await;
    let e = import(proven).await.unwrap_err();
    assert!(e.contains("store `community` revoked it"), "{e}");
    assert!(saved_size(&config) > size);
    // The first archive again, from before the revocation: older than what the node saw.
    let old_first = {
        use warden_registry::layout::OciLayout;
        Client::layout(
            OciLayout::open(&dir.join("first")).unwrap(),
            ClientOptions::default(),
        )
        .unwrap()
    };
    let e = import(old_first).await.unwrap_err();
    assert!(e.contains("could miss a revocation"), "{e}");
}
