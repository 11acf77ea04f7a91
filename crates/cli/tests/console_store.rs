//! `warden ui --store` (issue 12): the administrator's page of the algorithm store's algorithms
//! and each version's review state, against a real store process (`warden store start`) whose
//! versions were submitted, taken and reviewed with the real `warden` binary and key files: one
//! approved, one rejected with a comment that holds HTML (shown as text), one only submitted.
//! Without a store the page says what is missing; an unreachable store is a 502 that says why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod browser;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
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
const HTML: &str = "<script>alert('c')</script><b>no tests</b>";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_key(path: &Path) {
    let k = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    std::fs::write(
        path,
        k.to_encrypted_pem_with(KEY_PW.as_bytes(), FAST).unwrap(),
    )
    .unwrap();
    std::fs::write(path.with_extension("pub"), k.public_key().to_pem()).unwrap();
}

/// `warden ARGS` as the user whose config home is `home`; its output, which must succeed.
fn warden(home: &Path, password: &str, args: &[&str]) -> String {
    let o: Output = Command::new(BIN)
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("WARDEN_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "warden {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn post(base: &str, path: &str, token: &str, body: Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status();
    assert!(st.is_success(), "{path}: {st} {}", r.text().await.unwrap());
}

/// A store on a free port with organizations a and b, `dev` (developer, a), `rev-b`
/// (reviewer, b, key registered), one approval from one organization enough; the store process
/// and its URL.
async fn store(dir: &Path, homes: &Path) -> (Killed, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_key(&dir.join("store.key"));
    std::fs::write(dir.join("store.pw"), format!("{KEY_PW}\n")).unwrap();
    std::fs::write(dir.join("admin.pw"), format!("{PW}\n")).unwrap();
    let config = dir.join("store.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"sqlite://store.db\"\n\
             [bootstrap]\nadmin_password_file = \"admin.pw\"\n[store]\nname = \"community\"\n\
             signing_key = \"store.key\"\npassword_file = \"store.pw\"\n\
             [review]\nmin_approvals = 1\nmin_organizations = 1\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("store.log")).unwrap();
    let child = Killed(
        Command::new(BIN)
            .args(["store", "start", "--config", config.to_str().unwrap()])
            .current_dir("/")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(format!("{base}/api/health"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "the store did not start: {}",
            std::fs::read_to_string(dir.join("store.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": "admin", "password": PW}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = r["access_token"].as_str().unwrap().to_owned();
    for org in ["a", "b"] {
        post(&base, "/api/organizations", &admin, json!({"name": org})).await;
    }
    for (user, org, role) in [("dev", "a", "developer"), ("rev-b", "b", "reviewer")] {
        post(
            &base,
            "/api/accounts",
            &admin,
            json!({"username": user, "password": PW, "organization": org, "roles": [role]}),
        )
        .await;
        let home = homes.join(user);
        warden(
            &home,
            PW,
            &["store", "login", "--store", &base, "--username", user],
        );
        if role == "reviewer" {
            let key = homes.join(format!("{user}.key"));
            write_key(&key);
            let public = key.with_extension("pub");
            warden(
                &home,
                PW,
                &[
                    "store",
                    "register-key",
                    "--store",
                    "community",
                    "--public-key",
                    public.to_str().unwrap(),
                ],
            );
        }
    }
    warden(
        &homes.join("admin"),
        PW,
        &["store", "login", "--store", &base, "--username", "admin"],
    );
    (child, base)
}

/// `dev` submits version `version` of `mean` at `digest`; its id.
fn submit(homes: &Path, version: &str, digest: &str) -> i64 {
    let out = warden(
        &homes.join("dev"),
        KEY_PW,
        &[
            "algorithm",
            "submit",
            "--store",
            "community",
            "--name",
            "mean",
            "--version",
            version,
            "--image",
            &format!("registry.example.org/team/mean@sha256:{digest}"),
            "--source",
            "https://git.example/team/mean",
            "--commit",
            COMMIT,
            "--function",
            "partial_mean:partial",
            "--json",
        ],
    );
    serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// `rev-b` takes version `id` and approves or rejects it with `comment`.
fn review(homes: &Path, id: i64, decision: &str, comment: &str) {
    let home = homes.join("rev-b");
    let id = id.to_string();
    warden(
        &home,
        KEY_PW,
        &["review", "take", "--store", "community", &id],
    );
    let key = homes.join("rev-b.key");
    warden(
        &home,
        KEY_PW,
        &[
            "review",
            decision,
            "--store",
            "community",
            &id,
            "--key",
            key.to_str().unwrap(),
            "--comment",
            comment,
        ],
    );
}

/// `warden ui ARGS` as the user whose config home is `home`: the process, its base URL, a
/// logged-in client with its cookie, and the launch address (for a browser).
async fn ui(
    home: &Path,
    args: &[&str],
) -> (
    tokio::process::Child,
    String,
    reqwest::Client,
    String,
    String,
) {
    let mut child = tokio::process::Command::new(BIN)
        .arg("ui")
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("WARDEN_PASSWORD")
        .env_remove("WARDEN_PROFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("warden ui printed its address");
    let base = url.split("/login?").next().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (child, base, http, cookie, url)
}

async fn page(http: &reqwest::Client, cookie: &str, url: &str) -> (u16, String) {
    let r = http.get(url).header("cookie", cookie).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The `<tr data-version=ID>` row of a page.
fn row(page: &str, id: i64) -> &str {
    let at = page
        .find(&format!("<tr data-version=\"{id}\">"))
        .unwrap_or_else(|| panic!("no row of version {id}: {page}"));
    let rest = &page[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_sees_the_stores_algorithms_and_each_versions_review_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let homes: PathBuf = tmp.path().join("homes");
    let (_store, base) = store(&dir, &homes).await;
    let approved = submit(&homes, "1.0", &"6b".repeat(32));
    review(&homes, approved, "approve", "read it");
    let rejected = submit(&homes, "1.1", &"7c".repeat(32));
    review(&homes, rejected, "reject", HTML);
    let waiting = submit(&homes, "1.2", &"8d".repeat(32));

    let admin = homes.join("admin");
    let (_ui, ui_base, http, cookie, ui_url) = ui(&admin, &["--store", "community"]).await;
    let (status, home) = page(&http, &cookie, &format!("{ui_base}/")).await;
    assert_eq!(status, 200, "{home}");
    assert!(home.contains("href=\"/admin/algorithms\""), "{home}");
    let (status, text) = page(&http, &cookie, &format!("{ui_base}/admin/algorithms")).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("data-algorithm=\"mean\""), "{text}");
    let r = row(&text, approved);
    assert!(
        r.contains("approved")
            && r.contains("rev-b (b): <strong>approve</strong>")
            && r.contains("read it")
            && r.contains(&"6b".repeat(32))
            && r.contains("dev (a)"),
        "{r}"
    );
    let r = row(&text, rejected);
    assert!(
        r.contains(">rejected<") && r.contains("<strong>reject</strong>"),
        "{r}"
    );
    // The comment is the reviewer's words: text, never markup.
    assert!(
        r.contains("&lt;script&gt;alert('c')&lt;/script&gt;&lt;b&gt;no tests&lt;/b&gt;"),
        "{r}"
    );
    assert!(
        !text.contains("<script>") && !text.contains("<b>"),
        "{text}"
    );
    let r = row(&text, waiting);
    assert!(r.contains(">submitted<") && r.contains("none yet"), "{r}");

    // In Chromium: the comment is text (no element made of it, no script run), the page is a
    // screenshot of docs/ui.md, and at a phone's 390 px it fits the width.
    {
        let b = browser::browser().await;
        let c = &b.client;
        c.goto(&ui_url).await.unwrap();
        c.goto(&format!("{ui_base}/admin/algorithms"))
            .await
            .unwrap();
        let main = browser::main_text(c).await;
        assert!(main.contains(HTML) && main.contains("approved"), "{main}");
        assert!(
            c.find_all(fantoccini::Locator::Css("main b, main script"))
                .await
                .unwrap()
                .is_empty()
        );
        browser::shot(c, "admin-algorithms").await;
        drop(b);
        let narrow = browser::browser_sized(390, 844).await;
        narrow.client.goto(&ui_url).await.unwrap();
        browser::fits(&narrow.client, &format!("{ui_base}/admin/algorithms")).await;
    }

    // A store that does not answer: 502 and why; no store given: what is missing.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (_ui2, b2, h2, c2, _) = ui(&admin, &["--store", &dead_url]).await;
    let (status, text) = page(&h2, &c2, &format!("{b2}/admin/algorithms")).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("cannot reach the store"), "{text}");
    let socket = tmp.path().join("no.sock").display().to_string();
    let (_ui3, b3, h3, c3, _) = ui(&admin, &["--node-socket", &socket]).await;
    let (status, text) = page(&h3, &c3, &format!("{b3}/admin/algorithms")).await;
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains("started without a store (--store NAME|URL)"),
        "{text}"
    );
    assert!(!text.contains("href=\"/admin/algorithms\""), "{text}");
    let _ = base;
}
