//! `warden algorithm build` and `warden algorithm rebuild` (issue 15): a reproducible image from
//! one source commit (crates/build), pushed with its signed SLSA provenance by Warden's registry
//! client, and the comparison of a published digest with one's own rebuild.
//!
//! Exit status of `rebuild`: 0 the rebuild has the published digest, 1 it differs (the first
//! differing layer and file are named), 2 bad input, a registry failure or a build that failed.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;
use warden_api::display::safe;
use warden_build::{Build, BuildError, BuildRequest, LayerDiff, provenance, publish};
use warden_reference::{Digest, Reference, Repository};
use warden_trust::SigningKey;

use crate::image::RegistryArgs;

pub const EXIT_MATCH: u8 = 0;
pub const EXIT_MISMATCH: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;

/// Where the source is: one commit of a repository, and the algorithm's directory in it.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A git repository directory (only the commit is read, never the work tree) or a git URL
    /// (cloned).
    #[arg(long, value_name = "DIR|GIT_URL")]
    pub source: String,
    /// The commit to build, in hex (7 to 64 digits); a branch or tag name is refused.
    #[arg(long, value_name = "SHA")]
    pub commit: String,
    /// The algorithm's directory inside the repository (a Cargo package or C sources).
    #[arg(long, value_name = "SUBDIR")]
    pub path: String,
    /// The source URI recorded in the image and its provenance. Default: the URL given as
    /// --source, else the repository's `origin` remote, else none (for `rebuild`: the one the
    /// published image records).
    #[arg(long, value_name = "URL")]
    pub source_uri: Option<String>,
    /// Keep compiled targets here between builds (a warm build); the output does not depend on
    /// it. Default: a fresh temporary directory (a cold build).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The image to make, `REPO:TAG` (the digest is the build's output).
    #[arg(long, value_name = "REPO:TAG")]
    pub image: String,
    /// Push the image (and, with --key, its signed provenance at the `sha256-<hex>.att` tag).
    #[arg(long)]
    pub push: bool,
    /// The builder's encrypted private key: signs the SLSA provenance attached with --push.
    #[arg(long, value_name = "BUILDER_KEY", requires = "push")]
    pub key: Option<PathBuf>,
    /// The key file's password (else WARDEN_PASSWORD).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub key_password_file: Option<PathBuf>,
    /// The builder's id recorded in the provenance (`runDetails.builder.id`). Default:
    /// `urn:warden:builder:<key id>`.
    #[arg(long, value_name = "URI", requires = "key")]
    pub builder_id: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print {"image","digest","commit",...} instead of the digest alone.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The published image, `REPO@DIGEST` (or `REPO:TAG@DIGEST`).
    #[arg(long, value_name = "REF@DIGEST")]
    pub image: String,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print one JSON document (`match`, `digest`, `rebuilt`, `layer`, `file`, `detail`).
    #[arg(long)]
    pub json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn request(s: &SourceArgs, source_uri: Option<String>) -> BuildRequest {
    BuildRequest {
        source: s.source.clone(),
        source_uri: source_uri.or_else(|| s.source_uri.clone()),
        commit: s.commit.clone(),
        path: s.path.clone(),
        cache_dir: s.cache_dir.clone(),
    }
}

/// Uncommitted changes under the path are not built; say so (on stderr) rather than surprise.
fn note_dirty(s: &SourceArgs) {
    let dir = Path::new(&s.source);
    if !dir.is_dir() {
        return;
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--", &s.path])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(o) = out
        && o.status.success()
        && !o.stdout.is_empty()
    {
        eprintln!(
            "note: the work tree has uncommitted changes under {}; they are not built (commit {} is)",
            safe(&s.path),
            safe(&s.commit)
        );
    }
}

fn load_key(path: &Path, password_file: Option<&Path>) -> anyhow::Result<SigningKey> {
    let pem = crate::common::read_small(path)?;
    let pem = std::str::from_utf8(&pem)
        .with_context(|| format!("{} is not a PEM text file", path.display()))?;
    let password = crate::common::password(password_file, "give the key's password")?;
    SigningKey::from_encrypted_pem(pem, &password)
        .with_context(|| format!("cannot open private key {}", path.display()))
}

fn build_error(e: BuildError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// `warden algorithm build`.
pub fn run_build(a: BuildArgs) -> u8 {
    match build(&a) {
        Ok(text) => crate::store::out(&text),
        Err(e) => {
            eprintln!("error: {}", safe(&format!("{e:#}")));
            EXIT_BAD_INPUT
        }
    }
}

fn build(a: &BuildArgs) -> anyhow::Result<String> {
    let reference = Reference::parse(&a.image)?;
    if reference.digest().is_some() {
        bail!(
            "--image {} names a digest; give REPO:TAG (the digest is what the build makes)",
            a.image
        );
    }
    // The reference parser defaults a missing tag to `latest`: a build names its tag.
    let named = a.image.rsplit('/').next().is_some_and(|l| l.contains(':'));
    let Some(tag) = reference.tag().filter(|_| named).map(str::to_owned) else {
        bail!("--image {} has no tag; give REPO:TAG", a.image);
    };
    let repository = reference.repository().clone();
    let key = match &a.key {
        Some(k) => Some(load_key(k, a.key_password_file.as_deref())?),
        None => None,
    };
    let client = if a.push {
        Some(crate::image::client(&a.registry)?)
    } else {
        None
    };
    note_dirty(&a.source);
    let built = warden_build::build(&request(&a.source, None)).map_err(build_error)?;
    let mut provenance_tag = None;
    if let Some(client) = &client {
        runtime()?.block_on(async {
            let pushed = publish::push(client, &repository, &tag, &built.image)
                .await
                .map_err(build_error)?;
            if pushed != built.image.digest {
                bail!(
                    "the registry holds {pushed} for the manifest built as {}",
                    built.image.digest
                );
            }
            if let Some(key) = &key {
                let id = a
                    .builder_id
                    .clone()
                    .unwrap_or_else(|| format!("urn:warden:builder:{}", key.public_key().id()));
                let envelope = provenance::sign(&built, &repository, &id, key);
                publish::attach(client, &repository, &pushed, &envelope)
                    .await
                    .map_err(build_error)?;
                provenance_tag = Some(publish::attestation_tag(&pushed));
            }
            Ok(())
        })?;
    }
    let digest = built.image.digest.to_string();
    if !a.json {
        return Ok(digest);
    }
    Ok(crate::common::json_document(&json!({
        "image": format!("{repository}:{tag}"),
        "digest": digest,
        "commit": built.commit,
        "path": built.path,
        "source_uri": built.source_uri,
        "pushed": a.push,
        "provenance": provenance_tag,
        "builder_key": key.as_ref().map(|k| k.public_key().id().to_string()),
    })))
}

/// What a rebuild found.
pub struct Rebuilt {
    pub build: Build,
    pub published: Digest,
    pub diff: Option<LayerDiff>,
}

/// Rebuilds `source` and compares it with `repository@digest` in the registry. The source URI
/// recorded in the published manifest is used when none is given, so a local checkout can
/// reproduce an image built from the URL.
pub async fn rebuild(
    client: &warden_registry::Client,
    repository: &Repository,
    digest: &Digest,
    source: &SourceArgs,
) -> anyhow::Result<Rebuilt> {
    let raw = client
        .fetch_manifest(
            repository,
            &digest.to_string(),
            4 * 1024 * 1024,
            Some(digest),
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("{repository}@{digest} is not in the registry"))?;
    let published: serde_json::Value = serde_json::from_slice(&raw.bytes)
        .with_context(|| format!("the manifest of {repository}@{digest} is not JSON"))?;
    let recorded = published["annotations"]["org.opencontainers.image.source"]
        .as_str()
        .map(str::to_owned);
    let req = request(source, source.source_uri.clone().or(recorded));
    note_dirty(source);
    let build = tokio::task::spawn_blocking(move || warden_build::build(&req))
        .await
        .context("the build task failed")?
        .map_err(build_error)?;
    let diff = publish::compare(client, repository, digest, &build.image)
        .await
        .map_err(build_error)?;
    Ok(Rebuilt {
        build,
        published: digest.clone(),
        diff,
    })
}

/// Parses `REF@DIGEST`.
pub fn pinned(image: &str) -> anyhow::Result<(Repository, Digest)> {
    let reference = Reference::parse(image)?;
    let Some(digest) = reference.digest() else {
        bail!("--image {image} names no digest; give REPO@sha256:<hex>, the image published");
    };
    Ok((reference.repository().clone(), digest.clone()))
}

/// `warden algorithm rebuild`.
pub fn run_rebuild(a: RebuildArgs) -> u8 {
    let r = (|| {
        let (repository, digest) = pinned(&a.image)?;
        let client = crate::image::client(&a.registry)?;
        runtime()?.block_on(rebuild(&client, &repository, &digest, &a.source))
    })();
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", safe(&format!("{e:#}")));
            return EXIT_BAD_INPUT;
        }
    };
    let exit = if r.diff.is_none() {
        EXIT_MATCH
    } else {
        EXIT_MISMATCH
    };
    if a.json {
        let d = r.diff.as_ref();
        crate::store::out(&crate::common::json_document(&json!({
            "image": a.image,
            "match": d.is_none(),
            "digest": r.published.to_string(),
            "rebuilt": r.build.image.digest.to_string(),
            "commit": r.build.commit,
            "path": r.build.path,
            "layer": d.and_then(|d| d.layer),
            "file": d.and_then(|d| d.file.clone()),
            "detail": d.map(|d| d.detail.clone()),
        })));
        return exit;
    }
    match &r.diff {
        None => {
            crate::store::out(&format!(
                "reproduced: {} from commit {} ({})",
                r.published,
                r.build.commit,
                safe(&r.build.path)
            ));
        }
        Some(d) => {
            crate::store::out(&format!(
                "differs: published {}, rebuilt {} from commit {}\n{}",
                r.published,
                r.build.image.digest,
                r.build.commit,
                describe(d)
            ));
        }
    }
    exit
}

/// "layer 0, file hello: content differs ..."
pub fn describe(d: &LayerDiff) -> String {
    let mut s = String::new();
    if let Some(l) = d.layer {
        s.push_str(&format!("layer {l}"));
    }
    if let Some(f) = &d.file {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(&format!("file {}", safe(f)));
    }
    if !s.is_empty() {
        s.push_str(": ");
    }
    s.push_str(&safe(&d.detail));
    s
}
