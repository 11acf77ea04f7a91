//! OCI image layouts (image-spec `image-layout.md`) for air-gapped nodes: a folder holding
//! `oci-layout`, `index.json` and `blobs/<alg>/<hex>`, and the tar archive of one.
//!
//! - [`export`] copies an image from a registry into a [`LayoutWriter`] by the digest it
//!   resolved, with its evidence: the cosign `.sig` and `.att` tags and every OCI 1.1 referrer
//!   (Notary signatures, cosign referrers) of each digest a signature may name. The caller adds
//!   Warden's own referrers (store evidence, [`STORE_EVIDENCE_ARTIFACT`]) with
//!   [`LayoutWriter::add_referrer`]; the referrers of a digest are written as the tag-schema
//!   index at `sha256-<hex>`, as a registry without the referrers API holds them.
//! - [`unpack`] reads an archive that came over the air gap, untrusted: only `oci-layout`,
//!   `index.json` and `blobs/<alg>/<hex>` regular files, each blob hashed while it is written
//!   and refused unless it hashes to its name, with caps on the entry count and the bytes.
//! - [`Client::layout`] reads a layout through the very code that reads a registry (resolution,
//!   signatures, Notary, attestations): only the three reads change, and every manifest and
//!   blob is hashed again when it is read.
//!
//! Tags live in `index.json` as entries whose `org.opencontainers.image.ref.name` is the full
//! reference `registry/path:tag`, so one layout can hold the images of several repositories.
//! The image the archive was made for carries the annotation [`IMAGE_ANNOTATION`]
//! (`registry/path@digest`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest as _;
use warden_reference::{Digest, Reference, Repository};

use crate::client::{Client, RawManifest, attestation_tag};
use crate::manifest::{self, Descriptor, ImageIndex, ImageManifest, Manifest, OCI_INDEX};
use crate::{RegistryError, SkippedSignature};

/// The annotation naming the full reference of a tagged manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation that marks the image an archive was made for, as `registry/path@digest`.
pub const IMAGE_ANNOTATION: &str = "dev.warden.image";
/// Artifact type (and layer media type) of an algorithm store's evidence for a digest, as the
/// exporter fetched it (`warden_api::store::ExportedEvidence`); the node verifies it as if the
/// store had answered.
pub const STORE_EVIDENCE_ARTIFACT: &str = "application/vnd.warden.store.evidence.v1+json";
/// The empty config of artifact manifests (image-spec 1.1).
const EMPTY_CONFIG: &str = "application/vnd.oci.image.empty.v1+json";
/// Largest `index.json` read.
const MAX_INDEX_BYTES: u64 = 4 << 20;
/// Most entries in `index.json`.
const MAX_INDEX_ENTRIES: usize = 10_000;
/// Largest store evidence layer read (the node's cap on a store's answer).
pub const MAX_STORE_EVIDENCE: u64 = 4 << 20;

fn layout_error(dir: &Path, why: impl Into<String>) -> RegistryError {
    RegistryError::Layout {
        dir: dir.display().to_string(),
        why: why.into(),
    }
}

/// The path of a blob under a layout folder.
fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().name())
        .join(digest.hex())
}

/// A layout folder opened for reading. Its `index.json` is read once; blobs are read (and
/// hashed) on demand.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
    index: ImageIndex,
}

impl OciLayout {
    /// Opens `dir`, which must hold `oci-layout` (version 1.0.0) and an `index.json`.
    pub fn open(dir: &Path) -> Result<OciLayout, RegistryError> {
        let marker = read_file(dir, &dir.join("oci-layout"), 4096)?;
        let version: serde_json::Value = serde_json::from_slice(&marker)
            .map_err(|e| layout_error(dir, format!("oci-layout is not JSON: {e}")))?;
        if version.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(layout_error(
                dir,
                "oci-layout does not say imageLayoutVersion 1.0.0",
            ));
        }
        let bytes = read_file(dir, &dir.join("index.json"), MAX_INDEX_BYTES)?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| layout_error(dir, format!("index.json is not an image index: {e}")))?;
        if index.schema_version != 2 {
            return Err(layout_error(dir, "index.json is not schemaVersion 2"));
        }
        if index.manifests.len() > MAX_INDEX_ENTRIES {
            return Err(layout_error(
                dir,
                format!("index.json lists more than {MAX_INDEX_ENTRIES} manifests"),
            ));
        }
        Ok(OciLayout {
            dir: dir.to_owned(),
            index,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entries of `index.json`.
    pub fn entries(&self) -> &[Descriptor] {
        &self.index.manifests
    }

    /// The images the layout was made for: entries with [`IMAGE_ANNOTATION`], as references
    /// (`registry/path@digest`, and the tag when the entry has a ref name).
    pub fn images(&self) -> Result<Vec<(Reference, Descriptor)>, RegistryError> {
        let mut out = Vec::new();
        for d in &self.index.manifests {
            let Some(image) = d.annotations.as_ref().and_then(|a| a.get(IMAGE_ANNOTATION)) else {
                continue;
            };
            let reference = Reference::parse(image).map_err(|e| {
                layout_error(&self.dir, format!("the image annotation `{image}`: {e}"))
            })?;
            let named = reference.digest().map(ToString::to_string);
            if named.as_deref() != Some(d.digest.as_str()) {
                return Err(layout_error(
                    &self.dir,
                    format!(
                        "the image annotation `{image}` does not name the entry's digest {}",
                        d.digest
                    ),
                ));
            }
            out.push((reference, d.clone()));
        }
        Ok(out)
    }

    fn tagged(&self, repository: &Repository, tag: &str) -> Option<&Descriptor> {
        let name = format!("{repository}:{tag}");
        // The last entry of a name wins, as a later tag push would.
        self.index.manifests.iter().rev().find(|d| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .is_some_and(|n| *n == name)
        })
    }

    /// A manifest by tag or digest, as [`Client::fetch_manifest`] reads it from a registry:
    /// capped, hashed, `None` when absent.
    pub(crate) fn manifest(
        &self,
        repository: &Repository,
        reference: &str,
        cap: u64,
        expected: Option<&Digest>,
    ) -> Result<Option<RawManifest>, RegistryError> {
        let (digest, content_type) = match Digest::parse(reference) {
            Ok(d) => (d, None),
            Err(_) => match self.tagged(repository, reference) {
                Some(d) => (
                    d.parsed_digest()
                        .map_err(|e| layout_error(&self.dir, format!("index.json entry: {e}")))?,
                    Some(d.media_type.clone()),
                ),
                None => return Ok(None),
            },
        };
        if expected.is_some_and(|e| *e != digest) {
            return Err(layout_error(
                &self.dir,
                format!(
                    "{repository}:{reference} names {digest}, not the expected {}",
                    expected.map(ToString::to_string).unwrap_or_default()
                ),
            ));
        }
        let path = blob_path(&self.dir, &digest);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = self.read_blob(&digest, cap)?;
        Ok(Some(RawManifest {
            media_type: manifest::effective_media_type(&bytes, content_type.as_deref()),
            bytes,
            digest,
        }))
    }

    /// A blob, capped and checked against its digest (and `size` when given).
    pub(crate) fn blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        cap: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if size.is_some_and(|s| s > cap) {
            return Err(layout_error(
                &self.dir,
                format!("blob {digest} is declared larger than the cap of {cap} bytes"),
            ));
        }
        let bytes = self.read_blob(digest, cap)?;
        if let Some(s) = size
            && s != bytes.len() as u64
        {
            return Err(layout_error(
                &self.dir,
                format!(
                    "blob {digest}: the descriptor says {s} bytes, the blob has {}",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }

    /// The path of `digest`'s blob, after checking that it hashes to its name (for streaming a
    /// large layer without holding it in memory).
    pub fn verified_blob_path(&self, digest: &Digest) -> Result<PathBuf, RegistryError> {
        let path = blob_path(&self.dir, digest);
        let file = fs::File::open(&path)
            .map_err(|e| layout_error(&self.dir, format!("blob {digest}: {e}")))?;
        let actual = hash_reader(file, digest)
            .map_err(|e| layout_error(&self.dir, format!("reading blob {digest}: {e}")))?;
        if actual != digest.hex() {
            return Err(layout_error(
                &self.dir,
                format!("blob {digest} hashes to {actual}; the layout was altered"),
            ));
        }
        Ok(path)
    }

    fn read_blob(&self, digest: &Digest, cap: u64) -> Result<Vec<u8>, RegistryError> {
        let path = blob_path(&self.dir, digest);
        let bytes = match read_file(&self.dir, &path, cap) {
            Err(RegistryError::Layout { why, .. }) if why.contains("No such file") => {
                return Err(RegistryError::NotFound {
                    repository: format!("the image layout {}", self.dir.display()),
                    what: format!("blob {digest}"),
                });
            }
            other => other?,
        };
        if !digest.matches(&bytes) {
            return Err(layout_error(
                &self.dir,
                format!("blob {digest} does not hash to its name; the layout was altered"),
            ));
        }
        Ok(bytes)
    }
}

impl OciLayout {
    /// The image manifest at `digest` (a platform manifest, not an index), read and parsed.
    pub fn image_manifest(&self, digest: &Digest) -> Result<ImageManifest, RegistryError> {
        let bytes = self.read_blob(digest, 4 << 20)?;
        match manifest::parse(&bytes, None) {
            Ok(Manifest::Image(m)) => Ok(*m),
            Ok(Manifest::Index(_)) => Err(layout_error(
                &self.dir,
                format!("{digest} is an index, not an image manifest"),
            )),
            Err(why) => Err(layout_error(&self.dir, format!("manifest {digest}: {why}"))),
        }
    }

    /// Writes to `out` a docker-archive (what `docker load` of engine 20.10 reads) of the image
    /// manifest `m`: `manifest.json` naming the config and the layers, untagged, and those
    /// blobs, each hashed again as it is read.
    pub fn docker_archive(&self, m: &ImageManifest, out: &Path) -> Result<(), RegistryError> {
        let config = m
            .config
            .parsed_digest()
            .map_err(|e| layout_error(&self.dir, format!("the config descriptor: {e}")))?;
        let mut layers = Vec::new();
        for l in &m.layers {
            if l.media_type.contains("nondistributable") || l.media_type.contains("foreign") {
                return Err(layout_error(
                    &self.dir,
                    format!(
                        "layer {} is a foreign layer, which an archive cannot carry",
                        l.digest
                    ),
                ));
            }
            layers.push(
                l.parsed_digest()
                    .map_err(|e| layout_error(&self.dir, format!("a layer descriptor: {e}")))?,
            );
        }
        let name = |d: &Digest| format!("blobs/{}/{}", d.algorithm().name(), d.hex());
        let manifest = serde_json::json!([{
            "Config": name(&config),
            "RepoTags": [],
            "Layers": layers.iter().map(name).collect::<Vec<_>>(),
        }]);
        let file = fs::File::create(out)
            .map_err(|e| layout_error(&self.dir, format!("{}: {e}", out.display())))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut add = |path: &str, data: &mut dyn Read, len: u64| {
            let mut header = tar::Header::new_ustar();
            header.set_size(len);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, data)
                .map_err(|e| layout_error(&self.dir, format!("writing the archive: {e}")))
        };
        let manifest = manifest.to_string().into_bytes();
        add(
            "manifest.json",
            &mut manifest.as_slice(),
            manifest.len() as u64,
        )?;
        let config_bytes = self.blob(&config, Some(m.config.size), 4 << 20)?;
        add(
            &name(&config),
            &mut config_bytes.as_slice(),
            config_bytes.len() as u64,
        )?;
        let mut seen = std::collections::BTreeSet::new();
        for (d, desc) in layers.iter().zip(&m.layers) {
            if !seen.insert(d.to_string()) {
                continue;
            }
            let path = self.verified_blob_path(d)?;
            let mut f = fs::File::open(&path)
                .map_err(|e| layout_error(&self.dir, format!("blob {d}: {e}")))?;
            let len = f
                .metadata()
                .map_err(|e| layout_error(&self.dir, e.to_string()))?
                .len();
            if len != desc.size {
                return Err(layout_error(
                    &self.dir,
                    format!(
                        "layer {d}: the descriptor says {} bytes, the blob has {len}",
                        desc.size
                    ),
                ));
            }
            add(&name(d), &mut f, len)?;
        }
        tar.into_inner()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .and_then(|f| f.sync_all())
            .map_err(|e| layout_error(&self.dir, format!("writing the archive: {e}")))
    }
}

fn hash_reader(r: impl Read, digest: &Digest) -> std::io::Result<String> {
    match digest.algorithm().name() {
        "sha512" => hash_with::<sha2::Sha512>(r),
        _ => hash_with::<sha2::Sha256>(r),
    }
}

/// The hex digest of everything `r` holds, read in 64 KiB pieces.
fn hash_with<H: sha2::Digest>(mut r: impl Read) -> std::io::Result<String> {
    let mut h = H::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

fn read_file(dir: &Path, path: &Path, cap: u64) -> Result<Vec<u8>, RegistryError> {
    let name = path.strip_prefix(dir).unwrap_or(path).display().to_string();
    let file = fs::File::open(path).map_err(|e| layout_error(dir, format!("{name}: {e}")))?;
    let mut out = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| layout_error(dir, format!("reading {name}: {e}")))?;
    if out.len() as u64 > cap {
        return Err(layout_error(
            dir,
            format!("{name} is larger than the cap of {cap} bytes"),
        ));
    }
    Ok(out)
}

/// Builds a layout folder: blobs are written as they come, `index.json` (with the referrers
/// tag indexes) at [`LayoutWriter::finish`].
#[derive(Debug)]
pub struct LayoutWriter {
    dir: PathBuf,
    entries: Vec<Descriptor>,
    referrers: BTreeMap<(String, String), Vec<Descriptor>>,
}

impl LayoutWriter {
    /// Starts a layout in `dir`, which must be empty or absent.
    pub fn create(dir: &Path) -> Result<LayoutWriter, RegistryError> {
        if dir.exists()
            && fs::read_dir(dir)
                .map_err(|e| layout_error(dir, e.to_string()))?
                .next()
                .is_some()
        {
            return Err(layout_error(dir, "the folder is not empty"));
        }
        fs::create_dir_all(dir.join("blobs").join("sha256"))
            .map_err(|e| layout_error(dir, e.to_string()))?;
        Ok(LayoutWriter {
            dir: dir.to_owned(),
            entries: Vec::new(),
            referrers: BTreeMap::new(),
        })
    }

    /// Writes a blob (once per digest); returns its sha256 digest.
    pub fn put_blob(&mut self, bytes: &[u8]) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256_of(bytes);
        self.put_blob_as(&digest, bytes)?;
        Ok(digest)
    }

    fn put_blob_as(&mut self, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
        if !digest.matches(bytes) {
            return Err(layout_error(
                &self.dir,
                format!("blob {digest} does not hash to its digest"),
            ));
        }
        let path = blob_path(&self.dir, digest);
        if path.exists() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| layout_error(&self.dir, e.to_string()))?;
        }
        fs::write(&path, bytes).map_err(|e| layout_error(&self.dir, format!("{digest}: {e}")))
    }

    /// Lists `descriptor` in `index.json` under `registry/path:tag` (and with `annotations`).
    pub fn tag(
        &mut self,
        repository: &Repository,
        tag: Option<&str>,
        mut descriptor: Descriptor,
        annotations: BTreeMap<String, String>,
    ) {
        let mut a = descriptor.annotations.take().unwrap_or_default();
        a.extend(annotations);
        if let Some(tag) = tag {
            a.insert(REF_NAME.into(), format!("{repository}:{tag}"));
        }
        descriptor.annotations = Some(a);
        self.entries.push(descriptor);
    }

    /// Adds an artifact referring to `subject` (an OCI 1.1 referrer with an empty config and
    /// one layer holding `payload`), listed in the subject's referrers tag index.
    pub fn add_referrer(
        &mut self,
        repository: &Repository,
        subject: &Descriptor,
        artifact_type: &str,
        payload: &[u8],
        annotations: BTreeMap<String, String>,
    ) -> Result<Digest, RegistryError> {
        let config = self.put_blob(b"{}")?;
        let layer = self.put_blob(payload)?;
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(manifest::OCI_MANIFEST.into()),
            artifact_type: Some(artifact_type.into()),
            config: Descriptor {
                media_type: EMPTY_CONFIG.into(),
                size: 2,
                digest: config.to_string(),
                annotations: None,
                platform: None,
                artifact_type: None,
            },
            layers: vec![Descriptor {
                media_type: artifact_type.into(),
                size: payload.len() as u64,
                digest: layer.to_string(),
                annotations: None,
                platform: None,
                artifact_type: None,
            }],
            subject: Some(Descriptor {
                annotations: None,
                platform: None,
                artifact_type: None,
                ..subject.clone()
            }),
            annotations: (!annotations.is_empty()).then(|| annotations.clone()),
        };
        let bytes = serde_json::to_vec(&m).map_err(|e| layout_error(&self.dir, e.to_string()))?;
        let digest = self.put_blob(&bytes)?;
        self.push_referrer(
            repository,
            &subject.digest,
            Descriptor {
                media_type: manifest::OCI_MANIFEST.into(),
                size: bytes.len() as u64,
                digest: digest.to_string(),
                annotations: (!annotations.is_empty()).then_some(annotations),
                platform: None,
                artifact_type: Some(artifact_type.into()),
            },
        );
        Ok(digest)
    }

    fn push_referrer(&mut self, repository: &Repository, subject: &str, d: Descriptor) {
        let list = self
            .referrers
            .entry((repository.to_string(), subject.to_owned()))
            .or_default();
        if !list.iter().any(|x| x.digest == d.digest) {
            list.push(d);
        }
    }

    /// Writes the referrers tag indexes, `index.json` and `oci-layout`.
    pub fn finish(mut self) -> Result<PathBuf, RegistryError> {
        for ((repository, subject), list) in std::mem::take(&mut self.referrers) {
            let index = ImageIndex {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: list,
                annotations: None,
            };
            let bytes =
                serde_json::to_vec(&index).map_err(|e| layout_error(&self.dir, e.to_string()))?;
            let digest = self.put_blob(&bytes)?;
            let repo = Repository::parse(&repository)
                .map_err(|e| layout_error(&self.dir, e.to_string()))?;
            let tag = subject.replacen(':', "-", 1);
            self.tag(
                &repo,
                Some(&tag),
                Descriptor {
                    media_type: OCI_INDEX.into(),
                    size: bytes.len() as u64,
                    digest: digest.to_string(),
                    annotations: None,
                    platform: None,
                    artifact_type: None,
                },
                BTreeMap::new(),
            );
        }
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: self.entries,
            annotations: None,
        };
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| layout_error(&self.dir, e.to_string()))?;
        fs::write(self.dir.join("index.json"), bytes)
            .map_err(|e| layout_error(&self.dir, e.to_string()))?;
        fs::write(
            self.dir.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .map_err(|e| layout_error(&self.dir, e.to_string()))?;
        Ok(self.dir)
    }
}

/// Caps on an archive read by [`unpack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most bytes of all files together.
    pub max_bytes: u64,
    /// Most entries.
    pub max_entries: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 8 << 30,
            max_entries: 20_000,
        }
    }
}

/// Writes the layout folder `dir` as a tar archive to `out`: sorted names, fixed times and
/// modes, so the same layout gives the same bytes.
pub fn pack(dir: &Path, out: impl Write) -> Result<(), RegistryError> {
    let mut names = vec![PathBuf::from("oci-layout"), PathBuf::from("index.json")];
    let blobs = dir.join("blobs");
    let mut algs: Vec<_> = fs::read_dir(&blobs)
        .map_err(|e| layout_error(dir, e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    algs.sort();
    for alg in algs {
        let mut files: Vec<_> = fs::read_dir(blobs.join(&alg))
            .map_err(|e| layout_error(dir, e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        files.sort();
        for f in files {
            names.push(Path::new("blobs").join(&alg).join(f));
        }
    }
    let mut tar = tar::Builder::new(out);
    for name in names {
        let path = dir.join(&name);
        let mut file = fs::File::open(&path)
            .map_err(|e| layout_error(dir, format!("{}: {e}", name.display())))?;
        let len = file
            .metadata()
            .map_err(|e| layout_error(dir, e.to_string()))?
            .len();
        let mut header = tar::Header::new_ustar();
        header.set_size(len);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &name, &mut file)
            .map_err(|e| layout_error(dir, format!("{}: {e}", name.display())))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| layout_error(dir, e.to_string()))
}

/// Is `name` a path an OCI layout archive may hold? Returns the blob digest for blobs.
fn layout_member(name: &str) -> Result<Option<Digest>, String> {
    let name = name.strip_prefix("./").unwrap_or(name);
    if matches!(name, "oci-layout" | "index.json") {
        return Ok(None);
    }
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["blobs", alg, hex] => Digest::parse(&format!("{alg}:{hex}"))
            .map(Some)
            .map_err(|e| format!("`{}` is not a blob name: {e}", name.escape_debug())),
        _ => Err(format!(
            "`{}` is not part of an OCI image layout (only oci-layout, index.json and blobs/<alg>/<hex>)",
            name.escape_debug()
        )),
    }
}

/// Unpacks an OCI layout archive from the outside world into `dir` (created, must not exist),
/// refusing anything but the layout's own files, links of any kind, a blob that does not hash
/// to its name, a name twice, and archives over `limits`. On an error `dir` may hold part of
/// the archive: the caller removes it.
pub fn unpack(archive: impl Read, dir: &Path, limits: UnpackLimits) -> Result<(), RegistryError> {
    fs::create_dir(dir).map_err(|e| layout_error(dir, e.to_string()))?;
    let mut tar = tar::Archive::new(archive);
    let mut total: u64 = 0;
    let mut seen = std::collections::BTreeSet::new();
    let entries = tar
        .entries()
        .map_err(|e| layout_error(dir, format!("not a tar archive: {e}")))?;
    for (count, entry) in entries.enumerate() {
        if count >= limits.max_entries {
            return Err(layout_error(
                dir,
                format!("the archive has more than {} entries", limits.max_entries),
            ));
        }
        let mut entry = entry.map_err(|e| layout_error(dir, format!("not a tar archive: {e}")))?;
        let name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| layout_error(dir, "an entry name is not UTF-8"))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            let n = name.trim_start_matches("./").trim_end_matches('/');
            if n.is_empty() || n == "blobs" || n.starts_with("blobs/") && !n[6..].contains('/') {
                continue;
            }
            return Err(layout_error(
                dir,
                format!(
                    "the folder `{}` is not part of an OCI image layout",
                    name.escape_debug()
                ),
            ));
        }
        if !kind.is_file() {
            return Err(layout_error(
                dir,
                format!(
                    "`{}` is a link or special file; an image archive holds files only",
                    name.escape_debug()
                ),
            ));
        }
        let digest = layout_member(&name).map_err(|why| layout_error(dir, why))?;
        let clean = name.trim_start_matches("./").to_owned();
        if !seen.insert(clean.clone()) {
            return Err(layout_error(
                dir,
                format!("`{clean}` is in the archive twice"),
            ));
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        total = total.saturating_add(size);
        if total > limits.max_bytes {
            return Err(layout_error(
                dir,
                format!("the archive holds more than {} bytes", limits.max_bytes),
            ));
        }
        if digest.is_none() && size > MAX_INDEX_BYTES {
            return Err(layout_error(
                dir,
                format!("`{clean}` is larger than {MAX_INDEX_BYTES} bytes"),
            ));
        }
        let path = dir.join(&clean);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| layout_error(dir, e.to_string()))?;
        }
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| layout_error(dir, format!("{clean}: {e}")))?;
        let mut written: u64 = 0;
        let mut h256 = sha2::Sha256::new();
        let mut h512 = sha2::Sha512::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| layout_error(dir, format!("reading {clean}: {e}")))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > size {
                return Err(layout_error(
                    dir,
                    format!("{clean} is longer than its header"),
                ));
            }
            match digest.as_ref().map(|d| d.algorithm().name()) {
                Some("sha512") => h512.update(&buf[..n]),
                Some(_) => h256.update(&buf[..n]),
                None => {}
            }
            out.write_all(&buf[..n])
                .map_err(|e| layout_error(dir, format!("writing {clean}: {e}")))?;
        }
        if let Some(d) = digest {
            let actual = match d.algorithm().name() {
                "sha512" => hex::encode(h512.finalize()),
                _ => hex::encode(h256.finalize()),
            };
            if actual != d.hex() {
                return Err(layout_error(
                    dir,
                    format!("{clean} hashes to {actual}, not to its name; the archive was altered"),
                ));
            }
        }
        out.sync_all()
            .map_err(|e| layout_error(dir, format!("writing {clean}: {e}")))?;
    }
    for required in ["oci-layout", "index.json"] {
        if !seen.contains(required) {
            return Err(layout_error(
                dir,
                format!("the archive has no `{required}`; it is not an OCI image layout"),
            ));
        }
    }
    Ok(())
}

/// What [`export`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The digest the reference resolved to.
    pub digest: Digest,
    /// Its descriptor (the subject of the evidence the caller adds).
    pub descriptor: Descriptor,
    /// The digests signatures may name (the resolved one, then an index's platform manifest).
    pub signed: Vec<Descriptor>,
    /// Blobs written (manifests included).
    pub blobs: usize,
    /// Evidence manifests copied (signature tags, attestation tags, referrers).
    pub evidence: usize,
    /// What could not be copied and why (a referrer that does not parse, ...).
    pub skipped: Vec<SkippedSignature>,
}

/// Largest layer or config blob copied.
pub const MAX_LAYER_BYTES: u64 = 4 << 30;

/// Copies `reference` from the registry into `out` by the digest it resolves to (once), with
/// the image's config and layers (the platform manifest's for an index) and its evidence.
pub async fn export(
    client: &Client,
    reference: &Reference,
    out: &mut LayoutWriter,
) -> Result<Exported, RegistryError> {
    let resolved = client.resolve(reference).await?;
    let repository = reference.repository();
    let limits = client.limits().clone();
    let top = copy_manifest(client, repository, &resolved.digest, out).await?;
    let mut blobs = 1;
    let mut signed = vec![Descriptor {
        media_type: resolved.media_type.clone(),
        size: resolved.size,
        digest: resolved.digest.to_string(),
        annotations: None,
        platform: None,
        artifact_type: None,
    }];
    let image = match (&resolved.platform, top) {
        (Some(p), _) => {
            signed.push(Descriptor {
                media_type: p.media_type.clone(),
                size: p.size,
                digest: p.digest.to_string(),
                annotations: None,
                platform: None,
                artifact_type: None,
            });
            blobs += 1;
            match copy_manifest(client, repository, &p.digest, out).await? {
                Manifest::Image(m) => m,
                Manifest::Index(_) => {
                    return Err(RegistryError::Malformed {
                        registry: repository.registry().to_owned(),
                        what: format!("platform manifest {}", p.digest),
                        why: "an index".into(),
                    });
                }
            }
        }
        (None, Manifest::Image(m)) => m,
        (None, Manifest::Index(_)) => {
            return Err(RegistryError::Malformed {
                registry: repository.registry().to_owned(),
                what: format!("manifest {}", resolved.digest),
                why: "an index without a platform manifest".into(),
            });
        }
    };
    for d in std::iter::once(&image.config).chain(image.layers.iter()) {
        copy_blob(client, repository, d, MAX_LAYER_BYTES, out).await?;
        blobs += 1;
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(IMAGE_ANNOTATION.into(), resolved.pinned());
    out.tag(repository, reference.tag(), signed[0].clone(), annotations);

    let mut evidence = 0;
    let mut skipped = Vec::new();
    for d in &signed {
        let digest = d.parsed_digest().map_err(|why| RegistryError::Malformed {
            registry: repository.registry().to_owned(),
            what: "a signed digest".into(),
            why,
        })?;
        for tag in [digest.signature_tag(), attestation_tag(&digest)] {
            let Some(raw) = client
                .fetch_manifest(repository, &tag, limits.signature_manifest_max_bytes, None)
                .await?
            else {
                continue;
            };
            let desc = copy_evidence(client, repository, &raw, &limits, out, &mut blobs).await?;
            out.tag(repository, Some(&tag), desc, BTreeMap::new());
            evidence += 1;
        }
        let (list, origin) = client.referrers(repository, &digest, &mut skipped).await?;
        for r in list {
            let Ok(rd) = r.parsed_digest() else {
                skipped.push(SkippedSignature {
                    origin: format!("{origin} referrer {}", r.digest),
                    reason: "its digest does not parse".into(),
                });
                continue;
            };
            let Some(raw) = client
                .fetch_manifest(
                    repository,
                    &rd.to_string(),
                    limits.signature_manifest_max_bytes,
                    Some(&rd),
                )
                .await?
            else {
                skipped.push(SkippedSignature {
                    origin: format!("{origin} referrer {rd}"),
                    reason: "listed but not found".into(),
                });
                continue;
            };
            copy_evidence(client, repository, &raw, &limits, out, &mut blobs).await?;
            out.push_referrer(repository, &d.digest, r);
            evidence += 1;
        }
    }
    Ok(Exported {
        digest: resolved.digest,
        descriptor: signed[0].clone(),
        signed,
        blobs,
        evidence,
        skipped,
    })
}

async fn copy_manifest(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    out: &mut LayoutWriter,
) -> Result<Manifest, RegistryError> {
    let raw = client
        .fetch_manifest(
            repository,
            &digest.to_string(),
            client.limits().manifest_max_bytes,
            Some(digest),
        )
        .await?
        .ok_or_else(|| RegistryError::NotFound {
            repository: repository.to_string(),
            what: format!("manifest {digest}"),
        })?;
    let parsed = manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(|why| {
        RegistryError::Malformed {
            registry: repository.registry().to_owned(),
            what: format!("manifest {digest}"),
            why,
        }
    })?;
    out.put_blob_as(digest, &raw.bytes)?;
    Ok(parsed)
}

async fn copy_blob(
    client: &Client,
    repository: &Repository,
    d: &Descriptor,
    cap: u64,
    out: &mut LayoutWriter,
) -> Result<(), RegistryError> {
    let digest = d.parsed_digest().map_err(|why| RegistryError::Malformed {
        registry: repository.registry().to_owned(),
        what: format!("descriptor {}", d.digest),
        why,
    })?;
    if blob_path(&out.dir, &digest).exists() {
        return Ok(());
    }
    let bytes = client
        .fetch_blob(repository, &digest, Some(d.size), cap)
        .await?;
    out.put_blob_as(&digest, &bytes)
}

/// Copies an evidence manifest (already fetched) and its config and layers, small caps.
async fn copy_evidence(
    client: &Client,
    repository: &Repository,
    raw: &RawManifest,
    limits: &crate::Limits,
    out: &mut LayoutWriter,
    blobs: &mut usize,
) -> Result<Descriptor, RegistryError> {
    let m = match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
        Ok(Manifest::Image(m)) => m,
        Ok(Manifest::Index(_)) => {
            return Err(RegistryError::Malformed {
                registry: repository.registry().to_owned(),
                what: format!("evidence manifest {}", raw.digest),
                why: "an index".into(),
            });
        }
        Err(why) => {
            return Err(RegistryError::Malformed {
                registry: repository.registry().to_owned(),
                what: format!("evidence manifest {}", raw.digest),
                why,
            });
        }
    };
    let cap = limits
        .payload_max_bytes
        .max(MAX_STORE_EVIDENCE)
        .max(crate::MAX_ATTESTATION);
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        copy_blob(client, repository, d, cap, out).await?;
        *blobs += 1;
    }
    out.put_blob_as(&raw.digest, &raw.bytes)?;
    *blobs += 1;
    Ok(Descriptor {
        media_type: raw
            .media_type
            .clone()
            .unwrap_or_else(|| manifest::OCI_MANIFEST.into()),
        size: raw.bytes.len() as u64,
        digest: raw.digest.to_string(),
        annotations: None,
        platform: None,
        artifact_type: m.artifact_type.clone(),
    })
}

impl Client {
    /// A client that reads the layout folder `dir` instead of a registry, with the same caps and
    /// checks (for an air-gapped node's imported images). Pushing is refused.
    pub fn layout(layout: OciLayout, opts: crate::ClientOptions) -> Result<Client, RegistryError> {
        let mut c = Client::new(opts)?;
        c.set_layout(layout);
        Ok(c)
    }

    /// The store evidence artifacts referring to `digest` (their one layer each, capped at
    /// [`MAX_STORE_EVIDENCE`] and checked against its descriptor), unverified.
    pub async fn fetch_store_evidence(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<Vec<Vec<u8>>, RegistryError> {
        let mut skipped = Vec::new();
        let (list, _) = self.referrers(repository, digest, &mut skipped).await?;
        let mut out = Vec::new();
        for d in list
            .iter()
            .filter(|d| d.artifact_type.as_deref() == Some(STORE_EVIDENCE_ARTIFACT))
            .take(crate::MAX_ATTESTATIONS)
        {
            let m = self
                .fetch_referrer_of_type(
                    repository,
                    digest,
                    d,
                    STORE_EVIDENCE_ARTIFACT,
                    "store evidence",
                )
                .await
                .map_err(|why| RegistryError::Malformed {
                    registry: repository.registry().to_owned(),
                    what: format!("store evidence {}", d.digest),
                    why,
                })?;
            let [layer] = m.layers.as_slice() else {
                continue;
            };
            if layer.media_type != STORE_EVIDENCE_ARTIFACT {
                continue;
            }
            let ld = layer
                .parsed_digest()
                .map_err(|why| RegistryError::Malformed {
                    registry: repository.registry().to_owned(),
                    what: "store evidence layer".into(),
                    why,
                })?;
            out.push(
                self.fetch_blob(repository, &ld, Some(layer.size), MAX_STORE_EVIDENCE)
                    .await?,
            );
        }
        Ok(out)
    }
}
