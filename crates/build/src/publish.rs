//! Pushing a built image with Warden's registry client, attaching provenance as cosign
//! attaches attestations (`sha256-<hex>.att`, one DSSE layer per envelope), fetching them back,
//! and comparing a published image with a rebuild.

use warden_reference::{Digest, Repository};
use warden_registry::Client;
use warden_registry::manifest::{
    self, Descriptor, ImageManifest, Manifest, OCI_CONFIG, OCI_MANIFEST,
};

use crate::BuildError;
use crate::image::{self, Image, LayerDiff};

pub use warden_registry::{DSSE_LAYER, attestation_tag};

/// Uploads the blobs and puts the manifest under `tag`; returns the digest the registry holds.
pub async fn push(
    client: &Client,
    repository: &Repository,
    tag: &str,
    image: &Image,
) -> Result<Digest, BuildError> {
    client.upload_blob(repository, &image.config).await?;
    for layer in &image.layers {
        client.upload_blob(repository, layer).await?;
    }
    Ok(client
        .put_manifest(repository, tag, OCI_MANIFEST, &image.manifest)
        .await?)
}

async fn attestation_manifest(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
) -> Result<Option<ImageManifest>, BuildError> {
    Ok(client.attestation_manifest(repository, digest).await?)
}

/// Appends `envelope` to the attestations of `digest` (creating the `.att` manifest when
/// absent); an identical envelope already there is not added twice.
pub async fn attach(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    envelope: &[u8],
) -> Result<Digest, BuildError> {
    let layer_digest = client.upload_blob(repository, envelope).await?;
    let mut layers = attestation_manifest(client, repository, digest)
        .await?
        .map(|m| m.layers)
        .unwrap_or_default();
    if !layers.iter().any(|l| l.digest == layer_digest.to_string()) {
        layers.push(Descriptor {
            media_type: DSSE_LAYER.to_owned(),
            size: envelope.len() as u64,
            digest: layer_digest.to_string(),
            annotations: Some(
                [(
                    "predicateType".to_owned(),
                    crate::provenance::SLSA_PROVENANCE_V1.to_owned(),
                )]
                .into(),
            ),
            platform: None,
            artifact_type: None,
        });
    }
    let config = manifest::signature_config(&layers);
    client.upload_blob(repository, &config).await?;
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: Descriptor {
            media_type: OCI_CONFIG.to_owned(),
            size: config.len() as u64,
            digest: Digest::sha256_of(&config).to_string(),
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        layers,
        subject: None,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&m).map_err(|e| BuildError::Io(e.to_string()))?;
    Ok(client
        .put_manifest(repository, &attestation_tag(digest), OCI_MANIFEST, &bytes)
        .await?)
}

/// The DSSE envelopes attached to `digest` (unverified; see [`crate::provenance`]).
pub async fn fetch_attestations(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
) -> Result<Vec<Vec<u8>>, BuildError> {
    Ok(client
        .fetch_attestation_envelopes(repository, digest)
        .await?)
}

/// Compares the published image `digest` with `rebuilt`: `None` when the digests match, else
/// the first layer and file that differ.
pub async fn compare(
    client: &Client,
    repository: &Repository,
    digest: &Digest,
    rebuilt: &Image,
) -> Result<Option<LayerDiff>, BuildError> {
    if &rebuilt.digest == digest {
        return Ok(None);
    }
    let raw = client
        .fetch_manifest(
            repository,
            &digest.to_string(),
            4 * 1024 * 1024,
            Some(digest),
        )
        .await?
        .ok_or_else(|| {
            BuildError::Input(format!("{repository}@{digest} is not in the registry"))
        })?;
    let published = match manifest::parse(&raw.bytes, raw.media_type.as_deref()) {
        Ok(Manifest::Image(m)) => m,
        _ => {
            return Ok(Some(LayerDiff {
                layer: None,
                file: None,
                detail: "the published manifest is not a single-platform image manifest".into(),
            }));
        }
    };
    let ours: ImageManifest =
        serde_json::from_slice(&rebuilt.manifest).map_err(|e| BuildError::Io(e.to_string()))?;
    for i in 0..published.layers.len().max(ours.layers.len()) {
        let (Some(p), Some(r)) = (published.layers.get(i), ours.layers.get(i)) else {
            return Ok(Some(LayerDiff {
                layer: Some(i),
                file: None,
                detail: format!(
                    "published has {} layers, the rebuild {}",
                    published.layers.len(),
                    ours.layers.len()
                ),
            }));
        };
        if p.digest == r.digest {
            continue;
        }
        let pd = p.parsed_digest().map_err(BuildError::Io)?;
        let blob = client
            .fetch_blob(repository, &pd, Some(p.size), image::MAX_LAYER)
            .await?;
        let theirs = image::entries(&p.media_type, &blob);
        let mine = image::entries(&r.media_type, &rebuilt.layers[i]);
        let (file, detail) = match (theirs, mine) {
            (Ok(t), Ok(m)) => match image::first_difference(&t, &m) {
                Some((f, d)) => (Some(f), d),
                None => (
                    None,
                    "same files, different tar encoding or compression".into(),
                ),
            },
            (Err(e), _) | (_, Err(e)) => (None, format!("layer cannot be listed: {e}")),
        };
        return Ok(Some(LayerDiff {
            layer: Some(i),
            file,
            detail,
        }));
    }
    Ok(Some(LayerDiff {
        layer: None,
        file: None,
        detail: "the layers agree; the config or the manifest differs".into(),
    }))
}
