//! Reproducible algorithm images (issue 15): `warden algorithm build` and `rebuild`.
//!
//! A build takes exactly one source commit (a `git archive` export, never a work tree), compiles
//! the algorithm as a static binary with its paths remapped and `SOURCE_DATE_EPOCH` set from the
//! commit ([`compile`]), and assembles an OCI image in Rust without Docker ([`image`]): one
//! uncompressed layer with sorted entries, owner 0:0, fixed modes and mtime, a config with a fixed
//! creation time, user 65534:65534 and the entry point, and a manifest with the OCI source and
//! revision annotations. Its digest depends only on the commit and the recorded toolchain.
//!
//! Each build emits SLSA v1 provenance in an in-toto statement ([`provenance`]), signed as a DSSE
//! envelope by the builder's key and attached in the registry at the cosign attestation tag
//! `sha256-<hex>.att` ([`publish`]). [`provenance::check_reproduced`] is the `reproduced_by`
//! check: at least `min` distinct pinned builder keys attest this digest from one commit.

pub mod compile;
pub mod image;
pub mod provenance;
pub mod publish;
pub mod source;

use std::path::{Path, PathBuf};

use warden_reference::Digest;

pub use compile::{Kind, Toolchain};
pub use image::{Image, LayerDiff};

/// Why a build or a check failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Bad arguments or source: exit code 2 for `rebuild`.
    #[error("{0}")]
    Input(String),
    #[error("{what} failed: {why}")]
    Tool { what: String, why: String },
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Registry(#[from] warden_registry::RegistryError),
}

impl BuildError {
    fn io(what: impl std::fmt::Display, e: std::io::Error) -> Self {
        BuildError::Io(format!("{what}: {e}"))
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// A local git repository (its work tree is never read) or a git URL.
    pub source: String,
    /// The source repository's canonical URI recorded in the image and the provenance; by
    /// default `source` when it is a URL, else the repository's `origin` remote, else none. It
    /// must not be a local path, so builders in different directories agree.
    pub source_uri: Option<String>,
    /// Commit, as hex (7 to 64 digits); resolved to the full object name.
    pub commit: String,
    /// The algorithm's directory inside the repository, e.g. `algorithms/mean`.
    pub path: String,
    /// Where targets (and the export, at `src/`) are kept between builds (a warm cache); a
    /// fresh temporary directory if `None`. The output does not depend on it: every path is
    /// remapped. One build at a time per cache directory.
    pub cache_dir: Option<PathBuf>,
}

/// One finished build.
#[derive(Debug, Clone)]
pub struct Build {
    pub image: Image,
    /// Full commit object name.
    pub commit: String,
    /// Commit time, the `SOURCE_DATE_EPOCH` of the build.
    pub epoch: i64,
    pub source_uri: String,
    pub path: String,
    pub kind: Kind,
    pub toolchain: Toolchain,
    /// sha256 of the `Cargo.lock` used (Rust builds).
    pub lock_digest: Option<Digest>,
    /// The flags that determine the output, as recorded in the provenance.
    pub flags: Vec<String>,
}

/// Builds `request`: export, compile, assemble. Nothing is pushed.
pub fn build(request: &BuildRequest) -> Result<Build, BuildError> {
    let path = source::check_subdir(&request.path)?;
    let scratch = tempfile::Builder::new()
        .prefix("warden-build-")
        .tempdir()
        .map_err(|e| BuildError::io("creating a build directory", e))?;
    // With a cache, the export sits at a fixed place in it: the remapping flags (whose left
    // sides are these paths) are then the same from build to build, so cargo's fingerprints
    // hold and a warm build only compiles what changed. One build at a time per cache.
    let src = match &request.cache_dir {
        Some(dir) => {
            let src = dir.join("src");
            if src.exists() {
                std::fs::remove_dir_all(&src).map_err(|e| BuildError::io(src.display(), e))?;
            }
            src
        }
        None => scratch.path().join("src"),
    };
    let exported = source::export(&request.source, &request.commit, &src, scratch.path())?;
    let source_uri = match &request.source_uri {
        Some(u) => u.clone(),
        None => exported.origin.clone().unwrap_or_default(),
    };
    let target = match &request.cache_dir {
        Some(dir) => dir.join("target"),
        None => scratch.path().join("target"),
    };
    std::fs::create_dir_all(&target).map_err(|e| BuildError::io(target.display(), e))?;
    let dir = src.join(&path);
    if !dir.is_dir() {
        return Err(BuildError::Input(format!(
            "commit {} has no directory {path}",
            exported.commit
        )));
    }
    let kind = compile::detect(&dir)?;
    let compiled = compile::compile(&kind, &src, &dir, &target, exported.epoch)?;
    let lock_digest = find_lock(&src, &dir);
    let entry = format!("/{}", compiled.name);
    let spec = image::ImageSpec {
        files: vec![image::File {
            path: compiled.name.clone(),
            bytes: compiled.binary,
            mode: 0o755,
        }],
        entrypoint: vec![entry],
        epoch: exported.epoch,
        source_uri: source_uri.clone(),
        revision: exported.commit.clone(),
        path: path.clone(),
    };
    Ok(Build {
        image: image::assemble(&spec),
        commit: exported.commit,
        epoch: exported.epoch,
        source_uri,
        path,
        kind,
        toolchain: compiled.toolchain,
        lock_digest,
        flags: compiled.flags,
    })
}

/// The nearest `Cargo.lock` from the algorithm's directory up to the export root.
fn find_lock(root: &Path, dir: &Path) -> Option<Digest> {
    dir.ancestors()
        .take_while(|d| d.starts_with(root))
        .find_map(|d| std::fs::read(d.join("Cargo.lock")).ok())
        .map(|b| Digest::sha256_of(&b))
}
