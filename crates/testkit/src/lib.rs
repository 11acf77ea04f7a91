//! Test harness shared by Warden's end-to-end suites: a real OCI registry (Debian's
//! `docker-registry`, the CNCF distribution server) on a free loopback port, images built
//! `FROM scratch` with the real Docker engine and pushed to it, and a lying server
//! ([`lying::LyingProxy`]: a rewriting proxy in front of the real one) for tests that prove
//! nodes and clients do not trust the server.
//!
//! Everything here fails loudly with a message that says what to install: a missing prerequisite
//! is a failed test, never a skipped one.

#![forbid(unsafe_code)]

pub mod lying;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Result type of the harness: errors are human-readable strings for test failure messages.
pub type Result<T> = std::result::Result<T, String>;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `docker-registry` on 127.0.0.1, stopped and deleted on drop.
#[derive(Debug)]
pub struct Registry {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Options for [`Registry::start_with`].
#[derive(Debug, Default, Clone)]
pub struct RegistryOptions {
    /// htpasswd file content (bcrypt entries) to require basic auth.
    pub htpasswd: Option<String>,
}

impl Registry {
    /// Starts an anonymous registry on a free loopback port and waits until it answers `/v2/`.
    pub fn start() -> Result<Registry> {
        Self::start_with(RegistryOptions::default())
    }

    pub fn start_with(options: RegistryOptions) -> Result<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            return Err(format!(
                "{REGISTRY_BIN} is missing: install Debian's registry with \
                 `apt-get install -y docker-registry`"
            ));
        }
        let mut last_err = String::new();
        // A port picked by binding port 0 can be taken before the registry binds it: retry.
        for _ in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
            let port = free_port()?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let auth = match &options.htpasswd {
                Some(content) => {
                    let path = dir.path().join("htpasswd");
                    std::fs::write(&path, content).map_err(|e| format!("htpasswd: {e}"))?;
                    format!(
                        "auth:\n  htpasswd:\n    realm: warden-test\n    path: {}\n",
                        path.display()
                    )
                }
                None => String::new(),
            };
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n{auth}",
                root = dir.path().join("data").display(),
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).map_err(|e| format!("registry config: {e}"))?;
            let log = std::fs::File::create(dir.path().join("registry.log"))
                .map_err(|e| format!("registry log: {e}"))?;
            let log2 = log.try_clone().map_err(|e| format!("registry log: {e}"))?;
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(|e| format!("starting {REGISTRY_BIN}: {e}"))?;
            let mut registry = Registry {
                addr,
                child,
                _dir: dir,
            };
            match registry.wait_ready() {
                Ok(()) => return Ok(registry),
                Err(e) => last_err = e,
            }
        }
        Err(format!("the registry did not start: {last_err}"))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self._dir.path().join("registry.log"))
                    .unwrap_or_default();
                return Err(format!("registry exited with {status}: {log}"));
            }
            if let Ok(status) = http_status(self.addr, "/v2/") {
                if status == 200 || status == 401 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("registry at {} not ready in time", self.addr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry's own log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (free when this returns).
pub fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Status code of a plain HTTP/1.1 GET on loopback (used only to wait for readiness).
fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))
}

/// Runs a command, returning stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks that the Docker engine answers; the error says how to fix it.
pub fn require_docker() -> Result<()> {
    static CHECK: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    CHECK
        .get_or_init(|| {
            run(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]))
                .map(|_| ())
                .map_err(|e| format!("the Docker engine is not reachable (start dockerd): {e}"))
        })
        .clone()
}

/// A file to put into an image: content and absolute destination path inside the image.
#[derive(Debug, Clone)]
pub struct ImageFile {
    pub source: FileSource,
    pub dest: String,
    /// Octal mode, e.g. 0o755 for executables.
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub enum FileSource {
    Bytes(Vec<u8>),
    Path(PathBuf),
}

/// Builds an image `FROM scratch` holding `files`, with extra Dockerfile lines (e.g.
/// `ENTRYPOINT ["/algo"]`, `USER 65534`), tags it `tag` and returns the image ID.
pub fn build_scratch_image(tag: &str, files: &[ImageFile], extra: &[&str]) -> Result<String> {
    require_docker()?;
    let ctx = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let mut dockerfile = String::from("FROM scratch\n");
    for (i, f) in files.iter().enumerate() {
        let name = format!("f{i}");
        let path = ctx.path().join(&name);
        match &f.source {
            FileSource::Bytes(b) => std::fs::write(&path, b),
            FileSource::Path(p) => std::fs::copy(p, &path).map(|_| ()),
        }
        .map_err(|e| format!("writing build context: {e}"))?;
        set_mode(&path, f.mode)?;
        dockerfile.push_str(&format!("COPY {name} {}\n", f.dest));
    }
    for line in extra {
        dockerfile.push_str(line);
        dockerfile.push('\n');
    }
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile)
        .map_err(|e| format!("writing Dockerfile: {e}"))?;
    // No build cache: with it, two tests building the same files get the same image ID, and one
    // test's clean-up (`docker image rm -f <id>`) deletes the other's image mid-build.
    run(Command::new("docker")
        .args(["build", "--no-cache", "-q", "-t", tag])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0"))?;
    image_id(tag)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// The local image ID (`sha256:...`) of `reference`.
pub fn image_id(reference: &str) -> Result<String> {
    Ok(
        run(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", reference]))?
            .trim()
            .to_owned(),
    )
}

/// Pushes `reference` with the Docker engine and returns the manifest digest it reports.
pub fn push(reference: &str) -> Result<String> {
    let out = run(Command::new("docker").args(["push", reference]))?;
    out.split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| format!("no digest in `docker push` output: {out}"))
}

/// Builds a small data-only image (one file with `content`) and pushes it as `reference`;
/// returns the pushed manifest digest. Distinct content gives a distinct digest.
pub fn push_data_image(reference: &str, content: &str) -> Result<String> {
    build_scratch_image(
        reference,
        &[ImageFile {
            source: FileSource::Bytes(content.as_bytes().to_vec()),
            dest: "/content.txt".into(),
            mode: 0o644,
        }],
        &["LABEL org.warden.test=1"],
    )?;
    push(reference)
}

/// Removes local images (ignores ones that are already gone).
pub fn remove_images(references: &[&str]) {
    for r in references {
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", r])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The workspace root. Found at run time from the running test's package directory
/// (`CARGO_MANIFEST_DIR`, which cargo and nextest set for every test process): cargo keeps a
/// target directory valid when the workspace moves, so a path compiled in could name another
/// checkout of the workspace than the one under test. The compiled-in path is the fallback.
pub fn workspace_root() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"));
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| compiled.to_path_buf());
    start
        .ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .map(|t| t.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .or_else(|| compiled.ancestors().nth(2))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds a workspace binary as a static executable that runs in a FROM-scratch image, and
/// returns its path. Uses its own target directory so it never fights the test build's lock.
pub fn build_static_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let target_dir = std::env::var_os("WARDEN_STATIC_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("static"));
    let triple = "x86_64-unknown-linux-gnu";
    run(Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .args(["build", "--release", "--quiet", "-p", package, "--bin", bin])
        .args(["--target", triple])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static"))?;
    let path = target_dir.join(triple).join("release").join(bin);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("built {package} but {} is missing", path.display()))
    }
}

/// Compiles a C program as a static executable (`gcc -static -O2`) and returns its path in `dir`.
pub fn build_static_c(source: &str, name: &str, dir: &Path) -> Result<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    let out = dir.join(name);
    std::fs::write(&src, source).map_err(|e| format!("writing {}: {e}", src.display()))?;
    run(Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_starts_and_accepts_a_pushed_image() {
        let registry = Registry::start().unwrap();
        let reference = format!("{}/testkit/data:v1", registry.host());
        let digest = push_data_image(&reference, "testkit says hello").unwrap();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        // The registry serves the manifest under that digest, and it hashes to that digest.
        let accept = "application/vnd.docker.distribution.manifest.v2+json";
        let resp = http_get(
            registry.addr(),
            &format!("/v2/testkit/data/manifests/{digest}"),
            accept,
        )
        .unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(
            resp.to_ascii_lowercase()
                .contains(&format!("docker-content-digest: {digest}")),
            "{resp}"
        );
        let tags = http_get(registry.addr(), "/v2/testkit/data/tags/list", "*/*").unwrap();
        assert!(tags.contains("\"v1\""), "{tags}");
        remove_images(&[&reference]);
    }

    fn http_get(addr: SocketAddr, path: &str, accept: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }
}

/// One case of the independent Notary Project signer (`crates/trust/tests/notary_peer.py`):
/// the envelope text and the trust store PEM it was made for.
#[derive(Debug, Clone)]
pub struct NotaryCase {
    pub envelope: String,
    pub trust_store: String,
}

/// Runs the independent Notary signer (Python, `cryptography`) for the manifest
/// `(media_type, digest, size)` and returns its cases by name ("es256-two", "other-digest",
/// "tampered-chain", "expired-leaf", "wrong-key-usage", ...).
pub fn notary_peer_cases(
    media_type: &str,
    digest: &str,
    size: u64,
) -> Result<std::collections::BTreeMap<String, NotaryCase>> {
    let dir = tempfile_dir()?;
    let script = workspace_root().join("crates/trust/tests/notary_peer.py");
    run(Command::new("python3")
        .arg(&script)
        .arg(&dir)
        .arg(media_type)
        .arg(digest)
        .arg(size.to_string()))
    .map_err(|e| format!("the Notary peer (python3 with `cryptography`) failed: {e}"))?;
    let text = std::fs::read_to_string(dir.join("cases.json")).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut out = std::collections::BTreeMap::new();
    for c in cases {
        let field = |k: &str| {
            c[k].as_str()
                .map(str::to_owned)
                .ok_or(format!("case without {k}"))
        };
        out.insert(
            field("name")?,
            NotaryCase {
                envelope: field("envelope")?,
                trust_store: field("trust_store")?,
            },
        );
    }
    Ok(out)
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "warden-notary-peer-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
