//! `warden demo`: a whole federation on one machine, end to end, with real parts only.
//!
//! It starts Debian's `docker-registry` on a free loopback port, builds the `mean` algorithm
//! (algorithms/mean) into a `FROM scratch` image and pushes it as
//! `127.0.0.1:PORT/warden/mean:1.0`, and the very same image as
//! `127.0.0.1:PORT/experimental/mean:1.0`. A reviewer key (ECDSA P-256) signs `warden/mean` by
//! digest, cosign-style. The coordination server runs in this process on `127.0.0.1:0` with its
//! embedded SQLite database; three organizations (hospital-a, -b, -c), each with an X25519
//! encryption key (held by its node only) and an Ed25519 certification key, one collaboration,
//! a researcher at hospital-a and one node per organization are created through its API. The
//! researcher has a personal X25519 key, certified by hospital-a's certification key. Each
//! node gets its own directory: a CSV data file with distinct rows, a policy that allows
//! `warden/mean` signed by the reviewer and denies `.+/experimental/.+`, the pinned encryption
//! key fingerprints (`[organizations]`) and certification key IDs (`[certifiers]`) of the three
//! organizations, and an audit log with its own signing key.
//!
//! The researcher then asks hospital-a for `central_mean` (its input sealed for hospital-a with
//! the researcher's certified key, bound to the task's nonce, the image and its digest); the
//! algorithm creates `partial_mean` subtasks at the three organizations through the node's
//! proxy, and the result, sealed to the researcher's key by hospital-a, is opened, checked
//! against the run, the nonce and the digest, and compared with the mean computed directly from
//! the three files. Then the experimental image is sent to hospital-b, which
//! rejects it with its policy's reason before pulling anything. Finally the nodes stop (sealing
//! their audit logs with a checkpoint), each log is verified, and every container and image the
//! demo made is removed.
//!
//! [`run`] narrates as it goes, one short line per step, into any `Write`.

#![forbid(unsafe_code)]

mod cleanup;
pub mod data;
pub mod prereq;

use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand_core::RngCore as _;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use warden_api::{Page, Run, RunState, Task, TaskDetail};
use warden_client::{Client, RegistrySection, Researcher, Submission, TaskRecord};
use warden_node::Node;
use warden_node::config::Config as NodeConfig;
use warden_reference::{Digest, Repository};
use warden_runtime::PROBE_REPOSITORY;
use warden_seal::Fingerprint;
use warden_trust::{KeyAlgorithm, SigningKey, cosign};

pub use cleanup::{Removed, containers, exists};
pub use prereq::{Missing, Prerequisites};

use crate::cleanup::Leftovers;

/// The organizations of the demo, in order; the researcher belongs to the first.
pub const ORGANIZATIONS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];
/// The tag of both demo images.
pub const TAG: &str = "1.0";
/// The data source name every node maps to its CSV file.
pub const DATA_SOURCE: &str = "records";
/// The organization that is sent the experimental image.
pub const DENYING_ORGANIZATION: &str = "hospital-b";
/// How long the demo waits for a run to reach a final state.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Password of every node's audit signing key file (the file lives in the demo's work dir).
const AUDIT_PASSWORD_BYTES: usize = 24;
/// How long the demo researcher's certificate is valid.
const CERTIFICATE_SECS: i64 = 86_400;

/// What to run the demo with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The static `mean` binary (algorithms/mean, built with crt-static).
    pub algorithm_binary: PathBuf,
    /// Another static isolation probe binary for the nodes; absent: the probe built into them.
    pub probe: Option<PathBuf>,
    /// Keep the work directory (configs, data, keys, audit logs) here instead of a temporary
    /// one that is removed at the end. Must not exist yet, or be empty.
    pub keep: Option<PathBuf>,
}

/// What the demo showed.
#[derive(Debug, Clone)]
pub struct Summary {
    /// `127.0.0.1:PORT` of the demo registry.
    pub registry: String,
    /// The signed manifest digest of `warden/mean`.
    pub digest: String,
    /// The federated mean, its row count and the number of organizations it combined.
    pub mean: f64,
    pub count: u64,
    pub organizations: u64,
    /// The mean computed directly from the three CSV files.
    pub expected_mean: f64,
    /// The reason the denying node gave.
    pub rejection: String,
    /// Each node's audit log, by organization.
    pub audit_logs: Vec<(String, PathBuf)>,
    /// What the cleanup removed from the engine.
    pub removed: Removed,
    /// The work directory (gone at return unless kept).
    pub work_dir: PathBuf,
    pub elapsed: Duration,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Prerequisites(#[from] Prerequisites),
    #[error("--keep {0}: the directory exists and is not empty; pass a new or empty directory")]
    KeepNotEmpty(PathBuf),
    #[error("cannot write {path}: {source}; check the permissions of the work directory")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {message}")]
    Docker { what: &'static str, message: String },
    #[error("the coordination server: {0}")]
    Server(#[from] warden_server::ServerError),
    #[error("as the demo's {who}: {source}")]
    Client {
        who: &'static str,
        source: warden_client::ClientError,
    },
    #[error("task {task} has {runs} runs; it was sent to one organization")]
    Runs { task: i64, runs: usize },
    #[error("{0}")]
    Keys(String),
    #[error("pushing the signature of {image}: {source}")]
    Signature {
        image: String,
        source: warden_registry::RegistryError,
    },
    #[error("the node configuration of {org}: {source}")]
    NodeConfig {
        org: String,
        source: warden_node::config::ConfigError,
    },
    #[error("the node of {org} did not start: {source}")]
    NodeStart {
        org: String,
        source: warden_node::StartError,
    },
    #[error(
        "{what}: run {run} is {state}{}; rerun with WARDEN_LOG=info for the nodes' logs",
        reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
    )]
    Run {
        what: &'static str,
        run: i64,
        state: RunState,
        reason: Option<String>,
    },
    #[error("the result of run {run} cannot be read: {message}")]
    Result { run: i64, message: String },
    #[error(
        "the federated mean {mean} (n={count}) differs from the mean computed from the files {expected} (n={expected_count})"
    )]
    Mismatch {
        mean: f64,
        count: u64,
        expected: f64,
        expected_count: u64,
    },
    #[error("the audit log {path} does not verify: {message}")]
    Audit { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_file(path: &Path, content: impl AsRef<[u8]>) -> Result<(), DemoError> {
    std::fs::write(path, content).map_err(io(path))
}

fn docker(what: &'static str) -> impl FnOnce(String) -> DemoError {
    move |message| DemoError::Docker { what, message }
}

/// Unix seconds now.
fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn random_secret() -> String {
    let mut b = [0u8; AUDIT_PASSWORD_BYTES];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Narration: one line per step, flushed at once.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
        let _ = $out.flush();
    }};
}

/// Checks the prerequisites, then runs the demo (see the crate docs), narrating into `out`.
/// Everything it started is stopped and everything it created on the engine is removed, also
/// when it fails.
pub async fn run<W: Write>(options: &Options, out: &mut W) -> Result<Summary, DemoError> {
    let started = Instant::now();
    prereq::check(&options.algorithm_binary, options.probe.as_deref())?;
    let (temp, work) = match &options.keep {
        Some(dir) => {
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(DemoError::KeepNotEmpty(dir.clone()));
            }
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            // It holds secret keys: only this user may read it.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
            let dir = dir.canonicalize().map_err(io(dir))?;
            (None, dir)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("warden-demo-")
                .tempdir()
                .map_err(io(&std::env::temp_dir()))?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    say!(out, "work directory {}", work.display());
    let mut leftovers = Leftovers::default();
    let result = federation(options, &work, &mut leftovers, out).await;
    let removed = leftovers.clean();
    if result.is_ok() {
        say!(
            out,
            "cleaned up: {} containers and {} images removed{}",
            removed.containers,
            removed.images.len(),
            if removed.images.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    removed
                        .images
                        .iter()
                        .map(|i| short_image(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    let kept = temp.is_none();
    drop(temp);
    let mut summary = result?;
    summary.removed = removed;
    summary.elapsed = started.elapsed();
    if kept {
        say!(out, "kept the work directory {}", work.display());
    }
    say!(out, "done in {:.1} s", summary.elapsed.as_secs_f64());
    Ok(summary)
}

/// `sha256:0123456789ab` for an image ID, the reference otherwise.
fn short_image(image: &str) -> String {
    match image.strip_prefix("sha256:") {
        Some(hex) if !image.contains('/') => format!("sha256:{}", &hex[..hex.len().min(12)]),
        _ => image.to_owned(),
    }
}

/// One organization of the demo, as the demo (playing every role) knows it.
struct Org {
    name: &'static str,
    id: i64,
    /// The encryption key: only the organization's node holds it.
    secret: warden_seal::SecretKey,
    /// The certification key that signs its researchers' certificates.
    certifier: SigningKey,
    api_key: String,
    rows: Vec<data::Row>,
}

/// A node running in this process.
struct RunningNode {
    org: &'static str,
    audit_log: PathBuf,
    audit_pub: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn federation<W: Write>(
    options: &Options,
    work: &Path,
    leftovers: &mut Leftovers,
    out: &mut W,
) -> Result<Summary, DemoError> {
    // 1. The registry and the images.
    let registry = warden_testkit::Registry::start().map_err(docker("starting the registry"))?;
    let host = registry.host();
    say!(out, "registry on {host} (Debian's docker-registry)");
    let mean_ref = format!("{host}/warden/mean:{TAG}");
    let experimental_ref = format!("{host}/experimental/mean:{TAG}");
    leftovers.image(&mean_ref);
    leftovers.image(&experimental_ref);
    let image_id = warden_testkit::build_scratch_image(
        &mean_ref,
        &[warden_testkit::ImageFile {
            source: warden_testkit::FileSource::Path(options.algorithm_binary.clone()),
            dest: "/mean".into(),
            mode: 0o755,
        }],
        &["USER 65534:65534", "ENTRYPOINT [\"/mean\"]"],
    )
    .map_err(docker("building the mean image"))?;
    leftovers.image(&image_id);
    say!(
        out,
        "built {mean_ref} FROM scratch around {} (image {})",
        options.algorithm_binary.display(),
        short_image(&image_id)
    );
    let digest = warden_testkit::push(&mean_ref).map_err(docker("pushing the mean image"))?;
    warden_testkit::run(std::process::Command::new("docker").args([
        "tag",
        &mean_ref,
        &experimental_ref,
    ]))
    .map_err(docker("tagging the experimental image"))?;
    let experimental_digest = warden_testkit::push(&experimental_ref)
        .map_err(docker("pushing the experimental image"))?;
    // The nodes must pull what they run: no local copy is left to help them.
    warden_testkit::remove_images(&[&mean_ref, &experimental_ref, &image_id]);
    say!(out, "pushed {mean_ref} ({digest})");
    say!(
        out,
        "pushed the same binary as {experimental_ref} ({experimental_digest}), not signed"
    );

    // 2. The reviewer signs warden/mean by digest.
    let repository = Repository::parse(&format!("{host}/warden/mean"))
        .map_err(|e| DemoError::Keys(format!("the demo repository name: {e}")))?;
    let digest_v = Digest::parse(&digest)
        .map_err(|e| DemoError::Keys(format!("the pushed digest `{digest}`: {e}")))?;
    let pulled = format!("{repository}@{digest}");
    leftovers.image(&pulled);
    let reviewer = SigningKey::generate(KeyAlgorithm::EcdsaP256)
        .map_err(|e| DemoError::Keys(format!("generating the reviewer key: {e}")))?;
    let reviewer_pub = work.join("reviewer.pub");
    write_file(&reviewer_pub, reviewer.public_key().to_pem())?;
    let signed = cosign::sign(&reviewer, &repository, &digest_v, None);
    let client = warden_registry::Client::new(warden_registry::ClientOptions::default()).map_err(
        |source| DemoError::Signature {
            image: pulled.clone(),
            source,
        },
    )?;
    client
        .push_signature(
            &repository,
            &digest_v,
            &signed.payload,
            &signed.signature_b64,
        )
        .await
        .map_err(|source| DemoError::Signature {
            image: pulled.clone(),
            source,
        })?;
    say!(
        out,
        "signed warden/mean@{digest} with reviewer key {} (cosign signature pushed next to the image)",
        reviewer.public_key().id()
    );

    // 3. The server, with its embedded SQLite database.
    let server_dir = work.join("server");
    std::fs::create_dir_all(&server_dir).map_err(io(&server_dir))?;
    let db_path = server_dir.join("server.db");
    let service = warden_server::open(
        &format!("sqlite://{}", db_path.display()),
        &server_dir,
        &warden_server::storage::ConnectOptions {
            max_connections: 8,
            ..warden_server::storage::ConnectOptions::default()
        },
        warden_server::config::AuthConfig::default(),
        warden_server::config::LimitsConfig::default(),
    )
    .await?;
    let admin_pw = server_dir.join("admin.pw");
    warden_server::bootstrap(&service, Some(&admin_pw)).await?;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = warden_server::serve(loopback, service).await?;
    let base = format!("http://{}", server.addr);
    say!(
        out,
        "server on {base} (SQLite database {})",
        db_path.display()
    );
    let result = with_server(
        options,
        work,
        leftovers,
        out,
        &base,
        &admin_pw,
        &repository,
        &digest,
        &experimental_ref,
        &reviewer_pub,
    )
    .await;
    let stopped = server.stop().await;
    drop(registry);
    let mut summary = result?;
    stopped?;
    summary.registry = host;
    summary.digest = digest;
    summary.work_dir = work.to_path_buf();
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn with_server<W: Write>(
    options: &Options,
    work: &Path,
    leftovers: &mut Leftovers,
    out: &mut W,
    base: &str,
    admin_pw: &Path,
    repository: &Repository,
    digest: &str,
    experimental_ref: &str,
    reviewer_pub: &Path,
) -> Result<Summary, DemoError> {
    // 4. Organizations, collaboration, researcher, nodes.
    let admin_password = std::fs::read_to_string(admin_pw).map_err(io(admin_pw))?;
    let admin = Client::login(base, "admin", admin_password.trim_end())
        .await
        .map_err(as_admin)?;
    let mut orgs = Vec::new();
    for (index, name) in ORGANIZATIONS.into_iter().enumerate() {
        let secret = warden_seal::SecretKey::generate();
        let certifier = SigningKey::generate(KeyAlgorithm::Ed25519)
            .map_err(|e| DemoError::Keys(format!("generating the certification key: {e}")))?;
        let created: warden_api::Organization = admin
            .post(
                "/api/organizations",
                &json!({"name": name, "public_key": secret.public_key().to_base64()}),
                &format!("creating organization {name}"),
            )
            .await
            .map_err(as_admin)?;
        orgs.push(Org {
            name,
            id: created.id,
            secret,
            certifier,
            api_key: String::new(),
            rows: data::rows(index),
        });
    }
    let ids: Vec<i64> = orgs.iter().map(|o| o.id).collect();
    let collaboration: warden_api::Collaboration = admin
        .post(
            "/api/collaborations",
            &json!({"name": "demo-study", "organizations": ids, "encrypted": true}),
            "creating the collaboration",
        )
        .await
        .map_err(as_admin)?;
    let collab = collaboration.id;
    for o in &mut orgs {
        let created: warden_api::CreatedNode = admin
            .post(
                "/api/nodes",
                &json!({"organization_id": o.id, "collaboration_id": collab}),
                &format!("creating the node of {}", o.name),
            )
            .await
            .map_err(as_admin)?;
        o.api_key = created.api_key;
    }
    let researcher_password = random_secret();
    let _: warden_api::User = admin
        .post(
            "/api/users",
            &json!({"username": "researcher", "password": researcher_password, "role": "researcher", "organization_id": orgs[0].id}),
            "creating the researcher",
        )
        .await
        .map_err(as_admin)?;
    let researcher = Client::login(base, "researcher", &researcher_password)
        .await
        .map_err(as_researcher)?;
    say!(
        out,
        "organizations {} (X25519 encryption keys, Ed25519 certification keys), collaboration \
         demo-study, researcher at {}, one node each",
        ORGANIZATIONS.join(", "),
        ORGANIZATIONS[0]
    );
    // The researcher's own key, certified by their organization: no researcher holds an
    // organization's encryption key.
    let home = &orgs[0];
    let personal = warden_seal::SecretKey::generate();
    let certificate = warden_seal::Certificate::issue(
        &home.certifier,
        home.name,
        "researcher",
        &personal.public_key(),
        time_now(),
        CERTIFICATE_SECS,
    )
    .map_err(|e| DemoError::Keys(format!("certifying the researcher's key: {e}")))?;
    write_file(&work.join("researcher.cert"), certificate.to_json())?;
    let serial = certificate.statement().serial.clone();
    let identity = Researcher::new(personal, certificate).map_err(as_researcher)?;
    researcher
        .check_researcher(&identity)
        .await
        .map_err(as_researcher)?;
    say!(
        out,
        "researcher's personal key {} certified by {} (certificate {serial}, certification key {})",
        identity.public_key().fingerprint(),
        home.name,
        home.certifier.public_key().id()
    );

    // 5. Each node's directory and configuration, then the nodes.
    // The nodes run the probe built into them unless --probe names another.
    let probe = options.probe.clone();
    let tag = &random_secret()[..8];
    let pins: String = orgs
        .iter()
        .map(|o| format!("{} = \"{}\"\n", o.name, o.secret.public_key().fingerprint()))
        .collect();
    let certifiers: String = orgs
        .iter()
        .map(|o| format!("{} = \"{}\"\n", o.name, o.certifier.public_key().id()))
        .collect();
    let mut nodes = Vec::new();
    let started = start_nodes(
        work,
        leftovers,
        out,
        base,
        &orgs,
        &pins,
        &certifiers,
        probe.as_deref(),
        reviewer_pub,
        repository,
        tag,
        &mut nodes,
    )
    .await;
    let result = match started {
        Ok(()) => {
            runs(
                work,
                out,
                &researcher,
                &identity,
                &collaboration,
                &orgs,
                repository,
                digest,
                experimental_ref,
            )
            .await
        }
        Err(e) => Err(e),
    };
    // 8. Stop the nodes: each seals its audit log with a closing checkpoint.
    let mut audit_logs = Vec::new();
    let mut verified = Ok(());
    for n in nodes {
        let _ = n.stop.send(());
        let _ = n.task.await;
        if result.is_ok() && verified.is_ok() {
            verified = verify_audit(out, n.org, &n.audit_log, &n.audit_pub);
        }
        audit_logs.push((n.org.to_owned(), n.audit_log));
    }
    let (mean, count, organizations, expected_mean, rejection) = result?;
    verified?;
    Ok(Summary {
        registry: String::new(),
        digest: String::new(),
        mean,
        count,
        organizations,
        expected_mean,
        rejection,
        audit_logs,
        removed: Removed::default(),
        work_dir: PathBuf::new(),
        elapsed: Duration::ZERO,
    })
}

#[allow(clippy::too_many_arguments)]
async fn start_nodes<W: Write>(
    work: &Path,
    leftovers: &mut Leftovers,
    out: &mut W,
    base: &str,
    orgs: &[Org],
    pins: &str,
    certifiers: &str,
    probe: Option<&Path>,
    reviewer_pub: &Path,
    repository: &Repository,
    tag: &str,
    nodes: &mut Vec<RunningNode>,
) -> Result<(), DemoError> {
    for o in orgs {
        let dir = work.join(o.name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_file(&dir.join("node.key"), format!("{}\n", o.api_key))?;
        write_file(&dir.join("org.key"), o.secret.to_pem())?;
        std::fs::copy(reviewer_pub, dir.join("reviewer.pub")).map_err(io(&dir))?;
        let probe_line = match probe {
            Some(probe) => {
                std::fs::copy(probe, dir.join("probe")).map_err(io(&dir))?;
                "probe = \"probe\"\n"
            }
            None => "",
        };
        let csv = dir.join("records.csv");
        write_file(&csv, data::csv(&o.rows))?;
        write_file(
            &dir.join("policy.toml"),
            format!(
                r#"version = 1

# The reviewed federated mean, signed by the demo's reviewer.
[[allow]]
repository = "{repository}"
signed_by = {{ keys = ["reviewer.pub"], threshold = 1 }}
functions = ["central_mean", "partial_mean"]

# Never anything experimental, whoever signed it.
[[deny]]
repository_regex = '.+/experimental/.+'
"#
            ),
        )?;
        let audit_password = random_secret();
        let audit_key = SigningKey::generate(KeyAlgorithm::EcdsaP256)
            .map_err(|e| DemoError::Keys(format!("generating the audit key: {e}")))?;
        let encrypted = audit_key
            .to_encrypted_pem(audit_password.as_bytes())
            .map_err(|e| DemoError::Keys(format!("encrypting the audit key: {e}")))?;
        write_file(&dir.join("audit.key"), encrypted)?;
        write_file(&dir.join("audit.pw"), format!("{audit_password}\n"))?;
        let audit_pub = dir.join("audit.pub");
        write_file(&audit_pub, audit_key.public_key().to_pem())?;
        let label = format!("demo-{tag}-{}", o.name);
        let config_path = dir.join("node.toml");
        write_file(
            &config_path,
            format!(
                r#"[server]
url = "{base}"
api_key_file = "node.key"
poll_secs = 1
max_backoff_secs = 1

[node]
policy = "policy.toml"
secret_key = "org.key"
spool_dir = "spool"
{probe_line}name = "{label}"

[audit]
dir = "audit"
signing_key = "audit.key"
password_file = "audit.pw"

[organizations]
{pins}
[certifiers]
{certifiers}
[data]
{DATA_SOURCE} = "records.csv"

[limits]
timeout_secs = 120
memory_bytes = 134217728
"#,
                base = base,
            ),
        )?;
        let config = NodeConfig::load(&config_path).map_err(|source| DemoError::NodeConfig {
            org: o.name.to_owned(),
            source,
        })?;
        leftovers.label(&label);
        let node = Node::start(config)
            .await
            .map_err(|source| DemoError::NodeStart {
                org: o.name.to_owned(),
                source,
            })?;
        // The node imported its isolation probe as `warden-probe:latest`; remember the image
        // to remove it at the end (nodes start one after the other, so it is this one's).
        if let Some(id) = cleanup::image_id(&format!("{PROBE_REPOSITORY}:latest")) {
            leftovers.image(&id);
        }
        let audit_log = node.audit_path().to_path_buf();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(node.run(async {
            let _ = stopped.await;
        }));
        say!(
            out,
            "node of {} up: isolation self-check passed, {} rows in {}, containers labelled {label}",
            o.name,
            o.rows.len(),
            csv.display()
        );
        nodes.push(RunningNode {
            org: o.name,
            audit_log,
            audit_pub,
            stop,
            task,
        });
    }
    Ok(())
}

/// What the researcher sends: the input strictly parsed, the image's digest resolved at the
/// registry (as `warden task create` does), sealed for the targets with the researcher's key.
#[allow(clippy::too_many_arguments)]
async fn submit(
    researcher: &Client,
    identity: &Researcher,
    collab: &warden_api::Collaboration,
    targets: &[warden_client::Target],
    name: &str,
    image: &str,
    input: &Value,
) -> Result<(TaskDetail, TaskRecord), DemoError> {
    let image = warden_client::image_reference(image).map_err(as_researcher)?;
    let digest = warden_client::resolve_digest(&image, &RegistrySection::default())
        .await
        .map_err(as_researcher)?;
    let input = warden_client::parse_input(input.to_string().as_bytes()).map_err(as_researcher)?;
    researcher
        .create_task(
            identity,
            &Submission {
                collaboration: collab,
                targets,
                name,
                image: &image,
                digest: &digest,
                input: &input,
            },
        )
        .await
        .map_err(as_researcher)
}

#[allow(clippy::too_many_arguments)]
async fn runs<W: Write>(
    work: &Path,
    out: &mut W,
    researcher: &Client,
    identity: &Researcher,
    collab: &warden_api::Collaboration,
    orgs: &[Org],
    repository: &Repository,
    digest: &str,
    experimental_ref: &str,
) -> Result<(f64, u64, u64, f64, String), DemoError> {
    // 6. The federated mean: central_mean at hospital-a, partial_mean everywhere.
    // The researcher checks each organization's key against the pins the nodes were given,
    // as `warden task` does with a profile's.
    let pins: BTreeMap<String, Fingerprint> = orgs
        .iter()
        .map(|o| (o.name.to_owned(), o.secret.public_key().fingerprint()))
        .collect();
    let targets = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let pins = &pins;
        async move {
            researcher
                .pinned_targets(collab, &names, pins, "the demo's pins")
                .await
                .map_err(as_researcher)
        }
    };
    let home = &orgs[0];
    let image = format!("{repository}:{TAG}");
    let input =
        json!({"function": "central_mean", "args": {"column": data::COLUMN, "data": DATA_SOURCE}});
    let home_targets = targets(&[home.name]).await?;
    let (task, record) = submit(
        researcher,
        identity,
        collab,
        &home_targets,
        "federated mean",
        &image,
        &input,
    )
    .await?;
    say!(
        out,
        "researcher asked {} for central_mean of {} over all organizations (task {}, input sealed \
         for {} with the researcher's certified key, bound to nonce {} and {})",
        home.name,
        data::COLUMN,
        task.task.id,
        home.name,
        record.nonce,
        record.digest
    );
    let run = final_run(
        researcher,
        &task,
        &record,
        RunState::Completed,
        "the federated mean",
    )
    .await?;
    let subtasks: Page<Task> = researcher
        .get(
            &format!("/api/tasks?parent_task_id={}", task.task.id),
            "listing the subtasks",
        )
        .await
        .map_err(as_researcher)?;
    for sub in &subtasks.items {
        let runs: Page<Run> = researcher
            .get(
                &format!("/api/runs?task_id={}", sub.id),
                "listing the subtask's runs",
            )
            .await
            .map_err(as_researcher)?;
        let mut runs = runs.items;
        runs.sort_by_key(|r| r.organization_id);
        for r in runs {
            let name = orgs
                .iter()
                .find(|o| o.id == r.organization_id)
                .map_or("?", |o| o.name);
            say!(
                out,
                "  partial_mean at {name}: {} (admitted {})",
                r.state,
                r.digest.as_deref().unwrap_or("no digest")
            );
        }
    }
    if run.digest.as_deref() != Some(digest) {
        return Err(DemoError::Result {
            run: run.id,
            message: format!(
                "the node admitted {:?}, not the signed digest {digest}",
                run.digest
            ),
        });
    }
    let opened = researcher
        .result(&run, &home_targets[0], identity, &record)
        .await
        .map_err(as_researcher)?;
    let value: Value = serde_json::from_slice(&opened).map_err(|e| DemoError::Result {
        run: run.id,
        message: format!("not JSON: {e}"),
    })?;
    let (Some(mean), Some(count), Some(n_orgs)) = (
        value["mean"].as_f64(),
        value["count"].as_u64(),
        value["organizations"].as_u64(),
    ) else {
        return Err(DemoError::Result {
            run: run.id,
            message: format!("not a mean: {value}"),
        });
    };
    say!(
        out,
        "result of run {} opened with the researcher's key ({} bytes): sealed by {}'s pinned key, \
         bound to the task's nonce, run {}, {} and {}",
        run.id,
        opened.len(),
        home.name,
        run.id,
        home.name,
        record.digest
    );
    say!(
        out,
        "federated mean of {} over {n_orgs} organizations: {mean} (n={count})",
        data::COLUMN
    );
    let all: Vec<Vec<data::Row>> = orgs.iter().map(|o| o.rows.clone()).collect();
    let (expected, expected_count) = data::direct_mean(&all);
    if count != expected_count || (mean - expected).abs() > 1e-9 * expected.abs().max(1.0) {
        return Err(DemoError::Mismatch {
            mean,
            count,
            expected,
            expected_count,
        });
    }
    say!(
        out,
        "check: the mean computed directly from the three CSV files is {expected} (n={expected_count}): equal"
    );

    // 7. The experimental image, same binary, unsigned and denied by every policy.
    let denier = orgs
        .iter()
        .find(|o| o.name == DENYING_ORGANIZATION)
        .unwrap_or(home);
    let input =
        json!({"function": "partial_mean", "args": {"column": data::COLUMN, "data": DATA_SOURCE}});
    let (task, record) = submit(
        researcher,
        identity,
        collab,
        &targets(&[denier.name]).await?,
        "experimental",
        experimental_ref,
        &input,
    )
    .await?;
    say!(
        out,
        "researcher sent {experimental_ref} to {} (task {})",
        denier.name,
        task.task.id
    );
    let run = final_run(
        researcher,
        &task,
        &record,
        RunState::Rejected,
        "the experimental image should have been rejected",
    )
    .await?;
    let reason = run.reason.unwrap_or_default();
    say!(out, "rejected at {}: {reason}", denier.name);
    if let Some(rule) = policy_line(&work.join(denier.name).join("policy.toml"), &reason) {
        say!(out, "  {}'s policy.toml, {rule}", denier.name);
    }
    let pulled = exists(experimental_ref);
    say!(
        out,
        "  nothing was pulled: {experimental_ref} is {} on the engine",
        if pulled { "present" } else { "absent" }
    );
    Ok((mean, count, n_orgs, expected, reason))
}

/// Waits for the one run of a task sent to one organization and requires it to end `expected`;
/// the task must still be the one created (nonce and image) and the run must report the
/// resolved digest.
async fn final_run(
    researcher: &Client,
    task: &TaskDetail,
    record: &TaskRecord,
    expected: RunState,
    what: &'static str,
) -> Result<Run, DemoError> {
    let mut detail = researcher
        .wait(task.task.id, RUN_TIMEOUT)
        .await
        .map_err(as_researcher)?;
    warden_client::check_task(&detail, record).map_err(as_researcher)?;
    if detail.runs.len() != 1 {
        return Err(DemoError::Runs {
            task: task.task.id,
            runs: detail.runs.len(),
        });
    }
    let run = detail.runs.remove(0);
    if run.state != expected {
        return Err(DemoError::Run {
            what,
            run: run.id,
            state: run.state,
            reason: run.reason,
        });
    }
    Ok(run)
}

fn as_admin(source: warden_client::ClientError) -> DemoError {
    DemoError::Client {
        who: "administrator",
        source,
    }
}

fn as_researcher(source: warden_client::ClientError) -> DemoError {
    DemoError::Client {
        who: "researcher",
        source,
    }
}

/// `line N: <text>` of the policy file for a reason that names `(line N)`.
fn policy_line(policy: &Path, reason: &str) -> Option<String> {
    let (_, rest) = reason.split_once("(line ")?;
    let n: usize = rest.split(')').next()?.trim().parse().ok()?;
    let text = std::fs::read_to_string(policy).ok()?;
    let mut lines = text.lines().skip(n.checked_sub(1)?);
    let first = lines.next()?.trim();
    // The rule's table header and its keys, up to the next blank line or table.
    let mut rule = vec![first];
    rule.extend(
        lines
            .map(str::trim)
            .take_while(|l| !l.is_empty() && !l.starts_with('['))
            .filter(|l| !l.starts_with('#')),
    );
    Some(format!("line {n}: {}", rule.join(" ")))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn verify_audit<W: Write>(
    out: &mut W,
    org: &str,
    log: &Path,
    key_path: &Path,
) -> Result<(), DemoError> {
    let fail = |message: String| DemoError::Audit {
        path: log.to_path_buf(),
        message,
    };
    let pem = std::fs::read_to_string(key_path).map_err(|e| fail(e.to_string()))?;
    let key = warden_trust::PublicKey::from_pem(&pem).map_err(|e| fail(e.to_string()))?;
    let report = warden_audit::verify(log, &key).map_err(|e| fail(e.to_string()))?;
    if !report.is_intact() {
        return Err(fail(report.problems().join("; ")));
    }
    say!(
        out,
        "{org} recorded its decisions in {}: {}, {}, verified intact (warden audit verify --key {} {})",
        log.display(),
        plural(report.entries, "entry", "entries"),
        plural(
            report.checkpoints,
            "signed checkpoint",
            "signed checkpoints"
        ),
        key_path.display(),
        log.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_a_reason_names_is_quoted_from_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("policy.toml");
        std::fs::write(
            &p,
            "version = 1\n\n[[deny]]\n  repository_regex = 'x'\n# c\nfunctions = [\"f\"]\n\n[[allow]]\n",
        )
        .unwrap();
        assert_eq!(
            policy_line(
                &p,
                "denied by policy: denied by deny[0] (line 3) (precheck)"
            ),
            Some("line 3: [[deny]] repository_regex = 'x' functions = [\"f\"]".into())
        );
        assert_eq!(policy_line(&p, "denied (line 19)"), None);
        assert_eq!(policy_line(&p, "no line"), None);
        assert_eq!(plural(1, "entry", "entries"), "1 entry");
        assert_eq!(
            short_image("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(
            short_image("127.0.0.1:1/a@sha256:01"),
            "127.0.0.1:1/a@sha256:01"
        );
    }
}
