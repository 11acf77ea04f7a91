//! `warden login|logout|whoami`, `warden admin ...`, `warden completions` and `warden man` as
//! an operator runs them: the real binary against the real server (in this process on port 0,
//! SQLite in a temporary folder). Profiles and sessions go to the test's own XDG_CONFIG_HOME,
//! never the real home.

// Test helpers: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tempfile::TempDir;
use warden_server::RunningServer;
use warden_server::config::{AuthConfig, LimitsConfig};
use warden_server::storage::ConnectOptions;

const BIN: &str = env!("CARGO_BIN_EXE_warden");
const ADMIN_PASSWORD: &str = "admin password for tests";
const PASSWORD: &str = "a long enough password";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self}"))
    }

    #[track_caller]
    fn ok(self) -> Out {
        assert_eq!(self.code, 0, "{self}");
        self
    }

    /// Exit `code`, `needle` on stderr, nothing on stdout.
    #[track_caller]
    fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "wanted exit {code}: {self}");
        assert!(self.stderr.contains(needle), "wanted `{needle}`: {self}");
        assert!(self.stdout.is_empty(), "{self}");
    }
}

struct World {
    _server: RunningServer,
    base: String,
    dir: TempDir,
    http: reqwest::Client,
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("server.db").display());
        let options = ConnectOptions {
            max_connections: 4,
            ..ConnectOptions::default()
        };
        let service = warden_server::open(
            &url,
            dir.path(),
            &options,
            AuthConfig::default(),
            LimitsConfig::default(),
        )
        .await
        .unwrap();
        let pw = dir.path().join("admin.pw");
        std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
        std::fs::write(dir.path().join("user.pw"), format!("{PASSWORD}\n")).unwrap();
        warden_server::bootstrap(&service, Some(&pw)).await.unwrap();
        let server = warden_server::serve("127.0.0.1:0".parse().unwrap(), service)
            .await
            .unwrap();
        World {
            base: format!("http://{}", server.addr),
            _server: server,
            dir,
            http: reqwest::Client::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_home(&self) -> PathBuf {
        self.path("config")
    }

    /// Runs `warden ARGS` in the world's folder with its own XDG_CONFIG_HOME.
    async fn warden(&self, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(BIN)
            .current_dir(self.dir.path())
            .args(args)
            .env_remove("WARDEN_PASSWORD")
            .env_remove("WARDEN_PROFILE")
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_STATE_HOME", self.path("state"))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `warden login` as `user` into profile `profile`, with the password file.
    async fn login(&self, profile: &str, user: &str, pw_file: &str) -> Out {
        self.warden(&[
            "login",
            "--server",
            &self.base,
            "--username",
            user,
            "--password-file",
            pw_file,
            "--profile",
            profile,
        ])
        .await
    }

    /// `warden ARGS --profile admin --json` (the top-level spellings `warden org|collab|user`
    /// and `warden node create|list|rotate-key`; `node show ID` only as `warden admin node
    /// show`), parsed.
    async fn admin_json(&self, args: &[&str]) -> Value {
        let mut all = if args.starts_with(&["node", "show"]) {
            vec!["admin"]
        } else {
            vec![]
        };
        all.extend_from_slice(args);
        all.extend_from_slice(&["--profile", "admin", "--json"]);
        self.warden(&all).await.ok().json()
    }

    /// An X25519 key pair from `warden keys generate`; returns the .pub path.
    async fn org_key(&self, name: &str) -> String {
        let key = format!("{name}.key");
        self.warden(&["keys", "generate", "--kind", "x25519", "--out", &key])
            .await
            .ok();
        format!("{key}.pub")
    }

    async fn status(&self, method: reqwest::Method, path: &str, token: &str) -> u16 {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Runs SQL against the server's database, as its operator (or an intruder) could.
    fn tamper(&self, sql: &str) {
        let out = std::process::Command::new("sqlite3")
            .arg(self.path("server.db"))
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_keeps_a_private_session_whoami_uses_it_and_logout_ends_it_at_the_server() {
    let w = World::new().await;
    let out = w.login("admin", "admin", "admin.pw").await.ok();
    assert!(
        out.stdout.contains("logged in to") && out.stdout.contains("as admin (root)"),
        "{out}"
    );

    let dir = w.config_home().join("warden");
    let profile = dir.join("admin.toml");
    let session = dir.join("admin.session");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&profile), 0o600);
    assert_eq!(mode(&session), 0o600);
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains(&format!("url = \"{}\"", w.base)), "{text}");
    let kept = std::fs::read_to_string(&session).unwrap();
    for file in [&text, &kept] {
        assert!(
            !file.contains(ADMIN_PASSWORD),
            "the password is never written: {file}"
        );
    }
    let kept: Value = serde_json::from_str(&kept).unwrap();
    let access = kept["access_token"].as_str().unwrap().to_owned();
    let refresh = kept["refresh_token"].as_str().unwrap().to_owned();

    // whoami needs no password: the session is used.
    let me = w
        .warden(&["whoami", "--profile", "admin", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(me["username"], "admin");
    assert_eq!(me["role"], "root");
    assert_eq!(me["server"], w.base.as_str());
    let text = w.warden(&["whoami", "--profile", "admin"]).await.ok();
    assert!(text.stdout.starts_with("admin (user 1, root)"), "{text}");
    // WARDEN_PROFILE chooses the profile when --profile is absent.
    let by_env = tokio::process::Command::new(BIN)
        .args(["whoami", "--json"])
        .env("XDG_CONFIG_HOME", w.config_home())
        .env("WARDEN_PROFILE", "admin")
        .output()
        .await
        .unwrap();
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );

    // Logging in again keeps the profile's other sections and comments.
    std::fs::write(
        &profile,
        format!(
            "{text}\n# mine\n[collaboration]\nname = \"x\"\n",
            text = std::fs::read_to_string(&profile).unwrap()
        ),
    )
    .unwrap();
    w.login("admin", "admin", "admin.pw").await.ok();
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(
        text.contains("# mine") && text.contains("[collaboration]"),
        "{text}"
    );
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&session).unwrap()).unwrap();
    let access2 = kept["access_token"].as_str().unwrap().to_owned();
    let refresh2 = kept["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(access, access2);
    assert_ne!(refresh, refresh2);

    // logout revokes the session at the server, not only here.
    let out = w.warden(&["logout", "--profile", "admin"]).await.ok();
    assert!(out.stdout.contains("ended at the server"), "{out}");
    assert!(!session.exists());
    assert_eq!(
        w.status(reqwest::Method::GET, "/api/auth/whoami", &access2)
            .await,
        401
    );
    let refreshed = w
        .http
        .post(format!("{}/api/auth/refresh", w.base))
        .json(&json!({"refresh_token": refresh2}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status().as_u16(), 401);
    // ... and afterwards the profile says how to log in again.
    w.warden(&["whoami", "--profile", "admin"])
        .await
        .fails(2, "warden login --server");
    w.warden(&["logout", "--profile", "admin"])
        .await
        .fails(2, "nothing to log out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_server_ended_says_to_log_in_again_and_a_wrong_password_is_refused() {
    let w = World::new().await;
    // A wrong password: refused (1) with the server's reason; no profile written.
    std::fs::write(w.path("wrong.pw"), "not the password\n").unwrap();
    w.login("admin", "admin", "wrong.pw")
        .await
        .fails(1, "login as `admin` refused");
    assert!(!w.config_home().join("warden/admin.toml").exists());

    w.login("admin", "admin", "admin.pw").await.ok();
    let pubkey = w.org_key("org-a").await;
    w.admin_json(&["org", "create", "--name", "org-a", "--public-key", &pubkey])
        .await;
    w.admin_json(&[
        "user",
        "create",
        "--username",
        "oa",
        "--role",
        "org_admin",
        "--org",
        "org-a",
        "--password-file",
        "user.pw",
    ])
    .await;
    w.login("oa", "oa", "user.pw").await.ok();
    // The admin resets oa's password: every session of oa ends at once.
    w.admin_json(&[
        "user",
        "reset-password",
        "oa",
        "--password-file",
        "admin.pw",
    ])
    .await;
    let ended = w.warden(&["whoami", "--profile", "oa"]).await;
    ended.fails(2, "has ended");
    assert!(
        ended.stderr.contains(&format!(
            "`warden login --server {} --username oa --profile oa`",
            w.base
        )),
        "{ended}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_sets_up_organizations_collaborations_users_and_nodes() {
    let w = World::new().await;
    w.login("admin", "admin", "admin.pw").await.ok();
    let ka = w.org_key("hospital-a").await;
    let kb = w.org_key("hospital-b").await;

    // Organizations: the fingerprint shown is the one `warden keys fingerprint` gives.
    let a = w
        .admin_json(&["org", "create", "--name", "hospital-a", "--public-key", &ka])
        .await;
    let fp = w.warden(&["keys", "fingerprint", &ka]).await.ok();
    assert!(
        fp.stdout.contains(a["fingerprint"].as_str().unwrap()),
        "{fp}\n{a}"
    );
    let out = w
        .warden(&[
            "admin",
            "--profile",
            "admin",
            "org",
            "create",
            "--name",
            "hospital-b",
            "--public-key",
            &kb,
        ])
        .await
        .ok();
    assert!(out.stdout.starts_with("created organization\nid:"), "{out}");
    let list = w.admin_json(&["org", "list"]).await;
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["hospital-a", "hospital-b"]);
    let table = w
        .warden(&["admin", "--profile", "admin", "org", "list"])
        .await
        .ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID  NAME        FINGERPRINT"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    let shown = w.admin_json(&["org", "show", "hospital-a"]).await;
    assert_eq!(shown["id"], a["id"]);
    let by_id = w.admin_json(&["org", "show", &a["id"].to_string()]).await;
    assert_eq!(by_id["name"], "hospital-a");
    // A duplicate name: the server refuses (1) and says why.
    w.warden(&[
        "admin",
        "--profile",
        "admin",
        "org",
        "create",
        "--name",
        "hospital-a",
        "--public-key",
        &ka,
    ])
    .await
    .fails(1, "409");

    // A collaboration of both, its members by name.
    let c = w
        .admin_json(&[
            "collab",
            "create",
            "--name",
            "cardio",
            "--org",
            "hospital-a",
            "--org",
            "hospital-b",
        ])
        .await;
    assert_eq!(c["encrypted"], true);
    assert_eq!(c["organization_names"], json!(["hospital-a", "hospital-b"]));
    let show = w
        .warden(&["admin", "--profile", "admin", "collab", "show", "cardio"])
        .await
        .ok();
    assert!(show.stdout.contains("members:   hospital-a ("), "{show}");
    let of_b = w
        .admin_json(&["collab", "list", "--org", "hospital-b"])
        .await;
    assert_eq!(of_b.as_array().unwrap().len(), 1);
    // A third organization joins; a second time the server refuses (1) and says why.
    let kc = w.org_key("hospital-c").await;
    w.admin_json(&["org", "create", "--name", "hospital-c", "--public-key", &kc])
        .await;
    let joined = w
        .admin_json(&["collab", "add-org", "cardio", "hospital-c"])
        .await;
    assert_eq!(
        joined["organization_names"],
        json!(["hospital-a", "hospital-b", "hospital-c"])
    );
    let out = w
        .warden(&[
            "admin",
            "--profile",
            "admin",
            "collab",
            "add-org",
            "cardio",
            "hospital-c",
        ])
        .await;
    out.fails(1, "already a member");
    // It leaves again (no run of it there): gone from the members and from `collab show`; a
    // second removal is refused (1) with the server's reason; it is added back.
    let left = w
        .admin_json(&["collab", "remove-org", "cardio", "hospital-c"])
        .await;
    assert_eq!(
        left["organization_names"],
        json!(["hospital-a", "hospital-b"])
    );
    let show = w
        .warden(&["admin", "--profile", "admin", "collab", "show", "cardio"])
        .await
        .ok();
    assert!(!show.stdout.contains("hospital-c"), "{show}");
    let text = w
        .warden(&[
            "admin",
            "--profile",
            "admin",
            "collab",
            "remove-org",
            "cardio",
            "hospital-c",
        ])
        .await;
    text.fails(1, "already removed");
    let back = w
        .admin_json(&["collab", "add-org", "cardio", "hospital-c"])
        .await;
    assert_eq!(
        back["organization_names"],
        json!(["hospital-a", "hospital-b", "hospital-c"])
    );

    // Users: create, list, show, disable (login refused with the server's reason), enable.
    let u = w
        .admin_json(&[
            "user",
            "create",
            "--username",
            "rita",
            "--org",
            "hospital-a",
            "--password-file",
            "user.pw",
        ])
        .await;
    assert_eq!(u["role"], "researcher");
    assert_eq!(u["organization"], "hospital-a");
    let users = w.admin_json(&["user", "list", "--org", "hospital-a"]).await;
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(w.admin_json(&["user", "show", "rita"]).await["id"], u["id"]);
    let d = w.admin_json(&["user", "disable", "rita"]).await;
    assert_eq!(d["disabled"], true);
    w.login("rita", "rita", "user.pw")
        .await
        .fails(1, "this account is disabled");
    assert_eq!(
        w.admin_json(&["user", "enable", "rita"]).await["disabled"],
        false
    );
    w.login("rita", "rita", "user.pw").await.ok();

    // Nodes: the API key written to a 0600 file, working at the server; a rotation kills it.
    let n = w
        .admin_json(&[
            "node",
            "create",
            "--org",
            "hospital-a",
            "--collab",
            "cardio",
            "--key-file",
            "node-a.key",
        ])
        .await;
    assert_eq!(n["organization"], "hospital-a");
    assert_eq!(n["collaboration"], "cardio");
    assert!(n.get("api_key").is_none(), "the key is not printed: {n}");
    assert_eq!(mode(&w.path("node-a.key")), 0o600);
    let key1 = std::fs::read_to_string(w.path("node-a.key"))
        .unwrap()
        .trim()
        .to_owned();
    let node_login = |key: String| {
        let http = w.http.clone();
        let url = format!("{}/api/auth/node", w.base);
        async move {
            http.post(url)
                .json(&json!({"api_key": key}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(node_login(key1.clone()).await, 200);
    let id = n["id"].to_string();
    w.admin_json(&["node", "rotate-key", &id, "--key-file", "node-a.key"])
        .await;
    let key2 = std::fs::read_to_string(w.path("node-a.key"))
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(key1, key2);
    assert_eq!(node_login(key1).await, 401);
    assert_eq!(node_login(key2).await, 200);
    // Without --key-file the key is printed, once, with a warning to keep it.
    let out = w
        .warden(&[
            "admin",
            "--profile",
            "admin",
            "node",
            "create",
            "--org",
            "hospital-b",
            "--collab",
            "cardio",
        ])
        .await
        .ok();
    let key = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("api key: "))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    assert!(out.stdout.contains("shown only this once"), "{out}");
    assert_eq!(node_login(key).await, 200);
    let nodes = w.admin_json(&["node", "list", "--collab", "cardio"]).await;
    assert_eq!(nodes.as_array().unwrap().len(), 2);
    let one = w.admin_json(&["node", "show", &id]).await;
    assert!(one["last_seen_at"].is_string(), "{one}");
    let table = w
        .warden(&["admin", "--profile", "admin", "node", "list"])
        .await
        .ok();
    assert!(
        table.stdout.contains("hospital-a (") && table.stdout.contains("cardio ("),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_researcher_is_refused_every_administration_with_the_servers_reason() {
    let w = World::new().await;
    w.login("admin", "admin", "admin.pw").await.ok();
    let ka = w.org_key("hospital-a").await;
    w.admin_json(&["org", "create", "--name", "hospital-a", "--public-key", &ka])
        .await;
    w.admin_json(&[
        "collab",
        "create",
        "--name",
        "cardio",
        "--org",
        "hospital-a",
    ])
    .await;
    w.admin_json(&[
        "user",
        "create",
        "--username",
        "rita",
        "--org",
        "hospital-a",
        "--password-file",
        "user.pw",
    ])
    .await;
    let ted = w
        .admin_json(&[
            "user",
            "create",
            "--username",
            "ted",
            "--org",
            "hospital-a",
            "--password-file",
            "user.pw",
        ])
        .await;
    w.login("rita", "rita", "user.pw").await.ok();
    // The top-level spellings (`warden org ...`, `warden node create ...`); `warden admin ...`
    // is the same code, refused the same way (below).
    let rita = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--profile", "rita"]);
        let all: Vec<String> = all.iter().map(|s| (*s).to_owned()).collect();
        let w = &w;
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            w.warden(&refs).await
        }
    };
    let kb = w.org_key("evil").await;
    rita(&["org", "create", "--name", "evil", "--public-key", &kb])
        .await
        .fails(1, "only root may do this");
    rita(&["collab", "create", "--name", "evil", "--org", "hospital-a"])
        .await
        .fails(1, "403");
    rita(&["collab", "add-org", "cardio", "hospital-a"])
        .await
        .fails(1, "only root may do this");
    rita(&["collab", "remove-org", "cardio", "hospital-a"])
        .await
        .fails(1, "only root may do this");
    rita(&[
        "user",
        "create",
        "--username",
        "mallory",
        "--org",
        "hospital-a",
        "--password-file",
        "user.pw",
    ])
    .await
    .fails(1, "403");
    let ted = ted["id"].to_string();
    rita(&["user", "disable", &ted]).await.fails(1, "403");
    rita(&["user", "enable", &ted]).await.fails(1, "403");
    rita(&["user", "reset-password", &ted, "--password-file", "user.pw"])
        .await
        .fails(1, "403");
    rita(&[
        "node",
        "create",
        "--org",
        "hospital-a",
        "--collab",
        "cardio",
    ])
    .await
    .fails(1, "403");
    // The administrator's node, whose key she cannot rotate (nor can she under `warden admin`).
    let node = w
        .admin_json(&[
            "node",
            "create",
            "--org",
            "hospital-a",
            "--collab",
            "cardio",
        ])
        .await;
    let node_id = node["id"].to_string();
    rita(&["node", "rotate-key", &node_id])
        .await
        .fails(1, "403");
    w.warden(&["admin", "--profile", "rita", "node", "rotate-key", &node_id])
        .await
        .fails(1, "403");
    w.warden(&["admin", "--profile", "rita", "user", "disable", &ted])
        .await
        .fails(1, "403");
    // Nothing of it happened.
    let orgs = w.admin_json(&["org", "list"]).await;
    assert_eq!(orgs.as_array().unwrap().len(), 1);
    let users = w.admin_json(&["user", "list"]).await;
    assert_eq!(users.as_array().unwrap().len(), 3);
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["disabled"] == false)
    );
    let nodes = w.admin_json(&["node", "list"]).await;
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(
        w.admin_json(&["node", "show", &node_id]).await["last_seen_at"],
        Value::Null
    );
    // She still reads what a researcher may read.
    let mine = rita(&["collab", "list", "--json"]).await.ok().json();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    // A collaboration she does not see: the error names those she does.
    rita(&["collab", "show", "oncology"]).await.fails(
        2,
        "no collaboration `oncology` is visible to this account; it sees: cardio",
    );
    rita(&["task", "list", "--collaboration", "oncology"])
        .await
        .fails(2, "it sees: cardio (`warden collab list`)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_and_reaches_no_server() {
    let w = World::new().await;
    // Not logged in: says how.
    w.warden(&["admin", "--profile", "admin", "org", "list"])
        .await
        .fails(
            2,
            "warden login --server URL --username NAME --profile admin",
        );
    w.warden(&[
        "login",
        "--server",
        "not a url",
        "--username",
        "admin",
        "--password-file",
        "admin.pw",
    ])
    .await
    .fails(2, "is not a URL");
    w.warden(&[
        "login",
        "--server",
        &w.base,
        "--username",
        "admin",
        "--profile",
        "../x",
        "--password-file",
        "admin.pw",
    ])
    .await
    .fails(2, "not a profile name");
    // No terminal and no --password-file: says what to pass.
    w.warden(&[
        "login",
        "--server",
        &w.base,
        "--username",
        "admin",
        "--profile",
        "admin",
    ])
    .await
    .fails(2, "--password-file");
    w.login("admin", "admin", "admin.pw").await.ok();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--profile", "admin"];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| (*s).to_owned()).collect();
        let w = &w;
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            w.warden(&refs).await
        }
    };
    std::fs::write(
        w.path("openssl.pub"),
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    admin(&[
        "org",
        "create",
        "--name",
        "a",
        "--public-key",
        "openssl.pub",
    ])
    .await
    .fails(2, "warden keys generate --kind x25519");
    admin(&["org", "create", "--name", "a", "--public-key", "absent.pub"])
        .await
        .fails(2, "cannot read absent.pub");
    admin(&[
        "user",
        "create",
        "--username",
        "u",
        "--role",
        "admin",
        "--password-file",
        "user.pw",
    ])
    .await
    .fails(2, "use one of root, org_admin, researcher, viewer");
    admin(&[
        "user",
        "create",
        "--username",
        "u",
        "--password-file",
        "user.pw",
    ])
    .await
    .fails(2, "--org ORG");
    admin(&["org", "show", "nosuch"])
        .await
        .fails(2, "it sees no organization (`warden org list`)");
    admin(&["collab", "show", "nosuch"])
        .await
        .fails(2, "it sees no collaboration (`warden collab list`)");
    admin(&["user", "show", "nosuch"])
        .await
        .fails(2, "`warden user list` shows those it sees");
    admin(&[
        "node",
        "create",
        "--org",
        "x",
        "--collab",
        "y",
        "--key-file",
        "no/such/dir/k",
    ])
    .await
    .fails(2, "does not exist");
    // clap's own refusals are 2 as well.
    assert_eq!(admin(&["node", "show", "seven"]).await.code, 2);
    assert_eq!(admin(&["org", "frobnicate"]).await.code, 2);
    // None of it reached the server.
    assert_eq!(
        w.admin_json(&["org", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_character_in_a_name_from_the_server_is_printed_escaped() {
    let w = World::new().await;
    w.login("admin", "admin", "admin.pw").await.ok();
    let ka = w.org_key("org").await;
    w.admin_json(&["org", "create", "--name", "plain", "--public-key", &ka])
        .await;
    w.admin_json(&["collab", "create", "--name", "c", "--org", "plain"])
        .await;
    // The server refuses such names; a compromised server (or its database) serves them anyway.
    let evil = "evil\u{1b}[2J\u{1b}]0;owned\u{7}\nhospital-b\u{202e}";
    let hex: String = evil.bytes().map(|b| format!("{b:02X}")).collect();
    w.tamper(&format!(
        "UPDATE organizations SET name = CAST(X'{hex}' AS TEXT) WHERE name = 'plain'"
    ));
    for args in [
        &["org", "list"][..],
        &["org", "show", "1"],
        &["collab", "show", "c"],
        &["collab", "list"],
    ] {
        let mut all = vec!["admin", "--profile", "admin"];
        all.extend_from_slice(args);
        let out = w.warden(&all).await.ok();
        assert!(
            !out.stdout.contains(['\u{1b}', '\u{7}', '\u{202e}']),
            "{args:?}: {out:?}",
            out = out.stdout
        );
        assert!(
            out.stdout
                .contains("evil\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\nhospital-b\\u{202e}"),
            "{args:?}: {}",
            out.stdout
        );
        // JSON: escaped on the terminal, the exact name when parsed back.
        let mut all = vec!["admin", "--profile", "admin", "--json"];
        all.extend_from_slice(args);
        let out = w.warden(&all).await.ok();
        assert!(
            !out.stdout
                .trim_end()
                .contains(['\u{1b}', '\u{7}', '\u{202e}', '\n']),
            "{}",
            out.stdout
        );
        let v = out.json();
        let name = match args[0] {
            "org" if args[1] == "list" => v[0]["name"].clone(),
            "org" => v["name"].clone(),
            "collab" if args[1] == "list" => v[0]["organization_names"][0].clone(),
            _ => v["organization_names"][0].clone(),
        };
        assert_eq!(name, evil, "{args:?}");
    }
    // A name used as the account's organization in whoami is escaped too.
    w.admin_json(&[
        "user",
        "create",
        "--username",
        "rita",
        "--org",
        "1",
        "--password-file",
        "user.pw",
    ])
    .await;
    let out = w.login("rita", "rita", "user.pw").await.ok();
    assert!(
        !out.stdout.contains('\u{1b}') && out.stdout.contains("of evil\\u{1b}"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_pages_come_from_the_same_definitions() {
    let w = World::new().await;
    let bash = w.warden(&["completions", "bash"]).await.ok();
    assert!(
        bash.stdout.contains("complete -F") && bash.stdout.contains("rotate-key"),
        "{bash}"
    );
    let zsh = w.warden(&["completions", "zsh"]).await.ok();
    assert!(
        zsh.stdout.starts_with("#compdef warden") && zsh.stdout.contains("reset-password"),
        "{zsh}"
    );
    let fish = w.warden(&["completions", "fish"]).await.ok();
    assert!(
        fish.stdout.contains("complete -c warden") && fish.stdout.contains("whoami"),
        "{fish}"
    );
    assert_eq!(w.warden(&["completions", "tcsh"]).await.code, 2);
    // bash itself reads the script and completes a subcommand from it.
    let script = w.path("warden.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(warden admin no); COMP_CWORD=2; COMP_LINE='warden admin no'; \
         COMP_POINT=${{#COMP_LINE}}; _warden warden no admin; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &probe])
        .output()
        .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        replies.lines().any(|l| l == "node"),
        "{replies}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = w.warden(&["man", "--out", "man"]).await.ok();
    assert!(out.stdout.starts_with("wrote "), "{out}");
    for page in [
        "warden.1",
        "warden-admin.1",
        "warden-admin-node-rotate-key.1",
        "warden-login.1",
        "warden-task-list.1",
    ] {
        let text = std::fs::read_to_string(w.path("man").join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let rotate = std::fs::read_to_string(w.path("man/warden-admin-node-rotate-key.1")).unwrap();
    assert!(rotate.contains("key\\-file"), "{rotate}");
    std::fs::write(w.path("file"), "").unwrap();
    w.warden(&["man", "--out", "file"])
        .await
        .fails(2, "cannot create the folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_racing_to_renew_one_session_never_spend_its_refresh_token_twice() {
    let w = World::new().await;
    w.login("admin", "admin", "admin.pw").await.ok();
    let session = w.config_home().join("warden/admin.session");
    // The access token is about to expire: every command below renews the session first. The
    // server revokes the whole session when one refresh token is presented twice, so without
    // the lock some of these would fail and the session would be gone.
    let mut kept: Value =
        serde_json::from_str(&std::fs::read_to_string(&session).unwrap()).unwrap();
    kept["access_expires_at"] = json!(0);
    std::fs::write(&session, kept.to_string()).unwrap();
    let children: Vec<std::process::Child> = (0..6)
        .map(|_| {
            std::process::Command::new(BIN)
                .args(["whoami", "--profile", "admin", "--json"])
                .env("XDG_CONFIG_HOME", w.config_home())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("\"username\":\"admin\""),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let renewed: Value = serde_json::from_str(&std::fs::read_to_string(&session).unwrap()).unwrap();
    assert_ne!(renewed["refresh_token"], kept["refresh_token"]);
    assert!(renewed["access_expires_at"].as_i64().unwrap() > 0);
    assert_eq!(mode(&session), 0o600);
    w.warden(&["admin", "--profile", "admin", "org", "list"])
        .await
        .ok();

    // A session for another server than the profile names is not used.
    let profile = w.config_home().join("warden/admin.toml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(&profile, text.replace(&w.base, "http://127.0.0.1:9")).unwrap();
    w.warden(&["whoami", "--profile", "admin"])
        .await
        .fails(2, "run `warden login` again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_needs_only_the_server_section_and_prints_json() {
    let w = World::new().await;
    w.login("admin", "admin", "admin.pw").await.ok();
    let ka = w.org_key("hospital-a").await;
    w.admin_json(&["org", "create", "--name", "hospital-a", "--public-key", &ka])
        .await;
    w.admin_json(&[
        "collab",
        "create",
        "--name",
        "cardio",
        "--org",
        "hospital-a",
    ])
    .await;
    w.admin_json(&[
        "user",
        "create",
        "--username",
        "rita",
        "--org",
        "hospital-a",
        "--password-file",
        "user.pw",
    ])
    .await;
    w.login("rita", "rita", "user.pw").await.ok();
    let out = w
        .warden(&["task", "list", "--profile", "rita", "--json", "--mine"])
        .await
        .ok();
    assert_eq!(out.json(), json!([]));
    let out = w
        .warden(&[
            "task",
            "list",
            "--profile",
            "rita",
            "--collaboration",
            "cardio",
        ])
        .await
        .ok();
    assert_eq!(
        out.stdout.trim_end(),
        "ID  COLLABORATION  CREATOR  CREATED  IMAGE  NAME\n(none)"
    );
    w.warden(&[
        "task",
        "list",
        "--profile",
        "rita",
        "--collaboration",
        "nosuch",
    ])
    .await
    .fails(2, "no collaboration `nosuch`");
}

/// The keys of a JSON object, sorted.
fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_one_document_with_the_documented_field_names() {
    let w = World::new().await;
    w.login("admin", "admin", "admin.pw").await.ok();
    let ka = w.org_key("hospital-a").await;
    // Each command's whole standard output parses as one JSON document (`Out::json` reads all
    // of it), with the field names docs/server.md names.
    let org = w
        .admin_json(&["org", "create", "--name", "hospital-a", "--public-key", &ka])
        .await;
    let org_fields = ["created_at", "fingerprint", "id", "name", "public_key"];
    assert_eq!(keys_of(&org), org_fields);
    assert_eq!(
        keys_of(&w.admin_json(&["org", "show", "hospital-a"]).await),
        org_fields
    );
    assert_eq!(
        keys_of(&w.admin_json(&["org", "list"]).await[0]),
        org_fields
    );
    let collab = w
        .admin_json(&[
            "collab",
            "create",
            "--name",
            "cardio",
            "--org",
            "hospital-a",
        ])
        .await;
    for field in [
        "id",
        "name",
        "encrypted",
        "organizations",
        "organization_names",
    ] {
        assert!(collab.get(field).is_some(), "{field}: {collab}");
    }
    assert_eq!(
        keys_of(&w.admin_json(&["collab", "show", "cardio"]).await),
        keys_of(&collab)
    );
    let user = w
        .admin_json(&[
            "user",
            "create",
            "--username",
            "rita",
            "--org",
            "hospital-a",
            "--password-file",
            "user.pw",
        ])
        .await;
    for field in [
        "id",
        "username",
        "role",
        "organization_id",
        "organization",
        "disabled",
    ] {
        assert!(user.get(field).is_some(), "{field}: {user}");
    }
    assert_eq!(
        keys_of(&w.admin_json(&["user", "show", "rita"]).await),
        keys_of(&user)
    );
    let node = w
        .admin_json(&[
            "node",
            "create",
            "--org",
            "hospital-a",
            "--collab",
            "cardio",
        ])
        .await;
    for field in ["id", "organization", "collaboration", "api_key"] {
        assert!(node.get(field).is_some(), "{field}: {node}");
    }
    let listed = w.admin_json(&["node", "list"]).await;
    for field in ["id", "organization", "collaboration", "last_seen_at"] {
        assert!(listed[0].get(field).is_some(), "{field}: {listed}");
    }
    assert!(listed[0].get("api_key").is_none(), "{listed}");
    let me = w
        .warden(&["whoami", "--profile", "admin", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(me["username"], "admin");
    let tasks = w
        .warden(&[
            "task",
            "list",
            "--profile",
            "admin",
            "--json",
            "--state",
            "active",
        ])
        .await
        .ok()
        .json();
    assert_eq!(tasks, json!([]));
}
