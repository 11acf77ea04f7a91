//! The algorithm store as a real process (`warden store start`) driven by the real `warden`
//! binary: the issue's minimal configuration with relative paths, configuration errors with
//! file and line, a tag resolved once against a real registry, reviews signed locally with key
//! files, and `warden store log verify` against a database rewritten to drop an entry, an entry
//! whose envelope was altered, and a forged saved checkpoint.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use warden_trust::keyfile::ScryptParams;
use warden_trust::{KeyAlgorithm, SigningKey};

const BIN: &str = env!("CARGO_BIN_EXE_warden");
const PW: &str = "a long enough password";
const KEY_PW: &str = "key file password";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const FAST: ScryptParams = ScryptParams {
    log_n: 4,
    r: 8,
    p: 1,
};

struct Store {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_key(path: &Path) -> SigningKey {
    let k = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    std::fs::write(
        path,
        k.to_encrypted_pem_with(KEY_PW.as_bytes(), FAST).unwrap(),
    )
    .unwrap();
    std::fs::write(path.with_extension("pub"), k.public_key().to_pem()).unwrap();
    k
}

/// The issue's minimal configuration, relative paths, on a free port.
fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let port = free_port();
    let config = dir.join("store.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"sqlite://store.db\"\n[bootstrap]\nadmin_password_file = \"admin.pw\"     # the administrator's user name is \"admin\"\n[store]\nname = \"community\"\nsigning_key = \"store.key\"            # the checkpoint key (encrypted key file); password_file beside it\npassword_file = \"store.pw\"\n{extra}"
        ),
    )
    .unwrap();
    config
}

async fn start(dir: &Path) -> Store {
    let config = dir.join("store.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let port: u16 = text
        .split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("store.log"))
        .unwrap();
    let child = Command::new(BIN)
        .args(["store", "start", "--config", config.to_str().unwrap()])
        .current_dir("/")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let s = Store {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/api/health", s.base)).await {
            if r.status().is_success() {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "store did not start: {}",
            std::fs::read_to_string(dir.join("store.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Store {
    async fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// `warden ...` as the user whose config home is `home`, with `WARDEN_PASSWORD`.
fn warden(home: &Path, password: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("WARDEN_PASSWORD", password)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout {}\nstderr {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn post(base: &str, path: &str, token: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    assert!(st.is_success(), "{path}: {st} {v}");
    v
}

struct Setup {
    _tmp: tempfile::TempDir,
    store: Store,
    homes: PathBuf,
}

/// A store with organizations a, b, c; `dev` in a; `rev-b` in b and `rev-c` in c with key files
/// `rev-b.key` and `rev-c.key`, every user logged in with the CLI and the keys registered.
async fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    write_key(&dir.join("store.key"));
    std::fs::write(dir.join("store.pw"), format!("{KEY_PW}\n")).unwrap();
    std::fs::write(dir.join("admin.pw"), format!("{PW}\n")).unwrap();
    write_config(&dir, "[review]\nmin_approvals = 2\nmin_organizations = 2\n");
    let store = start(&dir).await;
    let homes = tmp.path().join("homes");
    let r: Value = reqwest::Client::new()
        .post(format!("{}/api/auth/login", store.base))
        .json(&json!({"username": "admin", "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = r["access_token"].as_str().unwrap().to_owned();
    for org in ["a", "b", "c"] {
        post(
            &store.base,
            "/api/organizations",
            &admin,
            json!({"name": org}),
        )
        .await;
    }
    for (user, org, role) in [
        ("dev", "a", "developer"),
        ("rev-b", "b", "reviewer"),
        ("rev-c", "c", "reviewer"),
    ] {
        post(
            &store.base,
            "/api/accounts",
            &admin,
            json!({"username": user, "password": PW, "organization": org, "roles": [role]}),
        )
        .await;
        let home = homes.join(user);
        // `--json`: one document naming the store, the account and the profile written, and
        // never a token.
        let out = ok(&warden(
            &home,
            PW,
            &[
                "store",
                "login",
                "--store",
                &store.base,
                "--username",
                user,
                "--json",
            ],
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (&v["store"], &v["username"]),
            (&json!("community"), &json!(user))
        );
        assert_eq!(v["url"], store.base.as_str());
        let profile = PathBuf::from(v["profile"].as_str().unwrap());
        assert_eq!(profile, home.join("warden/stores/community.toml"));
        let saved = std::fs::read_to_string(&profile).unwrap();
        assert!(saved.contains(v["note_key"].as_str().unwrap()), "{v}");
        assert!(!out.contains("token"), "{out}");
        if role == "reviewer" {
            let key = homes.join(format!("{user}.key"));
            let k = write_key(&key);
            let public = key.with_extension("pub");
            let out = ok(&warden(
                &home,
                PW,
                &[
                    "store",
                    "register-key",
                    "--store",
                    "community",
                    "--public-key",
                    public.to_str().unwrap(),
                    "--json",
                ],
            ));
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["key_id"], k.public_key().id().to_string());
            assert_eq!(
                (&v["username"], &v["organization"], &v["roles"]),
                (&json!(user), &json!(org), &json!([role]))
            );
            assert_eq!(v["public_key_file"], public.to_str().unwrap());
        }
    }
    ok(&warden(
        &homes.join("admin"),
        PW,
        &[
            "store",
            "login",
            "--store",
            &store.base,
            "--username",
            "admin",
        ],
    ));
    Setup {
        _tmp: tmp,
        store,
        homes,
    }
}

impl Setup {
    fn as_user(&self, user: &str, args: &[&str]) -> Output {
        warden(&self.homes.join(user), KEY_PW, args)
    }
    fn key(&self, user: &str) -> String {
        self.homes
            .join(format!("{user}.key"))
            .to_str()
            .unwrap()
            .to_owned()
    }
    /// Submit `image` and have rev-b and rev-c approve it; the version id.
    fn approved(&self, image: &str) -> i64 {
        let out = ok(&self.as_user(
            "dev",
            &[
                "algorithm",
                "submit",
                "--store",
                "community",
                "--name",
                "mean",
                "--image",
                image,
                "--source",
                "https://git.example/team/mean",
                "--commit",
                COMMIT,
                "--function",
                "central_mean:central:column=string",
                "--function",
                "partial_mean:partial",
                "--json",
            ],
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        let id = v["id"].as_i64().unwrap();
        for (n, r) in ["rev-b", "rev-c"].into_iter().enumerate() {
            let taken = self.version_json(
                r,
                &["review", "take", "--store", "community", &id.to_string()],
            );
            assert_eq!(taken["id"], id);
            assert!(
                taken["assigned"].as_array().unwrap().contains(&json!(r)),
                "{taken}"
            );
            let approved = self.version_json(
                r,
                &[
                    "review",
                    "approve",
                    "--store",
                    "community",
                    &id.to_string(),
                    "--key",
                    &self.key(r),
                    "--comment",
                    "read it",
                ],
            );
            let reviews = approved["reviews"].as_array().unwrap();
            assert_eq!(reviews.len(), n + 1, "{approved}");
            let mine = &reviews[n];
            assert_eq!(
                (&mine["decision"], &mine["reviewer"], &mine["comment"]),
                (&json!("approve"), &json!(r), &json!("read it"))
            );
            assert!(mine["leaf_index"].is_u64(), "{approved}");
        }
        id
    }
    /// `ARGS --json` as `user`: the one JSON document it prints.
    fn version_json(&self, user: &str, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&ok(&self.as_user(user, &args))).unwrap()
    }
    fn db(&self) -> PathBuf {
        self.store.dir.join("store.db")
    }
}

#[test]
fn configuration_errors_name_the_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), "[review]\nmin_approvals = 0\n");
    let o = Command::new(BIN)
        .args(["store", "start", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("store.toml:12:17: key `review.min_approvals`"),
        "{}",
        stderr(&o)
    );
    let config = write_config(tmp.path(), "[review]\nquorum = 3\n");
    let o = Command::new(BIN)
        .args(["store", "start", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("store.toml:12") && stderr(&o).contains("quorum"),
        "{}",
        stderr(&o)
    );
    // A missing key file is refused before the database is created.
    let config = write_config(tmp.path(), "");
    let o = Command::new(BIN)
        .args(["store", "start", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("store.key"), "{}", stderr(&o));
    assert!(!tmp.path().join("store.db").exists());
    // A P-256 key is refused: checkpoints are Ed25519 notes.
    let k = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    std::fs::write(
        tmp.path().join("store.key"),
        k.to_encrypted_pem_with(KEY_PW.as_bytes(), FAST).unwrap(),
    )
    .unwrap();
    std::fs::write(tmp.path().join("store.pw"), KEY_PW).unwrap();
    let o = Command::new(BIN)
        .args(["store", "start", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("must be Ed25519"), "{}", stderr(&o));
}

#[tokio::test]
async fn a_tag_is_resolved_once_reviews_are_signed_locally_and_the_log_verifies() {
    warden_testkit::require_docker().unwrap();
    let registry = warden_testkit::Registry::start().unwrap();
    let image = format!("{}/storetest/mean:1.0", registry.host());
    let pushed = warden_testkit::push_data_image(&image, "store cli test").unwrap();
    let s = setup().await;
    let id = s.approved(&image);
    warden_testkit::remove_images(&[&image]);
    let v: Value = serde_json::from_str(&ok(&s.as_user(
        "dev",
        &[
            "algorithm",
            "show",
            "--store",
            "community",
            &id.to_string(),
            "--json",
        ],
    )))
    .unwrap();
    assert_eq!(v["state"], "approved");
    assert_eq!(
        v["digest"], pushed,
        "the store resolved the tag to the pushed digest"
    );
    assert_eq!(v["tag"], "1.0");
    let list = ok(&s.as_user("dev", &["algorithm", "list", "--store", "community"]));
    assert!(
        list.contains("mean (a)") && list.contains("approved"),
        "{list}"
    );
    // rev-b cannot approve twice; the developer cannot review.
    let again = s.as_user(
        "rev-b",
        &[
            "review",
            "approve",
            "--store",
            "community",
            &id.to_string(),
            "--key",
            &s.key("rev-b"),
        ],
    );
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    // log verify: 1 submission + 2 approvals, saved checkpoint.
    let cp = s.homes.join("cp.txt");
    let out = ok(&s.as_user(
        "dev",
        &[
            "store",
            "log",
            "verify",
            "--store",
            "community",
            "--checkpoint",
            cp.to_str().unwrap(),
        ],
    ));
    assert!(
        out.contains("3 entries") && out.contains("2 approval") && out.contains("1 submission"),
        "{out}"
    );
    // Revoke with the reviewer's key; verify again: consistent with the saved checkpoint.
    ok(&s.as_user(
        "rev-c",
        &[
            "algorithm",
            "revoke",
            "--store",
            "community",
            &id.to_string(),
            "--reason",
            "leaks rows",
            "--key",
            &s.key("rev-c"),
        ],
    ));
    let out = ok(&s.as_user(
        "dev",
        &[
            "store",
            "log",
            "verify",
            "--store",
            "community",
            "--checkpoint",
            cp.to_str().unwrap(),
            "--json",
        ],
    ));
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["size"], 4);
    assert_eq!(r["consistent_with"], 3);
    assert_eq!(r["by_kind"]["revocation"], 1);
}

#[tokio::test]
async fn log_verify_detects_a_rewritten_database_an_altered_entry_and_a_forged_checkpoint() {
    let s = setup().await;
    let repo = "registry.example/team/mean";
    let _ = s.approved(&format!("{repo}@sha256:{}", "ab".repeat(32)));
    let _ = s.approved(&format!("{repo}@sha256:{}", "cd".repeat(32)));
    let cp = s.homes.join("cp.txt");
    let verify = |cp: &Path| {
        s.as_user(
            "dev",
            &[
                "store",
                "log",
                "verify",
                "--store",
                "community",
                "--checkpoint",
                cp.to_str().unwrap(),
            ],
        )
    };
    ok(&verify(&cp));
    let saved = std::fs::read_to_string(&cp).unwrap();

    // A forged saved checkpoint: signed by the store's own key, of the same size, another root.
    let store_key = SigningKey::from_encrypted_pem(
        &std::fs::read_to_string(s.store.dir.join("store.key")).unwrap(),
        KEY_PW.as_bytes(),
    )
    .unwrap();
    let SigningKey::Ed25519(ed) = &store_key else {
        panic!()
    };
    let signer = warden_tlog::NoteSigner::new("warden-store/community", ed.clone()).unwrap();
    let forged = warden_tlog::Checkpoint::new("warden-store/community", 6, [7u8; 32])
        .sign(&signer)
        .unwrap();
    let forged_path = s.homes.join("forged.txt");
    std::fs::write(&forged_path, &forged).unwrap();
    let o = verify(&forged_path);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("not consistent with the saved checkpoint"),
        "{}",
        stderr(&o)
    );
    // A checkpoint nobody pinned signed is refused too.
    std::fs::write(&forged_path, saved.replace("— warden-store", "— other")).unwrap();
    assert_eq!(code(&verify(&forged_path)), 1);

    // The database rewritten to drop entry 1 (an approval), later entries renumbered, hashes
    // kept valid: the store starts and serves a self-consistent log, which only a saved
    // checkpoint shows to be another history.
    let store = s.store;
    let db = store.dir.join("store.db");
    let dir = store.dir.clone();
    store.stop().await;
    warden_testkit::lying::sqlite_exec(&db, "DELETE FROM log_entries WHERE idx = 1; UPDATE log_entries SET idx = idx - 1 WHERE idx > 1;").await.unwrap();
    let store = start(&dir).await;
    let s = Setup { store, ..s };
    let plain = s.as_user("dev", &["store", "log", "verify", "--store", "community"]);
    assert_eq!(
        code(&plain),
        0,
        "without a saved checkpoint the rewritten log is self-consistent: {}",
        stderr(&plain)
    );
    let o = s.as_user(
        "dev",
        &[
            "store",
            "log",
            "verify",
            "--store",
            "community",
            "--checkpoint",
            cp.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("fewer than"), "{}", stderr(&o));
    // One more submission brings the rewritten log back to the saved size: the sizes agree,
    // the consistency proof recomputed from the served entries does not.
    ok(&s.as_user(
        "dev",
        &[
            "algorithm",
            "submit",
            "--store",
            "community",
            "--name",
            "mean",
            "--image",
            &format!("{repo}@sha256:{}", "ef".repeat(32)),
            "--source",
            "https://git.example/team/mean",
            "--commit",
            COMMIT,
            "--function",
            "f:central",
        ],
    ));
    let o = s.as_user(
        "dev",
        &[
            "store",
            "log",
            "verify",
            "--store",
            "community",
            "--checkpoint",
            cp.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("history rewritten or forked"),
        "{}",
        stderr(&o)
    );
    // The saved checkpoint was not replaced by the bad one.
    assert_eq!(std::fs::read_to_string(&cp).unwrap(), saved);

    // An entry's envelope altered in the database with its leaf hash recomputed: the tree is
    // consistent again, but the envelope's signature no longer verifies.
    let entries: Value = reqwest::get(format!("{}/api/log/entries?start=0&end=10", s.store.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let e = &entries["entries"][1];
    let leaf = STANDARD.decode(e["leaf"].as_str().unwrap()).unwrap();
    let mut env: Value = serde_json::from_slice(&leaf).unwrap();
    let payload =
        String::from_utf8(STANDARD.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
    env["payload"] = json!(STANDARD.encode(payload.replace("read it", "read IT")));
    let new_leaf = serde_json::to_vec(&env).unwrap();
    let new_hash = warden_tlog::leaf_hash(&new_leaf);
    let store = s.store;
    let dir = store.dir.clone();
    store.stop().await;
    warden_testkit::lying::sqlite_exec(
        &db,
        &format!(
            "UPDATE log_entries SET leaf = X'{}', leaf_hash = X'{}' WHERE idx = 1;",
            hex::encode(&new_leaf),
            hex::encode(new_hash)
        ),
    )
    .await
    .unwrap();
    let store = start(&dir).await;
    let s = Setup { store, ..s };
    let o = s.as_user("dev", &["store", "log", "verify", "--store", "community"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("log entry 1"), "{}", stderr(&o));
    let _ = s.db();
}

/// `--json` on the store commands that act: login and register-key (in `setup`), review take,
/// approve and reject, and revoke print one document with the fields docs/store.md names, and a
/// refusal keeps its exit status with nothing on stdout.
#[tokio::test]
async fn review_and_revoke_print_the_version_as_one_json_document() {
    // `setup` logs in and registers keys with `--json`, `approved` takes and approves with it.
    let s = setup().await;
    let digest = format!("sha256:{}", "6b".repeat(32));
    let id = s.approved(&format!("registry.example.org/team/mean@{digest}"));
    let v = s.version_json(
        "rev-c",
        &[
            "algorithm",
            "revoke",
            "--store",
            "community",
            &id.to_string(),
            "--reason",
            "leaks rows",
            "--key",
            &s.key("rev-c"),
        ],
    );
    assert_eq!(
        (&v["id"], &v["state"], &v["digest"], &v["reason"]),
        (
            &json!(id),
            &json!("revoked"),
            &json!(digest),
            &json!("leaks rows")
        )
    );
    // The approvals stay on record; the revocation is the state and its reason.
    assert_eq!(v["reviews"].as_array().unwrap().len(), 2, "{v}");

    // One rejection rejects a version.
    let out = ok(&s.as_user(
        "dev",
        &[
            "algorithm",
            "submit",
            "--store",
            "community",
            "--name",
            "mean",
            "--image",
            &format!("registry.example.org/team/mean@sha256:{}", "7c".repeat(32)),
            "--source",
            "https://git.example/team/mean",
            "--commit",
            COMMIT,
            "--function",
            "partial_mean:partial",
            "--json",
        ],
    ));
    let other = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();
    let v = s.version_json(
        "rev-b",
        &["review", "take", "--store", "community", &other.to_string()],
    );
    assert!(
        v["assigned"].as_array().unwrap().contains(&json!("rev-b")),
        "{v}"
    );
    let v = s.version_json(
        "rev-b",
        &[
            "review",
            "reject",
            "--store",
            "community",
            &other.to_string(),
            "--key",
            &s.key("rev-b"),
            "--comment",
            "prints raw rows",
        ],
    );
    assert_eq!((&v["id"], &v["state"]), (&json!(other), &json!("rejected")));
    assert_eq!(v["reviews"][0]["decision"], "reject", "{v}");
    assert_eq!(v["reviews"][0]["comment"], "prints raw rows", "{v}");

    // A refusal exits as without --json, with the error on stderr and nothing on stdout.
    let again = s.as_user(
        "rev-b",
        &[
            "review",
            "approve",
            "--store",
            "community",
            &other.to_string(),
            "--key",
            &s.key("rev-b"),
            "--json",
        ],
    );
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    assert!(again.stdout.is_empty(), "{again:?}");
}

/// `warden policy check --node-config` checks `approved_by` against the store as the node does
/// (the node configuration's pinned store and reviewer keys, its saved checkpoint): approved by
/// reviewers of two organizations allows, a revocation denies with the reason; the digest must
/// be given; without the node configuration the condition is not evaluated.
#[tokio::test]
async fn policy_check_with_the_node_config_checks_approvals_as_the_node_does() {
    let s = setup().await;
    let digest = format!("sha256:{}", "5a".repeat(32));
    let image = format!("registry.example.org/team/mean@{digest}");
    let id = s.approved(&image);
    let info: Value = reqwest::get(format!("{}/api/store", s.store.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let node = s.homes.join("node");
    std::fs::create_dir_all(node.join("reviewers")).unwrap();
    for r in ["rev-b", "rev-c"] {
        std::fs::copy(
            s.homes.join(format!("{r}.pub")),
            node.join(format!("reviewers/{r}.pub")),
        )
        .unwrap();
    }
    std::fs::write(
        node.join("policy.toml"),
        "version = 1\n[[allow]]\nrepository = \"registry.example.org/team/mean\"\napproved_by = { store = \"community\", reviewers = [\"reviewers/*.pub\"], min_approvals = 2, min_organizations = 2 }\n",
    )
    .unwrap();
    std::fs::write(
        node.join("node.toml"),
        format!(
            r#"[server]
url = "http://127.0.0.1:9"
api_key_file = "node.key"
[node]
policy = "policy.toml"
secret_key = "org.key"
spool_dir = "spool"
probe = "probe"
name = "policy-check"
[audit]
dir = "audit"
signing_key = "audit.key"
password_file = "audit.pw"
[[stores]]
name = "community"
url = "{}"
note_key = "{}"
[[stores.reviewers]]
key = "reviewers/rev-b.pub"
organization = "b"
[[stores.reviewers]]
key = "reviewers/rev-c.pub"
organization = "c"
"#,
            s.store.base,
            info["note_key"].as_str().unwrap()
        ),
    )
    .unwrap();
    let policy = node.join("policy.toml");
    let config = node.join("node.toml");
    let check = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        args.push("registry.example.org/team/mean");
        s.as_user("dev", &args)
    };
    let out = check(&[
        "--node-config",
        config.to_str().unwrap(),
        "--digest",
        &digest,
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["approved_by"], "evaluated");
    let entries = v["stores"][0]["entries"].as_array().unwrap();
    let counted: Vec<&str> = entries
        .iter()
        .filter(|e| e["counted"] == true)
        .map(|e| e["organization"].as_str().unwrap())
        .collect();
    assert_eq!(counted, ["b", "c"], "{v}");
    assert!(
        node.join("spool/stores/community/checkpoint").exists(),
        "the node's checkpoint is saved, as the node saves it"
    );

    // the digest is needed
    let out = check(&["--node-config", config.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{out:?}");
    assert!(stderr(&out).contains("give --digest"), "{}", stderr(&out));

    // offline: not evaluated, undecided
    let out = check(&["--digest", &digest]);
    assert_eq!(code(&out), 1, "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "undecided", "{v}");

    // revoked: denied with the reason
    ok(&s.as_user(
        "rev-c",
        &[
            "algorithm",
            "revoke",
            "--store",
            "community",
            &id.to_string(),
            "--reason",
            "leaks rows",
            "--key",
            &s.key("rev-c"),
        ],
    ));
    let out = check(&[
        "--node-config",
        config.to_str().unwrap(),
        "--digest",
        &digest,
    ]);
    assert_eq!(code(&out), 1, "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "deny", "{v}");
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("store `community` revoked it"),
        "{v}"
    );
}

/// `warden review approve --rebuild`: the reviewer's own rebuild of the version's commit must
/// give the version's digest; the signed approval then records it (`rebuilt` in the log leaf).
/// A version whose image was made from a patched binary (naming the same commit) is refused,
/// naming the layer and file, and no review is signed.
#[tokio::test]
async fn approve_with_rebuild_signs_only_a_reproduced_digest_and_records_it() {
    use warden_build::image::{self, File, ImageSpec};
    let registry = warden_testkit::Registry::start().unwrap();
    let s = setup().await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("algo/hello")).unwrap();
    std::fs::write(
        src.join("algo/hello/hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(&src)
            .args(args)
            .env("GIT_AUTHOR_NAME", "a")
            .env("GIT_AUTHOR_EMAIL", "a@example.org")
            .env("GIT_COMMITTER_NAME", "a")
            .env("GIT_COMMITTER_EMAIL", "a@example.org")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_owned()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "hello"]);
    let commit = git(&["rev-parse", "HEAD"]);
    let uri = "https://git.example/team/hello";
    let cache = work.path().join("cache");
    let image_ref = format!("{}/team/hello:1.0", registry.host());
    ok(&s.as_user(
        "dev",
        &[
            "algorithm",
            "build",
            "--source",
            src.to_str().unwrap(),
            "--commit",
            &commit,
            "--path",
            "algo/hello",
            "--image",
            &image_ref,
            "--source-uri",
            uri,
            "--push",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    ));
    let submit = |image: &str, version: &str| -> i64 {
        let v: Value = serde_json::from_str(&ok(&s.as_user(
            "dev",
            &[
                "algorithm",
                "submit",
                "--store",
                "community",
                "--name",
                "hello",
                "--image",
                image,
                "--source",
                uri,
                "--commit",
                &commit,
                "--version",
                version,
                "--function",
                "main:central",
                "--json",
            ],
        )))
        .unwrap();
        v["id"].as_i64().unwrap()
    };
    let approve = |user: &str, id: i64| {
        s.version_json(
            user,
            &["review", "take", "--store", "community", &id.to_string()],
        );
        s.as_user(
            user,
            &[
                "review",
                "approve",
                "--store",
                "community",
                &id.to_string(),
                "--key",
                &s.key(user),
                "--rebuild",
                "--path",
                "algo/hello",
                "--source",
                src.to_str().unwrap(),
                "--json",
            ],
        )
    };

    let id = submit(&image_ref, "1.0");
    let o = approve("rev-b", id);
    let v: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert!(stderr(&o).contains("the digest matches"), "{}", stderr(&o));
    let leaf = v["reviews"][0]["leaf_index"].as_u64().unwrap();
    let entries: Value = reqwest::get(format!(
        "{}/api/log/entries?start={leaf}&end={}",
        s.store.base,
        leaf + 1
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let envelope = STANDARD
        .decode(entries["entries"][0]["leaf"].as_str().unwrap())
        .unwrap();
    let (_, review) = warden_trust::review::parse_review_envelope(&envelope).unwrap();
    assert_eq!(
        review.predicate.rebuilt,
        Some(warden_trust::review::Rebuilt {
            path: "algo/hello".into()
        })
    );
    assert_eq!(review.predicate.source_commit, commit);

    // A patched binary, pushed as 1.1 and submitted naming the same commit: refused.
    let mut patched = std::fs::read(cache.join("target/c/hello")).unwrap();
    let at = patched.len() / 2;
    patched[at] ^= 1;
    let epoch: i64 = git(&["show", "-s", "--format=%ct", &commit])
        .parse()
        .unwrap();
    let evil = image::assemble(&ImageSpec {
        files: vec![File {
            path: "hello".into(),
            bytes: patched,
            mode: 0o755,
        }],
        entrypoint: vec!["/hello".into()],
        epoch,
        source_uri: uri.into(),
        revision: commit.clone(),
        path: "algo/hello".into(),
    });
    let repository =
        warden_reference::Repository::parse(&format!("{}/team/hello", registry.host())).unwrap();
    let client = warden_registry::Client::new(warden_registry::ClientOptions::default()).unwrap();
    warden_build::publish::push(&client, &repository, "1.1", &evil)
        .await
        .unwrap();
    let id2 = submit(&format!("{}/team/hello:1.1", registry.host()), "1.1");
    let o = approve("rev-c", id2);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("not approving: your rebuild of commit") && e.contains("layer 0, file hello"),
        "{e}"
    );
    let v = s.version_json(
        "dev",
        &[
            "algorithm",
            "show",
            "--store",
            "community",
            &id2.to_string(),
        ],
    );
    assert_eq!(v["reviews"].as_array().unwrap().len(), 0, "{v}");
}
