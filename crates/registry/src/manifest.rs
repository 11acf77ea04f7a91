//! Manifest and index documents (OCI image spec and Docker distribution schema 2), parsed from
//! raw bytes already checked against their digest. Unknown fields are ignored: these are
//! documents from the outside world with extension fields, not our configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warden_reference::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// Media type of a cosign simple-signing payload layer.
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 signature on a simple-signing layer.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Artifact type of a cosign signature stored as an OCI 1.1 referrer.
pub const COSIGN_SIGNATURE_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// The `Accept` header for manifest requests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// The parsed digest (sha256 or sha512 only).
    pub fn parsed_digest(&self) -> Result<Digest, String> {
        Digest::parse(&self.digest).map_err(|e| e.to_string())
    }
}

/// `platform` of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformSpec {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(ImageIndex),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
}

/// The media type of a manifest: the document's own `mediaType` when present (it is part of
/// the hashed bytes), else the `Content-Type` the registry sent, without parameters.
pub fn effective_media_type(bytes: &[u8], content_type: Option<&str>) -> Option<String> {
    let probe: Option<Probe> = serde_json::from_slice(bytes).ok();
    probe
        .and_then(|p| p.media_type)
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()))
}

/// Parses manifest bytes, deciding between image manifest and index by media type (document
/// first, then `Content-Type`), and by shape when neither says.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON manifest: {e}"))?;
    if probe.schema_version != Some(2) {
        return Err(format!(
            "schemaVersion {} is not supported; only schema 2 manifests (OCI or Docker v2) are",
            probe
                .schema_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "missing".into())
        ));
    }
    let media_type = effective_media_type(bytes, content_type);
    let is_index = match media_type.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        Some(m) if m.starts_with(DOCKER_SCHEMA1) => {
            return Err(
                "docker schema 1 manifests are not supported; push with a current docker".into(),
            );
        }
        _ => match (probe.manifests.is_some(), probe.layers.is_some()) {
            (true, false) => true,
            (false, true) => false,
            _ => {
                return Err(format!(
                    "cannot tell an image manifest from an index (media type {})",
                    media_type.as_deref().unwrap_or("missing")
                ));
            }
        },
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(Manifest::Index)
            .map_err(|e| format!("malformed image index: {e}"))
    } else {
        serde_json::from_slice(bytes)
            .map(|m| Manifest::Image(Box::new(m)))
            .map_err(|e| format!("malformed image manifest: {e}"))
    }
}

/// The config blob cosign writes for a signature image: empty architecture and os, one diff
/// id per layer (the layers are not compressed, so diff id = digest), and an empty `config`, in
/// go-containerregistry's field order. For one layer this is 153 bytes, the size registries
/// show for cosign's own signature configs.
pub fn signature_config(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    format!(
        r#"{{"architecture":"","os":"","rootfs":{{"type":"layers","diff_ids":{}}},"config":{{}}}}"#,
        serde_json::Value::from(diff_ids),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn image(media: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media}","config":{{"mediaType":"c","digest":"{D}","size":1}},"layers":[]}}"#
        )
    }

    #[test]
    fn tells_manifests_from_indexes() {
        assert!(matches!(
            parse(image(OCI_MANIFEST).as_bytes(), None),
            Ok(Manifest::Image(_))
        ));
        assert!(matches!(
            parse(image(DOCKER_MANIFEST).as_bytes(), None),
            Ok(Manifest::Image(_))
        ));
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":3,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        assert!(matches!(
            parse(idx.as_bytes(), Some(OCI_INDEX)),
            Ok(Manifest::Index(_))
        ));
        assert!(matches!(
            parse(idx.as_bytes(), None),
            Ok(Manifest::Index(_))
        ));
        // The document's own media type rules over the header.
        assert!(parse(idx.as_bytes(), Some(OCI_MANIFEST)).is_err());
    }

    #[test]
    fn refuses_odd_documents() {
        for (doc, needle) in [
            (
                r#"{"schemaVersion":1,"fsLayers":[]}"#.to_owned(),
                "schemaVersion 1",
            ),
            ("garbage".to_owned(), "not a JSON manifest"),
            (r#"{"schemaVersion":2}"#.to_owned(), "cannot tell"),
            (
                image("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                "schema 1",
            ),
            (
                r#"{"schemaVersion":2,"layers":[{"digest":1}]}"#.to_owned(),
                "malformed image manifest",
            ),
        ] {
            let err = parse(doc.as_bytes(), None).unwrap_err();
            assert!(err.contains(needle), "{doc}: {err}");
        }
    }

    #[test]
    fn signature_config_lists_layers() {
        let layer = Descriptor {
            media_type: SIMPLESIGNING.into(),
            digest: D.into(),
            size: 3,
            annotations: None,
            platform: None,
            artifact_type: None,
        };
        let one = signature_config(std::slice::from_ref(&layer));
        assert_eq!(
            String::from_utf8(one.clone()).unwrap(),
            format!(
                r#"{{"architecture":"","os":"","rootfs":{{"type":"layers","diff_ids":["{D}"]}},"config":{{}}}}"#
            )
        );
        assert_eq!(one.len(), 153);
        let cfg = signature_config(&[layer.clone(), layer]);
        let v: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"][1], D);
    }
}
