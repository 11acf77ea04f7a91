//! Notary Project signatures in a registry: signature manifests (artifact type
//! [`NOTARY_SIGNATURE_ARTIFACT`]) that name the signed manifest as their `subject`, found as OCI
//! 1.1 referrers (`GET /v2/<name>/referrers/<digest>`, or on a registry without that endpoint
//! the referrers tag schema: an image index at tag `sha256-<hex>`), the same lookup as cosign's
//! referrers. Each has exactly one layer, the envelope blob (JWS `application/jose+json`; COSE
//! `application/cose` is fetched and left for the verifier to refuse). Caps: the signature
//! manifest size and the signature count of [`Limits`](crate::Limits), and
//! [`NOTARY_ENVELOPE_MAX_BYTES`] per envelope. Verifying is `warden_trust::notary`'s job.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use warden_reference::{Digest, Repository};

use crate::RegistryError;
use crate::client::{Client, SkippedSignature};
use crate::manifest::{
    self, Descriptor, ImageIndex, ImageManifest, Manifest, OCI_INDEX, OCI_MANIFEST,
};

/// `artifactType` of a Notary Project signature manifest.
pub const NOTARY_SIGNATURE_ARTIFACT: &str = "application/vnd.cncf.notary.signature";
/// Media type of a JWS envelope layer.
pub const NOTARY_JWS: &str = "application/jose+json";
/// Media type of a COSE envelope layer.
pub const NOTARY_COSE: &str = "application/cose";
/// Largest envelope blob read (the verifier's own cap; Notation's are a few KiB).
pub const NOTARY_ENVELOPE_MAX_BYTES: u64 = 256 * 1024;
/// The OCI empty descriptor's media type, the config of a signature manifest.
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Envelopes fetched at once.
const CONCURRENCY: usize = 8;

/// One envelope found: its exact bytes, the layer's media type and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedNotarySignature {
    pub envelope: Vec<u8>,
    pub media_type: String,
    pub origin: String,
}

/// Every Notary Project envelope found for one digest, and what was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotarySignatureSet {
    pub digest: Digest,
    pub envelopes: Vec<FetchedNotarySignature>,
    pub skipped: Vec<SkippedSignature>,
}

impl Client {
    /// Gathers the Notary Project signature envelopes whose manifests refer to `digest`.
    /// No referrers means an empty set; a registry failure is an error.
    pub async fn fetch_notary_signatures(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<NotarySignatureSet, RegistryError> {
        self.deadline(
            repository.registry(),
            "fetching Notary signatures",
            self.fetch_notary_inner(repository, digest),
        )
        .await
    }

    async fn fetch_notary_inner(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<NotarySignatureSet, RegistryError> {
        let max = self.limits().max_signatures;
        let mut skipped = Vec::new();
        let (referrers, list_origin) = self.referrers(repository, digest, &mut skipped).await?;
        let mut wanted = Vec::new();
        for desc in referrers {
            if desc.artifact_type.as_deref() != Some(NOTARY_SIGNATURE_ARTIFACT) {
                continue;
            }
            let origin = format!("{list_origin} referrer {}", desc.digest);
            if wanted.len() >= max {
                skipped.push(SkippedSignature {
                    origin,
                    reason: format!("over the cap of {max} signatures per image"),
                });
                continue;
            }
            wanted.push((origin, desc));
        }
        let fetched: Vec<_> = futures_util::stream::iter(wanted)
            .map(|(origin, desc)| async move {
                let r = self.fetch_envelope(repository, digest, &desc).await;
                (origin, r)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut set = NotarySignatureSet {
            digest: digest.clone(),
            envelopes: Vec::new(),
            skipped,
        };
        for (origin, r) in fetched {
            match r {
                Ok((envelope, media_type)) => set.envelopes.push(FetchedNotarySignature {
                    envelope,
                    media_type,
                    origin,
                }),
                Err(reason) => set.skipped.push(SkippedSignature { origin, reason }),
            }
        }
        for s in &set.skipped {
            tracing::debug!(origin = %s.origin, reason = %s.reason, "Notary signature skipped");
        }
        Ok(set)
    }

    /// The signature manifest `desc` (subject and artifact type checked) and its one envelope.
    async fn fetch_envelope(
        &self,
        repository: &Repository,
        subject: &Digest,
        desc: &Descriptor,
    ) -> Result<(Vec<u8>, String), String> {
        let m = self
            .fetch_referrer_of_type(
                repository,
                subject,
                desc,
                NOTARY_SIGNATURE_ARTIFACT,
                "a Notary Project signature",
            )
            .await?;
        let [layer] = m.layers.as_slice() else {
            return Err(format!(
                "a Notary signature manifest has one layer, this one {}",
                m.layers.len()
            ));
        };
        if layer.media_type != NOTARY_JWS && layer.media_type != NOTARY_COSE {
            return Err(format!(
                "envelope media type `{}` is neither {NOTARY_JWS} nor {NOTARY_COSE}",
                layer.media_type
            ));
        }
        if layer.size > NOTARY_ENVELOPE_MAX_BYTES {
            return Err(format!(
                "declared envelope size {} is over the cap of {NOTARY_ENVELOPE_MAX_BYTES} bytes",
                layer.size
            ));
        }
        let d = layer.parsed_digest()?;
        let bytes = self
            .fetch_blob(repository, &d, Some(layer.size), NOTARY_ENVELOPE_MAX_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        Ok((bytes, layer.media_type.clone()))
    }

    /// Pushes a Notary Project signature for `subject` (the signed manifest's descriptor): the
    /// envelope blob, the empty config, the signature manifest (with `annotations`, e.g. the
    /// `io.cncf.notary.x509chain.thumbprint#S256` the spec asks for), then adds it to the
    /// referrers tag schema index `sha256-<hex>` (read, appended, put back), which a registry
    /// with the referrers endpoint ignores. Returns the signature manifest's digest.
    pub async fn push_notary_signature(
        &self,
        repository: &Repository,
        subject: &Descriptor,
        envelope: &[u8],
        annotations: Option<BTreeMap<String, String>>,
    ) -> Result<Digest, RegistryError> {
        self.deadline(
            repository.registry(),
            "pushing the Notary signature",
            self.push_notary_inner(repository, subject, envelope, annotations),
        )
        .await
    }

    async fn push_notary_inner(
        &self,
        repository: &Repository,
        subject: &Descriptor,
        envelope: &[u8],
        annotations: Option<BTreeMap<String, String>>,
    ) -> Result<Digest, RegistryError> {
        let registry = repository.registry();
        let subject_digest = subject
            .parsed_digest()
            .map_err(|why| RegistryError::Malformed {
                registry: registry.to_owned(),
                what: "subject descriptor".into(),
                why,
            })?;
        let envelope_digest = self.upload_blob(repository, envelope).await?;
        let empty = b"{}";
        let empty_digest = self.upload_blob(repository, empty).await?;
        let descriptor = |media_type: &str, size: usize, digest: &Digest| Descriptor {
            media_type: media_type.into(),
            size: size as u64,
            digest: digest.to_string(),
            annotations: None,
            platform: None,
            artifact_type: None,
        };
        let signature = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some(NOTARY_SIGNATURE_ARTIFACT.into()),
            config: descriptor(OCI_EMPTY, empty.len(), &empty_digest),
            layers: vec![descriptor(NOTARY_JWS, envelope.len(), &envelope_digest)],
            subject: Some(subject.clone()),
            annotations,
        };
        let bytes = serde_json::to_vec(&signature).map_err(|e| RegistryError::Malformed {
            registry: registry.to_owned(),
            what: "signature manifest".into(),
            why: e.to_string(),
        })?;
        let digest = Digest::sha256_of(&bytes);
        self.put_manifest(repository, &digest.to_string(), OCI_MANIFEST, &bytes)
            .await?;

        let tag = format!(
            "{}-{}",
            subject_digest.algorithm().name(),
            subject_digest.hex()
        );
        let mut index = match self
            .fetch_manifest(repository, &tag, self.limits().manifest_max_bytes, None)
            .await?
        {
            None => ImageIndex {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: Vec::new(),
                annotations: None,
            },
            Some(raw) => match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
                Ok(Manifest::Index(index)) => index,
                _ => {
                    return Err(RegistryError::Malformed {
                        registry: registry.to_owned(),
                        what: format!("referrers tag {tag}"),
                        why: "it does not hold an image index; not overwritten".into(),
                    });
                }
            },
        };
        if !index
            .manifests
            .iter()
            .any(|d| d.digest == digest.to_string())
        {
            index.manifests.push(Descriptor {
                artifact_type: Some(NOTARY_SIGNATURE_ARTIFACT.into()),
                ..descriptor(OCI_MANIFEST, bytes.len(), &digest)
            });
            let index_bytes = serde_json::to_vec(&index).map_err(|e| RegistryError::Malformed {
                registry: registry.to_owned(),
                what: "referrers index".into(),
                why: e.to_string(),
            })?;
            self.put_manifest(repository, &tag, OCI_INDEX, &index_bytes)
                .await?;
        }
        Ok(digest)
    }
}
