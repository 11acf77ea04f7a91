//! OCI image assembly without Docker, and the file-level comparison `rebuild` reports.
//!
//! The layer is an uncompressed tar (`application/vnd.oci.image.layer.v1.tar`), so its digest
//! does not depend on a compressor's version: entries sorted by path, ustar headers with owner
//! 0:0, empty owner names, fixed modes and `mtime = SOURCE_DATE_EPOCH`. The config and manifest
//! are serialised from ordered maps, so the same inputs always give the same bytes.

use std::collections::BTreeMap;
use std::io::Read as _;

use serde_json::json;
use sha2::{Digest as _, Sha256};
use warden_reference::Digest;
use warden_registry::manifest::{Descriptor, ImageManifest, OCI_CONFIG, OCI_MANIFEST};

/// Media type of the (uncompressed) layer.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The non-root user images run as.
pub const USER: &str = "65534:65534";
/// Largest layer `rebuild` reads from a registry (decompressed too).
pub const MAX_LAYER: u64 = 512 * 1024 * 1024;

/// One file of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Path inside the image, without leading `/`.
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// What goes into an image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub files: Vec<File>,
    pub entrypoint: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: file times and the creation time.
    pub epoch: i64,
    pub source_uri: String,
    pub revision: String,
    /// The algorithm's directory in the repository.
    pub path: String,
}

/// An assembled image: every blob and the manifest, ready to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub layers: Vec<Vec<u8>>,
    /// Digest of `manifest`: the image digest.
    pub digest: Digest,
}

/// RFC 3339 UTC time of `epoch` seconds (proleptic Gregorian, days-from-civil inverse).
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The layer tar of `files` (sorted, fixed metadata).
pub fn layer_tar(files: &[File], epoch: i64) -> Vec<u8> {
    let mut sorted: Vec<&File> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut builder = tar::Builder::new(Vec::new());
    for f in sorted {
        let mut h = tar::Header::new_ustar();
        // Paths are ours (binary names checked by `compile`); a failure leaves the entry out
        // and the image then lacks its entry point, which the node reports.
        if h.set_path(&f.path).is_err() {
            continue;
        }
        h.set_size(f.bytes.len() as u64);
        h.set_mode(f.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(u64::try_from(epoch).unwrap_or(0));
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        // Writing into a Vec cannot fail.
        let _ = builder.append(&h, f.bytes.as_slice());
    }
    builder.into_inner().unwrap_or_default()
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::sha256_of(bytes)
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        size: bytes.len() as u64,
        digest: sha256(bytes).to_string(),
        annotations: None,
        platform: None,
        artifact_type: None,
    }
}

/// Assembles the image of `spec`.
pub fn assemble(spec: &ImageSpec) -> Image {
    let layer = layer_tar(&spec.files, spec.epoch);
    let created = rfc3339(spec.epoch);
    let mut labels = BTreeMap::new();
    labels.insert("dev.warden.build.path", spec.path.clone());
    labels.insert("org.opencontainers.image.revision", spec.revision.clone());
    if !spec.source_uri.is_empty() {
        labels.insert("org.opencontainers.image.source", spec.source_uri.clone());
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": USER,
            "Entrypoint": spec.entrypoint,
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer).to_string()]},
        "history": [{"created": created, "created_by": "warden algorithm build"}],
    });
    // serde_json's maps are ordered (no preserve_order feature): the bytes are canonical.
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let mut annotations = BTreeMap::new();
    annotations.insert("org.opencontainers.image.created".to_owned(), created);
    annotations.insert(
        "org.opencontainers.image.revision".to_owned(),
        spec.revision.clone(),
    );
    if !spec.source_uri.is_empty() {
        annotations.insert(
            "org.opencontainers.image.source".to_owned(),
            spec.source_uri.clone(),
        );
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: descriptor(OCI_CONFIG, &config),
        layers: vec![descriptor(LAYER_TAR, &layer)],
        subject: None,
        annotations: Some(annotations),
    };
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    Image {
        digest: sha256(&manifest),
        manifest,
        config,
        layers: vec![layer],
    }
}

/// One entry of a layer, for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub sha256: String,
}

/// Lists a layer (plain tar, or gzip by media type), capped at [`MAX_LAYER`] bytes.
pub fn entries(media_type: &str, blob: &[u8]) -> Result<Vec<Entry>, String> {
    let plain;
    let tar_bytes: &[u8] = if media_type == LAYER_TAR_GZIP || media_type == DOCKER_LAYER_GZIP {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .take(MAX_LAYER)
            .read_to_end(&mut out)
            .map_err(|e| format!("not gzip: {e}"))?;
        plain = out;
        &plain
    } else {
        blob
    };
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let h = e.header().clone();
        let path = e
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let mut hasher = Sha256::new();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        hasher.update(&buf);
        out.push(Entry {
            path,
            mode: h.mode().unwrap_or(0),
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: h.mtime().unwrap_or(0),
            size: buf.len() as u64,
            sha256: hex::encode(hasher.finalize()),
        });
    }
    Ok(out)
}

/// Where a rebuilt image first differs from the published one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDiff {
    /// Index of the first differing layer (`None`: the layers agree, the config or manifest
    /// differs).
    pub layer: Option<usize>,
    /// The first differing file of that layer, if the layer could be listed.
    pub file: Option<String>,
    /// What differs, for people.
    pub detail: String,
}

/// Compares entries in order and names the first path whose metadata or content differs.
pub fn first_difference(published: &[Entry], rebuilt: &[Entry]) -> Option<(String, String)> {
    for i in 0..published.len().max(rebuilt.len()) {
        match (published.get(i), rebuilt.get(i)) {
            (Some(p), Some(r)) if p == r => {}
            (Some(p), Some(r)) if p.path != r.path => {
                return Some((
                    p.path.clone(),
                    format!(
                        "published has `{}` where the rebuild has `{}`",
                        p.path, r.path
                    ),
                ));
            }
            (Some(p), Some(r)) => {
                let what = if p.sha256 != r.sha256 {
                    format!(
                        "content differs (published sha256:{} {} bytes, rebuilt sha256:{} {} bytes)",
                        p.sha256, p.size, r.sha256, r.size
                    )
                } else {
                    format!(
                        "metadata differs (published mode {:o} owner {}:{} mtime {}, rebuilt mode {:o} owner {}:{} mtime {})",
                        p.mode, p.uid, p.gid, p.mtime, r.mode, r.uid, r.gid, r.mtime
                    )
                };
                return Some((p.path.clone(), what));
            }
            (Some(p), None) => {
                return Some((p.path.clone(), "only in the published layer".into()));
            }
            (None, Some(r)) => return Some((r.path.clone(), "only in the rebuilt layer".into())),
            (None, None) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epochs_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_700_000), "2025-12-02T18:26:40Z");
    }

    fn spec(bytes: &[u8]) -> ImageSpec {
        ImageSpec {
            files: vec![
                File {
                    path: "b".into(),
                    bytes: bytes.to_vec(),
                    mode: 0o755,
                },
                File {
                    path: "a".into(),
                    bytes: b"a".to_vec(),
                    mode: 0o644,
                },
            ],
            entrypoint: vec!["/b".into()],
            epoch: 1_700_000_000,
            source_uri: "https://git.example/x".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            path: "algo".into(),
        }
    }

    #[test]
    fn same_inputs_same_digest_and_fixed_metadata() {
        let a = assemble(&spec(b"binary"));
        assert_eq!(a, assemble(&spec(b"binary")));
        assert_ne!(a.digest, assemble(&spec(b"binarY")).digest);
        let e = entries(LAYER_TAR, &a.layers[0]).unwrap();
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "b"], "sorted");
        assert!(
            e.iter()
                .all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 1_700_000_000)
        );
        let config: serde_json::Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(config["config"]["User"], USER);
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(
            m["annotations"]["org.opencontainers.image.revision"],
            "0123456789abcdef0123456789abcdef01234567"
        );
        let other = entries(LAYER_TAR, &assemble(&spec(b"binarY")).layers[0]).unwrap();
        let (file, detail) = first_difference(&e, &other).unwrap();
        assert_eq!(file, "b");
        assert!(detail.contains("content differs"), "{detail}");
    }
}
