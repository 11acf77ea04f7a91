//! The researcher's world for the `warden task` and `warden keys` suites: the real server in
//! this process on port 0 (SQLite in a temp dir), two organizations, each with an X25519
//! encryption key and an Ed25519 certification key, one collaboration, the researcher `rita` of
//! organization A with a personal key certified by A; and, when a test asks for them, a real
//! registry on loopback, images built FROM scratch around static C programs with the Docker
//! engine, and nodes started as `warden node start` processes from configuration files that
//! pin [organizations] and [certifiers].
//!
//! Every `warden` it runs gets its own XDG_STATE_HOME (the task records) inside the world's
//! folder, so tests never read or write the real home.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use warden_reference::{Digest, Repository};
use warden_seal::{Certificate, SecretKey};
use warden_server::RunningServer;
use warden_server::config::{AuthConfig, LimitsConfig};
use warden_server::storage::ConnectOptions;
use warden_testkit::{FileSource, ImageFile, Registry};
use warden_trust::{KeyAlgorithm, SigningKey, cosign};

pub const BIN: &str = env!("CARGO_BIN_EXE_warden");
pub const ADMIN_PASSWORD: &str = "admin password for tests";
pub const PASSWORD: &str = "a long enough password";
const AUDIT_PASSWORD: &str = "audit key password";
/// The collaboration's name.
pub const STUDY: &str = "study";

/// What a `warden` run gave: exit status, stdout, stderr.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
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
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self}"))
    }

    /// The id of the task a text `create` printed (`task N ...`).
    pub fn task_id(&self) -> String {
        self.stdout
            .strip_prefix("task ")
            .and_then(|s| s.split(' ').next())
            .unwrap_or_else(|| panic!("no task line: {self}"))
            .to_owned()
    }
}

/// Runs `warden ARGS` in `cwd` with `env` (no inherited WARDEN_PASSWORD, XDG_CONFIG_HOME or
/// XDG_STATE_HOME unless `env` sets them).
pub async fn warden_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("WARDEN_PASSWORD")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An organization of the collaboration.
pub struct Org {
    pub id: i64,
    pub name: String,
    /// The encryption key (held by its node only).
    pub secret: SecretKey,
    /// The certification key that signs its researchers' certificates.
    pub certifier: SigningKey,
    pub api_key: String,
}

/// A child process killed and reaped on drop.
pub struct Proc {
    pub child: std::process::Child,
    pub log: PathBuf,
    pub label: String,
}

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_containers(&self.label);
    }
}

/// Removes every container a node labelled `label` left (its runs and its probe).
fn remove_containers(label: &str) {
    for l in [label.to_owned(), format!("{label}-probe")] {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=org.warden.node={l}"),
            ])
            .output();
        let Ok(out) = out else { continue };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
        }
    }
}

pub struct World {
    pub server: Option<RunningServer>,
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    pub dir: TempDir,
    pub collab: i64,
    pub a: Org,
    pub b: Org,
    /// Rita's personal key and the certificate organization A issued for it.
    pub rita_key: SecretKey,
    pub rita_cert: Certificate,
    /// Started by [`World::with_registry`].
    pub registry: Option<Registry>,
    pub image_key: SigningKey,
    pub images: Vec<String>,
    pub nodes: Vec<Proc>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.nodes.clear();
        let refs: Vec<&str> = self.images.iter().map(String::as_str).collect();
        warden_testkit::remove_images(&refs);
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl World {
    /// The server, the organizations (with keys made here), the collaboration and `rita`.
    pub async fn new() -> World {
        let a = (SecretKey::generate(), ed25519());
        let b = (SecretKey::generate(), ed25519());
        World::with_keys(a, b).await
    }

    /// [`World::new`] with the given encryption and certification keys of A and B.
    pub async fn with_keys(a: (SecretKey, SigningKey), b: (SecretKey, SigningKey)) -> World {
        World::with_keys_and_auth(a, b, AuthConfig::default()).await
    }

    /// [`World::with_keys`] with the server's `[auth]` settings (token lifetimes, lockout).
    pub async fn with_keys_and_auth(
        a: (SecretKey, SigningKey),
        b: (SecretKey, SigningKey),
        auth: AuthConfig,
    ) -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = start_server(dir.path(), auth).await;
        let base = format!("http://{}", server.addr);
        let rita_key = SecretKey::generate();
        let rita_cert = Certificate::issue(
            &a.1,
            "hospital-a",
            "rita",
            &rita_key.public_key(),
            now(),
            86_400,
        )
        .unwrap();
        let mut w = World {
            server: Some(server),
            base,
            http: reqwest::Client::new(),
            admin: String::new(),
            dir,
            collab: 0,
            a: placeholder(),
            b: placeholder(),
            rita_key,
            rita_cert,
            registry: None,
            image_key: SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap(),
            images: Vec::new(),
            nodes: Vec::new(),
        };
        w.admin = w.login("admin", ADMIN_PASSWORD).await;
        w.a = w.org("hospital-a", a).await;
        w.b = w.org("hospital-b", b).await;
        let (s, c) = w
            .call(
                reqwest::Method::POST,
                &w.admin,
                "/api/collaborations",
                Some(json!({"name": STUDY, "organizations": [w.a.id, w.b.id], "encrypted": true})),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        w.collab = c["id"].as_i64().unwrap();
        w.a.api_key = w.node_key(w.a.id).await;
        w.b.api_key = w.node_key(w.b.id).await;
        w.user("rita", w.a.id).await;
        w
    }

    /// A world with a registry too, for tests with nodes.
    pub async fn with_registry() -> World {
        World::with_registry_and_auth(AuthConfig::default()).await
    }

    /// [`World::with_registry`] with the server's `[auth]` settings.
    pub async fn with_registry_and_auth(auth: AuthConfig) -> World {
        warden_testkit::require_docker().unwrap();
        let a = (SecretKey::generate(), ed25519());
        let b = (SecretKey::generate(), ed25519());
        let mut w = World::with_keys_and_auth(a, b, auth).await;
        w.registry = Some(Registry::start().unwrap());
        w
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The folder task records go to (XDG_STATE_HOME) for [`World::warden`].
    pub fn state_home(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs `warden ARGS` with this world's XDG_STATE_HOME and `env`.
    pub async fn warden(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let state = self.state_home();
        let mut all = vec![("XDG_STATE_HOME", state.to_str().unwrap())];
        all.extend_from_slice(env);
        warden_in(self.dir.path(), args, &all).await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn login(&self, user: &str, password: &str) -> String {
        let resp = self
            .http
            .post(self.url("/api/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "login {user}");
        let v: Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn org(&self, name: &str, (secret, certifier): (SecretKey, SigningKey)) -> Org {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                &self.admin,
                "/api/organizations",
                Some(json!({"name": name, "public_key": secret.public_key().to_base64()})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        Org {
            id: v["id"].as_i64().unwrap(),
            name: name.to_owned(),
            secret,
            certifier,
            api_key: String::new(),
        }
    }

    async fn node_key(&self, org: i64) -> String {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                &self.admin,
                "/api/nodes",
                Some(json!({"organization_id": org, "collaboration_id": self.collab})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["api_key"].as_str().unwrap().to_owned()
    }

    /// Creates the researcher `name` in organization `org`.
    pub async fn user(&self, name: &str, org: i64) {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                &self.admin,
                "/api/users",
                Some(json!({"username": name, "password": PASSWORD, "role": "researcher", "organization_id": org})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }

    /// Writes rita's profile into `dir` with her key and certificate (or `key`/`cert` when
    /// given) and the pins of `pinned`; returns its path.
    pub fn profile(&self, dir: &Path, pinned: &[&Org], password: &str) -> PathBuf {
        self.profile_with(dir, pinned, password, &self.rita_key, &self.rita_cert)
    }

    pub fn profile_with(
        &self,
        dir: &Path,
        pinned: &[&Org],
        password: &str,
        key: &SecretKey,
        cert: &Certificate,
    ) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("rita.key"), key.to_pem()).unwrap();
        std::fs::write(dir.join("rita.cert"), cert.to_json()).unwrap();
        std::fs::write(dir.join("rita.pw"), format!("{password}\n")).unwrap();
        let pins: String = pinned
            .iter()
            .map(|o| format!("{} = \"{}\"\n", o.name, o.secret.public_key().fingerprint()))
            .collect();
        let text = format!(
            "[server]\nurl = \"{}\"\nusername = \"rita\"\npassword_file = \"rita.pw\"\n\n\
             [researcher]\nkey = \"rita.key\"\ncertificate = \"rita.cert\"\n\n\
             [collaboration]\nname = \"{STUDY}\"\n\n[organizations]\n{pins}",
            self.base
        );
        let path = dir.join("rita.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("server.db")
    }

    /// Runs SQL against the server's SQLite file, as a compromised server (or its operator)
    /// would.
    pub fn tamper(&self, sql: &str) {
        let out = Command::new("sqlite3")
            .arg(self.db())
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The rows of a query, as sqlite3 prints them.
    pub fn query(&self, sql: &str) -> Vec<String> {
        let out = Command::new("sqlite3")
            .arg(self.db())
            .arg(sql)
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How many tasks the server holds.
    pub fn task_count(&self) -> usize {
        self.query("SELECT count(*) FROM tasks")[0].parse().unwrap()
    }

    /// Plants `sealed` as the result of `run`, completed with `digest`, as a lying server would
    /// serve it.
    pub fn plant_result(&self, run: i64, digest: &str, sealed: &[u8]) {
        let hex: String = sealed.iter().map(|b| format!("{b:02X}")).collect();
        self.tamper(&format!(
            "DELETE FROM results WHERE run_id = {run}; \
             INSERT INTO results (run_id, data, created_at) VALUES ({run}, X'{hex}', 0); \
             UPDATE runs SET state = 'completed', has_result = 1, digest = '{digest}' \
             WHERE id = {run};"
        ));
    }

    fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("World::with_registry")
    }

    /// Compiles a test program (crates/node/tests/programs/<name>.c) into a FROM-scratch image
    /// pushed as `<registry>/cli/<image>:<tag>`, signed with the test's image key; the local
    /// copy is removed so that the node must pull it. Returns the repository and digest.
    pub async fn push_signed(
        &mut self,
        program: &str,
        image: &str,
        tag: &str,
    ) -> (Repository, Digest) {
        let source_path = warden_testkit::workspace_root()
            .join("crates/node/tests/programs")
            .join(format!("{program}.c"));
        let source = std::fs::read_to_string(&source_path).unwrap();
        let bin = warden_testkit::build_static_c(&source, program, self.dir.path()).unwrap();
        let host = self.registry().host();
        let reference = format!("{host}/cli/{image}:{tag}");
        let files = [ImageFile {
            source: FileSource::Path(bin),
            dest: format!("/{program}"),
            mode: 0o755,
        }];
        let entry = format!("ENTRYPOINT [\"/{program}\"]");
        let id = warden_testkit::build_scratch_image(&reference, &files, &[&entry, "USER 65534"])
            .unwrap();
        let digest = warden_testkit::push(&reference).unwrap();
        warden_testkit::remove_images(&[&reference, &id]);
        let repository = Repository::parse(&format!("{host}/cli/{image}")).unwrap();
        self.images.push(format!("{repository}@{digest}"));
        let digest = Digest::parse(&digest).unwrap();
        let client =
            warden_registry::Client::new(warden_registry::ClientOptions::default()).unwrap();
        let signed = cosign::sign(&self.image_key, &repository, &digest, None);
        client
            .push_signature(&repository, &digest, &signed.payload, &signed.signature_b64)
            .await
            .unwrap();
        (repository, digest)
    }

    /// The policy that allows `repository` when signed by the test's image key.
    pub fn signed_policy(&self, repository: &Repository) -> String {
        format!(
            "[[allow]]\nrepository = \"{repository}\"\nsigned_by = {{ keys = [\"image.pub\"], threshold = 1 }}\n"
        )
    }

    /// Writes the node directory of organization `name` (keys, policy, config with
    /// [organizations] and [certifiers] pinning both organizations) and starts
    /// `warden node start` on it.
    pub fn start_node(&mut self, name: &str, policy: &str) {
        self.start_node_with(name, policy, "");
    }

    /// [`World::start_node`] with `extra` appended to the node's configuration.
    pub fn start_node_with(&mut self, name: &str, policy: &str, extra: &str) {
        let org = [&self.a, &self.b]
            .into_iter()
            .find(|o| o.name == name)
            .unwrap();
        let d = self.dir.path().join(format!("node-{}", org.name));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("node.key"), format!("{}\n", org.api_key)).unwrap();
        std::fs::write(d.join("org.key"), org.secret.to_pem()).unwrap();
        std::fs::write(d.join("image.pub"), self.image_key.public_key().to_pem()).unwrap();
        std::fs::write(d.join("policy.toml"), format!("version = 1\n{policy}\n")).unwrap();
        let audit = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        std::fs::write(
            d.join("audit.key"),
            audit.to_encrypted_pem(AUDIT_PASSWORD.as_bytes()).unwrap(),
        )
        .unwrap();
        std::fs::write(d.join("audit.pw"), format!("{AUDIT_PASSWORD}\n")).unwrap();
        let orgs = [&self.a, &self.b];
        let pins: String = orgs
            .iter()
            .map(|o| format!("{} = \"{}\"\n", o.name, o.secret.public_key().fingerprint()))
            .collect();
        let certifiers: String = orgs
            .iter()
            .map(|o| format!("{} = \"{}\"\n", o.name, o.certifier.public_key().id()))
            .collect();
        let label = format!("cli{}-{}", std::process::id(), org.name);
        let config = format!(
            r#"[server]
url = "{base}"
api_key_file = "node.key"
poll_secs = 1
max_backoff_secs = 1

[node]
policy = "policy.toml"
secret_key = "org.key"
spool_dir = "spool"
name = "{label}"

[audit]
dir = "audit"
signing_key = "audit.key"
password_file = "audit.pw"

[organizations]
{pins}
[certifiers]
{certifiers}
[limits]
timeout_secs = 60
memory_bytes = 67108864
{extra}
"#,
            base = self.base,
        );
        let path = d.join("node.toml");
        std::fs::write(&path, config).unwrap();
        self.spawn_node(&path, label);
    }

    /// Starts `warden node start` again on a node directory [`World::start_node`] wrote (its
    /// keys, audit log and spool kept).
    pub fn restart_node(&mut self, name: &str) {
        let d = self.dir.path().join(format!("node-{name}"));
        let label = format!("cli{}-{name}", std::process::id());
        self.spawn_node(&d.join("node.toml"), label);
    }

    fn spawn_node(&mut self, path: &Path, label: String) {
        let d = path.parent().unwrap();
        let log = d.join("node.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["node", "start", "--config", path.to_str().unwrap()])
            .env("WARDEN_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.nodes.push(Proc { child, log, label });
    }

    /// Every node's log, for failure messages.
    pub fn node_logs(&self) -> String {
        self.nodes
            .iter()
            .map(|p| format!("--- {}\n{}", p.log.display(), p.log()))
            .collect()
    }

    /// The run's state as the server has it, polled until final (at most `within`).
    pub async fn run_state(&self, run: i64, within: Duration) -> Value {
        let token = self.login("rita", PASSWORD).await;
        let deadline = std::time::Instant::now() + within;
        loop {
            let (s, v) = self
                .call(
                    reqwest::Method::GET,
                    &token,
                    &format!("/api/runs/{run}"),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            let state = v["state"].as_str().unwrap_or_default();
            if matches!(state, "completed" | "failed" | "rejected")
                || std::time::Instant::now() > deadline
            {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn ed25519() -> SigningKey {
    SigningKey::generate(KeyAlgorithm::Ed25519).unwrap()
}

fn placeholder() -> Org {
    Org {
        id: 0,
        name: String::new(),
        secret: SecretKey::generate(),
        certifier: ed25519(),
        api_key: String::new(),
    }
}

async fn start_server(dir: &Path, auth: AuthConfig) -> RunningServer {
    let url = format!("sqlite://{}", dir.join("server.db").display());
    let options = ConnectOptions {
        max_connections: 8,
        ..ConnectOptions::default()
    };
    let service = warden_server::open(&url, dir, &options, auth, LimitsConfig::default())
        .await
        .unwrap();
    let pw = dir.join("admin.pw");
    std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
    warden_server::bootstrap(&service, Some(&pw)).await.unwrap();
    warden_server::serve("127.0.0.1:0".parse().unwrap(), service)
        .await
        .unwrap()
}
