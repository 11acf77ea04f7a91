//! `warden algorithm base python`: a minimal Debian bookworm image with Python for algorithms,
//! built without pulling from any registry. `debootstrap --variant=minbase` makes the root
//! filesystem from Debian packages (python3 and `--package`s), pip installs the chosen wheels
//! from PyPI into `/usr/local/lib/python3.11/dist-packages` (binary wheels for the image's
//! CPython 3.11 and glibc 2.36, whatever the machine's own Python is), `warden_algorithm` is added
//! beside them, apt and the documentation, caches and logs are stripped, and the root is
//! imported into the engine (`POST /images/create?fromSrc=-`) as a sorted tar with fixed mtimes,
//! with `USER 65534:65534`, an exec-form entry point and the exact versions as labels.
//!
//! The image carries a content key (a hash of this recipe, the code's version and the options);
//! an image under the tag with the same key is reused, so a machine (or CI) builds it once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use clap::{Args, Subcommand};
use futures_util::StreamExt as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Bumped whenever what the build does changes, so cached images of an older recipe are rebuilt.
const RECIPE: &str = "warden-python-base/2";
const SUITE: &str = "bookworm";
const SITE: &str = "usr/local/lib/python3.11/dist-packages";
/// The pure-Python algorithm package, shipped in every base image.
const WARDEN_ALGORITHM: &str =
    include_str!("../../../python/warden_algorithm/warden_algorithm/__init__.py");
/// Labels (all under this prefix).
pub const LABEL: &str = "org.warden.base";
/// The tar's fixed mtime when SOURCE_DATE_EPOCH is not set (2023-06-10, bookworm's release).
const EPOCH: u64 = 1_686_355_200;
/// What an algorithm does not need at run time (relative to the root).
const STRIP: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/locale",
    "usr/share/common-licenses",
    "var/cache",
    "var/lib/apt",
    "var/log",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "etc/apt",
    "root/.cache",
];
/// Emptied (kept as directories).
const EMPTY: &[&str] = &["dev", "proc", "sys", "run", "tmp", "var/tmp"];

#[derive(Debug, Subcommand)]
pub enum BaseCommand {
    /// Build a minimal Debian bookworm image with Python 3.11 (and chosen wheels) for
    /// algorithms, from Debian packages and PyPI, without pulling from any registry; needs root
    /// (debootstrap), the Docker engine and pip.
    ///
    /// The image runs as 65534:65534 with the entry point `/usr/bin/python3 -s -B` (no shell
    /// needed), works with a read-only root, holds `warden_algorithm` and records the exact
    /// Debian package and wheel versions as labels (`org.warden.base.debian`,
    /// `org.warden.base.wheels`, `org.warden.base.python`). An image under --tag with the same
    /// content key (recipe, warden version, options) is reused unless --rebuild.
    ///
    /// Example: warden algorithm base python --tag registry.example.org/warden/python:3.11-pandas --wheel pandas==2.2.3
    Python(PythonBase),
}

#[derive(Debug, Args)]
pub struct PythonBase {
    /// The image's name in the engine (push it to your registry afterwards).
    #[arg(long, value_name = "REPO:TAG")]
    pub tag: String,
    /// A wheel to install from PyPI (a pip requirement, e.g. `pandas==2.2.3`); repeatable.
    /// Only binary wheels are used (manylinux for glibc 2.36, or pure Python).
    #[arg(long = "wheel", value_name = "SPEC")]
    pub wheels: Vec<String>,
    /// Install exactly the --wheel requirements, without their dependencies (pip --no-deps):
    /// for a package whose declared dependencies have no wheel for Python 3.11.
    #[arg(long)]
    pub no_deps: bool,
    /// A further Debian package (bookworm) to include; repeatable.
    #[arg(long = "package", value_name = "DEB")]
    pub packages: Vec<String>,
    /// The Debian mirror debootstrap reads.
    #[arg(
        long,
        default_value = "http://deb.debian.org/debian",
        value_name = "URL"
    )]
    pub mirror: String,
    /// Keep debootstrap's downloaded packages in DIR for the next build.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Build even when an image with the same content key exists under --tag.
    #[arg(long)]
    pub rebuild: bool,
    /// Print one JSON document (`tag`, `id`, `key`, `cached`, `python`, `debian`, `wheels`,
    /// `rootfs`) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What was built (or found).
#[derive(Debug, Serialize)]
pub struct BaseImage {
    pub tag: String,
    pub id: String,
    pub key: String,
    pub cached: bool,
    pub python: String,
    /// Debian package -> exact version.
    pub debian: BTreeMap<String, String>,
    /// Wheel (as its metadata names it) -> exact version.
    pub wheels: BTreeMap<String, String>,
    /// sha256 of the imported root filesystem tar (the layer's diff ID).
    pub rootfs: String,
}

pub fn run(command: BaseCommand) -> u8 {
    let BaseCommand::Python(opts) = command;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(python(&opts)) {
        Ok(img) if opts.json => crate::store::out(&crate::common::json_document(&img)),
        Ok(img) => crate::store::out(&describe(&img)),
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn describe(img: &BaseImage) -> String {
    let mut s = format!(
        "{} {} ({})\nkey {}\nrootfs {}\npython {}, {} Debian packages",
        if img.cached { "cached" } else { "built" },
        img.tag,
        img.id,
        img.key,
        img.rootfs,
        img.python,
        img.debian.len()
    );
    if !img.wheels.is_empty() {
        let w: Vec<String> = img
            .wheels
            .iter()
            .map(|(n, v)| format!("{n}=={v}"))
            .collect();
        let _ = write!(s, "\nwheels {}", w.join(" "));
    }
    s
}

/// The content key: what decides the image's content.
pub fn content_key(opts: &PythonBase) -> String {
    let mut h = Sha256::new();
    let mut packages = opts.packages.clone();
    packages.sort();
    packages.dedup();
    let mut wheels = opts.wheels.clone();
    wheels.sort();
    wheels.dedup();
    for part in [
        RECIPE.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
        SUITE.to_owned(),
        opts.mirror.clone(),
        format!("no-deps={}", opts.no_deps),
        format!("packages={}", packages.join(" ")),
        format!("wheels={}", wheels.join("\u{1f}")),
        format!(
            "warden_algorithm={}",
            hex::encode(Sha256::digest(WARDEN_ALGORITHM))
        ),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn label(key: &str) -> String {
    format!("{LABEL}.{key}")
}

async fn python(opts: &PythonBase) -> anyhow::Result<BaseImage> {
    use anyhow::Context as _;
    let key = content_key(opts);
    let docker =
        Docker::connect_with_local_defaults().context("connecting to the Docker engine")?;
    if !opts.rebuild {
        if let Some(img) = cached(&docker, &opts.tag, &key).await {
            return Ok(img);
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("warden-base-")
        .tempdir_in(std::env::var_os("TMPDIR").map_or_else(|| "/var/tmp".into(), PathBuf::from))
        .context("making a build directory")?;
    let root = dir.path().join("root");
    debootstrap(opts, &root)?;
    let wheels = wheels(opts, &root)?;
    std::fs::create_dir_all(root.join(SITE).join("warden_algorithm"))?;
    std::fs::write(
        root.join(SITE).join("warden_algorithm/__init__.py"),
        WARDEN_ALGORITHM,
    )?;
    // Byte code for everything Python imports, hash-based and never checked against the
    // source: Debian compiles its modules at install time with timestamps, and the tar's fixed
    // mtimes (below) would make every one of them stale, so that an algorithm on a read-only
    // root compiled the standard library it imports at every start. `-f` rewrites Debian's.
    run_checked(
        Command::new("chroot").arg(&root).args([
            "/usr/bin/python3",
            "-m",
            "compileall",
            "-q",
            "-f",
            "--invalidation-mode",
            "unchecked-hash",
            "/usr/lib/python3.11",
            "/usr/lib/python3/dist-packages",
            &format!("/{SITE}"),
        ]),
        "compiling the byte code",
    )?;
    // apt is not needed to run an algorithm (dpkg stays: its database lists what is inside)
    run_checked(
        Command::new("chroot").arg(&root).args([
            "/usr/bin/dpkg",
            "--purge",
            "--force-depends",
            "--force-remove-essential",
            "apt",
            "libapt-pkg6.0",
        ]),
        "removing apt",
    )?;
    let debian = debian_versions(&root)?;
    let python = debian
        .get("python3.11")
        .cloned()
        .context("python3.11 is not installed in the root")?;
    strip(&root)?;
    let tar = rootfs_tar(&root)?;
    let rootfs = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
    let list = |m: &BTreeMap<String, String>, sep: &str| {
        m.iter()
            .map(|(n, v)| format!("{n}{sep}{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut labels = vec![
        (label("key"), key.clone()),
        (label("suite"), SUITE.to_owned()),
        (label("python"), python.clone()),
        (label("debian"), list(&debian, "=")),
        (label("wheels"), list(&wheels, "==")),
        (label("rootfs"), rootfs.clone()),
    ];
    labels.push((label("warden"), env!("CARGO_PKG_VERSION").to_owned()));
    let mut changes = vec![
        "USER 65534:65534".to_owned(),
        "WORKDIR /tmp".to_owned(),
        "ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8".to_owned(),
        r#"ENTRYPOINT ["/usr/bin/python3", "-s", "-B"]"#.to_owned(),
    ];
    for (k, v) in &labels {
        changes.push(format!(
            "LABEL {k}={}",
            serde_json::Value::String(v.clone())
        ));
    }
    let id = import(&docker, tar, &opts.tag, &changes).await?;
    Ok(BaseImage {
        tag: opts.tag.clone(),
        id,
        key,
        cached: false,
        python,
        debian,
        wheels,
        rootfs,
    })
}

/// The image under `tag` when its content key is `key`.
async fn cached(docker: &Docker, tag: &str, key: &str) -> Option<BaseImage> {
    let image = docker.inspect_image(tag).await.ok()?;
    let labels = image.config?.labels?;
    if labels.get(&label("key")).map(String::as_str) != Some(key) {
        return None;
    }
    let pairs = |name: &str, sep: &str| -> BTreeMap<String, String> {
        labels
            .get(&label(name))
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.split_once(sep))
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(BaseImage {
        tag: tag.to_owned(),
        id: image.id?,
        key: key.to_owned(),
        cached: true,
        python: labels.get(&label("python")).cloned().unwrap_or_default(),
        debian: pairs("debian", "="),
        wheels: pairs("wheels", "=="),
        rootfs: labels.get(&label("rootfs")).cloned().unwrap_or_default(),
    })
}

fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!(
            "{what}: {:?} failed ({}):\n{}",
            cmd.get_program(),
            out.status,
            tail.join("\n")
        );
    }
    Ok(out.stdout)
}

fn debootstrap(opts: &PythonBase, root: &Path) -> anyhow::Result<()> {
    let mut include = vec!["python3".to_owned()];
    include.extend(opts.packages.iter().cloned());
    let mut cmd = Command::new("debootstrap");
    cmd.args([
        "--variant=minbase",
        &format!("--include={}", include.join(",")),
    ]);
    if let Some(dir) = &opts.cache_dir {
        std::fs::create_dir_all(dir)?;
        cmd.arg(format!(
            "--cache-dir={}",
            std::fs::canonicalize(dir)?.display()
        ));
    }
    cmd.arg(SUITE).arg(root).arg(&opts.mirror);
    eprintln!(
        "debootstrap {SUITE} (python3 {}) ...",
        opts.packages.join(" ")
    );
    run_checked(&mut cmd, "debootstrap (installed? run as root?)")?;
    Ok(())
}

/// pip's platform tags for bookworm's glibc 2.36 on x86_64 (pip takes them literally).
fn platforms() -> Vec<String> {
    let mut p: Vec<String> = (5..=36)
        .rev()
        .map(|m| format!("manylinux_2_{m}_x86_64"))
        .collect();
    p.extend(
        [
            "manylinux2014_x86_64",
            "manylinux2010_x86_64",
            "manylinux1_x86_64",
        ]
        .map(String::from),
    );
    p
}

/// Installs the wheels into the root's site folder; returns name -> version from their metadata.
fn wheels(opts: &PythonBase, root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let site = root.join(SITE);
    std::fs::create_dir_all(&site)?;
    if opts.wheels.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--no-compile",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--target",
    ])
    .arg(&site);
    for p in platforms() {
        cmd.args(["--platform", &p]);
    }
    if opts.no_deps {
        cmd.arg("--no-deps");
    }
    cmd.arg("--").args(&opts.wheels);
    eprintln!("pip install {} ...", opts.wheels.join(" "));
    run_checked(&mut cmd, "installing the wheels")?;
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&site)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "dist-info") {
            let meta = std::fs::read_to_string(path.join("METADATA"))?;
            let field = |f: &str| {
                meta.lines()
                    .take_while(|l| !l.is_empty())
                    .find_map(|l| l.strip_prefix(f).map(|v| v.trim().to_owned()))
            };
            if let (Some(n), Some(v)) = (field("Name:"), field("Version:")) {
                out.insert(n, v);
            }
        }
    }
    // pip's own records of the install are not needed at run time
    let bin = site.join("bin");
    if bin.exists() {
        std::fs::remove_dir_all(bin)?;
    }
    Ok(out)
}

fn debian_versions(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let out = run_checked(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"]),
        "listing the Debian packages",
    )?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (status, name, version) = (f.next()?, f.next()?, f.next()?);
            status
                .starts_with("ii")
                .then(|| (name.to_owned(), version.to_owned()))
        })
        .collect())
}

fn strip(root: &Path) -> anyhow::Result<()> {
    for rel in STRIP {
        let p = root.join(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else if p.exists() {
            std::fs::remove_file(&p)?;
        }
    }
    for rel in EMPTY {
        let p = root.join(rel);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
        std::fs::create_dir_all(&p)?;
    }
    // the build machine's identity and resolver are not the image's
    for f in ["etc/hostname", "etc/resolv.conf", "etc/machine-id"] {
        let _ = std::fs::remove_file(root.join(f));
    }
    use std::os::unix::fs::PermissionsExt as _;
    for t in ["tmp", "var/tmp"] {
        std::fs::set_permissions(root.join(t), std::fs::Permissions::from_mode(0o1777))?;
    }
    Ok(())
}

/// The root as a tar: names sorted, fixed mtimes (SOURCE_DATE_EPOCH, else bookworm's release
/// date), numeric owners, no atime or ctime, so the same root gives the same bytes.
fn rootfs_tar(root: &Path) -> anyhow::Result<Vec<u8>> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(EPOCH);
    run_checked(
        Command::new("tar")
            .env("LC_ALL", "C")
            .args([
                "--sort=name",
                &format!("--mtime=@{epoch}"),
                "--numeric-owner",
                "--format=posix",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                "-C",
            ])
            .arg(root)
            .args(["-cf", "-", "."]),
        "writing the root filesystem tar",
    )
}

async fn import(
    docker: &Docker,
    tar: Vec<u8>,
    tag: &str,
    changes: &[String],
) -> anyhow::Result<String> {
    let (repo, tag_part) = match tag.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (tag, "latest"),
    };
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.to_owned()),
        tag: Some(tag_part.to_owned()),
        changes: changes.to_vec(),
        ..Default::default()
    };
    let body = bollard::body_full(tar.into());
    let mut stream = docker.create_image(Some(options), Some(body), None);
    let mut id = None;
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| anyhow::anyhow!("importing {tag}: {e}"))?;
        if let Some(status) = info.status.filter(|s| s.starts_with("sha256:")) {
            id = Some(status);
        }
    }
    id.ok_or_else(|| anyhow::anyhow!("importing {tag}: the engine gave no image ID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(wheels: &[&str], packages: &[&str]) -> PythonBase {
        PythonBase {
            tag: "x:y".into(),
            wheels: wheels.iter().map(|s| s.to_string()).collect(),
            no_deps: false,
            packages: packages.iter().map(|s| s.to_string()).collect(),
            mirror: "http://deb.debian.org/debian".into(),
            cache_dir: None,
            rebuild: false,
            json: false,
        }
    }

    #[test]
    fn the_key_depends_on_the_content_not_on_the_order_or_the_tag() {
        let a = content_key(&opts(&["numpy==1.26.4", "pandas"], &["tzdata"]));
        let mut b = opts(&["pandas", "numpy==1.26.4"], &["tzdata"]);
        b.tag = "other:tag".into();
        b.json = true;
        assert_eq!(a, content_key(&b));
        assert_ne!(
            a,
            content_key(&opts(&["numpy==1.26.3", "pandas"], &["tzdata"]))
        );
        assert_ne!(a, content_key(&opts(&["numpy==1.26.4", "pandas"], &[])));
        let mut c = opts(&["numpy==1.26.4", "pandas"], &["tzdata"]);
        c.no_deps = true;
        assert_ne!(a, content_key(&c));
    }
}
