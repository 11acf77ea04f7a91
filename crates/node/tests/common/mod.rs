//! The node's end-to-end world: the real server in-process on port 0 (SQLite in a temp dir), a
//! real registry on loopback, the real Docker engine, images built FROM scratch around static C
//! programs, two organizations with real X25519 keys and certification keys, a certified
//! researcher, and nodes started from real configuration files.
//!
//! Tasks are created as the researcher's client does (sealing format 2): the image's digest
//! resolved at the registry, a fresh nonce per task sent as `CreateTask.nonce`, each target's
//! input sealed with the researcher's certified key and bound to the task; results are opened
//! with the researcher's key against the pinned key of the organization that ran them, and
//! their binding checked.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod attack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;
use warden_api as api;
use warden_node::Node;
use warden_node::config::Config;
use warden_reference::{Digest, Reference, Repository};
use warden_registry::{Client, ClientOptions};
use warden_server::RunningServer;
use warden_server::config::{AuthConfig, LimitsConfig};
use warden_server::storage::ConnectOptions;
use warden_testkit::{FileSource, ImageFile, Registry};
use warden_trust::{KeyAlgorithm, SigningKey, cosign};

pub const ADMIN_PASSWORD: &str = "admin password for tests";
pub const PASSWORD: &str = "a long enough password";
pub const AUDIT_PASSWORD: &str = "audit key password";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// An organization of the test collaboration.
pub struct Org {
    pub id: i64,
    pub name: String,
    pub secret: warden_seal::SecretKey,
    /// Its certification key: signs its researchers' certificates; nodes pin its key ID.
    pub certifier: SigningKey,
    pub api_key: String,
}

/// A user with a personal X25519 key certified by an organization's certification key.
pub struct Researcher {
    pub user: String,
    /// The organization the certificate names.
    pub organization: String,
    /// An access token of the user at the server.
    pub token: String,
    pub key: warden_seal::SecretKey,
    pub cert: warden_seal::Certificate,
}

impl Researcher {
    pub fn sender(&self) -> warden_seal::Sender {
        warden_seal::Sender::Researcher(Box::new(self.cert.clone()))
    }
}

/// What a task's creator keeps to check its results: the nonce it chose and the digest it
/// resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: String,
    pub digest: String,
}

/// The current Unix time.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub struct World {
    pub server: Option<RunningServer>,
    /// The server as a real `warden server start` process, when the test asked for one.
    pub server_process: Option<Proc>,
    pub server_port: u16,
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    /// The access token of `rita`, the researcher of organization A.
    pub researcher: String,
    /// `rita` of organization A, certified by A's certification key.
    pub rita: Researcher,
    /// The name of the collaboration `collab`.
    pub collab_name: String,
    pub registry: Registry,
    pub dir: TempDir,
    pub collab: i64,
    pub a: Org,
    pub b: Org,
    pub image_key: SigningKey,
    pub images: Vec<String>,
    pub labels: Vec<String>,
    /// Task id -> what its creator chose, for [`World::result`].
    pub sealed: Mutex<HashMap<i64, Sealed>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for label in &self.labels {
            remove_containers(label);
        }
        let refs: Vec<&str> = self.images.iter().map(String::as_str).collect();
        warden_testkit::remove_images(&refs);
    }
}

/// Removes every container with this node label.
pub fn remove_containers(label: &str) {
    for id in containers(label) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &id])
            .output();
    }
}

/// IDs of every container (any state) of a node label.
pub fn containers(label: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=org.warden.node={label}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Whether the engine has the image `reference` locally.
pub fn image_present(reference: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .unwrap()
        .status
        .success()
}

pub fn database(dir: &Path) -> (String, ConnectOptions) {
    (
        format!("sqlite://{}", dir.join("server.db").display()),
        ConnectOptions {
            max_connections: 8,
            ..ConnectOptions::default()
        },
    )
}

pub async fn start_server(dir: &Path, addr: &str) -> RunningServer {
    let (url, options) = database(dir);
    let service = warden_server::open(
        &url,
        dir,
        &options,
        AuthConfig::default(),
        LimitsConfig::default(),
    )
    .await
    .unwrap();
    let pw = dir.join("admin.pw");
    if !pw.exists() {
        std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
    }
    warden_server::bootstrap(&service, Some(&pw)).await.unwrap();
    warden_server::serve(addr.parse().unwrap(), service)
        .await
        .unwrap()
}

/// A running node in this process.
pub struct NodeHandle {
    pub node: Node,
    pub label: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl NodeHandle {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl World {
    /// A world whose server runs in this process.
    pub async fn new() -> World {
        World::build(None).await
    }

    /// A world whose server is the real `warden` binary at `bin` (`warden server start`).
    pub async fn with_server_process(bin: &Path) -> World {
        World::build(Some(bin)).await
    }

    async fn build(bin: Option<&Path>) -> World {
        init_tracing();
        warden_testkit::require_docker().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (server, server_process, port) = match bin {
            None => {
                let s = start_server(dir.path(), "127.0.0.1:0").await;
                let port = s.addr.port();
                (Some(s), None, port)
            }
            Some(bin) => {
                let port = warden_testkit::free_port().unwrap();
                let p = spawn_server(bin, dir.path(), port).await;
                (None, Some(p), port)
            }
        };
        let base = format!("http://127.0.0.1:{port}");
        let mut w = World {
            server,
            server_process,
            server_port: port,
            base,
            http: reqwest::Client::new(),
            admin: String::new(),
            researcher: String::new(),
            rita: placeholder_researcher(),
            collab_name: "study".to_owned(),
            registry: Registry::start().unwrap(),
            dir,
            collab: 0,
            a: placeholder_org(),
            b: placeholder_org(),
            image_key: SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap(),
            images: Vec::new(),
            labels: Vec::new(),
            sealed: Mutex::new(HashMap::new()),
        };
        w.admin = w.login("admin", ADMIN_PASSWORD).await;
        w.a = w.org("hospital-a").await;
        w.b = w.org("hospital-b").await;
        let (_, c) = w
            .call(
                reqwest::Method::POST,
                &w.admin,
                "/api/collaborations",
                Some(
                    json!({"name": "study", "organizations": [w.a.id, w.b.id], "encrypted": true}),
                ),
            )
            .await;
        w.collab = c["id"].as_i64().unwrap();
        w.a.api_key = w.node_key(w.a.id).await;
        w.b.api_key = w.node_key(w.b.id).await;
        w.rita = w.researcher_of(&w.a, "rita").await;
        w.researcher = w.rita.token.clone();
        w
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
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

    async fn org(&self, name: &str) -> Org {
        let secret = warden_seal::SecretKey::generate();
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
            certifier: SigningKey::generate(KeyAlgorithm::Ed25519).unwrap(),
            api_key: String::new(),
        }
    }

    async fn node_key(&self, org: i64) -> String {
        self.node_key_in(org, self.collab).await
    }

    /// A new node of organization `org` in collaboration `collab`: its API key.
    pub async fn node_key_in(&self, org: i64, collab: i64) -> String {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                &self.admin,
                "/api/nodes",
                Some(json!({"organization_id": org, "collaboration_id": collab})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["api_key"].as_str().unwrap().to_owned()
    }

    /// A new collaboration of A and B: its id.
    pub async fn collaboration(&self, name: &str, encrypted: bool) -> i64 {
        let (s, c) = self
            .call(
                reqwest::Method::POST,
                &self.admin,
                "/api/collaborations",
                Some(json!({"name": name, "organizations": [self.a.id, self.b.id], "encrypted": encrypted})),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        c["id"].as_i64().unwrap()
    }

    /// Compiles a test program (tests/programs/<name>.c, or algorithms/hostile/<name>.c) and
    /// builds it into a FROM-scratch image pushed as `<registry>/node/<image>:<tag>`; the local
    /// copy is removed so that the node must pull it. Returns the repository and digest.
    pub fn push_program(&mut self, program: &str, image: &str, tag: &str) -> (Repository, Digest) {
        self.push_program_with(program, image, tag, &[])
    }

    pub fn push_program_with(
        &mut self,
        program: &str,
        image: &str,
        tag: &str,
        extra: &[(&str, &[u8])],
    ) -> (Repository, Digest) {
        let bin = compile(program, self.dir.path());
        self.push_binary(&bin, program, image, tag, extra)
    }

    /// Builds a FROM-scratch image around a static binary (at `/<name>`, its entrypoint, run as
    /// 65534) and pushes it as `<registry>/node/<image>:<tag>`; see [`World::push_program`].
    pub fn push_binary(
        &mut self,
        bin: &Path,
        program: &str,
        image: &str,
        tag: &str,
        extra: &[(&str, &[u8])],
    ) -> (Repository, Digest) {
        let mut files = vec![ImageFile {
            source: FileSource::Path(bin.to_path_buf()),
            dest: format!("/{program}"),
            mode: 0o755,
        }];
        for (dest, content) in extra {
            files.push(ImageFile {
                source: FileSource::Bytes(content.to_vec()),
                dest: (*dest).to_owned(),
                mode: 0o644,
            });
        }
        let reference = format!("{}/node/{image}:{tag}", self.registry.host());
        let entry = format!("ENTRYPOINT [\"/{program}\"]");
        let id = warden_testkit::build_scratch_image(&reference, &files, &[&entry, "USER 65534"])
            .unwrap();
        let digest = warden_testkit::push(&reference).unwrap();
        warden_testkit::remove_images(&[&reference, &id]);
        let repository =
            Repository::parse(&format!("{}/node/{image}", self.registry.host())).unwrap();
        self.images.push(format!("{repository}@{digest}"));
        (repository, Digest::parse(&digest).unwrap())
    }

    /// Signs `repository@digest` with the test's image key and pushes the signature.
    pub async fn sign(&self, repository: &Repository, digest: &Digest) {
        let client = Client::new(ClientOptions::default()).unwrap();
        let signed = cosign::sign(&self.image_key, repository, digest, None);
        client
            .push_signature(repository, digest, &signed.payload, &signed.signature_b64)
            .await
            .unwrap();
    }

    /// Writes a node's directory (keys, policy, probe, config) and returns the config path.
    /// `policy` is the body after `version = 1`; `extra` is appended to the config (after the
    /// `[limits]` header, so it may set limits first). The node pins both organizations'
    /// encryption keys and certification keys.
    pub fn node_config(&self, org: &Org, policy: &str, extra: &str) -> PathBuf {
        self.node_config_in(
            org,
            &org.api_key,
            &format!("node-{}", org.name),
            policy,
            extra,
        )
    }

    /// [`World::node_config`] for a node with API key `api_key`, in the directory `dir_name`.
    pub fn node_config_in(
        &self,
        org: &Org,
        api_key: &str,
        dir_name: &str,
        policy: &str,
        extra: &str,
    ) -> PathBuf {
        let d = self.dir.path().join(dir_name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("node.key"), format!("{api_key}\n")).unwrap();
        std::fs::write(d.join("org.key"), org.secret.to_pem()).unwrap();
        std::fs::write(d.join("image.pub"), self.image_key.public_key().to_pem()).unwrap();
        std::fs::write(d.join("policy.toml"), format!("version = 1\n{policy}\n")).unwrap();
        if !d.join("audit.key").exists() {
            let audit = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
            std::fs::write(
                d.join("audit.key"),
                audit.to_encrypted_pem(AUDIT_PASSWORD.as_bytes()).unwrap(),
            )
            .unwrap();
            std::fs::write(d.join("audit.pub"), audit.public_key().to_pem()).unwrap();
            std::fs::write(d.join("audit.pw"), format!("{AUDIT_PASSWORD}\n")).unwrap();
        }
        if !d.join("probe").exists() {
            compile_to("probe", &d);
        }
        let pins = [&self.a, &self.b]
            .iter()
            .map(|o| format!("{} = \"{}\"\n", o.name, o.secret.public_key().fingerprint()))
            .collect::<String>();
        let certifiers = [&self.a, &self.b]
            .iter()
            .map(|o| format!("{} = \"{}\"\n", o.name, o.certifier.public_key().id()))
            .collect::<String>();
        let config = format!(
            r#"
[server]
url = "{base}"
api_key_file = "node.key"
poll_secs = 1
max_backoff_secs = 1

[node]
policy = "policy.toml"
secret_key = "org.key"
spool_dir = "spool"
probe = "probe"
name = "t{tag}-{dir_name}"

[audit]
dir = "audit"
signing_key = "audit.key"
password_file = "audit.pw"
checkpoint_every = 5

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
            tag = &uuid_like(self.dir.path())[..8],
        );
        let path = d.join("node.toml");
        std::fs::write(&path, config).unwrap();
        path
    }

    /// The policy that allows `repository` when signed by the test's image key.
    pub fn signed_policy(&self, repository: &Repository) -> String {
        format!(
            "[[allow]]\nrepository = \"{repository}\"\nsigned_by = {{ keys = [\"image.pub\"], threshold = 1 }}\n"
        )
    }

    /// [`World::signed_policy`] for the repository of the image reference `image`.
    pub fn signed_policy_for(&self, image: &str) -> String {
        let reference = Reference::parse(image).unwrap();
        self.signed_policy(reference.repository())
    }

    /// Starts a node in this process from a config file.
    pub async fn start_node(&mut self, config: &Path) -> NodeHandle {
        let config = Config::load(config).unwrap();
        let node = Node::start(config).await.unwrap();
        let label = node.label().to_owned();
        if !self.labels.contains(&label) {
            self.labels.push(label.clone());
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let n = node.clone();
        let task = tokio::spawn(async move {
            n.run(async {
                let _ = rx.await;
            })
            .await;
        });
        NodeHandle {
            node,
            label,
            stop: Some(tx),
            task,
        }
    }

    /// Creates a researcher `name` in organization A, certified by A.
    pub async fn researcher_of_a(&self, name: &str) -> Researcher {
        self.researcher_of(&self.a, name).await
    }

    /// Creates a user `name` in `org` with a personal key certified by `org`'s certification
    /// key, logged in.
    pub async fn researcher_of(&self, org: &Org, name: &str) -> Researcher {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                &self.admin,
                "/api/users",
                Some(json!({"username": name, "password": PASSWORD, "role": "researcher", "organization_id": org.id})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let key = warden_seal::SecretKey::generate();
        let cert = warden_seal::Certificate::issue(
            &org.certifier,
            &org.name,
            name,
            &key.public_key(),
            now_unix() - 60,
            86_400,
        )
        .unwrap();
        Researcher {
            user: name.to_owned(),
            organization: org.name.clone(),
            token: self.login(name, PASSWORD).await,
            key,
            cert,
        }
    }

    /// The manifest digest `image` names at the registry, resolved as the client does.
    pub async fn resolve(&self, image: &str) -> String {
        let reference = Reference::parse(image).unwrap();
        if let Some(d) = reference.digest() {
            return d.to_string();
        }
        let client = Client::new(ClientOptions::default()).unwrap();
        client.resolve(&reference).await.unwrap().digest.to_string()
    }

    /// The binding a researcher's client seals for `target`: everything bound to this task.
    pub fn binding(
        &self,
        who: &Researcher,
        image: &str,
        digest: &str,
        function: &str,
        target: &Org,
        nonce: &str,
    ) -> warden_seal::InputBinding {
        warden_seal::InputBinding {
            nonce: nonce.to_owned(),
            issued_at: now_unix(),
            collaboration: self.collab_name.clone(),
            image: Reference::parse(image).unwrap().to_string(),
            digest: digest.to_owned(),
            function: function.to_owned(),
            target: target.name.clone(),
            requester: warden_seal::Requester {
                organization: who.organization.clone(),
                user: who.user.clone(),
            },
            reply_key: who.key.public_key().to_base64(),
            via: None,
        }
    }

    /// `body` sealed as `who` for `target` with `binding`.
    pub fn seal(
        &self,
        who: &Researcher,
        target: &Org,
        binding: &warden_seal::InputBinding,
        body: &[u8],
    ) -> Vec<u8> {
        warden_seal::seal_input(
            &who.key,
            &who.sender(),
            &target.secret.public_key(),
            binding,
            body,
        )
        .unwrap()
    }

    /// `POST /api/tasks` with hand-made parts: the inputs' bytes as they are, and `nonce`.
    pub async fn post_task(
        &self,
        token: &str,
        collab: i64,
        image: &str,
        nonce: Option<&str>,
        inputs: &[(i64, Vec<u8>)],
    ) -> (u16, Value) {
        let inputs: Vec<Value> = inputs
            .iter()
            .map(|(o, bytes)| json!({"organization_id": o, "input": base64::engine::general_purpose::STANDARD.encode(bytes)}))
            .collect();
        let mut body =
            json!({"collaboration_id": collab, "name": "t", "image": image, "inputs": inputs});
        if let Some(n) = nonce {
            body["nonce"] = json!(n);
        }
        self.call(reqwest::Method::POST, token, "/api/tasks", Some(body))
            .await
    }

    /// Creates a task as the researcher of organization A, the input sealed for each target.
    pub async fn create_task(
        &self,
        image: &str,
        input: &Value,
        targets: &[&Org],
    ) -> api::TaskDetail {
        self.create_task_as(&self.rita, image, input, targets).await
    }

    /// Creates a task as `who` does with its client: the digest resolved, a fresh nonce, the
    /// strict canonical input sealed for each target and bound to the task.
    pub async fn create_task_as(
        &self,
        who: &Researcher,
        image: &str,
        input: &Value,
        targets: &[&Org],
    ) -> api::TaskDetail {
        let digest = self.resolve(image).await;
        let nonce = warden_seal::new_nonce();
        let parsed = warden_api::strict::parse_input(&serde_json::to_vec(input).unwrap()).unwrap();
        let inputs: Vec<(i64, Vec<u8>)> = targets
            .iter()
            .map(|o| {
                let b = self.binding(who, image, &digest, &parsed.function, o, &nonce);
                (o.id, self.seal(who, o, &b, &parsed.canonical))
            })
            .collect();
        let (s, v) = self
            .post_task(&who.token, self.collab, image, Some(&nonce), &inputs)
            .await;
        assert_eq!(s, 201, "{v}");
        let detail: api::TaskDetail = serde_json::from_value(v).unwrap();
        assert_eq!(
            detail.task.nonce.as_deref(),
            Some(nonce.as_str()),
            "the server echoes the nonce"
        );
        self.sealed
            .lock()
            .unwrap()
            .insert(detail.task.id, Sealed { nonce, digest });
        detail
    }

    /// Waits until the run is in `state` (or any final state).
    pub async fn wait_state(&self, id: i64, state: api::RunState, within: Duration) -> api::Run {
        let deadline = Instant::now() + within;
        loop {
            let r = self.run(id).await;
            if r.state == state || r.state.is_final() {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} still {} after {within:?}",
                r.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The label a node config file gives its containers.
    pub fn label_of(config: &Path) -> String {
        let text = std::fs::read_to_string(config).unwrap();
        let line = text.lines().find(|l| l.starts_with("name = ")).unwrap();
        line.trim_start_matches("name = ")
            .trim_matches('"')
            .to_owned()
    }

    pub async fn run(&self, id: i64) -> api::Run {
        let (s, v) = self
            .call(
                reqwest::Method::GET,
                &self.researcher,
                &format!("/api/runs/{id}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        serde_json::from_value(v).unwrap()
    }

    /// Waits until the run reaches a final state.
    pub async fn wait_final(&self, id: i64, within: Duration) -> api::Run {
        let deadline = Instant::now() + within;
        loop {
            let r = self.run(id).await;
            if r.state.is_final() {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} still {} after {within:?}",
                r.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The result of a run of a task `rita` created, opened as her client does.
    pub async fn result(&self, run: i64) -> Vec<u8> {
        self.result_as(&self.rita, run).await
    }

    /// The result of a run, opened with `who`'s key against the pinned key of the organization
    /// that ran it, its binding checked against what the task's creator chose.
    pub async fn result_as(&self, who: &Researcher, run: i64) -> Vec<u8> {
        let r = self.run(run).await;
        let resp = self
            .http
            .get(self.url(&format!("/api/runs/{run}/result")))
            .bearer_auth(&who.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let sealed = resp.bytes().await.unwrap();
        let producer = [&self.a, &self.b]
            .into_iter()
            .find(|o| o.id == r.organization_id)
            .unwrap();
        let (binding, body) = warden_seal::open_result(
            &who.key,
            &producer.secret.public_key(),
            warden_seal::Kind::Result,
            &sealed,
        )
        .unwrap();
        let chosen = self
            .sealed
            .lock()
            .unwrap()
            .get(&r.task_id)
            .cloned()
            .unwrap();
        assert_eq!(
            binding.nonce, chosen.nonce,
            "the result is bound to the task's nonce"
        );
        assert_eq!(binding.run_id, run);
        assert_eq!(binding.organization, producer.name);
        assert_eq!(binding.digest, chosen.digest);
        assert_eq!(r.digest.as_deref(), Some(chosen.digest.as_str()));
        body.to_vec()
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Proc {
    /// `kill -9`, and wait for it to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits up to `within` for the process to exit by itself.
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn(bin: &Path, args: &[&str], log: PathBuf) -> Proc {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = Command::new(bin)
        .args(args)
        .env("WARDEN_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Proc { child, log }
}

/// Starts `warden server start` on `port` over the SQLite file in `dir` and waits until it
/// answers.
pub async fn spawn_server(bin: &Path, dir: &Path, port: u16) -> Proc {
    let pw = dir.join("admin.pw");
    if !pw.exists() {
        std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
    }
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[database]\nurl = \"sqlite://{}\"\n[bootstrap]\nadmin_password_file = \"admin.pw\"\n",
            dir.join("server.db").display()
        ),
    )
    .unwrap();
    let mut p = spawn(
        bin,
        &["server", "start", "--config", config.to_str().unwrap()],
        dir.join("server.log"),
    );
    let url = format!("http://127.0.0.1:{port}/api/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(&url).await {
            if r.status().is_success() {
                return p;
            }
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("the server exited with {status}: {}", p.log());
        }
        assert!(
            Instant::now() < deadline,
            "server did not start: {}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `warden node start --config` as a process.
pub fn spawn_node(bin: &Path, config: &Path) -> Proc {
    let log = config.with_extension("log");
    spawn(
        bin,
        &["node", "start", "--config", config.to_str().unwrap()],
        log,
    )
}

fn placeholder_org() -> Org {
    Org {
        id: 0,
        name: String::new(),
        secret: warden_seal::SecretKey::generate(),
        certifier: SigningKey::generate(KeyAlgorithm::Ed25519).unwrap(),
        api_key: String::new(),
    }
}

fn placeholder_researcher() -> Researcher {
    let ca = SigningKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let key = warden_seal::SecretKey::generate();
    let cert =
        warden_seal::Certificate::issue(&ca, "none", "none", &key.public_key(), 0, 1).unwrap();
    Researcher {
        user: String::new(),
        organization: String::new(),
        token: String::new(),
        key,
        cert,
    }
}

fn uuid_like(p: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.hash(&mut h);
    std::process::id().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The C source of a test program.
pub fn source(name: &str) -> String {
    let local = warden_testkit::workspace_root()
        .join("crates/node/tests/programs")
        .join(format!("{name}.c"));
    let path = if local.exists() {
        local
    } else {
        warden_testkit::workspace_root()
            .join("algorithms/hostile")
            .join(format!("{name}.c"))
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn compile(name: &str, dir: &Path) -> PathBuf {
    warden_testkit::build_static_c(&source(name), name, dir).unwrap()
}

fn compile_to(name: &str, dir: &Path) -> PathBuf {
    compile(name, dir)
}
