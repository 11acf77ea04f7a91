//! A federation made of real processes: a private PostgreSQL, `warden server start` replicas
//! behind an HAProxy balancer, a registry with a signed FROM-scratch echo image, two
//! organizations whose nodes (`warden node start`, Docker) each reach the balancer through
//! their own link relay, and a researcher who creates tasks, records every attempt and answer,
//! and opens the results.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use warden_api::{Run, TaskDetail};
use warden_client::{Researcher, Target, TaskRecord};
use warden_seal::{Certificate, InputBinding, Requester, SecretKey, Sender};
use warden_trust::{KeyAlgorithm, SigningKey, cosign};

use crate::delay::DelayLink;
use crate::history::{Answer, Entry, History};
use crate::procs::{Haproxy, Netns, Postgres, Proc, Replica, SmallDisk, remove_containers};

const ADMIN_PASSWORD: &str = "admin password of the fault harness";
const PASSWORD: &str = "a long enough password";
const AUDIT_PASSWORD: &str = "audit key password";
const STUDY: &str = "faults";

/// An organization and its node.
#[derive(Debug)]
pub struct Org {
    pub id: i64,
    pub name: String,
    pub secret: SecretKey,
    pub certifier: SigningKey,
    pub api_key: String,
}

/// A node process with its folder, link and (optionally) a small spool disk.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub organization_id: i64,
    pub dir: PathBuf,
    pub label: String,
    pub link: Haproxy,
    /// The first node's delayed link, when its link runs in the namespace.
    pub delay: Option<DelayLink>,
    pub disk: Option<SmallDisk>,
    pub proc: Option<Proc>,
    bin: PathBuf,
}

impl Node {
    /// Starts `warden node start`.
    pub fn start(&mut self) -> Result<()> {
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.args(["node", "start", "--config"])
            .arg(self.dir.join("node.toml"))
            .env("WARDEN_LOG", "info");
        self.proc = Some(Proc::spawn(
            &self.name,
            &mut cmd,
            &self.dir.join("node.log"),
        )?);
        Ok(())
    }

    /// SIGTERM with a grace for the runs in flight.
    pub fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.terminate(Duration::from_secs(20));
        }
    }

    /// The records of its audit log (checkpoints left out).
    pub fn audit_records(&self) -> Result<Vec<Value>> {
        let path = self.dir.join("audit").join("audit.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut out = Vec::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("a line of {}: {line}", path.display()))?;
            if let Some(r) = v.get("record") {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
        remove_containers(&self.label);
    }
}

/// How the federation is made.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub replicas: usize,
    /// A tmpfs of this many bytes for the first node's spool.
    pub small_spool: Option<u64>,
    /// The first node's link relayed inside a network namespace of its own, over a veth pair
    /// that can be slowed and made lossy ([`Netns::degrade`]).
    pub link_in_netns: bool,
}

/// The whole federation of one scenario run.
#[derive(Debug)]
pub struct Federation {
    pub dir: PathBuf,
    pub history: Arc<History>,
    pub pg: std::sync::Mutex<Postgres>,
    pub replicas: tokio::sync::Mutex<Vec<Replica>>,
    pub balancer: Haproxy,
    pub nodes: Vec<Node>,
    /// The namespace the first node's link runs in, when the shape asks for one (dropped after
    /// the nodes, whose relays live in it).
    pub netns: Option<Netns>,
    pub orgs: Vec<Org>,
    pub collaboration: i64,
    researcher: Researcher,
    /// The researcher's key (the researcher keeps its copy private).
    rita_secret: SecretKey,
    image: String,
    digest: String,
    http: reqwest::Client,
    token: tokio::sync::RwLock<String>,
    _registry: warden_testkit::Registry,
    images: Vec<String>,
}

impl Drop for Federation {
    fn drop(&mut self) {
        self.nodes.clear();
        let refs: Vec<&str> = self.images.iter().map(String::as_str).collect();
        warden_testkit::remove_images(&refs);
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An HTTP call's status and JSON body (`Null` when it is not JSON).
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

impl Federation {
    /// Starts everything in `dir` and records into `history`.
    pub async fn start(dir: &Path, shape: Shape, history: Arc<History>) -> Result<Federation> {
        warden_testkit::require_docker().map_err(|e| anyhow!(e))?;
        let bin = crate::procs::warden_bin()?;
        // The postgres user must reach its data folder.
        set_mode(dir, 0o755)?;
        // First: the balancer listens on the host's end of its veth pair.
        let netns = if shape.link_in_netns {
            Some(Netns::create()?)
        } else {
            None
        };
        let pg = Postgres::start(dir)?;
        std::fs::write(dir.join("admin.pw"), format!("{ADMIN_PASSWORD}\n"))?;
        let mut replicas = Vec::new();
        for i in 0..shape.replicas {
            let mut r = Replica::new(&bin, dir, &format!("replica-{}", i + 1), &pg.url())?;
            // The first bootstraps the administrator; the others find it.
            r.start().await?;
            replicas.push(r);
        }
        let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
        let mut balancer = Haproxy::balancer(dir, &ports, netns.as_ref().map(|n| n.host_ip))?;
        balancer.start()?;
        let registry = warden_testkit::Registry::start().map_err(|e| anyhow!(e))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()?;
        let base = balancer.url();
        let admin = login(&http, &base, "admin", ADMIN_PASSWORD).await?;
        let mut orgs = Vec::new();
        for name in ["hospital-a", "hospital-b"] {
            let secret = SecretKey::generate();
            let (s, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{base}/api/organizations"),
                Some(&admin),
                Some(&json!({"name": name, "public_key": secret.public_key().to_base64()})),
            )
            .await?;
            if s != 201 {
                bail!("creating organization {name}: {s} {v}");
            }
            orgs.push(Org {
                id: v["id"].as_i64().unwrap_or_default(),
                name: name.to_owned(),
                secret,
                certifier: SigningKey::generate(KeyAlgorithm::Ed25519)?,
                api_key: String::new(),
            });
        }
        let ids: Vec<i64> = orgs.iter().map(|o| o.id).collect();
        let (s, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/api/collaborations"),
            Some(&admin),
            Some(&json!({"name": STUDY, "organizations": ids, "encrypted": true})),
        )
        .await?;
        if s != 201 {
            bail!("creating the collaboration: {s} {v}");
        }
        let collaboration = v["id"].as_i64().unwrap_or_default();
        for o in &mut orgs {
            let (s, v) = call(
                &http,
                reqwest::Method::POST,
                &format!("{base}/api/nodes"),
                Some(&admin),
                Some(&json!({"organization_id": o.id, "collaboration_id": collaboration})),
            )
            .await?;
            if s != 201 {
                bail!("creating the node of {}: {s} {v}", o.name);
            }
            o.api_key = v["api_key"].as_str().unwrap_or_default().to_owned();
        }
        let (s, v) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/api/users"),
            Some(&admin),
            Some(&json!({"username": "rita", "password": PASSWORD, "role": "researcher", "organization_id": orgs[0].id})),
        )
        .await?;
        if s != 201 {
            bail!("creating the researcher: {s} {v}");
        }
        let rita_key = SecretKey::generate();
        let cert = Certificate::issue(
            &orgs[0].certifier,
            &orgs[0].name,
            "rita",
            &rita_key.public_key(),
            now_unix() - 60,
            86_400,
        )?;
        let rita_secret = SecretKey::from_pem(&rita_key.to_pem())?;
        let researcher = Researcher::new(rita_key, cert)?;

        // The algorithm: the echo program, FROM scratch, pushed and signed.
        let image_key = SigningKey::generate(KeyAlgorithm::EcdsaP256)?;
        let (image, digest, local) = push_echo(dir, &registry, &image_key).await?;

        let mut fed = Federation {
            dir: dir.to_owned(),
            history,
            pg: std::sync::Mutex::new(pg),
            replicas: tokio::sync::Mutex::new(replicas),
            balancer,
            nodes: Vec::new(),
            netns,
            orgs,
            collaboration,
            researcher,
            rita_secret,
            image,
            digest,
            http,
            token: tokio::sync::RwLock::new(String::new()),
            _registry: registry,
            images: local,
        };
        let token = fed.login_rita().await?;
        *fed.token.write().await = token;
        for i in 0..fed.orgs.len() {
            let disk = if i == 0 { shape.small_spool } else { None };
            let node = fed.write_node(&bin, i, &image_key, disk).await?;
            fed.nodes.push(node);
        }
        for n in &mut fed.nodes {
            n.link.start()?;
            n.start()?;
        }
        fed.wait_nodes_online().await?;
        Ok(fed)
    }

    /// The harness's HTTP client (20 s timeout per request unless the request sets one).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The balancer's URL: what clients and node links use.
    pub fn base(&self) -> String {
        self.balancer.url()
    }

    async fn login_rita(&self) -> Result<String> {
        login(&self.http, &self.base(), "rita", PASSWORD).await
    }

    async fn write_node(
        &self,
        bin: &Path,
        i: usize,
        image_key: &SigningKey,
        disk: Option<u64>,
    ) -> Result<Node> {
        let org = &self.orgs[i];
        let d = self.dir.join(format!("node-{}", org.name));
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("node.key"), format!("{}\n", org.api_key))?;
        std::fs::write(d.join("org.key"), org.secret.to_pem())?;
        std::fs::write(d.join("image.pub"), image_key.public_key().to_pem())?;
        let repo = self
            .image
            .rsplit_once(':')
            .map(|(r, _)| r)
            .unwrap_or(&self.image);
        std::fs::write(
            d.join("policy.toml"),
            format!(
                "version = 1\n[[allow]]\nrepository = \"{repo}\"\nsigned_by = {{ keys = [\"image.pub\"], threshold = 1 }}\n"
            ),
        )?;
        let audit = SigningKey::generate(KeyAlgorithm::EcdsaP256)?;
        std::fs::write(
            d.join("audit.key"),
            audit.to_encrypted_pem(AUDIT_PASSWORD.as_bytes())?,
        )?;
        std::fs::write(d.join("audit.pw"), format!("{AUDIT_PASSWORD}\n"))?;
        let pins: String = self
            .orgs
            .iter()
            .map(|o| format!("{} = \"{}\"\n", o.name, o.secret.public_key().fingerprint()))
            .collect();
        let certifiers: String = self
            .orgs
            .iter()
            .map(|o| format!("{} = \"{}\"\n", o.name, o.certifier.public_key().id()))
            .collect();
        let label = format!("faults{}-{}", std::process::id(), org.name);
        let link_name = format!("link-{}", org.name);
        let link = match (&self.netns, i) {
            (Some(ns), 0) => Haproxy::link_in(ns, &self.dir, &link_name, self.balancer.port)?,
            _ => Haproxy::link(&self.dir, &link_name, self.balancer.port)?,
        };
        // The link in the namespace can also be made long: the node talks to it through a
        // relay that adds a fixed delay (none until the scenario sets one).
        let delay = match (&self.netns, i) {
            (Some(_), 0) => {
                Some(DelayLink::start(SocketAddr::new(link.ip.into(), link.port)).await?)
            }
            _ => None,
        };
        let url = delay.as_ref().map_or_else(|| link.url(), DelayLink::url);
        let disk = match disk {
            Some(bytes) => Some(SmallDisk::mount(&d.join("spool"), bytes)?),
            None => None,
        };
        let config = format!(
            "[server]\nurl = \"{url}\"\napi_key_file = \"node.key\"\npoll_secs = 1\nmax_backoff_secs = 2\npush_timeout_secs = 3\n\n\
             [node]\npolicy = \"policy.toml\"\nsecret_key = \"org.key\"\nspool_dir = \"spool\"\nname = \"{label}\"\nshutdown_grace_secs = 15\n\n\
             [audit]\ndir = \"audit\"\nsigning_key = \"audit.key\"\npassword_file = \"audit.pw\"\n\n\
             [organizations]\n{pins}\n[certifiers]\n{certifiers}\n\
             [limits]\ntimeout_secs = 60\nmemory_bytes = 67108864\nconcurrent_runs = 4\n",
        );
        std::fs::write(d.join("node.toml"), config)?;
        Ok(Node {
            name: org.name.clone(),
            organization_id: org.id,
            dir: d,
            label,
            link,
            delay,
            disk,
            proc: None,
            bin: bin.to_owned(),
        })
    }

    /// Waits until every node's log says it started (it logged in and probed Docker).
    async fn wait_nodes_online(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in &mut self.nodes {
            loop {
                if n.log_text().contains(" started; audit log") {
                    break;
                }
                if let Some(status) = n.proc.as_mut().and_then(Proc::exited) {
                    bail!("node {} exited with {status}: {}", n.name, n.log_text());
                }
                if Instant::now() > deadline {
                    bail!("node {} did not start: {}", n.name, n.log_text());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The body of a task creation at `targets` (indexes into the organizations) with a fresh
    /// nonce, its canonical input and the nonce.
    fn task_body(&self, targets: &[usize], seq: usize) -> Result<(Value, String, String)> {
        let input = warden_client::parse_input(
            format!("{{\"function\":\"echo\",\"args\":{{\"seq\":{seq}}}}}").as_bytes(),
        )?;
        let canonical = String::from_utf8(input.canonical.clone())?;
        let nonce = warden_seal::new_nonce();
        let sender = Sender::Researcher(Box::new(self.researcher.certificate().clone()));
        let issued_at = now_unix();
        let mut inputs = Vec::new();
        for &t in targets {
            let org = &self.orgs[t];
            let binding = InputBinding {
                nonce: nonce.clone(),
                issued_at,
                collaboration: STUDY.to_owned(),
                image: self.image.clone(),
                digest: self.digest.clone(),
                function: input.function.clone(),
                target: org.name.clone(),
                requester: Requester {
                    organization: self.researcher.organization().to_owned(),
                    user: self.researcher.user().to_owned(),
                },
                reply_key: self.researcher.public_key().to_base64(),
                via: None,
            };
            let sealed = warden_seal::seal_input(
                &self.rita_secret,
                &sender,
                &org.secret.public_key(),
                &binding,
                &input.canonical,
            )?;
            inputs.push(json!({"organization_id": org.id, "input": STANDARD.encode(sealed)}));
        }
        let body = json!({
            "collaboration_id": self.collaboration,
            "name": format!("fault-{seq}"),
            "image": self.image,
            "inputs": inputs,
            "nonce": nonce,
        });
        Ok((body, canonical, nonce))
    }

    /// One task creation as a careful client makes it: the same body (the same nonce) sent
    /// again after an answer that does not say (no answer, 502/503/504, 500), up to `patience`;
    /// a 401 logs in again. Every attempt is recorded. Returns whether it was acknowledged.
    pub async fn create_task(&self, client: usize, seq: usize, patience: Duration) -> Result<bool> {
        let targets: Vec<usize> = (0..self.orgs.len()).collect();
        let (body, input, nonce) = self.task_body(&targets, seq)?;
        let target_ids: Vec<i64> = targets.iter().map(|&t| self.orgs[t].id).collect();
        let deadline = Instant::now() + patience;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.token.read().await.clone();
            let at_ms = self.history.now_ms();
            let r = call(
                &self.http,
                reqwest::Method::POST,
                &format!("{}/api/tasks", self.base()),
                Some(&token),
                Some(&body),
            )
            .await;
            let answer = match r {
                Ok((201, v)) => Answer::Acknowledged {
                    task_id: v["task"]["id"].as_i64().unwrap_or(-1),
                    runs: v["runs"]
                        .as_array()
                        .map(|rs| {
                            rs.iter()
                                .map(|r| {
                                    (
                                        r["id"].as_i64().unwrap_or(-1),
                                        r["organization_id"].as_i64().unwrap_or(-1),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                },
                Ok((409, _)) if attempt > 1 => Answer::NonceTaken { status: 409 },
                Ok((s, v)) if s >= 500 => Answer::Unknown {
                    error: format!("{s} {v}"),
                },
                Ok((s, v)) => Answer::Refused {
                    status: s,
                    message: v["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                },
                Err(e) => Answer::Unknown {
                    error: format!("{e:#}"),
                },
            };
            self.history.record(Entry::Create {
                at_ms,
                client,
                attempt,
                nonce: nonce.clone(),
                targets: target_ids.clone(),
                input: input.clone(),
                answer: answer.clone(),
            });
            match answer {
                Answer::Acknowledged { .. } | Answer::NonceTaken { .. } => return Ok(true),
                Answer::Refused { status: 401, .. } if Instant::now() < deadline => {
                    if let Ok(t) = self.login_rita().await {
                        *self.token.write().await = t;
                    }
                }
                Answer::Refused { .. } => return Ok(false),
                Answer::Unknown { .. } if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Answer::Unknown { .. } => return Ok(false),
            }
        }
    }

    /// `clients` concurrent clients creating `tasks` tasks between them; `fault` runs alongside
    /// and gets the count of acknowledged creations so far. Returns the number acknowledged.
    pub async fn load<F, Fut>(
        self: &Arc<Self>,
        clients: usize,
        tasks: usize,
        pace: Duration,
        fault: F,
    ) -> Result<usize>
    where
        F: FnOnce(Arc<Self>, Arc<AtomicUsize>) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        let next = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for c in 0..clients {
            let fed = Arc::clone(self);
            let next = Arc::clone(&next);
            let acked = Arc::clone(&acked);
            let failed = Arc::clone(&failed);
            handles.push(tokio::spawn(async move {
                loop {
                    let seq = next.fetch_add(1, Ordering::SeqCst);
                    if seq >= tasks {
                        return;
                    }
                    match fed.create_task(c, seq, Duration::from_secs(60)).await {
                        Ok(true) => {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(false) | Err(_) => failed.store(true, Ordering::SeqCst),
                    }
                    tokio::time::sleep(pace).await;
                }
            }));
        }
        let fault_result = fault(Arc::clone(self), Arc::clone(&acked)).await;
        for h in handles {
            h.await?;
        }
        fault_result?;
        Ok(acked.load(Ordering::SeqCst))
    }

    /// Waits until every acknowledged run is final (at most `within`).
    pub async fn settle(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let tasks = self.all_tasks().await?;
            let pending: Vec<i64> = tasks
                .iter()
                .flat_map(|t| t.runs.iter())
                .filter(|r| !r.state.is_final())
                .map(|r| r.id)
                .collect();
            if pending.is_empty() || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// GET with the researcher's token, logging in again on 401, retried on no answer.
    async fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base());
        for _ in 0..40 {
            let token = self.token.read().await.clone();
            match call(&self.http, reqwest::Method::GET, &url, Some(&token), None).await {
                Ok((200, v)) => return Ok(v),
                Ok((401, _)) => *self.token.write().await = self.login_rita().await?,
                Ok((s, v)) if s < 500 => bail!("GET {path}: {s} {v}"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        bail!("GET {path}: no answer")
    }

    /// Every task of the collaboration with its runs, as the servers hold them.
    pub async fn all_tasks(&self) -> Result<Vec<TaskDetail>> {
        let mut out = Vec::new();
        let mut after: Option<i64> = None;
        loop {
            let q = match after {
                Some(a) => format!("/api/tasks?limit=100&after={a}"),
                None => "/api/tasks?limit=100".to_owned(),
            };
            let page = self.get(&q).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            for t in &items {
                let id = t["id"].as_i64().unwrap_or_default();
                let detail: TaskDetail =
                    serde_json::from_value(self.get(&format!("/api/tasks/{id}")).await?)?;
                out.push(detail);
            }
            match page["next"].as_i64() {
                Some(n) if !items.is_empty() => after = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// Records the servers' final state, every completed run's result as the researcher opens
    /// it, the nodes' audit logs (after stopping them) and the nodes' warnings.
    pub async fn record_final_state(&mut self) -> Result<()> {
        let tasks = self.all_tasks().await?;
        for t in &tasks {
            self.history.record(Entry::FinalTask {
                task: serde_json::to_value(t)?,
            });
            for run in t
                .runs
                .iter()
                .filter(|r| r.state == warden_api::RunState::Completed)
            {
                let opened = self.open_result(t, run).await;
                self.history.record(Entry::Result {
                    run_id: run.id,
                    opened: opened.map_err(|e| format!("{e:#}")),
                });
            }
        }
        for n in &mut self.nodes {
            n.stop();
        }
        for n in &self.nodes {
            self.history.record(Entry::Audit {
                node: n.name.clone(),
                organization_id: n.organization_id,
                records: n.audit_records()?,
            });
            for line in n.log_text().lines() {
                if line.contains("WARN") || line.contains("ERROR") {
                    self.history.record(Entry::Node {
                        at_ms: self.history.now_ms(),
                        node: n.name.clone(),
                        line: line.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    async fn open_result(&self, t: &TaskDetail, run: &Run) -> Result<String> {
        let org = self
            .orgs
            .iter()
            .find(|o| o.id == run.organization_id)
            .ok_or_else(|| anyhow!("run {} is at an unknown organization", run.id))?;
        let token = self.token.read().await.clone();
        let resp = self
            .http
            .get(format!("{}/api/runs/{}/result", self.base(), run.id))
            .bearer_auth(token)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("GET the result of run {}: {}", run.id, resp.status());
        }
        let sealed = resp.bytes().await?;
        let producer = Target {
            id: org.id,
            name: org.name.clone(),
            key: org.secret.public_key(),
        };
        let record = TaskRecord {
            server: self.base(),
            task_id: t.task.id,
            nonce: t.task.nonce.clone().unwrap_or_default(),
            image: self.image.clone(),
            digest: self.digest.clone(),
        };
        let plain = warden_client::open_result(&sealed, &self.researcher, &producer, run, &record)?;
        Ok(String::from_utf8_lossy(&plain).into_owned())
    }

    /// The event sessions (nodes' WebSocket pushes) a replica holds, from its `/metrics`.
    pub async fn event_sessions(&self, replica: usize) -> Result<i64> {
        let url = format!("{}/metrics", self.replicas.lock().await[replica].base());
        let text = self.http.get(&url).send().await?.text().await?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("warden_event_sessions ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .ok_or_else(|| anyhow!("{url} has no warden_event_sessions"))
    }

    /// Whether `GET /api/health` of a replica answers 200.
    pub async fn healthy(&self, replica: usize) -> bool {
        let url = format!("{}/api/health", self.replicas.lock().await[replica].base());
        matches!(
            call(&self.http, reqwest::Method::GET, &url, None, None).await,
            Ok((200, _))
        )
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> Result<String> {
    let mut last = String::new();
    for _ in 0..40 {
        match call(
            http,
            reqwest::Method::POST,
            &format!("{base}/api/auth/login"),
            None,
            Some(&json!({"username": user, "password": password})),
        )
        .await
        {
            Ok((200, v)) => {
                return Ok(v["access_token"].as_str().unwrap_or_default().to_owned());
            }
            Ok((s, v)) => last = format!("{s} {v}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("logging in as {user}: {last}")
}

/// Builds the echo program (crates/node/tests/programs/echo.c) into a FROM-scratch image,
/// pushes it, signs it with `key`; returns the tagged reference, the digest and the local
/// image references to remove at the end.
async fn push_echo(
    dir: &Path,
    registry: &warden_testkit::Registry,
    key: &SigningKey,
) -> Result<(String, String, Vec<String>)> {
    let source = std::fs::read_to_string(
        warden_testkit::workspace_root().join("crates/node/tests/programs/echo.c"),
    )?;
    let bin = warden_testkit::build_static_c(&source, "echo", dir).map_err(|e| anyhow!(e))?;
    let reference = format!("{}/faults/echo:v1", registry.host());
    let files = [warden_testkit::ImageFile {
        source: warden_testkit::FileSource::Path(bin),
        dest: "/echo".to_owned(),
        mode: 0o755,
    }];
    let id = warden_testkit::build_scratch_image(
        &reference,
        &files,
        &["ENTRYPOINT [\"/echo\"]", "USER 65534"],
    )
    .map_err(|e| anyhow!(e))?;
    let digest = warden_testkit::push(&reference).map_err(|e| anyhow!(e))?;
    warden_testkit::remove_images(&[&reference, &id]);
    let repository =
        warden_reference::Repository::parse(&format!("{}/faults/echo", registry.host()))?;
    let parsed = warden_reference::Digest::parse(&digest)?;
    let client = warden_registry::Client::new(warden_registry::ClientOptions::default())?;
    let signed = cosign::sign(key, &repository, &parsed, None);
    client
        .push_signature(&repository, &parsed, &signed.payload, &signed.signature_b64)
        .await?;
    let image = warden_client::image_reference(&reference)?;
    Ok((
        image,
        digest.clone(),
        vec![format!("{repository}@{digest}")],
    ))
}
