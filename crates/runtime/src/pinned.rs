//! Running exactly what was verified: pull `repo@digest`, inspect, and keep the image ID.

use warden_reference::{Digest, Reference, Repository};

use crate::engine::{Engine, EngineError, ImageId};

/// Why an image could not be pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("pulling {reference} failed: {source}")]
    Pull {
        reference: String,
        source: EngineError,
    },
    #[error("inspecting {reference} after the pull failed: {source}")]
    Inspect {
        reference: String,
        source: EngineError,
    },
    #[error(
        "the engine's image for {reference} does not list that digest in its RepoDigests \
         (it lists [{listed}]); refusing to run it: remove the local image and pull again"
    )]
    DigestNotListed { reference: String, listed: String },
    #[error("loading the imported image {reference} into the engine failed: {why}")]
    Load { reference: String, why: String },
    #[error("the engine reported a malformed image ID `{id}` for {reference}; refusing to run it")]
    BadImageId { reference: String, id: String },
}

/// An image pulled by digest whose engine-side ID was read back and whose `RepoDigests` hold
/// that digest for that repository. Only [`pull_pinned`] makes one, so a function that takes a
/// `PinnedImage` cannot be handed an unchecked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedImage {
    image_id: ImageId,
    repository: Repository,
    digest: Digest,
}

impl PinnedImage {
    /// The local image ID: the only thing containers are created from.
    pub fn image_id(&self) -> &ImageId {
        &self.image_id
    }
    pub fn repository(&self) -> &Repository {
        &self.repository
    }
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    /// `registry/path@digest`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.repository, self.digest)
    }
}

/// Pulls `repository@digest` (unless the engine already holds it under that digest), inspects
/// it, requires its `RepoDigests` to contain that digest for
/// that repository (compared after normalisation, so Docker's familiar `x@sha256:..` matches
/// `docker.io/library/x`), and returns the pinned image with its local ID. The tag is never
/// consulted.
pub async fn pull_pinned<E: Engine + ?Sized>(
    engine: &E,
    repository: &Repository,
    digest: &Digest,
) -> Result<PinnedImage, PinError> {
    let reference = format!("{repository}@{digest}");
    // Already present with that digest for that repository (the same check as after a pull):
    // no registry round trip.
    let present = engine.inspect_image(&reference).await.ok().filter(|info| {
        info.repo_digests
            .iter()
            .any(|entry| repo_digest_matches(entry, repository, digest))
    });
    let info = match present {
        Some(info) => info,
        None => {
            engine
                .pull(&reference)
                .await
                .map_err(|source| PinError::Pull {
                    reference: reference.clone(),
                    source,
                })?;
            engine
                .inspect_image(&reference)
                .await
                .map_err(|source| PinError::Inspect {
                    reference: reference.clone(),
                    source,
                })?
        }
    };
    let listed = info
        .repo_digests
        .iter()
        .any(|entry| repo_digest_matches(entry, repository, digest));
    if !listed {
        tracing::warn!(%reference, repo_digests = ?info.repo_digests, "pinned digest not in RepoDigests");
        return Err(PinError::DigestNotListed {
            reference,
            listed: info.repo_digests.join(", "),
        });
    }
    let image_id = ImageId::parse(&info.id).ok_or_else(|| PinError::BadImageId {
        reference: reference.clone(),
        id: info.id.clone(),
    })?;
    tracing::info!(%reference, image_id = %image_id, "image pinned");
    Ok(PinnedImage {
        image_id,
        repository: repository.clone(),
        digest: digest.clone(),
    })
}

/// Pins an image that was imported from an archive (an air-gapped node): the engine's image
/// whose ID is `config`, the config digest of the verified manifest `repository@digest`. When
/// the engine does not hold it (removed since), `write_archive` writes a docker-archive of the
/// verified blobs to `scratch` (on the blocking pool), the engine loads it from there, `scratch`
/// is removed, and the ID is checked again. The ID is the hash of the config, which names every
/// layer's `diff_id`: the content is pinned as a pull by digest pins it.
pub async fn load_pinned<E, W>(
    engine: &E,
    repository: &Repository,
    digest: &Digest,
    config: &Digest,
    scratch: &std::path::Path,
    write_archive: W,
) -> Result<PinnedImage, PinError>
where
    E: Engine + ?Sized,
    W: FnOnce(&std::path::Path) -> Result<(), String> + Send + 'static,
{
    let reference = format!("{repository}@{digest}");
    let id = config.to_string();
    let held = engine
        .inspect_image(&id)
        .await
        .ok()
        .filter(|info| info.id == id);
    if held.is_none() {
        let path = scratch.to_owned();
        let written = tokio::task::spawn_blocking(move || write_archive(&path))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let loaded = match written {
            Ok(()) => engine.load_image(scratch).await.map_err(|e| e.to_string()),
            Err(why) => Err(why),
        };
        let _ = std::fs::remove_file(scratch);
        loaded.map_err(|why| PinError::Load {
            reference: reference.clone(),
            why,
        })?;
        let info = engine
            .inspect_image(&id)
            .await
            .map_err(|source| PinError::Inspect {
                reference: reference.clone(),
                source,
            })?;
        if info.id != id {
            return Err(PinError::BadImageId {
                reference,
                id: info.id,
            });
        }
    }
    let image_id = ImageId::parse(&id).ok_or_else(|| PinError::BadImageId {
        reference: reference.clone(),
        id: id.clone(),
    })?;
    tracing::info!(%reference, image_id = %image_id, "imported image pinned");
    Ok(PinnedImage {
        image_id,
        repository: repository.clone(),
        digest: digest.clone(),
    })
}

/// Does one `RepoDigests` entry name `repository@digest`? Entries that do not parse never match.
fn repo_digest_matches(entry: &str, repository: &Repository, digest: &Digest) -> bool {
    match Reference::parse(entry) {
        Ok(r) => r.repository() == repository && r.digest() == Some(digest),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn check(entry: &str, repository: &str, digest: &str, expected: bool) {
        let repo = Repository::parse(repository).unwrap();
        let d = Digest::parse(digest).unwrap();
        assert_eq!(
            repo_digest_matches(entry, &repo, &d),
            expected,
            "{entry} vs {repository}@{digest}"
        );
    }

    #[test]
    fn repo_digests_are_compared_after_normalisation() {
        check(
            &format!("ubuntu@{D1}"),
            "docker.io/library/ubuntu",
            D1,
            true,
        );
        check(
            &format!("docker.io/library/ubuntu@{D1}"),
            "ubuntu",
            D1,
            true,
        );
        check(&format!("me/algo@{D1}"), "docker.io/me/algo", D1, true);
        check(
            &format!("127.0.0.1:5000/a/b@{D1}"),
            "127.0.0.1:5000/a/b",
            D1,
            true,
        );
        check(
            &format!("LOCALHOST:5000/a@{D1}"),
            "localhost:5000/a",
            D1,
            true,
        );
        // another digest, another repository, another registry: no match
        check(&format!("ubuntu@{D2}"), "ubuntu", D1, false);
        check(&format!("debian@{D1}"), "ubuntu", D1, false);
        check(
            &format!("127.0.0.1:5001/a/b@{D1}"),
            "127.0.0.1:5000/a/b",
            D1,
            false,
        );
        check(
            &format!("evil.example/library/ubuntu@{D1}"),
            "ubuntu",
            D1,
            false,
        );
        // garbage never matches
        check("", "ubuntu", D1, false);
        check("ubuntu", "ubuntu", D1, false);
        check(&format!("ubuntu@{D1}x"), "ubuntu", D1, false);
    }

    #[test]
    fn image_ids_are_strict() {
        assert!(ImageId::parse(&format!("sha256:{}", "a".repeat(64))).is_some());
        assert!(ImageId::parse(&"a".repeat(64)).is_none());
        assert!(ImageId::parse(&format!("sha256:{}", "A".repeat(64))).is_none());
        assert!(ImageId::parse(&format!("sha256:{}", "a".repeat(63))).is_none());
        assert!(ImageId::parse("ubuntu:latest").is_none());
    }
}
